//! Marketing-automation workflow RPCs end to end (the services as processes, PostgreSQL):
//! a workflow is created as a DRAFT (an idempotent retry answers the same one), read, listed
//! in pages, updated into new versions under its etag, activated (its whole graph and its
//! message templates checked again), renamed but not restructured while ACTIVE, paused and
//! deleted by the rules; invalid graphs name their fields; another partner's workflows are
//! NOT_FOUND; executions are listed per workflow or customer and an unknown one is NOT_FOUND.
//! (The engine's own tests start and step executions.)
use loyalty_proto::{
    campaigns::v1 as pb, identity::v1 as identity, rewards::v1 as rewards, segmentation::v1 as seg,
};
use loyalty_testkit::{Backend, Suite, authed, error_reason, reward_of, violated_fields};
use prost_types::FieldMask;
use tonic::{Code, transport::Channel};

type Client = pb::campaigns_service_client::CampaignsServiceClient<Channel>;

const ROLES: [identity::Role; 3] = [
    identity::Role::Marketing,
    identity::Role::Support,
    identity::Role::Service,
];

/// A reward of `kind` of the key's partner.
async fn reward(suite: &Suite, key: &str, kind: rewards::RewardType) -> anyhow::Result<String> {
    reward_of(
        &mut suite.rewards().await?,
        key,
        kind,
        &format!("{kind:?}"),
        "",
    )
    .await
}

fn node(key: &str, kind: pb::workflow_node::Kind, next: &str) -> pb::WorkflowNode {
    pb::WorkflowNode {
        key: key.into(),
        kind: Some(kind),
        next_node_key: next.into(),
        ..Default::default()
    }
}

fn send(template_id: &str) -> pb::workflow_node::Kind {
    pb::workflow_node::Kind::SendMessage(pb::SendMessageNode {
        message_template_id: template_id.into(),
    })
}

fn add_points(points: i64) -> pb::workflow_node::Kind {
    pb::workflow_node::Kind::AddPoints(pb::AddPointsNode {
        points,
        ..Default::default()
    })
}

fn wait_hours(hours: i64) -> pb::workflow_node::Kind {
    pb::workflow_node::Kind::Wait(pb::WaitNode {
        duration_seconds: hours * 3_600,
        until_hour_of_day: -1,
        until_time: None,
    })
}

fn birth_date_trigger(criterion: Option<seg::Criterion>) -> pb::WorkflowTrigger {
    pb::WorkflowTrigger {
        kind: Some(pb::workflow_trigger::Kind::Date(pb::DateTrigger {
            customer_date_field: "customer.birth_date".into(),
            offset_days: 0,
            hour_of_day: 9,
            criterion,
            ..Default::default()
        })),
    }
}

fn city_is(field: &str, city: &str) -> seg::Criterion {
    seg::Criterion {
        kind: Some(seg::criterion::Kind::Condition(seg::Condition {
            field: field.into(),
            operator: seg::ComparisonOperator::Equal as i32,
            values: vec![seg::Value {
                kind: Some(seg::value::Kind::StringValue(city.into())),
            }],
        })),
    }
}

/// The birthday voucher of the docs: on the birthday at 9:00, a voucher, then a message.
fn birthday(name: &str, template_id: &str, reward_id: &str) -> pb::Workflow {
    pb::Workflow {
        display_name: name.into(),
        trigger: Some(birth_date_trigger(None)),
        nodes: vec![
            node(
                "voucher",
                pb::workflow_node::Kind::IssueVoucher(pb::IssueVoucherNode {
                    reward_id: reward_id.into(),
                }),
                "greet",
            ),
            node("greet", send(template_id), ""),
        ],
        entry_node_key: "voucher".into(),
        reentry_policy: pb::ReentryPolicy::AfterCompletion as i32,
        ..Default::default()
    }
}

async fn create(
    client: &mut Client,
    key: &str,
    idempotency_key: &str,
    w: pb::Workflow,
) -> Result<pb::Workflow, tonic::Status> {
    client
        .create_workflow(authed(
            pb::CreateWorkflowRequest {
                idempotency_key: idempotency_key.into(),
                workflow: Some(w),
            },
            key,
        ))
        .await
        .map(|r| r.into_inner().workflow.expect("workflow"))
}

async fn get(client: &mut Client, key: &str, id: &str) -> Result<pb::Workflow, tonic::Status> {
    client
        .get_workflow(authed(
            pb::GetWorkflowRequest {
                workflow_id: id.into(),
            },
            key,
        ))
        .await
        .map(|r| r.into_inner().workflow.expect("workflow"))
}

async fn update(
    client: &mut Client,
    key: &str,
    idempotency_key: &str,
    w: pb::Workflow,
    paths: &[&str],
    etag: &str,
) -> Result<pb::Workflow, tonic::Status> {
    client
        .update_workflow(authed(
            pb::UpdateWorkflowRequest {
                idempotency_key: idempotency_key.into(),
                workflow: Some(w),
                update_mask: Some(FieldMask {
                    paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                }),
                etag: etag.into(),
            },
            key,
        ))
        .await
        .map(|r| r.into_inner().workflow.expect("workflow"))
}

async fn activate(
    client: &mut Client,
    key: &str,
    idempotency_key: &str,
    id: &str,
) -> Result<pb::Workflow, tonic::Status> {
    client
        .activate_workflow(authed(
            pb::ActivateWorkflowRequest {
                idempotency_key: idempotency_key.into(),
                workflow_id: id.into(),
            },
            key,
        ))
        .await
        .map(|r| r.into_inner().workflow.expect("workflow"))
}

async fn pause(
    client: &mut Client,
    key: &str,
    idempotency_key: &str,
    id: &str,
) -> Result<pb::Workflow, tonic::Status> {
    client
        .pause_workflow(authed(
            pb::PauseWorkflowRequest {
                idempotency_key: idempotency_key.into(),
                workflow_id: id.into(),
            },
            key,
        ))
        .await
        .map(|r| r.into_inner().workflow.expect("workflow"))
}

async fn delete(
    client: &mut Client,
    key: &str,
    idempotency_key: &str,
    id: &str,
) -> Result<(), tonic::Status> {
    client
        .delete_workflow(authed(
            pb::DeleteWorkflowRequest {
                idempotency_key: idempotency_key.into(),
                workflow_id: id.into(),
            },
            key,
        ))
        .await
        .map(|_| ())
}

async fn list(
    client: &mut Client,
    key: &str,
    request: pb::ListWorkflowsRequest,
) -> Result<pb::ListWorkflowsResponse, tonic::Status> {
    client
        .list_workflows(authed(request, key))
        .await
        .map(|r| r.into_inner())
}

async fn email_template(client: &mut Client, key: &str) -> anyhow::Result<String> {
    Ok(client
        .create_message_template(authed(
            pb::CreateMessageTemplateRequest {
                idempotency_key: "birthday-template".into(),
                message_template: Some(pb::MessageTemplate {
                    display_name: "Happy birthday".into(),
                    channel: pb::Channel::Email as i32,
                    kind: pb::TemplateKind::Campaign as i32,
                    subject: "Happy birthday, {{ customer.first_name }}".into(),
                    body: "<p>Your gift: {{ voucher.code }}</p>".into(),
                    ..Default::default()
                }),
            },
            key,
        ))
        .await?
        .into_inner()
        .message_template
        .expect("template")
        .id)
}

#[track_caller]
fn assert_precondition(result: Result<pb::Workflow, tonic::Status>, reason: &str) {
    let e = result.expect_err(reason);
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert_eq!(error_reason(&e), reason, "{e:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn workflows_are_drafted_versioned_activated_paused_and_deleted_by_their_rules()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite.partner_with_key("Workflow shop", &ROLES).await?;
    let (_, reader) = suite
        .partner_with_key("Workflow readers", &[identity::Role::Support])
        .await?;
    let (_, other) = suite.partner_with_key("Other shop", &ROLES).await?;
    let mut client = suite.campaigns().await?;
    let template = email_template(&mut client, &key).await?;
    let their_template = email_template(&mut client, &other).await?;
    let gift = reward(&suite, &key, rewards::RewardType::Campaign).await?;
    let their_gift = reward(&suite, &other, rewards::RewardType::Campaign).await?;
    let coupon = reward(&suite, &key, rewards::RewardType::Coupon).await?;

    // Created as a DRAFT of version 1; a retry answers the same workflow.
    let draft = create(
        &mut client,
        &key,
        "birthday",
        birthday("Birthday", &template, &gift),
    )
    .await?;
    assert_eq!(draft.state, pb::WorkflowState::Draft as i32);
    assert_eq!((draft.version, draft.etag.as_str()), (1, "v1"));
    assert!(draft.create_time.is_some() && draft.activate_time.is_none());
    assert_eq!(draft.entry_node_key, "voucher");
    let first = birthday("Birthday", &template, &gift);
    let dup = create(&mut client, &key, "birthday-2", first.clone()).await?;
    let again = create(&mut client, &key, "birthday-2", first).await?;
    assert_eq!(again, dup, "a retry answers the same workflow");
    assert_ne!(dup.id, draft.id);
    let e = create(
        &mut client,
        &key,
        "birthday-2",
        birthday("Other", &template, &gift),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert_eq!(error_reason(&e), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(get(&mut client, &key, &draft.id).await?, draft);
    // Readers read; only marketing writes.
    let e = create(&mut client, &reader, "r", birthday("R", &template, &gift))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    list(&mut client, &reader, pb::ListWorkflowsRequest::default()).await?;

    // Listed newest first, in pages.
    let third = create(
        &mut client,
        &key,
        "third",
        birthday("Third", &template, &gift),
    )
    .await?;
    let page = list(
        &mut client,
        &key,
        pb::ListWorkflowsRequest {
            page_size: 2,
            ..Default::default()
        },
    )
    .await?;
    let ids: Vec<&str> = page.workflows.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, [third.id.as_str(), dup.id.as_str()]);
    assert!(!page.next_page_token.is_empty());
    let rest = list(
        &mut client,
        &key,
        pb::ListWorkflowsRequest {
            page_size: 2,
            page_token: page.next_page_token,
            ..Default::default()
        },
    )
    .await?;
    let ids: Vec<&str> = rest.workflows.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, [draft.id.as_str()]);
    assert!(rest.next_page_token.is_empty());
    let e = list(
        &mut client,
        &key,
        pb::ListWorkflowsRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&e), ["page_token"]);

    // An update makes a new version; a stale etag and a bad mask are refused.
    let mut change = pb::Workflow {
        id: draft.id.clone(),
        ..birthday("ignored", &template, &gift)
    };
    change
        .nodes
        .insert(0, node("wait", wait_hours(1), "voucher"));
    change.entry_node_key = "wait".into();
    let v2 = update(
        &mut client,
        &key,
        "u1",
        change.clone(),
        &["nodes", "entry_node_key"],
        "v1",
    )
    .await?;
    assert_eq!((v2.version, v2.etag.as_str()), (2, "v2"));
    assert_eq!(v2.display_name, "Birthday", "only the masked fields change");
    assert_eq!(v2.nodes.len(), 3);
    assert_eq!(v2.entry_node_key, "wait");
    assert_precondition(
        update(&mut client, &key, "u2", change.clone(), &["note"], "v1").await,
        "ETAG_MISMATCH",
    );
    for (paths, name) in [(&[][..], "no mask"), (&["state"][..], "not updatable")] {
        let e = update(&mut client, &key, name, change.clone(), paths, "")
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{name}: {e:?}");
        assert_eq!(violated_fields(&e), ["update_mask"], "{name}");
    }
    let e = update(
        &mut client,
        &key,
        "dangling",
        pb::Workflow {
            entry_node_key: "nowhere".into(),
            ..change.clone()
        },
        &["entry_node_key"],
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&e), ["workflow.entry_node_key"]);

    // Activated: the version stays; then only its name and note change.
    let active = activate(&mut client, &key, "a1", &draft.id).await?;
    assert_eq!(active.state, pb::WorkflowState::Active as i32);
    assert_eq!(active.version, 2);
    assert!(active.activate_time.is_some());
    assert_eq!(activate(&mut client, &key, "a1", &draft.id).await?, active);
    assert_precondition(
        activate(&mut client, &key, "a2", &draft.id).await,
        "WORKFLOW_ACTIVE",
    );
    assert_precondition(
        update(&mut client, &key, "u3", change.clone(), &["nodes"], "").await,
        "WORKFLOW_ACTIVE",
    );
    let renamed = update(
        &mut client,
        &key,
        "u4",
        pb::Workflow {
            id: draft.id.clone(),
            display_name: "Birthday voucher".into(),
            note: "09:00 in the partner's zone".into(),
            ..Default::default()
        },
        &["display_name", "note"],
        "v2",
    )
    .await?;
    assert_eq!(renamed.state, pb::WorkflowState::Active as i32);
    assert_eq!(
        (renamed.version, renamed.display_name.as_str()),
        (3, "Birthday voucher")
    );
    assert_eq!(renamed.nodes, active.nodes);
    let e = delete(&mut client, &key, "d1", &draft.id)
        .await
        .unwrap_err();
    assert_eq!(error_reason(&e), "WORKFLOW_ACTIVE", "{e:?}");
    let actives = list(
        &mut client,
        &key,
        pb::ListWorkflowsRequest {
            state: pb::WorkflowState::Active as i32,
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(actives.workflows, std::slice::from_ref(&renamed));

    // Paused (the version stays), changed, activated again.
    let paused = pause(&mut client, &key, "p1", &draft.id).await?;
    assert_eq!(paused.state, pb::WorkflowState::Paused as i32);
    assert_eq!(paused.version, 3);
    assert_precondition(
        pause(&mut client, &key, "p2", &draft.id).await,
        "WORKFLOW_NOT_ACTIVE",
    );
    assert_precondition(
        pause(&mut client, &key, "p3", &third.id).await,
        "WORKFLOW_NOT_ACTIVE",
    );
    let v4 = update(&mut client, &key, "u5", change.clone(), &["nodes"], "v3").await?;
    assert_eq!(
        (v4.version, v4.state),
        (4, pb::WorkflowState::Paused as i32)
    );
    let again = activate(&mut client, &key, "a3", &draft.id).await?;
    assert_eq!(
        (again.version, again.state),
        (4, pb::WorkflowState::Active as i32)
    );
    pause(&mut client, &key, "p4", &draft.id).await?;

    // Activation checks that the templates, rewards, segments and badges it names are the
    // partner's (and a voucher's reward a CAMPAIGN reward).
    let unknown = uuid::Uuid::now_v7().to_string();
    let with_segment = |name: &str, segment: &str| pb::Workflow {
        nodes: vec![
            node(
                "voucher",
                pb::workflow_node::Kind::AddToSegment(pb::AddToSegmentNode {
                    segment_id: segment.into(),
                }),
                "greet",
            ),
            node("greet", send(&template), ""),
        ],
        ..birthday(name, &template, &gift)
    };
    for (name, w, code, said) in [
        (
            "unknown template",
            birthday("t1", &unknown, &gift),
            Code::NotFound,
            "message template",
        ),
        (
            "their template",
            birthday("t2", &their_template, &gift),
            Code::NotFound,
            "message template",
        ),
        (
            "unknown reward",
            birthday("r1", &template, &unknown),
            Code::NotFound,
            "nodes[0].issue_voucher.reward_id",
        ),
        (
            "their reward",
            birthday("r2", &template, &their_gift),
            Code::NotFound,
            "reward",
        ),
        (
            "a coupon",
            birthday("r3", &template, &coupon),
            Code::FailedPrecondition,
            "CAMPAIGN",
        ),
        (
            "unknown segment",
            with_segment("s1", &unknown),
            Code::NotFound,
            "nodes[0].add_to_segment.segment_id",
        ),
    ] {
        let w = create(&mut client, &key, name, w).await?;
        let e = activate(&mut client, &key, name, &w.id).await.unwrap_err();
        assert_eq!(e.code(), code, "{name}: {e:?}");
        assert!(e.message().contains(said), "{name}: {e:?}");
        assert_eq!(
            get(&mut client, &key, &w.id).await?.state,
            pb::WorkflowState::Draft as i32
        );
    }

    // Another partner's workflow is NOT_FOUND, whatever the call.
    let id = draft.id.as_str();
    for e in [
        get(&mut client, &other, id).await.unwrap_err(),
        update(&mut client, &other, "x", change.clone(), &["note"], "")
            .await
            .unwrap_err(),
        activate(&mut client, &other, "x", id).await.unwrap_err(),
        pause(&mut client, &other, "x", id).await.unwrap_err(),
        delete(&mut client, &other, "x", id).await.unwrap_err(),
        client
            .list_workflow_executions(authed(
                pb::ListWorkflowExecutionsRequest {
                    workflow_id: id.into(),
                    ..Default::default()
                },
                &other,
            ))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
    }
    assert!(
        list(&mut client, &other, pb::ListWorkflowsRequest::default())
            .await?
            .workflows
            .is_empty()
    );
    assert_eq!(
        get(&mut client, &reader, id).await.unwrap_err().code(),
        Code::NotFound,
        "another partner's reader"
    );

    // A paused workflow without executions is deleted (a retry answers the same); its ended
    // executions would still list.
    delete(&mut client, &key, "d2", id).await?;
    delete(&mut client, &key, "d2", id).await?;
    assert_eq!(
        get(&mut client, &key, id).await.unwrap_err().code(),
        Code::NotFound
    );
    let e = delete(&mut client, &key, "d3", id).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let executions = client
        .list_workflow_executions(authed(
            pb::ListWorkflowExecutionsRequest {
                workflow_id: id.into(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner();
    assert!(executions.executions.is_empty());
    delete(&mut client, &key, "d4", &third.id).await?;
    suite.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_graphs_name_their_fields_and_executions_need_a_filter() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite.partner_with_key("Graph shop", &ROLES).await?;
    let mut client = suite.campaigns().await?;
    let template = email_template(&mut client, &key).await?;
    let workflow = |nodes: Vec<pb::WorkflowNode>| pb::Workflow {
        display_name: "Graph".into(),
        trigger: Some(pb::WorkflowTrigger {
            kind: Some(pb::workflow_trigger::Kind::Event(pb::EventTrigger {
                event_type_code: "app_installed".into(),
                ..Default::default()
            })),
        }),
        entry_node_key: nodes.first().map(|n| n.key.clone()).unwrap_or_default(),
        nodes,
        ..Default::default()
    };
    let condition = |criterion: seg::Criterion| {
        pb::workflow_node::Kind::Condition(pb::ConditionNode {
            test: Some(pb::condition_node::Test::Criterion(criterion)),
            true_node_key: "greet".into(),
            false_node_key: String::new(),
        })
    };
    let cases: Vec<(&str, pb::Workflow, Vec<&str>)> = vec![
        (
            "a cycle without a wait",
            workflow(vec![
                node("a", add_points(10), "b"),
                node("b", add_points(20), "a"),
            ]),
            vec!["workflow.nodes"],
        ),
        (
            "a dangling next key",
            workflow(vec![node("a", send(&template), "nowhere")]),
            vec!["workflow.nodes[0].next_node_key"],
        ),
        (
            "an unset node kind",
            workflow(vec![
                node("a", send(&template), "b"),
                pb::WorkflowNode {
                    key: "b".into(),
                    ..Default::default()
                },
            ]),
            vec!["workflow.nodes[1].kind"],
        ),
        (
            "an unknown criterion field",
            workflow(vec![
                node("check", condition(city_is("customer.shoe_size", "42")), ""),
                node("greet", send(&template), ""),
            ]),
            vec!["workflow.nodes[0].condition.criterion.condition.field"],
        ),
        (
            "an event field in a date trigger's criterion",
            pb::Workflow {
                trigger: Some(birth_date_trigger(Some(city_is("event.store", "x")))),
                ..workflow(vec![node("greet", send(&template), "")])
            },
            vec!["workflow.trigger.date.criterion.condition.field"],
        ),
        (
            "everything at once",
            pb::Workflow {
                display_name: String::new(),
                trigger: None,
                ..workflow(vec![
                    node("a", add_points(0), "a"),
                    node("b", send("not-a-uuid"), ""),
                ])
            },
            vec![
                "workflow.nodes[1].send_message.message_template_id",
                "workflow.display_name",
                "workflow.trigger",
                "workflow.nodes[0].add_points.points",
                "workflow.nodes[1]",
                "workflow.nodes",
            ],
        ),
    ];
    for (name, w, fields) in cases {
        let e = create(&mut client, &key, name, w).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{name}: {e:?}");
        assert_eq!(violated_fields(&e), fields, "{name}");
    }
    // A cycle through a wait is a loop; event fields are fine in a condition.
    let looped = create(
        &mut client,
        &key,
        "loop",
        workflow(vec![
            node("check", condition(city_is("event.store", "praha_1")), ""),
            node("greet", send(&template), "later"),
            node("later", wait_hours(24 * 7), "check"),
        ]),
    )
    .await?;
    assert_eq!(looped.nodes.len(), 3);
    assert_eq!(
        activate(&mut client, &key, "loop", &looped.id).await?.state,
        pb::WorkflowState::Active as i32
    );

    // Executions are listed per workflow or per customer, never all at once.
    let list = |request: pb::ListWorkflowExecutionsRequest| {
        let mut client = client.clone();
        let key = key.clone();
        async move {
            client
                .list_workflow_executions(authed(request, &key))
                .await
                .map(|r| r.into_inner())
        }
    };
    let e = list(pb::ListWorkflowExecutionsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&e), ["workflow_id"]);
    let e = list(pb::ListWorkflowExecutionsRequest {
        workflow_id: looped.id.clone(),
        states: vec![pb::ExecutionState::Running as i32, 0],
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&e), ["states[1]"]);
    let none = list(pb::ListWorkflowExecutionsRequest {
        workflow_id: looped.id.clone(),
        states: vec![pb::ExecutionState::Waiting as i32],
        page_size: 10,
        ..Default::default()
    })
    .await?;
    assert!(none.executions.is_empty() && none.next_page_token.is_empty());
    let by_customer = list(pb::ListWorkflowExecutionsRequest {
        customer_id: uuid::Uuid::now_v7().to_string(),
        ..Default::default()
    })
    .await?;
    assert!(by_customer.executions.is_empty());
    let e = list(pb::ListWorkflowExecutionsRequest {
        workflow_id: uuid::Uuid::now_v7().to_string(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "an unknown workflow");

    // An unknown execution is NOT_FOUND; a malformed id names the field.
    let unknown = uuid::Uuid::now_v7().to_string();
    let e = client
        .get_workflow_execution(authed(
            pb::GetWorkflowExecutionRequest {
                workflow_execution_id: unknown.clone(),
            },
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let cancel = |id: &str| pb::CancelWorkflowExecutionRequest {
        idempotency_key: format!("cancel-{id}"),
        workflow_execution_id: id.into(),
        reason: "customer asked".into(),
    };
    let e = client
        .cancel_workflow_execution(authed(cancel(&unknown), &key))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = client
        .cancel_workflow_execution(authed(cancel("nope"), &key))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&e), ["workflow_execution_id"]);
    suite.stop().await
}

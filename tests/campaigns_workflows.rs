//! Marketing-automation workflows end to end: every service a process, PostgreSQL and Redis.
//!
//! - A birthday workflow (date trigger on `customer.birth_date`) issues a campaign voucher to
//!   the customer whose birthday it is and emails its code; the daily scan runs every second
//!   here and never starts the same run twice; a customer whose birthday is tomorrow gets
//!   nothing yet.
//! - A workflow started by a tracked event adds points, branches on a criterion reading the
//!   event (`event.store`), waits, and emails: the campaigns service is killed with SIGKILL
//!   while executions wait, restarted, and the waits resume — every step ran once (one
//!   message, one points posting); a customer without consent has the message step
//!   SKIPPED with the reason; a new version published meanwhile leaves the waiting
//!   execution on its own; an execution cancelled while waiting sends nothing; the other
//!   branch ends without a message.
use std::time::Duration;

use chrono::{Datelike, Utc};
use loyalty_platform::time::to_timestamp;
use loyalty_proto::{
    campaigns::v1::{self as pb, campaigns_service_client::CampaignsServiceClient},
    identity::v1::{self as identity, identity_service_client::IdentityServiceClient},
    rewards::v1 as rewards,
    segmentation::v1 as seg,
    types::v1 as types,
    wallet::v1 as wallet,
};
use loyalty_testkit::{
    Backend, REDIS_URL, Suite, SuiteOptions, authed, consent_type, eventually, grant_consent,
    reward_of,
};
use tonic::transport::Channel;

type Identity = IdentityServiceClient<Channel>;
type Campaigns = CampaignsServiceClient<Channel>;

const ROLES: [identity::Role; 1] = [identity::Role::Admin];

fn options(outbox: &std::path::Path) -> SuiteOptions {
    SuiteOptions::default()
        .env(
            "campaigns",
            "LOYALTY_DELIVERY__FILE_PATH",
            outbox.display().to_string(),
        )
        .env("campaigns", "LOYALTY_DELIVERY__QUEUE__POLL_MS", "50")
        .env("campaigns", "LOYALTY_AUTOMATION__POLL_MS", "50")
        .env("campaigns", "LOYALTY_AUTOMATION__DATE_SCAN_SECS", "1")
        .env("campaigns", "LOYALTY_AUTOMATION__CLAIM_TTL_SECS", "5")
}

fn outbox_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn lines_to(path: &std::path::Path, address: &str) -> Vec<serde_json::Value> {
    outbox_lines(path)
        .into_iter()
        .filter(|l| l.to_string().contains(address))
        .collect()
}

/// A customer with consents to data processing and to the email newsletter.
async fn customer(
    identity: &mut Identity,
    key: &str,
    consents: &[String],
    name: &str,
    birth_date: &str,
) -> anyhow::Result<String> {
    let id = identity
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: name.into(),
                customer: Some(identity::Customer {
                    first_name: name.into(),
                    email: format!("{}@example.com", name.to_lowercase()),
                    birth_date: birth_date.into(),
                    city: "Praha".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            key,
        ))
        .await?
        .into_inner()
        .customer
        .expect("customer")
        .id;
    for c in consents {
        grant_consent(identity, key, &id, c).await?;
    }
    Ok(id)
}

async fn consents(identity: &mut Identity, key: &str) -> anyhow::Result<Vec<String>> {
    Ok(vec![
        consent_type(
            identity,
            key,
            "gdpr",
            identity::ConsentPurpose::DataProcessing,
            &[],
        )
        .await?,
        consent_type(
            identity,
            key,
            "newsletter",
            identity::ConsentPurpose::Marketing,
            &[types::CommunicationChannel::Email],
        )
        .await?,
    ])
}

async fn email_template(
    campaigns: &mut Campaigns,
    key: &str,
    body: &str,
) -> anyhow::Result<String> {
    Ok(campaigns
        .create_message_template(authed(
            pb::CreateMessageTemplateRequest {
                idempotency_key: format!("template-{body}"),
                message_template: Some(pb::MessageTemplate {
                    display_name: "Greeting".into(),
                    channel: pb::Channel::Email as i32,
                    kind: pb::TemplateKind::Campaign as i32,
                    subject: "For you, {{ customer.first_name }}".into(),
                    body: body.into(),
                    text_body: body.into(),
                    sender_address: "club@shop.example".into(),
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

fn node(key: &str, kind: pb::workflow_node::Kind, next: &str) -> pb::WorkflowNode {
    pb::WorkflowNode {
        key: key.into(),
        display_name: key.into(),
        kind: Some(kind),
        next_node_key: next.into(),
    }
}

async fn active_workflow(
    campaigns: &mut Campaigns,
    key: &str,
    w: pb::Workflow,
) -> anyhow::Result<pb::Workflow> {
    let created = campaigns
        .create_workflow(authed(
            pb::CreateWorkflowRequest {
                idempotency_key: format!("create-{}", w.display_name),
                workflow: Some(w),
            },
            key,
        ))
        .await?
        .into_inner()
        .workflow
        .expect("workflow");
    Ok(campaigns
        .activate_workflow(authed(
            pb::ActivateWorkflowRequest {
                idempotency_key: format!("activate-{}", created.id),
                workflow_id: created.id.clone(),
            },
            key,
        ))
        .await?
        .into_inner()
        .workflow
        .expect("workflow"))
}

async fn executions(
    campaigns: &Campaigns,
    key: &str,
    workflow_id: &str,
) -> anyhow::Result<Vec<pb::WorkflowExecution>> {
    Ok(campaigns
        .clone()
        .list_workflow_executions(authed(
            pb::ListWorkflowExecutionsRequest {
                workflow_id: workflow_id.into(),
                page_size: 1000,
                ..Default::default()
            },
            key,
        ))
        .await?
        .into_inner()
        .executions)
}

async fn execution(
    campaigns: &Campaigns,
    key: &str,
    id: &str,
) -> anyhow::Result<pb::WorkflowExecution> {
    Ok(campaigns
        .clone()
        .get_workflow_execution(authed(
            pb::GetWorkflowExecutionRequest {
                workflow_execution_id: id.into(),
            },
            key,
        ))
        .await?
        .into_inner()
        .execution
        .expect("execution"))
}

/// The customer's execution once it is in `state`.
async fn execution_in(
    campaigns: &Campaigns,
    key: &str,
    workflow_id: &str,
    customer_id: &str,
    state: pb::ExecutionState,
) -> anyhow::Result<pb::WorkflowExecution> {
    let found = eventually(Duration::from_secs(60), || async move {
        for e in executions(campaigns, key, workflow_id).await? {
            if e.customer_id == customer_id && e.state == state as i32 {
                return Ok(Some(execution(campaigns, key, &e.id).await?));
            }
        }
        Ok(None)
    })
    .await;
    if found.is_err() {
        // Say where it is instead.
        for e in executions(campaigns, key, workflow_id).await? {
            if e.customer_id == customer_id {
                let e = execution(campaigns, key, &e.id).await?;
                anyhow::bail!("not {state:?} in 60 s: {e:#?}");
            }
        }
        anyhow::bail!("no execution of {workflow_id} for {customer_id} in 60 s");
    }
    found
}

fn outcomes(e: &pb::WorkflowExecution) -> Vec<(String, i32)> {
    e.steps
        .iter()
        .map(|s| (s.node_key.clone(), s.outcome))
        .collect()
}

const DONE: i32 = pb::StepOutcome::Done as i32;

#[tokio::test(flavor = "multi_thread")]
async fn a_birthday_workflow_emails_a_voucher_code_once_on_the_day() -> anyhow::Result<()> {
    let files = tempfile::tempdir()?;
    let outbox = files.path().join("outbox.jsonl");
    let suite = Suite::start_with(Backend::Postgres, REDIS_URL, &options(&outbox)).await?;
    let (_, key) = suite.partner_with_key("Birthday shop", &ROLES).await?;
    let mut identity = suite.identity().await?;
    let mut campaigns = suite.campaigns().await?;
    let mut rewards = suite.rewards().await?;

    // The partner's time zone is UTC: today's birthdays are today's in UTC (2000 was a leap
    // year, so 29 February works too).
    let today = Utc::now().date_naive();
    let tomorrow = today.succ_opt().expect("a tomorrow");
    let on = |d: chrono::NaiveDate| format!("2000-{:02}-{:02}", d.month(), d.day());
    let consents = consents(&mut identity, &key).await?;
    let jana = customer(&mut identity, &key, &consents, "Jana", &on(today)).await?;
    let petr = customer(&mut identity, &key, &consents, "Petr", &on(tomorrow)).await?;

    let gift = reward_of(
        &mut rewards,
        &key,
        rewards::RewardType::Campaign,
        "Birthday 10 %",
        "BDAY",
    )
    .await?;
    let greeting = email_template(
        &mut campaigns,
        &key,
        "Happy birthday {{ customer.first_name }}! Your code: {{ voucher.code }}",
    )
    .await?;
    use pb::workflow_node::Kind;
    let birthday = active_workflow(
        &mut campaigns,
        &key,
        pb::Workflow {
            display_name: "Birthday voucher".into(),
            trigger: Some(pb::WorkflowTrigger {
                kind: Some(pb::workflow_trigger::Kind::Date(pb::DateTrigger {
                    customer_date_field: "customer.birth_date".into(),
                    offset_days: 0,
                    hour_of_day: 0,
                    ..Default::default()
                })),
            }),
            nodes: vec![
                node(
                    "gift",
                    Kind::IssueVoucher(pb::IssueVoucherNode {
                        reward_id: gift.clone(),
                    }),
                    "greet",
                ),
                node(
                    "greet",
                    Kind::SendMessage(pb::SendMessageNode {
                        message_template_id: greeting.clone(),
                    }),
                    "",
                ),
            ],
            entry_node_key: "gift".into(),
            reentry_policy: pb::ReentryPolicy::AfterCompletion as i32,
            ..Default::default()
        },
    )
    .await?;

    let done = execution_in(
        &campaigns,
        &key,
        &birthday.id,
        &jana,
        pb::ExecutionState::Completed,
    )
    .await?;
    assert_eq!(
        outcomes(&done),
        vec![("gift".to_owned(), DONE), ("greet".to_owned(), DONE)]
    );
    assert!(done.steps[0].result_reference.starts_with("voucher:"));
    assert!(done.steps[1].result_reference.starts_with("message:"));
    assert!(done.trigger_event_id.is_empty(), "a date has no event");

    let voucher_id = done.steps[0]
        .result_reference
        .trim_start_matches("voucher:");
    let voucher = rewards
        .get_voucher(authed(
            rewards::GetVoucherRequest {
                voucher_id: voucher_id.into(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .voucher
        .expect("voucher");
    assert_eq!(voucher.customer_id, jana);
    assert!(voucher.code.starts_with("BDAY"), "{}", voucher.code);
    let mail = eventually(Duration::from_secs(30), || {
        let outbox = outbox.clone();
        async move { Ok(lines_to(&outbox, "jana@example.com").pop()) }
    })
    .await?;
    assert!(
        mail.to_string().contains(&voucher.code),
        "the greeting carries the code: {mail}"
    );

    // More scans of the same day start nothing new; Petr's birthday is tomorrow.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let all = executions(&campaigns, &key, &birthday.id).await?;
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(all.iter().all(|e| e.customer_id != petr));
    assert_eq!(lines_to(&outbox, "jana@example.com").len(), 1);
    assert!(lines_to(&outbox, "petr@example.com").is_empty());
    suite.stop().await
}

fn store_is_prague() -> seg::Criterion {
    seg::Criterion {
        kind: Some(seg::criterion::Kind::Condition(seg::Condition {
            field: "event.store".into(),
            operator: seg::ComparisonOperator::Equal as i32,
            values: vec![seg::Value {
                kind: Some(seg::value::Kind::StringValue("prague".into())),
            }],
        })),
    }
}

async fn track(
    identity: &mut Identity,
    key: &str,
    customer_id: &str,
    store: &str,
) -> anyhow::Result<()> {
    identity
        .track_event(authed(
            identity::TrackEventRequest {
                idempotency_key: format!("visit-{customer_id}"),
                customer_id: customer_id.into(),
                event_type_id: "store_visit".into(),
                properties: [("store".to_owned(), store.to_owned())].into(),
                ..Default::default()
            },
            key,
        ))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_workflow_steps_once_through_a_kill_9_and_a_cancellation() -> anyhow::Result<()> {
    let files = tempfile::tempdir()?;
    let outbox = files.path().join("outbox.jsonl");
    let mut suite = Suite::start_with(Backend::Postgres, REDIS_URL, &options(&outbox)).await?;
    let (_, key) = suite.partner_with_key("Visit shop", &ROLES).await?;
    let mut identity = suite.identity().await?;
    let mut campaigns = suite.campaigns().await?;
    let mut wallet = suite.wallet().await?;

    identity
        .create_event_type(authed(
            identity::CreateEventTypeRequest {
                idempotency_key: "store-visit".into(),
                event_type: Some(identity::EventType {
                    code: "store_visit".into(),
                    display_name: "Store visit".into(),
                    properties: vec![identity::EventPropertyDefinition {
                        key: "store".into(),
                        display_name: "Store".into(),
                        r#type: identity::EventPropertyType::String as i32,
                        required: true,
                    }],
                    ..Default::default()
                }),
            },
            &key,
        ))
        .await?;
    let consents = consents(&mut identity, &key).await?;
    let jana = customer(&mut identity, &key, &consents, "Jana", "").await?;
    let petr = customer(&mut identity, &key, &consents, "Petr", "").await?;
    let eva = customer(&mut identity, &key, &consents, "Eva", "").await?;
    // Ota never consented to anything: his message is skipped, with the reason.
    let ota = customer(&mut identity, &key, &[], "Ota", "").await?;
    let thanks = email_template(
        &mut campaigns,
        &key,
        "Thanks for your visit, {{ customer.first_name }}",
    )
    .await?;
    // Long enough for the kill and the restart to happen while everyone waits.
    let wake = Utc::now() + chrono::Duration::seconds(20);
    use pb::workflow_node::Kind;
    let visits = active_workflow(
        &mut campaigns,
        &key,
        pb::Workflow {
            display_name: "Store visit".into(),
            trigger: Some(pb::WorkflowTrigger {
                kind: Some(pb::workflow_trigger::Kind::Event(pb::EventTrigger {
                    event_type_code: "store_visit".into(),
                    ..Default::default()
                })),
            }),
            nodes: vec![
                node(
                    "points",
                    Kind::AddPoints(pb::AddPointsNode {
                        points: 100,
                        ..Default::default()
                    }),
                    "prague",
                ),
                node(
                    "prague",
                    Kind::Condition(pb::ConditionNode {
                        test: Some(pb::condition_node::Test::Criterion(store_is_prague())),
                        true_node_key: "later".into(),
                        false_node_key: String::new(),
                    }),
                    "",
                ),
                node(
                    "later",
                    Kind::Wait(pb::WaitNode {
                        until_hour_of_day: -1,
                        until_time: Some(to_timestamp(wake)),
                        ..Default::default()
                    }),
                    "thanks",
                ),
                node(
                    "thanks",
                    Kind::SendMessage(pb::SendMessageNode {
                        message_template_id: thanks.clone(),
                    }),
                    "",
                ),
            ],
            entry_node_key: "points".into(),
            reentry_policy: pb::ReentryPolicy::Once as i32,
            ..Default::default()
        },
    )
    .await?;

    track(&mut identity, &key, &jana, "prague").await?;
    track(&mut identity, &key, &eva, "prague").await?;
    track(&mut identity, &key, &petr, "brno").await?;
    track(&mut identity, &key, &ota, "prague").await?;
    let waiting = execution_in(
        &campaigns,
        &key,
        &visits.id,
        &jana,
        pb::ExecutionState::Waiting,
    )
    .await?;
    assert_eq!(
        outcomes(&waiting),
        vec![
            ("points".to_owned(), DONE),
            ("prague".to_owned(), DONE),
            ("later".to_owned(), DONE)
        ]
    );
    assert!(waiting.steps[1].condition_result);
    assert_eq!(waiting.current_node_key, "thanks");
    let eva_waiting = execution_in(
        &campaigns,
        &key,
        &visits.id,
        &eva,
        pb::ExecutionState::Waiting,
    )
    .await?;
    // Petr visited Brno: points, then the condition ends it.
    let brno = execution_in(
        &campaigns,
        &key,
        &visits.id,
        &petr,
        pb::ExecutionState::Completed,
    )
    .await?;
    assert_eq!(
        outcomes(&brno),
        vec![("points".to_owned(), DONE), ("prague".to_owned(), DONE)]
    );
    assert!(!brno.steps[1].condition_result);

    // Eva's run is cancelled while it waits.
    let cancelled = campaigns
        .cancel_workflow_execution(authed(
            pb::CancelWorkflowExecutionRequest {
                idempotency_key: "cancel-eva".into(),
                workflow_execution_id: eva_waiting.id.clone(),
                reason: "asked us to".into(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .execution
        .expect("execution");
    assert_eq!(cancelled.state, pb::ExecutionState::Cancelled as i32);

    // A new version while Jana waits (paused, changed, activated again): her execution
    // stays on the version it started with.
    campaigns
        .pause_workflow(authed(
            pb::PauseWorkflowRequest {
                idempotency_key: "pause".into(),
                workflow_id: visits.id.clone(),
            },
            &key,
        ))
        .await?;
    let other_thanks = email_template(&mut campaigns, &key, "Version two says hi").await?;
    let mut v2 = visits.clone();
    for n in &mut v2.nodes {
        if n.key == "thanks" {
            n.kind = Some(Kind::SendMessage(pb::SendMessageNode {
                message_template_id: other_thanks.clone(),
            }));
        }
    }
    let v2 = campaigns
        .update_workflow(authed(
            pb::UpdateWorkflowRequest {
                idempotency_key: "v2".into(),
                workflow: Some(v2),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["nodes".into()],
                }),
                etag: String::new(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .workflow
        .expect("workflow");
    assert_eq!(v2.version, 2);
    campaigns
        .activate_workflow(authed(
            pb::ActivateWorkflowRequest {
                idempotency_key: "again".into(),
                workflow_id: visits.id.clone(),
            },
            &key,
        ))
        .await?;

    // The engine dies while Jana waits and comes back: her wait resumes on time.
    suite.kill("campaigns").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    suite.restart("campaigns").await?;
    let campaigns = suite.campaigns().await?;
    let done = execution_in(
        &campaigns,
        &key,
        &visits.id,
        &jana,
        pb::ExecutionState::Completed,
    )
    .await?;
    assert_eq!(
        outcomes(&done),
        vec![
            ("points".to_owned(), DONE),
            ("prague".to_owned(), DONE),
            ("later".to_owned(), DONE),
            ("thanks".to_owned(), DONE)
        ]
    );
    assert_eq!(done.workflow_version, 1);
    let mail = eventually(Duration::from_secs(30), || {
        let outbox = outbox.clone();
        async move { Ok(lines_to(&outbox, "jana@example.com").pop()) }
    })
    .await?;
    assert!(
        mail.to_string().contains("Thanks for your visit"),
        "version 1's message: {mail}"
    );
    // Once more of everything: a second visit does not start again (re-entry ONCE).
    identity
        .track_event(authed(
            identity::TrackEventRequest {
                idempotency_key: "jana-again".into(),
                customer_id: jana.clone(),
                event_type_id: "store_visit".into(),
                properties: [("store".to_owned(), "prague".to_owned())].into(),
                ..Default::default()
            },
            &key,
        ))
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = executions(&campaigns, &key, &visits.id).await?;
    assert_eq!(all.len(), 4, "one execution per customer: {all:?}");
    let skipped = execution_in(
        &campaigns,
        &key,
        &visits.id,
        &ota,
        pb::ExecutionState::Completed,
    )
    .await?;
    let last = skipped.steps.last().expect("steps");
    assert_eq!(
        (last.node_key.as_str(), last.outcome),
        ("thanks", pb::StepOutcome::Skipped as i32)
    );
    assert_eq!(last.error, "no consent to personal data processing");
    assert!(lines_to(&outbox, "ota@example.com").is_empty());
    assert_eq!(lines_to(&outbox, "jana@example.com").len(), 1);
    assert!(lines_to(&outbox, "eva@example.com").is_empty(), "cancelled");
    assert!(lines_to(&outbox, "petr@example.com").is_empty(), "Brno");
    let eva_now = execution(&campaigns, &key, &eva_waiting.id).await?;
    assert_eq!(eva_now.state, pb::ExecutionState::Cancelled as i32);
    // One posting of 100 points each, however often the steps were replayed.
    for who in [&jana, &petr, &eva, &ota] {
        let balance = wallet
            .get_balance(authed(
                wallet::GetBalanceRequest {
                    customer_id: who.clone(),
                    points_type_id: String::new(),
                },
                &key,
            ))
            .await?
            .into_inner()
            .balance
            .expect("balance");
        assert_eq!(balance.available_points, 100);
    }
    suite.stop().await
}

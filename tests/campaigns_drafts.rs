//! Campaign drafts end to end (identity, segmentation and campaigns as processes,
//! PostgreSQL): a campaign targets one of the partner's audiences of its channel with one of
//! its CAMPAIGN templates of that channel; an audience another campaign locked is refused;
//! drafts are updated under their etag and deleted; a draft cannot pause or cancel; a launch
//! refuses an empty audience and locks a full one for good; a scheduled campaign keeps its
//! targets, pauses, resumes and is cancelled; another partner sees nothing.
use std::time::Duration;

use loyalty_proto::{
    campaigns::v1 as pb, identity::v1 as identity, segmentation::v1 as seg, types::v1 as types,
};
use loyalty_testkit::{
    Backend, REDIS_URL, Suite, SuiteOptions, authed, email_newsletter, error_reason, eventually,
    grant_consent, violated_fields,
};
use tonic::Code;

fn template(name: &str, channel: pb::Channel, kind: pb::TemplateKind) -> pb::MessageTemplate {
    pb::MessageTemplate {
        display_name: name.into(),
        channel: channel as i32,
        kind: kind as i32,
        subject: if channel == pb::Channel::Email {
            "Spring".into()
        } else {
            String::new()
        },
        body: "Hi {{ customer.first_name }}".into(),
        ..Default::default()
    }
}

fn audience(name: &str, channel: types::CommunicationChannel) -> seg::CreateAudienceRequest {
    seg::CreateAudienceRequest {
        idempotency_key: name.into(),
        audience: Some(seg::Audience {
            display_name: name.into(),
            channel: channel as i32,
            criterion: Some(seg::Criterion {
                kind: Some(seg::criterion::Kind::Condition(seg::Condition {
                    field: "customer.city".into(),
                    operator: seg::ComparisonOperator::Equal as i32,
                    values: vec![seg::Value {
                        kind: Some(seg::value::Kind::StringValue("Praha".into())),
                    }],
                })),
            }),
            ..Default::default()
        }),
    }
}

fn campaign(name: &str, template_id: &str, audience_id: &str) -> pb::Campaign {
    pb::Campaign {
        display_name: name.into(),
        channel: pb::Channel::Email as i32,
        message_template_id: template_id.into(),
        audience_id: audience_id.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn drafts_target_the_partners_audiences_and_templates_of_their_channel() -> anyhow::Result<()>
{
    // Launches need an adapter for the channel: email goes to a file here.
    let files = tempfile::tempdir()?;
    let options = SuiteOptions::default().env(
        "campaigns",
        "LOYALTY_DELIVERY__FILE_PATH",
        files.path().join("outbox.jsonl").display().to_string(),
    );
    let suite = Suite::start_with(Backend::Postgres, REDIS_URL, &options).await?;
    let roles = [
        identity::Role::Marketing,
        identity::Role::Support,
        identity::Role::Service,
    ];
    let (_, key) = suite.partner_with_key("Campaign shop", &roles).await?;
    let (_, other_key) = suite.partner_with_key("Other shop", &roles).await?;
    let mut identity = suite.identity().await?;
    let mut segmentation = suite.segmentation().await?;
    let mut client = suite.campaigns().await?;

    let mut templates = Vec::new();
    for (name, channel, kind) in [
        ("email", pb::Channel::Email, pb::TemplateKind::Campaign),
        ("sms", pb::Channel::Sms, pb::TemplateKind::Campaign),
        ("system", pb::Channel::Email, pb::TemplateKind::System),
    ] {
        let t = client
            .create_message_template(authed(
                pb::CreateMessageTemplateRequest {
                    idempotency_key: name.into(),
                    message_template: Some(template(name, channel, kind)),
                },
                &key,
            ))
            .await?
            .into_inner()
            .message_template
            .expect("template");
        templates.push(t.id);
    }
    let (email, sms, system) = (&templates[0], &templates[1], &templates[2]);
    let audiences = segmentation.clone();
    let new_audience = |req: seg::CreateAudienceRequest| {
        let mut segmentation = audiences.clone();
        let key = key.clone();
        async move {
            anyhow::Ok(
                segmentation
                    .create_audience(authed(req, &key))
                    .await?
                    .into_inner()
                    .audience
                    .expect("audience"),
            )
        }
    };
    let newsletter =
        new_audience(audience("newsletter", types::CommunicationChannel::Email)).await?;
    let texts = new_audience(audience("texts", types::CommunicationChannel::Sms)).await?;

    let create = |idempotency_key: &str, c: pb::Campaign, who: &str| {
        authed(
            pb::CreateCampaignRequest {
                idempotency_key: idempotency_key.into(),
                campaign: Some(c),
            },
            who,
        )
    };
    let draft = client
        .create_campaign(create(
            "spring",
            campaign("Spring", email, &newsletter.id),
            &key,
        ))
        .await?
        .into_inner()
        .campaign
        .expect("campaign");
    assert_eq!(draft.state, pb::CampaignState::Draft as i32);
    assert_eq!(draft.time_zone, "UTC");
    let again = client
        .create_campaign(create(
            "spring",
            campaign("Spring", email, &newsletter.id),
            &key,
        ))
        .await?
        .into_inner()
        .campaign
        .expect("campaign");
    assert_eq!(again.id, draft.id, "a retry answers the same draft");

    // Templates and audiences of another channel, a system template, unknown ones.
    for (name, c, field) in [
        (
            "sms-template",
            campaign("X", sms, &newsletter.id),
            "campaign.message_template_id",
        ),
        (
            "system-template",
            campaign("X", system, &newsletter.id),
            "campaign.message_template_id",
        ),
        (
            "sms-audience",
            campaign("X", email, &texts.id),
            "campaign.audience_id",
        ),
    ] {
        let e = client
            .create_campaign(create(name, c, &key))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{name}: {e:?}");
        assert_eq!(violated_fields(&e), [field], "{name}");
    }
    let unknown = uuid::Uuid::now_v7().to_string();
    for (name, c) in [
        ("no-template", campaign("X", &unknown, &newsletter.id)),
        ("no-audience", campaign("X", email, &unknown)),
    ] {
        let e = client
            .create_campaign(create(name, c, &key))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{name}: {e:?}");
    }
    // Another partner cannot use this partner's template or audience.
    let e = client
        .create_campaign(create(
            "theirs",
            campaign("X", email, &newsletter.id),
            &other_key,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // An audience another campaign was launched at is refused: Jana, with the newsletter
    // consent, makes it non-empty so that it can be locked.
    let consent_type = email_newsletter(&mut identity, &key).await?;
    let jana = identity
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: "jana".into(),
                customer: Some(identity::Customer {
                    first_name: "Jana".into(),
                    email: "jana@example.com".into(),
                    city: "Praha".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .customer
        .expect("customer")
        .id;
    grant_consent(&mut identity, &key, &jana, &consent_type).await?;
    let mut attempt = 0;
    let full = eventually(Duration::from_secs(30), || {
        attempt += 1;
        let new_audience = &new_audience;
        async move {
            let a = new_audience(audience(
                &format!("full-{attempt}"),
                types::CommunicationChannel::Email,
            ))
            .await?;
            Ok((a.member_count == 1).then_some(a))
        }
    })
    .await?;
    segmentation
        .lock_audience(authed(
            seg::LockAudienceRequest {
                idempotency_key: "lock".into(),
                audience_id: full.id.clone(),
                campaign_id: uuid::Uuid::now_v7().to_string(),
            },
            &key,
        ))
        .await?;
    let e = client
        .create_campaign(create("locked", campaign("X", email, &full.id), &key))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&e), "AUDIENCE_LOCKED");

    // A draft changes under its etag; a bad time zone names its field.
    let update = |etag: &str, idempotency_key: &str, c: pb::Campaign, paths: &[&str]| {
        authed(
            pb::UpdateCampaignRequest {
                idempotency_key: idempotency_key.into(),
                campaign: Some(pb::Campaign {
                    id: draft.id.clone(),
                    ..c
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                }),
                etag: etag.into(),
            },
            &key,
        )
    };
    let windowed = pb::Campaign {
        display_name: "Spring sale".into(),
        send_window: Some(types::HourRange {
            start_hour: 9,
            end_hour: 20,
        }),
        time_zone: "Europe/Prague".into(),
        send_rate_per_minute: 600,
        ..Default::default()
    };
    let paths = [
        "display_name",
        "send_window",
        "time_zone",
        "send_rate_per_minute",
    ];
    let stale = client
        .update_campaign(update("v9", "u1", windowed.clone(), &paths))
        .await
        .unwrap_err();
    assert_eq!(error_reason(&stale), "ETAG_MISMATCH");
    let mars = pb::Campaign {
        time_zone: "Mars/Olympus".into(),
        ..Default::default()
    };
    let e = client
        .update_campaign(update(&draft.etag, "u2", mars, &["time_zone"]))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&e), ["campaign.time_zone"]);
    let updated = client
        .update_campaign(update(&draft.etag, "u3", windowed, &paths))
        .await?
        .into_inner()
        .campaign
        .expect("campaign");
    assert_eq!(updated.display_name, "Spring sale");
    assert_eq!(updated.time_zone, "Europe/Prague");
    assert_eq!(
        updated.send_window.map(|w| (w.start_hour, w.end_hour)),
        Some((9, 20))
    );
    assert_ne!(updated.etag, draft.etag);

    // Listed as a draft; a draft neither pauses nor cancels.
    let drafts = client
        .list_campaigns(authed(
            pb::ListCampaignsRequest {
                state: pb::CampaignState::Draft as i32,
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .campaigns;
    assert_eq!(
        drafts.iter().map(|c| &c.id).collect::<Vec<_>>(),
        [&draft.id]
    );
    let e = client
        .pause_campaign(authed(
            pb::PauseCampaignRequest {
                idempotency_key: "pause".into(),
                campaign_id: draft.id.clone(),
            },
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(error_reason(&e), "CAMPAIGN_NOT_LAUNCHED");
    let e = client
        .cancel_campaign(authed(
            pb::CancelCampaignRequest {
                idempotency_key: "cancel".into(),
                campaign_id: draft.id.clone(),
                reason: String::new(),
            },
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(error_reason(&e), "CAMPAIGN_NOT_LAUNCHED");

    // Launching: an empty audience is refused; a full one is locked for good by the launch.
    let launch =
        |idempotency_key: &str, campaign_id: &str, schedule: Option<prost_types::Timestamp>| {
            authed(
                pb::LaunchCampaignRequest {
                    idempotency_key: idempotency_key.into(),
                    campaign_id: campaign_id.into(),
                    schedule_time: schedule,
                },
                &key,
            )
        };
    let e = client
        .launch_campaign(launch("launch-empty", &draft.id, None))
        .await
        .unwrap_err();
    assert_eq!(error_reason(&e), "AUDIENCE_EMPTY");
    let target = new_audience(audience("target", types::CommunicationChannel::Email)).await?;
    assert_eq!(target.member_count, 1);
    let launchable = client
        .create_campaign(create(
            "autumn",
            campaign("Autumn", email, &target.id),
            &key,
        ))
        .await?
        .into_inner()
        .campaign
        .expect("campaign");
    let tomorrow = prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp() + 86_400,
        nanos: 0,
    };
    let scheduled = client
        .launch_campaign(launch("launch", &launchable.id, Some(tomorrow)))
        .await?
        .into_inner()
        .campaign
        .expect("campaign");
    assert_eq!(scheduled.state, pb::CampaignState::Scheduled as i32);
    assert_eq!(
        scheduled.schedule_time.map(|t| t.seconds),
        Some(tomorrow.seconds)
    );
    let retried = client
        .launch_campaign(launch("launch", &launchable.id, Some(tomorrow)))
        .await?
        .into_inner()
        .campaign
        .expect("campaign");
    assert_eq!(retried, scheduled, "a retry answers the same launch");
    let locked = segmentation
        .get_audience(authed(
            seg::GetAudienceRequest {
                audience_id: target.id.clone(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .audience
        .expect("audience");
    assert_eq!(locked.state, seg::AudienceState::Locked as i32);
    assert_eq!(locked.campaign_id, launchable.id);
    let e = client
        .create_campaign(create(
            "second",
            campaign("Second", email, &target.id),
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(error_reason(&e), "AUDIENCE_LOCKED");
    let e = client
        .launch_campaign(launch("launch-again", &launchable.id, None))
        .await
        .unwrap_err();
    assert_eq!(error_reason(&e), "CAMPAIGN_ALREADY_LAUNCHED");

    // Scheduled: only the name and note change; it pauses, resumes and is cancelled, and
    // the audience stays locked.
    let change = |idempotency_key: &str, c: pb::Campaign, paths: &[&str]| {
        authed(
            pb::UpdateCampaignRequest {
                idempotency_key: idempotency_key.into(),
                campaign: Some(pb::Campaign {
                    id: launchable.id.clone(),
                    ..c
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                }),
                etag: String::new(),
            },
            &key,
        )
    };
    let e = client
        .update_campaign(change(
            "retarget",
            pb::Campaign {
                audience_id: newsletter.id.clone(),
                ..Default::default()
            },
            &["audience_id"],
        ))
        .await
        .unwrap_err();
    assert_eq!(error_reason(&e), "CAMPAIGN_ALREADY_LAUNCHED");
    client
        .update_campaign(change(
            "rename",
            pb::Campaign {
                note: "moved to tomorrow".into(),
                ..Default::default()
            },
            &["note"],
        ))
        .await?;
    let id = launchable.id.clone();
    let paused = client
        .pause_campaign(authed(
            pb::PauseCampaignRequest {
                idempotency_key: "pause-autumn".into(),
                campaign_id: id.clone(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .campaign
        .expect("campaign");
    assert_eq!(paused.state, pb::CampaignState::Paused as i32);
    let resumed = client
        .resume_campaign(authed(
            pb::ResumeCampaignRequest {
                idempotency_key: "resume-autumn".into(),
                campaign_id: id.clone(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .campaign
        .expect("campaign");
    assert_eq!(resumed.state, pb::CampaignState::Scheduled as i32);
    let cancelled = client
        .cancel_campaign(authed(
            pb::CancelCampaignRequest {
                idempotency_key: "cancel-autumn".into(),
                campaign_id: id.clone(),
                reason: "wrong offer".into(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .campaign
        .expect("campaign");
    assert_eq!(cancelled.state, pb::CampaignState::Cancelled as i32);
    assert!(cancelled.cancel_time.is_some());
    let e = client
        .delete_campaign(authed(
            pb::DeleteCampaignRequest {
                idempotency_key: "delete-autumn".into(),
                campaign_id: id,
            },
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(error_reason(&e), "CAMPAIGN_ALREADY_LAUNCHED");

    // Another partner does not see it; deleted, it is gone.
    let get = |who: &str| {
        authed(
            pb::GetCampaignRequest {
                campaign_id: draft.id.clone(),
            },
            who,
        )
    };
    assert_eq!(
        client
            .get_campaign(get(&other_key))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    client
        .delete_campaign(authed(
            pb::DeleteCampaignRequest {
                idempotency_key: "delete".into(),
                campaign_id: draft.id.clone(),
            },
            &key,
        ))
        .await?;
    assert_eq!(
        client.get_campaign(get(&key)).await.unwrap_err().code(),
        Code::NotFound
    );
    suite.stop().await
}

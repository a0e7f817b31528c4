//! The send queue end to end (identity, segmentation and campaigns as processes, PostgreSQL
//! and Redis):
//! - an email campaign through the file adapter reaches the audience members who still have
//!   their consents at send time, is suppressed (with the reason) for one who withdrew it after
//!   the audience was made, and ends SENT with its statistics; each recipient's message
//!   carries their own voucher code of the campaign reward, and a redeemed code is counted;
//! - delivery events from a provider (by its message id) count opens, clicks and bounces; a
//!   bounce reaches identity's bounce state; the unsubscribe link's token withdraws the
//!   customer's marketing consent in identity; a forged token is refused;
//! - SendMessage queues a system message to a customer and a gift message to an address;
//! - an SMS campaign through a real local HTTP provider survives `kill -9` of the campaigns
//!   service in the middle: after a restart every recipient got exactly one message (one
//!   idempotency key each, every message SENT once).
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Json, Router, extract::State, http::HeaderMap, routing::post};
use loyalty_proto::{
    campaigns::v1::{self as pb, campaigns_service_client::CampaignsServiceClient},
    identity::v1::{self as identity, identity_service_client::IdentityServiceClient},
    rewards::v1 as rewards_pb,
    segmentation::v1::{self as seg, segmentation_service_client::SegmentationServiceClient},
    types::v1 as types,
};
use loyalty_testkit::{
    Backend, REDIS_URL, Suite, SuiteOptions, authed, consent_type, error_reason, eventually,
    grant_consent, reward_of, violated_fields,
};
use tonic::{Code, transport::Channel};

type Identity = IdentityServiceClient<Channel>;
type Campaigns = CampaignsServiceClient<Channel>;

const ROLES: [identity::Role; 3] = [
    identity::Role::Marketing,
    identity::Role::Support,
    identity::Role::Service,
];

async fn customer(
    identity: &mut Identity,
    key: &str,
    name: &str,
    email: &str,
    phone: &str,
) -> anyhow::Result<String> {
    Ok(identity
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: name.into(),
                customer: Some(identity::Customer {
                    first_name: name.into(),
                    email: email.into(),
                    phone: phone.into(),
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
        .id)
}

/// What a campaign needs of its recipients (glossary): the consent type `gdpr` to personal
/// data processing, and a marketing consent type `code` for `channel`; answers both ids.
async fn consent_types(
    identity: &mut Identity,
    key: &str,
    code: &str,
    channel: types::CommunicationChannel,
) -> anyhow::Result<(String, String)> {
    let gdpr = consent_type(
        identity,
        key,
        "gdpr",
        identity::ConsentPurpose::DataProcessing,
        &[],
    )
    .await?;
    let marketing = consent_type(
        identity,
        key,
        code,
        identity::ConsentPurpose::Marketing,
        &[channel],
    )
    .await?;
    Ok((gdpr, marketing))
}

/// An audience of everyone in Praha on `channel`, once it has `members` members (segmentation
/// learns consents from identity's events, so it may take a moment).
async fn audience(
    segmentation: &SegmentationServiceClient<Channel>,
    key: &str,
    channel: types::CommunicationChannel,
    members: i64,
) -> anyhow::Result<seg::Audience> {
    let mut attempt = 0;
    eventually(Duration::from_secs(60), || {
        attempt += 1;
        let mut segmentation = segmentation.clone();
        async move {
            let a = segmentation
                .create_audience(authed(
                    seg::CreateAudienceRequest {
                        idempotency_key: format!("audience-{attempt}"),
                        audience: Some(seg::Audience {
                            display_name: format!("Praha {attempt}"),
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
                    },
                    key,
                ))
                .await?
                .into_inner()
                .audience
                .expect("audience");
            Ok((a.member_count == members).then_some(a))
        }
    })
    .await
}

async fn template(
    campaigns: &mut Campaigns,
    key: &str,
    name: &str,
    t: pb::MessageTemplate,
) -> anyhow::Result<String> {
    Ok(campaigns
        .create_message_template(authed(
            pb::CreateMessageTemplateRequest {
                idempotency_key: name.into(),
                message_template: Some(pb::MessageTemplate {
                    display_name: name.into(),
                    ..t
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

async fn launch(
    campaigns: &mut Campaigns,
    key: &str,
    c: pb::Campaign,
) -> anyhow::Result<pb::Campaign> {
    let draft = campaigns
        .create_campaign(authed(
            pb::CreateCampaignRequest {
                idempotency_key: format!("create-{}", c.display_name),
                campaign: Some(c),
            },
            key,
        ))
        .await?
        .into_inner()
        .campaign
        .expect("campaign");
    Ok(campaigns
        .launch_campaign(authed(
            pb::LaunchCampaignRequest {
                idempotency_key: format!("launch-{}", draft.id),
                campaign_id: draft.id.clone(),
                schedule_time: None,
            },
            key,
        ))
        .await?
        .into_inner()
        .campaign
        .expect("campaign"))
}

/// The campaign once it is SENT.
async fn sent(campaigns: &Campaigns, key: &str, id: &str) -> anyhow::Result<pb::Campaign> {
    eventually(Duration::from_secs(90), || {
        let mut campaigns = campaigns.clone();
        async move {
            let c = campaigns
                .get_campaign(authed(
                    pb::GetCampaignRequest {
                        campaign_id: id.into(),
                    },
                    key,
                ))
                .await?
                .into_inner()
                .campaign
                .expect("campaign");
            Ok((c.state == pb::CampaignState::Sent as i32).then_some(c))
        }
    })
    .await
}

async fn messages(
    campaigns: &mut Campaigns,
    key: &str,
    filter: pb::ListMessagesRequest,
) -> anyhow::Result<Vec<pb::Message>> {
    let mut out = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = campaigns
            .list_messages(authed(
                pb::ListMessagesRequest {
                    page_size: 1000,
                    page_token: page_token.clone(),
                    ..filter.clone()
                },
                key,
            ))
            .await?
            .into_inner();
        out.extend(page.messages);
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        page_token = page.next_page_token;
    }
}

fn outbox_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn campaigns_reach_consenting_members_and_track_their_responses() -> anyhow::Result<()> {
    let files = tempfile::tempdir()?;
    let outbox = files.path().join("outbox.jsonl");
    let options = SuiteOptions::default()
        .env(
            "campaigns",
            "LOYALTY_DELIVERY__FILE_PATH",
            outbox.display().to_string(),
        )
        .env("campaigns", "LOYALTY_DELIVERY__QUEUE__POLL_MS", "50")
        .env(
            "campaigns",
            "LOYALTY_DELIVERY__UNSUBSCRIBE_BASE_URL",
            "https://shop.example/unsubscribe",
        );
    let suite = Suite::start_with(Backend::Postgres, REDIS_URL, &options).await?;
    let (_, key) = suite.partner_with_key("Mailing shop", &ROLES).await?;
    let mut identity = suite.identity().await?;
    let segmentation = suite.segmentation().await?;
    let mut campaigns = suite.campaigns().await?;

    let (gdpr, newsletter) = consent_types(
        &mut identity,
        &key,
        "newsletter",
        types::CommunicationChannel::Email,
    )
    .await?;
    let mut people = BTreeMap::new();
    for name in ["Jana", "Petr", "Eva"] {
        let email = format!("{}@example.com", name.to_lowercase());
        let id = customer(&mut identity, &key, name, &email, "").await?;
        grant_consent(&mut identity, &key, &id, &gdpr).await?;
        grant_consent(&mut identity, &key, &id, &newsletter).await?;
        people.insert(name, id);
    }
    let members = audience(&segmentation, &key, types::CommunicationChannel::Email, 3).await?;
    // Eva changes her mind after the audience was made: the send-time check catches it.
    identity
        .withdraw_consent(authed(
            identity::WithdrawConsentRequest {
                idempotency_key: "eva-out".into(),
                customer_id: people["Eva"].clone(),
                consent_type_id: newsletter.clone(),
                source: "eshop".into(),
                ..Default::default()
            },
            &key,
        ))
        .await?;

    let spring = template(
        &mut campaigns,
        &key,
        "spring",
        pb::MessageTemplate {
            channel: pb::Channel::Email as i32,
            kind: pb::TemplateKind::Campaign as i32,
            subject: "Spring, {{ customer.first_name }}".into(),
            body: "<p>Hello {{ customer.first_name }}, your code: {{ voucher.code }}</p>\
                   <a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>"
                .into(),
            text_body: "Hello {{ customer.first_name }}".into(),
            sender_address: "news@shop.example".into(),
            ..Default::default()
        },
    )
    .await?;
    // A campaign reward: every recipient gets their own voucher code in the message.
    let mut rewards = suite.rewards().await?;
    let spring_reward = reward_of(
        &mut rewards,
        &key,
        rewards_pb::RewardType::Campaign,
        "Spring 10 %",
        "SPRING",
    )
    .await?;
    let launched = launch(
        &mut campaigns,
        &key,
        pb::Campaign {
            display_name: "Spring".into(),
            channel: pb::Channel::Email as i32,
            message_template_id: spring.clone(),
            audience_id: members.id.clone(),
            reward_id: spring_reward.clone(),
            ..Default::default()
        },
    )
    .await?;
    let done = sent(&campaigns, &key, &launched.id).await?;
    let stats = done.statistics.expect("statistics");
    assert_eq!(
        (stats.target_count, stats.sent_count, stats.suppressed_count),
        (3, 2, 1),
        "{stats:?}"
    );

    let lines = outbox_lines(&outbox);
    let to: BTreeSet<&str> = lines.iter().map(|l| l["to"].as_str().unwrap()).collect();
    assert_eq!(to, BTreeSet::from(["jana@example.com", "petr@example.com"]));
    let jana_line = lines
        .iter()
        .find(|l| l["to"] == "jana@example.com")
        .unwrap();
    assert_eq!(jana_line["subject"], "Spring, Jana");
    assert_eq!(jana_line["text_body"], "Hello Jana");
    let body = jana_line["body"].as_str().unwrap();
    let code_of = |body: &str| {
        body.split("your code: ")
            .nth(1)
            .and_then(|rest| rest.split('<').next())
            .expect("a voucher code")
            .to_owned()
    };
    let jana_code = code_of(body);
    let petr_line = lines
        .iter()
        .find(|l| l["to"] == "petr@example.com")
        .unwrap();
    let petr_code = code_of(petr_line["body"].as_str().unwrap());
    assert!(jana_code.starts_with("SPRING"), "{jana_code}");
    assert_ne!(jana_code, petr_code, "a code for each recipient");
    assert_eq!(stats.voucher_issued_count, 3, "{stats:?}");
    let token = body
        .split("https://shop.example/unsubscribe?token=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("an unsubscribe link")
        .to_owned();

    let all = messages(
        &mut campaigns,
        &key,
        pb::ListMessagesRequest {
            campaign_id: launched.id.clone(),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(all.len(), 3);
    let by_customer: BTreeMap<&str, &pb::Message> =
        all.iter().map(|m| (m.customer_id.as_str(), m)).collect();
    let eva = by_customer[people["Eva"].as_str()];
    assert_eq!(eva.state, pb::MessageState::Suppressed as i32);
    assert_eq!(eva.failure_reason, "no marketing consent for email");
    let jana = by_customer[people["Jana"].as_str()];
    let petr = by_customer[people["Petr"].as_str()];
    assert_eq!(jana.state, pb::MessageState::Sent as i32);
    assert_eq!(jana.provider_message_id, format!("file:{}", jana.id));

    // Responses from the provider, by its message id; a retry of one counts once.
    let record = |idempotency_key: &str, m: &pb::Message, t: pb::DeliveryEventType| {
        authed(
            pb::RecordDeliveryEventRequest {
                idempotency_key: idempotency_key.into(),
                provider_message_id: m.provider_message_id.clone(),
                r#type: t as i32,
                url: if t == pb::DeliveryEventType::Click {
                    "https://shop.example/spring".into()
                } else {
                    String::new()
                },
                diagnostic: if t == pb::DeliveryEventType::HardBounce {
                    "550 5.1.1 no such user".into()
                } else {
                    String::new()
                },
                ..Default::default()
            },
            &key,
        )
    };
    for (k, m, t) in [
        ("e1", jana, pb::DeliveryEventType::Delivered),
        ("e2", jana, pb::DeliveryEventType::Open),
        ("e3", jana, pb::DeliveryEventType::Open),
        ("e3", jana, pb::DeliveryEventType::Open),
        ("e4", jana, pb::DeliveryEventType::Click),
        ("e5", petr, pb::DeliveryEventType::HardBounce),
    ] {
        campaigns.record_delivery_event(record(k, m, t)).await?;
    }
    let e = campaigns
        .record_delivery_event(authed(
            pb::RecordDeliveryEventRequest {
                idempotency_key: "e6".into(),
                message_id: eva.id.clone(),
                r#type: pb::DeliveryEventType::Open as i32,
                ..Default::default()
            },
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), error_reason(&e).as_str()),
        (Code::FailedPrecondition, "MESSAGE_NOT_SENT")
    );
    let e = campaigns
        .record_delivery_event(authed(
            pb::RecordDeliveryEventRequest {
                idempotency_key: "e7".into(),
                message_id: jana.id.clone(),
                r#type: pb::DeliveryEventType::Click as i32,
                ..Default::default()
            },
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&e), ["url"]);
    let events = campaigns
        .list_delivery_events(authed(
            pb::ListDeliveryEventsRequest {
                message_id: jana.id.clone(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .events;
    assert_eq!(events.len(), 4, "the retried open counts once");
    let jana_now = campaigns
        .get_message(authed(
            pb::GetMessageRequest {
                message_id: jana.id.clone(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .message
        .expect("message");
    assert_eq!(
        (jana_now.state, jana_now.open_count, jana_now.click_count),
        (pb::MessageState::Delivered as i32, 2, 1)
    );

    // The unsubscribe link: the customer's newsletter consent is withdrawn in identity.
    let forged = campaigns
        .unsubscribe(authed(
            pb::UnsubscribeRequest {
                idempotency_key: "u0".into(),
                token: format!(
                    "{}.00000000000000000000000000000000",
                    uuid::Uuid::now_v7().simple()
                ),
            },
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&forged), ["token"]);
    let unsubscribed = campaigns
        .unsubscribe(authed(
            pb::UnsubscribeRequest {
                idempotency_key: "u1".into(),
                token: token.clone(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .message
        .expect("message");
    assert_eq!(unsubscribed.id, jana.id);
    assert!(unsubscribed.unsubscribe_time.is_some());
    let jana_id = people["Jana"].clone();
    let newsletter_state = |identity: Identity| {
        let key = key.clone();
        let jana_id = jana_id.clone();
        let newsletter = newsletter.clone();
        async move {
            let consents = identity
                .clone()
                .list_customer_consents(authed(
                    identity::ListCustomerConsentsRequest {
                        customer_id: jana_id,
                        ..Default::default()
                    },
                    &key,
                ))
                .await?
                .into_inner()
                .consents;
            anyhow::Ok(
                consents
                    .into_iter()
                    .find(|c| c.consent_type_id == newsletter)
                    .map(|c| c.state),
            )
        }
    };
    eventually(Duration::from_secs(30), || {
        let f = newsletter_state(identity.clone());
        async move {
            Ok((f.await? == Some(identity::ConsentState::Withdrawn as i32)).then_some(()))
        }
    })
    .await?;
    // Petr's hard bounce reached identity's bounce state.
    let petr_id = people["Petr"].clone();
    eventually(Duration::from_secs(30), || {
        let mut identity = identity.clone();
        let (key, petr_id) = (key.clone(), petr_id.clone());
        async move {
            let state = identity
                .get_email_bounce_state(authed(
                    identity::GetEmailBounceStateRequest {
                        customer_id: petr_id,
                    },
                    &key,
                ))
                .await?
                .into_inner()
                .state
                .unwrap_or_default();
            Ok(state.hard_bounced.then_some(()))
        }
    })
    .await?;
    let stats = campaigns
        .get_campaign_statistics(authed(
            pb::GetCampaignStatisticsRequest {
                campaign_id: launched.id.clone(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .statistics
        .expect("statistics");
    assert_eq!(
        (
            stats.delivered_count,
            stats.hard_bounce_count,
            stats.unique_open_count,
            stats.unique_click_count,
            stats.unsubscribe_count
        ),
        (1, 1, 1, 1, 1),
        "{stats:?}"
    );

    // Jana redeems her code at a till: the campaign counts it (rewards' VoucherRedeemed).
    rewards
        .redeem_voucher(authed(
            rewards_pb::RedeemVoucherRequest {
                idempotency_key: "jana-redeems".into(),
                code: jana_code.clone(),
                customer_id: people["Jana"].clone(),
                transaction_id: "till-1".into(),
                ..Default::default()
            },
            &key,
        ))
        .await?;
    eventually(Duration::from_secs(30), || {
        let mut campaigns = campaigns.clone();
        let (key, id) = (key.clone(), launched.id.clone());
        async move {
            let stats = campaigns
                .get_campaign_statistics(authed(
                    pb::GetCampaignStatisticsRequest { campaign_id: id },
                    &key,
                ))
                .await?
                .into_inner()
                .statistics
                .expect("statistics");
            Ok((stats.voucher_redeemed_count == 1).then_some(()))
        }
    })
    .await?;

    // Single messages: a system message to a customer, a gift message to an address.
    let receipt = template(
        &mut campaigns,
        &key,
        "receipt",
        pb::MessageTemplate {
            channel: pb::Channel::Email as i32,
            kind: pb::TemplateKind::System as i32,
            subject: "Your voucher {{ voucher.code }}".into(),
            body: "<p>{{ customer.first_name }}, here it is.</p>".into(),
            ..Default::default()
        },
    )
    .await?;
    let send = |idempotency_key: &str, customer_id: &str, address: &str, template: &str| {
        authed(
            pb::SendMessageRequest {
                idempotency_key: idempotency_key.into(),
                message_template_id: template.into(),
                customer_id: customer_id.into(),
                address: address.into(),
                variables: [("voucher.code".to_owned(), "GIFT-42".to_owned())].into(),
                ..Default::default()
            },
            &key,
        )
    };
    let one = campaigns
        .send_message(send("s1", &people["Jana"], "", &receipt))
        .await?
        .into_inner()
        .message
        .expect("message");
    let again = campaigns
        .send_message(send("s1", &people["Jana"], "", &receipt))
        .await?
        .into_inner()
        .message
        .expect("message");
    assert_eq!(one.id, again.id, "a retry queues nothing new");
    let gift = campaigns
        .send_message(send("s2", "", "friend@example.org", &receipt))
        .await?
        .into_inner()
        .message
        .expect("message");
    let e = campaigns
        .send_message(send("s3", "", "friend@example.org", &spring))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&e),
        ["address"],
        "marketing needs a customer"
    );
    let e = campaigns
        .send_message(send("s4", &uuid::Uuid::now_v7().to_string(), "", &receipt))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    eventually(Duration::from_secs(30), || {
        let outbox = outbox.clone();
        async move { Ok((outbox_lines(&outbox).len() == 4).then_some(())) }
    })
    .await?;
    let lines = outbox_lines(&outbox);
    let to_jana: Vec<_> = lines
        .iter()
        .filter(|l| l["message_id"] == one.id.as_str())
        .collect();
    assert_eq!(to_jana.len(), 1);
    assert_eq!(to_jana[0]["subject"], "Your voucher GIFT-42");
    assert!(
        lines
            .iter()
            .any(|l| l["message_id"] == gift.id.as_str() && l["to"] == "friend@example.org")
    );
    suite.stop().await
}

/// What the local SMS provider received: every request's idempotency key and recipient. It
/// answers after `latency`.
#[derive(Default)]
struct Provider {
    requests: Mutex<Vec<(String, String)>>,
    latency: Duration,
}

async fn provider_accepts(
    State(p): State<Arc<Provider>>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Json<serde_json::Value> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let to = body["to"].as_str().unwrap_or_default().to_owned();
    p.requests.lock().unwrap().push((key.clone(), to));
    tokio::time::sleep(p.latency).await;
    Json(serde_json::json!({ "id": format!("sms-{key}") }))
}

/// A throttled campaign goes through the message queue, one claim per few messages.
#[tokio::test(flavor = "multi_thread")]
async fn a_campaign_survives_kill_9_and_every_recipient_gets_one_message() -> anyhow::Result<()> {
    // 3,000 a minute (50 a second): the campaign takes about three seconds, long enough to
    // be killed in the middle.
    survives_kill_9(3000, Duration::from_millis(20)).await
}

/// An unthrottled campaign goes in batches, each written once after it was sent; a slow
/// provider keeps it going long enough to be killed in the middle.
#[tokio::test(flavor = "multi_thread")]
async fn a_batched_campaign_survives_kill_9_and_every_recipient_gets_one_message()
-> anyhow::Result<()> {
    survives_kill_9(0, Duration::from_millis(150)).await
}

async fn survives_kill_9(send_rate_per_minute: i32, latency: Duration) -> anyhow::Result<()> {
    const RECIPIENTS: usize = 150;
    let provider = Arc::new(Provider {
        latency,
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}/messages", listener.local_addr()?);
    let app = Router::new()
        .route("/messages", post(provider_accepts))
        .with_state(provider.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let options = SuiteOptions::default()
        .env("campaigns", "LOYALTY_DELIVERY__SMS__ENDPOINT", endpoint)
        .env("campaigns", "LOYALTY_DELIVERY__QUEUE__BATCH_SIZE", "10")
        .env("campaigns", "LOYALTY_DELIVERY__QUEUE__WORKERS", "2")
        .env("campaigns", "LOYALTY_DELIVERY__QUEUE__CLAIM_TTL_SECS", "2")
        .env("campaigns", "LOYALTY_DELIVERY__QUEUE__POLL_MS", "50");
    let mut suite = Suite::start_with(Backend::Postgres, REDIS_URL, &options).await?;
    let (_, key) = suite.partner_with_key("Texting shop", &ROLES).await?;
    let mut identity = suite.identity().await?;
    let segmentation = suite.segmentation().await?;
    let mut campaigns = suite.campaigns().await?;
    let (gdpr, texts) = consent_types(
        &mut identity,
        &key,
        "texts",
        types::CommunicationChannel::Sms,
    )
    .await?;
    let mut phones = BTreeMap::new();
    for i in 0..RECIPIENTS {
        let phone = format!("+42060{i:07}");
        let id = customer(&mut identity, &key, &format!("c{i}"), "", &phone).await?;
        grant_consent(&mut identity, &key, &id, &gdpr).await?;
        grant_consent(&mut identity, &key, &id, &texts).await?;
        phones.insert(id, phone);
    }
    let members = audience(
        &segmentation,
        &key,
        types::CommunicationChannel::Sms,
        RECIPIENTS as i64,
    )
    .await?;
    let hello = template(
        &mut campaigns,
        &key,
        "hello",
        pb::MessageTemplate {
            channel: pb::Channel::Sms as i32,
            kind: pb::TemplateKind::Campaign as i32,
            body: "Hi {{ customer.first_name }}, 20 % off today".into(),
            ..Default::default()
        },
    )
    .await?;
    let launched = launch(
        &mut campaigns,
        &key,
        pb::Campaign {
            display_name: "Flash".into(),
            channel: pb::Channel::Sms as i32,
            message_template_id: hello,
            audience_id: members.id.clone(),
            send_rate_per_minute,
            ..Default::default()
        },
    )
    .await?;
    let p = provider.clone();
    eventually(Duration::from_secs(60), || {
        let p = p.clone();
        async move { Ok((p.requests.lock().unwrap().len() >= RECIPIENTS / 3).then_some(())) }
    })
    .await?;
    suite.kill("campaigns").await?;
    let at_kill = provider.requests.lock().unwrap().len();
    assert!(
        at_kill < RECIPIENTS,
        "killed in the middle, not after the end"
    );
    suite.restart("campaigns").await?;
    let mut campaigns = suite.campaigns().await?;
    let done = sent(&campaigns, &key, &launched.id).await?;
    assert_eq!(
        done.statistics
            .as_ref()
            .map(|s| (s.target_count, s.sent_count)),
        Some((RECIPIENTS as i64, RECIPIENTS as i64))
    );

    // Each recipient: one message id (the provider's idempotency key), whatever was resent.
    let requests = provider.requests.lock().unwrap().clone();
    let mut keys_by_phone: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (k, to) in &requests {
        keys_by_phone
            .entry(to.clone())
            .or_default()
            .insert(k.clone());
    }
    assert_eq!(keys_by_phone.len(), RECIPIENTS, "everyone got a message");
    assert!(
        keys_by_phone.values().all(|keys| keys.len() == 1),
        "nobody got two different messages"
    );
    let resent = requests.len() - RECIPIENTS;
    // Only what was in flight at the kill can go out again, with the same key.
    assert!(resent <= 2 * 10, "{resent} messages resent");
    let all = messages(
        &mut campaigns,
        &key,
        pb::ListMessagesRequest {
            campaign_id: launched.id.clone(),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(all.len(), RECIPIENTS);
    for m in &all {
        assert_eq!(m.state, pb::MessageState::Sent as i32);
        assert_eq!(m.provider_message_id, format!("sms-{}", m.id));
        assert_eq!(phones[&m.customer_id], m.address);
    }
    suite.stop().await
}

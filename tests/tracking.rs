//! Customer event tracking: event types with typed properties next to the built-in ones,
//! TrackEvent checking every field and recording once per idempotency key, streams of batches
//! reporting rejections by position, and ListCustomerEvents newest first.
use std::collections::BTreeMap;

use loyalty_proto::identity::v1 as identity;
use loyalty_testkit::{Backend, Suite, authed, error_reason as reason, violated_fields as fields};
use tonic::Code;

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

async fn customer(suite: &Suite, key: &str, name: &str) -> anyhow::Result<String> {
    let mut identity = suite.identity().await?;
    Ok(identity
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: format!("customer-{name}"),
                customer: Some(identity::Customer {
                    first_name: name.into(),
                    ..Default::default()
                }),
                identifiers: vec![],
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

fn property(
    key: &str,
    t: identity::EventPropertyType,
    required: bool,
) -> identity::EventPropertyDefinition {
    identity::EventPropertyDefinition {
        key: key.into(),
        display_name: key.into(),
        r#type: t as i32,
        required,
    }
}

async fn store_visit_type(suite: &Suite, key: &str) -> anyhow::Result<identity::EventType> {
    let mut identity = suite.identity().await?;
    Ok(identity
        .create_event_type(authed(
            identity::CreateEventTypeRequest {
                idempotency_key: "store-visit".into(),
                event_type: Some(identity::EventType {
                    code: "store_visit".into(),
                    display_name: "Store visit".into(),
                    group: "retail".into(),
                    properties: vec![
                        property("store", identity::EventPropertyType::String, true),
                        property("minutes", identity::EventPropertyType::Integer, false),
                        property("vip", identity::EventPropertyType::Boolean, false),
                    ],
                    ..Default::default()
                }),
            },
            key,
        ))
        .await?
        .into_inner()
        .event_type
        .expect("event type"))
}

fn visit(idem: &str, customer_id: &str, props: &[(&str, &str)]) -> identity::TrackEventRequest {
    identity::TrackEventRequest {
        idempotency_key: idem.into(),
        customer_id: customer_id.into(),
        event_type_id: "store_visit".into(),
        properties: props
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tracked_events_are_type_checked_recorded_once_per_key_and_listed_newest_first()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key("Tracker", &[identity::Role::Admin])
        .await?;
    let (_, rival) = suite
        .partner_with_key("Rival", &[identity::Role::Admin])
        .await?;
    let mut identity = suite.identity().await?;
    let jana = customer(&suite, &key, "jana").await?;
    let rivals_customer = customer(&suite, &rival, "petr").await?;
    let store_visit = store_visit_type(&suite, &key).await?;

    // Built-in types exist for every partner, next to the partner's own, ordered by code.
    let listed = identity
        .list_event_types(authed(identity::ListEventTypesRequest::default(), &key))
        .await?
        .into_inner()
        .event_types;
    let codes: Vec<&str> = listed.iter().map(|t| t.code.as_str()).collect();
    assert_eq!(
        codes,
        ["app_open", "custom", "page_view", "purchase", "store_visit"]
    );
    let page_view = identity
        .get_event_type(authed(
            identity::GetEventTypeRequest {
                event_type_id: "page_view".into(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .event_type
        .expect("built in");
    assert!(
        page_view
            .properties
            .iter()
            .any(|p| p.key == "url" && p.required)
    );
    let taken = identity
        .create_event_type(authed(
            identity::CreateEventTypeRequest {
                idempotency_key: "page-view".into(),
                event_type: Some(identity::EventType {
                    code: "page_view".into(),
                    display_name: "Mine".into(),
                    ..Default::default()
                }),
            },
            &key,
        ))
        .await
        .expect_err("built-in code");
    assert_eq!(taken.code(), Code::AlreadyExists);
    let rivals_view = identity
        .get_event_type(authed(
            identity::GetEventTypeRequest {
                event_type_id: store_visit.id.clone(),
            },
            &rival,
        ))
        .await
        .expect_err("not theirs");
    assert_eq!(rivals_view.code(), Code::NotFound);

    let mut older = visit("visit-1", &jana, &[("store", "PRG-01"), ("minutes", "12")]);
    older.occur_time = Some(prost_types::Timestamp {
        seconds: now_secs() - 3_600,
        nanos: 0,
    });
    let first = identity
        .track_event(authed(older.clone(), &key))
        .await?
        .into_inner()
        .event
        .expect("event");
    assert_eq!(first.event_type_id, store_visit.id);
    assert_eq!(first.properties["minutes"], "12");
    let retried = identity
        .track_event(authed(older, &key))
        .await?
        .into_inner()
        .event
        .expect("event");
    assert_eq!(retried, first, "a retry answers the recorded event");

    let newer = identity
        .track_event(authed(
            identity::TrackEventRequest {
                idempotency_key: "custom-1".into(),
                customer_id: jana.clone(),
                event_type_id: "custom".into(),
                properties: BTreeMap::from([("name".to_owned(), "quiz_done".to_owned())]),
                payload_json: r#"{"answers": [1, 2, 3]}"#.into(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .event
        .expect("event");
    assert_eq!(newer.payload_json, r#"{"answers":[1,2,3]}"#);

    // Each property is checked against its definition and reported by key.
    let bad = identity
        .track_event(authed(
            visit(
                "visit-bad",
                &jana,
                &[("minutes", "ten"), ("vip", "yes"), ("colour", "red")],
            ),
            &key,
        ))
        .await
        .expect_err("bad properties");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let mut bad_fields = fields(&bad);
    bad_fields.sort();
    assert_eq!(
        bad_fields,
        [
            "properties.colour",
            "properties.minutes",
            "properties.store",
            "properties.vip"
        ]
    );
    let mut not_object = visit("visit-payload", &jana, &[("store", "PRG-01")]);
    not_object.payload_json = "[1, 2]".into();
    not_object.occur_time = Some(prost_types::Timestamp {
        seconds: now_secs() + 600,
        nanos: 0,
    });
    let bad = identity
        .track_event(authed(not_object, &key))
        .await
        .expect_err("bad payload and time");
    let mut bad_fields = fields(&bad);
    bad_fields.sort();
    assert_eq!(bad_fields, ["occur_time", "payload_json"]);
    let purchase = identity
        .track_event(authed(
            identity::TrackEventRequest {
                idempotency_key: "purchase-1".into(),
                customer_id: jana.clone(),
                event_type_id: "purchase".into(),
                ..Default::default()
            },
            &key,
        ))
        .await
        .expect_err("purchase needs its id");
    assert_eq!(fields(&purchase), ["purchase_id"]);
    let foreign = identity
        .track_event(authed(
            visit("visit-rival", &rivals_customer, &[("store", "PRG-01")]),
            &key,
        ))
        .await
        .expect_err("another partner's customer");
    assert_eq!(foreign.code(), Code::NotFound);
    let reused = identity
        .track_event(authed(visit("visit-1", &jana, &[("store", "BRNO")]), &key))
        .await
        .expect_err("key reused");
    assert_eq!(reason(&reused), "IDEMPOTENCY_KEY_REUSED");

    // Newest first, one per page, filterable by type.
    let page = |token: String, event_type: &str| {
        authed(
            identity::ListCustomerEventsRequest {
                customer_id: jana.clone(),
                event_type_id: event_type.into(),
                page_size: 1,
                page_token: token,
                ..Default::default()
            },
            &key,
        )
    };
    let p1 = identity
        .list_customer_events(page(String::new(), ""))
        .await?
        .into_inner();
    assert_eq!(p1.events, vec![newer.clone()]);
    let p2 = identity
        .list_customer_events(page(p1.next_page_token, ""))
        .await?
        .into_inner();
    assert_eq!(p2.events, vec![first.clone()]);
    let p3 = identity
        .list_customer_events(page(p2.next_page_token, ""))
        .await?
        .into_inner();
    assert!(p3.events.is_empty() && p3.next_page_token.is_empty());
    let visits = identity
        .list_customer_events(page(String::new(), "store_visit"))
        .await?
        .into_inner();
    assert_eq!(visits.events, vec![first.clone()]);

    // An inactive type takes no events; its events stay.
    identity
        .update_event_type(authed(
            identity::UpdateEventTypeRequest {
                idempotency_key: "deactivate".into(),
                event_type: Some(identity::EventType {
                    id: store_visit.id.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["active".into()],
                }),
                etag: store_visit.etag.clone(),
            },
            &key,
        ))
        .await?;
    let inactive = identity
        .track_event(authed(
            visit("visit-2", &jana, &[("store", "PRG-01")]),
            &key,
        ))
        .await
        .expect_err("inactive");
    assert_eq!(reason(&inactive), "EVENT_TYPE_INACTIVE");
    let built_in_change = identity
        .update_event_type(authed(
            identity::UpdateEventTypeRequest {
                idempotency_key: "change-built-in".into(),
                event_type: Some(identity::EventType {
                    id: "page_view".into(),
                    display_name: "Views".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
                etag: String::new(),
            },
            &key,
        ))
        .await
        .expect_err("built in");
    assert_eq!(reason(&built_in_change), "BUILT_IN_EVENT_TYPE");
    suite.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_of_batches_records_the_good_events_and_reports_the_bad_ones_by_position()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key("Bulk", &[identity::Role::Admin])
        .await?;
    let mut identity = suite.identity().await?;
    let jana = customer(&suite, &key, "jana").await?;
    let eva = customer(&suite, &key, "eva").await?;
    store_visit_type(&suite, &key).await?;

    let good = |i: usize| {
        let who = if i.is_multiple_of(2) { &jana } else { &eva };
        visit(
            &format!("e-{i}"),
            who,
            &[("store", "PRG-01"), ("minutes", &i.to_string())],
        )
    };
    let first: Vec<_> = (0..300).map(good).collect();
    let mut second: Vec<_> = (300..400).map(good).collect();
    // Positions 305, 350 and 390 of the stream are bad.
    second[5].properties.insert("minutes".into(), "many".into());
    second[50].customer_id = uuid_like();
    second[90].event_type_id = "no_such_type".into();
    // A retry of an event of the first batch, and a reused key with other content.
    let third = vec![good(7), visit("e-8", &jana, &[("store", "OTHER")])];
    let batches = vec![
        identity::TrackEventsRequest { events: first },
        identity::TrackEventsRequest { events: second },
        identity::TrackEventsRequest { events: third },
    ];
    let answer = identity
        .track_events(authed(tokio_stream::iter(batches.clone()), &key))
        .await?
        .into_inner();
    assert_eq!(answer.accepted_count, 398);
    assert_eq!(answer.rejected_count, 4);
    let by_index: Vec<(i64, &str, &str)> = answer
        .rejections
        .iter()
        .map(|r| (r.index, r.field.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(
        by_index,
        vec![
            (305, "properties.minutes", "INVALID_ARGUMENT"),
            (350, "customer_id", "NOT_FOUND"),
            (390, "event_type_id", "NOT_FOUND"),
            (401, "", "IDEMPOTENCY_KEY_REUSED"),
        ]
    );
    assert_eq!(answer.rejections[0].idempotency_key, "e-305");

    let lister = identity.clone();
    let count = |customer_id: String| {
        let mut identity = lister.clone();
        let key = key.clone();
        async move {
            let mut total = 0;
            let mut token = String::new();
            loop {
                let page = identity
                    .list_customer_events(authed(
                        identity::ListCustomerEventsRequest {
                            customer_id: customer_id.clone(),
                            page_size: 100,
                            page_token: token,
                            ..Default::default()
                        },
                        &key,
                    ))
                    .await?
                    .into_inner();
                total += page.events.len();
                if page.next_page_token.is_empty() {
                    return anyhow::Ok(total);
                }
                token = page.next_page_token;
            }
        }
    };
    assert_eq!(count(jana.clone()).await? + count(eva.clone()).await?, 397);

    // Sending the whole stream again records nothing new.
    let again = identity
        .track_events(authed(tokio_stream::iter(batches), &key))
        .await?
        .into_inner();
    assert_eq!(again.accepted_count, 398);
    assert_eq!(again.rejected_count, 4);
    assert_eq!(count(jana).await? + count(eva).await?, 397);
    suite.stop().await
}

/// A well-formed customer id nobody has.
fn uuid_like() -> String {
    "01900000-0000-7000-8000-000000000000".into()
}

#[tokio::test(flavor = "multi_thread")]
async fn on_sqlite_a_consent_is_granted_and_an_event_tracked() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Sqlite).await?;
    let (_, key) = suite
        .partner_with_key("Embedded", &[identity::Role::Admin])
        .await?;
    let mut identity = suite.identity().await?;
    let jana = customer(&suite, &key, "jana").await?;
    identity
        .create_consent_type(authed(
            identity::CreateConsentTypeRequest {
                idempotency_key: "gdpr".into(),
                consent_type: Some(identity::ConsentType {
                    code: "gdpr".into(),
                    display_name: "Data processing".into(),
                    purpose: identity::ConsentPurpose::DataProcessing as i32,
                    text: "We process your data.".into(),
                    ..Default::default()
                }),
            },
            &key,
        ))
        .await?;
    let consent = identity
        .grant_consent(authed(
            identity::GrantConsentRequest {
                idempotency_key: "grant".into(),
                customer_id: jana.clone(),
                consent_type_id: "gdpr".into(),
                source: "pos".into(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .consent
        .expect("consent");
    assert_eq!(consent.state, identity::ConsentState::Granted as i32);
    let event = identity
        .track_event(authed(
            identity::TrackEventRequest {
                idempotency_key: "open".into(),
                customer_id: jana.clone(),
                event_type_id: "app_open".into(),
                properties: BTreeMap::from([("platform".to_owned(), "android".to_owned())]),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .event
        .expect("event");
    let listed = identity
        .list_customer_events(authed(
            identity::ListCustomerEventsRequest {
                customer_id: jana,
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .events;
    assert_eq!(listed, vec![event]);
    suite.stop().await
}

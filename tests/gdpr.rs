//! GDPR: the right of access (ExportCustomer streams everything identity holds) and erasure
//! (EraseCustomer removes personal data irreversibly, frees the cards and tells the others).
use std::{collections::BTreeMap, time::Duration};

use futures::StreamExt;
use loyalty_proto::{
    events::v1 as ev, events::v1::event_feed_service_client::EventFeedServiceClient,
    identity::v1 as identity, types::v1 as types,
};
use loyalty_testkit::{Backend, Suite, authed, eventually};
use tonic::Code;

fn card(number: &str) -> types::IdentifierRef {
    types::IdentifierRef {
        r#type: types::IdentifierType::Card as i32,
        value: number.to_owned(),
    }
}

fn erase(idem: &str, id: &str) -> identity::EraseCustomerRequest {
    identity::EraseCustomerRequest {
        idempotency_key: idem.into(),
        customer_id: id.into(),
        reason: "GDPR request 2026/17".into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn export_streams_every_part_and_erase_removes_personal_data_and_frees_the_card()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key("Shop", &[identity::Role::Admin])
        .await?;
    let (_, rival) = suite
        .partner_with_key("Rival", &[identity::Role::Support])
        .await?;
    let mut identity = suite.identity().await?;
    let customer = identity
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: "jana".into(),
                customer: Some(identity::Customer {
                    first_name: "Jana".into(),
                    last_name: "Nováková".into(),
                    email: "jana@example.cz".into(),
                    phone: "+420601234567".into(),
                    birth_date: "1990-05-01".into(),
                    street: "Dlouhá 1".into(),
                    properties: BTreeMap::from([("shoe_size".to_owned(), "38".to_owned())]),
                    ..Default::default()
                }),
                identifiers: vec![
                    card("6000 0001"),
                    types::IdentifierRef {
                        r#type: types::IdentifierType::Email as i32,
                        value: "jana@example.cz".into(),
                    },
                ],
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .customer
        .expect("customer");

    // A consent decision and a tracked event carrying personal data.
    let newsletter = identity
        .create_consent_type(authed(
            identity::CreateConsentTypeRequest {
                idempotency_key: "newsletter".into(),
                consent_type: Some(identity::ConsentType {
                    code: "newsletter".into(),
                    display_name: "Newsletter".into(),
                    purpose: identity::ConsentPurpose::Marketing as i32,
                    channels: vec![types::CommunicationChannel::Email as i32],
                    text: "We may send you offers by email.".into(),
                    validity_days: 365,
                    ..Default::default()
                }),
            },
            &key,
        ))
        .await?
        .into_inner()
        .consent_type
        .expect("consent type");
    identity
        .grant_consent(authed(
            identity::GrantConsentRequest {
                idempotency_key: "grant".into(),
                customer_id: customer.id.clone(),
                consent_type_id: newsletter.id.clone(),
                source: "eshop".into(),
                ..Default::default()
            },
            &key,
        ))
        .await?;
    identity
        .track_event(authed(
            identity::TrackEventRequest {
                idempotency_key: "quiz".into(),
                customer_id: customer.id.clone(),
                event_type_id: "custom".into(),
                properties: BTreeMap::from([("name".to_owned(), "quiz_done".to_owned())]),
                payload_json: r#"{"contact": "jana@example.cz"}"#.into(),
                ..Default::default()
            },
            &key,
        ))
        .await?;

    // Wait for the account history to hold the creation and the identifiers.
    eventually(Duration::from_secs(20), || {
        let mut identity = identity.clone();
        let (id, key) = (customer.id.clone(), key.clone());
        async move {
            let n = identity
                .list_account_history(authed(
                    identity::ListAccountHistoryRequest {
                        customer_id: id,
                        ..Default::default()
                    },
                    &key,
                ))
                .await?
                .into_inner()
                .entries
                .len();
            Ok((n >= 3).then_some(()))
        }
    })
    .await?;

    use identity::export_customer_response::Part;
    let parts: Vec<Part> = identity
        .export_customer(authed(
            identity::ExportCustomerRequest {
                customer_id: customer.id.clone(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .map(|r| r.expect("part").part.expect("a part"))
        .collect()
        .await;
    let order: Vec<u8> = parts
        .iter()
        .map(|p| match p {
            Part::Customer(_) => 1,
            Part::Identifier(_) => 2,
            Part::Relation(_) => 3,
            Part::Consent(_) => 4,
            Part::ConsentHistoryEntry(_) => 5,
            Part::EmailBounceState(_) => 6,
            Part::Event(_) => 7,
            Part::AccountHistoryEntry(_) => 8,
        })
        .collect();
    assert_eq!(order.first(), Some(&1), "the account comes first");
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "parts in order: {order:?}"
    );
    assert_eq!(order.iter().filter(|p| **p == 2).count(), 2);
    for part in [4, 5, 7] {
        assert!(order.contains(&part), "part {part} missing: {order:?}");
    }
    assert!(order.iter().filter(|p| **p == 8).count() >= 3);
    match &parts[0] {
        Part::Customer(c) => assert_eq!(c.email, "jana@example.cz"),
        _ => unreachable!(),
    }

    let foreign = identity
        .export_customer(authed(
            identity::ExportCustomerRequest {
                customer_id: customer.id.clone(),
            },
            &rival,
        ))
        .await
        .expect_err("another partner's customer");
    assert_eq!(foreign.code(), Code::NotFound);
    let foreign = identity
        .erase_customer(authed(erase("e0", &customer.id), &rival))
        .await
        .expect_err("another partner's customer");
    assert_eq!(foreign.code(), Code::NotFound);

    let erased = identity
        .erase_customer(authed(erase("e1", &customer.id), &key))
        .await?
        .into_inner()
        .customer
        .expect("customer");
    assert_eq!(erased.state, identity::CustomerState::Erased as i32);
    assert!(erased.erase_time.is_some());
    for field in [
        &erased.first_name,
        &erased.last_name,
        &erased.email,
        &erased.phone,
        &erased.birth_date,
        &erased.street,
    ] {
        assert!(field.is_empty(), "personal data left: {erased:?}");
    }
    assert!(erased.properties.is_empty());
    let retry = identity
        .erase_customer(authed(erase("e1", &customer.id), &key))
        .await?
        .into_inner()
        .customer
        .expect("customer");
    assert_eq!(retry, erased, "a retry answers the same");
    let again = identity
        .erase_customer(authed(erase("e2", &customer.id), &key))
        .await?
        .into_inner()
        .customer
        .expect("customer");
    assert_eq!(again, erased, "erasing an erased account changes nothing");

    // The card no longer resolves, and is free for someone else.
    let gone = identity
        .resolve_identifier(authed(
            identity::ResolveIdentifierRequest {
                identifier: Some(card("6000 0001")),
            },
            &key,
        ))
        .await
        .expect_err("erased");
    assert_eq!(gone.code(), Code::NotFound);
    let petr = identity
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: "petr".into(),
                customer: Some(identity::Customer {
                    first_name: "Petr".into(),
                    ..Default::default()
                }),
                identifiers: vec![card("6000 0001")],
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .customer
        .expect("customer");
    let resolved = identity
        .resolve_identifier(authed(
            identity::ResolveIdentifierRequest {
                identifier: Some(card("6000 0001")),
            },
            &key,
        ))
        .await?
        .into_inner();
    assert_eq!(resolved.customer_id, petr.id);

    // Nothing personal is left in the export; the history keeps PII-free summaries only.
    let parts: Vec<Part> = identity
        .export_customer(authed(
            identity::ExportCustomerRequest {
                customer_id: customer.id.clone(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .map(|r| r.expect("part").part.expect("a part"))
        .collect()
        .await;
    let text = format!("{parts:?}");
    for pii in [
        "jana@example.cz",
        "Nov",
        "601234567",
        "60000001",
        "Dlouh",
        "1990-05-01",
    ] {
        assert!(!text.contains(pii), "{pii} survived erasure: {text}");
    }
    assert!(
        parts
            .iter()
            .any(|p| matches!(p, Part::AccountHistoryEntry(_))),
        "the history stays, anonymised"
    );

    // CustomerErased is published on identity's event feed for the other services.
    let mut feed = EventFeedServiceClient::new(suite.channel("identity").await?);
    let mut after = 0;
    let mut found = false;
    loop {
        let events = feed
            .read_events(suite.as_admin(ev::ReadEventsRequest {
                after_sequence: after,
                page_size: 1000,
            }))
            .await?
            .into_inner()
            .events;
        let Some(last) = events.last() else { break };
        after = last.sequence;
        found |= events.iter().any(|e| {
            e.event_type == "loyalty.events.v1.CustomerErased"
                // The payload is a protobuf with the customer id as its only (string) field.
                && e.payload
                    .windows(customer.id.len())
                    .any(|w| w == customer.id.as_bytes())
        });
    }
    assert!(found, "CustomerErased published");
    Ok(())
}

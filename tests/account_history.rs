//! The Customer 360 account history: identity projects its own events and the other services'
//! (checkout purchases, wallet points) into one timeline per customer, newest first.
use std::time::Duration;

use loyalty_proto::{
    checkout::v1 as checkout, identity::v1 as identity, rewards::v1 as rewards, types::v1 as types,
};
use loyalty_testkit::{Backend, Suite, authed, eventually};
use tonic::Code;

fn card(number: &str) -> types::IdentifierRef {
    types::IdentifierRef {
        r#type: types::IdentifierType::Card as i32,
        value: number.to_owned(),
    }
}

fn history(
    customer_id: &str,
    kinds: &[identity::AccountHistoryEntryKind],
    page_size: i32,
    page_token: &str,
) -> identity::ListAccountHistoryRequest {
    identity::ListAccountHistoryRequest {
        customer_id: customer_id.into(),
        kinds: kinds.iter().map(|k| *k as i32).collect(),
        page_size,
        page_token: page_token.into(),
        ..Default::default()
    }
}

fn micros(t: &Option<prost_types::Timestamp>) -> i64 {
    let t = t.as_ref().expect("occur_time");
    t.seconds * 1_000_000 + i64::from(t.nanos / 1000)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_history_shows_profile_changes_cards_purchases_and_points_newest_first_in_pages()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key("Shop", &[identity::Role::Admin])
        .await?;
    let (_, rival) = suite
        .partner_with_key("Rival", &[identity::Role::Admin])
        .await?;
    let mut identity = suite.identity().await?;
    suite
        .rewards()
        .await?
        .create_purchase_bonus(authed(
            rewards::CreatePurchaseBonusRequest {
                idempotency_key: "base-earn".into(),
                purchase_bonus: Some(rewards::PurchaseBonus {
                    display_name: "1 point per euro".into(),
                    points: 1,
                    spend_amount_minor: 100,
                    currency_code: "EUR".into(),
                    ..Default::default()
                }),
            },
            &key,
        ))
        .await?;

    let customer = identity
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: "jana".into(),
                customer: Some(identity::Customer {
                    first_name: "Jana".into(),
                    ..Default::default()
                }),
                identifiers: vec![],
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .customer
        .expect("customer");
    identity
        .update_customer(authed(
            identity::UpdateCustomerRequest {
                idempotency_key: "move".into(),
                customer: Some(identity::Customer {
                    id: customer.id.clone(),
                    city: "Brno".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["city".into()],
                }),
                etag: String::new(),
            },
            &key,
        ))
        .await?;
    identity
        .add_identifier(authed(
            identity::AddIdentifierRequest {
                idempotency_key: "card".into(),
                customer_id: customer.id.clone(),
                identifier: Some(card("5000 0001")),
            },
            &key,
        ))
        .await?;
    suite
        .checkout()
        .await?
        .commit(authed(
            checkout::CommitRequest {
                transaction_id: "store-1/till-1/1".into(),
                identifier: Some(card("5000 0001")),
                cart: Some(types::Cart {
                    currency_code: "EUR".into(),
                    lines: vec![types::CartLine {
                        line_id: "1".into(),
                        product_id: "SKU-1".into(),
                        quantity: 2,
                        unit_price_minor: 1000,
                        ..Default::default()
                    }],
                }),
                payments: vec![checkout::Payment {
                    method: "card".into(),
                    amount_minor: 2000,
                }],
                ..Default::default()
            },
            &key,
        ))
        .await?;

    // The projection follows the event streams.
    let all = eventually(Duration::from_secs(30), || {
        let mut identity = identity.clone();
        let (id, key) = (customer.id.clone(), key.clone());
        async move {
            let entries = identity
                .list_account_history(authed(history(&id, &[], 100, ""), &key))
                .await?
                .into_inner()
                .entries;
            let has = |t: &str| entries.iter().any(|e| e.event_type == t);
            Ok((has("loyalty.events.v1.PurchaseCompleted")
                && has("loyalty.events.v1.PointsPosted")
                && has("loyalty.events.v1.IdentifierAdded"))
            .then_some(entries))
        }
    })
    .await?;
    let types: Vec<&str> = all.iter().map(|e| e.event_type.as_str()).collect();
    let position = |t: &str| {
        types
            .iter()
            .position(|x| *x == format!("loyalty.events.v1.{t}"))
            .unwrap_or_else(|| panic!("{t} missing in {types:?}"))
    };
    assert!(
        position("PurchaseCompleted") < position("IdentifierAdded")
            && position("IdentifierAdded") < position("CustomerUpdated")
            && position("CustomerUpdated") < position("CustomerCreated"),
        "newest first: {types:?}"
    );
    assert!(
        all.windows(2)
            .all(|w| micros(&w[0].occur_time) >= micros(&w[1].occur_time))
    );
    let purchase = &all[position("PurchaseCompleted")];
    assert_eq!(
        purchase.kind,
        identity::AccountHistoryEntryKind::Purchase as i32
    );
    assert_eq!(
        purchase.details.get("net_amount_minor").map(String::as_str),
        Some("2000")
    );
    assert_eq!(
        all[position("PointsPosted")].kind,
        identity::AccountHistoryEntryKind::Loyalty as i32
    );
    assert_eq!(
        all[position("CustomerCreated")].kind,
        identity::AccountHistoryEntryKind::Account as i32
    );

    // Pages of two: the same entries, in the same order, no duplicates or gaps.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = identity
            .list_account_history(authed(history(&customer.id, &[], 2, &token), &key))
            .await?
            .into_inner();
        paged.extend(page.entries.into_iter().map(|e| e.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        paged,
        all.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        "paging returns every entry once"
    );

    let purchases = identity
        .list_account_history(authed(
            history(
                &customer.id,
                &[identity::AccountHistoryEntryKind::Purchase],
                0,
                "",
            ),
            &key,
        ))
        .await?
        .into_inner()
        .entries;
    assert_eq!(purchases.len(), 1, "filtered by kind");

    let foreign = identity
        .list_account_history(authed(history(&customer.id, &[], 0, ""), &rival))
        .await
        .expect_err("another partner's customer");
    assert_eq!(foreign.code(), Code::NotFound);
    let bad = identity
        .list_account_history(authed(history(&customer.id, &[], 0, "garbage"), &key))
        .await
        .expect_err("not a token we issued");
    assert_eq!(bad.code(), Code::InvalidArgument);
    Ok(())
}

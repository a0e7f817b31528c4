//! End to end: all six services as processes, against PostgreSQL + Redis and once in embedded
//! mode (SQLite, no Redis). A partner registers a customer with a card, targets gold customers
//! with a segment and a 10 % reward, and the POS evaluates and commits a cart by card.
use std::{collections::BTreeMap, time::Duration};

use loyalty_proto::{
    checkout::v1 as checkout, identity::v1 as identity, rewards::v1 as rewards,
    segmentation::v1 as segmentation, types::v1 as types, wallet::v1 as wallet,
};
use loyalty_testkit::{Backend, Suite, authed, eventually, violated_fields as field_violations};
use tonic::Code;
use tonic_types::StatusExt;

struct Partner {
    key: String,
}

async fn partner(suite: &Suite, name: &str) -> anyhow::Result<Partner> {
    let mut identity = suite.identity().await?;
    let partner = identity
        .create_partner(authed(
            identity::CreatePartnerRequest {
                idempotency_key: format!("partner-{name}"),
                partner: Some(identity::Partner {
                    display_name: name.to_owned(),
                    default_currency_code: "EUR".into(),
                    ..Default::default()
                }),
            },
            suite.admin_key(),
        ))
        .await?
        .into_inner()
        .partner
        .expect("partner");
    let key = identity
        .create_api_key(authed(
            identity::CreateApiKeyRequest {
                idempotency_key: format!("key-{name}"),
                partner_id: partner.id,
                display_name: "store 12 till 3".into(),
                roles: vec![
                    identity::Role::Admin as i32,
                    identity::Role::Pos as i32,
                    identity::Role::Marketing as i32,
                ],
            },
            suite.admin_key(),
        ))
        .await?
        .into_inner()
        .secret;
    Ok(Partner { key })
}

fn card(number: &str) -> types::IdentifierRef {
    types::IdentifierRef {
        r#type: types::IdentifierType::Card as i32,
        value: number.to_owned(),
    }
}

fn line(id: &str, product: &str, quantity: i64, price: i64) -> types::CartLine {
    types::CartLine {
        line_id: id.into(),
        product_id: product.into(),
        quantity,
        unit_price_minor: price,
        ..Default::default()
    }
}

fn cart() -> types::Cart {
    types::Cart {
        currency_code: "EUR".into(),
        lines: vec![line("1", "SKU-1", 2, 1250), line("2", "SKU-2", 1, 550)],
    }
}

fn commit_request(transaction_id: &str, cart: types::Cart) -> checkout::CommitRequest {
    checkout::CommitRequest {
        transaction_id: transaction_id.into(),
        identifier: Some(card("2000 0000 0001")),
        cart: Some(cart),
        payments: vec![checkout::Payment {
            method: "card".into(),
            amount_minor: 2745,
        }],
        ..Default::default()
    }
}

/// Registers a gold customer with a card, a gold segment, a 10 % reward for it and a base
/// earning rule of 1 point per euro. Returns the segment id.
async fn set_up_program(suite: &Suite, p: &Partner) -> anyhow::Result<String> {
    let customer = suite
        .identity()
        .await?
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: "register-jana".into(),
                customer: Some(identity::Customer {
                    first_name: "Jana".into(),
                    city: "Praha".into(),
                    properties: BTreeMap::from([("tier".to_owned(), "gold".to_owned())]),
                    ..Default::default()
                }),
                identifiers: vec![card("2000 0000 0001")],
                ..Default::default()
            },
            &p.key,
        ))
        .await?
        .into_inner();
    let customer_id = customer.customer.expect("customer").id;
    assert_eq!(
        customer.identifiers[0].value, "200000000001",
        "card numbers are normalised"
    );

    let mut segmentation = suite.segmentation().await?;
    let segment = segmentation
        .create_segment(authed(
            segmentation::CreateSegmentRequest {
                idempotency_key: "gold-segment".into(),
                segment: Some(loyalty_testkit::segment_where_equals(
                    "Gold customers",
                    "customer.properties.tier",
                    "gold",
                )),
            },
            &p.key,
        ))
        .await?
        .into_inner()
        .segment
        .expect("segment");

    // The customer reaches segmentation's feature store through identity's events.
    eventually(Duration::from_secs(20), || {
        let mut segmentation = segmentation.clone();
        let (customer_id, segment_id, key) =
            (customer_id.clone(), segment.id.clone(), p.key.clone());
        async move {
            let m = segmentation
                .get_customer_memberships(authed(
                    segmentation::GetCustomerMembershipsRequest {
                        customer_id,
                        cart: Some(cart()),
                    },
                    &key,
                ))
                .await?
                .into_inner();
            Ok(m.memberships
                .iter()
                .any(|m| m.segment_id == segment_id)
                .then_some(()))
        }
    })
    .await?;

    let mut rewards = suite.rewards().await?;
    rewards
        .create_reward(authed(
            rewards::CreateRewardRequest {
                idempotency_key: "gold-10".into(),
                reward: Some(rewards::Reward {
                    display_name: "Gold 10 %".into(),
                    r#type: rewards::RewardType::CashDesk as i32,
                    benefit: Some(rewards::reward::Benefit::CartPercentageDiscount(
                        rewards::CartPercentageDiscount { basis_points: 1000 },
                    )),
                    segment_ids: vec![segment.id.clone()],
                    // Combines with the base earn.
                    combinable: true,
                    ..Default::default()
                }),
            },
            &p.key,
        ))
        .await?;
    rewards
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
            &p.key,
        ))
        .await?;
    Ok(segment.id)
}

async fn gold_customer_checkout(backend: Backend) -> anyhow::Result<()> {
    let suite = Suite::start(backend).await?;
    let shop = partner(&suite, "Shop").await?;
    let segment_id = set_up_program(&suite, &shop).await?;
    let mut checkout = suite.checkout().await?;

    let evaluation = checkout
        .evaluate(authed(
            checkout::EvaluateRequest {
                identifier: Some(card("2000 0000 0001")),
                cart: Some(cart()),
                channel: types::SalesChannel::Pos as i32,
                ..Default::default()
            },
            &shop.key,
        ))
        .await?
        .into_inner();
    let totals = evaluation.totals.clone().expect("totals");
    assert_eq!(totals.gross_amount_minor, 3050);
    assert_eq!(
        totals.discount_amount_minor, 305,
        "10 % off for gold customers"
    );
    assert_eq!(totals.net_amount_minor, 2745);
    assert_eq!(evaluation.lines[0].discounts[0].amount_minor, 250);
    assert_eq!(
        evaluation.lines[0].discounts[0].benefit_display_name,
        "Gold 10 %"
    );
    assert_eq!(evaluation.lines[1].net_amount_minor, 495);
    assert_eq!(evaluation.points_to_earn, 27, "1 point per whole euro paid");
    assert_eq!(evaluation.points_balance, 0);
    assert!(evaluation.segment_ids.contains(&segment_id));

    let first = checkout
        .commit(authed(
            commit_request("store-12/till-3/42", cart()),
            &shop.key,
        ))
        .await?
        .into_inner()
        .receipt
        .expect("receipt");
    let retry = checkout
        .commit(authed(
            commit_request("store-12/till-3/42", cart()),
            &shop.key,
        ))
        .await?
        .into_inner()
        .receipt
        .expect("receipt");
    assert_eq!(first, retry, "a retried commit returns the same receipt");
    assert_eq!(first.points_earned, 27);
    assert_eq!(first.points_balance, 27);
    assert_eq!(first.totals.expect("totals").net_amount_minor, 2745);

    let balance = suite
        .wallet()
        .await?
        .get_balance(authed(
            wallet::GetBalanceRequest {
                customer_id: evaluation.customer_id.clone(),
                ..Default::default()
            },
            &shop.key,
        ))
        .await?
        .into_inner()
        .balance
        .expect("balance");
    assert_eq!(balance.available_points, 27, "points are earned once");

    let mut other_cart = cart();
    other_cart.lines[0].quantity = 5;
    let reused = checkout
        .commit(authed(
            commit_request("store-12/till-3/42", other_cart),
            &shop.key,
        ))
        .await
        .expect_err("same transaction id, different cart");
    assert_eq!(reused.code(), Code::AlreadyExists);
    assert_eq!(
        reused
            .get_error_details()
            .error_info()
            .expect("reason")
            .reason,
        "TRANSACTION_ID_REUSED"
    );

    suite.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn gold_customer_saves_10_percent_and_earns_points_once_on_postgres() -> anyhow::Result<()> {
    gold_customer_checkout(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread")]
async fn gold_customer_saves_10_percent_and_earns_points_once_on_sqlite() -> anyhow::Result<()> {
    gold_customer_checkout(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_calls_are_refused_with_the_right_code() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let shop = partner(&suite, "Shop").await?;
    let rival = partner(&suite, "Rival").await?;
    set_up_program(&suite, &shop).await?;
    let mut checkout = suite.checkout().await?;
    let evaluate =
        |identifier: types::IdentifierRef, cart: types::Cart| checkout::EvaluateRequest {
            identifier: Some(identifier),
            cart: Some(cart),
            ..Default::default()
        };

    let no_key = checkout
        .evaluate(tonic::Request::new(evaluate(
            card("2000 0000 0001"),
            cart(),
        )))
        .await
        .expect_err("no key");
    assert_eq!(no_key.code(), Code::Unauthenticated);

    let wrong_key = checkout
        .evaluate(authed(
            evaluate(card("2000 0000 0001"), cart()),
            "lk_not_a_key",
        ))
        .await
        .expect_err("unknown key");
    assert_eq!(wrong_key.code(), Code::Unauthenticated);

    let foreign = checkout
        .evaluate(authed(evaluate(card("2000 0000 0001"), cart()), &rival.key))
        .await
        .expect_err("another partner's card");
    assert_eq!(foreign.code(), Code::NotFound);

    let empty_card = checkout
        .evaluate(authed(evaluate(card(""), cart()), &shop.key))
        .await
        .expect_err("empty card number");
    assert_eq!(empty_card.code(), Code::InvalidArgument);
    assert_eq!(field_violations(&empty_card), ["identifier.value"]);

    let mut negative = cart();
    negative.lines[0].quantity = -1;
    let bad_cart = checkout
        .evaluate(authed(
            evaluate(card("2000 0000 0001"), negative.clone()),
            &shop.key,
        ))
        .await
        .expect_err("negative quantity");
    assert_eq!(bad_cart.code(), Code::InvalidArgument);
    assert_eq!(field_violations(&bad_cart), ["cart.lines[0].quantity"]);

    let bad_commit = checkout
        .commit(authed(commit_request("", negative), &shop.key))
        .await
        .expect_err("no transaction id, negative quantity");
    assert_eq!(
        field_violations(&bad_commit),
        ["transaction_id", "cart.lines[0].quantity"]
    );

    let mut identity = suite.identity().await?;
    let no_partner = identity
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: "x".into(),
                customer: Some(identity::Customer::default()),
                identifiers: vec![],
                ..Default::default()
            },
            suite.admin_key(),
        ))
        .await
        .expect_err("the admin key belongs to no partner");
    assert_eq!(no_partner.code(), Code::PermissionDenied);

    let taken = identity
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: "register-another".into(),
                customer: Some(identity::Customer::default()),
                identifiers: vec![card("200000000001")],
                ..Default::default()
            },
            &shop.key,
        ))
        .await
        .expect_err("the card is taken");
    assert_eq!(taken.code(), Code::AlreadyExists);

    suite.stop().await
}

//! Rewards' `OfferAwarded` credited to wallets: money to the CREDIT type of its currency
//! (commerce balance, or open and payable when instantly redeemable), points to their type;
//! awards no wallet can take are skipped instead of blocking the consumer.
use chrono::{DateTime, Duration, Utc};
use loyalty_platform::{
    db::begin_write,
    events::{DomainEvent, EventHandler},
    time::to_timestamp,
};
use loyalty_proto::{events::v1 as ev, types::v1::Money};
use uuid::Uuid;

use super::{Fixture, TypeRow, TypeSpec};
use crate::{domain::Unit, store::offer_awards::OfferAwards};

fn now() -> DateTime<Utc> {
    let t = Utc::now();
    DateTime::from_timestamp(t.timestamp(), 0).expect("in range")
}

fn envelope(partner_id: Uuid, award: &ev::OfferAwarded) -> ev::EventEnvelope {
    ev::EventEnvelope {
        event_id: Uuid::now_v7().to_string(),
        event_type: ev::OfferAwarded::TYPE.into(),
        producer: "rewards".into(),
        partner_id: partner_id.to_string(),
        payload: prost::Message::encode_to_vec(award),
        ..Default::default()
    }
}

fn money_award(customer: Uuid, currency: &str, amount: i64, auto_redeem: bool) -> ev::OfferAwarded {
    ev::OfferAwarded {
        offer_id: Uuid::now_v7().to_string(),
        customer_id: customer.to_string(),
        amount: Some(Money {
            currency_code: currency.into(),
            amount_minor: amount,
        }),
        award_id: Uuid::now_v7().to_string(),
        auto_redeem,
        ..Default::default()
    }
}

async fn apply(f: &Fixture, award: &ev::OfferAwarded) {
    let txn = begin_write(&f.db).await.expect("begin");
    OfferAwards
        .apply(&txn, &envelope(f.partner, award))
        .await
        .expect("apply");
    txn.commit().await.expect("commit");
}

/// (commerce, available, payable) of a customer's wallet of a type; zeros without one.
async fn held(f: &Fixture, customer: Uuid, ty: &TypeRow) -> (i64, i64, i64) {
    crate::store::ops::balances(&f.db, f.partner, customer, Some(ty), now())
        .await
        .expect("balances")
        .first()
        .map_or((0, 0, 0), |w| (w.commerce, w.available, w.payable))
}

fn credit(code: &'static str, currency: &'static str) -> TypeSpec {
    TypeSpec {
        code,
        unit: Unit::Credit,
        currency,
        is_default: false,
        ..TypeSpec::default()
    }
}

#[tokio::test]
async fn money_awards_go_to_the_credit_type_of_their_currency() {
    let f = Fixture::postgres().await;
    let t0 = now();
    let points = f.points_type(TypeSpec::default(), t0).await;
    let eur = f.points_type(credit("eur", "EUR"), t0).await;
    let czk = f.points_type(credit("czk", "CZK"), t0).await;
    let jana = Uuid::now_v7();

    let mut later = money_award(jana, "EUR", 500, false);
    later.expire_time = Some(to_timestamp(t0 + Duration::days(90)));
    apply(&f, &later).await;
    let w = f.wallet(jana, &eur, now()).await;
    assert_eq!((w.commerce, w.available, w.payable), (500, 0, 0));
    assert_eq!(w.next_expirations.len(), 1, "the award's validity");

    apply(&f, &money_award(jana, "EUR", 300, true)).await;
    assert_eq!(held(&f, jana, &eur).await, (500, 300, 300));
    assert_eq!(held(&f, jana, &czk).await, (0, 0, 0));

    apply(
        &f,
        &ev::OfferAwarded {
            customer_id: jana.to_string(),
            points: 40,
            award_id: Uuid::now_v7().to_string(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(held(&f, jana, &points).await.1, 40);
}

#[tokio::test]
async fn awards_no_wallet_can_take_are_skipped() {
    let f = Fixture::sqlite().await;
    let t0 = now();
    f.points_type(TypeSpec::default(), t0).await;
    let eur = f.points_type(credit("eur", "EUR"), t0).await;
    let jana = Uuid::now_v7();
    // No CREDIT type in USD, an unknown points type, an award already expired: nothing posts.
    apply(&f, &money_award(jana, "USD", 500, false)).await;
    apply(
        &f,
        &ev::OfferAwarded {
            customer_id: jana.to_string(),
            points: 40,
            points_type_id: "nope".into(),
            ..Default::default()
        },
    )
    .await;
    let mut expired = money_award(jana, "EUR", 500, false);
    expired.expire_time = Some(to_timestamp(t0 - Duration::days(1)));
    apply(&f, &expired).await;
    assert_eq!(held(&f, jana, &eur).await, (0, 0, 0));
}

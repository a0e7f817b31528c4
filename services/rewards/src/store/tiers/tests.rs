//! Tiers against PostgreSQL (a fresh database per test) and SQLite: the ladder through the
//! service's own API object, checkout's and the wallet's events fed through the real event
//! handler in a transaction each (as the consumer runs it), and the period-end job.
use chrono::{DateTime, TimeZone, Utc};
use loyalty_platform::{
    Role,
    entities::outbox,
    events::{DomainEvent, EventHandler},
    time::to_timestamp,
};
use loyalty_proto::{
    events::v1 as ev,
    rewards::v1::{self as pb, rewards_service_server::RewardsService},
    types::v1::Money,
};
use prost::Message;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, TransactionTrait};
use tonic::{Code, Request};
use uuid::Uuid;

use super::{TierActivityFeed, review_due};
use crate::store::test_support::{TestApi, request};

enum Tiers {}
type Fixture = TestApi<Tiers>;

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
}

impl Fixture {
    fn req<T>(&self, partner: Uuid, message: T) -> Request<T> {
        request(partner, Role::Admin, message)
    }

    async fn tier(&self, code: &str, rank: i32, min_spend: i64) -> pb::Tier {
        self.api
            .create_tier(self.req(
                self.partner,
                pb::CreateTierRequest {
                    idempotency_key: format!("tier-{code}"),
                    tier: Some(pb::Tier {
                        code: code.into(),
                        display_name: code.to_uppercase(),
                        rank,
                        qualification: Some(pb::TierQualification {
                            minimum_spend: Some(Money {
                                currency_code: "EUR".into(),
                                amount_minor: min_spend,
                            }),
                            period_type: pb::TierPeriodType::CalendarYear as i32,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                },
            ))
            .await
            .expect("tier")
            .into_inner()
            .tier
            .expect("tier")
    }

    /// Silver from 1,000.00 EUR and gold from 5,000.00 EUR spent in a calendar year.
    async fn ladder(&self) -> (pb::Tier, pb::Tier) {
        (
            self.tier("silver", 1, 100_000).await,
            self.tier("gold", 2, 500_000).await,
        )
    }

    /// Applies an event as the consumer does: in a transaction of its own.
    async fn feed<E: DomainEvent>(&self, event_id: Uuid, when: DateTime<Utc>, event: &E) {
        let envelope = ev::EventEnvelope {
            event_id: event_id.to_string(),
            event_type: E::TYPE.to_owned(),
            producer: "checkout".into(),
            partner_id: self.partner.to_string(),
            occur_time: Some(to_timestamp(when)),
            sequence: 0,
            payload: event.encode_to_vec(),
            traceparent: String::new(),
        };
        let txn = self.db.begin().await.unwrap();
        TierActivityFeed
            .apply(&txn, &envelope)
            .await
            .expect("applied");
        txn.commit().await.unwrap();
    }

    async fn buy(&self, customer: Uuid, purchase: &str, when: DateTime<Utc>, minor: i64) {
        self.feed(
            Uuid::now_v7(),
            when,
            &ev::PurchaseCompleted {
                purchase_id: purchase.into(),
                transaction_id: format!("T-{purchase}"),
                customer_id: customer.to_string(),
                currency_code: "EUR".into(),
                net_amount_minor: minor,
                purchase_time: Some(to_timestamp(when)),
                ..Default::default()
            },
        )
        .await;
    }

    async fn tier_changes(&self) -> Vec<ev::TierChanged> {
        outbox::Entity::find()
            .filter(outbox::Column::EventType.eq(ev::TierChanged::TYPE))
            .order_by_asc(outbox::Column::Sequence)
            .all(&self.db)
            .await
            .unwrap()
            .into_iter()
            .map(|r| ev::TierChanged::decode(r.payload.as_slice()).unwrap())
            .collect()
    }

    async fn history(&self, customer: Uuid) -> Vec<pb::CustomerTierChange> {
        self.api
            .list_customer_tier_history(self.req(
                self.partner,
                pb::ListCustomerTierHistoryRequest {
                    customer_id: customer.to_string(),
                    ..Default::default()
                },
            ))
            .await
            .expect("history")
            .into_inner()
            .changes
    }

    async fn customer_tier(&self, customer: Uuid) -> pb::CustomerTier {
        self.api
            .get_customer_tier(self.req(
                self.partner,
                pb::GetCustomerTierRequest {
                    customer_id: customer.to_string(),
                },
            ))
            .await
            .expect("customer tier")
            .into_inner()
            .customer_tier
            .expect("customer tier")
    }
}

async fn purchases_upgrade_once_and_publish_tier_changed(f: Fixture) {
    let (silver, gold) = f.ladder().await;
    let customer = Uuid::now_v7();
    f.buy(customer, "p1", at(2026, 3, 1), 60_000).await;
    assert!(
        f.tier_changes().await.is_empty(),
        "600.00 EUR earns nothing"
    );

    // The same purchase delivered twice (a redelivery, and a re-publication under another
    // event id) counts once.
    let redelivered = Uuid::now_v7();
    for id in [redelivered, redelivered, Uuid::now_v7()] {
        f.feed(
            id,
            at(2026, 4, 1),
            &ev::PurchaseCompleted {
                purchase_id: "p2".into(),
                customer_id: customer.to_string(),
                currency_code: "EUR".into(),
                net_amount_minor: 50_000,
                purchase_time: Some(to_timestamp(at(2026, 4, 1))),
                ..Default::default()
            },
        )
        .await;
    }
    let changes = f.tier_changes().await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].tier_id, silver.id);
    assert_eq!((changes[0].previous_rank, changes[0].rank), (0, 1));
    assert_eq!(changes[0].cause, "UPGRADE");
    assert!(!changes[0].manual);

    // Counted once: 1,100.00 EUR, so 3,900.00 still missing for gold by the end of 2026.
    let t = crate::api::tiers::customer_tier(&f.db, f.partner, customer, at(2026, 6, 1))
        .await
        .unwrap();
    assert_eq!(t.tier_code, "silver");
    assert_eq!(t.next_tier_id, gold.id);
    assert_eq!(t.qualifying_spend.as_ref().unwrap().amount_minor, 110_000);
    assert_eq!(t.qualifying_purchase_count, 2);
    assert_eq!(t.spend_to_next_tier.as_ref().unwrap().amount_minor, 390_000);
    assert_eq!(
        t.period_end_time,
        Some(to_timestamp(
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
        ))
    );
    assert_eq!(
        t.valid_until_time,
        Some(to_timestamp(
            Utc.with_ymd_and_hms(2028, 1, 1, 0, 0, 0).unwrap()
        )),
        "earned in 2026, held through 2027"
    );

    f.buy(customer, "p3", at(2026, 5, 1), 400_000).await;
    let changes = f.tier_changes().await;
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[1].tier_id, gold.id);
    assert_eq!(changes[1].previous_tier_id, silver.id);

    let history = f.history(customer).await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].cause, pb::TierChangeCause::Upgrade as i32);
    assert_eq!(history[1].rank, 2);
    assert_eq!(history[1].change_time, Some(to_timestamp(at(2026, 5, 1))));
}

#[tokio::test]
async fn purchases_upgrade_once_and_publish_tier_changed_on_postgres() {
    purchases_upgrade_once_and_publish_tier_changed(Fixture::postgres().await).await;
}

#[tokio::test]
async fn purchases_upgrade_once_and_publish_tier_changed_on_sqlite() {
    purchases_upgrade_once_and_publish_tier_changed(Fixture::sqlite().await).await;
}

#[tokio::test]
async fn the_period_end_job_downgrades_and_a_second_run_does_nothing() {
    let f = Fixture::postgres().await;
    let (silver, gold) = f.ladder().await;
    let customer = Uuid::now_v7();
    f.buy(customer, "p1", at(2026, 5, 1), 500_000).await;
    // 2027: silver's threshold only.
    f.buy(customer, "p2", at(2027, 2, 1), 150_000).await;
    assert_eq!(f.tier_changes().await.len(), 1, "gold is held through 2027");

    let run = review_due(&f.db, at(2027, 12, 1)).await.unwrap();
    assert_eq!(run.customers, 0, "nothing due before the end of 2027");

    let run = review_due(&f.db, at(2028, 1, 2)).await.unwrap();
    assert_eq!((run.customers, run.changed), (1, 1));
    let changes = f.tier_changes().await;
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[1].previous_tier_id, gold.id);
    assert_eq!(changes[1].tier_id, silver.id);
    assert_eq!(changes[1].cause, "DOWNGRADE");

    let run = review_due(&f.db, at(2028, 1, 2)).await.unwrap();
    assert_eq!(run.customers, 0, "silver is held through 2028");
    let history = f.history(customer).await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].cause, pb::TierChangeCause::Downgrade as i32);
}

#[tokio::test]
async fn returns_and_status_points_count() {
    let f = Fixture::postgres().await;
    let (silver, _) = f.ladder().await;
    // Platinum needs 1,000 status points as well.
    let platinum = f
        .api
        .create_tier(f.req(
            f.partner,
            pb::CreateTierRequest {
                idempotency_key: "platinum".into(),
                tier: Some(pb::Tier {
                    code: "platinum".into(),
                    display_name: "Platinum".into(),
                    rank: 3,
                    qualification: Some(pb::TierQualification {
                        minimum_points: 1_000,
                        points_type_id: "status".into(),
                        period_type: pb::TierPeriodType::Rolling as i32,
                        period_days: 365,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .tier
        .unwrap();
    let customer = Uuid::now_v7();
    f.buy(customer, "p1", at(2026, 3, 1), 100_000).await;
    assert_eq!(f.tier_changes().await.len(), 1);
    // Half of it returned a week later: counted against March, tier held all the same.
    f.feed(
        Uuid::now_v7(),
        at(2026, 3, 8),
        &ev::PurchaseReturned {
            return_id: "r1".into(),
            purchase_id: "p1".into(),
            customer_id: customer.to_string(),
            currency_code: "EUR".into(),
            refund_amount_minor: 50_000,
            ..Default::default()
        },
    )
    .await;
    let t = f.customer_tier(customer).await;
    assert_eq!(t.tier_id, silver.id);

    let posted = |points: i64, kind: &str, code: &str| ev::PointsPosted {
        customer_id: customer.to_string(),
        entry_id: Uuid::now_v7().to_string(),
        points,
        points_type_id: Uuid::now_v7().to_string(),
        points_type_code: code.into(),
        kind: kind.into(),
        ..Default::default()
    };
    f.feed(
        Uuid::now_v7(),
        at(2026, 3, 9),
        &posted(900, "AWARD", "status"),
    )
    .await;
    f.feed(
        Uuid::now_v7(),
        at(2026, 3, 9),
        &posted(5_000, "AWARD", "regular"),
    )
    .await;
    f.feed(
        Uuid::now_v7(),
        at(2026, 3, 9),
        &posted(-400, "SPEND", "status"),
    )
    .await;
    assert_eq!(
        f.tier_changes().await.len(),
        1,
        "900 status points of 1,000"
    );
    f.feed(
        Uuid::now_v7(),
        at(2026, 3, 10),
        &posted(100, "AWARD", "status"),
    )
    .await;
    let changes = f.tier_changes().await;
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[1].tier_id, platinum.id);
}

#[tokio::test]
async fn manual_tiers_override_qualification_and_deleted_tiers_requalify() {
    let f = Fixture::postgres().await;
    let (silver, gold) = f.ladder().await;
    let customer = Uuid::now_v7();
    let now = Utc::now();
    f.buy(customer, "p1", now, 100_000).await;

    let set = f
        .api
        .set_customer_tier(f.req(
            f.partner,
            pb::SetCustomerTierRequest {
                idempotency_key: "goodwill".into(),
                customer_id: customer.to_string(),
                tier_id: "gold".into(),
                reason: "complaint goodwill".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .customer_tier
        .unwrap();
    assert_eq!(set.tier_id, gold.id);
    assert!(set.manual);
    let t = f.customer_tier(customer).await;
    assert_eq!((t.tier_code.as_str(), t.manual), ("gold", true));
    let last = f.tier_changes().await.pop().unwrap();
    assert!(last.manual);
    assert_eq!(last.cause, "MANUAL_SET");

    // Another partner's tier is not found.
    let other = Uuid::now_v7();
    let err = f
        .api
        .set_customer_tier(f.req(
            other,
            pb::SetCustomerTierRequest {
                idempotency_key: "other".into(),
                customer_id: customer.to_string(),
                tier_id: gold.id.clone(),
                reason: "x".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Deleting gold: the customer's manual tier goes, the job re-qualifies (silver).
    f.api
        .delete_tier(f.req(
            f.partner,
            pb::DeleteTierRequest {
                idempotency_key: "delete-gold".into(),
                tier_id: gold.id.clone(),
                etag: gold.etag.clone(),
            },
        ))
        .await
        .unwrap();
    let run = review_due(&f.db, Utc::now()).await.unwrap();
    assert_eq!((run.customers, run.changed), (1, 1));
    let t = f.customer_tier(customer).await;
    assert_eq!((t.tier_id.as_str(), t.manual), (silver.id.as_str(), false));
    let history = f.history(customer).await;
    let causes: Vec<i32> = history.iter().map(|h| h.cause).collect();
    assert_eq!(
        causes,
        [
            pb::TierChangeCause::Upgrade as i32,
            pb::TierChangeCause::ManualSet as i32,
            pb::TierChangeCause::TierDeleted as i32,
        ]
    );
    assert_eq!(history[1].reason, "complaint goodwill");
}

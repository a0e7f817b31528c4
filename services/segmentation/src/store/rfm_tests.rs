//! RFM scoring against PostgreSQL and SQLite: values from projected purchases, quintile
//! scores per partner, the nightly "already done" mark, and criteria on RFM compiled to SQL
//! agreeing with the in-memory evaluator.
use super::*;
use crate::domain::{Segment, rfm::RfmScores};
use crate::store::{
    features,
    tests::{apply, customer_in, envelope, no_cache, postgres, segment, sqlite},
};
use chrono::{Duration, SubsecRound};
use loyalty_criteria::{Operator, Value};
use loyalty_proto::events::v1 as ev;
use sea_orm::{ColumnTrait, QueryFilter};
use std::collections::BTreeSet;

fn at(t: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(loyalty_platform::time::to_timestamp(t))
}

async fn customer(db: &DatabaseConnection, partner: Uuid) -> Uuid {
    let c = customer_in("Praha");
    apply(db, envelope(partner, &c)).await;
    c.customer_id.parse().unwrap()
}

async fn bought(
    db: &DatabaseConnection,
    partner: Uuid,
    customer: Uuid,
    amount: i64,
    when: DateTime<Utc>,
) -> Uuid {
    let purchase_id = Uuid::now_v7();
    apply(
        db,
        envelope(
            partner,
            &ev::PurchaseCompleted {
                purchase_id: purchase_id.to_string(),
                customer_id: customer.to_string(),
                currency_code: "EUR".into(),
                net_amount_minor: amount,
                purchase_time: at(when),
                ..Default::default()
            },
        ),
    )
    .await;
    purchase_id
}

/// Six customers of `partner` with distinct RFM, and one of another partner.
struct Fixture {
    partner: Uuid,
    other: Uuid,
    /// Best to worst: recent and frequent big spender .. never bought.
    customers: Vec<Uuid>,
    now: DateTime<Utc>,
}

async fn fixture(db: &DatabaseConnection) -> Fixture {
    // Microseconds, as PostgreSQL keeps them.
    let now = Utc::now().trunc_subsecs(6);
    let (partner, other) = (Uuid::now_v7(), Uuid::now_v7());
    let mut customers = Vec::new();
    for _ in 0..6 {
        customers.push(customer(db, partner).await);
    }
    let days = |d: i64| now - Duration::days(d);
    // 0: three purchases, the last yesterday (50 € in the period).
    for (amount, d) in [(2_000, 1), (2_000, 40), (1_000, 100)] {
        bought(db, partner, customers[0], amount, days(d)).await;
    }
    // 1: two purchases, last 45 days ago (30 €).
    for (amount, d) in [(1_500, 45), (1_500, 200)] {
        bought(db, partner, customers[1], amount, days(d)).await;
    }
    // 2: one purchase 100 days ago (20 €) and one 400 days ago (outside the period).
    bought(db, partner, customers[2], 2_000, days(100)).await;
    bought(db, partner, customers[2], 90_000, days(400)).await;
    // 3: one purchase 200 days ago of 25 €, 10 € of it returned.
    let p = bought(db, partner, customers[3], 2_500, days(200)).await;
    apply(
        db,
        envelope(
            partner,
            &ev::PurchaseReturned {
                return_id: "R-1".into(),
                purchase_id: p.to_string(),
                customer_id: customers[3].to_string(),
                currency_code: "EUR".into(),
                refund_amount_minor: 1_000,
                ..Default::default()
            },
        ),
    )
    .await;
    // 4: only a purchase 500 days ago.
    bought(db, partner, customers[4], 5_000, days(500)).await;
    // 5: never bought.
    let stranger = customer(db, other).await;
    bought(db, other, stranger, 1_000_000, days(1)).await;
    Fixture {
        partner,
        other,
        customers,
        now,
    }
}

async fn scoring_values_and_quintiles(db: DatabaseConnection) {
    let f = fixture(&db).await;
    let scored = score_partner(&db, f.partner, f.now).await.unwrap();
    assert_eq!(scored.customers, 6);
    assert_eq!(last_run(&db, f.partner).await.unwrap(), Some(f.now));
    assert_eq!(last_run(&db, f.other).await.unwrap(), None);

    let mut got = Vec::new();
    for c in &f.customers {
        let rfm = features::features(&db, f.partner, *c)
            .await
            .unwrap()
            .rfm
            .expect("scored");
        assert_eq!(rfm.computed_at, f.now);
        got.push((rfm.values, rfm.scores));
    }
    let values: Vec<(i32, i64, i64)> = got
        .iter()
        .map(|(v, _)| (v.recency_months, v.frequency, v.monetary_minor))
        .collect();
    let r = |d: i64| recency_months(Some(f.now - Duration::days(d)), f.now);
    assert_eq!(
        values,
        [
            (0, 3, 5_000),
            (1, 2, 3_000),
            (r(100), 1, 2_000),
            (r(200), 1, 1_500),
            (r(500), 0, 0),
            (NEVER, 0, 0),
        ]
    );
    // Quintiles of six: the score is 1 + floor(5 × worse / 6).
    let scores: Vec<RfmScores> = got.iter().map(|(_, s)| *s).collect();
    assert_eq!(
        scores.iter().map(|s| s.recency).collect::<Vec<_>>(),
        [5, 4, 3, 2, 1, 1]
    );
    assert_eq!(
        scores.iter().map(|s| s.frequency).collect::<Vec<_>>(),
        [5, 4, 2, 2, 1, 1]
    );
    assert_eq!(
        scores.iter().map(|s| s.monetary).collect::<Vec<_>>(),
        [5, 4, 3, 2, 1, 1]
    );
    // The other partner's customer is not scored by this partner's run.
    let stranger = features::features(&db, f.other, first_customer(&db, f.other).await)
        .await
        .unwrap();
    assert_eq!(stranger.rfm, None);

    // Live values agree with the stored ones when nothing changed.
    assert_eq!(
        live_values(&db, f.partner, f.customers[2], f.now)
            .await
            .unwrap(),
        Some(got[2].0)
    );
    assert_eq!(
        live_values(&db, f.partner, Uuid::now_v7(), f.now)
            .await
            .unwrap(),
        None
    );
}

async fn first_customer(db: &DatabaseConnection, partner: Uuid) -> Uuid {
    customer_features::Entity::find()
        .select_only()
        .column(customer_features::Column::CustomerId)
        .filter(customer_features::Column::PartnerId.eq(partner))
        .into_tuple()
        .one(db)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn scoring_values_and_quintiles_postgres() {
    let (_pg, db) = postgres().await;
    scoring_values_and_quintiles(db).await;
}

#[tokio::test]
async fn scoring_values_and_quintiles_sqlite() {
    let (_dir, db) = sqlite().await;
    scoring_values_and_quintiles(db).await;
}

async fn criteria_on_rfm_agree(db: DatabaseConnection) {
    let f = fixture(&db).await;
    // Before the first scoring no customer has RFM facts.
    let top = segment(
        "features.rfm_monetary_score",
        Operator::GreaterOrEqual,
        Value::Int(4),
        false,
    );
    assert!(
        features::admitted(&db, f.partner, &top, f.now)
            .await
            .unwrap()
            .is_empty()
    );
    score_partner(&db, f.partner, f.now).await.unwrap();
    let cases: Vec<(Segment, Vec<usize>)> = vec![
        (top, vec![0, 1]),
        (
            segment(
                "features.rfm_recency_months",
                Operator::LessOrEqual,
                Value::Int(1),
                false,
            ),
            vec![0, 1],
        ),
        // Never purchased: no recency, so only NOT_EQUAL admits them.
        (
            segment(
                "features.rfm_recency_months",
                Operator::NotEqual,
                Value::Int(0),
                false,
            ),
            vec![1, 2, 3, 4, 5],
        ),
        (
            segment(
                "features.rfm_frequency",
                Operator::Equal,
                Value::Int(1),
                false,
            ),
            vec![2, 3],
        ),
        (
            segment(
                "features.rfm_recency_score",
                Operator::Equal,
                Value::Int(1),
                false,
            ),
            vec![4, 5],
        ),
    ];
    for (segment, expected) in cases {
        let compiled: BTreeSet<Uuid> = features::admitted(&db, f.partner, &segment, f.now)
            .await
            .unwrap()
            .into_iter()
            .collect();
        let mut in_memory = BTreeSet::new();
        for c in &f.customers {
            let facts = features::features(&db, f.partner, *c)
                .await
                .unwrap()
                .facts(f.now);
            if segment.criterion.evaluate(&facts) {
                in_memory.insert(*c);
            }
        }
        let expected: BTreeSet<Uuid> = expected.iter().map(|i| f.customers[*i]).collect();
        assert_eq!(compiled, expected, "{:?}", segment.criterion);
        assert_eq!(in_memory, expected, "{:?}", segment.criterion);
    }
}

#[tokio::test]
async fn criteria_on_rfm_agree_postgres() {
    let (_pg, db) = postgres().await;
    criteria_on_rfm_agree(db).await;
}

#[tokio::test]
async fn criteria_on_rfm_agree_sqlite() {
    let (_dir, db) = sqlite().await;
    criteria_on_rfm_agree(db).await;
}

#[tokio::test]
async fn the_nightly_run_scores_each_partner_once_per_slot() {
    let (_pg, db) = postgres().await;
    let f = fixture(&db).await;
    let slot = f.now - Duration::hours(1);
    // Two replicas at the same slot: the partners are scored once.
    let cache = no_cache();
    let (a, b) = tokio::join!(score_due(&db, &cache, slot), score_due(&db, &cache, slot));
    assert_eq!(a.unwrap() + b.unwrap(), 2, "both partners, once each");
    assert_eq!(score_due(&db, &no_cache(), slot).await.unwrap(), 0);
    let first = last_run(&db, f.partner).await.unwrap().unwrap();
    assert!(first >= slot);

    // A purchase, then the next slot: scored again with it.
    bought(&db, f.partner, f.customers[5], 100, f.now).await;
    let next = Utc::now();
    assert_eq!(score_due(&db, &no_cache(), next).await.unwrap(), 2);
    let rfm = features::features(&db, f.partner, f.customers[5])
        .await
        .unwrap()
        .rfm
        .unwrap();
    assert_eq!((rfm.values.recency_months, rfm.values.frequency), (0, 1));
}

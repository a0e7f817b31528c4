//! A selection split into slices of customer ids run in parallel under the caller's snapshot
//! (`features::admitted_sliced`): the same customers as one statement, in the same order, on
//! PostgreSQL; one statement on SQLite.
use chrono::{Duration, Utc};
use loyalty_criteria::{Criterion, Operator, RawCriterion, Value};
use loyalty_proto::events::v1 as ev;
use sea_orm::{AccessMode, ConnectionTrait, DatabaseConnection, IsolationLevel, TransactionTrait};
use uuid::Uuid;

use super::Store;
use super::features::{Slicing, admitted_by, admitted_sliced, slice_ranges};
use super::tests::{apply, create, customer_in, envelope, flexi, postgres, segment, sqlite};

/// Three slices whatever the partner's size, the bounds from every page.
const SLICED: Slicing = Slicing {
    slices: 3,
    min_customers_per_slice: 1,
    sample_percent: 100.0,
};

fn buyer(customer: Uuid, days_ago: i64) -> ev::PurchaseCompleted {
    ev::PurchaseCompleted {
        purchase_id: Uuid::now_v7().to_string(),
        customer_id: customer.to_string(),
        net_amount_minor: 1_000,
        purchase_time: Some(loyalty_platform::time::to_timestamp(
            Utc::now() - Duration::days(days_ago),
        )),
        ..Default::default()
    }
}

/// A customer of `city` with a purchase `days_ago` for each entry.
async fn customer(db: &DatabaseConnection, partner: Uuid, city: &str, purchases: &[i64]) -> Uuid {
    let c = customer_in(city);
    apply(db, envelope(partner, &c)).await;
    let id = c.customer_id.parse().unwrap();
    for days_ago in purchases {
        apply(db, envelope(partner, &buyer(id, *days_ago))).await;
    }
    id
}

/// 40 customers of the partner, half in Praha, with 0–4 purchases over 120 days.
async fn customers(db: &DatabaseConnection, partner: Uuid) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for i in 0..40_i64 {
        let city = if i % 2 == 0 { "Praha" } else { "Brno" };
        let days: Vec<i64> = (0..i % 5).map(|j| (i * 7 + j * 13) % 120).collect();
        ids.push(customer(db, partner, city, &days).await);
    }
    ids
}

/// Two purchases in 90 days and Praha.
fn regular_in_praha() -> Criterion {
    Criterion::parse(RawCriterion::All(vec![
        RawCriterion::Condition {
            field: "purchases.last_90_days.count".into(),
            operator: Some(Operator::GreaterOrEqual),
            values: vec![Value::Int(2)],
        },
        RawCriterion::Condition {
            field: "customer.city".into(),
            operator: Some(Operator::Equal),
            values: vec![Value::String("Praha".into())],
        },
    ]))
    .unwrap()
}

#[tokio::test]
async fn slices_select_what_one_statement_selects_under_the_callers_snapshot_on_postgres() {
    let (_db, db) = postgres().await;
    let (partner, other) = (Uuid::now_v7(), Uuid::now_v7());
    customers(&db, partner).await;
    // The other partner's customers fall in the same id ranges; none may be selected.
    customers(&db, other).await;
    let c = regular_in_praha();
    let now = Utc::now();

    let ranges = slice_ranges(&db, partner, SLICED).await.unwrap();
    assert_eq!(ranges.len(), 3);
    assert_eq!(ranges[0].start, None);
    assert_eq!(ranges[2].end, None);
    for w in ranges.windows(2) {
        assert_eq!(w[0].end, w[1].start, "the slices cover every id once");
        assert!(w[0].start < w[0].end);
    }
    let small = Slicing {
        min_customers_per_slice: 1_000,
        ..SLICED
    };
    assert_eq!(slice_ranges(&db, partner, small).await.unwrap().len(), 1);

    let whole = admitted_by(&db, partner, &c, now).await.unwrap();
    assert!(!whole.is_empty() && whole.len() < 20, "{whole:?}");
    let txn = db.begin().await.unwrap();
    let sliced = admitted_sliced(&db, SLICED, &txn, partner, &c, now)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert_eq!(sliced, whole, "same customers, in id order");

    // The slices read the caller's snapshot: a customer committed after it is not seen.
    let txn = db
        .begin_with_config(
            Some(IsolationLevel::RepeatableRead),
            Some(AccessMode::ReadOnly),
        )
        .await
        .unwrap();
    txn.execute_unprepared("SELECT 1").await.unwrap();
    let late = customer(&db, partner, "Praha", &[1, 2]).await;
    let sliced = admitted_sliced(&db, SLICED, &txn, partner, &c, now)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert_eq!(sliced, whole);
    let now = Utc::now();
    let after = admitted_by(&db, partner, &c, now).await.unwrap();
    assert!(after.contains(&late));

    // Creating and recalculating a Flexi segment through the sliced store.
    let store = Store::new(db.clone()).with_slicing(SLICED);
    let mut s = flexi(segment(
        "customer.city",
        Operator::Equal,
        Value::String("Praha".into()),
        false,
    ));
    s.criterion = c.clone();
    let created = create(&store, partner, s).await;
    assert_eq!(created.member_count as usize, after.len());
    let newcomer = customer(&db, partner, "Praha", &[3, 4, 5]).await;
    let txn = loyalty_platform::db::begin_write(&db).await.unwrap();
    let r = store
        .recalculate(&txn, partner, created.id, Utc::now())
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert_eq!((r.entered, r.left), (1, 0));
    assert_eq!(r.segment.member_count as usize, after.len() + 1);
    let members =
        super::membership::member_ids(&db, partner, crate::domain::GroupKind::Segment, created.id)
            .await
            .unwrap();
    assert!(members.contains(&newcomer));
}

#[tokio::test]
async fn sqlite_selects_in_one_statement_whatever_the_slicing() {
    let (_dir, db) = sqlite().await;
    let partner = Uuid::now_v7();
    customers(&db, partner).await;
    let c = regular_in_praha();
    let now = Utc::now();
    assert_eq!(slice_ranges(&db, partner, SLICED).await.unwrap().len(), 1);
    let whole = admitted_by(&db, partner, &c, now).await.unwrap();
    assert!(!whole.is_empty());
    let txn = loyalty_platform::db::begin_write(&db).await.unwrap();
    let sliced = admitted_sliced(&db, SLICED, &txn, partner, &c, now)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert_eq!(sliced, whole);
}

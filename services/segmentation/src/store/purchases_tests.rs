//! Checkout's purchases and returns projected into `customer_purchases`, idempotently, and
//! read by purchase-window criteria in memory and compiled to SQL alike (PostgreSQL and
//! SQLite); merges move the purchases to the survivor, erasures delete them.
use std::collections::BTreeSet;

use chrono::{Duration, Utc};
use loyalty_criteria::{Criterion, Fact, Operator, RawCriterion, Value};
use loyalty_platform::events::{DomainEvent, EventHandler};
use loyalty_proto::events::v1::{self as ev, EventEnvelope};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::entities::customer_purchases;
use super::features::{self, FeatureProjector};
use super::purchases;

async fn migrated(url: String) -> DatabaseConnection {
    let mut settings = loyalty_platform::Settings::defaults("segmentation", 0);
    settings.database.url = url.into();
    loyalty_platform::db::connect_and_migrate::<crate::migration::Migrator>(&settings)
        .await
        .expect("database")
}

fn envelope<E: DomainEvent>(partner: Uuid, event: &E) -> EventEnvelope {
    EventEnvelope {
        event_id: Uuid::now_v7().to_string(),
        event_type: E::TYPE.to_owned(),
        partner_id: partner.to_string(),
        occur_time: Some(loyalty_platform::time::to_timestamp(Utc::now())),
        sequence: 1,
        payload: event.encode_to_vec(),
        ..Default::default()
    }
}

/// Applies one delivery as the platform's consumer would: in a transaction of its own.
async fn deliver(db: &DatabaseConnection, e: &EventEnvelope) {
    let txn = loyalty_platform::db::begin_write(db).await.unwrap();
    FeatureProjector.apply(&txn, e).await.unwrap();
    txn.commit().await.unwrap();
}

fn bought(
    customer: Uuid,
    purchase: Uuid,
    days_ago: i64,
    net: i64,
    brands: &[&str],
) -> ev::PurchaseCompleted {
    ev::PurchaseCompleted {
        purchase_id: purchase.to_string(),
        customer_id: customer.to_string(),
        net_amount_minor: net,
        purchase_time: Some(loyalty_platform::time::to_timestamp(
            Utc::now() - Duration::days(days_ago),
        )),
        product_ids: vec!["SKU-1".into(), "sku-1".into()],
        product_group_ids: vec!["Shoes".into()],
        brand_ids: brands.iter().map(|b| (*b).to_owned()).collect(),
        business_unit_id: "Store-7".into(),
        ..Default::default()
    }
}

fn returned(customer: Uuid, purchase: Uuid, return_id: &str, refund: i64) -> ev::PurchaseReturned {
    ev::PurchaseReturned {
        return_id: return_id.into(),
        purchase_id: purchase.to_string(),
        customer_id: customer.to_string(),
        refund_amount_minor: refund,
        ..Default::default()
    }
}

fn criterion(field: &str, operator: Operator, values: Vec<Value>) -> Criterion {
    Criterion::parse(RawCriterion::Condition {
        field: field.into(),
        operator: Some(operator),
        values,
    })
    .unwrap()
}

/// The customers `c` admits, asserting that the compiled statement and the in-memory
/// evaluator (with the facts online evaluation loads) agree.
async fn admitted(
    db: &DatabaseConnection,
    partner: Uuid,
    customers: &[Uuid],
    c: &Criterion,
) -> BTreeSet<Uuid> {
    let now = Utc::now();
    let q = features::members_query(db.get_database_backend(), partner, c, now).unwrap();
    let compiled: BTreeSet<Uuid> = db
        .query_all(q)
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<Uuid>("", "customer_id").unwrap())
        .collect();
    let mut in_memory = BTreeSet::new();
    for &id in customers {
        let mut facts = features::features(db, partner, id)
            .await
            .unwrap()
            .facts(now);
        facts.extend(
            purchases::facts_for(db, partner, id, [c], now)
                .await
                .unwrap(),
        );
        if c.evaluate(&facts) {
            in_memory.insert(id);
        }
    }
    assert_eq!(compiled, in_memory, "SQL and memory disagree for {c:?}");
    compiled
}

async fn fact(db: &DatabaseConnection, partner: Uuid, customer: Uuid, field: &str) -> Option<Fact> {
    let c = criterion(field, Operator::Exists, vec![]);
    purchases::facts_for(db, partner, customer, [&c], Utc::now())
        .await
        .unwrap()
        .into_iter()
        .find(|(p, _)| p == field)
        .map(|(_, f)| f)
}

async fn rows(db: &DatabaseConnection, partner: Uuid) -> Vec<customer_purchases::Model> {
    customer_purchases::Entity::find()
        .filter(customer_purchases::Column::PartnerId.eq(partner))
        .all(db)
        .await
        .unwrap()
}

async fn purchases_are_projected_once_and_returns_reduce_the_sum(db: DatabaseConnection) {
    let (partner, jana, petr) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let (first, second, old) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let first_delivery = envelope(partner, &bought(jana, first, 1, 5_000, &["ACME"]));
    deliver(&db, &first_delivery).await;
    // The same event delivered again, and the same purchase in another event: once.
    deliver(&db, &first_delivery).await;
    deliver(
        &db,
        &envelope(partner, &bought(jana, first, 1, 5_000, &["ACME"])),
    )
    .await;
    deliver(
        &db,
        &envelope(partner, &bought(jana, second, 10, 1_000, &[])),
    )
    .await;
    deliver(
        &db,
        &envelope(partner, &bought(jana, old, 120, 9_000, &["Other"])),
    )
    .await;
    deliver(
        &db,
        &envelope(partner, &bought(petr, Uuid::now_v7(), 2, 700, &["acme"])),
    )
    .await;
    // A return, delivered twice, counts once.
    let refund = envelope(partner, &returned(jana, first, "R-1", 1_500));
    deliver(&db, &refund).await;
    deliver(
        &db,
        &envelope(partner, &returned(jana, first, "R-1", 1_500)),
    )
    .await;

    let stored = rows(&db, partner).await;
    assert_eq!(stored.len(), 4);
    let row = stored.iter().find(|r| r.purchase_id == first).unwrap();
    assert_eq!(row.returned_amount_minor, 1_500);
    assert_eq!(row.product_ids, serde_json::json!(["sku-1"]));
    assert_eq!(row.business_unit_id, "store-7");
    let totals = features::features(&db, partner, jana).await.unwrap();
    assert_eq!(
        totals.purchase_count, 3,
        "the repeated purchase counted once"
    );
    assert_eq!(totals.total_spent_minor, 15_000 - 1_500);

    let f = |field| fact(&db, partner, jana, field);
    assert_eq!(f("purchases.last_30_days.count").await, Some(Fact::Int(2)));
    assert_eq!(
        f("purchases.last_30_days.sum_minor").await,
        Some(Fact::Int(4_500))
    );
    assert_eq!(
        f("purchases.last_30_days.avg_minor").await,
        Some(Fact::Int(2_250))
    );
    assert_eq!(
        f("purchases.last_30_days.last_days_ago").await,
        Some(Fact::Int(1))
    );
    assert_eq!(f("purchases.ever.count").await, Some(Fact::Int(3)));
    assert_eq!(
        f("purchases.ever.brand_ids").await,
        Some(Fact::List(vec!["acme".into(), "other".into()]))
    );
    assert_eq!(
        f("purchases.last_5_days.avg_minor").await,
        Some(Fact::Int(3_500))
    );
    assert_eq!(
        f("purchases.last_1_days.avg_minor").await,
        None,
        "no purchase in a day"
    );

    let customers = [jana, petr];
    let acme = criterion(
        "purchases.last_30_days.brand_ids",
        Operator::Contains,
        vec![Value::String("Acme".into())],
    );
    assert_eq!(
        admitted(&db, partner, &customers, &acme).await,
        [jana, petr].into()
    );
    let two = criterion(
        "purchases.last_30_days.count",
        Operator::GreaterOrEqual,
        vec![Value::Int(2)],
    );
    assert_eq!(
        admitted(&db, partner, &customers, &two).await,
        [jana].into()
    );
    let spent = criterion(
        "purchases.last_30_days.sum_minor",
        Operator::Greater,
        vec![Value::Int(4_500)],
    );
    assert!(admitted(&db, partner, &customers, &spent).await.is_empty());
    // Another partner sees none of them.
    assert!(admitted(&db, Uuid::now_v7(), &[], &acme).await.is_empty());
}

#[tokio::test]
async fn purchases_are_projected_once_and_returns_reduce_the_sum_on_postgres() {
    let test_db = loyalty_testkit::TestDb::postgres().await.unwrap();
    purchases_are_projected_once_and_returns_reduce_the_sum(migrated(test_db.url()).await).await;
}

#[tokio::test]
async fn purchases_are_projected_once_and_returns_reduce_the_sum_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    purchases_are_projected_once_and_returns_reduce_the_sum(migrated(url).await).await;
}

async fn a_merge_moves_purchases_to_the_survivor_and_an_erasure_deletes_them(
    db: DatabaseConnection,
) {
    let (partner, jana, duplicate, petr) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    for (who, days) in [(jana, 3), (duplicate, 5), (petr, 1)] {
        deliver(
            &db,
            &envelope(partner, &bought(who, Uuid::now_v7(), days, 100, &[])),
        )
        .await;
    }
    deliver(
        &db,
        &envelope(
            partner,
            &ev::CustomerMerged {
                surviving_customer_id: jana.to_string(),
                merged_customer_id: duplicate.to_string(),
            },
        ),
    )
    .await;
    // A late purchase of the merged account is the survivor's too.
    deliver(
        &db,
        &envelope(partner, &bought(duplicate, Uuid::now_v7(), 0, 100, &[])),
    )
    .await;
    let count = "purchases.last_30_days.count";
    assert_eq!(fact(&db, partner, jana, count).await, Some(Fact::Int(3)));
    assert_eq!(
        fact(&db, partner, duplicate, count).await,
        Some(Fact::Int(0))
    );
    let three = criterion(count, Operator::Equal, vec![Value::Int(3)]);
    assert_eq!(
        admitted(&db, partner, &[jana, duplicate, petr], &three).await,
        [jana].into()
    );

    deliver(
        &db,
        &envelope(
            partner,
            &ev::CustomerErased {
                customer_id: jana.to_string(),
            },
        ),
    )
    .await;
    let left: Vec<Uuid> = rows(&db, partner)
        .await
        .iter()
        .map(|r| r.customer_id)
        .collect();
    assert_eq!(left, [petr]);
}

#[tokio::test]
async fn a_merge_moves_purchases_to_the_survivor_and_an_erasure_deletes_them_on_postgres() {
    let test_db = loyalty_testkit::TestDb::postgres().await.unwrap();
    a_merge_moves_purchases_to_the_survivor_and_an_erasure_deletes_them(
        migrated(test_db.url()).await,
    )
    .await;
}

#[tokio::test]
async fn a_merge_moves_purchases_to_the_survivor_and_an_erasure_deletes_them_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    a_merge_moves_purchases_to_the_survivor_and_an_erasure_deletes_them(migrated(url).await).await;
}

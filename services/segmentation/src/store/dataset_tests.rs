//! The benchmark dataset generator (`scripts/sql/segmentation-dataset.sql`, PostgreSQL only)
//! writes feature rows exactly as the projection would: the search form it stores equals what
//! the feature store computes from the same attributes and activity, the purchase totals
//! agree with the purchases, and criteria over them select the same customers compiled to
//! SQL as in memory. So benchmark numbers are about data the service could have made.
use super::*;
use crate::store::tests::{postgres, segment};
use chrono::Utc;
use loyalty_criteria::{Operator, Value};
use std::process::Command;

#[tokio::test]
async fn the_generated_dataset_is_what_the_projection_writes() {
    let (test_db, db) = postgres().await;
    let partner = Uuid::now_v7();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/sql/segmentation-dataset.sql"
    );
    let out = Command::new("psql")
        .args(["-q", &test_db.url(), "-v", &format!("partner={partner}")])
        .args([
            "-v",
            "customers=300",
            "-v",
            "purchases=3000",
            "-v",
            "schema=segmentation",
        ])
        .args(["-f", script])
        .output()
        .expect("psql runs (PostgreSQL's client is installed where PostgreSQL is)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let rows = entities::customer_features::Entity::find()
        .filter(entities::customer_features::Column::PartnerId.eq(partner))
        .all(&db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 300);
    let purchases = entities::customer_purchases::Entity::find()
        .all(&db)
        .await
        .unwrap();
    assert_eq!(purchases.len(), 3000);
    for row in &rows {
        let f = features::features_from(row);
        assert_eq!(row.criteria_facts, f.search_facts(), "{}", row.customer_id);
        let mine: Vec<_> = purchases
            .iter()
            .filter(|p| p.customer_id == row.customer_id)
            .collect();
        let kept = mine
            .iter()
            .filter(|p| p.returned_amount_minor < p.net_amount_minor)
            .count();
        assert_eq!(f.purchase_count, kept as i64);
        assert_eq!(
            f.total_spent_minor,
            mine.iter()
                .map(|p| p.net_amount_minor - p.returned_amount_minor)
                .sum::<i64>()
        );
        assert_eq!(
            f.last_purchase_at,
            mine.iter().map(|p| p.purchased_at).max()
        );
    }

    // The benchmark's criterion: both evaluators agree on the generated customers.
    let now = Utc::now();
    let mut typical = segment(
        "purchases.last_90_days.count",
        Operator::GreaterOrEqual,
        Value::Int(2),
        false,
    );
    let consent = segment(
        "features.marketing_consent_email",
        Operator::Equal,
        Value::Bool(true),
        false,
    );
    typical.criterion =
        loyalty_criteria::Criterion::All(vec![typical.criterion, consent.criterion]);
    let compiled: std::collections::BTreeSet<Uuid> =
        features::admitted(&db, partner, &typical, now)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let mut in_memory = std::collections::BTreeSet::new();
    for row in &rows {
        let mut facts = features::features_from(row).facts(now);
        facts.extend(
            purchases::facts_for(&db, partner, row.customer_id, [&typical.criterion], now)
                .await
                .unwrap(),
        );
        if typical.criterion.evaluate(&facts) {
            in_memory.insert(row.customer_id);
        }
    }
    assert!(!compiled.is_empty(), "the dataset has typical members");
    assert_eq!(compiled, in_memory);
}

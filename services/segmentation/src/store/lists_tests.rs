//! The account's contact sources and interests, projected from identity's profile events,
//! become `customer.contact_source_ids` and `customer.interest_ids`: replaced by each
//! `CustomerUpdated`, the survivor's kept on a merge, deleted on erasure; the compiled
//! statement and the in-memory evaluator agree (see `activity_tests::selected`), on
//! PostgreSQL and on SQLite.
use loyalty_criteria::{Criterion, Operator, RawCriterion, Value};
use loyalty_proto::events::v1 as ev;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::activity_tests::{apply, created, postgres, selected, sqlite};
use super::features;

const ESHOP: &str = "0193A6D2-7C1E-7000-8000-00000000E5E0";
const STORE: &str = "0193a6d2-7c1e-7000-8000-0000000057e0";
const WINE: &str = "0193a6d2-7c1e-7000-8000-00000000a1e0";
const COOKING: &str = "0193a6d2-7c1e-7000-8000-00000000c00c";

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn created_with(id: Uuid, sources: &[&str], interests: &[&str]) -> ev::CustomerCreated {
    ev::CustomerCreated {
        contact_source_ids: ids(sources),
        interest_ids: ids(interests),
        ..created(id)
    }
}

fn updated(id: Uuid, sources: &[&str], interests: &[&str]) -> ev::CustomerUpdated {
    ev::CustomerUpdated {
        customer_id: id.to_string(),
        contact_source_ids: ids(sources),
        interest_ids: ids(interests),
        ..Default::default()
    }
}

fn list(field: &str, operator: Operator, values: &[&str]) -> Criterion {
    Criterion::parse(RawCriterion::Condition {
        field: field.into(),
        operator: Some(operator),
        values: values
            .iter()
            .map(|s| Value::String((*s).to_owned()))
            .collect(),
    })
    .unwrap()
}

fn likes_wine() -> Criterion {
    list("customer.interest_ids", Operator::Contains, &[WINE])
}

fn has_a_source() -> Criterion {
    list("customer.contact_source_ids", Operator::Exists, &[])
}

async fn lists_follow_the_profile(db: DatabaseConnection) {
    let (partner, other) = (Uuid::now_v7(), Uuid::now_v7());
    let [anna, bob, carl, theirs] = std::array::from_fn(|_| Uuid::now_v7());
    // Ids in any case, repeated, empty: stored once, lower-cased.
    let wine_upper = WINE.to_uppercase();
    apply(
        &db,
        partner,
        1,
        &created_with(anna, &[ESHOP, &ESHOP.to_lowercase(), ""], &[&wine_upper]),
    )
    .await;
    apply(&db, partner, 2, &created(bob)).await;
    apply(&db, partner, 3, &created_with(carl, &[], &[WINE, COOKING])).await;
    apply(&db, other, 1, &created_with(theirs, &[ESHOP], &[WINE])).await;

    let stored = features::features(&db, partner, anna).await.unwrap();
    assert_eq!(stored.contact_source_ids, [ESHOP.to_lowercase()]);
    assert_eq!(stored.interest_ids, [WINE]);
    assert_eq!(
        selected(&db, partner, &likes_wine()).await,
        [anna, carl].into()
    );
    assert_eq!(selected(&db, partner, &has_a_source()).await, [anna].into());
    assert_eq!(selected(&db, other, &likes_wine()).await, [theirs].into());
    let not_wine = Criterion::Not(Box::new(likes_wine()));
    assert_eq!(selected(&db, partner, &not_wine).await, [bob].into());

    // An update replaces both lists (identity sends them whole; a deleted interest is gone).
    apply(&db, partner, 4, &updated(anna, &[STORE], &[])).await;
    assert_eq!(selected(&db, partner, &likes_wine()).await, [carl].into());
    let from = list(
        "customer.contact_source_ids",
        Operator::In,
        &["nowhere", &STORE.to_uppercase()],
    );
    assert_eq!(selected(&db, partner, &from).await, [anna].into());

    // A merge keeps the survivor's lists; the merged account's later profile is dropped.
    apply(
        &db,
        partner,
        5,
        &ev::CustomerMerged {
            surviving_customer_id: bob.to_string(),
            merged_customer_id: carl.to_string(),
        },
    )
    .await;
    apply(&db, partner, 6, &updated(carl, &[ESHOP], &[COOKING])).await;
    assert!(selected(&db, partner, &likes_wine()).await.is_empty());
    let survivor = features::features(&db, partner, bob).await.unwrap();
    assert!(survivor.contact_source_ids.is_empty() && survivor.interest_ids.is_empty());

    // An erasure deletes them with the rest of the row.
    apply(
        &db,
        partner,
        7,
        &ev::CustomerErased {
            customer_id: anna.to_string(),
        },
    )
    .await;
    assert!(selected(&db, partner, &has_a_source()).await.is_empty());
    assert_eq!(selected(&db, other, &has_a_source()).await, [theirs].into());
}

#[tokio::test]
async fn contact_sources_and_interests_follow_the_profile_on_postgres() {
    let (_db, conn) = postgres().await;
    lists_follow_the_profile(conn).await;
}

#[tokio::test]
async fn contact_sources_and_interests_follow_the_profile_on_sqlite() {
    let (_dir, conn) = sqlite().await;
    lists_follow_the_profile(conn).await;
}

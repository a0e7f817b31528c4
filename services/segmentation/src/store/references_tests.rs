//! Criteria reading other groups' membership, against PostgreSQL and SQLite: only the
//! partner's existing groups that store members, no cycles, deletion of a referenced group
//! refused, and the nightly run recalculating referenced groups first.
use chrono::Utc;
use loyalty_criteria::{Criterion, Field, Operator, RawCriterion, Value};
use loyalty_platform::ApiError;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::{
    Store,
    membership::recalculate_due,
    tests::{
        apply, create, customer_in, envelope, flexi, id, in_txn, postgres, purchase, reason,
        segment, sqlite,
    },
};
use crate::domain::{Badge, BadgeDraft, BadgeKind, Icon, Segment};

fn member_of(field: Field) -> RawCriterion {
    RawCriterion::Condition {
        field: field.path(),
        operator: Some(Operator::Equal),
        values: vec![Value::Bool(true)],
    }
}

fn segment_where(raw: RawCriterion) -> Segment {
    let mut s = flexi(segment(
        "features.purchase_count",
        Operator::GreaterOrEqual,
        Value::Int(1),
        false,
    ));
    s.criterion = Criterion::parse(raw).unwrap();
    s
}

fn flexi_badge(raw: RawCriterion) -> Badge {
    BadgeDraft {
        display_name: "Badge".into(),
        kind: Some(BadgeKind::Flexi),
        criterion: Some(Criterion::parse(raw).unwrap()),
        icon: Icon::new("https://cdn.example.com/b.png".into(), "image/png"),
        visible_to_customer: false,
        note: String::new(),
    }
    .into_badge(Uuid::now_v7(), Utc::now())
    .unwrap()
}

fn buyers() -> RawCriterion {
    RawCriterion::Condition {
        field: "features.purchase_count".into(),
        operator: Some(Operator::GreaterOrEqual),
        values: vec![Value::Int(1)],
    }
}

async fn try_segment(store: &Store, partner: Uuid, s: Segment) -> Result<Segment, ApiError> {
    in_txn(store.db(), async |t| {
        store.create_segment(t, partner, s).await
    })
    .await
}

async fn try_badge(store: &Store, partner: Uuid, b: Badge) -> Result<Badge, ApiError> {
    in_txn(store.db(), async |t| {
        store.create_badge(t, partner, b).await
    })
    .await
}

/// The fields and descriptions of an INVALID_ARGUMENT.
fn invalid(e: ApiError) -> Vec<(String, String)> {
    match e {
        ApiError::InvalidArgument(v) => v.into_iter().map(|f| (f.field, f.description)).collect(),
        other => panic!("not INVALID_ARGUMENT: {other:?}"),
    }
}

async fn references_are_checked(db: DatabaseConnection) {
    let store = Store::new(db.clone());
    let (partner, other) = (Uuid::now_v7(), Uuid::now_v7());
    let a = try_segment(&store, partner, segment_where(buyers()))
        .await
        .unwrap();
    let foreign = try_badge(&store, other, flexi_badge(buyers()))
        .await
        .unwrap();

    // Another partner's badge is unknown here.
    let e = try_segment(
        &store,
        partner,
        segment_where(member_of(Field::Badge(foreign.id))),
    )
    .await
    .unwrap_err();
    assert_eq!(
        invalid(e),
        [(
            "segment.criterion.condition.field".to_owned(),
            format!("no such badge {}", foreign.id)
        )]
    );

    // ValidateCriterion's check, for a criterion of no group yet: the same answers.
    let problems = async |raw: RawCriterion| {
        let c = Criterion::parse(raw).unwrap();
        store
            .reference_problems(&db, partner, "criterion", &c)
            .await
            .unwrap()
            .into_vec()
            .into_iter()
            .map(|f| (f.field, f.description))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        problems(member_of(Field::Badge(foreign.id))).await,
        [(
            "criterion.condition.field".to_owned(),
            format!("no such badge {}", foreign.id)
        )]
    );
    assert!(problems(member_of(Field::Segment(a.id))).await.is_empty());
    assert!(problems(buyers()).await.is_empty());

    // badge b → segment a; a → b would close a cycle, a → a is one.
    let b = try_badge(
        &store,
        partner,
        flexi_badge(member_of(Field::Segment(a.id))),
    )
    .await
    .unwrap();
    let update_a = async |raw: RawCriterion| {
        in_txn(&db, async |t| {
            store
                .update_segment(t, partner, a.id, "", |c| {
                    let mut n = c.clone();
                    n.criterion = Criterion::parse(raw).unwrap();
                    n.version += 1;
                    Ok(n)
                })
                .await
        })
        .await
    };
    let cycle = invalid(update_a(member_of(Field::Badge(b.id))).await.unwrap_err());
    assert_eq!(cycle[0].0, "segment.criterion.condition.field");
    assert!(cycle[0].1.starts_with("makes a cycle"), "{cycle:?}");
    let own = invalid(update_a(member_of(Field::Segment(a.id))).await.unwrap_err());
    assert!(own[0].1.ends_with("references itself"), "{own:?}");
    let own_badge = in_txn(&db, async |t| {
        store
            .update_badge(t, partner, b.id, "", |c| {
                let mut n = c.clone();
                n.criterion = Some(Criterion::parse(member_of(Field::Badge(b.id))).unwrap());
                n.version += 1;
                Ok(n)
            })
            .await
    })
    .await
    .unwrap_err();
    assert_eq!(invalid(own_badge)[0].0, "badge.criterion.condition.field");

    // A cart segment stores no members to refer to.
    let cart = create(
        &store,
        partner,
        flexi(segment(
            "cart.total_minor",
            Operator::GreaterOrEqual,
            Value::Int(1),
            true,
        )),
    )
    .await;
    let e = try_segment(
        &store,
        partner,
        segment_where(member_of(Field::Segment(cart.id))),
    )
    .await
    .unwrap_err();
    assert!(invalid(e)[0].1.contains("stores no members"));

    // a is in use by b; b in use by c; deleting in the right order works.
    let c = try_segment(
        &store,
        partner,
        segment_where(member_of(Field::Badge(b.id))),
    )
    .await
    .unwrap();
    let delete_segment = async |id: Uuid| {
        in_txn(&db, async |t| {
            store.delete_segment(t, partner, id, "", Utc::now()).await
        })
        .await
    };
    let delete_badge = async |id: Uuid| {
        in_txn(&db, async |t| {
            store.delete_badge(t, partner, id, "", Utc::now()).await
        })
        .await
    };
    match delete_segment(a.id).await.unwrap_err() {
        ApiError::PreconditionWithMetadata {
            reason, metadata, ..
        } => {
            assert_eq!(reason, "SEGMENT_IN_USE");
            assert_eq!(
                metadata.get("referencing_badge_ids"),
                Some(&b.id.to_string())
            );
            assert_eq!(metadata.get("referencing_segment_ids"), None);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        reason(delete_badge(b.id).await.unwrap_err()),
        "BADGE_IN_USE"
    );
    delete_segment(c.id).await.unwrap();
    delete_badge(b.id).await.unwrap();
    delete_segment(a.id).await.unwrap();
}

#[tokio::test]
async fn references_must_be_known_groups_without_cycles_and_block_deletion_on_postgres() {
    let (_db, db) = postgres().await;
    references_are_checked(db).await;
}

#[tokio::test]
async fn references_must_be_known_groups_without_cycles_and_block_deletion_on_sqlite() {
    let (_dir, db) = sqlite().await;
    references_are_checked(db).await;
}

/// Segment s reads badge x, which reads segment a (due segments are listed before due
/// badges, so without ordering s would run before x). Jana buys after all three exist: one
/// nightly run gives her a, then x, then s.
async fn referenced_groups_first(db: DatabaseConnection) {
    let store = Store::new(db.clone());
    let partner = Uuid::now_v7();
    let jana = customer_in("Praha");
    apply(&db, envelope(partner, &jana)).await;
    let a = try_segment(&store, partner, segment_where(buyers()))
        .await
        .unwrap();
    let x = try_badge(
        &store,
        partner,
        flexi_badge(member_of(Field::Segment(a.id))),
    )
    .await
    .unwrap();
    let s = try_segment(
        &store,
        partner,
        segment_where(member_of(Field::Badge(x.id))),
    )
    .await
    .unwrap();
    apply(&db, envelope(partner, &purchase(&jana, 100))).await;
    let run = recalculate_due(
        &crate::store::Store::new(db.clone()),
        &crate::store::tests::no_cache(),
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!((run.recalculated, run.entered), (3, 3), "{run:?}");
    for (members, what) in [
        (store.members(partner, a.id, 10, None).await.unwrap(), "a"),
        (
            store.badge_members(partner, x.id, 10, None).await.unwrap(),
            "x",
        ),
        (store.members(partner, s.id, 10, None).await.unwrap(), "s"),
    ] {
        let ids: Vec<Uuid> = members.iter().map(|m| m.customer_id).collect();
        assert_eq!(ids, [id(&jana)], "{what}");
    }
}

#[tokio::test]
async fn the_nightly_run_recalculates_referenced_groups_first_on_postgres() {
    let (_db, db) = postgres().await;
    referenced_groups_first(db).await;
}

#[tokio::test]
async fn the_nightly_run_recalculates_referenced_groups_first_on_sqlite() {
    let (_dir, db) = sqlite().await;
    referenced_groups_first(db).await;
}

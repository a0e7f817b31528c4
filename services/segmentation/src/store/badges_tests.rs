//! Badges against PostgreSQL and SQLite: holders from the criterion, by hand and from the
//! nightly run, their history and events, a customer's badges, updates and deletion.
use chrono::Utc;
use loyalty_criteria::{Criterion, Operator, RawCriterion, Value};
use loyalty_proto::events::v1 as ev;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::{
    Store,
    membership::{HistoryFilter, recalculate_due},
    tests::{
        apply, customer_in, envelope, id, in_txn, postgres, published, purchase, reason, sqlite,
    },
};
use crate::domain::{
    Badge, BadgeDraft, BadgeKind, CustomerBadge, GroupKind, Icon, ManualChange, MembershipCause,
};
use loyalty_platform::ApiError;

fn buyers_criterion() -> Criterion {
    Criterion::parse(RawCriterion::Condition {
        field: "features.purchase_count".into(),
        operator: Some(Operator::GreaterOrEqual),
        values: vec![Value::Int(1)],
    })
    .unwrap()
}

fn badge(kind: BadgeKind, criterion: Option<Criterion>) -> Badge {
    BadgeDraft {
        display_name: "Buyer".into(),
        kind: Some(kind),
        criterion,
        icon: Icon::new("https://cdn.example.com/buyer.png".into(), "image/png"),
        visible_to_customer: true,
        note: String::new(),
    }
    .into_badge(Uuid::now_v7(), Utc::now())
    .unwrap()
}

async fn create(store: &Store, partner: Uuid, b: Badge) -> Badge {
    in_txn(store.db(), async |t| {
        store.create_badge(t, partner, b).await
    })
    .await
    .unwrap()
}

async fn holders(store: &Store, partner: Uuid, badge: Uuid) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = store
        .badge_members(partner, badge, 1000, None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.customer_id)
        .collect();
    ids.sort();
    ids
}

/// The first page of a customer's badges.
async fn badges_of(store: &Store, partner: Uuid, customer: Uuid) -> Vec<CustomerBadge> {
    store
        .customer_badges(partner, customer, 10, None)
        .await
        .unwrap()
}

async fn assign(
    store: &Store,
    partner: Uuid,
    badge: Uuid,
    customer: Uuid,
) -> Result<bool, ApiError> {
    in_txn(store.db(), async |t| {
        store
            .assign_badge(
                t,
                partner,
                badge,
                customer,
                ManualChange::Operator,
                Utc::now(),
            )
            .await
    })
    .await
    .map(|c| c.changed)
}

/// (entered, cause) of a customer's history of one kind of group, oldest first.
async fn history(
    store: &Store,
    partner: Uuid,
    customer: Uuid,
    kind: GroupKind,
) -> Vec<(bool, MembershipCause)> {
    let filter = HistoryFilter {
        customer_id: Some(customer),
        group_kind: Some(kind),
        ..Default::default()
    };
    let mut h = store.history(partner, filter, 100, None).await.unwrap();
    h.reverse();
    h.into_iter().map(|e| (e.entered, e.cause)).collect()
}

/// Jana bought before the Flexi badge existed (assigned at creation); Petr never bought and
/// gets it by hand; Eva buys later. The nightly run takes Petr's away (a Flexi badge's manual
/// assignment is overwritten) and gives it to Eva.
async fn a_flexi_badge_follows_its_criterion(db: DatabaseConnection) {
    let store = Store::new(db.clone());
    let (partner, other) = (Uuid::now_v7(), Uuid::now_v7());
    let (jana, petr, eva) = (
        customer_in("Praha"),
        customer_in("Brno"),
        customer_in("Ostrava"),
    );
    for c in [&jana, &petr, &eva] {
        apply(&db, envelope(partner, c)).await;
    }
    apply(&db, envelope(partner, &purchase(&jana, 100))).await;
    let b = create(
        &store,
        partner,
        badge(BadgeKind::Flexi, Some(buyers_criterion())),
    )
    .await;
    assert_eq!(b.member_count, 1);
    assert_eq!(holders(&store, partner, b.id).await, [id(&jana)]);
    assert_eq!(published::<ev::BadgeAssigned>(&db, partner).await, 1);

    assert!(assign(&store, partner, b.id, id(&petr)).await.unwrap());
    assert!(
        !assign(&store, partner, b.id, id(&petr)).await.unwrap(),
        "held already"
    );
    let shown = store
        .customer_badges(partner, id(&petr), 10, None)
        .await
        .unwrap();
    assert_eq!(shown.len(), 1);
    assert_eq!(
        (
            shown[0].badge_id,
            shown[0].cause,
            shown[0].icon.content_type.as_str()
        ),
        (b.id, MembershipCause::Manual, "image/png")
    );
    let unknown = assign(&store, partner, b.id, Uuid::now_v7())
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, ApiError::NotFound(ref w) if w == "customer"),
        "{unknown:?}"
    );
    let foreign = assign(&store, other, b.id, id(&petr)).await.unwrap_err();
    assert!(
        matches!(foreign, ApiError::NotFound(ref w) if w == "badge"),
        "{foreign:?}"
    );
    assert!(badges_of(&store, other, id(&petr)).await.is_empty());

    apply(&db, envelope(partner, &purchase(&eva, 100))).await;
    let run = recalculate_due(
        &crate::store::Store::new(db.clone()),
        &crate::store::tests::no_cache(),
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(
        (run.recalculated, run.entered, run.left),
        (1, 1, 1),
        "{run:?}"
    );
    assert_eq!(holders(&store, partner, b.id).await, {
        let mut v = vec![id(&jana), id(&eva)];
        v.sort();
        v
    });
    let stamped = store.badge(partner, b.id).await.unwrap().unwrap();
    assert_eq!(stamped.member_count, 2);
    assert_eq!(
        history(&store, partner, id(&petr), GroupKind::Badge).await,
        [
            (true, MembershipCause::Manual),
            (false, MembershipCause::Recalculation)
        ]
    );
    assert!(
        history(&store, partner, id(&petr), GroupKind::Segment)
            .await
            .is_empty()
    );
    assert_eq!(published::<ev::BadgeRemoved>(&db, partner).await, 1);
    assert_eq!(published::<ev::SegmentEntered>(&db, partner).await, 0);

    // Removing an unheld badge changes nothing; removing a held one publishes BadgeRemoved.
    let remove = async |c: Uuid| {
        in_txn(&db, async |t| {
            store
                .remove_badge(
                    t,
                    partner,
                    b.id,
                    c,
                    ManualChange::Workflow { execution_id: None },
                    Utc::now(),
                )
                .await
        })
        .await
        .unwrap()
    };
    assert!(!remove(id(&petr)).await.changed);
    let removed = remove(id(&jana)).await;
    assert!(removed.changed && removed.held.is_none());
    assert_eq!(removed.badge.member_count, 1);
    assert_eq!(published::<ev::BadgeRemoved>(&db, partner).await, 2);

    // Deleting it takes it from every holder; the history outlives it, with its name.
    let stale = in_txn(&db, async |t| {
        store.delete_badge(t, partner, b.id, "v9", Utc::now()).await
    })
    .await
    .unwrap_err();
    assert_eq!(reason(stale), "ETAG_MISMATCH");
    in_txn(&db, async |t| {
        store.delete_badge(t, partner, b.id, "v1", Utc::now()).await
    })
    .await
    .unwrap();
    assert_eq!(store.badge(partner, b.id).await.unwrap(), None);
    assert!(
        store
            .customer_badges(partner, id(&eva), 10, None)
            .await
            .unwrap()
            .is_empty()
    );
    let last = store
        .history(
            partner,
            HistoryFilter {
                group_id: Some(b.id),
                ..Default::default()
            },
            1,
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (
            last[0].group_kind,
            last[0].cause,
            last[0].group_display_name.as_str()
        ),
        (GroupKind::Badge, MembershipCause::GroupDeleted, "Buyer")
    );
}

#[tokio::test]
async fn a_flexi_badge_follows_its_criterion_on_postgres() {
    let (_db, db) = postgres().await;
    a_flexi_badge_follows_its_criterion(db).await;
}

#[tokio::test]
async fn a_flexi_badge_follows_its_criterion_on_sqlite() {
    let (_dir, db) = sqlite().await;
    a_flexi_badge_follows_its_criterion(db).await;
}

/// A manual badge applies its criterion once, at creation; the nightly run leaves it alone,
/// and its definition changes under its etag.
async fn a_manual_badge_is_kept_as_assigned(db: DatabaseConnection) {
    let store = Store::new(db.clone());
    let partner = Uuid::now_v7();
    let (jana, petr) = (customer_in("Praha"), customer_in("Brno"));
    apply(&db, envelope(partner, &jana)).await;
    apply(&db, envelope(partner, &petr)).await;
    apply(&db, envelope(partner, &purchase(&jana, 100))).await;
    let with_criterion = create(
        &store,
        partner,
        badge(BadgeKind::Manual, Some(buyers_criterion())),
    )
    .await;
    let plain = create(&store, partner, badge(BadgeKind::Manual, None)).await;
    assert_eq!(
        holders(&store, partner, with_criterion.id).await,
        [id(&jana)]
    );
    assert!(holders(&store, partner, plain.id).await.is_empty());
    apply(&db, envelope(partner, &purchase(&petr, 100))).await;
    let run = recalculate_due(
        &crate::store::Store::new(db.clone()),
        &crate::store::tests::no_cache(),
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(run.recalculated, 0);
    assert_eq!(
        holders(&store, partner, with_criterion.id).await,
        [id(&jana)]
    );

    let renamed = in_txn(&db, async |t| {
        store
            .update_badge(t, partner, plain.id, "v1", |c| {
                let mut d = c.as_draft();
                d.display_name = "Ambassador".into();
                d.visible_to_customer = false;
                c.updated(d, Utc::now()).map_err(super::badges::badge_rule)
            })
            .await
    })
    .await
    .unwrap();
    assert_eq!(
        (renamed.display_name.as_str(), renamed.etag().as_str()),
        ("Ambassador", "v2")
    );
    let stored = store.badge(partner, plain.id).await.unwrap().unwrap();
    assert_eq!(stored.display_name, "Ambassador");
    assert!(!stored.visible_to_customer);
    let stale = in_txn(&db, async |t| {
        store
            .update_badge(t, partner, plain.id, "v1", |c| Ok(c.clone()))
            .await
    })
    .await
    .unwrap_err();
    assert_eq!(reason(stale), "ETAG_MISMATCH");
}

#[tokio::test]
async fn a_manual_badge_is_kept_as_assigned_on_postgres() {
    let (_db, db) = postgres().await;
    a_manual_badge_is_kept_as_assigned(db).await;
}

#[tokio::test]
async fn a_manual_badge_is_kept_as_assigned_on_sqlite() {
    let (_dir, db) = sqlite().await;
    a_manual_badge_is_kept_as_assigned(db).await;
}

#[tokio::test]
async fn badges_and_a_customers_badges_come_in_pages_newest_first() {
    let (_dir, db) = sqlite().await;
    let store = Store::new(db.clone());
    let partner = Uuid::now_v7();
    let jana = customer_in("Praha");
    apply(&db, envelope(partner, &jana)).await;
    let mut made = Vec::new();
    for kind in [BadgeKind::Manual, BadgeKind::Flexi, BadgeKind::Manual] {
        let criterion = (kind == BadgeKind::Flexi).then(buyers_criterion);
        let b = create(&store, partner, badge(kind, criterion)).await;
        assert!(assign(&store, partner, b.id, id(&jana)).await.unwrap());
        made.push(b.id);
    }
    let page1 = store.list_badges(partner, None, 2, None).await.unwrap();
    let page2 = store
        .list_badges(partner, None, 2, Some(page1[1].id))
        .await
        .unwrap();
    let listed: Vec<Uuid> = page1.iter().chain(&page2).map(|b| b.id).collect();
    assert_eq!(listed, [made[2], made[1], made[0]]);
    let manual = store
        .list_badges(partner, Some(BadgeKind::Manual), 10, None)
        .await
        .unwrap();
    assert_eq!(manual.len(), 2);
    assert!(
        store
            .list_badges(Uuid::now_v7(), None, 10, None)
            .await
            .unwrap()
            .is_empty()
    );

    let held1 = store
        .customer_badges(partner, id(&jana), 2, None)
        .await
        .unwrap();
    let after = held1.last().map(|b| (b.assigned_at, b.badge_id));
    let held2 = store
        .customer_badges(partner, id(&jana), 2, after)
        .await
        .unwrap();
    let held: Vec<Uuid> = held1.iter().chain(&held2).map(|b| b.badge_id).collect();
    assert_eq!(held, [made[2], made[1], made[0]], "newest assignment first");
}

async fn an_erased_customer_holds_no_badges(db: DatabaseConnection) {
    let store = Store::new(db.clone());
    let partner = Uuid::now_v7();
    let (jana, petr) = (customer_in("Praha"), customer_in("Brno"));
    apply(&db, envelope(partner, &jana)).await;
    apply(&db, envelope(partner, &petr)).await;
    let b = create(&store, partner, badge(BadgeKind::Manual, None)).await;
    for c in [&jana, &petr] {
        assert!(assign(&store, partner, b.id, id(c)).await.unwrap());
    }
    let erase = envelope(
        partner,
        &ev::CustomerErased {
            customer_id: jana.customer_id.clone(),
        },
    );
    apply(&db, erase.clone()).await;
    apply(&db, erase).await;
    assert!(badges_of(&store, partner, id(&jana)).await.is_empty());
    assert_eq!(holders(&store, partner, b.id).await, [id(&petr)]);
    assert_eq!(
        store
            .badge(partner, b.id)
            .await
            .unwrap()
            .unwrap()
            .member_count,
        1
    );
    let gone = HistoryFilter {
        customer_id: Some(id(&jana)),
        ..Default::default()
    };
    assert!(matches!(
        store.history(partner, gone, 10, None).await,
        Err(ApiError::NotFound(_))
    ));
}

#[tokio::test]
async fn an_erased_customer_holds_no_badges_on_postgres() {
    let (_db, db) = postgres().await;
    an_erased_customer_holds_no_badges(db).await;
}

#[tokio::test]
async fn an_erased_customer_holds_no_badges_on_sqlite() {
    let (_dir, db) = sqlite().await;
    an_erased_customer_holds_no_badges(db).await;
}

/// Jana absorbs her duplicate account, which held a manual badge (assigned by hand) and,
/// having bought, the Flexi "buyer" badge; Jana never bought. Jana takes over the manual badge
/// with its time and cause, and gets the Flexi one because her folded purchases admit her.
/// A manual badge Jana held alone stays hers. Applying the merge again changes nothing.
async fn a_merge_gives_the_survivor_the_merged_accounts_badges(db: DatabaseConnection) {
    let store = Store::new(db.clone());
    let partner = Uuid::now_v7();
    let (jana, duplicate) = (customer_in("Praha"), customer_in("Brno"));
    apply(&db, envelope(partner, &jana)).await;
    apply(&db, envelope(partner, &duplicate)).await;
    apply(&db, envelope(partner, &purchase(&duplicate, 1_000))).await;
    let manual = create(&store, partner, badge(BadgeKind::Manual, None)).await;
    let janas = create(&store, partner, badge(BadgeKind::Manual, None)).await;
    let flexi = create(
        &store,
        partner,
        badge(BadgeKind::Flexi, Some(buyers_criterion())),
    )
    .await;
    assert_eq!(holders(&store, partner, flexi.id).await, [id(&duplicate)]);
    assert!(
        assign(&store, partner, manual.id, id(&duplicate))
            .await
            .unwrap()
    );
    assert!(assign(&store, partner, janas.id, id(&jana)).await.unwrap());
    // A Flexi segment of the manual badge's holders: the duplicate is in it.
    let mut holders_of_manual = super::tests::flexi(super::tests::segment(
        "features.purchase_count",
        Operator::GreaterOrEqual,
        Value::Int(0),
        false,
    ));
    holders_of_manual.criterion = Criterion::parse(RawCriterion::Condition {
        field: format!("badges.{}", manual.id),
        operator: Some(Operator::Equal),
        values: vec![Value::Bool(true)],
    })
    .unwrap();
    let holders_of_manual = super::tests::create(&store, partner, holders_of_manual).await;
    assert_eq!(holders_of_manual.member_count, 1);
    let assigned_at = store
        .customer_badges(partner, id(&duplicate), 10, None)
        .await
        .unwrap()
        .into_iter()
        .find(|b| b.badge_id == manual.id)
        .unwrap()
        .assigned_at;

    let merge = envelope(
        partner,
        &ev::CustomerMerged {
            surviving_customer_id: jana.customer_id.clone(),
            merged_customer_id: duplicate.customer_id.clone(),
        },
    );
    apply(&db, merge.clone()).await;
    apply(&db, merge).await;

    // Deciding the segment for Jana read the badge she takes over.
    let members =
        super::membership::member_ids(&db, partner, GroupKind::Segment, holders_of_manual.id)
            .await
            .unwrap();
    assert_eq!(members, [id(&jana)]);
    for b in [&manual, &janas, &flexi] {
        assert_eq!(holders(&store, partner, b.id).await, [id(&jana)]);
        let count = store
            .badge(partner, b.id)
            .await
            .unwrap()
            .unwrap()
            .member_count;
        assert_eq!(count, 1, "{}", b.id);
    }
    let held = badges_of(&store, partner, id(&jana)).await;
    let taken_over = held.iter().find(|b| b.badge_id == manual.id).unwrap();
    assert_eq!(
        taken_over.assigned_at, assigned_at,
        "the merged account's time is kept"
    );
    assert!(badges_of(&store, partner, id(&duplicate)).await.is_empty());
    // Jana: her own badge by hand, then the two taken over (each entered once).
    let mut jana_history = history(&store, partner, id(&jana), GroupKind::Badge).await;
    jana_history.sort_by_key(|(entered, cause)| (*entered, cause.as_str()));
    assert_eq!(
        jana_history,
        [
            (true, MembershipCause::Manual),
            (true, MembershipCause::Recalculation),
            (true, MembershipCause::Recalculation),
        ]
    );
    let left = history(&store, partner, id(&duplicate), GroupKind::Badge).await;
    assert_eq!(
        left.iter()
            .filter(|(entered, cause)| !entered && *cause == MembershipCause::CustomerRemoved)
            .count(),
        2
    );
    assert_eq!(published::<ev::BadgeRemoved>(&db, partner).await, 2);
    assert_eq!(
        published::<ev::BadgeAssigned>(&db, partner).await,
        3 + 2,
        "three assignments before the merge, two to Jana by it"
    );
}

#[tokio::test]
async fn a_merge_gives_the_survivor_the_merged_accounts_badges_on_postgres() {
    let (_db, db) = postgres().await;
    a_merge_gives_the_survivor_the_merged_accounts_badges(db).await;
}

#[tokio::test]
async fn a_merge_gives_the_survivor_the_merged_accounts_badges_on_sqlite() {
    let (_dir, db) = sqlite().await;
    a_merge_gives_the_survivor_the_merged_accounts_badges(db).await;
}

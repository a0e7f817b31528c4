//! The feature store projects the other services' events (consents, email bounces, tracked
//! events, returns, points, tiers) into facts criteria read, in memory and compiled to SQL,
//! on PostgreSQL and on SQLite; merges and erasures carry or delete them.
use std::collections::BTreeSet;

use chrono::Utc;
use loyalty_criteria::{Criterion, Fact, Operator, RawCriterion, Value};
use loyalty_platform::events::{DomainEvent, EventHandler};
use loyalty_proto::{
    events::v1::{self as ev, EventEnvelope},
    types::v1 as types,
};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use uuid::Uuid;

use super::features::{self, FeatureProjector};

pub(super) async fn sqlite() -> (tempfile::TempDir, DatabaseConnection) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = migrated(format!(
        "sqlite://{}/test.db?mode=rwc",
        dir.path().display()
    ))
    .await;
    (dir, db)
}

pub(super) async fn postgres() -> (loyalty_testkit::TestDb, DatabaseConnection) {
    let test_db = loyalty_testkit::TestDb::postgres().await.expect("postgres");
    let db = migrated(test_db.url()).await;
    (test_db, db)
}

async fn migrated(url: String) -> DatabaseConnection {
    let mut settings = loyalty_platform::Settings::defaults("segmentation", 0);
    settings.database.url = url.into();
    loyalty_platform::db::connect_and_migrate::<crate::migration::Migrator>(&settings)
        .await
        .expect("database")
}

/// Applies one event as the platform's consumer would: in a transaction of its own.
pub(super) async fn apply<E: DomainEvent>(
    db: &DatabaseConnection,
    partner: Uuid,
    sequence: i64,
    event: &E,
) {
    let e = EventEnvelope {
        event_id: Uuid::now_v7().to_string(),
        event_type: E::TYPE.to_owned(),
        partner_id: partner.to_string(),
        occur_time: Some(loyalty_platform::time::to_timestamp(Utc::now())),
        sequence,
        payload: event.encode_to_vec(),
        ..Default::default()
    };
    let txn = loyalty_platform::db::begin_write(db).await.unwrap();
    FeatureProjector.apply(&txn, &e).await.unwrap();
    txn.commit().await.unwrap();
}

fn condition(field: &str, operator: Operator, value: Option<Value>) -> RawCriterion {
    RawCriterion::Condition {
        field: field.into(),
        operator: Some(operator),
        values: value.into_iter().collect(),
    }
}

/// Customers with the email marketing consent granted, not hard bounced and fewer than 5
/// soft bounces (seed 001's audience rule).
fn audience() -> Criterion {
    Criterion::parse(RawCriterion::All(vec![
        condition(
            "features.marketing_consent_email",
            Operator::Equal,
            Some(Value::Bool(true)),
        ),
        condition(
            "features.email_hard_bounced",
            Operator::Equal,
            Some(Value::Bool(false)),
        ),
        condition(
            "features.email_soft_bounce_count",
            Operator::Less,
            Some(Value::Int(5)),
        ),
    ]))
    .unwrap()
}

/// Who a criterion selects, compiled to SQL, and who it admits in memory (the two must agree).
pub(super) async fn selected(
    db: &DatabaseConnection,
    partner: Uuid,
    c: &Criterion,
) -> BTreeSet<Uuid> {
    let now = Utc::now();
    let q = features::members_query(db.get_database_backend(), partner, c, now).unwrap();
    let sql: BTreeSet<Uuid> = db
        .query_all(q)
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<Uuid>("", "customer_id").unwrap())
        .collect();
    let txn = loyalty_platform::db::begin_write(db).await.unwrap();
    let mut memory = BTreeSet::new();
    for id in &sql {
        let f = features::features(&txn, partner, *id).await.unwrap();
        assert!(
            c.evaluate(&f.facts(now)),
            "SQL selected {id}, memory does not"
        );
        memory.insert(*id);
    }
    txn.commit().await.unwrap();
    assert_eq!(sql, memory);
    sql
}

pub(super) fn created(id: Uuid) -> ev::CustomerCreated {
    ev::CustomerCreated {
        customer_id: id.to_string(),
        ..Default::default()
    }
}

fn consent(id: Uuid, state: &str) -> ev::ConsentChanged {
    ev::ConsentChanged {
        customer_id: id.to_string(),
        consent_type_id: Uuid::now_v7().to_string(),
        consent_type_code: "newsletter_email".into(),
        state: state.into(),
        channels: vec![types::CommunicationChannel::Email as i32],
        purpose: "marketing".into(),
    }
}

fn bounce(id: Uuid, hard_bounced: bool, soft_bounce_count: i32) -> ev::EmailBounceStateChanged {
    ev::EmailBounceStateChanged {
        customer_id: id.to_string(),
        hard_bounced,
        soft_bounce_count,
        excluded: hard_bounced || soft_bounce_count >= 5,
    }
}

async fn audiences_follow_consents_and_bounces(db: DatabaseConnection) {
    let partner = Uuid::now_v7();
    let [granted, late_withdrawal, hard, soft4, soft5, silent] =
        std::array::from_fn(|_| Uuid::now_v7());
    let mut seq = 0;
    let mut next = || {
        seq += 1;
        seq
    };
    for id in [granted, late_withdrawal, hard, soft4, soft5, silent] {
        apply(&db, partner, next(), &created(id)).await;
    }
    for id in [granted, hard, soft4, soft5] {
        apply(&db, partner, next(), &consent(id, "granted")).await;
    }
    // The withdrawal (sequence 100) arrives before an older grant (sequence 50): it stays.
    apply(&db, partner, 100, &consent(late_withdrawal, "withdrawn")).await;
    apply(&db, partner, 50, &consent(late_withdrawal, "granted")).await;
    apply(&db, partner, next(), &bounce(hard, true, 0)).await;
    apply(&db, partner, next(), &bounce(soft4, false, 4)).await;
    apply(&db, partner, next(), &bounce(soft5, false, 5)).await;

    assert_eq!(
        selected(&db, partner, &audience()).await,
        [granted, soft4].into()
    );
    // Another partner's audience is empty.
    assert!(selected(&db, Uuid::now_v7(), &audience()).await.is_empty());
    let f = features::features(&db, partner, late_withdrawal)
        .await
        .unwrap();
    assert_eq!(
        f.facts(Utc::now()).get_path("consents.newsletter_email"),
        Some(&Fact::String("withdrawn".into()))
    );
}

#[tokio::test]
async fn audiences_follow_consents_and_bounces_on_postgres() {
    let (_db, conn) = postgres().await;
    audiences_follow_consents_and_bounces(conn).await;
}

#[tokio::test]
async fn audiences_follow_consents_and_bounces_on_sqlite() {
    let (_dir, conn) = sqlite().await;
    audiences_follow_consents_and_bounces(conn).await;
}

async fn points_tiers_events_and_returns(db: DatabaseConnection) {
    let partner = Uuid::now_v7();
    let (anna, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let posted = |id: Uuid, points: i64, available: i64| ev::PointsPosted {
        customer_id: id.to_string(),
        entry_id: Uuid::now_v7().to_string(),
        points,
        available_points: available,
        points_type_code: "standard".into(),
        ..Default::default()
    };
    apply(&db, partner, 1, &posted(anna, 300, 300)).await;
    apply(&db, partner, 3, &posted(anna, 200, 500)).await;
    // An older posting arriving late does not roll the balance back.
    apply(&db, partner, 2, &posted(anna, -100, 200)).await;
    apply(&db, partner, 4, &posted(bob, 100, 100)).await;
    apply(
        &db,
        partner,
        5,
        &ev::PointsExpired {
            customer_id: bob.to_string(),
            entry_id: Uuid::now_v7().to_string(),
            points: 60,
            available_points: 40,
            points_type_code: "standard".into(),
            ..Default::default()
        },
    )
    .await;
    apply(
        &db,
        partner,
        1,
        &ev::TierChanged {
            customer_id: anna.to_string(),
            tier_id: Uuid::now_v7().to_string(),
            rank: 2,
            ..Default::default()
        },
    )
    .await;
    let tracked = |id: Uuid, code: &str| ev::EventTracked {
        customer_id: id.to_string(),
        customer_event_id: Uuid::now_v7().to_string(),
        event_type_code: code.into(),
        ..Default::default()
    };
    for (i, (id, code)) in [
        (anna, "store_visit"),
        (anna, "store_visit"),
        (bob, "review"),
    ]
    .into_iter()
    .enumerate()
    {
        apply(&db, partner, 10 + i as i64, &tracked(id, code)).await;
    }
    let purchase = |amount: i64| ev::PurchaseCompleted {
        customer_id: bob.to_string(),
        purchase_id: Uuid::now_v7().to_string(),
        net_amount_minor: amount,
        ..Default::default()
    };
    apply(&db, partner, 20, &purchase(1_000)).await;
    apply(&db, partner, 21, &purchase(400)).await;
    apply(
        &db,
        partner,
        22,
        &ev::PurchaseReturned {
            customer_id: bob.to_string(),
            refund_amount_minor: 400,
            fully_returned: true,
            ..Default::default()
        },
    )
    .await;

    let one = |field: &str, op: Operator, v: i64| {
        Criterion::parse(condition(field, op, Some(Value::Int(v)))).unwrap()
    };
    assert_eq!(
        selected(
            &db,
            partner,
            &one("points.standard", Operator::GreaterOrEqual, 500)
        )
        .await,
        [anna].into()
    );
    assert_eq!(
        selected(&db, partner, &one("points.standard", Operator::Equal, 40)).await,
        [bob].into()
    );
    assert_eq!(
        selected(
            &db,
            partner,
            &one("features.tier_rank", Operator::GreaterOrEqual, 2)
        )
        .await,
        [anna].into()
    );
    assert_eq!(
        selected(
            &db,
            partner,
            &one("events.store_visit.count", Operator::Equal, 2)
        )
        .await,
        [anna].into()
    );
    let reviewed =
        Criterion::parse(condition("events.review.count", Operator::Exists, None)).unwrap();
    assert_eq!(selected(&db, partner, &reviewed).await, [bob].into());
    let f = features::features(&db, partner, bob).await.unwrap();
    assert_eq!((f.purchase_count, f.total_spent_minor), (1, 1_000));
}

#[tokio::test]
async fn points_tiers_tracked_events_and_returns_become_facts_on_postgres() {
    let (_db, conn) = postgres().await;
    points_tiers_events_and_returns(conn).await;
}

#[tokio::test]
async fn points_tiers_tracked_events_and_returns_become_facts_on_sqlite() {
    let (_dir, conn) = sqlite().await;
    points_tiers_events_and_returns(conn).await;
}

async fn merges_and_erasures(db: DatabaseConnection) {
    let partner = Uuid::now_v7();
    let (survivor, duplicate, erased) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let tracked = |id: Uuid| ev::EventTracked {
        customer_id: id.to_string(),
        customer_event_id: Uuid::now_v7().to_string(),
        event_type_code: "visit".into(),
        ..Default::default()
    };
    for id in [survivor, duplicate, erased] {
        apply(&db, partner, 1, &created(id)).await;
        apply(&db, partner, 2, &tracked(id)).await;
    }
    apply(&db, partner, 3, &consent(survivor, "withdrawn")).await;
    apply(&db, partner, 4, &consent(duplicate, "granted")).await;
    apply(
        &db,
        partner,
        5,
        &ev::CustomerMerged {
            surviving_customer_id: survivor.to_string(),
            merged_customer_id: duplicate.to_string(),
        },
    )
    .await;
    // Later: the duplicate's tracked event counts for the survivor, its consent is dropped.
    apply(&db, partner, 6, &tracked(duplicate)).await;
    apply(&db, partner, 7, &consent(duplicate, "granted")).await;
    apply(
        &db,
        partner,
        8,
        &ev::CustomerErased {
            customer_id: erased.to_string(),
        },
    )
    .await;
    apply(&db, partner, 9, &tracked(erased)).await;

    let f = features::features(&db, partner, survivor).await.unwrap();
    let facts = f.facts(Utc::now());
    assert_eq!(facts.get_path("events.visit.count"), Some(&Fact::Int(3)));
    assert_eq!(
        facts.get_path("consents.newsletter_email"),
        Some(&Fact::String("withdrawn".into()))
    );
    let visited =
        Criterion::parse(condition("events.visit.count", Operator::Exists, None)).unwrap();
    assert_eq!(selected(&db, partner, &visited).await, [survivor].into());
    assert!(selected(&db, partner, &audience()).await.is_empty());
}

#[tokio::test]
async fn merges_fold_and_erasures_delete_the_activity_on_postgres() {
    let (_db, conn) = postgres().await;
    merges_and_erasures(conn).await;
}

#[tokio::test]
async fn merges_fold_and_erasures_delete_the_activity_on_sqlite() {
    let (_dir, conn) = sqlite().await;
    merges_and_erasures(conn).await;
}

/// Campaigns' message events become `messages.*` and `campaigns.*` facts; tracked events
/// their `last_days_ago`. Both evaluators agree; a merged account's responses count for the
/// survivor.
async fn message_responses_and_last_days_ago(db: DatabaseConnection) {
    let partner = Uuid::now_v7();
    let (jana, petr, duplicate) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let campaign = Uuid::now_v7();
    for id in [jana, petr, duplicate] {
        apply(&db, partner, 1, &created(id)).await;
    }
    let delivered = |id: Uuid| ev::MessageDelivered {
        message_id: Uuid::now_v7().to_string(),
        customer_id: id.to_string(),
        channel: "email".into(),
        campaign_id: campaign.to_string(),
    };
    let opened = |id: Uuid, first: bool| ev::MessageOpened {
        message_id: Uuid::now_v7().to_string(),
        customer_id: id.to_string(),
        campaign_id: campaign.to_string(),
        first,
    };
    apply(&db, partner, 2, &delivered(jana)).await;
    apply(&db, partner, 3, &delivered(petr)).await;
    apply(&db, partner, 4, &opened(jana, true)).await;
    apply(&db, partner, 5, &opened(jana, false)).await;
    apply(
        &db,
        partner,
        6,
        &ev::MessageBounced {
            message_id: Uuid::now_v7().to_string(),
            customer_id: duplicate.to_string(),
            channel: "email".into(),
            hard: true,
            ..Default::default()
        },
    )
    .await;
    apply(
        &db,
        partner,
        7,
        &ev::EventTracked {
            customer_id: petr.to_string(),
            customer_event_id: Uuid::now_v7().to_string(),
            event_type_code: "visit".into(),
            ..Default::default()
        },
    )
    .await;
    // Malformed ones are skipped.
    apply(
        &db,
        partner,
        8,
        &ev::MessageClicked {
            customer_id: "not-a-uuid".into(),
            ..Default::default()
        },
    )
    .await;
    apply(
        &db,
        partner,
        9,
        &ev::MessageClicked {
            customer_id: jana.to_string(),
            campaign_id: "not-a-uuid".into(),
            first: true,
            ..Default::default()
        },
    )
    .await;
    apply(
        &db,
        partner,
        10,
        &ev::CustomerMerged {
            surviving_customer_id: petr.to_string(),
            merged_customer_id: duplicate.to_string(),
        },
    )
    .await;

    let facts = features::features(&db, partner, jana)
        .await
        .unwrap()
        .facts(Utc::now());
    assert_eq!(facts.get_path("messages.opened.count"), Some(&Fact::Int(1)));
    assert_eq!(
        facts.get_path("messages.clicked.count"),
        Some(&Fact::Int(0))
    );
    assert_eq!(
        facts.get_path("messages.opened.last_days_ago"),
        Some(&Fact::Int(0))
    );
    let field = |f: &str, op: Operator, v: Option<Value>| Criterion::parse(condition(f, op, v));
    let opened_campaign = field(
        &format!("campaigns.{campaign}.opened"),
        Operator::Equal,
        Some(Value::Bool(true)),
    )
    .unwrap();
    assert_eq!(
        selected(&db, partner, &opened_campaign).await,
        [jana].into()
    );
    // Got the campaign but did not open it.
    let ignored = field(
        &format!("campaigns.{campaign}.opened"),
        Operator::Equal,
        Some(Value::Bool(false)),
    )
    .unwrap();
    assert_eq!(selected(&db, partner, &ignored).await, [petr].into());
    let bounced = field(
        "messages.hard_bounced.count",
        Operator::GreaterOrEqual,
        Some(Value::Int(1)),
    )
    .unwrap();
    assert_eq!(selected(&db, partner, &bounced).await, [petr].into());
    let visited_today = field(
        "events.visit.last_days_ago",
        Operator::LessOrEqual,
        Some(Value::Int(0)),
    )
    .unwrap();
    assert_eq!(selected(&db, partner, &visited_today).await, [petr].into());
    let never_visited = field("events.visit.last_days_ago", Operator::Exists, None).unwrap();
    assert_eq!(selected(&db, partner, &never_visited).await, [petr].into());
    let not_opened_recently = Criterion::parse(RawCriterion::Not(Some(Box::new(condition(
        "messages.opened.last_days_ago",
        Operator::Less,
        Some(Value::Int(30)),
    )))))
    .unwrap();
    assert_eq!(
        selected(&db, partner, &not_opened_recently).await,
        [petr].into()
    );
    // Another partner sees none of it.
    assert!(
        selected(&db, Uuid::now_v7(), &opened_campaign)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn message_responses_and_last_days_ago_become_facts_on_postgres() {
    let (_db, conn) = postgres().await;
    message_responses_and_last_days_ago(conn).await;
}

#[tokio::test]
async fn message_responses_and_last_days_ago_become_facts_on_sqlite() {
    let (_dir, conn) = sqlite().await;
    message_responses_and_last_days_ago(conn).await;
}

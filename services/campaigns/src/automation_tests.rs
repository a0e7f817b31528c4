//! The triggers against PostgreSQL and SQLite: each kind of event starts an execution of
//! the ACTIVE workflows it matches (and only those), a redelivered event starts nothing new,
//! re-entry ONCE holds, identity's customer events keep the customer dates, an erased
//! customer's executions are cancelled.
use std::collections::BTreeMap;

use chrono::{NaiveDate, SubsecRound, Utc};
use loyalty_platform::events::{DomainEvent, EventHandler};
use loyalty_proto::events::v1 as ev;
use sea_orm::{DatabaseConnection, TransactionTrait};
use uuid::Uuid;

use crate::store::testing::{migrated, sqlite_url};

use crate::{
    automation::Triggers,
    domain::workflow::{
        ConsentChange, ConsentTrigger, EventTrigger, ExecutionState, Node, NodeKind,
        PurchaseTrigger, ReentryPolicy, SegmentDirection, SegmentTrigger, Trigger, Workflow,
        WorkflowState,
    },
    store::workflows::{self as ws, ExecutionFilter},
};

fn workflow(trigger: Trigger, state: WorkflowState) -> Workflow {
    Workflow {
        id: Uuid::now_v7(),
        display_name: "w".into(),
        state,
        trigger: Some(trigger),
        nodes: vec![Node {
            key: "end".into(),
            display_name: String::new(),
            kind: NodeKind::End,
            next: String::new(),
        }],
        entry_node_key: "end".into(),
        reentry_policy: ReentryPolicy::Once,
        version: 1,
        note: String::new(),
        created_at: Utc::now().trunc_subsecs(6),
        updated_at: None,
        activated_at: None,
    }
}

fn envelope<E: DomainEvent>(partner: Uuid, e: &E) -> ev::EventEnvelope {
    ev::EventEnvelope {
        event_id: Uuid::now_v7().to_string(),
        event_type: E::TYPE.into(),
        producer: "test".into(),
        partner_id: partner.to_string(),
        payload: e.encode_to_vec(),
        ..Default::default()
    }
}

async fn apply(db: &DatabaseConnection, e: &ev::EventEnvelope) {
    let txn = db.begin().await.unwrap();
    Triggers.apply(&txn, e).await.unwrap();
    txn.commit().await.unwrap();
}

async fn started(db: &DatabaseConnection, partner: Uuid, w: &Workflow) -> usize {
    ws::list_executions(
        db,
        partner,
        &ExecutionFilter {
            workflow_id: Some(w.id),
            ..Default::default()
        },
        100,
        None,
    )
    .await
    .unwrap()
    .len()
}

async fn triggers(db: DatabaseConnection) {
    let partner = Uuid::now_v7();
    let customer = Uuid::now_v7();
    let segment = Uuid::now_v7();
    let unit = Uuid::now_v7();
    let visit = workflow(
        Trigger::Event(EventTrigger {
            event_type_code: "store_visit".into(),
            property_filters: BTreeMap::from([("store".into(), "Prague".into())]),
        }),
        WorkflowState::Active,
    );
    let consent = workflow(
        Trigger::Consent(ConsentTrigger {
            consent_type_code: "newsletter".into(),
            change: Some(ConsentChange::Granted),
        }),
        WorkflowState::Active,
    );
    let entered = workflow(
        Trigger::Segment(SegmentTrigger {
            segment_id: segment,
            direction: Some(SegmentDirection::Entered),
        }),
        WorkflowState::Active,
    );
    let purchase = workflow(
        Trigger::Purchase(PurchaseTrigger {
            minimum_amount_minor: 10_000,
            currency_code: "CZK".into(),
            business_unit_ids: vec![unit],
            product_codes: vec![],
        }),
        WorkflowState::Active,
    );
    let draft = workflow(
        Trigger::Consent(ConsentTrigger {
            consent_type_code: "newsletter".into(),
            change: Some(ConsentChange::Granted),
        }),
        WorkflowState::Draft,
    );
    for w in [&visit, &consent, &entered, &purchase, &draft] {
        ws::insert_workflow(&db, partner, w).await.unwrap();
    }

    let c = customer.to_string();
    let tracked = |store: &str| ev::EventTracked {
        customer_id: c.clone(),
        event_type_code: "store_visit".into(),
        properties: BTreeMap::from([("store".into(), store.into())]),
        ..Default::default()
    };
    apply(&db, &envelope(partner, &tracked("brno"))).await;
    assert_eq!(started(&db, partner, &visit).await, 0, "filter not met");
    let prague = envelope(partner, &tracked("prague"));
    apply(&db, &prague).await;
    apply(&db, &prague).await;
    assert_eq!(started(&db, partner, &visit).await, 1, "once per event");
    let (e, _) = ws::execution(
        &db,
        partner,
        ws::list_executions(
            &db,
            partner,
            &ExecutionFilter {
                workflow_id: Some(visit.id),
                ..Default::default()
            },
            1,
            None,
        )
        .await
        .unwrap()[0]
            .id,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(e.trigger_facts["store"], "prague");
    assert_eq!(
        e.trigger_event_id.map(|u| u.to_string()),
        Some(prague.event_id.clone())
    );
    // Re-entry ONCE: another matching visit starts nothing.
    apply(&db, &envelope(partner, &tracked("prague"))).await;
    assert_eq!(started(&db, partner, &visit).await, 1);

    let consent_changed = |state: &str| ev::ConsentChanged {
        customer_id: c.clone(),
        consent_type_code: "newsletter".into(),
        state: state.into(),
        ..Default::default()
    };
    apply(&db, &envelope(partner, &consent_changed("withdrawn"))).await;
    assert_eq!(started(&db, partner, &consent).await, 0);
    apply(&db, &envelope(partner, &consent_changed("granted"))).await;
    assert_eq!(started(&db, partner, &consent).await, 1);
    assert_eq!(
        started(&db, partner, &draft).await,
        0,
        "a draft never triggers"
    );

    apply(
        &db,
        &envelope(
            partner,
            &ev::SegmentLeft {
                segment_id: segment.to_string(),
                customer_id: c.clone(),
                cause: "recalculation".into(),
            },
        ),
    )
    .await;
    assert_eq!(started(&db, partner, &entered).await, 0);
    apply(
        &db,
        &envelope(
            partner,
            &ev::SegmentEntered {
                segment_id: segment.to_string(),
                customer_id: c.clone(),
                cause: "recalculation".into(),
            },
        ),
    )
    .await;
    assert_eq!(started(&db, partner, &entered).await, 1);

    let bought = |amount: i64, unit: Uuid| ev::PurchaseCompleted {
        customer_id: c.clone(),
        currency_code: "CZK".into(),
        net_amount_minor: amount,
        business_unit_id: unit.to_string(),
        ..Default::default()
    };
    apply(&db, &envelope(partner, &bought(9_999, unit))).await;
    apply(&db, &envelope(partner, &bought(50_000, Uuid::now_v7()))).await;
    assert_eq!(started(&db, partner, &purchase).await, 0);
    apply(&db, &envelope(partner, &bought(10_000, unit))).await;
    assert_eq!(started(&db, partner, &purchase).await, 1);
    // Another partner's events never reach these workflows.
    apply(&db, &envelope(Uuid::now_v7(), &consent_changed("granted"))).await;
    assert_eq!(started(&db, partner, &consent).await, 1);

    // Identity's customer events: dates kept, and erasure cancels what runs.
    apply(
        &db,
        &envelope(
            partner,
            &ev::CustomerCreated {
                customer_id: c.clone(),
                attributes: BTreeMap::from([("birth_date".into(), "1990-04-01".into())]),
                ..Default::default()
            },
        ),
    )
    .await;
    let birthday = NaiveDate::from_ymd_opt(1990, 4, 1).unwrap();
    assert_eq!(
        ws::customers_on_days(&db, partner, "customer.birth_date", &[401], None, 10)
            .await
            .unwrap(),
        vec![(customer, birthday)]
    );
    apply(
        &db,
        &envelope(
            partner,
            &ev::CustomerErased {
                customer_id: c.clone(),
            },
        ),
    )
    .await;
    assert!(
        ws::customers_on_days(&db, partner, "customer.birth_date", &[401], None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let left = ws::list_executions(
        &db,
        partner,
        &ExecutionFilter {
            customer_id: Some(customer),
            ..Default::default()
        },
        100,
        None,
    )
    .await
    .unwrap();
    assert_eq!(left.len(), 4);
    assert!(left.iter().all(|e| e.state == ExecutionState::Cancelled));
}

#[tokio::test]
async fn events_start_the_workflows_they_match_on_postgres() {
    let test_db = loyalty_testkit::TestDb::postgres().await.expect("postgres");
    triggers(migrated(test_db.url()).await).await;
}

#[tokio::test]
async fn events_start_the_workflows_they_match_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    triggers(migrated(sqlite_url(&dir)).await).await;
}

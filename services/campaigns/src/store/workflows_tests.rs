//! The workflow store against PostgreSQL and SQLite: versions kept, one execution per
//! trigger occurrence, claims that lapse and never overlap, progress guarded against a
//! concurrent cancellation, pause and reactivation, the customer dates of date triggers.
use std::collections::{BTreeMap, HashSet};

use chrono::{Duration, NaiveDate, SubsecRound, Utc};
use sea_orm::{DatabaseConnection, TransactionTrait};
use uuid::Uuid;

use crate::store::testing::{migrated, sqlite_url};

use super::workflows::{self as ws, ExecutionFilter, Progress};
use crate::domain::workflow::{
    EventTrigger, Execution, ExecutionState, Node, NodeKind, StepOutcome, Trigger, Workflow,
    WorkflowState, WorkflowStep,
};

async fn sqlite(dir: &tempfile::TempDir) -> DatabaseConnection {
    migrated(sqlite_url(dir)).await
}

fn workflow() -> Workflow {
    Workflow {
        id: Uuid::now_v7(),
        display_name: "Welcome".into(),
        state: WorkflowState::Active,
        trigger: Some(Trigger::Event(EventTrigger {
            event_type_code: "signup".into(),
            property_filters: BTreeMap::new(),
        })),
        nodes: vec![
            Node {
                key: "wait".into(),
                display_name: String::new(),
                kind: NodeKind::Wait {
                    duration_seconds: Some(3600),
                    until_hour_of_day: None,
                    until_time: None,
                },
                next: "end".into(),
            },
            Node {
                key: "end".into(),
                display_name: String::new(),
                kind: NodeKind::End,
                next: String::new(),
            },
        ],
        entry_node_key: "wait".into(),
        reentry_policy: Default::default(),
        version: 1,
        note: String::new(),
        created_at: Utc::now().trunc_subsecs(6),
        updated_at: None,
        activated_at: None,
    }
}

async fn lifecycle(db: DatabaseConnection) {
    let partner = Uuid::now_v7();
    let w = workflow();
    ws::insert_workflow(&db, partner, &w).await.unwrap();
    assert_eq!(
        ws::workflow(&db, partner, w.id).await.unwrap(),
        Some(w.clone())
    );
    assert_eq!(ws::workflow(&db, Uuid::now_v7(), w.id).await.unwrap(), None);
    assert_eq!(
        ws::active_workflows(&db, partner, "event").await.unwrap(),
        vec![w.clone()]
    );

    // A new version keeps the old one for the executions that run it.
    let mut v2 = w.clone();
    v2.version = 2;
    v2.display_name = "Welcome 2".into();
    v2.updated_at = Some(Utc::now().trunc_subsecs(6));
    ws::save_workflow(&db, partner, &w, &v2).await.unwrap();
    let stale = ws::save_workflow(&db, partner, &w, &v2).await.unwrap_err();
    assert!(format!("{stale:?}").contains("ETAG"), "{stale:?}");
    assert_eq!(
        ws::workflow_version(&db, partner, w.id, 1).await.unwrap(),
        Some(w.clone())
    );
    assert_eq!(
        ws::workflow_version(&db, partner, w.id, 2).await.unwrap(),
        Some(v2.clone())
    );

    // One execution per trigger occurrence.
    let now = Utc::now().trunc_subsecs(6);
    let customer = Uuid::now_v7();
    let e = Execution::start(Uuid::now_v7(), &v2, customer, None, BTreeMap::new(), now);
    let txn = db.begin().await.unwrap();
    assert!(
        ws::start_execution(&txn, partner, &e, "event:1")
            .await
            .unwrap()
    );
    let again = Execution::start(Uuid::now_v7(), &v2, customer, None, BTreeMap::new(), now);
    assert!(
        !ws::start_execution(&txn, partner, &again, "event:1")
            .await
            .unwrap()
    );
    txn.commit().await.unwrap();
    assert_eq!(ws::live_executions(&db, partner, w.id).await.unwrap(), 1);
    assert_eq!(
        ws::customer_executions(&db, partner, w.id, customer)
            .await
            .unwrap()
            .len(),
        1
    );

    // Claimed once; a claim hides it until its lease lapses.
    let claimed = ws::claim_due(&db, now, Duration::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].execution, e);
    assert!(
        ws::claim_due(&db, now, Duration::seconds(60), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let lapsed = now + Duration::seconds(61);
    assert_eq!(
        ws::claim_due(&db, lapsed, Duration::seconds(60), 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // The engine's progress: a step, then waiting until the wake time.
    let until = now + Duration::hours(1);
    let waiting = e.waiting(Some("end"), until);
    let step = WorkflowStep {
        node_key: "wait".into(),
        outcome: StepOutcome::Done,
        condition_result: None,
        result_reference: String::new(),
        error: String::new(),
        attempt_count: 1,
        executed_at: now,
    };
    let steps = [(step.clone(), "wait")];
    let progress = Progress {
        before: &e,
        after: &waiting,
        steps: &steps,
        attempts: 0,
        due_at: None,
    };
    assert!(
        ws::save_progress(&db, partner, &progress, now)
            .await
            .unwrap()
    );
    // The same progress again (a replay by a worker whose claim lapsed) writes nothing.
    assert!(
        !ws::save_progress(&db, partner, &progress, now)
            .await
            .unwrap()
    );
    let (stored, stored_steps) = ws::execution(&db, partner, e.id).await.unwrap().unwrap();
    assert_eq!(stored, waiting);
    assert_eq!(stored_steps, vec![step]);
    assert!(
        ws::execution(&db, Uuid::now_v7(), e.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        ws::claim_due(&db, lapsed, Duration::seconds(60), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ws::claim_due(&db, until, Duration::seconds(60), 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // Paused: held, nothing due; reactivated: due at once.
    ws::hold_executions(&db, partner, w.id, now).await.unwrap();
    let far = until + Duration::days(400);
    assert!(
        ws::claim_due(&db, far, Duration::seconds(60), 10)
            .await
            .unwrap()
            .is_empty()
    );
    ws::release_executions(&db, partner, w.id, far)
        .await
        .unwrap();
    assert_eq!(
        ws::claim_due(&db, far, Duration::seconds(60), 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // An operator's cancellation wins over a worker that read the execution before.
    let (before, _) = ws::execution(&db, partner, e.id).await.unwrap().unwrap();
    let cancelled = ws::cancel_customer_executions(&db, partner, customer, far)
        .await
        .unwrap();
    assert_eq!(cancelled, 1);
    let completed = before.completed(far);
    let late = Progress {
        before: &before,
        after: &completed,
        steps: &[],
        attempts: 0,
        due_at: None,
    };
    assert!(!ws::save_progress(&db, partner, &late, far).await.unwrap());
    let (stored, _) = ws::execution(&db, partner, e.id).await.unwrap().unwrap();
    assert_eq!(stored.state, ExecutionState::Cancelled);
    assert_eq!(ws::live_executions(&db, partner, w.id).await.unwrap(), 0);

    let listed = ws::list_executions(
        &db,
        partner,
        &ExecutionFilter {
            customer_id: Some(customer),
            states: vec![ExecutionState::Cancelled],
            ..Default::default()
        },
        10,
        None,
    )
    .await
    .unwrap();
    assert_eq!(listed.len(), 1);

    // Customer dates: by month and day, known customers for one-off runs.
    let birthday = NaiveDate::from_ymd_opt(1990, 4, 1).unwrap();
    let dates = BTreeMap::from([("customer.birth_date".to_owned(), birthday)]);
    ws::replace_customer_dates(&db, partner, customer, &dates)
        .await
        .unwrap();
    let other = Uuid::now_v7();
    ws::replace_customer_dates(&db, partner, other, &BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(
        ws::customers_on_days(&db, partner, "customer.birth_date", &[401], None, 10)
            .await
            .unwrap(),
        vec![(customer, birthday)]
    );
    assert!(
        ws::customers_on_days(&db, partner, "customer.birth_date", &[402], None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let known: HashSet<Uuid> = ws::known_customers(&db, partner, None, 10)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(known, HashSet::from([customer, other]));
    ws::forget_customer_dates(&db, partner, customer)
        .await
        .unwrap();
    assert_eq!(
        ws::known_customers(&db, partner, None, 10).await.unwrap(),
        vec![other]
    );
}

#[tokio::test]
async fn workflows_and_executions_on_postgres() {
    let test_db = loyalty_testkit::TestDb::postgres().await.expect("postgres");
    lifecycle(migrated(test_db.url()).await).await;
}

#[tokio::test]
async fn workflows_and_executions_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    lifecycle(sqlite(&dir).await).await;
}

/// Eight workers claiming 500 due executions at once on PostgreSQL: each is claimed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_of_executions_never_overlap_on_postgres() {
    let test_db = loyalty_testkit::TestDb::postgres().await.expect("postgres");
    let db = migrated(test_db.url()).await;
    let partner = Uuid::now_v7();
    let w = workflow();
    ws::insert_workflow(&db, partner, &w).await.unwrap();
    let now = Utc::now().trunc_subsecs(6);
    let txn = db.begin().await.unwrap();
    for i in 0..500 {
        let e = Execution::start(
            Uuid::now_v7(),
            &w,
            Uuid::now_v7(),
            None,
            BTreeMap::new(),
            now,
        );
        ws::start_execution(&txn, partner, &e, &format!("event:{i}"))
            .await
            .unwrap();
    }
    txn.commit().await.unwrap();
    let mut workers = Vec::new();
    for _ in 0..8 {
        let db = db.clone();
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let txn = db.begin().await.unwrap();
                let got = ws::claim_due(&txn, now, Duration::seconds(60), 13)
                    .await
                    .unwrap();
                txn.commit().await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|c| c.execution.id));
            }
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let unique: HashSet<Uuid> = all.iter().copied().collect();
    assert_eq!((all.len(), unique.len()), (500, 500));
}

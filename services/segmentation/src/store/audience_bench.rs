//! The audience benchmark (issue #7: build + lock of an audience over 1,000,000 customers in at
//! most 5 s), run by `scripts/bench-audience` against a scratch PostgreSQL database named in
//! `BENCH_AUDIENCE_DATABASE_URL`. It fills the feature store in SQL in the projection's own
//! formats, then times `Store::create_audience` and `Store::lock_audience`, each in one
//! transaction as the RPCs run them. Ignored by default: it needs that database and minutes.
use std::time::Instant;

use chrono::Utc;
use loyalty_criteria::{Criterion, Operator, RawCriterion, Value};
use sea_orm::{ConnectionTrait, Statement};
use uuid::Uuid;

use super::{Store, audiences::Candidates};
use crate::domain::audience::{AudienceDraft, Channel};

/// One partner's customers in the projection's formats (`customer_features`: attributes,
/// `criteria_facts` search forms, `activity`): every customer bought at least once; 90% granted
/// the email newsletter, 2% bounced hard, 3% have 5+ soft bounces, 1% have no email.
const FILL: &str = r#"
INSERT INTO customer_features (partner_id, customer_id, attributes, properties, purchase_count,
  total_spent_minor, last_purchase_at, updated_at, criteria_facts, activity)
SELECT $1::uuid, md5('customer' || i)::uuid,
  (jsonb_build_object('first_name', 'Customer' || i, 'last_name', 'Bench',
    'birth_date', '1990-01-01', 'city', city)
    || CASE WHEN i % 100 = 7 THEN '{}'::jsonb
       ELSE jsonb_build_object('email', 'customer' || i || '@example.com') END)::json,
  '{}'::json, 1 + i % 9, 1000 * (1 + i % 50), now() - make_interval(days => i % 400), now(),
  jsonb_build_object(
    'customer.city', jsonb_build_object('t', lower(city)),
    'customer.first_name', jsonb_build_object('t', 'customer' || i),
    'features.marketing_consent_email', jsonb_build_object('t', consent::text, 'b', consent),
    'features.marketing_consent_sms', '{"t": "false", "b": false}'::jsonb,
    'features.marketing_consent_push', '{"t": "false", "b": false}'::jsonb,
    'features.marketing_consent_viber', '{"t": "false", "b": false}'::jsonb,
    'features.data_processing_consent', '{"t": "false", "b": false}'::jsonb,
    'features.email_hard_bounced', jsonb_build_object('t', hard::text, 'b', hard),
    'features.email_soft_bounce_count', jsonb_build_object('t', soft::text, 'i', soft))
    || CASE WHEN i % 100 = 7 THEN '{}'::jsonb
       ELSE jsonb_build_object('customer.email',
         jsonb_build_object('t', 'customer' || i || '@example.com')) END,
  jsonb_build_object(
    'consents', CASE WHEN consent THEN '{"newsletter": {"value": {"state": "granted",
      "purpose": "marketing", "channels": ["email"]}, "sequence": 1}}'::jsonb
      ELSE '{}'::jsonb END,
    'email_bounce', jsonb_build_object('value',
      jsonb_build_object('hard_bounced', hard, 'soft_bounce_count', soft), 'sequence', 1))
FROM (
  SELECT i, i % 10 <> 3 AS consent, i % 50 = 11 AS hard,
    CASE WHEN i % 100 IN (13, 14, 15) THEN 5 + i % 3 ELSE i % 5 END AS soft,
    CASE WHEN i % 4 = 0 THEN 'Brno' ELSE 'Praha' END AS city
  FROM generate_series(1, $2::int) AS i
) AS g
"#;

#[tokio::test]
#[ignore = "run by scripts/bench-audience on a scratch PostgreSQL database"]
async fn bench_audience_build_and_lock() {
    let url = std::env::var("BENCH_AUDIENCE_DATABASE_URL").expect("BENCH_AUDIENCE_DATABASE_URL");
    let customers: i32 = std::env::var("BENCH_AUDIENCE_CUSTOMERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let mut settings = loyalty_platform::Settings::defaults("segmentation", 0);
    settings.database.url = url.into();
    let db = loyalty_platform::db::connect_and_migrate::<crate::migration::Migrator>(&settings)
        .await
        .expect("database");
    let partner = Uuid::now_v7();
    let started = Instant::now();
    db.execute(Statement::from_sql_and_values(
        db.get_database_backend(),
        FILL,
        [partner.into(), customers.into()],
    ))
    .await
    .expect("fill");
    // A settled feature store, as in production: vacuumed and analysed, and the fill's
    // writes checkpointed, so neither autovacuum nor a checkpoint runs during the timings.
    for settle in ["VACUUM (ANALYZE) customer_features", "CHECKPOINT"] {
        db.execute_unprepared(settle).await.expect("settle");
    }
    println!(
        "filled {customers} customer_features rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Every customer who bought at least once: the whole partner are candidates.
    let criterion = Criterion::parse(RawCriterion::Condition {
        field: "features.purchase_count".into(),
        operator: Some(Operator::GreaterOrEqual),
        values: vec![Value::Int(1)],
    })
    .unwrap();
    let draft = AudienceDraft {
        display_name: "Benchmark".into(),
        channel: Some(Channel::Email),
        criterion: Some(criterion),
        ..Default::default()
    };
    let store = Store::new(db.clone());
    let runs: usize = std::env::var("BENCH_AUDIENCE_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let mut totals = Vec::new();
    let mut created = None;
    for run in 1..=runs.max(1) {
        let audience = draft
            .clone()
            .into_audience(Uuid::now_v7(), Utc::now())
            .unwrap();
        let started = Instant::now();
        let txn = loyalty_platform::db::begin_write(&db).await.unwrap();
        let made = store
            .create_audience(&txn, partner, audience, Candidates::Criterion)
            .await
            .expect("create");
        txn.commit().await.unwrap();
        let build = started.elapsed();
        let txn = loyalty_platform::db::begin_write(&db).await.unwrap();
        let locked = store
            .lock_audience(&txn, partner, made.id, Uuid::now_v7(), Utc::now())
            .await
            .expect("lock");
        txn.commit().await.unwrap();
        let total = started.elapsed();
        let x = made.exclusions;
        println!(
            "run {run}: audience over {customers} customers: {} members (excluded: {} no \
             consent, {} no address, {} hard bounce, {} soft bounce); build {:.2} s, lock \
             {:.3} s, build + lock {:.2} s (goal 5 s)",
            made.member_count,
            x.no_consent,
            x.no_address,
            x.hard_bounce,
            x.soft_bounce,
            build.as_secs_f64(),
            (total - build).as_secs_f64(),
            total.as_secs_f64()
        );
        assert_eq!(locked.member_count, made.member_count);
        totals.push(total.as_secs_f64());
        created = Some(made);
    }
    let created = created.expect("one run");
    let x = created.exclusions;
    totals.sort_by(f64::total_cmp);
    println!(
        "build + lock over {runs} runs: median {:.2} s, best {:.2} s, worst {:.2} s (goal 5 s)",
        totals[totals.len() / 2],
        totals[0],
        totals[totals.len() - 1]
    );

    // Where the time goes: the two statements of a creation, one by one (rolled back).
    let again = crate::domain::audience::Audience {
        id: Uuid::now_v7(),
        ..created.clone()
    };
    let txn = loyalty_platform::db::begin_write(&db).await.unwrap();
    let step = Instant::now();
    super::audiences::count_exclusions(&txn, partner, &again, Candidates::Criterion)
        .await
        .unwrap();
    let counts = step.elapsed();
    let step = Instant::now();
    let insert = super::audiences::members_insert(
        db.get_database_backend(),
        partner,
        &again,
        Candidates::Criterion,
    )
    .unwrap();
    txn.execute(insert).await.unwrap();
    let members = step.elapsed();
    txn.rollback().await.unwrap();
    println!(
        "steps: exclusion counts {:.2} s, members INSERT … SELECT {:.2} s",
        counts.as_secs_f64(),
        members.as_secs_f64(),
    );
    let excluded = x.no_consent + x.no_address + x.hard_bounce + x.soft_bounce;
    assert_eq!(created.member_count + excluded, i64::from(customers));
}

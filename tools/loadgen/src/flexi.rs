//! `loadgen flexi`: the Flexi recalculation benchmark of issue #7. Creates a Flexi segment of
//! the "typical" shape (at least N purchases in the last D days and marketing consent for
//! email) through SegmentationService, recalculates it several times, and runs a hand-written
//! SQL statement selecting the same customers on the same database between the
//! recalculations. Reports customers evaluated per second and the ratio of the service's time
//! to the hand-written statement's (goals: ≥ 500,000 customers/s and ≤ 3×).
use std::time::{Duration, Instant};

use loyalty_proto::segmentation::v1::{
    self as pb, segmentation_service_client::SegmentationServiceClient,
};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use crate::grpc::{GrpcArgs, authed};

/// Customers per second a recalculation should evaluate (issue #7).
pub const GOAL_CUSTOMERS_PER_SEC: f64 = 500_000.0;
/// The most a recalculation may take relative to the hand-written statement (issue #7).
pub const GOAL_RATIO: f64 = 3.0;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub grpc: GrpcArgs,
    /// The segmentation service's PostgreSQL database, for the hand-written statement.
    #[arg(long, env = "LOADGEN_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// The segmentation service's schema in that database.
    #[arg(long, default_value = "segmentation")]
    pub schema: String,
    /// The partner the API key belongs to (the hand-written statement is scoped by it).
    #[arg(long)]
    pub partner: Uuid,
    /// Purchases a member has made within the window, at least.
    #[arg(long, default_value_t = 3)]
    pub min_purchases: i64,
    /// The window, in days before now.
    #[arg(long, default_value_t = 90)]
    pub window_days: i64,
    /// Measured recalculations (each preceded by one run of the hand-written statement).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// What `loadgen flexi` reports; times in seconds.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub customers: i64,
    pub members: i64,
    pub create_secs: f64,
    pub recalculate_secs: Vec<f64>,
    pub hand_sql_secs: Vec<f64>,
    /// Median recalculation: customers evaluated per second.
    pub customers_per_sec: f64,
    /// Median recalculation ÷ median hand-written statement.
    pub ratio: f64,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// The criterion as the service takes it.
fn criterion(args: &Args) -> pb::Criterion {
    let condition =
        |field: String, operator: pb::ComparisonOperator, value: pb::value::Kind| pb::Criterion {
            kind: Some(pb::criterion::Kind::Condition(pb::Condition {
                field,
                operator: operator as i32,
                values: vec![pb::Value { kind: Some(value) }],
            })),
        };
    pb::Criterion {
        kind: Some(pb::criterion::Kind::All(pb::CriterionGroup {
            criteria: vec![
                condition(
                    format!("purchases.last_{}_days.count", args.window_days),
                    pb::ComparisonOperator::GreaterOrEqual,
                    pb::value::Kind::IntValue(args.min_purchases),
                ),
                condition(
                    "features.marketing_consent_email".into(),
                    pb::ComparisonOperator::Equal,
                    pb::value::Kind::BoolValue(true),
                ),
            ],
        })),
    }
}

/// What a hand-written statement for the criterion looks like: the window's purchases
/// counted in one aggregate, joined to the customers with the consent.
const HAND_SQL: &str = "\
SELECT f.customer_id FROM customer_features f \
JOIN (SELECT customer_id FROM customer_purchases \
      WHERE partner_id = $1 AND purchased_at > $2 \
      GROUP BY customer_id HAVING count(*) >= $3) p ON p.customer_id = f.customer_id \
WHERE f.partner_id = $1 \
  AND (f.criteria_facts -> 'features.marketing_consent_email' ->> 'b')::boolean \
ORDER BY f.customer_id";

pub async fn run(args: Args) -> anyhow::Result<Report> {
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    let db = crate::db::pool(&args.database_url, &args.schema, 1).await?;
    let customers: i64 =
        sqlx::query("SELECT count(*) FROM customer_features WHERE partner_id = $1")
            .bind(args.partner)
            .fetch_one(&db)
            .await?
            .get(0);
    let channel = args.grpc.connect().await?.remove(0);
    let bearer = args.grpc.bearer()?;
    let mut client = SegmentationServiceClient::new(channel).max_decoding_message_size(64 << 20);

    let started = Instant::now();
    let created = client
        .create_segment(authed(
            pb::CreateSegmentRequest {
                idempotency_key: Uuid::new_v4().to_string(),
                segment: Some(pb::Segment {
                    display_name: format!(
                        "Bought {}+ times in {} days, email consent",
                        args.min_purchases, args.window_days
                    ),
                    kind: pb::SegmentKind::Flexi as i32,
                    criterion: Some(criterion(&args)),
                    ..Default::default()
                }),
            },
            &bearer,
        ))
        .await?
        .into_inner()
        .segment
        .ok_or_else(|| anyhow::anyhow!("CreateSegment answered no segment"))?;
    let create_secs = started.elapsed().as_secs_f64();
    println!(
        "created Flexi segment {} with {} members of {customers} customers in {create_secs:.2} s",
        created.id, created.member_count
    );

    let mut recalculate_secs = Vec::new();
    let mut hand_sql_secs = Vec::new();
    for run in 1..=args.runs {
        let since = chrono::Utc::now() - chrono::Duration::days(args.window_days);
        let started = Instant::now();
        // With the session settings the service's recalculation uses, so the two compare
        // statements, not configurations.
        let mut txn = db.begin().await?;
        sqlx::raw_sql("SET LOCAL work_mem = '64MB'; SET LOCAL jit = off")
            .execute(&mut *txn)
            .await?;
        let rows = sqlx::query(HAND_SQL)
            .bind(args.partner)
            .bind(since)
            .bind(args.min_purchases)
            .fetch_all(&mut *txn)
            .await?;
        txn.commit().await?;
        let hand = started.elapsed();

        let started = Instant::now();
        let recalculated = client
            .recalculate_segment(authed(
                pb::RecalculateSegmentRequest {
                    idempotency_key: Uuid::new_v4().to_string(),
                    segment_id: created.id.clone(),
                },
                &bearer,
            ))
            .await?
            .into_inner();
        let recalc = started.elapsed();
        let members = recalculated.segment.map_or(-1, |s| s.member_count);
        // Both select the same customers, but the window moves by the seconds between them,
        // so a few customers crossing its edge may differ; more than that is a bug.
        let differ = members.abs_diff(rows.len() as i64);
        anyhow::ensure!(
            differ <= (members.max(1) as u64) / 1000 + 5,
            "the segment has {members} members, the hand-written statement selected {}",
            rows.len()
        );
        println!(
            "run {run}: recalculation {:.3} s ({members} members, entered {}, left {}), \
             hand-written SQL {:.3} s ({} rows)",
            recalc.as_secs_f64(),
            recalculated.entered_count,
            recalculated.left_count,
            hand.as_secs_f64(),
            rows.len()
        );
        recalculate_secs.push(recalc.as_secs_f64());
        hand_sql_secs.push(hand.as_secs_f64());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recalc = median(&recalculate_secs);
    let report = Report {
        customers,
        members: created.member_count,
        create_secs,
        customers_per_sec: customers as f64 / recalc,
        ratio: recalc / median(&hand_sql_secs),
        recalculate_secs,
        hand_sql_secs,
    };
    println!(
        "median recalculation: {:.0} customers/s (goal ≥ {GOAL_CUSTOMERS_PER_SEC:.0}); \
         {:.2}× the hand-written statement (goal ≤ {GOAL_RATIO})",
        report.customers_per_sec, report.ratio
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(report)
}

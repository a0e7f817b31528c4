//! `loadgen memberships`: GetCustomerMemberships with a small cart for random customers of
//! one partner, at a fixed arrival rate (issue #7: with Redis warm, p50 ≤ 1 ms and p99 ≤ 5 ms
//! at 1,000 calls/s). With `--seed`, first fills the partner: customers written straight into
//! segmentation's feature store (the projection's table, as if their events had been
//! consumed) and segments created through the API, which fills their members.
use std::sync::Arc;

use futures::StreamExt;
use loyalty_proto::{
    segmentation::v1::{self as pb, segmentation_service_client::SegmentationServiceClient},
    types::v1 as types,
};
use serde::Serialize;
use tonic::{
    metadata::{Ascii, MetadataValue},
    transport::Channel,
};
use uuid::Uuid;

use crate::{
    driver::{self, LoadArgs, Outcome, Workload},
    grpc::{GrpcArgs, authed, class},
    stats::Summary,
};

/// The goals of issue #7 for this call, in milliseconds.
pub const GOAL_P50_MS: f64 = 1.0;
pub const GOAL_P99_MS: f64 = 5.0;

const CITIES: [&str; 5] = ["Praha", "Brno", "Ostrava", "Plzen", "Liberec"];

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub grpc: GrpcArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Segmentation's PostgreSQL database: the partner's customers are read from it (and
    /// written to it with `--seed`).
    #[arg(long, env = "LOADGEN_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Segmentation's schema in that database.
    #[arg(long, default_value = "segmentation")]
    pub schema: String,
    /// The partner the API key belongs to.
    #[arg(long)]
    pub partner_id: Uuid,
    /// Seed the partner first: `--customers` customers and `--segments` segments, of which
    /// `--online` are recalculated online (some reading the cart).
    #[arg(long)]
    pub seed: bool,
    #[arg(long, default_value_t = 100_000)]
    pub customers: u32,
    #[arg(long, default_value_t = 20)]
    pub segments: usize,
    #[arg(long, default_value_t = 5)]
    pub online: usize,
    /// Ask for every customer once before measuring, so the cache is warm.
    #[arg(long)]
    pub warm: bool,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// What `loadgen memberships` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub customers: usize,
    pub rate: Option<f64>,
    pub concurrency: usize,
    pub summary: Summary,
    pub delayed: u64,
    pub goals_met: bool,
}

/// The segments of a seeded partner: stored ones over the feature store's columns and
/// facts, and online ones, some reading the cart.
pub fn segments(total: usize, online: usize) -> Vec<pb::Segment> {
    let int = |n: i64| pb::Value {
        kind: Some(pb::value::Kind::IntValue(n)),
    };
    let text = |s: &str| pb::Value {
        kind: Some(pb::value::Kind::StringValue(s.into())),
    };
    let condition = |field: &str, op: pb::ComparisonOperator, value: pb::Value| pb::Criterion {
        kind: Some(pb::criterion::Kind::Condition(pb::Condition {
            field: field.into(),
            operator: op as i32,
            values: vec![value],
        })),
    };
    let all = |criteria: Vec<pb::Criterion>| pb::Criterion {
        kind: Some(pb::criterion::Kind::All(pb::CriterionGroup { criteria })),
    };
    use pb::ComparisonOperator as O;
    let stored = (0..total.saturating_sub(online)).map(|i| {
        let city = CITIES[i % CITIES.len()];
        let criterion = match i % 3 {
            0 => condition("customer.city", O::Equal, text(city)),
            1 => condition(
                "features.purchase_count",
                O::GreaterOrEqual,
                int(2 + i as i64),
            ),
            _ => all(vec![
                condition("customer.city", O::Equal, text(city)),
                condition(
                    "features.last_purchase_days_ago",
                    O::LessOrEqual,
                    int(30 + 10 * i as i64),
                ),
            ]),
        };
        pb::Segment {
            display_name: format!("Stored {i}"),
            kind: if i % 2 == 0 {
                pb::SegmentKind::Flexi
            } else {
                pb::SegmentKind::Standard
            } as i32,
            criterion: Some(criterion),
            note: "benchmark".into(),
            ..Default::default()
        }
    });
    let online = (0..online).map(|i| {
        let criterion = match i % 4 {
            0 => condition(
                "cart.total_minor",
                O::GreaterOrEqual,
                int(1_000 * (i as i64 + 1)),
            ),
            1 => all(vec![
                condition("customer.city", O::Equal, text(CITIES[i % CITIES.len()])),
                condition("cart.product_ids", O::Contains, text("COFFEE")),
            ]),
            2 => condition("cart.line_count", O::GreaterOrEqual, int(2)),
            _ => condition("features.total_spent_minor", O::GreaterOrEqual, int(10_000)),
        };
        pb::Segment {
            display_name: format!("Online {i}"),
            kind: pb::SegmentKind::Standard as i32,
            online_recalculation: true,
            criterion: Some(criterion),
            note: "benchmark".into(),
            ..Default::default()
        }
    });
    stored.chain(online).collect()
}

/// A small cart: two lines.
pub fn small_cart(seq: u64) -> types::Cart {
    let line = |id: &str, group: &str, price: i64| types::CartLine {
        line_id: id.into(),
        product_id: id.into(),
        product_group_ids: vec![group.into()],
        quantity: 1,
        unit_price_minor: price,
        ..Default::default()
    };
    types::Cart {
        currency_code: "EUR".into(),
        lines: vec![
            line("COFFEE", "DRINKS", 450 + (seq % 7) as i64 * 100),
            line("CROISSANT", "BAKERY", 350),
        ],
    }
}

async fn pool(url: &str, schema: &str) -> anyhow::Result<sqlx::PgPool> {
    let schema = schema.to_owned();
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .after_connect(move |conn, _| {
            let schema = schema.clone();
            Box::pin(async move {
                sqlx::query(&format!("SET search_path TO \"{schema}\""))
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .connect(url)
        .await?)
}

/// Writes `n` customers of `partner_id` into the feature store, in one statement: cities
/// spread over [`CITIES`], 0..20 purchases, the last within a year.
async fn seed_customers(pool: &sqlx::PgPool, partner_id: Uuid, n: u32) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO customer_features (partner_id, customer_id, attributes, properties, \
           purchase_count, total_spent_minor, last_purchase_at, updated_at, criteria_facts, activity) \
         SELECT $1, gen_random_uuid(), json_build_object('city', c.city), '{}', c.purchases, \
           c.purchases * 1234, \
           CASE WHEN c.purchases = 0 THEN NULL ELSE now() - (g % 365) * interval '1 day' END, \
           now(), jsonb_build_object('customer.city', jsonb_build_object('t', lower(c.city))), '{}' \
         FROM generate_series(1, $2) AS g, \
           LATERAL (SELECT ($3::text[])[1 + g % 5] AS city, (g * 7919 % 21)::bigint AS purchases) AS c",
    )
    .bind(partner_id)
    .bind(i64::from(n))
    .bind(CITIES.iter().map(|c| c.to_string()).collect::<Vec<_>>())
    .execute(pool)
    .await?;
    Ok(())
}

struct Memberships {
    channels: Vec<Channel>,
    bearer: MetadataValue<Ascii>,
    customers: Vec<String>,
}

impl Memberships {
    async fn get(&self, seq: u64, customer: &str) -> Result<(), tonic::Status> {
        let channel = self.channels[seq as usize % self.channels.len()].clone();
        SegmentationServiceClient::new(channel)
            .get_customer_memberships(authed(
                pb::GetCustomerMembershipsRequest {
                    customer_id: customer.to_owned(),
                    cart: Some(small_cart(seq)),
                },
                &self.bearer,
            ))
            .await
            .map(|_| ())
    }
}

impl Workload for Memberships {
    async fn call(&self, seq: u64) -> Outcome {
        let customer = &self.customers[rand::random_range(0..self.customers.len())];
        match self.get(seq, customer).await {
            Ok(()) => Outcome::ok("memberships"),
            Err(s) => Outcome::failed("memberships", class(&s)),
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<Report> {
    let load = args.load.load();
    let channels = args.grpc.connect().await?;
    let bearer = args.grpc.bearer()?;
    let pool = pool(&args.database_url, &args.schema).await?;
    if args.seed {
        eprintln!(
            "seeding {} customers into the feature store…",
            args.customers
        );
        seed_customers(&pool, args.partner_id, args.customers).await?;
        let mut client = SegmentationServiceClient::new(channels[0].clone());
        for s in segments(args.segments, args.online) {
            let name = s.display_name.clone();
            let created = client
                .create_segment(authed(
                    pb::CreateSegmentRequest {
                        idempotency_key: format!("bench-{name}"),
                        segment: Some(s),
                    },
                    &bearer,
                ))
                .await?
                .into_inner()
                .segment
                .unwrap_or_default();
            eprintln!("  segment {name:<10} {:>7} members", created.member_count);
        }
    }
    let customers: Vec<String> = sqlx::query_scalar::<_, Uuid>(
        "SELECT customer_id FROM customer_features WHERE partner_id = $1",
    )
    .bind(args.partner_id)
    .fetch_all(&pool)
    .await?
    .into_iter()
    .map(|id| id.to_string())
    .collect();
    anyhow::ensure!(
        !customers.is_empty(),
        "the partner has no customers (--seed?)"
    );
    let workload = Arc::new(Memberships {
        channels,
        bearer,
        customers,
    });
    if args.warm {
        eprintln!("warming: every customer once…");
        let failed = futures::stream::iter(workload.customers.iter().enumerate())
            .map(|(i, c)| {
                let w = workload.clone();
                async move { w.get(i as u64, c).await.is_err() }
            })
            .buffer_unordered(load.concurrency)
            .filter(|failed| std::future::ready(*failed))
            .count()
            .await;
        anyhow::ensure!(failed == 0, "{failed} warm-up calls failed");
    }
    eprintln!(
        "GetCustomerMemberships: {} customers, {}, at most {} in flight, {} s…",
        workload.customers.len(),
        load.rate.map_or("closed loop".to_owned(), |r| format!(
            "open loop at {r} calls/s"
        )),
        load.concurrency,
        load.duration.as_secs()
    );
    let run = driver::run(workload.clone(), &load, "memberships", args.load.progress()).await;
    let summary = run.stats.summary(
        "gRPC SegmentationService GetCustomerMemberships (small cart)",
        run.elapsed,
    );
    println!("{summary}");
    let goals_met = summary.total.failed == 0
        && summary.total.p50_ms <= GOAL_P50_MS
        && summary.total.p99_ms <= GOAL_P99_MS;
    println!(
        "open-loop calls that waited for a free slot: {}\ngoal p50 ≤ {GOAL_P50_MS} ms, p99 ≤ {GOAL_P99_MS} ms, no errors: {}",
        run.delayed,
        if goals_met { "met" } else { "NOT met" }
    );
    let report = Report {
        customers: workload.customers.len(),
        rate: load.rate,
        concurrency: load.concurrency,
        summary,
        delayed: run.delayed,
        goals_met,
    };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_partner_has_the_asked_segments_with_the_online_ones_reading_the_cart() {
        let s = segments(20, 5);
        assert_eq!(s.len(), 20);
        let online: Vec<_> = s.iter().filter(|s| s.online_recalculation).collect();
        assert_eq!(online.len(), 5);
        let reads_cart = |c: &pb::Criterion| format!("{c:?}").contains("cart.");
        assert!(
            online
                .iter()
                .filter(|s| reads_cart(s.criterion.as_ref().unwrap()))
                .count()
                >= 3
        );
        assert!(
            s.iter()
                .filter(|s| !s.online_recalculation)
                .all(|s| !reads_cart(s.criterion.as_ref().unwrap())),
            "stored segments never read the cart"
        );
        let mut names: Vec<_> = s.iter().map(|s| &s.display_name).collect();
        names.dedup();
        assert_eq!(names.len(), 20, "names (and idempotency keys) are unique");
    }

    #[test]
    fn the_cart_is_small_and_valid() {
        let c = small_cart(3);
        assert_eq!(c.lines.len(), 2);
        assert!(
            c.lines
                .iter()
                .all(|l| l.quantity > 0 && l.unit_price_minor > 0)
        );
    }
}

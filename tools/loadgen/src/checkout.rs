//! `loadgen checkout`: the POS hot path (issue #9). Scenarios `evaluate`, `commit` and `mixed`
//! (three Evaluates to one Commit) at a fixed arrival rate, against a partner seeded through
//! the services' own APIs with `--seed`: customers with cards (identity's import), products
//! in groups (rewards' catalogue stream) and active rules (rewards and purchase bonuses).
//! Goals on the 2-core machine: Evaluate at 1,000 calls/s with p99 ≤ 10 ms and p50 ≤ 4× the
//! echo floor's p50 (`loadgen echo` in the same run); Commit at 300 calls/s with p99 ≤ 30 ms.
use std::sync::Arc;

use loyalty_proto::{
    checkout::v1::{self as pb, checkout_service_client::CheckoutServiceClient},
    identity::v1::{self as identity, identity_service_client::IdentityServiceClient},
    rewards::v1::{self as rewards, rewards_service_client::RewardsServiceClient},
    types::v1 as types,
};
use serde::Serialize;
use tonic::{
    metadata::{Ascii, MetadataValue},
    transport::Channel,
};

use crate::{
    driver::{self, LoadArgs, Outcome, Workload},
    grpc::{GrpcArgs, authed, class},
    stats::Summary,
};

/// Issue #9's goals, in milliseconds.
pub const EVALUATE_GOAL_P99_MS: f64 = 10.0;
pub const COMMIT_GOAL_P99_MS: f64 = 30.0;
/// Evaluate's p50 may be at most this many times the echo floor's.
pub const EVALUATE_GOAL_ECHO_FACTOR: f64 = 4.0;

const GROUPS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Evaluate only.
    Evaluate,
    /// Commit only, each a new transaction (priced at commit, no quote).
    Commit,
    /// Three Evaluates to one Commit.
    Mixed,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Checkout's endpoint and the partner's API key (roles admin and pos to seed).
    #[command(flatten)]
    pub grpc: GrpcArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    #[arg(long, value_enum, default_value = "evaluate")]
    pub scenario: Scenario,
    /// Identity's endpoint (for `--seed`).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub identity_endpoint: String,
    /// Rewards' endpoint (for `--seed`).
    #[arg(long, default_value = "http://127.0.0.1:50053")]
    pub rewards_endpoint: String,
    /// Seed the partner first.
    #[arg(long)]
    pub seed: bool,
    /// Before the timed run, evaluate a cart for every customer once (64 at a time), so the
    /// run meets warm caches: identity's identifiers, segmentation's memberships, rewards'
    /// customer levels and products. A POS's regulars are warm; without it most calls of a
    /// short run meet a customer for the first time.
    #[arg(long)]
    pub warm: bool,
    /// Customers (with cards) the calls pick from, and that `--seed` imports.
    #[arg(long, default_value_t = 100_000)]
    pub customers: u32,
    /// Products `--seed` imports (in 20 groups); carts pick from them.
    #[arg(long, default_value_t = 10_000)]
    pub products: u32,
    /// Active rules `--seed` creates: product discounts, cart discounts and purchase bonuses.
    #[arg(long, default_value_t = 200)]
    pub rules: u32,
    /// Lines per cart.
    #[arg(long, default_value_t = 5)]
    pub lines: u32,
    /// Prefix of the commits' transaction ids (unique per run).
    #[arg(long, default_value = "bench")]
    pub run_id: String,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// The card number of customer `i`.
pub fn card(i: u64) -> String {
    format!("{}", 900_000_000_000u64 + i)
}

/// A stable spread of `seq` over `0..n`.
fn pick(seq: u64, salt: u64, n: u64) -> u64 {
    seq.wrapping_add(salt)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(29)
        % n.max(1)
}

/// The cart of call `seq`: `lines` distinct products at prices 1.00..50.99.
pub fn cart(seq: u64, lines: u32, products: u32) -> types::Cart {
    let mut seen = std::collections::HashSet::new();
    let lines = (0..u64::from(lines.max(1)))
        .filter_map(|l| {
            let p = pick(seq, l * 7919, u64::from(products));
            seen.insert(p).then(|| types::CartLine {
                line_id: (l + 1).to_string(),
                product_id: format!("SKU-{p:05}"),
                quantity: 1 + (pick(seq, l, 3) as i64),
                unit_price_minor: 100 + (pick(seq, l + 99, 5_000) as i64),
                ..Default::default()
            })
        })
        .collect();
    types::Cart {
        currency_code: "EUR".into(),
        lines,
    }
}

/// The rules a seeded partner has: most discount a product group, some the whole cart (for
/// the gold tier property's customers via no segment: every customer), the rest add points.
pub fn rules(n: u32) -> (Vec<rewards::Reward>, Vec<rewards::PurchaseBonus>) {
    let mut out = Vec::new();
    let mut bonuses = Vec::new();
    for i in 0..n {
        let group = format!("G{:02}", i as usize % GROUPS);
        match i % 10 {
            0..=6 => out.push(rewards::Reward {
                display_name: format!("Group {group} −{} %", 5 + i % 15),
                r#type: rewards::RewardType::CashDesk as i32,
                benefit: Some(rewards::reward::Benefit::ProductPercentageDiscount(
                    rewards::ProductPercentageDiscount {
                        products: Some(types::ProductScope {
                            product_group_codes: vec![group],
                            ..Default::default()
                        }),
                        basis_points: 500 + 100 * (i as i32 % 15),
                        max_quantity: 0,
                    },
                )),
                combinable: true,
                priority: (i % 100) as i32,
                ..Default::default()
            }),
            7 => out.push(rewards::Reward {
                display_name: format!("Cart −{} %", 1 + i % 5),
                r#type: rewards::RewardType::CashDesk as i32,
                benefit: Some(rewards::reward::Benefit::CartPercentageDiscount(
                    rewards::CartPercentageDiscount {
                        basis_points: 100 + 100 * (i as i32 % 5),
                    },
                )),
                combinable: true,
                ..Default::default()
            }),
            _ => bonuses.push(rewards::PurchaseBonus {
                display_name: format!("Points on {group}"),
                points: 1 + i64::from(i % 3),
                spend_amount_minor: 100,
                currency_code: "EUR".into(),
                products: Some(types::ProductScope {
                    product_group_codes: vec![group],
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }
    (out, bonuses)
}

async fn connect(endpoint: &str) -> anyhow::Result<Channel> {
    Ok(
        tonic::transport::Endpoint::from_shared(endpoint.to_owned())?
            .tcp_nodelay(true)
            .connect()
            .await?,
    )
}

/// Seeds customers, product groups, products and rules through the services' APIs.
async fn seed(args: &Args, bearer: &MetadataValue<Ascii>) -> anyhow::Result<()> {
    let mut identity = IdentityServiceClient::new(connect(&args.identity_endpoint).await?)
        .max_encoding_message_size(64 << 20);
    eprintln!("seeding {} customers with cards…", args.customers);
    let batches: Vec<_> = (0..args.customers)
        .collect::<Vec<_>>()
        .chunks(5_000)
        .map(|chunk| identity::ImportCustomersRequest {
            import_id: format!("{}-customers", args.run_id),
            rows: chunk
                .iter()
                .map(|&i| identity::ImportCustomerRow {
                    line_number: i64::from(i) + 2,
                    customer: Some(identity::Customer {
                        first_name: format!("Customer {i}"),
                        ..Default::default()
                    }),
                    identifiers: vec![types::IdentifierRef {
                        r#type: types::IdentifierType::Card as i32,
                        value: card(u64::from(i)),
                    }],
                })
                .collect(),
        })
        .collect();
    let imported = identity
        .import_customers(authed(futures::stream::iter(batches), bearer))
        .await?
        .into_inner();
    eprintln!(
        "  imported {}, skipped {}",
        imported.imported_count, imported.skipped_count
    );

    let mut r = RewardsServiceClient::new(connect(&args.rewards_endpoint).await?);
    for g in 0..GROUPS {
        let code = format!("G{g:02}");
        let created = r
            .create_product_group(authed(
                rewards::CreateProductGroupRequest {
                    idempotency_key: format!("{}-group-{code}", args.run_id),
                    product_group: Some(rewards::ProductGroup {
                        code: code.clone(),
                        display_name: format!("Group {code}"),
                        ..Default::default()
                    }),
                },
                bearer,
            ))
            .await;
        if let Err(s) = created
            && s.code() != tonic::Code::AlreadyExists
        {
            return Err(s.into());
        }
    }
    eprintln!("seeding {} products…", args.products);
    let batches: Vec<_> = (0..args.products)
        .collect::<Vec<_>>()
        .chunks(1_000)
        .enumerate()
        .map(|(b, chunk)| rewards::StreamImportProductsRequest {
            idempotency_key: format!("{}-products-{b}", args.run_id),
            products: chunk
                .iter()
                .map(|&p| rewards::Product {
                    code: format!("SKU-{p:05}"),
                    display_name: format!("Product {p}"),
                    product_group_codes: vec![format!("G{:02}", p as usize % GROUPS)],
                    active: true,
                    ..Default::default()
                })
                .collect(),
        })
        .collect();
    r.stream_import_products(authed(futures::stream::iter(batches), bearer))
        .await?;
    eprintln!("seeding {} rules…", args.rules);
    let (rewards_list, bonuses) = rules(args.rules);
    for (i, reward) in rewards_list.into_iter().enumerate() {
        r.create_reward(authed(
            rewards::CreateRewardRequest {
                idempotency_key: format!("{}-reward-{i}", args.run_id),
                reward: Some(reward),
            },
            bearer,
        ))
        .await?;
    }
    for (i, bonus) in bonuses.into_iter().enumerate() {
        r.create_purchase_bonus(authed(
            rewards::CreatePurchaseBonusRequest {
                idempotency_key: format!("{}-bonus-{i}", args.run_id),
                purchase_bonus: Some(bonus),
            },
            bearer,
        ))
        .await?;
    }
    Ok(())
}

struct Checkout {
    channels: Vec<Channel>,
    bearer: MetadataValue<Ascii>,
    scenario: Scenario,
    customers: u32,
    products: u32,
    lines: u32,
    run_id: String,
}

impl Checkout {
    fn client(&self, seq: u64) -> CheckoutServiceClient<Channel> {
        CheckoutServiceClient::new(self.channels[seq as usize % self.channels.len()].clone())
    }

    fn identifier(&self, seq: u64) -> types::IdentifierRef {
        card_ref(pick(seq, 17, u64::from(self.customers)))
    }

    async fn evaluate(&self, seq: u64) -> Outcome {
        self.evaluate_for(seq, self.identifier(seq)).await
    }

    async fn evaluate_for(&self, seq: u64, identifier: types::IdentifierRef) -> Outcome {
        let req = pb::EvaluateRequest {
            identifier: Some(identifier),
            cart: Some(cart(seq, self.lines, self.products)),
            channel: types::SalesChannel::Pos as i32,
            ..Default::default()
        };
        match self.client(seq).evaluate(authed(req, &self.bearer)).await {
            Ok(_) => Outcome::ok("evaluate"),
            Err(s) => Outcome::failed("evaluate", class(&s)),
        }
    }

    async fn commit(&self, seq: u64) -> Outcome {
        let req = pb::CommitRequest {
            transaction_id: format!("{}/{seq}", self.run_id),
            identifier: Some(self.identifier(seq)),
            cart: Some(cart(seq, self.lines, self.products)),
            channel: types::SalesChannel::Pos as i32,
            ..Default::default()
        };
        match self.client(seq).commit(authed(req, &self.bearer)).await {
            Ok(_) => Outcome::ok("commit"),
            Err(s) => Outcome::failed("commit", class(&s)),
        }
    }
}

fn card_ref(customer: u64) -> types::IdentifierRef {
    types::IdentifierRef {
        r#type: types::IdentifierType::Card as i32,
        value: card(customer),
    }
}

/// Evaluates a cart for every customer once, 64 at a time, each retried while checkout sheds
/// it (RESOURCE_EXHAUSTED above its concurrency limit) as a POS would; answers the failures.
async fn warm(workload: &Checkout) -> u64 {
    use futures::StreamExt;
    let started = std::time::Instant::now();
    let once = |i: u64| async move {
        let mut backoff = std::time::Duration::from_millis(5);
        loop {
            let outcome = workload.evaluate_for(i, card_ref(i)).await;
            match outcome.error.as_deref() {
                Some("ResourceExhausted" | "Unavailable") if backoff.as_millis() < 2_000 => {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                _ => return outcome,
            }
        }
    };
    let outcomes: Vec<Outcome> = futures::stream::iter(0..u64::from(workload.customers))
        .map(once)
        .buffer_unordered(64)
        .collect()
        .await;
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count() as u64;
    eprintln!(
        "warmed {} customers in {:.1} s ({failed} failed)",
        workload.customers,
        started.elapsed().as_secs_f64()
    );
    failed
}

impl Workload for Checkout {
    async fn call(&self, seq: u64) -> Outcome {
        match self.scenario {
            Scenario::Evaluate => self.evaluate(seq).await,
            Scenario::Commit => self.commit(seq).await,
            Scenario::Mixed if seq % 4 == 3 => self.commit(seq).await,
            Scenario::Mixed => self.evaluate(seq).await,
        }
    }
}

/// What `loadgen checkout` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub rate: Option<f64>,
    pub concurrency: usize,
    pub summary: Summary,
    pub delayed: u64,
}

pub async fn run(args: Args) -> anyhow::Result<Report> {
    let load = args.load.load();
    let bearer = args.grpc.bearer()?;
    if args.seed {
        seed(&args, &bearer).await?;
    }
    let workload = Arc::new(Checkout {
        channels: args.grpc.connect().await?,
        bearer,
        scenario: args.scenario,
        customers: args.customers,
        products: args.products,
        lines: args.lines,
        run_id: args.run_id.clone(),
    });
    // A short warm-up: connections, the rules in rewards' memory, the caches of the path.
    for seq in 0..200 {
        let _ = workload.evaluate(seq).await;
    }
    if args.warm {
        warm(&workload).await;
    }
    eprintln!(
        "checkout {:?}: {} customers, {}-line carts, {}, at most {} in flight, {} s…",
        args.scenario,
        args.customers,
        args.lines,
        load.rate.map_or("closed loop".to_owned(), |r| format!(
            "open loop at {r} calls/s"
        )),
        load.concurrency,
        load.duration.as_secs()
    );
    let run = driver::run(workload, &load, "checkout", args.load.progress()).await;
    let summary = run.stats.summary(
        &format!("gRPC CheckoutService ({:?})", args.scenario),
        run.elapsed,
    );
    println!("{summary}");
    println!(
        "open-loop calls that waited for a free slot: {}\ngoals: Evaluate p99 ≤ {EVALUATE_GOAL_P99_MS} ms and p50 ≤ {EVALUATE_GOAL_ECHO_FACTOR}× echo's p50 at 1,000/s; Commit p99 ≤ {COMMIT_GOAL_P99_MS} ms at 300/s",
        run.delayed
    );
    let report = Report {
        scenario: args.scenario,
        rate: load.rate,
        concurrency: load.concurrency,
        summary,
        delayed: run.delayed,
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
    fn carts_have_distinct_products_and_valid_lines() {
        for seq in 0..1000 {
            let c = cart(seq, 5, 10_000);
            let mut ids: Vec<_> = c.lines.iter().map(|l| l.product_id.clone()).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), c.lines.len());
            assert!(!c.lines.is_empty() && c.lines.len() <= 5);
            assert!(
                c.lines
                    .iter()
                    .all(|l| (1..=3).contains(&l.quantity) && l.unit_price_minor >= 100)
            );
        }
    }

    #[test]
    fn the_seeded_rules_number_as_asked_and_are_active_and_combinable() {
        let (r, b) = rules(200);
        assert_eq!(r.len() + b.len(), 200);
        assert!(r.iter().all(|r| r.combinable));
        assert!(!b.is_empty());
        assert_eq!(card(7), "900000000007");
    }
}

//! `loadgen wallet`: Award and Spend through the wallet service at a given concurrency, then
//! the same writes as hand-written SQL transactions against the same database, and the ratio
//! of the two rates (issue #5: the service should reach at least half the raw SQL rate).
pub mod grpc;
pub mod sql;

use std::sync::Arc;

use loyalty_proto::wallet::v1::{self as pb, wallet_service_client::WalletServiceClient};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    cpu::{Snapshot, Usage},
    driver::{self, Load, LoadArgs, Workload},
    grpc::{GrpcArgs, authed},
    stats::Summary,
};

/// The share of the raw SQL rate the service should reach (issue #5).
pub const GOAL: f64 = 0.5;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub grpc: GrpcArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// The wallet's PostgreSQL database, for the raw SQL phase; unset = gRPC phase only.
    #[arg(long, env = "LOADGEN_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The wallet's schema in that database.
    #[arg(long, default_value = "wallet")]
    pub schema: String,
    /// Connections of the raw SQL phase; default = --concurrency.
    #[arg(long)]
    pub sql_pool: Option<u32>,
    /// Which statements the raw SQL transactions issue.
    #[arg(long, value_enum, default_value_t = sql::Shape::Minimal)]
    pub sql_shape: sql::Shape,
    /// Customers of each phase (the SQL phase uses a set of its own), picked at random.
    #[arg(long, default_value_t = 2000)]
    pub customers: usize,
    /// Points each customer is funded with before the measured phase, so spends succeed.
    #[arg(long, default_value_t = 1_000_000)]
    pub fund_points: i64,
    /// Points per award.
    #[arg(long, default_value_t = 100)]
    pub award_points: i64,
    /// Points per spend.
    #[arg(long, default_value_t = 10)]
    pub spend_points: i64,
    /// Skip the closing TrialBalance call that proves both phases left the ledger balanced.
    #[arg(long)]
    pub no_verify: bool,
    /// Pid of the wallet service, to report its CPU time per operation (Linux).
    #[arg(long)]
    pub service_pid: Option<u32>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// Points moved per call.
#[derive(Debug, Clone, Copy)]
pub struct Amounts {
    pub award: i64,
    pub spend: i64,
}

/// What `loadgen wallet` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub customers: usize,
    pub grpc: Summary,
    pub grpc_delayed: u64,
    pub grpc_cpu: Usage,
    pub sql: Option<Summary>,
    pub sql_shape: Option<String>,
    pub sql_cpu: Option<Usage>,
    /// gRPC successful operations per second ÷ raw SQL ones.
    pub ratio: Option<f64>,
    pub ledger_balanced: Option<bool>,
}

fn customers(n: usize) -> Vec<Uuid> {
    (0..n.max(1)).map(|_| Uuid::new_v4()).collect()
}

/// A fresh `CHECKPOINT` before each phase, so neither pays for the other's dirty pages.
async fn checkpoint(pool: Option<&sqlx::PgPool>) {
    if let Some(pool) = pool
        && let Err(e) = sqlx::query("CHECKPOINT").execute(pool).await
    {
        eprintln!("CHECKPOINT refused ({e}); phases may pay for each other's writes");
    }
}

pub async fn run(args: Args) -> anyhow::Result<Report> {
    let load: Load = args.load.load();
    let progress = args.load.progress();
    let amounts = Amounts {
        award: args.award_points,
        spend: args.spend_points,
    };
    let run_id = format!("{:08x}", rand::random::<u32>());
    let channels = args.grpc.connect().await?;
    let bearer = args.grpc.bearer()?;
    let pool = match &args.database_url {
        Some(url) => Some(
            sql::pool(
                url,
                &args.schema,
                args.sql_pool.unwrap_or(load.concurrency as u32),
            )
            .await?,
        ),
        None => None,
    };

    let grpc_customers = customers(args.customers);
    let wallet = Arc::new(grpc::GrpcWallet::new(
        channels.clone(),
        bearer.clone(),
        &grpc_customers,
        &run_id,
        amounts,
    ));
    eprintln!(
        "funding {} customers with {} points each through gRPC…",
        grpc_customers.len(),
        args.fund_points
    );
    let points_type_id = wallet.prefund(args.fund_points, load.concurrency).await?;
    let (grpc_run, grpc_cpu) = phase(
        "gRPC",
        wallet,
        &load,
        progress,
        pool.as_ref(),
        args.service_pid,
    )
    .await;
    let grpc = grpc_run.stats.summary(
        "gRPC WalletService AwardPoints/SpendPoints",
        grpc_run.elapsed,
    );
    println!("{grpc}{grpc_cpu}\n");

    let mut sql_summary = None;
    let mut sql_cpu = None;
    let mut partner_id = None;
    if let Some(pool) = &pool {
        let ledger = sql::ledger(pool, points_type_id).await?;
        partner_id = Some(ledger.partner_id);
        let baseline = Arc::new(sql::SqlWallet::new(
            pool.clone(),
            ledger,
            customers(args.customers),
            &run_id,
            amounts,
            args.sql_shape,
        ));
        eprintln!(
            "funding {} other customers by raw SQL…",
            baseline.customers().len()
        );
        baseline.prefund(args.fund_points, load.concurrency).await?;
        let (sql_run, usage) = phase("raw SQL", baseline, &load, progress, Some(pool), None).await;
        let s = sql_run.stats.summary(
            &format!(
                "raw SQL transactions ({:?} shape, pool of {})",
                args.sql_shape,
                pool.size()
            ),
            sql_run.elapsed,
        );
        println!("{s}{usage}\n");
        sql_summary = Some(s);
        sql_cpu = Some(usage);
    }

    let ratio = sql_summary
        .as_ref()
        .filter(|s| s.total.per_sec > 0.0)
        .map(|s| grpc.total.per_sec / s.total.per_sec);
    if let Some(r) = ratio {
        println!(
            "gRPC / raw SQL = {:.0}% (goal ≥ {:.0}%: {})",
            r * 100.0,
            GOAL * 100.0,
            if r >= GOAL { "met" } else { "NOT met" }
        );
    }
    let ledger_balanced = if args.no_verify {
        None
    } else {
        verify(channels[0].clone(), &bearer, pool.as_ref(), partner_id).await?
    };
    let report = Report {
        concurrency: load.concurrency,
        rate: load.rate,
        customers: args.customers,
        grpc,
        grpc_delayed: grpc_run.delayed,
        grpc_cpu,
        sql: sql_summary,
        sql_shape: pool.as_ref().map(|_| format!("{:?}", args.sql_shape)),
        sql_cpu,
        ratio,
        ledger_balanced,
    };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(report)
}

/// The PostgreSQL backends serving the benchmark's database (the service's and ours).
async fn backends(pool: Option<&sqlx::PgPool>) -> Vec<u32> {
    let Some(pool) = pool else {
        return Vec::new();
    };
    sqlx::query_scalar::<_, i32>(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default()
    .into_iter()
    .filter_map(|p| u32::try_from(p).ok())
    .collect()
}

/// Runs one measured phase and what it cost in CPU.
async fn phase<W: Workload>(
    name: &str,
    workload: Arc<W>,
    load: &Load,
    progress: bool,
    pool: Option<&sqlx::PgPool>,
    service_pid: Option<u32>,
) -> (driver::Run, Usage) {
    checkpoint(pool).await;
    eprintln!("{}", phase_banner(name, load));
    let pids = backends(pool).await;
    let before = Snapshot::take(service_pid, &pids);
    let run = driver::run(workload, load, name, progress).await;
    let after = Snapshot::take(service_pid, &pids);
    let ops = run.stats.total().ok;
    (run, before.usage(&after, ops))
}

fn phase_banner(name: &str, load: &Load) -> String {
    match load.rate {
        None => format!(
            "{name}: closed loop, {} concurrent clients, {} s…",
            load.concurrency,
            load.duration.as_secs()
        ),
        Some(r) => format!(
            "{name}: open loop, {r} calls/s, at most {} in flight, {} s…",
            load.concurrency,
            load.duration.as_secs()
        ),
    }
}

/// Proves both phases left a consistent ledger: the wallet's own TrialBalance, and an
/// independent check of the tables when the database is at hand. `None` = nothing could tell.
async fn verify(
    channel: tonic::transport::Channel,
    bearer: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    pool: Option<&sqlx::PgPool>,
    partner_id: Option<Uuid>,
) -> anyhow::Result<Option<bool>> {
    let mut verdict = None;
    match WalletServiceClient::new(channel)
        .trial_balance(authed(pb::TrialBalanceRequest::default(), bearer))
        .await
    {
        Ok(answer) => {
            let answer = answer.into_inner();
            println!(
                "TrialBalance: {} ({} customer accounts, {} lots checked)",
                if answer.balanced {
                    "balanced"
                } else {
                    "NOT balanced"
                },
                answer.checked_account_count,
                answer.checked_lot_count
            );
            for d in answer.discrepancies.iter().take(20) {
                println!("  {d}");
            }
            verdict = Some(answer.balanced);
        }
        // Not the load's fault; the table check below still tells.
        Err(s) => eprintln!("TrialBalance call failed: {s}"),
    }
    if let (Some(pool), Some(partner_id)) = (pool, partner_id) {
        let c = sql::check(pool, partner_id).await?;
        println!(
            "ledger tables: {} ({} customer accounts, {} lots; off: {} balances, {} lots, {} wallets)",
            if c.balanced() {
                "consistent"
            } else {
                "INCONSISTENT"
            },
            c.customer_accounts,
            c.lots,
            c.balances_off,
            c.lots_off,
            c.wallets_off
        );
        verdict = Some(verdict.unwrap_or(true) && c.balanced());
    }
    Ok(verdict)
}

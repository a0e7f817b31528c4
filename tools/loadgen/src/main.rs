//! `loadgen`: drives load at a service of the loyalty platform and reports throughput and
//! latency percentiles. See `loadgen --help` and docs/benchmarks.md.
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Award and Spend through WalletService, then the same writes as raw SQL transactions
    /// on the same database; prints both rates and their ratio.
    Wallet(loyalty_loadgen::wallet::Args),
    /// GetCustomerMemberships with a small cart for random customers of a (seeded) partner,
    /// at a fixed arrival rate; prints latency percentiles against issue #7's goals.
    Memberships(loyalty_loadgen::memberships::Args),
    /// Create and recalculate a Flexi segment through SegmentationService, and run a
    /// hand-written statement for the same criterion; prints customers/s and their ratio.
    Flexi(loyalty_loadgen::flexi::Args),
    /// Launch a campaign with vouchers to every customer of a seeded partner through the
    /// file adapter and time it until SENT; prints messages/s against issue #8's goal.
    Campaign(loyalty_loadgen::campaign::Args),
    /// The POS hot path: Evaluate, Commit or a mix at a fixed arrival rate against a
    /// (seeded) partner; prints latency percentiles against issue #9's goals.
    Checkout(loyalty_loadgen::checkout::Args),
    /// The floor for one RPC on this machine: the same open or closed loop at a bare tonic
    /// server (the health service) started as a child process of this binary.
    Echo(loyalty_loadgen::echo::Args),
    /// The bare server `echo` starts (prints `listening on <addr>`).
    EchoServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Wallet(args) => {
            let report = loyalty_loadgen::wallet::run(args).await?;
            if report.ledger_balanced == Some(false) {
                anyhow::bail!("the wallet's trial balance failed after the run");
            }
        }
        Cmd::Memberships(args) => {
            loyalty_loadgen::memberships::run(args).await?;
        }
        Cmd::Flexi(args) => {
            loyalty_loadgen::flexi::run(args).await?;
        }
        Cmd::Campaign(args) => {
            let report = loyalty_loadgen::campaign::run(args).await?;
            if report.distinct_messages as i64 != report.sent_count {
                anyhow::bail!("the outbox does not hold one message per sent message");
            }
        }
        Cmd::Checkout(args) => {
            loyalty_loadgen::checkout::run(args).await?;
        }
        Cmd::Echo(args) => {
            loyalty_loadgen::echo::run(args).await?;
        }
        Cmd::EchoServer { listen } => loyalty_loadgen::echo::serve(&listen).await?,
    }
    Ok(())
}

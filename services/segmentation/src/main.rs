use clap::{Parser, Subcommand};
use loyalty_platform::{Settings, telemetry};

/// The segmentation service, configured by LOYALTY_* environment variables.
#[derive(Parser)]
#[command(name = "loyalty-segmentation", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the gRPC API and consume events (the default).
    Serve,
    /// Empty the feature projection and make the next start consume every producer's events
    /// from the start. Stop every segmentation replica first.
    RebuildFeatures,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(
        loyalty_segmentation::SERVICE,
        loyalty_segmentation::DEFAULT_PORT,
    )?;
    let _telemetry = telemetry::init(loyalty_segmentation::SERVICE, &settings.telemetry)?;
    match cli.command.unwrap_or(Cmd::Serve) {
        Cmd::Serve => loyalty_segmentation::run(settings).await,
        Cmd::RebuildFeatures => loyalty_segmentation::rebuild_features(settings).await,
    }
}

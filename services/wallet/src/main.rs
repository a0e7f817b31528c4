use loyalty_platform::{Settings, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load(loyalty_wallet::SERVICE, loyalty_wallet::DEFAULT_PORT)?;
    let _telemetry = telemetry::init(loyalty_wallet::SERVICE, &settings.telemetry)?;
    loyalty_wallet::run(settings).await
}

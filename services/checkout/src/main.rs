use loyalty_platform::{Settings, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load(loyalty_checkout::SERVICE, loyalty_checkout::DEFAULT_PORT)?;
    let _telemetry = telemetry::init(loyalty_checkout::SERVICE, &settings.telemetry)?;
    loyalty_checkout::run(settings).await
}

use loyalty_platform::{Settings, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load(loyalty_campaigns::SERVICE, loyalty_campaigns::DEFAULT_PORT)?;
    let _telemetry = telemetry::init(loyalty_campaigns::SERVICE, &settings.telemetry)?;
    loyalty_campaigns::run(settings).await
}

use loyalty_platform::{Settings, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load(loyalty_identity::SERVICE, loyalty_identity::DEFAULT_PORT)?;
    let _telemetry = telemetry::init(loyalty_identity::SERVICE, &settings.telemetry)?;
    loyalty_identity::run(settings).await
}

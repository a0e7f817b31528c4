use loyalty_platform::{Settings, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load(loyalty_rewards::SERVICE, loyalty_rewards::DEFAULT_PORT)?;
    let _telemetry = telemetry::init(loyalty_rewards::SERVICE, &settings.telemetry)?;
    loyalty_rewards::run(settings).await
}

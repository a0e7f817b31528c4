use loyalty_platform::{Settings, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load(
        loyalty_segmentation::SERVICE,
        loyalty_segmentation::DEFAULT_PORT,
    )?;
    let _telemetry = telemetry::init(loyalty_segmentation::SERVICE, &settings.telemetry)?;
    loyalty_segmentation::run(settings).await
}

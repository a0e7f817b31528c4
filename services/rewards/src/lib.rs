//! The rewards service: reward definitions and purchase bonuses (and, with later issues,
//! vouchers, the product catalogue, campaign products, tiers, schemes and offers).
pub mod api;
pub mod domain;
pub mod migration;
pub mod store;

use loyalty_platform::{Infra, Settings};
use loyalty_proto::rewards::v1::rewards_service_server::RewardsServiceServer;

pub const SERVICE: &str = "rewards";
pub const DEFAULT_PORT: u16 = 50053;

/// Starts the service and serves until SIGTERM/SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let infra = Infra::start::<migration::Migrator>(settings).await?;
    let auth = infra.remote_authenticator()?;
    let mut routes = tonic::service::RoutesBuilder::default();
    // Optional: without a wallet, vouchers with a points price are refused, not given away.
    let wallet = infra.peer("wallet").ok();
    routes.add_service(RewardsServiceServer::new(
        api::RewardsApi::new(infra.db.clone()).with_wallet(wallet),
    ));
    infra
        .serve(auth, routes, &["loyalty.rewards.v1.RewardsService"])
        .await
}

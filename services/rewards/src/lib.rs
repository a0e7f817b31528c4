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
    let api = api::RewardsApi::new(infra.db.clone());
    // Every instance drops a partner's cached rules when any instance changes them.
    infra.consume("rewards", api.rules_cache().invalidator())?;
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(RewardsServiceServer::new(api));
    infra
        .serve(auth, routes, &["loyalty.rewards.v1.RewardsService"])
        .await
}

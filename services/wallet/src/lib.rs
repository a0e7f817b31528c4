//! The wallet service: each customer's points and the append-only ledger they derive from.
pub mod api;
pub mod domain;
pub mod migration;
pub mod store;

use std::sync::Arc;

use loyalty_platform::{Infra, Settings};
use loyalty_proto::wallet::v1::wallet_service_server::WalletServiceServer;

pub const SERVICE: &str = "wallet";
pub const DEFAULT_PORT: u16 = 50052;

/// Starts the service and serves until SIGTERM/SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let infra = Infra::start::<migration::Migrator>(settings).await?;
    let auth = infra.remote_authenticator()?;
    infra.consume("identity", Arc::new(store::lifecycle::CustomerLifecycle))?;
    infra.consume("rewards", Arc::new(store::offer_awards::OfferAwards))?;
    if infra.settings.jobs.expiry_interval_secs > 0 {
        store::jobs::spawn_scheduler(
            infra.db.clone(),
            std::time::Duration::from_secs(infra.settings.jobs.expiry_interval_secs),
        );
    }
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(WalletServiceServer::new(api::WalletApi::new(
        infra.db.clone(),
    )));
    infra
        .serve(auth, routes, &["loyalty.wallet.v1.WalletService"])
        .await
}

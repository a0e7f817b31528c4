//! The checkout service: what POS gateways call while the cashier waits. It orchestrates
//! identity, segmentation, rewards and wallet, and records purchase transactions.
pub mod api;
pub mod domain;
pub mod migration;
pub mod peers;
pub mod store;

use std::sync::Arc;

use loyalty_platform::{Infra, Settings};
use loyalty_proto::checkout::v1::checkout_service_server::CheckoutServiceServer;

pub const SERVICE: &str = "checkout";
pub const DEFAULT_PORT: u16 = 50056;

/// Starts the service and serves until SIGTERM/SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let infra = Infra::start::<migration::Migrator>(settings).await?;
    let auth = infra.remote_authenticator()?;
    let peers = peers::Peers::new(
        infra.peer("identity")?,
        infra.peer("wallet")?,
        infra.peer("rewards")?,
        infra.peer("segmentation")?,
    );
    infra.consume(
        "rewards",
        Arc::new(api::RewardsChangedHandler {
            peers: peers.clone(),
        }),
    )?;
    let api = api::CheckoutApi::new(peers, store::Store::new(infra.db.clone()), infra.db.clone());
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(CheckoutServiceServer::new(api));
    infra
        .serve(auth, routes, &["loyalty.checkout.v1.CheckoutService"])
        .await
}

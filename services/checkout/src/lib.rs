//! The checkout service: what POS gateways call while the cashier waits. It orchestrates
//! identity, segmentation, rewards and wallet, and records purchase transactions.
pub mod api;
pub mod domain;
pub mod migration;
pub mod peers;
pub mod store;

use std::{sync::Arc, time::Duration};

use loyalty_platform::{Infra, Settings};
use loyalty_proto::checkout::v1::checkout_service_server::CheckoutServiceServer;
use secrecy::ExposeSecret;

pub const SERVICE: &str = "checkout";
pub const DEFAULT_PORT: u16 = 50056;

/// The key that signs quotes: the configured quote secret, else the platform key. Without
/// either a random one is drawn, so quotes hold only on this replica until it restarts.
fn quote_secret(settings: &Settings) -> Vec<u8> {
    match settings
        .checkout
        .quote_secret
        .as_ref()
        .or(settings.auth.bootstrap_key.as_ref())
    {
        Some(secret) => secret.expose_secret().as_bytes().to_vec(),
        None => {
            tracing::warn!(
                "neither checkout.quote_secret nor auth.bootstrap_key is set: quotes are signed \
                 with a random key and hold on this replica only"
            );
            rand::random::<[u8; 32]>().to_vec()
        }
    }
}

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
    let checkout = infra.settings.checkout.clone();
    let api = Arc::new(api::CheckoutApi::new(
        peers,
        store::Store::new(infra.db.clone()),
        quote_secret(&infra.settings),
        checkout.clone(),
    ));
    match &infra.settings.auth.bootstrap_key {
        Some(key) => {
            tokio::spawn(
                api::Recovery {
                    api: api.clone(),
                    platform_key: key.clone(),
                    interval: Duration::from_secs(checkout.recovery_interval_secs),
                    abandon_after: Duration::from_secs(checkout.abandon_after_secs),
                }
                .run(),
            );
        }
        None => tracing::warn!(
            "auth.bootstrap_key is not set: abandoned commits are undone only when retried"
        ),
    }
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(CheckoutServiceServer::from_arc(api));
    infra
        .serve(auth, routes, &["loyalty.checkout.v1.CheckoutService"])
        .await
}

//! The identity service: partners and their API keys, customer accounts, and the identifiers
//! (cards, codes, emails, phones) that find them.
pub mod api;
pub mod domain;
pub mod migration;
pub mod store;

use std::sync::Arc;

use loyalty_platform::{Infra, Settings};
use loyalty_proto::identity::v1::identity_service_server::IdentityServiceServer;

pub const SERVICE: &str = "identity";
pub const DEFAULT_PORT: u16 = 50051;

/// Starts the service and serves until SIGTERM/SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let infra = Infra::start::<migration::Migrator>(settings).await?;
    let store = store::Store::new(infra.db.clone());
    let auth = infra.authenticator_with(Arc::new(store.clone()));
    // Other replicas of identity forget a key one of them revoked (one process needs nothing).
    if infra.redis.is_some() {
        infra.forget_revoked_keys(&auth)?;
    }
    infra.consume(
        "campaigns",
        Arc::new(store::consents::DeliveryFeedback::new(store.clone())),
    )?;
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(IdentityServiceServer::new(api::IdentityApi::new(
        store,
        infra.db.clone(),
        infra.cache.clone(),
        auth.clone(),
    )));
    infra
        .serve(auth, routes, &["loyalty.identity.v1.IdentityService"])
        .await
}

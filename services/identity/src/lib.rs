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
    // One consumer per producer (they share the consumer group and cursor): identity's other
    // handlers of a producer's events ride along with the account-history projection.
    start_projections(
        &infra,
        vec![(
            "campaigns",
            Arc::new(store::consents::DeliveryFeedback::new(store.clone())) as _,
        )],
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

/// Producers whose events feed the account history (Customer 360 timeline), identity's own
/// first (it also maintains the customer search index).
const HISTORY_PRODUCERS: &[&str] = &[
    SERVICE,
    "checkout",
    "wallet",
    "rewards",
    "segmentation",
    "campaigns",
];

/// Starts the account-history projection. With Redis every producer's stream is read; without
/// it each producer's event feed is pulled from its configured peer URL, identity's own feed
/// from its own address when no `peers.identity_url` is set. A producer that is neither
/// configured nor reachable through Redis is skipped with a warning.
fn start_projections(
    infra: &Infra,
    mut others: Vec<(&str, Arc<dyn loyalty_platform::events::EventHandler>)>,
) -> anyhow::Result<()> {
    let mut infra = infra.clone();
    if infra.redis.is_none() && infra.settings.peers.identity_url.is_none() {
        let mut addr = infra.settings.server.listen_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        infra.settings.peers.identity_url = Some(format!("http://{addr}"));
    }
    let projector: Arc<dyn loyalty_platform::events::EventHandler> =
        store::accounts::AccountProjector::new();
    for producer in HISTORY_PRODUCERS {
        let mut handlers = vec![projector.clone()];
        others.retain(|(p, h)| {
            let mine = p == producer;
            if mine {
                handlers.push(h.clone());
            }
            !mine
        });
        if infra.redis.is_none() && infra.settings.peers.url(producer).is_none() {
            tracing::warn!(
                %producer,
                "no Redis and no peer URL: its events stay out of the account history"
            );
            continue;
        }
        infra.consume(producer, store::accounts::Handlers::of(handlers))?;
    }
    for (producer, handler) in others {
        infra.consume(producer, handler)?;
    }
    Ok(())
}

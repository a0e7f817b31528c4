//! The segmentation service: the customer feature store (a projection of identity's,
//! checkout's, the wallet's, rewards' and campaigns' events), segments and their memberships,
//! recalculated online at checkout.
pub mod api;
pub mod domain;
pub mod migration;
pub mod store;

use std::{sync::Arc, time::Duration};

use loyalty_platform::{Infra, Settings};
use loyalty_proto::segmentation::v1::segmentation_service_server::SegmentationServiceServer;

pub const SERVICE: &str = "segmentation";
pub const DEFAULT_PORT: u16 = 50054;

/// Starts the service and serves until SIGTERM/SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    // A bad time fails the start rather than silently never recalculating.
    let nightly = domain::parse_daily_time(&settings.jobs.flexi_recalculation_time)
        .map_err(|e| anyhow::anyhow!("jobs.flexi_recalculation_time {e}"))?;
    let infra = Infra::start::<migration::Migrator>(settings).await?;
    let cache = store::cache::MembershipCache::new(
        infra.cache.clone(),
        Duration::from_secs(infra.settings.redis.cache_ttl_secs),
    );
    let slicing = store::features::Slicing::new(infra.settings.jobs.selection_slices);
    let store = store::Store::new(infra.db.clone()).with_slicing(slicing);
    match nightly {
        Some(at) => store::membership::spawn_scheduler(store.clone(), cache.clone(), at),
        None => {
            tracing::info!("nightly Flexi recalculation is off (jobs.flexi_recalculation_time)")
        }
    }
    let auth = infra.remote_authenticator()?;
    let projector = Arc::new(store::cache::InvalidatingProjector {
        db: infra.db.clone(),
        cache: cache.clone(),
    });
    // One consumer per producer, all feeding the one feature projection. Harmless while a
    // producer serves no feed yet (campaigns): without Redis and its URL nothing is consumed
    // (a warning), and a feed that does not answer is retried quietly.
    for producer in store::rebuild::PRODUCERS {
        infra.consume(producer, projector.clone())?;
    }
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(SegmentationServiceServer::new(api::SegmentationApi::new(
        store, cache,
    )));
    infra
        .serve(
            auth,
            routes,
            &["loyalty.segmentation.v1.SegmentationService"],
        )
        .await
}

/// The `rebuild-features` operator command: empties the feature projection and makes the
/// next start of the service consume every producer's events from the start. Run it with
/// every segmentation replica stopped.
pub async fn rebuild_features(settings: Settings) -> anyhow::Result<()> {
    let db = loyalty_platform::db::connect_and_migrate::<migration::Migrator>(&settings).await?;
    // Rewound first: should the database step fail, a rewound group only re-reads events
    // still recorded as consumed, which are skipped.
    if let Some(url) = &settings.redis.url {
        let (_, mut redis) = loyalty_platform::cache::connect_redis(url).await?;
        loyalty_platform::events::rewind_streams(
            &mut redis,
            &settings.redis.key_prefix,
            SERVICE,
            store::rebuild::PRODUCERS,
        )
        .await?;
    }
    let deleted = store::rebuild::reset_projection(&db, SERVICE).await?;
    tracing::info!(
        deleted,
        producers = ?store::rebuild::PRODUCERS,
        "feature projection emptied; the next start replays the producers' events"
    );
    Ok(())
}

//! The rewards service: reward definitions and purchase bonuses (and, with later issues,
//! vouchers, the product catalogue, campaign products, tiers, schemes and offers).
pub mod activity;
pub mod api;
pub mod domain;
pub mod migration;
pub mod store;

use std::{sync::Arc, time::Duration};

use loyalty_platform::{
    Infra, Settings,
    events::{self, EventCallback, EventSource},
};
use loyalty_proto::rewards::v1::rewards_service_server::RewardsServiceServer;

pub const SERVICE: &str = "rewards";
pub const DEFAULT_PORT: u16 = 50053;

/// Starts the service and serves until SIGTERM/SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let infra = Infra::start::<migration::Migrator>(settings).await?;
    let auth = infra.remote_authenticator()?;
    // One consumer per producer (a second one would split the stream's events between them):
    // checkout's purchases advance reward offers and qualify membership levels, identity's
    // tracked events advance offers, the wallet's postings qualify levels.
    let tier_feed = Arc::new(store::tiers::TierActivityFeed);
    let segments = segmentation(&infra);
    let offers = Arc::new(activity::OfferActivity::with_segments(segments.clone()));
    infra.consume(
        "checkout",
        Arc::new(activity::Handlers(vec![offers.clone(), tier_feed.clone()])),
    )?;
    infra.consume("identity", Arc::new(activity::Handlers(vec![offers])))?;
    infra.consume("wallet", tier_feed)?;
    if infra.settings.jobs.expiry_interval_secs > 0 {
        store::tiers::spawn_scheduler(
            infra.db.clone(),
            Duration::from_secs(infra.settings.jobs.expiry_interval_secs),
        );
    }
    // Optional: without a wallet, vouchers with a points price are refused, not given away;
    // without segmentation and wallet, ListAvailableRewards answers UNAVAILABLE.
    let wallet = infra.peer("wallet").ok();
    let mut api = api::RewardsApi::new(infra.db.clone())
        .with_wallet(wallet.clone())
        .with_segments(segments);
    if let Ok(identity) = infra.peer("identity") {
        api = api.with_identity(identity);
    }
    if let (Ok(segmentation), Some(wallet)) = (infra.peer("segmentation"), wallet) {
        api = api.with_customer_peers(segmentation, wallet);
    }
    let (rules, hot) = (
        api.rules_cache().on_event(),
        api.evaluation_cache().on_event(),
    );
    follow_own_events(
        &infra,
        Arc::new(move |event| {
            rules(event);
            hot(event);
        }),
    );
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(RewardsServiceServer::new(api));
    infra
        .serve(auth, routes, &["loyalty.rewards.v1.RewardsService"])
        .await
}

/// Segmentation as the consumer of customers' activity for reward offers and sign-ups to
/// CRITERIA schemes ask it: the platform key (`auth.bootstrap_key`) acting for each event's or
/// request's partner. Without segmentation or that key, offers restricted to segments count
/// for nobody and CRITERIA sign-ups answer UNAVAILABLE (and a warning says so).
fn segmentation(infra: &Infra) -> Arc<dyn store::schemes::CustomerSegments> {
    match (
        infra.peer("segmentation"),
        &infra.settings.auth.bootstrap_key,
    ) {
        (Ok(channel), Some(key)) => Arc::new(activity::SegmentationPeer::new(channel, key.clone())),
        _ => {
            tracing::warn!(
                "reward offers restricted to segments and CRITERIA reward schemes need \
                 peers.segmentation_url and auth.bootstrap_key: without them such offers count \
                 for nobody and sign-ups to such schemes are unavailable"
            );
            Arc::new(store::schemes::NoSegmentation)
        }
    }
}

/// Every replica follows the service's own events, so that each drops a partner's cached
/// rules when any replica changed them. Without Redis it reads its own event feed, which needs
/// the internal credential and `peers.rewards_url`; without those the cache TTL is the bound.
fn follow_own_events(infra: &Infra, on_event: EventCallback) {
    let source = match &infra.redis {
        Some((client, _)) => EventSource::Redis {
            client: client.clone(),
            prefix: infra.settings.redis.key_prefix.clone(),
        },
        None => match (&infra.settings.auth.bootstrap_key, infra.peer(SERVICE)) {
            (Some(credential), Ok(channel)) => EventSource::Feed {
                channel,
                credential: credential.clone(),
            },
            _ => {
                tracing::warn!(
                    "without redis, following the rewards feed needs auth.bootstrap_key and \
                     peers.rewards_url: other replicas' rule changes are seen when the rules \
                     cache expires"
                );
                return;
            }
        },
    };
    events::spawn_follower(
        SERVICE,
        source,
        Duration::from_millis(infra.settings.events.poll_interval_ms.max(10)),
        infra.settings.events.batch_size.max(1) as usize,
        on_event,
    );
}

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
    infra.consume(
        "checkout",
        Arc::new(activity::Handlers(vec![
            Arc::new(activity::OfferActivity),
            tier_feed.clone(),
        ])),
    )?;
    infra.consume(
        "identity",
        Arc::new(activity::Handlers(vec![Arc::new(activity::OfferActivity)])),
    )?;
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
    let mut api = api::RewardsApi::new(infra.db.clone()).with_wallet(wallet.clone());
    if let Ok(identity) = infra.peer("identity") {
        api = api.with_identity(identity);
    }
    if let (Ok(segmentation), Some(wallet)) = (infra.peer("segmentation"), wallet) {
        api = api.with_customer_peers(segmentation, wallet);
    }
    follow_own_events(&infra, api.rules_cache().on_event());
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(RewardsServiceServer::new(api));
    infra
        .serve(auth, routes, &["loyalty.rewards.v1.RewardsService"])
        .await
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

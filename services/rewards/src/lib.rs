//! The rewards service: reward definitions and purchase bonuses (and, with later issues,
//! vouchers, the product catalogue, campaign products, tiers, schemes and offers).
pub mod activity;
pub mod api;
pub mod domain;
pub mod migration;
pub mod store;

use std::sync::Arc;

use loyalty_platform::{Infra, Settings};
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
            std::time::Duration::from_secs(infra.settings.jobs.expiry_interval_secs),
        );
    }
    let mut routes = tonic::service::RoutesBuilder::default();
    // Optional: without a wallet, vouchers with a points price are refused, not given away;
    // without segmentation and wallet, ListAvailableRewards answers UNAVAILABLE.
    let wallet = infra.peer("wallet").ok();
    let mut api = api::RewardsApi::new(infra.db.clone()).with_wallet(wallet.clone());
    if let (Ok(segmentation), Some(wallet)) = (infra.peer("segmentation"), wallet) {
        api = api.with_customer_peers(segmentation, wallet);
    }
    routes.add_service(RewardsServiceServer::new(api));
    infra
        .serve(auth, routes, &["loyalty.rewards.v1.RewardsService"])
        .await
}

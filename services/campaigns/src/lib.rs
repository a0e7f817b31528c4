//! The campaigns service: message templates (and, with later issues, omnichannel campaigns,
//! the send queue, delivery tracking and marketing-automation workflows).
pub mod api;
pub mod automation;
#[cfg(test)]
mod automation_tests;
pub mod delivery;
pub mod domain;
pub mod migration;
pub mod sender;
pub mod store;

use loyalty_platform::{Infra, Settings};
use loyalty_proto::campaigns::v1::campaigns_service_server::CampaignsServiceServer;

pub const SERVICE: &str = "campaigns";
pub const DEFAULT_PORT: u16 = 50055;

/// Starts the service and serves until SIGTERM/SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    // A bad adapter configuration stops the start rather than the first send.
    let adapters = delivery::Adapters::from_settings(&settings.delivery)?;
    let channels: Vec<&str> = adapters.channels().iter().map(|c| c.as_str()).collect();
    let infra = Infra::start::<migration::Migrator>(settings).await?;
    tracing::info!(?channels, "channel adapters configured");
    let auth = infra.remote_authenticator()?;
    let mut api = api::CampaignsApi::new(store::Store::new(infra.db.clone()))
        .with_channels(adapters.channels());
    if let Some(secret) = delivery::link_secret(&infra.settings) {
        api = api.with_link_secret(secret);
    }
    // Previews for a real customer read identity; without it they answer UNAVAILABLE.
    match infra.peer("identity") {
        Ok(identity) => api = api.with_identity(identity),
        Err(e) => tracing::warn!(error = %e, "previews for a customer are off"),
    }
    match infra.peer("rewards") {
        Ok(rewards) => api = api.with_rewards(rewards),
        Err(e) => tracing::warn!(error = %e, "campaigns cannot give vouchers"),
    }
    match infra.peer("segmentation") {
        Ok(segmentation) => api = api.with_segmentation(segmentation),
        Err(e) => tracing::warn!(error = %e, "campaigns cannot target audiences"),
    }
    // The send queue needs identity (consents at send time) and the platform key to act for
    // a partner; segmentation for campaign audiences.
    match (infra.peer("identity"), &infra.settings.auth.bootstrap_key) {
        (Ok(identity), Some(key)) => sender::Sender::new(
            store::Store::new(infra.db.clone()),
            adapters,
            sender::Peers {
                identity,
                segmentation: infra.peer("segmentation").ok(),
                rewards: infra.peer("rewards").ok(),
            },
            key.clone(),
            &delivery::link_secret(&infra.settings).unwrap_or_default(),
            &infra.settings.delivery,
        )?
        .spawn(),
        _ => tracing::warn!(
            "the send queue is off: it needs peers.identity_url and auth.bootstrap_key"
        ),
    }
    // Workflows: triggers come from identity's, segmentation's and checkout's events; the
    // engine acts for partners with the platform key.
    let triggers: std::sync::Arc<automation::Triggers> = std::sync::Arc::new(automation::Triggers);
    for producer in ["identity", "segmentation", "checkout"] {
        infra.consume(producer, triggers.clone())?;
    }
    // Redemptions of campaign vouchers, for the campaign statistics.
    infra.consume(
        "rewards",
        std::sync::Arc::new(store::messages::VoucherRedemptions),
    )?;
    match &infra.settings.auth.bootstrap_key {
        Some(key) if infra.settings.automation.enabled => automation::Engine::new(
            infra.db.clone(),
            automation::Peers {
                identity: infra.peer("identity").ok(),
                segmentation: infra.peer("segmentation").ok(),
                rewards: infra.peer("rewards").ok(),
                wallet: infra.peer("wallet").ok(),
            },
            key.clone(),
            infra.settings.automation.clone(),
        )
        .spawn(),
        Some(_) => tracing::info!("the workflow engine is off on this replica"),
        None => tracing::warn!("the workflow engine is off: it needs auth.bootstrap_key"),
    }
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(CampaignsServiceServer::new(api));
    infra
        .serve(auth, routes, &["loyalty.campaigns.v1.CampaignsService"])
        .await
}

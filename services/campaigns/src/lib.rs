//! The campaigns service: message templates (and, with later issues, omnichannel campaigns,
//! the send queue, delivery tracking and marketing-automation workflows).
pub mod api;
pub mod domain;
pub mod migration;
pub mod store;

use loyalty_platform::{Infra, Settings};
use loyalty_proto::campaigns::v1::campaigns_service_server::CampaignsServiceServer;

pub const SERVICE: &str = "campaigns";
pub const DEFAULT_PORT: u16 = 50055;

/// Starts the service and serves until SIGTERM/SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let infra = Infra::start::<migration::Migrator>(settings).await?;
    let auth = infra.remote_authenticator()?;
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(CampaignsServiceServer::new(api::CampaignsApi::new(
        store::Store::new(infra.db.clone()),
    )));
    infra
        .serve(auth, routes, &["loyalty.campaigns.v1.CampaignsService"])
        .await
}

//! Connecting to a service under test.
use std::time::Duration;

use tonic::{
    metadata::{Ascii, MetadataValue},
    transport::{Channel, Endpoint},
};

/// Where the service under test listens and how to call it.
#[derive(Debug, Clone, clap::Args)]
pub struct GrpcArgs {
    /// The service's gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    pub endpoint: String,
    /// An API key of the partner the load runs as.
    #[arg(long, env = "LOYALTY_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// HTTP/2 connections the calls are spread over (round robin).
    #[arg(long, default_value_t = 4)]
    pub channels: usize,
}

impl GrpcArgs {
    /// Opens the connections now, so an unreachable endpoint fails before any load starts.
    pub async fn connect(&self) -> anyhow::Result<Vec<Channel>> {
        let endpoint = Endpoint::from_shared(self.endpoint.clone())?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(600));
        let mut channels = Vec::new();
        for _ in 0..self.channels.max(1) {
            channels.push(
                endpoint
                    .connect()
                    .await
                    .map_err(|e| anyhow::anyhow!("connecting to {}: {e}", self.endpoint))?,
            );
        }
        Ok(channels)
    }

    pub fn bearer(&self) -> anyhow::Result<MetadataValue<Ascii>> {
        Ok(format!("Bearer {}", self.api_key).parse()?)
    }
}

/// A request carrying the API key.
pub fn authed<T>(message: T, bearer: &MetadataValue<Ascii>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut().insert("authorization", bearer.clone());
    req
}

/// The error class a failed call is counted under.
pub fn class(status: &tonic::Status) -> String {
    format!("{:?}", status.code())
}

//! Calls to other services: lazily connected channels, and requests that carry the caller's
//! credentials and trace context.
use std::time::Duration;

use secrecy::ExposeSecret;
use tonic::transport::{Channel, Endpoint};

use crate::auth::Principal;

/// A channel to `url` that connects on first use and reconnects by itself.
pub fn channel(url: &str) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// A request on behalf of `principal`: forwards its key, its partner (so that a principal
/// acting for a partner with the platform key still does downstream) and the trace context.
pub fn outgoing<T>(message: T, principal: &Principal) -> tonic::Request<T> {
    let req = with_key(message, principal.credential.expose_secret());
    match principal.partner_id {
        Some(partner) => acting_for(req, partner),
        None => req,
    }
}

/// A platform-internal request for `partner`, with the platform (bootstrap) key: served as
/// the partner's `service` key (see [`crate::auth::ACT_FOR_PARTNER`]).
pub fn for_partner<T>(message: T, platform_key: &str, partner: uuid::Uuid) -> tonic::Request<T> {
    acting_for(with_key(message, platform_key), partner)
}

fn acting_for<T>(mut req: tonic::Request<T>, partner: uuid::Uuid) -> tonic::Request<T> {
    if let Ok(v) = partner.to_string().parse() {
        req.metadata_mut().insert(crate::auth::ACT_FOR_PARTNER, v);
    }
    req
}

/// A request authenticated with `key`.
pub fn with_key<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    if let Ok(v) = format!("Bearer {key}").parse() {
        req.metadata_mut().insert("authorization", v);
    }
    crate::telemetry::inject_current_context(req.metadata_mut());
    if let Some(left) = crate::server::remaining_deadline() {
        req.set_timeout(left);
    }
    req
}

//! Server bootstrap shared by every service: one tower stack (trace context, load shedding,
//! authentication), gRPC health and reflection, and graceful shutdown on SIGTERM/SIGINT.
use std::{
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{net::TcpListener, sync::Semaphore};
use tonic::{Status, body::Body};
use tonic_health::{ServingStatus, server::HealthReporter};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::{auth::KeyAuthenticator, config::Settings};

/// Paths answered without an API key: health checks and reflection.
fn is_public(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

struct GatewayState {
    auth: KeyAuthenticator,
    permits: Arc<Semaphore>,
    timeout: Duration,
    /// Methods timed by `bulk_timeout` instead (`server.bulk_methods`).
    bulk: HashSet<String>,
    bulk_timeout: Duration,
    /// Client-streaming methods: they last as long as the client sends (an import of a
    /// million rows), so only the client's own `grpc-timeout` bounds them.
    untimed: HashSet<String>,
}

/// The paths of every client-streaming method of the product's contracts.
fn client_streaming_paths() -> HashSet<String> {
    use prost::Message;
    let Ok(set) = prost_types::FileDescriptorSet::decode(loyalty_proto::FILE_DESCRIPTOR_SET) else {
        return HashSet::new();
    };
    set.file
        .iter()
        .flat_map(|f| {
            f.service.iter().flat_map(move |s| {
                s.method
                    .iter()
                    .filter(|m| m.client_streaming())
                    .map(move |m| format!("/{}.{}/{}", f.package(), s.name(), m.name()))
            })
        })
        .collect()
}

/// The platform's request layer: continues the caller's trace, sheds load beyond the
/// concurrency limit with RESOURCE_EXHAUSTED, turns the bearer key into a `Principal`
/// request extension (UNAUTHENTICATED without a valid key), and ends calls that outlast the
/// server's request timeout with DEADLINE_EXCEEDED (client-streaming calls excepted).
#[derive(Clone)]
pub struct GatewayLayer {
    state: Arc<GatewayState>,
}

impl GatewayLayer {
    pub fn new(auth: KeyAuthenticator, concurrency_limit: usize, timeout: Duration) -> Self {
        Self {
            state: Arc::new(GatewayState {
                auth,
                permits: Arc::new(Semaphore::new(concurrency_limit.max(1))),
                timeout,
                bulk: HashSet::new(),
                bulk_timeout: timeout,
                untimed: client_streaming_paths(),
            }),
        }
    }

    /// Times `methods` (full paths) by `timeout` instead of the request timeout.
    pub fn with_bulk_methods(mut self, methods: &[String], timeout: Duration) -> Self {
        if let Some(state) = Arc::get_mut(&mut self.state) {
            state.bulk = methods.iter().cloned().collect();
            state.bulk_timeout = timeout;
        }
        self
    }
}

impl<S> Layer<S> for GatewayLayer {
    type Service = Gateway<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Gateway {
            inner,
            state: self.state.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Gateway<S> {
    inner: S,
    state: Arc<GatewayState>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> Service<http::Request<B>> for Gateway<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The clone may not be ready; swap so the ready one serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        let path = req.uri().path().to_owned();
        let span = tracing::info_span!("grpc", rpc.method = %path, otel.kind = "server");
        crate::telemetry::set_parent_from_headers(&span, req.headers());

        if is_public(&path) {
            return Box::pin(async move { inner.call(req).await }.instrument(span));
        }
        let Ok(permit) = state.permits.clone().try_acquire_owned() else {
            tracing::warn!(parent: &span, "shedding load: concurrency limit reached");
            return Box::pin(async move {
                Ok(Status::resource_exhausted(
                    "server is at its concurrency limit; retry with backoff",
                )
                .into_http())
            });
        };
        Box::pin(
            async move {
                let key = crate::auth::bearer(req.headers())
                    .unwrap_or_default()
                    .to_owned();
                let act_for = req
                    .headers()
                    .get(crate::auth::ACT_FOR_PARTNER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let authenticated = match state.auth.authenticate(&key).await {
                    Ok(p) => p.acting_for(act_for.as_deref()),
                    Err(e) => Err(e),
                };
                match authenticated {
                    Ok(principal) => {
                        req.extensions_mut().insert(principal);
                        let out = if state.untimed.contains(&path) {
                            inner.call(req).await
                        } else {
                            let server_timeout = if state.bulk.contains(&path) {
                                state.bulk_timeout
                            } else {
                                state.timeout
                            };
                            // The caller's deadline, when sooner, bounds the call and every
                            // call it makes downstream (see `client::with_key`).
                            let timeout = caller_timeout(req.headers())
                                .map_or(server_timeout, |t| t.min(server_timeout));
                            let deadline = tokio::time::Instant::now() + timeout;
                            match tokio::time::timeout_at(
                                deadline,
                                DEADLINE.scope(deadline, inner.call(req)),
                            )
                            .await
                            {
                                Ok(out) => out,
                                Err(_) => Ok(Status::deadline_exceeded(
                                    "the call outlasted the server's request timeout",
                                )
                                .into_http()),
                            }
                        };
                        drop(permit);
                        out
                    }
                    Err(e) => Ok(Status::from(e).into_http()),
                }
            }
            .instrument(span),
        )
    }
}

tokio::task_local! {
    /// When the call being served must be answered; outgoing calls made while serving it
    /// carry what is left of it as their `grpc-timeout`.
    pub static DEADLINE: tokio::time::Instant;
}

/// The `grpc-timeout` a caller sent (`<digits><unit>`, unit one of H M S m u n).
fn caller_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// What is left of the deadline of the call being served, if any.
pub fn remaining_deadline() -> Option<Duration> {
    DEADLINE
        .try_with(|d| d.saturating_duration_since(tokio::time::Instant::now()))
        .ok()
}

/// Accepted connections with Nagle's algorithm off: a unary answer is several small writes
/// (headers, message, trailers), and with Nagle on the last one waits for the client's delayed
/// ACK, about 40 ms a call.
fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Waits for SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Health of the whole server and of each named gRPC service.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    services: Vec<String>,
}

impl Health {
    pub async fn set(&self, status: ServingStatus) {
        self.reporter.set_service_status("", status).await;
        for s in &self.services {
            self.reporter.set_service_status(s, status).await;
        }
    }
}

/// Serves `routes` on `listener` until `shutdown` resolves, then drains in-flight calls
/// (at most `server.shutdown_grace_ms`). Health answers SERVING from the first call on,
/// since the caller only gets here once the database and Redis are reachable and migrations
/// have run; it turns NOT_SERVING when the database stops answering and at shutdown.
pub async fn serve(
    settings: &Settings,
    auth: KeyAuthenticator,
    mut routes: tonic::service::RoutesBuilder,
    service_names: &[&str],
    listener: TcpListener,
    db: Option<sea_orm::DatabaseConnection>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health = Health {
        reporter,
        services: service_names.iter().map(|s| (*s).to_owned()).collect(),
    };
    health.set(ServingStatus::Serving).await;

    // Reflection advertises only what this server serves, not every package of the product.
    let reflection = || {
        let mut b = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(loyalty_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health");
        for name in service_names {
            b = b.with_service_name(*name);
        }
        b
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    routes
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    if let Some(db) = db {
        let health = health.clone();
        tokio::spawn(async move {
            let mut serving = true;
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let ok = db.ping().await.is_ok();
                if ok != serving {
                    serving = ok;
                    tracing::warn!(database_reachable = ok, "database reachability changed");
                    health
                        .set(if ok {
                            ServingStatus::Serving
                        } else {
                            ServingStatus::NotServing
                        })
                        .await;
                }
            }
        });
    }

    let addr = listener.local_addr()?;
    tracing::info!(service = %settings.service, %addr, "serving gRPC");
    let grace = Duration::from_millis(settings.server.shutdown_grace_ms);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let drain_health = health.clone();
    // No server-wide `timeout` here: it would also cut client-streaming calls; the gateway
    // times the others, and tonic still honours each client's `grpc-timeout`.
    let server = tonic::transport::Server::builder()
        .layer(
            GatewayLayer::new(
                auth,
                settings.server.concurrency_limit,
                Duration::from_millis(settings.server.request_timeout_ms),
            )
            .with_bulk_methods(
                &settings.server.bulk_methods,
                Duration::from_millis(settings.server.bulk_request_timeout_ms),
            ),
        )
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(incoming(listener), async move {
            let _ = stop_rx.await;
        });
    let mut server = Box::pin(server);
    tokio::select! {
        r = &mut server => return r.map_err(Into::into),
        _ = shutdown => {}
    }
    tracing::info!("shutting down: draining in-flight calls");
    drain_health.set(ServingStatus::NotServing).await;
    let _ = stop_tx.send(());
    match tokio::time::timeout(grace, server).await {
        Ok(r) => r.map_err(Into::into),
        Err(_) => {
            tracing::warn!("drain deadline passed; stopping with calls in flight");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{KeyStore, Principal};
    use secrecy::SecretString;
    use tonic::Code;

    struct OneKey;

    #[async_trait::async_trait]
    impl KeyStore for OneKey {
        async fn lookup(
            &self,
            secret: &SecretString,
        ) -> Result<Option<Principal>, crate::ApiError> {
            use secrecy::ExposeSecret;
            Ok((secret.expose_secret() == "good").then(|| Principal {
                partner_id: Some(uuid::Uuid::nil()),
                api_key_id: None,
                roles: vec![crate::Role::Pos],
                platform_admin: false,
                credential: secret.clone(),
            }))
        }
    }

    fn gateway(limit: usize) -> GatewayLayer {
        let auth = KeyAuthenticator::new(None, Arc::new(OneKey), Duration::from_secs(60));
        GatewayLayer::new(auth, limit, Duration::from_secs(5))
    }

    #[tokio::test(start_paused = true)]
    async fn unary_calls_time_out_but_client_streams_last_as_long_as_the_client_sends() {
        let release = Arc::new(tokio::sync::Notify::new());
        let mut svc = gateway(10).layer(inner(release.clone()));
        let slow = svc
            .call(request("/loyalty.x.v1.X/Get", Some("good")))
            .await
            .unwrap();
        assert_eq!(grpc_code(&slow), Code::DeadlineExceeded);

        let import = tokio::spawn(svc.call(request(
            "/loyalty.identity.v1.IdentityService/ImportCustomers",
            Some("good"),
        )));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(
            !import.is_finished(),
            "a client stream is not cut by the timeout"
        );
        release.notify_waiters();
        assert_eq!(grpc_code(&import.await.unwrap().unwrap()), Code::Ok);
    }

    #[tokio::test(start_paused = true)]
    async fn bulk_methods_get_their_own_longer_deadline() {
        let release = Arc::new(tokio::sync::Notify::new());
        let bulk = "/loyalty.segmentation.v1.SegmentationService/RecalculateSegment";
        let mut svc = gateway(10)
            .with_bulk_methods(&[bulk.to_owned()], Duration::from_secs(120))
            .layer(inner(release.clone()));
        let recalculation = tokio::spawn(svc.call(request(bulk, Some("good"))));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(
            !recalculation.is_finished(),
            "past the request timeout, within the bulk one"
        );
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(
            grpc_code(&recalculation.await.unwrap().unwrap()),
            Code::DeadlineExceeded
        );
        let other = svc
            .call(request("/loyalty.x.v1.X/Get", Some("good")))
            .await
            .unwrap();
        assert_eq!(grpc_code(&other), Code::DeadlineExceeded, "5 s as before");
    }

    #[test]
    fn the_client_streaming_methods_are_found_in_the_contracts() {
        let paths = client_streaming_paths();
        assert!(paths.contains("/loyalty.identity.v1.IdentityService/ImportCustomers"));
        assert!(paths.contains("/loyalty.identity.v1.IdentityService/TrackEvents"));
        assert!(!paths.contains("/loyalty.identity.v1.IdentityService/GetCustomer"));
    }

    fn request(path: &str, key: Option<&str>) -> http::Request<Body> {
        let mut b = http::Request::builder().uri(format!("http://localhost{path}"));
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        b.body(Body::empty()).unwrap()
    }

    fn grpc_code(resp: &http::Response<Body>) -> Code {
        resp.headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
            .map(Code::from)
            .unwrap_or(Code::Ok)
    }

    /// An inner service that records the principal it saw and waits for `release`.
    fn inner(
        release: Arc<tokio::sync::Notify>,
    ) -> impl Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error = std::convert::Infallible,
        Future = BoxFuture<Result<http::Response<Body>, std::convert::Infallible>>,
    > + Clone {
        tower::service_fn(move |req: http::Request<Body>| {
            let release = release.clone();
            Box::pin(async move {
                assert!(
                    req.extensions().get::<Principal>().is_some() || is_public(req.uri().path())
                );
                release.notified().await;
                Ok(http::Response::new(Body::empty()))
            }) as BoxFuture<_>
        })
    }

    #[tokio::test]
    async fn calls_without_a_valid_key_are_unauthenticated_but_health_is_public() {
        let release = Arc::new(tokio::sync::Notify::new());
        let mut svc = gateway(10).layer(inner(release.clone()));
        let resp = svc
            .call(request("/loyalty.x.v1.X/Get", None))
            .await
            .unwrap();
        assert_eq!(grpc_code(&resp), Code::Unauthenticated);
        let resp = svc
            .call(request("/loyalty.x.v1.X/Get", Some("bad")))
            .await
            .unwrap();
        assert_eq!(grpc_code(&resp), Code::Unauthenticated);
        release.notify_waiters();
        let health = tokio::spawn(svc.call(request("/grpc.health.v1.Health/Check", None)));
        tokio::task::yield_now().await;
        release.notify_waiters();
        let resp = health.await.unwrap().unwrap();
        assert_eq!(grpc_code(&resp), Code::Ok);
    }

    #[test]
    fn caller_timeouts_are_parsed_in_every_unit() {
        let mut h = http::HeaderMap::new();
        for (v, d) in [
            ("2S", Duration::from_secs(2)),
            ("150m", Duration::from_millis(150)),
            ("7u", Duration::from_micros(7)),
            ("1H", Duration::from_secs(3600)),
        ] {
            h.insert("grpc-timeout", v.parse().unwrap());
            assert_eq!(caller_timeout(&h), Some(d));
        }
        for bad in ["", "S", "12x", "-1S"] {
            h.insert("grpc-timeout", bad.parse().unwrap());
            assert_eq!(caller_timeout(&h), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn the_deadline_is_visible_while_serving_only() {
        assert_eq!(remaining_deadline(), None);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let left = DEADLINE
            .scope(deadline, async { remaining_deadline() })
            .await;
        assert!(left.is_some_and(|l| l <= Duration::from_secs(5) && l > Duration::from_secs(4)));
    }

    #[tokio::test]
    async fn calls_beyond_the_concurrency_limit_are_shed_with_resource_exhausted() {
        let release = Arc::new(tokio::sync::Notify::new());
        let mut svc = gateway(1).layer(inner(release.clone()));
        let first = tokio::spawn(svc.call(request("/loyalty.x.v1.X/Get", Some("good"))));
        // Let the first call take the only permit and block in the inner service.
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        let shed = svc
            .call(request("/loyalty.x.v1.X/Get", Some("good")))
            .await
            .unwrap();
        assert_eq!(grpc_code(&shed), Code::ResourceExhausted);
        release.notify_waiters();
        assert_eq!(grpc_code(&first.await.unwrap().unwrap()), Code::Ok);
        let again = tokio::spawn(svc.call(request("/loyalty.x.v1.X/Get", Some("good"))));
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        release.notify_waiters();
        assert_eq!(
            grpc_code(&again.await.unwrap().unwrap()),
            Code::Ok,
            "the permit came back"
        );
    }
}

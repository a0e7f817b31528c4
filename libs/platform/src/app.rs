//! What every service starts with: its database (migrated), Redis (or the in-process cache),
//! an authenticator, and the event bus wiring.
use std::{sync::Arc, time::Duration};

use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;

use crate::{
    auth::{KeyAuthenticator, KeyStore, RemoteKeyStore},
    cache::Cache,
    config::Settings,
    events::{EventHandler, EventSource},
};

/// The connections of a running service.
#[derive(Clone)]
pub struct Infra {
    pub settings: Settings,
    pub db: DatabaseConnection,
    pub redis: Option<(redis::Client, redis::aio::ConnectionManager)>,
    pub cache: Cache,
}

impl Infra {
    /// Connects to the database, runs migrations, connects to Redis when configured, and starts
    /// the outbox relay. Returns only when all of that worked.
    pub async fn start<M: MigratorTrait>(settings: Settings) -> anyhow::Result<Self> {
        let db = crate::db::connect_and_migrate::<M>(&settings).await?;
        let redis = match &settings.redis.url {
            Some(url) => Some(crate::cache::connect_redis(url).await?),
            None => None,
        };
        let cache = match &redis {
            Some((_, conn)) => Cache::redis(conn.clone(), &settings.redis.key_prefix),
            None => Cache::local(100_000),
        };
        let infra = Infra {
            settings,
            db,
            redis,
            cache,
        };
        if let Some((_, conn)) = &infra.redis {
            crate::events::spawn_relay(
                infra.settings.service.clone(),
                infra.db.clone(),
                conn.clone(),
                infra.settings.redis.key_prefix.clone(),
                infra.poll_interval(),
                u64::from(infra.settings.events.batch_size),
            );
        }
        Ok(infra)
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.settings.events.poll_interval_ms.max(10))
    }

    /// The authenticator of a service that owns the keys (identity).
    pub fn authenticator_with(&self, store: Arc<dyn KeyStore>) -> KeyAuthenticator {
        KeyAuthenticator::new(
            self.settings.auth.bootstrap_key.as_ref(),
            store,
            Duration::from_secs(self.settings.auth.cache_ttl_secs),
        )
    }

    /// The authenticator of every other service: asks identity, remembers for a while, and
    /// forgets a key as soon as identity publishes its `ApiKeyRevoked`.
    pub fn remote_authenticator(&self) -> anyhow::Result<KeyAuthenticator> {
        let channel = self.peer("identity")?;
        let auth = self.authenticator_with(Arc::new(RemoteKeyStore::new(channel)));
        self.forget_revoked_keys(&auth)?;
        Ok(auth)
    }

    /// Follows identity's events in this process (every replica, not one per consumer group)
    /// and drops the cached principal of each revoked key at once. Without Redis and without
    /// the internal credential to read identity's feed, revoked keys expire with the cache TTL.
    ///
    /// Identity itself calls this too, so that its other replicas forget a key that one of
    /// them revoked.
    pub fn forget_revoked_keys(&self, auth: &KeyAuthenticator) -> anyhow::Result<()> {
        let source = match &self.redis {
            Some((client, _)) => EventSource::Redis {
                client: client.clone(),
                prefix: self.settings.redis.key_prefix.clone(),
            },
            None => match (&self.settings.auth.bootstrap_key, self.peer("identity")) {
                (Some(credential), Ok(channel)) => EventSource::Feed {
                    channel,
                    credential: credential.clone(),
                },
                _ => {
                    tracing::warn!(
                        ttl_secs = self.settings.auth.cache_ttl_secs,
                        "without redis, following identity's feed needs auth.bootstrap_key and \
                         peers.identity_url: revoked API keys are refused only once their cached \
                         principal expires"
                    );
                    return Ok(());
                }
            },
        };
        let auth = auth.clone();
        crate::events::spawn_follower(
            "identity",
            source,
            self.poll_interval(),
            self.settings.events.batch_size.max(1) as usize,
            Arc::new(move |event| auth.forget_revoked(event)),
        );
        Ok(())
    }

    /// A channel to another service, from `peers.<name>_url`.
    pub fn peer(&self, name: &str) -> anyhow::Result<tonic::transport::Channel> {
        let url = self.settings.peers.url(name).ok_or_else(|| {
            anyhow::anyhow!(
                "peers.{name}_url is not configured (LOYALTY_PEERS__{}_URL)",
                name.to_uppercase()
            )
        })?;
        crate::client::channel(url)
    }

    /// Starts consuming `producer`'s events: from Redis Streams when Redis is configured,
    /// otherwise from the producer's event feed. Without Redis and without the producer's
    /// URL (a deployment without that service) nothing is consumed, and a warning says so.
    pub fn consume(&self, producer: &str, handler: Arc<dyn EventHandler>) -> anyhow::Result<()> {
        let source = match &self.redis {
            Some((client, _)) => EventSource::Redis {
                client: client.clone(),
                prefix: self.settings.redis.key_prefix.clone(),
            },
            None if self.settings.peers.url(producer).is_none() => {
                tracing::warn!(
                    producer,
                    "neither redis nor peers.{producer}_url is configured: {producer}'s events \
                     are not consumed"
                );
                return Ok(());
            }
            None => EventSource::Feed {
                channel: self.peer(producer)?,
                credential: self.settings.auth.bootstrap_key.clone().ok_or_else(|| {
                    anyhow::anyhow!(
                        "auth.bootstrap_key is needed to read {producer}'s event feed without Redis"
                    )
                })?,
            },
        };
        crate::events::spawn_consumer(
            &self.settings.service,
            producer,
            source,
            self.db.clone(),
            handler,
            self.poll_interval(),
            self.settings.events.batch_size as usize,
        );
        Ok(())
    }

    /// Binds the configured address and serves until SIGTERM/SIGINT.
    pub async fn serve(
        &self,
        auth: KeyAuthenticator,
        mut routes: tonic::service::RoutesBuilder,
        service_names: &[&str],
    ) -> anyhow::Result<()> {
        routes.add_service(crate::events::EventFeed::server(
            &self.settings.service,
            self.db.clone(),
        ));
        let listener = tokio::net::TcpListener::bind(self.settings.server.listen_addr).await?;
        let mut names = service_names.to_vec();
        names.push("loyalty.events.v1.EventFeedService");
        crate::server::serve(
            &self.settings,
            auth,
            routes,
            &names,
            listener,
            Some(self.db.clone()),
            crate::server::shutdown_signal(),
        )
        .await
    }
}

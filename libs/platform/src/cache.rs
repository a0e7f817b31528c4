//! The hot-path cache: Redis when configured, an in-process cache otherwise. A cache failure is
//! logged and treated as a miss, so a Redis outage makes calls slower, never wrong.
use std::{sync::Arc, time::Duration};

use moka::Expiry;
use redis::AsyncCommands;

#[derive(Clone)]
pub enum Cache {
    Redis {
        conn: redis::aio::ConnectionManager,
        prefix: String,
    },
    Local(moka::future::Cache<String, Entry>),
}

#[derive(Clone)]
pub struct Entry {
    value: Arc<[u8]>,
    ttl: Duration,
}

struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _: &String,
        value: &Entry,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

impl Cache {
    pub fn local(max_entries: u64) -> Self {
        Cache::Local(
            moka::future::Cache::builder()
                .max_capacity(max_entries)
                .expire_after(PerEntryTtl)
                .build(),
        )
    }

    pub fn redis(conn: redis::aio::ConnectionManager, prefix: &str) -> Self {
        Cache::Redis {
            conn,
            prefix: format!("{prefix}:cache:"),
        }
    }

    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self {
            Cache::Local(c) => c.get(key).await.map(|e| e.value.to_vec()),
            Cache::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                match conn
                    .get::<_, Option<Vec<u8>>>(format!("{prefix}{key}"))
                    .await
                {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(error = %e, "cache get failed; falling back");
                        None
                    }
                }
            }
        }
    }

    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) {
        match self {
            Cache::Local(c) => {
                c.insert(
                    key.to_owned(),
                    Entry {
                        value: value.into(),
                        ttl,
                    },
                )
                .await
            }
            Cache::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let secs = ttl.as_secs().max(1);
                if let Err(e) = conn
                    .set_ex::<_, _, ()>(format!("{prefix}{key}"), value, secs)
                    .await
                {
                    tracing::warn!(error = %e, "cache set failed");
                }
            }
        }
    }

    pub async fn delete(&self, key: &str) {
        match self {
            Cache::Local(c) => c.invalidate(key).await,
            Cache::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                if let Err(e) = conn.del::<_, ()>(format!("{prefix}{key}")).await {
                    tracing::warn!(error = %e, "cache delete failed");
                }
            }
        }
    }
}

/// Connects to Redis with short timeouts (the hot path must not wait on a sick cache),
/// retrying for up to 30 s at start-up.
pub async fn connect_redis(
    url: &str,
) -> anyhow::Result<(redis::Client, redis::aio::ConnectionManager)> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(2))
        .set_response_timeout(Duration::from_millis(500))
        .set_number_of_retries(2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match redis::aio::ConnectionManager::new_with_config(client.clone(), config.clone()).await {
            Ok(mut conn) => {
                let _: String = redis::cmd("PING").query_async(&mut conn).await?;
                return Ok((client, conn));
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "redis not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(anyhow::Error::new(e).context("connecting to redis")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_cache_stores_and_deletes() {
        let c = Cache::local(10);
        c.set("a", b"1", Duration::from_secs(60)).await;
        assert_eq!(c.get("a").await.as_deref(), Some(&b"1"[..]));
        c.delete("a").await;
        assert_eq!(c.get("a").await, None);
    }
}

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
        /// Keys whose deletion failed, deleted again until Redis takes it.
        undeleted: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
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

/// How long one cache operation may take before the cache counts as down for it: the hot
/// path then reads the database instead of waiting for Redis to come back.
const OP_TIMEOUT: Duration = Duration::from_millis(200);

async fn bounded<T>(
    op: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(OP_TIMEOUT, op).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {OP_TIMEOUT:?}")),
    }
}

/// How often failed invalidations are retried.
const RETRY_INTERVAL: Duration = Duration::from_millis(500);

impl Cache {
    pub fn local(max_entries: u64) -> Self {
        Cache::Local(
            moka::future::Cache::builder()
                .max_capacity(max_entries)
                .expire_after(PerEntryTtl)
                .build(),
        )
    }

    /// A Redis-backed cache. Must be created inside a Tokio runtime: a background task
    /// retries invalidations that failed while Redis was unreachable, so an entry made stale
    /// by a change is removed as soon as Redis answers again instead of living out its TTL.
    pub fn redis(conn: redis::aio::ConnectionManager, prefix: &str) -> Self {
        let undeleted: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>> = Arc::default();
        let weak = Arc::downgrade(&undeleted);
        let retry_conn = conn.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RETRY_INTERVAL);
            loop {
                tick.tick().await;
                let Some(undeleted) = weak.upgrade() else {
                    return; // the cache is gone
                };
                let keys: Vec<String> = match undeleted.lock() {
                    Ok(keys) if !keys.is_empty() => keys.iter().cloned().collect(),
                    _ => continue,
                };
                let mut conn = retry_conn.clone();
                if bounded(conn.del::<_, ()>(&keys)).await.is_ok() {
                    tracing::info!(
                        keys = keys.len(),
                        "stale cache entries removed after redis recovered"
                    );
                    if let Ok(mut pending) = undeleted.lock() {
                        for k in &keys {
                            pending.remove(k);
                        }
                    }
                }
            }
        });
        Cache::Redis {
            conn,
            prefix: format!("{prefix}:cache:"),
            undeleted,
        }
    }

    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self {
            Cache::Local(c) => c.get(key).await.map(|e| e.value.to_vec()),
            Cache::Redis { conn, prefix, .. } => {
                let mut conn = conn.clone();
                let get = conn.get::<_, Option<Vec<u8>>>(format!("{prefix}{key}"));
                match bounded(get).await {
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
            Cache::Redis { conn, prefix, .. } => {
                let mut conn = conn.clone();
                let secs = ttl.as_secs().max(1);
                let set = conn.set_ex::<_, _, ()>(format!("{prefix}{key}"), value, secs);
                if let Err(e) = bounded(set).await {
                    tracing::warn!(error = %e, "cache set failed");
                }
            }
        }
    }

    /// Several entries in one round trip, in the order of `keys`; `None` when the cache does
    /// not answer (the caller then reads the database).
    pub async fn get_many(&self, keys: &[String]) -> Option<Vec<Option<Vec<u8>>>> {
        match self {
            Cache::Local(c) => {
                let mut found = Vec::with_capacity(keys.len());
                for k in keys {
                    found.push(c.get(k).await.map(|e| e.value.to_vec()));
                }
                Some(found)
            }
            Cache::Redis { conn, prefix, .. } => {
                let mut conn = conn.clone();
                let full: Vec<String> = keys.iter().map(|k| format!("{prefix}{k}")).collect();
                // MGET of one key answers a bare value, so it is always asked as a list.
                let mut cmd = redis::cmd("MGET");
                cmd.arg(&full);
                let get = cmd.query_async::<Vec<Option<Vec<u8>>>>(&mut conn);
                match bounded(get).await {
                    Ok(v) if v.len() == keys.len() => Some(v),
                    Ok(v) => {
                        tracing::warn!(
                            asked = keys.len(),
                            got = v.len(),
                            "cache mget answered oddly"
                        );
                        None
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cache get failed; falling back");
                        None
                    }
                }
            }
        }
    }

    /// Stores `value` under `key` only if no entry is there; whether it was stored (false
    /// also when the cache does not answer).
    pub async fn add(&self, key: &str, value: &[u8], ttl: Duration) -> bool {
        match self {
            Cache::Local(c) => c
                .entry(key.to_owned())
                .or_insert_with(async {
                    Entry {
                        value: value.into(),
                        ttl,
                    }
                })
                .await
                .is_fresh(),
            Cache::Redis { conn, prefix, .. } => {
                let mut conn = conn.clone();
                let mut cmd = redis::cmd("SET");
                cmd.arg(format!("{prefix}{key}"))
                    .arg(value)
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl.as_secs().max(1));
                let set = cmd.query_async::<Option<String>>(&mut conn);
                match bounded(set).await {
                    Ok(stored) => stored.is_some(),
                    Err(e) => {
                        tracing::warn!(error = %e, "cache add failed");
                        false
                    }
                }
            }
        }
    }

    /// Whether deletions Redis did not take are still waiting to be retried. Until they are
    /// applied, Redis may hold entries they were meant to remove, so a reader that must never
    /// see a stale entry reads the database meanwhile.
    pub fn invalidations_pending(&self) -> bool {
        match self {
            Cache::Local(_) => false,
            Cache::Redis { undeleted, .. } => undeleted.lock().map_or(true, |u| !u.is_empty()),
        }
    }

    pub async fn delete(&self, key: &str) {
        match self {
            Cache::Local(c) => c.invalidate(key).await,
            Cache::Redis {
                conn,
                prefix,
                undeleted,
            } => {
                let mut conn = conn.clone();
                let full = format!("{prefix}{key}");
                if let Err(e) = bounded(conn.del::<_, ()>(&full)).await {
                    tracing::warn!(error = %e, "cache delete failed; retrying until redis answers");
                    if let Ok(mut pending) = undeleted.lock() {
                        pending.insert(full);
                    }
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

    /// A TCP proxy in front of the test Redis that can cut every connection (a partition:
    /// Redis keeps its data, clients cannot reach it) and let them through again.
    struct Partition {
        addr: std::net::SocketAddr,
        open: Arc<std::sync::atomic::AtomicBool>,
        links: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    }

    impl Partition {
        async fn start() -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
            let links: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
            let (o, l) = (open.clone(), links.clone());
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !o.load(std::sync::atomic::Ordering::SeqCst) {
                        continue; // dropped: the connection is refused
                    }
                    let link = tokio::spawn(async move {
                        if let Ok(mut redis) =
                            tokio::net::TcpStream::connect("127.0.0.1:6379").await
                        {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut redis).await;
                        }
                    });
                    l.lock().unwrap().push(link.abort_handle());
                }
            });
            Partition { addr, open, links }
        }

        fn cut(&self) {
            self.open.store(false, std::sync::atomic::Ordering::SeqCst);
            for link in self.links.lock().unwrap().drain(..) {
                link.abort();
            }
        }

        fn heal(&self) {
            self.open.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn an_invalidation_lost_in_a_redis_partition_is_applied_when_redis_answers_again() {
        let proxy = Partition::start().await;
        let prefix = format!("cache-test-{}", uuid::Uuid::now_v7());
        let (_, conn) = connect_redis(&format!("redis://{}", proxy.addr))
            .await
            .unwrap();
        let cache = Cache::redis(conn, &prefix);
        cache.set("card", b"active", Duration::from_secs(300)).await;
        assert_eq!(cache.get("card").await.as_deref(), Some(&b"active"[..]));

        proxy.cut();
        cache.delete("card").await; // the card was blocked meanwhile; Redis cannot hear it
        assert_eq!(
            cache.get("card").await,
            None,
            "unreachable: reads fall back to the database"
        );
        assert!(cache.invalidations_pending());
        let direct = redis::Client::open("redis://127.0.0.1:6379").unwrap();
        let mut direct = direct.get_multiplexed_async_connection().await.unwrap();
        let key = format!("{prefix}:cache:card");
        let stale: Option<Vec<u8>> = direct.get(&key).await.unwrap();
        assert!(stale.is_some(), "Redis still holds the stale entry");

        proxy.heal();
        let mut gone = false;
        for _ in 0..100 {
            tokio::time::sleep(RETRY_INTERVAL).await;
            let v: Option<Vec<u8>> = direct.get(&key).await.unwrap();
            if v.is_none() {
                gone = true;
                break;
            }
        }
        assert!(
            gone,
            "the failed invalidation was retried once Redis answered"
        );
        let mut settled = false;
        for _ in 0..100 {
            if !cache.invalidations_pending() {
                settled = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(settled, "nothing is pending once the retry went through");
        assert_eq!(cache.get("card").await, None);
    }

    async fn get_many_and_add(cache: &Cache) {
        let ttl = Duration::from_secs(60);
        cache.set("a", b"1", ttl).await;
        assert_eq!(
            cache
                .get_many(&["a".to_owned(), "missing".to_owned()])
                .await,
            Some(vec![Some(b"1".to_vec()), None])
        );
        assert!(
            !cache.add("a", b"2", ttl).await,
            "an existing entry is kept"
        );
        assert!(cache.add("b", b"3", ttl).await);
        assert!(!cache.add("b", b"4", ttl).await);
        assert_eq!(cache.get("a").await.as_deref(), Some(&b"1"[..]));
        assert_eq!(cache.get("b").await.as_deref(), Some(&b"3"[..]));
        assert!(!cache.invalidations_pending());
    }

    #[tokio::test]
    async fn get_many_reads_in_order_and_add_never_overwrites_in_redis() {
        let prefix = format!("cache-test-{}", uuid::Uuid::now_v7());
        let (_, conn) = connect_redis("redis://127.0.0.1:6379").await.unwrap();
        get_many_and_add(&Cache::redis(conn, &prefix)).await;
    }

    #[tokio::test]
    async fn get_many_reads_in_order_and_add_never_overwrites_locally() {
        get_many_and_add(&Cache::local(10)).await;
    }

    #[tokio::test]
    async fn local_cache_stores_and_deletes() {
        let c = Cache::local(10);
        c.set("a", b"1", Duration::from_secs(60)).await;
        assert_eq!(c.get("a").await.as_deref(), Some(&b"1"[..]));
        c.delete("a").await;
        assert_eq!(c.get("a").await, None);
    }
}

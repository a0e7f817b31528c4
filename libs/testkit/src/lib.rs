//! Test support for the loyalty platform: a fresh PostgreSQL database per test, a Redis key
//! prefix per test, and the six services started as separate processes on free ports, the way
//! production runs them.
//!
//! Tests run with `cargo test --workspace` or `cargo nextest run --workspace` (`scripts/test`
//! does that after fmt, clippy and buf lint) against PostgreSQL on 127.0.0.1:5432 (user
//! `postgres`, trust auth) and Redis on 127.0.0.1:6379.
//!
//! The service binaries `target/<profile>/loyalty-<service>` are built (once per test process,
//! with `cargo build -p loyalty-<service>…`) before the first suite starts, so a test never runs
//! a stale binary; `scripts/test` builds them up front and sets `LOYALTY_TEST_PREBUILT=1` to skip
//! that step. Each service logs at `warn` (`LOYALTY_TEST_LOG=info` for more) into a file; a suite
//! dropped without a clean [`Suite::stop`] — a failed test — prints the tail of every log.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use loyalty_testkit::{Backend, Suite, authed};
//! let suite = Suite::start(Backend::Postgres).await?;
//! let mut identity = suite.identity().await?;
//! let request = suite.as_admin(loyalty_proto::identity::v1::CreatePartnerRequest::default());
//! let _refused = identity.create_partner(request).await;
//! let _ = authed((), "lk_some_partner_key");
//! suite.stop().await
//! # }
//! ```
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::OnceLock,
    time::Duration,
};

use anyhow::{Context, bail};
use loyalty_proto::{
    campaigns::v1::campaigns_service_client::CampaignsServiceClient,
    checkout::v1::checkout_service_client::CheckoutServiceClient,
    identity::v1::identity_service_client::IdentityServiceClient,
    rewards::v1::rewards_service_client::RewardsServiceClient,
    segmentation::v1::segmentation_service_client::SegmentationServiceClient,
    wallet::v1::wallet_service_client::WalletServiceClient,
};
use sea_orm::{ConnectionTrait, Database};
use tokio::process::{Child, Command};
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use uuid::Uuid;

pub use loyalty_platform::client::with_key as authed;
pub use own::{OwnPostgres, OwnRedis};

mod own;

/// The services, in start order.
pub const SERVICES: [&str; 6] = [
    "identity",
    "wallet",
    "rewards",
    "segmentation",
    "campaigns",
    "checkout",
];

/// PostgreSQL server used by tests.
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432";
/// Redis server used by tests.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// The gRPC service a service binary serves, e.g. `loyalty.identity.v1.IdentityService`.
fn grpc_service_name(service: &str) -> String {
    let mut chars = service.chars();
    let capitalised: String = chars
        .next()
        .map(|c| c.to_ascii_uppercase())
        .into_iter()
        .chain(chars)
        .collect();
    format!("loyalty.{service}.v1.{capitalised}Service")
}

/// A PostgreSQL database created for one test and dropped with it.
pub struct TestDb {
    name: String,
}

impl TestDb {
    pub async fn postgres() -> anyhow::Result<Self> {
        let name = format!("loyalty_test_{}", Uuid::new_v4().simple());
        let admin = Database::connect(format!("{POSTGRES_URL}/postgres"))
            .await
            .context("PostgreSQL must run on 127.0.0.1:5432 (scripts/test starts it)")?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await?;
        admin.close().await?;
        Ok(TestDb { name })
    }

    pub fn url(&self) -> String {
        format!("{POSTGRES_URL}/{}", self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside a runtime; a thread with its own runtime does the async work.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let admin = Database::connect(format!("{POSTGRES_URL}/postgres")).await?;
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await?;
                admin.close().await
            })
            .map_err(anyhow::Error::from)
        })
        .join();
    }
}

/// A Redis key prefix for one test; its keys and streams are deleted with it.
pub struct RedisPrefix(pub String);

impl RedisPrefix {
    pub fn new() -> Self {
        RedisPrefix(format!("test-{}", Uuid::new_v4().simple()))
    }
}

impl Default for RedisPrefix {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(REDIS_URL) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.0))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

/// Where the services keep their data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Production-like: one fresh PostgreSQL database (a schema per service) and Redis.
    Postgres,
    /// Embedded mode: a SQLite file per service, no Redis, events over the gRPC feed.
    Sqlite,
}

static BUILT: OnceLock<Result<(), String>> = OnceLock::new();

/// Builds the six service binaries once per test process, so a test never runs a stale
/// binary. `scripts/test` builds them beforehand and sets `LOYALTY_TEST_PREBUILT=1`.
fn ensure_built(profile_dir: &Path) -> anyhow::Result<()> {
    if std::env::var_os("LOYALTY_TEST_PREBUILT").is_some() {
        return Ok(());
    }
    BUILT
        .get_or_init(|| {
            let mut cmd = std::process::Command::new(
                std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
            );
            cmd.arg("build").arg("--bins");
            if profile_dir.ends_with("release") {
                cmd.arg("--release");
            }
            for s in SERVICES {
                cmd.args(["-p", &format!("loyalty-{s}")]);
            }
            match cmd.status() {
                Ok(s) if s.success() => Ok(()),
                Ok(s) => Err(format!("building the service binaries failed ({s})")),
                Err(e) => Err(format!("running cargo: {e}")),
            }
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The path of a service binary, next to the running test's target directory.
fn binary(service: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // …/target/<profile>/deps/<test> → …/target/<profile>
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .context("cannot locate the target directory")?;
    ensure_built(dir)?;
    let path = dir.join(format!("loyalty-{service}"));
    if !path.exists() {
        bail!(
            "{} is missing: run `cargo build --workspace --bins`",
            path.display()
        );
    }
    Ok(path)
}

struct Running {
    child: Child,
    log: PathBuf,
    /// The whole environment it was started with, to start it again the same way.
    env: Vec<(String, String)>,
}

/// Extra settings of a suite: environment variables for one service (e.g. the campaigns
/// service's delivery adapters), on top of what every service gets.
#[derive(Debug, Clone, Default)]
pub struct SuiteOptions {
    pub env: Vec<(&'static str, String, String)>,
}

impl SuiteOptions {
    /// Sets `key=value` for `service`.
    pub fn env(mut self, service: &'static str, key: &str, value: impl Into<String>) -> Self {
        self.env.push((service, key.to_owned(), value.into()));
        self
    }
}

/// Starts `service` with exactly `env`, its output into `log` (appended).
fn spawn_service(service: &str, env: &[(String, String)], log: &Path) -> anyhow::Result<Child> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut cmd = Command::new(binary(service)?);
    cmd.env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        // Logs go to stdout, panics to stderr: both into the service's log file.
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true);
    cmd.spawn()
        .with_context(|| format!("starting loyalty-{service}"))
}

/// The six services running as processes, each on its own port.
pub struct Suite {
    running: HashMap<&'static str, Running>,
    endpoints: HashMap<&'static str, String>,
    admin_key: String,
    _db: Option<TestDb>,
    _redis: Option<RedisPrefix>,
    dir: tempfile::TempDir,
    /// Set once `stop()` saw every service exit cleanly.
    stopped: bool,
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Suite {
    /// A suite dropped without a clean `stop()` belongs to a failed test (an error, a panic,
    /// a service that died): print what each service logged, so the failure explains itself.
    /// The test harness shows this output only for failing tests.
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        for service in SERVICES {
            let Some(r) = self.running.get_mut(service) else {
                continue;
            };
            let state = match r.child.try_wait() {
                Ok(Some(status)) => format!("exited early with {status}"),
                _ => "still running".to_owned(),
            };
            let log = std::fs::read_to_string(&r.log).unwrap_or_default();
            eprintln!(
                "----- loyalty-{service} ({state}), last lines of its log -----\n{}",
                tail(&log, 200)
            );
        }
    }
}

impl Suite {
    /// Starts all six services and waits until each answers SERVING.
    pub async fn start(backend: Backend) -> anyhow::Result<Suite> {
        Self::start_with_redis(backend, REDIS_URL).await
    }

    /// Like [`Suite::start`], with the PostgreSQL backend's services on the Redis at
    /// `redis_url` (a test's own redis-server, which it may stop without disturbing others).
    pub async fn start_with_redis(backend: Backend, redis_url: &str) -> anyhow::Result<Suite> {
        Self::start_with(backend, redis_url, &SuiteOptions::default()).await
    }

    /// Like [`Suite::start_with_redis`], with `options` (extra environment per service).
    pub async fn start_with(
        backend: Backend,
        redis_url: &str,
        options: &SuiteOptions,
    ) -> anyhow::Result<Suite> {
        // A free port can be taken by a parallel test between choosing it and the service
        // binding it; the service then exits and the suite starts again on new ports.
        let mut attempt = 1;
        loop {
            match Self::start_once(backend, redis_url, options).await {
                Err(e) if attempt < 3 && format!("{e:#}").contains("Address already in use") => {
                    attempt += 1;
                }
                started => return started,
            }
        }
    }

    async fn start_once(
        backend: Backend,
        redis_url: &str,
        options: &SuiteOptions,
    ) -> anyhow::Result<Suite> {
        let dir = tempfile::tempdir()?;
        let (db, redis) = match backend {
            Backend::Postgres => (Some(TestDb::postgres().await?), Some(RedisPrefix::new())),
            Backend::Sqlite => (None, None),
        };
        let admin_key = format!("test-admin-{}", Uuid::new_v4().simple());
        let endpoints: HashMap<&'static str, String> = SERVICES
            .iter()
            .map(|s| (*s, format!("http://127.0.0.1:{}", free_port())))
            .collect();
        let mut running = HashMap::new();
        for service in SERVICES {
            let log = dir.path().join(format!("{service}.log"));
            let listen = endpoints[service].trim_start_matches("http://").to_owned();
            let mut env: Vec<(String, String)> = vec![
                ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
                ("LOYALTY_SERVER__LISTEN_ADDR".into(), listen),
                ("LOYALTY_AUTH__BOOTSTRAP_KEY".into(), admin_key.clone()),
                ("LOYALTY_TELEMETRY__LOG_FORMAT".into(), "pretty".into()),
                ("NO_COLOR".into(), "1".into()),
                (
                    "LOYALTY_TELEMETRY__LOG_FILTER".into(),
                    std::env::var("LOYALTY_TEST_LOG").unwrap_or_else(|_| "warn".into()),
                ),
                ("LOYALTY_EVENTS__POLL_INTERVAL_MS".into(), "50".into()),
                ("LOYALTY_SERVER__SHUTDOWN_GRACE_MS".into(), "2000".into()),
            ];
            for peer in SERVICES {
                env.push((
                    format!("LOYALTY_PEERS__{}_URL", peer.to_uppercase()),
                    endpoints[peer].clone(),
                ));
            }
            match (&db, &redis) {
                (Some(db), Some(redis)) => {
                    env.push(("LOYALTY_DATABASE__URL".into(), db.url()));
                    // Two suites side by side stay within PostgreSQL's default 100
                    // connections.
                    env.push(("LOYALTY_DATABASE__MAX_CONNECTIONS".into(), "6".into()));
                    env.push(("LOYALTY_REDIS__URL".into(), redis_url.to_owned()));
                    env.push(("LOYALTY_REDIS__KEY_PREFIX".into(), redis.0.clone()));
                }
                _ => env.push((
                    "LOYALTY_DATABASE__URL".into(),
                    format!("sqlite://{}/{service}.db?mode=rwc", dir.path().display()),
                )),
            }
            for (s, k, v) in &options.env {
                if *s == service {
                    env.push((k.clone(), v.clone()));
                }
            }
            let child = spawn_service(service, &env, &log)?;
            running.insert(service, Running { child, log, env });
        }
        let mut suite = Suite {
            running,
            endpoints,
            admin_key,
            _db: db,
            _redis: redis,
            dir,
            stopped: false,
        };
        for service in SERVICES {
            suite.wait_serving(service).await?;
        }
        Ok(suite)
    }

    async fn wait_serving(&mut self, service: &'static str) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self
                .running
                .get_mut(service)
                .and_then(|r| r.child.try_wait().ok().flatten())
            {
                bail!(
                    "loyalty-{service} exited with {status}:\n{}",
                    self.log(service)
                );
            }
            if let Ok(channel) =
                tonic::transport::Endpoint::from_shared(self.endpoints[service].clone())?
                    .connect()
                    .await
            {
                // Asked by the service's own name, so that another test's process on a
                // reused port does not pass for this one.
                let answer = HealthClient::new(channel)
                    .check(HealthCheckRequest {
                        service: grpc_service_name(service),
                    })
                    .await;
                if answer.is_ok_and(|r| r.get_ref().status == ServingStatus::Serving as i32) {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "loyalty-{service} did not become SERVING in 60 s:\n{}",
                    self.log(service)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What a service has logged so far.
    pub fn log(&self, service: &str) -> String {
        self.running
            .get(service)
            .and_then(|r| std::fs::read_to_string(&r.log).ok())
            .unwrap_or_default()
    }

    /// Directory of this suite's files (SQLite databases, logs).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn endpoint(&self, service: &str) -> &str {
        &self.endpoints[service]
    }

    /// The platform admin (bootstrap) key.
    pub fn admin_key(&self) -> &str {
        &self.admin_key
    }

    /// `message` as a request of the platform admin.
    pub fn as_admin<T>(&self, message: T) -> tonic::Request<T> {
        authed(message, &self.admin_key)
    }

    pub async fn channel(&self, service: &str) -> anyhow::Result<Channel> {
        Ok(
            tonic::transport::Endpoint::from_shared(self.endpoint(service).to_owned())?
                .connect()
                .await?,
        )
    }

    pub async fn identity(&self) -> anyhow::Result<IdentityServiceClient<Channel>> {
        Ok(IdentityServiceClient::new(self.channel("identity").await?))
    }

    pub async fn wallet(&self) -> anyhow::Result<WalletServiceClient<Channel>> {
        Ok(WalletServiceClient::new(self.channel("wallet").await?))
    }

    pub async fn rewards(&self) -> anyhow::Result<RewardsServiceClient<Channel>> {
        Ok(RewardsServiceClient::new(self.channel("rewards").await?))
    }

    pub async fn segmentation(&self) -> anyhow::Result<SegmentationServiceClient<Channel>> {
        Ok(SegmentationServiceClient::new(
            self.channel("segmentation").await?,
        ))
    }

    pub async fn campaigns(&self) -> anyhow::Result<CampaignsServiceClient<Channel>> {
        Ok(CampaignsServiceClient::new(
            self.channel("campaigns").await?,
        ))
    }

    pub async fn checkout(&self) -> anyhow::Result<CheckoutServiceClient<Channel>> {
        Ok(CheckoutServiceClient::new(self.channel("checkout").await?))
    }

    /// Creates a partner named `name` and an API key of it with `roles`; returns the
    /// partner's id and the key's secret. `name` also serves as the idempotency keys.
    pub async fn partner_with_key(
        &self,
        name: &str,
        roles: &[loyalty_proto::identity::v1::Role],
    ) -> anyhow::Result<(String, String)> {
        use loyalty_proto::identity::v1 as pb;
        let mut identity = self.identity().await?;
        let partner = identity
            .create_partner(self.as_admin(pb::CreatePartnerRequest {
                idempotency_key: format!("partner-{name}"),
                partner: Some(pb::Partner {
                    display_name: name.into(),
                    default_currency_code: "EUR".into(),
                    ..Default::default()
                }),
            }))
            .await?
            .into_inner()
            .partner
            .context("CreatePartner answered without a partner")?;
        let key = identity
            .create_api_key(self.as_admin(pb::CreateApiKeyRequest {
                idempotency_key: format!("key-{name}"),
                partner_id: partner.id.clone(),
                display_name: format!("{name} test key"),
                roles: roles.iter().map(|r| *r as i32).collect(),
            }))
            .await?
            .into_inner()
            .secret;
        Ok((partner.id, key))
    }

    /// Kills a service at once (SIGKILL: no graceful shutdown, as a crash or an OOM kill).
    pub async fn kill(&mut self, service: &'static str) -> anyhow::Result<()> {
        let r = self
            .running
            .get_mut(service)
            .with_context(|| format!("no service {service}"))?;
        r.child.start_kill()?;
        r.child.wait().await?;
        Ok(())
    }

    /// Starts a killed or stopped service again, on the same port with the same settings, and
    /// waits until it is SERVING.
    pub async fn restart(&mut self, service: &'static str) -> anyhow::Result<()> {
        let r = self
            .running
            .get_mut(service)
            .with_context(|| format!("no service {service}"))?;
        r.child = spawn_service(service, &r.env, &r.log)?;
        self.wait_serving(service).await
    }

    /// Sends SIGTERM to every service and waits for them to exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        for r in self.running.values_mut() {
            if let Some(pid) = r.child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
        }
        for (service, r) in self.running.iter_mut() {
            match tokio::time::timeout(Duration::from_secs(10), r.child.wait()).await {
                Ok(Ok(status)) if status.success() => {}
                Ok(Ok(status)) => bail!("loyalty-{service} stopped with {status}"),
                _ => bail!("loyalty-{service} did not stop within 10 s of SIGTERM"),
            }
        }
        self.stopped = true;
        Ok(())
    }
}

/// Polls `check` until it returns `Some`, for at most `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("condition not met within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The fields an INVALID_ARGUMENT's `google.rpc.BadRequest` names.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// The `google.rpc.ErrorInfo` reason of a status (FAILED_PRECONDITION and friends).
pub fn error_reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// A customer named `name` living in `city`, created through identity with `key` (the name is
/// the idempotency key); answers their id.
pub async fn create_customer(
    identity: &mut IdentityServiceClient<Channel>,
    key: &str,
    name: &str,
    city: &str,
) -> anyhow::Result<String> {
    use loyalty_proto::identity::v1 as identity;
    Ok(identity
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: name.into(),
                customer: Some(identity::Customer {
                    first_name: name.into(),
                    city: city.into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            key,
        ))
        .await?
        .into_inner()
        .customer
        .context("CreateCustomer answered no customer")?
        .id)
}

/// The partner's email newsletter: a marketing consent type `newsletter` for email, created
/// through identity with `key`; answers its id.
pub async fn email_newsletter(
    identity: &mut IdentityServiceClient<Channel>,
    key: &str,
) -> anyhow::Result<String> {
    use loyalty_proto::{identity::v1 as identity, types::v1 as types};
    Ok(identity
        .create_consent_type(authed(
            identity::CreateConsentTypeRequest {
                idempotency_key: "newsletter".into(),
                consent_type: Some(identity::ConsentType {
                    code: "newsletter".into(),
                    display_name: "Newsletter".into(),
                    purpose: identity::ConsentPurpose::Marketing as i32,
                    channels: vec![types::CommunicationChannel::Email as i32],
                    text: "News by email.".into(),
                    ..Default::default()
                }),
            },
            key,
        ))
        .await?
        .into_inner()
        .consent_type
        .context("CreateConsentType answered no consent type")?
        .id)
}

/// A consent type of `purpose` (e.g. `gdpr` for data processing, `sms_news` for marketing by
/// SMS) covering `channels` (marketing only), created through identity with `key`; answers its
/// id.
pub async fn consent_type(
    identity: &mut IdentityServiceClient<Channel>,
    key: &str,
    code: &str,
    purpose: loyalty_proto::identity::v1::ConsentPurpose,
    channels: &[loyalty_proto::types::v1::CommunicationChannel],
) -> anyhow::Result<String> {
    use loyalty_proto::identity::v1 as identity;
    Ok(identity
        .create_consent_type(authed(
            identity::CreateConsentTypeRequest {
                idempotency_key: code.into(),
                consent_type: Some(identity::ConsentType {
                    code: code.into(),
                    display_name: code.into(),
                    purpose: purpose as i32,
                    channels: channels.iter().map(|c| *c as i32).collect(),
                    text: format!("{code} consent."),
                    ..Default::default()
                }),
            },
            key,
        ))
        .await?
        .into_inner()
        .consent_type
        .context("CreateConsentType answered no consent type")?
        .id)
}

/// A reward of `kind` (10 % off the cart, vouchers valid 30 days, codes `prefix…`) created
/// through rewards with `key`; answers its id.
pub async fn reward_of(
    rewards: &mut RewardsServiceClient<Channel>,
    key: &str,
    kind: loyalty_proto::rewards::v1::RewardType,
    name: &str,
    prefix: &str,
) -> anyhow::Result<String> {
    use loyalty_proto::rewards::v1 as rewards_pb;
    Ok(rewards
        .create_reward(authed(
            rewards_pb::CreateRewardRequest {
                idempotency_key: format!("reward-{name}"),
                reward: Some(rewards_pb::Reward {
                    display_name: name.into(),
                    r#type: kind as i32,
                    benefit: Some(rewards_pb::reward::Benefit::CartPercentageDiscount(
                        rewards_pb::CartPercentageDiscount { basis_points: 1000 },
                    )),
                    voucher_validity_days: 30,
                    voucher_code_prefix: prefix.into(),
                    ..Default::default()
                }),
            },
            key,
        ))
        .await?
        .into_inner()
        .reward
        .ok_or_else(|| anyhow::anyhow!("no reward in the answer"))?
        .id)
}

/// Grants the customer the consent type `type_id` (source `eshop`) through identity.
pub async fn grant_consent(
    identity: &mut IdentityServiceClient<Channel>,
    key: &str,
    customer_id: &str,
    type_id: &str,
) -> anyhow::Result<()> {
    use loyalty_proto::identity::v1 as identity;
    identity
        .grant_consent(authed(
            identity::GrantConsentRequest {
                idempotency_key: format!("grant-{customer_id}-{type_id}"),
                customer_id: customer_id.into(),
                consent_type_id: type_id.into(),
                source: "eshop".into(),
                ..Default::default()
            },
            key,
        ))
        .await?;
    Ok(())
}

/// A standard segment recalculated online whose members have the string `field` equal to
/// `value` (e.g. `customer.properties.tier` = `gold`), as the end-to-end tests create it.
pub fn segment_where_equals(
    display_name: &str,
    field: &str,
    value: &str,
) -> loyalty_proto::segmentation::v1::Segment {
    use loyalty_proto::segmentation::v1 as segmentation;
    segmentation::Segment {
        display_name: display_name.into(),
        kind: segmentation::SegmentKind::Standard as i32,
        online_recalculation: true,
        criterion: Some(segmentation::Criterion {
            kind: Some(segmentation::criterion::Kind::Condition(
                segmentation::Condition {
                    field: field.into(),
                    operator: segmentation::ComparisonOperator::Equal as i32,
                    values: vec![segmentation::Value {
                        kind: Some(segmentation::value::Kind::StringValue(value.into())),
                    }],
                },
            )),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn free_ports_are_bindable() {
        let port = free_port();
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
    }

    #[tokio::test]
    async fn a_test_database_exists_until_dropped() {
        let db = TestDb::postgres().await.expect("postgres");
        let name = db.url().rsplit('/').next().unwrap().to_owned();
        let conn = Database::connect(db.url()).await.expect("connect");
        conn.close().await.unwrap();
        drop(db);
        let admin = Database::connect(format!("{POSTGRES_URL}/postgres"))
            .await
            .unwrap();
        let rows = admin
            .query_all(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
            ))
            .await
            .unwrap();
        assert!(rows.is_empty(), "database {name} was not dropped");
    }
}

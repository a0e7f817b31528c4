//! Typed settings: defaults in code, then an optional TOML file (`LOYALTY_CONFIG`), then
//! environment variables `LOYALTY_<SECTION>__<KEY>` (e.g. `LOYALTY_DATABASE__URL`).
use std::net::SocketAddr;

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Everything a service reads at start-up.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Settings {
    /// The service's name (`identity`, `wallet`, ...); set by the binary.
    pub service: String,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub auth: AuthSettings,
    pub telemetry: TelemetrySettings,
    pub peers: PeerSettings,
    pub events: EventSettings,
    pub jobs: JobSettings,
    /// How the campaigns service hands messages to providers.
    #[serde(default)]
    pub delivery: DeliverySettings,
    /// How the campaigns service runs marketing-automation workflows.
    #[serde(default)]
    pub automation: AutomationSettings,
    /// Quotes and commit recovery of the checkout service.
    #[serde(default)]
    pub checkout: CheckoutSettings,
}

/// The checkout service (`LOYALTY_CHECKOUT__...`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct CheckoutSettings {
    /// Secret that signs quotes (`LOYALTY_CHECKOUT__QUOTE_SECRET`); every replica needs the
    /// same. Unset = the platform key signs them.
    #[serde(serialize_with = "serialize_opt_secret")]
    pub quote_secret: Option<SecretString>,
    /// How long a quote can be committed, in seconds.
    pub quote_ttl_secs: u64,
    /// How long a commit holds its purchase before a retry or the recovery may take it over,
    /// in seconds. Longer than a commit can take (the request timeout, 5 s by default).
    pub commit_lease_secs: u64,
    /// Seconds between looks for abandoned commits (their saga is undone); 0 = never.
    pub recovery_interval_secs: u64,
    /// A pending commit whose lease lapsed this many seconds ago is abandoned: nobody is
    /// going to retry it, so the recovery undoes it.
    pub abandon_after_secs: u64,
    /// Reservations of vouchers and points made by a commit lapse on their own after this
    /// many seconds, should neither the commit nor the recovery come back to them.
    pub hold_secs: u32,
}

impl Default for CheckoutSettings {
    fn default() -> Self {
        CheckoutSettings {
            quote_secret: None,
            quote_ttl_secs: 900,
            commit_lease_secs: 10,
            recovery_interval_secs: 10,
            abandon_after_secs: 120,
            hold_secs: 900,
        }
    }
}

/// The workflow engine of the campaigns service (`LOYALTY_AUTOMATION__...`). Every replica
/// runs it; replicas share the executions through the database.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct AutomationSettings {
    /// Whether this replica steps executions and scans date triggers (triggers from events
    /// are consumed regardless).
    pub enabled: bool,
    /// Executions a replica steps at once.
    pub workers: u32,
    /// Due executions claimed per look.
    pub batch_size: u32,
    /// How long a claim lasts, in seconds: an execution claimed by a replica that died is
    /// stepped again once it lapses (its actions carry idempotency keys, so nothing happens
    /// twice). Longer than a step can take.
    pub claim_ttl_secs: u64,
    /// Attempts of a node whose peer is unavailable before the execution FAILS.
    pub max_attempts: u32,
    /// First retry delay in milliseconds; each further retry waits twice as long (at most
    /// an hour).
    pub retry_base_ms: u64,
    /// Pause between looks when nothing is due, in milliseconds.
    pub poll_ms: u64,
    /// Seconds between scans of date triggers (birthdays and one-off dates).
    pub date_scan_secs: u64,
}

impl Default for AutomationSettings {
    fn default() -> Self {
        AutomationSettings {
            enabled: true,
            workers: 8,
            batch_size: 50,
            claim_ttl_secs: 120,
            max_attempts: 6,
            retry_base_ms: 10_000,
            poll_ms: 500,
            date_scan_secs: 60,
        }
    }
}

/// The channel adapters of the campaigns service. A channel without an adapter cannot be
/// sent; `file_path` sends every channel to a file instead (`loyalty dev`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DeliverySettings {
    /// Email over SMTP (`LOYALTY_DELIVERY__SMTP__HOST`, ...).
    #[serde(default)]
    pub smtp: Option<SmtpSettings>,
    /// SMS through a provider's HTTP API.
    #[serde(default)]
    pub sms: Option<HttpProviderSettings>,
    /// Push notifications through a provider's HTTP API.
    #[serde(default)]
    pub push: Option<HttpProviderSettings>,
    /// Viber messages through a provider's HTTP API.
    #[serde(default)]
    pub viber: Option<HttpProviderSettings>,
    /// Every message appended as a JSON line to this file, whatever its channel; when set,
    /// the other adapters are not used.
    #[serde(default)]
    pub file_path: Option<String>,
    /// The send queue's workers (`LOYALTY_DELIVERY__QUEUE__...`).
    #[serde(default)]
    pub queue: QueueSettings,
    /// Most messages per second each replica hands to a channel's adapter; 0 = no limit.
    /// Keys are channel names (`LOYALTY_DELIVERY__RATE_PER_SECOND__SMS=50`).
    #[serde(default)]
    pub rate_per_second: std::collections::BTreeMap<String, u32>,
    /// Secret that signs unsubscribe links (`LOYALTY_DELIVERY__LINK_SECRET`); unset = the
    /// platform key signs them.
    #[serde(default, serialize_with = "serialize_opt_secret")]
    pub link_secret: Option<SecretString>,
    /// The partner's unsubscribe page; `{{ unsubscribe_url }}` is this with `?token=<token>`
    /// appended (`LOYALTY_DELIVERY__UNSUBSCRIBE_BASE_URL`).
    #[serde(default = "default_unsubscribe_base_url")]
    pub unsubscribe_base_url: String,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            smtp: None,
            sms: None,
            push: None,
            viber: None,
            file_path: None,
            queue: QueueSettings::default(),
            rate_per_second: Default::default(),
            link_secret: None,
            unsubscribe_base_url: default_unsubscribe_base_url(),
        }
    }
}

/// How the send queue's workers claim and retry messages.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct QueueSettings {
    /// Messages one worker claims at a time; also the recipients in one batch of an
    /// unthrottled campaign (at most 1,000).
    #[serde(default = "default_queue_batch")]
    pub batch_size: u32,
    /// Batches a replica works on at once.
    #[serde(default = "default_queue_workers")]
    pub workers: u32,
    /// How long a claim lasts, in seconds: a message claimed by a replica that died is sent
    /// again (with the same id, its provider idempotency key) once its claim lapses. Longer
    /// than a batch can take.
    #[serde(default = "default_claim_ttl_secs")]
    pub claim_ttl_secs: u64,
    /// Attempts of a message before it is FAILED (temporary errors only).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First retry delay in milliseconds; each further retry waits twice as long (at most an
    /// hour).
    #[serde(default = "default_retry_base_ms")]
    pub retry_base_ms: u64,
    /// Pause between looks at an empty queue, in milliseconds.
    #[serde(default = "default_queue_poll_ms")]
    pub poll_ms: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            batch_size: default_queue_batch(),
            workers: default_queue_workers(),
            claim_ttl_secs: default_claim_ttl_secs(),
            max_attempts: default_max_attempts(),
            retry_base_ms: default_retry_base_ms(),
            poll_ms: default_queue_poll_ms(),
        }
    }
}

fn default_unsubscribe_base_url() -> String {
    "https://example.com/unsubscribe".to_owned()
}
fn default_queue_batch() -> u32 {
    500
}
fn default_queue_workers() -> u32 {
    2
}
fn default_claim_ttl_secs() -> u64 {
    120
}
fn default_max_attempts() -> u32 {
    6
}
fn default_retry_base_ms() -> u64 {
    30_000
}
fn default_queue_poll_ms() -> u64 {
    250
}

/// An SMTP relay.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SmtpSettings {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// `starttls` (default), `tls` (implicit, usually port 465) or `none` (a local relay).
    #[serde(default = "default_smtp_tls")]
    pub tls: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default, serialize_with = "serialize_opt_secret")]
    pub password: Option<SecretString>,
    /// The From address of a template without its own sender address.
    #[serde(default)]
    pub from_address: String,
    /// The From name of a template without its own sender name.
    #[serde(default)]
    pub from_name: String,
    /// Longest wait for the relay, in milliseconds.
    #[serde(default = "default_delivery_timeout_ms")]
    pub timeout_ms: u64,
}

/// A provider's HTTP API: one JSON `POST` per message.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HttpProviderSettings {
    /// The URL messages are posted to.
    pub endpoint: String,
    /// Sent as `authorization: Bearer <token>`.
    #[serde(default, serialize_with = "serialize_opt_secret")]
    pub token: Option<SecretString>,
    /// Longest wait for the provider, in milliseconds.
    #[serde(default = "default_delivery_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_smtp_port() -> u16 {
    587
}

fn default_smtp_tls() -> String {
    "starttls".to_owned()
}

fn default_delivery_timeout_ms() -> u64 {
    10_000
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ServerSettings {
    /// Address the gRPC server listens on.
    pub listen_addr: SocketAddr,
    /// Deadline of one call unless the client's `grpc-timeout` is shorter, in milliseconds.
    pub request_timeout_ms: u64,
    /// Deadline of the calls in `bulk_methods`, in milliseconds: those whose work grows
    /// with the partner's customer base (a segment or audience selected over a million
    /// customers takes seconds). Env `LOYALTY_SERVER__BULK_REQUEST_TIMEOUT_MS`; default
    /// 300000.
    #[serde(default = "default_bulk_request_timeout_ms")]
    pub bulk_request_timeout_ms: u64,
    /// Full gRPC paths (`/package.Service/Method`) timed by `bulk_request_timeout_ms`;
    /// default [`DEFAULT_BULK_METHODS`].
    #[serde(default = "default_bulk_methods")]
    pub bulk_methods: Vec<String>,
    /// Calls served at once; further calls are shed with RESOURCE_EXHAUSTED.
    pub concurrency_limit: usize,
    /// How long in-flight calls may take to drain after SIGTERM, in milliseconds.
    pub shutdown_grace_ms: u64,
}

/// The calls whose work grows with the partner's customer base: segmentation's selections
/// over the whole feature store (creating, recalculating, deleting segments, badges and
/// audiences; counting a criterion's matches).
pub const DEFAULT_BULK_METHODS: &[&str] = &[
    "/loyalty.segmentation.v1.SegmentationService/CreateSegment",
    "/loyalty.segmentation.v1.SegmentationService/UpdateSegment",
    "/loyalty.segmentation.v1.SegmentationService/DeleteSegment",
    "/loyalty.segmentation.v1.SegmentationService/RecalculateSegment",
    "/loyalty.segmentation.v1.SegmentationService/CreateBadge",
    "/loyalty.segmentation.v1.SegmentationService/UpdateBadge",
    "/loyalty.segmentation.v1.SegmentationService/DeleteBadge",
    "/loyalty.segmentation.v1.SegmentationService/CreateAudience",
    "/loyalty.segmentation.v1.SegmentationService/DeleteAudience",
    "/loyalty.segmentation.v1.SegmentationService/DuplicateAudience",
    "/loyalty.segmentation.v1.SegmentationService/ValidateCriterion",
];

fn default_bulk_request_timeout_ms() -> u64 {
    300_000
}

fn default_bulk_methods() -> Vec<String> {
    DEFAULT_BULK_METHODS
        .iter()
        .map(|m| (*m).to_owned())
        .collect()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DatabaseSettings {
    /// `postgres://…` in production, `sqlite://path?mode=rwc` embedded.
    #[serde(serialize_with = "serialize_secret")]
    pub url: SecretString,
    /// PostgreSQL schema of this service; defaults to the service name. Ignored for SQLite.
    pub schema: Option<String>,
    /// Connection pool size.
    pub max_connections: u32,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RedisSettings {
    /// `redis://host:port/db`; unset = in-process cache and no Redis Streams (embedded mode).
    pub url: Option<String>,
    /// Prefix of every key and stream, so several deployments (or tests) share one Redis.
    pub key_prefix: String,
    /// Longest life of a hot-path cache entry (segmentation's memberships and features), in
    /// seconds, even if no change invalidates it; 0 = no such cache (every read goes to the
    /// database). Env `LOYALTY_REDIS__CACHE_TTL_SECS`; default 300.
    #[serde(default = "default_cache_ttl_secs")]
    pub cache_ttl_secs: u64,
}

fn default_cache_ttl_secs() -> u64 {
    300
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AuthSettings {
    /// The platform admin key, able to create partners. Also the credential services use
    /// to read each other's event feeds.
    #[serde(serialize_with = "serialize_opt_secret")]
    pub bootstrap_key: Option<SecretString>,
    /// How long a verified key is remembered before it is checked again, in seconds.
    pub cache_ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TelemetrySettings {
    /// `json` (default, for log shippers) or `pretty`.
    pub log_format: String,
    /// `tracing_subscriber` filter, e.g. `info,loyalty=debug`; `RUST_LOG` wins when set.
    pub log_filter: String,
}

/// Where the other services are. Each service reads only what it calls.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct PeerSettings {
    pub identity_url: Option<String>,
    pub wallet_url: Option<String>,
    pub rewards_url: Option<String>,
    pub segmentation_url: Option<String>,
    pub campaigns_url: Option<String>,
    pub checkout_url: Option<String>,
}

impl PeerSettings {
    /// The URL of a peer by service name.
    pub fn url(&self, service: &str) -> Option<&str> {
        match service {
            "identity" => self.identity_url.as_deref(),
            "wallet" => self.wallet_url.as_deref(),
            "rewards" => self.rewards_url.as_deref(),
            "segmentation" => self.segmentation_url.as_deref(),
            "campaigns" => self.campaigns_url.as_deref(),
            "checkout" => self.checkout_url.as_deref(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EventSettings {
    /// How often the outbox relay and feed consumers poll when idle, in milliseconds.
    pub poll_interval_ms: u64,
    /// Events handled per batch.
    pub batch_size: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct JobSettings {
    /// How often scheduled jobs (the wallet's points expiry, the rewards tier review) run, in
    /// seconds; 0 = never (an operator runs them through their RPC instead).
    pub expiry_interval_secs: u64,
    /// Time of day (UTC, `HH:MM`) at which segmentation recalculates every Flexi segment;
    /// `off` = never (RecalculateSegment still works). Default `02:00`.
    #[serde(default = "default_flexi_recalculation_time")]
    pub flexi_recalculation_time: String,
    /// Into how many slices segmentation splits a selection over a large partner's customers
    /// (creating or recalculating a segment or badge), each run at once on its own pooled
    /// connection; 1 = one statement. Up to the database's spare cores. Default 2.
    #[serde(default = "default_selection_slices")]
    pub selection_slices: usize,
}

fn default_selection_slices() -> usize {
    2
}

fn default_flexi_recalculation_time() -> String {
    "02:00".to_owned()
}

fn serialize_secret<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("[redacted]")
}

fn serialize_opt_secret<S: serde::Serializer>(
    v: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("[redacted]"),
        None => s.serialize_none(),
    }
}

impl Settings {
    /// Defaults for a service: SQLite under `./data`, no Redis, JSON logs.
    pub fn defaults(service: &str, default_port: u16) -> Self {
        Settings {
            service: service.to_owned(),
            server: ServerSettings {
                listen_addr: SocketAddr::from(([127, 0, 0, 1], default_port)),
                request_timeout_ms: 5_000,
                bulk_request_timeout_ms: default_bulk_request_timeout_ms(),
                bulk_methods: default_bulk_methods(),
                concurrency_limit: 1_024,
                shutdown_grace_ms: 10_000,
            },
            database: DatabaseSettings {
                url: SecretString::from(format!("sqlite://data/{service}.db?mode=rwc")),
                schema: None,
                max_connections: 16,
            },
            redis: RedisSettings {
                url: None,
                key_prefix: "loyalty".to_owned(),
                cache_ttl_secs: default_cache_ttl_secs(),
            },
            auth: AuthSettings {
                bootstrap_key: None,
                cache_ttl_secs: 30,
            },
            telemetry: TelemetrySettings {
                log_format: "json".to_owned(),
                log_filter: "info".to_owned(),
            },
            peers: PeerSettings::default(),
            events: EventSettings {
                poll_interval_ms: 200,
                batch_size: 100,
            },
            jobs: JobSettings {
                expiry_interval_secs: 60,
                flexi_recalculation_time: default_flexi_recalculation_time(),
                selection_slices: default_selection_slices(),
            },
            delivery: DeliverySettings::default(),
            automation: AutomationSettings::default(),
            checkout: CheckoutSettings::default(),
        }
    }

    /// Loads the settings of `service`: defaults, `LOYALTY_CONFIG` file, then `LOYALTY_*` env.
    pub fn load(service: &str, default_port: u16) -> anyhow::Result<Self> {
        Self::figment(service, default_port)
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
    }

    fn figment(service: &str, default_port: u16) -> Figment {
        let defaults = Self::defaults(service, default_port);
        // Serializing redacts secrets, so the default database URL is put back explicitly.
        let default_url = defaults.database.url.expose_secret().to_owned();
        let mut figment = Figment::from(Serialized::defaults(defaults))
            .merge(Serialized::default("database.url", default_url));
        if let Ok(path) = std::env::var("LOYALTY_CONFIG") {
            figment = figment.merge(Toml::file(path));
        }
        figment
            .merge(Env::prefixed("LOYALTY_").split("__").ignore(&["config"]))
            .merge(Serialized::default("service", service))
    }

    /// The PostgreSQL schema of this service.
    pub fn schema(&self) -> String {
        self.database
            .schema
            .clone()
            .unwrap_or_else(|| self.service.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn env_overrides_defaults_and_secrets_do_not_print() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("LOYALTY_DATABASE__URL", "postgres://db/x");
            jail.set_env("LOYALTY_SERVER__LISTEN_ADDR", "0.0.0.0:9000");
            jail.set_env("LOYALTY_AUTH__BOOTSTRAP_KEY", "s3cret");
            let s = Settings::load("wallet", 50052).expect("settings");
            assert_eq!(s.database.url.expose_secret(), "postgres://db/x");
            assert_eq!(s.server.listen_addr.port(), 9000);
            assert_eq!(s.schema(), "wallet");
            assert!(!format!("{s:?}").contains("s3cret"));
            Ok(())
        });
    }

    #[test]
    fn without_env_the_default_database_url_is_used_not_its_redacted_form() {
        figment::Jail::expect_with(|_jail| {
            let s = Settings::load("wallet", 50052).expect("settings");
            assert_eq!(
                s.database.url.expose_secret(),
                "sqlite://data/wallet.db?mode=rwc"
            );
            Ok(())
        });
    }

    #[test]
    fn the_flexi_recalculation_time_defaults_to_two_and_env_sets_it_as_text() {
        figment::Jail::expect_with(|jail| {
            let s = Settings::load("segmentation", 50054).expect("settings");
            assert_eq!(s.jobs.flexi_recalculation_time, "02:00");
            jail.set_env("LOYALTY_JOBS__FLEXI_RECALCULATION_TIME", "03:30");
            let s = Settings::load("segmentation", 50054).expect("settings");
            assert_eq!(s.jobs.flexi_recalculation_time, "03:30");
            jail.set_env("LOYALTY_JOBS__FLEXI_RECALCULATION_TIME", "off");
            let s = Settings::load("segmentation", 50054).expect("settings");
            assert_eq!(s.jobs.flexi_recalculation_time, "off");
            Ok(())
        });
    }

    #[test]
    fn selections_run_in_two_slices_unless_env_says_otherwise() {
        figment::Jail::expect_with(|jail| {
            let s = Settings::load("segmentation", 50054).expect("settings");
            assert_eq!(s.jobs.selection_slices, 2);
            jail.set_env("LOYALTY_JOBS__SELECTION_SLICES", "8");
            let s = Settings::load("segmentation", 50054).expect("settings");
            assert_eq!(s.jobs.selection_slices, 8);
            Ok(())
        });
    }

    #[test]
    fn defaults_use_sqlite_under_data() {
        let s = Settings::defaults("identity", 50051);
        assert!(
            s.database
                .url
                .expose_secret()
                .starts_with("sqlite://data/identity.db")
        );
        assert!(s.redis.url.is_none());
    }
}

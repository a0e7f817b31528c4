//! Shared plumbing of every loyalty service: configuration, telemetry, the server bootstrap
//! (health, reflection, tower layers, graceful shutdown), authentication, error mapping,
//! database and Redis connections, the transactional outbox and the event bus.
pub mod app;
pub mod auth;
pub mod cache;
pub mod client;
pub mod config;
pub mod db;
pub mod entities;
pub mod error;
pub mod events;
pub mod idempotency;
pub mod paging;
pub mod server;
pub mod stubs;
pub mod telemetry;
pub mod time;

/// mimalloc for every binary built on the platform: the services allocate and free many
/// short-lived buffers (rows, protobufs, rendered messages), and glibc's malloc took about a
/// sixth of all CPU in the campaign benchmark (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use app::Infra;
pub use auth::{Principal, Role};
pub use config::Settings;
pub use error::{ApiError, FieldViolation, Violations};

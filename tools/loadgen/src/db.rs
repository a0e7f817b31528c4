//! Direct database access for the hand-written SQL baselines.
use std::{str::FromStr, time::Duration};

use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

/// A pool of `size` connections whose search path is the service's schema.
pub async fn pool(url: &str, schema: &str, size: u32) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url)?.options([("search_path", schema)]);
    Ok(PgPoolOptions::new()
        .max_connections(size.max(1))
        .min_connections(size.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?)
}

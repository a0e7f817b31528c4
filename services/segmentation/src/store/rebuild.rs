//! Rebuilding the feature projection from scratch: the operator's `rebuild-features`
//! command empties `customer_features` and makes the service consume its producers' events
//! again from the start (see docs/segmentation.md, "Rebuilding the feature projection").
use loyalty_platform::events;
use sea_orm::{DatabaseConnection, EntityTrait};

use super::entities::customer_features;

/// The producers whose events the feature projection consumes (`crate::run` consumes each).
pub const PRODUCERS: &[&str] = &["identity", "checkout", "wallet", "rewards", "campaigns"];

/// Empties the feature projection and forgets what `consumer` (this service's name)
/// consumed of [`PRODUCERS`], in one transaction; returns how many feature rows were
/// deleted. The segmentation replicas must be stopped meanwhile; with Redis, the consumer
/// groups are rewound first ([`events::rewind_streams`]).
///
/// Kept: the tombstones of merged and erased customers (an erased customer's replayed
/// events stay dropped; a merged account's go to the survivor, which a merge would have
/// folded them into), segments, memberships and their history (the next recalculation
/// reads the rebuilt features).
pub async fn reset_projection(db: &DatabaseConnection, consumer: &str) -> anyhow::Result<u64> {
    let txn = loyalty_platform::db::begin_write(db).await?;
    let deleted = customer_features::Entity::delete_many()
        .exec(&txn)
        .await?
        .rows_affected;
    events::forget_consumed(&txn, consumer, PRODUCERS).await?;
    txn.commit().await?;
    Ok(deleted)
}

//! Reward definitions and purchase bonuses, scoped by partner.
use chrono::{DateTime, Utc};
use loyalty_platform::ApiError;
use sea_orm::{ColumnTrait, Condition, ConnectionTrait};
use uuid::Uuid;

pub mod catalogue;

use crate::domain::PurchaseBonus;

pub mod evaluation_cache;
pub mod resolution;
pub mod rules_cache;
pub mod schemes;
pub mod tiers;
pub mod vouchers;

pub mod rewards;

pub use rewards::{active_rewards, insert_reward};

pub mod campaign_products;
pub mod purchase_bonuses;

#[cfg(test)]
pub(crate) mod test_support;

pub(crate) fn json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::Internal(e.into()))
}

pub async fn insert_purchase_bonus(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    b: &PurchaseBonus,
) -> Result<(), ApiError> {
    purchase_bonuses::insert(conn, partner_id, b).await
}

/// `from <= at < until`, with open ends where unset.
fn active_at<C: ColumnTrait>(from: C, until: C, at: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(Condition::any().add(from.is_null()).add(from.lte(at)))
        .add(Condition::any().add(until.is_null()).add(until.gt(at)))
}

/// A page of the ACTIVE purchase bonuses valid at `at`, by id, after `after`.
pub async fn active_purchase_bonuses(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    at: DateTime<Utc>,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<PurchaseBonus>, ApiError> {
    purchase_bonuses::active(conn, partner_id, at, after, limit).await
}

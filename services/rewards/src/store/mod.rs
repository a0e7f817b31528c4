//! Reward definitions and purchase bonuses, scoped by partner.
use chrono::{DateTime, Utc};
use loyalty_platform::ApiError;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use uuid::Uuid;

pub mod catalogue;

use crate::domain::{PurchaseBonus, Reward, RewardType, Validity};

pub mod resolution;
pub mod rules_cache;
pub mod vouchers;

pub mod rewards {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "rewards")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub display_name: String,
        pub description: String,
        pub reward_type: String,
        pub benefit: Json,
        pub segment_ids: Json,
        pub valid_from: Option<DateTimeUtc>,
        pub valid_until: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod purchase_bonuses {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "purchase_bonuses")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub display_name: String,
        pub points: i64,
        pub spend_amount_minor: i64,
        pub currency_code: String,
        pub multiplier_basis_points: i32,
        pub segment_ids: Json,
        pub valid_from: Option<DateTimeUtc>,
        pub valid_until: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

fn json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::Internal(e.into()))
}

pub async fn insert_reward(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    r: &Reward,
) -> Result<(), ApiError> {
    rewards::Entity::insert(rewards::ActiveModel {
        id: Set(r.id),
        partner_id: Set(partner_id),
        display_name: Set(r.display_name.clone()),
        description: Set(r.description.clone()),
        reward_type: Set(r.reward_type.as_str().to_owned()),
        benefit: Set(json(&r.benefit)?),
        segment_ids: Set(json(&r.segment_ids)?),
        valid_from: Set(r.validity.from),
        valid_until: Set(r.validity.until),
        created_at: Set(r.created_at),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

pub async fn insert_purchase_bonus(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    b: &PurchaseBonus,
) -> Result<(), ApiError> {
    purchase_bonuses::Entity::insert(purchase_bonuses::ActiveModel {
        id: Set(b.id),
        partner_id: Set(partner_id),
        display_name: Set(b.display_name.clone()),
        points: Set(b.points),
        spend_amount_minor: Set(b.spend_amount_minor),
        currency_code: Set(b.currency_code.clone()),
        multiplier_basis_points: Set(b.multiplier_basis_points),
        segment_ids: Set(json(&b.segment_ids)?),
        valid_from: Set(b.validity.from),
        valid_until: Set(b.validity.until),
        created_at: Set(b.created_at),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// `from <= at < until`, with open ends where unset.
fn active_at<C: ColumnTrait>(from: C, until: C, at: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(Condition::any().add(from.is_null()).add(from.lte(at)))
        .add(Condition::any().add(until.is_null()).add(until.gt(at)))
}

/// A page of the rewards active at `at`, by id, after `after`.
pub async fn active_rewards(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    at: DateTime<Utc>,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Reward>, ApiError> {
    let mut q = rewards::Entity::find()
        .filter(rewards::Column::PartnerId.eq(partner_id))
        .filter(active_at(
            rewards::Column::ValidFrom,
            rewards::Column::ValidUntil,
            at,
        ));
    if let Some(after) = after {
        q = q.filter(rewards::Column::Id.gt(after));
    }
    let rows = q
        .order_by_asc(rewards::Column::Id)
        .limit(limit)
        .all(conn)
        .await?;
    rows.into_iter()
        .map(|m| {
            Ok(Reward {
                id: m.id,
                display_name: m.display_name,
                description: m.description,
                reward_type: RewardType::parse_str(&m.reward_type).ok_or_else(|| {
                    ApiError::Internal(anyhow::anyhow!("unknown reward type {}", m.reward_type))
                })?,
                benefit: serde_json::from_value(m.benefit)
                    .map_err(|e| ApiError::Internal(e.into()))?,
                segment_ids: serde_json::from_value(m.segment_ids)
                    .map_err(|e| ApiError::Internal(e.into()))?,
                validity: Validity {
                    from: m.valid_from,
                    until: m.valid_until,
                },
                created_at: m.created_at,
            })
        })
        .collect()
}

/// A page of the purchase bonuses active at `at`, by id, after `after`.
pub async fn active_purchase_bonuses(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    at: DateTime<Utc>,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<PurchaseBonus>, ApiError> {
    let mut q = purchase_bonuses::Entity::find()
        .filter(purchase_bonuses::Column::PartnerId.eq(partner_id))
        .filter(active_at(
            purchase_bonuses::Column::ValidFrom,
            purchase_bonuses::Column::ValidUntil,
            at,
        ));
    if let Some(after) = after {
        q = q.filter(purchase_bonuses::Column::Id.gt(after));
    }
    let rows = q
        .order_by_asc(purchase_bonuses::Column::Id)
        .limit(limit)
        .all(conn)
        .await?;
    rows.into_iter()
        .map(|m| {
            Ok(PurchaseBonus {
                id: m.id,
                display_name: m.display_name,
                points: m.points,
                spend_amount_minor: m.spend_amount_minor,
                currency_code: m.currency_code,
                multiplier_basis_points: m.multiplier_basis_points,
                segment_ids: serde_json::from_value(m.segment_ids)
                    .map_err(|e| ApiError::Internal(e.into()))?,
                validity: Validity {
                    from: m.valid_from,
                    until: m.valid_until,
                },
                created_at: m.created_at,
            })
        })
        .collect()
}

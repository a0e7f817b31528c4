//! Reward definitions, scoped by partner: the `rewards` table (indexed columns for state, type
//! and validity; the settings without their own column in a JSON `definition`), the budget
//! consumed by redemptions, and the voucher stock shown with a reward.
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use loyalty_platform::ApiError;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::Expr, sea_query::OnConflict,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::json;
use super::vouchers::{rules as vrules, voucher_rows};
use crate::domain::{
    RewardType, Validity,
    rewards::{Benefit, Budget, BudgetKind, Caps, CartCondition, Reward, RewardState},
    vouchers::{VoucherRules, VoucherState},
};

pub use entity::*;

mod entity {
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
        pub state: String,
        pub revision: i64,
        pub updated_at: Option<DateTimeUtc>,
        pub archived_at: Option<DateTimeUtc>,
        pub definition: Option<Json>,
        pub budget_kind: Option<String>,
        pub budget_currency: Option<String>,
        pub budget_total: Option<i64>,
        pub budget_remaining: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod budget_uses {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "reward_budget_uses")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub voucher_id: Uuid,
        pub partner_id: Uuid,
        pub reward_id: Uuid,
        pub amount: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("{e}"))
}

fn yes() -> bool {
    true
}

/// The settings stored in the `definition` column. Rows from before it existed read as the
/// defaults, which keep their old behaviour (combinable, priority 0, no caps).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Definition {
    #[serde(default)]
    image_url: String,
    #[serde(default)]
    tier_ids: Vec<Uuid>,
    #[serde(default)]
    priority: i32,
    #[serde(default = "yes")]
    combinable: bool,
    #[serde(default)]
    stacking_group: String,
    #[serde(default)]
    caps: Caps,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cart_condition: Option<CartCondition>,
}

fn to_model(partner_id: Uuid, r: &Reward) -> Result<ActiveModel, ApiError> {
    let definition = Definition {
        image_url: r.image_url.clone(),
        tier_ids: r.tier_ids.clone(),
        priority: r.priority,
        combinable: r.combinable,
        stacking_group: r.stacking_group.clone(),
        caps: r.caps.clone(),
        cart_condition: r.cart_condition.clone(),
    };
    let b = r.budget.as_ref();
    Ok(ActiveModel {
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
        state: Set(r.state.as_str().to_owned()),
        revision: Set(r.revision),
        updated_at: Set(Some(r.updated_at)),
        archived_at: Set(r.archived_at),
        definition: Set(Some(json(&definition)?)),
        budget_kind: Set(b.map(|b| b.kind.as_str().to_owned())),
        budget_currency: Set(b.map(|b| b.currency.clone())),
        budget_total: Set(b.map(|b| b.total)),
        budget_remaining: Set(b.map(|b| b.remaining)),
    })
}

fn from_model(m: Model) -> Result<Reward, ApiError> {
    let d: Definition = match m.definition {
        Some(d) => serde_json::from_value(d).map_err(internal)?,
        None => serde_json::from_value(serde_json::json!({})).map_err(internal)?,
    };
    let budget = match (m.budget_kind.as_deref(), m.budget_total) {
        (Some(kind), Some(total)) => Some(Budget {
            kind: BudgetKind::parse_str(kind)
                .ok_or_else(|| internal(format!("unknown budget kind {kind}")))?,
            total,
            currency: m.budget_currency.unwrap_or_default(),
            remaining: m.budget_remaining.unwrap_or(total),
        }),
        _ => None,
    };
    Ok(Reward {
        id: m.id,
        display_name: m.display_name,
        description: m.description,
        reward_type: RewardType::parse_str(&m.reward_type)
            .ok_or_else(|| internal(format!("unknown reward type {}", m.reward_type)))?,
        benefit: serde_json::from_value::<Benefit>(m.benefit).map_err(internal)?,
        segment_ids: serde_json::from_value(m.segment_ids).map_err(internal)?,
        validity: Validity {
            from: m.valid_from,
            until: m.valid_until,
        },
        created_at: m.created_at,
        state: RewardState::parse_str(&m.state)
            .ok_or_else(|| internal(format!("unknown reward state {}", m.state)))?,
        image_url: d.image_url,
        tier_ids: d.tier_ids,
        priority: d.priority,
        combinable: d.combinable,
        stacking_group: d.stacking_group,
        caps: d.caps,
        budget,
        cart_condition: d.cart_condition,
        revision: m.revision,
        updated_at: m.updated_at.unwrap_or(m.created_at),
        archived_at: m.archived_at,
    })
}

pub async fn insert_reward(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    r: &Reward,
) -> Result<(), ApiError> {
    Entity::insert(to_model(partner_id, r)?)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// One reward of the partner; with `lock`, its row is locked until the transaction ends
/// (updates and redemptions of its budget then wait for each other).
pub async fn find_reward(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
    lock: bool,
) -> Result<Option<Reward>, ApiError> {
    let mut q = Entity::find_by_id(id).filter(Column::PartnerId.eq(partner_id));
    if lock {
        q = q.lock_exclusive();
    }
    q.one(conn).await?.map(from_model).transpose()
}

/// Writes a changed reward (its row must be locked by the caller: the budget's remaining is
/// written as the caller computed it).
pub async fn update_reward(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    r: &Reward,
) -> Result<(), ApiError> {
    Entity::update(to_model(partner_id, r)?)
        .filter(Column::PartnerId.eq(partner_id))
        .exec(conn)
        .await?;
    Ok(())
}

/// What ListRewards filters on.
#[derive(Debug, Clone, Default)]
pub struct RewardFilter {
    pub reward_type: Option<RewardType>,
    /// Empty = every state.
    pub states: Vec<RewardState>,
}

/// A page of rewards, newest first (by id), before `before`.
pub async fn list_rewards(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    filter: &RewardFilter,
    before: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Reward>, ApiError> {
    let mut q = Entity::find().filter(Column::PartnerId.eq(partner_id));
    if let Some(t) = filter.reward_type {
        q = q.filter(Column::RewardType.eq(t.as_str()));
    }
    if !filter.states.is_empty() {
        q = q.filter(Column::State.is_in(filter.states.iter().map(|s| s.as_str())));
    }
    if let Some(b) = before {
        q = q.filter(Column::Id.lt(b));
    }
    q.order_by_desc(Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(from_model)
        .collect()
}

/// `from <= at < until`, with open ends where unset.
fn active_at(at: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(
            Condition::any()
                .add(Column::ValidFrom.is_null())
                .add(Column::ValidFrom.lte(at)),
        )
        .add(
            Condition::any()
                .add(Column::ValidUntil.is_null())
                .add(Column::ValidUntil.gt(at)),
        )
}

/// A page of the ACTIVE rewards valid at `at`, by id, after `after`.
pub async fn active_rewards(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    at: DateTime<Utc>,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Reward>, ApiError> {
    let mut q = Entity::find()
        .filter(Column::PartnerId.eq(partner_id))
        .filter(Column::State.eq(RewardState::Active.as_str()))
        .filter(active_at(at));
    if let Some(after) = after {
        q = q.filter(Column::Id.gt(after));
    }
    q.order_by_asc(Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(from_model)
        .collect()
}

/// A page of the ACTIVE catalogue rewards (coupon, simple, gift) valid at `at`, by priority
/// (higher first) is applied by the caller; here by id after `after`.
pub async fn catalogue_rewards(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    at: DateTime<Utc>,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Reward>, ApiError> {
    let mut q = Entity::find()
        .filter(Column::PartnerId.eq(partner_id))
        .filter(Column::State.eq(RewardState::Active.as_str()))
        .filter(Column::RewardType.is_in([
            RewardType::Coupon.as_str(),
            RewardType::Simple.as_str(),
            RewardType::Gift.as_str(),
        ]))
        .filter(active_at(at));
    if let Some(after) = after {
        q = q.filter(Column::Id.gt(after));
    }
    q.order_by_asc(Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(from_model)
        .collect()
}

/// Voucher stock of rewards: (max_total, issued) by reward id; rewards without voucher
/// settings are missing (unlimited, none issued).
pub async fn voucher_stock(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    reward_ids: &[Uuid],
) -> Result<HashMap<Uuid, (i64, i64)>, ApiError> {
    Ok(vrules::Entity::find()
        .filter(vrules::Column::PartnerId.eq(partner_id))
        .filter(vrules::Column::RewardId.is_in(reward_ids.iter().copied()))
        .all(conn)
        .await?
        .into_iter()
        .map(|m| (m.reward_id, (m.max_total, m.issued_count)))
        .collect())
}

/// Replaces the voucher settings of a reward, keeping its issued count.
pub async fn update_voucher_rules(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    reward_id: Uuid,
    r: &VoucherRules,
) -> Result<(), ApiError> {
    vrules::Entity::insert(vrules::ActiveModel {
        reward_id: Set(reward_id),
        partner_id: Set(partner_id),
        points_price: Set(r.points_price),
        validity_days: Set(r.validity_days),
        max_per_customer: Set(r.max_per_customer),
        max_total: Set(r.max_total),
        code_prefix: Set(r.code_prefix.clone()),
        business_unit_ids: Set(json(&r.business_unit_ids)?),
        channels: Set(json(&r.channels)?),
        issued_count: Set(0),
    })
    .on_conflict(
        OnConflict::column(vrules::Column::RewardId)
            .update_columns([
                vrules::Column::PointsPrice,
                vrules::Column::ValidityDays,
                vrules::Column::MaxPerCustomer,
                vrules::Column::MaxTotal,
                vrules::Column::CodePrefix,
                vrules::Column::BusinessUnitIds,
                vrules::Column::Channels,
            ])
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Cancels the reward's unredeemed (active or reserved) vouchers; returns how many.
pub async fn cancel_unredeemed_vouchers(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    reward_id: Uuid,
    at: DateTime<Utc>,
    reason: &str,
) -> Result<u64, ApiError> {
    use voucher_rows::Column as C;
    let r = voucher_rows::Entity::update_many()
        .col_expr(C::State, Expr::value(VoucherState::Cancelled.as_str()))
        .col_expr(C::CancelledAt, Expr::value(at))
        .col_expr(C::CancelReason, Expr::value(reason))
        .col_expr(C::ReserveTransactionId, Expr::value(Option::<String>::None))
        .col_expr(C::ReserveUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .filter(C::PartnerId.eq(partner_id))
        .filter(C::RewardId.eq(reward_id))
        .filter(C::State.is_in([
            VoucherState::Active.as_str(),
            VoucherState::Reserved.as_str(),
        ]))
        .exec(conn)
        .await?;
    let generated =
        super::vouchers::generated::cancel_generations(conn, partner_id, reward_id, at, reason)
            .await?;
    Ok(r.rows_affected + generated)
}

/// Takes `amount` from the reward's budget for the redemption of `voucher_id`: one
/// conditional UPDATE, so concurrent redemptions queue on the row and each sees the rest the
/// previous one left. `false` when the rest does not cover it.
pub async fn consume_budget(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    reward_id: Uuid,
    voucher_id: Uuid,
    amount: i64,
) -> Result<bool, ApiError> {
    let r = Entity::update_many()
        .col_expr(
            Column::BudgetRemaining,
            Expr::col(Column::BudgetRemaining).sub(amount),
        )
        .filter(Column::Id.eq(reward_id))
        .filter(Column::PartnerId.eq(partner_id))
        .filter(Column::BudgetRemaining.gte(amount))
        .exec(conn)
        .await?;
    if r.rows_affected == 0 {
        return Ok(false);
    }
    budget_uses::Entity::insert(budget_uses::ActiveModel {
        voucher_id: Set(voucher_id),
        partner_id: Set(partner_id),
        reward_id: Set(reward_id),
        amount: Set(amount),
    })
    .on_conflict(
        OnConflict::column(budget_uses::Column::VoucherId)
            .update_column(budget_uses::Column::Amount)
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(true)
}

/// Gives back what the redemption of `voucher_id` took from its reward's budget (a
/// reinstated voucher); nothing when it took nothing. Returns the amount given back.
pub async fn refund_budget(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    voucher_id: Uuid,
) -> Result<i64, ApiError> {
    let Some(used) = budget_uses::Entity::find_by_id(voucher_id)
        .filter(budget_uses::Column::PartnerId.eq(partner_id))
        .one(conn)
        .await?
    else {
        return Ok(0);
    };
    Entity::update_many()
        .col_expr(
            Column::BudgetRemaining,
            Expr::col(Column::BudgetRemaining).add(used.amount),
        )
        .filter(Column::Id.eq(used.reward_id))
        .filter(Column::PartnerId.eq(partner_id))
        .filter(Column::BudgetRemaining.is_not_null())
        .exec(conn)
        .await?;
    budget_uses::Entity::delete_by_id(voucher_id)
        .exec(conn)
        .await?;
    Ok(used.amount)
}

#[cfg(test)]
mod tests;

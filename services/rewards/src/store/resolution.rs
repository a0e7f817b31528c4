//! The partner's resolution settings, and its active rules as the engine sees them.
use chrono::{DateTime, Utc};
use loyalty_platform::ApiError;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
};
use uuid::Uuid;

use crate::domain::{
    engine::{self, RuleSet},
    resolution::{ResolutionMode, ResolutionSettings},
};

pub mod rows {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "reward_resolution_settings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub partner_id: Uuid,
        pub offer_mode: String,
        pub max_awards_per_event: i32,
        pub discount_mode: String,
        pub combine_campaign_products: bool,
        pub max_vouchers_per_purchase: i32,
        pub max_rules_per_purchase: i32,
        pub rule_groups: Json,
        pub revision: i64,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

fn internal(e: impl Into<anyhow::Error>) -> ApiError {
    ApiError::Internal(e.into())
}

fn mode(s: &str) -> Result<ResolutionMode, ApiError> {
    ResolutionMode::parse_str(s).ok_or_else(|| internal(anyhow::anyhow!("unknown mode {s}")))
}

fn from_model(m: rows::Model) -> Result<ResolutionSettings, ApiError> {
    Ok(ResolutionSettings {
        offer_mode: mode(&m.offer_mode)?,
        max_awards_per_event: m.max_awards_per_event.max(0) as u32,
        discount_mode: mode(&m.discount_mode)?,
        combine_campaign_products: m.combine_campaign_products,
        max_vouchers_per_purchase: m.max_vouchers_per_purchase.max(0) as u32,
        max_rules_per_purchase: m.max_rules_per_purchase.max(0) as u32,
        groups: serde_json::from_value(m.rule_groups).map_err(internal)?,
        revision: m.revision,
        updated_at: Some(m.updated_at),
    })
}

/// Serialises changes of one partner's settings (SQLite serialises writes already).
pub async fn lock(conn: &impl ConnectionTrait, partner_id: Uuid) -> Result<(), ApiError> {
    Ok(
        loyalty_platform::db::advisory_xact_lock(conn, &format!("rewards-resolution:{partner_id}"))
            .await?,
    )
}

/// The partner's settings; the defaults (revision 0) when it never set any.
pub async fn settings(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
) -> Result<ResolutionSettings, ApiError> {
    match rows::Entity::find_by_id(partner_id).one(conn).await? {
        Some(m) => from_model(m),
        None => Ok(ResolutionSettings::default()),
    }
}

/// Stores `s` (its `revision` already the new one: 1 inserts the row).
pub async fn save(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    s: &ResolutionSettings,
    at: DateTime<Utc>,
) -> Result<(), ApiError> {
    let model = rows::ActiveModel {
        partner_id: Set(partner_id),
        offer_mode: Set(s.offer_mode.as_str().to_owned()),
        max_awards_per_event: Set(s.max_awards_per_event as i32),
        discount_mode: Set(s.discount_mode.as_str().to_owned()),
        combine_campaign_products: Set(s.combine_campaign_products),
        max_vouchers_per_purchase: Set(s.max_vouchers_per_purchase as i32),
        max_rules_per_purchase: Set(s.max_rules_per_purchase as i32),
        rule_groups: Set(serde_json::to_value(&s.groups).map_err(internal)?),
        revision: Set(s.revision),
        updated_at: Set(at),
    };
    if s.revision <= 1 {
        rows::Entity::insert(model)
            .exec_without_returning(conn)
            .await?;
    } else {
        rows::Entity::update(model).exec(conn).await?;
    }
    Ok(())
}

/// Ids of all the partner's rewards and purchase bonuses (what rule groups may name).
pub async fn rule_ids(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
) -> Result<Vec<Uuid>, ApiError> {
    use super::{purchase_bonuses, rewards};
    let mut ids: Vec<Uuid> = rewards::Entity::find()
        .select_only()
        .column(rewards::Column::Id)
        .filter(rewards::Column::PartnerId.eq(partner_id))
        .into_tuple()
        .all(conn)
        .await?;
    let bonuses: Vec<Uuid> = purchase_bonuses::Entity::find()
        .select_only()
        .column(purchase_bonuses::Column::Id)
        .filter(purchase_bonuses::Column::PartnerId.eq(partner_id))
        .into_tuple()
        .all(conn)
        .await?;
    ids.extend(bonuses);
    Ok(ids)
}

/// Page size of the loads of active rules.
const PAGE: u64 = 1000;

/// The partner's rules active at `at` (rewards, purchase bonuses and campaign products) and
/// the policy of its settings: what one evaluation needs from storage.
pub async fn rule_set(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    at: DateTime<Utc>,
) -> Result<(RuleSet, ResolutionSettings), ApiError> {
    let mut rules = Vec::new();
    let mut after = None;
    loop {
        let page = super::active_rewards(conn, partner_id, at, after, PAGE).await?;
        after = page.last().map(|r| r.id);
        rules.extend(page.iter().map(engine::from_reward));
        if (page.len() as u64) < PAGE {
            break;
        }
    }
    let mut after = None;
    loop {
        let page = super::active_purchase_bonuses(conn, partner_id, at, after, PAGE).await?;
        after = page.last().map(|b| b.id);
        rules.extend(page.iter().map(engine::from_purchase_bonus));
        if (page.len() as u64) < PAGE {
            break;
        }
    }
    // Campaign products: active, valid at `at`; their business units, channels and segments
    // are the rule's, checked by the engine per cart.
    let campaign = super::campaign_products::active(conn, partner_id, at).await?;
    rules.extend(campaign.iter().map(engine::from_campaign_product));
    let settings = settings(conn, partner_id).await?;
    Ok((
        RuleSet {
            rules,
            policy: settings.policy(),
        },
        settings,
    ))
}

#[cfg(test)]
mod tests;

/// EvaluateCart with the engine's mechanics (scopes, cart conditions, per-unit discounts,
/// points payment) defined through the API.
#[cfg(test)]
mod mechanics_tests;

//! Purchase bonuses, scoped by partner. Restrictions are one JSON column (`restrictions`,
//! NULL for bonuses created before they existed = none); state, revision and times are
//! columns. A write checks the revision it read in its WHERE clause, so of two concurrent
//! updates the second answers ETAG_MISMATCH instead of overwriting the first.
use chrono::{DateTime, Utc};
use loyalty_platform::{ApiError, error::check_guarded_write};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{
    PurchaseBonus, Validity,
    purchase_bonuses::{BonusState, Channel, HourRange, ProductScope},
};

mod table {
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
        pub restrictions: Option<Json>,
        pub state: String,
        pub revision: i64,
        pub updated_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use table::{ActiveModel, Column, Entity, Model};

/// The `restrictions` JSON; fields missing in older rows take their defaults.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Restrictions {
    products: ProductScope,
    business_unit_ids: Vec<Uuid>,
    channels: Vec<Channel>,
    days_of_week: Vec<u8>,
    hour_ranges: Vec<HourRange>,
    tier_ids: Vec<Uuid>,
    points_type_id: String,
    max_points_per_purchase: i64,
}

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> ApiError {
    ApiError::Internal(anyhow::Error::new(e))
}

fn from_row(m: Model) -> Result<PurchaseBonus, ApiError> {
    let r: Restrictions = match m.restrictions {
        Some(j) => serde_json::from_value(j).map_err(internal)?,
        None => Restrictions::default(),
    };
    Ok(PurchaseBonus {
        id: m.id,
        display_name: m.display_name,
        points: m.points,
        spend_amount_minor: m.spend_amount_minor,
        currency_code: m.currency_code,
        multiplier_basis_points: m.multiplier_basis_points,
        segment_ids: serde_json::from_value(m.segment_ids).map_err(internal)?,
        validity: Validity {
            from: m.valid_from,
            until: m.valid_until,
        },
        created_at: m.created_at,
        products: r.products,
        business_unit_ids: r.business_unit_ids,
        channels: r.channels,
        days_of_week: r.days_of_week,
        hour_ranges: r.hour_ranges,
        tier_ids: r.tier_ids,
        points_type_id: r.points_type_id,
        max_points_per_purchase: r.max_points_per_purchase,
        state: BonusState::parse_str(&m.state).ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("unknown bonus state {}", m.state))
        })?,
        revision: m.revision,
        updated_at: m.updated_at.unwrap_or(m.created_at),
    })
}

fn row(partner_id: Uuid, b: &PurchaseBonus) -> Result<ActiveModel, ApiError> {
    let restrictions = Restrictions {
        products: b.products.clone(),
        business_unit_ids: b.business_unit_ids.clone(),
        channels: b.channels.clone(),
        days_of_week: b.days_of_week.clone(),
        hour_ranges: b.hour_ranges.clone(),
        tier_ids: b.tier_ids.clone(),
        points_type_id: b.points_type_id.clone(),
        max_points_per_purchase: b.max_points_per_purchase,
    };
    Ok(ActiveModel {
        id: Set(b.id),
        partner_id: Set(partner_id),
        display_name: Set(b.display_name.clone()),
        points: Set(b.points),
        spend_amount_minor: Set(b.spend_amount_minor),
        currency_code: Set(b.currency_code.clone()),
        multiplier_basis_points: Set(b.multiplier_basis_points),
        segment_ids: Set(serde_json::to_value(&b.segment_ids).map_err(internal)?),
        valid_from: Set(b.validity.from),
        valid_until: Set(b.validity.until),
        created_at: Set(b.created_at),
        restrictions: Set(Some(serde_json::to_value(&restrictions).map_err(internal)?)),
        state: Set(b.state.as_str().to_owned()),
        revision: Set(b.revision),
        updated_at: Set(Some(b.updated_at)),
    })
}

pub async fn insert(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    b: &PurchaseBonus,
) -> Result<(), ApiError> {
    Entity::insert(row(partner_id, b)?)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// The partner's bonus; `None` for another partner's id.
pub async fn find(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<Option<PurchaseBonus>, ApiError> {
    Entity::find_by_id(id)
        .filter(Column::PartnerId.eq(partner_id))
        .one(conn)
        .await?
        .map(from_row)
        .transpose()
}

/// Writes `b` over the stored bonus if it is still at `read_revision`; ETAG_MISMATCH when
/// another write came first.
pub async fn update(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    b: &PurchaseBonus,
    read_revision: i64,
) -> Result<(), ApiError> {
    let done = Entity::update_many()
        .set(row(partner_id, b)?)
        .filter(Column::Id.eq(b.id))
        .filter(Column::PartnerId.eq(partner_id))
        .filter(Column::Revision.eq(read_revision))
        .exec(conn)
        .await?;
    check_guarded_write(done.rows_affected, "purchase bonus")
}

/// Deletes the partner's bonus; false when there was none.
pub async fn delete(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<bool, ApiError> {
    let done = Entity::delete_many()
        .filter(Column::Id.eq(id))
        .filter(Column::PartnerId.eq(partner_id))
        .exec(conn)
        .await?;
    Ok(done.rows_affected > 0)
}

/// A page of bonuses newest first (ids are UUIDv7), older than `before`.
pub async fn list(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    state: Option<BonusState>,
    before: Option<Uuid>,
    limit: u64,
) -> Result<Vec<PurchaseBonus>, ApiError> {
    let mut q = Entity::find().filter(Column::PartnerId.eq(partner_id));
    if let Some(state) = state {
        q = q.filter(Column::State.eq(state.as_str()));
    }
    if let Some(before) = before {
        q = q.filter(Column::Id.lt(before));
    }
    q.order_by_desc(Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(from_row)
        .collect()
}

/// A page of the ACTIVE bonuses valid at `at`, by id, after `after`.
pub async fn active(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    at: DateTime<Utc>,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<PurchaseBonus>, ApiError> {
    let mut q = Entity::find()
        .filter(Column::PartnerId.eq(partner_id))
        .filter(Column::State.eq(BonusState::Active.as_str()))
        .filter(super::active_at(Column::ValidFrom, Column::ValidUntil, at));
    if let Some(after) = after {
        q = q.filter(Column::Id.gt(after));
    }
    q.order_by_asc(Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(from_row)
        .collect()
}

//! Business units, scoped by partner; deletion is soft so history keeps its references.
use std::collections::HashMap;

use loyalty_platform::ApiError;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use super::entities::business_units as bu;
use crate::domain::business_unit::{BusinessUnit, UnitState, UnitType};

fn from_model(m: bu::Model) -> Result<BusinessUnit, ApiError> {
    Ok(BusinessUnit {
        id: m.id,
        code: m.code,
        display_name: m.display_name,
        unit_type: UnitType::parse_str(&m.unit_type).ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("unknown unit type {}", m.unit_type))
        })?,
        state: if m.state == "closed" {
            UnitState::Closed
        } else {
            UnitState::Active
        },
        channels: serde_json::from_value(m.channels).unwrap_or_default(),
        parent_id: m.parent_id,
        address: m.address,
        city: m.city,
        country_code: m.country_code,
        time_zone: m.time_zone,
        owner_name: m.owner_name,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn state_str(s: UnitState) -> &'static str {
    match s {
        UnitState::Active => "active",
        UnitState::Closed => "closed",
    }
}

fn taken(e: sea_orm::DbErr, code: &str) -> ApiError {
    loyalty_platform::db::taken(e, || format!("business unit with code {code:?}"))
}

pub async fn insert(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    u: &BusinessUnit,
) -> Result<(), ApiError> {
    bu::Entity::insert(bu::ActiveModel {
        id: Set(u.id),
        partner_id: Set(partner_id),
        code: Set(u.code.clone()),
        display_name: Set(u.display_name.clone()),
        unit_type: Set(u.unit_type.as_str().to_owned()),
        state: Set(state_str(u.state).to_owned()),
        channels: Set(serde_json::to_value(&u.channels).map_err(anyhow::Error::from)?),
        parent_id: Set(u.parent_id),
        address: Set(u.address.clone()),
        city: Set(u.city.clone()),
        country_code: Set(u.country_code.clone()),
        time_zone: Set(u.time_zone.clone()),
        owner_name: Set(u.owner_name.clone()),
        version: Set(u.version),
        created_at: Set(u.created_at),
        updated_at: Set(u.updated_at),
        deleted_at: Set(None),
    })
    .exec_without_returning(conn)
    .await
    .map_err(|e| taken(e, &u.code))?;
    Ok(())
}

/// A live business unit by UUID or code.
pub async fn get(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id_or_code: &str,
) -> Result<Option<BusinessUnit>, ApiError> {
    let mut q = bu::Entity::find()
        .filter(bu::Column::PartnerId.eq(partner_id))
        .filter(bu::Column::DeletedAt.is_null());
    q = match Uuid::try_parse(id_or_code) {
        Ok(id) => q.filter(bu::Column::Id.eq(id)),
        Err(_) => q.filter(bu::Column::Code.eq(id_or_code)),
    };
    q.one(conn).await?.map(from_model).transpose()
}

/// A page of live units ordered by code, after the code `after`.
pub async fn list(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    unit_type: Option<UnitType>,
    state: Option<UnitState>,
    parent: Option<Uuid>,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<BusinessUnit>, ApiError> {
    let mut q = bu::Entity::find()
        .filter(bu::Column::PartnerId.eq(partner_id))
        .filter(bu::Column::DeletedAt.is_null());
    if let Some(t) = unit_type {
        q = q.filter(bu::Column::UnitType.eq(t.as_str()));
    }
    if let Some(s) = state {
        q = q.filter(bu::Column::State.eq(state_str(s)));
    }
    if let Some(p) = parent {
        q = q.filter(bu::Column::ParentId.eq(p));
    }
    if let Some(after) = after {
        q = q.filter(bu::Column::Code.gt(after));
    }
    q.order_by_asc(bu::Column::Code)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(from_model)
        .collect()
}

/// Each live unit's parent, for cycle checks.
pub async fn parents(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
) -> Result<HashMap<Uuid, Uuid>, ApiError> {
    Ok(bu::Entity::find()
        .filter(bu::Column::PartnerId.eq(partner_id))
        .filter(bu::Column::DeletedAt.is_null())
        .all(conn)
        .await?
        .into_iter()
        .filter_map(|m| Some((m.id, m.parent_id?)))
        .collect())
}

/// Writes `u` if its stored version is still `expected_version`; `false` if it moved on.
pub async fn update(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    u: &BusinessUnit,
    expected_version: i64,
) -> Result<bool, ApiError> {
    let res = bu::Entity::update_many()
        .col_expr(bu::Column::Code, Expr::value(u.code.clone()))
        .col_expr(bu::Column::DisplayName, Expr::value(u.display_name.clone()))
        .col_expr(bu::Column::UnitType, Expr::value(u.unit_type.as_str()))
        .col_expr(bu::Column::State, Expr::value(state_str(u.state)))
        .col_expr(
            bu::Column::Channels,
            Expr::value(serde_json::to_value(&u.channels).map_err(anyhow::Error::from)?),
        )
        .col_expr(bu::Column::ParentId, Expr::value(u.parent_id))
        .col_expr(bu::Column::Address, Expr::value(u.address.clone()))
        .col_expr(bu::Column::City, Expr::value(u.city.clone()))
        .col_expr(bu::Column::CountryCode, Expr::value(u.country_code.clone()))
        .col_expr(bu::Column::TimeZone, Expr::value(u.time_zone.clone()))
        .col_expr(bu::Column::OwnerName, Expr::value(u.owner_name.clone()))
        .col_expr(bu::Column::Version, Expr::value(u.version))
        .col_expr(bu::Column::UpdatedAt, Expr::value(u.updated_at))
        .filter(bu::Column::PartnerId.eq(partner_id))
        .filter(bu::Column::Id.eq(u.id))
        .filter(bu::Column::Version.eq(expected_version))
        .filter(bu::Column::DeletedAt.is_null())
        .exec(conn)
        .await
        .map_err(|e| taken(e, &u.code))?;
    Ok(res.rows_affected == 1)
}

pub async fn has_children(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<bool, ApiError> {
    Ok(bu::Entity::find()
        .filter(bu::Column::PartnerId.eq(partner_id))
        .filter(bu::Column::ParentId.eq(id))
        .filter(bu::Column::DeletedAt.is_null())
        .one(conn)
        .await?
        .is_some())
}

pub async fn soft_delete(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), ApiError> {
    bu::Entity::update_many()
        .col_expr(bu::Column::DeletedAt, Expr::value(at))
        .filter(bu::Column::PartnerId.eq(partner_id))
        .filter(bu::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

//! Campaign products, scoped by partner. Lists, places and the discount are JSON; a write
//! checks the revision it read in its WHERE clause (a concurrent change → ETAG_MISMATCH).
use chrono::{DateTime, Utc};
use loyalty_platform::{ApiError, error::check_guarded_write};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use crate::domain::{
    Validity,
    campaign_products::CampaignProduct,
    purchase_bonuses::{Channel, ProductScope},
};

mod table {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "campaign_products")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub display_name: String,
        pub description: String,
        pub products: Json,
        pub discount: Json,
        pub valid_from: DateTimeUtc,
        pub valid_until: Option<DateTimeUtc>,
        pub business_unit_ids: Json,
        pub channels: Json,
        pub segment_ids: Json,
        pub image_url: String,
        pub max_quantity_per_purchase: i64,
        pub active: bool,
        pub revision: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use table::{ActiveModel, Column, Entity, Model};

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> ApiError {
    ApiError::Internal(anyhow::Error::new(e))
}

fn from_row(m: Model) -> Result<CampaignProduct, ApiError> {
    let products: ProductScope = serde_json::from_value(m.products).map_err(internal)?;
    let channels: Vec<Channel> = serde_json::from_value(m.channels).map_err(internal)?;
    Ok(CampaignProduct {
        id: m.id,
        display_name: m.display_name,
        description: m.description,
        products,
        discount: serde_json::from_value(m.discount).map_err(internal)?,
        validity: Validity {
            from: Some(m.valid_from),
            until: m.valid_until,
        },
        business_unit_ids: serde_json::from_value(m.business_unit_ids).map_err(internal)?,
        channels,
        segment_ids: serde_json::from_value(m.segment_ids).map_err(internal)?,
        image_url: m.image_url,
        max_quantity_per_purchase: m.max_quantity_per_purchase,
        active: m.active,
        revision: m.revision,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn row(partner_id: Uuid, c: &CampaignProduct) -> Result<ActiveModel, ApiError> {
    let json = |v: serde_json::Result<serde_json::Value>| v.map_err(internal);
    Ok(ActiveModel {
        id: Set(c.id),
        partner_id: Set(partner_id),
        display_name: Set(c.display_name.clone()),
        description: Set(c.description.clone()),
        products: Set(json(serde_json::to_value(&c.products))?),
        discount: Set(json(serde_json::to_value(&c.discount))?),
        // Validation requires a start; the epoch stands in for "always" if one ever lacks it.
        valid_from: Set(c.validity.from.unwrap_or_default()),
        valid_until: Set(c.validity.until),
        business_unit_ids: Set(json(serde_json::to_value(&c.business_unit_ids))?),
        channels: Set(json(serde_json::to_value(&c.channels))?),
        segment_ids: Set(json(serde_json::to_value(&c.segment_ids))?),
        image_url: Set(c.image_url.clone()),
        max_quantity_per_purchase: Set(c.max_quantity_per_purchase),
        active: Set(c.active),
        revision: Set(c.revision),
        created_at: Set(c.created_at),
        updated_at: Set(c.updated_at),
    })
}

pub async fn insert(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    c: &CampaignProduct,
) -> Result<(), ApiError> {
    Entity::insert(row(partner_id, c)?)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// The partner's entry; `None` for another partner's id.
pub async fn find(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<Option<CampaignProduct>, ApiError> {
    Entity::find_by_id(id)
        .filter(Column::PartnerId.eq(partner_id))
        .one(conn)
        .await?
        .map(from_row)
        .transpose()
}

/// Writes `c` over the stored entry if it is still at `read_revision`.
pub async fn update(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    c: &CampaignProduct,
    read_revision: i64,
) -> Result<(), ApiError> {
    let done = Entity::update_many()
        .set(row(partner_id, c)?)
        .filter(Column::Id.eq(c.id))
        .filter(Column::PartnerId.eq(partner_id))
        .filter(Column::Revision.eq(read_revision))
        .exec(conn)
        .await?;
    check_guarded_write(done.rows_affected, "campaign product")
}

/// Deletes the entry if it is still at `read_revision` (ETAG_MISMATCH otherwise).
pub async fn delete(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
    read_revision: i64,
) -> Result<(), ApiError> {
    let done = Entity::delete_many()
        .filter(Column::Id.eq(id))
        .filter(Column::PartnerId.eq(partner_id))
        .filter(Column::Revision.eq(read_revision))
        .exec(conn)
        .await?;
    check_guarded_write(done.rows_affected, "campaign product")
}

/// Rows read per round while filtering a page in memory.
const BATCH: u64 = 500;

/// A page of entries by id after `after` that `keep` accepts. Filters on JSON lists run
/// here rather than in SQL, the same on PostgreSQL and SQLite; rows are read in batches
/// until the page is full.
pub async fn list(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    after: Option<Uuid>,
    limit: u64,
    keep: impl Fn(&CampaignProduct) -> bool,
) -> Result<Vec<CampaignProduct>, ApiError> {
    let mut out = Vec::new();
    let mut cursor = after;
    loop {
        let mut q = Entity::find().filter(Column::PartnerId.eq(partner_id));
        if let Some(c) = cursor {
            q = q.filter(Column::Id.gt(c));
        }
        let rows = q.order_by_asc(Column::Id).limit(BATCH).all(conn).await?;
        let done = (rows.len() as u64) < BATCH;
        for m in rows {
            cursor = Some(m.id);
            let c = from_row(m)?;
            if keep(&c) {
                out.push(c);
                if out.len() as u64 >= limit {
                    return Ok(out);
                }
            }
        }
        if done {
            return Ok(out);
        }
    }
}

/// Every entry active and valid at `at` (what the evaluation's rule set needs).
pub async fn active(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    at: DateTime<Utc>,
) -> Result<Vec<CampaignProduct>, ApiError> {
    list(conn, partner_id, None, u64::MAX, |c| c.active_at(at)).await
}

#[cfg(test)]
mod tests;

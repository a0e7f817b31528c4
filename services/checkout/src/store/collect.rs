//! Click & collect orders: the domain order as JSON, with the columns lists filter on.
use chrono::{DateTime, Utc};
use loyalty_platform::{ApiError, db::is_unique_violation, paging::older_than};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use crate::domain::collect::{CollectOrder, CollectState};

pub mod collect_orders {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "collect_orders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub order_number: String,
        pub customer_id: Uuid,
        pub business_unit_id: String,
        pub state: String,
        pub request_hash: String,
        pub body: Json,
        pub version: i64,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A stored order and the fingerprint of the request that created it.
pub struct StoredOrder {
    pub order: CollectOrder,
    pub request_hash: String,
}

fn decode(m: collect_orders::Model) -> Result<StoredOrder, ApiError> {
    Ok(StoredOrder {
        order: serde_json::from_value(m.body)
            .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("stored order")))?,
        request_hash: m.request_hash,
    })
}

fn body(o: &CollectOrder) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(o).map_err(|e| ApiError::Internal(e.into()))
}

/// Filters of a page of orders.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub customer_id: Option<Uuid>,
    pub business_unit_id: Option<String>,
    pub state: Option<CollectState>,
}

/// Records a new order; `Ok(false)` if its number is taken.
pub async fn insert(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    request_hash: &str,
    o: &CollectOrder,
) -> Result<bool, ApiError> {
    let res = collect_orders::Entity::insert(collect_orders::ActiveModel {
        id: Set(o.id),
        partner_id: Set(partner_id),
        order_number: Set(o.order_number.clone()),
        customer_id: Set(o.customer_id),
        business_unit_id: Set(o.business_unit_id.clone()),
        state: Set(o.state.as_str().to_owned()),
        request_hash: Set(request_hash.to_owned()),
        body: Set(body(o)?),
        version: Set(o.version),
        created_at: Set(o.created_at),
    })
    .exec_without_returning(conn)
    .await;
    match res {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

pub async fn find_by_id(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<Option<StoredOrder>, ApiError> {
    collect_orders::Entity::find_by_id(id)
        .filter(collect_orders::Column::PartnerId.eq(partner_id))
        .one(conn)
        .await?
        .map(decode)
        .transpose()
}

pub async fn find_by_number(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    order_number: &str,
) -> Result<Option<StoredOrder>, ApiError> {
    collect_orders::Entity::find()
        .filter(collect_orders::Column::PartnerId.eq(partner_id))
        .filter(collect_orders::Column::OrderNumber.eq(order_number))
        .one(conn)
        .await?
        .map(decode)
        .transpose()
}

/// Saves a changed order if it is still at `expected_version`; `false` if it changed since.
pub async fn update(
    conn: &impl ConnectionTrait,
    o: &CollectOrder,
    expected_version: i64,
) -> Result<bool, ApiError> {
    let res = collect_orders::Entity::update_many()
        .col_expr(collect_orders::Column::State, Expr::value(o.state.as_str()))
        .col_expr(collect_orders::Column::Body, Expr::value(body(o)?))
        .col_expr(collect_orders::Column::Version, Expr::value(o.version))
        .filter(collect_orders::Column::Id.eq(o.id))
        .filter(collect_orders::Column::Version.eq(expected_version))
        .exec(conn)
        .await?;
    Ok(res.rows_affected == 1)
}

/// A page of orders, newest first.
pub async fn list(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    filter: &OrderFilter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: u64,
) -> Result<Vec<CollectOrder>, ApiError> {
    let mut q =
        collect_orders::Entity::find().filter(collect_orders::Column::PartnerId.eq(partner_id));
    if let Some(c) = filter.customer_id {
        q = q.filter(collect_orders::Column::CustomerId.eq(c));
    }
    if let Some(bu) = &filter.business_unit_id {
        q = q.filter(collect_orders::Column::BusinessUnitId.eq(bu.as_str()));
    }
    if let Some(s) = filter.state {
        q = q.filter(collect_orders::Column::State.eq(s.as_str()));
    }
    if let Some(after) = after {
        q = q.filter(older_than(
            collect_orders::Column::CreatedAt,
            collect_orders::Column::Id,
            after,
        ));
    }
    q.order_by_desc(collect_orders::Column::CreatedAt)
        .order_by_desc(collect_orders::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(|m| decode(m).map(|s| s.order))
        .collect()
}

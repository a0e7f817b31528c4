//! The purchases of each customer (`customer_purchases`, migration `m0007`), projected from
//! checkout's events; what `purchases.<window>.<measure>` fields are computed from, by the
//! compiled statement ([`super::features::members_query`]) and in memory ([`facts_for`]).
use chrono::{DateTime, TimeDelta, Utc};
use loyalty_criteria::purchases::Purchase;
use loyalty_criteria::{Criterion, Fact};
use loyalty_platform::ApiError;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, sea_query::Expr, sea_query::OnConflict,
};
use uuid::Uuid;

use super::entities::customer_purchases;
use crate::domain::{purchase_facts, purchase_window};

/// The table criteria compile purchase fields against.
pub(crate) const TABLE: &str = "customer_purchases";

fn ids_json(ids: &[String]) -> serde_json::Value {
    serde_json::Value::from(ids.to_vec())
}

fn ids_from(v: &serde_json::Value) -> Vec<String> {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

fn purchase_from(m: &customer_purchases::Model) -> Purchase {
    Purchase {
        purchased_at: m.purchased_at,
        net_amount_minor: m.net_amount_minor,
        returned_amount_minor: m.returned_amount_minor,
        product_ids: ids_from(&m.product_ids),
        product_group_ids: ids_from(&m.product_group_ids),
        brand_ids: ids_from(&m.brand_ids),
        business_unit_id: m.business_unit_id.clone(),
    }
}

/// Records a purchase of `customer_id` (ids stored lower-cased, see
/// [`Purchase::normalized`]); false when that purchase was already recorded (a repeated
/// delivery), which changes nothing.
pub(crate) async fn record(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    customer_id: Uuid,
    purchase_id: Uuid,
    purchase: Purchase,
) -> anyhow::Result<bool> {
    let p = purchase.normalized();
    let inserted = customer_purchases::Entity::insert(customer_purchases::ActiveModel {
        partner_id: Set(partner_id),
        purchase_id: Set(purchase_id),
        customer_id: Set(customer_id),
        purchased_at: Set(p.purchased_at),
        net_amount_minor: Set(p.net_amount_minor),
        returned_amount_minor: Set(p.returned_amount_minor),
        business_unit_id: Set(p.business_unit_id),
        product_ids: Set(ids_json(&p.product_ids)),
        product_group_ids: Set(ids_json(&p.product_group_ids)),
        brand_ids: Set(ids_json(&p.brand_ids)),
        return_ids: Set(serde_json::json!([])),
    })
    .on_conflict(
        OnConflict::columns([
            customer_purchases::Column::PartnerId,
            customer_purchases::Column::PurchaseId,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(inserted > 0)
}

/// What a return did to the stored purchases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReturnApplied {
    /// The refund was added to the purchase's returned amount.
    Applied,
    /// This return was applied before (a repeated delivery): nothing changed.
    Repeated,
    /// No such purchase is stored (bought before purchases were kept): nothing changed.
    UnknownPurchase,
}

/// Adds a return's refund to its purchase's `returned_amount_minor`, once per `return_id`
/// (an empty one cannot be recognised again and always applies).
pub(crate) async fn record_return(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    purchase_id: Uuid,
    return_id: &str,
    refund_minor: i64,
) -> anyhow::Result<ReturnApplied> {
    let Some(row) = customer_purchases::Entity::find_by_id((partner_id, purchase_id))
        .one(txn)
        .await?
    else {
        return Ok(ReturnApplied::UnknownPurchase);
    };
    let mut return_ids = ids_from(&row.return_ids);
    if !return_id.is_empty() {
        if return_ids.iter().any(|r| r == return_id) {
            return Ok(ReturnApplied::Repeated);
        }
        return_ids.push(return_id.to_owned());
    }
    customer_purchases::Entity::update_many()
        .col_expr(
            customer_purchases::Column::ReturnedAmountMinor,
            Expr::value(row.returned_amount_minor.saturating_add(refund_minor)),
        )
        .col_expr(
            customer_purchases::Column::ReturnIds,
            Expr::value(ids_json(&return_ids)),
        )
        .filter(customer_purchases::Column::PartnerId.eq(partner_id))
        .filter(customer_purchases::Column::PurchaseId.eq(purchase_id))
        .exec(txn)
        .await?;
    Ok(ReturnApplied::Applied)
}

/// Moves every purchase of `merged` to `survivor` (a merge: the history is the survivor's).
pub(crate) async fn move_to_survivor(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    merged: Uuid,
    survivor: Uuid,
) -> anyhow::Result<()> {
    customer_purchases::Entity::update_many()
        .col_expr(
            customer_purchases::Column::CustomerId,
            Expr::value(survivor),
        )
        .filter(customer_purchases::Column::PartnerId.eq(partner_id))
        .filter(customer_purchases::Column::CustomerId.eq(merged))
        .exec(txn)
        .await?;
    Ok(())
}

/// Deletes every purchase of an erased customer.
pub(crate) async fn erase(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    customer_id: Uuid,
) -> anyhow::Result<()> {
    customer_purchases::Entity::delete_many()
        .filter(customer_purchases::Column::PartnerId.eq(partner_id))
        .filter(customer_purchases::Column::CustomerId.eq(customer_id))
        .exec(txn)
        .await?;
    Ok(())
}

/// The purchases of a customer made after `since` (all with `None`).
pub(crate) async fn bought(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<Purchase>, ApiError> {
    let mut q = customer_purchases::Entity::find()
        .filter(customer_purchases::Column::PartnerId.eq(partner_id))
        .filter(customer_purchases::Column::CustomerId.eq(customer_id));
    if let Some(since) = since {
        q = q.filter(customer_purchases::Column::PurchasedAt.gt(since));
    }
    Ok(q.all(conn).await?.iter().map(purchase_from).collect())
}

/// When the customer's first purchase in the projection happened; `None` = never.
pub async fn first_purchase_at(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    Ok(customer_purchases::Entity::find()
        .filter(customer_purchases::Column::PartnerId.eq(partner_id))
        .filter(customer_purchases::Column::CustomerId.eq(customer_id))
        .order_by_asc(customer_purchases::Column::PurchasedAt)
        .one(conn)
        .await?
        .map(|p| p.purchased_at))
}

/// The purchase-window facts `criteria` read for one customer at `now`, from one query
/// bounded by their longest window; no query when none reads purchases.
pub async fn facts_for<'c>(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    criteria: impl IntoIterator<Item = &'c Criterion> + Clone,
    now: DateTime<Utc>,
) -> Result<Vec<(String, Fact)>, ApiError> {
    let Some(since) = reach(criteria.clone(), now) else {
        return Ok(Vec::new());
    };
    let purchases = bought(conn, partner_id, customer_id, since).await?;
    Ok(purchase_facts(&purchases, criteria, now))
}

/// How far back the purchases `criteria` read reach at `now`: `None` when none reads
/// purchases, `Some(None)` for every purchase, else the purchases after the time (a day
/// early: the windows are applied exactly in memory, whatever precision the database rounds
/// the bound to).
pub(crate) fn reach<'c>(
    criteria: impl IntoIterator<Item = &'c Criterion>,
    now: DateTime<Utc>,
) -> Option<Option<DateTime<Utc>>> {
    let window = purchase_window(criteria)?;
    Some(
        window
            .start(now)
            .and_then(|s| s.checked_sub_signed(TimeDelta::days(1))),
    )
}

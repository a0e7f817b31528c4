//! Purchase transactions and their returns.
//!
//! A purchase is `pending` from the moment its pricing is fixed until the commit saga is done,
//! then `committed` with its receipt (or `voided` later). A pending purchase carries the
//! saga's progress and a lease: the attempt holding the lease drives the saga, and every
//! write of it is guarded by its attempt number, so a retry or the recovery that took over an
//! abandoned commit never races the attempt it replaced.
use chrono::{DateTime, Utc};
use loyalty_platform::{ApiError, db::is_unique_violation, paging::older_than};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use crate::domain::{Receipt, SalesChannel, saga::Saga};

pub mod collect;

pub mod purchases {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "purchases")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub transaction_id: String,
        pub request_hash: String,
        pub customer_id: Uuid,
        pub status: String,
        pub receipt: Json,
        pub created_at: DateTimeUtc,
        pub committed_at: Option<DateTimeUtc>,
        pub saga: Option<Json>,
        pub attempt: i64,
        pub lease_until: Option<DateTimeUtc>,
        pub purchase_time: Option<DateTimeUtc>,
        pub business_unit_id: String,
        pub channel: String,
        pub voided_at: Option<DateTimeUtc>,
        pub void_reason: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod purchase_returns {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "purchase_returns")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub purchase_id: Uuid,
        pub return_id: String,
        pub request_hash: String,
        pub status: String,
        pub receipt: Json,
        pub created_at: DateTimeUtc,
        pub completed_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

const PENDING: &str = "pending";
const COMMITTED: &str = "committed";
const VOIDED: &str = "voided";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurchaseStatus {
    Pending,
    Committed,
    Voided,
}

/// A stored purchase: its request fingerprint, status, (draft or final) receipt and saga.
#[derive(Debug, Clone)]
pub struct StoredPurchase {
    pub request_hash: String,
    pub status: PurchaseStatus,
    pub receipt: Receipt,
    pub saga: Saga,
    pub attempt: i64,
    pub lease_until: Option<DateTime<Utc>>,
    pub partner_id: Uuid,
    pub voided_at: Option<DateTime<Utc>>,
    pub void_reason: String,
}

/// A stored return: the receipt as JSON (the API's shape), pending until the wallet and the
/// vouchers have done their part.
#[derive(Debug, Clone)]
pub struct StoredReturn {
    pub id: Uuid,
    pub return_id: String,
    pub request_hash: String,
    pub completed: bool,
    pub receipt: serde_json::Value,
}

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
}

fn internal(what: &'static str) -> impl Fn(serde_json::Error) -> ApiError {
    move |e| ApiError::Internal(anyhow::Error::new(e).context(what))
}

fn json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(v).map_err(internal("encoding"))
}

fn decode(m: purchases::Model) -> Result<StoredPurchase, ApiError> {
    Ok(StoredPurchase {
        request_hash: m.request_hash,
        status: match m.status.as_str() {
            COMMITTED => PurchaseStatus::Committed,
            VOIDED => PurchaseStatus::Voided,
            _ => PurchaseStatus::Pending,
        },
        receipt: serde_json::from_value(m.receipt).map_err(internal("stored receipt"))?,
        saga: match m.saga {
            Some(s) => serde_json::from_value(s).map_err(internal("stored saga"))?,
            None => Saga::default(),
        },
        attempt: m.attempt,
        lease_until: m.lease_until,
        partner_id: m.partner_id,
        voided_at: m.voided_at,
        void_reason: m.void_reason,
    })
}

fn decode_return(m: purchase_returns::Model) -> StoredReturn {
    StoredReturn {
        id: m.id,
        return_id: m.return_id,
        request_hash: m.request_hash,
        completed: m.status == COMMITTED,
        receipt: m.receipt,
    }
}

/// Filters of a purchase history page.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub business_unit_id: Option<String>,
    pub channel: Option<SalesChannel>,
}

impl Store {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub async fn find(
        &self,
        partner_id: Uuid,
        transaction_id: &str,
    ) -> Result<Option<StoredPurchase>, ApiError> {
        purchases::Entity::find()
            .filter(purchases::Column::PartnerId.eq(partner_id))
            .filter(purchases::Column::TransactionId.eq(transaction_id))
            .one(&self.db)
            .await?
            .map(decode)
            .transpose()
    }

    pub async fn find_by_id(
        &self,
        partner_id: Uuid,
        purchase_id: Uuid,
    ) -> Result<Option<StoredPurchase>, ApiError> {
        purchases::Entity::find_by_id(purchase_id)
            .filter(purchases::Column::PartnerId.eq(partner_id))
            .one(&self.db)
            .await?
            .map(decode)
            .transpose()
    }

    /// Records a pending purchase whose first attempt holds the lease until `lease_until`;
    /// `Ok(false)` if the transaction id is already taken.
    pub async fn insert_pending(
        &self,
        partner_id: Uuid,
        request_hash: &str,
        draft: &Receipt,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, ApiError> {
        let res = purchases::Entity::insert(purchases::ActiveModel {
            id: Set(draft.purchase_id),
            partner_id: Set(partner_id),
            transaction_id: Set(draft.transaction_id.clone()),
            request_hash: Set(request_hash.to_owned()),
            customer_id: Set(draft.customer_id),
            status: Set(PENDING.to_owned()),
            receipt: Set(json(draft)?),
            created_at: Set(Utc::now()),
            committed_at: Set(None),
            saga: Set(Some(json(&Saga::default())?)),
            attempt: Set(1),
            lease_until: Set(Some(lease_until)),
            purchase_time: Set(Some(draft.purchase_time)),
            business_unit_id: Set(draft.business_unit_id.clone()),
            channel: Set(draft.channel.as_str().to_owned()),
            voided_at: Set(None),
            void_reason: Set(String::new()),
        })
        .exec_without_returning(&self.db)
        .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Takes over a pending purchase whose lease has lapsed: the next attempt number, or
    /// `None` when it is not pending or another attempt still holds it.
    pub async fn take_over(
        &self,
        purchase_id: Uuid,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<i64>, ApiError> {
        let now = Utc::now();
        let res = purchases::Entity::update_many()
            .col_expr(
                purchases::Column::Attempt,
                Expr::col(purchases::Column::Attempt).add(1),
            )
            .col_expr(purchases::Column::LeaseUntil, Expr::value(lease_until))
            .filter(purchases::Column::Id.eq(purchase_id))
            .filter(purchases::Column::Status.eq(PENDING))
            .filter(
                Condition::any()
                    .add(purchases::Column::LeaseUntil.is_null())
                    .add(purchases::Column::LeaseUntil.lt(now)),
            )
            .exec(&self.db)
            .await?;
        if res.rows_affected == 0 {
            return Ok(None);
        }
        let row = purchases::Entity::find_by_id(purchase_id)
            .one(&self.db)
            .await?;
        Ok(row.map(|r| r.attempt))
    }

    /// Saves the saga's progress; `false` when the attempt lost the purchase to another.
    pub async fn save_saga(
        &self,
        purchase_id: Uuid,
        attempt: i64,
        saga: &Saga,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, ApiError> {
        let res = purchases::Entity::update_many()
            .col_expr(purchases::Column::Saga, Expr::value(json(saga)?))
            .col_expr(purchases::Column::LeaseUntil, Expr::value(lease_until))
            .filter(purchases::Column::Id.eq(purchase_id))
            .filter(purchases::Column::Status.eq(PENDING))
            .filter(purchases::Column::Attempt.eq(attempt))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Marks a pending purchase committed with its final receipt and saga; `false` if the
    /// attempt lost it.
    pub async fn mark_committed(
        &self,
        conn: &impl ConnectionTrait,
        attempt: i64,
        receipt: &Receipt,
        saga: &Saga,
    ) -> Result<bool, ApiError> {
        let res = purchases::Entity::update_many()
            .col_expr(purchases::Column::Status, Expr::value(COMMITTED))
            .col_expr(purchases::Column::Receipt, Expr::value(json(receipt)?))
            .col_expr(purchases::Column::Saga, Expr::value(json(saga)?))
            .col_expr(
                purchases::Column::CommittedAt,
                Expr::value(receipt.committed_at),
            )
            .col_expr(
                purchases::Column::LeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(purchases::Column::Id.eq(receipt.purchase_id))
            .filter(purchases::Column::Status.eq(PENDING))
            .filter(purchases::Column::Attempt.eq(attempt))
            .exec(conn)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Gives up an attempt's lease at once, so that a retry takes the purchase over without
    /// waiting for it to lapse.
    pub async fn release_lease(&self, purchase_id: Uuid, attempt: i64) -> Result<(), ApiError> {
        purchases::Entity::update_many()
            .col_expr(purchases::Column::LeaseUntil, Expr::value(Utc::now()))
            .filter(purchases::Column::Id.eq(purchase_id))
            .filter(purchases::Column::Status.eq(PENDING))
            .filter(purchases::Column::Attempt.eq(attempt))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Drops a pending purchase whose saga was undone, so that a retry starts afresh.
    pub async fn delete_pending(&self, purchase_id: Uuid, attempt: i64) -> Result<bool, ApiError> {
        let res = purchases::Entity::delete_many()
            .filter(purchases::Column::Id.eq(purchase_id))
            .filter(purchases::Column::Status.eq(PENDING))
            .filter(purchases::Column::Attempt.eq(attempt))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Pending purchases whose lease lapsed before `before` (abandoned commits), oldest first.
    pub async fn abandoned(
        &self,
        before: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<StoredPurchase>, ApiError> {
        purchases::Entity::find()
            .filter(purchases::Column::Status.eq(PENDING))
            .filter(purchases::Column::LeaseUntil.lt(before))
            .order_by_asc(purchases::Column::LeaseUntil)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(decode)
            .collect()
    }

    /// A page of a customer's committed and voided purchases, newest first.
    pub async fn history(
        &self,
        partner_id: Uuid,
        customer_id: Uuid,
        filter: &HistoryFilter,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
    ) -> Result<Vec<StoredPurchase>, ApiError> {
        let mut q = purchases::Entity::find()
            .filter(purchases::Column::PartnerId.eq(partner_id))
            .filter(purchases::Column::CustomerId.eq(customer_id))
            .filter(purchases::Column::Status.ne(PENDING));
        if let Some(t) = filter.start {
            q = q.filter(purchases::Column::PurchaseTime.gte(t));
        }
        if let Some(t) = filter.end {
            q = q.filter(purchases::Column::PurchaseTime.lt(t));
        }
        if let Some(bu) = &filter.business_unit_id {
            q = q.filter(purchases::Column::BusinessUnitId.eq(bu.as_str()));
        }
        if let Some(c) = filter.channel {
            q = q.filter(purchases::Column::Channel.eq(c.as_str()));
        }
        if let Some(after) = after {
            q = q.filter(older_than(
                purchases::Column::PurchaseTime,
                purchases::Column::Id,
                after,
            ));
        }
        q.order_by_desc(purchases::Column::PurchaseTime)
            .order_by_desc(purchases::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(decode)
            .collect()
    }

    /// Marks a committed purchase voided; `false` when it is not committed any more.
    pub async fn mark_voided(
        &self,
        conn: &impl ConnectionTrait,
        purchase_id: Uuid,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, ApiError> {
        let res = purchases::Entity::update_many()
            .col_expr(purchases::Column::Status, Expr::value(VOIDED))
            .col_expr(purchases::Column::VoidedAt, Expr::value(at))
            .col_expr(purchases::Column::VoidReason, Expr::value(reason))
            .filter(purchases::Column::Id.eq(purchase_id))
            .filter(purchases::Column::Status.eq(COMMITTED))
            .exec(conn)
            .await?;
        Ok(res.rows_affected == 1)
    }

    pub async fn find_return(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        return_id: &str,
    ) -> Result<Option<StoredReturn>, ApiError> {
        Ok(purchase_returns::Entity::find()
            .filter(purchase_returns::Column::PartnerId.eq(partner_id))
            .filter(purchase_returns::Column::ReturnId.eq(return_id))
            .one(conn)
            .await?
            .map(decode_return))
    }

    /// The returns of a purchase, oldest first (pending ones included).
    pub async fn returns_of(
        &self,
        conn: &impl ConnectionTrait,
        purchase_id: Uuid,
    ) -> Result<Vec<StoredReturn>, ApiError> {
        Ok(purchase_returns::Entity::find()
            .filter(purchase_returns::Column::PurchaseId.eq(purchase_id))
            .order_by_asc(purchase_returns::Column::CreatedAt)
            .order_by_asc(purchase_returns::Column::Id)
            .all(conn)
            .await?
            .into_iter()
            .map(decode_return)
            .collect())
    }

    /// Records a pending return (its plan is fixed; the wallet and vouchers follow);
    /// `Ok(false)` if its return id is taken.
    pub async fn insert_return(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        purchase_id: Uuid,
        r: &StoredReturn,
    ) -> Result<bool, ApiError> {
        let res = purchase_returns::Entity::insert(purchase_returns::ActiveModel {
            id: Set(r.id),
            partner_id: Set(partner_id),
            purchase_id: Set(purchase_id),
            return_id: Set(r.return_id.clone()),
            request_hash: Set(r.request_hash.clone()),
            status: Set(PENDING.to_owned()),
            receipt: Set(r.receipt.clone()),
            created_at: Set(Utc::now()),
            completed_at: Set(None),
        })
        .exec_without_returning(conn)
        .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Completes a return with its final receipt; `false` if it was already completed.
    pub async fn complete_return(
        &self,
        conn: &impl ConnectionTrait,
        id: Uuid,
        receipt: &serde_json::Value,
    ) -> Result<bool, ApiError> {
        let res = purchase_returns::Entity::update_many()
            .col_expr(purchase_returns::Column::Status, Expr::value(COMMITTED))
            .col_expr(
                purchase_returns::Column::Receipt,
                Expr::value(receipt.clone()),
            )
            .col_expr(
                purchase_returns::Column::CompletedAt,
                Expr::value(Utc::now()),
            )
            .filter(purchase_returns::Column::Id.eq(id))
            .filter(purchase_returns::Column::Status.eq(PENDING))
            .exec(conn)
            .await?;
        Ok(res.rows_affected == 1)
    }
}

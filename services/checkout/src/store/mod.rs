//! Purchase transactions. A purchase is `pending` from the moment its pricing is fixed until
//! every side effect (points in the wallet) is done, then `committed` with its receipt.
use loyalty_platform::{ApiError, db::is_unique_violation};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
};
use uuid::Uuid;

use crate::domain::Receipt;

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
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurchaseStatus {
    Pending,
    Committed,
}

/// A stored purchase: its request fingerprint, status and (draft or final) receipt.
#[derive(Debug, Clone)]
pub struct StoredPurchase {
    pub request_hash: String,
    pub status: PurchaseStatus,
    pub receipt: Receipt,
}

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
}

fn decode(m: purchases::Model) -> Result<StoredPurchase, ApiError> {
    Ok(StoredPurchase {
        request_hash: m.request_hash,
        status: if m.status == "committed" {
            PurchaseStatus::Committed
        } else {
            PurchaseStatus::Pending
        },
        receipt: serde_json::from_value(m.receipt)
            .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("stored receipt")))?,
    })
}

impl Store {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
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

    /// Records a pending purchase; `Ok(false)` if the transaction id is already taken.
    pub async fn insert_pending(
        &self,
        partner_id: Uuid,
        request_hash: &str,
        draft: &Receipt,
    ) -> Result<bool, ApiError> {
        let res = purchases::Entity::insert(purchases::ActiveModel {
            id: Set(draft.purchase_id),
            partner_id: Set(partner_id),
            transaction_id: Set(draft.transaction_id.clone()),
            request_hash: Set(request_hash.to_owned()),
            customer_id: Set(draft.customer_id),
            status: Set("pending".to_owned()),
            receipt: Set(serde_json::to_value(draft).map_err(anyhow::Error::from)?),
            created_at: Set(chrono::Utc::now()),
            committed_at: Set(None),
        })
        .exec_without_returning(&self.db)
        .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Marks a pending purchase committed with its final receipt; `false` if another attempt
    /// already did.
    pub async fn mark_committed(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        receipt: &Receipt,
    ) -> Result<bool, ApiError> {
        let res = purchases::Entity::update_many()
            .col_expr(
                purchases::Column::Status,
                sea_orm::sea_query::Expr::value("committed"),
            )
            .col_expr(
                purchases::Column::Receipt,
                sea_orm::sea_query::Expr::value(
                    serde_json::to_value(receipt).map_err(anyhow::Error::from)?,
                ),
            )
            .col_expr(
                purchases::Column::CommittedAt,
                sea_orm::sea_query::Expr::value(receipt.committed_at),
            )
            .filter(purchases::Column::PartnerId.eq(partner_id))
            .filter(purchases::Column::Id.eq(receipt.purchase_id))
            .filter(purchases::Column::Status.eq("pending"))
            .exec(conn)
            .await?;
        Ok(res.rows_affected == 1)
    }
}

//! The ledger table: entries are inserted, never updated or deleted.
use loyalty_platform::ApiError;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use crate::domain::{EntryKind, LedgerEntry};

pub mod ledger_entries {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ledger_entries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub customer_id: Uuid,
        pub kind: String,
        pub points: i64,
        pub reason: String,
        pub reference: String,
        pub expires_at: Option<DateTimeUtc>,
        pub released_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub async fn insert(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    e: &LedgerEntry,
) -> Result<(), ApiError> {
    ledger_entries::Entity::insert(ledger_entries::ActiveModel {
        id: Set(e.id),
        partner_id: Set(partner_id),
        customer_id: Set(e.customer_id),
        kind: Set(e.kind.as_str().to_owned()),
        points: Set(e.points),
        reason: Set(e.reason.clone()),
        reference: Set(e.reference.clone()),
        expires_at: Set(e.expires_at),
        released_at: Set(e.released_at),
        created_at: Set(e.created_at),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Every entry of a customer's wallet, oldest first.
pub async fn entries(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<Vec<LedgerEntry>, ApiError> {
    ledger_entries::Entity::find()
        .filter(ledger_entries::Column::PartnerId.eq(partner_id))
        .filter(ledger_entries::Column::CustomerId.eq(customer_id))
        .order_by_asc(ledger_entries::Column::CreatedAt)
        .order_by_asc(ledger_entries::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .map(|m| {
            // An entry we cannot read must fail the call: leaving it out would misstate the
            // balance.
            let kind = EntryKind::parse_str(&m.kind).ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!(
                    "ledger entry {} has unknown kind {:?}",
                    m.id,
                    m.kind
                ))
            })?;
            Ok(LedgerEntry {
                id: m.id,
                customer_id: m.customer_id,
                kind,
                points: m.points,
                reason: m.reason,
                reference: m.reference,
                expires_at: m.expires_at,
                released_at: m.released_at,
                created_at: m.created_at,
            })
        })
        .collect()
}

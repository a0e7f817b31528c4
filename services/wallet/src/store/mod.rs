//! The ledger table: entries are inserted, never deleted; the only update is the scrubbing of
//! client-written text when a customer is erased (see `scrub_text`).
use loyalty_platform::ApiError;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, Statement, sea_query::Expr,
};
use uuid::Uuid;

use crate::domain::{EntryKind, LedgerEntry};

pub mod lifecycle;

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

pub mod merged_customers {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "merged_customers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub partner_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub merged_customer_id: Uuid,
        pub surviving_customer_id: Uuid,
        pub merged_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Serialises writes to one customer's wallet until the transaction ends, so that an award
/// and a merge of the same customer cannot interleave (on SQLite write transactions are
/// serialised already).
pub async fn lock_wallet(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<(), ApiError> {
    if conn.get_database_backend() == DbBackend::Postgres {
        conn.execute(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            [format!("wallet:{partner_id}:{customer_id}").into()],
        ))
        .await?;
    }
    Ok(())
}

/// Longest chain of merges followed (A into B, B into C, ...); a longer one means bad data.
const MAX_MERGE_CHAIN: usize = 32;

/// The customer whose wallet receives points addressed to `customer_id`: itself, or, if it
/// was merged, the customer it was (transitively) merged into. Locks that wallet.
pub async fn resolve_customer(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<Uuid, ApiError> {
    let mut current = customer_id;
    for _ in 0..MAX_MERGE_CHAIN {
        lock_wallet(conn, partner_id, current).await?;
        match merged_customers::Entity::find_by_id((partner_id, current))
            .one(conn)
            .await?
        {
            Some(m) => current = m.surviving_customer_id,
            None => return Ok(current),
        }
    }
    Err(ApiError::Internal(anyhow::anyhow!(
        "customer {customer_id} has a merge chain longer than {MAX_MERGE_CHAIN}"
    )))
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

/// Replaces the client-written free text (reason, reference) of a customer's entries: amounts,
/// kinds and times stay.
pub async fn scrub_text(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<u64, ApiError> {
    let done = ledger_entries::Entity::update_many()
        .col_expr(
            ledger_entries::Column::Reason,
            Expr::value(crate::domain::ERASED_REASON),
        )
        .col_expr(ledger_entries::Column::Reference, Expr::value(""))
        .filter(ledger_entries::Column::PartnerId.eq(partner_id))
        .filter(ledger_entries::Column::CustomerId.eq(customer_id))
        // Merge entries carry only customer ids, written by the wallet itself.
        .filter(ledger_entries::Column::Kind.ne(EntryKind::Merge.as_str()))
        .exec(conn)
        .await?;
    Ok(done.rows_affected)
}

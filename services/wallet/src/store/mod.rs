//! Storage of the wallet service: the ledger tables (entities), the posting engine (ledger),
//! the operations (ops), and identity's lifecycle events applied to wallets.
use loyalty_platform::ApiError;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::Expr};
use uuid::Uuid;

pub mod catalog;
pub mod check;
pub mod entities;
pub mod jobs;
pub mod ledger;
pub mod lifecycle;
pub mod offer_awards;
pub mod ops;
#[cfg(test)]
mod tests;

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

/// Serialises a merge of a customer with awards to that customer until the transaction ends
/// (on SQLite write transactions are serialised already).
pub async fn lock_customer(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<(), ApiError> {
    Ok(loyalty_platform::db::advisory_xact_lock(
        conn,
        &format!("wallet:{partner_id}:{customer_id}"),
    )
    .await?)
}

/// Longest chain of merges followed (A into B, B into C, ...); a longer one means bad data.
const MAX_MERGE_CHAIN: usize = 32;

/// The customer whose wallets receive points addressed to `customer_id`: itself, or, if it
/// was merged, the customer it was (transitively) merged into. Holds the merge lock of each
/// customer on the way.
pub async fn resolve_customer(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<Uuid, ApiError> {
    let mut current = customer_id;
    for _ in 0..MAX_MERGE_CHAIN {
        lock_customer(conn, partner_id, current).await?;
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

/// Replaces the client-written free text (reason, reference, payment method) of the postings
/// touching a customer; amounts, kinds and times stay.
pub async fn scrub_text(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<u64, ApiError> {
    use entities::{ledger_postings as postings, reservations};
    use sea_orm::Condition;
    let done = postings::Entity::update_many()
        .col_expr(
            postings::Column::Reason,
            Expr::value(crate::domain::ERASED_REASON),
        )
        .col_expr(postings::Column::Reference, Expr::value(""))
        .col_expr(postings::Column::PaymentMethodReference, Expr::value(""))
        .filter(postings::Column::PartnerId.eq(partner_id))
        .filter(
            Condition::any()
                .add(postings::Column::DebitCustomerId.eq(customer_id))
                .add(postings::Column::CreditCustomerId.eq(customer_id)),
        )
        // Merge postings carry only customer ids, written by the wallet itself.
        .filter(postings::Column::Kind.ne(crate::domain::PostingKind::Merge.as_str()))
        .exec(conn)
        .await?;
    reservations::Entity::update_many()
        .col_expr(reservations::Column::Reference, Expr::value(""))
        .filter(reservations::Column::PartnerId.eq(partner_id))
        .filter(reservations::Column::CustomerId.eq(customer_id))
        .exec(conn)
        .await?;
    Ok(done.rows_affected)
}

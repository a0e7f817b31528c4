//! Bulk writes of the customer import: set-based lookups and multi-row inserts, so a batch of
//! thousands of rows costs a handful of statements.
use std::collections::{BTreeMap, HashSet};

use loyalty_platform::{ApiError, db::is_unique_violation};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
};
use uuid::Uuid;

use super::{customer_model, entities::identifiers, identifier_model};
use crate::domain::{Customer, Identifier, IdentifierKind, IdentifierState, IdentifierValue};

/// Rows per multi-row INSERT: customers have 24 columns, so 1,000 rows bind 24,000 values,
/// under PostgreSQL's 65,535 and SQLite's 32,766.
const ROWS_PER_INSERT: usize = 1_000;
/// Values per `IN (…)` list.
const VALUES_PER_LOOKUP: usize = 5_000;

pub mod import_rows {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "import_rows")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub partner_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub import_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub line_number: i64,
        pub customer_id: Uuid,
        pub imported_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A customer ready to be written with its identifiers, and the import line it came from.
pub struct NewCustomer {
    pub line_number: i64,
    pub customer: Customer,
    pub identifiers: Vec<Identifier>,
}

/// The lines of `lines` that import `import_id` already wrote.
pub async fn imported_lines(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    import_id: &str,
    lines: &[i64],
) -> Result<HashSet<i64>, ApiError> {
    let mut found = HashSet::new();
    for chunk in lines.chunks(VALUES_PER_LOOKUP) {
        let rows: Vec<i64> = import_rows::Entity::find()
            .select_only()
            .column(import_rows::Column::LineNumber)
            .filter(import_rows::Column::PartnerId.eq(partner_id))
            .filter(import_rows::Column::ImportId.eq(import_id))
            .filter(import_rows::Column::LineNumber.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(conn)
            .await?;
        found.extend(rows);
    }
    Ok(found)
}

/// Which of `values` are assigned to a customer of the partner (in any state but removed).
/// Queried per kind so that PostgreSQL walks the unique index on (partner_id, kind, value)
/// instead of every identifier of the partner.
pub async fn taken_identifiers(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    values: &[&IdentifierValue],
) -> Result<HashSet<(IdentifierKind, String)>, ApiError> {
    let mut by_kind: BTreeMap<&'static str, (IdentifierKind, Vec<String>)> = BTreeMap::new();
    for v in values {
        by_kind
            .entry(v.kind.as_str())
            .or_insert_with(|| (v.kind, Vec::new()))
            .1
            .push(v.value.clone());
    }
    let mut taken = HashSet::new();
    for (kind_name, (kind, wanted)) in by_kind {
        for chunk in wanted.chunks(VALUES_PER_LOOKUP) {
            let rows: Vec<String> = identifiers::Entity::find()
                .select_only()
                .column(identifiers::Column::Value)
                .filter(identifiers::Column::PartnerId.eq(partner_id))
                .filter(identifiers::Column::Kind.eq(kind_name))
                .filter(identifiers::Column::State.ne(IdentifierState::Removed.as_str()))
                .filter(identifiers::Column::Value.is_in(chunk.iter().cloned()))
                .into_tuple()
                .all(conn)
                .await?;
            taken.extend(rows.into_iter().map(|value| (kind, value)));
        }
    }
    Ok(taken)
}

/// Writes customers, their identifiers and the import bookkeeping in multi-row inserts;
/// `false` when a unique constraint refused them (a concurrent writer took an identifier or
/// imported a line meanwhile): the transaction is then unusable and must be rolled back.
pub async fn insert_customers(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    import_id: &str,
    rows: &[NewCustomer],
) -> Result<bool, ApiError> {
    match write_customers(conn, partner_id, import_id, rows).await {
        Ok(()) => Ok(true),
        Err(WriteError::Db(e)) if is_unique_violation(&e) => Ok(false),
        Err(WriteError::Db(e)) => Err(e.into()),
        Err(WriteError::Api(e)) => Err(e),
    }
}

enum WriteError {
    Db(DbErr),
    Api(ApiError),
}

impl From<DbErr> for WriteError {
    fn from(e: DbErr) -> Self {
        WriteError::Db(e)
    }
}

async fn write_customers(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    import_id: &str,
    rows: &[NewCustomer],
) -> Result<(), WriteError> {
    let now = chrono::Utc::now();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let customers = chunk
            .iter()
            .map(|r| customer_model(&r.customer))
            .collect::<Result<Vec<_>, _>>()
            .map_err(WriteError::Api)?;
        super::entities::customers::Entity::insert_many(customers)
            .exec_without_returning(conn)
            .await?;
        let lines = chunk.iter().map(|r| import_rows::ActiveModel {
            partner_id: Set(partner_id),
            import_id: Set(import_id.to_owned()),
            line_number: Set(r.line_number),
            customer_id: Set(r.customer.id),
            imported_at: Set(now),
        });
        import_rows::Entity::insert_many(lines)
            .exec_without_returning(conn)
            .await?;
    }
    let identifiers: Vec<_> = rows
        .iter()
        .flat_map(|r| r.identifiers.iter())
        .map(|i| identifier_model(partner_id, i))
        .collect();
    for chunk in identifiers.chunks(ROWS_PER_INSERT) {
        identifiers::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// Refreshes the planner statistics of the tables an import grows. A bulk load outpaces
/// autovacuum: with statistics from when the tables were small, PostgreSQL checks each batch
/// against every row of the partner instead of walking the unique indexes. SQLite's planner
/// needs no statistics to use them.
pub async fn refresh_statistics(conn: &impl ConnectionTrait) -> Result<(), ApiError> {
    if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
        conn.execute_unprepared("ANALYZE identifiers, import_rows, customers")
            .await?;
    }
    Ok(())
}

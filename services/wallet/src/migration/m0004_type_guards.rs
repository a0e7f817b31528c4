//! Guards on points types that concurrent writers cannot break: at most one default type per
//! partner (the lazily created `points` default and a type created at the same moment could
//! otherwise both be default), and, on PostgreSQL, accounts that must name an existing type
//! (a type deleted while its first award is in flight would otherwise leave an orphan
//! posting; SQLite serialises those writers anyway and cannot add constraints to a table).
use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

pub struct TypeGuards;

impl MigrationName for TypeGuards {
    fn name(&self) -> &str {
        "m0004_wallet_type_guards"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for TypeGuards {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        db.execute_unprepared(
            "CREATE UNIQUE INDEX points_types_one_default ON points_types (partner_id) WHERE is_default",
        )
        .await?;
        if m.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(
                "ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_points_type \
                 FOREIGN KEY (points_type_id) REFERENCES points_types (id)",
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if m.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(
                "ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_points_type",
            )
            .await?;
        }
        db.execute_unprepared("DROP INDEX points_types_one_default")
            .await?;
        Ok(())
    }
}

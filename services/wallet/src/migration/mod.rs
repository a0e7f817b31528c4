//! Schema of the wallet service.
use sea_orm_migration::{prelude::*, schema::*};

loyalty_platform::migrator![InitialSchema];

struct InitialSchema;

impl MigrationName for InitialSchema {
    fn name(&self) -> &str {
        "m0001_wallet_initial"
    }
}

#[derive(DeriveIden)]
enum LedgerEntries {
    Table,
    Id,
    PartnerId,
    CustomerId,
    Kind,
    Points,
    Reason,
    Reference,
    ExpiresAt,
    ReleasedAt,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for InitialSchema {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(LedgerEntries::Table)
                .col(uuid(LedgerEntries::Id).primary_key())
                .col(uuid(LedgerEntries::PartnerId))
                .col(uuid(LedgerEntries::CustomerId))
                .col(string(LedgerEntries::Kind))
                .col(big_integer(LedgerEntries::Points))
                .col(string(LedgerEntries::Reason))
                .col(string(LedgerEntries::Reference))
                .col(timestamp_with_time_zone_null(LedgerEntries::ExpiresAt))
                .col(timestamp_with_time_zone_null(LedgerEntries::ReleasedAt))
                .col(timestamp_with_time_zone(LedgerEntries::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ledger_entries_wallet")
                .table(LedgerEntries::Table)
                .col(LedgerEntries::PartnerId)
                .col(LedgerEntries::CustomerId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(LedgerEntries::Table).to_owned())
            .await
    }
}

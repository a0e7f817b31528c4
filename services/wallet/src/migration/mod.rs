//! Schema of the wallet service.
use sea_orm_migration::{prelude::*, schema::*};

mod m0003_ledger;
mod m0004_type_guards;

use m0003_ledger::Ledger;
use m0004_type_guards::TypeGuards;

loyalty_platform::migrator![InitialSchema, MergedCustomers, Ledger, TypeGuards];

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

/// Customers merged into another one: awards that still arrive for a merged customer go to
/// the surviving one (see docs/wallet-customer-lifecycle.md).
struct MergedCustomers;

impl MigrationName for MergedCustomers {
    fn name(&self) -> &str {
        "m0002_wallet_merged_customers"
    }
}

#[derive(DeriveIden)]
enum MergedCustomersTable {
    #[sea_orm(iden = "merged_customers")]
    Table,
    PartnerId,
    MergedCustomerId,
    SurvivingCustomerId,
    MergedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for MergedCustomers {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(MergedCustomersTable::Table)
                .col(uuid(MergedCustomersTable::PartnerId))
                .col(uuid(MergedCustomersTable::MergedCustomerId))
                .col(uuid(MergedCustomersTable::SurvivingCustomerId))
                .col(timestamp_with_time_zone(MergedCustomersTable::MergedAt))
                .primary_key(
                    Index::create()
                        .col(MergedCustomersTable::PartnerId)
                        .col(MergedCustomersTable::MergedCustomerId),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(MergedCustomersTable::Table).to_owned())
            .await
    }
}

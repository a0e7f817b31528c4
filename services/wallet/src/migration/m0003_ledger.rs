//! The double-entry ledger: points groups and types, accounts, postings, lots with their
//! allocations, reservations and spending blocks. Replaces the single-entry `ledger_entries`
//! table of the first cut (which only ever held awards and merge moves of pre-release data;
//! it is dropped, see docs/wallet.md).
use sea_orm_migration::{prelude::*, schema::*};

pub struct Ledger;

impl MigrationName for Ledger {
    fn name(&self) -> &str {
        "m0003_wallet_ledger"
    }
}

#[derive(DeriveIden)]
enum LedgerEntries {
    Table,
}

#[derive(DeriveIden)]
enum PointsGroups {
    Table,
    Id,
    PartnerId,
    Code,
    DisplayName,
    Description,
    Revision,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum PointsTypes {
    Table,
    Id,
    PartnerId,
    Code,
    DisplayName,
    Description,
    PointsGroupId,
    Unit,
    CurrencyCode,
    ExpiryRule,
    ValidityDays,
    ValidityMonths,
    PendingDays,
    Rounding,
    Spendable,
    OverdraftLimit,
    ReservationTtlSeconds,
    IsDefault,
    Active,
    Revision,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum LedgerAccounts {
    Table,
    Id,
    PartnerId,
    PointsTypeId,
    CustomerId,
    Kind,
    Balance,
    Debt,
    LifetimeCredited,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum LedgerPostings {
    Table,
    Id,
    PartnerId,
    OperationId,
    PointsTypeId,
    Kind,
    Cause,
    DebitAccountId,
    CreditAccountId,
    DebitCustomerId,
    CreditCustomerId,
    Amount,
    LotId,
    ReversedPostingId,
    ReservationId,
    Reason,
    Reference,
    BusinessUnitId,
    PaymentMethodReference,
    CreatedAt,
}

#[derive(DeriveIden)]
enum PointsLots {
    Table,
    Id,
    PartnerId,
    AccountId,
    CustomerId,
    PointsTypeId,
    PostingId,
    OriginalAmount,
    RemainingAmount,
    ReleaseAt,
    ExpireAt,
    ExpiredAt,
    Payable,
    CreatedAt,
}

#[derive(DeriveIden)]
enum LotAllocations {
    Table,
    PostingId,
    LotId,
    Amount,
}

#[derive(DeriveIden)]
enum Reservations {
    Table,
    Id,
    PartnerId,
    CustomerId,
    PointsTypeId,
    Amount,
    CapturedAmount,
    State,
    ExpireAt,
    Reference,
    ReservePostingId,
    CreatedAt,
    SettledAt,
}

#[derive(DeriveIden)]
enum SpendingBlocks {
    Table,
    PartnerId,
    CustomerId,
    PointsTypeId,
    Reason,
    CreatedAt,
}

async fn index(
    m: &SchemaManager<'_>,
    name: &str,
    table: impl IntoIden + 'static,
    cols: Vec<DynIden>,
    unique: bool,
) -> Result<(), DbErr> {
    let mut i = Index::create();
    i.name(name).table(table.into_iden());
    for c in cols {
        i.col(c);
    }
    if unique {
        i.unique();
    }
    m.create_index(i.to_owned()).await
}

fn cols<const N: usize>(c: [DynIden; N]) -> Vec<DynIden> {
    c.into()
}

#[async_trait::async_trait]
impl MigrationTrait for Ledger {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table(LedgerEntries::Table)
                .if_exists()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(PointsGroups::Table)
                .col(uuid(PointsGroups::Id).primary_key())
                .col(uuid(PointsGroups::PartnerId))
                .col(string(PointsGroups::Code))
                .col(string(PointsGroups::DisplayName))
                .col(text(PointsGroups::Description))
                .col(big_integer(PointsGroups::Revision))
                .col(timestamp_with_time_zone(PointsGroups::CreatedAt))
                .col(timestamp_with_time_zone(PointsGroups::UpdatedAt))
                .to_owned(),
        )
        .await?;
        index(
            m,
            "points_groups_code",
            PointsGroups::Table,
            cols([
                PointsGroups::PartnerId.into_iden(),
                PointsGroups::Code.into_iden(),
            ]),
            true,
        )
        .await?;
        m.create_table(
            Table::create()
                .table(PointsTypes::Table)
                .col(uuid(PointsTypes::Id).primary_key())
                .col(uuid(PointsTypes::PartnerId))
                .col(string(PointsTypes::Code))
                .col(string(PointsTypes::DisplayName))
                .col(text(PointsTypes::Description))
                .col(uuid_null(PointsTypes::PointsGroupId))
                .col(string(PointsTypes::Unit))
                .col(string(PointsTypes::CurrencyCode))
                .col(string(PointsTypes::ExpiryRule))
                .col(integer(PointsTypes::ValidityDays))
                .col(integer(PointsTypes::ValidityMonths))
                .col(integer(PointsTypes::PendingDays))
                .col(string(PointsTypes::Rounding))
                .col(boolean(PointsTypes::Spendable))
                .col(big_integer(PointsTypes::OverdraftLimit))
                .col(integer(PointsTypes::ReservationTtlSeconds))
                .col(boolean(PointsTypes::IsDefault))
                .col(boolean(PointsTypes::Active))
                .col(big_integer(PointsTypes::Revision))
                .col(timestamp_with_time_zone(PointsTypes::CreatedAt))
                .col(timestamp_with_time_zone(PointsTypes::UpdatedAt))
                .to_owned(),
        )
        .await?;
        index(
            m,
            "points_types_code",
            PointsTypes::Table,
            cols([
                PointsTypes::PartnerId.into_iden(),
                PointsTypes::Code.into_iden(),
            ]),
            true,
        )
        .await?;
        m.create_table(
            Table::create()
                .table(LedgerAccounts::Table)
                .col(uuid(LedgerAccounts::Id).primary_key())
                .col(uuid(LedgerAccounts::PartnerId))
                .col(uuid(LedgerAccounts::PointsTypeId))
                // The nil UUID for the partner's system accounts (NULLs would not be unique).
                .col(uuid(LedgerAccounts::CustomerId))
                .col(string(LedgerAccounts::Kind))
                .col(big_integer(LedgerAccounts::Balance))
                .col(big_integer(LedgerAccounts::Debt))
                .col(big_integer(LedgerAccounts::LifetimeCredited))
                .col(timestamp_with_time_zone(LedgerAccounts::CreatedAt))
                .col(timestamp_with_time_zone(LedgerAccounts::UpdatedAt))
                .to_owned(),
        )
        .await?;
        index(
            m,
            "ledger_accounts_owner",
            LedgerAccounts::Table,
            cols([
                LedgerAccounts::PartnerId.into_iden(),
                LedgerAccounts::CustomerId.into_iden(),
                LedgerAccounts::PointsTypeId.into_iden(),
                LedgerAccounts::Kind.into_iden(),
            ]),
            true,
        )
        .await?;
        index(
            m,
            "ledger_accounts_type",
            LedgerAccounts::Table,
            cols([
                LedgerAccounts::PointsTypeId.into_iden(),
                LedgerAccounts::Kind.into_iden(),
                LedgerAccounts::CustomerId.into_iden(),
            ]),
            false,
        )
        .await?;
        m.create_table(
            Table::create()
                .table(LedgerPostings::Table)
                .col(uuid(LedgerPostings::Id).primary_key())
                .col(uuid(LedgerPostings::PartnerId))
                .col(uuid(LedgerPostings::OperationId))
                .col(uuid(LedgerPostings::PointsTypeId))
                .col(string(LedgerPostings::Kind))
                .col(string(LedgerPostings::Cause))
                .col(uuid(LedgerPostings::DebitAccountId))
                .col(uuid(LedgerPostings::CreditAccountId))
                .col(uuid_null(LedgerPostings::DebitCustomerId))
                .col(uuid_null(LedgerPostings::CreditCustomerId))
                .col(big_integer(LedgerPostings::Amount))
                .col(uuid_null(LedgerPostings::LotId))
                .col(uuid_null(LedgerPostings::ReversedPostingId))
                .col(uuid_null(LedgerPostings::ReservationId))
                .col(string(LedgerPostings::Reason))
                .col(string(LedgerPostings::Reference))
                .col(uuid_null(LedgerPostings::BusinessUnitId))
                .col(string(LedgerPostings::PaymentMethodReference))
                .col(timestamp_with_time_zone(LedgerPostings::CreatedAt))
                .check(Expr::col(LedgerPostings::Amount).gt(0))
                .to_owned(),
        )
        .await?;
        for (name, c) in [
            (
                "ledger_postings_debit_customer",
                LedgerPostings::DebitCustomerId,
            ),
            (
                "ledger_postings_credit_customer",
                LedgerPostings::CreditCustomerId,
            ),
        ] {
            index(
                m,
                name,
                LedgerPostings::Table,
                cols([
                    LedgerPostings::PartnerId.into_iden(),
                    c.into_iden(),
                    LedgerPostings::CreatedAt.into_iden(),
                ]),
                false,
            )
            .await?;
        }
        for (name, c) in [
            (
                "ledger_postings_debit_account",
                LedgerPostings::DebitAccountId,
            ),
            (
                "ledger_postings_credit_account",
                LedgerPostings::CreditAccountId,
            ),
            (
                "ledger_postings_reversed",
                LedgerPostings::ReversedPostingId,
            ),
        ] {
            index(m, name, LedgerPostings::Table, cols([c.into_iden()]), false).await?;
        }
        m.create_table(
            Table::create()
                .table(PointsLots::Table)
                .col(uuid(PointsLots::Id).primary_key())
                .col(uuid(PointsLots::PartnerId))
                .col(uuid(PointsLots::AccountId))
                .col(uuid(PointsLots::CustomerId))
                .col(uuid(PointsLots::PointsTypeId))
                .col(uuid(PointsLots::PostingId))
                .col(big_integer(PointsLots::OriginalAmount))
                .col(big_integer(PointsLots::RemainingAmount))
                .col(timestamp_with_time_zone_null(PointsLots::ReleaseAt))
                .col(timestamp_with_time_zone_null(PointsLots::ExpireAt))
                .col(timestamp_with_time_zone_null(PointsLots::ExpiredAt))
                .col(boolean(PointsLots::Payable))
                .col(timestamp_with_time_zone(PointsLots::CreatedAt))
                .check(Expr::col(PointsLots::RemainingAmount).gte(0))
                .to_owned(),
        )
        .await?;
        index(
            m,
            "points_lots_account",
            PointsLots::Table,
            cols([
                PointsLots::AccountId.into_iden(),
                PointsLots::RemainingAmount.into_iden(),
            ]),
            false,
        )
        .await?;
        index(
            m,
            "points_lots_due",
            PointsLots::Table,
            cols([
                PointsLots::PartnerId.into_iden(),
                PointsLots::ExpireAt.into_iden(),
            ]),
            false,
        )
        .await?;
        m.create_table(
            Table::create()
                .table(LotAllocations::Table)
                .col(uuid(LotAllocations::PostingId))
                .col(uuid(LotAllocations::LotId))
                .col(big_integer(LotAllocations::Amount))
                .primary_key(
                    Index::create()
                        .col(LotAllocations::PostingId)
                        .col(LotAllocations::LotId),
                )
                .to_owned(),
        )
        .await?;
        index(
            m,
            "lot_allocations_lot",
            LotAllocations::Table,
            cols([LotAllocations::LotId.into_iden()]),
            false,
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Reservations::Table)
                .col(uuid(Reservations::Id).primary_key())
                .col(uuid(Reservations::PartnerId))
                .col(uuid(Reservations::CustomerId))
                .col(uuid(Reservations::PointsTypeId))
                .col(big_integer(Reservations::Amount))
                .col(big_integer(Reservations::CapturedAmount))
                .col(string(Reservations::State))
                .col(timestamp_with_time_zone(Reservations::ExpireAt))
                .col(string(Reservations::Reference))
                .col(uuid(Reservations::ReservePostingId))
                .col(timestamp_with_time_zone(Reservations::CreatedAt))
                .col(timestamp_with_time_zone_null(Reservations::SettledAt))
                .to_owned(),
        )
        .await?;
        index(
            m,
            "reservations_due",
            Reservations::Table,
            cols([
                Reservations::PartnerId.into_iden(),
                Reservations::State.into_iden(),
                Reservations::ExpireAt.into_iden(),
            ]),
            false,
        )
        .await?;
        index(
            m,
            "reservations_wallet",
            Reservations::Table,
            cols([
                Reservations::PartnerId.into_iden(),
                Reservations::CustomerId.into_iden(),
                Reservations::PointsTypeId.into_iden(),
                Reservations::State.into_iden(),
            ]),
            false,
        )
        .await?;
        m.create_table(
            Table::create()
                .table(SpendingBlocks::Table)
                .col(uuid(SpendingBlocks::PartnerId))
                .col(uuid(SpendingBlocks::CustomerId))
                // The nil UUID blocks every points type.
                .col(uuid(SpendingBlocks::PointsTypeId))
                .col(string(SpendingBlocks::Reason))
                .col(timestamp_with_time_zone(SpendingBlocks::CreatedAt))
                .primary_key(
                    Index::create()
                        .col(SpendingBlocks::PartnerId)
                        .col(SpendingBlocks::CustomerId)
                        .col(SpendingBlocks::PointsTypeId),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            SpendingBlocks::Table.into_iden(),
            Reservations::Table.into_iden(),
            LotAllocations::Table.into_iden(),
            PointsLots::Table.into_iden(),
            LedgerPostings::Table.into_iden(),
            LedgerAccounts::Table.into_iden(),
            PointsTypes::Table.into_iden(),
            PointsGroups::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

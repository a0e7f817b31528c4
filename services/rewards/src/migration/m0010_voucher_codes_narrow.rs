//! Bulk-generated voucher codes stored narrow (issue #6), and the chosen value of gift
//! vouchers.
//!
//! A generation (one GenerateVoucherCodes call) is one `voucher_generations` row and one
//! `voucher_code_buckets` row per hash bucket of its codes (see `domain::vouchers::codes`);
//! a generated code becomes a `vouchers` row on its first change (reserve, redeem, cancel).
//! A generation is written `pending` and flipped to `complete` in the transaction that stores
//! its answer: lookups read only complete generations, and the rows of a pending one left by
//! a crash are deleted by the partner's next generation.
use sea_orm_migration::{prelude::*, schema::*};

pub struct VoucherCodesNarrow;

impl MigrationName for VoucherCodesNarrow {
    fn name(&self) -> &str {
        "m0010_voucher_codes_narrow"
    }
}

#[derive(DeriveIden)]
enum VoucherGenerations {
    Table,
    Id,
    PartnerId,
    RewardId,
    State,
    CodeLen,
    Count,
    FirstVoucherId,
    Source,
    SourceId,
    ValidFrom,
    ValidUntil,
    IssuedAt,
    CancelledAt,
    CancelReason,
}

#[derive(DeriveIden)]
enum VoucherCodeBuckets {
    Table,
    PartnerId,
    Bucket,
    GenerationId,
    FirstIndex,
    Codes,
}

#[derive(DeriveIden)]
enum Vouchers {
    Table,
    ValueMinor,
    ValueCurrency,
}

#[async_trait::async_trait]
impl MigrationTrait for VoucherCodesNarrow {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(VoucherGenerations::Table)
                .col(uuid(VoucherGenerations::Id).primary_key())
                .col(uuid(VoucherGenerations::PartnerId))
                .col(uuid(VoucherGenerations::RewardId))
                .col(string(VoucherGenerations::State))
                .col(integer(VoucherGenerations::CodeLen))
                .col(big_integer(VoucherGenerations::Count))
                .col(uuid(VoucherGenerations::FirstVoucherId))
                .col(string(VoucherGenerations::Source))
                .col(string(VoucherGenerations::SourceId))
                .col(timestamp_with_time_zone_null(VoucherGenerations::ValidFrom))
                .col(timestamp_with_time_zone_null(
                    VoucherGenerations::ValidUntil,
                ))
                .col(timestamp_with_time_zone(VoucherGenerations::IssuedAt))
                .col(timestamp_with_time_zone_null(
                    VoucherGenerations::CancelledAt,
                ))
                .col(text_null(VoucherGenerations::CancelReason))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("voucher_generations_partner_first")
                .table(VoucherGenerations::Table)
                .col(VoucherGenerations::PartnerId)
                .col(VoucherGenerations::FirstVoucherId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(VoucherCodeBuckets::Table)
                .col(uuid(VoucherCodeBuckets::GenerationId))
                .col(integer(VoucherCodeBuckets::FirstIndex))
                .col(uuid(VoucherCodeBuckets::PartnerId))
                .col(integer(VoucherCodeBuckets::Bucket))
                .col(text(VoucherCodeBuckets::Codes))
                .primary_key(
                    Index::create()
                        .col(VoucherCodeBuckets::GenerationId)
                        .col(VoucherCodeBuckets::FirstIndex),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("voucher_code_buckets_partner_bucket")
                .table(VoucherCodeBuckets::Table)
                .col(VoucherCodeBuckets::PartnerId)
                .col(VoucherCodeBuckets::Bucket)
                .to_owned(),
        )
        .await?;
        if m.get_database_backend() == sea_orm::DbBackend::Postgres {
            // A bucket row is ~1 kB of random codes: compressing it costs time and saves
            // nothing.
            m.get_connection()
                .execute_unprepared(
                    "ALTER TABLE voucher_code_buckets ALTER COLUMN codes SET STORAGE EXTERNAL",
                )
                .await?;
        }
        for col in [
            ColumnDef::new(Vouchers::ValueMinor)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(Vouchers::ValueCurrency)
                .string()
                .null()
                .to_owned(),
        ] {
            m.alter_table(
                Table::alter()
                    .table(Vouchers::Table)
                    .add_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in [Vouchers::ValueMinor, Vouchers::ValueCurrency] {
            m.alter_table(
                Table::alter()
                    .table(Vouchers::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        for t in [
            VoucherCodeBuckets::Table.into_iden(),
            VoucherGenerations::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

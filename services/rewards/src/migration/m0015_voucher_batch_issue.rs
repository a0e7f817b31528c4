//! Vouchers issued in batches (IssueVouchers): one voucher per (reward, source, customer).
//!
//! A voucher written by IssueVouchers carries its `batch_key`, a digest of (partner, reward,
//! source_id, customer) (`domain::vouchers::batch::BatchOrder::key`), under a unique index: a
//! retry finds the voucher it issued before, and two concurrent calls for the same recipients
//! meet on the index (`ON CONFLICT DO NOTHING`, then read back) instead of issuing twice.
//!
//! One key column rather than a unique index on the four columns: the batch looks up a
//! thousand keys at once, and only a single-column unique index lets PostgreSQL know, without
//! statistics, that each key is at most one row. With the four columns, a new campaign's
//! reward and source are a handful of rows to a planner whose statistics predate them, and it
//! reads every voucher of the campaign so far for each batch instead of probing the index.
//!
//! Only the batch's vouchers have a key (the index skips NULLs): vouchers of IssueVoucher
//! (idempotent on the caller's key) may share a source, as before, and no existing row can
//! break the index.
use sea_orm_migration::{prelude::*, schema::*};

pub struct VoucherBatchIssue;

impl MigrationName for VoucherBatchIssue {
    fn name(&self) -> &str {
        "m0015_voucher_batch_issue"
    }
}

#[derive(DeriveIden)]
enum Vouchers {
    Table,
    BatchKey,
}

#[async_trait::async_trait]
impl MigrationTrait for VoucherBatchIssue {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Vouchers::Table)
                .add_column(uuid_null(Vouchers::BatchKey))
                .to_owned(),
        )
        .await?;
        m.get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX vouchers_batch_key ON vouchers (batch_key) \
                 WHERE batch_key IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared("DROP INDEX vouchers_batch_key")
            .await?;
        m.alter_table(
            Table::alter()
                .table(Vouchers::Table)
                .drop_column(Vouchers::BatchKey)
                .to_owned(),
        )
        .await
    }
}

//! Vouchers paid with points (issue #6): the wallet hold that paid for a voucher, so that a
//! cancellation or reinstatement can give exactly that payment back.
use sea_orm_migration::{prelude::*, schema::*};

pub struct VoucherCodes;

impl MigrationName for VoucherCodes {
    fn name(&self) -> &str {
        "m0009_voucher_codes"
    }
}

#[derive(DeriveIden)]
enum Vouchers {
    Table,
    PointsReservationId,
}

#[async_trait::async_trait]
impl MigrationTrait for VoucherCodes {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Vouchers::Table)
                .add_column(uuid_null(Vouchers::PointsReservationId))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Vouchers::Table)
                .drop_column(Vouchers::PointsReservationId)
                .to_owned(),
        )
        .await
    }
}

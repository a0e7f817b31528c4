//! The code spec of each voucher generation (issue #6): a new generation reads only the taken
//! codes of generations whose spec can draw one of its codes. Rows written before have none
//! (NULL): they may hold any code of their length and are always read.
use sea_orm_migration::{prelude::*, schema::*};

pub struct GenerationCodeSpec;

impl MigrationName for GenerationCodeSpec {
    fn name(&self) -> &str {
        "m0014_generation_code_spec"
    }
}

#[derive(DeriveIden)]
enum VoucherGenerations {
    Table,
    CodeSpec,
}

#[async_trait::async_trait]
impl MigrationTrait for GenerationCodeSpec {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(VoucherGenerations::Table)
                .add_column(text_null(VoucherGenerations::CodeSpec))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(VoucherGenerations::Table)
                .drop_column(VoucherGenerations::CodeSpec)
                .to_owned(),
        )
        .await
    }
}

//! Bulk import bookkeeping: which lines of which import became which customer, so a re-sent
//! import skips what it already imported.
use sea_orm_migration::{prelude::*, schema::*};

pub struct Import;

impl MigrationName for Import {
    fn name(&self) -> &str {
        "m0008_import"
    }
}

#[derive(DeriveIden)]
enum ImportRows {
    Table,
    PartnerId,
    ImportId,
    LineNumber,
    CustomerId,
    ImportedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Import {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use ImportRows as R;
        m.create_table(
            Table::create()
                .table(R::Table)
                .if_not_exists()
                .col(uuid(R::PartnerId))
                .col(string_len(R::ImportId, 128))
                .col(big_integer(R::LineNumber))
                .col(uuid(R::CustomerId))
                .col(timestamp_with_time_zone(R::ImportedAt))
                .primary_key(
                    Index::create()
                        .col(R::PartnerId)
                        .col(R::ImportId)
                        .col(R::LineNumber),
                )
                .to_owned(),
        )
        .await
    }
}

//! Card number formats: one per partner, absent until the partner sets one.
//!
//! Identifier states LOST and REPLACED need no schema change: `state` is free text, and the
//! partial unique index of m0002 (`WHERE state <> 'removed'`) keeps their values taken.
use sea_orm_migration::{prelude::*, schema::*};

pub struct Cards;

impl MigrationName for Cards {
    fn name(&self) -> &str {
        "m0007_cards"
    }
}

#[derive(DeriveIden)]
enum CardNumberFormats {
    Table,
    PartnerId,
    DigitsOnly,
    MinLength,
    MaxLength,
    Prefixes,
    Checksum,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Cards {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use CardNumberFormats as F;
        m.create_table(
            Table::create()
                .table(F::Table)
                .col(uuid(F::PartnerId).primary_key())
                .col(boolean(F::DigitsOnly))
                .col(integer(F::MinLength))
                .col(integer(F::MaxLength))
                .col(json(F::Prefixes))
                .col(string(F::Checksum))
                .col(timestamp_with_time_zone(F::UpdatedAt))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(CardNumberFormats::Table).to_owned())
            .await
    }
}

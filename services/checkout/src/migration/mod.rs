//! Schema of the checkout service.
use sea_orm_migration::{prelude::*, schema::*};

loyalty_platform::migrator![InitialSchema];

struct InitialSchema;

impl MigrationName for InitialSchema {
    fn name(&self) -> &str {
        "m0001_checkout_initial"
    }
}

#[derive(DeriveIden)]
enum Purchases {
    Table,
    Id,
    PartnerId,
    TransactionId,
    RequestHash,
    CustomerId,
    Status,
    Receipt,
    CreatedAt,
    CommittedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for InitialSchema {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Purchases::Table)
                .col(uuid(Purchases::Id).primary_key())
                .col(uuid(Purchases::PartnerId))
                .col(string(Purchases::TransactionId))
                .col(string(Purchases::RequestHash))
                .col(uuid(Purchases::CustomerId))
                .col(string(Purchases::Status))
                .col(json(Purchases::Receipt))
                .col(timestamp_with_time_zone(Purchases::CreatedAt))
                .col(timestamp_with_time_zone_null(Purchases::CommittedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("purchases_transaction")
                .table(Purchases::Table)
                .col(Purchases::PartnerId)
                .col(Purchases::TransactionId)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("purchases_customer")
                .table(Purchases::Table)
                .col(Purchases::PartnerId)
                .col(Purchases::CustomerId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Purchases::Table).to_owned())
            .await
    }
}

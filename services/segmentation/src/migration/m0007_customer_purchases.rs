//! `customer_purchases`: every purchase of a customer (projected from checkout's
//! `PurchaseCompleted`/`PurchaseReturned`), what the `purchases.<window>.<measure>` criteria
//! fields are computed from.
use sea_orm_migration::{prelude::*, schema::*};

pub(super) struct CustomerPurchases;

impl MigrationName for CustomerPurchases {
    fn name(&self) -> &str {
        "m0007_customer_purchases"
    }
}

#[derive(DeriveIden)]
enum Purchases {
    #[sea_orm(iden = "customer_purchases")]
    Table,
    PartnerId,
    PurchaseId,
    CustomerId,
    PurchasedAt,
    NetAmountMinor,
    ReturnedAmountMinor,
    BusinessUnitId,
    ProductIds,
    ProductGroupIds,
    BrandIds,
    ReturnIds,
}

#[async_trait::async_trait]
impl MigrationTrait for CustomerPurchases {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // Ids are kept lower-cased (as criteria compare them); the lists are JSON arrays
        // (`jsonb` on PostgreSQL), empty by default, so a row with amounts only is valid.
        m.create_table(
            Table::create()
                .table(Purchases::Table)
                .col(uuid(Purchases::PartnerId))
                .col(uuid(Purchases::PurchaseId))
                .col(uuid(Purchases::CustomerId))
                .col(timestamp_with_time_zone(Purchases::PurchasedAt))
                .col(big_integer(Purchases::NetAmountMinor))
                .col(big_integer(Purchases::ReturnedAmountMinor).default(0))
                .col(text(Purchases::BusinessUnitId).default(""))
                .col(json_binary(Purchases::ProductIds).default("[]"))
                .col(json_binary(Purchases::ProductGroupIds).default("[]"))
                .col(json_binary(Purchases::BrandIds).default("[]"))
                // The return ids already applied, so a return counts once.
                .col(json_binary(Purchases::ReturnIds).default("[]"))
                .primary_key(
                    Index::create()
                        .col(Purchases::PartnerId)
                        .col(Purchases::PurchaseId),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("customer_purchases_customer")
                .table(Purchases::Table)
                .col(Purchases::PartnerId)
                .col(Purchases::CustomerId)
                .col(Purchases::PurchasedAt)
                .to_owned(),
        )
        .await?;
        // A window's purchases of a partner as one index range (what the compiled statement's
        // per-window aggregate reads), customer included so no table row is fetched.
        m.create_index(
            Index::create()
                .name("customer_purchases_time")
                .table(Purchases::Table)
                .col(Purchases::PartnerId)
                .col(Purchases::PurchasedAt)
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

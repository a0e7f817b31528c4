//! Schema of the checkout service.
use sea_orm_migration::{prelude::*, schema::*};

loyalty_platform::migrator![InitialSchema, SagasAndReturns, CollectOrders];

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

/// The commit saga's progress and lease on a pending purchase, the columns purchase history
/// filters on, voids, and the returns of a purchase.
struct SagasAndReturns;

impl MigrationName for SagasAndReturns {
    fn name(&self) -> &str {
        "m0002_sagas_and_returns"
    }
}

#[derive(DeriveIden)]
enum PurchaseColumns {
    #[sea_orm(iden = "purchases")]
    Table,
    Saga,
    Attempt,
    LeaseUntil,
    PurchaseTime,
    BusinessUnitId,
    Channel,
    VoidedAt,
    VoidReason,
    PartnerId,
    CustomerId,
    Id,
}

#[derive(DeriveIden)]
enum PurchaseReturns {
    Table,
    Id,
    PartnerId,
    PurchaseId,
    ReturnId,
    RequestHash,
    Status,
    Receipt,
    CreatedAt,
    CompletedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for SagasAndReturns {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        for column in [
            json_null(PurchaseColumns::Saga),
            big_integer(PurchaseColumns::Attempt).default(0).to_owned(),
            timestamp_with_time_zone_null(PurchaseColumns::LeaseUntil),
            timestamp_with_time_zone_null(PurchaseColumns::PurchaseTime),
            string(PurchaseColumns::BusinessUnitId)
                .default("")
                .to_owned(),
            string(PurchaseColumns::Channel).default("").to_owned(),
            timestamp_with_time_zone_null(PurchaseColumns::VoidedAt),
            string(PurchaseColumns::VoidReason).default("").to_owned(),
        ] {
            m.alter_table(
                Table::alter()
                    .table(PurchaseColumns::Table)
                    .add_column(column)
                    .to_owned(),
            )
            .await?;
        }
        m.get_connection()
            .execute_unprepared("UPDATE purchases SET purchase_time = created_at")
            .await?;
        m.create_index(
            Index::create()
                .name("purchases_history")
                .table(PurchaseColumns::Table)
                .col(PurchaseColumns::PartnerId)
                .col(PurchaseColumns::CustomerId)
                .col(PurchaseColumns::PurchaseTime)
                .col(PurchaseColumns::Id)
                .to_owned(),
        )
        .await?;
        // Only the few pending purchases, for the recovery of abandoned commits.
        m.get_connection()
            .execute_unprepared(
                "CREATE INDEX purchases_pending ON purchases (lease_until) \
                 WHERE status = 'pending'",
            )
            .await?;
        m.create_table(
            Table::create()
                .table(PurchaseReturns::Table)
                .col(uuid(PurchaseReturns::Id).primary_key())
                .col(uuid(PurchaseReturns::PartnerId))
                .col(uuid(PurchaseReturns::PurchaseId))
                .col(string(PurchaseReturns::ReturnId))
                .col(string(PurchaseReturns::RequestHash))
                .col(string(PurchaseReturns::Status))
                .col(json(PurchaseReturns::Receipt))
                .col(timestamp_with_time_zone(PurchaseReturns::CreatedAt))
                .col(timestamp_with_time_zone_null(PurchaseReturns::CompletedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("purchase_returns_return_id")
                .table(PurchaseReturns::Table)
                .col(PurchaseReturns::PartnerId)
                .col(PurchaseReturns::ReturnId)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("purchase_returns_purchase")
                .table(PurchaseReturns::Table)
                .col(PurchaseReturns::PurchaseId)
                .col(PurchaseReturns::CreatedAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(PurchaseReturns::Table).to_owned())
            .await?;
        m.get_connection()
            .execute_unprepared("DROP INDEX purchases_pending")
            .await?;
        m.drop_index(
            Index::drop()
                .name("purchases_history")
                .table(PurchaseColumns::Table)
                .to_owned(),
        )
        .await?;
        for c in [
            PurchaseColumns::VoidReason,
            PurchaseColumns::VoidedAt,
            PurchaseColumns::Channel,
            PurchaseColumns::BusinessUnitId,
            PurchaseColumns::PurchaseTime,
            PurchaseColumns::LeaseUntil,
            PurchaseColumns::Attempt,
            PurchaseColumns::Saga,
        ] {
            m.alter_table(
                Table::alter()
                    .table(PurchaseColumns::Table)
                    .drop_column(c)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

/// Click & collect orders.
struct CollectOrders;

impl MigrationName for CollectOrders {
    fn name(&self) -> &str {
        "m0003_collect_orders"
    }
}

#[derive(DeriveIden)]
enum CollectOrderTable {
    #[sea_orm(iden = "collect_orders")]
    Table,
    Id,
    PartnerId,
    OrderNumber,
    CustomerId,
    BusinessUnitId,
    State,
    RequestHash,
    Body,
    Version,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CollectOrders {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(CollectOrderTable::Table)
                .col(uuid(CollectOrderTable::Id).primary_key())
                .col(uuid(CollectOrderTable::PartnerId))
                .col(string(CollectOrderTable::OrderNumber))
                .col(uuid(CollectOrderTable::CustomerId))
                .col(string(CollectOrderTable::BusinessUnitId))
                .col(string(CollectOrderTable::State))
                .col(string(CollectOrderTable::RequestHash))
                .col(json(CollectOrderTable::Body))
                .col(big_integer(CollectOrderTable::Version))
                .col(timestamp_with_time_zone(CollectOrderTable::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("collect_orders_number")
                .table(CollectOrderTable::Table)
                .col(CollectOrderTable::PartnerId)
                .col(CollectOrderTable::OrderNumber)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("collect_orders_newest")
                .table(CollectOrderTable::Table)
                .col(CollectOrderTable::PartnerId)
                .col(CollectOrderTable::CreatedAt)
                .col(CollectOrderTable::Id)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("collect_orders_customer")
                .table(CollectOrderTable::Table)
                .col(CollectOrderTable::PartnerId)
                .col(CollectOrderTable::CustomerId)
                .col(CollectOrderTable::CreatedAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(CollectOrderTable::Table).to_owned())
            .await
    }
}

//! Schema of the identity service.
use sea_orm_migration::{prelude::*, schema::*};

mod m0004_customer_data;
mod m0005_consents_activity;
mod m0006_accounts;
mod m0007_cards;
mod m0008_import;
mod m0009_customer_referrer;

loyalty_platform::migrator![
    InitialSchema,
    IdentifierLifecycle,
    BusinessUnits,
    CustomerColumns,
    m0004_customer_data::CustomerData,
    m0005_consents_activity::ConsentsActivity,
    m0006_accounts::Accounts,
    m0007_cards::Cards,
    m0008_import::Import,
    m0009_customer_referrer::CustomerReferrer,
];

struct InitialSchema;

impl MigrationName for InitialSchema {
    fn name(&self) -> &str {
        "m0001_identity_initial"
    }
}

#[derive(DeriveIden)]
enum Partners {
    Table,
    Id,
    DisplayName,
    DefaultCurrencyCode,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    PartnerId,
    DisplayName,
    Roles,
    Prefix,
    KeyHash,
    CreatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Customers {
    Table,
    Id,
    PartnerId,
    FirstName,
    LastName,
    Email,
    Phone,
    BirthDate,
    Gender,
    LanguageCode,
    City,
    CountryCode,
    Properties,
    State,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Identifiers {
    Table,
    Id,
    PartnerId,
    CustomerId,
    Kind,
    Value,
    State,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for InitialSchema {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Partners::Table)
                .col(uuid(Partners::Id).primary_key())
                .col(string(Partners::DisplayName))
                .col(string(Partners::DefaultCurrencyCode))
                .col(timestamp_with_time_zone(Partners::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ApiKeys::Table)
                .col(uuid(ApiKeys::Id).primary_key())
                .col(uuid(ApiKeys::PartnerId))
                .col(string(ApiKeys::DisplayName))
                .col(string(ApiKeys::Roles))
                .col(string(ApiKeys::Prefix))
                .col(string_uniq(ApiKeys::KeyHash))
                .col(timestamp_with_time_zone(ApiKeys::CreatedAt))
                .col(timestamp_with_time_zone_null(ApiKeys::RevokedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Customers::Table)
                .col(uuid(Customers::Id).primary_key())
                .col(uuid(Customers::PartnerId))
                .col(string(Customers::FirstName))
                .col(string(Customers::LastName))
                .col(string(Customers::Email))
                .col(string(Customers::Phone))
                .col(string(Customers::BirthDate))
                .col(string(Customers::Gender))
                .col(string(Customers::LanguageCode))
                .col(string(Customers::City))
                .col(string(Customers::CountryCode))
                .col(json(Customers::Properties))
                .col(string(Customers::State))
                .col(timestamp_with_time_zone(Customers::CreatedAt))
                .col(timestamp_with_time_zone(Customers::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("customers_partner")
                .table(Customers::Table)
                .col(Customers::PartnerId)
                .col(Customers::Id)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Identifiers::Table)
                .col(uuid(Identifiers::Id).primary_key())
                .col(uuid(Identifiers::PartnerId))
                .col(uuid(Identifiers::CustomerId))
                .col(string(Identifiers::Kind))
                .col(string(Identifiers::Value))
                .col(string(Identifiers::State))
                .col(timestamp_with_time_zone(Identifiers::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("identifiers_unique_value")
                .table(Identifiers::Table)
                .col(Identifiers::PartnerId)
                .col(Identifiers::Kind)
                .col(Identifiers::Value)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("identifiers_customer")
                .table(Identifiers::Table)
                .col(Identifiers::CustomerId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            Identifiers::Table.into_iden(),
            Customers::Table.into_iden(),
            ApiKeys::Table.into_iden(),
            Partners::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

/// Identifier states with a reason, and uniqueness only among identifiers still assigned, so a
/// removed card number can be given out again.
struct IdentifierLifecycle;

impl MigrationName for IdentifierLifecycle {
    fn name(&self) -> &str {
        "m0002_identifier_lifecycle"
    }
}

#[derive(DeriveIden)]
enum IdentifierColumns {
    #[sea_orm(iden = "identifiers")]
    Table,
    BlockReason,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for IdentifierLifecycle {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        m.alter_table(
            Table::alter()
                .table(IdentifierColumns::Table)
                .add_column(string(IdentifierColumns::BlockReason).default(""))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(IdentifierColumns::Table)
                .add_column(timestamp_with_time_zone_null(IdentifierColumns::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("identifiers_unique_value")
                .table(Identifiers::Table)
                .to_owned(),
        )
        .await?;
        // Partial unique index: the same syntax on PostgreSQL and SQLite.
        m.get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX identifiers_unique_assigned_value \
                 ON identifiers (partner_id, kind, value) WHERE state <> 'removed'",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared("DROP INDEX identifiers_unique_assigned_value")
            .await?;
        m.create_index(
            Index::create()
                .name("identifiers_unique_value")
                .table(Identifiers::Table)
                .col(Identifiers::PartnerId)
                .col(Identifiers::Kind)
                .col(Identifiers::Value)
                .unique()
                .to_owned(),
        )
        .await
    }
}

/// Business units: stores, e-shops, kiosks… of a partner.
struct BusinessUnits;

impl MigrationName for BusinessUnits {
    fn name(&self) -> &str {
        "m0003_business_units"
    }
}

#[derive(DeriveIden)]
enum BusinessUnitsTable {
    #[sea_orm(iden = "business_units")]
    Table,
    Id,
    PartnerId,
    Code,
    DisplayName,
    UnitType,
    State,
    Channels,
    ParentId,
    Address,
    City,
    CountryCode,
    TimeZone,
    OwnerName,
    Version,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for BusinessUnits {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use BusinessUnitsTable as B;
        m.create_table(
            Table::create()
                .table(B::Table)
                .col(uuid(B::Id).primary_key())
                .col(uuid(B::PartnerId))
                .col(string(B::Code))
                .col(string(B::DisplayName))
                .col(string(B::UnitType))
                .col(string(B::State))
                .col(json(B::Channels))
                .col(uuid_null(B::ParentId))
                .col(string(B::Address))
                .col(string(B::City))
                .col(string(B::CountryCode))
                .col(string(B::TimeZone))
                .col(string(B::OwnerName))
                .col(big_integer(B::Version))
                .col(timestamp_with_time_zone(B::CreatedAt))
                .col(timestamp_with_time_zone(B::UpdatedAt))
                .col(timestamp_with_time_zone_null(B::DeletedAt))
                .to_owned(),
        )
        .await?;
        m.get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX business_units_unique_code \
                 ON business_units (partner_id, code) WHERE deleted_at IS NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(BusinessUnitsTable::Table).to_owned())
            .await
    }
}

/// Addresses, catalogue references and the lifecycle columns (block, erase, merge) of
/// customers.
struct CustomerColumns;

impl MigrationName for CustomerColumns {
    fn name(&self) -> &str {
        "m0003b_customer_columns"
    }
}

#[derive(DeriveIden)]
enum CustomersTable {
    #[sea_orm(iden = "customers")]
    Table,
    Street,
    PostalCode,
    HomeBusinessUnitId,
    ContactSourceIds,
    InterestIds,
    BlockReason,
    BlockedAt,
    ErasedAt,
    MergedInto,
}

#[async_trait::async_trait]
impl MigrationTrait for CustomerColumns {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use CustomersTable as C;
        // SQLite alters one column per statement.
        let columns = [
            string(C::Street).default("").to_owned(),
            string(C::PostalCode).default("").to_owned(),
            uuid_null(C::HomeBusinessUnitId).to_owned(),
            json(C::ContactSourceIds).default("[]").to_owned(),
            json(C::InterestIds).default("[]").to_owned(),
            string(C::BlockReason).default("").to_owned(),
            timestamp_with_time_zone_null(C::BlockedAt).to_owned(),
            timestamp_with_time_zone_null(C::ErasedAt).to_owned(),
            uuid_null(C::MergedInto).to_owned(),
        ];
        for mut column in columns {
            m.alter_table(
                Table::alter()
                    .table(C::Table)
                    .add_column(&mut column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

//! Partner settings (time zone, update time), the customer search index, erasure records and
//! the account history (Customer 360 timeline).
use sea_orm::DbBackend;
use sea_orm_migration::{prelude::*, schema::*};

pub struct Accounts;

impl MigrationName for Accounts {
    fn name(&self) -> &str {
        "m0006_accounts"
    }
}

#[derive(DeriveIden)]
enum Partners {
    Table,
    TimeZone,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CustomerSearchTerms {
    Table,
    PartnerId,
    CustomerId,
    Field,
    Term,
}

#[derive(DeriveIden)]
enum CustomerErasures {
    Table,
    CustomerId,
    PartnerId,
    ErasedAt,
    Reason,
}

#[derive(DeriveIden)]
enum AccountHistory {
    Table,
    Id,
    PartnerId,
    CustomerId,
    Kind,
    EventType,
    EventId,
    Summary,
    ResourceType,
    ResourceId,
    Details,
    OccurredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Accounts {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let postgres = db.get_database_backend() == DbBackend::Postgres;
        // SQLite alters one column per statement.
        m.alter_table(
            Table::alter()
                .table(Partners::Table)
                .add_column(string(Partners::TimeZone).default("UTC"))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Partners::Table)
                .add_column(timestamp_with_time_zone_null(Partners::UpdatedAt))
                .to_owned(),
        )
        .await?;

        // One row per searchable word of an account (see domain::accounts::search_terms).
        m.create_table(
            Table::create()
                .table(CustomerSearchTerms::Table)
                .col(uuid(CustomerSearchTerms::PartnerId))
                .col(uuid(CustomerSearchTerms::CustomerId))
                .col(string(CustomerSearchTerms::Field))
                .col(string(CustomerSearchTerms::Term))
                .primary_key(
                    Index::create()
                        .col(CustomerSearchTerms::CustomerId)
                        .col(CustomerSearchTerms::Field)
                        .col(CustomerSearchTerms::Term),
                )
                .to_owned(),
        )
        .await?;
        if postgres {
            // Byte-wise collation: a plain B-tree then serves `term LIKE 'prefix%'`.
            db.execute_unprepared(
                "ALTER TABLE customer_search_terms ALTER COLUMN term TYPE varchar COLLATE \"C\"",
            )
            .await?;
        }
        m.create_index(
            Index::create()
                .name("customer_search_terms_prefix")
                .table(CustomerSearchTerms::Table)
                .col(CustomerSearchTerms::PartnerId)
                .col(CustomerSearchTerms::Term)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(CustomerErasures::Table)
                .col(uuid(CustomerErasures::CustomerId).primary_key())
                .col(uuid(CustomerErasures::PartnerId))
                .col(timestamp_with_time_zone(CustomerErasures::ErasedAt))
                .col(string(CustomerErasures::Reason))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(AccountHistory::Table)
                .col(uuid(AccountHistory::Id).primary_key())
                .col(uuid(AccountHistory::PartnerId))
                .col(uuid(AccountHistory::CustomerId))
                .col(string(AccountHistory::Kind))
                .col(string(AccountHistory::EventType))
                .col(uuid(AccountHistory::EventId))
                .col(string(AccountHistory::Summary))
                .col(string(AccountHistory::ResourceType))
                .col(string(AccountHistory::ResourceId))
                .col(json(AccountHistory::Details))
                .col(timestamp_with_time_zone(AccountHistory::OccurredAt))
                .to_owned(),
        )
        .await?;
        // The timeline of one customer, newest first.
        m.create_index(
            Index::create()
                .name("account_history_timeline")
                .table(AccountHistory::Table)
                .col(AccountHistory::PartnerId)
                .col(AccountHistory::CustomerId)
                .col(AccountHistory::OccurredAt)
                .col(AccountHistory::Id)
                .to_owned(),
        )
        .await?;

        // ListCustomers filters.
        for (name, column) in [
            ("customers_partner_email", "email"),
            ("customers_partner_phone", "phone"),
            ("customers_partner_updated", "updated_at"),
        ] {
            db.execute_unprepared(&format!(
                "CREATE INDEX {name} ON customers (partner_id, {column})"
            ))
            .await?;
        }
        Ok(())
    }
}

//! Consent types, consents and their history, bounce state, event types and tracked events.
use sea_orm_migration::{prelude::*, schema::*};

pub struct ConsentsActivity;

impl MigrationName for ConsentsActivity {
    fn name(&self) -> &str {
        "m0005_consents_activity"
    }
}

#[derive(DeriveIden)]
enum ConsentTypes {
    Table,
    Id,
    PartnerId,
    Code,
    DisplayName,
    Purpose,
    Channels,
    Text,
    Version,
    ValidityDays,
    Active,
    Revision,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Consents {
    Table,
    PartnerId,
    CustomerId,
    ConsentTypeId,
    State,
    TextVersion,
    Source,
    ChangedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum ConsentHistory {
    Table,
    Id,
    PartnerId,
    CustomerId,
    ConsentTypeId,
    PreviousState,
    NewState,
    TextVersion,
    Source,
    ApiKeyId,
    Note,
    ChangedAt,
}

#[derive(DeriveIden)]
enum EmailBounceStates {
    Table,
    PartnerId,
    CustomerId,
    Email,
    HardBounced,
    SoftBounceCount,
    LastBounceAt,
    ResetAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum EmailBounces {
    Table,
    PartnerId,
    BounceKey,
    CustomerId,
    Hard,
    BouncedAt,
}

#[derive(DeriveIden)]
enum EventTypes {
    Table,
    Id,
    PartnerId,
    Code,
    DisplayName,
    GroupName,
    Properties,
    Active,
    Revision,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CustomerEvents {
    Table,
    Id,
    PartnerId,
    CustomerId,
    EventTypeId,
    EventTypeCode,
    Properties,
    BusinessUnitId,
    OccurredAt,
    CreatedAt,
    Payload,
    PurchaseId,
    IdempotencyKey,
    RequestHash,
}

#[async_trait::async_trait]
impl MigrationTrait for ConsentsActivity {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ConsentTypes::Table)
                .col(uuid(ConsentTypes::Id).primary_key())
                .col(uuid(ConsentTypes::PartnerId))
                .col(string(ConsentTypes::Code))
                .col(string(ConsentTypes::DisplayName))
                .col(string(ConsentTypes::Purpose))
                .col(json(ConsentTypes::Channels))
                .col(text(ConsentTypes::Text))
                .col(integer(ConsentTypes::Version))
                .col(integer(ConsentTypes::ValidityDays))
                .col(boolean(ConsentTypes::Active))
                .col(big_integer(ConsentTypes::Revision))
                .col(timestamp_with_time_zone(ConsentTypes::CreatedAt))
                .col(timestamp_with_time_zone(ConsentTypes::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("consent_types_unique_code")
                .table(ConsentTypes::Table)
                .col(ConsentTypes::PartnerId)
                .col(ConsentTypes::Code)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Consents::Table)
                .col(uuid(Consents::PartnerId))
                .col(uuid(Consents::CustomerId))
                .col(uuid(Consents::ConsentTypeId))
                .col(string(Consents::State))
                .col(integer(Consents::TextVersion))
                .col(string(Consents::Source))
                .col(timestamp_with_time_zone(Consents::ChangedAt))
                .col(timestamp_with_time_zone_null(Consents::ExpiresAt))
                .primary_key(
                    Index::create()
                        .col(Consents::PartnerId)
                        .col(Consents::CustomerId)
                        .col(Consents::ConsentTypeId),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(ConsentHistory::Table)
                .col(uuid(ConsentHistory::Id).primary_key())
                .col(uuid(ConsentHistory::PartnerId))
                .col(uuid(ConsentHistory::CustomerId))
                .col(uuid(ConsentHistory::ConsentTypeId))
                .col(string(ConsentHistory::PreviousState))
                .col(string(ConsentHistory::NewState))
                .col(integer(ConsentHistory::TextVersion))
                .col(string(ConsentHistory::Source))
                .col(uuid_null(ConsentHistory::ApiKeyId))
                .col(text(ConsentHistory::Note))
                .col(timestamp_with_time_zone(ConsentHistory::ChangedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("consent_history_customer")
                .table(ConsentHistory::Table)
                .col(ConsentHistory::PartnerId)
                .col(ConsentHistory::CustomerId)
                .col(ConsentHistory::ChangedAt)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(EmailBounceStates::Table)
                .col(uuid(EmailBounceStates::PartnerId))
                .col(uuid(EmailBounceStates::CustomerId))
                .col(string(EmailBounceStates::Email))
                .col(boolean(EmailBounceStates::HardBounced))
                .col(integer(EmailBounceStates::SoftBounceCount))
                .col(timestamp_with_time_zone_null(
                    EmailBounceStates::LastBounceAt,
                ))
                .col(timestamp_with_time_zone_null(EmailBounceStates::ResetAt))
                .col(timestamp_with_time_zone(EmailBounceStates::UpdatedAt))
                .primary_key(
                    Index::create()
                        .col(EmailBounceStates::PartnerId)
                        .col(EmailBounceStates::CustomerId),
                )
                .to_owned(),
        )
        .await?;

        // One row per bounce counted, keyed by message and by idempotency key / event id, so a
        // bounce arriving both as an RPC and as a campaigns event counts once.
        m.create_table(
            Table::create()
                .table(EmailBounces::Table)
                .col(uuid(EmailBounces::PartnerId))
                .col(string(EmailBounces::BounceKey))
                .col(uuid(EmailBounces::CustomerId))
                .col(boolean(EmailBounces::Hard))
                .col(timestamp_with_time_zone(EmailBounces::BouncedAt))
                .primary_key(
                    Index::create()
                        .col(EmailBounces::PartnerId)
                        .col(EmailBounces::BounceKey),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(EventTypes::Table)
                .col(uuid(EventTypes::Id).primary_key())
                .col(uuid(EventTypes::PartnerId))
                .col(string(EventTypes::Code))
                .col(string(EventTypes::DisplayName))
                .col(string(EventTypes::GroupName))
                .col(json(EventTypes::Properties))
                .col(boolean(EventTypes::Active))
                .col(big_integer(EventTypes::Revision))
                .col(timestamp_with_time_zone(EventTypes::CreatedAt))
                .col(timestamp_with_time_zone(EventTypes::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("event_types_unique_code")
                .table(EventTypes::Table)
                .col(EventTypes::PartnerId)
                .col(EventTypes::Code)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(CustomerEvents::Table)
                .col(uuid(CustomerEvents::Id).primary_key())
                .col(uuid(CustomerEvents::PartnerId))
                .col(uuid(CustomerEvents::CustomerId))
                .col(uuid(CustomerEvents::EventTypeId))
                .col(string(CustomerEvents::EventTypeCode))
                .col(json(CustomerEvents::Properties))
                .col(uuid_null(CustomerEvents::BusinessUnitId))
                .col(timestamp_with_time_zone(CustomerEvents::OccurredAt))
                .col(timestamp_with_time_zone(CustomerEvents::CreatedAt))
                .col(text(CustomerEvents::Payload))
                .col(string(CustomerEvents::PurchaseId))
                .col(string(CustomerEvents::IdempotencyKey))
                .col(string(CustomerEvents::RequestHash))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("customer_events_unique_key")
                .table(CustomerEvents::Table)
                .col(CustomerEvents::PartnerId)
                .col(CustomerEvents::IdempotencyKey)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("customer_events_customer")
                .table(CustomerEvents::Table)
                .col(CustomerEvents::PartnerId)
                .col(CustomerEvents::CustomerId)
                .col(CustomerEvents::OccurredAt)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            CustomerEvents::Table.into_iden(),
            EventTypes::Table.into_iden(),
            EmailBounces::Table.into_iden(),
            EmailBounceStates::Table.into_iden(),
            ConsentHistory::Table.into_iden(),
            Consents::Table.into_iden(),
            ConsentTypes::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

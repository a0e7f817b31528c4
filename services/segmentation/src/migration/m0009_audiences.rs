//! Audiences (seed 001): the definitions, their members (fixed at creation, then changed only by
//! hand) and their membership history. Kept in tables of their own, apart from segments: an
//! audience is locked by a campaign launch and its history outlives it.
use sea_orm_migration::{prelude::*, schema::*};

pub struct Audiences;

impl MigrationName for Audiences {
    fn name(&self) -> &str {
        "m0009_audiences"
    }
}

#[derive(DeriveIden)]
enum Audience {
    #[sea_orm(iden = "audiences")]
    Table,
    Id,
    PartnerId,
    DisplayName,
    Channel,
    Criterion,
    RequiredConsents,
    State,
    MemberCount,
    NoConsentCount,
    NoAddressCount,
    HardBounceCount,
    SoftBounceCount,
    SourceAudienceId,
    CampaignId,
    LockedAt,
    Note,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AudienceMembers {
    Table,
    AudienceId,
    CustomerId,
    PartnerId,
    AddedAt,
    Cause,
}

#[derive(DeriveIden, Clone, Copy)]
pub(super) enum AudienceHistory {
    Table,
    Id,
    PartnerId,
    AudienceId,
    CustomerId,
    Change,
    At,
    Cause,
    AudienceDisplayName,
}

#[async_trait::async_trait]
impl MigrationTrait for Audiences {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Audience::Table)
                .col(uuid(Audience::Id).primary_key())
                .col(uuid(Audience::PartnerId))
                .col(string(Audience::DisplayName))
                .col(string(Audience::Channel))
                .col(json(Audience::Criterion))
                .col(json(Audience::RequiredConsents))
                .col(string(Audience::State))
                .col(big_integer(Audience::MemberCount))
                .col(big_integer(Audience::NoConsentCount))
                .col(big_integer(Audience::NoAddressCount))
                .col(big_integer(Audience::HardBounceCount))
                .col(big_integer(Audience::SoftBounceCount))
                .col(uuid_null(Audience::SourceAudienceId))
                .col(uuid_null(Audience::CampaignId))
                .col(timestamp_with_time_zone_null(Audience::LockedAt))
                .col(text(Audience::Note))
                .col(big_integer(Audience::Version))
                .col(timestamp_with_time_zone(Audience::CreatedAt))
                .col(timestamp_with_time_zone(Audience::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("audiences_partner")
                .table(Audience::Table)
                .col(Audience::PartnerId)
                .col(Audience::Id)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AudienceMembers::Table)
                .col(uuid(AudienceMembers::AudienceId))
                .col(uuid(AudienceMembers::CustomerId))
                .col(uuid(AudienceMembers::PartnerId))
                .col(timestamp_with_time_zone(AudienceMembers::AddedAt))
                .col(string(AudienceMembers::Cause))
                .primary_key(
                    Index::create()
                        .col(AudienceMembers::AudienceId)
                        .col(AudienceMembers::CustomerId),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("audience_members_customer")
                .table(AudienceMembers::Table)
                .col(AudienceMembers::PartnerId)
                .col(AudienceMembers::CustomerId)
                .to_owned(),
        )
        .await?;
        m.create_table(history_table(
            AudienceHistory::Table,
            &[AudienceHistory::Id],
        ))
        .await?;
        for index in history_indexes() {
            m.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            AudienceHistory::Table.into_iden(),
            AudienceMembers::Table.into_iden(),
            Audience::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

/// The audience history table named `table` with the primary key `key` (m0014 changes it).
pub(super) fn history_table(
    table: impl IntoIden + 'static,
    key: &[AudienceHistory],
) -> TableCreateStatement {
    let mut primary = Index::create();
    for k in key {
        primary.col(*k);
    }
    Table::create()
        .table(table)
        .col(uuid(AudienceHistory::Id))
        .col(uuid(AudienceHistory::PartnerId))
        .col(uuid(AudienceHistory::AudienceId))
        .col(uuid(AudienceHistory::CustomerId))
        .col(string(AudienceHistory::Change))
        .col(timestamp_with_time_zone(AudienceHistory::At))
        .col(string(AudienceHistory::Cause))
        .col(string(AudienceHistory::AudienceDisplayName))
        .primary_key(&mut primary)
        .to_owned()
}

/// The history's indexes: by customer and by audience, each in time order.
pub(super) fn history_indexes() -> Vec<IndexCreateStatement> {
    [
        ("audience_history_customer", AudienceHistory::CustomerId),
        ("audience_history_audience", AudienceHistory::AudienceId),
    ]
    .into_iter()
    .map(|(name, col)| {
        Index::create()
            .name(name)
            .table(AudienceHistory::Table)
            .col(AudienceHistory::PartnerId)
            .col(col)
            .col(AudienceHistory::At)
            .to_owned()
    })
    .collect()
}

//! Membership levels (issue #6): the tier ladder, each customer's qualifying activity, tier
//! state and tier history.
use sea_orm_migration::{prelude::*, schema::*};

pub struct Tiers;

impl MigrationName for Tiers {
    fn name(&self) -> &str {
        "m0006_tiers"
    }
}

#[derive(DeriveIden)]
enum TiersTable {
    #[sea_orm(iden = "tiers")]
    Table,
    Id,
    PartnerId,
    Code,
    DisplayName,
    Rank,
    MinSpendMinor,
    MinSpendCurrency,
    MinPurchaseCount,
    MinPoints,
    PointsType,
    PeriodKind,
    PeriodLength,
    RetentionMonths,
    DowngradeMode,
    PointsMultiplierBasisPoints,
    DiscountBasisPoints,
    IconUrl,
    Color,
    Revision,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum TierActivities {
    Table,
    Id,
    PartnerId,
    CustomerId,
    SourceKey,
    Kind,
    OccurredAt,
    CurrencyCode,
    SpendMinor,
    Purchases,
    Points,
    PointsTypeId,
    PointsTypeCode,
}

#[derive(DeriveIden)]
enum CustomerTiers {
    Table,
    PartnerId,
    CustomerId,
    QualifiedTierId,
    QualifiedUntil,
    ManualTierId,
    ManualUntil,
    ManualReason,
    Since,
    ReviewAt,
    EvaluatedAt,
}

#[derive(DeriveIden)]
enum CustomerTierHistory {
    Table,
    Id,
    PartnerId,
    CustomerId,
    PreviousTierId,
    PreviousRank,
    TierId,
    Rank,
    Cause,
    Manual,
    Reason,
    ChangedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Tiers {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(TiersTable::Table)
                .col(uuid(TiersTable::Id).primary_key())
                .col(uuid(TiersTable::PartnerId))
                .col(string(TiersTable::Code))
                .col(string(TiersTable::DisplayName))
                .col(integer(TiersTable::Rank))
                .col(big_integer_null(TiersTable::MinSpendMinor))
                .col(string(TiersTable::MinSpendCurrency))
                .col(big_integer(TiersTable::MinPurchaseCount))
                .col(big_integer(TiersTable::MinPoints))
                .col(string(TiersTable::PointsType))
                .col(string(TiersTable::PeriodKind))
                .col(integer(TiersTable::PeriodLength))
                .col(integer(TiersTable::RetentionMonths))
                .col(string(TiersTable::DowngradeMode))
                .col(integer(TiersTable::PointsMultiplierBasisPoints))
                .col(integer(TiersTable::DiscountBasisPoints))
                .col(string(TiersTable::IconUrl))
                .col(string(TiersTable::Color))
                .col(big_integer(TiersTable::Revision))
                .col(timestamp_with_time_zone(TiersTable::CreatedAt))
                .col(timestamp_with_time_zone(TiersTable::UpdatedAt))
                .to_owned(),
        )
        .await?;
        for (name, col) in [
            ("tiers_partner_code", TiersTable::Code),
            ("tiers_partner_rank", TiersTable::Rank),
        ] {
            m.create_index(
                Index::create()
                    .name(name)
                    .table(TiersTable::Table)
                    .col(TiersTable::PartnerId)
                    .col(col)
                    .unique()
                    .to_owned(),
            )
            .await?;
        }
        m.create_table(
            Table::create()
                .table(TierActivities::Table)
                .col(uuid(TierActivities::Id).primary_key())
                .col(uuid(TierActivities::PartnerId))
                .col(uuid(TierActivities::CustomerId))
                .col(string(TierActivities::SourceKey))
                .col(string(TierActivities::Kind))
                .col(timestamp_with_time_zone(TierActivities::OccurredAt))
                .col(string(TierActivities::CurrencyCode))
                .col(big_integer(TierActivities::SpendMinor))
                .col(big_integer(TierActivities::Purchases))
                .col(big_integer(TierActivities::Points))
                .col(string(TierActivities::PointsTypeId))
                .col(string(TierActivities::PointsTypeCode))
                .to_owned(),
        )
        .await?;
        // One row per purchase, return or posting: a redelivered event adds nothing.
        m.create_index(
            Index::create()
                .name("tier_activities_partner_source")
                .table(TierActivities::Table)
                .col(TierActivities::PartnerId)
                .col(TierActivities::SourceKey)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("tier_activities_customer_time")
                .table(TierActivities::Table)
                .col(TierActivities::PartnerId)
                .col(TierActivities::CustomerId)
                .col(TierActivities::OccurredAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(CustomerTiers::Table)
                .col(uuid(CustomerTiers::PartnerId))
                .col(uuid(CustomerTiers::CustomerId))
                .col(uuid_null(CustomerTiers::QualifiedTierId))
                .col(timestamp_with_time_zone_null(CustomerTiers::QualifiedUntil))
                .col(uuid_null(CustomerTiers::ManualTierId))
                .col(timestamp_with_time_zone_null(CustomerTiers::ManualUntil))
                .col(text(CustomerTiers::ManualReason))
                .col(timestamp_with_time_zone_null(CustomerTiers::Since))
                .col(timestamp_with_time_zone_null(CustomerTiers::ReviewAt))
                .col(timestamp_with_time_zone(CustomerTiers::EvaluatedAt))
                .primary_key(
                    Index::create()
                        .col(CustomerTiers::PartnerId)
                        .col(CustomerTiers::CustomerId),
                )
                .to_owned(),
        )
        .await?;
        // The period-end job reads the customers whose review is due.
        m.create_index(
            Index::create()
                .name("customer_tiers_review")
                .table(CustomerTiers::Table)
                .col(CustomerTiers::ReviewAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(CustomerTierHistory::Table)
                .col(uuid(CustomerTierHistory::Id).primary_key())
                .col(uuid(CustomerTierHistory::PartnerId))
                .col(uuid(CustomerTierHistory::CustomerId))
                .col(uuid_null(CustomerTierHistory::PreviousTierId))
                .col(integer(CustomerTierHistory::PreviousRank))
                .col(uuid_null(CustomerTierHistory::TierId))
                .col(integer(CustomerTierHistory::Rank))
                .col(string(CustomerTierHistory::Cause))
                .col(boolean(CustomerTierHistory::Manual))
                .col(text(CustomerTierHistory::Reason))
                .col(timestamp_with_time_zone(CustomerTierHistory::ChangedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("customer_tier_history_customer")
                .table(CustomerTierHistory::Table)
                .col(CustomerTierHistory::PartnerId)
                .col(CustomerTierHistory::CustomerId)
                .col(CustomerTierHistory::Id)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            CustomerTierHistory::Table.into_iden(),
            CustomerTiers::Table.into_iden(),
            TierActivities::Table.into_iden(),
            TiersTable::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

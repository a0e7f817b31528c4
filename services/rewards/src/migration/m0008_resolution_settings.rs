//! Resolution settings (issue #6): one row per partner that changed its defaults.
use sea_orm_migration::{prelude::*, schema::*};

pub struct ResolutionSettings;

impl MigrationName for ResolutionSettings {
    fn name(&self) -> &str {
        "m0008_resolution_settings"
    }
}

#[derive(DeriveIden)]
enum RewardResolutionSettings {
    Table,
    PartnerId,
    OfferMode,
    MaxAwardsPerEvent,
    DiscountMode,
    CombineCampaignProducts,
    MaxVouchersPerPurchase,
    MaxRulesPerPurchase,
    RuleGroups,
    Revision,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for ResolutionSettings {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(RewardResolutionSettings::Table)
                .col(uuid(RewardResolutionSettings::PartnerId).primary_key())
                .col(string(RewardResolutionSettings::OfferMode))
                .col(integer(RewardResolutionSettings::MaxAwardsPerEvent))
                .col(string(RewardResolutionSettings::DiscountMode))
                .col(boolean(RewardResolutionSettings::CombineCampaignProducts))
                .col(integer(RewardResolutionSettings::MaxVouchersPerPurchase))
                .col(integer(RewardResolutionSettings::MaxRulesPerPurchase))
                .col(json(RewardResolutionSettings::RuleGroups))
                .col(big_integer(RewardResolutionSettings::Revision))
                .col(timestamp_with_time_zone(
                    RewardResolutionSettings::UpdatedAt,
                ))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table(RewardResolutionSettings::Table)
                .to_owned(),
        )
        .await
    }
}

//! Schema of the rewards service.
use sea_orm_migration::{prelude::*, schema::*};

mod m0002_catalogue;
mod m0003_vouchers;
mod m0004_reward_definitions;
mod m0005_campaign_products_bonuses;
mod m0006_tiers;
mod m0007_schemes;
mod m0008_resolution_settings;
mod m0009_voucher_codes;
mod m0010_voucher_codes_narrow;
mod m0012_offer_vouchers_referrals;
mod m0013_scheme_sign_up_segments;
mod m0014_generation_code_spec;
mod m0015_voucher_batch_issue;

loyalty_platform::migrator![
    InitialSchema,
    m0002_catalogue::Catalogue,
    m0003_vouchers::Vouchers,
    m0004_reward_definitions::RewardDefinitions,
    m0005_campaign_products_bonuses::CampaignProductsBonuses,
    m0006_tiers::Tiers,
    m0007_schemes::Schemes,
    m0008_resolution_settings::ResolutionSettings,
    m0009_voucher_codes::VoucherCodes,
    m0010_voucher_codes_narrow::VoucherCodesNarrow,
    m0012_offer_vouchers_referrals::OfferVouchersReferrals,
    m0013_scheme_sign_up_segments::SchemeSignUpSegments,
    m0014_generation_code_spec::GenerationCodeSpec,
    m0015_voucher_batch_issue::VoucherBatchIssue,
];

struct InitialSchema;

impl MigrationName for InitialSchema {
    fn name(&self) -> &str {
        "m0001_rewards_initial"
    }
}

#[derive(DeriveIden)]
enum Rewards {
    Table,
    Id,
    PartnerId,
    DisplayName,
    Description,
    RewardType,
    Benefit,
    SegmentIds,
    ValidFrom,
    ValidUntil,
    CreatedAt,
}

#[derive(DeriveIden)]
enum PurchaseBonuses {
    Table,
    Id,
    PartnerId,
    DisplayName,
    Points,
    SpendAmountMinor,
    CurrencyCode,
    MultiplierBasisPoints,
    SegmentIds,
    ValidFrom,
    ValidUntil,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for InitialSchema {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Rewards::Table)
                .col(uuid(Rewards::Id).primary_key())
                .col(uuid(Rewards::PartnerId))
                .col(string(Rewards::DisplayName))
                .col(text(Rewards::Description))
                .col(string(Rewards::RewardType))
                .col(json(Rewards::Benefit))
                .col(json(Rewards::SegmentIds))
                .col(timestamp_with_time_zone_null(Rewards::ValidFrom))
                .col(timestamp_with_time_zone_null(Rewards::ValidUntil))
                .col(timestamp_with_time_zone(Rewards::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("rewards_partner")
                .table(Rewards::Table)
                .col(Rewards::PartnerId)
                .col(Rewards::Id)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(PurchaseBonuses::Table)
                .col(uuid(PurchaseBonuses::Id).primary_key())
                .col(uuid(PurchaseBonuses::PartnerId))
                .col(string(PurchaseBonuses::DisplayName))
                .col(big_integer(PurchaseBonuses::Points))
                .col(big_integer(PurchaseBonuses::SpendAmountMinor))
                .col(string(PurchaseBonuses::CurrencyCode))
                .col(integer(PurchaseBonuses::MultiplierBasisPoints))
                .col(json(PurchaseBonuses::SegmentIds))
                .col(timestamp_with_time_zone_null(PurchaseBonuses::ValidFrom))
                .col(timestamp_with_time_zone_null(PurchaseBonuses::ValidUntil))
                .col(timestamp_with_time_zone(PurchaseBonuses::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("purchase_bonuses_partner")
                .table(PurchaseBonuses::Table)
                .col(PurchaseBonuses::PartnerId)
                .col(PurchaseBonuses::Id)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            Rewards::Table.into_iden(),
            PurchaseBonuses::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

//! Reward schemes, memberships, offers, commercial terms, offer progress and awards (issue #6).
use sea_orm_migration::{prelude::*, schema::*};

pub struct Schemes;

impl MigrationName for Schemes {
    fn name(&self) -> &str {
        "m0007_schemes"
    }
}

#[derive(DeriveIden)]
enum RewardSchemes {
    Table,
    Id,
    PartnerId,
    Code,
    DisplayName,
    Description,
    SignUpOption,
    SignUpCodes,
    EmailDomains,
    MaxMembers,
    MemberCount,
    Active,
    Revision,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SchemeMemberships {
    Table,
    Id,
    PartnerId,
    SchemeId,
    CustomerId,
    JoinTime,
    LeaveTime,
}

#[derive(DeriveIden)]
enum RewardOffers {
    Table,
    Id,
    PartnerId,
    SchemeId,
    State,
    GoalGroup,
    MerchantBusinessUnitId,
    CommercialTermsId,
    Priority,
    Spec,
    Revision,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CommercialTerms {
    Table,
    Id,
    PartnerId,
    MerchantBusinessUnitId,
    ValidFrom,
    ValidUntil,
    Spec,
    Revision,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OfferProgress {
    Table,
    PartnerId,
    OfferId,
    CustomerId,
    State,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OfferActivities {
    Table,
    PartnerId,
    CustomerId,
    ActivityId,
    AppliedAt,
}

#[derive(DeriveIden)]
enum OfferAwards {
    Table,
    Id,
    PartnerId,
    OfferId,
    CustomerId,
    Sequence,
    AmountMinor,
    CurrencyCode,
    Points,
    PointsTypeId,
    AutoRedeem,
    PurchaseId,
    BusinessUnitId,
    ExpireAt,
    AwardedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Schemes {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(RewardSchemes::Table)
                .col(uuid(RewardSchemes::Id).primary_key())
                .col(uuid(RewardSchemes::PartnerId))
                .col(string(RewardSchemes::Code))
                .col(string(RewardSchemes::DisplayName))
                .col(text(RewardSchemes::Description))
                .col(string(RewardSchemes::SignUpOption))
                .col(json(RewardSchemes::SignUpCodes))
                .col(json(RewardSchemes::EmailDomains))
                .col(big_integer(RewardSchemes::MaxMembers))
                .col(big_integer(RewardSchemes::MemberCount))
                .col(boolean(RewardSchemes::Active))
                .col(big_integer(RewardSchemes::Revision))
                .col(timestamp_with_time_zone(RewardSchemes::CreatedAt))
                .col(timestamp_with_time_zone(RewardSchemes::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("reward_schemes_partner_code")
                .table(RewardSchemes::Table)
                .col(RewardSchemes::PartnerId)
                .col(RewardSchemes::Code)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(SchemeMemberships::Table)
                .col(uuid(SchemeMemberships::Id).primary_key())
                .col(uuid(SchemeMemberships::PartnerId))
                .col(uuid(SchemeMemberships::SchemeId))
                .col(uuid(SchemeMemberships::CustomerId))
                .col(timestamp_with_time_zone(SchemeMemberships::JoinTime))
                .col(timestamp_with_time_zone_null(SchemeMemberships::LeaveTime))
                .to_owned(),
        )
        .await?;
        // At most one current membership per customer and scheme; past ones are kept.
        m.get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX scheme_memberships_current ON scheme_memberships \
                 (partner_id, scheme_id, customer_id) WHERE leave_time IS NULL",
            )
            .await?;
        m.create_index(
            Index::create()
                .name("scheme_memberships_customer")
                .table(SchemeMemberships::Table)
                .col(SchemeMemberships::PartnerId)
                .col(SchemeMemberships::CustomerId)
                .col(SchemeMemberships::Id)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("scheme_memberships_scheme")
                .table(SchemeMemberships::Table)
                .col(SchemeMemberships::PartnerId)
                .col(SchemeMemberships::SchemeId)
                .col(SchemeMemberships::Id)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(RewardOffers::Table)
                .col(uuid(RewardOffers::Id).primary_key())
                .col(uuid(RewardOffers::PartnerId))
                .col(uuid_null(RewardOffers::SchemeId))
                .col(string(RewardOffers::State))
                .col(string(RewardOffers::GoalGroup))
                .col(uuid_null(RewardOffers::MerchantBusinessUnitId))
                .col(uuid_null(RewardOffers::CommercialTermsId))
                .col(integer(RewardOffers::Priority))
                .col(json(RewardOffers::Spec))
                .col(big_integer(RewardOffers::Revision))
                .col(timestamp_with_time_zone(RewardOffers::CreatedAt))
                .col(timestamp_with_time_zone(RewardOffers::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("reward_offers_partner")
                .table(RewardOffers::Table)
                .col(RewardOffers::PartnerId)
                .col(RewardOffers::State)
                .col(RewardOffers::Id)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(CommercialTerms::Table)
                .col(uuid(CommercialTerms::Id).primary_key())
                .col(uuid(CommercialTerms::PartnerId))
                .col(uuid(CommercialTerms::MerchantBusinessUnitId))
                .col(timestamp_with_time_zone(CommercialTerms::ValidFrom))
                .col(timestamp_with_time_zone_null(CommercialTerms::ValidUntil))
                .col(json(CommercialTerms::Spec))
                .col(big_integer(CommercialTerms::Revision))
                .col(timestamp_with_time_zone(CommercialTerms::CreatedAt))
                .col(timestamp_with_time_zone(CommercialTerms::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("commercial_terms_merchant")
                .table(CommercialTerms::Table)
                .col(CommercialTerms::PartnerId)
                .col(CommercialTerms::MerchantBusinessUnitId)
                .col(CommercialTerms::ValidFrom)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(OfferProgress::Table)
                .col(uuid(OfferProgress::PartnerId))
                .col(uuid(OfferProgress::OfferId))
                .col(uuid(OfferProgress::CustomerId))
                .col(json(OfferProgress::State))
                .col(timestamp_with_time_zone(OfferProgress::UpdatedAt))
                .primary_key(
                    Index::create()
                        .col(OfferProgress::PartnerId)
                        .col(OfferProgress::CustomerId)
                        .col(OfferProgress::OfferId),
                )
                .to_owned(),
        )
        .await?;
        // Activities (purchase or customer event ids) already applied to a customer's offers.
        m.create_table(
            Table::create()
                .table(OfferActivities::Table)
                .col(uuid(OfferActivities::PartnerId))
                .col(uuid(OfferActivities::CustomerId))
                .col(string(OfferActivities::ActivityId))
                .col(timestamp_with_time_zone(OfferActivities::AppliedAt))
                .primary_key(
                    Index::create()
                        .col(OfferActivities::PartnerId)
                        .col(OfferActivities::CustomerId)
                        .col(OfferActivities::ActivityId),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(OfferAwards::Table)
                .col(uuid(OfferAwards::Id).primary_key())
                .col(uuid(OfferAwards::PartnerId))
                .col(uuid(OfferAwards::OfferId))
                .col(uuid(OfferAwards::CustomerId))
                .col(integer(OfferAwards::Sequence))
                .col(big_integer(OfferAwards::AmountMinor))
                .col(string(OfferAwards::CurrencyCode))
                .col(big_integer(OfferAwards::Points))
                .col(string(OfferAwards::PointsTypeId))
                .col(boolean(OfferAwards::AutoRedeem))
                .col(string(OfferAwards::PurchaseId))
                .col(uuid_null(OfferAwards::BusinessUnitId))
                .col(timestamp_with_time_zone_null(OfferAwards::ExpireAt))
                .col(timestamp_with_time_zone(OfferAwards::AwardedAt))
                .to_owned(),
        )
        .await?;
        // The n-th award of an offer to a customer exists once, however often it is computed.
        m.create_index(
            Index::create()
                .name("offer_awards_once")
                .table(OfferAwards::Table)
                .col(OfferAwards::PartnerId)
                .col(OfferAwards::OfferId)
                .col(OfferAwards::CustomerId)
                .col(OfferAwards::Sequence)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            OfferAwards::Table.into_iden(),
            OfferActivities::Table.into_iden(),
            OfferProgress::Table.into_iden(),
            CommercialTerms::Table.into_iden(),
            RewardOffers::Table.into_iden(),
            SchemeMemberships::Table.into_iden(),
            RewardSchemes::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

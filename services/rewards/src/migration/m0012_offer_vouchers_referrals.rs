//! Reward offers (issue #6): the voucher an offer award issued (or why the reward refused
//! it), and referrals (who referred a customer, and their first purchase) for referral goals.
//! SQLite alters one column per statement, so each column is its own ALTER.
use sea_orm_migration::{prelude::*, schema::*};

pub struct OfferVouchersReferrals;

impl MigrationName for OfferVouchersReferrals {
    fn name(&self) -> &str {
        "m0012_offer_vouchers_referrals"
    }
}

#[derive(DeriveIden)]
enum OfferAwards {
    Table,
    RewardId,
    VoucherId,
    VoucherCode,
    VoucherRefusal,
}

#[derive(DeriveIden)]
enum OfferReferrals {
    Table,
    PartnerId,
    ReferredCustomerId,
    ReferrerCustomerId,
    ReferredAt,
    FirstPurchaseId,
}

#[async_trait::async_trait]
impl MigrationTrait for OfferVouchersReferrals {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in [
            uuid_null(OfferAwards::RewardId),
            uuid_null(OfferAwards::VoucherId),
            string(OfferAwards::VoucherCode).default("").to_owned(),
            string(OfferAwards::VoucherRefusal).default("").to_owned(),
        ] {
            m.alter_table(
                Table::alter()
                    .table(OfferAwards::Table)
                    .add_column(col)
                    .to_owned(),
            )
            .await?;
        }
        m.create_table(
            Table::create()
                .table(OfferReferrals::Table)
                .col(uuid(OfferReferrals::PartnerId))
                .col(uuid(OfferReferrals::ReferredCustomerId))
                .col(uuid(OfferReferrals::ReferrerCustomerId))
                .col(timestamp_with_time_zone(OfferReferrals::ReferredAt))
                .col(string_null(OfferReferrals::FirstPurchaseId))
                .primary_key(
                    Index::create()
                        .col(OfferReferrals::PartnerId)
                        .col(OfferReferrals::ReferredCustomerId),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(OfferReferrals::Table).to_owned())
            .await?;
        for col in [
            OfferAwards::RewardId,
            OfferAwards::VoucherId,
            OfferAwards::VoucherCode,
            OfferAwards::VoucherRefusal,
        ] {
            m.alter_table(
                Table::alter()
                    .table(OfferAwards::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

//! Vouchers (issue #6): the voucher settings of a reward and the vouchers themselves.
use sea_orm_migration::{prelude::*, schema::*};

pub struct Vouchers;

impl MigrationName for Vouchers {
    fn name(&self) -> &str {
        "m0003_vouchers"
    }
}

#[derive(DeriveIden)]
enum RewardVoucherRules {
    Table,
    RewardId,
    PartnerId,
    PointsPrice,
    ValidityDays,
    MaxPerCustomer,
    MaxTotal,
    CodePrefix,
    BusinessUnitIds,
    Channels,
    IssuedCount,
}

#[derive(DeriveIden)]
enum VouchersTable {
    #[sea_orm(iden = "vouchers")]
    Table,
    Id,
    PartnerId,
    Code,
    RewardId,
    CustomerId,
    State,
    Source,
    SourceId,
    ValidFrom,
    ValidUntil,
    PointsPaid,
    GiftRecipientEmail,
    GiftRecipientName,
    IssuedAt,
    ReserveTransactionId,
    ReserveUntil,
    RedeemedAt,
    RedeemTransactionId,
    RedeemBusinessUnitId,
    CancelledAt,
    CancelReason,
}

#[async_trait::async_trait]
impl MigrationTrait for Vouchers {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(RewardVoucherRules::Table)
                .col(uuid(RewardVoucherRules::RewardId).primary_key())
                .col(uuid(RewardVoucherRules::PartnerId))
                .col(big_integer(RewardVoucherRules::PointsPrice))
                .col(integer(RewardVoucherRules::ValidityDays))
                .col(integer(RewardVoucherRules::MaxPerCustomer))
                .col(big_integer(RewardVoucherRules::MaxTotal))
                .col(string(RewardVoucherRules::CodePrefix))
                .col(json(RewardVoucherRules::BusinessUnitIds))
                .col(json(RewardVoucherRules::Channels))
                .col(big_integer(RewardVoucherRules::IssuedCount))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(VouchersTable::Table)
                .col(uuid(VouchersTable::Id).primary_key())
                .col(uuid(VouchersTable::PartnerId))
                .col(string(VouchersTable::Code))
                .col(uuid(VouchersTable::RewardId))
                .col(uuid_null(VouchersTable::CustomerId))
                .col(string(VouchersTable::State))
                .col(string(VouchersTable::Source))
                .col(string(VouchersTable::SourceId))
                .col(timestamp_with_time_zone_null(VouchersTable::ValidFrom))
                .col(timestamp_with_time_zone_null(VouchersTable::ValidUntil))
                .col(big_integer(VouchersTable::PointsPaid))
                .col(string(VouchersTable::GiftRecipientEmail))
                .col(string(VouchersTable::GiftRecipientName))
                .col(timestamp_with_time_zone(VouchersTable::IssuedAt))
                .col(string_null(VouchersTable::ReserveTransactionId))
                .col(timestamp_with_time_zone_null(VouchersTable::ReserveUntil))
                .col(timestamp_with_time_zone_null(VouchersTable::RedeemedAt))
                .col(string_null(VouchersTable::RedeemTransactionId))
                .col(uuid_null(VouchersTable::RedeemBusinessUnitId))
                .col(timestamp_with_time_zone_null(VouchersTable::CancelledAt))
                .col(text_null(VouchersTable::CancelReason))
                .to_owned(),
        )
        .await?;
        // Codes are unique per partner (stored upper-case; lookups normalise).
        m.create_index(
            Index::create()
                .name("vouchers_partner_code")
                .table(VouchersTable::Table)
                .col(VouchersTable::PartnerId)
                .col(VouchersTable::Code)
                .unique()
                .to_owned(),
        )
        .await?;
        // Only vouchers of a customer: bulk-generated bearer vouchers skip this index.
        m.get_connection()
            .execute_unprepared(
                "CREATE INDEX vouchers_partner_customer ON vouchers (partner_id, customer_id, id) \
                 WHERE customer_id IS NOT NULL",
            )
            .await?;
        m.create_index(
            Index::create()
                .name("vouchers_partner_reward")
                .table(VouchersTable::Table)
                .col(VouchersTable::PartnerId)
                .col(VouchersTable::RewardId)
                .col(VouchersTable::Id)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            VouchersTable::Table.into_iden(),
            RewardVoucherRules::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

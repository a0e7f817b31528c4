//! Campaign products (issue #6) and the rest of a purchase bonus: its restrictions (products,
//! places, channels, days, hours, tiers, points type, cap) as JSON, state, revision and update
//! time. Bonuses created before keep working: no restrictions, ACTIVE, revision 1.
use sea_orm_migration::{prelude::*, schema::*};

pub struct CampaignProductsBonuses;

impl MigrationName for CampaignProductsBonuses {
    fn name(&self) -> &str {
        "m0005_campaign_products_bonuses"
    }
}

#[derive(DeriveIden)]
enum PurchaseBonuses {
    Table,
    Restrictions,
    State,
    Revision,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CampaignProducts {
    Table,
    Id,
    PartnerId,
    DisplayName,
    Description,
    Products,
    Discount,
    ValidFrom,
    ValidUntil,
    BusinessUnitIds,
    Channels,
    SegmentIds,
    ImageUrl,
    MaxQuantityPerPurchase,
    Active,
    Revision,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CampaignProductsBonuses {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one column at a time.
        for col in [
            json_null(PurchaseBonuses::Restrictions),
            string(PurchaseBonuses::State).default("active").to_owned(),
            big_integer(PurchaseBonuses::Revision).default(1).to_owned(),
            timestamp_with_time_zone_null(PurchaseBonuses::UpdatedAt),
        ] {
            let mut col = col;
            m.alter_table(
                Table::alter()
                    .table(PurchaseBonuses::Table)
                    .add_column(&mut col)
                    .to_owned(),
            )
            .await?;
        }
        m.create_table(
            Table::create()
                .table(CampaignProducts::Table)
                .col(uuid(CampaignProducts::Id).primary_key())
                .col(uuid(CampaignProducts::PartnerId))
                .col(string(CampaignProducts::DisplayName))
                .col(text(CampaignProducts::Description))
                .col(json(CampaignProducts::Products))
                .col(json(CampaignProducts::Discount))
                .col(timestamp_with_time_zone(CampaignProducts::ValidFrom))
                .col(timestamp_with_time_zone_null(CampaignProducts::ValidUntil))
                .col(json(CampaignProducts::BusinessUnitIds))
                .col(json(CampaignProducts::Channels))
                .col(json(CampaignProducts::SegmentIds))
                .col(text(CampaignProducts::ImageUrl))
                .col(big_integer(CampaignProducts::MaxQuantityPerPurchase))
                .col(boolean(CampaignProducts::Active))
                .col(big_integer(CampaignProducts::Revision))
                .col(timestamp_with_time_zone(CampaignProducts::CreatedAt))
                .col(timestamp_with_time_zone(CampaignProducts::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("campaign_products_partner")
                .table(CampaignProducts::Table)
                .col(CampaignProducts::PartnerId)
                .col(CampaignProducts::Id)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(CampaignProducts::Table).to_owned())
            .await?;
        for col in [
            PurchaseBonuses::Restrictions,
            PurchaseBonuses::State,
            PurchaseBonuses::Revision,
            PurchaseBonuses::UpdatedAt,
        ] {
            m.alter_table(
                Table::alter()
                    .table(PurchaseBonuses::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

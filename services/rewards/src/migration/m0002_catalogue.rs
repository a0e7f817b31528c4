//! The product catalogue: products, product groups (a tree by parent code), brands, and which
//! groups each product belongs to. Codes are unique per partner.
use sea_orm_migration::{prelude::*, schema::*};

pub struct Catalogue;

impl MigrationName for Catalogue {
    fn name(&self) -> &str {
        "m0002_catalogue"
    }
}

#[derive(DeriveIden)]
enum CatalogueProducts {
    Table,
    Id,
    PartnerId,
    Code,
    DisplayName,
    BrandCode,
    ListPriceMinor,
    ListPriceCurrency,
    Barcodes,
    ImageUrl,
    Properties,
    Active,
    Revision,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CatalogueProductGroupLinks {
    Table,
    PartnerId,
    ProductCode,
    GroupCode,
    Position,
}

#[derive(DeriveIden)]
enum CatalogueProductGroups {
    Table,
    Id,
    PartnerId,
    Code,
    DisplayName,
    ParentGroupCode,
    Revision,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CatalogueBrands {
    Table,
    Id,
    PartnerId,
    Code,
    DisplayName,
    LogoUrl,
    Revision,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Catalogue {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(CatalogueProducts::Table)
                .col(uuid(CatalogueProducts::Id).primary_key())
                .col(uuid(CatalogueProducts::PartnerId))
                .col(string(CatalogueProducts::Code))
                .col(string(CatalogueProducts::DisplayName))
                .col(string(CatalogueProducts::BrandCode))
                .col(big_integer_null(CatalogueProducts::ListPriceMinor))
                .col(string(CatalogueProducts::ListPriceCurrency))
                .col(json(CatalogueProducts::Barcodes))
                .col(text(CatalogueProducts::ImageUrl))
                .col(json(CatalogueProducts::Properties))
                .col(boolean(CatalogueProducts::Active))
                .col(big_integer(CatalogueProducts::Revision))
                .col(timestamp_with_time_zone(CatalogueProducts::CreatedAt))
                .col(timestamp_with_time_zone(CatalogueProducts::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("catalogue_products_code")
                .table(CatalogueProducts::Table)
                .col(CatalogueProducts::PartnerId)
                .col(CatalogueProducts::Code)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("catalogue_products_brand")
                .table(CatalogueProducts::Table)
                .col(CatalogueProducts::PartnerId)
                .col(CatalogueProducts::BrandCode)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(CatalogueProductGroupLinks::Table)
                .col(uuid(CatalogueProductGroupLinks::PartnerId))
                .col(string(CatalogueProductGroupLinks::ProductCode))
                .col(string(CatalogueProductGroupLinks::GroupCode))
                .col(integer(CatalogueProductGroupLinks::Position))
                .primary_key(
                    Index::create()
                        .col(CatalogueProductGroupLinks::PartnerId)
                        .col(CatalogueProductGroupLinks::ProductCode)
                        .col(CatalogueProductGroupLinks::GroupCode),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("catalogue_product_group_links_group")
                .table(CatalogueProductGroupLinks::Table)
                .col(CatalogueProductGroupLinks::PartnerId)
                .col(CatalogueProductGroupLinks::GroupCode)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(CatalogueProductGroups::Table)
                .col(uuid(CatalogueProductGroups::Id).primary_key())
                .col(uuid(CatalogueProductGroups::PartnerId))
                .col(string(CatalogueProductGroups::Code))
                .col(string(CatalogueProductGroups::DisplayName))
                .col(string(CatalogueProductGroups::ParentGroupCode))
                .col(big_integer(CatalogueProductGroups::Revision))
                .col(timestamp_with_time_zone(CatalogueProductGroups::CreatedAt))
                .col(timestamp_with_time_zone(CatalogueProductGroups::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("catalogue_product_groups_code")
                .table(CatalogueProductGroups::Table)
                .col(CatalogueProductGroups::PartnerId)
                .col(CatalogueProductGroups::Code)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(CatalogueBrands::Table)
                .col(uuid(CatalogueBrands::Id).primary_key())
                .col(uuid(CatalogueBrands::PartnerId))
                .col(string(CatalogueBrands::Code))
                .col(string(CatalogueBrands::DisplayName))
                .col(text(CatalogueBrands::LogoUrl))
                .col(big_integer(CatalogueBrands::Revision))
                .col(timestamp_with_time_zone(CatalogueBrands::CreatedAt))
                .col(timestamp_with_time_zone(CatalogueBrands::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("catalogue_brands_code")
                .table(CatalogueBrands::Table)
                .col(CatalogueBrands::PartnerId)
                .col(CatalogueBrands::Code)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            CatalogueProducts::Table.into_iden(),
            CatalogueProductGroupLinks::Table.into_iden(),
            CatalogueProductGroups::Table.into_iden(),
            CatalogueBrands::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

//! Contact sources, interests, property definitions, relation types and relations.
use sea_orm_migration::{prelude::*, schema::*};

pub struct CustomerData;

impl MigrationName for CustomerData {
    fn name(&self) -> &str {
        "m0004_customer_data"
    }
}

#[derive(DeriveIden)]
enum ContactSources {
    Table,
    Id,
    PartnerId,
    Code,
    DisplayName,
    Description,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Interests {
    Table,
    Id,
    PartnerId,
    Code,
    DisplayName,
    ParentId,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CustomerPropertyDefinitions {
    Table,
    Id,
    PartnerId,
    Key,
    DisplayName,
    DataType,
    AllowedValues,
    MaxLength,
    Required,
    PersonalData,
    Description,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum RelationTypes {
    Table,
    Id,
    PartnerId,
    Code,
    DisplayName,
    FromRoleName,
    ToRoleName,
    Symmetric,
    MaxRelationsPerCustomer,
    ShareBenefits,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CustomerRelations {
    Table,
    Id,
    PartnerId,
    RelationTypeId,
    FromCustomerId,
    ToCustomerId,
    /// The smaller of the two customer ids, so a pair is related once per type.
    PairLow,
    PairHigh,
    Note,
    CreatedAt,
}

fn unique(name: &str, table: impl IntoIden + 'static, cols: Vec<DynIden>) -> IndexCreateStatement {
    let mut i = Index::create();
    i.name(name).table(table).unique();
    for c in cols {
        i.col(c);
    }
    i.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for CustomerData {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use ContactSources as S;
        m.create_table(
            Table::create()
                .table(S::Table)
                .col(uuid(S::Id).primary_key())
                .col(uuid(S::PartnerId))
                .col(string(S::Code))
                .col(string(S::DisplayName))
                .col(text(S::Description))
                .col(big_integer(S::Version))
                .col(timestamp_with_time_zone(S::CreatedAt))
                .col(timestamp_with_time_zone(S::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(unique(
            "contact_sources_unique_code",
            S::Table,
            vec![S::PartnerId.into_iden(), S::Code.into_iden()],
        ))
        .await?;

        use Interests as I;
        m.create_table(
            Table::create()
                .table(I::Table)
                .col(uuid(I::Id).primary_key())
                .col(uuid(I::PartnerId))
                .col(string(I::Code))
                .col(string(I::DisplayName))
                .col(uuid_null(I::ParentId))
                .col(big_integer(I::Version))
                .col(timestamp_with_time_zone(I::CreatedAt))
                .col(timestamp_with_time_zone(I::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(unique(
            "interests_unique_code",
            I::Table,
            vec![I::PartnerId.into_iden(), I::Code.into_iden()],
        ))
        .await?;

        use CustomerPropertyDefinitions as D;
        m.create_table(
            Table::create()
                .table(D::Table)
                .col(uuid(D::Id).primary_key())
                .col(uuid(D::PartnerId))
                .col(string(D::Key))
                .col(string(D::DisplayName))
                .col(string(D::DataType))
                .col(json(D::AllowedValues))
                .col(integer(D::MaxLength))
                .col(boolean(D::Required))
                .col(boolean(D::PersonalData))
                .col(text(D::Description))
                .col(big_integer(D::Version))
                .col(timestamp_with_time_zone(D::CreatedAt))
                .col(timestamp_with_time_zone(D::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(unique(
            "customer_property_definitions_unique_key",
            D::Table,
            vec![D::PartnerId.into_iden(), D::Key.into_iden()],
        ))
        .await?;

        use RelationTypes as T;
        m.create_table(
            Table::create()
                .table(T::Table)
                .col(uuid(T::Id).primary_key())
                .col(uuid(T::PartnerId))
                .col(string(T::Code))
                .col(string(T::DisplayName))
                .col(string(T::FromRoleName))
                .col(string(T::ToRoleName))
                .col(boolean(T::Symmetric))
                .col(integer(T::MaxRelationsPerCustomer))
                .col(boolean(T::ShareBenefits))
                .col(big_integer(T::Version))
                .col(timestamp_with_time_zone(T::CreatedAt))
                .col(timestamp_with_time_zone(T::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(unique(
            "relation_types_unique_code",
            T::Table,
            vec![T::PartnerId.into_iden(), T::Code.into_iden()],
        ))
        .await?;

        use CustomerRelations as R;
        m.create_table(
            Table::create()
                .table(R::Table)
                .col(uuid(R::Id).primary_key())
                .col(uuid(R::PartnerId))
                .col(uuid(R::RelationTypeId))
                .col(uuid(R::FromCustomerId))
                .col(uuid(R::ToCustomerId))
                .col(uuid(R::PairLow))
                .col(uuid(R::PairHigh))
                .col(text(R::Note))
                .col(timestamp_with_time_zone(R::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(unique(
            "customer_relations_unique_pair",
            R::Table,
            vec![
                R::PartnerId.into_iden(),
                R::RelationTypeId.into_iden(),
                R::PairLow.into_iden(),
                R::PairHigh.into_iden(),
            ],
        ))
        .await?;
        for (name, col) in [
            ("customer_relations_from", R::FromCustomerId),
            ("customer_relations_to", R::ToCustomerId),
        ] {
            m.create_index(
                Index::create()
                    .name(name)
                    .table(R::Table)
                    .col(R::PartnerId)
                    .col(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            CustomerRelations::Table.into_iden(),
            RelationTypes::Table.into_iden(),
            CustomerPropertyDefinitions::Table.into_iden(),
            Interests::Table.into_iden(),
            ContactSources::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

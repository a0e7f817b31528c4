//! The customer account's lists criteria read (`customer.contact_source_ids`,
//! `customer.interest_ids`): JSON arrays of lower-cased ids on `customer_features` (`jsonb`
//! on PostgreSQL, so criteria compile to `@>` containment; SQLite scans them with
//! `json_each`). Existing rows list none until identity's next `CustomerUpdated`.
use sea_orm_migration::{prelude::*, schema::*};

pub(super) struct CustomerLists;

impl MigrationName for CustomerLists {
    fn name(&self) -> &str {
        "m0013_customer_lists"
    }
}

#[derive(DeriveIden)]
enum Features {
    #[sea_orm(iden = "customer_features")]
    Table,
    ContactSourceIds,
    InterestIds,
}

#[async_trait::async_trait]
impl MigrationTrait for CustomerLists {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        for column in [Features::ContactSourceIds, Features::InterestIds] {
            m.alter_table(
                Table::alter()
                    .table(Features::Table)
                    .add_column(json_binary(column).default("[]"))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in [Features::InterestIds, Features::ContactSourceIds] {
            m.alter_table(
                Table::alter()
                    .table(Features::Table)
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

//! Who referred a customer (issue #6 referral programmes): the referrer given to
//! CreateCustomer, kept on the account. Nullable (most customers are not referred, imported
//! ones never); indexed per partner so that a merge or an erasure finds the customers the
//! account referred.
use sea_orm_migration::{prelude::*, schema::*};

pub struct CustomerReferrer;

impl MigrationName for CustomerReferrer {
    fn name(&self) -> &str {
        "m0009_customer_referrer"
    }
}

#[derive(DeriveIden)]
enum Customers {
    Table,
    PartnerId,
    ReferrerCustomerId,
}

#[async_trait::async_trait]
impl MigrationTrait for CustomerReferrer {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Customers::Table)
                .add_column(uuid_null(Customers::ReferrerCustomerId))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("customers_referrer")
                .table(Customers::Table)
                .col(Customers::PartnerId)
                .col(Customers::ReferrerCustomerId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("customers_referrer")
                .table(Customers::Table)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Customers::Table)
                .drop_column(Customers::ReferrerCustomerId)
                .to_owned(),
        )
        .await
    }
}

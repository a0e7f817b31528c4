//! RFM on the feature store: each customer's recency, frequency, monetary and their quintile
//! scores as columns of `customer_features` (so criteria compile to plain column comparisons),
//! and `rfm_runs`, when each partner was last scored (the nightly run's "already done" mark).
use sea_orm_migration::{prelude::*, schema::*};

pub(super) struct CustomerRfm;

impl MigrationName for CustomerRfm {
    fn name(&self) -> &str {
        "m0012_customer_rfm"
    }
}

#[derive(DeriveIden)]
enum Features {
    #[sea_orm(iden = "customer_features")]
    Table,
    RfmRecencyMonths,
    RfmFrequency,
    RfmMonetaryMinor,
    RfmRecencyScore,
    RfmFrequencyScore,
    RfmMonetaryScore,
    RfmComputedAt,
}

#[derive(DeriveIden)]
enum RfmRuns {
    Table,
    PartnerId,
    ComputedAt,
    Customers,
}

#[async_trait::async_trait]
impl MigrationTrait for CustomerRfm {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one column at a time. NULL = not scored yet.
        for column in [
            integer_null(Features::RfmRecencyMonths),
            big_integer_null(Features::RfmFrequency),
            big_integer_null(Features::RfmMonetaryMinor),
            integer_null(Features::RfmRecencyScore),
            integer_null(Features::RfmFrequencyScore),
            integer_null(Features::RfmMonetaryScore),
            timestamp_with_time_zone_null(Features::RfmComputedAt),
        ] {
            let mut column = column;
            m.alter_table(
                Table::alter()
                    .table(Features::Table)
                    .add_column(&mut column)
                    .to_owned(),
            )
            .await?;
        }
        m.create_table(
            Table::create()
                .table(RfmRuns::Table)
                .col(uuid(RfmRuns::PartnerId).primary_key())
                .col(timestamp_with_time_zone(RfmRuns::ComputedAt))
                .col(big_integer(RfmRuns::Customers))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(RfmRuns::Table).to_owned())
            .await?;
        for column in [
            Features::RfmRecencyMonths,
            Features::RfmFrequency,
            Features::RfmMonetaryMinor,
            Features::RfmRecencyScore,
            Features::RfmFrequencyScore,
            Features::RfmMonetaryScore,
            Features::RfmComputedAt,
        ] {
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

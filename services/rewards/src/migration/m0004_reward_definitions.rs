//! Reward definitions (issue #6): lifecycle state, revision, every benefit's settings, caps and
//! a budget consumed under concurrency. Rewards stored before are ACTIVE at revision 1.
use sea_orm_migration::{prelude::*, schema::*};

pub struct RewardDefinitions;

impl MigrationName for RewardDefinitions {
    fn name(&self) -> &str {
        "m0004_reward_definitions"
    }
}

#[derive(DeriveIden)]
enum Rewards {
    Table,
    PartnerId,
    Id,
    State,
    Revision,
    UpdatedAt,
    ArchivedAt,
    Definition,
    BudgetKind,
    BudgetCurrency,
    BudgetTotal,
    BudgetRemaining,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RewardBudgetUses {
    Table,
    VoucherId,
    PartnerId,
    RewardId,
    Amount,
}

#[async_trait::async_trait]
impl MigrationTrait for RewardDefinitions {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds only one at a time.
        let cols = [
            string(Rewards::State).default("active").to_owned(),
            big_integer(Rewards::Revision).default(1).to_owned(),
            timestamp_with_time_zone_null(Rewards::UpdatedAt),
            timestamp_with_time_zone_null(Rewards::ArchivedAt),
            json_null(Rewards::Definition),
            string_null(Rewards::BudgetKind),
            string_null(Rewards::BudgetCurrency),
            big_integer_null(Rewards::BudgetTotal),
            big_integer_null(Rewards::BudgetRemaining),
        ];
        for mut col in cols {
            m.alter_table(
                Table::alter()
                    .table(Rewards::Table)
                    .add_column(&mut col)
                    .to_owned(),
            )
            .await?;
        }
        m.exec_stmt(
            Query::update()
                .table(Rewards::Table)
                .value(Rewards::UpdatedAt, Expr::col(Rewards::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("rewards_partner_state")
                .table(Rewards::Table)
                .col(Rewards::PartnerId)
                .col(Rewards::State)
                .col(Rewards::Id)
                .to_owned(),
        )
        .await?;
        // What each redemption took from its reward's budget, so that undoing it gives it back.
        m.create_table(
            Table::create()
                .table(RewardBudgetUses::Table)
                .col(uuid(RewardBudgetUses::VoucherId).primary_key())
                .col(uuid(RewardBudgetUses::PartnerId))
                .col(uuid(RewardBudgetUses::RewardId))
                .col(big_integer(RewardBudgetUses::Amount))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(RewardBudgetUses::Table).to_owned())
            .await?;
        m.drop_index(
            Index::drop()
                .name("rewards_partner_state")
                .table(Rewards::Table)
                .to_owned(),
        )
        .await?;
        for col in [
            Rewards::State,
            Rewards::Revision,
            Rewards::UpdatedAt,
            Rewards::ArchivedAt,
            Rewards::Definition,
            Rewards::BudgetKind,
            Rewards::BudgetCurrency,
            Rewards::BudgetTotal,
            Rewards::BudgetRemaining,
        ] {
            m.alter_table(
                Table::alter()
                    .table(Rewards::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

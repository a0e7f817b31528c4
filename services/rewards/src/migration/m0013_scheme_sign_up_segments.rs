//! Reward schemes signed up to by criteria (issue #6): the segments whose members may sign up
//! to a CRITERIA scheme, a JSON array of segment UUIDs (`[]` for every other scheme).
use sea_orm_migration::{prelude::*, schema::*};

pub struct SchemeSignUpSegments;

impl MigrationName for SchemeSignUpSegments {
    fn name(&self) -> &str {
        "m0013_scheme_sign_up_segments"
    }
}

#[derive(DeriveIden)]
enum RewardSchemes {
    Table,
    SignUpSegmentIds,
}

#[async_trait::async_trait]
impl MigrationTrait for SchemeSignUpSegments {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(RewardSchemes::Table)
                .add_column(json(RewardSchemes::SignUpSegmentIds).default("[]"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(RewardSchemes::Table)
                .drop_column(RewardSchemes::SignUpSegmentIds)
                .to_owned(),
        )
        .await
    }
}

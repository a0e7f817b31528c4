//! Card number formats and card replacement.
use sea_orm_migration::prelude::*;

pub struct Cards;

impl MigrationName for Cards {
    fn name(&self) -> &str {
        "m0007_cards"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Cards {
    async fn up(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}

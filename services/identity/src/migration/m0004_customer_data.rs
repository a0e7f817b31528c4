//! Contact sources, interests, property definitions, relation types and relations.
use sea_orm_migration::prelude::*;

pub struct CustomerData;

impl MigrationName for CustomerData {
    fn name(&self) -> &str {
        "m0004_customer_data"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CustomerData {
    async fn up(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}

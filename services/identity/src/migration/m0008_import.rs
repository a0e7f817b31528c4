//! Bulk import bookkeeping.
use sea_orm_migration::prelude::*;

pub struct Import;

impl MigrationName for Import {
    fn name(&self) -> &str {
        "m0008_import"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Import {
    async fn up(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}

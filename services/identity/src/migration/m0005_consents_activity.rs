//! Consent types, consents and their history, bounce state, event types and tracked events.
use sea_orm_migration::prelude::*;

pub struct ConsentsActivity;

impl MigrationName for ConsentsActivity {
    fn name(&self) -> &str {
        "m0005_consents_activity"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ConsentsActivity {
    async fn up(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}

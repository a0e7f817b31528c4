//! Audience member rows lose their `(partner_id, customer_id)` index: maintaining a second
//! B-tree cost a million-member audience creation about a second and a half, and the reads by
//! customer (Customer 360, erasure, history) probe the primary key `(audience_id,
//! customer_id)` once per audience of the partner instead.
use sea_orm_migration::prelude::*;

pub(super) struct AudienceMembersUnindexed;

impl MigrationName for AudienceMembersUnindexed {
    fn name(&self) -> &str {
        "m0015_audience_members_unindexed"
    }
}

#[derive(DeriveIden)]
enum AudienceMembers {
    Table,
    PartnerId,
    CustomerId,
}

#[async_trait::async_trait]
impl MigrationTrait for AudienceMembersUnindexed {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("audience_members_customer")
                .table(AudienceMembers::Table)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("audience_members_customer")
                .table(AudienceMembers::Table)
                .col(AudienceMembers::PartnerId)
                .col(AudienceMembers::CustomerId)
                .to_owned(),
        )
        .await
    }
}

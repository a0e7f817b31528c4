//! Schema of the segmentation service.
use sea_orm_migration::{prelude::*, schema::*};

mod m0007_customer_purchases;
use m0007_customer_purchases::CustomerPurchases;
mod m0012_customer_rfm;
use m0012_customer_rfm::CustomerRfm;
mod m0013_customer_lists;
use m0013_customer_lists::CustomerLists;

loyalty_platform::migrator![
    InitialSchema,
    SegmentVersions,
    CustomerTombstones,
    CriteriaFacts,
    MembershipCauses,
    CustomerActivity,
    CustomerPurchases,
    Badges,
    m0009_audiences::Audiences,
    CustomerRfm,
    CustomerLists,
    m0014_audience_history_key::AudienceHistoryKey,
    m0015_audience_members_unindexed::AudienceMembersUnindexed,
];

mod m0009_audiences;
mod m0014_audience_history_key;
mod m0015_audience_members_unindexed;

struct InitialSchema;

impl MigrationName for InitialSchema {
    fn name(&self) -> &str {
        "m0001_segmentation_initial"
    }
}

#[derive(DeriveIden)]
enum CustomerFeatures {
    Table,
    PartnerId,
    CustomerId,
    Attributes,
    Properties,
    PurchaseCount,
    TotalSpentMinor,
    LastPurchaseAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Segments {
    Table,
    Id,
    PartnerId,
    DisplayName,
    Kind,
    OnlineRecalculation,
    Criterion,
    Note,
    MemberCount,
    LastRecalculatedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum SegmentMembers {
    Table,
    SegmentId,
    CustomerId,
    PartnerId,
    AddedAt,
}

#[derive(DeriveIden)]
enum MembershipHistory {
    Table,
    Id,
    PartnerId,
    SegmentId,
    CustomerId,
    Change,
    At,
}

#[async_trait::async_trait]
impl MigrationTrait for InitialSchema {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(CustomerFeatures::Table)
                .col(uuid(CustomerFeatures::PartnerId))
                .col(uuid(CustomerFeatures::CustomerId))
                .col(json(CustomerFeatures::Attributes))
                .col(json(CustomerFeatures::Properties))
                .col(big_integer(CustomerFeatures::PurchaseCount))
                .col(big_integer(CustomerFeatures::TotalSpentMinor))
                .col(timestamp_with_time_zone_null(
                    CustomerFeatures::LastPurchaseAt,
                ))
                .col(timestamp_with_time_zone(CustomerFeatures::UpdatedAt))
                .primary_key(
                    Index::create()
                        .col(CustomerFeatures::PartnerId)
                        .col(CustomerFeatures::CustomerId),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Segments::Table)
                .col(uuid(Segments::Id).primary_key())
                .col(uuid(Segments::PartnerId))
                .col(string(Segments::DisplayName))
                .col(string(Segments::Kind))
                .col(boolean(Segments::OnlineRecalculation))
                .col(json(Segments::Criterion))
                .col(text(Segments::Note))
                .col(big_integer(Segments::MemberCount))
                .col(timestamp_with_time_zone_null(Segments::LastRecalculatedAt))
                .col(timestamp_with_time_zone(Segments::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("segments_partner")
                .table(Segments::Table)
                .col(Segments::PartnerId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(SegmentMembers::Table)
                .col(uuid(SegmentMembers::SegmentId))
                .col(uuid(SegmentMembers::CustomerId))
                .col(uuid(SegmentMembers::PartnerId))
                .col(timestamp_with_time_zone(SegmentMembers::AddedAt))
                .primary_key(
                    Index::create()
                        .col(SegmentMembers::SegmentId)
                        .col(SegmentMembers::CustomerId),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("segment_members_customer")
                .table(SegmentMembers::Table)
                .col(SegmentMembers::PartnerId)
                .col(SegmentMembers::CustomerId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(MembershipHistory::Table)
                .col(uuid(MembershipHistory::Id).primary_key())
                .col(uuid(MembershipHistory::PartnerId))
                .col(uuid(MembershipHistory::SegmentId))
                .col(uuid(MembershipHistory::CustomerId))
                .col(string(MembershipHistory::Change))
                .col(timestamp_with_time_zone(MembershipHistory::At))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("membership_history_customer")
                .table(MembershipHistory::Table)
                .col(MembershipHistory::PartnerId)
                .col(MembershipHistory::CustomerId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            MembershipHistory::Table.into_iden(),
            SegmentMembers::Table.into_iden(),
            Segments::Table.into_iden(),
            CustomerFeatures::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

/// Segment definitions get a version (their etag) and the time they last changed.
struct SegmentVersions;

impl MigrationName for SegmentVersions {
    fn name(&self) -> &str {
        "m0002_segment_versions"
    }
}

#[derive(DeriveIden)]
enum SegmentColumns {
    #[sea_orm(iden = "segments")]
    Table,
    Version,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for SegmentVersions {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        m.alter_table(
            Table::alter()
                .table(SegmentColumns::Table)
                .add_column(big_integer(SegmentColumns::Version).default(1))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(SegmentColumns::Table)
                .add_column(timestamp_with_time_zone_null(SegmentColumns::UpdatedAt))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for c in [SegmentColumns::UpdatedAt, SegmentColumns::Version] {
            m.alter_table(
                Table::alter()
                    .table(SegmentColumns::Table)
                    .drop_column(c)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

/// Customers merged away or erased, so that a late event about them (e.g. a purchase
/// consumed from checkout after the merge) goes to the survivor or is dropped.
struct CustomerTombstones;

impl MigrationName for CustomerTombstones {
    fn name(&self) -> &str {
        "m0003_customer_tombstones"
    }
}

#[derive(DeriveIden)]
enum CustomerTombstonesTable {
    #[sea_orm(iden = "customer_tombstones")]
    Table,
    PartnerId,
    CustomerId,
    SuccessorId,
    At,
}

#[async_trait::async_trait]
impl MigrationTrait for CustomerTombstones {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(CustomerTombstonesTable::Table)
                .col(uuid(CustomerTombstonesTable::PartnerId))
                .col(uuid(CustomerTombstonesTable::CustomerId))
                .col(uuid_null(CustomerTombstonesTable::SuccessorId))
                .col(timestamp_with_time_zone(CustomerTombstonesTable::At))
                .primary_key(
                    Index::create()
                        .col(CustomerTombstonesTable::PartnerId)
                        .col(CustomerTombstonesTable::CustomerId),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table(CustomerTombstonesTable::Table)
                .to_owned(),
        )
        .await
    }
}

/// The string facts of every customer in their search form, read by criteria compiled to
/// SQL (see `Features::search_facts`); existing rows are filled from their attributes and
/// properties.
struct CriteriaFacts;

impl MigrationName for CriteriaFacts {
    fn name(&self) -> &str {
        "m0004_criteria_facts"
    }
}

#[derive(DeriveIden)]
enum CriteriaFactsColumn {
    #[sea_orm(iden = "customer_features")]
    Table,
    CriteriaFacts,
}

/// Rows filled per query when the column is added to an existing feature store.
const BACKFILL_PAGE: usize = 1_000;

#[async_trait::async_trait]
impl MigrationTrait for CriteriaFacts {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(CriteriaFactsColumn::Table)
                .add_column(json_binary(CriteriaFactsColumn::CriteriaFacts).default("{}"))
                .to_owned(),
        )
        .await?;
        backfill_criteria_facts(m.get_connection()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(CriteriaFactsColumn::Table)
                .drop_column(CriteriaFactsColumn::CriteriaFacts)
                .to_owned(),
        )
        .await
    }
}

/// Computes `criteria_facts` of every existing row, a page at a time in key order. Raw SQL
/// naming only the columns that exist at this migration, so later columns cannot break it.
async fn backfill_criteria_facts(conn: &impl sea_orm::ConnectionTrait) -> Result<(), DbErr> {
    use sea_orm::{Statement, Value};
    let backend = conn.get_database_backend();
    let (select_first, select_after, update) = match backend {
        sea_orm::DatabaseBackend::Postgres => (
            "SELECT partner_id, customer_id, attributes, properties FROM customer_features \
             ORDER BY partner_id, customer_id LIMIT $1",
            "SELECT partner_id, customer_id, attributes, properties FROM customer_features \
             WHERE (partner_id, customer_id) > ($1, $2) ORDER BY partner_id, customer_id LIMIT $3",
            "UPDATE customer_features SET criteria_facts = $1 \
             WHERE partner_id = $2 AND customer_id = $3",
        ),
        _ => (
            "SELECT partner_id, customer_id, attributes, properties FROM customer_features \
             ORDER BY partner_id, customer_id LIMIT ?",
            "SELECT partner_id, customer_id, attributes, properties FROM customer_features \
             WHERE (partner_id, customer_id) > (?, ?) ORDER BY partner_id, customer_id LIMIT ?",
            "UPDATE customer_features SET criteria_facts = ? \
             WHERE partner_id = ? AND customer_id = ?",
        ),
    };
    let limit = Value::from(BACKFILL_PAGE as i64);
    let mut after: Option<(uuid::Uuid, uuid::Uuid)> = None;
    loop {
        let page = match after {
            None => Statement::from_sql_and_values(backend, select_first, [limit.clone()]),
            Some((p, c)) => Statement::from_sql_and_values(
                backend,
                select_after,
                [p.into(), c.into(), limit.clone()],
            ),
        };
        let rows = conn.query_all(page).await?;
        for row in &rows {
            let partner: uuid::Uuid = row.try_get("", "partner_id")?;
            let customer: uuid::Uuid = row.try_get("", "customer_id")?;
            let attributes: serde_json::Value = row.try_get("", "attributes")?;
            let properties: serde_json::Value = row.try_get("", "properties")?;
            let features = crate::domain::Features {
                attributes: serde_json::from_value(attributes).unwrap_or_default(),
                properties: serde_json::from_value(properties).unwrap_or_default(),
                ..Default::default()
            };
            conn.execute(Statement::from_sql_and_values(
                backend,
                update,
                [
                    Value::Json(Some(Box::new(features.search_facts()))),
                    partner.into(),
                    customer.into(),
                ],
            ))
            .await?;
            after = Some((partner, customer));
        }
        if rows.len() < BACKFILL_PAGE {
            return Ok(());
        }
    }
}

/// Why a customer entered or left a segment (creation, recalculation, manual, workflow, group
/// deleted, customer removed), on the member row and on each history entry; the workflow
/// execution that did it; the segment's name at the time (its history outlives it); and an
/// index for a segment's history.
struct MembershipCauses;

impl MigrationName for MembershipCauses {
    fn name(&self) -> &str {
        "m0005_membership_causes"
    }
}

#[derive(DeriveIden)]
enum HistoryColumns {
    #[sea_orm(iden = "membership_history")]
    Table,
    PartnerId,
    SegmentId,
    At,
    Cause,
    WorkflowExecutionId,
    SegmentDisplayName,
}

#[derive(DeriveIden)]
enum MemberColumns {
    #[sea_orm(iden = "segment_members")]
    Table,
    Cause,
}

#[async_trait::async_trait]
impl MigrationTrait for MembershipCauses {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement. Rows written before this migration were
        // written at creation (entries) or by a merge or erasure.
        m.alter_table(
            Table::alter()
                .table(HistoryColumns::Table)
                .add_column(string(HistoryColumns::Cause).default("creation"))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(HistoryColumns::Table)
                .add_column(uuid_null(HistoryColumns::WorkflowExecutionId))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(HistoryColumns::Table)
                .add_column(string(HistoryColumns::SegmentDisplayName).default(""))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(MemberColumns::Table)
                .add_column(string(MemberColumns::Cause).default("creation"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("membership_history_segment")
                .table(HistoryColumns::Table)
                .col(HistoryColumns::PartnerId)
                .col(HistoryColumns::SegmentId)
                .col(HistoryColumns::At)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("membership_history_segment")
                .table(HistoryColumns::Table)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(MemberColumns::Table)
                .drop_column(MemberColumns::Cause)
                .to_owned(),
        )
        .await?;
        for c in [
            HistoryColumns::SegmentDisplayName,
            HistoryColumns::WorkflowExecutionId,
            HistoryColumns::Cause,
        ] {
            m.alter_table(
                Table::alter()
                    .table(HistoryColumns::Table)
                    .drop_column(c)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

/// The features projected from consents, email bounces, points, tiers and tracked events
/// (`crate::domain::Activity`, as JSON). Existing rows have none, and their search form is
/// computed again, since it now always holds the bounce features (not bounced, 0 soft
/// bounces).
struct CustomerActivity;

impl MigrationName for CustomerActivity {
    fn name(&self) -> &str {
        "m0006_customer_activity"
    }
}

#[derive(DeriveIden)]
enum CustomerActivityColumn {
    #[sea_orm(iden = "customer_features")]
    Table,
    Activity,
}

#[async_trait::async_trait]
impl MigrationTrait for CustomerActivity {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(CustomerActivityColumn::Table)
                .add_column(json_binary(CustomerActivityColumn::Activity).default("{}"))
                .to_owned(),
        )
        .await?;
        backfill_criteria_facts(m.get_connection()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(CustomerActivityColumn::Table)
                .drop_column(CustomerActivityColumn::Activity)
                .to_owned(),
        )
        .await
    }
}

/// Badges and their holders; membership history rows say which kind of group they are about
/// (rows written before are about segments).
struct Badges;

impl MigrationName for Badges {
    fn name(&self) -> &str {
        "m0008_badges"
    }
}

#[derive(DeriveIden)]
enum BadgeTable {
    #[sea_orm(iden = "badges")]
    Table,
    Id,
    PartnerId,
    DisplayName,
    Kind,
    Criterion,
    IconUrl,
    IconContentType,
    VisibleToCustomer,
    Note,
    MemberCount,
    LastRecalculatedAt,
    CreatedAt,
    Version,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum BadgeMembers {
    Table,
    BadgeId,
    CustomerId,
    PartnerId,
    AddedAt,
    Cause,
}

#[derive(DeriveIden)]
enum HistoryGroupKind {
    #[sea_orm(iden = "membership_history")]
    Table,
    GroupKind,
}

#[async_trait::async_trait]
impl MigrationTrait for Badges {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(BadgeTable::Table)
                .col(uuid(BadgeTable::Id).primary_key())
                .col(uuid(BadgeTable::PartnerId))
                .col(string(BadgeTable::DisplayName))
                .col(string(BadgeTable::Kind))
                .col(json_null(BadgeTable::Criterion))
                .col(text(BadgeTable::IconUrl))
                .col(string(BadgeTable::IconContentType))
                .col(boolean(BadgeTable::VisibleToCustomer))
                .col(text(BadgeTable::Note))
                .col(big_integer(BadgeTable::MemberCount))
                .col(timestamp_with_time_zone_null(
                    BadgeTable::LastRecalculatedAt,
                ))
                .col(timestamp_with_time_zone(BadgeTable::CreatedAt))
                .col(big_integer(BadgeTable::Version))
                .col(timestamp_with_time_zone_null(BadgeTable::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("badges_partner")
                .table(BadgeTable::Table)
                .col(BadgeTable::PartnerId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(BadgeMembers::Table)
                .col(uuid(BadgeMembers::BadgeId))
                .col(uuid(BadgeMembers::CustomerId))
                .col(uuid(BadgeMembers::PartnerId))
                .col(timestamp_with_time_zone(BadgeMembers::AddedAt))
                .col(string(BadgeMembers::Cause))
                .primary_key(
                    Index::create()
                        .col(BadgeMembers::BadgeId)
                        .col(BadgeMembers::CustomerId),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("badge_members_customer")
                .table(BadgeMembers::Table)
                .col(BadgeMembers::PartnerId)
                .col(BadgeMembers::CustomerId)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(HistoryGroupKind::Table)
                .add_column(string(HistoryGroupKind::GroupKind).default("segment"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(HistoryGroupKind::Table)
                .drop_column(HistoryGroupKind::GroupKind)
                .to_owned(),
        )
        .await?;
        for t in [
            BadgeMembers::Table.into_iden(),
            BadgeTable::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

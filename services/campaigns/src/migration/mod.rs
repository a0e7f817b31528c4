//! Schema of the campaigns service.
use sea_orm_migration::{prelude::*, schema::*};

loyalty_platform::migrator![
    InitialSchema,
    TemplateLinksAndVersions,
    TemplateTextBodies,
    Campaigns,
    Messages,
    Workflows,
    VoucherRedemptions,
    MessageBatches
];

struct InitialSchema;

impl MigrationName for InitialSchema {
    fn name(&self) -> &str {
        "m0001_campaigns_initial"
    }
}

#[derive(DeriveIden)]
enum MessageTemplates {
    Table,
    Id,
    PartnerId,
    DisplayName,
    Channel,
    Kind,
    Subject,
    Body,
    SenderName,
    SenderAddress,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for InitialSchema {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(MessageTemplates::Table)
                .col(uuid(MessageTemplates::Id).primary_key())
                .col(uuid(MessageTemplates::PartnerId))
                .col(string(MessageTemplates::DisplayName))
                .col(string(MessageTemplates::Channel))
                .col(string(MessageTemplates::Kind))
                .col(text(MessageTemplates::Subject))
                .col(text(MessageTemplates::Body))
                .col(string(MessageTemplates::SenderName))
                .col(string(MessageTemplates::SenderAddress))
                .col(timestamp_with_time_zone(MessageTemplates::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("message_templates_partner")
                .table(MessageTemplates::Table)
                .col(MessageTemplates::PartnerId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(MessageTemplates::Table).to_owned())
            .await
    }
}

/// Push templates get the link they open; every template a version (its etag) and the time
/// it last changed.
struct TemplateLinksAndVersions;

impl MigrationName for TemplateLinksAndVersions {
    fn name(&self) -> &str {
        "m0002_template_links_and_versions"
    }
}

#[derive(DeriveIden)]
enum TemplateColumns {
    #[sea_orm(iden = "message_templates")]
    Table,
    LinkUrl,
    Version,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for TemplateLinksAndVersions {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        for column in [
            text(TemplateColumns::LinkUrl).default("").to_owned(),
            big_integer(TemplateColumns::Version).default(1).to_owned(),
            timestamp_with_time_zone_null(TemplateColumns::UpdatedAt),
        ] {
            m.alter_table(
                Table::alter()
                    .table(TemplateColumns::Table)
                    .add_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for c in [
            TemplateColumns::UpdatedAt,
            TemplateColumns::Version,
            TemplateColumns::LinkUrl,
        ] {
            m.alter_table(
                Table::alter()
                    .table(TemplateColumns::Table)
                    .drop_column(c)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

/// An email's plain-text alternative, and the index the newest-first list pages through.
struct TemplateTextBodies;

impl MigrationName for TemplateTextBodies {
    fn name(&self) -> &str {
        "m0003_template_text_bodies"
    }
}

#[derive(DeriveIden)]
enum TextBodyColumns {
    #[sea_orm(iden = "message_templates")]
    Table,
    TextBody,
    PartnerId,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for TemplateTextBodies {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(TextBodyColumns::Table)
                .add_column(text(TextBodyColumns::TextBody).default(""))
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("message_templates_partner")
                .table(TextBodyColumns::Table)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("message_templates_partner_id")
                .table(TextBodyColumns::Table)
                .col(TextBodyColumns::PartnerId)
                .col(TextBodyColumns::Id)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("message_templates_partner_id")
                .table(TextBodyColumns::Table)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("message_templates_partner")
                .table(TextBodyColumns::Table)
                .col(TextBodyColumns::PartnerId)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(TextBodyColumns::Table)
                .drop_column(TextBodyColumns::TextBody)
                .to_owned(),
        )
        .await
    }
}

/// Campaigns: one row each, its state and schedule.
struct Campaigns;

impl MigrationName for Campaigns {
    fn name(&self) -> &str {
        "m0004_campaigns"
    }
}

#[derive(DeriveIden)]
enum CampaignTable {
    #[sea_orm(iden = "campaigns")]
    Table,
    Id,
    PartnerId,
    DisplayName,
    Channel,
    MessageTemplateId,
    AudienceId,
    RewardId,
    State,
    ScheduleAt,
    LaunchedAt,
    FinishedAt,
    CancelledAt,
    SendRatePerMinute,
    SendWindowStart,
    SendWindowEnd,
    TimeZone,
    Note,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Campaigns {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use CampaignTable as C;
        m.create_table(
            Table::create()
                .table(C::Table)
                .col(uuid(C::Id).primary_key())
                .col(uuid(C::PartnerId))
                .col(string(C::DisplayName))
                .col(string(C::Channel))
                .col(uuid_null(C::MessageTemplateId))
                .col(uuid_null(C::AudienceId))
                .col(uuid_null(C::RewardId))
                .col(string(C::State))
                .col(timestamp_with_time_zone_null(C::ScheduleAt))
                .col(timestamp_with_time_zone_null(C::LaunchedAt))
                .col(timestamp_with_time_zone_null(C::FinishedAt))
                .col(timestamp_with_time_zone_null(C::CancelledAt))
                .col(integer(C::SendRatePerMinute))
                .col(integer_null(C::SendWindowStart))
                .col(integer_null(C::SendWindowEnd))
                .col(string(C::TimeZone))
                .col(text(C::Note))
                .col(big_integer(C::Version))
                .col(timestamp_with_time_zone(C::CreatedAt))
                .col(timestamp_with_time_zone_null(C::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("campaigns_partner_id")
                .table(C::Table)
                .col(C::PartnerId)
                .col(C::Id)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(CampaignTable::Table).to_owned())
            .await
    }
}

/// The send queue (one row per message, claimed by the workers of every replica), delivery
/// events, and what the workers keep on a campaign: how far its audience was turned into
/// messages, the message count and the throttle's clock.
struct Messages;

impl MigrationName for Messages {
    fn name(&self) -> &str {
        "m0005_messages"
    }
}

#[derive(DeriveIden)]
enum MessageTable {
    #[sea_orm(iden = "messages")]
    Table,
    Id,
    PartnerId,
    CampaignId,
    WorkflowExecutionId,
    CustomerId,
    Channel,
    MessageTemplateId,
    Purpose,
    Address,
    Variables,
    State,
    Attempts,
    DueAt,
    ClaimedUntil,
    BounceType,
    FailureReason,
    ProviderMessageId,
    VoucherCode,
    OpenCount,
    ClickCount,
    QueuedAt,
    SentAt,
    DeliveredAt,
    FirstOpenAt,
    FirstClickAt,
    UnsubscribedAt,
}

#[derive(DeriveIden)]
enum DeliveryEventTable {
    #[sea_orm(iden = "delivery_events")]
    Table,
    Id,
    PartnerId,
    MessageId,
    EventType,
    Url,
    Diagnostic,
    OccurredAt,
    RecordedAt,
}

#[derive(DeriveIden)]
enum CampaignWork {
    #[sea_orm(iden = "campaigns")]
    Table,
    ExportCursor,
    MaterializedAt,
    TargetCount,
    ThrottleAt,
    LeaseUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for Messages {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use MessageTable as M;
        m.create_table(
            Table::create()
                .table(M::Table)
                .col(uuid(M::Id).primary_key())
                .col(uuid(M::PartnerId))
                .col(uuid_null(M::CampaignId))
                .col(uuid_null(M::WorkflowExecutionId))
                .col(uuid_null(M::CustomerId))
                .col(string(M::Channel))
                .col(uuid(M::MessageTemplateId))
                .col(string(M::Purpose))
                .col(string(M::Address))
                .col(text(M::Variables))
                .col(string(M::State))
                .col(integer(M::Attempts))
                .col(timestamp_with_time_zone(M::DueAt))
                .col(timestamp_with_time_zone_null(M::ClaimedUntil))
                .col(string(M::BounceType))
                .col(text(M::FailureReason))
                .col(string(M::ProviderMessageId))
                .col(string(M::VoucherCode))
                .col(integer(M::OpenCount))
                .col(integer(M::ClickCount))
                .col(timestamp_with_time_zone(M::QueuedAt))
                .col(timestamp_with_time_zone_null(M::SentAt))
                .col(timestamp_with_time_zone_null(M::DeliveredAt))
                .col(timestamp_with_time_zone_null(M::FirstOpenAt))
                .col(timestamp_with_time_zone_null(M::FirstClickAt))
                .col(timestamp_with_time_zone_null(M::UnsubscribedAt))
                .to_owned(),
        )
        .await?;
        // One message per recipient of a campaign, whoever creates it and however often.
        m.create_index(
            Index::create()
                .name("messages_campaign_customer")
                .table(M::Table)
                .col(M::CampaignId)
                .col(M::CustomerId)
                .unique()
                .to_owned(),
        )
        .await?;
        for (name, cols) in [
            (
                "messages_partner_customer",
                vec![M::PartnerId, M::CustomerId, M::Id],
            ),
            ("messages_campaign_state", vec![M::CampaignId, M::State]),
            ("messages_execution", vec![M::WorkflowExecutionId]),
            ("messages_provider_id", vec![M::ProviderMessageId]),
        ] {
            let mut index = Index::create();
            index.name(name).table(M::Table);
            for c in cols {
                index.col(c);
            }
            m.create_index(index.to_owned()).await?;
        }
        // The queue: only what is waiting is indexed (PostgreSQL and SQLite both take WHERE).
        m.get_connection()
            .execute_unprepared(
                "CREATE INDEX messages_queued ON messages (due_at) WHERE state = 'queued'",
            )
            .await?;
        use DeliveryEventTable as D;
        m.create_table(
            Table::create()
                .table(D::Table)
                .col(uuid(D::Id).primary_key())
                .col(uuid(D::PartnerId))
                .col(uuid(D::MessageId))
                .col(string(D::EventType))
                .col(text(D::Url))
                .col(text(D::Diagnostic))
                .col(timestamp_with_time_zone(D::OccurredAt))
                .col(timestamp_with_time_zone(D::RecordedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("delivery_events_message")
                .table(D::Table)
                .col(D::MessageId)
                .col(D::Id)
                .to_owned(),
        )
        .await?;
        use CampaignWork as C;
        for col in [
            uuid_null(C::ExportCursor),
            timestamp_with_time_zone_null(C::MaterializedAt),
            big_integer(C::TargetCount).default(0).to_owned(),
            timestamp_with_time_zone_null(C::ThrottleAt),
            timestamp_with_time_zone_null(C::LeaseUntil),
        ] {
            let mut col = col;
            m.alter_table(
                Table::alter()
                    .table(C::Table)
                    .add_column(&mut col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(DeliveryEventTable::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(MessageTable::Table).to_owned())
            .await?;
        use CampaignWork as C;
        for col in [
            C::ExportCursor,
            C::MaterializedAt,
            C::TargetCount,
            C::ThrottleAt,
            C::LeaseUntil,
        ] {
            m.alter_table(Table::alter().table(C::Table).drop_column(col).to_owned())
                .await?;
        }
        Ok(())
    }
}

/// Marketing-automation workflows: definitions with every version kept (an execution runs
/// the version it started with), durable per-customer executions (claimed like the send
/// queue, by pushing `due_at` forward), their executed steps, and what date triggers read
/// of customers (a projection of identity's customer events).
struct Workflows;

impl MigrationName for Workflows {
    fn name(&self) -> &str {
        "m0006_workflows"
    }
}

#[derive(DeriveIden)]
enum WorkflowTable {
    #[sea_orm(iden = "workflows")]
    Table,
    Id,
    PartnerId,
    DisplayName,
    State,
    Version,
    TriggerKind,
    Definition,
    CreatedAt,
    UpdatedAt,
    ActivatedAt,
    DateRunAt,
}

#[derive(DeriveIden)]
enum WorkflowVersionTable {
    #[sea_orm(iden = "workflow_versions")]
    Table,
    WorkflowId,
    Version,
    PartnerId,
    Definition,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ExecutionTable {
    #[sea_orm(iden = "workflow_executions")]
    Table,
    Id,
    PartnerId,
    WorkflowId,
    WorkflowVersion,
    CustomerId,
    State,
    CurrentNodeKey,
    WakeAt,
    DueAt,
    Attempts,
    TriggerKey,
    TriggerEventId,
    TriggerFacts,
    Visits,
    StartedAt,
    EndedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum StepTable {
    #[sea_orm(iden = "workflow_steps")]
    Table,
    ExecutionId,
    Seq,
    PartnerId,
    NodeKey,
    NodeKind,
    Outcome,
    ConditionResult,
    ResultReference,
    Error,
    AttemptCount,
    ExecutedAt,
}

#[derive(DeriveIden)]
enum CustomerDateTable {
    #[sea_orm(iden = "workflow_customer_dates")]
    Table,
    PartnerId,
    CustomerId,
    Field,
    MonthDay,
    Date,
}

#[async_trait::async_trait]
impl MigrationTrait for Workflows {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use WorkflowTable as W;
        m.create_table(
            Table::create()
                .table(W::Table)
                .col(uuid(W::Id).primary_key())
                .col(uuid(W::PartnerId))
                .col(string(W::DisplayName))
                .col(string(W::State))
                .col(integer(W::Version))
                .col(string(W::TriggerKind))
                .col(text(W::Definition))
                .col(timestamp_with_time_zone(W::CreatedAt))
                .col(timestamp_with_time_zone(W::UpdatedAt))
                .col(timestamp_with_time_zone_null(W::ActivatedAt))
                .col(timestamp_with_time_zone_null(W::DateRunAt))
                .to_owned(),
        )
        .await?;
        for (name, cols) in [
            ("workflows_partner", vec![W::PartnerId, W::Id]),
            (
                "workflows_triggers",
                vec![W::PartnerId, W::State, W::TriggerKind],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(W::Table);
            for c in cols {
                index.col(c);
            }
            m.create_index(index.to_owned()).await?;
        }
        use WorkflowVersionTable as V;
        m.create_table(
            Table::create()
                .table(V::Table)
                .col(uuid(V::WorkflowId))
                .col(integer(V::Version))
                .col(uuid(V::PartnerId))
                .col(text(V::Definition))
                .col(timestamp_with_time_zone(V::CreatedAt))
                .primary_key(Index::create().col(V::WorkflowId).col(V::Version))
                .to_owned(),
        )
        .await?;
        use ExecutionTable as E;
        m.create_table(
            Table::create()
                .table(E::Table)
                .col(uuid(E::Id).primary_key())
                .col(uuid(E::PartnerId))
                .col(uuid(E::WorkflowId))
                .col(integer(E::WorkflowVersion))
                .col(uuid(E::CustomerId))
                .col(string(E::State))
                .col(string(E::CurrentNodeKey))
                .col(timestamp_with_time_zone_null(E::WakeAt))
                .col(timestamp_with_time_zone_null(E::DueAt))
                .col(integer(E::Attempts))
                .col(string(E::TriggerKey))
                .col(uuid_null(E::TriggerEventId))
                .col(text(E::TriggerFacts))
                .col(text(E::Visits))
                .col(timestamp_with_time_zone(E::StartedAt))
                .col(timestamp_with_time_zone_null(E::EndedAt))
                .col(timestamp_with_time_zone(E::UpdatedAt))
                .to_owned(),
        )
        .await?;
        // One execution per workflow, customer and trigger occurrence (an event, a date run):
        // a redelivered event or a repeated date scan starts nothing new.
        m.create_index(
            Index::create()
                .name("workflow_executions_trigger")
                .table(E::Table)
                .col(E::WorkflowId)
                .col(E::CustomerId)
                .col(E::TriggerKey)
                .unique()
                .to_owned(),
        )
        .await?;
        for (name, cols) in [
            (
                "workflow_executions_workflow",
                vec![E::PartnerId, E::WorkflowId, E::Id],
            ),
            (
                "workflow_executions_customer",
                vec![E::PartnerId, E::CustomerId, E::Id],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(E::Table);
            for c in cols {
                index.col(c);
            }
            m.create_index(index.to_owned()).await?;
        }
        // The engine's queue: only executions with something to do are indexed.
        m.get_connection()
            .execute_unprepared(
                "CREATE INDEX workflow_executions_due ON workflow_executions (due_at) \
                 WHERE due_at IS NOT NULL",
            )
            .await?;
        use StepTable as S;
        m.create_table(
            Table::create()
                .table(S::Table)
                .col(uuid(S::ExecutionId))
                .col(integer(S::Seq))
                .col(uuid(S::PartnerId))
                .col(string(S::NodeKey))
                .col(string(S::NodeKind))
                .col(string(S::Outcome))
                .col(boolean_null(S::ConditionResult))
                .col(string(S::ResultReference))
                .col(text(S::Error))
                .col(integer(S::AttemptCount))
                .col(timestamp_with_time_zone(S::ExecutedAt))
                .primary_key(Index::create().col(S::ExecutionId).col(S::Seq))
                .to_owned(),
        )
        .await?;
        use CustomerDateTable as D;
        m.create_table(
            Table::create()
                .table(D::Table)
                .col(uuid(D::PartnerId))
                .col(uuid(D::CustomerId))
                .col(string(D::Field))
                .col(integer(D::MonthDay))
                .col(string(D::Date))
                .primary_key(
                    Index::create()
                        .col(D::PartnerId)
                        .col(D::CustomerId)
                        .col(D::Field),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("workflow_customer_dates_day")
                .table(D::Table)
                .col(D::PartnerId)
                .col(D::Field)
                .col(D::MonthDay)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "workflow_customer_dates",
            "workflow_steps",
            "workflow_executions",
            "workflow_versions",
            "workflows",
        ] {
            m.drop_table(Table::drop().table(Alias::new(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}

/// When a message's voucher was redeemed (rewards' `VoucherRedeemed` of a campaign voucher):
/// the campaign statistics' `voucher_redeemed_count`.
struct VoucherRedemptions;

impl MigrationName for VoucherRedemptions {
    fn name(&self) -> &str {
        "m0007_voucher_redemptions"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for VoucherRedemptions {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("messages"))
                .add_column(timestamp_with_time_zone_null(Alias::new(
                    "voucher_redeemed_at",
                )))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("messages"))
                .drop_column(Alias::new("voucher_redeemed_at"))
                .to_owned(),
        )
        .await
    }
}

/// A campaign's recipients waiting to be sent, a batch (up to 1,000) to a row: an unthrottled
/// campaign's message rows are written once, already handled, instead of queued, claimed and
/// updated one by one. Also: only workflow messages are indexed by their execution.
struct MessageBatches;

impl MigrationName for MessageBatches {
    fn name(&self) -> &str {
        "m0008_message_batches"
    }
}

#[derive(DeriveIden)]
enum MessageBatchTable {
    #[sea_orm(iden = "message_batches")]
    Table,
    Id,
    PartnerId,
    CampaignId,
    Size,
    Vouchers,
    Messages,
    DueAt,
    ClaimedUntil,
    Attempts,
}

#[async_trait::async_trait]
impl MigrationTrait for MessageBatches {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use MessageBatchTable as B;
        m.create_table(
            Table::create()
                .table(B::Table)
                .col(uuid(B::Id).primary_key())
                .col(uuid(B::PartnerId))
                .col(uuid(B::CampaignId))
                .col(integer(B::Size))
                .col(integer(B::Vouchers))
                .col(text(B::Messages))
                .col(timestamp_with_time_zone(B::DueAt))
                .col(timestamp_with_time_zone_null(B::ClaimedUntil))
                .col(integer(B::Attempts))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("message_batches_campaign")
                .table(B::Table)
                .col(B::CampaignId)
                .col(B::DueAt)
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        if db.get_database_backend() == sea_orm::DbBackend::Postgres {
            // A batch lives for seconds: compressing it costs more CPU than its space is worth.
            db.execute_unprepared(
                "ALTER TABLE message_batches ALTER COLUMN messages SET STORAGE EXTERNAL",
            )
            .await?;
        }
        db.execute_unprepared("DROP INDEX messages_execution")
            .await?;
        db.execute_unprepared(
            "CREATE INDEX messages_workflow_execution ON messages (workflow_execution_id) \
             WHERE workflow_execution_id IS NOT NULL",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        db.execute_unprepared("DROP INDEX messages_workflow_execution")
            .await?;
        db.execute_unprepared(
            "CREATE INDEX messages_execution ON messages (workflow_execution_id)",
        )
        .await?;
        m.drop_table(Table::drop().table(MessageBatchTable::Table).to_owned())
            .await
    }
}

//! sea-orm entities of the campaigns schema.

pub mod message_templates {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "message_templates")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub display_name: String,
        pub channel: String,
        pub kind: String,
        pub subject: String,
        pub body: String,
        pub sender_name: String,
        pub sender_address: String,
        pub created_at: DateTimeUtc,
        pub link_url: String,
        pub version: i64,
        pub updated_at: Option<DateTimeUtc>,
        pub text_body: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod campaigns {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "campaigns")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub display_name: String,
        pub channel: String,
        pub message_template_id: Option<Uuid>,
        pub audience_id: Option<Uuid>,
        pub reward_id: Option<Uuid>,
        pub state: String,
        pub schedule_at: Option<DateTimeUtc>,
        pub launched_at: Option<DateTimeUtc>,
        pub finished_at: Option<DateTimeUtc>,
        pub cancelled_at: Option<DateTimeUtc>,
        pub send_rate_per_minute: i32,
        pub send_window_start: Option<i32>,
        pub send_window_end: Option<i32>,
        pub time_zone: String,
        pub note: String,
        pub version: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: Option<DateTimeUtc>,
        /// The send queue's own columns, never written by API changes.
        pub export_cursor: Option<Uuid>,
        pub materialized_at: Option<DateTimeUtc>,
        pub target_count: i64,
        pub throttle_at: Option<DateTimeUtc>,
        pub lease_until: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod messages {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "messages")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub campaign_id: Option<Uuid>,
        pub workflow_execution_id: Option<Uuid>,
        pub customer_id: Option<Uuid>,
        pub channel: String,
        pub message_template_id: Uuid,
        pub purpose: String,
        pub address: String,
        pub variables: String,
        pub state: String,
        pub attempts: i32,
        pub due_at: DateTimeUtc,
        pub claimed_until: Option<DateTimeUtc>,
        pub bounce_type: String,
        pub failure_reason: String,
        pub provider_message_id: String,
        pub voucher_code: String,
        pub open_count: i32,
        pub click_count: i32,
        pub queued_at: DateTimeUtc,
        pub sent_at: Option<DateTimeUtc>,
        pub delivered_at: Option<DateTimeUtc>,
        pub first_open_at: Option<DateTimeUtc>,
        pub first_click_at: Option<DateTimeUtc>,
        pub unsubscribed_at: Option<DateTimeUtc>,
        /// When the message's voucher was redeemed.
        pub voucher_redeemed_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod delivery_events {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "delivery_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub message_id: Uuid,
        pub event_type: String,
        pub url: String,
        pub diagnostic: String,
        pub occurred_at: DateTimeUtc,
        pub recorded_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod workflows {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "workflows")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub display_name: String,
        /// `WorkflowState::as_str`.
        pub state: String,
        pub version: i32,
        /// `Trigger::kind` of the current version: what the engine looks workflows up by.
        pub trigger_kind: String,
        /// The current version's `domain::workflow::Workflow` as JSON.
        #[sea_orm(column_type = "Text")]
        pub definition: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub activated_at: Option<DateTimeUtc>,
        /// When the engine last ran the workflow's date trigger (all customers of that run
        /// started).
        pub date_run_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod workflow_versions {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "workflow_versions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub workflow_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i32,
        pub partner_id: Uuid,
        #[sea_orm(column_type = "Text")]
        pub definition: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod workflow_executions {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "workflow_executions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub workflow_id: Uuid,
        pub workflow_version: i32,
        pub customer_id: Uuid,
        /// `ExecutionState::as_str`.
        pub state: String,
        pub current_node_key: String,
        pub wake_at: Option<DateTimeUtc>,
        /// When the engine should step it next (`None`: nothing to do — ended, or held while
        /// its workflow is paused). A claim pushes it forward by the claim's lease.
        pub due_at: Option<DateTimeUtc>,
        /// Failed attempts at the current node.
        pub attempts: i32,
        /// What started it, unique per workflow and customer: `event:<event id>` or
        /// `date:<YYYY-MM-DD>`.
        pub trigger_key: String,
        pub trigger_event_id: Option<Uuid>,
        /// JSON object of strings.
        #[sea_orm(column_type = "Text")]
        pub trigger_facts: String,
        /// JSON object node key → visits.
        #[sea_orm(column_type = "Text")]
        pub visits: String,
        pub started_at: DateTimeUtc,
        pub ended_at: Option<DateTimeUtc>,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod workflow_steps {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "workflow_steps")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub execution_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i32,
        pub partner_id: Uuid,
        pub node_key: String,
        pub node_kind: String,
        /// `StepOutcome::as_str`.
        pub outcome: String,
        pub condition_result: Option<bool>,
        pub result_reference: String,
        #[sea_orm(column_type = "Text")]
        pub error: String,
        pub attempt_count: i32,
        pub executed_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod workflow_customer_dates {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "workflow_customer_dates")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub partner_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: Uuid,
        /// `CustomerDateField::path`, e.g. `customer.birth_date`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub field: String,
        /// month × 100 + day.
        pub month_day: i32,
        /// YYYY-MM-DD.
        pub date: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

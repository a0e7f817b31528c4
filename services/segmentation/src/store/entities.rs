//! sea-orm entities of the segmentation schema.

pub mod customer_features {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "customer_features")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub partner_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: Uuid,
        pub attributes: Json,
        pub properties: Json,
        pub purchase_count: i64,
        pub total_spent_minor: i64,
        pub last_purchase_at: Option<DateTimeUtc>,
        pub updated_at: DateTimeUtc,
        /// The string facts in their search form ([`crate::domain::Features::search_facts`]),
        /// what criteria compiled to SQL read.
        pub criteria_facts: Json,
        /// [`crate::domain::Activity`]: consents, bounces, points, tier, tracked events
        /// (migration `m0006_customer_activity`).
        pub activity: Json,
        /// RFM and its quintile scores, NULL until the partner's first scoring (migration
        /// `m0012_customer_rfm`; see [`crate::domain::rfm`]).
        pub rfm_recency_months: Option<i32>,
        pub rfm_frequency: Option<i64>,
        pub rfm_monetary_minor: Option<i64>,
        pub rfm_recency_score: Option<i32>,
        pub rfm_frequency_score: Option<i32>,
        pub rfm_monetary_score: Option<i32>,
        pub rfm_computed_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod segments {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "segments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub display_name: String,
        pub kind: String,
        pub online_recalculation: bool,
        pub criterion: Json,
        pub note: String,
        pub member_count: i64,
        pub last_recalculated_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub version: i64,
        pub updated_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod segment_members {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "segment_members")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub segment_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: Uuid,
        pub partner_id: Uuid,
        pub added_at: DateTimeUtc,
        /// What added the customer (`MembershipCause::as_str`).
        pub cause: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod membership_history {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "membership_history")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub segment_id: Uuid,
        pub customer_id: Uuid,
        pub change: String,
        pub at: DateTimeUtc,
        /// What caused the change (`MembershipCause::as_str`).
        pub cause: String,
        pub workflow_execution_id: Option<Uuid>,
        /// The segment's name at the time.
        pub segment_display_name: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A customer merged into `successor_id`, or erased (`successor_id` is `None`).
pub mod customer_tombstones {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "customer_tombstones")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub partner_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: Uuid,
        pub successor_id: Option<Uuid>,
        pub at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A customer's purchase (migration `m0007_customer_purchases`); ids lower-cased.
pub mod customer_purchases {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "customer_purchases")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub partner_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub purchase_id: Uuid,
        pub customer_id: Uuid,
        pub purchased_at: DateTimeUtc,
        pub net_amount_minor: i64,
        pub returned_amount_minor: i64,
        pub business_unit_id: String,
        pub product_ids: Json,
        pub product_group_ids: Json,
        pub brand_ids: Json,
        /// Return ids already applied (a JSON array).
        pub return_ids: Json,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod rfm_runs {
    use sea_orm::entity::prelude::*;

    /// When each partner's customers were last scored (migration `m0012_customer_rfm`).
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "rfm_runs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub partner_id: Uuid,
        pub computed_at: DateTimeUtc,
        pub customers: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

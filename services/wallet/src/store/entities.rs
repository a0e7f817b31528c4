//! Tables of the ledger (see migration m0003). Postings and allocations are insert-only;
//! accounts, lots and reservations are projections kept in the same transaction as the
//! postings that change them.
pub mod points_groups {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "points_groups")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub code: String,
        pub display_name: String,
        pub description: String,
        pub revision: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod points_types {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "points_types")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub code: String,
        pub display_name: String,
        pub description: String,
        pub points_group_id: Option<Uuid>,
        /// `points` or `credit`.
        pub unit: String,
        pub currency_code: String,
        /// `never`, `rolling_days`, `end_of_month`, `end_of_quarter`, `end_of_year`.
        pub expiry_rule: String,
        pub validity_days: i32,
        pub validity_months: i32,
        pub pending_days: i32,
        /// `down`, `half_up`, `up`.
        pub rounding: String,
        pub spendable: bool,
        pub overdraft_limit: i64,
        pub reservation_ttl_seconds: i32,
        pub is_default: bool,
        pub active: bool,
        pub revision: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod ledger_accounts {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ledger_accounts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub points_type_id: Uuid,
        /// Nil for the partner's system accounts.
        pub customer_id: Uuid,
        /// See `domain::AccountKind::as_str`.
        pub kind: String,
        /// Credits minus debits; kept for customer accounts only (system accounts are
        /// derived, so awards to many customers never queue on one row).
        pub balance: i64,
        /// Overdraft not covered by any lot (WALLET accounts of types allowing overdraft).
        pub debt: i64,
        pub lifetime_credited: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod ledger_postings {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ledger_postings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub operation_id: Uuid,
        pub points_type_id: Uuid,
        pub kind: String,
        pub cause: String,
        pub debit_account_id: Uuid,
        pub credit_account_id: Uuid,
        pub debit_customer_id: Option<Uuid>,
        pub credit_customer_id: Option<Uuid>,
        pub amount: i64,
        pub lot_id: Option<Uuid>,
        pub reversed_posting_id: Option<Uuid>,
        pub reservation_id: Option<Uuid>,
        pub reason: String,
        pub reference: String,
        pub business_unit_id: Option<Uuid>,
        pub payment_method_reference: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod points_lots {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "points_lots")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub account_id: Uuid,
        pub customer_id: Uuid,
        pub points_type_id: Uuid,
        pub posting_id: Uuid,
        pub original_amount: i64,
        pub remaining_amount: i64,
        pub release_at: Option<DateTimeUtc>,
        pub expire_at: Option<DateTimeUtc>,
        /// Set when an EXPIRY posting took what remained.
        pub expired_at: Option<DateTimeUtc>,
        pub payable: bool,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod lot_allocations {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "lot_allocations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub posting_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub lot_id: Uuid,
        /// Taken from the lot (> 0) or returned to it (< 0).
        pub amount: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod reservations {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reservations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub customer_id: Uuid,
        pub points_type_id: Uuid,
        pub amount: i64,
        pub captured_amount: i64,
        /// `held`, `captured`, `released`, `expired`.
        pub state: String,
        pub expire_at: DateTimeUtc,
        pub reference: String,
        pub reserve_posting_id: Uuid,
        pub created_at: DateTimeUtc,
        pub settled_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod spending_blocks {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "spending_blocks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub partner_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: Uuid,
        /// Nil = every points type.
        #[sea_orm(primary_key, auto_increment = false)]
        pub points_type_id: Uuid,
        pub reason: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

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

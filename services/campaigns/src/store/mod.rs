//! Persistence of the campaigns service. Every query is scoped by partner.
pub mod entities;

use loyalty_platform::ApiError;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
};
use uuid::Uuid;

use crate::domain::{Channel, MessageTemplate, TemplateKind};
use entities::message_templates;

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
}

fn template_from(m: message_templates::Model) -> Result<MessageTemplate, ApiError> {
    let id = m.id;
    let bad = |what: &str| {
        ApiError::Internal(anyhow::anyhow!(
            "stored message template {id} has an unknown {what}"
        ))
    };
    Ok(MessageTemplate {
        id: m.id,
        display_name: m.display_name,
        channel: Channel::parse_str(&m.channel).ok_or_else(|| bad("channel"))?,
        kind: TemplateKind::parse_str(&m.kind).ok_or_else(|| bad("kind"))?,
        subject: m.subject,
        body: m.body,
        sender_name: m.sender_name,
        sender_address: m.sender_address,
        link_url: m.link_url,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

impl Store {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub async fn insert_template(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        t: &MessageTemplate,
    ) -> Result<(), ApiError> {
        message_templates::Entity::insert(message_templates::ActiveModel {
            id: Set(t.id),
            partner_id: Set(partner_id),
            display_name: Set(t.display_name.clone()),
            channel: Set(t.channel.as_str().to_owned()),
            kind: Set(t.kind.as_str().to_owned()),
            subject: Set(t.subject.clone()),
            body: Set(t.body.clone()),
            sender_name: Set(t.sender_name.clone()),
            sender_address: Set(t.sender_address.clone()),
            created_at: Set(t.created_at),
            link_url: Set(t.link_url.clone()),
            version: Set(t.version),
            updated_at: Set(t.updated_at),
        })
        .exec_without_returning(conn)
        .await?;
        Ok(())
    }

    /// A template of `partner_id`; another partner's template is `None`.
    pub async fn template(
        &self,
        partner_id: Uuid,
        id: Uuid,
    ) -> Result<Option<MessageTemplate>, ApiError> {
        message_templates::Entity::find_by_id(id)
            .filter(message_templates::Column::PartnerId.eq(partner_id))
            .one(&self.db)
            .await?
            .map(template_from)
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MessageTemplate;
    use chrono::Utc;

    #[tokio::test]
    async fn a_template_reads_back_for_its_partner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = loyalty_platform::Settings::defaults("campaigns", 0);
        settings.database.url =
            format!("sqlite://{}/test.db?mode=rwc", dir.path().display()).into();
        let db = loyalty_platform::db::connect_and_migrate::<crate::migration::Migrator>(&settings)
            .await
            .expect("sqlite");
        let store = Store::new(db);
        let partner = Uuid::now_v7();
        let t = MessageTemplate {
            id: Uuid::now_v7(),
            display_name: "Offer".into(),
            channel: Channel::Push,
            kind: TemplateKind::Campaign,
            subject: "New offer".into(),
            body: "Hi {{customer.first_name}}".into(),
            sender_name: String::new(),
            sender_address: String::new(),
            link_url: "myapp://offers/1".into(),
            version: 1,
            created_at: Utc::now(),
            updated_at: None,
        };
        store
            .insert_template(store.db(), partner, &t)
            .await
            .unwrap();
        assert_eq!(
            store.template(partner, t.id).await.unwrap(),
            Some(t.clone())
        );
        assert_eq!(store.template(Uuid::now_v7(), t.id).await.unwrap(), None);
    }
}

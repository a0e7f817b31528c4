//! Persistence of the campaigns service. Every query is scoped by partner.
pub mod batches;
pub mod campaigns;
pub mod entities;
pub mod messages;
pub mod workflows;

use loyalty_platform::{
    ApiError,
    error::{check_etag, check_guarded_write},
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use crate::domain::{Channel, MessageTemplate, TemplateKind};
use entities::message_templates;

/// Filters of ListMessageTemplates; `None` = any.
#[derive(Debug, Clone, Copy, Default)]
pub struct TemplateFilter {
    pub channel: Option<Channel>,
    pub kind: Option<TemplateKind>,
}

fn not_found() -> ApiError {
    ApiError::NotFound("message template".into())
}

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
        text_body: m.text_body,
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
            text_body: Set(t.text_body.clone()),
        })
        .exec_without_returning(conn)
        .await?;
        Ok(())
    }

    /// The partner's templates, newest first, after the template `after`, optionally of one
    /// channel and kind.
    pub async fn list_templates(
        &self,
        partner_id: Uuid,
        filter: TemplateFilter,
        limit: u64,
        after: Option<Uuid>,
    ) -> Result<Vec<MessageTemplate>, ApiError> {
        let mut q = message_templates::Entity::find()
            .filter(message_templates::Column::PartnerId.eq(partner_id));
        if let Some(c) = filter.channel {
            q = q.filter(message_templates::Column::Channel.eq(c.as_str()));
        }
        if let Some(k) = filter.kind {
            q = q.filter(message_templates::Column::Kind.eq(k.as_str()));
        }
        if let Some(after) = after {
            q = q.filter(message_templates::Column::Id.lt(after));
        }
        q.order_by_desc(message_templates::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(template_from)
            .collect()
    }

    /// Replaces a template by `update(current)` (checked by the caller), guarded by its
    /// version and, when sent, its etag; NOT_FOUND for another partner's or an unknown one.
    pub async fn update_template(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        id: Uuid,
        etag: &str,
        update: impl FnOnce(&MessageTemplate) -> Result<MessageTemplate, ApiError>,
    ) -> Result<MessageTemplate, ApiError> {
        let current = message_templates::Entity::find_by_id(id)
            .filter(message_templates::Column::PartnerId.eq(partner_id))
            .one(conn)
            .await?
            .map(template_from)
            .transpose()?
            .ok_or_else(not_found)?;
        check_etag(etag, &current.etag(), "message template")?;
        let next = update(&current)?;
        let written = message_templates::Entity::update_many()
            .col_expr(
                message_templates::Column::DisplayName,
                Expr::value(next.display_name.clone()),
            )
            .col_expr(
                message_templates::Column::Subject,
                Expr::value(next.subject.clone()),
            )
            .col_expr(
                message_templates::Column::Body,
                Expr::value(next.body.clone()),
            )
            .col_expr(
                message_templates::Column::TextBody,
                Expr::value(next.text_body.clone()),
            )
            .col_expr(
                message_templates::Column::SenderName,
                Expr::value(next.sender_name.clone()),
            )
            .col_expr(
                message_templates::Column::SenderAddress,
                Expr::value(next.sender_address.clone()),
            )
            .col_expr(
                message_templates::Column::LinkUrl,
                Expr::value(next.link_url.clone()),
            )
            .col_expr(
                message_templates::Column::Version,
                Expr::value(next.version),
            )
            .col_expr(
                message_templates::Column::UpdatedAt,
                Expr::value(next.updated_at),
            )
            .filter(message_templates::Column::PartnerId.eq(partner_id))
            .filter(message_templates::Column::Id.eq(id))
            .filter(message_templates::Column::Version.eq(current.version))
            .exec(conn)
            .await?;
        check_guarded_write(written.rows_affected, "message template")?;
        Ok(next)
    }

    /// Deletes a template; NOT_FOUND for another partner's or an unknown one.
    pub async fn delete_template(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        id: Uuid,
    ) -> Result<(), ApiError> {
        let deleted = message_templates::Entity::delete_many()
            .filter(message_templates::Column::PartnerId.eq(partner_id))
            .filter(message_templates::Column::Id.eq(id))
            .exec(conn)
            .await?;
        if deleted.rows_affected == 0 {
            return Err(not_found());
        }
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
    use super::testing::{migrated, sqlite_url};
    use super::*;
    use crate::domain::MessageTemplate;
    use chrono::Utc;

    fn sms(name: &str) -> MessageTemplate {
        MessageTemplate {
            id: Uuid::now_v7(),
            display_name: name.into(),
            channel: Channel::Sms,
            kind: TemplateKind::System,
            subject: String::new(),
            body: "Hi {{ customer.first_name }}".into(),
            text_body: String::new(),
            sender_name: String::new(),
            sender_address: String::new(),
            link_url: String::new(),
            version: 1,
            created_at: Utc::now(),
            updated_at: None,
        }
    }

    /// Templates listed newest first in pages and by channel and kind, updated under their
    /// version and etag, deleted; another partner's are never found.
    async fn list_update_delete(db: DatabaseConnection) {
        let store = Store::new(db);
        let (partner, other) = (Uuid::now_v7(), Uuid::now_v7());
        let (a, b) = (sms("A"), sms("B"));
        let mut c = sms("C");
        c.channel = Channel::Viber;
        c.kind = TemplateKind::Campaign;
        for t in [&a, &b, &c] {
            store.insert_template(store.db(), partner, t).await.unwrap();
        }
        store
            .insert_template(store.db(), other, &sms("Theirs"))
            .await
            .unwrap();
        let names =
            |ts: Vec<MessageTemplate>| ts.into_iter().map(|t| t.display_name).collect::<Vec<_>>();
        let all = TemplateFilter::default();
        assert_eq!(
            names(store.list_templates(partner, all, 2, None).await.unwrap()),
            ["C", "B"]
        );
        assert_eq!(
            names(
                store
                    .list_templates(partner, all, 2, Some(b.id))
                    .await
                    .unwrap()
            ),
            ["A"]
        );
        let viber = TemplateFilter {
            channel: Some(Channel::Viber),
            kind: None,
        };
        assert_eq!(
            names(
                store
                    .list_templates(partner, viber, 10, None)
                    .await
                    .unwrap()
            ),
            ["C"]
        );
        let system = TemplateFilter {
            channel: None,
            kind: Some(TemplateKind::System),
        };
        assert_eq!(
            names(
                store
                    .list_templates(partner, system, 10, None)
                    .await
                    .unwrap()
            ),
            ["B", "A"]
        );

        let rename = |t: &MessageTemplate| {
            let mut n = t.clone();
            n.display_name = "A2".into();
            n.version += 1;
            Ok(n)
        };
        let stale = store
            .update_template(store.db(), partner, a.id, "v7", rename)
            .await
            .unwrap_err();
        assert!(
            matches!(
                stale,
                ApiError::FailedPrecondition {
                    reason: "ETAG_MISMATCH",
                    ..
                }
            ),
            "{stale:?}"
        );
        let updated = store
            .update_template(store.db(), partner, a.id, "v1", rename)
            .await
            .unwrap();
        assert_eq!((updated.display_name.as_str(), updated.version), ("A2", 2));
        assert_eq!(store.template(partner, a.id).await.unwrap(), Some(updated));
        let foreign = store
            .update_template(store.db(), other, a.id, "", rename)
            .await
            .unwrap_err();
        assert!(matches!(foreign, ApiError::NotFound(_)));

        assert!(matches!(
            store.delete_template(store.db(), other, a.id).await,
            Err(ApiError::NotFound(_))
        ));
        store
            .delete_template(store.db(), partner, a.id)
            .await
            .unwrap();
        assert_eq!(store.template(partner, a.id).await.unwrap(), None);
        assert!(matches!(
            store.delete_template(store.db(), partner, a.id).await,
            Err(ApiError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn templates_are_listed_updated_and_deleted_on_postgres() {
        let test_db = loyalty_testkit::TestDb::postgres().await.expect("postgres");
        list_update_delete(migrated(test_db.url()).await).await;
    }

    #[tokio::test]
    async fn templates_are_listed_updated_and_deleted_on_sqlite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = sqlite_url(&dir);
        list_update_delete(migrated(url).await).await;
    }

    #[tokio::test]
    async fn a_template_reads_back_for_its_partner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = migrated(sqlite_url(&dir)).await;
        let store = Store::new(db);
        let partner = Uuid::now_v7();
        let t = MessageTemplate {
            id: Uuid::now_v7(),
            display_name: "Offer".into(),
            channel: Channel::Push,
            kind: TemplateKind::Campaign,
            subject: "New offer".into(),
            body: "Hi {{customer.first_name}}".into(),
            text_body: String::new(),
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

#[cfg(test)]
mod messages_tests;

#[cfg(test)]
mod workflows_tests;

/// What the store tests share: a migrated database of the service at a URL.
#[cfg(test)]
pub(crate) mod testing {
    use sea_orm::DatabaseConnection;

    /// The campaigns schema, migrated, at `url` (a test's own PostgreSQL database or SQLite
    /// file).
    pub(crate) async fn migrated(url: String) -> DatabaseConnection {
        let mut settings = loyalty_platform::Settings::defaults("campaigns", 0);
        settings.database.url = url.into();
        loyalty_platform::db::connect_and_migrate::<crate::migration::Migrator>(&settings)
            .await
            .expect("database")
    }

    /// A SQLite file in `dir`.
    pub(crate) fn sqlite_url(dir: &tempfile::TempDir) -> String {
        format!("sqlite://{}/test.db?mode=rwc", dir.path().display())
    }
}

//! Campaigns in the database: one row each. Every change is a version-guarded write of the
//! whole row (the domain decides the next state), so two concurrent changes cannot both win.
use loyalty_platform::{
    ApiError,
    error::{check_etag, check_guarded_write},
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::{Store, entities::campaigns};
use crate::domain::{
    Channel,
    campaign::{Campaign, CampaignState, SendWindow},
};

/// Filters of ListCampaigns; `None` = any.
#[derive(Debug, Clone, Copy, Default)]
pub struct CampaignFilter {
    pub state: Option<CampaignState>,
    pub channel: Option<Channel>,
}

fn not_found() -> ApiError {
    ApiError::NotFound("campaign".into())
}

pub(super) fn campaign_from(m: campaigns::Model) -> Result<Campaign, ApiError> {
    let id = m.id;
    let bad = |what: &str| {
        ApiError::Internal(anyhow::anyhow!(
            "stored campaign {id} has an unknown {what}"
        ))
    };
    let hour = |h: Option<i32>| h.and_then(|h| u32::try_from(h).ok());
    Ok(Campaign {
        id: m.id,
        display_name: m.display_name,
        channel: Channel::parse_str(&m.channel).ok_or_else(|| bad("channel"))?,
        message_template_id: m.message_template_id,
        audience_id: m.audience_id,
        reward_id: m.reward_id,
        state: CampaignState::parse_str(&m.state).ok_or_else(|| bad("state"))?,
        schedule_at: m.schedule_at,
        launched_at: m.launched_at,
        finished_at: m.finished_at,
        cancelled_at: m.cancelled_at,
        send_rate_per_minute: m.send_rate_per_minute,
        send_window: match (hour(m.send_window_start), hour(m.send_window_end)) {
            (Some(start_hour), Some(end_hour)) => Some(SendWindow {
                start_hour,
                end_hour,
            }),
            _ => None,
        },
        time_zone: m.time_zone,
        note: m.note,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn row(partner_id: Uuid, c: &Campaign) -> campaigns::ActiveModel {
    let hour = |h: u32| i32::try_from(h).unwrap_or(i32::MAX);
    campaigns::ActiveModel {
        id: Set(c.id),
        partner_id: Set(partner_id),
        display_name: Set(c.display_name.clone()),
        channel: Set(c.channel.as_str().to_owned()),
        message_template_id: Set(c.message_template_id),
        audience_id: Set(c.audience_id),
        reward_id: Set(c.reward_id),
        state: Set(c.state.as_str().to_owned()),
        schedule_at: Set(c.schedule_at),
        launched_at: Set(c.launched_at),
        finished_at: Set(c.finished_at),
        cancelled_at: Set(c.cancelled_at),
        send_rate_per_minute: Set(c.send_rate_per_minute),
        send_window_start: Set(c.send_window.map(|w| hour(w.start_hour))),
        send_window_end: Set(c.send_window.map(|w| hour(w.end_hour))),
        time_zone: Set(c.time_zone.clone()),
        note: Set(c.note.clone()),
        version: Set(c.version),
        created_at: Set(c.created_at),
        updated_at: Set(c.updated_at),
        ..Default::default()
    }
}

impl Store {
    pub async fn insert_campaign(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        c: &Campaign,
    ) -> Result<(), ApiError> {
        campaigns::Entity::insert(row(partner_id, c))
            .exec_without_returning(conn)
            .await?;
        Ok(())
    }

    /// A campaign of `partner_id`; another partner's is `None`.
    pub async fn campaign(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        id: Uuid,
    ) -> Result<Option<Campaign>, ApiError> {
        campaigns::Entity::find_by_id(id)
            .filter(campaigns::Column::PartnerId.eq(partner_id))
            .one(conn)
            .await?
            .map(campaign_from)
            .transpose()
    }

    /// The partner's campaigns, newest first, after the campaign `after`.
    pub async fn list_campaigns(
        &self,
        partner_id: Uuid,
        filter: CampaignFilter,
        limit: u64,
        after: Option<Uuid>,
    ) -> Result<Vec<Campaign>, ApiError> {
        let mut q = campaigns::Entity::find().filter(campaigns::Column::PartnerId.eq(partner_id));
        if let Some(s) = filter.state {
            q = q.filter(campaigns::Column::State.eq(s.as_str()));
        }
        if let Some(c) = filter.channel {
            q = q.filter(campaigns::Column::Channel.eq(c.as_str()));
        }
        if let Some(after) = after {
            q = q.filter(campaigns::Column::Id.lt(after));
        }
        q.order_by_desc(campaigns::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(campaign_from)
            .collect()
    }

    /// Replaces a campaign by `change(current)`: NOT_FOUND for another partner's or an
    /// unknown campaign, ETAG_MISMATCH for a stale `etag` (empty = none) or a concurrent
    /// change; the next version is `change`'s to set (the domain's transitions do).
    pub async fn change_campaign(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        id: Uuid,
        etag: &str,
        change: impl FnOnce(&Campaign) -> Result<Campaign, ApiError>,
    ) -> Result<Campaign, ApiError> {
        let current = self
            .campaign(conn, partner_id, id)
            .await?
            .ok_or_else(not_found)?;
        check_etag(etag, &current.etag(), "campaign")?;
        let next = change(&current)?;
        let mut active = row(partner_id, &next).into_active_model();
        // The key and creation stay.
        active.id = sea_orm::ActiveValue::NotSet;
        active.partner_id = sea_orm::ActiveValue::NotSet;
        active.created_at = sea_orm::ActiveValue::NotSet;
        let written = campaigns::Entity::update_many()
            .set(active)
            .filter(campaigns::Column::PartnerId.eq(partner_id))
            .filter(campaigns::Column::Id.eq(id))
            .filter(campaigns::Column::Version.eq(current.version))
            .exec(conn)
            .await?;
        check_guarded_write(written.rows_affected, "campaign")?;
        Ok(next)
    }

    /// Deletes a campaign `check` allows deleting (a draft).
    pub async fn delete_campaign(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        id: Uuid,
        check: impl FnOnce(&Campaign) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let current = self
            .campaign(conn, partner_id, id)
            .await?
            .ok_or_else(not_found)?;
        check(&current)?;
        let deleted = campaigns::Entity::delete_many()
            .filter(campaigns::Column::PartnerId.eq(partner_id))
            .filter(campaigns::Column::Id.eq(id))
            .filter(campaigns::Column::Version.eq(current.version))
            .exec(conn)
            .await?;
        check_guarded_write(deleted.rows_affected, "campaign")
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::{migrated, sqlite_url};
    use chrono::{Duration, SubsecRound, Utc};
    use sea_orm::DatabaseConnection;

    use super::*;
    use crate::domain::campaign::CampaignRule;

    fn draft(name: &str, channel: Channel) -> Campaign {
        Campaign {
            id: Uuid::now_v7(),
            display_name: name.into(),
            channel,
            message_template_id: Some(Uuid::now_v7()),
            audience_id: Some(Uuid::now_v7()),
            reward_id: None,
            state: CampaignState::Draft,
            schedule_at: None,
            launched_at: None,
            finished_at: None,
            cancelled_at: None,
            send_rate_per_minute: 600,
            send_window: Some(SendWindow {
                start_hour: 9,
                end_hour: 20,
            }),
            time_zone: "Europe/Prague".into(),
            note: String::new(),
            version: 1,
            created_at: Utc::now().trunc_subsecs(6),
            updated_at: None,
        }
    }

    fn rule(r: CampaignRule) -> ApiError {
        ApiError::precondition(r.reason(), r.message())
    }

    /// Campaigns read back whole, listed newest first by state and channel, moved through
    /// their states under version guards, deleted only as drafts, per partner.
    async fn lifecycle(db: DatabaseConnection) {
        let store = Store::new(db.clone());
        let (partner, other) = (Uuid::now_v7(), Uuid::now_v7());
        let (spring, sms) = (draft("Spring", Channel::Email), draft("SMS", Channel::Sms));
        for c in [&spring, &sms] {
            store.insert_campaign(&db, partner, c).await.unwrap();
        }
        assert_eq!(
            store.campaign(&db, partner, spring.id).await.unwrap(),
            Some(spring.clone())
        );
        assert_eq!(store.campaign(&db, other, spring.id).await.unwrap(), None);
        let all = CampaignFilter::default();
        let names = |cs: Vec<Campaign>| cs.into_iter().map(|c| c.display_name).collect::<Vec<_>>();
        assert_eq!(
            names(store.list_campaigns(partner, all, 10, None).await.unwrap()),
            ["SMS", "Spring"]
        );
        assert_eq!(
            names(
                store
                    .list_campaigns(partner, all, 10, Some(sms.id))
                    .await
                    .unwrap()
            ),
            ["Spring"]
        );

        let now = Utc::now().trunc_subsecs(6);
        let later = now + Duration::days(1);
        let launched = store
            .change_campaign(&db, partner, spring.id, "v1", |c| {
                c.launched(now, Some(later)).map_err(rule)
            })
            .await
            .unwrap();
        assert_eq!(launched.state, CampaignState::Scheduled);
        assert_eq!(
            store.campaign(&db, partner, spring.id).await.unwrap(),
            Some(launched.clone())
        );
        let scheduled = CampaignFilter {
            state: Some(CampaignState::Scheduled),
            channel: None,
        };
        assert_eq!(
            names(
                store
                    .list_campaigns(partner, scheduled, 10, None)
                    .await
                    .unwrap()
            ),
            ["Spring"]
        );
        // A stale etag, and a change racing another (same version read twice).
        let stale = store
            .change_campaign(&db, partner, spring.id, "v1", |c| {
                c.paused(now).map_err(rule)
            })
            .await
            .unwrap_err();
        assert!(matches!(
            stale,
            ApiError::FailedPrecondition {
                reason: "ETAG_MISMATCH",
                ..
            }
        ));
        let refused = store
            .change_campaign(&db, partner, spring.id, "", |c| {
                c.launched(now, None).map_err(rule)
            })
            .await
            .unwrap_err();
        assert!(
            matches!(
                refused,
                ApiError::FailedPrecondition {
                    reason: "CAMPAIGN_ALREADY_LAUNCHED",
                    ..
                }
            ),
            "{refused:?}"
        );
        let paused = store
            .change_campaign(&db, partner, spring.id, "", |c| c.paused(now).map_err(rule))
            .await
            .unwrap();
        assert_eq!(paused.state, CampaignState::Paused);
        let cancelled = store
            .change_campaign(&db, partner, spring.id, "", |c| {
                c.cancelled(now).map_err(rule)
            })
            .await
            .unwrap();
        assert_eq!(cancelled.cancelled_at, Some(now));

        // Only a draft is deleted; another partner's is not found.
        let deletable = |c: &Campaign| c.check_deletable().map_err(rule);
        let e = store
            .delete_campaign(&db, partner, spring.id, deletable)
            .await
            .unwrap_err();
        assert!(matches!(e, ApiError::FailedPrecondition { .. }));
        assert!(matches!(
            store.delete_campaign(&db, other, sms.id, deletable).await,
            Err(ApiError::NotFound(_))
        ));
        store
            .delete_campaign(&db, partner, sms.id, deletable)
            .await
            .unwrap();
        assert_eq!(store.campaign(&db, partner, sms.id).await.unwrap(), None);
    }

    #[tokio::test]
    async fn campaigns_live_through_their_states_on_postgres() {
        let test_db = loyalty_testkit::TestDb::postgres().await.expect("postgres");
        lifecycle(migrated(test_db.url()).await).await;
    }

    #[tokio::test]
    async fn campaigns_live_through_their_states_on_sqlite() {
        let dir = tempfile::tempdir().expect("tempdir");
        lifecycle(migrated(sqlite_url(&dir)).await).await;
    }
}

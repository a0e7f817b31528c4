//! Campaign RPCs: create, read, list, update and delete drafts; launch (the audience locked
//! for good); pause, resume and cancel launched campaigns. The messages of a launched
//! campaign are made and sent by the sending pipeline (next part of issue #8).
use chrono::Utc;
use loyalty_platform::{
    ApiError, Principal, Role, Violations,
    auth::principal,
    client::outgoing,
    error::{check_idempotency_key, mask_paths, parse_uuid},
    events,
    idempotency::{self, IdempotencyScope},
    paging,
    time::{from_timestamp, to_timestamp},
};
use loyalty_proto::{
    campaigns::v1 as pb, events::v1 as ev, rewards::v1 as rewards_pb, segmentation::v1 as seg,
    types::v1 as types,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{CampaignsApi, READERS, channel_from_proto, channel_to_proto};
use crate::{
    domain::{
        Channel, TemplateKind,
        campaign::{Campaign, CampaignRule, CampaignState, MAX_SCHEDULE_AHEAD_DAYS, SendWindow},
    },
    store::campaigns::CampaignFilter,
};

const UPDATABLE: &[&str] = &[
    "display_name",
    "note",
    "message_template_id",
    "audience_id",
    "reward_id",
    "send_rate_per_minute",
    "send_window",
    "time_zone",
];

fn rule(r: CampaignRule) -> ApiError {
    ApiError::precondition(r.reason(), r.message())
}

fn state_to_proto(s: CampaignState) -> pb::CampaignState {
    match s {
        CampaignState::Draft => pb::CampaignState::Draft,
        CampaignState::Scheduled => pb::CampaignState::Scheduled,
        CampaignState::Sending => pb::CampaignState::Sending,
        CampaignState::Paused => pb::CampaignState::Paused,
        CampaignState::Sent => pb::CampaignState::Sent,
        CampaignState::Cancelled => pb::CampaignState::Cancelled,
    }
}

fn state_from_proto(n: i32) -> Option<CampaignState> {
    match pb::CampaignState::try_from(n).unwrap_or_default() {
        pb::CampaignState::Draft => Some(CampaignState::Draft),
        pb::CampaignState::Scheduled => Some(CampaignState::Scheduled),
        pb::CampaignState::Sending => Some(CampaignState::Sending),
        pb::CampaignState::Paused => Some(CampaignState::Paused),
        pb::CampaignState::Sent => Some(CampaignState::Sent),
        pb::CampaignState::Cancelled => Some(CampaignState::Cancelled),
        pb::CampaignState::Unspecified => None,
    }
}

fn campaign_to_proto(c: &Campaign) -> pb::Campaign {
    let id = |u: Option<Uuid>| u.map(|u| u.to_string()).unwrap_or_default();
    pb::Campaign {
        id: c.id.to_string(),
        display_name: c.display_name.clone(),
        channel: channel_to_proto(c.channel) as i32,
        message_template_id: id(c.message_template_id),
        audience_id: id(c.audience_id),
        reward_id: id(c.reward_id),
        state: state_to_proto(c.state) as i32,
        schedule_time: c.schedule_at.map(to_timestamp),
        launch_time: c.launched_at.map(to_timestamp),
        finish_time: c.finished_at.map(to_timestamp),
        cancel_time: c.cancelled_at.map(to_timestamp),
        send_rate_per_minute: c.send_rate_per_minute,
        note: c.note.clone(),
        statistics: None,
        etag: c.etag(),
        create_time: Some(to_timestamp(c.created_at)),
        update_time: Some(to_timestamp(c.updated_at.unwrap_or(c.created_at))),
        send_window: c.send_window.map(|w| types::HourRange {
            start_hour: i32::try_from(w.start_hour).unwrap_or(0),
            end_hour: i32::try_from(w.end_hour).unwrap_or(0),
        }),
        time_zone: c.time_zone.clone(),
    }
}

fn window_from_proto(v: &mut Violations, w: Option<types::HourRange>) -> Option<SendWindow> {
    let w = w?;
    match (u32::try_from(w.start_hour), u32::try_from(w.end_hour)) {
        (Ok(start_hour), Ok(end_hour)) => Some(SendWindow {
            start_hour,
            end_hour,
        }),
        _ => {
            v.add("campaign.send_window", "hours must be 0..24");
            None
        }
    }
}

/// The time zone of a send window; empty = UTC.
fn time_zone(raw: &str) -> String {
    match raw.trim() {
        "" => "UTC".to_owned(),
        tz => tz.to_owned(),
    }
}

/// The campaign id of a state-change request, with its idempotency key checked.
fn target(idempotency_key: &str, campaign_id: &str) -> Result<Uuid, ApiError> {
    let mut v = Violations::new();
    check_idempotency_key(&mut v, idempotency_key);
    let id = v.uuid("campaign_id", campaign_id);
    v.into_result()?;
    Ok(id.unwrap_or_default())
}

impl CampaignsApi {
    /// Checks what a campaign points at: its template (the partner's, a CAMPAIGN template of
    /// the campaign's channel) and its audience (segmentation's, of the same channel, not
    /// locked by another campaign).
    async fn check_targets(
        &self,
        who: &Principal,
        partner_id: Uuid,
        c: &Campaign,
    ) -> Result<(), ApiError> {
        if let Some(id) = c.message_template_id {
            let t = self
                .store
                .template(partner_id, id)
                .await?
                .ok_or_else(|| ApiError::NotFound("message template".into()))?;
            let mut v = Violations::new();
            if t.kind != TemplateKind::Campaign {
                v.add(
                    "campaign.message_template_id",
                    "is a system template; a campaign sends CAMPAIGN templates (they need \
                     marketing consent)",
                );
            }
            if t.channel != c.channel {
                v.add(
                    "campaign.message_template_id",
                    format!(
                        "is a {} template; the campaign sends {}",
                        t.channel.as_str(),
                        c.channel.as_str()
                    ),
                );
            }
            v.into_result()?;
        }
        if let Some(id) = c.reward_id {
            let reward = self.reward(who, id).await?;
            if reward.r#type != rewards_pb::RewardType::Campaign as i32 {
                return Err(ApiError::invalid(
                    "campaign.reward_id",
                    "must be a CAMPAIGN reward (its vouchers are issued to the recipients)",
                ));
            }
        }
        if let Some(id) = c.audience_id {
            let audience = self.audience(who, id).await?;
            let channel =
                match types::CommunicationChannel::try_from(audience.channel).unwrap_or_default() {
                    types::CommunicationChannel::Email => Some(Channel::Email),
                    types::CommunicationChannel::Sms => Some(Channel::Sms),
                    types::CommunicationChannel::Push => Some(Channel::Push),
                    types::CommunicationChannel::Viber => Some(Channel::Viber),
                    types::CommunicationChannel::Unspecified => None,
                };
            if channel != Some(c.channel) {
                return Err(ApiError::invalid(
                    "campaign.audience_id",
                    format!(
                        "the audience was selected for another channel; the campaign sends {}",
                        c.channel.as_str()
                    ),
                ));
            }
            let locked = audience.state == seg::AudienceState::Locked as i32;
            if locked && audience.campaign_id != c.id.to_string() {
                return Err(ApiError::precondition(
                    "AUDIENCE_LOCKED",
                    "another campaign was launched at this audience; duplicate it to target \
                     its members again",
                ));
            }
        }
        Ok(())
    }

    /// What only a launch checks: a template showing `{{ voucher.code }}` needs a reward, and
    /// the reward must be active now.
    async fn check_launchable(
        &self,
        who: &Principal,
        partner_id: Uuid,
        c: &Campaign,
    ) -> Result<(), ApiError> {
        let template = match c.message_template_id {
            Some(id) => self.store.template(partner_id, id).await?,
            None => None,
        };
        if c.reward_id.is_none() && template.is_some_and(|t| t.reads("voucher.code")) {
            return Err(rule(CampaignRule::Incomplete(
                "reward_id: the template shows {{ voucher.code }}",
            )));
        }
        if let Some(id) = c.reward_id {
            let reward = self.reward(who, id).await?;
            let state = rewards_pb::RewardState::try_from(reward.state).unwrap_or_default();
            if !matches!(
                state,
                rewards_pb::RewardState::Active | rewards_pb::RewardState::Unspecified
            ) {
                return Err(ApiError::precondition(
                    "REWARD_NOT_ACTIVE",
                    "the campaign's reward is not active: no vouchers could be issued",
                ));
            }
        }
        Ok(())
    }

    /// The reward from rewards, read with the caller's key (another partner's is NOT_FOUND).
    pub(super) async fn reward(
        &self,
        who: &Principal,
        id: Uuid,
    ) -> Result<rewards_pb::Reward, ApiError> {
        let Some(rewards) = &self.rewards else {
            return Err(ApiError::Unavailable(
                "rewards is not configured (peers.rewards_url): campaign rewards need it".into(),
            ));
        };
        rewards
            .clone()
            .get_reward(outgoing(
                rewards_pb::GetRewardRequest {
                    reward_id: id.to_string(),
                },
                who,
            ))
            .await
            .map_err(|s| ApiError::from_upstream("rewards", s))?
            .into_inner()
            .reward
            .ok_or_else(|| ApiError::NotFound("reward".into()))
    }

    /// The audience from segmentation, read with the caller's key (another partner's is
    /// NOT_FOUND there, and so here).
    async fn audience(&self, who: &Principal, id: Uuid) -> Result<seg::Audience, ApiError> {
        let Some(segmentation) = &self.segmentation else {
            return Err(ApiError::Unavailable(
                "segmentation is not configured (peers.segmentation_url): campaigns target \
                 its audiences"
                    .into(),
            ));
        };
        segmentation
            .clone()
            .get_audience(outgoing(
                seg::GetAudienceRequest {
                    audience_id: id.to_string(),
                },
                who,
            ))
            .await
            .map_err(|s| ApiError::from_upstream("segmentation", s))?
            .into_inner()
            .audience
            .ok_or_else(|| ApiError::NotFound("audience".into()))
    }

    pub(super) async fn create_campaign_rpc(
        &self,
        request: Request<pb::CreateCampaignRequest>,
    ) -> Result<Response<pb::CreateCampaignResponse>, Status> {
        let who = principal(&request)?.clone();
        let partner_id = who.partner_with_role(&[Role::Marketing])?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "CreateCampaign", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let Some(c) = req.campaign else {
            return Err(ApiError::invalid("campaign", "is required").into());
        };
        let channel = channel_from_proto(c.channel).unwrap_or_else(|| {
            v.add("campaign.channel", "is required");
            Channel::Email
        });
        let campaign = Campaign {
            id: Uuid::now_v7(),
            display_name: c.display_name.trim().to_owned(),
            channel,
            message_template_id: v
                .optional_uuid("campaign.message_template_id", &c.message_template_id),
            audience_id: v.optional_uuid("campaign.audience_id", &c.audience_id),
            reward_id: v.optional_uuid("campaign.reward_id", &c.reward_id),
            state: CampaignState::Draft,
            schedule_at: None,
            launched_at: None,
            finished_at: None,
            cancelled_at: None,
            send_rate_per_minute: c.send_rate_per_minute,
            send_window: window_from_proto(&mut v, c.send_window),
            time_zone: time_zone(&c.time_zone),
            note: c.note,
            version: 1,
            created_at: Utc::now(),
            updated_at: None,
        };
        campaign.validate(&mut v);
        v.into_result()?;
        // A retry answers what the first call stored before any peer is asked again.
        if let Some(done) = idempotency::stored::<Campaign>(self.store.db(), &scope).await? {
            return Ok(Response::new(pb::CreateCampaignResponse {
                campaign: Some(campaign_to_proto(&done)),
            }));
        }
        self.check_targets(&who, partner_id, &campaign).await?;
        let store = self.store.clone();
        let created: Campaign = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                store.insert_campaign(txn, partner_id, &campaign).await?;
                Ok(campaign)
            })
        })
        .await?;
        Ok(Response::new(pb::CreateCampaignResponse {
            campaign: Some(campaign_to_proto(&created)),
        }))
    }

    pub(super) async fn get_campaign_rpc(
        &self,
        request: Request<pb::GetCampaignRequest>,
    ) -> Result<Response<pb::GetCampaignResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let id = parse_uuid("campaign_id", &request.get_ref().campaign_id)?;
        let c = self
            .store
            .campaign(self.store.db(), partner_id, id)
            .await?
            .ok_or_else(|| ApiError::NotFound("campaign".into()))?;
        let mut campaign = campaign_to_proto(&c);
        if c.state != CampaignState::Draft {
            campaign.statistics = Some(self.statistics(partner_id, id).await?);
        }
        Ok(Response::new(pb::GetCampaignResponse {
            campaign: Some(campaign),
        }))
    }

    pub(super) async fn list_campaigns_rpc(
        &self,
        request: Request<pb::ListCampaignsRequest>,
    ) -> Result<Response<pb::ListCampaignsResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let limit = paging::page_size(&mut v, req.page_size);
        let after = paging::parse_page_token(&mut v, &req.page_token);
        if pb::CampaignState::try_from(req.state).is_err() {
            v.add("state", "is not a campaign state");
        }
        if pb::Channel::try_from(req.channel).is_err() {
            v.add("channel", "is not a channel");
        }
        v.into_result()?;
        let filter = CampaignFilter {
            state: state_from_proto(req.state),
            channel: channel_from_proto(req.channel),
        };
        let found = self
            .store
            .list_campaigns(partner_id, filter, limit, after)
            .await?;
        Ok(Response::new(pb::ListCampaignsResponse {
            next_page_token: paging::next_page_token(
                found.len(),
                limit,
                found.last().map(|c| c.id),
            ),
            campaigns: found.iter().map(campaign_to_proto).collect(),
        }))
    }

    pub(super) async fn update_campaign_rpc(
        &self,
        request: Request<pb::UpdateCampaignRequest>,
    ) -> Result<Response<pb::UpdateCampaignResponse>, Status> {
        let who = principal(&request)?.clone();
        let partner_id = who.partner_with_role(&[Role::Marketing])?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "UpdateCampaign", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let paths = mask_paths(&mut v, req.update_mask, UPDATABLE);
        let c = req.campaign.unwrap_or_default();
        let id = v.uuid("campaign.id", &c.id);
        let masked = |p: &str| paths.iter().any(|m| m == p);
        let template = v.optional_uuid("campaign.message_template_id", &c.message_template_id);
        let audience = v.optional_uuid("campaign.audience_id", &c.audience_id);
        let reward = v.optional_uuid("campaign.reward_id", &c.reward_id);
        let window = window_from_proto(&mut v, c.send_window);
        v.into_result()?;
        if let Some(done) = idempotency::stored::<Campaign>(self.store.db(), &scope).await? {
            return Ok(Response::new(pb::UpdateCampaignResponse {
                campaign: Some(campaign_to_proto(&done)),
            }));
        }
        let id = id.unwrap_or_default();
        let current = self
            .store
            .campaign(self.store.db(), partner_id, id)
            .await?
            .ok_or_else(|| ApiError::NotFound("campaign".into()))?;
        let fields: Vec<&str> = paths.iter().map(String::as_str).collect();
        current.check_editable(&fields).map_err(rule)?;
        let mut next = current.clone();
        if masked("display_name") {
            next.display_name = c.display_name.trim().to_owned();
        }
        if masked("note") {
            next.note = c.note;
        }
        if masked("message_template_id") {
            next.message_template_id = template;
        }
        if masked("audience_id") {
            next.audience_id = audience;
        }
        if masked("reward_id") {
            next.reward_id = reward;
        }
        if masked("send_rate_per_minute") {
            next.send_rate_per_minute = c.send_rate_per_minute;
        }
        if masked("send_window") {
            next.send_window = window;
        }
        if masked("time_zone") {
            next.time_zone = time_zone(&c.time_zone);
        }
        let mut v = Violations::new();
        next.validate(&mut v);
        v.into_result()?;
        if masked("message_template_id") || masked("audience_id") {
            self.check_targets(&who, partner_id, &next).await?;
        }
        next.version = current.version + 1;
        next.updated_at = Some(Utc::now());
        let (store, etag) = (self.store.clone(), req.etag);
        let updated: Campaign = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                store
                    .change_campaign(txn, partner_id, id, &etag, |now| {
                        // Written only over the version the checks above read.
                        if now.version != current.version {
                            return Err(ApiError::precondition(
                                "ETAG_MISMATCH",
                                "the campaign changed meanwhile; read it again",
                            ));
                        }
                        Ok(next)
                    })
                    .await
            })
        })
        .await?;
        Ok(Response::new(pb::UpdateCampaignResponse {
            campaign: Some(campaign_to_proto(&updated)),
        }))
    }

    pub(super) async fn delete_campaign_rpc(
        &self,
        request: Request<pb::DeleteCampaignRequest>,
    ) -> Result<Response<pb::DeleteCampaignResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(&[Role::Marketing])?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "DeleteCampaign", &req.idempotency_key, &req);
        let id = target(&req.idempotency_key, &req.campaign_id)?;
        let store = self.store.clone();
        idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                store
                    .delete_campaign(txn, partner_id, id, |c| c.check_deletable().map_err(rule))
                    .await
            })
        })
        .await?;
        Ok(Response::new(pb::DeleteCampaignResponse {}))
    }

    pub(super) async fn launch_campaign_rpc(
        &self,
        request: Request<pb::LaunchCampaignRequest>,
    ) -> Result<Response<pb::LaunchCampaignResponse>, Status> {
        let who = principal(&request)?.clone();
        let partner_id = who.partner_with_role(&[Role::Marketing])?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "LaunchCampaign", &req.idempotency_key, &req);
        let id = target(&req.idempotency_key, &req.campaign_id)?;
        let now = Utc::now();
        let schedule = match req.schedule_time.as_ref() {
            None => None,
            Some(t) => {
                let at = from_timestamp(t)
                    .ok_or_else(|| ApiError::invalid("schedule_time", "is not a valid time"))?;
                if at > now + chrono::Duration::days(MAX_SCHEDULE_AHEAD_DAYS) {
                    return Err(ApiError::invalid(
                        "schedule_time",
                        format!("must be at most {MAX_SCHEDULE_AHEAD_DAYS} days ahead"),
                    )
                    .into());
                }
                Some(at)
            }
        };
        if let Some(done) = idempotency::stored::<Campaign>(self.store.db(), &scope).await? {
            return Ok(Response::new(pb::LaunchCampaignResponse {
                campaign: Some(campaign_to_proto(&done)),
            }));
        }
        let current = self
            .store
            .campaign(self.store.db(), partner_id, id)
            .await?
            .ok_or_else(|| ApiError::NotFound("campaign".into()))?;
        // Every rule the launch itself checks, before the audience is locked for good.
        current.launched(now, schedule).map_err(rule)?;
        if let Some(channels) = &self.channels
            && !channels.contains(&current.channel)
        {
            return Err(ApiError::precondition(
                "CHANNEL_NOT_CONFIGURED",
                format!(
                    "no delivery adapter is configured for {} (LOYALTY_DELIVERY__...)",
                    current.channel.as_str()
                ),
            )
            .into());
        }
        self.check_targets(&who, partner_id, &current).await?;
        self.check_launchable(&who, partner_id, &current).await?;
        let audience_id = current.audience_id.unwrap_or_default();
        let audience = self.audience(&who, audience_id).await?;
        if audience.member_count == 0 {
            return Err(ApiError::precondition(
                "AUDIENCE_EMPTY",
                "the audience has no members: nobody would get the campaign",
            )
            .into());
        }
        // Locked first, for this campaign: a failure after it leaves the audience locked by
        // this very campaign, and a retry locks it again (segmentation answers it unchanged)
        // and records the launch.
        self.lock(&who, audience_id, id).await?;
        let store = self.store.clone();
        let launched: Campaign = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                store
                    .change_campaign(txn, partner_id, id, "", |c| {
                        // Launched with the audience just locked, not one an update set since.
                        if c.audience_id != current.audience_id {
                            return Err(ApiError::precondition(
                                "ETAG_MISMATCH",
                                "the campaign's audience changed during the launch; launch again",
                            ));
                        }
                        c.launched(now, schedule).map_err(rule)
                    })
                    .await
            })
        })
        .await?;
        tracing::info!(%partner_id, campaign_id = %id, state = launched.state.as_str(), "campaign launched");
        Ok(Response::new(pb::LaunchCampaignResponse {
            campaign: Some(campaign_to_proto(&launched)),
        }))
    }

    /// Locks the audience for the campaign (segmentation's LockAudience, idempotent per
    /// campaign).
    async fn lock(
        &self,
        who: &Principal,
        audience_id: Uuid,
        campaign_id: Uuid,
    ) -> Result<(), ApiError> {
        let Some(segmentation) = &self.segmentation else {
            return Err(ApiError::Unavailable(
                "segmentation is not configured (peers.segmentation_url)".into(),
            ));
        };
        segmentation
            .clone()
            .lock_audience(outgoing(
                seg::LockAudienceRequest {
                    idempotency_key: format!("campaign-launch-{campaign_id}"),
                    audience_id: audience_id.to_string(),
                    campaign_id: campaign_id.to_string(),
                },
                who,
            ))
            .await
            .map_err(|s| ApiError::from_upstream("segmentation", s))?;
        Ok(())
    }

    /// A state change of a launched campaign (pause, resume, cancel), idempotent.
    async fn transition(
        &self,
        partner_id: Uuid,
        scope: IdempotencyScope,
        id: Uuid,
        change: fn(&Campaign, chrono::DateTime<Utc>) -> Result<Campaign, CampaignRule>,
    ) -> Result<pb::Campaign, ApiError> {
        let store = self.store.clone();
        let changed: Campaign = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                store
                    .change_campaign(txn, partner_id, id, "", |c| {
                        change(c, Utc::now()).map_err(rule)
                    })
                    .await
            })
        })
        .await?;
        Ok(campaign_to_proto(&changed))
    }

    pub(super) async fn cancel_campaign_rpc(
        &self,
        request: Request<pb::CancelCampaignRequest>,
    ) -> Result<Response<pb::CancelCampaignResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(&[Role::Marketing])?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "CancelCampaign", &req.idempotency_key, &req);
        let id = target(&req.idempotency_key, &req.campaign_id)?;
        if req.reason.chars().count() > 500 {
            return Err(ApiError::invalid("reason", "must be at most 500 characters").into());
        }
        let store = self.store.clone();
        let cancelled: Campaign = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                let c = store
                    .change_campaign(txn, partner_id, id, "", |c| {
                        c.cancelled(Utc::now()).map_err(rule)
                    })
                    .await?;
                // Unsent messages are dropped with the campaign, in the same transaction.
                store.cancel_queued(txn, id).await?;
                events::enqueue(
                    txn,
                    Some(partner_id),
                    &ev::CampaignCancelled {
                        campaign_id: id.to_string(),
                    },
                )
                .await?;
                Ok(c)
            })
        })
        .await?;
        let campaign = campaign_to_proto(&cancelled);
        tracing::info!(%partner_id, campaign_id = %id, reason = %req.reason, "campaign cancelled");
        Ok(Response::new(pb::CancelCampaignResponse {
            campaign: Some(campaign),
        }))
    }

    pub(super) async fn pause_campaign_rpc(
        &self,
        request: Request<pb::PauseCampaignRequest>,
    ) -> Result<Response<pb::PauseCampaignResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(&[Role::Marketing])?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "PauseCampaign", &req.idempotency_key, &req);
        let id = target(&req.idempotency_key, &req.campaign_id)?;
        let campaign = self
            .transition(partner_id, scope, id, Campaign::paused)
            .await?;
        Ok(Response::new(pb::PauseCampaignResponse {
            campaign: Some(campaign),
        }))
    }

    pub(super) async fn resume_campaign_rpc(
        &self,
        request: Request<pb::ResumeCampaignRequest>,
    ) -> Result<Response<pb::ResumeCampaignResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(&[Role::Marketing])?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "ResumeCampaign", &req.idempotency_key, &req);
        let id = target(&req.idempotency_key, &req.campaign_id)?;
        let campaign = self
            .transition(partner_id, scope, id, Campaign::resumed)
            .await?;
        Ok(Response::new(pb::ResumeCampaignResponse {
            campaign: Some(campaign),
        }))
    }
}

//! The audience RPCs (seed 001) and the Customer 360 audience list and contacts (seed 002).
//! Each handler authorizes, validates, calls the store (which applies the domain rules) and
//! maps the answer.
use chrono::{DateTime, Utc};
use loyalty_platform::{
    ApiError, Role, Violations,
    auth::principal,
    error::{check_idempotency_key, mask_paths},
    idempotency::{self, IdempotencyScope},
    paging,
    time::to_timestamp,
};
use loyalty_proto::{segmentation::v1 as pb, types::v1 as types};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    SegmentationApi, criterion_to_proto, raw_from_proto,
    segments::{cause_to_proto, member_to_proto},
};
use crate::{
    domain::{
        HistoryEntry,
        audience::{
            Audience, AudienceDraft, AudienceRule, AudienceState, Channel, check_name, check_note,
        },
        parse_criterion,
    },
    store::audiences::{
        AudienceFilter, AudienceHistoryEntry, AudienceHistoryFilter, Candidates, Contact,
        CustomerAudience, EXPORT_BATCH, audience_rule,
    },
};

/// Roles that read audiences and their contacts: marketing, Customer 360 operators (support)
/// and the campaigns service.
const AUDIENCE_READERS: &[Role] = &[Role::Marketing, Role::Support, Role::Service];
/// Roles that create, rename, duplicate and delete audiences.
const EDITORS: &[Role] = &[Role::Marketing];
/// Roles that add and remove members by hand (marketing, Customer 360 operators).
const MEMBER_EDITORS: &[Role] = &[Role::Marketing, Role::Support];
/// Roles that lock an audience (the campaigns service at a launch, or marketing).
const LOCKERS: &[Role] = &[Role::Service, Role::Marketing];
/// Fields UpdateAudience may change.
const UPDATABLE: &[&str] = &["display_name", "note"];

fn channel_from_proto(v: i32) -> Result<Option<Channel>, ()> {
    use types::CommunicationChannel as C;
    Ok(match C::try_from(v).map_err(|_| ())? {
        C::Unspecified => None,
        C::Email => Some(Channel::Email),
        C::Sms => Some(Channel::Sms),
        C::Push => Some(Channel::Push),
        C::Viber => Some(Channel::Viber),
    })
}

fn channel_to_proto(c: Channel) -> types::CommunicationChannel {
    use types::CommunicationChannel as C;
    match c {
        Channel::Email => C::Email,
        Channel::Sms => C::Sms,
        Channel::Push => C::Push,
        Channel::Viber => C::Viber,
    }
}

fn state_to_proto(s: AudienceState) -> pb::AudienceState {
    match s {
        AudienceState::Ready => pb::AudienceState::Ready,
        AudienceState::Locked => pb::AudienceState::Locked,
    }
}

fn state_from_proto(v: i32) -> Result<Option<AudienceState>, ()> {
    Ok(match pb::AudienceState::try_from(v).map_err(|_| ())? {
        pb::AudienceState::Unspecified => None,
        pb::AudienceState::Ready => Some(AudienceState::Ready),
        pb::AudienceState::Locked => Some(AudienceState::Locked),
    })
}

fn id_or_empty(id: Option<Uuid>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}

fn audience_to_proto(a: &Audience) -> pb::Audience {
    pb::Audience {
        id: a.id.to_string(),
        display_name: a.display_name.clone(),
        channel: channel_to_proto(a.channel) as i32,
        criterion: Some(criterion_to_proto(&a.criterion)),
        required_consent_type_codes: a.required_consents.clone(),
        state: state_to_proto(a.state) as i32,
        member_count: a.member_count,
        exclusions: Some(pb::AudienceExclusions {
            no_consent_count: a.exclusions.no_consent,
            hard_bounce_count: a.exclusions.hard_bounce,
            soft_bounce_count: a.exclusions.soft_bounce,
            no_address_count: a.exclusions.no_address,
            inactive_count: 0,
        }),
        source_audience_id: id_or_empty(a.source_audience_id),
        campaign_id: id_or_empty(a.campaign_id),
        lock_time: a.locked_at.map(to_timestamp),
        note: a.note.clone(),
        etag: a.etag(),
        create_time: Some(to_timestamp(a.created_at)),
        update_time: Some(to_timestamp(a.updated_at)),
    }
}

fn contact_to_proto(c: &Contact) -> pb::AudienceContact {
    pb::AudienceContact {
        customer_id: c.customer_id.to_string(),
        first_name: c.first_name.clone(),
        last_name: c.last_name.clone(),
        birth_date: c.birth_date.clone(),
        email: c.email.clone(),
        phone: c.phone.clone(),
        add_time: Some(to_timestamp(c.added_at)),
        cause: cause_to_proto(c.cause) as i32,
    }
}

fn customer_audience_to_proto(c: &CustomerAudience) -> pb::CustomerAudience {
    let a = &c.audience;
    pb::CustomerAudience {
        audience_id: a.id.to_string(),
        audience_display_name: a.display_name.clone(),
        channel: channel_to_proto(a.channel) as i32,
        state: state_to_proto(a.state) as i32,
        add_time: Some(to_timestamp(c.added_at)),
        lock_time: a.locked_at.map(to_timestamp),
        member_count: a.member_count,
        audience_create_time: Some(to_timestamp(a.created_at)),
        campaign_id: id_or_empty(a.campaign_id),
    }
}

fn audience_history_to_proto(h: &AudienceHistoryEntry) -> pb::MembershipHistoryEntry {
    pb::MembershipHistoryEntry {
        id: h.id.to_string(),
        customer_id: h.customer_id.to_string(),
        group_kind: pb::GroupKind::Audience as i32,
        group_id: h.audience_id.to_string(),
        group_display_name: h.audience_display_name.clone(),
        change: if h.entered {
            pb::MembershipChange::Entered
        } else {
            pb::MembershipChange::Left
        } as i32,
        cause: cause_to_proto(h.cause) as i32,
        workflow_execution_id: String::new(),
        change_time: Some(to_timestamp(h.at)),
    }
}

/// An idempotency key and an audience id, validated together.
fn keyed_audience(key: &str, audience_id: &str) -> Result<Uuid, ApiError> {
    let mut v = Violations::new();
    check_idempotency_key(&mut v, key);
    let id = v.uuid("audience_id", audience_id);
    v.finish(|| id.unwrap_or_default())
}

/// An idempotency key, an audience and a customer, validated together.
fn keyed_member(key: &str, audience_id: &str, customer_id: &str) -> Result<(Uuid, Uuid), ApiError> {
    let mut v = Violations::new();
    check_idempotency_key(&mut v, key);
    let id = v.uuid("audience_id", audience_id);
    let customer = v.uuid("customer_id", customer_id);
    v.finish(|| (id.unwrap_or_default(), customer.unwrap_or_default()))
}

/// Which history tables a ListMembershipHistory call reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HistorySources {
    pub segments: bool,
    pub audiences: bool,
}

/// Segment and audience history rows, merged newest first by (time, id) and cut to `limit`.
/// A customer unknown to the segment history (NOT_FOUND) who has audience history is known.
pub(super) fn merge_history(
    segments: Result<Vec<HistoryEntry>, ApiError>,
    audiences: Vec<AudienceHistoryEntry>,
    limit: u64,
    segment_to_proto: impl Fn(&HistoryEntry) -> pb::MembershipHistoryEntry,
) -> Result<Vec<(DateTime<Utc>, Uuid, pb::MembershipHistoryEntry)>, ApiError> {
    let segments = match segments {
        Err(ApiError::NotFound(_)) if !audiences.is_empty() => Vec::new(),
        other => other?,
    };
    let mut all: Vec<_> = segments
        .iter()
        .map(|h| (h.at, h.id, segment_to_proto(h)))
        .chain(
            audiences
                .iter()
                .map(|h| (h.at, h.id, audience_history_to_proto(h))),
        )
        .collect();
    all.sort_by_key(|e| std::cmp::Reverse((e.0, e.1)));
    all.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(all)
}

impl SegmentationApi {
    /// Where ListMembershipHistory looks: a group kind names one table (segments and badges
    /// share one); without one, a group id is looked up as an audience (else a segment or
    /// badge) and a customer's history is both.
    pub(super) async fn history_sources(
        &self,
        partner_id: Uuid,
        kind: pb::GroupKind,
        group_id: Option<Uuid>,
    ) -> Result<HistorySources, ApiError> {
        let (segments, audiences) = match (kind, group_id) {
            // Segments and badges keep their history in the same table.
            (pb::GroupKind::Segment | pb::GroupKind::Badge, _) => (true, false),
            (pb::GroupKind::Audience, _) => (false, true),
            (pb::GroupKind::Unspecified, Some(id)) => {
                let audience = self.store.is_audience(partner_id, id).await?;
                (!audience, audience)
            }
            (pb::GroupKind::Unspecified, None) => (true, true),
        };
        Ok(HistorySources {
            segments,
            audiences,
        })
    }

    /// The audience rows of ListMembershipHistory.
    pub(super) async fn audience_history_rows(
        &self,
        partner_id: Uuid,
        filter: AudienceHistoryFilter,
        limit: u64,
        after: Option<(DateTime<Utc>, Uuid)>,
    ) -> Result<Vec<AudienceHistoryEntry>, ApiError> {
        self.store
            .audience_history(partner_id, filter, limit, after)
            .await
    }

    pub(super) async fn create_audience_rpc(
        &self,
        request: Request<pb::CreateAudienceRequest>,
    ) -> Result<Response<pb::CreateAudienceResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(EDITORS)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "CreateAudience", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let Some(a) = req.audience else {
            return Err(ApiError::invalid("audience", "is required").into());
        };
        let channel = channel_from_proto(a.channel).unwrap_or_else(|()| {
            v.add("audience.channel", "is not a channel");
            None
        });
        let raw = a
            .criterion
            .as_ref()
            .map(|c| raw_from_proto(&mut v, "audience.criterion", c));
        let draft = AudienceDraft {
            display_name: a.display_name,
            channel,
            criterion: parse_criterion(&mut v, "audience.criterion", raw),
            required_consents: a.required_consent_type_codes,
            note: a.note,
        };
        draft.validate(&mut v);
        v.into_result()?;
        let Some(audience) = draft.into_audience(Uuid::now_v7(), Utc::now()) else {
            return Err(ApiError::invalid("audience", "is incomplete").into());
        };
        let store = self.store.clone();
        let created: Audience = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                store
                    .create_audience(txn, partner_id, audience, Candidates::Criterion)
                    .await
            })
        })
        .await?;
        Ok(Response::new(pb::CreateAudienceResponse {
            audience: Some(audience_to_proto(&created)),
        }))
    }

    pub(super) async fn get_audience_rpc(
        &self,
        request: Request<pb::GetAudienceRequest>,
    ) -> Result<Response<pb::GetAudienceResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(AUDIENCE_READERS)?;
        let mut v = Violations::new();
        let id = v.uuid("audience_id", &request.get_ref().audience_id);
        v.into_result()?;
        let a = self
            .store
            .audience(partner_id, id.unwrap_or_default())
            .await?;
        Ok(Response::new(pb::GetAudienceResponse {
            audience: Some(audience_to_proto(&a)),
        }))
    }

    pub(super) async fn list_audiences_rpc(
        &self,
        request: Request<pb::ListAudiencesRequest>,
    ) -> Result<Response<pb::ListAudiencesResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(AUDIENCE_READERS)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let limit = paging::page_size(&mut v, req.page_size);
        let after = paging::parse_page_token(&mut v, &req.page_token);
        let state = state_from_proto(req.state).unwrap_or_else(|()| {
            v.add("state", "is not an audience state");
            None
        });
        let channel = channel_from_proto(req.channel).unwrap_or_else(|()| {
            v.add("channel", "is not a channel");
            None
        });
        v.into_result()?;
        let found = self
            .store
            .list_audiences(partner_id, AudienceFilter { state, channel }, limit, after)
            .await?;
        Ok(Response::new(pb::ListAudiencesResponse {
            next_page_token: paging::next_page_token(
                found.len(),
                limit,
                found.last().map(|a| a.id),
            ),
            audiences: found.iter().map(audience_to_proto).collect(),
        }))
    }

    pub(super) async fn update_audience_rpc(
        &self,
        request: Request<pb::UpdateAudienceRequest>,
    ) -> Result<Response<pb::UpdateAudienceResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(EDITORS)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "UpdateAudience", &req.idempotency_key, &req);
        // The selection is fixed at creation: a business rule, not a malformed request.
        if req
            .update_mask
            .as_ref()
            .is_some_and(|m| m.paths.iter().any(|p| p == "criterion"))
        {
            return Err(audience_rule(AudienceRule::CriterionFixed).into());
        }
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let paths = mask_paths(&mut v, req.update_mask, UPDATABLE);
        let a = req.audience.unwrap_or_default();
        let id = v.uuid("audience.id", &a.id);
        let masked = |p: &str| paths.iter().any(|m| m == p);
        let name = masked("display_name").then_some(a.display_name);
        let note = masked("note").then_some(a.note);
        if let Some(name) = &name {
            check_name(&mut v, "audience.display_name", name);
        }
        if let Some(note) = &note {
            check_note(&mut v, "audience.note", note);
        }
        v.into_result()?;
        let id = id.unwrap_or_default();
        let etag = req.etag;
        let store = self.store.clone();
        let updated: Audience = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                store
                    .update_audience(txn, partner_id, id, &etag, |current| {
                        let mut next = current.clone();
                        if let Some(name) = name {
                            next.display_name = name;
                        }
                        if let Some(note) = note {
                            next.note = note;
                        }
                        Ok(next)
                    })
                    .await
            })
        })
        .await?;
        Ok(Response::new(pb::UpdateAudienceResponse {
            audience: Some(audience_to_proto(&updated)),
        }))
    }

    pub(super) async fn delete_audience_rpc(
        &self,
        request: Request<pb::DeleteAudienceRequest>,
    ) -> Result<Response<pb::DeleteAudienceResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(EDITORS)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "DeleteAudience", &req.idempotency_key, &req);
        let id = keyed_audience(&req.idempotency_key, &req.audience_id)?;
        let store = self.store.clone();
        idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move { store.delete_audience(txn, partner_id, id, Utc::now()).await })
        })
        .await?;
        Ok(Response::new(pb::DeleteAudienceResponse {}))
    }

    pub(super) async fn list_audience_members_rpc(
        &self,
        request: Request<pb::ListAudienceMembersRequest>,
    ) -> Result<Response<pb::ListAudienceMembersResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(AUDIENCE_READERS)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = v.uuid("audience_id", &req.audience_id);
        let limit = paging::page_size(&mut v, req.page_size);
        let after = paging::parse_page_token(&mut v, &req.page_token);
        v.into_result()?;
        let found = self
            .store
            .audience_contacts(partner_id, id.unwrap_or_default(), limit, after)
            .await?;
        Ok(Response::new(pb::ListAudienceMembersResponse {
            next_page_token: paging::next_page_token(
                found.len(),
                limit,
                found.last().map(|c| c.customer_id),
            ),
            members: found
                .iter()
                .map(|c| {
                    member_to_proto(&crate::domain::Member {
                        customer_id: c.customer_id,
                        added_at: c.added_at,
                        cause: c.cause,
                    })
                })
                .collect(),
            contacts: found.iter().map(contact_to_proto).collect(),
        }))
    }

    pub(super) async fn add_audience_member_rpc(
        &self,
        request: Request<pb::AddAudienceMemberRequest>,
    ) -> Result<Response<pb::AddAudienceMemberResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(MEMBER_EDITORS)?;
        let req = request.into_inner();
        let scope =
            IdempotencyScope::new(partner_id, "AddAudienceMember", &req.idempotency_key, &req);
        let (id, customer_id) =
            keyed_member(&req.idempotency_key, &req.audience_id, &req.customer_id)?;
        let store = self.store.clone();
        let a: Audience = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                store
                    .add_audience_member(txn, partner_id, id, customer_id, Utc::now())
                    .await
            })
        })
        .await?;
        Ok(Response::new(pb::AddAudienceMemberResponse {
            audience: Some(audience_to_proto(&a)),
        }))
    }

    pub(super) async fn remove_audience_member_rpc(
        &self,
        request: Request<pb::RemoveAudienceMemberRequest>,
    ) -> Result<Response<pb::RemoveAudienceMemberResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(MEMBER_EDITORS)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(
            partner_id,
            "RemoveAudienceMember",
            &req.idempotency_key,
            &req,
        );
        let (id, customer_id) =
            keyed_member(&req.idempotency_key, &req.audience_id, &req.customer_id)?;
        let store = self.store.clone();
        let a: Audience = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                store
                    .remove_audience_member(txn, partner_id, id, customer_id, Utc::now())
                    .await
            })
        })
        .await?;
        Ok(Response::new(pb::RemoveAudienceMemberResponse {
            audience: Some(audience_to_proto(&a)),
        }))
    }

    pub(super) async fn duplicate_audience_rpc(
        &self,
        request: Request<pb::DuplicateAudienceRequest>,
    ) -> Result<Response<pb::DuplicateAudienceResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(EDITORS)?;
        let req = request.into_inner();
        let scope =
            IdempotencyScope::new(partner_id, "DuplicateAudience", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let source = v.uuid("audience_id", &req.audience_id);
        if !req.display_name.is_empty() {
            check_name(&mut v, "display_name", &req.display_name);
        }
        v.into_result()?;
        let source = source.unwrap_or_default();
        let (name, reselect) = (req.display_name, req.reselect);
        let store = self.store.clone();
        let copy: Audience = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                store
                    .duplicate_audience(txn, partner_id, source, &name, reselect, Utc::now())
                    .await
            })
        })
        .await?;
        Ok(Response::new(pb::DuplicateAudienceResponse {
            audience: Some(audience_to_proto(&copy)),
        }))
    }

    pub(super) async fn lock_audience_rpc(
        &self,
        request: Request<pb::LockAudienceRequest>,
    ) -> Result<Response<pb::LockAudienceResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(LOCKERS)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "LockAudience", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let id = v.uuid("audience_id", &req.audience_id);
        let campaign = v.uuid("campaign_id", &req.campaign_id);
        v.into_result()?;
        let (id, campaign) = (id.unwrap_or_default(), campaign.unwrap_or_default());
        let store = self.store.clone();
        let a: Audience = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                store
                    .lock_audience(txn, partner_id, id, campaign, Utc::now())
                    .await
            })
        })
        .await?;
        Ok(Response::new(pb::LockAudienceResponse {
            audience: Some(audience_to_proto(&a)),
        }))
    }

    pub(super) async fn list_customer_audiences_rpc(
        &self,
        request: Request<pb::ListCustomerAudiencesRequest>,
    ) -> Result<Response<pb::ListCustomerAudiencesResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(AUDIENCE_READERS)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let customer_id = v.uuid("customer_id", &req.customer_id);
        let limit = paging::page_size(&mut v, req.page_size);
        let after = paging::parse_page_token(&mut v, &req.page_token);
        v.into_result()?;
        let found = self
            .store
            .customer_audiences(partner_id, customer_id.unwrap_or_default(), limit, after)
            .await?;
        Ok(Response::new(pb::ListCustomerAudiencesResponse {
            next_page_token: paging::next_page_token(
                found.len(),
                limit,
                found.last().map(|c| c.audience.id),
            ),
            audiences: found.iter().map(customer_audience_to_proto).collect(),
        }))
    }

    pub(super) async fn export_audience_members_rpc(
        &self,
        request: Request<pb::ExportAudienceMembersRequest>,
    ) -> Result<Response<super::ExportAudienceMembersStream>, Status> {
        let partner_id = principal(&request)?.partner_with_role(AUDIENCE_READERS)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = v.uuid("audience_id", &req.audience_id);
        let start_after = v.optional_uuid("start_after_customer_id", &req.start_after_customer_id);
        let batch = match req.batch_size {
            0 => EXPORT_BATCH,
            n @ 1..=1000 => n as u64,
            _ => {
                v.add("batch_size", "must be 0..1000");
                EXPORT_BATCH
            }
        };
        v.into_result()?;
        let id = id.unwrap_or_default();
        // NOT_FOUND as the call's status, not as the first message.
        self.store.audience(partner_id, id).await?;
        let store = self.store.clone();
        // One batch is read per message the client pulls: the audience is never in memory.
        let stream = futures::stream::unfold(Some(start_after), move |cursor| {
            let store = store.clone();
            async move {
                let after = cursor?;
                match store.audience_contacts(partner_id, id, batch, after).await {
                    Ok(page) if page.is_empty() => None,
                    Ok(page) => {
                        let next = (page.len() as u64 == batch)
                            .then(|| page.last().map(|c| c.customer_id));
                        Some((
                            Ok(pb::ExportAudienceMembersResponse {
                                contacts: page.iter().map(contact_to_proto).collect(),
                            }),
                            next,
                        ))
                    }
                    Err(e) => Some((Err(Status::from(e)), None)),
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

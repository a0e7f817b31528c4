//! The segment lifecycle RPCs: list, update, delete, recalculate, members, manual changes and
//! membership history. Each handler authorizes, validates, calls the store (which applies the
//! domain rules) and maps the answer.
use chrono::Utc;
use loyalty_platform::{
    ApiError, Role, Violations,
    auth::principal,
    error::{check_idempotency_key, mask_paths},
    idempotency::{self, IdempotencyScope},
    paging,
    time::{from_timestamp, to_timestamp},
};
use loyalty_proto::segmentation::v1 as pb;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    READERS, SegmentationApi, audiences::merge_history, membership_to_proto, raw_from_proto,
    segment_to_proto,
};
use crate::{
    domain::{
        GroupKind, HistoryEntry, ManualChange, Member, Membership, MembershipCause, Segment,
        SegmentDraft, SegmentKind, parse_criterion,
    },
    store::{
        audiences::AudienceHistoryFilter,
        cache::Change,
        membership::{
            HistoryFilter, ManualOutcome, Recalculated, SegmentFilter, rule, stored_time,
        },
    },
};

/// Roles that change segment definitions and recalculate them.
pub(super) const EDITORS: &[Role] = &[Role::Marketing];
/// Roles that add and remove members: marketing, Customer 360 operators (support) and
/// automation workflows (service).
pub(super) const MEMBERSHIP_EDITORS: &[Role] = &[Role::Marketing, Role::Support, Role::Service];
/// Fields UpdateSegment may change.
const UPDATABLE: &[&str] = &[
    "display_name",
    "note",
    "kind",
    "online_recalculation",
    "criterion",
];

pub(super) fn cause_to_proto(c: MembershipCause) -> pb::MembershipCause {
    use pb::MembershipCause as P;
    match c {
        MembershipCause::Creation => P::Creation,
        MembershipCause::Recalculation => P::Recalculation,
        MembershipCause::Manual => P::Manual,
        MembershipCause::Workflow => P::Workflow,
        MembershipCause::GroupDeleted => P::GroupDeleted,
        MembershipCause::CustomerRemoved => P::CustomerRemoved,
    }
}

pub(super) fn kind_to_proto(k: SegmentKind) -> pb::SegmentKind {
    match k {
        SegmentKind::Standard => pb::SegmentKind::Standard,
        SegmentKind::Flexi => pb::SegmentKind::Flexi,
    }
}

/// A kind sent by a client: `Ok(None)` for unspecified, an error for an unknown number.
fn kind_from_proto(v: i32) -> Result<Option<SegmentKind>, ()> {
    match pb::SegmentKind::try_from(v).map_err(|_| ())? {
        pb::SegmentKind::Unspecified => Ok(None),
        pb::SegmentKind::Standard => Ok(Some(SegmentKind::Standard)),
        pb::SegmentKind::Flexi => Ok(Some(SegmentKind::Flexi)),
    }
}

pub(super) fn member_to_proto(m: &Member) -> pb::GroupMember {
    pb::GroupMember {
        customer_id: m.customer_id.to_string(),
        add_time: Some(to_timestamp(m.added_at)),
        cause: cause_to_proto(m.cause) as i32,
    }
}

fn history_to_proto(h: &HistoryEntry) -> pb::MembershipHistoryEntry {
    pb::MembershipHistoryEntry {
        id: h.id.to_string(),
        customer_id: h.customer_id.to_string(),
        group_kind: match h.group_kind {
            GroupKind::Segment => pb::GroupKind::Segment,
            GroupKind::Badge => pb::GroupKind::Badge,
        } as i32,
        group_id: h.group_id.to_string(),
        group_display_name: h.group_display_name.clone(),
        change: if h.entered {
            pb::MembershipChange::Entered
        } else {
            pb::MembershipChange::Left
        } as i32,
        cause: cause_to_proto(h.cause) as i32,
        workflow_execution_id: h
            .workflow_execution_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        change_time: Some(to_timestamp(h.at)),
    }
}

/// Who makes a manual change: MANUAL (an operator) or WORKFLOW (with its execution id).
pub(super) fn manual_change(
    v: &mut Violations,
    cause: i32,
    workflow_execution_id: &str,
) -> Option<ManualChange> {
    let execution_id = if workflow_execution_id.is_empty() {
        None
    } else {
        v.uuid("workflow_execution_id", workflow_execution_id)
    };
    match pb::MembershipCause::try_from(cause).unwrap_or_default() {
        pb::MembershipCause::Manual => {
            if !workflow_execution_id.is_empty() {
                v.add("workflow_execution_id", "only with cause WORKFLOW");
            }
            Some(ManualChange::Operator)
        }
        pb::MembershipCause::Workflow => Some(ManualChange::Workflow { execution_id }),
        _ => {
            v.add("cause", "must be MANUAL or WORKFLOW");
            None
        }
    }
}

/// The segment, customer and author of a manual membership change, validated together.
fn manual_request(
    idempotency_key: &str,
    segment_id: &str,
    customer_id: &str,
    cause: i32,
    workflow_execution_id: &str,
) -> Result<(Uuid, Uuid, ManualChange), ApiError> {
    let mut v = Violations::new();
    check_idempotency_key(&mut v, idempotency_key);
    let segment_id = v.uuid("segment_id", segment_id);
    let customer_id = v.uuid("customer_id", customer_id);
    let by = manual_change(&mut v, cause, workflow_execution_id);
    v.finish(|| {
        (
            segment_id.unwrap_or_default(),
            customer_id.unwrap_or_default(),
            by.unwrap_or(ManualChange::Operator),
        )
    })
}

/// What a manual change makes stale: the customer's memberships and the segment's count.
/// Also dropped on a retry answered from the idempotency record, which is harmless.
fn manual_cache_changes(customer_id: Uuid) -> [Change; 2] {
    [Change::Segments, Change::Customer(customer_id)]
}

fn stored_to_membership(o: &ManualOutcome) -> Option<Membership> {
    o.membership.as_ref().map(|m| Membership {
        segment_id: m.segment_id,
        segment_display_name: m.segment_display_name.clone(),
        added_at: Some(m.added_at),
        online: false,
        cause: Some(m.cause),
        segment: m.segment.clone(),
    })
}

impl SegmentationApi {
    pub(super) async fn list_segments_rpc(
        &self,
        request: Request<pb::ListSegmentsRequest>,
    ) -> Result<Response<pb::ListSegmentsResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let limit = paging::page_size(&mut v, req.page_size);
        let after = paging::parse_page_token(&mut v, &req.page_token);
        let kind = kind_from_proto(req.kind).unwrap_or_else(|()| {
            v.add("kind", "is not a segment kind");
            None
        });
        v.into_result()?;
        let filter = SegmentFilter {
            kind,
            online_only: req.online_recalculation_only,
        };
        let found = self
            .store
            .list_segments(partner_id, filter, limit, after)
            .await?;
        Ok(Response::new(pb::ListSegmentsResponse {
            next_page_token: paging::next_page_token(
                found.len(),
                limit,
                found.last().map(|s| s.id),
            ),
            segments: found.iter().map(segment_to_proto).collect(),
        }))
    }

    pub(super) async fn update_segment_rpc(
        &self,
        request: Request<pb::UpdateSegmentRequest>,
    ) -> Result<Response<pb::UpdateSegmentResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(EDITORS)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "UpdateSegment", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let paths = mask_paths(&mut v, req.update_mask, UPDATABLE);
        let s = req.segment.unwrap_or_default();
        let id = v.uuid("segment.id", &s.id);
        let masked = |p: &str| paths.iter().any(|m| m == p);
        let (new_name, new_note, new_online) = (
            masked("display_name"),
            masked("note"),
            masked("online_recalculation"),
        );
        let kind = if masked("kind") {
            match kind_from_proto(s.kind) {
                Ok(Some(k)) => Some(k),
                _ => {
                    v.add("segment.kind", "must be STANDARD or FLEXI");
                    None
                }
            }
        } else {
            None
        };
        let criterion = if masked("criterion") {
            let raw = s
                .criterion
                .as_ref()
                .map(|c| raw_from_proto(&mut v, "segment.criterion", c));
            parse_criterion(&mut v, "segment.criterion", raw)
        } else {
            None
        };
        v.into_result()?;
        let id = id.unwrap_or_default();
        let etag = req.etag;
        let store = self.store.clone();
        let now = stored_time(Utc::now());
        let updated: Segment = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                store
                    .update_segment(txn, partner_id, id, &etag, |current| {
                        let draft = SegmentDraft {
                            display_name: if new_name {
                                s.display_name
                            } else {
                                current.display_name.clone()
                            },
                            kind: kind.or(Some(current.kind)),
                            online_recalculation: if new_online {
                                s.online_recalculation
                            } else {
                                current.online_recalculation
                            },
                            criterion: criterion.or_else(|| Some(current.criterion.clone())),
                            note: if new_note {
                                s.note
                            } else {
                                current.note.clone()
                            },
                        };
                        let mut v = Violations::new();
                        draft.validate(&mut v);
                        v.into_result()?;
                        current.updated(draft, now).map_err(rule)
                    })
                    .await
            })
        })
        .await?;
        self.cache
            .changed(partner_id, &[Change::Segments, Change::Members])
            .await;
        Ok(Response::new(pb::UpdateSegmentResponse {
            segment: Some(segment_to_proto(&updated)),
        }))
    }

    pub(super) async fn delete_segment_rpc(
        &self,
        request: Request<pb::DeleteSegmentRequest>,
    ) -> Result<Response<pb::DeleteSegmentResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(EDITORS)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "DeleteSegment", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let id = v.uuid("segment_id", &req.segment_id);
        v.into_result()?;
        let id = id.unwrap_or_default();
        let store = self.store.clone();
        idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                store
                    .delete_segment(txn, partner_id, id, &req.etag, Utc::now())
                    .await
            })
        })
        .await?;
        self.cache
            .changed(partner_id, &[Change::Segments, Change::Members])
            .await;
        Ok(Response::new(pb::DeleteSegmentResponse {}))
    }

    pub(super) async fn recalculate_segment_rpc(
        &self,
        request: Request<pb::RecalculateSegmentRequest>,
    ) -> Result<Response<pb::RecalculateSegmentResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(EDITORS)?;
        let req = request.into_inner();
        let scope =
            IdempotencyScope::new(partner_id, "RecalculateSegment", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let id = v.uuid("segment_id", &req.segment_id);
        v.into_result()?;
        let id = id.unwrap_or_default();
        let store = self.store.clone();
        let done: Recalculated = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move { store.recalculate(txn, partner_id, id, Utc::now()).await })
        })
        .await?;
        self.cache.changed(partner_id, &done.cache_changes()).await;
        Ok(Response::new(pb::RecalculateSegmentResponse {
            segment: Some(segment_to_proto(&done.segment)),
            entered_count: i64::try_from(done.entered).unwrap_or(i64::MAX),
            left_count: i64::try_from(done.left).unwrap_or(i64::MAX),
        }))
    }

    pub(super) async fn list_segment_members_rpc(
        &self,
        request: Request<pb::ListSegmentMembersRequest>,
    ) -> Result<Response<pb::ListSegmentMembersResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = v.uuid("segment_id", &req.segment_id);
        let limit = paging::page_size(&mut v, req.page_size);
        let after = paging::parse_page_token(&mut v, &req.page_token);
        v.into_result()?;
        let found = self
            .store
            .members(partner_id, id.unwrap_or_default(), limit, after)
            .await?;
        Ok(Response::new(pb::ListSegmentMembersResponse {
            next_page_token: paging::next_page_token(
                found.len(),
                limit,
                found.last().map(|m| m.customer_id),
            ),
            members: found.iter().map(member_to_proto).collect(),
        }))
    }

    pub(super) async fn add_customer_to_segment_rpc(
        &self,
        request: Request<pb::AddCustomerToSegmentRequest>,
    ) -> Result<Response<pb::AddCustomerToSegmentResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(MEMBERSHIP_EDITORS)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(
            partner_id,
            "AddCustomerToSegment",
            &req.idempotency_key,
            &req,
        );
        let (segment_id, customer_id, by) = manual_request(
            &req.idempotency_key,
            &req.segment_id,
            &req.customer_id,
            req.cause,
            &req.workflow_execution_id,
        )?;
        let store = self.store.clone();
        let done: ManualOutcome = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                store
                    .add_customer(txn, partner_id, segment_id, customer_id, by, Utc::now())
                    .await
            })
        })
        .await?;
        self.cache
            .changed(partner_id, &manual_cache_changes(customer_id))
            .await;
        Ok(Response::new(pb::AddCustomerToSegmentResponse {
            membership: stored_to_membership(&done)
                .as_ref()
                .map(membership_to_proto),
            overwritten_by_recalculation: done.segment.recalculation_overwrites_manual_changes(),
        }))
    }

    pub(super) async fn remove_customer_from_segment_rpc(
        &self,
        request: Request<pb::RemoveCustomerFromSegmentRequest>,
    ) -> Result<Response<pb::RemoveCustomerFromSegmentResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(MEMBERSHIP_EDITORS)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(
            partner_id,
            "RemoveCustomerFromSegment",
            &req.idempotency_key,
            &req,
        );
        let (segment_id, customer_id, by) = manual_request(
            &req.idempotency_key,
            &req.segment_id,
            &req.customer_id,
            req.cause,
            &req.workflow_execution_id,
        )?;
        let store = self.store.clone();
        let done: ManualOutcome = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                store
                    .remove_customer(txn, partner_id, segment_id, customer_id, by, Utc::now())
                    .await
            })
        })
        .await?;
        self.cache
            .changed(partner_id, &manual_cache_changes(customer_id))
            .await;
        Ok(Response::new(pb::RemoveCustomerFromSegmentResponse {
            overwritten_by_recalculation: done.segment.recalculation_overwrites_manual_changes(),
            removed: done.changed,
        }))
    }

    pub(super) async fn list_membership_history_rpc(
        &self,
        request: Request<pb::ListMembershipHistoryRequest>,
    ) -> Result<Response<pb::ListMembershipHistoryResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let customer_id = (!req.customer_id.is_empty())
            .then(|| v.uuid("customer_id", &req.customer_id))
            .flatten();
        let group_id = (!req.group_id.is_empty())
            .then(|| v.uuid("group_id", &req.group_id))
            .flatten();
        if req.customer_id.is_empty() && req.group_id.is_empty() {
            v.add("customer_id", "customer_id or group_id is required");
        }
        let group_kind = pb::GroupKind::try_from(req.group_kind).unwrap_or_else(|_| {
            v.add("group_kind", "is not a group kind");
            pb::GroupKind::Unspecified
        });
        let mut time = |field: &str, t: &Option<prost_types::Timestamp>| {
            t.as_ref().and_then(|t| {
                let parsed = from_timestamp(t);
                if parsed.is_none() {
                    v.add(field, "is not a valid time");
                }
                parsed
            })
        };
        let from = time("start_time", &req.start_time);
        let until = time("end_time", &req.end_time);
        let limit = paging::page_size(&mut v, req.page_size);
        let after = paging::parse_time_token(&mut v, &req.page_token);
        v.into_result()?;
        let sources = self
            .history_sources(partner_id, group_kind, group_id)
            .await?;
        // Segments and badges share the membership history table, told apart by kind.
        let group_kind = match group_kind {
            pb::GroupKind::Segment => Some(GroupKind::Segment),
            pb::GroupKind::Badge => Some(GroupKind::Badge),
            pb::GroupKind::Unspecified | pb::GroupKind::Audience => None,
        };
        let filter = HistoryFilter {
            customer_id,
            group_id,
            group_kind,
            from,
            until,
        };
        let segments = if sources.segments {
            self.store.history(partner_id, filter, limit, after).await
        } else {
            Ok(Vec::new())
        };
        let audiences = if sources.audiences {
            let filter = AudienceHistoryFilter {
                customer_id,
                audience_id: group_id,
                from,
                until,
            };
            self.audience_history_rows(partner_id, filter, limit, after)
                .await?
        } else {
            Vec::new()
        };
        let found = merge_history(segments, audiences, limit, history_to_proto)?;
        Ok(Response::new(pb::ListMembershipHistoryResponse {
            next_page_token: paging::next_time_token(
                found.len(),
                limit,
                found.last().map(|(at, id, _)| (*at, *id)),
            ),
            entries: found.into_iter().map(|(_, _, e)| e).collect(),
        }))
    }
}

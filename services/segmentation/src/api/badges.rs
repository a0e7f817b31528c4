//! The badge RPCs: definitions, holders (assigned by hand, by a workflow, or by the
//! criterion) and a customer's badges. Each handler authorizes, validates, calls the store
//! (which applies the domain rules) and maps the answer.
use crate::store::cache::Change;
use chrono::Utc;
use loyalty_platform::{
    ApiError, Violations,
    auth::principal,
    error::{check_idempotency_key, mask_paths},
    idempotency::{self, IdempotencyScope},
    paging,
    time::to_timestamp,
};
use loyalty_proto::segmentation::v1 as pb;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    READERS, SegmentationApi, criterion_to_proto, raw_from_proto,
    segments::{EDITORS, MEMBERSHIP_EDITORS, cause_to_proto, manual_change, member_to_proto},
};
use crate::{
    domain::{Badge, BadgeDraft, BadgeKind, CustomerBadge, Icon, ManualChange, parse_criterion},
    store::{
        badges::{BadgeChange, badge_rule},
        membership::stored_time,
    },
};

/// Fields UpdateBadge may change.
const UPDATABLE: &[&str] = &[
    "display_name",
    "kind",
    "criterion",
    "icon_url",
    "icon_content_type",
    "visible_to_customer",
    "note",
];

fn kind_to_proto(k: BadgeKind) -> pb::BadgeKind {
    match k {
        BadgeKind::Manual => pb::BadgeKind::Manual,
        BadgeKind::Flexi => pb::BadgeKind::Flexi,
    }
}

/// A kind sent by a client: `Ok(None)` for unspecified, an error for an unknown number.
fn kind_from_proto(v: i32) -> Result<Option<BadgeKind>, ()> {
    match pb::BadgeKind::try_from(v).map_err(|_| ())? {
        pb::BadgeKind::Unspecified => Ok(None),
        pb::BadgeKind::Manual => Ok(Some(BadgeKind::Manual)),
        pb::BadgeKind::Flexi => Ok(Some(BadgeKind::Flexi)),
    }
}

fn badge_to_proto(b: &Badge) -> pb::Badge {
    pb::Badge {
        id: b.id.to_string(),
        display_name: b.display_name.clone(),
        kind: kind_to_proto(b.kind) as i32,
        criterion: b.criterion.as_ref().map(criterion_to_proto),
        icon_url: b.icon.url.clone(),
        icon_content_type: b.icon.content_type.clone(),
        visible_to_customer: b.visible_to_customer,
        note: b.note.clone(),
        member_count: b.member_count,
        // A manual badge's criterion ran once, at creation; it is never recalculated.
        last_recalculation_time: (b.kind == BadgeKind::Flexi)
            .then_some(b.last_recalculated_at)
            .flatten()
            .map(to_timestamp),
        etag: b.etag(),
        create_time: Some(to_timestamp(b.created_at)),
        update_time: Some(to_timestamp(b.updated_at.unwrap_or(b.created_at))),
    }
}

fn customer_badge_to_proto(c: &CustomerBadge) -> pb::CustomerBadge {
    pb::CustomerBadge {
        badge_id: c.badge_id.to_string(),
        badge_display_name: c.display_name.clone(),
        icon_url: c.icon.url.clone(),
        icon_content_type: c.icon.content_type.clone(),
        visible_to_customer: c.visible_to_customer,
        assign_time: Some(to_timestamp(c.assigned_at)),
        cause: cause_to_proto(c.cause) as i32,
    }
}

/// The badge's criterion as sent, reported under `badge.criterion`; `None` when absent
/// (optional for a manual badge, which the draft checks).
fn criterion_in(v: &mut Violations, b: &pb::Badge) -> Option<loyalty_criteria::Criterion> {
    let raw = b
        .criterion
        .as_ref()
        .map(|c| raw_from_proto(v, "badge.criterion", c))?;
    parse_criterion(v, "badge.criterion", Some(raw))
}

/// The badge, customer and author of an assignment or removal, validated together; an
/// unspecified cause is MANUAL.
fn holder_request(
    idempotency_key: &str,
    badge_id: &str,
    customer_id: &str,
    cause: i32,
) -> Result<(Uuid, Uuid, ManualChange), ApiError> {
    let mut v = Violations::new();
    check_idempotency_key(&mut v, idempotency_key);
    let badge_id = v.uuid("badge_id", badge_id);
    let customer_id = v.uuid("customer_id", customer_id);
    let by = if cause == pb::MembershipCause::Unspecified as i32 {
        Some(ManualChange::Operator)
    } else {
        manual_change(&mut v, cause, "")
    };
    v.finish(|| {
        (
            badge_id.unwrap_or_default(),
            customer_id.unwrap_or_default(),
            by.unwrap_or(ManualChange::Operator),
        )
    })
}

impl SegmentationApi {
    pub(super) async fn create_badge_rpc(
        &self,
        request: Request<pb::CreateBadgeRequest>,
    ) -> Result<Response<pb::CreateBadgeResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(EDITORS)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "CreateBadge", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let Some(b) = req.badge else {
            return Err(ApiError::invalid("badge", "is required").into());
        };
        // An unknown number reads as unspecified, which the draft reports.
        let kind = kind_from_proto(b.kind).ok().flatten();
        let criterion = criterion_in(&mut v, &b);
        let draft = BadgeDraft {
            display_name: b.display_name,
            kind,
            criterion,
            icon: Icon::new(b.icon_url, &b.icon_content_type),
            visible_to_customer: b.visible_to_customer,
            note: b.note,
        };
        draft.validate(&mut v);
        v.into_result()?;
        let Some(badge) = draft.into_badge(Uuid::now_v7(), Utc::now()) else {
            return Err(ApiError::invalid("badge", "is incomplete").into());
        };
        let store = self.store.clone();
        let badge: Badge = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move { store.create_badge(txn, partner_id, badge).await })
        })
        .await?;
        // Its criterion may have given it to many customers (the hot path caches holdings).
        self.cache.changed(partner_id, &[Change::Members]).await;
        Ok(Response::new(pb::CreateBadgeResponse {
            badge: Some(badge_to_proto(&badge)),
        }))
    }

    pub(super) async fn get_badge_rpc(
        &self,
        request: Request<pb::GetBadgeRequest>,
    ) -> Result<Response<pb::GetBadgeResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let mut v = Violations::new();
        let id = v.uuid("badge_id", &request.get_ref().badge_id);
        v.into_result()?;
        let badge = self
            .store
            .badge(partner_id, id.unwrap_or_default())
            .await?
            .ok_or_else(|| ApiError::NotFound("badge".into()))?;
        Ok(Response::new(pb::GetBadgeResponse {
            badge: Some(badge_to_proto(&badge)),
        }))
    }

    pub(super) async fn list_badges_rpc(
        &self,
        request: Request<pb::ListBadgesRequest>,
    ) -> Result<Response<pb::ListBadgesResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let limit = paging::page_size(&mut v, req.page_size);
        let after = paging::parse_page_token(&mut v, &req.page_token);
        let kind = kind_from_proto(req.kind).unwrap_or_else(|()| {
            v.add("kind", "is not a badge kind");
            None
        });
        v.into_result()?;
        let found = self
            .store
            .list_badges(partner_id, kind, limit, after)
            .await?;
        Ok(Response::new(pb::ListBadgesResponse {
            next_page_token: paging::next_page_token(
                found.len(),
                limit,
                found.last().map(|b| b.id),
            ),
            badges: found.iter().map(badge_to_proto).collect(),
        }))
    }

    pub(super) async fn update_badge_rpc(
        &self,
        request: Request<pb::UpdateBadgeRequest>,
    ) -> Result<Response<pb::UpdateBadgeResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(EDITORS)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "UpdateBadge", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let paths = mask_paths(&mut v, req.update_mask, UPDATABLE);
        let b = req.badge.unwrap_or_default();
        let id = v.uuid("badge.id", &b.id);
        let masked = |p: &str| paths.iter().any(|m| m == p);
        let kind = if masked("kind") {
            match kind_from_proto(b.kind) {
                Ok(Some(k)) => Some(k),
                _ => {
                    v.add("badge.kind", "must be MANUAL or FLEXI");
                    None
                }
            }
        } else {
            None
        };
        // A masked but absent criterion removes it (allowed for a manual badge only).
        let criterion = masked("criterion").then(|| criterion_in(&mut v, &b));
        v.into_result()?;
        let id = id.unwrap_or_default();
        let etag = req.etag;
        let store = self.store.clone();
        let now = stored_time(Utc::now());
        let (new_name, new_note, new_visible) = (
            masked("display_name"),
            masked("note"),
            masked("visible_to_customer"),
        );
        let (new_url, new_type) = (masked("icon_url"), masked("icon_content_type"));
        let updated: Badge = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                store
                    .update_badge(txn, partner_id, id, &etag, |current| {
                        let mut draft = current.as_draft();
                        if new_name {
                            draft.display_name = b.display_name;
                        }
                        if new_note {
                            draft.note = b.note;
                        }
                        if new_visible {
                            draft.visible_to_customer = b.visible_to_customer;
                        }
                        if new_url {
                            draft.icon.url = b.icon_url;
                        }
                        if new_type {
                            draft.icon = Icon::new(draft.icon.url, &b.icon_content_type);
                        }
                        if let Some(k) = kind {
                            draft.kind = Some(k);
                        }
                        if let Some(c) = criterion {
                            draft.criterion = c;
                        }
                        let mut v = Violations::new();
                        draft.validate(&mut v);
                        v.into_result()?;
                        current.updated(draft, now).map_err(badge_rule)
                    })
                    .await
            })
        })
        .await?;
        Ok(Response::new(pb::UpdateBadgeResponse {
            badge: Some(badge_to_proto(&updated)),
        }))
    }

    pub(super) async fn delete_badge_rpc(
        &self,
        request: Request<pb::DeleteBadgeRequest>,
    ) -> Result<Response<pb::DeleteBadgeResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(EDITORS)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "DeleteBadge", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let id = v.uuid("badge_id", &req.badge_id);
        v.into_result()?;
        let id = id.unwrap_or_default();
        let store = self.store.clone();
        idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                store
                    .delete_badge(txn, partner_id, id, &req.etag, Utc::now())
                    .await
            })
        })
        .await?;
        self.cache.changed(partner_id, &[Change::Members]).await;
        Ok(Response::new(pb::DeleteBadgeResponse {}))
    }

    pub(super) async fn assign_badge_rpc(
        &self,
        request: Request<pb::AssignBadgeRequest>,
    ) -> Result<Response<pb::AssignBadgeResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(MEMBERSHIP_EDITORS)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "AssignBadge", &req.idempotency_key, &req);
        let (badge_id, customer_id, by) = holder_request(
            &req.idempotency_key,
            &req.badge_id,
            &req.customer_id,
            req.cause,
        )?;
        let store = self.store.clone();
        let done: BadgeChange = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                store
                    .assign_badge(txn, partner_id, badge_id, customer_id, by, Utc::now())
                    .await
            })
        })
        .await?;
        self.cache
            .changed(partner_id, &[Change::Customer(customer_id)])
            .await;
        Ok(Response::new(pb::AssignBadgeResponse {
            customer_badge: done.held.as_ref().map(customer_badge_to_proto),
        }))
    }

    pub(super) async fn remove_badge_rpc(
        &self,
        request: Request<pb::RemoveBadgeRequest>,
    ) -> Result<Response<pb::RemoveBadgeResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(MEMBERSHIP_EDITORS)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "RemoveBadge", &req.idempotency_key, &req);
        let (badge_id, customer_id, by) = holder_request(
            &req.idempotency_key,
            &req.badge_id,
            &req.customer_id,
            req.cause,
        )?;
        let store = self.store.clone();
        let _: BadgeChange = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                store
                    .remove_badge(txn, partner_id, badge_id, customer_id, by, Utc::now())
                    .await
            })
        })
        .await?;
        self.cache
            .changed(partner_id, &[Change::Customer(customer_id)])
            .await;
        Ok(Response::new(pb::RemoveBadgeResponse {}))
    }

    pub(super) async fn list_badge_members_rpc(
        &self,
        request: Request<pb::ListBadgeMembersRequest>,
    ) -> Result<Response<pb::ListBadgeMembersResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = v.uuid("badge_id", &req.badge_id);
        let limit = paging::page_size(&mut v, req.page_size);
        let after = paging::parse_page_token(&mut v, &req.page_token);
        v.into_result()?;
        let found = self
            .store
            .badge_members(partner_id, id.unwrap_or_default(), limit, after)
            .await?;
        Ok(Response::new(pb::ListBadgeMembersResponse {
            next_page_token: paging::next_page_token(
                found.len(),
                limit,
                found.last().map(|m| m.customer_id),
            ),
            members: found.iter().map(member_to_proto).collect(),
        }))
    }

    pub(super) async fn list_customer_badges_rpc(
        &self,
        request: Request<pb::ListCustomerBadgesRequest>,
    ) -> Result<Response<pb::ListCustomerBadgesResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let customer_id = v.uuid("customer_id", &req.customer_id);
        let limit = paging::page_size(&mut v, req.page_size);
        let after = paging::parse_time_token(&mut v, &req.page_token);
        v.into_result()?;
        let found = self
            .store
            .customer_badges(partner_id, customer_id.unwrap_or_default(), limit, after)
            .await?;
        Ok(Response::new(pb::ListCustomerBadgesResponse {
            next_page_token: paging::next_time_token(
                found.len(),
                limit,
                found.last().map(|b| (b.assigned_at, b.badge_id)),
            ),
            badges: found.iter().map(customer_badge_to_proto).collect(),
        }))
    }
}

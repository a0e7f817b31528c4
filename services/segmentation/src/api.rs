//! gRPC adapter of `SegmentationService`.
mod audiences;
mod badges;
mod evaluate;
#[cfg(test)]
mod evaluate_tests;
mod feature_store;
#[cfg(test)]
mod purchase_window_tests;
mod rfm;
mod segments;

use chrono::Utc;
use loyalty_criteria::{Criterion, RawCriterion, wire::operator_to_proto};
use loyalty_platform::{
    ApiError, Role, Violations,
    auth::principal,
    error::{check_idempotency_key, parse_uuid},
    idempotency::{self, IdempotencyScope},
    time::to_timestamp,
};
use loyalty_proto::{
    segmentation::v1::{self as pb, segmentation_service_server::SegmentationService},
    types::v1 as types,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    domain::{
        Cart, CartLine, Membership, Segment, SegmentDraft, SegmentKind, customer_facts,
        memberships, parse_criterion,
    },
    store::{
        Store,
        cache::{Change, MembershipCache},
    },
};

/// Roles that read memberships and segments (checkout reads with the POS's key).
const READERS: &[Role] = &[Role::Pos, Role::Service, Role::Marketing, Role::Support];

/// The stream of ExportAudienceMembers.
pub type ExportAudienceMembersStream = std::pin::Pin<
    Box<
        dyn futures::Stream<Item = Result<pb::ExportAudienceMembersResponse, Status>>
            + Send
            + 'static,
    >,
>;

pub struct SegmentationApi {
    store: Store,
    /// What GetCustomerMemberships reads, kept per partner and customer (Redis when
    /// configured); every change below drops what it made stale once it committed.
    cache: MembershipCache,
}

impl SegmentationApi {
    pub fn new(store: Store, cache: MembershipCache) -> Self {
        Self { store, cache }
    }
}

/// Maps the wire criterion to the unvalidated form; unset literals are reported under `path`.
fn raw_from_proto(v: &mut Violations, path: &str, c: &pb::Criterion) -> RawCriterion {
    let mut problems = Vec::new();
    let raw = loyalty_criteria::wire::raw_from_proto(c, &mut problems);
    for p in problems {
        v.add(p.field_under(path), p.reason);
    }
    raw
}

fn criterion_to_proto(c: &Criterion) -> pb::Criterion {
    loyalty_criteria::wire::to_proto(c)
}

fn segment_to_proto(s: &Segment) -> pb::Segment {
    pb::Segment {
        id: s.id.to_string(),
        display_name: s.display_name.clone(),
        kind: (match s.kind {
            SegmentKind::Standard => pb::SegmentKind::Standard,
            SegmentKind::Flexi => pb::SegmentKind::Flexi,
        }) as i32,
        online_recalculation: s.online_recalculation,
        criterion: Some(criterion_to_proto(&s.criterion)),
        note: s.note.clone(),
        member_count: s.member_count,
        last_recalculation_time: s.last_recalculated_at.map(to_timestamp),
        create_time: Some(to_timestamp(s.created_at)),
        update_time: Some(to_timestamp(s.updated_at.unwrap_or(s.created_at))),
        etag: s.etag(),
    }
}

fn membership_to_proto(m: &Membership) -> pb::SegmentMembership {
    pb::SegmentMembership {
        segment_id: m.segment_id.to_string(),
        segment_display_name: m.segment_display_name.clone(),
        add_time: m.added_at.map(to_timestamp),
        online: m.online,
        segment_create_time: Some(to_timestamp(m.segment.created_at)),
        segment_kind: segments::kind_to_proto(m.segment.kind) as i32,
        last_recalculation_time: m.segment.last_recalculated_at.map(to_timestamp),
        member_count: m.segment.member_count,
        note: m.segment.note.clone(),
        cause: m
            .cause
            .map_or(pb::MembershipCause::Unspecified, segments::cause_to_proto)
            as i32,
    }
}

fn cart_from_proto(cart: &types::Cart) -> Cart {
    Cart {
        currency_code: cart.currency_code.clone(),
        lines: cart
            .lines
            .iter()
            .map(|l| CartLine {
                product_id: l.product_id.clone(),
                product_group_ids: l.product_group_ids.clone(),
                brand_id: l.brand_id.clone(),
                quantity: l.quantity,
                unit_price_minor: l.unit_price_minor,
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl SegmentationService for SegmentationApi {
    #[tracing::instrument(skip_all)]
    async fn create_segment(
        &self,
        request: Request<pb::CreateSegmentRequest>,
    ) -> Result<Response<pb::CreateSegmentResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(&[Role::Marketing])?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "CreateSegment", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let Some(s) = req.segment else {
            return Err(ApiError::invalid("segment", "is required").into());
        };
        let kind = match pb::SegmentKind::try_from(s.kind).unwrap_or_default() {
            pb::SegmentKind::Standard => Some(SegmentKind::Standard),
            pb::SegmentKind::Flexi => Some(SegmentKind::Flexi),
            pb::SegmentKind::Unspecified => None,
        };
        let raw = s
            .criterion
            .as_ref()
            .map(|c| raw_from_proto(&mut v, "segment.criterion", c));
        let draft = SegmentDraft {
            display_name: s.display_name,
            kind,
            online_recalculation: s.online_recalculation,
            criterion: parse_criterion(&mut v, "segment.criterion", raw),
            note: s.note,
        };
        draft.validate(&mut v);
        v.into_result()?;
        let Some(segment) = draft.into_segment(Uuid::now_v7(), Utc::now()) else {
            return Err(ApiError::invalid("segment", "is incomplete").into());
        };
        let store = self.store.clone();
        let segment: Segment = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move { store.create_segment(txn, partner_id, segment).await })
        })
        .await?;
        self.cache
            .changed(partner_id, &[Change::Segments, Change::Members])
            .await;
        Ok(Response::new(pb::CreateSegmentResponse {
            segment: Some(segment_to_proto(&segment)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_segment(
        &self,
        request: Request<pb::GetSegmentRequest>,
    ) -> Result<Response<pb::GetSegmentResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let id = parse_uuid("segment_id", &request.get_ref().segment_id)?;
        let segment = self
            .store
            .segment(partner_id, id)
            .await?
            .ok_or_else(|| ApiError::NotFound("segment".into()))?;
        Ok(Response::new(pb::GetSegmentResponse {
            segment: Some(segment_to_proto(&segment)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_customer_memberships(
        &self,
        request: Request<pb::GetCustomerMembershipsRequest>,
    ) -> Result<Response<pb::GetCustomerMembershipsResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let customer_id = v.check(
            "customer_id",
            parse_uuid("customer_id", &req.customer_id).map_err(|_| "must be a UUID"),
        );
        let cart = req.cart.as_ref().map(cart_from_proto);
        if let Some(cart) = &cart {
            cart.validate(&mut v, "cart");
        }
        v.into_result()?;
        let customer_id = customer_id.unwrap_or_default();

        let now = Utc::now();
        let view = self
            .cache
            .customer_view(self.store.db(), partner_id, customer_id, None, now)
            .await?;
        let (mut features, mut bought) = (view.features, view.purchases);
        // Online segments are decided as if the cart were bought now: checkout learns whether
        // this purchase moves the customer into one.
        if let Some(cart) = &cart {
            cart.count_as_bought(&mut features, &mut bought, now);
        }
        let criteria = view.catalogue.online.iter().map(|s| &s.criterion);
        let mut facts = customer_facts(
            &features,
            &bought,
            &view.stored,
            &view.badges,
            criteria,
            now,
        );
        if let Some(cart) = &cart {
            cart.add_facts(&mut facts);
        }
        Ok(Response::new(pb::GetCustomerMembershipsResponse {
            memberships: memberships(&view.stored, &view.catalogue.online, &facts)
                .iter()
                .map(membership_to_proto)
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_customer_rfm(
        &self,
        request: Request<pb::GetCustomerRfmRequest>,
    ) -> Result<Response<pb::GetCustomerRfmResponse>, Status> {
        self.get_customer_rfm_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_segments(
        &self,
        request: Request<pb::ListSegmentsRequest>,
    ) -> Result<Response<pb::ListSegmentsResponse>, Status> {
        self.list_segments_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn update_segment(
        &self,
        request: Request<pb::UpdateSegmentRequest>,
    ) -> Result<Response<pb::UpdateSegmentResponse>, Status> {
        self.update_segment_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn delete_segment(
        &self,
        request: Request<pb::DeleteSegmentRequest>,
    ) -> Result<Response<pb::DeleteSegmentResponse>, Status> {
        self.delete_segment_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn recalculate_segment(
        &self,
        request: Request<pb::RecalculateSegmentRequest>,
    ) -> Result<Response<pb::RecalculateSegmentResponse>, Status> {
        self.recalculate_segment_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_segment_members(
        &self,
        request: Request<pb::ListSegmentMembersRequest>,
    ) -> Result<Response<pb::ListSegmentMembersResponse>, Status> {
        self.list_segment_members_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn add_customer_to_segment(
        &self,
        request: Request<pb::AddCustomerToSegmentRequest>,
    ) -> Result<Response<pb::AddCustomerToSegmentResponse>, Status> {
        self.add_customer_to_segment_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn remove_customer_from_segment(
        &self,
        request: Request<pb::RemoveCustomerFromSegmentRequest>,
    ) -> Result<Response<pb::RemoveCustomerFromSegmentResponse>, Status> {
        self.remove_customer_from_segment_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_membership_history(
        &self,
        request: Request<pb::ListMembershipHistoryRequest>,
    ) -> Result<Response<pb::ListMembershipHistoryResponse>, Status> {
        self.list_membership_history_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn get_customer_features(
        &self,
        request: Request<pb::GetCustomerFeaturesRequest>,
    ) -> Result<Response<pb::GetCustomerFeaturesResponse>, Status> {
        self.get_customer_features_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn validate_criterion(
        &self,
        request: Request<pb::ValidateCriterionRequest>,
    ) -> Result<Response<pb::ValidateCriterionResponse>, Status> {
        self.validate_criterion_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn evaluate_criterion(
        &self,
        request: Request<pb::EvaluateCriterionRequest>,
    ) -> Result<Response<pb::EvaluateCriterionResponse>, Status> {
        self.evaluate_criterion_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_criterion_fields(
        &self,
        request: Request<pb::ListCriterionFieldsRequest>,
    ) -> Result<Response<pb::ListCriterionFieldsResponse>, Status> {
        self.list_criterion_fields_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn create_badge(
        &self,
        request: Request<pb::CreateBadgeRequest>,
    ) -> Result<Response<pb::CreateBadgeResponse>, Status> {
        self.create_badge_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn get_badge(
        &self,
        request: Request<pb::GetBadgeRequest>,
    ) -> Result<Response<pb::GetBadgeResponse>, Status> {
        self.get_badge_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_badges(
        &self,
        request: Request<pb::ListBadgesRequest>,
    ) -> Result<Response<pb::ListBadgesResponse>, Status> {
        self.list_badges_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn update_badge(
        &self,
        request: Request<pb::UpdateBadgeRequest>,
    ) -> Result<Response<pb::UpdateBadgeResponse>, Status> {
        self.update_badge_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn delete_badge(
        &self,
        request: Request<pb::DeleteBadgeRequest>,
    ) -> Result<Response<pb::DeleteBadgeResponse>, Status> {
        self.delete_badge_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn assign_badge(
        &self,
        request: Request<pb::AssignBadgeRequest>,
    ) -> Result<Response<pb::AssignBadgeResponse>, Status> {
        self.assign_badge_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn remove_badge(
        &self,
        request: Request<pb::RemoveBadgeRequest>,
    ) -> Result<Response<pb::RemoveBadgeResponse>, Status> {
        self.remove_badge_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_badge_members(
        &self,
        request: Request<pb::ListBadgeMembersRequest>,
    ) -> Result<Response<pb::ListBadgeMembersResponse>, Status> {
        self.list_badge_members_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_customer_badges(
        &self,
        request: Request<pb::ListCustomerBadgesRequest>,
    ) -> Result<Response<pb::ListCustomerBadgesResponse>, Status> {
        self.list_customer_badges_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn create_audience(
        &self,
        request: Request<pb::CreateAudienceRequest>,
    ) -> Result<Response<pb::CreateAudienceResponse>, Status> {
        self.create_audience_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn get_audience(
        &self,
        request: Request<pb::GetAudienceRequest>,
    ) -> Result<Response<pb::GetAudienceResponse>, Status> {
        self.get_audience_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_audiences(
        &self,
        request: Request<pb::ListAudiencesRequest>,
    ) -> Result<Response<pb::ListAudiencesResponse>, Status> {
        self.list_audiences_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn update_audience(
        &self,
        request: Request<pb::UpdateAudienceRequest>,
    ) -> Result<Response<pb::UpdateAudienceResponse>, Status> {
        self.update_audience_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn delete_audience(
        &self,
        request: Request<pb::DeleteAudienceRequest>,
    ) -> Result<Response<pb::DeleteAudienceResponse>, Status> {
        self.delete_audience_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_audience_members(
        &self,
        request: Request<pb::ListAudienceMembersRequest>,
    ) -> Result<Response<pb::ListAudienceMembersResponse>, Status> {
        self.list_audience_members_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn add_audience_member(
        &self,
        request: Request<pb::AddAudienceMemberRequest>,
    ) -> Result<Response<pb::AddAudienceMemberResponse>, Status> {
        self.add_audience_member_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn remove_audience_member(
        &self,
        request: Request<pb::RemoveAudienceMemberRequest>,
    ) -> Result<Response<pb::RemoveAudienceMemberResponse>, Status> {
        self.remove_audience_member_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn duplicate_audience(
        &self,
        request: Request<pb::DuplicateAudienceRequest>,
    ) -> Result<Response<pb::DuplicateAudienceResponse>, Status> {
        self.duplicate_audience_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn lock_audience(
        &self,
        request: Request<pb::LockAudienceRequest>,
    ) -> Result<Response<pb::LockAudienceResponse>, Status> {
        self.lock_audience_rpc(request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_customer_audiences(
        &self,
        request: Request<pb::ListCustomerAudiencesRequest>,
    ) -> Result<Response<pb::ListCustomerAudiencesResponse>, Status> {
        self.list_customer_audiences_rpc(request).await
    }

    type ExportAudienceMembersStream = ExportAudienceMembersStream;

    #[tracing::instrument(skip_all)]
    async fn export_audience_members(
        &self,
        request: Request<pb::ExportAudienceMembersRequest>,
    ) -> Result<Response<Self::ExportAudienceMembersStream>, Status> {
        self.export_audience_members_rpc(request).await
    }
}

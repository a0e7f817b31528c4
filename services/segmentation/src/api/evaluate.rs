//! `EvaluateCriterion`: whether one customer matches a criterion now (campaigns' workflow
//! condition nodes and date triggers), against what `GetCustomerMemberships` reads about the
//! customer and the triggering event's properties as `event.<key>`. Read-only.
use chrono::Utc;
use loyalty_platform::{ApiError, Violations, auth::principal, error::parse_uuid};
use loyalty_proto::segmentation::v1 as pb;
use tonic::{Request, Response, Status};

use super::{READERS, SegmentationApi, raw_from_proto};
use crate::domain::{Evaluation, customer_facts};

impl SegmentationApi {
    pub(super) async fn evaluate_criterion_rpc(
        &self,
        request: Request<pb::EvaluateCriterionRequest>,
    ) -> Result<Response<pb::EvaluateCriterionResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let customer_id = v.check(
            "customer_id",
            parse_uuid("customer_id", &req.customer_id).map_err(|_| "must be a UUID"),
        );
        let raw = req
            .criterion
            .as_ref()
            .map(|c| raw_from_proto(&mut v, "criterion", c));
        let evaluation = Evaluation::parse(&mut v, raw, req.event_properties);
        v.into_result()?;
        let (Some(customer_id), Some(evaluation)) = (customer_id, evaluation) else {
            return Err(ApiError::invalid("criterion", "is required").into());
        };

        let now = Utc::now();
        let criterion = Some(&evaluation.criterion);
        let view = self
            .cache
            .customer_view(self.store.db(), partner_id, customer_id, criterion, now)
            .await?;
        if !view.known {
            return Err(ApiError::NotFound("customer".into()).into());
        }
        let facts = customer_facts(
            &view.features,
            &view.purchases,
            &view.stored,
            &view.badges,
            criterion,
            now,
        );
        Ok(Response::new(pb::EvaluateCriterionResponse {
            matches: evaluation.matches(facts),
        }))
    }
}

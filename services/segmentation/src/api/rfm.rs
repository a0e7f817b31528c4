//! `GetCustomerRfm`: the customer's RFM as of the partner's last nightly scoring (what
//! criteria on `features.rfm_*` read), or computed now with no scores for a customer not
//! scored yet.
use chrono::Utc;
use loyalty_platform::{
    ApiError, Violations, auth::principal, error::parse_uuid, time::to_timestamp,
};
use loyalty_proto::segmentation::v1 as pb;
use tonic::{Request, Response, Status};

use super::{READERS, SegmentationApi};
use crate::{
    domain::rfm::{NOT_SCORED, RfmScores},
    store::{features, rfm},
};

impl SegmentationApi {
    pub(super) async fn get_customer_rfm_rpc(
        &self,
        request: Request<pb::GetCustomerRfmRequest>,
    ) -> Result<Response<pb::GetCustomerRfmResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let customer_id = v.check(
            "customer_id",
            parse_uuid("customer_id", &req.customer_id).map_err(|_| "must be a UUID"),
        );
        v.into_result()?;
        let customer_id = customer_id.unwrap_or_default();

        let db = self.store.db();
        let stored = features::features(db, partner_id, customer_id).await?.rfm;
        let (values, scores, computed_at) = match stored {
            Some(s) => (s.values, s.scores, s.computed_at),
            None => {
                let now = Utc::now();
                let values = rfm::live_values(db, partner_id, customer_id, now)
                    .await?
                    .ok_or_else(|| ApiError::NotFound("customer".into()))?;
                let none = RfmScores {
                    recency: NOT_SCORED,
                    frequency: NOT_SCORED,
                    monetary: NOT_SCORED,
                };
                (values, none, now)
            }
        };
        Ok(Response::new(pb::GetCustomerRfmResponse {
            rfm: Some(pb::Rfm {
                customer_id: customer_id.to_string(),
                recency_months: values.recency_months,
                frequency: values.frequency,
                monetary_minor: values.monetary_minor,
                recency_score: scores.recency,
                frequency_score: scores.frequency,
                monetary_score: scores.monetary,
                compute_time: Some(to_timestamp(computed_at)),
            }),
        }))
    }
}

//! The feature-store and criteria-tool RPCs: GetCustomerFeatures, ValidateCriterion and
//! ListCriterionFields. Read-only, so no idempotency keys.
use chrono::Utc;
use loyalty_criteria::FieldSpec;
use loyalty_platform::{
    ApiError, Violations,
    auth::principal,
    error::{FieldViolation, parse_uuid},
    paging,
    time::to_timestamp,
};
use loyalty_proto::segmentation::v1 as pb;
use tonic::{Request, Response, Status};

use super::{READERS, SegmentationApi, operator_to_proto, raw_from_proto};
use crate::{
    domain::{
        CriterionTarget, FeatureSummary,
        rfm::{NEVER, RfmValues},
    },
    store::{features, purchases, rfm},
};

/// The request field violations of a criterion are reported under; the response names
/// paths relative to the criterion itself.
const CRITERION: &str = "criterion";

/// A target sent by a client (unspecified = SEGMENT); `None` for an unknown number.
fn target_from_proto(v: i32) -> Option<CriterionTarget> {
    use pb::CriterionTarget as T;
    Some(match T::try_from(v).ok()? {
        T::Unspecified | T::Segment => CriterionTarget::Segment,
        T::OnlineSegment => CriterionTarget::OnlineSegment,
        T::Audience => CriterionTarget::Audience,
        T::Workflow => CriterionTarget::Workflow,
    })
}

fn target(field: &str, v: i32) -> Result<CriterionTarget, ApiError> {
    target_from_proto(v).ok_or_else(|| ApiError::invalid(field, "is not a known target"))
}

/// A violation's path relative to the criterion (`all.criteria[2].condition.field`; empty
/// for the criterion as a whole).
fn relative(v: FieldViolation) -> pb::CriterionViolation {
    let path = match v.field.strip_prefix(CRITERION) {
        Some(rest) => rest.trim_start_matches('.').to_owned(),
        None => v.field,
    };
    pb::CriterionViolation {
        path,
        description: v.description,
    }
}

fn field_to_proto(f: &FieldSpec) -> pb::CriterionField {
    pb::CriterionField {
        field: f.path.clone(),
        description: f.description.clone(),
        value_kind: f.value_kind.as_str().to_owned(),
        operators: f
            .operators
            .iter()
            .map(|o| operator_to_proto(*o) as i32)
            .collect(),
    }
}

/// What GetCustomerFeatures reads from the purchases rather than the feature row.
struct PurchaseSummary {
    first_purchase_at: Option<chrono::DateTime<Utc>>,
    /// Purchases and net spend in the last 12 months, as RFM counts them.
    last_12_months: RfmValues,
}

fn features_to_proto(
    customer_id: String,
    s: FeatureSummary,
    p: PurchaseSummary,
    updated: Option<chrono::DateTime<Utc>>,
) -> pb::CustomerFeatures {
    pb::CustomerFeatures {
        first_purchase_time: p.first_purchase_at.map(to_timestamp),
        purchase_count_12m: p.last_12_months.frequency,
        spent_12m_minor: p.last_12_months.monetary_minor,
        customer_id,
        purchase_count: s.purchase_count,
        total_spent_minor: s.total_spent_minor,
        last_purchase_time: s.last_purchase_at.map(to_timestamp),
        last_purchase_days_ago: s.last_purchase_days_ago,
        average_purchase_minor: s.average_purchase_minor,
        points_balance: s.points_balance,
        tier_id: s.tier_id,
        event_counts: s.event_counts.into_iter().collect(),
        extra: s.extra.into_iter().collect(),
        update_time: updated.map(to_timestamp),
        currency_code: s.currency_code,
        email_open_count_12m: s.opened_12m,
        click_count_12m: s.clicked_12m,
    }
}

impl SegmentationApi {
    pub(super) async fn get_customer_features_rpc(
        &self,
        request: Request<pb::GetCustomerFeaturesRequest>,
    ) -> Result<Response<pb::GetCustomerFeaturesResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let req = request.into_inner();
        let customer_id = parse_uuid("customer_id", &req.customer_id)?;
        let db = self.store.db();
        let now = Utc::now();
        let (stored, first_purchase_at, last_12_months) = tokio::try_join!(
            features::features_updated(db, partner_id, customer_id),
            purchases::first_purchase_at(db, partner_id, customer_id),
            rfm::live_values(db, partner_id, customer_id, now),
        )?;
        let (f, updated) = stored.map_or((Default::default(), None), |(f, at)| (f, Some(at)));
        let purchases = PurchaseSummary {
            first_purchase_at,
            last_12_months: last_12_months.unwrap_or(RfmValues {
                recency_months: NEVER,
                frequency: 0,
                monetary_minor: 0,
            }),
        };
        Ok(Response::new(pb::GetCustomerFeaturesResponse {
            features: Some(features_to_proto(
                customer_id.to_string(),
                f.summary(now),
                purchases,
                updated,
            )),
        }))
    }

    pub(super) async fn validate_criterion_rpc(
        &self,
        request: Request<pb::ValidateCriterionRequest>,
    ) -> Result<Response<pb::ValidateCriterionResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let req = request.into_inner();
        let target = target("target", req.target)?;
        let Some(wire) = req.criterion.as_ref() else {
            return Err(ApiError::invalid(CRITERION, "is required").into());
        };
        // An invalid criterion is the answer, not an error.
        let mut v = Violations::new();
        let raw = raw_from_proto(&mut v, CRITERION, wire);
        // `event.*` only for WORKFLOW; then the target's own problems (a cart field).
        let criterion = target.parse_criterion(&mut v, CRITERION, Some(raw));
        let mut violations: Vec<pb::CriterionViolation> =
            v.into_vec().into_iter().map(relative).collect();
        if let Some(c) = &criterion {
            // The same reference checks as creating a group with it.
            let refs = self
                .store
                .reference_problems(self.store.db(), partner_id, CRITERION, c)
                .await?;
            violations.extend(refs.into_vec().into_iter().map(relative));
        }
        let valid = violations.is_empty();
        let match_count = match &criterion {
            Some(c) if valid && req.count_matches => {
                features::count_admitted(self.store.db(), partner_id, c, Utc::now()).await?
            }
            _ => 0,
        };
        Ok(Response::new(pb::ValidateCriterionResponse {
            valid,
            violations,
            match_count,
        }))
    }

    pub(super) async fn list_criterion_fields_rpc(
        &self,
        request: Request<pb::ListCriterionFieldsRequest>,
    ) -> Result<Response<pb::ListCriterionFieldsResponse>, Status> {
        principal(&request)?.partner_with_role(READERS)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let target = v.check(
            "target",
            target_from_proto(req.target).ok_or("is not a known target"),
        );
        let limit = paging::page_size(&mut v, req.page_size);
        let after = paging::parse_code_token(&mut v, &req.page_token);
        v.into_result()?;
        let fields = target.unwrap_or(CriterionTarget::Segment).fields();
        // Fields keep the catalogue's order; a page continues after the token's path.
        let start = match &after {
            None => 0,
            Some(path) => match fields.iter().position(|f| &f.path == path) {
                Some(i) => i + 1,
                None => {
                    return Err(ApiError::invalid(
                        "page_token",
                        "is not a token this service issued",
                    )
                    .into());
                }
            },
        };
        let page: Vec<&FieldSpec> = fields
            .iter()
            .skip(start)
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .collect();
        let more = start + page.len() < fields.len();
        let next_page_token = match page.last() {
            Some(last) if more => paging::next_code_token(page.len(), limit, Some(&last.path)),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListCriterionFieldsResponse {
            fields: page.into_iter().map(field_to_proto).collect(),
            next_page_token,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violation_paths_are_relative_to_the_criterion() {
        let at = |field: &str| {
            relative(FieldViolation {
                field: field.into(),
                description: "x".into(),
            })
            .path
        };
        assert_eq!(
            at("criterion.all.criteria[2].condition.field"),
            "all.criteria[2].condition.field"
        );
        assert_eq!(at("criterion"), "");
        assert_eq!(target_from_proto(0), Some(CriterionTarget::Segment));
        assert_eq!(target_from_proto(99), None);
    }
}

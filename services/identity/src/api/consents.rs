//! Consent types, customers' consents with their history, and email bounce state.
use loyalty_proto::identity::v1 as pb;
use tonic::{Request, Response, Status};

use super::IdentityApi;

pub(super) async fn create_consent_type(
    api: &IdentityApi,
    request: Request<pb::CreateConsentTypeRequest>,
) -> Result<Response<pb::CreateConsentTypeResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "CreateConsentType is not available yet",
    ))
}

pub(super) async fn list_consent_types(
    api: &IdentityApi,
    request: Request<pb::ListConsentTypesRequest>,
) -> Result<Response<pb::ListConsentTypesResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "ListConsentTypes is not available yet",
    ))
}

pub(super) async fn update_consent_type(
    api: &IdentityApi,
    request: Request<pb::UpdateConsentTypeRequest>,
) -> Result<Response<pb::UpdateConsentTypeResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "UpdateConsentType is not available yet",
    ))
}

pub(super) async fn grant_consent(
    api: &IdentityApi,
    request: Request<pb::GrantConsentRequest>,
) -> Result<Response<pb::GrantConsentResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented("GrantConsent is not available yet"))
}

pub(super) async fn withdraw_consent(
    api: &IdentityApi,
    request: Request<pb::WithdrawConsentRequest>,
) -> Result<Response<pb::WithdrawConsentResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "WithdrawConsent is not available yet",
    ))
}

pub(super) async fn list_customer_consents(
    api: &IdentityApi,
    request: Request<pb::ListCustomerConsentsRequest>,
) -> Result<Response<pb::ListCustomerConsentsResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "ListCustomerConsents is not available yet",
    ))
}

pub(super) async fn list_consent_history(
    api: &IdentityApi,
    request: Request<pb::ListConsentHistoryRequest>,
) -> Result<Response<pb::ListConsentHistoryResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "ListConsentHistory is not available yet",
    ))
}

pub(super) async fn get_email_bounce_state(
    api: &IdentityApi,
    request: Request<pb::GetEmailBounceStateRequest>,
) -> Result<Response<pb::GetEmailBounceStateResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "GetEmailBounceState is not available yet",
    ))
}

pub(super) async fn record_email_bounce(
    api: &IdentityApi,
    request: Request<pb::RecordEmailBounceRequest>,
) -> Result<Response<pb::RecordEmailBounceResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "RecordEmailBounce is not available yet",
    ))
}

pub(super) async fn reset_email_bounce_state(
    api: &IdentityApi,
    request: Request<pb::ResetEmailBounceStateRequest>,
) -> Result<Response<pb::ResetEmailBounceStateResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "ResetEmailBounceState is not available yet",
    ))
}

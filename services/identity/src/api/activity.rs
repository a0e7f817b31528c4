//! Event types and tracked customer events (one by one and streamed in bulk).
use loyalty_proto::identity::v1 as pb;
use tonic::Streaming;
use tonic::{Request, Response, Status};

use super::IdentityApi;

pub(super) async fn create_event_type(
    api: &IdentityApi,
    request: Request<pb::CreateEventTypeRequest>,
) -> Result<Response<pb::CreateEventTypeResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "CreateEventType is not available yet",
    ))
}

pub(super) async fn get_event_type(
    api: &IdentityApi,
    request: Request<pb::GetEventTypeRequest>,
) -> Result<Response<pb::GetEventTypeResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented("GetEventType is not available yet"))
}

pub(super) async fn list_event_types(
    api: &IdentityApi,
    request: Request<pb::ListEventTypesRequest>,
) -> Result<Response<pb::ListEventTypesResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented("ListEventTypes is not available yet"))
}

pub(super) async fn update_event_type(
    api: &IdentityApi,
    request: Request<pb::UpdateEventTypeRequest>,
) -> Result<Response<pb::UpdateEventTypeResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "UpdateEventType is not available yet",
    ))
}

pub(super) async fn track_event(
    api: &IdentityApi,
    request: Request<pb::TrackEventRequest>,
) -> Result<Response<pb::TrackEventResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented("TrackEvent is not available yet"))
}

pub(super) async fn track_events(
    api: &IdentityApi,
    request: Request<Streaming<pb::TrackEventsRequest>>,
) -> Result<Response<pb::TrackEventsResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented("TrackEvents is not available yet"))
}

pub(super) async fn list_customer_events(
    api: &IdentityApi,
    request: Request<pb::ListCustomerEventsRequest>,
) -> Result<Response<pb::ListCustomerEventsResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "ListCustomerEvents is not available yet",
    ))
}

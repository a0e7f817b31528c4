//! Bulk customer import.
use loyalty_proto::identity::v1 as pb;
use tonic::Streaming;
use tonic::{Request, Response, Status};

use super::IdentityApi;

pub(super) async fn import_customers(
    api: &IdentityApi,
    request: Request<Streaming<pb::ImportCustomersRequest>>,
) -> Result<Response<pb::ImportCustomersResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "ImportCustomers is not available yet",
    ))
}

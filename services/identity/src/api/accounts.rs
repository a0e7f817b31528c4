//! Partners' settings, customer listing and search, blocking, the account history timeline, merge and GDPR export/erase.
use loyalty_proto::identity::v1 as pb;
use tonic::{Request, Response, Status};

use super::IdentityApi;

pub(super) async fn list_partners(
    api: &IdentityApi,
    request: Request<pb::ListPartnersRequest>,
) -> Result<Response<pb::ListPartnersResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented("ListPartners is not available yet"))
}

pub(super) async fn update_partner(
    api: &IdentityApi,
    request: Request<pb::UpdatePartnerRequest>,
) -> Result<Response<pb::UpdatePartnerResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented("UpdatePartner is not available yet"))
}

pub(super) async fn list_customers(
    api: &IdentityApi,
    request: Request<pb::ListCustomersRequest>,
) -> Result<Response<pb::ListCustomersResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented("ListCustomers is not available yet"))
}

pub(super) async fn search_customers(
    api: &IdentityApi,
    request: Request<pb::SearchCustomersRequest>,
) -> Result<Response<pb::SearchCustomersResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "SearchCustomers is not available yet",
    ))
}

pub(super) async fn block_customer(
    api: &IdentityApi,
    request: Request<pb::BlockCustomerRequest>,
) -> Result<Response<pb::BlockCustomerResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented("BlockCustomer is not available yet"))
}

pub(super) async fn unblock_customer(
    api: &IdentityApi,
    request: Request<pb::UnblockCustomerRequest>,
) -> Result<Response<pb::UnblockCustomerResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "UnblockCustomer is not available yet",
    ))
}

pub(super) async fn list_account_history(
    api: &IdentityApi,
    request: Request<pb::ListAccountHistoryRequest>,
) -> Result<Response<pb::ListAccountHistoryResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "ListAccountHistory is not available yet",
    ))
}

pub(super) async fn merge_customers(
    api: &IdentityApi,
    request: Request<pb::MergeCustomersRequest>,
) -> Result<Response<pb::MergeCustomersResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented("MergeCustomers is not available yet"))
}

pub(super) async fn export_customer(
    api: &IdentityApi,
    request: Request<pb::ExportCustomerRequest>,
) -> Result<Response<super::ExportCustomerStream>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented("ExportCustomer is not available yet"))
}

pub(super) async fn erase_customer(
    api: &IdentityApi,
    request: Request<pb::EraseCustomerRequest>,
) -> Result<Response<pb::EraseCustomerResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented("EraseCustomer is not available yet"))
}

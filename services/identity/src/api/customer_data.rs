//! Contact sources, interests, customer property definitions, relation types and relations between customers.
use loyalty_proto::identity::v1 as pb;
use tonic::{Request, Response, Status};

use super::IdentityApi;

pub(super) async fn create_contact_source(
    api: &IdentityApi,
    request: Request<pb::CreateContactSourceRequest>,
) -> Result<Response<pb::CreateContactSourceResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "CreateContactSource is not available yet",
    ))
}

pub(super) async fn list_contact_sources(
    api: &IdentityApi,
    request: Request<pb::ListContactSourcesRequest>,
) -> Result<Response<pb::ListContactSourcesResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "ListContactSources is not available yet",
    ))
}

pub(super) async fn update_contact_source(
    api: &IdentityApi,
    request: Request<pb::UpdateContactSourceRequest>,
) -> Result<Response<pb::UpdateContactSourceResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "UpdateContactSource is not available yet",
    ))
}

pub(super) async fn delete_contact_source(
    api: &IdentityApi,
    request: Request<pb::DeleteContactSourceRequest>,
) -> Result<Response<pb::DeleteContactSourceResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "DeleteContactSource is not available yet",
    ))
}

pub(super) async fn create_interest(
    api: &IdentityApi,
    request: Request<pb::CreateInterestRequest>,
) -> Result<Response<pb::CreateInterestResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented("CreateInterest is not available yet"))
}

pub(super) async fn list_interests(
    api: &IdentityApi,
    request: Request<pb::ListInterestsRequest>,
) -> Result<Response<pb::ListInterestsResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented("ListInterests is not available yet"))
}

pub(super) async fn update_interest(
    api: &IdentityApi,
    request: Request<pb::UpdateInterestRequest>,
) -> Result<Response<pb::UpdateInterestResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented("UpdateInterest is not available yet"))
}

pub(super) async fn delete_interest(
    api: &IdentityApi,
    request: Request<pb::DeleteInterestRequest>,
) -> Result<Response<pb::DeleteInterestResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented("DeleteInterest is not available yet"))
}

pub(super) async fn create_customer_property_definition(
    api: &IdentityApi,
    request: Request<pb::CreateCustomerPropertyDefinitionRequest>,
) -> Result<Response<pb::CreateCustomerPropertyDefinitionResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "CreateCustomerPropertyDefinition is not available yet",
    ))
}

pub(super) async fn list_customer_property_definitions(
    api: &IdentityApi,
    request: Request<pb::ListCustomerPropertyDefinitionsRequest>,
) -> Result<Response<pb::ListCustomerPropertyDefinitionsResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "ListCustomerPropertyDefinitions is not available yet",
    ))
}

pub(super) async fn update_customer_property_definition(
    api: &IdentityApi,
    request: Request<pb::UpdateCustomerPropertyDefinitionRequest>,
) -> Result<Response<pb::UpdateCustomerPropertyDefinitionResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "UpdateCustomerPropertyDefinition is not available yet",
    ))
}

pub(super) async fn delete_customer_property_definition(
    api: &IdentityApi,
    request: Request<pb::DeleteCustomerPropertyDefinitionRequest>,
) -> Result<Response<pb::DeleteCustomerPropertyDefinitionResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "DeleteCustomerPropertyDefinition is not available yet",
    ))
}

pub(super) async fn create_relation_type(
    api: &IdentityApi,
    request: Request<pb::CreateRelationTypeRequest>,
) -> Result<Response<pb::CreateRelationTypeResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "CreateRelationType is not available yet",
    ))
}

pub(super) async fn list_relation_types(
    api: &IdentityApi,
    request: Request<pb::ListRelationTypesRequest>,
) -> Result<Response<pb::ListRelationTypesResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "ListRelationTypes is not available yet",
    ))
}

pub(super) async fn update_relation_type(
    api: &IdentityApi,
    request: Request<pb::UpdateRelationTypeRequest>,
) -> Result<Response<pb::UpdateRelationTypeResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "UpdateRelationType is not available yet",
    ))
}

pub(super) async fn delete_relation_type(
    api: &IdentityApi,
    request: Request<pb::DeleteRelationTypeRequest>,
) -> Result<Response<pb::DeleteRelationTypeResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "DeleteRelationType is not available yet",
    ))
}

pub(super) async fn create_customer_relation(
    api: &IdentityApi,
    request: Request<pb::CreateCustomerRelationRequest>,
) -> Result<Response<pb::CreateCustomerRelationResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "CreateCustomerRelation is not available yet",
    ))
}

pub(super) async fn list_customer_relations(
    api: &IdentityApi,
    request: Request<pb::ListCustomerRelationsRequest>,
) -> Result<Response<pb::ListCustomerRelationsResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "ListCustomerRelations is not available yet",
    ))
}

pub(super) async fn delete_customer_relation(
    api: &IdentityApi,
    request: Request<pb::DeleteCustomerRelationRequest>,
) -> Result<Response<pb::DeleteCustomerRelationResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "DeleteCustomerRelation is not available yet",
    ))
}

//! Contact sources, interests, customer property definitions, relation types and relations
//! between customers; plus the checks CreateCustomer and UpdateCustomer run on the catalogue
//! references and properties of an account.
use loyalty_platform::{
    ApiError, Role, Violations,
    auth::principal,
    error::check_idempotency_key,
    events,
    idempotency::{self, IdempotencyScope},
    paging::{
        code_page, next_code_token, next_page_token, page_size, parse_code_token, parse_page_token,
    },
    time::to_timestamp,
};
use loyalty_proto::{events::v1 as ev, identity::v1 as pb};
use sea_orm::ConnectionTrait;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{IdentityApi, customer_updated_event};
use crate::{
    domain::{
        CustomerProfile, CustomerState, business_unit::UnitState, business_unit::creates_cycle,
        customer_data::*, now_micros,
    },
    store::{Store, business_units, customer_data as store},
};

/// Who may change the catalogues, property definitions and relation types.
const CATALOGUE_ROLES: &[Role] = &[Role::Marketing];
/// Who may relate customer accounts: whoever may change them.
const RELATION_ROLES: &[Role] = &[Role::Support, Role::Pos, Role::Marketing];

// ---- shared helpers ----

/// A required UUID field, reported under `field`.
fn required_uuid(v: &mut Violations, field: &str, value: &str) -> Uuid {
    if value.trim().is_empty() {
        v.add(field, "is required");
        return Uuid::nil();
    }
    v.check(
        field,
        Uuid::try_parse(value.trim()).map_err(|_| "must be a UUID"),
    )
    .unwrap_or_default()
}

/// An optional UUID field (empty = none), reported under `field`.
fn optional_uuid(v: &mut Violations, field: &str, value: &str) -> Option<Uuid> {
    if value.trim().is_empty() {
        None
    } else {
        v.check(
            field,
            Uuid::try_parse(value.trim()).map_err(|_| "must be a UUID"),
        )
    }
}

fn mask_paths(v: &mut Violations, mask: Option<prost_types::FieldMask>) -> Vec<String> {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    if paths.is_empty() {
        v.add("update_mask", "name the fields to update");
    }
    paths
}

fn changed_concurrently(what: &str) -> ApiError {
    ApiError::precondition("ETAG_MISMATCH", format!("the {what} changed concurrently"))
}

fn unknown_path(v: &mut Violations, path: &str, allowed: &[&str]) {
    v.add(
        "update_mask",
        format!(
            "{path:?} cannot be updated (updatable: {})",
            allowed.join(", ")
        ),
    );
}

// ---- the checks of customer writes ----

/// The catalogue ids as the request listed them, to name `customer.contact_source_ids[i]`
/// by the caller's index, and the field prefix violations are reported under.
pub(super) struct RequestedRefs {
    prefix: String,
    contact_source_ids: Vec<String>,
    interest_ids: Vec<String>,
}

impl RequestedRefs {
    /// The references of a request's `customer`.
    pub(super) fn of(c: &pb::Customer) -> Self {
        RequestedRefs {
            prefix: "customer".to_owned(),
            contact_source_ids: c.contact_source_ids.clone(),
            interest_ids: c.interest_ids.clone(),
        }
    }
}

fn index_of(raw: &[String], id: Uuid) -> usize {
    raw.iter()
        .position(|s| Uuid::try_parse(s.trim()).ok() == Some(id))
        .unwrap_or_default()
}

/// Checks an account's catalogue references and properties against the partner's data, in the
/// write's transaction, and returns the profile with normalised property values. On an update
/// (`previous` set) only what changed is checked, so an account keeps e.g. a business unit
/// that was closed since.
pub(super) async fn check_customer_data(
    txn: &impl ConnectionTrait,
    partner_id: Uuid,
    mut profile: CustomerProfile,
    previous: Option<&CustomerProfile>,
    refs: &RequestedRefs,
) -> Result<CustomerProfile, ApiError> {
    let mut v = Violations::new();
    let added = |now: &[Uuid], before: Option<&[Uuid]>| -> Vec<Uuid> {
        now.iter()
            .filter(|id| before.is_none_or(|b| !b.contains(id)))
            .copied()
            .collect()
    };
    let new_sources = added(
        &profile.contact_source_ids,
        previous.map(|p| p.contact_source_ids.as_slice()),
    );
    store::lock_contact_sources(txn, partner_id, &new_sources).await?;
    for id in store::unknown_contact_sources(txn, partner_id, &new_sources).await? {
        v.add(
            format!(
                "{}.contact_source_ids[{}]",
                refs.prefix,
                index_of(&refs.contact_source_ids, id)
            ),
            "no such contact source",
        );
    }
    let new_interests = added(
        &profile.interest_ids,
        previous.map(|p| p.interest_ids.as_slice()),
    );
    store::lock_interests(txn, partner_id, &new_interests).await?;
    for id in store::unknown_interests(txn, partner_id, &new_interests).await? {
        v.add(
            format!(
                "{}.interest_ids[{}]",
                refs.prefix,
                index_of(&refs.interest_ids, id)
            ),
            "no such interest",
        );
    }
    if let Some(unit) = profile.home_business_unit_id
        && previous.and_then(|p| p.home_business_unit_id) != Some(unit)
    {
        let field = format!("{}.home_business_unit_id", refs.prefix);
        match business_units::get(txn, partner_id, &unit.to_string()).await? {
            None => v.add(field, "no such business unit"),
            Some(u) if u.state != UnitState::Active => v.add(field, "the business unit is closed"),
            Some(_) => {}
        }
    }
    let definitions = store::property_definitions(txn, partner_id).await?;
    profile.properties = validate_properties(
        &definitions,
        &profile.properties,
        previous.map(|p| &p.properties),
        &refs.prefix,
        &mut v,
    );
    v.into_result()?;
    Ok(profile)
}

// ---- contact sources ----

fn source_to_proto(s: &ContactSource) -> pb::ContactSource {
    pb::ContactSource {
        id: s.id.to_string(),
        code: s.code.clone(),
        display_name: s.display_name.clone(),
        description: s.description.clone(),
        etag: s.etag(),
        create_time: Some(to_timestamp(s.created_at)),
        update_time: Some(to_timestamp(s.updated_at)),
    }
}

fn apply_source(v: &mut Violations, s: &mut ContactSource, p: &pb::ContactSource, path: &str) {
    match path {
        "display_name" => s.display_name = p.display_name.trim().to_owned(),
        "description" => s.description = p.description.trim().to_owned(),
        other => unknown_path(v, other, CONTACT_SOURCE_UPDATABLE),
    }
}

pub(super) async fn create_contact_source(
    api: &IdentityApi,
    request: Request<pb::CreateContactSourceRequest>,
) -> Result<Response<pb::CreateContactSourceResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(CATALOGUE_ROLES)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(
        partner_id,
        "CreateContactSource",
        &req.idempotency_key,
        &req,
    );
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let p = req.contact_source.unwrap_or_default();
    let now = now_micros();
    let source = ContactSource {
        id: Uuid::now_v7(),
        code: p.code.trim().to_owned(),
        display_name: p.display_name.trim().to_owned(),
        description: p.description.trim().to_owned(),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    source.validate(&mut v);
    v.into_result()?;
    let source: ContactSource = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            store::insert_contact_source(txn, partner_id, &source).await?;
            Ok(source)
        })
    })
    .await?;
    Ok(Response::new(pb::CreateContactSourceResponse {
        contact_source: Some(source_to_proto(&source)),
    }))
}

pub(super) async fn list_contact_sources(
    api: &IdentityApi,
    request: Request<pb::ListContactSourcesRequest>,
) -> Result<Response<pb::ListContactSourcesResponse>, Status> {
    let partner_id = principal(&request)?.partner()?;
    let req = request.into_inner();
    let (limit, after) = code_page(req.page_size, &req.page_token)?;
    let sources = store::contact_sources(&api.db, partner_id, after.as_deref(), limit).await?;
    Ok(Response::new(pb::ListContactSourcesResponse {
        next_page_token: next_code_token(
            sources.len(),
            limit,
            sources.last().map(|s| s.code.as_str()),
        ),
        contact_sources: sources.iter().map(source_to_proto).collect(),
    }))
}

pub(super) async fn update_contact_source(
    api: &IdentityApi,
    request: Request<pb::UpdateContactSourceRequest>,
) -> Result<Response<pb::UpdateContactSourceResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(CATALOGUE_ROLES)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(
        partner_id,
        "UpdateContactSource",
        &req.idempotency_key,
        &req,
    );
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let p = req.contact_source.unwrap_or_default();
    let id = required_uuid(&mut v, "contact_source.id", &p.id);
    let paths = mask_paths(&mut v, req.update_mask);
    v.into_result()?;
    let etag = req.etag;
    let source: ContactSource = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            let current = store::contact_source(txn, partner_id, id)
                .await?
                .ok_or_else(|| ApiError::NotFound("contact source".into()))?;
            loyalty_platform::error::check_etag(&etag, &current.etag(), "contact source")?;
            let mut next = current.clone();
            let mut v = Violations::new();
            for path in &paths {
                apply_source(&mut v, &mut next, &p, path);
            }
            next.validate(&mut v);
            v.into_result()?;
            next.version = current.version + 1;
            next.updated_at = now_micros();
            if !store::update_contact_source(txn, partner_id, &next, current.version).await? {
                return Err(changed_concurrently("contact source"));
            }
            Ok(next)
        })
    })
    .await?;
    Ok(Response::new(pb::UpdateContactSourceResponse {
        contact_source: Some(source_to_proto(&source)),
    }))
}

pub(super) async fn delete_contact_source(
    api: &IdentityApi,
    request: Request<pb::DeleteContactSourceRequest>,
) -> Result<Response<pb::DeleteContactSourceResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(CATALOGUE_ROLES)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(
        partner_id,
        "DeleteContactSource",
        &req.idempotency_key,
        &req,
    );
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let id = required_uuid(&mut v, "contact_source_id", &req.contact_source_id);
    v.into_result()?;
    idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            store::lock_contact_sources(txn, partner_id, &[id]).await?;
            store::contact_source(txn, partner_id, id)
                .await?
                .ok_or_else(|| ApiError::NotFound("contact source".into()))?;
            if store::contact_source_in_use(txn, partner_id, id).await? {
                return Err(ApiError::precondition(
                    "CONTACT_SOURCE_IN_USE",
                    "customer accounts list this contact source; take it off them first",
                ));
            }
            store::delete_contact_source(txn, partner_id, id).await?;
            Ok(())
        })
    })
    .await?;
    Ok(Response::new(pb::DeleteContactSourceResponse {}))
}

// ---- interests ----

fn interest_to_proto(i: &Interest) -> pb::Interest {
    pb::Interest {
        id: i.id.to_string(),
        code: i.code.clone(),
        display_name: i.display_name.clone(),
        parent_interest_id: i.parent_id.map(|p| p.to_string()).unwrap_or_default(),
        etag: i.etag(),
        create_time: Some(to_timestamp(i.created_at)),
        update_time: Some(to_timestamp(i.updated_at)),
    }
}

/// The parent must be an interest of the partner that does not sit below `interest`.
async fn check_interest_parent(
    txn: &impl ConnectionTrait,
    partner_id: Uuid,
    interest: &Interest,
) -> Result<(), ApiError> {
    let Some(parent) = interest.parent_id else {
        return Ok(());
    };
    if store::interest(txn, partner_id, parent).await?.is_none() {
        return Err(ApiError::NotFound("parent interest".into()));
    }
    let parents = store::interest_parents(txn, partner_id).await?;
    if creates_cycle(interest.id, parent, |i| parents.get(&i).copied()) {
        return Err(ApiError::precondition(
            "INTEREST_CYCLE",
            "the parent interest sits below this interest",
        ));
    }
    Ok(())
}

pub(super) async fn create_interest(
    api: &IdentityApi,
    request: Request<pb::CreateInterestRequest>,
) -> Result<Response<pb::CreateInterestResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(CATALOGUE_ROLES)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "CreateInterest", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let p = req.interest.unwrap_or_default();
    let now = now_micros();
    let interest = Interest {
        id: Uuid::now_v7(),
        code: p.code.trim().to_owned(),
        display_name: p.display_name.trim().to_owned(),
        parent_id: optional_uuid(&mut v, "interest.parent_interest_id", &p.parent_interest_id),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    interest.validate(&mut v);
    v.into_result()?;
    let interest: Interest = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            check_interest_parent(txn, partner_id, &interest).await?;
            store::insert_interest(txn, partner_id, &interest).await?;
            Ok(interest)
        })
    })
    .await?;
    Ok(Response::new(pb::CreateInterestResponse {
        interest: Some(interest_to_proto(&interest)),
    }))
}

pub(super) async fn list_interests(
    api: &IdentityApi,
    request: Request<pb::ListInterestsRequest>,
) -> Result<Response<pb::ListInterestsResponse>, Status> {
    let partner_id = principal(&request)?.partner()?;
    let req = request.into_inner();
    let mut v = Violations::new();
    let limit = page_size(&mut v, req.page_size);
    let after = parse_code_token(&mut v, &req.page_token);
    let parent = optional_uuid(&mut v, "parent_interest_id", &req.parent_interest_id);
    v.into_result()?;
    let interests = store::interests(&api.db, partner_id, parent, after.as_deref(), limit).await?;
    Ok(Response::new(pb::ListInterestsResponse {
        next_page_token: next_code_token(
            interests.len(),
            limit,
            interests.last().map(|i| i.code.as_str()),
        ),
        interests: interests.iter().map(interest_to_proto).collect(),
    }))
}

pub(super) async fn update_interest(
    api: &IdentityApi,
    request: Request<pb::UpdateInterestRequest>,
) -> Result<Response<pb::UpdateInterestResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(CATALOGUE_ROLES)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "UpdateInterest", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let p = req.interest.unwrap_or_default();
    let id = required_uuid(&mut v, "interest.id", &p.id);
    let paths = mask_paths(&mut v, req.update_mask);
    let parent = optional_uuid(&mut v, "interest.parent_interest_id", &p.parent_interest_id);
    v.into_result()?;
    let etag = req.etag;
    let interest: Interest = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            let current = store::interest(txn, partner_id, id)
                .await?
                .ok_or_else(|| ApiError::NotFound("interest".into()))?;
            loyalty_platform::error::check_etag(&etag, &current.etag(), "interest")?;
            let mut next = current.clone();
            let mut v = Violations::new();
            for path in &paths {
                match path.as_str() {
                    "display_name" => next.display_name = p.display_name.trim().to_owned(),
                    "parent_interest_id" => next.parent_id = parent,
                    other => unknown_path(&mut v, other, INTEREST_UPDATABLE),
                }
            }
            next.validate(&mut v);
            v.into_result()?;
            if next.parent_id != current.parent_id {
                check_interest_parent(txn, partner_id, &next).await?;
            }
            next.version = current.version + 1;
            next.updated_at = now_micros();
            if !store::update_interest(txn, partner_id, &next, current.version).await? {
                return Err(changed_concurrently("interest"));
            }
            Ok(next)
        })
    })
    .await?;
    Ok(Response::new(pb::UpdateInterestResponse {
        interest: Some(interest_to_proto(&interest)),
    }))
}

pub(super) async fn delete_interest(
    api: &IdentityApi,
    request: Request<pb::DeleteInterestRequest>,
) -> Result<Response<pb::DeleteInterestResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(CATALOGUE_ROLES)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "DeleteInterest", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let id = required_uuid(&mut v, "interest_id", &req.interest_id);
    v.into_result()?;
    let customers = api.store.clone();
    idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            store::lock_interests(txn, partner_id, &[id]).await?;
            store::interest(txn, partner_id, id)
                .await?
                .ok_or_else(|| ApiError::NotFound("interest".into()))?;
            if store::interest_has_children(txn, partner_id, id).await? {
                return Err(ApiError::precondition(
                    "INTEREST_HAS_CHILDREN",
                    "other interests sit below this one; delete or move them first",
                ));
            }
            for customer_id in store::customers_with_interest(txn, partner_id, id).await? {
                let next = rewrite_customer(txn, &customers, partner_id, customer_id, |p| {
                    p.interest_ids.retain(|i| *i != id)
                })
                .await?;
                // Segmentation's criteria read the interests: it must see them go.
                events::enqueue(txn, Some(partner_id), &customer_updated_event(&next)).await?;
            }
            store::delete_interest(txn, partner_id, id).await?;
            Ok(())
        })
    })
    .await?;
    Ok(Response::new(pb::DeleteInterestResponse {}))
}

/// Changes one account's profile with `change` and stores it; returns the stored account.
async fn rewrite_customer(
    txn: &impl ConnectionTrait,
    customers: &Store,
    partner_id: Uuid,
    customer_id: Uuid,
    change: impl FnOnce(&mut CustomerProfile),
) -> Result<crate::domain::Customer, ApiError> {
    let current = customers
        .customer(txn, partner_id, customer_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("customer".into()))?;
    let mut next = current.clone();
    change(&mut next.profile);
    next.updated_at = now_micros().max(current.updated_at + chrono::Duration::microseconds(1));
    if !customers
        .update_customer(txn, &next, current.updated_at)
        .await?
    {
        return Err(ApiError::Unavailable(
            "a customer account changed concurrently; retry".into(),
        ));
    }
    Ok(next)
}

// ---- customer property definitions ----

fn type_from_proto(v: i32) -> Option<PropertyType> {
    use pb::PropertyDataType as T;
    Some(match T::try_from(v).ok()? {
        T::String => PropertyType::String,
        T::Integer => PropertyType::Integer,
        T::Boolean => PropertyType::Boolean,
        T::Date => PropertyType::Date,
        T::Timestamp => PropertyType::Timestamp,
        T::Enum => PropertyType::Enum,
        T::Unspecified => return None,
    })
}

fn type_to_proto(t: PropertyType) -> pb::PropertyDataType {
    use pb::PropertyDataType as T;
    match t {
        PropertyType::String => T::String,
        PropertyType::Integer => T::Integer,
        PropertyType::Boolean => T::Boolean,
        PropertyType::Date => T::Date,
        PropertyType::Timestamp => T::Timestamp,
        PropertyType::Enum => T::Enum,
    }
}

fn definition_to_proto(d: &PropertyDefinition) -> pb::CustomerPropertyDefinition {
    pb::CustomerPropertyDefinition {
        id: d.id.to_string(),
        key: d.key.clone(),
        display_name: d.display_name.clone(),
        data_type: type_to_proto(d.data_type) as i32,
        allowed_values: d.allowed_values.clone(),
        max_length: d.max_length,
        required: d.required,
        personal_data: d.personal_data,
        description: d.description.clone(),
        etag: d.etag(),
        create_time: Some(to_timestamp(d.created_at)),
        update_time: Some(to_timestamp(d.updated_at)),
    }
}

fn allowed_values(p: &pb::CustomerPropertyDefinition) -> Vec<String> {
    p.allowed_values
        .iter()
        .map(|a| a.trim().to_owned())
        .collect()
}

/// Existing values of the property must fit the (new) definition.
async fn check_existing_values(
    txn: &impl ConnectionTrait,
    partner_id: Uuid,
    d: &PropertyDefinition,
) -> Result<(), ApiError> {
    // A required property needs every account; otherwise only accounts having it matter.
    let key = (!d.required).then_some(d.key.as_str());
    let rows = store::customer_properties(txn, partner_id, key).await?;
    let misfit = first_misfit(
        d,
        rows.iter()
            .map(|(id, props)| (*id, props.get(&d.key).map(String::as_str))),
    );
    match misfit {
        None => Ok(()),
        Some((customer, why)) => Err(ApiError::precondition(
            "VALUES_VIOLATE_DEFINITION",
            format!(
                "customer {customer}: property {:?} {why}; fix the accounts first",
                d.key
            ),
        )),
    }
}

pub(super) async fn create_customer_property_definition(
    api: &IdentityApi,
    request: Request<pb::CreateCustomerPropertyDefinitionRequest>,
) -> Result<Response<pb::CreateCustomerPropertyDefinitionResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(CATALOGUE_ROLES)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(
        partner_id,
        "CreateCustomerPropertyDefinition",
        &req.idempotency_key,
        &req,
    );
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let p = req.definition.unwrap_or_default();
    let data_type = type_from_proto(p.data_type);
    if data_type.is_none() {
        v.add("definition.data_type", "is required");
    }
    let now = now_micros();
    let definition = PropertyDefinition {
        id: Uuid::now_v7(),
        key: p.key.trim().to_owned(),
        display_name: p.display_name.trim().to_owned(),
        data_type: data_type.unwrap_or(PropertyType::String),
        allowed_values: allowed_values(&p),
        max_length: p.max_length,
        required: p.required,
        personal_data: p.personal_data,
        description: p.description.trim().to_owned(),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    definition.validate(&mut v);
    v.into_result()?;
    let definition: PropertyDefinition = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            store::insert_property_definition(txn, partner_id, &definition).await?;
            check_existing_values(txn, partner_id, &definition).await?;
            Ok(definition)
        })
    })
    .await?;
    Ok(Response::new(
        pb::CreateCustomerPropertyDefinitionResponse {
            definition: Some(definition_to_proto(&definition)),
        },
    ))
}

pub(super) async fn list_customer_property_definitions(
    api: &IdentityApi,
    request: Request<pb::ListCustomerPropertyDefinitionsRequest>,
) -> Result<Response<pb::ListCustomerPropertyDefinitionsResponse>, Status> {
    let partner_id = principal(&request)?.partner()?;
    let req = request.into_inner();
    let (limit, after) = code_page(req.page_size, &req.page_token)?;
    let definitions =
        store::page_of_property_definitions(&api.db, partner_id, after.as_deref(), limit).await?;
    Ok(Response::new(pb::ListCustomerPropertyDefinitionsResponse {
        next_page_token: next_code_token(
            definitions.len(),
            limit,
            definitions.last().map(|d| d.key.as_str()),
        ),
        definitions: definitions.iter().map(definition_to_proto).collect(),
    }))
}

pub(super) async fn update_customer_property_definition(
    api: &IdentityApi,
    request: Request<pb::UpdateCustomerPropertyDefinitionRequest>,
) -> Result<Response<pb::UpdateCustomerPropertyDefinitionResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(CATALOGUE_ROLES)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(
        partner_id,
        "UpdateCustomerPropertyDefinition",
        &req.idempotency_key,
        &req,
    );
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let p = req.definition.unwrap_or_default();
    let id = required_uuid(&mut v, "definition.id", &p.id);
    let paths = mask_paths(&mut v, req.update_mask);
    v.into_result()?;
    let etag = req.etag;
    let definition: PropertyDefinition = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            let current = store::property_definition(txn, partner_id, id)
                .await?
                .ok_or_else(|| ApiError::NotFound("customer property definition".into()))?;
            loyalty_platform::error::check_etag(
                &etag,
                &current.etag(),
                "customer property definition",
            )?;
            let mut next = current.clone();
            let mut v = Violations::new();
            for path in &paths {
                match path.as_str() {
                    "display_name" => next.display_name = p.display_name.trim().to_owned(),
                    "allowed_values" => next.allowed_values = allowed_values(&p),
                    "max_length" => next.max_length = p.max_length,
                    "required" => next.required = p.required,
                    "personal_data" => next.personal_data = p.personal_data,
                    "description" => next.description = p.description.trim().to_owned(),
                    "key" | "data_type" => v.add(format!("definition.{path}"), "is immutable"),
                    other => unknown_path(&mut v, other, PROPERTY_DEFINITION_UPDATABLE),
                }
            }
            next.validate(&mut v);
            v.into_result()?;
            let tightened = next.allowed_values != current.allowed_values
                || next.max_length != current.max_length
                || (next.required && !current.required);
            if tightened {
                check_existing_values(txn, partner_id, &next).await?;
            }
            next.version = current.version + 1;
            next.updated_at = now_micros();
            if !store::update_property_definition(txn, partner_id, &next, current.version).await? {
                return Err(changed_concurrently("customer property definition"));
            }
            Ok(next)
        })
    })
    .await?;
    Ok(Response::new(
        pb::UpdateCustomerPropertyDefinitionResponse {
            definition: Some(definition_to_proto(&definition)),
        },
    ))
}

pub(super) async fn delete_customer_property_definition(
    api: &IdentityApi,
    request: Request<pb::DeleteCustomerPropertyDefinitionRequest>,
) -> Result<Response<pb::DeleteCustomerPropertyDefinitionResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(CATALOGUE_ROLES)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(
        partner_id,
        "DeleteCustomerPropertyDefinition",
        &req.idempotency_key,
        &req,
    );
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let id = required_uuid(&mut v, "definition_id", &req.definition_id);
    v.into_result()?;
    let customers = api.store.clone();
    idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            let definition = store::property_definition(txn, partner_id, id)
                .await?
                .ok_or_else(|| ApiError::NotFound("customer property definition".into()))?;
            let key = definition.key;
            for (customer_id, _) in store::customer_properties(txn, partner_id, Some(&key)).await? {
                let next = rewrite_customer(txn, &customers, partner_id, customer_id, |p| {
                    p.properties.remove(&key);
                })
                .await?;
                events::enqueue(txn, Some(partner_id), &customer_updated_event(&next)).await?;
            }
            store::delete_property_definition(txn, partner_id, id).await?;
            Ok(())
        })
    })
    .await?;
    Ok(Response::new(
        pb::DeleteCustomerPropertyDefinitionResponse {},
    ))
}

// ---- relation types ----

fn relation_type_to_proto(t: &RelationType) -> pb::RelationType {
    pb::RelationType {
        id: t.id.to_string(),
        code: t.code.clone(),
        display_name: t.display_name.clone(),
        from_role_name: t.from_role_name.clone(),
        to_role_name: t.to_role_name.clone(),
        symmetric: t.symmetric,
        max_relations_per_customer: t.max_relations_per_customer,
        share_benefits: t.share_benefits,
        etag: t.etag(),
        create_time: Some(to_timestamp(t.created_at)),
        update_time: Some(to_timestamp(t.updated_at)),
    }
}

pub(super) async fn create_relation_type(
    api: &IdentityApi,
    request: Request<pb::CreateRelationTypeRequest>,
) -> Result<Response<pb::CreateRelationTypeResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(CATALOGUE_ROLES)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "CreateRelationType", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let p = req.relation_type.unwrap_or_default();
    let now = now_micros();
    let mut relation_type = RelationType {
        id: Uuid::now_v7(),
        code: p.code,
        display_name: p.display_name,
        from_role_name: p.from_role_name,
        to_role_name: p.to_role_name,
        symmetric: p.symmetric,
        max_relations_per_customer: p.max_relations_per_customer,
        share_benefits: p.share_benefits,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    relation_type.normalise();
    relation_type.validate(&mut v);
    v.into_result()?;
    let relation_type: RelationType = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            store::insert_relation_type(txn, partner_id, &relation_type).await?;
            Ok(relation_type)
        })
    })
    .await?;
    Ok(Response::new(pb::CreateRelationTypeResponse {
        relation_type: Some(relation_type_to_proto(&relation_type)),
    }))
}

pub(super) async fn list_relation_types(
    api: &IdentityApi,
    request: Request<pb::ListRelationTypesRequest>,
) -> Result<Response<pb::ListRelationTypesResponse>, Status> {
    let partner_id = principal(&request)?.partner()?;
    let req = request.into_inner();
    let (limit, after) = code_page(req.page_size, &req.page_token)?;
    let types = store::relation_types(&api.db, partner_id, after.as_deref(), limit).await?;
    Ok(Response::new(pb::ListRelationTypesResponse {
        next_page_token: next_code_token(types.len(), limit, types.last().map(|t| t.code.as_str())),
        relation_types: types.iter().map(relation_type_to_proto).collect(),
    }))
}

pub(super) async fn update_relation_type(
    api: &IdentityApi,
    request: Request<pb::UpdateRelationTypeRequest>,
) -> Result<Response<pb::UpdateRelationTypeResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(CATALOGUE_ROLES)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "UpdateRelationType", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let p = req.relation_type.unwrap_or_default();
    let id = required_uuid(&mut v, "relation_type.id", &p.id);
    let paths = mask_paths(&mut v, req.update_mask);
    v.into_result()?;
    let etag = req.etag;
    let relation_type: RelationType = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            let current = store::relation_type(txn, partner_id, id)
                .await?
                .ok_or_else(|| ApiError::NotFound("relation type".into()))?;
            loyalty_platform::error::check_etag(&etag, &current.etag(), "relation type")?;
            let mut next = current.clone();
            let mut v = Violations::new();
            for path in &paths {
                match path.as_str() {
                    "display_name" => next.display_name = p.display_name.clone(),
                    "from_role_name" => {
                        next.from_role_name = p.from_role_name.clone();
                        if next.symmetric && !paths.iter().any(|p| p == "to_role_name") {
                            next.to_role_name = String::new();
                        }
                    }
                    "to_role_name" => next.to_role_name = p.to_role_name.clone(),
                    "max_relations_per_customer" => {
                        next.max_relations_per_customer = p.max_relations_per_customer
                    }
                    "share_benefits" => next.share_benefits = p.share_benefits,
                    "code" | "symmetric" => v.add(format!("relation_type.{path}"), "is immutable"),
                    other => unknown_path(&mut v, other, RELATION_TYPE_UPDATABLE),
                }
            }
            next.normalise();
            next.validate(&mut v);
            v.into_result()?;
            next.version = current.version + 1;
            next.updated_at = now_micros();
            if !store::update_relation_type(txn, partner_id, &next, current.version).await? {
                return Err(changed_concurrently("relation type"));
            }
            Ok(next)
        })
    })
    .await?;
    Ok(Response::new(pb::UpdateRelationTypeResponse {
        relation_type: Some(relation_type_to_proto(&relation_type)),
    }))
}

pub(super) async fn delete_relation_type(
    api: &IdentityApi,
    request: Request<pb::DeleteRelationTypeRequest>,
) -> Result<Response<pb::DeleteRelationTypeResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(CATALOGUE_ROLES)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "DeleteRelationType", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let id = required_uuid(&mut v, "relation_type_id", &req.relation_type_id);
    v.into_result()?;
    idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            store::relation_type(txn, partner_id, id)
                .await?
                .ok_or_else(|| ApiError::NotFound("relation type".into()))?;
            if store::relation_type_in_use(txn, partner_id, id).await? {
                return Err(ApiError::precondition(
                    "RELATION_TYPE_IN_USE",
                    "customer accounts are related by this type; delete those relations first",
                ));
            }
            store::delete_relation_type(txn, partner_id, id).await?;
            Ok(())
        })
    })
    .await?;
    Ok(Response::new(pb::DeleteRelationTypeResponse {}))
}

// ---- customer relations ----

pub(super) fn relation_to_proto(r: &CustomerRelation) -> pb::CustomerRelation {
    pb::CustomerRelation {
        id: r.id.to_string(),
        relation_type_id: r.relation_type_id.to_string(),
        from_customer_id: r.from_customer_id.to_string(),
        to_customer_id: r.to_customer_id.to_string(),
        note: r.note.clone(),
        create_time: Some(to_timestamp(r.created_at)),
    }
}

pub(super) fn relation_changed(r: &CustomerRelation, deleted: bool) -> ev::CustomerRelationChanged {
    ev::CustomerRelationChanged {
        relation_id: r.id.to_string(),
        relation_type_id: r.relation_type_id.to_string(),
        from_customer_id: r.from_customer_id.to_string(),
        to_customer_id: r.to_customer_id.to_string(),
        deleted,
    }
}

/// A customer of the partner that can take part in a new relation.
pub(super) async fn relatable_customer(
    txn: &impl ConnectionTrait,
    customers: &Store,
    partner_id: Uuid,
    id: Uuid,
) -> Result<(), ApiError> {
    let customer = customers
        .customer(txn, partner_id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("customer".into()))?;
    match customer.state {
        CustomerState::Erased => Err(ApiError::precondition(
            "CUSTOMER_ERASED",
            format!("the data of customer {id} was erased"),
        )),
        CustomerState::Merged => Err(ApiError::precondition(
            "CUSTOMER_MERGED",
            format!("customer {id} was merged into another account"),
        )),
        CustomerState::Active | CustomerState::Blocked => Ok(()),
    }
}

pub(super) async fn create_customer_relation(
    api: &IdentityApi,
    request: Request<pb::CreateCustomerRelationRequest>,
) -> Result<Response<pb::CreateCustomerRelationResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(RELATION_ROLES)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(
        partner_id,
        "CreateCustomerRelation",
        &req.idempotency_key,
        &req,
    );
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let p = req.relation.unwrap_or_default();
    let relation = CustomerRelation {
        id: Uuid::now_v7(),
        relation_type_id: required_uuid(&mut v, "relation.relation_type_id", &p.relation_type_id),
        from_customer_id: required_uuid(&mut v, "relation.from_customer_id", &p.from_customer_id),
        to_customer_id: required_uuid(&mut v, "relation.to_customer_id", &p.to_customer_id),
        note: p.note.trim().to_owned(),
        created_at: now_micros(),
    };
    if v.is_empty() {
        relation.validate(&mut v);
    }
    v.into_result()?;
    let customers = api.store.clone();
    let relation: CustomerRelation = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            let relation_type = store::relation_type(txn, partner_id, relation.relation_type_id)
                .await?
                .ok_or_else(|| ApiError::NotFound("relation type".into()))?;
            for side in [relation.from_customer_id, relation.to_customer_id] {
                relatable_customer(txn, &customers, partner_id, side).await?;
            }
            if store::relation_exists(
                txn,
                partner_id,
                relation.relation_type_id,
                relation.from_customer_id,
                relation.to_customer_id,
            )
            .await?
            {
                return Err(ApiError::AlreadyExists(format!(
                    "{} relation between these customers",
                    relation_type.code
                )));
            }
            let max = relation_type.max_relations_per_customer;
            if max > 0 {
                store::lock_relation_type(txn, partner_id, relation_type.id).await?;
                for side in [relation.from_customer_id, relation.to_customer_id] {
                    let n = store::count_relations(txn, partner_id, relation_type.id, side).await?;
                    if n >= max as u64 {
                        return Err(ApiError::precondition(
                            "RELATION_LIMIT_REACHED",
                            format!(
                                "customer {side} already has {n} {} relations (at most {max})",
                                relation_type.code
                            ),
                        ));
                    }
                }
            }
            store::insert_relation(txn, partner_id, &relation).await?;
            events::enqueue(txn, Some(partner_id), &relation_changed(&relation, false)).await?;
            Ok(relation)
        })
    })
    .await?;
    Ok(Response::new(pb::CreateCustomerRelationResponse {
        relation: Some(relation_to_proto(&relation)),
    }))
}

pub(super) async fn list_customer_relations(
    api: &IdentityApi,
    request: Request<pb::ListCustomerRelationsRequest>,
) -> Result<Response<pb::ListCustomerRelationsResponse>, Status> {
    let partner_id = principal(&request)?.partner()?;
    let req = request.into_inner();
    let mut v = Violations::new();
    let limit = page_size(&mut v, req.page_size);
    let before = parse_page_token(&mut v, &req.page_token);
    let customer_id = required_uuid(&mut v, "customer_id", &req.customer_id);
    let relation_type_id = optional_uuid(&mut v, "relation_type_id", &req.relation_type_id);
    v.into_result()?;
    api.store
        .customer(&api.db, partner_id, customer_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("customer".into()))?;
    let relations = store::page_of_relations(
        &api.db,
        partner_id,
        customer_id,
        relation_type_id,
        before,
        limit,
    )
    .await?;
    Ok(Response::new(pb::ListCustomerRelationsResponse {
        next_page_token: next_page_token(relations.len(), limit, relations.last().map(|r| r.id)),
        relations: relations.iter().map(relation_to_proto).collect(),
    }))
}

pub(super) async fn delete_customer_relation(
    api: &IdentityApi,
    request: Request<pb::DeleteCustomerRelationRequest>,
) -> Result<Response<pb::DeleteCustomerRelationResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(RELATION_ROLES)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(
        partner_id,
        "DeleteCustomerRelation",
        &req.idempotency_key,
        &req,
    );
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let id = required_uuid(&mut v, "relation_id", &req.relation_id);
    v.into_result()?;
    idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            let relation = store::relation(txn, partner_id, id)
                .await?
                .ok_or_else(|| ApiError::NotFound("customer relation".into()))?;
            store::delete_relation(txn, partner_id, id).await?;
            events::enqueue(txn, Some(partner_id), &relation_changed(&relation, true)).await?;
            Ok(())
        })
    })
    .await?;
    Ok(Response::new(pb::DeleteCustomerRelationResponse {}))
}

//! gRPC adapter: authorize, convert and validate, call the domain and store, convert back.
mod accounts;
mod activity;
mod business_units;
mod cards;
mod consents;
mod customer_data;
mod import;
use std::time::Duration;

use loyalty_platform::{
    ApiError, Role, Violations,
    auth::{KeyAuthenticator, generate_key, hash_key, principal},
    cache::Cache,
    error::{check_idempotency_key, parse_uuid},
    events,
    idempotency::{self, IdempotencyScope},
    paging::{next_page_token, page_size, parse_page_token},
    time::to_timestamp,
};
use loyalty_proto::{
    events::v1 as ev,
    identity::v1::{self as pb, identity_service_server::IdentityService},
    types::v1::IdentifierType,
};
use sea_orm::DatabaseConnection;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    domain::{
        ApiKey, ApiKeyDraft, CreatedApiKey, Customer, CustomerProfile, CustomerState,
        CustomerWithIdentifiers, Gender, Identifier, IdentifierChange, IdentifierKind,
        IdentifierState, IdentifierValue, Partner, PartnerDraft, identifier_refusal_message,
        now_micros, resolution_key,
    },
    store::Store,
};

/// The stream ExportCustomer answers with.
pub type ExportCustomerStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<pb::ExportCustomerResponse, Status>> + Send + 'static>,
>;

/// How long a resolution is cached; every change to the identifier drops it at once.
const RESOLUTION_TTL: Duration = Duration::from_secs(300);

pub struct IdentityApi {
    store: Store,
    db: DatabaseConnection,
    cache: Cache,
    auth: KeyAuthenticator,
}

impl IdentityApi {
    pub fn new(store: Store, db: DatabaseConnection, cache: Cache, auth: KeyAuthenticator) -> Self {
        Self {
            store,
            db,
            cache,
            auth,
        }
    }

    /// Blocks, unblocks or removes an identifier, publishes the change and drops its cached
    /// resolution.
    async fn change_identifier(
        &self,
        partner_id: Uuid,
        scope: IdempotencyScope,
        identifier_id: &str,
        change: IdentifierChange,
        reason: String,
    ) -> Result<Identifier, ApiError> {
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &scope.key);
        let id = v.check(
            "identifier_id",
            parse_uuid("identifier_id", identifier_id).map_err(|_| "must be a UUID"),
        );
        if reason.chars().count() > 200 {
            v.add("reason", "must be at most 200 characters");
        }
        v.into_result()?;
        let id = id.unwrap_or_default();
        let store = self.store.clone();
        let changed: Identifier = idempotency::run(&self.db, scope, move |txn| {
            Box::pin(async move {
                let current = store
                    .identifier(txn, partner_id, id)
                    .await?
                    .ok_or_else(|| ApiError::NotFound("identifier".into()))?;
                let next = current
                    .change(change, &reason, chrono::Utc::now())
                    .map_err(|r| ApiError::precondition(r, identifier_refusal_message(r)))?;
                store.update_identifier(txn, partner_id, &next).await?;
                let customer_id = next.customer_id.to_string();
                let identifier_id = next.id.to_string();
                let identifier = Some(identifier_ref(&next));
                match change {
                    IdentifierChange::Block => {
                        let e = ev::IdentifierBlocked {
                            customer_id,
                            identifier_id,
                            identifier,
                            reason: next.block_reason.clone(),
                        };
                        events::enqueue(txn, Some(partner_id), &e).await?
                    }
                    IdentifierChange::Unblock => {
                        let e = ev::IdentifierUnblocked {
                            customer_id,
                            identifier_id,
                            identifier,
                        };
                        events::enqueue(txn, Some(partner_id), &e).await?
                    }
                    IdentifierChange::Remove => {
                        let e = ev::IdentifierRemoved {
                            customer_id,
                            identifier_id,
                            identifier,
                        };
                        events::enqueue(txn, Some(partner_id), &e).await?
                    }
                };
                Ok(next)
            })
        })
        .await?;
        self.cache
            .delete(&resolution_key(partner_id, &changed.value))
            .await;
        Ok(changed)
    }
}

fn identifier_ref(i: &Identifier) -> loyalty_proto::types::v1::IdentifierRef {
    loyalty_proto::types::v1::IdentifierRef {
        r#type: kind_to_proto(i.value.kind),
        value: i.value.value.clone(),
    }
}

fn kind_from_proto(v: i32) -> Option<IdentifierKind> {
    Some(match IdentifierType::try_from(v).ok()? {
        IdentifierType::Card => IdentifierKind::Card,
        IdentifierType::Ean => IdentifierKind::Ean,
        IdentifierType::Qr => IdentifierKind::Qr,
        IdentifierType::Email => IdentifierKind::Email,
        IdentifierType::Phone => IdentifierKind::Phone,
        IdentifierType::Cookie => IdentifierKind::Cookie,
        IdentifierType::ExternalId => IdentifierKind::ExternalId,
        IdentifierType::Unspecified => return None,
    })
}

fn kind_to_proto(k: IdentifierKind) -> i32 {
    (match k {
        IdentifierKind::Card => IdentifierType::Card,
        IdentifierKind::Ean => IdentifierType::Ean,
        IdentifierKind::Qr => IdentifierType::Qr,
        IdentifierKind::Email => IdentifierType::Email,
        IdentifierKind::Phone => IdentifierType::Phone,
        IdentifierKind::Cookie => IdentifierType::Cookie,
        IdentifierKind::ExternalId => IdentifierType::ExternalId,
    }) as i32
}

/// Parses an `IdentifierRef` reported under `field`.
fn parse_identifier(
    v: &mut Violations,
    field: &str,
    r: Option<&loyalty_proto::types::v1::IdentifierRef>,
) -> Option<IdentifierValue> {
    let Some(r) = r else {
        v.add(field, "is required");
        return None;
    };
    let Some(kind) = kind_from_proto(r.r#type) else {
        v.add(format!("{field}.type"), "must be a known identifier type");
        return None;
    };
    v.check(
        format!("{field}.value"),
        IdentifierValue::parse(kind, &r.value),
    )
}

fn partner_to_proto(p: &Partner) -> pb::Partner {
    pb::Partner {
        id: p.id.to_string(),
        display_name: p.display_name.clone(),
        default_currency_code: p.default_currency_code.clone(),
        create_time: Some(to_timestamp(p.created_at)),
        ..Default::default()
    }
}

fn api_key_to_proto(k: &ApiKey) -> pb::ApiKey {
    pb::ApiKey {
        id: k.id.to_string(),
        partner_id: k.partner_id.to_string(),
        display_name: k.display_name.clone(),
        roles: k.roles.iter().map(|r| r.to_proto()).collect(),
        prefix: k.prefix.clone(),
        create_time: Some(to_timestamp(k.created_at)),
        state: (if k.revoked_at.is_some() {
            pb::ApiKeyState::Revoked
        } else {
            pb::ApiKeyState::Active
        }) as i32,
        revoke_time: k.revoked_at.map(to_timestamp),
        ..Default::default()
    }
}

fn customer_to_proto(c: &Customer) -> pb::Customer {
    let p = &c.profile;
    pb::Customer {
        id: c.id.to_string(),
        partner_id: c.partner_id.to_string(),
        first_name: p.first_name.clone(),
        last_name: p.last_name.clone(),
        email: p.email.clone(),
        phone: p.phone.clone(),
        birth_date: p.birth_date.clone(),
        gender: (match p.gender.unwrap_or(Gender::Unspecified) {
            Gender::Unspecified => pb::Gender::Unspecified,
            Gender::Female => pb::Gender::Female,
            Gender::Male => pb::Gender::Male,
            Gender::Other => pb::Gender::Other,
        }) as i32,
        language_code: p.language_code.clone(),
        city: p.city.clone(),
        country_code: p.country_code.clone(),
        properties: p.properties.clone().into_iter().collect(),
        state: (match c.state {
            CustomerState::Active => pb::CustomerState::Active,
            CustomerState::Blocked => pb::CustomerState::Blocked,
            CustomerState::Erased => pb::CustomerState::Erased,
            CustomerState::Merged => pb::CustomerState::Merged,
        }) as i32,
        create_time: Some(to_timestamp(c.created_at)),
        update_time: Some(to_timestamp(c.updated_at)),
        etag: c.etag(),
        street: p.street.clone(),
        postal_code: p.postal_code.clone(),
        home_business_unit_id: p
            .home_business_unit_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        contact_source_ids: p.contact_source_ids.iter().map(Uuid::to_string).collect(),
        interest_ids: p.interest_ids.iter().map(Uuid::to_string).collect(),
        block_reason: c.block_reason.clone(),
        block_time: c.blocked_at.map(to_timestamp),
        erase_time: c.erased_at.map(to_timestamp),
        merged_into_customer_id: c.merged_into.map(|id| id.to_string()).unwrap_or_default(),
        referrer_customer_id: c.referrer.map(|id| id.to_string()).unwrap_or_default(),
    }
}

fn identifier_to_proto(i: &Identifier) -> pb::Identifier {
    pb::Identifier {
        id: i.id.to_string(),
        customer_id: i.customer_id.to_string(),
        r#type: kind_to_proto(i.value.kind),
        value: i.value.value.clone(),
        state: (match i.state {
            IdentifierState::Active => pb::IdentifierState::Active,
            IdentifierState::Blocked => pb::IdentifierState::Blocked,
            IdentifierState::Removed => pb::IdentifierState::Removed,
            IdentifierState::Lost => pb::IdentifierState::Lost,
            IdentifierState::Replaced => pb::IdentifierState::Replaced,
        }) as i32,
        block_reason: i.block_reason.clone(),
        create_time: Some(to_timestamp(i.created_at)),
        update_time: i.updated_at.map(to_timestamp),
    }
}

/// The profile a request carries; malformed ids are reported under `prefix`.
fn profile_from_proto(c: pb::Customer, v: &mut Violations, prefix: &str) -> CustomerProfile {
    let mut ids = |field: &str, values: &[String]| -> Vec<Uuid> {
        values
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                v.check(
                    format!("{prefix}.{field}[{i}]"),
                    Uuid::parse_str(s.trim()).map_err(|_| "must be a UUID"),
                )
            })
            .collect()
    };
    let contact_source_ids = ids("contact_source_ids", &c.contact_source_ids);
    let interest_ids = ids("interest_ids", &c.interest_ids);
    let home_business_unit_id = if c.home_business_unit_id.trim().is_empty() {
        None
    } else {
        v.check(
            format!("{prefix}.home_business_unit_id"),
            Uuid::parse_str(c.home_business_unit_id.trim()).map_err(|_| "must be a UUID"),
        )
    };
    CustomerProfile {
        first_name: c.first_name,
        last_name: c.last_name,
        email: c.email,
        phone: c.phone,
        birth_date: c.birth_date,
        gender: Some(match pb::Gender::try_from(c.gender).unwrap_or_default() {
            pb::Gender::Female => Gender::Female,
            pb::Gender::Male => Gender::Male,
            pb::Gender::Other => Gender::Other,
            pb::Gender::Unspecified => Gender::Unspecified,
        }),
        language_code: c.language_code,
        city: c.city,
        country_code: c.country_code,
        properties: c.properties.into_iter().collect(),
        street: c.street,
        postal_code: c.postal_code,
        home_business_unit_id,
        contact_source_ids,
        interest_ids,
    }
}

fn new_identifier(customer_id: Uuid, value: IdentifierValue) -> Identifier {
    Identifier {
        id: Uuid::now_v7(),
        customer_id,
        value,
        state: IdentifierState::Active,
        block_reason: String::new(),
        created_at: chrono::Utc::now(),
        updated_at: None,
    }
}

fn ids(list: &[Uuid]) -> Vec<String> {
    list.iter().map(Uuid::to_string).collect()
}

/// `CustomerCreated` for a new account: the profile segmentation projects (attributes,
/// properties, contact sources, interests) and the referrer.
fn customer_created_event(customer: &Customer) -> ev::CustomerCreated {
    let p = &customer.profile;
    ev::CustomerCreated {
        customer_id: customer.id.to_string(),
        attributes: p.attributes().into_iter().collect(),
        properties: p.properties.clone().into_iter().collect(),
        referrer_customer_id: customer.referrer.map(|r| r.to_string()).unwrap_or_default(),
        contact_source_ids: ids(&p.contact_source_ids),
        interest_ids: ids(&p.interest_ids),
    }
}

/// `CustomerUpdated` after any change of an account's profile: the whole profile as
/// segmentation projects it (it replaces what segmentation kept).
fn customer_updated_event(customer: &Customer) -> ev::CustomerUpdated {
    let p = &customer.profile;
    ev::CustomerUpdated {
        customer_id: customer.id.to_string(),
        attributes: p.attributes().into_iter().collect(),
        properties: p.properties.clone().into_iter().collect(),
        contact_source_ids: ids(&p.contact_source_ids),
        interest_ids: ids(&p.interest_ids),
    }
}

fn identifier_event(customer_id: Uuid, i: &Identifier) -> ev::IdentifierAdded {
    ev::IdentifierAdded {
        customer_id: customer_id.to_string(),
        identifier: Some(identifier_ref(i)),
    }
}

#[tonic::async_trait]
impl IdentityService for IdentityApi {
    #[tracing::instrument(skip_all)]
    async fn create_partner(
        &self,
        request: Request<pb::CreatePartnerRequest>,
    ) -> Result<Response<pb::CreatePartnerResponse>, Status> {
        principal(&request)?.require_platform_admin()?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(Uuid::nil(), "CreatePartner", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let p = req.partner.unwrap_or_default();
        let draft = PartnerDraft {
            display_name: p.display_name.trim().to_owned(),
            default_currency_code: p.default_currency_code,
        };
        draft.validate(&mut v, "partner");
        v.into_result()?;
        let store = self.store.clone();
        let partner: Partner = idempotency::run(&self.db, scope, move |txn| {
            Box::pin(async move {
                let partner = Partner {
                    id: Uuid::now_v7(),
                    display_name: draft.display_name,
                    default_currency_code: draft.default_currency_code,
                    created_at: chrono::Utc::now(),
                };
                store.insert_partner(txn, &partner).await?;
                Ok(partner)
            })
        })
        .await?;
        Ok(Response::new(pb::CreatePartnerResponse {
            partner: Some(partner_to_proto(&partner)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_partner(
        &self,
        request: Request<pb::GetPartnerRequest>,
    ) -> Result<Response<pb::GetPartnerResponse>, Status> {
        let caller = principal(&request)?;
        let id = parse_uuid("partner_id", &request.get_ref().partner_id)?;
        if !caller.platform_admin && caller.partner_id != Some(id) {
            return Err(ApiError::NotFound("partner".into()).into());
        }
        // The settings view: time zone, etag and update time too.
        let partner = crate::store::accounts::partner(&self.db, id)
            .await?
            .ok_or_else(|| ApiError::NotFound("partner".into()))?;
        Ok(Response::new(pb::GetPartnerResponse {
            partner: Some(accounts::partner_to_proto(&partner)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let partner_id = v.check(
            "partner_id",
            parse_uuid("partner_id", &req.partner_id).map_err(|_| "must be a UUID"),
        );
        let mut roles = Vec::new();
        for (i, r) in req.roles.iter().enumerate() {
            match Role::from_proto(*r) {
                Some(role) if !roles.contains(&role) => roles.push(role),
                Some(_) => {}
                None => v.add(format!("roles[{i}]"), "must be a known role"),
            }
        }
        let draft = ApiKeyDraft {
            partner_id: partner_id.unwrap_or_default(),
            display_name: req.display_name.trim().to_owned(),
            roles,
        };
        draft.validate(&mut v);
        v.into_result()?;
        // Only the platform admin or an admin of the same partner; others see no such partner.
        let allowed = caller.platform_admin
            || (caller.partner_id == Some(draft.partner_id) && caller.roles.contains(&Role::Admin));
        if !allowed {
            return Err(if caller.partner_id == Some(draft.partner_id) {
                ApiError::PermissionDenied("creating API keys needs the admin role".into())
            } else {
                ApiError::NotFound("partner".into())
            }
            .into());
        }
        if self.store.partner(draft.partner_id).await?.is_none() {
            return Err(ApiError::NotFound("partner".into()).into());
        }
        let scope =
            IdempotencyScope::new(draft.partner_id, "CreateApiKey", &req.idempotency_key, &req);
        let store = self.store.clone();
        let created: CreatedApiKey = idempotency::run(&self.db, scope, move |txn| {
            Box::pin(async move {
                let secret = generate_key();
                let api_key = ApiKey {
                    id: Uuid::now_v7(),
                    partner_id: draft.partner_id,
                    display_name: draft.display_name,
                    roles: draft.roles,
                    prefix: secret.chars().take(8).collect(),
                    created_at: chrono::Utc::now(),
                    revoked_at: None,
                };
                store
                    .insert_api_key(txn, &api_key, &hash_key(&secret))
                    .await?;
                Ok(CreatedApiKey { api_key, secret })
            })
        })
        .await?;
        Ok(Response::new(pb::CreateApiKeyResponse {
            api_key: Some(api_key_to_proto(&created.api_key)),
            secret: created.secret,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn authenticate_api_key(
        &self,
        request: Request<pb::AuthenticateApiKeyRequest>,
    ) -> Result<Response<pb::AuthenticateApiKeyResponse>, Status> {
        let p = principal(&request)?;
        Ok(Response::new(pb::AuthenticateApiKeyResponse {
            api_key_id: p.api_key_id.map(|i| i.to_string()).unwrap_or_default(),
            partner_id: p.partner_id.map(|i| i.to_string()).unwrap_or_default(),
            roles: p.roles.iter().map(|r| r.to_proto()).collect(),
            platform_admin: p.platform_admin,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn create_customer(
        &self,
        request: Request<pb::CreateCustomerRequest>,
    ) -> Result<Response<pb::CreateCustomerResponse>, Status> {
        let partner_id =
            principal(&request)?.partner_with_role(&[Role::Support, Role::Pos, Role::Marketing])?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "CreateCustomer", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let Some(customer) = req.customer else {
            return Err(ApiError::invalid("customer", "is required").into());
        };
        let referrer = match req.referrer_customer_id.as_str() {
            "" => None,
            s => v.check(
                "referrer_customer_id",
                Uuid::parse_str(s).map_err(|_| "must be a customer UUID"),
            ),
        };
        let refs = customer_data::RequestedRefs::of(&customer);
        let profile =
            profile_from_proto(customer, &mut v, "customer").normalise(&mut v, "customer");
        if req.identifiers.len() > 20 {
            v.add("identifiers", "at most 20 identifiers");
        }
        let values: Vec<IdentifierValue> = req
            .identifiers
            .iter()
            .enumerate()
            .filter_map(|(i, r)| parse_identifier(&mut v, &format!("identifiers[{i}]"), Some(r)))
            .collect();
        v.into_result()?;
        let card_format = cards::card_number_format_for(self, partner_id, &values).await?;
        let store = self.store.clone();
        let created: CustomerWithIdentifiers = idempotency::run(&self.db, scope, move |txn| {
            Box::pin(async move {
                let values = cards::apply_card_number_format(card_format.as_ref(), values, |i| {
                    format!("identifiers[{i}]")
                })?;
                let profile =
                    customer_data::check_customer_data(txn, partner_id, profile, None, &refs)
                        .await?;
                if let Some(referrer) = referrer {
                    // The new customer's id is assigned below, so it never refers itself.
                    customer_data::relatable_customer(txn, &store, partner_id, referrer)
                        .await
                        .map_err(|e| match e {
                            ApiError::NotFound(_) => {
                                ApiError::NotFound(format!("referrer customer {referrer}"))
                            }
                            e => e,
                        })?;
                }
                let now = now_micros();
                let customer = Customer {
                    referrer,
                    ..Customer::new(partner_id, profile, now)
                };
                store.insert_customer(txn, &customer).await?;
                events::enqueue(txn, Some(partner_id), &customer_created_event(&customer)).await?;
                let mut identifiers = Vec::new();
                for value in values {
                    let identifier = new_identifier(customer.id, value);
                    store
                        .insert_identifier(txn, partner_id, &identifier)
                        .await?;
                    events::enqueue(
                        txn,
                        Some(partner_id),
                        &identifier_event(customer.id, &identifier),
                    )
                    .await?;
                    identifiers.push(identifier);
                }
                Ok(CustomerWithIdentifiers {
                    customer,
                    identifiers,
                })
            })
        })
        .await?;
        Ok(Response::new(pb::CreateCustomerResponse {
            customer: Some(customer_to_proto(&created.customer)),
            identifiers: created
                .identifiers
                .iter()
                .map(identifier_to_proto)
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_customer(
        &self,
        request: Request<pb::GetCustomerRequest>,
    ) -> Result<Response<pb::GetCustomerResponse>, Status> {
        let partner_id = principal(&request)?.partner()?;
        let id = parse_uuid("customer_id", &request.get_ref().customer_id)?;
        let customer = self
            .store
            .customer(&self.db, partner_id, id)
            .await?
            .ok_or_else(|| ApiError::NotFound("customer".into()))?;
        let identifiers = self.store.identifiers_of(&self.db, partner_id, id).await?;
        Ok(Response::new(pb::GetCustomerResponse {
            customer: Some(customer_to_proto(&customer)),
            identifiers: identifiers.iter().map(identifier_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn add_identifier(
        &self,
        request: Request<pb::AddIdentifierRequest>,
    ) -> Result<Response<pb::AddIdentifierResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(&[Role::Support, Role::Pos])?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "AddIdentifier", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let customer_id = v.check(
            "customer_id",
            parse_uuid("customer_id", &req.customer_id).map_err(|_| "must be a UUID"),
        );
        let value = parse_identifier(&mut v, "identifier", req.identifier.as_ref());
        v.into_result()?;
        let (Some(customer_id), Some(value)) = (customer_id, value) else {
            return Err(ApiError::invalid("identifier", "is invalid").into());
        };
        let card_format =
            cards::card_number_format_for(self, partner_id, std::slice::from_ref(&value)).await?;
        let store = self.store.clone();
        let identifier: Identifier = idempotency::run(&self.db, scope, move |txn| {
            Box::pin(async move {
                let value = crate::domain::cards::apply_card_format(card_format.as_ref(), value)
                    .map_err(|e| ApiError::invalid("identifier.value", e))?;
                if store
                    .customer(txn, partner_id, customer_id)
                    .await?
                    .is_none()
                {
                    return Err(ApiError::NotFound("customer".into()));
                }
                let identifier = new_identifier(customer_id, value);
                store
                    .insert_identifier(txn, partner_id, &identifier)
                    .await?;
                events::enqueue(
                    txn,
                    Some(partner_id),
                    &identifier_event(customer_id, &identifier),
                )
                .await?;
                Ok(identifier)
            })
        })
        .await?;
        Ok(Response::new(pb::AddIdentifierResponse {
            identifier: Some(identifier_to_proto(&identifier)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn resolve_identifier(
        &self,
        request: Request<pb::ResolveIdentifierRequest>,
    ) -> Result<Response<pb::ResolveIdentifierResponse>, Status> {
        let partner_id = principal(&request)?.partner()?;
        let mut v = Violations::new();
        let value = parse_identifier(&mut v, "identifier", request.get_ref().identifier.as_ref());
        v.into_result()?;
        let Some(value) = value else {
            return Err(ApiError::invalid("identifier", "is invalid").into());
        };
        let resolution = cards::resolution(self, partner_id, &value)
            .await?
            .ok_or_else(|| ApiError::NotFound("identifier".into()))?;
        if let Some(retired) = &resolution.retired {
            return Err(cards::retired_refusal(retired).into());
        }
        if let Some(reason) = &resolution.blocked {
            return Err(ApiError::precondition(
                "IDENTIFIER_BLOCKED",
                if reason.is_empty() {
                    "the identifier is blocked".to_owned()
                } else {
                    format!("the identifier is blocked: {reason}")
                },
            )
            .into());
        }
        // The account's own state: a blocked account's identifiers are refused, a merged one's
        // lead to the survivor. Cached separately and rewritten by Block/Unblock/Merge/Erase.
        let mut resolution = resolution;
        match accounts::customer_state(self, partner_id, resolution.customer_id).await? {
            None | Some((CustomerState::Erased, _)) => {
                return Err(ApiError::NotFound("identifier".into()).into());
            }
            Some((CustomerState::Blocked, _)) => {
                return Err(ApiError::precondition(
                    "CUSTOMER_BLOCKED",
                    "the customer account is blocked",
                )
                .into());
            }
            Some((CustomerState::Merged, Some(survivor))) => resolution.customer_id = survivor,
            Some(_) => {}
        }
        Ok(Response::new(pb::ResolveIdentifierResponse {
            customer_id: resolution.customer_id.to_string(),
            identifier_id: resolution.identifier_id.to_string(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_identifiers(
        &self,
        request: Request<pb::ListIdentifiersRequest>,
    ) -> Result<Response<pb::ListIdentifiersResponse>, Status> {
        let partner_id =
            principal(&request)?.partner_with_role(&[Role::Support, Role::Pos, Role::Marketing])?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let customer_id = v.check(
            "customer_id",
            parse_uuid("customer_id", &req.customer_id).map_err(|_| "must be a UUID"),
        );
        let limit = page_size(&mut v, req.page_size);
        let after = parse_page_token(&mut v, &req.page_token);
        v.into_result()?;
        let customer_id = customer_id.unwrap_or_default();
        if self
            .store
            .customer(&self.db, partner_id, customer_id)
            .await?
            .is_none()
        {
            return Err(ApiError::NotFound("customer".into()).into());
        }
        let identifiers = self
            .store
            .list_identifiers(partner_id, customer_id, req.include_removed, after, limit)
            .await?;
        Ok(Response::new(pb::ListIdentifiersResponse {
            next_page_token: next_page_token(
                identifiers.len(),
                limit,
                identifiers.last().map(|i| i.id),
            ),
            identifiers: identifiers.iter().map(identifier_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn block_identifier(
        &self,
        request: Request<pb::BlockIdentifierRequest>,
    ) -> Result<Response<pb::BlockIdentifierResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(&[Role::Support, Role::Pos])?;
        let req = request.into_inner();
        let identifier = self
            .change_identifier(
                partner_id,
                IdempotencyScope::new(partner_id, "BlockIdentifier", &req.idempotency_key, &req),
                &req.identifier_id,
                IdentifierChange::Block,
                req.reason.clone(),
            )
            .await?;
        Ok(Response::new(pb::BlockIdentifierResponse {
            identifier: Some(identifier_to_proto(&identifier)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn unblock_identifier(
        &self,
        request: Request<pb::UnblockIdentifierRequest>,
    ) -> Result<Response<pb::UnblockIdentifierResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(&[Role::Support])?;
        let req = request.into_inner();
        let identifier = self
            .change_identifier(
                partner_id,
                IdempotencyScope::new(partner_id, "UnblockIdentifier", &req.idempotency_key, &req),
                &req.identifier_id,
                IdentifierChange::Unblock,
                String::new(),
            )
            .await?;
        Ok(Response::new(pb::UnblockIdentifierResponse {
            identifier: Some(identifier_to_proto(&identifier)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn remove_identifier(
        &self,
        request: Request<pb::RemoveIdentifierRequest>,
    ) -> Result<Response<pb::RemoveIdentifierResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(&[Role::Support])?;
        let req = request.into_inner();
        let identifier = self
            .change_identifier(
                partner_id,
                IdempotencyScope::new(partner_id, "RemoveIdentifier", &req.idempotency_key, &req),
                &req.identifier_id,
                IdentifierChange::Remove,
                String::new(),
            )
            .await?;
        Ok(Response::new(pb::RemoveIdentifierResponse {
            identifier: Some(identifier_to_proto(&identifier)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn create_business_unit(
        &self,
        request: Request<pb::CreateBusinessUnitRequest>,
    ) -> Result<Response<pb::CreateBusinessUnitResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(&[Role::Admin])?;
        let unit = self
            .create_business_unit_for(partner_id, request.into_inner())
            .await?;
        Ok(Response::new(pb::CreateBusinessUnitResponse {
            business_unit: Some(business_units::to_proto(&unit)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_business_unit(
        &self,
        request: Request<pb::GetBusinessUnitRequest>,
    ) -> Result<Response<pb::GetBusinessUnitResponse>, Status> {
        let partner_id = principal(&request)?.partner()?;
        let unit = self
            .get_business_unit_for(partner_id, &request.get_ref().business_unit_id)
            .await?;
        Ok(Response::new(pb::GetBusinessUnitResponse {
            business_unit: Some(business_units::to_proto(&unit)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_business_units(
        &self,
        request: Request<pb::ListBusinessUnitsRequest>,
    ) -> Result<Response<pb::ListBusinessUnitsResponse>, Status> {
        let partner_id = principal(&request)?.partner()?;
        let (units, next_page_token) = self
            .list_business_units_for(partner_id, request.get_ref())
            .await?;
        Ok(Response::new(pb::ListBusinessUnitsResponse {
            business_units: units.iter().map(business_units::to_proto).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_business_unit(
        &self,
        request: Request<pb::UpdateBusinessUnitRequest>,
    ) -> Result<Response<pb::UpdateBusinessUnitResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(&[Role::Admin])?;
        let unit = self
            .update_business_unit_for(partner_id, request.into_inner())
            .await?;
        Ok(Response::new(pb::UpdateBusinessUnitResponse {
            business_unit: Some(business_units::to_proto(&unit)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_business_unit(
        &self,
        request: Request<pb::DeleteBusinessUnitRequest>,
    ) -> Result<Response<pb::DeleteBusinessUnitResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(&[Role::Admin])?;
        self.delete_business_unit_for(partner_id, request.into_inner())
            .await?;
        Ok(Response::new(pb::DeleteBusinessUnitResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn update_customer(
        &self,
        request: Request<pb::UpdateCustomerRequest>,
    ) -> Result<Response<pb::UpdateCustomerResponse>, Status> {
        let partner_id =
            principal(&request)?.partner_with_role(&[Role::Support, Role::Pos, Role::Marketing])?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "UpdateCustomer", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let Some(incoming) = req.customer else {
            return Err(ApiError::invalid("customer", "is required").into());
        };
        let customer_id = v.check(
            "customer.id",
            parse_uuid("customer.id", &incoming.id).map_err(|_| "must be a UUID"),
        );
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let refs = customer_data::RequestedRefs::of(&incoming);
        let incoming = profile_from_proto(incoming, &mut v, "customer");
        v.into_result()?;
        let customer_id = customer_id.unwrap_or_default();
        let etag = req.etag;
        let store = self.store.clone();
        let updated: Customer = idempotency::run(&self.db, scope, move |txn| {
            Box::pin(async move {
                let current = store
                    .customer(txn, partner_id, customer_id)
                    .await?
                    .ok_or_else(|| ApiError::NotFound("customer".into()))?;
                if current.state == CustomerState::Erased {
                    return Err(ApiError::precondition(
                        "CUSTOMER_ERASED",
                        "the customer's data was erased",
                    ));
                }
                loyalty_platform::error::check_etag(&etag, &current.etag(), "customer")?;
                let mut v = Violations::new();
                let profile = current
                    .profile
                    .with_updates(&incoming, &paths, &mut v)
                    .normalise(&mut v, "customer");
                v.into_result()?;
                let profile = customer_data::check_customer_data(
                    txn,
                    partner_id,
                    profile,
                    Some(&current.profile),
                    &refs,
                )
                .await?;
                let mut next = current.clone();
                next.profile = profile;
                next.updated_at = now_micros();
                if !store
                    .update_customer(txn, &next, current.updated_at)
                    .await?
                {
                    return Err(ApiError::precondition(
                        "ETAG_MISMATCH",
                        "the customer changed concurrently",
                    ));
                }
                events::enqueue(txn, Some(partner_id), &customer_updated_event(&next)).await?;
                Ok(next)
            })
        })
        .await?;
        Ok(Response::new(pb::UpdateCustomerResponse {
            customer: Some(customer_to_proto(&updated)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let limit = page_size(&mut v, req.page_size);
        let after = parse_page_token(&mut v, &req.page_token);
        let partner_id = if caller.platform_admin {
            v.check(
                "partner_id",
                parse_uuid("partner_id", &req.partner_id).map_err(|_| "must be a UUID"),
            )
        } else {
            let own = caller.partner_with_role(&[Role::Admin])?;
            if !req.partner_id.is_empty() && req.partner_id != own.to_string() {
                return Err(ApiError::NotFound("partner".into()).into());
            }
            Some(own)
        };
        v.into_result()?;
        let partner_id = partner_id.unwrap_or_default();
        if self.store.partner(partner_id).await?.is_none() {
            return Err(ApiError::NotFound("partner".into()).into());
        }
        let keys = self
            .store
            .api_keys(partner_id, req.include_revoked, after, limit)
            .await?;
        Ok(Response::new(pb::ListApiKeysResponse {
            next_page_token: next_page_token(keys.len(), limit, keys.last().map(|k| k.id)),
            api_keys: keys.iter().map(api_key_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let caller = principal(&request)?;
        // The platform admin may revoke any key; a partner admin only its partner's.
        let scope_partner = if caller.platform_admin {
            None
        } else {
            Some(caller.partner_with_role(&[Role::Admin])?)
        };
        let req = request.into_inner();
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let id = v.check(
            "api_key_id",
            parse_uuid("api_key_id", &req.api_key_id).map_err(|_| "must be a UUID"),
        );
        v.into_result()?;
        let id = id.unwrap_or_default();
        let key = self
            .store
            .api_key(&self.db, scope_partner, id)
            .await?
            .ok_or_else(|| ApiError::NotFound("API key".into()))?;
        let scope =
            IdempotencyScope::new(key.partner_id, "RevokeApiKey", &req.idempotency_key, &req);
        let store = self.store.clone();
        let revoked: ApiKey = idempotency::run(&self.db, scope, move |txn| {
            Box::pin(async move {
                let current = store
                    .api_key(txn, Some(key.partner_id), id)
                    .await?
                    .ok_or_else(|| ApiError::NotFound("API key".into()))?;
                if current.revoked_at.is_some() {
                    return Ok(current);
                }
                if current.roles.contains(&Role::Admin)
                    && store
                        .other_active_admin_keys(txn, current.partner_id, id)
                        .await?
                        == 0
                {
                    return Err(ApiError::precondition(
                        "LAST_ADMIN_KEY",
                        "this is the partner's only active admin key; create another first",
                    ));
                }
                let now = now_micros();
                store.revoke_api_key(txn, id, now).await?;
                events::enqueue(
                    txn,
                    Some(current.partner_id),
                    &ev::ApiKeyRevoked {
                        api_key_id: id.to_string(),
                    },
                )
                .await?;
                Ok(ApiKey {
                    revoked_at: Some(now),
                    ..current
                })
            })
        })
        .await?;
        self.auth.forget_key(revoked.id);
        Ok(Response::new(pb::RevokeApiKeyResponse {
            api_key: Some(api_key_to_proto(&revoked)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn create_contact_source(
        &self,
        request: Request<pb::CreateContactSourceRequest>,
    ) -> Result<Response<pb::CreateContactSourceResponse>, Status> {
        customer_data::create_contact_source(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_contact_sources(
        &self,
        request: Request<pb::ListContactSourcesRequest>,
    ) -> Result<Response<pb::ListContactSourcesResponse>, Status> {
        customer_data::list_contact_sources(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn update_contact_source(
        &self,
        request: Request<pb::UpdateContactSourceRequest>,
    ) -> Result<Response<pb::UpdateContactSourceResponse>, Status> {
        customer_data::update_contact_source(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn delete_contact_source(
        &self,
        request: Request<pb::DeleteContactSourceRequest>,
    ) -> Result<Response<pb::DeleteContactSourceResponse>, Status> {
        customer_data::delete_contact_source(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn create_interest(
        &self,
        request: Request<pb::CreateInterestRequest>,
    ) -> Result<Response<pb::CreateInterestResponse>, Status> {
        customer_data::create_interest(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_interests(
        &self,
        request: Request<pb::ListInterestsRequest>,
    ) -> Result<Response<pb::ListInterestsResponse>, Status> {
        customer_data::list_interests(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn update_interest(
        &self,
        request: Request<pb::UpdateInterestRequest>,
    ) -> Result<Response<pb::UpdateInterestResponse>, Status> {
        customer_data::update_interest(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn delete_interest(
        &self,
        request: Request<pb::DeleteInterestRequest>,
    ) -> Result<Response<pb::DeleteInterestResponse>, Status> {
        customer_data::delete_interest(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn create_customer_property_definition(
        &self,
        request: Request<pb::CreateCustomerPropertyDefinitionRequest>,
    ) -> Result<Response<pb::CreateCustomerPropertyDefinitionResponse>, Status> {
        customer_data::create_customer_property_definition(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_customer_property_definitions(
        &self,
        request: Request<pb::ListCustomerPropertyDefinitionsRequest>,
    ) -> Result<Response<pb::ListCustomerPropertyDefinitionsResponse>, Status> {
        customer_data::list_customer_property_definitions(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn update_customer_property_definition(
        &self,
        request: Request<pb::UpdateCustomerPropertyDefinitionRequest>,
    ) -> Result<Response<pb::UpdateCustomerPropertyDefinitionResponse>, Status> {
        customer_data::update_customer_property_definition(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn delete_customer_property_definition(
        &self,
        request: Request<pb::DeleteCustomerPropertyDefinitionRequest>,
    ) -> Result<Response<pb::DeleteCustomerPropertyDefinitionResponse>, Status> {
        customer_data::delete_customer_property_definition(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn create_relation_type(
        &self,
        request: Request<pb::CreateRelationTypeRequest>,
    ) -> Result<Response<pb::CreateRelationTypeResponse>, Status> {
        customer_data::create_relation_type(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_relation_types(
        &self,
        request: Request<pb::ListRelationTypesRequest>,
    ) -> Result<Response<pb::ListRelationTypesResponse>, Status> {
        customer_data::list_relation_types(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn update_relation_type(
        &self,
        request: Request<pb::UpdateRelationTypeRequest>,
    ) -> Result<Response<pb::UpdateRelationTypeResponse>, Status> {
        customer_data::update_relation_type(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn delete_relation_type(
        &self,
        request: Request<pb::DeleteRelationTypeRequest>,
    ) -> Result<Response<pb::DeleteRelationTypeResponse>, Status> {
        customer_data::delete_relation_type(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn create_customer_relation(
        &self,
        request: Request<pb::CreateCustomerRelationRequest>,
    ) -> Result<Response<pb::CreateCustomerRelationResponse>, Status> {
        customer_data::create_customer_relation(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_customer_relations(
        &self,
        request: Request<pb::ListCustomerRelationsRequest>,
    ) -> Result<Response<pb::ListCustomerRelationsResponse>, Status> {
        customer_data::list_customer_relations(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn delete_customer_relation(
        &self,
        request: Request<pb::DeleteCustomerRelationRequest>,
    ) -> Result<Response<pb::DeleteCustomerRelationResponse>, Status> {
        customer_data::delete_customer_relation(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn create_consent_type(
        &self,
        request: Request<pb::CreateConsentTypeRequest>,
    ) -> Result<Response<pb::CreateConsentTypeResponse>, Status> {
        consents::create_consent_type(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_consent_types(
        &self,
        request: Request<pb::ListConsentTypesRequest>,
    ) -> Result<Response<pb::ListConsentTypesResponse>, Status> {
        consents::list_consent_types(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn update_consent_type(
        &self,
        request: Request<pb::UpdateConsentTypeRequest>,
    ) -> Result<Response<pb::UpdateConsentTypeResponse>, Status> {
        consents::update_consent_type(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn grant_consent(
        &self,
        request: Request<pb::GrantConsentRequest>,
    ) -> Result<Response<pb::GrantConsentResponse>, Status> {
        consents::grant_consent(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn withdraw_consent(
        &self,
        request: Request<pb::WithdrawConsentRequest>,
    ) -> Result<Response<pb::WithdrawConsentResponse>, Status> {
        consents::withdraw_consent(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_customer_consents(
        &self,
        request: Request<pb::ListCustomerConsentsRequest>,
    ) -> Result<Response<pb::ListCustomerConsentsResponse>, Status> {
        consents::list_customer_consents(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_consent_history(
        &self,
        request: Request<pb::ListConsentHistoryRequest>,
    ) -> Result<Response<pb::ListConsentHistoryResponse>, Status> {
        consents::list_consent_history(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn get_email_bounce_state(
        &self,
        request: Request<pb::GetEmailBounceStateRequest>,
    ) -> Result<Response<pb::GetEmailBounceStateResponse>, Status> {
        consents::get_email_bounce_state(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn record_email_bounce(
        &self,
        request: Request<pb::RecordEmailBounceRequest>,
    ) -> Result<Response<pb::RecordEmailBounceResponse>, Status> {
        consents::record_email_bounce(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn reset_email_bounce_state(
        &self,
        request: Request<pb::ResetEmailBounceStateRequest>,
    ) -> Result<Response<pb::ResetEmailBounceStateResponse>, Status> {
        consents::reset_email_bounce_state(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn check_contactability(
        &self,
        request: Request<pb::CheckContactabilityRequest>,
    ) -> Result<Response<pb::CheckContactabilityResponse>, Status> {
        consents::check_contactability(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn create_event_type(
        &self,
        request: Request<pb::CreateEventTypeRequest>,
    ) -> Result<Response<pb::CreateEventTypeResponse>, Status> {
        activity::create_event_type(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn get_event_type(
        &self,
        request: Request<pb::GetEventTypeRequest>,
    ) -> Result<Response<pb::GetEventTypeResponse>, Status> {
        activity::get_event_type(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_event_types(
        &self,
        request: Request<pb::ListEventTypesRequest>,
    ) -> Result<Response<pb::ListEventTypesResponse>, Status> {
        activity::list_event_types(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn update_event_type(
        &self,
        request: Request<pb::UpdateEventTypeRequest>,
    ) -> Result<Response<pb::UpdateEventTypeResponse>, Status> {
        activity::update_event_type(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn track_event(
        &self,
        request: Request<pb::TrackEventRequest>,
    ) -> Result<Response<pb::TrackEventResponse>, Status> {
        activity::track_event(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn track_events(
        &self,
        request: Request<tonic::Streaming<pb::TrackEventsRequest>>,
    ) -> Result<Response<pb::TrackEventsResponse>, Status> {
        activity::track_events(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_customer_events(
        &self,
        request: Request<pb::ListCustomerEventsRequest>,
    ) -> Result<Response<pb::ListCustomerEventsResponse>, Status> {
        activity::list_customer_events(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_partners(
        &self,
        request: Request<pb::ListPartnersRequest>,
    ) -> Result<Response<pb::ListPartnersResponse>, Status> {
        accounts::list_partners(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn update_partner(
        &self,
        request: Request<pb::UpdatePartnerRequest>,
    ) -> Result<Response<pb::UpdatePartnerResponse>, Status> {
        accounts::update_partner(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_customers(
        &self,
        request: Request<pb::ListCustomersRequest>,
    ) -> Result<Response<pb::ListCustomersResponse>, Status> {
        accounts::list_customers(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn search_customers(
        &self,
        request: Request<pb::SearchCustomersRequest>,
    ) -> Result<Response<pb::SearchCustomersResponse>, Status> {
        accounts::search_customers(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn block_customer(
        &self,
        request: Request<pb::BlockCustomerRequest>,
    ) -> Result<Response<pb::BlockCustomerResponse>, Status> {
        accounts::block_customer(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn unblock_customer(
        &self,
        request: Request<pb::UnblockCustomerRequest>,
    ) -> Result<Response<pb::UnblockCustomerResponse>, Status> {
        accounts::unblock_customer(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_account_history(
        &self,
        request: Request<pb::ListAccountHistoryRequest>,
    ) -> Result<Response<pb::ListAccountHistoryResponse>, Status> {
        accounts::list_account_history(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn merge_customers(
        &self,
        request: Request<pb::MergeCustomersRequest>,
    ) -> Result<Response<pb::MergeCustomersResponse>, Status> {
        accounts::merge_customers(self, request).await
    }
    type ExportCustomerStream = ExportCustomerStream;

    #[tracing::instrument(skip_all)]
    async fn export_customer(
        &self,
        request: Request<pb::ExportCustomerRequest>,
    ) -> Result<Response<Self::ExportCustomerStream>, Status> {
        accounts::export_customer(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn erase_customer(
        &self,
        request: Request<pb::EraseCustomerRequest>,
    ) -> Result<Response<pb::EraseCustomerResponse>, Status> {
        accounts::erase_customer(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn replace_card(
        &self,
        request: Request<pb::ReplaceCardRequest>,
    ) -> Result<Response<pb::ReplaceCardResponse>, Status> {
        cards::replace_card(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn get_card_number_format(
        &self,
        request: Request<pb::GetCardNumberFormatRequest>,
    ) -> Result<Response<pb::GetCardNumberFormatResponse>, Status> {
        cards::get_card_number_format(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn update_card_number_format(
        &self,
        request: Request<pb::UpdateCardNumberFormatRequest>,
    ) -> Result<Response<pb::UpdateCardNumberFormatResponse>, Status> {
        cards::update_card_number_format(self, request).await
    }

    #[tracing::instrument(skip_all)]
    async fn import_customers(
        &self,
        request: Request<tonic::Streaming<pb::ImportCustomersRequest>>,
    ) -> Result<Response<pb::ImportCustomersResponse>, Status> {
        import::import_customers(self, request).await
    }
}

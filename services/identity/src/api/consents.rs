//! Consent types, customers' consents with their history, and email bounce state.
use chrono::{DateTime, Utc};
use loyalty_platform::{
    ApiError, Role, Violations,
    auth::principal,
    error::{check_idempotency_key, parse_uuid},
    events,
    idempotency::{self, IdempotencyScope},
    paging::page_size,
    time::{from_timestamp, to_timestamp},
};
use loyalty_proto::{identity::v1 as pb, types::v1 as types};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::IdentityApi;
use crate::{
    domain::{
        Customer, CustomerState,
        consents::{
            BounceKind, BounceState, Channel, Consent, ConsentState, ConsentType, Contact,
            ContactPurpose, ContactRefusal, Decision, DecisionError, DecisionRequest, HistoryEntry,
            Purpose, UPDATABLE, check_source_and_note, contactability, decide, parse_contact_batch,
        },
        now_micros,
    },
    store::{
        Store,
        consents::{self as store, channel_to_proto},
    },
};

/// Roles that may record customers' consent decisions.
const DECIDING_ROLES: &[Role] = &[Role::Support, Role::Pos, Role::Marketing, Role::Service];

fn purpose_from_proto(v: i32) -> Option<Purpose> {
    use pb::ConsentPurpose as P;
    Some(match P::try_from(v).ok()? {
        P::DataProcessing => Purpose::DataProcessing,
        P::Marketing => Purpose::Marketing,
        P::Profiling => Purpose::Profiling,
        P::Other => Purpose::Other,
        P::Unspecified => return None,
    })
}

fn purpose_to_proto(p: Purpose) -> i32 {
    use pb::ConsentPurpose as P;
    (match p {
        Purpose::DataProcessing => P::DataProcessing,
        Purpose::Marketing => P::Marketing,
        Purpose::Profiling => P::Profiling,
        Purpose::Other => P::Other,
    }) as i32
}

fn channel_from_proto(v: i32) -> Option<Channel> {
    use types::CommunicationChannel as C;
    Some(match C::try_from(v).ok()? {
        C::Email => Channel::Email,
        C::Sms => Channel::Sms,
        C::Push => Channel::Push,
        C::Viber => Channel::Viber,
        C::Unspecified => return None,
    })
}

fn state_to_proto(s: ConsentState) -> i32 {
    use pb::ConsentState as S;
    (match s {
        ConsentState::Granted => S::Granted,
        ConsentState::Withdrawn => S::Withdrawn,
        ConsentState::Expired => S::Expired,
        ConsentState::NotGiven => S::NotGiven,
    }) as i32
}

pub(super) fn consent_type_to_proto(t: &ConsentType) -> pb::ConsentType {
    pb::ConsentType {
        id: t.id.to_string(),
        code: t.code.clone(),
        display_name: t.display_name.clone(),
        purpose: purpose_to_proto(t.purpose),
        channels: t.channels.iter().map(|c| channel_to_proto(*c)).collect(),
        text: t.text.clone(),
        version: t.version,
        validity_days: t.validity_days,
        active: t.active,
        etag: t.etag(),
        create_time: Some(to_timestamp(t.created_at)),
        update_time: Some(to_timestamp(t.updated_at)),
    }
}

/// The consent of `customer_id` on `t` as seen at `now` (NOT_GIVEN without a decision).
pub(super) fn consent_to_proto(
    customer_id: Uuid,
    t: &ConsentType,
    c: Option<&Consent>,
    now: DateTime<Utc>,
) -> pb::Consent {
    pb::Consent {
        customer_id: customer_id.to_string(),
        consent_type_id: t.id.to_string(),
        consent_type_code: t.code.clone(),
        state: state_to_proto(c.map_or(ConsentState::NotGiven, |c| c.state_at(now))),
        text_version: c.map_or(0, |c| c.text_version),
        source: c.map(|c| c.source.clone()).unwrap_or_default(),
        change_time: c.map(|c| to_timestamp(c.changed_at)),
        expire_time: c.and_then(|c| c.expires_at).map(to_timestamp),
    }
}

pub(super) fn history_to_proto(e: &HistoryEntry) -> pb::ConsentHistoryEntry {
    pb::ConsentHistoryEntry {
        id: e.id.to_string(),
        customer_id: e.customer_id.to_string(),
        consent_type_id: e.consent_type_id.to_string(),
        previous_state: state_to_proto(e.previous_state),
        new_state: state_to_proto(e.new_state),
        text_version: e.text_version,
        source: e.source.clone(),
        api_key_id: e.api_key_id.map(|i| i.to_string()).unwrap_or_default(),
        note: e.note.clone(),
        change_time: Some(to_timestamp(e.changed_at)),
    }
}

pub(super) fn bounce_to_proto(s: &BounceState) -> pb::EmailBounceState {
    pb::EmailBounceState {
        customer_id: s.customer_id.to_string(),
        email: s.email.clone(),
        hard_bounced: s.hard_bounced,
        soft_bounce_count: s.soft_bounce_count,
        excluded: s.excluded(),
        last_bounce_time: s.last_bounce_at.map(to_timestamp),
        reset_time: s.reset_at.map(to_timestamp),
    }
}

pub(super) use loyalty_platform::paging::{
    code_page, next_code_token as code_token, next_time_token as time_token, parse_code_token,
    parse_time_token,
};

/// An optional timestamp field; `None` when unset, a violation when out of range.
pub(super) fn optional_time(
    v: &mut Violations,
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Option<DateTime<Utc>> {
    let t = t?;
    let parsed = from_timestamp(t);
    if parsed.is_none() {
        v.add(field, "is not a valid timestamp");
    }
    parsed
}

/// A customer of the partner; NOT_FOUND otherwise.
pub(super) async fn customer_of(
    store: &Store,
    conn: &impl sea_orm::ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<Customer, ApiError> {
    store
        .customer(conn, partner_id, customer_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("customer".into()))
}

fn channels_from(v: &mut Violations, field: &str, raw: &[i32]) -> Vec<Channel> {
    let mut out = Vec::new();
    for (i, c) in raw.iter().enumerate() {
        match channel_from_proto(*c) {
            Some(c) if !out.contains(&c) => out.push(c),
            Some(_) => {}
            None => v.add(
                format!("{field}[{i}]"),
                "must be a known communication channel",
            ),
        }
    }
    out
}

pub(super) async fn create_consent_type(
    api: &IdentityApi,
    request: Request<pb::CreateConsentTypeRequest>,
) -> Result<Response<pb::CreateConsentTypeResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(&[Role::Marketing])?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "CreateConsentType", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let p = req.consent_type.unwrap_or_default();
    let purpose = purpose_from_proto(p.purpose);
    if purpose.is_none() {
        v.add("consent_type.purpose", "is required");
    }
    let now = now_micros();
    let t = ConsentType {
        id: Uuid::now_v7(),
        code: p.code.trim().to_owned(),
        display_name: p.display_name.trim().to_owned(),
        // A missing purpose is reported above; Marketing only keeps `validate` from also
        // blaming the channels for it.
        purpose: purpose.unwrap_or(Purpose::Marketing),
        channels: channels_from(&mut v, "consent_type.channels", &p.channels),
        text: p.text,
        version: 1,
        validity_days: p.validity_days,
        // A new type is offered at once; UpdateConsentType deactivates it.
        active: true,
        revision: 1,
        created_at: now,
        updated_at: now,
    };
    t.validate(&mut v);
    v.into_result()?;
    let created: ConsentType = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            store::insert_type(txn, partner_id, &t).await?;
            Ok(t)
        })
    })
    .await?;
    Ok(Response::new(pb::CreateConsentTypeResponse {
        consent_type: Some(consent_type_to_proto(&created)),
    }))
}

pub(super) async fn list_consent_types(
    api: &IdentityApi,
    request: Request<pb::ListConsentTypesRequest>,
) -> Result<Response<pb::ListConsentTypesResponse>, Status> {
    let partner_id = principal(&request)?.partner()?;
    let req = request.into_inner();
    let (limit, after) = code_page(req.page_size, &req.page_token)?;
    let found = store::list_types(
        &api.db,
        partner_id,
        req.include_inactive,
        after.as_deref(),
        limit,
    )
    .await?;
    Ok(Response::new(pb::ListConsentTypesResponse {
        next_page_token: code_token(found.len(), limit, found.last().map(|t| t.code.as_str())),
        consent_types: found.iter().map(consent_type_to_proto).collect(),
    }))
}

pub(super) async fn update_consent_type(
    api: &IdentityApi,
    request: Request<pb::UpdateConsentTypeRequest>,
) -> Result<Response<pb::UpdateConsentTypeResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(&[Role::Marketing])?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "UpdateConsentType", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let p = req.consent_type.unwrap_or_default();
    let paths = loyalty_platform::error::mask_paths(&mut v, req.update_mask, UPDATABLE);
    if p.id.is_empty() {
        v.add("consent_type.id", "is required");
    }
    let channels = channels_from(&mut v, "consent_type.channels", &p.channels);
    v.into_result()?;
    let etag = req.etag;
    let updated: ConsentType = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            let current = store::get_type(txn, partner_id, &p.id)
                .await?
                .ok_or_else(|| ApiError::NotFound("consent type".into()))?;
            loyalty_platform::error::check_etag(&etag, &current.etag(), "consent type")?;
            let mut next = current.clone();
            for path in &paths {
                match path.as_str() {
                    "display_name" => next.display_name = p.display_name.trim().to_owned(),
                    "channels" => next.channels = channels.clone(),
                    "text" => next.set_text(p.text.clone()),
                    "validity_days" => next.validity_days = p.validity_days,
                    "active" => next.active = p.active,
                    _ => {}
                }
            }
            let mut v = Violations::new();
            next.validate(&mut v);
            v.into_result()?;
            next.revision = current.revision + 1;
            next.updated_at = now_micros();
            if !store::update_type(txn, partner_id, &next, current.revision).await? {
                return Err(ApiError::precondition(
                    "ETAG_MISMATCH",
                    "the consent type changed concurrently",
                ));
            }
            Ok(next)
        })
    })
    .await?;
    Ok(Response::new(pb::UpdateConsentTypeResponse {
        consent_type: Some(consent_type_to_proto(&updated)),
    }))
}

/// Validated input of GrantConsent / WithdrawConsent.
struct DecisionInput {
    customer_id: Uuid,
    consent_type: String,
    request: DecisionRequest,
}

#[allow(clippy::too_many_arguments)]
fn decision_input(
    v: &mut Violations,
    decision: Decision,
    customer_id: &str,
    consent_type_id: &str,
    text_version: i32,
    source: &str,
    at: Option<&prost_types::Timestamp>,
    at_field: &str,
    note: &str,
    api_key_id: Option<Uuid>,
) -> DecisionInput {
    let customer_id = v
        .check(
            "customer_id",
            parse_uuid("customer_id", customer_id).map_err(|_| "must be a UUID"),
        )
        .unwrap_or_default();
    if consent_type_id.is_empty() {
        v.add("consent_type_id", "is required");
    }
    if text_version < 0 {
        v.add(
            "text_version",
            "must be 0 (current) or a version of the text",
        );
    }
    check_source_and_note(v, source, note);
    let now = Utc::now();
    let at = optional_time(v, at_field, at).unwrap_or(now);
    // A minute of clock skew between the caller and us is not "the future".
    if at > now + chrono::Duration::minutes(1) {
        v.add(at_field, "must not be in the future");
    }
    DecisionInput {
        customer_id,
        consent_type: consent_type_id.to_owned(),
        request: DecisionRequest {
            customer_id,
            decision,
            text_version,
            source: source.trim().to_owned(),
            at: DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at),
            note: note.to_owned(),
            api_key_id,
        },
    }
}

/// Records a decision: history, current consent and ConsentChanged in one transaction.
async fn record_decision(
    api: &IdentityApi,
    partner_id: Uuid,
    scope: IdempotencyScope,
    input: DecisionInput,
) -> Result<pb::Consent, ApiError> {
    let store = api.store.clone();
    let customer_id = input.customer_id;
    let (t, consent): (ConsentType, Option<Consent>) =
        idempotency::run(&api.db, scope, move |txn| {
            Box::pin(async move {
                let customer = customer_of(&store, txn, partner_id, input.customer_id).await?;
                let t = store::get_type(txn, partner_id, &input.consent_type)
                    .await?
                    .ok_or_else(|| ApiError::NotFound("consent type".into()))?;
                let is_grant = input.request.decision == Decision::Granted;
                if is_grant && customer.state == CustomerState::Erased {
                    return Err(ApiError::precondition(
                        "CUSTOMER_ERASED",
                        "the customer's data was erased",
                    ));
                }
                let current = store::consent(txn, partner_id, customer.id, t.id).await?;
                let outcome = decide(&t, current.as_ref(), &input.request, Utc::now()).map_err(
                    |e| match e {
                        DecisionError::Invalid(field, msg) => ApiError::invalid(field, msg),
                        DecisionError::Precondition(reason, msg) => {
                            ApiError::precondition(reason, msg)
                        }
                    },
                )?;
                let after = store::record_outcome(txn, partner_id, &t, current, outcome).await?;
                Ok((t, after))
            })
        })
        .await?;
    Ok(consent_to_proto(
        customer_id,
        &t,
        consent.as_ref(),
        Utc::now(),
    ))
}

pub(super) async fn grant_consent(
    api: &IdentityApi,
    request: Request<pb::GrantConsentRequest>,
) -> Result<Response<pb::GrantConsentResponse>, Status> {
    let caller = principal(&request)?;
    let partner_id = caller.partner_with_role(DECIDING_ROLES)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "GrantConsent", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let input = decision_input(
        &mut v,
        Decision::Granted,
        &req.customer_id,
        &req.consent_type_id,
        req.text_version,
        &req.source,
        req.grant_time.as_ref(),
        "grant_time",
        &req.note,
        caller.api_key_id,
    );
    v.into_result()?;
    let consent = record_decision(api, partner_id, scope, input).await?;
    Ok(Response::new(pb::GrantConsentResponse {
        consent: Some(consent),
    }))
}

pub(super) async fn withdraw_consent(
    api: &IdentityApi,
    request: Request<pb::WithdrawConsentRequest>,
) -> Result<Response<pb::WithdrawConsentResponse>, Status> {
    let caller = principal(&request)?;
    let partner_id = caller.partner_with_role(DECIDING_ROLES)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "WithdrawConsent", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let input = decision_input(
        &mut v,
        Decision::Withdrawn,
        &req.customer_id,
        &req.consent_type_id,
        0,
        &req.source,
        req.withdraw_time.as_ref(),
        "withdraw_time",
        &req.note,
        caller.api_key_id,
    );
    v.into_result()?;
    let consent = record_decision(api, partner_id, scope, input).await?;
    Ok(Response::new(pb::WithdrawConsentResponse {
        consent: Some(consent),
    }))
}

pub(super) async fn list_customer_consents(
    api: &IdentityApi,
    request: Request<pb::ListCustomerConsentsRequest>,
) -> Result<Response<pb::ListCustomerConsentsResponse>, Status> {
    let partner_id = principal(&request)?.partner()?;
    let req = request.into_inner();
    let mut v = Violations::new();
    let customer_id = v.check(
        "customer_id",
        parse_uuid("customer_id", &req.customer_id).map_err(|_| "must be a UUID"),
    );
    let limit = page_size(&mut v, req.page_size);
    let after = parse_code_token(&mut v, &req.page_token);
    v.into_result()?;
    let customer = customer_of(
        &api.store,
        &api.db,
        partner_id,
        customer_id.unwrap_or_default(),
    )
    .await?;
    let types = store::list_types(&api.db, partner_id, false, after.as_deref(), limit).await?;
    let consents = store::consents_of(
        &api.db,
        partner_id,
        customer.id,
        Some(types.iter().map(|t| t.id).collect()),
    )
    .await?;
    let now = Utc::now();
    Ok(Response::new(pb::ListCustomerConsentsResponse {
        consents: types
            .iter()
            .map(|t| {
                let c = consents.iter().find(|c| c.consent_type_id == t.id);
                consent_to_proto(customer.id, t, c, now)
            })
            .collect(),
        next_page_token: code_token(types.len(), limit, types.last().map(|t| t.code.as_str())),
    }))
}

pub(super) async fn list_consent_history(
    api: &IdentityApi,
    request: Request<pb::ListConsentHistoryRequest>,
) -> Result<Response<pb::ListConsentHistoryResponse>, Status> {
    let partner_id = principal(&request)?.partner()?;
    let req = request.into_inner();
    let mut v = Violations::new();
    let customer_id = v.check(
        "customer_id",
        parse_uuid("customer_id", &req.customer_id).map_err(|_| "must be a UUID"),
    );
    let limit = page_size(&mut v, req.page_size);
    let after = parse_time_token(&mut v, &req.page_token);
    v.into_result()?;
    let customer = customer_of(
        &api.store,
        &api.db,
        partner_id,
        customer_id.unwrap_or_default(),
    )
    .await?;
    let type_id = if req.consent_type_id.is_empty() {
        None
    } else {
        Some(
            store::get_type(&api.db, partner_id, &req.consent_type_id)
                .await?
                .ok_or_else(|| ApiError::NotFound("consent type".into()))?
                .id,
        )
    };
    let entries = store::history(&api.db, partner_id, customer.id, type_id, after, limit).await?;
    Ok(Response::new(pb::ListConsentHistoryResponse {
        next_page_token: time_token(
            entries.len(),
            limit,
            entries.last().map(|e| (e.changed_at, e.id)),
        ),
        entries: entries.iter().map(history_to_proto).collect(),
    }))
}

/// The bounce state that applies to the customer's current email address.
async fn current_bounce_state(
    conn: &impl sea_orm::ConnectionTrait,
    partner_id: Uuid,
    customer: &Customer,
) -> Result<BounceState, ApiError> {
    Ok(store::bounce_state(conn, partner_id, customer.id)
        .await?
        .map(|s| s.for_current_email(&customer.profile.email))
        .unwrap_or_else(|| BounceState::clean(customer.id, &customer.profile.email)))
}

pub(super) async fn get_email_bounce_state(
    api: &IdentityApi,
    request: Request<pb::GetEmailBounceStateRequest>,
) -> Result<Response<pb::GetEmailBounceStateResponse>, Status> {
    let partner_id = principal(&request)?.partner()?;
    let customer_id = parse_uuid("customer_id", &request.get_ref().customer_id)?;
    let customer = customer_of(&api.store, &api.db, partner_id, customer_id).await?;
    let state = current_bounce_state(&api.db, partner_id, &customer).await?;
    Ok(Response::new(pb::GetEmailBounceStateResponse {
        state: Some(bounce_to_proto(&state)),
    }))
}

pub(super) async fn record_email_bounce(
    api: &IdentityApi,
    request: Request<pb::RecordEmailBounceRequest>,
) -> Result<Response<pb::RecordEmailBounceResponse>, Status> {
    let partner_id =
        principal(&request)?.partner_with_role(&[Role::Support, Role::Marketing, Role::Service])?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "RecordEmailBounce", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let customer_id = v.check(
        "customer_id",
        parse_uuid("customer_id", &req.customer_id).map_err(|_| "must be a UUID"),
    );
    let email = req.email.trim().to_owned();
    if email.is_empty() || email.chars().count() > 254 || !email.contains('@') {
        v.add("email", "must be an email address of up to 254 characters");
    }
    let kind = match pb::BounceType::try_from(req.bounce_type) {
        Ok(pb::BounceType::Hard) => Some(BounceKind::Hard),
        Ok(pb::BounceType::Soft) => Some(BounceKind::Soft),
        _ => {
            v.add("bounce_type", "must be HARD or SOFT");
            None
        }
    };
    let at = optional_time(&mut v, "bounce_time", req.bounce_time.as_ref());
    if req.message_id.chars().count() > 100 {
        v.add("message_id", "must be at most 100 characters");
    }
    v.into_result()?;
    let (customer_id, kind) = (
        customer_id.unwrap_or_default(),
        kind.unwrap_or(BounceKind::Soft),
    );
    let mut keys = vec![format!("key:{}", req.idempotency_key)];
    if !req.message_id.is_empty() {
        keys.push(format!("message:{}", req.message_id));
    }
    let store = api.store.clone();
    let state: BounceState = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            let customer = customer_of(&store, txn, partner_id, customer_id).await?;
            let at = at.unwrap_or_else(now_micros);
            store::apply_bounce(txn, partner_id, &customer, &email, kind, at, &keys).await
        })
    })
    .await?;
    Ok(Response::new(pb::RecordEmailBounceResponse {
        state: Some(bounce_to_proto(&state)),
    }))
}

pub(super) async fn reset_email_bounce_state(
    api: &IdentityApi,
    request: Request<pb::ResetEmailBounceStateRequest>,
) -> Result<Response<pb::ResetEmailBounceStateResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(&[Role::Support, Role::Marketing])?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(
        partner_id,
        "ResetEmailBounceState",
        &req.idempotency_key,
        &req,
    );
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let customer_id = v.check(
        "customer_id",
        parse_uuid("customer_id", &req.customer_id).map_err(|_| "must be a UUID"),
    );
    v.into_result()?;
    let customer_id = customer_id.unwrap_or_default();
    let store = api.store.clone();
    let state: BounceState = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            let customer = customer_of(&store, txn, partner_id, customer_id).await?;
            let mut state = current_bounce_state(txn, partner_id, &customer).await?;
            state.reset(now_micros());
            store::put_bounce_state(txn, partner_id, &state).await?;
            events::enqueue(txn, Some(partner_id), &store::bounce_changed(&state)).await?;
            Ok(state)
        })
    })
    .await?;
    Ok(Response::new(pb::ResetEmailBounceStateResponse {
        state: Some(bounce_to_proto(&state)),
    }))
}

fn contact_purpose_from_proto(v: i32) -> Option<ContactPurpose> {
    use pb::ContactPurpose as P;
    match P::try_from(v).ok()? {
        P::Marketing => Some(ContactPurpose::Marketing),
        P::Service => Some(ContactPurpose::Service),
        P::Unspecified => None,
    }
}

fn refusal_to_proto(r: ContactRefusal) -> pb::ContactRefusal {
    use pb::ContactRefusal as R;
    match r {
        ContactRefusal::UnknownCustomer => R::UnknownCustomer,
        ContactRefusal::NoDataProcessingConsent => R::NoDataProcessingConsent,
        ContactRefusal::NoMarketingConsent => R::NoMarketingConsent,
        ContactRefusal::NoAddress => R::NoAddress,
        ContactRefusal::EmailBounced => R::EmailBounced,
    }
}

fn contactability_to_proto(
    customer_id: String,
    answer: Result<Contact, ContactRefusal>,
) -> pb::Contactability {
    match answer {
        Ok(c) => pb::Contactability {
            customer_id,
            refusal: pb::ContactRefusal::Unspecified as i32,
            address: c.address,
            first_name: c.first_name,
            last_name: c.last_name,
        },
        Err(r) => pb::Contactability {
            customer_id,
            refusal: refusal_to_proto(r) as i32,
            ..Default::default()
        },
    }
}

/// Whether up to 1,000 customers may be messaged now: three reads for the whole batch
/// (customers, their consents with the types, bounce states for email), then the domain's
/// [`contactability`] per customer, answered in the request's order.
pub(super) async fn check_contactability(
    api: &IdentityApi,
    request: Request<pb::CheckContactabilityRequest>,
) -> Result<Response<pb::CheckContactabilityResponse>, Status> {
    // Whoever may read consents (any role of the partner, e.g. marketing, or the `service`
    // role campaigns acts with for a partner).
    let partner_id = principal(&request)?.partner()?;
    let req = request.into_inner();
    let mut v = Violations::new();
    let ids = parse_contact_batch(&mut v, "customer_ids", &req.customer_ids);
    let channel = channel_from_proto(req.channel);
    if channel.is_none() {
        v.add("channel", "must be EMAIL, SMS, PUSH or VIBER");
    }
    let purpose = contact_purpose_from_proto(req.purpose);
    if purpose.is_none() {
        v.add("purpose", "must be MARKETING or SERVICE");
    }
    v.into_result()?;
    let (Some(channel), Some(purpose)) = (channel, purpose) else {
        return Err(ApiError::invalid("channel", "is required").into());
    };
    let facts = store::contact_facts(&api.db, partner_id, &ids, channel == Channel::Email).await?;
    let now = Utc::now();
    let contactabilities = req
        .customer_ids
        .into_iter()
        .zip(&ids)
        .map(|(asked, id)| {
            let consents = facts.consents.get(id).map_or(&[][..], Vec::as_slice);
            let answer = contactability(
                facts.customers.get(id),
                consents,
                facts.bounces.get(id),
                channel,
                purpose,
                now,
            );
            contactability_to_proto(asked, answer)
        })
        .collect();
    Ok(Response::new(pb::CheckContactabilityResponse {
        contactabilities,
    }))
}

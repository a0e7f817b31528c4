//! Partners' settings, customer listing and search, blocking, the account history timeline, merge and GDPR export/erase.
use std::collections::BTreeMap;

use loyalty_platform::{
    ApiError, Role, Violations,
    auth::principal,
    error::{check_idempotency_key, parse_uuid},
    events,
    idempotency::{self, IdempotencyScope},
    paging::{next_page_token, page_size, parse_page_token},
    time::{from_timestamp, to_timestamp},
};
use loyalty_proto::{events::v1 as ev, identity::v1 as pb};
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{IdentityApi, customer_to_proto, identifier_to_proto};
use crate::{
    domain::{
        Customer, CustomerState, IdentifierValue,
        accounts::{
            self as rules, HistoryCursor, HistoryEntry, HistoryKind, PartnerSettings, SearchQuery,
        },
        now_micros,
    },
    store::{
        accounts::{self as store, CustomerFilter, HistoryFilter, Tier},
        activity, consents, customer_data,
    },
};

pub(super) fn partner_to_proto(p: &PartnerSettings) -> pb::Partner {
    pb::Partner {
        id: p.id.to_string(),
        display_name: p.display_name.clone(),
        default_currency_code: p.default_currency_code.clone(),
        create_time: Some(to_timestamp(p.created_at)),
        time_zone: p.time_zone.clone(),
        etag: p.etag(),
        update_time: Some(to_timestamp(p.updated_at.unwrap_or(p.created_at))),
    }
}

fn state_from_proto(v: i32) -> Option<CustomerState> {
    match pb::CustomerState::try_from(v).ok()? {
        pb::CustomerState::Active => Some(CustomerState::Active),
        pb::CustomerState::Blocked => Some(CustomerState::Blocked),
        pb::CustomerState::Erased => Some(CustomerState::Erased),
        pb::CustomerState::Merged => Some(CustomerState::Merged),
        pb::CustomerState::Unspecified => None,
    }
}

fn kind_to_proto(k: HistoryKind) -> pb::AccountHistoryEntryKind {
    use pb::AccountHistoryEntryKind as K;
    match k {
        HistoryKind::Purchase => K::Purchase,
        HistoryKind::Communication => K::Communication,
        HistoryKind::Segment => K::Segment,
        HistoryKind::Audience => K::Audience,
        HistoryKind::AutomationAction => K::AutomationAction,
        HistoryKind::Loyalty => K::Loyalty,
        HistoryKind::Account => K::Account,
        HistoryKind::Event => K::Event,
    }
}

fn kind_from_proto(v: i32) -> Option<HistoryKind> {
    HistoryKind::ALL
        .into_iter()
        .find(|k| kind_to_proto(*k) as i32 == v)
}

fn history_to_proto(e: &HistoryEntry) -> pb::AccountHistoryEntry {
    pb::AccountHistoryEntry {
        id: e.id.to_string(),
        customer_id: e.customer_id.to_string(),
        kind: kind_to_proto(e.kind) as i32,
        event_type: e.event_type.clone(),
        event_id: e.event_id.to_string(),
        summary: e.summary.clone(),
        resource_type: e.resource_type.clone(),
        resource_id: e.resource_id.clone(),
        details: e.details.clone().into_iter().collect(),
        occur_time: Some(to_timestamp(e.occurred_at)),
    }
}

fn optional_uuid(v: &mut Violations, field: &str, s: &str) -> Option<Uuid> {
    if s.trim().is_empty() {
        None
    } else {
        v.check(
            field,
            Uuid::try_parse(s.trim()).map_err(|_| "must be a UUID"),
        )
    }
}

fn optional_time(
    v: &mut Violations,
    field: &str,
    t: &Option<prost_types::Timestamp>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let t = t.as_ref()?;
    let parsed = from_timestamp(t);
    if parsed.is_none() {
        v.add(field, "is not a valid timestamp");
    }
    parsed
}

fn customer_id_field(v: &mut Violations, field: &str, s: &str) -> Uuid {
    v.check(field, parse_uuid(field, s).map_err(|_| "must be a UUID"))
        .unwrap_or_default()
}

fn check_reason(v: &mut Violations, reason: &str, required: bool) {
    let n = reason.trim().chars().count();
    if required && n == 0 {
        v.add("reason", "is required");
    } else if n > 500 {
        v.add("reason", "must be at most 500 characters");
    }
}

fn precondition(reason: &'static str) -> ApiError {
    let message = match reason {
        "CUSTOMER_ERASED" => "the customer's data was erased",
        "CUSTOMER_MERGED" => "the customer was merged into another account",
        _ => "the customer cannot be changed",
    };
    ApiError::precondition(reason, message)
}

/// A customer's state and merge target, through the cache (ResolveIdentifier).
pub(super) async fn customer_state(
    api: &IdentityApi,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<Option<(CustomerState, Option<Uuid>)>, ApiError> {
    store::cached_customer_state(&api.cache, &api.db, partner_id, customer_id).await
}

// ---- Partners ----

pub(super) async fn list_partners(
    api: &IdentityApi,
    request: Request<pb::ListPartnersRequest>,
) -> Result<Response<pb::ListPartnersResponse>, Status> {
    let caller = principal(&request)?;
    let only = if caller.platform_admin {
        None
    } else {
        Some(caller.partner()?)
    };
    let req = request.into_inner();
    let mut v = Violations::new();
    let limit = page_size(&mut v, req.page_size);
    let after = parse_page_token(&mut v, &req.page_token);
    v.into_result()?;
    let partners = store::list_partners(&api.db, only, after, limit).await?;
    Ok(Response::new(pb::ListPartnersResponse {
        next_page_token: next_page_token(partners.len(), limit, partners.last().map(|p| p.id)),
        partners: partners.iter().map(partner_to_proto).collect(),
    }))
}

pub(super) async fn update_partner(
    api: &IdentityApi,
    request: Request<pb::UpdatePartnerRequest>,
) -> Result<Response<pb::UpdatePartnerResponse>, Status> {
    let caller = principal(&request)?;
    let req = request.into_inner();
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let incoming = req.partner.clone().unwrap_or_default();
    let id = customer_id_field(&mut v, "partner.id", &incoming.id);
    let paths: Vec<String> = req.update_mask.clone().map(|m| m.paths).unwrap_or_default();
    v.into_result()?;
    if !caller.platform_admin {
        // A partner key may change only its own partner, and only with `admin`.
        if caller.partner()? != id {
            return Err(ApiError::NotFound("partner".into()).into());
        }
        caller.partner_with_role(&[Role::Admin])?;
    }
    let scope = IdempotencyScope::new(id, "UpdatePartner", &req.idempotency_key, &req);
    let etag = req.etag;
    let updated: PartnerSettings = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            let current = store::partner(txn, id)
                .await?
                .ok_or_else(|| ApiError::NotFound("partner".into()))?;
            loyalty_platform::error::check_etag(&etag, &current.etag(), "partner")?;
            let wanted = PartnerSettings {
                display_name: incoming.display_name,
                default_currency_code: incoming.default_currency_code,
                time_zone: incoming.time_zone,
                ..current.clone()
            };
            let mut v = Violations::new();
            let mut next = current.with_updates(&wanted, &paths, &mut v);
            v.into_result()?;
            if next.default_currency_code != current.default_currency_code
                && store::partner_has_customers(txn, id).await?
            {
                return Err(ApiError::precondition(
                    "CURRENCY_IN_USE",
                    "the partner has customer accounts (and wallets) in its currency",
                ));
            }
            next.updated_at = Some(now_micros());
            if !store::update_partner(txn, &next, current.updated_at).await? {
                return Err(ApiError::precondition(
                    "ETAG_MISMATCH",
                    "the partner changed concurrently",
                ));
            }
            Ok(next)
        })
    })
    .await?;
    Ok(Response::new(pb::UpdatePartnerResponse {
        partner: Some(partner_to_proto(&updated)),
    }))
}

// ---- Listing and search ----

/// Page token of SearchCustomers: the tier and the last id served in it.
fn search_token(tier: Tier, last: Uuid) -> String {
    format!("{}.{}", tier as u8, last.simple())
}

fn parse_search_token(v: &mut Violations, token: &str) -> Option<(Tier, Uuid)> {
    if token.is_empty() {
        return None;
    }
    let parsed = token.split_once('.').and_then(|(t, id)| {
        let tier = match t {
            "2" => Tier::Exact,
            "1" => Tier::Prefix,
            _ => return None,
        };
        Some((tier, Uuid::try_parse(id).ok()?))
    });
    if parsed.is_none() {
        v.add("page_token", "is not a token this service issued");
    }
    parsed
}

pub(super) async fn list_customers(
    api: &IdentityApi,
    request: Request<pb::ListCustomersRequest>,
) -> Result<Response<pb::ListCustomersResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(&[Role::Support, Role::Marketing])?;
    let req = request.into_inner();
    let mut v = Violations::new();
    let limit = page_size(&mut v, req.page_size);
    let after = parse_page_token(&mut v, &req.page_token);
    let states = match state_from_proto(req.state) {
        Some(s) => vec![s],
        None if req.state == 0 => vec![CustomerState::Active, CustomerState::Blocked],
        None => {
            v.add("state", "must be a known customer state");
            vec![]
        }
    };
    let email = if req.email.trim().is_empty() {
        None
    } else {
        v.check(
            "email",
            IdentifierValue::parse(crate::domain::IdentifierKind::Email, &req.email)
                .map(|e| e.value),
        )
    };
    let phone = if req.phone.trim().is_empty() {
        None
    } else {
        v.check(
            "phone",
            IdentifierValue::parse(crate::domain::IdentifierKind::Phone, &req.phone)
                .map(|e| e.value),
        )
    };
    let filter = CustomerFilter {
        states,
        contact_source_id: optional_uuid(&mut v, "contact_source_id", &req.contact_source_id),
        interest_id: optional_uuid(&mut v, "interest_id", &req.interest_id),
        home_business_unit_id: optional_uuid(
            &mut v,
            "home_business_unit_id",
            &req.home_business_unit_id,
        ),
        created_from: optional_time(&mut v, "create_start_time", &req.create_start_time),
        created_before: optional_time(&mut v, "create_end_time", &req.create_end_time),
        updated_from: optional_time(&mut v, "update_start_time", &req.update_start_time),
        email,
        phone,
        properties: rules::parse_property_filters(&mut v, &req.property_filters),
    };
    v.into_result()?;
    let customers = store::list_customers(&api.db, partner_id, &filter, after, limit).await?;
    Ok(Response::new(pb::ListCustomersResponse {
        next_page_token: next_page_token(customers.len(), limit, customers.last().map(|c| c.id)),
        customers: customers.iter().map(customer_to_proto).collect(),
    }))
}

pub(super) async fn search_customers(
    api: &IdentityApi,
    request: Request<pb::SearchCustomersRequest>,
) -> Result<Response<pb::SearchCustomersResponse>, Status> {
    let partner_id =
        principal(&request)?.partner_with_role(&[Role::Support, Role::Marketing, Role::Pos])?;
    let req = request.into_inner();
    let mut v = Violations::new();
    let limit = page_size(&mut v, req.page_size);
    let token = parse_search_token(&mut v, &req.page_token);
    let properties: BTreeMap<String, String> = req.property_filters.into_iter().collect();
    let query = SearchQuery::parse(&mut v, &req.query, &properties);
    v.into_result()?;
    let mut states = vec![CustomerState::Active];
    if req.include_blocked {
        states.push(CustomerState::Blocked);
    }
    // Exact word matches first, then prefix matches; newest account first within each.
    let tiers: &[Tier] = if query.tokens.is_empty() {
        &[Tier::Exact]
    } else {
        &[Tier::Exact, Tier::Prefix]
    };
    let mut hits: Vec<(Tier, Customer)> = Vec::new();
    for &tier in tiers {
        let after = match token {
            Some((t, _)) if t == Tier::Prefix && tier == Tier::Exact => continue,
            Some((t, id)) if t == tier => Some(id),
            _ => None,
        };
        let want = limit - hits.len() as u64;
        if want == 0 {
            break;
        }
        let page = store::search(&api.db, partner_id, &query, &states, tier, after, want).await?;
        hits.extend(page.into_iter().map(|c| (tier, c)));
    }
    let matched = match query.tokens.first() {
        Some(token) => {
            let ids: Vec<Uuid> = hits.iter().map(|(_, c)| c.id).collect();
            store::matched_fields(&api.db, partner_id, &ids, token).await?
        }
        None => BTreeMap::new(),
    };
    let next_page_token = match hits.last() {
        Some((tier, c)) if hits.len() as u64 == limit => search_token(*tier, c.id),
        _ => String::new(),
    };
    Ok(Response::new(pb::SearchCustomersResponse {
        results: hits
            .iter()
            .map(|(tier, c)| pb::CustomerSearchResult {
                customer: Some(customer_to_proto(c)),
                matched_field: matched
                    .get(&c.id)
                    .cloned()
                    .unwrap_or_else(|| "property".to_owned()),
                score: *tier as u8 as f32,
            })
            .collect(),
        next_page_token,
    }))
}

// ---- Block / unblock ----

/// A changed customer and the identifier values whose cached resolutions must go.
#[derive(Serialize, Deserialize)]
struct Changed {
    customer: Customer,
    #[serde(default)]
    forget: Vec<IdentifierValue>,
    #[serde(default)]
    moved: i32,
    /// The merged account after a merge.
    #[serde(default)]
    merged: Option<Customer>,
}

pub(super) async fn block_customer(
    api: &IdentityApi,
    request: Request<pb::BlockCustomerRequest>,
) -> Result<Response<pb::BlockCustomerResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(&[Role::Support])?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "BlockCustomer", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let id = customer_id_field(&mut v, "customer_id", &req.customer_id);
    check_reason(&mut v, &req.reason, true);
    v.into_result()?;
    let reason = req.reason;
    let changed = lifecycle(api, partner_id, scope, id, move |c| {
        let next = rules::block(c, &reason, now_micros()).map_err(precondition)?;
        let event = ev::CustomerBlocked {
            customer_id: c.id.to_string(),
            reason: next.block_reason.clone(),
        };
        Ok((
            next,
            Box::new(move |txn| Box::pin(enqueue(txn, partner_id, event))),
        ))
    })
    .await?;
    Ok(Response::new(pb::BlockCustomerResponse {
        customer: Some(customer_to_proto(&changed)),
    }))
}

pub(super) async fn unblock_customer(
    api: &IdentityApi,
    request: Request<pb::UnblockCustomerRequest>,
) -> Result<Response<pb::UnblockCustomerResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(&[Role::Support])?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "UnblockCustomer", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let id = customer_id_field(&mut v, "customer_id", &req.customer_id);
    v.into_result()?;
    let changed = lifecycle(api, partner_id, scope, id, move |c| {
        let next = rules::unblock(c, now_micros()).map_err(precondition)?;
        let event = ev::CustomerUnblocked {
            customer_id: c.id.to_string(),
        };
        Ok((
            next,
            Box::new(move |txn| Box::pin(enqueue(txn, partner_id, event))),
        ))
    })
    .await?;
    Ok(Response::new(pb::UnblockCustomerResponse {
        customer: Some(customer_to_proto(&changed)),
    }))
}

async fn enqueue<E: loyalty_platform::events::DomainEvent + Send + Sync + 'static>(
    txn: &sea_orm::DatabaseTransaction,
    partner_id: Uuid,
    event: E,
) -> Result<(), ApiError> {
    events::enqueue(txn, Some(partner_id), &event).await?;
    Ok(())
}

type Publish = Box<
    dyn for<'c> FnOnce(
            &'c sea_orm::DatabaseTransaction,
        ) -> futures::future::BoxFuture<'c, Result<(), ApiError>>
        + Send,
>;

/// Block/unblock: one transaction that rewrites the customer and publishes its event; then
/// every cached resolution of its identifiers is dropped, so ResolveIdentifier sees the new
/// state at once.
async fn lifecycle<F>(
    api: &IdentityApi,
    partner_id: Uuid,
    scope: IdempotencyScope,
    id: Uuid,
    change: F,
) -> Result<Customer, ApiError>
where
    F: FnOnce(&Customer) -> Result<(Customer, Publish), ApiError> + Send + 'static,
{
    let base = api.store.clone();
    let changed: Changed = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            let current = base
                .customer(txn, partner_id, id)
                .await?
                .ok_or_else(|| ApiError::NotFound("customer".into()))?;
            let (next, publish) = change(&current)?;
            if next != current {
                if !base.update_customer(txn, &next, current.updated_at).await? {
                    return Err(ApiError::precondition(
                        "ETAG_MISMATCH",
                        "the customer changed concurrently",
                    ));
                }
                publish(txn).await?;
            }
            let forget = store::identifiers_of(txn, partner_id, id, false)
                .await?
                .into_iter()
                .map(|i| i.value)
                .collect();
            Ok(Changed {
                customer: next,
                forget,
                moved: 0,
                merged: None,
            })
        })
    })
    .await?;
    store::forget_resolutions(&api.cache, partner_id, &changed.forget).await;
    store::remember_customer_state(&api.cache, partner_id, &changed.customer).await;
    Ok(changed.customer)
}

// ---- Account history ----

pub(super) async fn list_account_history(
    api: &IdentityApi,
    request: Request<pb::ListAccountHistoryRequest>,
) -> Result<Response<pb::ListAccountHistoryResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(&[Role::Support, Role::Marketing])?;
    let req = request.into_inner();
    let mut v = Violations::new();
    let id = customer_id_field(&mut v, "customer_id", &req.customer_id);
    let limit = page_size(&mut v, req.page_size);
    let after = if req.page_token.is_empty() {
        None
    } else {
        let c = HistoryCursor::decode(&req.page_token);
        if c.is_none() {
            v.add("page_token", "is not a token this service issued");
        }
        c
    };
    let mut kinds = Vec::new();
    for (i, k) in req.kinds.iter().enumerate() {
        match kind_from_proto(*k) {
            Some(k) => kinds.push(k),
            None => v.add(format!("kinds[{i}]"), "must be a known entry kind"),
        }
    }
    let filter = HistoryFilter {
        kinds,
        from: optional_time(&mut v, "start_time", &req.start_time),
        before: optional_time(&mut v, "end_time", &req.end_time),
    };
    v.into_result()?;
    if store::customer_state(&api.db, partner_id, id)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound("customer".into()).into());
    }
    let entries = store::list_history(&api.db, partner_id, id, &filter, after, limit).await?;
    let next_page_token = match entries.last() {
        Some(e) if entries.len() as u64 == limit => HistoryCursor {
            occurred_at: e.occurred_at,
            id: e.id,
        }
        .encode(),
        _ => String::new(),
    };
    Ok(Response::new(pb::ListAccountHistoryResponse {
        entries: entries.iter().map(history_to_proto).collect(),
        next_page_token,
    }))
}

// ---- Merge ----

pub(super) async fn merge_customers(
    api: &IdentityApi,
    request: Request<pb::MergeCustomersRequest>,
) -> Result<Response<pb::MergeCustomersResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(&[Role::Support])?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "MergeCustomers", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let survivor_id =
        customer_id_field(&mut v, "surviving_customer_id", &req.surviving_customer_id);
    let merged_id = customer_id_field(&mut v, "merged_customer_id", &req.merged_customer_id);
    check_reason(&mut v, &req.reason, false);
    if v.is_empty() && survivor_id == merged_id {
        v.add(
            "merged_customer_id",
            "must differ from surviving_customer_id",
        );
    }
    v.into_result()?;
    let base = api.store.clone();
    let changed: Changed = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            let survivor = base
                .customer(txn, partner_id, survivor_id)
                .await?
                .ok_or_else(|| ApiError::NotFound("customer".into()))?;
            let merged = base
                .customer(txn, partner_id, merged_id)
                .await?
                .ok_or_else(|| ApiError::NotFound("customer".into()))?;
            let now = now_micros();
            let merged_after = rules::merge(&survivor, &merged, now).map_err(precondition)?;
            let moved = store::identifiers_of(txn, partner_id, merged_id, false).await?;
            if !base
                .update_customer(txn, &merged_after, merged.updated_at)
                .await?
            {
                return Err(ApiError::precondition(
                    "ETAG_MISMATCH",
                    "the merged customer changed concurrently",
                ));
            }
            let survivor_after = rules::survivor_after_merge(&survivor, &merged, now);
            if !base
                .update_customer(txn, &survivor_after, survivor.updated_at)
                .await?
            {
                return Err(ApiError::precondition(
                    "ETAG_MISMATCH",
                    "the surviving customer changed concurrently",
                ));
            }
            store::move_identifiers(txn, partner_id, merged_id, survivor_id).await?;
            store::move_history(txn, partner_id, merged_id, survivor_id).await?;
            store::move_referrals(txn, partner_id, merged_id, survivor_id, now).await?;
            let relations =
                customer_data::move_relations(txn, partner_id, merged_id, survivor_id).await?;
            for (r, deleted) in relations
                .moved
                .iter()
                .map(|r| (r, false))
                .chain(relations.dropped.iter().map(|r| (r, true)))
            {
                events::enqueue(
                    txn,
                    Some(partner_id),
                    &super::customer_data::relation_changed(r, deleted),
                )
                .await?;
            }
            consents::move_customer(txn, partner_id, merged_id, survivor_id).await?;
            activity::move_customer(txn, partner_id, merged_id, survivor_id).await?;
            store::reindex(txn, partner_id, merged_id).await?;
            store::reindex(txn, partner_id, survivor_id).await?;
            events::enqueue(
                txn,
                Some(partner_id),
                &ev::CustomerMerged {
                    surviving_customer_id: survivor_id.to_string(),
                    merged_customer_id: merged_id.to_string(),
                },
            )
            .await?;
            Ok(Changed {
                customer: survivor_after,
                moved: moved.len() as i32,
                forget: moved.into_iter().map(|i| i.value).collect(),
                merged: Some(merged_after),
            })
        })
    })
    .await?;
    store::forget_resolutions(&api.cache, partner_id, &changed.forget).await;
    if let Some(merged) = &changed.merged {
        store::remember_customer_state(&api.cache, partner_id, merged).await;
    }
    Ok(Response::new(pb::MergeCustomersResponse {
        customer: Some(customer_to_proto(&changed.customer)),
        moved_identifier_count: changed.moved,
    }))
}

// ---- Export ----

pub(super) async fn export_customer(
    api: &IdentityApi,
    request: Request<pb::ExportCustomerRequest>,
) -> Result<Response<super::ExportCustomerStream>, Status> {
    let partner_id = principal(&request)?.partner_with_role(&[Role::Support])?;
    let mut v = Violations::new();
    let id = customer_id_field(&mut v, "customer_id", &request.get_ref().customer_id);
    v.into_result()?;
    use pb::export_customer_response::Part;
    let customer = api
        .store
        .customer(&api.db, partner_id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("customer".into()))?;
    let mut parts = vec![Part::Customer(customer_to_proto(&customer))];
    for i in store::identifiers_of(&api.db, partner_id, id, true).await? {
        parts.push(Part::Identifier(identifier_to_proto(&i)));
    }
    for r in customer_data::relations_of(&api.db, partner_id, id).await? {
        parts.push(Part::Relation(super::customer_data::relation_to_proto(&r)));
    }
    let current = consents::all_consents(&api.db, partner_id, id).await?;
    let types = consents::types_by_id(
        &api.db,
        partner_id,
        current.iter().map(|c| c.consent_type_id).collect(),
    )
    .await?;
    let now = chrono::Utc::now();
    for c in &current {
        if let Some(t) = types.get(&c.consent_type_id) {
            parts.push(Part::Consent(super::consents::consent_to_proto(
                id,
                t,
                Some(c),
                now,
            )));
        }
    }
    for e in consents::all_history(&api.db, partner_id, id).await? {
        parts.push(Part::ConsentHistoryEntry(
            super::consents::history_to_proto(&e),
        ));
    }
    if let Some(b) = consents::bounce_state(&api.db, partner_id, id).await? {
        parts.push(Part::EmailBounceState(super::consents::bounce_to_proto(&b)));
    }
    for e in activity::all_events(&api.db, partner_id, id).await? {
        parts.push(Part::Event(super::activity::customer_event_to_proto(&e)));
    }
    let mut after = None;
    loop {
        let page = store::list_history(
            &api.db,
            partner_id,
            id,
            &HistoryFilter::default(),
            after,
            1000,
        )
        .await?;
        let full = page.len() == 1000;
        after = page.last().map(|e| HistoryCursor {
            occurred_at: e.occurred_at,
            id: e.id,
        });
        parts.extend(
            page.iter()
                .map(|e| Part::AccountHistoryEntry(history_to_proto(e))),
        );
        if !full {
            break;
        }
    }
    let stream = futures::stream::iter(
        parts
            .into_iter()
            .map(|p| Ok(pb::ExportCustomerResponse { part: Some(p) })),
    );
    Ok(Response::new(Box::pin(stream)))
}

// ---- Erase ----

pub(super) async fn erase_customer(
    api: &IdentityApi,
    request: Request<pb::EraseCustomerRequest>,
) -> Result<Response<pb::EraseCustomerResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(&[Role::Support])?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "EraseCustomer", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let id = customer_id_field(&mut v, "customer_id", &req.customer_id);
    check_reason(&mut v, &req.reason, true);
    v.into_result()?;
    let reason = req.reason.trim().to_owned();
    let base = api.store.clone();
    let changed: Changed = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            let current = base
                .customer(txn, partner_id, id)
                .await?
                .ok_or_else(|| ApiError::NotFound("customer".into()))?;
            if current.state == CustomerState::Erased {
                return Ok(Changed {
                    customer: current,
                    forget: vec![],
                    moved: 0,
                    merged: None,
                });
            }
            let now = now_micros();
            let erased = rules::erase(&current, now);
            let forget = store::identifiers_of(txn, partner_id, id, false)
                .await?
                .into_iter()
                .map(|i| i.value)
                .collect();
            if !base
                .update_customer(txn, &erased, current.updated_at)
                .await?
            {
                return Err(ApiError::precondition(
                    "ETAG_MISMATCH",
                    "the customer changed concurrently",
                ));
            }
            store::erase_identifiers(txn, partner_id, id, now).await?;
            store::scrub_history(txn, partner_id, id).await?;
            store::clear_referrals(txn, partner_id, id, now).await?;
            for r in customer_data::delete_relations(txn, partner_id, id).await? {
                events::enqueue(
                    txn,
                    Some(partner_id),
                    &super::customer_data::relation_changed(&r, true),
                )
                .await?;
            }
            consents::erase_customer(txn, partner_id, id).await?;
            activity::erase_customer(txn, partner_id, id).await?;
            store::reindex(txn, partner_id, id).await?;
            store::insert_erasure(txn, partner_id, id, now, &reason).await?;
            events::enqueue(
                txn,
                Some(partner_id),
                &ev::CustomerErased {
                    customer_id: id.to_string(),
                },
            )
            .await?;
            Ok(Changed {
                customer: erased,
                forget,
                moved: 0,
                merged: None,
            })
        })
    })
    .await?;
    store::forget_resolutions(&api.cache, partner_id, &changed.forget).await;
    store::remember_customer_state(&api.cache, partner_id, &changed.customer).await;
    Ok(Response::new(pb::EraseCustomerResponse {
        customer: Some(customer_to_proto(&changed.customer)),
    }))
}

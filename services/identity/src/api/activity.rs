//! Event types and tracked customer events (one by one and streamed in bulk).
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use loyalty_platform::{
    ApiError, Role, Violations,
    auth::principal,
    db::{begin_write, is_unique_violation},
    error::{check_idempotency_key, parse_uuid},
    idempotency::{self, IdempotencyScope, request_hash},
    paging::{code_page, page_size},
    time::to_timestamp,
};
use loyalty_proto::identity::v1 as pb;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use tonic::Streaming;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    IdentityApi,
    consents::{code_token, optional_time, parse_time_token, time_token},
};
use crate::{
    domain::{
        CustomerState,
        activity::{
            CustomerEvent, EventType, MAX_PURCHASE_ID_CHARS, PURCHASE, PropertyDefinition,
            PropertyType, UPDATABLE, built_in, check_occur_time, check_payload,
        },
        now_micros,
    },
    store::{
        activity::{self as store, EventFilter, NewEvent},
        business_units,
    },
};

/// Roles that may track customer events.
const TRACKING_ROLES: &[Role] = &[Role::Pos, Role::Marketing, Role::Service, Role::Support];
/// Most events in one TrackEvents batch.
const MAX_BATCH: usize = 1_000;
/// Most rejections a TrackEvents response lists.
const MAX_REJECTIONS: usize = 1_000;

fn property_type_from_proto(v: i32) -> Option<PropertyType> {
    use pb::EventPropertyType as T;
    Some(match T::try_from(v).ok()? {
        T::String => PropertyType::String,
        T::Integer => PropertyType::Integer,
        T::Boolean => PropertyType::Boolean,
        T::Timestamp => PropertyType::Timestamp,
        T::MoneyMinor => PropertyType::MoneyMinor,
        T::Unspecified => return None,
    })
}

fn property_type_to_proto(t: PropertyType) -> i32 {
    use pb::EventPropertyType as T;
    (match t {
        PropertyType::String => T::String,
        PropertyType::Integer => T::Integer,
        PropertyType::Boolean => T::Boolean,
        PropertyType::Timestamp => T::Timestamp,
        PropertyType::MoneyMinor => T::MoneyMinor,
    }) as i32
}

pub(super) fn event_type_to_proto(t: &EventType) -> pb::EventType {
    pb::EventType {
        id: t.id.to_string(),
        code: t.code.clone(),
        display_name: t.display_name.clone(),
        group: t.group.clone(),
        properties: t
            .properties
            .iter()
            .map(|p| pb::EventPropertyDefinition {
                key: p.key.clone(),
                display_name: p.display_name.clone(),
                r#type: property_type_to_proto(p.property_type),
                required: p.required,
            })
            .collect(),
        active: t.active,
        etag: t.etag(),
        create_time: Some(to_timestamp(t.created_at)),
        update_time: Some(to_timestamp(t.updated_at)),
    }
}

pub(super) fn customer_event_to_proto(e: &CustomerEvent) -> pb::CustomerEvent {
    pb::CustomerEvent {
        id: e.id.to_string(),
        customer_id: e.customer_id.to_string(),
        event_type_id: e.event_type_id.to_string(),
        event_type_code: e.event_type_code.clone(),
        properties: e.properties.clone().into_iter().collect(),
        business_unit_id: e
            .business_unit_id
            .map(|i| i.to_string())
            .unwrap_or_default(),
        occur_time: Some(to_timestamp(e.occurred_at)),
        create_time: Some(to_timestamp(e.created_at)),
        payload_json: e.payload.clone(),
        purchase_id: e.purchase_id.clone(),
    }
}

fn properties_from(
    v: &mut Violations,
    raw: &[pb::EventPropertyDefinition],
) -> Vec<PropertyDefinition> {
    raw.iter()
        .enumerate()
        .map(|(i, p)| {
            let property_type = property_type_from_proto(p.r#type).unwrap_or_else(|| {
                v.add(format!("event_type.properties[{i}].type"), "is required");
                PropertyType::String
            });
            PropertyDefinition {
                key: p.key.trim().to_owned(),
                display_name: p.display_name.trim().to_owned(),
                property_type,
                required: p.required,
            }
        })
        .collect()
}

pub(super) async fn create_event_type(
    api: &IdentityApi,
    request: Request<pb::CreateEventTypeRequest>,
) -> Result<Response<pb::CreateEventTypeResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(&[Role::Marketing])?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "CreateEventType", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let p = req.event_type.unwrap_or_default();
    let now = now_micros();
    let t = EventType {
        id: Uuid::now_v7(),
        code: p.code.trim().to_owned(),
        display_name: p.display_name.trim().to_owned(),
        group: p.group.trim().to_owned(),
        properties: properties_from(&mut v, &p.properties),
        // A new type accepts events at once; UpdateEventType deactivates it.
        active: true,
        built_in: false,
        revision: 1,
        created_at: now,
        updated_at: now,
    };
    t.validate(&mut v);
    v.into_result()?;
    if built_in(&t.code).is_some() {
        return Err(ApiError::AlreadyExists(format!(
            "event type with code {:?} (built in)",
            t.code
        ))
        .into());
    }
    let created: EventType = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            store::insert_type(txn, partner_id, &t).await?;
            Ok(t)
        })
    })
    .await?;
    Ok(Response::new(pb::CreateEventTypeResponse {
        event_type: Some(event_type_to_proto(&created)),
    }))
}

pub(super) async fn get_event_type(
    api: &IdentityApi,
    request: Request<pb::GetEventTypeRequest>,
) -> Result<Response<pb::GetEventTypeResponse>, Status> {
    let partner_id = principal(&request)?.partner()?;
    let id = &request.get_ref().event_type_id;
    if id.is_empty() {
        return Err(ApiError::invalid("event_type_id", "is required").into());
    }
    let t = store::get_type(&api.db, partner_id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("event type".into()))?;
    Ok(Response::new(pb::GetEventTypeResponse {
        event_type: Some(event_type_to_proto(&t)),
    }))
}

pub(super) async fn list_event_types(
    api: &IdentityApi,
    request: Request<pb::ListEventTypesRequest>,
) -> Result<Response<pb::ListEventTypesResponse>, Status> {
    let partner_id = principal(&request)?.partner()?;
    let req = request.into_inner();
    let (limit, after) = code_page(req.page_size, &req.page_token)?;
    let group = (!req.group.is_empty()).then_some(req.group.as_str());
    let found = store::list_types(
        &api.db,
        partner_id,
        group,
        req.include_inactive,
        after.as_deref(),
        limit,
    )
    .await?;
    Ok(Response::new(pb::ListEventTypesResponse {
        next_page_token: code_token(found.len(), limit, found.last().map(|t| t.code.as_str())),
        event_types: found.iter().map(event_type_to_proto).collect(),
    }))
}

pub(super) async fn update_event_type(
    api: &IdentityApi,
    request: Request<pb::UpdateEventTypeRequest>,
) -> Result<Response<pb::UpdateEventTypeResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(&[Role::Marketing])?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "UpdateEventType", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let p = req.event_type.unwrap_or_default();
    let paths = loyalty_platform::error::mask_paths(&mut v, req.update_mask, UPDATABLE);
    if p.id.is_empty() {
        v.add("event_type.id", "is required");
    }
    let properties = properties_from(&mut v, &p.properties);
    v.into_result()?;
    if built_in(&p.id).is_some() {
        return Err(ApiError::precondition(
            "BUILT_IN_EVENT_TYPE",
            "built-in event types cannot be changed",
        )
        .into());
    }
    let etag = req.etag;
    let updated: EventType = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            let current = store::get_type(txn, partner_id, &p.id)
                .await?
                .ok_or_else(|| ApiError::NotFound("event type".into()))?;
            loyalty_platform::error::check_etag(&etag, &current.etag(), "event type")?;
            let mut next = current.clone();
            let mut v = Violations::new();
            for path in &paths {
                match path.as_str() {
                    "display_name" => next.display_name = p.display_name.trim().to_owned(),
                    "group" => next.group = p.group.trim().to_owned(),
                    "properties" => {
                        current.check_property_change(&properties, &mut v);
                        next.properties = properties.clone();
                    }
                    "active" => next.active = p.active,
                    _ => {}
                }
            }
            next.validate(&mut v);
            v.into_result()?;
            next.revision = current.revision + 1;
            next.updated_at = now_micros();
            if !store::update_type(txn, partner_id, &next, current.revision).await? {
                return Err(ApiError::precondition(
                    "ETAG_MISMATCH",
                    "the event type changed concurrently",
                ));
            }
            Ok(next)
        })
    })
    .await?;
    Ok(Response::new(pb::UpdateEventTypeResponse {
        event_type: Some(event_type_to_proto(&updated)),
    }))
}

/// What tracking looks up, remembered for a whole TrackEvents stream (or one TrackEvent).
struct TrackContext {
    partner_id: Uuid,
    customers: HashMap<Uuid, Option<CustomerState>>,
    event_types: HashMap<String, Option<EventType>>,
    business_units: HashMap<String, Option<Uuid>>,
    /// Idempotency keys recorded during this stream, with their request hashes.
    recorded: HashMap<String, (String, CustomerEvent)>,
}

impl TrackContext {
    fn new(partner_id: Uuid) -> Self {
        TrackContext {
            partner_id,
            customers: HashMap::new(),
            event_types: HashMap::new(),
            business_units: HashMap::new(),
            recorded: HashMap::new(),
        }
    }

    /// Loads the states of the customers not looked up yet, in one query.
    async fn load_customers(
        &mut self,
        conn: &impl ConnectionTrait,
        ids: impl Iterator<Item = Uuid>,
    ) -> Result<(), ApiError> {
        let missing: Vec<Uuid> = ids.filter(|i| !self.customers.contains_key(i)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let found = store::customer_states(conn, self.partner_id, &missing).await?;
        for id in missing {
            self.customers
                .insert(id, found.get(&id).map(|s| CustomerState::parse_str(s)));
        }
        Ok(())
    }

    async fn event_type(
        &mut self,
        conn: &impl ConnectionTrait,
        id_or_code: &str,
    ) -> Result<Option<EventType>, ApiError> {
        if let Some(t) = self.event_types.get(id_or_code) {
            return Ok(t.clone());
        }
        let t = store::get_type(conn, self.partner_id, id_or_code).await?;
        self.event_types.insert(id_or_code.to_owned(), t.clone());
        Ok(t)
    }

    async fn business_unit(
        &mut self,
        conn: &impl ConnectionTrait,
        id_or_code: &str,
    ) -> Result<Option<Uuid>, ApiError> {
        if let Some(u) = self.business_units.get(id_or_code) {
            return Ok(*u);
        }
        let u = business_units::get(conn, self.partner_id, id_or_code)
            .await?
            .map(|u| u.id);
        self.business_units.insert(id_or_code.to_owned(), u);
        Ok(u)
    }

    /// Validates one TrackEvent request and builds the event to record.
    async fn prepare(
        &mut self,
        conn: &impl ConnectionTrait,
        req: &pb::TrackEventRequest,
        hash: String,
        now: DateTime<Utc>,
    ) -> Result<NewEvent, ApiError> {
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let customer_id = v.check(
            "customer_id",
            parse_uuid("customer_id", &req.customer_id).map_err(|_| "must be a UUID"),
        );
        if req.event_type_id.is_empty() {
            v.add("event_type_id", "is required");
        }
        let at = optional_time(&mut v, "occur_time", req.occur_time.as_ref());
        let occurred_at = check_occur_time(at, now, &mut v);
        let payload = check_payload(&req.payload_json, &mut v);
        let purchase_id = req.purchase_id.trim().to_owned();
        if purchase_id.chars().count() > MAX_PURCHASE_ID_CHARS {
            v.add("purchase_id", "must be at most 100 characters");
        }
        v.into_result()?;
        let customer_id = customer_id.unwrap_or_default();
        self.load_customers(conn, std::iter::once(customer_id))
            .await?;
        match self.customers.get(&customer_id).copied().flatten() {
            None => return Err(ApiError::NotFound("customer".into())),
            Some(CustomerState::Erased) => {
                return Err(ApiError::precondition(
                    "CUSTOMER_ERASED",
                    "the customer's data was erased",
                ));
            }
            Some(_) => {}
        }
        let t = self
            .event_type(conn, &req.event_type_id)
            .await?
            .ok_or_else(|| ApiError::NotFound("event type".into()))?;
        if !t.active {
            return Err(ApiError::precondition(
                "EVENT_TYPE_INACTIVE",
                "the event type does not accept events",
            ));
        }
        let properties: BTreeMap<String, String> = req
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut v = Violations::new();
        t.check_properties(&properties, &mut v);
        if t.built_in && t.code == PURCHASE && purchase_id.is_empty() {
            v.add("purchase_id", "is required for purchase events");
        }
        v.into_result()?;
        let business_unit_id = if req.business_unit_id.is_empty() {
            None
        } else {
            Some(
                self.business_unit(conn, &req.business_unit_id)
                    .await?
                    .ok_or_else(|| ApiError::NotFound("business unit".into()))?,
            )
        };
        Ok(NewEvent {
            event: CustomerEvent {
                id: Uuid::now_v7(),
                customer_id,
                event_type_id: t.id,
                event_type_code: t.code.clone(),
                properties,
                business_unit_id,
                occurred_at: DateTime::from_timestamp_micros(occurred_at.timestamp_micros())
                    .unwrap_or(occurred_at),
                created_at: now_micros(),
                payload,
                purchase_id,
            },
            idempotency_key: req.idempotency_key.clone(),
            request_hash: hash,
        })
    }
}

/// The request hash of a TrackEvent request, the same for the same request: protobuf
/// encodes a map in its (random) iteration order, so the properties are hashed sorted.
fn track_hash(req: &pb::TrackEventRequest) -> String {
    let mut rest = req.clone();
    let properties: BTreeMap<String, String> =
        std::mem::take(&mut rest.properties).into_iter().collect();
    let canonical = format!(
        "{}|{}",
        hex::encode(prost::Message::encode_to_vec(&rest)),
        serde_json::to_string(&properties).unwrap_or_default()
    );
    request_hash(&canonical)
}

fn key_reused(key: &str) -> ApiError {
    ApiError::Conflict {
        reason: "IDEMPOTENCY_KEY_REUSED",
        message: format!(
            "idempotency_key {key:?} was already used for a different TrackEvent request"
        ),
    }
}

/// Records events and publishes EventTracked for each, in one transaction.
async fn write_events(
    db: &DatabaseConnection,
    partner_id: Uuid,
    new: &[NewEvent],
) -> Result<(), DbErr> {
    let txn = begin_write(db).await?;
    store::insert_events(&txn, partner_id, new).await?;
    store::enqueue_tracked(&txn, partner_id, new).await?;
    txn.commit().await
}

/// Records one event; when its key was recorded concurrently, answers what was recorded.
async fn write_one(
    db: &DatabaseConnection,
    partner_id: Uuid,
    n: NewEvent,
) -> Result<CustomerEvent, ApiError> {
    match write_events(db, partner_id, std::slice::from_ref(&n)).await {
        Ok(()) => Ok(n.event),
        Err(e) if is_unique_violation(&e) => {
            let found =
                store::events_by_keys(db, partner_id, vec![n.idempotency_key.clone()]).await?;
            match found.get(&n.idempotency_key) {
                Some((hash, event)) if *hash == n.request_hash => Ok(event.clone()),
                Some(_) => Err(key_reused(&n.idempotency_key)),
                None => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn track_event(
    api: &IdentityApi,
    request: Request<pb::TrackEventRequest>,
) -> Result<Response<pb::TrackEventResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(TRACKING_ROLES)?;
    let req = request.into_inner();
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    v.into_result()?;
    let hash = track_hash(&req);
    // A retry answers what was recorded, whatever changed since.
    let found =
        store::events_by_keys(&api.db, partner_id, vec![req.idempotency_key.clone()]).await?;
    if let Some((stored_hash, event)) = found.get(&req.idempotency_key) {
        if *stored_hash != hash {
            return Err(key_reused(&req.idempotency_key).into());
        }
        return Ok(Response::new(pb::TrackEventResponse {
            event: Some(customer_event_to_proto(event)),
        }));
    }
    let mut ctx = TrackContext::new(partner_id);
    let new = ctx.prepare(&api.db, &req, hash, Utc::now()).await?;
    let event = write_one(&api.db, partner_id, new).await?;
    Ok(Response::new(pb::TrackEventResponse {
        event: Some(customer_event_to_proto(&event)),
    }))
}

/// Accepted and rejected events of a TrackEvents stream.
#[derive(Default)]
struct Tally {
    accepted: i64,
    rejected: i64,
    rejections: Vec<pb::TrackEventRejection>,
}

impl Tally {
    fn reject(&mut self, index: i64, key: &str, field: &str, description: String, reason: &str) {
        self.rejected += 1;
        if self.rejections.len() < MAX_REJECTIONS {
            self.rejections.push(pb::TrackEventRejection {
                index,
                idempotency_key: key.to_owned(),
                field: field.to_owned(),
                description,
                reason: reason.to_owned(),
            });
        }
    }

    /// Reports a refused event; errors that are not about the event end the stream.
    fn reject_error(&mut self, index: i64, key: &str, e: ApiError) -> Result<(), ApiError> {
        match e {
            ApiError::InvalidArgument(violations) => {
                let field = violations
                    .first()
                    .map(|f| f.field.clone())
                    .unwrap_or_default();
                let description = violations
                    .iter()
                    .map(|f| format!("{}: {}", f.field, f.description))
                    .collect::<Vec<_>>()
                    .join("; ");
                self.reject(index, key, &field, description, "INVALID_ARGUMENT");
            }
            ApiError::NotFound(what) => {
                let field = match what.as_str() {
                    "customer" => "customer_id",
                    "event type" => "event_type_id",
                    "business unit" => "business_unit_id",
                    _ => "",
                };
                self.reject(index, key, field, format!("no such {what}"), "NOT_FOUND");
            }
            ApiError::FailedPrecondition { reason, message }
            | ApiError::Conflict { reason, message } => {
                self.reject(index, key, "", message, reason);
            }
            other => return Err(other),
        }
        Ok(())
    }
}

/// Validates and records one batch of a TrackEvents stream; `first_index` is the stream
/// position of its first event.
async fn track_batch(
    db: &DatabaseConnection,
    ctx: &mut TrackContext,
    tally: &mut Tally,
    batch: Vec<pb::TrackEventRequest>,
    first_index: i64,
) -> Result<(), ApiError> {
    let partner_id = ctx.partner_id;
    let now = Utc::now();
    // Earlier recordings of these keys, in one query.
    let keys: Vec<String> = batch
        .iter()
        .filter(|r| !r.idempotency_key.is_empty() && !ctx.recorded.contains_key(&r.idempotency_key))
        .map(|r| r.idempotency_key.clone())
        .collect();
    for (key, found) in store::events_by_keys(db, partner_id, keys).await? {
        ctx.recorded.insert(key, found);
    }
    // The batch's customers, in one query.
    let ids: Vec<Uuid> = batch
        .iter()
        .filter_map(|r| Uuid::try_parse(&r.customer_id).ok())
        .collect();
    ctx.load_customers(db, ids.into_iter()).await?;

    let mut pending: Vec<(i64, NewEvent)> = Vec::new();
    for (offset, req) in batch.into_iter().enumerate() {
        let index = first_index + offset as i64;
        let key = req.idempotency_key.clone();
        if offset >= MAX_BATCH {
            tally.reject(
                index,
                &key,
                "events",
                format!("a batch holds at most {MAX_BATCH} events"),
                "INVALID_ARGUMENT",
            );
            continue;
        }
        let hash = track_hash(&req);
        if let Some((stored, _)) = ctx.recorded.get(&key) {
            if *stored == hash {
                tally.accepted += 1;
            } else {
                tally.reject_error(index, &key, key_reused(&key))?;
            }
            continue;
        }
        match ctx.prepare(db, &req, hash.clone(), now).await {
            Ok(n) => {
                ctx.recorded.insert(key, (hash, n.event.clone()));
                pending.push((index, n));
            }
            Err(e) => tally.reject_error(index, &key, e)?,
        }
    }
    if pending.is_empty() {
        return Ok(());
    }
    let all: Vec<NewEvent> = pending.iter().map(|(_, n)| n.clone()).collect();
    match write_events(db, partner_id, &all).await {
        Ok(()) => tally.accepted += all.len() as i64,
        Err(_) => {
            // A key recorded concurrently (or another failure): record each on its own.
            for (index, n) in pending {
                let key = n.idempotency_key.clone();
                match write_one(db, partner_id, n).await {
                    Ok(_) => tally.accepted += 1,
                    Err(e) => {
                        ctx.recorded.remove(&key);
                        tally.reject_error(index, &key, e)?;
                    }
                }
            }
        }
    }
    Ok(())
}

pub(super) async fn track_events(
    api: &IdentityApi,
    request: Request<Streaming<pb::TrackEventsRequest>>,
) -> Result<Response<pb::TrackEventsResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(TRACKING_ROLES)?;
    let mut stream = request.into_inner();
    let mut ctx = TrackContext::new(partner_id);
    let mut tally = Tally::default();
    let mut index: i64 = 0;
    while let Some(batch) = stream.message().await? {
        let n = batch.events.len() as i64;
        track_batch(&api.db, &mut ctx, &mut tally, batch.events, index).await?;
        index += n;
    }
    Ok(Response::new(pb::TrackEventsResponse {
        accepted_count: tally.accepted,
        rejected_count: tally.rejected,
        rejections: tally.rejections,
    }))
}

pub(super) async fn list_customer_events(
    api: &IdentityApi,
    request: Request<pb::ListCustomerEventsRequest>,
) -> Result<Response<pb::ListCustomerEventsResponse>, Status> {
    let partner_id = principal(&request)?.partner()?;
    let req = request.into_inner();
    let mut v = Violations::new();
    let customer_id = v.check(
        "customer_id",
        parse_uuid("customer_id", &req.customer_id).map_err(|_| "must be a UUID"),
    );
    let limit = page_size(&mut v, req.page_size);
    let after = parse_time_token(&mut v, &req.page_token);
    let start = optional_time(&mut v, "start_time", req.start_time.as_ref());
    let end = optional_time(&mut v, "end_time", req.end_time.as_ref());
    if let (Some(s), Some(e)) = (start, end)
        && e <= s
    {
        v.add("end_time", "must be after start_time");
    }
    v.into_result()?;
    let customer = super::consents::customer_of(
        &api.store,
        &api.db,
        partner_id,
        customer_id.unwrap_or_default(),
    )
    .await?;
    let event_type_id = if req.event_type_id.is_empty() {
        None
    } else {
        Some(
            store::get_type(&api.db, partner_id, &req.event_type_id)
                .await?
                .ok_or_else(|| ApiError::NotFound("event type".into()))?
                .id,
        )
    };
    let filter = EventFilter {
        event_type_id,
        start,
        end,
    };
    let found = store::list_events(&api.db, partner_id, customer.id, &filter, after, limit).await?;
    Ok(Response::new(pb::ListCustomerEventsResponse {
        next_page_token: time_token(
            found.len(),
            limit,
            found.last().map(|e| (e.occurred_at, e.id)),
        ),
        events: found.iter().map(customer_event_to_proto).collect(),
    }))
}

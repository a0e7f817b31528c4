//! Event types (the partner's own; built-in ones live in the domain) and tracked customer
//! events, scoped by partner. Also what merging, erasing and exporting a customer needs.
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use loyalty_platform::{
    ApiError, db::is_unique_violation, entities::outbox, events::DomainEvent, time::to_timestamp,
};
use loyalty_proto::events::v1 as ev;
use prost::Message;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::activity::{
    CustomerEvent, EventType, PropertyDefinition, PropertyType, built_in, built_in_types,
};

pub mod entities {
    pub mod event_types {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "event_types")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub partner_id: Uuid,
            pub code: String,
            pub display_name: String,
            pub group_name: String,
            pub properties: Json,
            pub active: bool,
            pub revision: i64,
            pub created_at: DateTimeUtc,
            pub updated_at: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod customer_events {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "customer_events")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub partner_id: Uuid,
            pub customer_id: Uuid,
            pub event_type_id: Uuid,
            pub event_type_code: String,
            pub properties: Json,
            pub business_unit_id: Option<Uuid>,
            pub occurred_at: DateTimeUtc,
            pub created_at: DateTimeUtc,
            pub payload: String,
            pub purchase_id: String,
            pub idempotency_key: String,
            pub request_hash: String,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }
}

use entities::{customer_events as ce, event_types as et};

/// How property definitions are stored (JSON array).
#[derive(Serialize, Deserialize)]
struct StoredProperty {
    key: String,
    display_name: String,
    #[serde(rename = "type")]
    property_type: String,
    required: bool,
}

fn type_name(t: PropertyType) -> &'static str {
    match t {
        PropertyType::String => "string",
        PropertyType::Integer => "integer",
        PropertyType::Boolean => "boolean",
        PropertyType::Timestamp => "timestamp",
        PropertyType::MoneyMinor => "money_minor",
    }
}

fn type_from_name(s: &str) -> Option<PropertyType> {
    Some(match s {
        "string" => PropertyType::String,
        "integer" => PropertyType::Integer,
        "boolean" => PropertyType::Boolean,
        "timestamp" => PropertyType::Timestamp,
        "money_minor" => PropertyType::MoneyMinor,
        _ => return None,
    })
}

fn properties_json(props: &[PropertyDefinition]) -> Result<serde_json::Value, ApiError> {
    let stored: Vec<StoredProperty> = props
        .iter()
        .map(|p| StoredProperty {
            key: p.key.clone(),
            display_name: p.display_name.clone(),
            property_type: type_name(p.property_type).to_owned(),
            required: p.required,
        })
        .collect();
    serde_json::to_value(stored).map_err(|e| ApiError::Internal(e.into()))
}

fn event_type_from(m: et::Model) -> Result<EventType, ApiError> {
    let stored: Vec<StoredProperty> = serde_json::from_value(m.properties)
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("event type properties")))?;
    let properties = stored
        .into_iter()
        .map(|p| {
            Ok(PropertyDefinition {
                property_type: type_from_name(&p.property_type).ok_or_else(|| {
                    ApiError::Internal(anyhow::anyhow!("unknown property type {}", p.property_type))
                })?,
                key: p.key,
                display_name: p.display_name,
                required: p.required,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(EventType {
        id: m.id,
        code: m.code,
        display_name: m.display_name,
        group: m.group_name,
        properties,
        active: m.active,
        built_in: false,
        revision: m.revision,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

pub async fn insert_type(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    t: &EventType,
) -> Result<(), ApiError> {
    et::Entity::insert(et::ActiveModel {
        id: Set(t.id),
        partner_id: Set(partner_id),
        code: Set(t.code.clone()),
        display_name: Set(t.display_name.clone()),
        group_name: Set(t.group.clone()),
        properties: Set(properties_json(&t.properties)?),
        active: Set(t.active),
        revision: Set(t.revision),
        created_at: Set(t.created_at),
        updated_at: Set(t.updated_at),
    })
    .exec_without_returning(conn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            ApiError::AlreadyExists(format!("event type with code {:?}", t.code))
        } else {
            e.into()
        }
    })?;
    Ok(())
}

/// Writes `t` if its stored revision is still `expected`; `false` if it moved on.
pub async fn update_type(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    t: &EventType,
    expected: i64,
) -> Result<bool, ApiError> {
    let res = et::Entity::update_many()
        .col_expr(et::Column::DisplayName, Expr::value(t.display_name.clone()))
        .col_expr(et::Column::GroupName, Expr::value(t.group.clone()))
        .col_expr(
            et::Column::Properties,
            Expr::value(properties_json(&t.properties)?),
        )
        .col_expr(et::Column::Active, Expr::value(t.active))
        .col_expr(et::Column::Revision, Expr::value(t.revision))
        .col_expr(et::Column::UpdatedAt, Expr::value(t.updated_at))
        .filter(et::Column::PartnerId.eq(partner_id))
        .filter(et::Column::Id.eq(t.id))
        .filter(et::Column::Revision.eq(expected))
        .exec(conn)
        .await?;
    Ok(res.rows_affected == 1)
}

/// An event type by UUID or code: a built-in one or one of the partner's.
pub async fn get_type(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id_or_code: &str,
) -> Result<Option<EventType>, ApiError> {
    if let Some(t) = built_in(id_or_code) {
        return Ok(Some(t));
    }
    let q = et::Entity::find().filter(et::Column::PartnerId.eq(partner_id));
    let q = match Uuid::try_parse(id_or_code) {
        Ok(id) => q.filter(et::Column::Id.eq(id)),
        Err(_) => q.filter(et::Column::Code.eq(id_or_code)),
    };
    q.one(conn).await?.map(event_type_from).transpose()
}

/// A page of event types (built-in and the partner's) ordered by code, after `after`.
pub async fn list_types(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    group: Option<&str>,
    include_inactive: bool,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<EventType>, ApiError> {
    let mut q = et::Entity::find().filter(et::Column::PartnerId.eq(partner_id));
    if !include_inactive {
        q = q.filter(et::Column::Active.eq(true));
    }
    if let Some(g) = group {
        q = q.filter(et::Column::GroupName.eq(g));
    }
    if let Some(after) = after {
        q = q.filter(et::Column::Code.gt(after));
    }
    let mut all: Vec<EventType> = q
        .order_by_asc(et::Column::Code)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(event_type_from)
        .collect::<Result<_, _>>()?;
    all.extend(built_in_types().into_iter().filter(|t| {
        group.is_none_or(|g| t.group == g) && after.is_none_or(|a| t.code.as_str() > a)
    }));
    all.sort_by(|a, b| a.code.cmp(&b.code));
    all.truncate(limit as usize);
    Ok(all)
}

/// A customer event to insert, with the idempotency key and request hash it was tracked with.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event: CustomerEvent,
    pub idempotency_key: String,
    pub request_hash: String,
}

fn event_from(m: ce::Model) -> CustomerEvent {
    CustomerEvent {
        id: m.id,
        customer_id: m.customer_id,
        event_type_id: m.event_type_id,
        event_type_code: m.event_type_code,
        properties: serde_json::from_value(m.properties).unwrap_or_default(),
        business_unit_id: m.business_unit_id,
        occurred_at: m.occurred_at,
        created_at: m.created_at,
        payload: m.payload,
        purchase_id: m.purchase_id,
    }
}

fn active_model(partner_id: Uuid, n: &NewEvent) -> Result<ce::ActiveModel, DbErr> {
    let e = &n.event;
    Ok(ce::ActiveModel {
        id: Set(e.id),
        partner_id: Set(partner_id),
        customer_id: Set(e.customer_id),
        event_type_id: Set(e.event_type_id),
        event_type_code: Set(e.event_type_code.clone()),
        properties: Set(
            serde_json::to_value(&e.properties).map_err(|e| DbErr::Custom(e.to_string()))?
        ),
        business_unit_id: Set(e.business_unit_id),
        occurred_at: Set(e.occurred_at),
        created_at: Set(e.created_at),
        payload: Set(e.payload.clone()),
        purchase_id: Set(e.purchase_id.clone()),
        idempotency_key: Set(n.idempotency_key.clone()),
        request_hash: Set(n.request_hash.clone()),
    })
}

/// Inserts events in one statement. A unique violation means an idempotency key was
/// recorded concurrently; the caller tells it apart with `is_unique_violation`.
pub async fn insert_events(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    events: &[NewEvent],
) -> Result<(), DbErr> {
    if events.is_empty() {
        return Ok(());
    }
    let models = events
        .iter()
        .map(|n| active_model(partner_id, n))
        .collect::<Result<Vec<_>, _>>()?;
    ce::Entity::insert_many(models)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// The EventTracked event of a recorded event.
pub fn tracked_event(e: &CustomerEvent) -> ev::EventTracked {
    ev::EventTracked {
        customer_id: e.customer_id.to_string(),
        customer_event_id: e.id.to_string(),
        event_type_code: e.event_type_code.clone(),
        properties: e.properties.clone().into_iter().collect(),
        business_unit_id: e
            .business_unit_id
            .map(|i| i.to_string())
            .unwrap_or_default(),
        occur_time: Some(to_timestamp(e.occurred_at)),
    }
}

/// Publishes EventTracked for each event: appends them to the outbox in one statement, as
/// `events::enqueue` would one by one (bulk tracking writes a batch in two statements).
pub async fn enqueue_tracked(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    events: &[NewEvent],
) -> Result<(), DbErr> {
    if events.is_empty() {
        return Ok(());
    }
    let traceparent = loyalty_platform::telemetry::current_traceparent();
    let now = Utc::now();
    let rows = events.iter().map(|n| outbox::ActiveModel {
        event_id: Set(Uuid::now_v7()),
        event_type: Set(ev::EventTracked::TYPE.to_owned()),
        partner_id: Set(Some(partner_id)),
        payload: Set(tracked_event(&n.event).encode_to_vec()),
        traceparent: Set(traceparent.clone()),
        occurred_at: Set(now),
        published_at: Set(None),
        ..Default::default()
    });
    outbox::Entity::insert_many(rows)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// The states of those of `ids` that are customers of the partner.
pub async fn customer_states(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, String>, ApiError> {
    use super::entities::customers;
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(customers::Entity::find()
        .filter(customers::Column::PartnerId.eq(partner_id))
        .filter(customers::Column::Id.is_in(ids.iter().copied()))
        .all(conn)
        .await?
        .into_iter()
        .map(|m| (m.id, m.state))
        .collect())
}

/// Events already recorded under the given idempotency keys, with their request hashes.
pub async fn events_by_keys(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    keys: Vec<String>,
) -> Result<BTreeMap<String, (String, CustomerEvent)>, ApiError> {
    if keys.is_empty() {
        return Ok(BTreeMap::new());
    }
    Ok(ce::Entity::find()
        .filter(ce::Column::PartnerId.eq(partner_id))
        .filter(ce::Column::IdempotencyKey.is_in(keys))
        .all(conn)
        .await?
        .into_iter()
        .map(|m| {
            let key = m.idempotency_key.clone();
            let hash = m.request_hash.clone();
            (key, (hash, event_from(m)))
        })
        .collect())
}

/// Filters of ListCustomerEvents.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub event_type_id: Option<Uuid>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

/// A page of a customer's events, newest first (by occurrence, then id), after `after`.
pub async fn list_events(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    filter: &EventFilter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: u64,
) -> Result<Vec<CustomerEvent>, ApiError> {
    let mut q = ce::Entity::find()
        .filter(ce::Column::PartnerId.eq(partner_id))
        .filter(ce::Column::CustomerId.eq(customer_id));
    if let Some(t) = filter.event_type_id {
        q = q.filter(ce::Column::EventTypeId.eq(t));
    }
    if let Some(s) = filter.start {
        q = q.filter(ce::Column::OccurredAt.gte(s));
    }
    if let Some(e) = filter.end {
        q = q.filter(ce::Column::OccurredAt.lt(e));
    }
    if let Some(after) = after {
        q = q.filter(loyalty_platform::paging::older_than(
            ce::Column::OccurredAt,
            ce::Column::Id,
            after,
        ));
    }
    Ok(q.order_by_desc(ce::Column::OccurredAt)
        .order_by_desc(ce::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(event_from)
        .collect())
}

/// Every event of a customer (for export), oldest first.
pub async fn all_events(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<Vec<CustomerEvent>, ApiError> {
    Ok(ce::Entity::find()
        .filter(ce::Column::PartnerId.eq(partner_id))
        .filter(ce::Column::CustomerId.eq(customer_id))
        .order_by_asc(ce::Column::OccurredAt)
        .order_by_asc(ce::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .map(event_from)
        .collect())
}

/// Moves a merged customer's tracked events to the surviving customer.
pub async fn move_customer(
    txn: &impl ConnectionTrait,
    partner_id: Uuid,
    from: Uuid,
    to: Uuid,
) -> Result<(), ApiError> {
    ce::Entity::update_many()
        .col_expr(ce::Column::CustomerId, Expr::value(to))
        .filter(ce::Column::PartnerId.eq(partner_id))
        .filter(ce::Column::CustomerId.eq(from))
        .exec(txn)
        .await?;
    Ok(())
}

/// Removes the personal data of a customer's events: their properties and payloads. What
/// happened when (type, time, business unit, purchase reference) stays as an anonymous trace.
pub async fn erase_customer(
    txn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<(), ApiError> {
    ce::Entity::update_many()
        .col_expr(ce::Column::Properties, Expr::value(serde_json::json!({})))
        .col_expr(ce::Column::Payload, Expr::value(String::new()))
        .filter(ce::Column::PartnerId.eq(partner_id))
        .filter(ce::Column::CustomerId.eq(customer_id))
        .exec(txn)
        .await?;
    Ok(())
}

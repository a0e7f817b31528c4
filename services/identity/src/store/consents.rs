//! Consent types, customers' current consents, the append-only consent history and email
//! bounce states, scoped by partner. Also what merging, erasing and exporting a customer
//! needs of them.
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use loyalty_platform::ApiError;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use loyalty_platform::{
    events::{self, EventHandler},
    time::from_timestamp,
};
use loyalty_proto::events::v1::{self as ev, EventEnvelope};
use prost::Message;

use super::Store;
use crate::domain::{
    Customer,
    consents::{
        BounceKind, BounceState, Channel, Consent, ConsentState, ConsentType, Decision,
        HistoryEntry, Purpose, same_email,
    },
};

pub mod entities {
    pub mod consent_types {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "consent_types")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub partner_id: Uuid,
            pub code: String,
            pub display_name: String,
            pub purpose: String,
            pub channels: Json,
            pub text: String,
            pub version: i32,
            pub validity_days: i32,
            pub active: bool,
            pub revision: i64,
            pub created_at: DateTimeUtc,
            pub updated_at: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod consents {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "consents")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub partner_id: Uuid,
            #[sea_orm(primary_key, auto_increment = false)]
            pub customer_id: Uuid,
            #[sea_orm(primary_key, auto_increment = false)]
            pub consent_type_id: Uuid,
            pub state: String,
            pub text_version: i32,
            pub source: String,
            pub changed_at: DateTimeUtc,
            pub expires_at: Option<DateTimeUtc>,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod consent_history {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "consent_history")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub partner_id: Uuid,
            pub customer_id: Uuid,
            pub consent_type_id: Uuid,
            pub previous_state: String,
            pub new_state: String,
            pub text_version: i32,
            pub source: String,
            pub api_key_id: Option<Uuid>,
            pub note: String,
            pub changed_at: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod email_bounce_states {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "email_bounce_states")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub partner_id: Uuid,
            #[sea_orm(primary_key, auto_increment = false)]
            pub customer_id: Uuid,
            pub email: String,
            pub hard_bounced: bool,
            pub soft_bounce_count: i32,
            pub last_bounce_at: Option<DateTimeUtc>,
            pub reset_at: Option<DateTimeUtc>,
            pub updated_at: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod email_bounces {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "email_bounces")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub partner_id: Uuid,
            #[sea_orm(primary_key, auto_increment = false)]
            pub bounce_key: String,
            pub customer_id: Uuid,
            pub hard: bool,
            pub bounced_at: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }
}

use entities::{consent_history as ch, consent_types as ct, consents as cs};
use entities::{email_bounce_states as bs, email_bounces as bb};

fn json(v: impl serde::Serialize) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::Internal(e.into()))
}

fn type_from(m: ct::Model) -> Result<ConsentType, ApiError> {
    let channels: Vec<String> = serde_json::from_value(m.channels).unwrap_or_default();
    Ok(ConsentType {
        id: m.id,
        purpose: Purpose::parse_str(&m.purpose).ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("unknown consent purpose {}", m.purpose))
        })?,
        code: m.code,
        display_name: m.display_name,
        channels: channels
            .iter()
            .filter_map(|c| Channel::parse_str(c))
            .collect(),
        text: m.text,
        version: m.version,
        validity_days: m.validity_days,
        active: m.active,
        revision: m.revision,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn channel_names(t: &ConsentType) -> Vec<&'static str> {
    t.channels.iter().map(|c| c.as_str()).collect()
}

fn taken(e: sea_orm::DbErr, code: &str) -> ApiError {
    loyalty_platform::db::taken(e, || format!("consent type with code {code:?}"))
}

pub async fn insert_type(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    t: &ConsentType,
) -> Result<(), ApiError> {
    ct::Entity::insert(ct::ActiveModel {
        id: Set(t.id),
        partner_id: Set(partner_id),
        code: Set(t.code.clone()),
        display_name: Set(t.display_name.clone()),
        purpose: Set(t.purpose.as_str().to_owned()),
        channels: Set(json(channel_names(t))?),
        text: Set(t.text.clone()),
        version: Set(t.version),
        validity_days: Set(t.validity_days),
        active: Set(t.active),
        revision: Set(t.revision),
        created_at: Set(t.created_at),
        updated_at: Set(t.updated_at),
    })
    .exec_without_returning(conn)
    .await
    .map_err(|e| taken(e, &t.code))?;
    Ok(())
}

/// Writes `t` if its stored revision is still `expected`; `false` if it moved on.
pub async fn update_type(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    t: &ConsentType,
    expected: i64,
) -> Result<bool, ApiError> {
    let res = ct::Entity::update_many()
        .col_expr(ct::Column::DisplayName, Expr::value(t.display_name.clone()))
        .col_expr(ct::Column::Channels, Expr::value(json(channel_names(t))?))
        .col_expr(ct::Column::Text, Expr::value(t.text.clone()))
        .col_expr(ct::Column::Version, Expr::value(t.version))
        .col_expr(ct::Column::ValidityDays, Expr::value(t.validity_days))
        .col_expr(ct::Column::Active, Expr::value(t.active))
        .col_expr(ct::Column::Revision, Expr::value(t.revision))
        .col_expr(ct::Column::UpdatedAt, Expr::value(t.updated_at))
        .filter(ct::Column::PartnerId.eq(partner_id))
        .filter(ct::Column::Id.eq(t.id))
        .filter(ct::Column::Revision.eq(expected))
        .exec(conn)
        .await?;
    Ok(res.rows_affected == 1)
}

/// A consent type by UUID or code.
pub async fn get_type(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id_or_code: &str,
) -> Result<Option<ConsentType>, ApiError> {
    let q = ct::Entity::find().filter(ct::Column::PartnerId.eq(partner_id));
    let q = match Uuid::try_parse(id_or_code) {
        Ok(id) => q.filter(ct::Column::Id.eq(id)),
        Err(_) => q.filter(ct::Column::Code.eq(id_or_code)),
    };
    q.one(conn).await?.map(type_from).transpose()
}

/// A page of consent types ordered by code, after the code `after`.
pub async fn list_types(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    include_inactive: bool,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<ConsentType>, ApiError> {
    let mut q = ct::Entity::find().filter(ct::Column::PartnerId.eq(partner_id));
    if !include_inactive {
        q = q.filter(ct::Column::Active.eq(true));
    }
    if let Some(after) = after {
        q = q.filter(ct::Column::Code.gt(after));
    }
    q.order_by_asc(ct::Column::Code)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(type_from)
        .collect()
}

/// Consent types by id (for history and export), in no particular order.
pub async fn types_by_id(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    ids: Vec<Uuid>,
) -> Result<HashMap<Uuid, ConsentType>, ApiError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    ct::Entity::find()
        .filter(ct::Column::PartnerId.eq(partner_id))
        .filter(ct::Column::Id.is_in(ids))
        .all(conn)
        .await?
        .into_iter()
        .map(|m| type_from(m).map(|t| (t.id, t)))
        .collect()
}

fn consent_from(m: cs::Model) -> Consent {
    Consent {
        customer_id: m.customer_id,
        consent_type_id: m.consent_type_id,
        decision: Decision::parse_str(&m.state).unwrap_or(Decision::Withdrawn),
        text_version: m.text_version,
        source: m.source,
        changed_at: m.changed_at,
        expires_at: m.expires_at,
    }
}

/// The current consent of a customer on one type.
pub async fn consent(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    consent_type_id: Uuid,
) -> Result<Option<Consent>, ApiError> {
    Ok(
        cs::Entity::find_by_id((partner_id, customer_id, consent_type_id))
            .one(conn)
            .await?
            .map(consent_from),
    )
}

/// The current consents of a customer on the given types.
pub async fn consents_of(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    consent_type_ids: Option<Vec<Uuid>>,
) -> Result<Vec<Consent>, ApiError> {
    let mut q = cs::Entity::find()
        .filter(cs::Column::PartnerId.eq(partner_id))
        .filter(cs::Column::CustomerId.eq(customer_id));
    if let Some(ids) = consent_type_ids {
        q = q.filter(cs::Column::ConsentTypeId.is_in(ids));
    }
    Ok(q.all(conn).await?.into_iter().map(consent_from).collect())
}

/// Every current consent of a customer (for export), ordered by consent type id.
pub async fn all_consents(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<Vec<Consent>, ApiError> {
    let mut all = consents_of(conn, partner_id, customer_id, None).await?;
    all.sort_by_key(|c| c.consent_type_id);
    Ok(all)
}

/// Inserts or replaces the current consent.
pub async fn put_consent(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    c: &Consent,
) -> Result<(), ApiError> {
    cs::Entity::delete_many()
        .filter(cs::Column::PartnerId.eq(partner_id))
        .filter(cs::Column::CustomerId.eq(c.customer_id))
        .filter(cs::Column::ConsentTypeId.eq(c.consent_type_id))
        .exec(conn)
        .await?;
    cs::Entity::insert(cs::ActiveModel {
        partner_id: Set(partner_id),
        customer_id: Set(c.customer_id),
        consent_type_id: Set(c.consent_type_id),
        state: Set(c.decision.as_str().to_owned()),
        text_version: Set(c.text_version),
        source: Set(c.source.clone()),
        changed_at: Set(c.changed_at),
        expires_at: Set(c.expires_at),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

fn entry_from(m: ch::Model) -> HistoryEntry {
    HistoryEntry {
        id: m.id,
        customer_id: m.customer_id,
        consent_type_id: m.consent_type_id,
        previous_state: ConsentState::parse_str(&m.previous_state),
        new_state: ConsentState::parse_str(&m.new_state),
        text_version: m.text_version,
        source: m.source,
        api_key_id: m.api_key_id,
        note: m.note,
        changed_at: m.changed_at,
    }
}

pub async fn append_history(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    e: &HistoryEntry,
) -> Result<(), ApiError> {
    ch::Entity::insert(ch::ActiveModel {
        id: Set(e.id),
        partner_id: Set(partner_id),
        customer_id: Set(e.customer_id),
        consent_type_id: Set(e.consent_type_id),
        previous_state: Set(e.previous_state.as_str().to_owned()),
        new_state: Set(e.new_state.as_str().to_owned()),
        text_version: Set(e.text_version),
        source: Set(e.source.clone()),
        api_key_id: Set(e.api_key_id),
        note: Set(e.note.clone()),
        changed_at: Set(e.changed_at),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// A page of a customer's history, newest first (by change time, then id), after `after`.
pub async fn history(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    consent_type_id: Option<Uuid>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: u64,
) -> Result<Vec<HistoryEntry>, ApiError> {
    let mut q = ch::Entity::find()
        .filter(ch::Column::PartnerId.eq(partner_id))
        .filter(ch::Column::CustomerId.eq(customer_id));
    if let Some(t) = consent_type_id {
        q = q.filter(ch::Column::ConsentTypeId.eq(t));
    }
    if let Some(after) = after {
        q = q.filter(loyalty_platform::paging::older_than(
            ch::Column::ChangedAt,
            ch::Column::Id,
            after,
        ));
    }
    Ok(q.order_by_desc(ch::Column::ChangedAt)
        .order_by_desc(ch::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(entry_from)
        .collect())
}

/// Every history entry of a customer (for export), oldest first.
pub async fn all_history(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<Vec<HistoryEntry>, ApiError> {
    Ok(ch::Entity::find()
        .filter(ch::Column::PartnerId.eq(partner_id))
        .filter(ch::Column::CustomerId.eq(customer_id))
        .order_by_asc(ch::Column::ChangedAt)
        .order_by_asc(ch::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .map(entry_from)
        .collect())
}

fn bounce_from(m: bs::Model) -> BounceState {
    BounceState {
        customer_id: m.customer_id,
        email: m.email,
        hard_bounced: m.hard_bounced,
        soft_bounce_count: m.soft_bounce_count,
        last_bounce_at: m.last_bounce_at,
        reset_at: m.reset_at,
    }
}

/// The stored bounce state of a customer (whatever address it was recorded for).
pub async fn bounce_state(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<Option<BounceState>, ApiError> {
    Ok(bs::Entity::find_by_id((partner_id, customer_id))
        .one(conn)
        .await?
        .map(bounce_from))
}

pub async fn put_bounce_state(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    s: &BounceState,
) -> Result<(), ApiError> {
    bs::Entity::delete_many()
        .filter(bs::Column::PartnerId.eq(partner_id))
        .filter(bs::Column::CustomerId.eq(s.customer_id))
        .exec(conn)
        .await?;
    bs::Entity::insert(bs::ActiveModel {
        partner_id: Set(partner_id),
        customer_id: Set(s.customer_id),
        email: Set(s.email.clone()),
        hard_bounced: Set(s.hard_bounced),
        soft_bounce_count: Set(s.soft_bounce_count),
        last_bounce_at: Set(s.last_bounce_at),
        reset_at: Set(s.reset_at),
        updated_at: Set(Utc::now()),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Remembers a bounce under each of `keys`; `false` if any of them was counted before (the
/// same message, idempotency key or event id), in which case nothing is written.
pub async fn remember_bounce(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    keys: &[String],
    hard: bool,
    at: DateTime<Utc>,
) -> Result<bool, ApiError> {
    let seen = bb::Entity::find()
        .filter(bb::Column::PartnerId.eq(partner_id))
        .filter(bb::Column::BounceKey.is_in(keys.iter().cloned()))
        .one(conn)
        .await?;
    if seen.is_some() {
        return Ok(false);
    }
    bb::Entity::insert_many(keys.iter().map(|k| bb::ActiveModel {
        partner_id: Set(partner_id),
        bounce_key: Set(k.clone()),
        customer_id: Set(customer_id),
        hard: Set(hard),
        bounced_at: Set(at),
    }))
    .exec_without_returning(conn)
    .await?;
    Ok(true)
}

/// Moves a merged customer's consents, history and bounce state to the surviving customer.
/// Where both have a consent of the same type, the most recent decision wins; the survivor's
/// bounce state is kept when it has one (it belongs to the survivor's address).
pub async fn move_customer(
    txn: &impl ConnectionTrait,
    partner_id: Uuid,
    from: Uuid,
    to: Uuid,
) -> Result<(), ApiError> {
    if from == to {
        return Ok(());
    }
    let theirs = consents_of(txn, partner_id, from, None).await?;
    let ours: HashMap<Uuid, Consent> = consents_of(txn, partner_id, to, None)
        .await?
        .into_iter()
        .map(|c| (c.consent_type_id, c))
        .collect();
    for c in theirs {
        let wins = ours
            .get(&c.consent_type_id)
            .is_none_or(|o| o.changed_at < c.changed_at);
        if wins {
            put_consent(
                txn,
                partner_id,
                &Consent {
                    customer_id: to,
                    ..c.clone()
                },
            )
            .await?;
        }
    }
    cs::Entity::delete_many()
        .filter(cs::Column::PartnerId.eq(partner_id))
        .filter(cs::Column::CustomerId.eq(from))
        .exec(txn)
        .await?;
    ch::Entity::update_many()
        .col_expr(ch::Column::CustomerId, Expr::value(to))
        .filter(ch::Column::PartnerId.eq(partner_id))
        .filter(ch::Column::CustomerId.eq(from))
        .exec(txn)
        .await?;
    if let Some(state) = bounce_state(txn, partner_id, from).await? {
        if bounce_state(txn, partner_id, to).await?.is_none() {
            put_bounce_state(
                txn,
                partner_id,
                &BounceState {
                    customer_id: to,
                    ..state
                },
            )
            .await?;
        }
        bs::Entity::delete_many()
            .filter(bs::Column::PartnerId.eq(partner_id))
            .filter(bs::Column::CustomerId.eq(from))
            .exec(txn)
            .await?;
    }
    bb::Entity::update_many()
        .col_expr(bb::Column::CustomerId, Expr::value(to))
        .filter(bb::Column::PartnerId.eq(partner_id))
        .filter(bb::Column::CustomerId.eq(from))
        .exec(txn)
        .await?;
    Ok(())
}

/// Removes a customer's personal data from consents and bounce state: the consent evidence
/// (states, text versions, sources, times) stays, free-text notes go; the bounce state loses
/// its address.
pub async fn erase_customer(
    txn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<(), ApiError> {
    ch::Entity::update_many()
        .col_expr(ch::Column::Note, Expr::value(String::new()))
        .filter(ch::Column::PartnerId.eq(partner_id))
        .filter(ch::Column::CustomerId.eq(customer_id))
        .exec(txn)
        .await?;
    bs::Entity::update_many()
        .col_expr(bs::Column::Email, Expr::value(String::new()))
        .col_expr(bs::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(bs::Column::PartnerId.eq(partner_id))
        .filter(bs::Column::CustomerId.eq(customer_id))
        .exec(txn)
        .await?;
    Ok(())
}

/// The EmailBounceStateChanged event of a state.
pub fn bounce_changed(s: &BounceState) -> ev::EmailBounceStateChanged {
    ev::EmailBounceStateChanged {
        customer_id: s.customer_id.to_string(),
        hard_bounced: s.hard_bounced,
        soft_bounce_count: s.soft_bounce_count,
        excluded: s.excluded(),
    }
}

/// Counts a bounce of `address` into the customer's bounce state, once per key (see
/// [`remember_bounce`]), and publishes EmailBounceStateChanged. A bounce of an address that
/// is no longer the customer's email is ignored. Returns the state after.
pub async fn apply_bounce(
    txn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer: &Customer,
    address: &str,
    kind: BounceKind,
    at: DateTime<Utc>,
    keys: &[String],
) -> Result<BounceState, ApiError> {
    let email = &customer.profile.email;
    let current = bounce_state(txn, partner_id, customer.id)
        .await?
        .map(|s| s.for_current_email(email))
        .unwrap_or_else(|| BounceState::clean(customer.id, email));
    if email.is_empty() || !same_email(address, email) {
        return Ok(current);
    }
    let hard = kind == BounceKind::Hard;
    if !remember_bounce(txn, partner_id, customer.id, keys, hard, at).await? {
        return Ok(current);
    }
    let mut next = current;
    next.record(kind, at);
    put_bounce_state(txn, partner_id, &next).await?;
    events::enqueue(txn, Some(partner_id), &bounce_changed(&next)).await?;
    Ok(next)
}

/// A successful delivery to the customer's address ends a run of soft bounces.
pub async fn apply_delivery(
    txn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer: &Customer,
) -> Result<(), ApiError> {
    let Some(stored) = bounce_state(txn, partner_id, customer.id).await? else {
        return Ok(());
    };
    let mut state = stored.for_current_email(&customer.profile.email);
    if state.delivered() {
        put_bounce_state(txn, partner_id, &state).await?;
        events::enqueue(txn, Some(partner_id), &bounce_changed(&state)).await?;
    }
    Ok(())
}

/// Fully-qualified names of the campaigns events the delivery feedback applies.
pub const MESSAGE_BOUNCED: &str = "loyalty.events.v1.MessageBounced";
pub const MESSAGE_DELIVERED: &str = "loyalty.events.v1.MessageDelivered";

/// Applies campaigns' delivery events to email bounce states: MessageBounced counts a bounce
/// (keyed by the event id and the message id, so a bounce also reported through
/// RecordEmailBounce counts once), MessageDelivered ends a run of soft bounces. Events of
/// other channels, unknown customers or other addresses change nothing.
pub struct DeliveryFeedback {
    store: Store,
}

impl DeliveryFeedback {
    pub fn new(store: Store) -> Self {
        DeliveryFeedback { store }
    }
}

fn is_email_channel(channel: &str) -> bool {
    channel.is_empty() || channel.to_ascii_lowercase().contains("email")
}

#[async_trait::async_trait]
impl EventHandler for DeliveryFeedback {
    fn handles(&self, event_type: &str) -> bool {
        event_type == MESSAGE_BOUNCED || event_type == MESSAGE_DELIVERED
    }

    async fn apply(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        event: &EventEnvelope,
    ) -> anyhow::Result<()> {
        let Ok(partner_id) = Uuid::try_parse(&event.partner_id) else {
            tracing::warn!(event_id = %event.event_id, "delivery event without a partner; skipped");
            return Ok(());
        };
        let (customer_id, channel, bounce) = if event.event_type == MESSAGE_BOUNCED {
            let Ok(b) = ev::MessageBounced::decode(event.payload.as_slice()) else {
                tracing::warn!(event_id = %event.event_id, "undecodable MessageBounced; skipped");
                return Ok(());
            };
            (b.customer_id.clone(), b.channel.clone(), Some(b))
        } else {
            let Ok(d) = ev::MessageDelivered::decode(event.payload.as_slice()) else {
                tracing::warn!(event_id = %event.event_id, "undecodable MessageDelivered; skipped");
                return Ok(());
            };
            (d.customer_id, d.channel, None)
        };
        if !is_email_channel(&channel) {
            return Ok(());
        }
        let Ok(customer_id) = Uuid::try_parse(&customer_id) else {
            return Ok(());
        };
        let Some(customer) = self.store.customer(txn, partner_id, customer_id).await? else {
            return Ok(());
        };
        match bounce {
            Some(b) => {
                let at = event
                    .occur_time
                    .as_ref()
                    .and_then(from_timestamp)
                    .unwrap_or_else(Utc::now);
                let mut keys = vec![format!("key:{}", event.event_id)];
                if !b.message_id.is_empty() {
                    keys.push(format!("message:{}", b.message_id));
                }
                let kind = if b.hard {
                    BounceKind::Hard
                } else {
                    BounceKind::Soft
                };
                apply_bounce(txn, partner_id, &customer, &b.address, kind, at, &keys).await?;
            }
            None => apply_delivery(txn, partner_id, &customer).await?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Against a real PostgreSQL database, migrated with the identity Migrator.
    use std::collections::BTreeMap;

    use chrono::Duration;
    use loyalty_platform::entities::outbox;
    use loyalty_testkit::TestDb;
    use sea_orm::{Database, DatabaseConnection, PaginatorTrait, TransactionTrait};
    use sea_orm_migration::MigratorTrait;

    use super::*;
    use crate::{
        domain::{Customer, CustomerProfile, activity::CustomerEvent, now_micros},
        store::activity::{self, NewEvent},
    };

    async fn database() -> (TestDb, DatabaseConnection) {
        let test_db = TestDb::postgres()
            .await
            .expect("PostgreSQL on 127.0.0.1:5432");
        let db = Database::connect(test_db.url()).await.expect("connect");
        crate::migration::Migrator::up(&db, None)
            .await
            .expect("migrate");
        (test_db, db)
    }

    async fn customer(db: &DatabaseConnection, partner_id: Uuid, email: &str) -> Customer {
        let now = now_micros();
        let c = Customer::new(
            partner_id,
            CustomerProfile {
                email: email.into(),
                ..Default::default()
            },
            now,
        );
        Store::new(db.clone())
            .insert_customer(db, &c)
            .await
            .expect("customer");
        c
    }

    fn envelope(partner_id: Uuid, event_type: &str, payload: Vec<u8>) -> EventEnvelope {
        EventEnvelope {
            event_id: Uuid::now_v7().to_string(),
            event_type: event_type.into(),
            producer: "campaigns".into(),
            partner_id: partner_id.to_string(),
            occur_time: Some(loyalty_platform::time::to_timestamp(Utc::now())),
            sequence: 1,
            payload,
            traceparent: String::new(),
        }
    }

    fn bounced(customer: &Customer, address: &str, hard: bool, channel: &str) -> Vec<u8> {
        ev::MessageBounced {
            message_id: Uuid::now_v7().to_string(),
            customer_id: customer.id.to_string(),
            channel: channel.into(),
            campaign_id: String::new(),
            hard,
            address: address.into(),
        }
        .encode_to_vec()
    }

    async fn apply(db: &DatabaseConnection, handler: &DeliveryFeedback, e: &EventEnvelope) {
        let txn = db.begin().await.expect("begin");
        assert!(handler.handles(&e.event_type));
        handler.apply(&txn, e).await.expect("apply");
        txn.commit().await.expect("commit");
    }

    async fn state(db: &DatabaseConnection, partner_id: Uuid, c: &Customer) -> BounceState {
        bounce_state(db, partner_id, c.id)
            .await
            .expect("read")
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn campaigns_bounces_count_once_per_event_and_a_delivery_ends_a_run_of_soft_bounces() {
        let (_test_db, db) = database().await;
        let partner_id = Uuid::now_v7();
        let jana = customer(&db, partner_id, "jana@example.com").await;
        let handler = DeliveryFeedback::new(Store::new(db.clone()));
        assert!(!handler.handles("loyalty.events.v1.MessageOpened"));

        let first = envelope(
            partner_id,
            MESSAGE_BOUNCED,
            bounced(&jana, "JANA@example.com", false, "email"),
        );
        apply(&db, &handler, &first).await;
        apply(&db, &handler, &first).await;
        assert_eq!(state(&db, partner_id, &jana).await.soft_bounce_count, 1);
        // The same bounce reported through RecordEmailBounce with the event id as key.
        let txn = db.begin().await.unwrap();
        let after = apply_bounce(
            &txn,
            partner_id,
            &jana,
            "jana@example.com",
            BounceKind::Soft,
            Utc::now(),
            &[format!("key:{}", first.event_id)],
        )
        .await
        .unwrap();
        txn.commit().await.unwrap();
        assert_eq!(
            after.soft_bounce_count, 1,
            "counted once whichever way it came"
        );

        // Other channels, other addresses and other partners change nothing.
        for e in [
            envelope(
                partner_id,
                MESSAGE_BOUNCED,
                bounced(&jana, "jana@example.com", true, "sms"),
            ),
            envelope(
                partner_id,
                MESSAGE_BOUNCED,
                bounced(&jana, "old@example.com", true, "email"),
            ),
            envelope(
                Uuid::now_v7(),
                MESSAGE_BOUNCED,
                bounced(&jana, "jana@example.com", true, "email"),
            ),
            envelope(partner_id, MESSAGE_BOUNCED, b"\xff\xff".to_vec()),
        ] {
            apply(&db, &handler, &e).await;
        }
        assert!(!state(&db, partner_id, &jana).await.hard_bounced);

        for _ in 0..4 {
            let e = envelope(
                partner_id,
                MESSAGE_BOUNCED,
                bounced(&jana, "jana@example.com", false, "EMAIL"),
            );
            apply(&db, &handler, &e).await;
        }
        let five = state(&db, partner_id, &jana).await;
        assert_eq!(five.soft_bounce_count, 5);
        assert!(five.excluded());

        let delivered = ev::MessageDelivered {
            message_id: Uuid::now_v7().to_string(),
            customer_id: jana.id.to_string(),
            channel: "email".into(),
            campaign_id: String::new(),
        };
        apply(
            &db,
            &handler,
            &envelope(partner_id, MESSAGE_DELIVERED, delivered.encode_to_vec()),
        )
        .await;
        let after = state(&db, partner_id, &jana).await;
        assert_eq!(after.soft_bounce_count, 0);
        assert!(!after.excluded());

        let published = outbox::Entity::find()
            .filter(outbox::Column::EventType.eq("loyalty.events.v1.EmailBounceStateChanged"))
            .count(&db)
            .await
            .unwrap();
        assert_eq!(published, 6, "five counted bounces and one delivery");

        let hard = envelope(
            partner_id,
            MESSAGE_BOUNCED,
            bounced(&jana, "jana@example.com", true, ""),
        );
        apply(&db, &handler, &hard).await;
        assert!(state(&db, partner_id, &jana).await.hard_bounced);
    }

    fn consent_type(code: &str) -> ConsentType {
        let now = now_micros();
        ConsentType {
            id: Uuid::now_v7(),
            code: code.into(),
            display_name: code.into(),
            purpose: Purpose::Marketing,
            channels: vec![],
            text: "text".into(),
            version: 1,
            validity_days: 0,
            active: true,
            revision: 1,
            created_at: now,
            updated_at: now,
        }
    }

    async fn decide_at(
        db: &DatabaseConnection,
        partner_id: Uuid,
        customer_id: Uuid,
        t: &ConsentType,
        decision: Decision,
        at: DateTime<Utc>,
    ) {
        let c = Consent {
            customer_id,
            consent_type_id: t.id,
            decision,
            text_version: 1,
            source: "eshop".into(),
            changed_at: at,
            expires_at: None,
        };
        put_consent(db, partner_id, &c).await.unwrap();
        append_history(
            db,
            partner_id,
            &HistoryEntry {
                id: Uuid::now_v7(),
                customer_id,
                consent_type_id: t.id,
                previous_state: ConsentState::NotGiven,
                new_state: c.state_at(at),
                text_version: 1,
                source: "eshop".into(),
                api_key_id: None,
                note: "said so on the phone, +420 777 123 456".into(),
                changed_at: at,
            },
        )
        .await
        .unwrap();
    }

    async fn track(db: &DatabaseConnection, partner_id: Uuid, customer_id: Uuid, key: &str) {
        let now = now_micros();
        activity::insert_events(
            db,
            partner_id,
            &[NewEvent {
                event: CustomerEvent {
                    id: Uuid::now_v7(),
                    customer_id,
                    event_type_id: Uuid::now_v7(),
                    event_type_code: "store_visit".into(),
                    properties: BTreeMap::from([("phone".to_owned(), "777123456".to_owned())]),
                    business_unit_id: None,
                    occurred_at: now,
                    created_at: now,
                    payload: r#"{"note":"personal"}"#.into(),
                    purchase_id: "R-1".into(),
                },
                idempotency_key: key.into(),
                request_hash: "h".into(),
            }],
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn moving_a_customer_keeps_the_newest_decision_and_moves_history_bounces_and_events() {
        let (_test_db, db) = database().await;
        let partner_id = Uuid::now_v7();
        let survivor = customer(&db, partner_id, "jana@example.com").await;
        let duplicate = customer(&db, partner_id, "jana.old@example.com").await;
        let (a, b) = (consent_type("a"), consent_type("b"));
        for t in [&a, &b] {
            insert_type(&db, partner_id, t).await.unwrap();
        }
        let (older, newer) = (
            now_micros() - Duration::days(2),
            now_micros() - Duration::days(1),
        );
        decide_at(&db, partner_id, duplicate.id, &a, Decision::Granted, newer).await;
        decide_at(&db, partner_id, duplicate.id, &b, Decision::Granted, older).await;
        decide_at(&db, partner_id, survivor.id, &a, Decision::Withdrawn, older).await;
        decide_at(&db, partner_id, survivor.id, &b, Decision::Withdrawn, newer).await;
        let mut bounces = BounceState::clean(duplicate.id, "jana.old@example.com");
        bounces.record(BounceKind::Soft, newer);
        put_bounce_state(&db, partner_id, &bounces).await.unwrap();
        track(&db, partner_id, duplicate.id, "t-1").await;
        track(&db, partner_id, survivor.id, "t-2").await;

        let txn = db.begin().await.unwrap();
        move_customer(&txn, partner_id, duplicate.id, survivor.id)
            .await
            .unwrap();
        activity::move_customer(&txn, partner_id, duplicate.id, survivor.id)
            .await
            .unwrap();
        txn.commit().await.unwrap();

        let consents = all_consents(&db, partner_id, survivor.id).await.unwrap();
        let decisions: Vec<(Uuid, Decision)> = consents
            .iter()
            .map(|c| (c.consent_type_id, c.decision))
            .collect();
        assert_eq!(
            decisions,
            vec![(a.id, Decision::Granted), (b.id, Decision::Withdrawn)],
            "the most recent decision of either account wins"
        );
        assert!(
            all_consents(&db, partner_id, duplicate.id)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            all_history(&db, partner_id, survivor.id)
                .await
                .unwrap()
                .len(),
            4
        );
        assert!(
            all_history(&db, partner_id, duplicate.id)
                .await
                .unwrap()
                .is_empty()
        );
        let moved = bounce_state(&db, partner_id, survivor.id).await.unwrap();
        assert_eq!(moved.map(|s| s.soft_bounce_count), Some(1));
        assert!(
            bounce_state(&db, partner_id, duplicate.id)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            activity::all_events(&db, partner_id, survivor.id)
                .await
                .unwrap()
                .len(),
            2
        );
        assert!(
            activity::all_events(&db, partner_id, duplicate.id)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn erasing_a_customer_keeps_consent_evidence_but_removes_notes_addresses_and_event_data()
    {
        let (_test_db, db) = database().await;
        let partner_id = Uuid::now_v7();
        let jana = customer(&db, partner_id, "jana@example.com").await;
        let other = customer(&db, partner_id, "eva@example.com").await;
        let t = consent_type("newsletter");
        insert_type(&db, partner_id, &t).await.unwrap();
        decide_at(
            &db,
            partner_id,
            jana.id,
            &t,
            Decision::Granted,
            now_micros(),
        )
        .await;
        decide_at(
            &db,
            partner_id,
            other.id,
            &t,
            Decision::Granted,
            now_micros(),
        )
        .await;
        let mut bounces = BounceState::clean(jana.id, "jana@example.com");
        bounces.record(BounceKind::Hard, now_micros());
        put_bounce_state(&db, partner_id, &bounces).await.unwrap();
        track(&db, partner_id, jana.id, "t-1").await;
        track(&db, partner_id, other.id, "t-2").await;

        let txn = db.begin().await.unwrap();
        erase_customer(&txn, partner_id, jana.id).await.unwrap();
        activity::erase_customer(&txn, partner_id, jana.id)
            .await
            .unwrap();
        txn.commit().await.unwrap();

        let history = all_history(&db, partner_id, jana.id).await.unwrap();
        assert_eq!(history.len(), 1, "the evidence stays");
        assert_eq!(history[0].new_state, ConsentState::Granted);
        assert_eq!(history[0].source, "eshop");
        assert_eq!(history[0].note, "", "free text may hold personal data");
        assert_eq!(
            all_consents(&db, partner_id, jana.id).await.unwrap().len(),
            1
        );
        let state = bounce_state(&db, partner_id, jana.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(state.email, "");
        let events = activity::all_events(&db, partner_id, jana.id)
            .await
            .unwrap();
        assert!(events[0].properties.is_empty() && events[0].payload.is_empty());
        assert_eq!(events[0].purchase_id, "R-1");
        // Nobody else's data is touched.
        let others = activity::all_events(&db, partner_id, other.id)
            .await
            .unwrap();
        assert_eq!(others[0].properties.len(), 1);
        assert!(
            !all_history(&db, partner_id, other.id).await.unwrap()[0]
                .note
                .is_empty()
        );
    }
}

//! Consent types, customers' current consents, the append-only consent history and email
//! bounce states, scoped by partner. Also what merging, erasing and exporting a customer
//! needs of them.
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use loyalty_platform::ApiError;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, JoinType,
    QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use loyalty_platform::{
    events::{self, EventHandler},
    time::from_timestamp,
};
use loyalty_proto::{
    events::v1::{self as ev, EventEnvelope},
    types::v1 as types,
};
use prost::Message;

use super::Store;
use crate::domain::{
    Customer, CustomerState,
    consents::{
        BounceKind, BounceState, Channel, Consent, ConsentState, ConsentType, ContactDetails,
        Decision, DecisionRequest, HeldConsent, HistoryEntry, Outcome, Purpose, UNSUBSCRIBE_SOURCE,
        decide, same_email,
    },
    now_micros,
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

/// The channels stored as a JSON array of names; unknown names are skipped.
fn channels_from_json(v: serde_json::Value) -> Vec<Channel> {
    let names: Vec<String> = serde_json::from_value(v).unwrap_or_default();
    names.iter().filter_map(|c| Channel::parse_str(c)).collect()
}

fn type_from(m: ct::Model) -> Result<ConsentType, ApiError> {
    Ok(ConsentType {
        id: m.id,
        purpose: Purpose::parse_str(&m.purpose).ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("unknown consent purpose {}", m.purpose))
        })?,
        code: m.code,
        display_name: m.display_name,
        channels: channels_from_json(m.channels),
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

/// A channel as the contract spells it.
pub fn channel_to_proto(c: Channel) -> i32 {
    use types::CommunicationChannel as C;
    (match c {
        Channel::Email => C::Email,
        Channel::Sms => C::Sms,
        Channel::Push => C::Push,
        Channel::Viber => C::Viber,
    }) as i32
}

/// The ConsentChanged event of a customer's consent on `t` entering `state`.
pub fn consent_changed(
    t: &ConsentType,
    customer_id: Uuid,
    state: ConsentState,
) -> ev::ConsentChanged {
    ev::ConsentChanged {
        customer_id: customer_id.to_string(),
        consent_type_id: t.id.to_string(),
        consent_type_code: t.code.clone(),
        state: state.as_str().to_owned(),
        purpose: t.purpose.as_str().to_owned(),
        channels: t.channels.iter().map(|c| channel_to_proto(*c)).collect(),
    }
}

/// Writes what [`decide`] answered for a customer's consent on `t` (`current` being the
/// consent it decided on): the history entry; and when the decision is the newest, the
/// current consent and ConsentChanged through the outbox, in the caller's transaction.
/// Returns the consent current afterwards.
pub async fn record_outcome(
    txn: &impl ConnectionTrait,
    partner_id: Uuid,
    t: &ConsentType,
    current: Option<Consent>,
    outcome: Outcome,
) -> Result<Option<Consent>, ApiError> {
    let Outcome::Recorded {
        entry,
        current: next,
    } = outcome
    else {
        return Ok(current);
    };
    append_history(txn, partner_id, &entry).await?;
    let Some(next) = next else {
        return Ok(current);
    };
    put_consent(txn, partner_id, &next).await?;
    let event = consent_changed(t, entry.customer_id, entry.new_state);
    events::enqueue(txn, Some(partner_id), &event).await?;
    Ok(Some(next))
}

/// Withdraws every granted marketing consent of the customer whose type covers `channel`
/// (a type without channels covers all), as WithdrawConsent would: a history entry from
/// `UNSUBSCRIBE_SOURCE` with `note`, the current consent and ConsentChanged, in `txn`.
/// Consents to other purposes stay; a consent that is not granted changes nothing (an
/// expired grant is withdrawn, keeping the explicit "no"). Returns how many were withdrawn.
pub async fn withdraw_marketing(
    txn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    channel: Channel,
    at: DateTime<Utc>,
    note: &str,
) -> Result<usize, ApiError> {
    let types: Vec<ConsentType> = ct::Entity::find()
        .filter(ct::Column::PartnerId.eq(partner_id))
        .filter(ct::Column::Purpose.eq(Purpose::Marketing.as_str()))
        .all(txn)
        .await?
        .into_iter()
        .map(type_from)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|t| t.permits_marketing_on(channel))
        .collect();
    if types.is_empty() {
        return Ok(0);
    }
    let consents = consents_of(
        txn,
        partner_id,
        customer_id,
        Some(types.iter().map(|t| t.id).collect()),
    )
    .await?;
    let request = DecisionRequest {
        customer_id,
        decision: Decision::Withdrawn,
        text_version: 0,
        source: UNSUBSCRIBE_SOURCE.to_owned(),
        at,
        note: note.to_owned(),
        api_key_id: None,
    };
    let now = Utc::now();
    let mut withdrawn = 0;
    for current in consents {
        if current.decision != Decision::Granted {
            continue;
        }
        let Some(t) = types.iter().find(|t| t.id == current.consent_type_id) else {
            continue;
        };
        let outcome = decide(t, Some(&current), &request, now)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("withdrawing {}: {e:?}", t.code)))?;
        if matches!(outcome, Outcome::Recorded { .. }) {
            withdrawn += 1;
        }
        record_outcome(txn, partner_id, t, Some(current), outcome).await?;
    }
    Ok(withdrawn)
}

/// What CheckContactability reads about a batch of customers, in a constant number of
/// queries whatever the batch size.
#[derive(Debug, Default)]
pub struct ContactFacts {
    /// The partner's customers among those asked (unknown and other partners' are absent).
    pub customers: HashMap<Uuid, ContactDetails>,
    /// Their granted consents to data processing or marketing, with the type's purpose and
    /// channels (expiry is for the domain to judge).
    pub consents: HashMap<Uuid, Vec<HeldConsent>>,
    /// Their stored email bounce states (read only when `with_bounces`).
    pub bounces: HashMap<Uuid, BounceState>,
}

/// Reads the [`ContactFacts`] of `ids`: the customers, their consents joined with the
/// consent types, and (when `with_bounces`) their bounce states; three queries at most,
/// run concurrently.
pub async fn contact_facts(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    ids: &[Uuid],
    with_bounces: bool,
) -> Result<ContactFacts, ApiError> {
    if ids.is_empty() {
        return Ok(ContactFacts::default());
    }
    let bounces = async {
        if with_bounces {
            bounce_states(conn, partner_id, ids).await
        } else {
            Ok(HashMap::new())
        }
    };
    let (customers, consents, bounces) = futures::try_join!(
        contact_details(conn, partner_id, ids),
        held_consents(conn, partner_id, ids),
        bounces,
    )?;
    Ok(ContactFacts {
        customers,
        consents,
        bounces,
    })
}

/// Names, addresses and states of the partner's customers among `ids`, in one query.
pub async fn contact_details(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, ContactDetails>, ApiError> {
    use super::entities::customers as cu;
    let rows: Vec<(Uuid, String, String, String, String, String)> = cu::Entity::find()
        .select_only()
        .columns([
            cu::Column::Id,
            cu::Column::State,
            cu::Column::FirstName,
            cu::Column::LastName,
            cu::Column::Email,
            cu::Column::Phone,
        ])
        .filter(cu::Column::PartnerId.eq(partner_id))
        .filter(cu::Column::Id.is_in(ids.iter().copied()))
        .into_tuple()
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, state, first_name, last_name, email, phone)| {
            let details = ContactDetails {
                customer_id: id,
                state: CustomerState::parse_str(&state),
                first_name,
                last_name,
                email,
                phone,
            };
            (id, details)
        })
        .collect())
}

/// A granted consent joined with its type's purpose and channels.
#[derive(Debug, FromQueryResult)]
struct HeldRow {
    customer_id: Uuid,
    consent_type_id: Uuid,
    state: String,
    text_version: i32,
    source: String,
    changed_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    purpose: String,
    channels: serde_json::Value,
}

/// The granted consents to data processing or marketing of the customers `ids`, each with
/// its type's purpose and channels, by customer: one query joining consents and consent
/// types. Whether a grant has expired is left to [`Consent::state_at`].
pub async fn held_consents(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<HeldConsent>>, ApiError> {
    let rows = cs::Entity::find()
        .select_only()
        .columns([
            cs::Column::CustomerId,
            cs::Column::ConsentTypeId,
            cs::Column::State,
            cs::Column::TextVersion,
            cs::Column::Source,
            cs::Column::ChangedAt,
            cs::Column::ExpiresAt,
        ])
        .columns([ct::Column::Purpose, ct::Column::Channels])
        .join(
            JoinType::InnerJoin,
            cs::Entity::belongs_to(ct::Entity)
                .from(cs::Column::ConsentTypeId)
                .to(ct::Column::Id)
                .into(),
        )
        .filter(cs::Column::PartnerId.eq(partner_id))
        .filter(ct::Column::PartnerId.eq(partner_id))
        .filter(cs::Column::CustomerId.is_in(ids.iter().copied()))
        .filter(cs::Column::State.eq(Decision::Granted.as_str()))
        .filter(ct::Column::Purpose.is_in([
            Purpose::DataProcessing.as_str(),
            Purpose::Marketing.as_str(),
        ]))
        .into_model::<HeldRow>()
        .all(conn)
        .await?;
    let mut held: HashMap<Uuid, Vec<HeldConsent>> = HashMap::new();
    for r in rows {
        let Some(purpose) = Purpose::parse_str(&r.purpose) else {
            continue;
        };
        held.entry(r.customer_id).or_default().push(HeldConsent {
            purpose,
            channels: channels_from_json(r.channels),
            consent: Consent {
                customer_id: r.customer_id,
                consent_type_id: r.consent_type_id,
                decision: Decision::parse_str(&r.state).unwrap_or(Decision::Withdrawn),
                text_version: r.text_version,
                source: r.source,
                changed_at: r.changed_at,
                expires_at: r.expires_at,
            },
        });
    }
    Ok(held)
}

/// The stored bounce states of the customers `ids` (whatever address each was recorded
/// for), in one query.
pub async fn bounce_states(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, BounceState>, ApiError> {
    Ok(bs::Entity::find()
        .filter(bs::Column::PartnerId.eq(partner_id))
        .filter(bs::Column::CustomerId.is_in(ids.iter().copied()))
        .all(conn)
        .await?
        .into_iter()
        .map(|m| (m.customer_id, bounce_from(m)))
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
pub const MESSAGE_UNSUBSCRIBED: &str = "loyalty.events.v1.MessageUnsubscribed";

/// How many merges an unsubscribe follows from the account a message was sent to.
const MAX_MERGE_HOPS: usize = 8;

/// Applies campaigns' delivery events: MessageBounced counts a bounce into the email bounce
/// state (keyed by the event id and the message id, so a bounce also reported through
/// RecordEmailBounce counts once), MessageDelivered ends a run of soft bounces (events of
/// other channels, unknown customers or other addresses change nothing), and
/// MessageUnsubscribed withdraws the customer's marketing consents covering the message's
/// channel (see [`withdraw_marketing`]; consents to data processing stay).
pub struct DeliveryFeedback {
    store: Store,
}

impl DeliveryFeedback {
    pub fn new(store: Store) -> Self {
        DeliveryFeedback { store }
    }

    /// The live account of `customer_id`: the account itself, or the one it was merged into
    /// (the consents moved there); `None` for an unknown customer.
    async fn live_account(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        partner_id: Uuid,
        customer_id: Uuid,
    ) -> Result<Option<Customer>, ApiError> {
        let mut customer = self.store.customer(txn, partner_id, customer_id).await?;
        for _ in 0..MAX_MERGE_HOPS {
            match customer.as_ref().and_then(|c| c.merged_into) {
                Some(survivor) => {
                    customer = self.store.customer(txn, partner_id, survivor).await?;
                }
                None => break,
            }
        }
        Ok(customer)
    }

    /// Withdraws the marketing consents an unsubscribe link asked to withdraw.
    async fn unsubscribed(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        partner_id: Uuid,
        event: &EventEnvelope,
    ) -> anyhow::Result<()> {
        let Ok(u) = ev::MessageUnsubscribed::decode(event.payload.as_slice()) else {
            tracing::warn!(event_id = %event.event_id, "undecodable MessageUnsubscribed; skipped");
            return Ok(());
        };
        let Some(channel) = Channel::parse_str(&u.channel.trim().to_ascii_lowercase()) else {
            tracing::warn!(
                event_id = %event.event_id,
                channel = %u.channel,
                "MessageUnsubscribed of an unknown channel; skipped"
            );
            return Ok(());
        };
        let Ok(customer_id) = Uuid::try_parse(&u.customer_id) else {
            return Ok(());
        };
        let Some(customer) = self.live_account(txn, partner_id, customer_id).await? else {
            return Ok(());
        };
        // When the customer clicked, to the microsecond; never later than now, so a grant
        // given after this withdrawal is applied stays the newest decision.
        let now = now_micros();
        let at = event
            .occur_time
            .as_ref()
            .and_then(from_timestamp)
            .and_then(|t| DateTime::from_timestamp_micros(t.timestamp_micros()))
            .map_or(now, |t| t.min(now));
        let mut note = "unsubscribe link".to_owned();
        if !u.message_id.is_empty() {
            note.push_str(&format!(" of message {}", u.message_id));
        }
        if !u.campaign_id.is_empty() {
            note.push_str(&format!(" (campaign {})", u.campaign_id));
        }
        let withdrawn =
            withdraw_marketing(txn, partner_id, customer.id, channel, at, &note).await?;
        tracing::debug!(
            event_id = %event.event_id,
            customer_id = %customer.id,
            withdrawn,
            "unsubscribe applied"
        );
        Ok(())
    }
}

fn is_email_channel(channel: &str) -> bool {
    channel.is_empty() || channel.to_ascii_lowercase().contains("email")
}

#[async_trait::async_trait]
impl EventHandler for DeliveryFeedback {
    fn handles(&self, event_type: &str) -> bool {
        matches!(
            event_type,
            MESSAGE_BOUNCED | MESSAGE_DELIVERED | MESSAGE_UNSUBSCRIBED
        )
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
        if event.event_type == MESSAGE_UNSUBSCRIBED {
            return self.unsubscribed(txn, partner_id, event).await;
        }
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

    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

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

    /// A migrated in-memory SQLite database on one connection (every connection would
    /// otherwise be its own database).
    async fn sqlite() -> DatabaseConnection {
        let mut opts = sea_orm::ConnectOptions::new("sqlite::memory:");
        opts.max_connections(1).min_connections(1);
        let db = Database::connect(opts).await.expect("sqlite");
        crate::migration::Migrator::up(&db, None)
            .await
            .expect("migrate");
        db
    }

    async fn person(
        db: &DatabaseConnection,
        partner_id: Uuid,
        first_name: &str,
        email: &str,
        phone: &str,
        state: CustomerState,
    ) -> Customer {
        let mut c = Customer::new(
            partner_id,
            CustomerProfile {
                first_name: first_name.into(),
                last_name: "Nováková".into(),
                email: email.into(),
                phone: phone.into(),
                ..Default::default()
            },
            now_micros(),
        );
        c.state = state;
        Store::new(db.clone())
            .insert_customer(db, &c)
            .await
            .expect("customer");
        c
    }

    async fn typed(
        db: &DatabaseConnection,
        partner_id: Uuid,
        code: &str,
        purpose: Purpose,
        channels: &[Channel],
    ) -> ConsentType {
        let t = ConsentType {
            purpose,
            channels: channels.to_vec(),
            ..consent_type(code)
        };
        insert_type(db, partner_id, &t).await.expect("type");
        t
    }

    /// The customer's current consent on `t`: granted (expiring at `expires_at`) or withdrawn.
    async fn decided(
        db: &DatabaseConnection,
        partner_id: Uuid,
        customer_id: Uuid,
        t: &ConsentType,
        decision: Decision,
        expires_at: Option<DateTime<Utc>>,
    ) {
        let at = now_micros() - Duration::days(10);
        put_consent(
            db,
            partner_id,
            &Consent {
                customer_id,
                consent_type_id: t.id,
                decision,
                text_version: 1,
                source: "eshop".into(),
                changed_at: at,
                expires_at,
            },
        )
        .await
        .expect("consent");
    }

    /// `db` with a callback counting the statements run through it.
    fn counting(db: &DatabaseConnection) -> (DatabaseConnection, Arc<AtomicUsize>) {
        let count = Arc::new(AtomicUsize::new(0));
        let mut counted = db.clone();
        let seen = count.clone();
        counted.set_metric_callback(move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
        });
        (counted, count)
    }

    async fn contact_facts_read_a_batch_in_three_queries_scoped_by_partner(db: DatabaseConnection) {
        let partner_id = Uuid::now_v7();
        let rival = Uuid::now_v7();
        let gdpr = typed(&db, partner_id, "gdpr", Purpose::DataProcessing, &[]).await;
        let newsletter = typed(
            &db,
            partner_id,
            "newsletter",
            Purpose::Marketing,
            &[Channel::Email],
        )
        .await;
        let profiling = typed(&db, partner_id, "profiling", Purpose::Profiling, &[]).await;
        let rivals_gdpr = typed(&db, rival, "gdpr", Purpose::DataProcessing, &[]).await;

        let active = CustomerState::Active;
        let jana = person(&db, partner_id, "Jana", "jana@example.com", "", active).await;
        let petr = person(&db, partner_id, "Petr", "", "+420777123456", active).await;
        let eva = person(&db, partner_id, "Eva", "eva@example.com", "", active).await;
        let gone = person(&db, partner_id, "", "", "", CustomerState::Erased).await;
        let foreign = person(&db, rival, "Ivan", "ivan@example.com", "", active).await;
        let expired = Some(now_micros() - Duration::days(1));
        for t in [&gdpr, &newsletter, &profiling] {
            decided(&db, partner_id, jana.id, t, Decision::Granted, None).await;
        }
        decided(&db, partner_id, petr.id, &gdpr, Decision::Granted, None).await;
        decided(
            &db,
            partner_id,
            petr.id,
            &newsletter,
            Decision::Withdrawn,
            None,
        )
        .await;
        decided(&db, partner_id, eva.id, &gdpr, Decision::Granted, expired).await;
        decided(&db, partner_id, gone.id, &gdpr, Decision::Granted, None).await;
        decided(
            &db,
            rival,
            foreign.id,
            &rivals_gdpr,
            Decision::Granted,
            None,
        )
        .await;
        let mut hard = BounceState::clean(jana.id, "jana@example.com");
        hard.record(BounceKind::Hard, now_micros());
        put_bounce_state(&db, partner_id, &hard).await.unwrap();
        let mut foreign_bounce = BounceState::clean(foreign.id, "ivan@example.com");
        foreign_bounce.record(BounceKind::Hard, now_micros());
        put_bounce_state(&db, rival, &foreign_bounce).await.unwrap();

        let unknown = Uuid::now_v7();
        let ids = [jana.id, petr.id, eva.id, gone.id, foreign.id, unknown];
        let (counted, queries) = counting(&db);
        let facts = contact_facts(&counted, partner_id, &ids, true)
            .await
            .unwrap();
        assert_eq!(
            queries.load(Ordering::SeqCst),
            3,
            "customers, consents, bounces"
        );

        let mut known: Vec<Uuid> = facts.customers.keys().copied().collect();
        known.sort();
        let mut expected = vec![jana.id, petr.id, eva.id, gone.id];
        expected.sort();
        assert_eq!(known, expected, "another partner's customer is not read");
        let details = &facts.customers[&petr.id];
        assert_eq!(
            (details.first_name.as_str(), details.phone.as_str()),
            ("Petr", "+420777123456")
        );
        assert_eq!(facts.customers[&gone.id].state, CustomerState::Erased);
        let mut janas: Vec<(Purpose, Vec<Channel>)> = facts.consents[&jana.id]
            .iter()
            .map(|h| (h.purpose, h.channels.clone()))
            .collect();
        janas.sort_by_key(|(p, _)| p.as_str());
        assert_eq!(
            janas,
            vec![
                (Purpose::DataProcessing, vec![]),
                (Purpose::Marketing, vec![Channel::Email]),
            ],
            "granted data processing and marketing consents only, with their type's channels"
        );
        assert_eq!(
            facts.consents[&petr.id].len(),
            1,
            "the withdrawal is not read"
        );
        assert_eq!(
            facts.consents[&eva.id][0].consent.expires_at, expired,
            "expiry is for the domain to judge"
        );
        assert!(!facts.consents.contains_key(&foreign.id));
        assert_eq!(facts.bounces.len(), 1);
        assert!(facts.bounces[&jana.id].hard_bounced);

        // The answers the domain gives on these facts.
        let now = Utc::now();
        let answer = |id: &Uuid, channel, purpose| {
            contactability(
                facts.customers.get(id),
                facts.consents.get(id).map_or(&[][..], Vec::as_slice),
                facts.bounces.get(id),
                channel,
                purpose,
                now,
            )
        };
        use crate::domain::consents::{ContactPurpose as P, ContactRefusal as R, contactability};
        assert_eq!(
            answer(&jana.id, Channel::Email, P::Marketing),
            Err(R::EmailBounced)
        );
        assert_eq!(
            answer(&jana.id, Channel::Push, P::Marketing),
            Err(R::NoMarketingConsent),
            "the newsletter is for email"
        );
        assert_eq!(
            answer(&jana.id, Channel::Push, P::Service).map(|c| c.address),
            Ok(jana.id.to_string())
        );
        assert_eq!(
            answer(&petr.id, Channel::Sms, P::Marketing),
            Err(R::NoMarketingConsent)
        );
        assert_eq!(
            answer(&petr.id, Channel::Sms, P::Service).map(|c| c.address),
            Ok("+420777123456".to_owned())
        );
        assert_eq!(
            answer(&eva.id, Channel::Email, P::Service),
            Err(R::NoDataProcessingConsent)
        );
        for id in [gone.id, foreign.id, unknown] {
            assert_eq!(
                answer(&id, Channel::Email, P::Service),
                Err(R::UnknownCustomer)
            );
        }

        // Bounce states are read only for email; a batch of 1,000 takes as many queries.
        let (counted, queries) = counting(&db);
        let without = contact_facts(&counted, partner_id, &ids, false)
            .await
            .unwrap();
        assert!(without.bounces.is_empty());
        assert_eq!(queries.load(Ordering::SeqCst), 2);
        let mut thousand: Vec<Uuid> = (0..997).map(|_| Uuid::now_v7()).collect();
        thousand.extend([jana.id, petr.id, eva.id]);
        let (counted, queries) = counting(&db);
        let big = contact_facts(&counted, partner_id, &thousand, true)
            .await
            .unwrap();
        assert_eq!(big.customers.len(), 3);
        assert_eq!(queries.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn contact_facts_read_a_batch_in_three_queries_scoped_by_partner_on_postgres() {
        let (_test_db, db) = database().await;
        contact_facts_read_a_batch_in_three_queries_scoped_by_partner(db).await;
    }

    #[tokio::test]
    async fn contact_facts_read_a_batch_in_three_queries_scoped_by_partner_on_sqlite() {
        contact_facts_read_a_batch_in_three_queries_scoped_by_partner(sqlite().await).await;
    }

    fn unsubscribed(customer_id: Uuid, channel: &str) -> Vec<u8> {
        ev::MessageUnsubscribed {
            message_id: Uuid::now_v7().to_string(),
            customer_id: customer_id.to_string(),
            channel: channel.into(),
            campaign_id: "c-1".into(),
        }
        .encode_to_vec()
    }

    async fn consent_changes(db: &DatabaseConnection) -> Vec<ev::ConsentChanged> {
        outbox::Entity::find()
            .filter(outbox::Column::EventType.eq("loyalty.events.v1.ConsentChanged"))
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|m| ev::ConsentChanged::decode(m.payload.as_slice()).unwrap())
            .collect()
    }

    async fn decision_of(
        db: &DatabaseConnection,
        partner_id: Uuid,
        customer_id: Uuid,
        t: &ConsentType,
    ) -> Decision {
        consent(db, partner_id, customer_id, t.id)
            .await
            .unwrap()
            .expect("a consent")
            .decision
    }

    async fn an_unsubscribe_withdraws_the_marketing_consents_covering_its_channel_once(
        db: DatabaseConnection,
    ) {
        let partner_id = Uuid::now_v7();
        let jana = person(
            &db,
            partner_id,
            "Jana",
            "jana@example.com",
            "+420777123456",
            CustomerState::Active,
        )
        .await;
        let gdpr = typed(&db, partner_id, "gdpr", Purpose::DataProcessing, &[]).await;
        let newsletter = typed(
            &db,
            partner_id,
            "newsletter",
            Purpose::Marketing,
            &[Channel::Email],
        )
        .await;
        let everywhere = typed(&db, partner_id, "everywhere", Purpose::Marketing, &[]).await;
        let sms = typed(&db, partner_id, "sms", Purpose::Marketing, &[Channel::Sms]).await;
        let never = typed(
            &db,
            partner_id,
            "never",
            Purpose::Marketing,
            &[Channel::Email],
        )
        .await;
        for t in [&gdpr, &newsletter, &everywhere, &sms] {
            decided(&db, partner_id, jana.id, t, Decision::Granted, None).await;
        }
        let handler = DeliveryFeedback::new(Store::new(db.clone()));

        let email = envelope(
            partner_id,
            MESSAGE_UNSUBSCRIBED,
            unsubscribed(jana.id, "email"),
        );
        apply(&db, &handler, &email).await;
        for (t, expected) in [
            (&newsletter, Decision::Withdrawn),
            (&everywhere, Decision::Withdrawn),
            (&sms, Decision::Granted),
            (&gdpr, Decision::Granted),
        ] {
            assert_eq!(
                decision_of(&db, partner_id, jana.id, t).await,
                expected,
                "{}",
                t.code
            );
        }
        assert!(
            consent(&db, partner_id, jana.id, never.id)
                .await
                .unwrap()
                .is_none(),
            "nothing to withdraw, nothing recorded"
        );
        let history = all_history(&db, partner_id, jana.id).await.unwrap();
        assert_eq!(history.len(), 2);
        for e in &history {
            assert_eq!(e.source, UNSUBSCRIBE_SOURCE);
            assert_eq!(
                (e.previous_state, e.new_state),
                (ConsentState::Granted, ConsentState::Withdrawn)
            );
            assert!(e.note.contains("unsubscribe link"), "{}", e.note);
            assert_eq!(e.api_key_id, None);
        }
        let mut changed: Vec<(String, String)> = consent_changes(&db)
            .await
            .into_iter()
            .map(|e| (e.consent_type_code, e.state))
            .collect();
        changed.sort();
        assert_eq!(
            changed,
            vec![
                ("everywhere".to_owned(), "withdrawn".to_owned()),
                ("newsletter".to_owned(), "withdrawn".to_owned()),
            ]
        );

        // The same event again (should the consumer's own record fail), and another
        // unsubscribe of the same channel, change nothing: those consents are not granted.
        apply(&db, &handler, &email).await;
        let again = envelope(
            partner_id,
            MESSAGE_UNSUBSCRIBED,
            unsubscribed(jana.id, "EMAIL"),
        );
        apply(&db, &handler, &again).await;
        assert_eq!(
            all_history(&db, partner_id, jana.id).await.unwrap().len(),
            2
        );
        assert_eq!(consent_changes(&db).await.len(), 2);

        // Unknown customers, other partners, unknown channels and garbage change nothing.
        for e in [
            envelope(
                partner_id,
                MESSAGE_UNSUBSCRIBED,
                unsubscribed(Uuid::now_v7(), "sms"),
            ),
            envelope(
                Uuid::now_v7(),
                MESSAGE_UNSUBSCRIBED,
                unsubscribed(jana.id, "sms"),
            ),
            envelope(
                partner_id,
                MESSAGE_UNSUBSCRIBED,
                unsubscribed(jana.id, "fax"),
            ),
            envelope(partner_id, MESSAGE_UNSUBSCRIBED, b"\xff\xff".to_vec()),
        ] {
            apply(&db, &handler, &e).await;
        }
        assert_eq!(
            decision_of(&db, partner_id, jana.id, &sms).await,
            Decision::Granted
        );

        // An unsubscribe from a message sent to an account since merged into Jana's
        // withdraws Jana's consent (hers are the consents now).
        let mut duplicate = person(&db, partner_id, "J", "", "", CustomerState::Merged).await;
        duplicate.merged_into = Some(jana.id);
        Store::new(db.clone())
            .update_customer(&db, &duplicate, duplicate.updated_at)
            .await
            .unwrap();
        let sms_unsubscribe = envelope(
            partner_id,
            MESSAGE_UNSUBSCRIBED,
            unsubscribed(duplicate.id, "sms"),
        );
        apply(&db, &handler, &sms_unsubscribe).await;
        assert_eq!(
            decision_of(&db, partner_id, jana.id, &sms).await,
            Decision::Withdrawn
        );
        assert_eq!(
            decision_of(&db, partner_id, jana.id, &gdpr).await,
            Decision::Granted,
            "consent to data processing is never withdrawn by an unsubscribe"
        );
        assert_eq!(
            all_history(&db, partner_id, jana.id).await.unwrap().len(),
            3
        );
    }

    #[tokio::test]
    async fn an_unsubscribe_withdraws_the_marketing_consents_covering_its_channel_once_on_postgres()
    {
        let (_test_db, db) = database().await;
        an_unsubscribe_withdraws_the_marketing_consents_covering_its_channel_once(db).await;
    }

    #[tokio::test]
    async fn an_unsubscribe_withdraws_the_marketing_consents_covering_its_channel_once_on_sqlite() {
        an_unsubscribe_withdraws_the_marketing_consents_covering_its_channel_once(sqlite().await)
            .await;
    }
}

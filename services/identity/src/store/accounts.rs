//! Partner settings, customer listing and the search index, the account lifecycle (block,
//! merge, erase) and the account-history projection. Every query is scoped by partner.
use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use loyalty_platform::{ApiError, cache::Cache, events::EventHandler};
use loyalty_proto::events::v1::EventEnvelope;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
    sea_query::{Alias, Expr, Func, Query},
};
use uuid::Uuid;

use super::entities::{customers, identifiers};
use super::{customer_from, identifier_from};
use crate::domain::{
    Customer, CustomerState, Identifier, IdentifierState, IdentifierValue,
    accounts::{
        HistoryCursor, HistoryDraft, HistoryEntry, HistoryKind, PartnerSettings, SearchQuery,
        TermField, erased_identifier_value, is_projected, project, reindexed_customers,
        search_terms,
    },
    resolution_key,
};

pub mod entities {
    pub mod partner_settings {
        use sea_orm::entity::prelude::*;

        /// The partners table with the settings columns of m0006.
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "partners")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub display_name: String,
            pub default_currency_code: String,
            pub created_at: DateTimeUtc,
            pub time_zone: String,
            pub updated_at: Option<DateTimeUtc>,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod search_terms {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "customer_search_terms")]
        pub struct Model {
            pub partner_id: Uuid,
            #[sea_orm(primary_key, auto_increment = false)]
            pub customer_id: Uuid,
            #[sea_orm(primary_key, auto_increment = false)]
            pub field: String,
            #[sea_orm(primary_key, auto_increment = false)]
            pub term: String,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod erasures {
        use sea_orm::entity::prelude::*;

        /// Proof that an account was erased, without personal data.
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "customer_erasures")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub customer_id: Uuid,
            pub partner_id: Uuid,
            pub erased_at: DateTimeUtc,
            pub reason: String,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod account_history {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
        #[sea_orm(table_name = "account_history")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub partner_id: Uuid,
            pub customer_id: Uuid,
            pub kind: String,
            pub event_type: String,
            pub event_id: Uuid,
            pub summary: String,
            pub resource_type: String,
            pub resource_id: String,
            pub details: Json,
            pub occurred_at: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }
}

use entities::{account_history as ah, erasures, partner_settings as ps, search_terms as st};

// ---- Partners ----

fn partner_from(m: ps::Model) -> PartnerSettings {
    PartnerSettings {
        id: m.id,
        display_name: m.display_name,
        default_currency_code: m.default_currency_code,
        time_zone: m.time_zone,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

/// A page of partners by id; `only` restricts it to one partner.
pub async fn list_partners(
    conn: &impl ConnectionTrait,
    only: Option<Uuid>,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<PartnerSettings>, ApiError> {
    let mut q = ps::Entity::find();
    if let Some(id) = only {
        q = q.filter(ps::Column::Id.eq(id));
    }
    if let Some(after) = after {
        q = q.filter(ps::Column::Id.gt(after));
    }
    Ok(q.order_by_asc(ps::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(partner_from)
        .collect())
}

pub async fn partner(
    conn: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<PartnerSettings>, ApiError> {
    Ok(ps::Entity::find_by_id(id)
        .one(conn)
        .await?
        .map(partner_from))
}

/// Writes a partner's settings if it was not changed since `expected`; `false` if it was.
pub async fn update_partner(
    conn: &impl ConnectionTrait,
    p: &PartnerSettings,
    expected: Option<DateTime<Utc>>,
) -> Result<bool, ApiError> {
    let mut q = ps::Entity::update_many()
        .col_expr(ps::Column::DisplayName, Expr::value(p.display_name.clone()))
        .col_expr(
            ps::Column::DefaultCurrencyCode,
            Expr::value(p.default_currency_code.clone()),
        )
        .col_expr(ps::Column::TimeZone, Expr::value(p.time_zone.clone()))
        .col_expr(ps::Column::UpdatedAt, Expr::value(p.updated_at))
        .filter(ps::Column::Id.eq(p.id));
    q = match expected {
        Some(t) => q.filter(ps::Column::UpdatedAt.eq(t)),
        None => q.filter(ps::Column::UpdatedAt.is_null()),
    };
    Ok(q.exec(conn).await?.rows_affected == 1)
}

/// Whether the partner has any customer account (and so possibly wallets in its currency).
pub async fn partner_has_customers(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
) -> Result<bool, ApiError> {
    Ok(customers::Entity::find()
        .filter(customers::Column::PartnerId.eq(partner_id))
        .one(conn)
        .await?
        .is_some())
}

// ---- Listing and search ----

/// Filters of ListCustomers; `None`/empty = no filter.
#[derive(Debug, Clone, Default)]
pub struct CustomerFilter {
    /// States to include.
    pub states: Vec<CustomerState>,
    pub contact_source_id: Option<Uuid>,
    pub interest_id: Option<Uuid>,
    pub home_business_unit_id: Option<Uuid>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub updated_from: Option<DateTime<Utc>>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// Property terms (`key=value`) that must all be indexed for the account.
    pub properties: Vec<String>,
}

fn term_subquery(partner_id: Uuid, cond: Condition) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column(st::Column::CustomerId)
        .from(st::Entity)
        .cond_where(
            Condition::all()
                .add(st::Column::PartnerId.eq(partner_id))
                .add(cond),
        )
        .to_owned()
}

fn property_cond(term: &str) -> Condition {
    Condition::all()
        .add(st::Column::Field.eq(TermField::Property.as_str()))
        .add(st::Column::Term.eq(term))
}

fn like_prefix(prefix: &str) -> String {
    let mut p = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

fn text_cond(token: &str, exact: bool) -> Condition {
    let term = if exact {
        st::Column::Term.eq(token)
    } else {
        Expr::col(st::Column::Term)
            .like(sea_orm::sea_query::LikeExpr::new(like_prefix(token)).escape('\\'))
    };
    Condition::all()
        .add(st::Column::Field.ne(TermField::Property.as_str()))
        .add(term)
}

fn state_names(states: &[CustomerState]) -> Vec<&'static str> {
    states.iter().map(|s| s.as_str()).collect()
}

/// A page of customers by id (creation order).
pub async fn list_customers(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    f: &CustomerFilter,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Customer>, ApiError> {
    let mut q = customers::Entity::find()
        .filter(customers::Column::PartnerId.eq(partner_id))
        .filter(customers::Column::State.is_in(state_names(&f.states)));
    if let Some(id) = f.home_business_unit_id {
        q = q.filter(customers::Column::HomeBusinessUnitId.eq(id));
    }
    // The id arrays are JSON; their text form holds each id quoted.
    for (column, id) in [
        (customers::Column::ContactSourceIds, f.contact_source_id),
        (customers::Column::InterestIds, f.interest_id),
    ] {
        if let Some(id) = id {
            let text = Func::cast_as(Expr::col(column), Alias::new("text"));
            q = q.filter(Expr::expr(text).like(format!("%\"{id}\"%")));
        }
    }
    if let Some(t) = f.created_from {
        q = q.filter(customers::Column::CreatedAt.gte(t));
    }
    if let Some(t) = f.created_before {
        q = q.filter(customers::Column::CreatedAt.lt(t));
    }
    if let Some(t) = f.updated_from {
        q = q.filter(customers::Column::UpdatedAt.gte(t));
    }
    if let Some(e) = &f.email {
        q = q.filter(customers::Column::Email.eq(e.as_str()));
    }
    if let Some(p) = &f.phone {
        q = q.filter(customers::Column::Phone.eq(p.as_str()));
    }
    for term in &f.properties {
        q = q.filter(
            customers::Column::Id.in_subquery(term_subquery(partner_id, property_cond(term))),
        );
    }
    if let Some(after) = after {
        q = q.filter(customers::Column::Id.gt(after));
    }
    Ok(q.order_by_asc(customers::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(customer_from)
        .collect())
}

/// Search tiers, best first: every word equals a term, or every word is a term's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Exact = 2,
    Prefix = 1,
}

/// One tier's page of search hits, newest account first, after `after`.
pub async fn search(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    query: &SearchQuery,
    states: &[CustomerState],
    tier: Tier,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Customer>, ApiError> {
    let mut q = customers::Entity::find()
        .filter(customers::Column::PartnerId.eq(partner_id))
        .filter(customers::Column::State.is_in(state_names(states)));
    let in_terms =
        |cond: Condition| customers::Column::Id.in_subquery(term_subquery(partner_id, cond));
    for token in &query.tokens {
        q = q.filter(in_terms(text_cond(token, tier == Tier::Exact)));
    }
    if tier == Tier::Prefix && !query.tokens.is_empty() {
        let mut all_exact = Condition::all();
        for token in &query.tokens {
            all_exact = all_exact.add(in_terms(text_cond(token, true)));
        }
        q = q.filter(all_exact.not());
    }
    for term in &query.properties {
        q = q.filter(in_terms(property_cond(term)));
    }
    if let Some(after) = after {
        q = q.filter(customers::Column::Id.lt(after));
    }
    Ok(q.order_by_desc(customers::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(customer_from)
        .collect())
}

/// Which field each customer matched `token` in (an exact match preferred).
pub async fn matched_fields(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_ids: &[Uuid],
    token: &str,
) -> Result<BTreeMap<Uuid, String>, ApiError> {
    let rows = st::Entity::find()
        .filter(st::Column::PartnerId.eq(partner_id))
        .filter(st::Column::CustomerId.is_in(customer_ids.to_vec()))
        .filter(text_cond(token, false))
        .all(conn)
        .await?;
    let mut out: BTreeMap<Uuid, (bool, String)> = BTreeMap::new();
    for r in rows {
        let exact = r.term == token;
        let entry = out.entry(r.customer_id).or_insert((exact, r.field.clone()));
        if exact && !entry.0 {
            *entry = (true, r.field);
        }
    }
    Ok(out.into_iter().map(|(k, (_, f))| (k, f)).collect())
}

/// Rebuilds a customer's search terms from its current row and identifiers. The customer's
/// row is locked first (PostgreSQL `FOR UPDATE`; SQLite serialises writers): an RPC and the
/// event projector reindexing the same customer at once would otherwise both delete, then
/// both insert the same terms, and the second would fail on the primary key.
pub async fn reindex(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<(), ApiError> {
    let customer = customers::Entity::find_by_id(customer_id)
        .filter(customers::Column::PartnerId.eq(partner_id))
        .lock_exclusive()
        .one(conn)
        .await?
        .map(customer_from);
    // By the primary key's prefix only (customer ids are unique across partners): with the
    // partner too, PostgreSQL's planner may AND in the (partner_id, term) index, which walks
    // every term of the partner, once per customer of an import.
    st::Entity::delete_many()
        .filter(st::Column::CustomerId.eq(customer_id))
        .exec(conn)
        .await?;
    let Some(customer) = customer else {
        return Ok(());
    };
    let identifiers = identifiers_of(conn, partner_id, customer_id, false).await?;
    let rows: Vec<st::ActiveModel> = search_terms(&customer, &identifiers)
        .into_iter()
        .map(|(field, term)| st::ActiveModel {
            partner_id: Set(partner_id),
            customer_id: Set(customer_id),
            field: Set(field.as_str().to_owned()),
            term: Set(term),
        })
        .collect();
    if !rows.is_empty() {
        st::Entity::insert_many(rows)
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

// ---- Identifiers of the lifecycle operations ----

/// A customer's identifiers in creation order; removed ones only when asked.
pub async fn identifiers_of(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    include_removed: bool,
) -> Result<Vec<Identifier>, ApiError> {
    let mut q = identifiers::Entity::find()
        .filter(identifiers::Column::PartnerId.eq(partner_id))
        .filter(identifiers::Column::CustomerId.eq(customer_id));
    if !include_removed {
        q = q.filter(identifiers::Column::State.ne(IdentifierState::Removed.as_str()));
    }
    Ok(q.order_by_asc(identifiers::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .filter_map(identifier_from)
        .collect())
}

/// Moves every identifier of `from` (removed ones too, for history) to `to`.
pub async fn move_identifiers(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    from: Uuid,
    to: Uuid,
) -> Result<(), ApiError> {
    identifiers::Entity::update_many()
        .col_expr(identifiers::Column::CustomerId, Expr::value(to))
        .col_expr(identifiers::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(identifiers::Column::PartnerId.eq(partner_id))
        .filter(identifiers::Column::CustomerId.eq(from))
        .exec(conn)
        .await?;
    Ok(())
}

/// Frees every identifier of an erased customer: removed, value replaced by an anonymous one.
pub async fn erase_identifiers(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    for i in identifiers_of(conn, partner_id, customer_id, true).await? {
        identifiers::Entity::update_many()
            .col_expr(
                identifiers::Column::State,
                Expr::value(IdentifierState::Removed.as_str()),
            )
            .col_expr(
                identifiers::Column::Value,
                Expr::value(erased_identifier_value(i.id)),
            )
            .col_expr(identifiers::Column::BlockReason, Expr::value(""))
            .col_expr(identifiers::Column::UpdatedAt, Expr::value(now))
            .filter(identifiers::Column::PartnerId.eq(partner_id))
            .filter(identifiers::Column::Id.eq(i.id))
            .exec(conn)
            .await?;
    }
    Ok(())
}

/// Points every account `from` referred to `to` (a merge: `from` merged into `to`), except `to`
/// itself, which the caller writes with its referrer already cleared; changes their
/// `update_time` (and so their etag). Returns how many accounts changed.
pub async fn move_referrals(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    from: Uuid,
    to: Uuid,
    now: DateTime<Utc>,
) -> Result<u64, ApiError> {
    let res = customers::Entity::update_many()
        .col_expr(customers::Column::ReferrerCustomerId, Expr::value(to))
        .col_expr(customers::Column::UpdatedAt, Expr::value(now))
        .filter(customers::Column::PartnerId.eq(partner_id))
        .filter(customers::Column::ReferrerCustomerId.eq(from))
        .filter(customers::Column::Id.ne(to))
        .exec(conn)
        .await?;
    Ok(res.rows_affected)
}

/// Forgets that an erased account referred anyone: the accounts it referred are referred by
/// nobody after; changes their `update_time` (and so their etag). Returns how many changed.
pub async fn clear_referrals(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    referrer: Uuid,
    now: DateTime<Utc>,
) -> Result<u64, ApiError> {
    let res = customers::Entity::update_many()
        .col_expr(
            customers::Column::ReferrerCustomerId,
            Expr::value(Option::<Uuid>::None),
        )
        .col_expr(customers::Column::UpdatedAt, Expr::value(now))
        .filter(customers::Column::PartnerId.eq(partner_id))
        .filter(customers::Column::ReferrerCustomerId.eq(referrer))
        .exec(conn)
        .await?;
    Ok(res.rows_affected)
}

/// Drops the cached resolutions of identifier values.
pub async fn forget_resolutions(cache: &Cache, partner_id: Uuid, values: &[IdentifierValue]) {
    for v in values {
        cache.delete(&resolution_key(partner_id, v)).await;
    }
}

pub async fn insert_erasure(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    at: DateTime<Utc>,
    reason: &str,
) -> Result<(), ApiError> {
    erasures::Entity::insert(erasures::ActiveModel {
        customer_id: Set(customer_id),
        partner_id: Set(partner_id),
        erased_at: Set(at),
        reason: Set(reason.to_owned()),
    })
    .on_conflict(
        sea_orm::sea_query::OnConflict::column(erasures::Column::CustomerId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// The state and merge target of a customer, when it is the partner's.
pub async fn customer_state(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<Option<(CustomerState, Option<Uuid>)>, ApiError> {
    Ok(customers::Entity::find_by_id(customer_id)
        .filter(customers::Column::PartnerId.eq(partner_id))
        .one(conn)
        .await?
        .map(|m| (CustomerState::parse_str(&m.state), m.merged_into)))
}

/// How long a customer's state is cached for ResolveIdentifier; every change rewrites it.
const STATE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

fn state_key(partner_id: Uuid, customer_id: Uuid) -> String {
    format!("identity:customer-state:{partner_id}:{customer_id}")
}

/// A customer's state through the cache (the checkout hot path).
pub async fn cached_customer_state(
    cache: &Cache,
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<Option<(CustomerState, Option<Uuid>)>, ApiError> {
    let key = state_key(partner_id, customer_id);
    if let Some(s) = cache
        .get(&key)
        .await
        .and_then(|b| serde_json::from_slice::<(CustomerState, Option<Uuid>)>(&b).ok())
    {
        return Ok(Some(s));
    }
    let found = customer_state(conn, partner_id, customer_id).await?;
    if let Some(s) = &found
        && let Ok(bytes) = serde_json::to_vec(s)
    {
        cache.set(&key, &bytes, STATE_TTL).await;
    }
    Ok(found)
}

/// Records a customer's new state in the cache after its change committed.
pub async fn remember_customer_state(cache: &Cache, partner_id: Uuid, c: &Customer) {
    if let Ok(bytes) = serde_json::to_vec(&(c.state, c.merged_into)) {
        cache
            .set(&state_key(partner_id, c.id), &bytes, STATE_TTL)
            .await;
    }
}

// ---- Account history ----

fn history_from(m: ah::Model) -> Option<HistoryEntry> {
    Some(HistoryEntry {
        id: m.id,
        customer_id: m.customer_id,
        kind: HistoryKind::parse_str(&m.kind)?,
        event_type: m.event_type,
        event_id: m.event_id,
        summary: m.summary,
        resource_type: m.resource_type,
        resource_id: m.resource_id,
        details: serde_json::from_value(m.details).unwrap_or_default(),
        occurred_at: m.occurred_at,
    })
}

pub async fn insert_history(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    e: &HistoryEntry,
) -> Result<(), ApiError> {
    ah::Entity::insert(ah::ActiveModel {
        id: Set(e.id),
        partner_id: Set(partner_id),
        customer_id: Set(e.customer_id),
        kind: Set(e.kind.as_str().to_owned()),
        event_type: Set(e.event_type.clone()),
        event_id: Set(e.event_id),
        summary: Set(e.summary.clone()),
        resource_type: Set(e.resource_type.clone()),
        resource_id: Set(e.resource_id.clone()),
        details: Set(serde_json::to_value(&e.details).map_err(anyhow::Error::from)?),
        occurred_at: Set(e.occurred_at),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Filters of ListAccountHistory.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub kinds: Vec<HistoryKind>,
    pub from: Option<DateTime<Utc>>,
    pub before: Option<DateTime<Utc>>,
}

/// A page of a customer's history, newest first, after `after`.
pub async fn list_history(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    f: &HistoryFilter,
    after: Option<HistoryCursor>,
    limit: u64,
) -> Result<Vec<HistoryEntry>, ApiError> {
    let mut q = ah::Entity::find()
        .filter(ah::Column::PartnerId.eq(partner_id))
        .filter(ah::Column::CustomerId.eq(customer_id));
    if !f.kinds.is_empty() {
        q = q.filter(ah::Column::Kind.is_in(f.kinds.iter().map(|k| k.as_str())));
    }
    if let Some(t) = f.from {
        q = q.filter(ah::Column::OccurredAt.gte(t));
    }
    if let Some(t) = f.before {
        q = q.filter(ah::Column::OccurredAt.lt(t));
    }
    if let Some(c) = after {
        q = q.filter(
            Condition::any()
                .add(ah::Column::OccurredAt.lt(c.occurred_at))
                .add(
                    Condition::all()
                        .add(ah::Column::OccurredAt.eq(c.occurred_at))
                        .add(ah::Column::Id.lt(c.id)),
                ),
        );
    }
    Ok(q.order_by_desc(ah::Column::OccurredAt)
        .order_by_desc(ah::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .filter_map(history_from)
        .collect())
}

/// Moves a merged customer's history to the survivor.
pub async fn move_history(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    from: Uuid,
    to: Uuid,
) -> Result<(), ApiError> {
    ah::Entity::update_many()
        .col_expr(ah::Column::CustomerId, Expr::value(to))
        .filter(ah::Column::PartnerId.eq(partner_id))
        .filter(ah::Column::CustomerId.eq(from))
        .exec(conn)
        .await?;
    Ok(())
}

/// Removes the personal details of a customer's history; the PII-free summaries stay.
pub async fn scrub_history(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<(), ApiError> {
    ah::Entity::update_many()
        .col_expr(ah::Column::Details, Expr::value(serde_json::json!({})))
        .filter(ah::Column::PartnerId.eq(partner_id))
        .filter(ah::Column::CustomerId.eq(customer_id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Several handlers of one producer's events behind one consumer: each event is applied by
/// every handler that handles it, in one transaction.
pub struct Handlers(Vec<Arc<dyn EventHandler>>);

impl Handlers {
    /// The handlers as one; a single handler is returned as is.
    pub fn of(mut handlers: Vec<Arc<dyn EventHandler>>) -> Arc<dyn EventHandler> {
        if handlers.len() == 1 {
            return handlers.remove(0);
        }
        Arc::new(Handlers(handlers))
    }
}

#[async_trait]
impl EventHandler for Handlers {
    fn handles(&self, event_type: &str) -> bool {
        self.0.iter().any(|h| h.handles(event_type))
    }

    async fn apply(&self, txn: &DatabaseTransaction, event: &EventEnvelope) -> anyhow::Result<()> {
        for h in &self.0 {
            if h.handles(&event.event_type) {
                h.apply(txn, event).await?;
            }
        }
        Ok(())
    }

    async fn after_commit(&self, event: &EventEnvelope) {
        for h in &self.0 {
            if h.handles(&event.event_type) {
                h.after_commit(event).await;
            }
        }
    }
}

/// Projects every producer's domain events into the account history, and identity's own
/// account events into the search index.
pub struct AccountProjector;

impl AccountProjector {
    pub fn new() -> Arc<Self> {
        Arc::new(AccountProjector)
    }
}

#[async_trait]
impl EventHandler for AccountProjector {
    fn handles(&self, event_type: &str) -> bool {
        is_projected(event_type)
    }

    async fn apply(&self, txn: &DatabaseTransaction, event: &EventEnvelope) -> anyhow::Result<()> {
        let (Ok(partner_id), Ok(event_id)) = (
            Uuid::try_parse(&event.partner_id),
            Uuid::try_parse(&event.event_id),
        ) else {
            return Ok(());
        };
        let envelope_time = event
            .occur_time
            .as_ref()
            .and_then(loyalty_platform::time::from_timestamp)
            .unwrap_or_else(Utc::now);
        for customer_id in reindexed_customers(&event.event_type, &event.payload) {
            reindex(txn, partner_id, customer_id).await?;
        }
        for draft in project(&event.event_type, &event.payload) {
            apply_draft(
                txn,
                partner_id,
                event_id,
                &event.event_type,
                envelope_time,
                draft,
            )
            .await?;
        }
        Ok(())
    }
}

async fn apply_draft(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    event_id: Uuid,
    event_type: &str,
    envelope_time: DateTime<Utc>,
    draft: HistoryDraft,
) -> Result<(), ApiError> {
    // Entries of another partner's (or an unknown) customer are dropped; a merged account's
    // late events go to the survivor; an erased account keeps no personal details.
    let mut customer_id = draft.customer_id;
    let mut details = draft.details;
    for _ in 0..4 {
        match customer_state(txn, partner_id, customer_id).await? {
            None => return Ok(()),
            Some((CustomerState::Merged, Some(into)))
                if event_type != "loyalty.events.v1.CustomerMerged" =>
            {
                customer_id = into;
            }
            Some((CustomerState::Erased, _)) => {
                details.clear();
                break;
            }
            Some(_) => break,
        }
    }
    insert_history(
        txn,
        partner_id,
        &HistoryEntry {
            id: Uuid::now_v7(),
            customer_id,
            kind: draft.kind,
            event_type: event_type.to_owned(),
            event_id,
            summary: draft.summary,
            resource_type: draft.resource_type,
            resource_id: draft.resource_id,
            details,
            occurred_at: draft.occurred_at.unwrap_or(envelope_time),
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    //! Referrals kept on the account, through a merge and an erasure, against PostgreSQL (a
    //! fresh database) and SQLite.
    use loyalty_testkit::TestDb;
    use sea_orm::{Database, DatabaseConnection};
    use sea_orm_migration::MigratorTrait;

    use super::*;
    use crate::{
        domain::{Customer, CustomerProfile, now_micros},
        store::Store,
    };

    async fn migrated(db: DatabaseConnection) -> DatabaseConnection {
        crate::migration::Migrator::up(&db, None)
            .await
            .expect("migrate");
        db
    }

    async fn customer(db: &DatabaseConnection, partner_id: Uuid, referrer: Option<Uuid>) -> Uuid {
        let c = Customer {
            referrer,
            ..Customer::new(partner_id, CustomerProfile::default(), now_micros())
        };
        Store::new(db.clone())
            .insert_customer(db, &c)
            .await
            .expect("customer");
        c.id
    }

    async fn read(db: &DatabaseConnection, partner_id: Uuid, id: Uuid) -> Customer {
        Store::new(db.clone())
            .customer(db, partner_id, id)
            .await
            .expect("read")
            .expect("customer")
    }

    async fn referrals_follow_merges_and_erasures(db: DatabaseConnection) {
        let (p, rival) = (Uuid::now_v7(), Uuid::now_v7());
        let jana = customer(&db, p, None).await;
        let petr = customer(&db, p, Some(jana)).await;
        let eva = customer(&db, p, Some(jana)).await;
        let survivor = customer(&db, p, None).await;
        // Another partner's row naming the same referrer id is never touched.
        let foreign = customer(&db, rival, Some(jana)).await;
        let before = read(&db, p, petr).await;
        assert_eq!(before.referrer, Some(jana), "stored and read back");

        let later = before.updated_at + chrono::Duration::seconds(1);
        let moved = move_referrals(&db, p, jana, survivor, later).await.unwrap();
        assert_eq!(moved, 2);
        for id in [petr, eva] {
            let c = read(&db, p, id).await;
            assert_eq!(c.referrer, Some(survivor));
            assert_eq!(c.updated_at, later, "a new etag");
        }
        assert_eq!(read(&db, rival, foreign).await.referrer, Some(jana));
        // The survivor is never pointed at itself.
        let referred_by_petr = customer(&db, p, Some(petr)).await;
        move_referrals(&db, p, petr, referred_by_petr, later)
            .await
            .unwrap();
        assert_eq!(read(&db, p, referred_by_petr).await.referrer, Some(petr));

        let cleared = clear_referrals(&db, p, survivor, later).await.unwrap();
        assert_eq!(cleared, 2);
        for id in [petr, eva] {
            assert_eq!(read(&db, p, id).await.referrer, None);
        }
        assert_eq!(read(&db, rival, foreign).await.referrer, Some(jana));
    }

    #[tokio::test]
    async fn referrals_follow_merges_and_erasures_on_postgres() {
        let test_db = TestDb::postgres()
            .await
            .expect("PostgreSQL on 127.0.0.1:5432");
        let db = Database::connect(test_db.url()).await.expect("connect");
        referrals_follow_merges_and_erasures(migrated(db).await).await;
    }

    #[tokio::test]
    async fn referrals_follow_merges_and_erasures_on_sqlite() {
        // In memory on one connection (every connection would otherwise be its own database).
        let mut opts = sea_orm::ConnectOptions::new("sqlite::memory:");
        opts.max_connections(1).min_connections(1);
        let db = Database::connect(opts).await.expect("sqlite");
        referrals_follow_merges_and_erasures(migrated(db).await).await;
    }
}

//! The customer feature store: a projection of identity's customer events (merges and
//! erasures included, see [`super::lifecycle`]) and checkout's purchases, read by criteria.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use loyalty_criteria::{
    Criterion, Field,
    purchases::Purchase,
    sql::{Column, Dialect, IdRange, SqlTarget, SqlValue},
};
use loyalty_platform::{ApiError, events};
use loyalty_proto::{events::v1 as ev, types::v1 as types};
use sea_orm::{
    AccessMode, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend,
    DatabaseConnection, DatabaseTransaction, EntityTrait, IsolationLevel, QueryFilter, Statement,
    TransactionTrait, Value, sea_query::Expr,
};
use uuid::Uuid;

use super::{entities::customer_features, lifecycle, purchases};
use crate::domain::{Consent, EmailBounce, Features, Segment, Tier};

pub(super) fn features_from(m: &customer_features::Model) -> Features {
    Features {
        attributes: serde_json::from_value(m.attributes.clone()).unwrap_or_default(),
        properties: serde_json::from_value(m.properties.clone()).unwrap_or_default(),
        purchase_count: m.purchase_count,
        total_spent_minor: m.total_spent_minor,
        last_purchase_at: m.last_purchase_at,
        activity: serde_json::from_value(m.activity.clone()).unwrap_or_default(),
        rfm: super::rfm::from_columns(m),
        contact_source_ids: serde_json::from_value(m.contact_source_ids.clone())
            .unwrap_or_default(),
        interest_ids: serde_json::from_value(m.interest_ids.clone()).unwrap_or_default(),
    }
}

/// The features of one customer (empty if no event about them has arrived yet).
pub async fn features(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<Features, ApiError> {
    Ok(
        customer_features::Entity::find_by_id((partner_id, customer_id))
            .one(conn)
            .await?
            .map(|m| features_from(&m))
            .unwrap_or_default(),
    )
}

/// The features of one customer and when they last changed; `None` if no event about them
/// has arrived yet.
pub async fn features_updated(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<Option<(Features, DateTime<Utc>)>, ApiError> {
    Ok(
        customer_features::Entity::find_by_id((partner_id, customer_id))
            .one(conn)
            .await?
            .map(|m| (features_from(&m), m.updated_at)),
    )
}

/// A fact kept in its search form under its path in `criteria_facts` (an integer fact as
/// the search form of its decimal text, whose `i` member is the integer).
fn search_form_of(field: &Field) -> Column {
    Column::Text {
        column: "criteria_facts",
        key: field.path(),
    }
}

/// Where the feature store keeps each field criteria read: the account's lists in their
/// JSON array columns, the string facts and the
/// activity features (consents, bounces, points, tier, tracked events) in their search form
/// under their path in `criteria_facts`, the purchase features in their columns, the
/// purchase-window fields in `customer_purchases` (joined per window).
/// `cart.*` is not stored (it exists only at checkout), nor is `event.*` (a workflow's
/// triggering event, known only to EvaluateCriterion's caller).
fn stored_column(field: &Field) -> Option<Column> {
    match field {
        Field::Customer(a) if a == "contact_source_ids" => Some(Column::List("contact_source_ids")),
        Field::Customer(a) if a == "interest_ids" => Some(Column::List("interest_ids")),
        Field::Customer(_)
        | Field::Property(_)
        | Field::Consent(_)
        | Field::Points(_)
        | Field::EventCount(_)
        | Field::MessageCount(_)
        | Field::CampaignResponse { .. } => Some(search_form_of(field)),
        // The time of the last one, as microseconds under the path (`time_form`).
        Field::EventLastDaysAgo(_) | Field::MessageLastDaysAgo(_) => {
            Some(Column::DaysBeforeMember {
                column: "criteria_facts",
                key: field.path(),
            })
        }
        Field::Feature(f) => match f.as_str() {
            "purchase_count" => Some(Column::Int("purchase_count")),
            "rfm_recency_months" => Some(Column::Int("rfm_recency_months")),
            "rfm_frequency" => Some(Column::Int("rfm_frequency")),
            "rfm_monetary_minor" => Some(Column::Int("rfm_monetary_minor")),
            "rfm_recency_score" => Some(Column::Int("rfm_recency_score")),
            "rfm_frequency_score" => Some(Column::Int("rfm_frequency_score")),
            "rfm_monetary_score" => Some(Column::Int("rfm_monetary_score")),
            "total_spent_minor" => Some(Column::Int("total_spent_minor")),
            "last_purchase_days_ago" => Some(Column::DaysBefore("last_purchase_at")),
            "email_soft_bounce_count" | "tier_rank" => Some(search_form_of(field)),
            f if loyalty_criteria::STRING_FEATURES.contains(&f) => Some(search_form_of(field)),
            _ => None,
        },
        Field::Purchases { .. } => Some(Column::Purchases {
            table: purchases::TABLE,
        }),
        Field::Cart(_) | Field::Event(_) => None,
        Field::Segment(id) => Some(Column::Membership {
            table: "segment_members",
            group_column: "segment_id",
            group_id: *id,
        }),
        Field::Badge(id) => Some(Column::Membership {
            table: "badge_members",
            group_column: "badge_id",
            group_id: *id,
        }),
    }
}

/// The feature store as the table criteria compile against.
pub(crate) fn target(dialect: Dialect) -> SqlTarget<'static> {
    SqlTarget {
        dialect,
        table: "customer_features",
        id_column: "customer_id",
        partner_column: "partner_id",
        columns: &stored_column,
    }
}

/// The statement selecting every customer of `partner_id` whom `criterion` admits at `now`:
/// one set-based query over `customer_features`, scoped by partner inside the statement.
pub fn members_query(
    backend: DatabaseBackend,
    partner_id: Uuid,
    criterion: &Criterion,
    now: DateTime<Utc>,
) -> Result<Statement, ApiError> {
    members_query_in(backend, partner_id, criterion, now, IdRange::default())
}

/// [`members_query`] for the customers whose id lies in `range` (one slice of a selection).
pub fn members_query_in(
    backend: DatabaseBackend,
    partner_id: Uuid,
    criterion: &Criterion,
    now: DateTime<Utc>,
    range: IdRange,
) -> Result<Statement, ApiError> {
    let dialect = match backend {
        DatabaseBackend::Postgres => Dialect::Postgres,
        DatabaseBackend::Sqlite => Dialect::Sqlite,
        other => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "criteria do not compile for {other:?}"
            )));
        }
    };
    let target = target(dialect);
    let compiled = criterion
        .to_sql_in(&target, partner_id, now, range)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("compiling a criterion: {e}")))?;
    let values = compiled.values.into_iter().map(|v| match v {
        SqlValue::Text(s) => Value::from(s),
        SqlValue::Int(n) => Value::from(n),
        SqlValue::Bool(b) => Value::from(b),
        SqlValue::Timestamp(t) => Value::from(t),
        SqlValue::Uuid(u) => Value::from(u),
    });
    Ok(Statement::from_sql_and_values(
        backend,
        compiled.sql,
        values,
    ))
}

/// Every customer of the partner whom `segment` admits at `now`, found by one statement
/// (the criterion compiled to SQL, see [`members_query`]); in customer id order. A
/// criterion reading the cart admits no stored member.
pub async fn admitted(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    segment: &Segment,
    now: DateTime<Utc>,
) -> Result<Vec<Uuid>, ApiError> {
    admitted_by(conn, partner_id, &segment.criterion, now).await
}

/// Every customer of `partner_id` whom `criterion` admits at `now`, by id; nobody for a
/// criterion reading the cart (it holds only online, at checkout).
pub async fn admitted_by(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    criterion: &Criterion,
    now: DateTime<Utc>,
) -> Result<Vec<Uuid>, ApiError> {
    if criterion.uses_cart() {
        return Ok(Vec::new());
    }
    select(conn, partner_id, criterion, now, IdRange::default()).await
}

/// The customers of one slice of a selection, by id (the criterion does not read the cart).
async fn select(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    criterion: &Criterion,
    now: DateTime<Utc>,
    range: IdRange,
) -> Result<Vec<Uuid>, ApiError> {
    let backend = conn.get_database_backend();
    if backend == DatabaseBackend::Postgres {
        // For the rest of the caller's transaction (outside one, SET LOCAL does nothing):
        // the purchase windows' hash aggregates in memory instead of spilling to disk at the
        // default 4 MB, and no JIT, which compiled for about a second on a million customers
        // and saved less than that (docs/benchmarks.md, Flexi recalculation).
        conn.execute_unprepared("SET LOCAL work_mem = '64MB'; SET LOCAL jit = off")
            .await?;
        if range != IdRange::default() {
            // The slices are the parallelism: parallel workers on top would build the
            // window's hash once per worker and fight the other slices for the same cores.
            conn.execute_unprepared("SET LOCAL max_parallel_workers_per_gather = 0")
                .await?;
        }
    }
    let query = members_query_in(backend, partner_id, criterion, now, range)?;
    let rows = conn.query_all(query).await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get::<Uuid>("", "customer_id"))
        .collect::<Result<_, _>>()?)
}

/// How a selection over a large partner's customers is split on PostgreSQL: into `slices`
/// ranges of customer ids, each selected by the compiled statement on its own pooled
/// connection, all at once and all under the snapshot of the caller's transaction. One
/// statement uses one core; a recalculation of a million customers is mostly CPU (hashing
/// the window's purchases, reading each customer's facts), so slices finish it sooner
/// (docs/benchmarks.md, Flexi recalculation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slicing {
    /// Slices per selection; 1 = one statement on the caller's connection.
    pub slices: usize,
    /// A partner with fewer customers per slice than this is selected by one statement:
    /// below it, the extra connections cost more than they save.
    pub min_customers_per_slice: u64,
    /// The share of `customer_features`' pages sampled to place the slices' bounds, in
    /// percent.
    pub sample_percent: f64,
}

impl Slicing {
    /// One statement per selection.
    pub const OFF: Slicing = Slicing {
        slices: 1,
        min_customers_per_slice: 50_000,
        sample_percent: 1.0,
    };

    pub fn new(slices: usize) -> Self {
        Slicing {
            slices: slices.max(1),
            ..Slicing::OFF
        }
    }
}

/// [`admitted_by`], split by `slicing` into slices run in parallel on connections of `pool`
/// when the partner is large enough. The slices import the snapshot of `conn`'s transaction
/// (`pg_export_snapshot`), so together they see exactly what one statement in it would,
/// except the transaction's own uncommitted writes: callers select before they write.
pub async fn admitted_sliced(
    pool: &DatabaseConnection,
    slicing: Slicing,
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    criterion: &Criterion,
    now: DateTime<Utc>,
) -> Result<Vec<Uuid>, ApiError> {
    let backend = conn.get_database_backend();
    if criterion.uses_cart() || slicing.slices <= 1 || backend != DatabaseBackend::Postgres {
        return admitted_by(conn, partner_id, criterion, now).await;
    }
    let ranges = slice_ranges(conn, partner_id, slicing).await?;
    if ranges.len() <= 1 {
        return admitted_by(conn, partner_id, criterion, now).await;
    }
    let snapshot = conn
        .query_one(Statement::from_string(
            backend,
            "SELECT pg_export_snapshot() AS snapshot",
        ))
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("pg_export_snapshot returned no row")))?
        .try_get::<String>("", "snapshot")?;
    // Interpolated below (SET TRANSACTION SNAPSHOT takes no parameter); PostgreSQL's ids
    // are hexadecimal groups joined by dashes.
    if snapshot.is_empty() || !snapshot.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "unexpected snapshot id {snapshot:?}"
        )));
    }
    let slices = ranges.into_iter().map(|range| {
        let snapshot = snapshot.as_str();
        async move {
            let txn = pool
                .begin_with_config(
                    Some(IsolationLevel::RepeatableRead),
                    Some(AccessMode::ReadOnly),
                )
                .await?;
            txn.execute_unprepared(&format!("SET TRANSACTION SNAPSHOT '{snapshot}'"))
                .await?;
            let ids = select(&txn, partner_id, criterion, now, range).await?;
            txn.commit().await?;
            Ok::<_, ApiError>(ids)
        }
    });
    // The ranges ascend and each slice is in id order, so the concatenation is too.
    Ok(futures::future::try_join_all(slices).await?.concat())
}

/// The ranges of customer ids a selection over the partner is split into: `slicing.slices`
/// ranges holding about as many of the partner's customers each (bounds taken from a
/// sample of `customer_features`' pages), together covering every id; a single unbounded
/// range for a partner too small to split.
pub(crate) async fn slice_ranges(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    slicing: Slicing,
) -> Result<Vec<IdRange>, ApiError> {
    let whole = vec![IdRange::default()];
    if slicing.slices <= 1 || conn.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(whole);
    }
    // Counted up to the threshold only (a short range of the primary key): a small partner
    // costs no sample of a table every partner shares.
    let threshold = slicing
        .min_customers_per_slice
        .saturating_mul(slicing.slices as u64);
    let counted = conn
        .query_one(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT count(*) AS n FROM (SELECT 1 FROM customer_features \
             WHERE partner_id = $1 LIMIT $2) AS partner",
            [
                partner_id.into(),
                i64::try_from(threshold).unwrap_or(i64::MAX).into(),
            ],
        ))
        .await?
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
    if u64::try_from(counted).unwrap_or(0) < threshold {
        return Ok(whole);
    }
    let percent = slicing.sample_percent.clamp(0.0001, 100.0);
    let rows = conn
        .query_all(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            format!(
                "SELECT customer_id FROM customer_features TABLESAMPLE SYSTEM ({percent}) \
                 WHERE partner_id = $1 ORDER BY customer_id"
            ),
            [partner_id.into()],
        ))
        .await?;
    let sample = rows
        .iter()
        .map(|r| r.try_get::<Uuid>("", "customer_id"))
        .collect::<Result<Vec<_>, _>>()?;
    if sample.len() < slicing.slices {
        return Ok(whole);
    }
    let mut bounds: Vec<Uuid> = (1..slicing.slices)
        .map(|k| sample[k * sample.len() / slicing.slices])
        .collect();
    bounds.dedup();
    let mut ranges = Vec::with_capacity(bounds.len() + 1);
    let mut start = None;
    for b in bounds {
        ranges.push(IdRange {
            start,
            end: Some(b),
        });
        start = Some(b);
    }
    ranges.push(IdRange { start, end: None });
    Ok(ranges)
}

/// How many customers of the partner `criterion` admits at `now`: the compiled statement
/// counted by the database. A criterion reading the cart or a workflow's triggering event
/// (`event.*`) admits no stored customer: neither is stored.
pub async fn count_admitted(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    criterion: &Criterion,
    now: DateTime<Utc>,
) -> Result<i64, ApiError> {
    if criterion.uses_cart() || criterion.uses_event() {
        return Ok(0);
    }
    let members = members_query(conn.get_database_backend(), partner_id, criterion, now)?;
    let count = Statement::from_sql_and_values(
        members.db_backend,
        format!("SELECT COUNT(*) AS n FROM ({}) AS admitted", members.sql),
        members.values.map(|v| v.0).unwrap_or_default(),
    );
    let row = conn
        .query_one(count)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("COUNT returned no row")))?;
    Ok(row.try_get::<i64>("", "n")?)
}

pub(super) async fn write(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    customer_id: Uuid,
    exists: bool,
    f: &Features,
) -> anyhow::Result<()> {
    let attributes = serde_json::to_value(&f.attributes)?;
    let properties = serde_json::to_value(&f.properties)?;
    let criteria_facts = f.search_facts();
    let activity = serde_json::to_value(&f.activity)?;
    let contact_source_ids = serde_json::to_value(&f.contact_source_ids)?;
    let interest_ids = serde_json::to_value(&f.interest_ids)?;
    let now = Utc::now();
    if exists {
        customer_features::Entity::update_many()
            .col_expr(
                customer_features::Column::Attributes,
                Expr::value(attributes),
            )
            .col_expr(
                customer_features::Column::Properties,
                Expr::value(properties),
            )
            .col_expr(
                customer_features::Column::PurchaseCount,
                Expr::value(f.purchase_count),
            )
            .col_expr(
                customer_features::Column::TotalSpentMinor,
                Expr::value(f.total_spent_minor),
            )
            .col_expr(
                customer_features::Column::LastPurchaseAt,
                Expr::value(f.last_purchase_at),
            )
            .col_expr(
                customer_features::Column::CriteriaFacts,
                Expr::value(criteria_facts),
            )
            .col_expr(customer_features::Column::Activity, Expr::value(activity))
            .col_expr(
                customer_features::Column::ContactSourceIds,
                Expr::value(contact_source_ids),
            )
            .col_expr(
                customer_features::Column::InterestIds,
                Expr::value(interest_ids),
            )
            .col_expr(customer_features::Column::UpdatedAt, Expr::value(now))
            .filter(customer_features::Column::PartnerId.eq(partner_id))
            .filter(customer_features::Column::CustomerId.eq(customer_id))
            .exec(txn)
            .await?;
    } else {
        customer_features::Entity::insert(customer_features::ActiveModel {
            partner_id: Set(partner_id),
            customer_id: Set(customer_id),
            attributes: Set(attributes),
            properties: Set(properties),
            purchase_count: Set(f.purchase_count),
            total_spent_minor: Set(f.total_spent_minor),
            last_purchase_at: Set(f.last_purchase_at),
            updated_at: Set(now),
            criteria_facts: Set(criteria_facts),
            activity: Set(activity),
            contact_source_ids: Set(contact_source_ids),
            interest_ids: Set(interest_ids),
            ..Default::default()
        })
        .exec_without_returning(txn)
        .await?;
    }
    Ok(())
}

/// Reads a customer's features, lets `change` update them, and writes them back.
async fn update(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    customer_id: Uuid,
    change: impl FnOnce(&mut Features),
) -> anyhow::Result<()> {
    let existing = customer_features::Entity::find_by_id((partner_id, customer_id))
        .one(txn)
        .await?;
    let mut f = existing.as_ref().map(features_from).unwrap_or_default();
    change(&mut f);
    write(txn, partner_id, customer_id, existing.is_some(), &f).await
}

/// Projects the events of identity (profiles, merges, erasures, consents, email bounces,
/// tracked events), checkout (purchases, returns), the wallet (points) and rewards (tiers)
/// into `customer_features`. One handler for every producer, each consumed once per service
/// (see `crate::run`).
pub struct FeatureProjector;

/// A profile event replaces the attributes, properties, contact sources and interests
/// (they are the state after the change) and keeps the purchase features.
fn profile(
    attributes: impl IntoIterator<Item = (String, String)>,
    properties: impl IntoIterator<Item = (String, String)>,
    contact_source_ids: Vec<String>,
    interest_ids: Vec<String>,
) -> impl FnOnce(&mut Features) {
    let attributes: BTreeMap<String, String> = attributes.into_iter().collect();
    let properties: BTreeMap<String, String> = properties.into_iter().collect();
    move |f| {
        f.attributes = attributes;
        f.properties = properties;
        f.set_lists(contact_source_ids, interest_ids);
    }
}

/// A channel's name in [`crate::domain::CHANNELS`]; `None` for an unknown one.
fn channel_name(c: types::CommunicationChannel) -> Option<&'static str> {
    use types::CommunicationChannel as C;
    match c {
        C::Email => Some("email"),
        C::Sms => Some("sms"),
        C::Push => Some("push"),
        C::Viber => Some("viber"),
        C::Unspecified => None,
    }
}

/// A response to a campaign message, from one of the campaigns service's message events.
struct MessageResponse {
    customer_id: String,
    campaign_id: String,
    /// One of [`loyalty_criteria::MESSAGE_RESPONSES`].
    response: &'static str,
    /// Whether it counts in `messages.<response>.count`: every delivery, bounce and
    /// unsubscription; only a message's first open or click.
    counted: bool,
}

fn message_response(e: &ev::EventEnvelope) -> Option<MessageResponse> {
    let r = |customer_id: String, campaign_id: String, response, counted| MessageResponse {
        customer_id,
        campaign_id,
        response,
        counted,
    };
    if let Some(m) = events::decode::<ev::MessageDelivered>(e) {
        Some(r(m.customer_id, m.campaign_id, "delivered", true))
    } else if let Some(m) = events::decode::<ev::MessageBounced>(e) {
        let response = if m.hard {
            "hard_bounced"
        } else {
            "soft_bounced"
        };
        Some(r(m.customer_id, m.campaign_id, response, true))
    } else if let Some(m) = events::decode::<ev::MessageOpened>(e) {
        Some(r(m.customer_id, m.campaign_id, "opened", m.first))
    } else if let Some(m) = events::decode::<ev::MessageClicked>(e) {
        Some(r(m.customer_id, m.campaign_id, "clicked", m.first))
    } else {
        events::decode::<ev::MessageUnsubscribed>(e)
            .map(|m| r(m.customer_id, m.campaign_id, "unsubscribed", true))
    }
}

impl FeatureProjector {
    /// A message response: history, like a tracked event, so a merged account's counts for
    /// the survivor.
    async fn message(
        &self,
        txn: &DatabaseTransaction,
        partner_id: Uuid,
        e: &ev::EventEnvelope,
        r: MessageResponse,
    ) -> anyhow::Result<()> {
        let skip = |why: &str| {
            tracing::warn!(event_id = %e.event_id, event_type = %e.event_type, "skipping event: {why}");
            Ok(())
        };
        let Ok(who) = Uuid::parse_str(&r.customer_id) else {
            return skip("customer_id is not a UUID");
        };
        // A message of no campaign (a workflow's) counts in `messages.*` only.
        let campaign = match r.campaign_id.as_str() {
            "" => None,
            id => match Uuid::parse_str(id) {
                Ok(c) => Some(c),
                Err(_) => return skip("campaign_id is not a UUID"),
            },
        };
        let Some(id) = lifecycle::current_account(txn, partner_id, who).await? else {
            return skip("the customer was erased");
        };
        let at = e
            .occur_time
            .as_ref()
            .and_then(loyalty_platform::time::from_timestamp)
            .unwrap_or_else(Utc::now);
        update(txn, partner_id, id, |f| {
            f.activity
                .record_message(r.response, campaign, at, r.counted)
        })
        .await
    }

    /// A points event: the balance after it, of its points type, for a live account.
    async fn points(
        &self,
        txn: &DatabaseTransaction,
        partner_id: Uuid,
        e: &ev::EventEnvelope,
        customer_id: &str,
        code: &str,
        available: i64,
    ) -> anyhow::Result<()> {
        let skip = |why: &str| {
            tracing::warn!(event_id = %e.event_id, event_type = %e.event_type, "skipping event: {why}");
            Ok(())
        };
        let Ok(id) = Uuid::parse_str(customer_id) else {
            return skip("customer_id is not a UUID");
        };
        if code.is_empty() {
            return skip("points_type_code is empty");
        }
        if lifecycle::current_account(txn, partner_id, id).await? != Some(id) {
            return skip("the customer was merged or erased");
        }
        update(txn, partner_id, id, |f| {
            f.activity.set_points(code, available, e.sequence)
        })
        .await
    }
}

#[async_trait::async_trait]
impl events::EventHandler for FeatureProjector {
    fn handles(&self, event_type: &str) -> bool {
        use events::DomainEvent;
        [
            ev::CustomerCreated::TYPE,
            ev::CustomerUpdated::TYPE,
            ev::PurchaseCompleted::TYPE,
            ev::CustomerMerged::TYPE,
            ev::CustomerErased::TYPE,
            ev::ConsentChanged::TYPE,
            ev::EmailBounceStateChanged::TYPE,
            ev::EventTracked::TYPE,
            ev::PurchaseReturned::TYPE,
            ev::PointsPosted::TYPE,
            ev::PointsExpired::TYPE,
            ev::TierChanged::TYPE,
            ev::MessageDelivered::TYPE,
            ev::MessageBounced::TYPE,
            ev::MessageOpened::TYPE,
            ev::MessageClicked::TYPE,
            ev::MessageUnsubscribed::TYPE,
        ]
        .contains(&event_type)
    }

    /// A malformed event (bad ids, undecodable payload) is logged and skipped: retrying it
    /// would never succeed and would hold up every later event.
    async fn apply(&self, txn: &DatabaseTransaction, e: &ev::EventEnvelope) -> anyhow::Result<()> {
        let skip = |why: &str| {
            tracing::warn!(event_id = %e.event_id, event_type = %e.event_type, "skipping event: {why}");
            Ok(())
        };
        let Ok(partner_id) = Uuid::parse_str(&e.partner_id) else {
            return skip("partner_id is not a UUID");
        };
        let customer = |id: &str| Uuid::parse_str(id).ok();
        // The profile of an account merged away or erased is no longer projected.
        let live = |id: Uuid| async move {
            Ok::<_, anyhow::Error>(
                lifecycle::current_account(txn, partner_id, id).await? == Some(id),
            )
        };
        if let Some(c) = events::decode::<ev::CustomerCreated>(e) {
            let Some(id) = customer(&c.customer_id) else {
                return skip("customer_id is not a UUID");
            };
            if !live(id).await? {
                return skip("the customer was merged or erased");
            }
            let change = profile(
                c.attributes,
                c.properties,
                c.contact_source_ids,
                c.interest_ids,
            );
            update(txn, partner_id, id, change).await
        } else if let Some(c) = events::decode::<ev::CustomerUpdated>(e) {
            let Some(id) = customer(&c.customer_id) else {
                return skip("customer_id is not a UUID");
            };
            if !live(id).await? {
                return skip("the customer was merged or erased");
            }
            let change = profile(
                c.attributes,
                c.properties,
                c.contact_source_ids,
                c.interest_ids,
            );
            update(txn, partner_id, id, change).await
        } else if let Some(p) = events::decode::<ev::PurchaseCompleted>(e) {
            let Some(buyer) = customer(&p.customer_id) else {
                return skip("customer_id is not a UUID");
            };
            // A purchase of a merged account counts for the survivor.
            let Some(id) = lifecycle::current_account(txn, partner_id, buyer).await? else {
                return skip("the customer was erased");
            };
            let at = p
                .purchase_time
                .as_ref()
                .or(e.occur_time.as_ref())
                .and_then(loyalty_platform::time::from_timestamp)
                .unwrap_or_else(Utc::now);
            match Uuid::parse_str(&p.purchase_id) {
                Ok(purchase_id) => {
                    let purchase = Purchase {
                        purchased_at: at,
                        net_amount_minor: p.net_amount_minor,
                        returned_amount_minor: 0,
                        product_ids: p.product_ids.clone(),
                        product_group_ids: p.product_group_ids.clone(),
                        brand_ids: p.brand_ids.clone(),
                        business_unit_id: p.business_unit_id.clone(),
                    };
                    // The same purchase delivered again counts once.
                    if !purchases::record(txn, partner_id, id, purchase_id, purchase).await? {
                        return skip("the purchase is already recorded");
                    }
                }
                Err(_) => tracing::warn!(event_id = %e.event_id,
                    "purchase_id is not a UUID: counted in the totals, not in purchase windows"),
            }
            update(txn, partner_id, id, |f| {
                f.record_purchase(p.net_amount_minor, &p.currency_code, at)
            })
            .await
        } else if let Some(r) = events::decode::<ev::PurchaseReturned>(e) {
            let Some(buyer) = customer(&r.customer_id) else {
                return skip("customer_id is not a UUID");
            };
            // Like its purchase, a return of a merged account counts for the survivor.
            let Some(id) = lifecycle::current_account(txn, partner_id, buyer).await? else {
                return skip("the customer was erased");
            };
            if let Ok(purchase_id) = Uuid::parse_str(&r.purchase_id) {
                let applied = purchases::record_return(
                    txn,
                    partner_id,
                    purchase_id,
                    &r.return_id,
                    r.refund_amount_minor,
                )
                .await?;
                if applied == purchases::ReturnApplied::Repeated {
                    return skip("the return is already applied");
                }
            }
            update(txn, partner_id, id, |f| {
                f.record_return(r.refund_amount_minor, r.fully_returned)
            })
            .await
        } else if let Some(t) = events::decode::<ev::EventTracked>(e) {
            let Some(who) = customer(&t.customer_id) else {
                return skip("customer_id is not a UUID");
            };
            if t.event_type_code.is_empty() {
                return skip("event_type_code is empty");
            }
            // Tracked events are history, like purchases: a merged account's count for the
            // survivor.
            let Some(id) = lifecycle::current_account(txn, partner_id, who).await? else {
                return skip("the customer was erased");
            };
            let at = t
                .occur_time
                .as_ref()
                .or(e.occur_time.as_ref())
                .and_then(loyalty_platform::time::from_timestamp)
                .unwrap_or_else(Utc::now);
            update(txn, partner_id, id, |f| {
                f.activity.record_event(&t.event_type_code, at)
            })
            .await
        } else if let Some(c) = events::decode::<ev::ConsentChanged>(e) {
            let Some(id) = customer(&c.customer_id) else {
                return skip("customer_id is not a UUID");
            };
            if c.consent_type_code.is_empty() {
                return skip("consent_type_code is empty");
            }
            // States belong to the account they were given for; a merged account's are not
            // carried over (identity announces the survivor's own).
            if !live(id).await? {
                return skip("the customer was merged or erased");
            }
            let consent = Consent {
                state: c.state.clone(),
                purpose: c.purpose.clone(),
                channels: c
                    .channels()
                    .filter_map(channel_name)
                    .map(str::to_owned)
                    .collect(),
            };
            update(txn, partner_id, id, |f| {
                f.activity
                    .set_consent(&c.consent_type_code, consent, e.sequence)
            })
            .await
        } else if let Some(b) = events::decode::<ev::EmailBounceStateChanged>(e) {
            let Some(id) = customer(&b.customer_id) else {
                return skip("customer_id is not a UUID");
            };
            if !live(id).await? {
                return skip("the customer was merged or erased");
            }
            let bounce = EmailBounce {
                hard_bounced: b.hard_bounced,
                soft_bounce_count: i64::from(b.soft_bounce_count),
            };
            update(txn, partner_id, id, |f| {
                f.activity.set_email_bounce(bounce, e.sequence)
            })
            .await
        } else if let Some(p) = events::decode::<ev::PointsPosted>(e) {
            self.points(
                txn,
                partner_id,
                e,
                &p.customer_id,
                &p.points_type_code,
                p.available_points,
            )
            .await
        } else if let Some(p) = events::decode::<ev::PointsExpired>(e) {
            self.points(
                txn,
                partner_id,
                e,
                &p.customer_id,
                &p.points_type_code,
                p.available_points,
            )
            .await
        } else if let Some(t) = events::decode::<ev::TierChanged>(e) {
            let Some(id) = customer(&t.customer_id) else {
                return skip("customer_id is not a UUID");
            };
            if !live(id).await? {
                return skip("the customer was merged or erased");
            }
            let tier = Tier {
                tier_id: t.tier_id,
                rank: i64::from(t.rank),
            };
            update(txn, partner_id, id, |f| {
                f.activity.set_tier(tier, e.sequence)
            })
            .await
        } else if let Some(r) = message_response(e) {
            self.message(txn, partner_id, e, r).await
        } else if let Some(m) = events::decode::<ev::CustomerMerged>(e) {
            let (Some(survivor), Some(merged)) = (
                customer(&m.surviving_customer_id),
                customer(&m.merged_customer_id),
            ) else {
                return skip("surviving_customer_id or merged_customer_id is not a UUID");
            };
            if survivor == merged {
                return skip("a customer cannot be merged into itself");
            }
            lifecycle::merge(txn, partner_id, survivor, merged).await
        } else if let Some(c) = events::decode::<ev::CustomerErased>(e) {
            let Some(id) = customer(&c.customer_id) else {
                return skip("customer_id is not a UUID");
            };
            lifecycle::erase(txn, partner_id, id).await
        } else {
            skip("payload does not decode")
        }
    }
}

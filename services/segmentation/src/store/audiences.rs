//! Audiences in the database. The selection at creation is set-based: the criterion and the
//! final checks compiled to one `INSERT … SELECT` over the feature store, its history rows a
//! second one, and the exclusion counts one aggregate query, so no member list ever passes
//! through the service. Every change of one audience runs in one transaction under the
//! audience's lock (a PostgreSQL advisory lock; SQLite serialises writers).
use chrono::{DateTime, Utc};
use loyalty_criteria::{
    Criterion, Facts, Field,
    sql::{Dialect, SqlParams, SqlTarget, SqlValue},
};
use loyalty_platform::{
    ApiError,
    db::advisory_xact_lock,
    error::{check_etag, check_guarded_write},
    events, paging,
};
use loyalty_proto::events::v1 as ev;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement, Value,
    sea_query::{Expr, Query},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Store, entities::customer_features, features, membership::stored_time};
use crate::domain::{
    Member, MembershipCause,
    audience::{
        Audience, AudienceRule, AudienceState, Channel, Exclusion, Exclusions, Lock, excluded_by,
        first_exclusion,
    },
};

pub mod entities {
    pub mod audiences {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
        #[sea_orm(table_name = "audiences")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub partner_id: Uuid,
            pub display_name: String,
            pub channel: String,
            pub criterion: Json,
            /// The required consent type codes, a JSON array of strings.
            pub required_consents: Json,
            pub state: String,
            pub member_count: i64,
            pub no_consent_count: i64,
            pub no_address_count: i64,
            pub hard_bounce_count: i64,
            pub soft_bounce_count: i64,
            pub source_audience_id: Option<Uuid>,
            pub campaign_id: Option<Uuid>,
            pub locked_at: Option<DateTimeUtc>,
            pub note: String,
            pub version: i64,
            pub created_at: DateTimeUtc,
            pub updated_at: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod audience_members {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "audience_members")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub audience_id: Uuid,
            #[sea_orm(primary_key, auto_increment = false)]
            pub customer_id: Uuid,
            pub partner_id: Uuid,
            pub added_at: DateTimeUtc,
            pub cause: String,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod audience_history {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "audience_history")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub partner_id: Uuid,
            pub audience_id: Uuid,
            pub customer_id: Uuid,
            pub change: String,
            pub at: DateTimeUtc,
            pub cause: String,
            /// The audience's name at the time (the history outlives a deleted audience).
            pub audience_display_name: String,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }
}

use entities::{audience_history, audience_members, audiences};

/// Rows read per query when an export walks an audience.
pub const EXPORT_BATCH: u64 = 1000;

/// Where an audience's candidates come from before the final checks.
#[derive(Debug, Clone, Copy)]
pub enum Candidates {
    /// Every customer of the partner the audience's criterion admits now.
    Criterion,
    /// The members of another audience of the partner (a duplicate without reselection).
    MembersOf(Uuid),
}

/// Filters of ListAudiences.
#[derive(Debug, Clone, Copy, Default)]
pub struct AudienceFilter {
    pub state: Option<AudienceState>,
    pub channel: Option<Channel>,
}

/// A member with the contact details the Customer 360 contacts table and the export show
/// (empty when the feature store does not have them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub customer_id: Uuid,
    pub first_name: String,
    pub last_name: String,
    pub birth_date: String,
    pub email: String,
    pub phone: String,
    pub added_at: DateTime<Utc>,
    pub cause: MembershipCause,
}

/// An audience a customer is in (Customer 360 audience list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerAudience {
    pub audience: Audience,
    pub added_at: DateTime<Utc>,
}

/// One change of a customer's membership of an audience.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudienceHistoryEntry {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub audience_id: Uuid,
    pub audience_display_name: String,
    pub entered: bool,
    pub cause: MembershipCause,
    pub at: DateTime<Utc>,
}

/// Filters of the audience part of ListMembershipHistory.
#[derive(Debug, Clone, Copy, Default)]
pub struct AudienceHistoryFilter {
    pub customer_id: Option<Uuid>,
    pub audience_id: Option<Uuid>,
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

pub(crate) fn audience_rule(r: AudienceRule) -> ApiError {
    ApiError::precondition(r.reason(), r.message())
}

fn not_found() -> ApiError {
    ApiError::NotFound("audience".into())
}

fn bad_row(id: Uuid, what: String) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("audience {id}: {what}"))
}

fn audience_from(m: audiences::Model) -> Result<Audience, ApiError> {
    let id = m.id;
    Ok(Audience {
        id,
        display_name: m.display_name,
        channel: Channel::parse_str(&m.channel)
            .ok_or_else(|| bad_row(id, format!("unknown channel {:?}", m.channel)))?,
        criterion: Criterion::from_json(&m.criterion)
            .map_err(|e| bad_row(id, format!("stored criterion: {e}")))?,
        required_consents: serde_json::from_value(m.required_consents)
            .map_err(|e| bad_row(id, format!("required consents: {e}")))?,
        state: AudienceState::parse_str(&m.state)
            .ok_or_else(|| bad_row(id, format!("unknown state {:?}", m.state)))?,
        member_count: m.member_count,
        exclusions: Exclusions {
            no_consent: m.no_consent_count,
            no_address: m.no_address_count,
            hard_bounce: m.hard_bounce_count,
            soft_bounce: m.soft_bounce_count,
        },
        source_audience_id: m.source_audience_id,
        campaign_id: m.campaign_id,
        locked_at: m.locked_at,
        note: m.note,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn active_model(partner_id: Uuid, a: &Audience) -> audiences::ActiveModel {
    audiences::ActiveModel {
        id: Set(a.id),
        partner_id: Set(partner_id),
        display_name: Set(a.display_name.clone()),
        channel: Set(a.channel.as_str().to_owned()),
        criterion: Set(a.criterion.to_json()),
        required_consents: Set(serde_json::json!(a.required_consents)),
        state: Set(a.state.as_str().to_owned()),
        member_count: Set(a.member_count),
        no_consent_count: Set(a.exclusions.no_consent),
        no_address_count: Set(a.exclusions.no_address),
        hard_bounce_count: Set(a.exclusions.hard_bounce),
        soft_bounce_count: Set(a.exclusions.soft_bounce),
        source_audience_id: Set(a.source_audience_id),
        campaign_id: Set(a.campaign_id),
        locked_at: Set(a.locked_at),
        note: Set(a.note.clone()),
        version: Set(a.version),
        created_at: Set(a.created_at),
        updated_at: Set(a.updated_at),
    }
}

fn lock_key(audience_id: Uuid) -> String {
    format!("segmentation-audience:{audience_id}")
}

/// An audience of the partner, read without a lock; another partner's is `None`.
async fn find(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<Option<Audience>, ApiError> {
    audiences::Entity::find_by_id(id)
        .filter(audiences::Column::PartnerId.eq(partner_id))
        .one(conn)
        .await?
        .map(audience_from)
        .transpose()
}

/// Locks an audience of the partner for the rest of the transaction and reads it.
async fn lock_audience(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<Audience, ApiError> {
    advisory_xact_lock(conn, &lock_key(id)).await?;
    find(conn, partner_id, id).await?.ok_or_else(not_found)
}

/// A READY audience of the partner, locked for the rest of the transaction.
async fn lock_changeable(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<Audience, ApiError> {
    let a = lock_audience(conn, partner_id, id).await?;
    a.check_changeable().map_err(audience_rule)?;
    Ok(a)
}

/// Writes the changed definition of `next` if nobody else changed it since `current`.
async fn write_guarded(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    current: &Audience,
    next: &Audience,
) -> Result<(), ApiError> {
    let written = audiences::Entity::update_many()
        .col_expr(
            audiences::Column::DisplayName,
            Expr::value(next.display_name.clone()),
        )
        .col_expr(audiences::Column::Note, Expr::value(next.note.clone()))
        .col_expr(audiences::Column::State, Expr::value(next.state.as_str()))
        .col_expr(
            audiences::Column::MemberCount,
            Expr::value(next.member_count),
        )
        .col_expr(audiences::Column::CampaignId, Expr::value(next.campaign_id))
        .col_expr(audiences::Column::LockedAt, Expr::value(next.locked_at))
        .col_expr(audiences::Column::Version, Expr::value(next.version))
        .col_expr(audiences::Column::UpdatedAt, Expr::value(next.updated_at))
        .filter(audiences::Column::PartnerId.eq(partner_id))
        .filter(audiences::Column::Id.eq(current.id))
        .filter(audiences::Column::Version.eq(current.version))
        .exec(conn)
        .await?;
    check_guarded_write(written.rows_affected, "audience")
}

fn dialect(backend: DatabaseBackend) -> Result<Dialect, ApiError> {
    match backend {
        DatabaseBackend::Postgres => Ok(Dialect::Postgres),
        DatabaseBackend::Sqlite => Ok(Dialect::Sqlite),
        other => Err(ApiError::Internal(anyhow::anyhow!(
            "audiences are not supported on {other:?}"
        ))),
    }
}

fn statement(backend: DatabaseBackend, sql: String, params: SqlParams) -> Statement {
    let values = params.into_values().into_iter().map(|v| match v {
        SqlValue::Text(s) => Value::from(s),
        SqlValue::Int(n) => Value::from(n),
        SqlValue::Bool(b) => Value::from(b),
        SqlValue::Timestamp(t) => Value::from(t),
        SqlValue::Uuid(u) => Value::from(u),
    });
    Statement::from_sql_and_values(backend, sql, values)
}

/// Writes criteria as SQL over `customer_features`, parameters in text order.
struct Writer<'a> {
    target: SqlTarget<'a>,
    params: SqlParams,
    now: DateTime<Utc>,
}

impl Writer<'_> {
    fn new(d: Dialect, now: DateTime<Utc>) -> Writer<'static> {
        Writer {
            target: features::target(d),
            params: SqlParams::new(d),
            now,
        }
    }

    fn push(&mut self, v: SqlValue) -> String {
        self.params.push(v)
    }

    fn condition(&mut self, c: &Criterion) -> Result<String, ApiError> {
        c.to_sql_condition(&self.target, self.now, &mut self.params)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("compiling a criterion: {e}")))
    }

    /// `WHERE` over the partner's candidates of `audience` fulfilling `extra`.
    fn candidates(
        &mut self,
        partner_id: Uuid,
        audience: &Audience,
        from: Candidates,
        extra: &Criterion,
    ) -> Result<String, ApiError> {
        let partner = self.push(SqlValue::Uuid(partner_id));
        let mut sql = format!("WHERE \"partner_id\" = {partner}");
        match from {
            Candidates::Criterion => {
                let all = Criterion::All(vec![audience.criterion.clone(), extra.clone()]);
                let reads_purchases = all
                    .conditions()
                    .any(|c| matches!(c.field, Field::Purchases { .. }));
                let c = if reads_purchases {
                    // Purchase windows are joins, not a condition on the row: select the
                    // customers with the compiled statement and keep those.
                    let select = all
                        .to_sql_select(&self.target, partner_id, self.now, &mut self.params)
                        .map_err(|e| {
                            ApiError::Internal(anyhow::anyhow!("compiling a criterion: {e}"))
                        })?;
                    format!("\"customer_id\" IN ({select})")
                } else {
                    self.condition(&all)?
                };
                sql.push_str(&format!(" AND ({c})"));
            }
            Candidates::MembersOf(source) => {
                let c = self.condition(extra)?;
                let source = self.push(SqlValue::Uuid(source));
                sql.push_str(&format!(
                    " AND ({c}) AND \"customer_id\" IN (SELECT \"customer_id\" FROM \
                     \"audience_members\" WHERE \"audience_id\" = {source})"
                ));
            }
        }
        Ok(sql)
    }
}

/// The aggregate counting how many candidates each final check excludes (each customer under
/// the first check they fail); `None` when the audience has no checks.
fn exclusions_query(
    backend: DatabaseBackend,
    partner_id: Uuid,
    audience: &Audience,
    from: Candidates,
    checks: &[(Exclusion, Criterion)],
) -> Result<Option<Statement>, ApiError> {
    let mut w = Writer::new(dialect(backend)?, audience.created_at);
    let mut sums = Vec::new();
    for k in 0..checks.len() {
        if let Some(c) = excluded_by(checks, k) {
            let c = w.condition(&c)?;
            sums.push(format!(
                "COALESCE(SUM(CASE WHEN {c} THEN 1 ELSE 0 END), 0) AS e{k}"
            ));
        }
    }
    if sums.is_empty() {
        return Ok(None);
    }
    let filter = w.candidates(partner_id, audience, from, &Criterion::All(Vec::new()))?;
    let sql = format!(
        "SELECT {} FROM \"customer_features\" {filter}",
        sums.join(", ")
    );
    Ok(Some(statement(backend, sql, w.params)))
}

/// Counts the exclusions of the final checks, in one aggregate query.
pub(super) async fn count_exclusions(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    audience: &Audience,
    from: Candidates,
) -> Result<Exclusions, ApiError> {
    let checks = audience.final_checks();
    let Some(query) = exclusions_query(
        conn.get_database_backend(),
        partner_id,
        audience,
        from,
        &checks,
    )?
    else {
        return Ok(Exclusions::default());
    };
    let row = conn
        .query_one(query)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("an aggregate returned no row")))?;
    let mut out = Exclusions::default();
    for (k, (e, _)) in checks.iter().enumerate() {
        out.add(*e, row.try_get::<i64>("", &format!("e{k}"))?);
    }
    Ok(out)
}

/// The `INSERT … SELECT` storing the candidates passing the final checks as members since
/// the audience's creation. In customer order, so the primary key grows at its end instead
/// of splitting pages all over (half the time of a million-member creation).
pub(super) fn members_insert(
    backend: DatabaseBackend,
    partner_id: Uuid,
    audience: &Audience,
    from: Candidates,
) -> Result<Statement, ApiError> {
    let mut w = Writer::new(dialect(backend)?, audience.created_at);
    let id = w.push(SqlValue::Uuid(audience.id));
    let at = w.push(SqlValue::Timestamp(audience.created_at));
    let cause = w.push(SqlValue::Text(
        MembershipCause::Creation.as_str().to_owned(),
    ));
    let checks = Criterion::All(
        audience
            .final_checks()
            .into_iter()
            .map(|(_, c)| c)
            .collect(),
    );
    let filter = w.candidates(partner_id, audience, from, &checks)?;
    let sql = format!(
        "INSERT INTO \"audience_members\" (\"audience_id\", \"customer_id\", \"partner_id\", \
         \"added_at\", \"cause\") SELECT {id}, \"customer_id\", \"partner_id\", {at}, {cause} \
         FROM \"customer_features\" {filter} ORDER BY \"customer_id\""
    );
    Ok(statement(backend, sql, w.params))
}

/// History rows written from the member rows of `audience` (of one customer when `customer`
/// is set).
#[derive(Debug, Clone, Copy)]
pub(super) enum HistoryRows {
    /// The entries of the members selected at the audience's creation. They are not written
    /// at creation (the member row holds the time and cause, and the history reads them from
    /// there); this writes them when the members leave. Their id is the customer's, the id
    /// the history showed for them before.
    CreationEntries,
    /// Every member's leaving at a time for a cause. The ids are random here (the database
    /// makes them, unlike the service's UUID v7): all rows of one statement have the same
    /// time, and ids only order rows of equal time.
    Left(DateTime<Utc>, MembershipCause),
}

/// The `INSERT … SELECT` writing `rows` for the current members of `audience`.
pub(super) fn history_insert(
    backend: DatabaseBackend,
    audience: &Audience,
    rows: HistoryRows,
    customer: Option<Uuid>,
) -> Result<Statement, ApiError> {
    let d = dialect(backend)?;
    // SQLite's `?` are positional: parameters are pushed in the order the text names them.
    let mut p = SqlParams::new(d);
    let (id, change, at, cause) = match rows {
        HistoryRows::CreationEntries => (
            "\"customer_id\"".to_owned(),
            p.push(SqlValue::Text("entered".into())),
            "\"added_at\"".to_owned(),
            "\"cause\"".to_owned(),
        ),
        HistoryRows::Left(at, cause) => (
            match d {
                Dialect::Postgres => "gen_random_uuid()",
                Dialect::Sqlite => "randomblob(16)",
            }
            .to_owned(),
            p.push(SqlValue::Text("left".into())),
            p.push(SqlValue::Timestamp(at)),
            p.push(SqlValue::Text(cause.as_str().to_owned())),
        ),
    };
    let name = p.push(SqlValue::Text(audience.display_name.clone()));
    let audience_id = p.push(SqlValue::Uuid(audience.id));
    let only = match rows {
        HistoryRows::CreationEntries => format!(
            " AND \"cause\" = {}",
            p.push(SqlValue::Text(
                MembershipCause::Creation.as_str().to_owned()
            ))
        ),
        HistoryRows::Left(..) => String::new(),
    };
    let customer = match customer {
        Some(c) => format!(" AND \"customer_id\" = {}", p.push(SqlValue::Uuid(c))),
        None => String::new(),
    };
    let sql = format!(
        "INSERT INTO \"audience_history\" (\"id\", \"partner_id\", \"audience_id\", \
         \"customer_id\", \"change\", \"at\", \"cause\", \"audience_display_name\") \
         SELECT {id}, \"partner_id\", \"audience_id\", \"customer_id\", {change}, \
         {at}, {cause}, {name} FROM \"audience_members\" WHERE \"audience_id\" = {audience_id}\
         {only}{customer}"
    );
    Ok(statement(backend, sql, p))
}

/// Counts the exclusions and stores the candidates passing the final checks as members;
/// answers how many entered. The members' entries in the history are the member rows
/// themselves (see [`HistoryRows::CreationEntries`]), which keeps a creation to one write per
/// member. (Reading the candidates once for both, in one PostgreSQL statement with a
/// materialised CTE, measured slower: 4.2 s against 3.6 s for a million customers.)
async fn select_members(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    audience: &Audience,
    from: Candidates,
) -> Result<(u64, Exclusions), ApiError> {
    let exclusions = count_exclusions(conn, partner_id, audience, from).await?;
    let insert = members_insert(conn.get_database_backend(), partner_id, audience, from)?;
    Ok((conn.execute(insert).await?.rows_affected(), exclusions))
}

fn history_row(
    partner_id: Uuid,
    audience: &Audience,
    customer_id: Uuid,
    entered: bool,
    cause: MembershipCause,
    at: DateTime<Utc>,
) -> audience_history::ActiveModel {
    audience_history::ActiveModel {
        id: Set(Uuid::now_v7()),
        partner_id: Set(partner_id),
        audience_id: Set(audience.id),
        customer_id: Set(customer_id),
        change: Set(if entered { "entered" } else { "left" }.to_owned()),
        at: Set(at),
        cause: Set(cause.as_str().to_owned()),
        audience_display_name: Set(audience.display_name.clone()),
    }
}

fn member_from(m: &audience_members::Model) -> Member {
    Member {
        customer_id: m.customer_id,
        added_at: m.added_at,
        cause: MembershipCause::parse_str(&m.cause).unwrap_or(MembershipCause::Creation),
    }
}

fn attribute_of(attributes: &serde_json::Value, key: &str) -> String {
    attributes
        .get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The condition "a member row of `customer_id` in one of the partner's audiences". Member
/// rows have no index by customer (it would cost a million-member creation a second B-tree):
/// the partner's audiences are a subquery, and each is a probe of the primary key
/// `(audience_id, customer_id)`. (A subquery rather than a list of ids: a partner's
/// audiences are not bounded by the databases' limit on bind parameters.)
fn customer_rows(partner_id: Uuid, customer_id: Uuid) -> Condition {
    let partners = Query::select()
        .column(audiences::Column::Id)
        .from(audiences::Entity)
        .and_where(audiences::Column::PartnerId.eq(partner_id))
        .to_owned();
    Condition::all()
        .add(audience_members::Column::AudienceId.in_subquery(partners))
        .add(audience_members::Column::CustomerId.eq(customer_id))
        .add(audience_members::Column::PartnerId.eq(partner_id))
}

/// An erased customer (GDPR) leaves every READY audience and their audience history is
/// deleted. A locked audience keeps the bare id (segmentation holds nothing else about them
/// once their features are gone): it records whom a launched campaign addressed.
pub(crate) async fn erase_customer(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<(), ApiError> {
    let rows = customer_rows(partner_id, customer_id);
    let memberships = audience_members::Entity::find()
        .filter(rows.clone())
        .all(conn)
        .await?;
    for m in memberships {
        let current = lock_audience(conn, partner_id, m.audience_id).await?;
        if current.check_changeable().is_err() {
            continue;
        }
        audience_members::Entity::delete_by_id((m.audience_id, customer_id))
            .exec(conn)
            .await?;
        let mut next = current.clone();
        next.member_count = (current.member_count - 1).max(0);
        next.version += 1;
        next.updated_at = stored_time(Utc::now());
        write_guarded(conn, partner_id, &current, &next).await?;
    }
    audience_history::Entity::delete_many()
        .filter(audience_history::Column::PartnerId.eq(partner_id))
        .filter(audience_history::Column::CustomerId.eq(customer_id))
        .exec(conn)
        .await?;
    // The locked audiences' rows no longer tell how the customer entered (a creation entry
    // would otherwise still be read from them as history).
    audience_members::Entity::update_many()
        .col_expr(
            audience_members::Column::Cause,
            Expr::value(MembershipCause::CustomerRemoved.as_str()),
        )
        .filter(rows)
        .exec(conn)
        .await?;
    Ok(())
}

/// A merged account's place in READY audiences goes to the survivor: the merged account
/// leaves (history cause `customer_removed`) and the survivor enters (cause `recalculation`,
/// member since now) unless already a member or excluded by the audience's final checks on
/// the survivor's folded `facts`: consent and bounces hold for every member, so a survivor
/// without the channel's consent does not inherit the place. A LOCKED audience stays as it is:
/// it records whom a launched campaign addressed (the merged id leads to the survivor
/// through identity). Running it again finds no READY membership of the merged account.
pub(crate) async fn merge_customer(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    survivor: Uuid,
    merged: Uuid,
    facts: &Facts,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let now = stored_time(now);
    let rows = customer_rows(partner_id, merged);
    let memberships = audience_members::Entity::find()
        .filter(rows)
        .all(conn)
        .await?;
    for m in memberships {
        let current = lock_audience(conn, partner_id, m.audience_id).await?;
        if current.check_changeable().is_err() {
            continue;
        }
        // The creation entry the member row held goes into the history before the row does.
        let entry = history_insert(
            conn.get_database_backend(),
            &current,
            HistoryRows::CreationEntries,
            Some(merged),
        )?;
        conn.execute(entry).await?;
        audience_members::Entity::delete_by_id((current.id, merged))
            .exec(conn)
            .await?;
        let mut changes = vec![(merged, false, MembershipCause::CustomerRemoved)];
        let member = audience_members::Entity::find_by_id((current.id, survivor))
            .one(conn)
            .await?
            .is_some();
        let enters = !member && first_exclusion(&current.final_checks(), facts).is_none();
        if enters {
            let cause = MembershipCause::Recalculation;
            insert_member(conn, partner_id, current.id, survivor, now, cause).await?;
            changes.push((survivor, true, MembershipCause::Recalculation));
        }
        let mut next = current.clone();
        next.member_count = (current.member_count - i64::from(!enters)).max(0);
        next.version += 1;
        next.updated_at = now;
        write_guarded(conn, partner_id, &current, &next).await?;
        record_changes(conn, partner_id, &next, &changes, now).await?;
    }
    Ok(())
}

/// Stores one member row (the caller writes the history row and the counts).
async fn insert_member(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    audience_id: Uuid,
    customer_id: Uuid,
    at: DateTime<Utc>,
    cause: MembershipCause,
) -> Result<(), ApiError> {
    audience_members::Entity::insert(audience_members::ActiveModel {
        audience_id: Set(audience_id),
        customer_id: Set(customer_id),
        partner_id: Set(partner_id),
        added_at: Set(at),
        cause: Set(cause.as_str().to_owned()),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// The history rows and `AudienceMembershipChanged` events of members who entered
/// (`true`) or left, each with its cause.
async fn record_changes(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    audience: &Audience,
    changes: &[(Uuid, bool, MembershipCause)],
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    for &(customer_id, added, cause) in changes {
        audience_history::Entity::insert(history_row(
            partner_id,
            audience,
            customer_id,
            added,
            cause,
            now,
        ))
        .exec_without_returning(conn)
        .await?;
        events::enqueue(
            conn,
            Some(partner_id),
            &ev::AudienceMembershipChanged {
                audience_id: audience.id.to_string(),
                customer_id: customer_id.to_string(),
                added,
            },
        )
        .await?;
    }
    Ok(())
}

impl Store {
    /// Records a new audience and selects its members from `from` (the criterion now, or
    /// another audience's members) through the final checks, counting the exclusions;
    /// publishes `AudienceCreated`. In the caller's transaction.
    pub async fn create_audience(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        mut audience: Audience,
        from: Candidates,
    ) -> Result<Audience, ApiError> {
        audience.created_at = stored_time(audience.created_at);
        audience.updated_at = audience.created_at;
        let (entered, exclusions) = select_members(conn, partner_id, &audience, from).await?;
        audience.member_count = i64::try_from(entered).unwrap_or(i64::MAX);
        audience.exclusions = exclusions;
        audiences::Entity::insert(active_model(partner_id, &audience))
            .exec_without_returning(conn)
            .await?;
        events::enqueue(
            conn,
            Some(partner_id),
            &ev::AudienceCreated {
                audience_id: audience.id.to_string(),
                member_count: audience.member_count,
            },
        )
        .await?;
        Ok(audience)
    }

    /// Copies an audience of the partner (READY or LOCKED) into a new READY one: the same
    /// definition, its members either the criterion run again now (`reselect`) or the
    /// original's members, through the final checks again either way.
    pub async fn duplicate_audience(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        source_id: Uuid,
        display_name: &str,
        reselect: bool,
        now: DateTime<Utc>,
    ) -> Result<Audience, ApiError> {
        let source = lock_audience(conn, partner_id, source_id).await?;
        let copy = source.duplicate(Uuid::now_v7(), display_name, now);
        let from = if reselect {
            Candidates::Criterion
        } else {
            Candidates::MembersOf(source_id)
        };
        self.create_audience(conn, partner_id, copy, from).await
    }

    /// An audience of the partner; another partner's is NOT_FOUND.
    pub async fn audience(&self, partner_id: Uuid, id: Uuid) -> Result<Audience, ApiError> {
        find(&self.db, partner_id, id).await?.ok_or_else(not_found)
    }

    /// A page of the partner's audiences, newest first (ids are UUID v7), before `after`.
    pub async fn list_audiences(
        &self,
        partner_id: Uuid,
        filter: AudienceFilter,
        limit: u64,
        after: Option<Uuid>,
    ) -> Result<Vec<Audience>, ApiError> {
        let mut q = audiences::Entity::find().filter(audiences::Column::PartnerId.eq(partner_id));
        if let Some(s) = filter.state {
            q = q.filter(audiences::Column::State.eq(s.as_str()));
        }
        if let Some(c) = filter.channel {
            q = q.filter(audiences::Column::Channel.eq(c.as_str()));
        }
        if let Some(after) = after {
            q = q.filter(audiences::Column::Id.lt(after));
        }
        q.order_by_desc(audiences::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(audience_from)
            .collect()
    }

    /// Renames an audience or changes its note (`change` gets the current audience); refused
    /// once locked, or for a stale etag.
    pub async fn update_audience(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        id: Uuid,
        etag: &str,
        change: impl FnOnce(&Audience) -> Result<Audience, ApiError>,
    ) -> Result<Audience, ApiError> {
        let current = lock_changeable(conn, partner_id, id).await?;
        check_etag(etag, &current.etag(), "audience")?;
        let mut next = change(&current)?;
        next.version = current.version + 1;
        next.updated_at = stored_time(Utc::now());
        write_guarded(conn, partner_id, &current, &next).await?;
        Ok(next)
    }

    /// Deletes a READY audience: every member leaves (history cause `group_deleted`, kept).
    pub async fn delete_audience(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        let audience = lock_changeable(conn, partner_id, id).await?;
        let backend = conn.get_database_backend();
        let left = HistoryRows::Left(stored_time(now), MembershipCause::GroupDeleted);
        for rows in [HistoryRows::CreationEntries, left] {
            conn.execute(history_insert(backend, &audience, rows, None)?)
                .await?;
        }
        audience_members::Entity::delete_many()
            .filter(audience_members::Column::AudienceId.eq(id))
            .exec(conn)
            .await?;
        audiences::Entity::delete_many()
            .filter(audiences::Column::PartnerId.eq(partner_id))
            .filter(audiences::Column::Id.eq(id))
            .exec(conn)
            .await?;
        Ok(())
    }

    /// Adds a customer by hand, if the final checks admit them (else FAILED_PRECONDITION
    /// with the check's reason); a member stays as they were. NOT_FOUND for an unknown
    /// audience or customer of the partner.
    pub async fn add_audience_member(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        id: Uuid,
        customer_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Audience, ApiError> {
        let now = stored_time(now);
        let current = lock_changeable(conn, partner_id, id).await?;
        let Some(row) = customer_features::Entity::find_by_id((partner_id, customer_id))
            .one(conn)
            .await?
        else {
            return Err(ApiError::NotFound("customer".into()));
        };
        if audience_members::Entity::find_by_id((id, customer_id))
            .one(conn)
            .await?
            .is_some()
        {
            return Ok(current);
        }
        let facts = features::features_from(&row).facts(now);
        if let Some(e) = first_exclusion(&current.final_checks(), &facts) {
            return Err(audience_rule(AudienceRule::Excluded(e)));
        }
        insert_member(
            conn,
            partner_id,
            id,
            customer_id,
            now,
            MembershipCause::Manual,
        )
        .await?;
        self.member_changed(conn, partner_id, current, customer_id, true, now)
            .await
    }

    /// Removes a member by hand; NOT_FOUND for an unknown audience or a non-member.
    pub async fn remove_audience_member(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        id: Uuid,
        customer_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Audience, ApiError> {
        let now = stored_time(now);
        let current = lock_changeable(conn, partner_id, id).await?;
        let entry = history_insert(
            conn.get_database_backend(),
            &current,
            HistoryRows::CreationEntries,
            Some(customer_id),
        )?;
        conn.execute(entry).await?;
        let removed = audience_members::Entity::delete_many()
            .filter(audience_members::Column::AudienceId.eq(id))
            .filter(audience_members::Column::CustomerId.eq(customer_id))
            .exec(conn)
            .await?;
        if removed.rows_affected == 0 {
            return Err(ApiError::NotFound("audience member".into()));
        }
        self.member_changed(conn, partner_id, current, customer_id, false, now)
            .await
    }

    /// After a manual change: the count and version, the history row and the event.
    async fn member_changed(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        current: Audience,
        customer_id: Uuid,
        added: bool,
        now: DateTime<Utc>,
    ) -> Result<Audience, ApiError> {
        let mut next = current.clone();
        next.member_count = (current.member_count + if added { 1 } else { -1 }).max(0);
        next.version += 1;
        next.updated_at = now;
        write_guarded(conn, partner_id, &current, &next).await?;
        let change = (customer_id, added, MembershipCause::Manual);
        record_changes(conn, partner_id, &next, &[change], now).await?;
        Ok(next)
    }

    /// Locks an audience for a campaign launch (AUDIENCE_EMPTY without members,
    /// AUDIENCE_LOCKED when another campaign locked it; the same campaign again answers it
    /// unchanged); publishes `AudienceLocked`.
    pub async fn lock_audience(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        id: Uuid,
        campaign_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Audience, ApiError> {
        let current = lock_audience(conn, partner_id, id).await?;
        match current.check_lock(campaign_id).map_err(audience_rule)? {
            Lock::AlreadyForThisCampaign => Ok(current),
            Lock::Now => {
                let next = current.clone().locked(campaign_id, stored_time(now));
                write_guarded(conn, partner_id, &current, &next).await?;
                events::enqueue(
                    conn,
                    Some(partner_id),
                    &ev::AudienceLocked {
                        audience_id: id.to_string(),
                        campaign_id: campaign_id.to_string(),
                        member_count: next.member_count,
                    },
                )
                .await?;
                Ok(next)
            }
        }
    }

    /// A page of an audience's members with their contact details, by customer id after
    /// `after`; NOT_FOUND for another partner's audience.
    pub async fn audience_contacts(
        &self,
        partner_id: Uuid,
        id: Uuid,
        limit: u64,
        after: Option<Uuid>,
    ) -> Result<Vec<Contact>, ApiError> {
        let members = self.audience_members(partner_id, id, limit, after).await?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        // Only the attributes: the other JSON columns (facts, activity) are most of a row
        // and an export reads a million of them.
        let rows: Vec<(Uuid, serde_json::Value)> = customer_features::Entity::find()
            .select_only()
            .column(customer_features::Column::CustomerId)
            .column(customer_features::Column::Attributes)
            .filter(customer_features::Column::PartnerId.eq(partner_id))
            .filter(
                customer_features::Column::CustomerId.is_in(members.iter().map(|m| m.customer_id)),
            )
            .into_tuple()
            .all(&self.db)
            .await?;
        let by_id: std::collections::HashMap<Uuid, &serde_json::Value> =
            rows.iter().map(|(id, a)| (*id, a)).collect();
        Ok(members
            .into_iter()
            .map(|m| {
                let f = by_id.get(&m.customer_id);
                let a = |k: &str| f.map(|f| attribute_of(f, k)).unwrap_or_default();
                Contact {
                    customer_id: m.customer_id,
                    first_name: a("first_name"),
                    last_name: a("last_name"),
                    birth_date: a("birth_date"),
                    email: a("email"),
                    phone: a("phone"),
                    added_at: m.added_at,
                    cause: m.cause,
                }
            })
            .collect())
    }

    /// A page of an audience's members by customer id after `after`; NOT_FOUND for another
    /// partner's audience.
    pub async fn audience_members(
        &self,
        partner_id: Uuid,
        id: Uuid,
        limit: u64,
        after: Option<Uuid>,
    ) -> Result<Vec<Member>, ApiError> {
        self.audience(partner_id, id).await?;
        let mut q = audience_members::Entity::find()
            .filter(audience_members::Column::PartnerId.eq(partner_id))
            .filter(audience_members::Column::AudienceId.eq(id));
        if let Some(after) = after {
            q = q.filter(audience_members::Column::CustomerId.gt(after));
        }
        let q = q
            .order_by_asc(audience_members::Column::CustomerId)
            .limit(limit);
        // A page is a walk of the primary key in order. Without statistics of a new audience
        // the planner takes it for a few hundred rows and reads every member after the
        // cursor into a bitmap, then sorts them for the first `limit`: an export of a
        // million members read the rest of the audience for each page (~0.1 s a page at
        // 200,000 members, growing with the audience) instead of one page (~1 ms).
        let rows = if self.db.get_database_backend() == sea_orm::DbBackend::Postgres {
            let txn = sea_orm::TransactionTrait::begin(&self.db).await?;
            txn.execute_unprepared("SET LOCAL enable_bitmapscan = off")
                .await?;
            let rows = q.all(&txn).await?;
            txn.commit().await?;
            rows
        } else {
            q.all(&self.db).await?
        };
        Ok(rows.iter().map(member_from).collect())
    }

    /// A page of the audiences a customer is in, newest audience first, before `after`.
    pub async fn customer_audiences(
        &self,
        partner_id: Uuid,
        customer_id: Uuid,
        limit: u64,
        after: Option<Uuid>,
    ) -> Result<Vec<CustomerAudience>, ApiError> {
        let mut q = audience_members::Entity::find().filter(customer_rows(partner_id, customer_id));
        if let Some(after) = after {
            q = q.filter(audience_members::Column::AudienceId.lt(after));
        }
        let members = q
            .order_by_desc(audience_members::Column::AudienceId)
            .limit(limit)
            .all(&self.db)
            .await?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let mut found: std::collections::HashMap<Uuid, Audience> = audiences::Entity::find()
            .filter(audiences::Column::PartnerId.eq(partner_id))
            .filter(audiences::Column::Id.is_in(members.iter().map(|m| m.audience_id)))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| audience_from(m).map(|a| (a.id, a)))
            .collect::<Result<_, _>>()?;
        Ok(members
            .iter()
            .filter_map(|m| {
                Some(CustomerAudience {
                    audience: found.remove(&m.audience_id)?,
                    added_at: m.added_at,
                })
            })
            .collect())
    }

    /// A page of audience membership history, newest first, after `(at, id)`: the history
    /// rows merged with the entries of current members selected at creation, read from their
    /// member rows (see [`HistoryRows::CreationEntries`]). An audience the partner never had
    /// is NOT_FOUND.
    pub async fn audience_history(
        &self,
        partner_id: Uuid,
        filter: AudienceHistoryFilter,
        limit: u64,
        after: Option<(DateTime<Utc>, Uuid)>,
    ) -> Result<Vec<AudienceHistoryEntry>, ApiError> {
        let (mut entries, base) = self
            .stored_history(partner_id, filter, limit, after)
            .await?;
        entries.extend(
            self.creation_entries(partner_id, filter, limit, after)
                .await?,
        );
        if entries.is_empty()
            && after.is_none()
            && let Some(a) = filter.audience_id
            && find(&self.db, partner_id, a).await?.is_none()
            && audience_history::Entity::find()
                .filter(base)
                .one(&self.db)
                .await?
                .is_none()
        {
            return Err(not_found());
        }
        entries.sort_by_key(|e| std::cmp::Reverse((e.at, e.id)));
        entries.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(entries)
    }

    /// The history rows of a page, and the filter without its time bounds.
    async fn stored_history(
        &self,
        partner_id: Uuid,
        filter: AudienceHistoryFilter,
        limit: u64,
        after: Option<(DateTime<Utc>, Uuid)>,
    ) -> Result<(Vec<AudienceHistoryEntry>, Condition), ApiError> {
        let mut cond = Condition::all().add(audience_history::Column::PartnerId.eq(partner_id));
        if let Some(c) = filter.customer_id {
            cond = cond.add(audience_history::Column::CustomerId.eq(c));
        }
        if let Some(a) = filter.audience_id {
            cond = cond.add(audience_history::Column::AudienceId.eq(a));
        }
        let base = cond.clone();
        if let Some(from) = filter.from {
            cond = cond.add(audience_history::Column::At.gte(from));
        }
        if let Some(until) = filter.until {
            cond = cond.add(audience_history::Column::At.lt(until));
        }
        let mut q = audience_history::Entity::find().filter(cond);
        if let Some(after) = after {
            q = q.filter(paging::older_than(
                audience_history::Column::At,
                audience_history::Column::Id,
                after,
            ));
        }
        let rows = q
            .order_by_desc(audience_history::Column::At)
            .order_by_desc(audience_history::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        let entries = rows
            .into_iter()
            .map(|h| AudienceHistoryEntry {
                id: h.id,
                customer_id: h.customer_id,
                audience_id: h.audience_id,
                audience_display_name: h.audience_display_name,
                entered: h.change == "entered",
                cause: MembershipCause::parse_str(&h.cause).unwrap_or(MembershipCause::Creation),
                at: h.at,
            })
            .collect();
        Ok((entries, base))
    }

    /// The creation entries of current members of a page, from their member rows (id = the
    /// customer's id, as when they are written on leaving).
    async fn creation_entries(
        &self,
        partner_id: Uuid,
        filter: AudienceHistoryFilter,
        limit: u64,
        after: Option<(DateTime<Utc>, Uuid)>,
    ) -> Result<Vec<AudienceHistoryEntry>, ApiError> {
        let mut cond = Condition::all()
            .add(audience_members::Column::PartnerId.eq(partner_id))
            .add(audience_members::Column::Cause.eq(MembershipCause::Creation.as_str()));
        if let Some(c) = filter.customer_id {
            cond = cond.add(customer_rows(partner_id, c));
        }
        if let Some(a) = filter.audience_id {
            cond = cond.add(audience_members::Column::AudienceId.eq(a));
        }
        if let Some(from) = filter.from {
            cond = cond.add(audience_members::Column::AddedAt.gte(from));
        }
        if let Some(until) = filter.until {
            cond = cond.add(audience_members::Column::AddedAt.lt(until));
        }
        if let Some(after) = after {
            cond = cond.add(paging::older_than(
                audience_members::Column::AddedAt,
                audience_members::Column::CustomerId,
                after,
            ));
        }
        let members = audience_members::Entity::find()
            .filter(cond)
            .order_by_desc(audience_members::Column::AddedAt)
            .order_by_desc(audience_members::Column::CustomerId)
            .limit(limit)
            .all(&self.db)
            .await?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let names: std::collections::HashMap<Uuid, String> = audiences::Entity::find()
            .filter(audiences::Column::PartnerId.eq(partner_id))
            .filter(audiences::Column::Id.is_in(members.iter().map(|m| m.audience_id)))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|a| (a.id, a.display_name))
            .collect();
        Ok(members
            .into_iter()
            .map(|m| AudienceHistoryEntry {
                id: m.customer_id,
                customer_id: m.customer_id,
                audience_display_name: names.get(&m.audience_id).cloned().unwrap_or_default(),
                audience_id: m.audience_id,
                entered: true,
                cause: MembershipCause::Creation,
                at: m.added_at,
            })
            .collect())
    }

    /// Whether `id` is (or was, judging by its history) one of the partner's audiences.
    pub async fn is_audience(&self, partner_id: Uuid, id: Uuid) -> Result<bool, ApiError> {
        if find(&self.db, partner_id, id).await?.is_some() {
            return Ok(true);
        }
        Ok(audience_history::Entity::find()
            .filter(audience_history::Column::PartnerId.eq(partner_id))
            .filter(audience_history::Column::AudienceId.eq(id))
            .one(&self.db)
            .await?
            .is_some())
    }
}

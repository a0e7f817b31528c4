//! Membership levels, scoped by partner: the tier ladder, each customer's qualifying activity
//! (fed by checkout's and the wallet's events), tier state and history, and the period-end
//! job. Every change of a customer's tier is one transaction that also writes the history
//! row and enqueues `TierChanged`.
use std::time::Duration;

use chrono::{DateTime, Utc};
use loyalty_platform::{
    ApiError,
    db::{advisory_xact_lock, begin_write},
    events::{self, DomainEvent, EventHandler},
};
use loyalty_proto::events::v1 as ev;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, OnConflict},
};
use uuid::Uuid;

use crate::domain::tiers::{
    self as domain, Action, Activity, Cause, Change, CustomerState, DowngradeMode, Held, Manual,
    Period, Qualification, Tier,
};

pub mod tier_rows {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tiers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub code: String,
        pub display_name: String,
        pub rank: i32,
        pub min_spend_minor: Option<i64>,
        pub min_spend_currency: String,
        pub min_purchase_count: i64,
        pub min_points: i64,
        pub points_type: String,
        pub period_kind: String,
        pub period_length: i32,
        pub retention_months: i32,
        pub downgrade_mode: String,
        pub points_multiplier_basis_points: i32,
        pub discount_basis_points: i32,
        pub icon_url: String,
        pub color: String,
        pub revision: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod activities {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tier_activities")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub customer_id: Uuid,
        pub source_key: String,
        pub kind: String,
        pub occurred_at: DateTimeUtc,
        pub currency_code: String,
        pub spend_minor: i64,
        pub purchases: i64,
        pub points: i64,
        pub points_type_id: String,
        pub points_type_code: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod customer_tiers {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "customer_tiers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub partner_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: Uuid,
        pub qualified_tier_id: Option<Uuid>,
        pub qualified_until: Option<DateTimeUtc>,
        pub manual_tier_id: Option<Uuid>,
        pub manual_until: Option<DateTimeUtc>,
        pub manual_reason: String,
        pub since: Option<DateTimeUtc>,
        pub review_at: Option<DateTimeUtc>,
        pub evaluated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod history {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "customer_tier_history")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub customer_id: Uuid,
        pub previous_tier_id: Option<Uuid>,
        pub previous_rank: i32,
        pub tier_id: Option<Uuid>,
        pub rank: i32,
        pub cause: String,
        pub manual: bool,
        pub reason: String,
        pub changed_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

fn internal(message: String) -> ApiError {
    ApiError::Internal(anyhow::anyhow!(message))
}

/// Serialises ladder changes of one partner on PostgreSQL (code and rank are checked by
/// reading first, for a precise ALREADY_EXISTS; the unique indexes settle races).
pub async fn lock_ladder(conn: &impl ConnectionTrait, partner_id: Uuid) -> Result<(), ApiError> {
    Ok(advisory_xact_lock(conn, &format!("rewards-tiers:{partner_id}")).await?)
}

/// Serialises the re-qualification of one customer (events, the job and SetCustomerTier).
async fn lock_customer(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<(), ApiError> {
    Ok(advisory_xact_lock(conn, &format!("rewards-tier:{partner_id}:{customer_id}")).await?)
}

// ---- The ladder ----

fn period_columns(p: Period) -> (&'static str, i32) {
    match p {
        Period::RollingMonths(n) => ("rolling_months", n as i32),
        Period::RollingDays(n) => ("rolling_days", n as i32),
        Period::CalendarYear => ("calendar_year", 0),
        Period::CalendarQuarter => ("calendar_quarter", 0),
        Period::CalendarMonth => ("calendar_month", 0),
    }
}

fn tier_from(m: tier_rows::Model) -> Result<Tier, ApiError> {
    let length = u32::try_from(m.period_length).unwrap_or(0);
    let period = match m.period_kind.as_str() {
        "rolling_months" => Period::RollingMonths(length),
        "rolling_days" => Period::RollingDays(length),
        "calendar_year" => Period::CalendarYear,
        "calendar_quarter" => Period::CalendarQuarter,
        "calendar_month" => Period::CalendarMonth,
        other => return Err(internal(format!("tier {} has period {other:?}", m.id))),
    };
    let downgrade_mode = DowngradeMode::parse_str(&m.downgrade_mode)
        .ok_or_else(|| internal(format!("tier {} has mode {:?}", m.id, m.downgrade_mode)))?;
    Ok(Tier {
        id: m.id,
        code: m.code,
        display_name: m.display_name,
        rank: m.rank,
        qualification: Qualification {
            minimum_spend: m.min_spend_minor.map(|a| (a, m.min_spend_currency)),
            minimum_purchase_count: m.min_purchase_count,
            minimum_points: m.min_points,
            points_type: m.points_type,
            period,
        },
        retention_months: u32::try_from(m.retention_months).unwrap_or(0),
        downgrade_mode,
        points_multiplier_basis_points: m.points_multiplier_basis_points,
        discount_basis_points: m.discount_basis_points,
        icon_url: m.icon_url,
        color: m.color,
        revision: m.revision,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn tier_row(partner_id: Uuid, t: &Tier) -> tier_rows::ActiveModel {
    let q = &t.qualification;
    let (kind, length) = period_columns(q.period);
    let (min_spend, currency) = match &q.minimum_spend {
        Some((a, c)) => (Some(*a), c.clone()),
        None => (None, String::new()),
    };
    tier_rows::ActiveModel {
        id: Set(t.id),
        partner_id: Set(partner_id),
        code: Set(t.code.clone()),
        display_name: Set(t.display_name.clone()),
        rank: Set(t.rank),
        min_spend_minor: Set(min_spend),
        min_spend_currency: Set(currency),
        min_purchase_count: Set(q.minimum_purchase_count),
        min_points: Set(q.minimum_points),
        points_type: Set(q.points_type.clone()),
        period_kind: Set(kind.to_owned()),
        period_length: Set(length),
        retention_months: Set(t.retention_months as i32),
        downgrade_mode: Set(t.downgrade_mode.as_str().to_owned()),
        points_multiplier_basis_points: Set(t.points_multiplier_basis_points),
        discount_basis_points: Set(t.discount_basis_points),
        icon_url: Set(t.icon_url.clone()),
        color: Set(t.color.clone()),
        revision: Set(t.revision),
        created_at: Set(t.created_at),
        updated_at: Set(t.updated_at),
    }
}

/// A tier by UUID or code; `None` when the partner has none.
pub async fn find_tier(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    key: &str,
) -> Result<Option<Tier>, ApiError> {
    let by = match Uuid::parse_str(key) {
        Ok(id) => Condition::any()
            .add(tier_rows::Column::Id.eq(id))
            .add(tier_rows::Column::Code.eq(key)),
        Err(_) => Condition::all().add(tier_rows::Column::Code.eq(key)),
    };
    tier_rows::Entity::find()
        .filter(tier_rows::Column::PartnerId.eq(partner_id))
        .filter(by)
        .one(conn)
        .await?
        .map(tier_from)
        .transpose()
}

/// The partner's whole ladder, by rank.
pub async fn ladder(conn: &impl ConnectionTrait, partner_id: Uuid) -> Result<Vec<Tier>, ApiError> {
    list_tiers(conn, partner_id, None, None).await
}

/// Tiers by increasing rank, after the rank `after`, at most `limit` (`None` = all).
pub async fn list_tiers(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    after: Option<i32>,
    limit: Option<u64>,
) -> Result<Vec<Tier>, ApiError> {
    let mut q = tier_rows::Entity::find().filter(tier_rows::Column::PartnerId.eq(partner_id));
    if let Some(after) = after {
        q = q.filter(tier_rows::Column::Rank.gt(after));
    }
    q.order_by_asc(tier_rows::Column::Rank)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(tier_from)
        .collect()
}

/// ALREADY_EXISTS when another tier of the partner has this code or rank.
async fn check_free(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    t: &Tier,
) -> Result<(), ApiError> {
    let clash = tier_rows::Entity::find()
        .filter(tier_rows::Column::PartnerId.eq(partner_id))
        .filter(tier_rows::Column::Id.ne(t.id))
        .filter(
            Condition::any()
                .add(tier_rows::Column::Code.eq(&t.code))
                .add(tier_rows::Column::Rank.eq(t.rank)),
        )
        .one(conn)
        .await?;
    match clash {
        Some(c) if c.code == t.code => Err(ApiError::AlreadyExists(format!(
            "a tier with code {:?}",
            t.code
        ))),
        Some(_) => Err(ApiError::AlreadyExists(format!(
            "a tier with rank {}",
            t.rank
        ))),
        None => Ok(()),
    }
}

fn taken(e: sea_orm::DbErr, t: &Tier) -> ApiError {
    loyalty_platform::db::taken(e, || {
        format!("a tier with code {:?} or rank {}", t.code, t.rank)
    })
}

/// A new tier; ALREADY_EXISTS when its code or rank is taken.
pub async fn insert_tier(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    t: &Tier,
) -> Result<(), ApiError> {
    check_free(conn, partner_id, t).await?;
    tier_rows::Entity::insert(tier_row(partner_id, t))
        .exec_without_returning(conn)
        .await
        .map_err(|e| taken(e, t))?;
    Ok(())
}

/// Replaces a tier's fields (its code stays); the caller has moved the revision on. Its
/// members are reviewed by the next job run.
pub async fn update_tier(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    t: &Tier,
) -> Result<(), ApiError> {
    check_free(conn, partner_id, t).await?;
    tier_rows::Entity::update(tier_row(partner_id, t))
        .filter(tier_rows::Column::PartnerId.eq(partner_id))
        .exec(conn)
        .await
        .map_err(|e| taken(e, t))?;
    review_soon(conn, partner_id, None, t.updated_at).await
}

/// Deletes a tier; its members are re-qualified by the next job run.
pub async fn delete_tier(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    t: &Tier,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    tier_rows::Entity::delete_many()
        .filter(tier_rows::Column::PartnerId.eq(partner_id))
        .filter(tier_rows::Column::Id.eq(t.id))
        .exec(conn)
        .await?;
    review_soon(conn, partner_id, Some(t.id), now).await
}

/// Brings the review of the tier's members (every customer with a tier state when `None`)
/// forward to `now`, so that the next job run re-qualifies them against the changed ladder.
async fn review_soon(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    tier_id: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let mut q = customer_tiers::Entity::update_many()
        .col_expr(customer_tiers::Column::ReviewAt, Expr::value(now))
        .filter(customer_tiers::Column::PartnerId.eq(partner_id));
    if let Some(id) = tier_id {
        q = q.filter(
            Condition::any()
                .add(customer_tiers::Column::QualifiedTierId.eq(id))
                .add(customer_tiers::Column::ManualTierId.eq(id)),
        );
    }
    q.exec(conn).await?;
    Ok(())
}

// ---- Activity ----

/// Records one qualifying event of a customer under its business key (`purchase:<id>`,
/// `return:<id>`, `points:<entry id>`); false when that key was recorded before.
pub async fn add_activity(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    source_key: &str,
    kind: &str,
    a: &Activity,
) -> Result<bool, ApiError> {
    let inserted = activities::Entity::insert(activities::ActiveModel {
        id: Set(Uuid::now_v7()),
        partner_id: Set(partner_id),
        customer_id: Set(customer_id),
        source_key: Set(source_key.to_owned()),
        kind: Set(kind.to_owned()),
        occurred_at: Set(a.at),
        currency_code: Set(a.currency_code.clone()),
        spend_minor: Set(a.spend_minor),
        purchases: Set(a.purchases),
        points: Set(a.points),
        points_type_id: Set(a.points_type_id.clone()),
        points_type_code: Set(a.points_type_code.clone()),
    })
    .on_conflict(
        OnConflict::columns([activities::Column::PartnerId, activities::Column::SourceKey])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(inserted > 0)
}

/// When the activity recorded under `source_key` happened.
async fn activity_time(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    source_key: &str,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    Ok(activities::Entity::find()
        .filter(activities::Column::PartnerId.eq(partner_id))
        .filter(activities::Column::SourceKey.eq(source_key))
        .one(conn)
        .await?
        .map(|a| a.occurred_at))
}

/// A customer's activity from `from` on.
pub async fn activity_since(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    from: DateTime<Utc>,
) -> Result<Vec<Activity>, ApiError> {
    Ok(activities::Entity::find()
        .filter(activities::Column::PartnerId.eq(partner_id))
        .filter(activities::Column::CustomerId.eq(customer_id))
        .filter(activities::Column::OccurredAt.gte(from))
        .order_by_asc(activities::Column::OccurredAt)
        .all(conn)
        .await?
        .into_iter()
        .map(|m| Activity {
            at: m.occurred_at,
            currency_code: m.currency_code,
            spend_minor: m.spend_minor,
            purchases: m.purchases,
            points: m.points,
            points_type_id: m.points_type_id,
            points_type_code: m.points_type_code,
        })
        .collect())
}

// ---- Customer state and history ----

/// A customer's stored state and when it was last evaluated.
pub async fn customer_state(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<Option<(CustomerState, DateTime<Utc>)>, ApiError> {
    let Some(m) = customer_tiers::Entity::find_by_id((partner_id, customer_id))
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    let qualified = match (m.qualified_tier_id, m.qualified_until) {
        (Some(tier_id), Some(until)) => Some(Held { tier_id, until }),
        _ => None,
    };
    let manual = m.manual_tier_id.map(|tier_id| Manual {
        tier_id,
        until: m.manual_until,
        reason: m.manual_reason,
    });
    Ok(Some((
        CustomerState {
            qualified,
            manual,
            since: m.since,
        },
        m.evaluated_at,
    )))
}

async fn save_state(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    s: &CustomerState,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let row = customer_tiers::ActiveModel {
        partner_id: Set(partner_id),
        customer_id: Set(customer_id),
        qualified_tier_id: Set(s.qualified.map(|h| h.tier_id)),
        qualified_until: Set(s.qualified.map(|h| h.until)),
        manual_tier_id: Set(s.manual.as_ref().map(|m| m.tier_id)),
        manual_until: Set(s.manual.as_ref().and_then(|m| m.until)),
        manual_reason: Set(s
            .manual
            .as_ref()
            .map(|m| m.reason.clone())
            .unwrap_or_default()),
        since: Set(s.since),
        review_at: Set(s.review_at()),
        evaluated_at: Set(now),
    };
    customer_tiers::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                customer_tiers::Column::PartnerId,
                customer_tiers::Column::CustomerId,
            ])
            .update_columns([
                customer_tiers::Column::QualifiedTierId,
                customer_tiers::Column::QualifiedUntil,
                customer_tiers::Column::ManualTierId,
                customer_tiers::Column::ManualUntil,
                customer_tiers::Column::ManualReason,
                customer_tiers::Column::Since,
                customer_tiers::Column::ReviewAt,
                customer_tiers::Column::EvaluatedAt,
            ])
            .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// One row of a customer's tier history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HistoryEntry {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub change: Change,
}

/// A page of a customer's tier changes, oldest first, after the change `after`.
pub async fn history(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<HistoryEntry>, ApiError> {
    let mut q = history::Entity::find()
        .filter(history::Column::PartnerId.eq(partner_id))
        .filter(history::Column::CustomerId.eq(customer_id));
    if let Some(after) = after {
        q = q.filter(history::Column::Id.gt(after));
    }
    q.order_by_asc(history::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(|m| {
            let cause = Cause::parse_str(&m.cause)
                .ok_or_else(|| internal(format!("history {} has cause {:?}", m.id, m.cause)))?;
            Ok(HistoryEntry {
                id: m.id,
                customer_id: m.customer_id,
                change: Change {
                    previous_tier_id: m.previous_tier_id,
                    previous_rank: m.previous_rank,
                    tier_id: m.tier_id,
                    rank: m.rank,
                    cause,
                    manual: m.manual,
                    reason: m.reason,
                    at: m.changed_at,
                },
            })
        })
        .collect()
}

async fn record_change(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    c: &Change,
) -> Result<(), ApiError> {
    history::Entity::insert(history::ActiveModel {
        id: Set(Uuid::now_v7()),
        partner_id: Set(partner_id),
        customer_id: Set(customer_id),
        previous_tier_id: Set(c.previous_tier_id),
        previous_rank: Set(c.previous_rank),
        tier_id: Set(c.tier_id),
        rank: Set(c.rank),
        cause: Set(c.cause.as_str().to_owned()),
        manual: Set(c.manual),
        reason: Set(c.reason.clone()),
        changed_at: Set(c.at),
    })
    .exec_without_returning(conn)
    .await?;
    let id = |t: Option<Uuid>| t.map(|t| t.to_string()).unwrap_or_default();
    events::enqueue(
        conn,
        Some(partner_id),
        &ev::TierChanged {
            customer_id: customer_id.to_string(),
            previous_tier_id: id(c.previous_tier_id),
            tier_id: id(c.tier_id),
            previous_rank: c.previous_rank,
            rank: c.rank,
            manual: c.manual,
            cause: c.cause.as_str().to_owned(),
        },
    )
    .await?;
    Ok(())
}

/// The customer's state after `action` at `now` (never before the last evaluation), saved
/// with its history row and `TierChanged` when the tier changed, in the caller's
/// transaction.
pub async fn requalify(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    customer_id: Uuid,
    action: Action,
    now: DateTime<Utc>,
) -> Result<(CustomerState, Option<Change>), ApiError> {
    lock_customer(txn, partner_id, customer_id).await?;
    let ladder = ladder(txn, partner_id).await?;
    let (state, evaluated) = customer_state(txn, partner_id, customer_id)
        .await?
        .unwrap_or_default();
    let now = now.max(evaluated);
    let activity = activity_since(
        txn,
        partner_id,
        customer_id,
        domain::lookback_start(&ladder, now),
    )
    .await?;
    let (next, change) = domain::apply(&ladder, &activity, &state, action, now);
    save_state(txn, partner_id, customer_id, &next, now).await?;
    if let Some(c) = &change {
        record_change(txn, partner_id, customer_id, c).await?;
    }
    Ok((next, change))
}

// ---- The activity feed ----

/// Consumes checkout's `PurchaseCompleted`/`PurchaseReturned` and the wallet's
/// `PointsPosted` into the activity table and re-qualifies the customer.
pub struct TierActivityFeed;

/// Postings that count as points earned: awards, and reversals of awards (negative).
fn counts_as_earned(p: &ev::PointsPosted) -> bool {
    p.currency_code.is_empty()
        && ((p.kind == "AWARD" && p.points > 0) || (p.kind == "REVERSAL" && p.points < 0))
}

#[async_trait::async_trait]
impl EventHandler for TierActivityFeed {
    fn handles(&self, event_type: &str) -> bool {
        [
            ev::PurchaseCompleted::TYPE,
            ev::PurchaseReturned::TYPE,
            ev::PointsPosted::TYPE,
        ]
        .contains(&event_type)
    }

    /// A malformed event (bad ids, undecodable payload) is logged and skipped: retrying it
    /// would never succeed and would hold up every later event. Anonymous purchases (no
    /// customer) count for no one.
    async fn apply(&self, txn: &DatabaseTransaction, e: &ev::EventEnvelope) -> anyhow::Result<()> {
        let skip = |why: &str| {
            tracing::warn!(event_id = %e.event_id, event_type = %e.event_type, "skipping event: {why}");
            Ok(())
        };
        let Ok(partner_id) = Uuid::parse_str(&e.partner_id) else {
            return skip("partner_id is not a UUID");
        };
        let occurred = e
            .occur_time
            .as_ref()
            .and_then(loyalty_platform::time::from_timestamp)
            .unwrap_or_else(Utc::now);
        let customer = |id: &str| Uuid::parse_str(id).ok();
        let (customer_id, key, kind, activity) =
            if let Some(p) = events::decode::<ev::PurchaseCompleted>(e) {
                let Some(c) = customer(&p.customer_id) else {
                    return Ok(());
                };
                let id = if p.purchase_id.is_empty() {
                    &p.transaction_id
                } else {
                    &p.purchase_id
                };
                let at = p
                    .purchase_time
                    .as_ref()
                    .and_then(loyalty_platform::time::from_timestamp)
                    .unwrap_or(occurred);
                let a = Activity {
                    at,
                    currency_code: p.currency_code,
                    spend_minor: p.net_amount_minor,
                    purchases: 1,
                    points: 0,
                    points_type_id: String::new(),
                    points_type_code: String::new(),
                };
                (c, format!("purchase:{id}"), "purchase", a)
            } else if let Some(r) = events::decode::<ev::PurchaseReturned>(e) {
                let Some(c) = customer(&r.customer_id) else {
                    return Ok(());
                };
                // A return counts in the period of the purchase it takes back.
                let at = activity_time(txn, partner_id, &format!("purchase:{}", r.purchase_id))
                    .await?
                    .unwrap_or(occurred);
                let a = Activity {
                    at,
                    currency_code: r.currency_code,
                    spend_minor: -r.refund_amount_minor,
                    purchases: if r.fully_returned { -1 } else { 0 },
                    points: 0,
                    points_type_id: String::new(),
                    points_type_code: String::new(),
                };
                let id = if r.return_id.is_empty() {
                    &e.event_id
                } else {
                    &r.return_id
                };
                (c, format!("return:{}:{id}", r.purchase_id), "return", a)
            } else if let Some(p) = events::decode::<ev::PointsPosted>(e) {
                if !counts_as_earned(&p) {
                    return Ok(());
                }
                let Some(c) = customer(&p.customer_id) else {
                    return skip("customer_id is not a UUID");
                };
                let id = if p.entry_id.is_empty() {
                    e.event_id.clone()
                } else {
                    p.entry_id.clone()
                };
                let a = Activity {
                    at: occurred,
                    currency_code: String::new(),
                    spend_minor: 0,
                    purchases: 0,
                    points: p.points,
                    points_type_id: p.points_type_id,
                    points_type_code: p.points_type_code,
                };
                (c, format!("points:{id}"), "points", a)
            } else {
                return skip("payload does not decode");
            };
        lock_customer(txn, partner_id, customer_id).await?;
        if !add_activity(txn, partner_id, customer_id, &key, kind, &activity).await? {
            tracing::debug!(%key, "activity counted already");
            return Ok(());
        }
        requalify(txn, partner_id, customer_id, Action::Requalify, occurred).await?;
        Ok(())
    }
}

// ---- The period-end job ----

/// What one job run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReviewRun {
    pub customers: u64,
    pub changed: u64,
}

/// Re-qualifies every customer whose review (period end, manual expiry, ladder change) is
/// due at `as_of`, one customer per transaction.
pub async fn review_due(
    db: &DatabaseConnection,
    as_of: DateTime<Utc>,
) -> Result<ReviewRun, ApiError> {
    const BATCH: u64 = 500;
    let mut run = ReviewRun::default();
    loop {
        let due: Vec<(Uuid, Uuid)> = customer_tiers::Entity::find()
            .select_only()
            .column(customer_tiers::Column::PartnerId)
            .column(customer_tiers::Column::CustomerId)
            .filter(customer_tiers::Column::ReviewAt.lte(as_of))
            .order_by_asc(customer_tiers::Column::ReviewAt)
            .limit(BATCH)
            .into_tuple()
            .all(db)
            .await?;
        let mut progressed = false;
        for (partner_id, customer_id) in &due {
            let txn = begin_write(db).await?;
            let (state, change) =
                requalify(&txn, *partner_id, *customer_id, Action::Requalify, as_of).await?;
            txn.commit().await?;
            run.customers += 1;
            run.changed += u64::from(change.is_some());
            progressed |= state.review_at().is_none_or(|r| r > as_of);
        }
        // A full batch goes round again; one that moved no review on would loop forever.
        if (due.len() as u64) < BATCH || !progressed {
            return Ok(run);
        }
    }
}

/// Runs the review every `interval` until the process ends.
pub fn spawn_scheduler(db: DatabaseConnection, interval: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match review_due(&db, Utc::now()).await {
                Ok(run) if run.customers > 0 => {
                    tracing::info!(
                        customers = run.customers,
                        changed = run.changed,
                        "tier review ran"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "tier review failed; retrying at the next tick")
                }
            }
        }
    });
}

#[cfg(test)]
mod tests;

//! RFM scoring of a partner's customers (the rules are in [`crate::domain::rfm`]): one pass
//! reads every customer's last purchase and their purchases of the last 12 months from the
//! feature store, scores them in memory, and writes the values and scores back to
//! `customer_features`, in one transaction under the partner's scoring lock. Run nightly
//! before the Flexi recalculation (so segments on RFM see fresh scores) and on demand.
use chrono::{DateTime, Utc};
use loyalty_platform::{
    ApiError,
    db::{advisory_xact_lock, begin_write},
};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, QuerySelect, Statement,
    Value, sea_query::OnConflict,
};
use uuid::Uuid;

use super::{
    cache::{Change, MembershipCache},
    entities::{customer_features, rfm_runs},
};
use crate::domain::rfm::{
    self, CustomerRfm, NEVER, RfmScores, RfmValues, period_start, recency_months,
};

/// Customers read per query.
const READ_PAGE: u64 = 10_000;

/// The RFM of a stored feature row; `None` before its partner's first scoring.
pub(super) fn from_columns(m: &customer_features::Model) -> Option<CustomerRfm> {
    Some(CustomerRfm {
        values: RfmValues {
            recency_months: m.rfm_recency_months.unwrap_or(NEVER),
            frequency: m.rfm_frequency?,
            monetary_minor: m.rfm_monetary_minor?,
        },
        scores: RfmScores {
            recency: m.rfm_recency_score?,
            frequency: m.rfm_frequency_score?,
            monetary: m.rfm_monetary_score?,
        },
        computed_at: m.rfm_computed_at?,
    })
}

/// The RFM values of one customer computed now from the feature store (what
/// `GetCustomerRfm` shows for a customer not scored yet), or `None` for a customer the
/// feature store does not know.
pub async fn live_values(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<RfmValues>, ApiError> {
    let page = read_page(conn, partner_id, Some(customer_id), None, 1, now).await?;
    Ok(page
        .into_iter()
        .find(|(id, _)| *id == customer_id)
        .map(|(_, v)| v))
}

/// What a scoring run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scored {
    pub customers: usize,
    pub computed_at: DateTime<Utc>,
}

/// Scores every customer of `partner_id` as of `now`, in one transaction. Concurrent runs
/// for the same partner wait for each other (PostgreSQL advisory lock; SQLite serialises
/// writers).
pub async fn score_partner(
    db: &DatabaseConnection,
    partner_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Scored, ApiError> {
    let txn = begin_write(db).await?;
    advisory_xact_lock(&txn, &lock_key(partner_id)).await?;
    let scored = score_in(&txn, partner_id, now).await?;
    txn.commit().await?;
    Ok(scored)
}

fn lock_key(partner_id: Uuid) -> String {
    format!("segmentation-rfm:{partner_id}")
}

async fn score_in(
    txn: &impl ConnectionTrait,
    partner_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Scored, ApiError> {
    let mut ids = Vec::new();
    let mut values = Vec::new();
    let mut after = None;
    loop {
        let page = read_page(txn, partner_id, None, after, READ_PAGE, now).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        let full = page.len() as u64 == READ_PAGE;
        for (id, v) in page {
            ids.push(id);
            values.push(v);
        }
        if !full {
            break;
        }
    }
    let scores = rfm::score(&values);
    write_scores(txn, partner_id, &ids, &values, &scores, now).await?;
    rfm_runs::Entity::insert(rfm_runs::ActiveModel {
        partner_id: sea_orm::Set(partner_id),
        computed_at: sea_orm::Set(now),
        customers: sea_orm::Set(ids.len() as i64),
    })
    .on_conflict(
        OnConflict::column(rfm_runs::Column::PartnerId)
            .update_columns([rfm_runs::Column::ComputedAt, rfm_runs::Column::Customers])
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(Scored {
        customers: ids.len(),
        computed_at: now,
    })
}

/// Up to `limit` customers of the partner after `after` in id order (or just `only`), with
/// their RFM values at `now`: recency from the projection's last purchase time, frequency and
/// monetary from `customer_purchases` of the period (net of returns).
async fn read_page(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    only: Option<Uuid>,
    after: Option<Uuid>,
    limit: u64,
    now: DateTime<Utc>,
) -> Result<Vec<(Uuid, RfmValues)>, ApiError> {
    let backend = conn.get_database_backend();
    let p = |n: usize| match backend {
        DatabaseBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    };
    let sum_type = match backend {
        DatabaseBackend::Postgres => "BIGINT",
        _ => "INTEGER",
    };
    // Parameters in the order they appear in the text: SQLite's `?` are positional.
    let mut values: Vec<Value> = vec![period_start(now).into(), partner_id.into()];
    let mut filter = String::new();
    if let Some(id) = only {
        values.push(id.into());
        filter = format!(" AND f.customer_id = {}", p(values.len()));
    } else if let Some(id) = after {
        values.push(id.into());
        filter = format!(" AND f.customer_id > {}", p(values.len()));
    }
    values.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
    let sql = format!(
        "SELECT f.customer_id, f.last_purchase_at, \
                COUNT(c.purchase_id) AS frequency, \
                CAST(COALESCE(SUM(c.net_amount_minor - c.returned_amount_minor), 0) AS {sum_type}) AS monetary \
         FROM customer_features f \
         LEFT JOIN customer_purchases c ON c.partner_id = f.partner_id \
              AND c.customer_id = f.customer_id AND c.purchased_at > {period} \
         WHERE f.partner_id = {partner}{filter} \
         GROUP BY f.customer_id, f.last_purchase_at \
         ORDER BY f.customer_id LIMIT {limit}",
        period = p(1),
        partner = p(2),
        limit = p(values.len()),
    );
    let rows = conn
        .query_all(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    rows.into_iter()
        .map(|row| {
            let id: Uuid = row.try_get("", "customer_id")?;
            let last: Option<DateTime<Utc>> = row.try_get("", "last_purchase_at")?;
            let frequency: i64 = row.try_get("", "frequency")?;
            let monetary_minor: i64 = row.try_get("", "monetary")?;
            Ok((
                id,
                RfmValues {
                    recency_months: recency_months(last, now),
                    frequency,
                    monetary_minor,
                },
            ))
        })
        .collect::<Result<_, sea_orm::DbErr>>()
        .map_err(Into::into)
}

/// Writes the values and scores, a chunk of customers per statement (within the bind
/// parameter limits of both databases).
async fn write_scores(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    ids: &[Uuid],
    values: &[RfmValues],
    scores: &[RfmScores],
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let backend = conn.get_database_backend();
    let chunk = match backend {
        DatabaseBackend::Postgres => 4_000,
        _ => 1_000,
    };
    for start in (0..ids.len()).step_by(chunk) {
        let end = (start + chunk).min(ids.len());
        // Parameters in the order they appear in the text: SQLite's `?` are positional.
        let mut params: Vec<Value> = Vec::with_capacity((end - start) * 7 + 2);
        let mut rows = Vec::with_capacity(end - start);
        for i in start..end {
            let v = values[i];
            let s = scores[i];
            // A customer who never purchased has no recency (NULL), as in memory.
            let recency = (v.recency_months != NEVER).then_some(v.recency_months);
            let base = params.len();
            params.extend([
                Value::from(ids[i]),
                Value::from(recency),
                Value::from(v.frequency),
                Value::from(v.monetary_minor),
                Value::from(s.recency),
                Value::from(s.frequency),
                Value::from(s.monetary),
            ]);
            let placeholders: Vec<String> =
                (1..=7).map(|k| placeholder(backend, base + k, k)).collect();
            rows.push(format!("({})", placeholders.join(", ")));
        }
        params.push(now.into());
        let now_param = placeholder(backend, params.len(), 0);
        params.push(partner_id.into());
        let partner_param = placeholder(backend, params.len(), 0);
        let sql = format!(
            "WITH v(customer_id, r, f, m, rs, fs, ms) AS (VALUES {rows}) \
             UPDATE customer_features SET rfm_recency_months = v.r, rfm_frequency = v.f, \
                 rfm_monetary_minor = v.m, rfm_recency_score = v.rs, \
                 rfm_frequency_score = v.fs, rfm_monetary_score = v.ms, \
                 rfm_computed_at = {now_param} \
             FROM v WHERE customer_features.partner_id = {partner_param} \
                 AND customer_features.customer_id = v.customer_id",
            rows = rows.join(", "),
        );
        conn.execute(Statement::from_sql_and_values(backend, sql, params))
            .await?;
    }
    Ok(())
}

/// The `n`th (1-based) bind parameter; on PostgreSQL the VALUES columns carry their type
/// (`k` = column 1..7), since a VALUES list of parameters has no other source for it.
fn placeholder(backend: DatabaseBackend, n: usize, k: usize) -> String {
    match backend {
        DatabaseBackend::Postgres => {
            let cast = match k {
                1 => "::uuid",
                2 | 5 | 6 | 7 => "::int",
                3 | 4 => "::bigint",
                _ => "",
            };
            format!("${n}{cast}")
        }
        _ => "?".to_owned(),
    }
}

/// Partners whose customers were not scored since `slot`.
async fn due_partners(db: &DatabaseConnection, slot: DateTime<Utc>) -> Result<Vec<Uuid>, ApiError> {
    let partners: Vec<Uuid> = customer_features::Entity::find()
        .select_only()
        .column(customer_features::Column::PartnerId)
        .distinct()
        .into_tuple()
        .all(db)
        .await?;
    let mut due = Vec::new();
    for partner_id in partners {
        let run = rfm_runs::Entity::find_by_id(partner_id).one(db).await?;
        if run.is_none_or(|r| r.computed_at < slot) {
            due.push(partner_id);
        }
    }
    Ok(due)
}

/// The nightly run: scores every partner not scored since `slot`. A replica that waited for
/// another one's lock finds the partner done and skips it. Returns the partners scored. The
/// scores are features, so every cached customer view of a scored partner is dropped.
pub async fn score_due(
    db: &DatabaseConnection,
    cache: &MembershipCache,
    slot: DateTime<Utc>,
) -> Result<usize, ApiError> {
    let mut scored = 0;
    for partner_id in due_partners(db, slot).await? {
        let txn = begin_write(db).await?;
        advisory_xact_lock(&txn, &lock_key(partner_id)).await?;
        let done = rfm_runs::Entity::find_by_id(partner_id)
            .one(&txn)
            .await?
            .is_some_and(|r| r.computed_at >= slot);
        if done {
            txn.rollback().await?;
            continue;
        }
        match score_in(&txn, partner_id, Utc::now()).await {
            Ok(_) => {
                txn.commit().await?;
                cache.changed(partner_id, &[Change::Members]).await;
                scored += 1;
            }
            Err(e) => {
                tracing::warn!(%partner_id, error = %e, "nightly RFM scoring failed");
                txn.rollback().await?;
            }
        }
    }
    Ok(scored)
}

/// When the partner was last scored.
pub async fn last_run(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    Ok(rfm_runs::Entity::find_by_id(partner_id)
        .one(conn)
        .await?
        .map(|r| r.computed_at))
}

#[cfg(test)]
#[path = "rfm_tests.rs"]
mod tests;

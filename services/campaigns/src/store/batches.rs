//! Batches of an unthrottled campaign's recipients waiting to be sent (`message_batches`).
//!
//! The export writes each page of the audience as one row holding its messages (QUEUED, ids
//! given). A worker claims a row (`FOR UPDATE SKIP LOCKED` plus `claimed_until`, as the
//! message queue does, so replicas share the batches), sends it and then, in one
//! transaction, writes the messages' rows as they came out (SENT, SUPPRESSED, FAILED, or
//! QUEUED for a retry through the message queue), their events, and deletes the batch. A
//! message's row is written once instead of inserted, claimed and updated, which is what a
//! million-recipient campaign spends its database time on. A worker killed between sending
//! and recording leaves the batch claimed; once the claim lapses the batch is sent again with
//! the same message ids, the providers' idempotency key.
use chrono::{DateTime, Utc};
use loyalty_platform::ApiError;
use sea_orm::{ConnectionTrait, FromQueryResult, Statement, Value};
use uuid::Uuid;

use super::{
    Store,
    messages::{param, skip_locked},
};
use crate::domain::message::Message;

/// A claimed batch.
#[derive(Debug, Clone)]
pub struct Batch {
    pub id: Uuid,
    pub partner_id: Uuid,
    pub campaign_id: Uuid,
    /// Claims so far, this one included: the claim a settlement must still hold.
    pub attempts: i32,
    /// QUEUED, `attempts` counting this claim.
    pub messages: Vec<Message>,
}

/// A campaign's recipients still in batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pending {
    pub messages: i64,
    pub vouchers: i64,
}

#[derive(FromQueryResult)]
struct BatchRow {
    id: Uuid,
    partner_id: Uuid,
    campaign_id: Uuid,
    messages: String,
    attempts: i32,
}

impl Store {
    /// Adds a batch of a campaign's QUEUED messages, due at `due`.
    pub async fn insert_batch(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        campaign_id: Uuid,
        messages: &[Message],
        due: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        let backend = conn.get_database_backend();
        let p = |n| param(backend, n);
        let vouchers = messages
            .iter()
            .filter(|m| !m.voucher_code.is_empty())
            .count();
        let body = serde_json::to_string(messages)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("encoding a batch: {e}")))?;
        let values: Vec<Value> = vec![
            Uuid::now_v7().into(),
            partner_id.into(),
            campaign_id.into(),
            i32::try_from(messages.len()).unwrap_or(i32::MAX).into(),
            i32::try_from(vouchers).unwrap_or(i32::MAX).into(),
            body.into(),
            due.into(),
        ];
        conn.execute(Statement::from_sql_and_values(
            backend,
            format!(
                "INSERT INTO message_batches \
                   (id, partner_id, campaign_id, size, vouchers, messages, due_at, attempts) \
                 VALUES ({}, {}, {}, {}, {}, {}, {}, 0)",
                p(1),
                p(2),
                p(3),
                p(4),
                p(5),
                p(6),
                p(7)
            ),
            values,
        ))
        .await?;
        Ok(())
    }

    /// Claims one due batch until `until`: of `campaign` (`Some`), or of any CANCELLED
    /// campaign (`None`, whose batches are only recorded as cancelled). A batch another worker
    /// holds is skipped, not waited for.
    pub async fn claim_batch(
        &self,
        conn: &impl ConnectionTrait,
        campaign: Option<Uuid>,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Batch>, ApiError> {
        let backend = conn.get_database_backend();
        let p = |n| param(backend, n);
        let mut values: Vec<Value> = vec![until.into(), now.into()];
        let whose = match campaign {
            Some(id) => {
                values.push(id.into());
                format!("b.campaign_id = {}", p(3))
            }
            None => "b.campaign_id IN (SELECT c.id FROM campaigns c \
                     WHERE c.state = 'cancelled' AND c.id = b.campaign_id)"
                .to_owned(),
        };
        let lock = skip_locked(backend);
        let row = BatchRow::find_by_statement(Statement::from_sql_and_values(
            backend,
            format!(
                "UPDATE message_batches SET claimed_until = {until}, attempts = attempts + 1 \
                 WHERE id = (SELECT b.id FROM message_batches b \
                   WHERE {whose} AND b.due_at <= {now} \
                     AND (b.claimed_until IS NULL OR b.claimed_until < {now}) \
                   ORDER BY b.due_at, b.id LIMIT 1 {lock}) \
                 RETURNING id, partner_id, campaign_id, messages, attempts",
                until = p(1),
                now = p(2),
            ),
            values,
        ))
        .one(conn)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut messages: Vec<Message> = serde_json::from_str(&row.messages).map_err(|e| {
            ApiError::Internal(anyhow::anyhow!(
                "stored batch {} does not decode: {e}",
                row.id
            ))
        })?;
        for m in &mut messages {
            m.attempts = row.attempts;
        }
        Ok(Some(Batch {
            id: row.id,
            partner_id: row.partner_id,
            campaign_id: row.campaign_id,
            attempts: row.attempts,
            messages,
        }))
    }

    /// Deletes a handled batch and writes its messages (each as it came out), in the
    /// caller's transaction; how many were written (a recipient who already has a message of
    /// the campaign is skipped). `None`, writing nothing, when the claim is no longer this
    /// one's: it lapsed and another worker claimed the batch (and records it), or already
    /// recorded it.
    pub async fn settle_batch(
        &self,
        conn: &impl ConnectionTrait,
        batch: &Batch,
        messages: &[Message],
    ) -> Result<Option<u64>, ApiError> {
        let backend = conn.get_database_backend();
        let deleted = conn
            .execute(Statement::from_sql_and_values(
                backend,
                format!(
                    "DELETE FROM message_batches WHERE id = {} AND attempts = {}",
                    param(backend, 1),
                    param(backend, 2)
                ),
                [batch.id.into(), batch.attempts.into()],
            ))
            .await?
            .rows_affected();
        if deleted == 0 {
            return Ok(None);
        }
        Ok(Some(
            self.insert_messages(conn, batch.partner_id, messages)
                .await?,
        ))
    }

    /// Gives a claimed batch back untouched (a peer's outage), due again at `due`.
    pub async fn release_batch(
        &self,
        conn: &impl ConnectionTrait,
        id: Uuid,
        due: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        let backend = conn.get_database_backend();
        conn.execute(Statement::from_sql_and_values(
            backend,
            format!(
                "UPDATE message_batches SET claimed_until = NULL, due_at = {}, \
                   attempts = attempts - 1 WHERE id = {}",
                param(backend, 1),
                param(backend, 2)
            ),
            [due.into(), id.into()],
        ))
        .await?;
        Ok(())
    }

    /// The campaign's recipients still in batches.
    pub async fn pending(
        &self,
        conn: &impl ConnectionTrait,
        campaign_id: Uuid,
    ) -> Result<Pending, ApiError> {
        #[derive(FromQueryResult)]
        struct Row {
            messages: Option<i64>,
            vouchers: Option<i64>,
        }
        let backend = conn.get_database_backend();
        let row = Row::find_by_statement(Statement::from_sql_and_values(
            backend,
            format!(
                "SELECT CAST(SUM(size) AS BIGINT) AS messages, \
                   CAST(SUM(vouchers) AS BIGINT) AS vouchers \
                 FROM message_batches WHERE campaign_id = {}",
                param(backend, 1)
            ),
            [campaign_id.into()],
        ))
        .one(conn)
        .await?;
        Ok(row.map_or(Pending::default(), |r| Pending {
            messages: r.messages.unwrap_or(0),
            vouchers: r.vouchers.unwrap_or(0),
        }))
    }
}

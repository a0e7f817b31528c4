//! The send queue and delivery tracking in the database.
//!
//! The queue is the `messages` table itself (PostgreSQL `FOR UPDATE SKIP LOCKED`): a worker
//! claims due QUEUED rows by setting `claimed_until`, so replicas never take the same rows,
//! and a claim left by a replica that died lapses and the rows are taken again. A message's
//! row is its whole truth (state, attempts, provider id), changed in the transaction that
//! also writes its events to the outbox.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use loyalty_platform::ApiError;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect, Statement, Value, sea_query::OnConflict,
};
use uuid::Uuid;

use super::{
    Store,
    entities::{campaigns, delivery_events, messages},
};
use crate::domain::{
    Channel,
    message::{BounceType, DeliveryEventType, Message, MessageState, Outcome, Purpose},
};

/// A claimed message and its partner.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub partner_id: Uuid,
    pub message: Message,
}

/// What the queue keeps on a campaign while sending it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignWork {
    pub partner_id: Uuid,
    pub export_cursor: Option<Uuid>,
    pub materialized_at: Option<DateTime<Utc>>,
    pub target_count: i64,
    pub throttle_at: Option<DateTime<Utc>>,
    pub lease_until: Option<DateTime<Utc>>,
}

/// Filters of ListMessages; at least one id is set by the caller.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub campaign_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub workflow_execution_id: Option<Uuid>,
    pub states: Vec<MessageState>,
}

/// Counts of a campaign's messages, for its statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageCounts {
    pub by_state: BTreeMap<&'static str, i64>,
    pub hard_bounces: i64,
    pub soft_bounces: i64,
    pub unique_opens: i64,
    pub unique_clicks: i64,
    pub unsubscribes: i64,
    pub complaints: i64,
    pub vouchers: i64,
    pub vouchers_redeemed: i64,
}

/// A recorded delivery event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeliveryEvent {
    pub id: Uuid,
    pub message_id: Uuid,
    pub event_type: DeliveryEventType,
    pub url: String,
    pub diagnostic: String,
    pub occurred_at: DateTime<Utc>,
}

fn bad(id: Uuid, what: &str) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("stored message {id} has an unknown {what}"))
}

fn message_from(m: messages::Model) -> Result<Claimed, ApiError> {
    let id = m.id;
    Ok(Claimed {
        partner_id: m.partner_id,
        message: Message {
            id: m.id,
            customer_id: m.customer_id,
            channel: Channel::parse_str(&m.channel).ok_or_else(|| bad(id, "channel"))?,
            message_template_id: m.message_template_id,
            campaign_id: m.campaign_id,
            workflow_execution_id: m.workflow_execution_id,
            purpose: Purpose::parse_str(&m.purpose).ok_or_else(|| bad(id, "purpose"))?,
            address: m.address,
            variables: serde_json::from_str(&m.variables).map_err(|_| bad(id, "variables"))?,
            state: MessageState::parse_str(&m.state).ok_or_else(|| bad(id, "state"))?,
            attempts: m.attempts,
            due_at: m.due_at,
            bounce_type: match m.bounce_type.as_str() {
                "hard" => Some(BounceType::Hard),
                "soft" => Some(BounceType::Soft),
                _ => None,
            },
            failure_reason: m.failure_reason,
            provider_message_id: m.provider_message_id,
            voucher_code: m.voucher_code,
            open_count: m.open_count,
            click_count: m.click_count,
            queued_at: m.queued_at,
            sent_at: m.sent_at,
            delivered_at: m.delivered_at,
            first_open_at: m.first_open_at,
            first_click_at: m.first_click_at,
            unsubscribed_at: m.unsubscribed_at,
        },
    })
}

fn bounce_str(b: Option<BounceType>) -> &'static str {
    match b {
        Some(BounceType::Hard) => "hard",
        Some(BounceType::Soft) => "soft",
        None => "",
    }
}

fn message_row(partner_id: Uuid, m: &Message) -> messages::ActiveModel {
    messages::ActiveModel {
        id: Set(m.id),
        partner_id: Set(partner_id),
        campaign_id: Set(m.campaign_id),
        workflow_execution_id: Set(m.workflow_execution_id),
        customer_id: Set(m.customer_id),
        channel: Set(m.channel.as_str().to_owned()),
        message_template_id: Set(m.message_template_id),
        purpose: Set(m.purpose.as_str().to_owned()),
        address: Set(m.address.clone()),
        variables: Set(serde_json::to_string(&m.variables).unwrap_or_else(|_| "{}".into())),
        state: Set(m.state.as_str().to_owned()),
        attempts: Set(m.attempts),
        due_at: Set(m.due_at),
        claimed_until: Set(None),
        bounce_type: Set(bounce_str(m.bounce_type).to_owned()),
        failure_reason: Set(m.failure_reason.clone()),
        provider_message_id: Set(m.provider_message_id.clone()),
        voucher_code: Set(m.voucher_code.clone()),
        open_count: Set(m.open_count),
        click_count: Set(m.click_count),
        queued_at: Set(m.queued_at),
        sent_at: Set(m.sent_at),
        delivered_at: Set(m.delivered_at),
        first_open_at: Set(m.first_open_at),
        first_click_at: Set(m.first_click_at),
        unsubscribed_at: Set(m.unsubscribed_at),
        voucher_redeemed_at: sea_orm::ActiveValue::NotSet,
    }
}

/// The PostgreSQL insert of [`column_arrays`]' rows.
const INSERT_UNNESTED: &str = "INSERT INTO messages (partner_id, id, campaign_id, \
    workflow_execution_id, customer_id, channel, message_template_id, purpose, address, \
    variables, state, attempts, due_at, bounce_type, failure_reason, provider_message_id, \
    voucher_code, open_count, click_count, queued_at, sent_at, delivered_at, first_open_at, \
    first_click_at, unsubscribed_at) \
    SELECT $1, t.* FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::text[], \
    $7::uuid[], $8::text[], $9::text[], $10::text[], $11::text[], $12::int4[], \
    $13::timestamptz[], $14::text[], $15::text[], $16::text[], $17::text[], $18::int4[], \
    $19::int4[], $20::timestamptz[], $21::timestamptz[], $22::timestamptz[], \
    $23::timestamptz[], $24::timestamptz[], $25::timestamptz[]) AS t \
    ON CONFLICT (campaign_id, customer_id) DO NOTHING";

/// A PostgreSQL array literal (`{"a","b",NULL}`) of `items`, every element quoted.
fn pg_array<S: AsRef<str>>(items: impl Iterator<Item = Option<S>>) -> String {
    let mut out = String::from("{");
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        match item {
            None => out.push_str("NULL"),
            Some(s) => {
                out.push('"');
                for c in s.as_ref().chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
        }
    }
    out.push('}');
    out
}

/// `rows` as [`INSERT_UNNESTED`]'s parameters: the partner, then one array per column.
fn column_arrays(partner_id: Uuid, rows: &[Message]) -> Vec<Value> {
    fn time(t: DateTime<Utc>) -> String {
        t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }
    let uuids = |f: &dyn Fn(&Message) -> Option<Uuid>| {
        pg_array(rows.iter().map(|m| f(m).map(|u| u.to_string())))
    };
    let texts = |f: &dyn Fn(&Message) -> &str| pg_array(rows.iter().map(|m| Some(f(m))));
    let ints = |f: &dyn Fn(&Message) -> i32| pg_array(rows.iter().map(|m| Some(f(m).to_string())));
    let times = |f: &dyn Fn(&Message) -> Option<DateTime<Utc>>| {
        pg_array(rows.iter().map(|m| f(m).map(time)))
    };
    let variables = pg_array(
        rows.iter()
            .map(|m| Some(serde_json::to_string(&m.variables).unwrap_or_else(|_| "{}".into()))),
    );
    vec![
        partner_id.into(),
        uuids(&|m| Some(m.id)).into(),
        uuids(&|m| m.campaign_id).into(),
        uuids(&|m| m.workflow_execution_id).into(),
        uuids(&|m| m.customer_id).into(),
        texts(&|m| m.channel.as_str()).into(),
        uuids(&|m| Some(m.message_template_id)).into(),
        texts(&|m| m.purpose.as_str()).into(),
        texts(&|m| &m.address).into(),
        variables.into(),
        texts(&|m| m.state.as_str()).into(),
        ints(&|m| m.attempts).into(),
        times(&|m| Some(m.due_at)).into(),
        texts(&|m| bounce_str(m.bounce_type)).into(),
        texts(&|m| &m.failure_reason).into(),
        texts(&|m| &m.provider_message_id).into(),
        texts(&|m| &m.voucher_code).into(),
        ints(&|m| m.open_count).into(),
        ints(&|m| m.click_count).into(),
        times(&|m| Some(m.queued_at)).into(),
        times(&|m| m.sent_at).into(),
        times(&|m| m.delivered_at).into(),
        times(&|m| m.first_open_at).into(),
        times(&|m| m.first_click_at).into(),
        times(&|m| m.unsubscribed_at).into(),
    ]
}

/// The `n`th bound value: `$n` on PostgreSQL, `?n` on SQLite (numbered, so one value may be
/// used twice).
pub(super) fn param(backend: DbBackend, n: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => format!("?{n}"),
    }
}

/// How a claim skips rows other workers hold: PostgreSQL's `FOR UPDATE SKIP LOCKED`; SQLite
/// has one writer at a time, so the transaction itself is the lock.
pub(super) fn skip_locked(backend: DbBackend) -> &'static str {
    if backend == DbBackend::Postgres {
        "FOR UPDATE SKIP LOCKED"
    } else {
        ""
    }
}

/// Most rows one statement writes (well under both databases' parameter limits).
const ROWS_PER_STATEMENT: usize = 1_000;

impl Store {
    /// Adds messages; a campaign's message to a customer who already has one is skipped, so
    /// turning an audience into messages can start over after a crash. Returns how many were
    /// added.
    pub async fn insert_messages(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        batch: &[Message],
    ) -> Result<u64, ApiError> {
        if conn.get_database_backend() == DbBackend::Postgres {
            // One statement per 1,000 rows with one array parameter per column (`unnest`),
            // not 25 bound values per row for the client to build and the server to parse.
            let mut added = 0;
            for chunk in batch.chunks(ROWS_PER_STATEMENT) {
                added += conn
                    .execute(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        INSERT_UNNESTED,
                        column_arrays(partner_id, chunk),
                    ))
                    .await?
                    .rows_affected();
            }
            return Ok(added);
        }
        let mut added = 0;
        for chunk in batch.chunks(ROWS_PER_STATEMENT / 4) {
            added +=
                messages::Entity::insert_many(chunk.iter().map(|m| message_row(partner_id, m)))
                    .on_conflict(
                        OnConflict::columns([
                            messages::Column::CampaignId,
                            messages::Column::CustomerId,
                        ])
                        .do_nothing()
                        .to_owned(),
                    )
                    .exec_without_returning(conn)
                    .await?;
        }
        Ok(added)
    }

    /// A message of `partner_id`; another partner's is `None`.
    pub async fn message(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        id: Uuid,
    ) -> Result<Option<Message>, ApiError> {
        messages::Entity::find_by_id(id)
            .filter(messages::Column::PartnerId.eq(partner_id))
            .one(conn)
            .await?
            .map(|m| message_from(m).map(|c| c.message))
            .transpose()
    }

    /// The partner's message with the provider's id.
    pub async fn message_by_provider_id(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        provider_message_id: &str,
    ) -> Result<Option<Message>, ApiError> {
        messages::Entity::find()
            .filter(messages::Column::ProviderMessageId.eq(provider_message_id))
            .filter(messages::Column::PartnerId.eq(partner_id))
            .one(conn)
            .await?
            .map(|m| message_from(m).map(|c| c.message))
            .transpose()
    }

    /// A message by id whatever its partner (unsubscribe links carry only the message).
    pub async fn message_anywhere(
        &self,
        conn: &impl ConnectionTrait,
        id: Uuid,
    ) -> Result<Option<Claimed>, ApiError> {
        messages::Entity::find_by_id(id)
            .one(conn)
            .await?
            .map(message_from)
            .transpose()
    }

    /// Messages by campaign, customer or workflow execution, newest first, after `after`.
    pub async fn list_messages(
        &self,
        partner_id: Uuid,
        filter: &MessageFilter,
        limit: u64,
        after: Option<Uuid>,
    ) -> Result<Vec<Message>, ApiError> {
        let mut q = messages::Entity::find().filter(messages::Column::PartnerId.eq(partner_id));
        if let Some(c) = filter.campaign_id {
            q = q.filter(messages::Column::CampaignId.eq(c));
        }
        if let Some(c) = filter.customer_id {
            q = q.filter(messages::Column::CustomerId.eq(c));
        }
        if let Some(e) = filter.workflow_execution_id {
            q = q.filter(messages::Column::WorkflowExecutionId.eq(e));
        }
        if !filter.states.is_empty() {
            q = q.filter(messages::Column::State.is_in(filter.states.iter().map(|s| s.as_str())));
        }
        if let Some(after) = after {
            q = q.filter(messages::Column::Id.lt(after));
        }
        q.order_by_desc(messages::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| message_from(m).map(|c| c.message))
            .collect()
    }

    /// Replaces a message's tracking fields (after a delivery event).
    pub async fn put_message(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        m: &Message,
    ) -> Result<(), ApiError> {
        let mut row = message_row(partner_id, m);
        row.claimed_until = sea_orm::ActiveValue::NotSet;
        messages::Entity::update(row).exec(conn).await?;
        Ok(())
    }

    /// What the queue keeps on a campaign.
    pub async fn campaign_work(
        &self,
        conn: &impl ConnectionTrait,
        campaign_id: Uuid,
    ) -> Result<Option<CampaignWork>, ApiError> {
        Ok(campaigns::Entity::find_by_id(campaign_id)
            .one(conn)
            .await?
            .map(|c| CampaignWork {
                partner_id: c.partner_id,
                export_cursor: c.export_cursor,
                materialized_at: c.materialized_at,
                target_count: c.target_count,
                throttle_at: c.throttle_at,
                lease_until: c.lease_until,
            }))
    }

    /// Campaigns in `state` (any partner), with their partner: what the workers look at.
    pub async fn campaigns_in_state(
        &self,
        state: &str,
    ) -> Result<Vec<(Uuid, crate::domain::campaign::Campaign)>, ApiError> {
        let rows = campaigns::Entity::find()
            .filter(campaigns::Column::State.eq(state))
            .order_by_asc(campaigns::Column::Id)
            .all(&self.db)
            .await?;
        rows.into_iter()
            .map(|m| Ok((m.partner_id, super::campaigns::campaign_from(m)?)))
            .collect()
    }

    /// Takes the right to turn a campaign's audience into messages until `until`, unless
    /// another replica holds it. True when taken.
    pub async fn take_export_lease(
        &self,
        campaign_id: Uuid,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, ApiError> {
        let taken = campaigns::Entity::update_many()
            .col_expr(campaigns::Column::LeaseUntil, until.into())
            .filter(campaigns::Column::Id.eq(campaign_id))
            .filter(campaigns::Column::MaterializedAt.is_null())
            .filter(
                campaigns::Column::LeaseUntil
                    .is_null()
                    .or(campaigns::Column::LeaseUntil.lt(now)),
            )
            .exec(&self.db)
            .await?;
        Ok(taken.rows_affected == 1)
    }

    /// Gives the export lease up (after a failure), so the next look tries again at once.
    pub async fn release_export_lease(&self, campaign_id: Uuid) -> Result<(), ApiError> {
        campaigns::Entity::update_many()
            .col_expr(
                campaigns::Column::LeaseUntil,
                Option::<DateTime<Utc>>::None.into(),
            )
            .filter(campaigns::Column::Id.eq(campaign_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Records how far the audience was exported (and extends the lease), in the
    /// transaction that added the page's messages: only from where this exporter started the
    /// page (`from`) and while the campaign is SENDING. False otherwise (another replica took
    /// the export over, or the campaign was paused or cancelled): the caller rolls back.
    pub async fn advance_export(
        &self,
        conn: &impl ConnectionTrait,
        campaign_id: Uuid,
        from: Option<Uuid>,
        cursor: Uuid,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, ApiError> {
        let at_start = match from {
            Some(from) => campaigns::Column::ExportCursor.eq(from),
            None => campaigns::Column::ExportCursor.is_null(),
        };
        let moved = campaigns::Entity::update_many()
            .col_expr(campaigns::Column::ExportCursor, Some(cursor).into())
            .col_expr(campaigns::Column::LeaseUntil, lease_until.into())
            .filter(campaigns::Column::Id.eq(campaign_id))
            .filter(campaigns::Column::State.eq("sending"))
            .filter(at_start)
            .exec(conn)
            .await?;
        Ok(moved.rows_affected == 1)
    }

    /// Marks the audience fully exported and stores the message count.
    pub async fn finish_export(
        &self,
        conn: &impl ConnectionTrait,
        campaign_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<i64, ApiError> {
        #[derive(FromQueryResult)]
        struct Count {
            n: i64,
        }
        // One statement, so one snapshot: a batch settled meanwhile is counted once.
        let backend = conn.get_database_backend();
        let count = Count::find_by_statement(Statement::from_sql_and_values(
            backend,
            format!(
                "SELECT CAST((SELECT COUNT(*) FROM messages WHERE campaign_id = {p}) + \
                   (SELECT COALESCE(SUM(size), 0) FROM message_batches WHERE campaign_id = {p}) \
                   AS BIGINT) AS n",
                p = param(backend, 1)
            ),
            [campaign_id.into()],
        ))
        .one(conn)
        .await?
        .map_or(0, |c| c.n);
        campaigns::Entity::update_many()
            .col_expr(campaigns::Column::MaterializedAt, Some(now).into())
            .col_expr(campaigns::Column::TargetCount, count.into())
            .col_expr(
                campaigns::Column::LeaseUntil,
                Option::<DateTime<Utc>>::None.into(),
            )
            .filter(campaigns::Column::Id.eq(campaign_id))
            .exec(conn)
            .await?;
        Ok(count)
    }

    /// Claims up to `limit` due QUEUED messages until `until`: those of the SENDING campaign
    /// `campaign` (`Some`), or those of no campaign (`None`). Rows another worker holds are
    /// skipped, not waited for.
    pub async fn claim(
        &self,
        conn: &impl ConnectionTrait,
        campaign: Option<Uuid>,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Claimed>, ApiError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let backend = conn.get_database_backend();
        let p = |n| param(backend, n);
        let mut values: Vec<Value> = vec![until.into(), now.into()];
        let source = match campaign {
            Some(id) => {
                values.push(id.into());
                format!("q.campaign_id = {}", p(3))
            }
            None => "q.campaign_id IS NULL".to_owned(),
        };
        let n = values.len() + 1;
        values.push((limit as i64).into());
        let lock = skip_locked(backend);
        let sql = format!(
            "UPDATE messages SET claimed_until = {until}, attempts = attempts + 1 \
             WHERE id IN (SELECT q.id FROM messages q \
               WHERE q.state = 'queued' AND q.due_at <= {now} \
                 AND (q.claimed_until IS NULL OR q.claimed_until < {now}) AND {source} \
               ORDER BY q.due_at LIMIT {limit} {lock}) \
             RETURNING *",
            until = p(1),
            now = p(2),
            limit = p(n),
        );
        let rows = messages::Model::find_by_statement(Statement::from_sql_and_values(
            backend, sql, values,
        ))
        .all(conn)
        .await?;
        rows.into_iter().map(message_from).collect()
    }

    /// Moves the campaign's throttle clock (see `domain::message::throttle`); the row is
    /// locked until the transaction ends, so replicas take turns.
    pub async fn lock_throttle(
        &self,
        conn: &impl ConnectionTrait,
        campaign_id: Uuid,
    ) -> Result<Option<DateTime<Utc>>, ApiError> {
        let backend = conn.get_database_backend();
        let lock = if backend == DbBackend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        #[derive(FromQueryResult)]
        struct Row {
            throttle_at: Option<DateTime<Utc>>,
        }
        let row = Row::find_by_statement(Statement::from_sql_and_values(
            backend,
            format!(
                "SELECT throttle_at FROM campaigns WHERE id = {}{lock}",
                param(backend, 1)
            ),
            [campaign_id.into()],
        ))
        .one(conn)
        .await?;
        Ok(row.and_then(|r| r.throttle_at))
    }

    pub async fn set_throttle(
        &self,
        conn: &impl ConnectionTrait,
        campaign_id: Uuid,
        at: Option<DateTime<Utc>>,
    ) -> Result<(), ApiError> {
        campaigns::Entity::update_many()
            .col_expr(campaigns::Column::ThrottleAt, at.into())
            .filter(campaigns::Column::Id.eq(campaign_id))
            .exec(conn)
            .await?;
        Ok(())
    }

    /// Records what became of claimed messages at `now`. A SENT outcome is recorded even if
    /// the campaign was cancelled meanwhile (it did go out); the others only while QUEUED.
    pub async fn record_outcomes(
        &self,
        conn: &impl ConnectionTrait,
        now: DateTime<Utc>,
        outcomes: &[(Uuid, Outcome)],
    ) -> Result<(), ApiError> {
        let backend = conn.get_database_backend();
        for chunk in outcomes.chunks(ROWS_PER_STATEMENT / 4) {
            // (id, state, provider id, address, reason, due); sent_at comes from the state.
            let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 6 + 1);
            let mut rows = Vec::with_capacity(chunk.len());
            values.push(now.into());
            for (id, outcome) in chunk {
                let (state, provider, address, reason, due): (_, &str, &str, &str, _) =
                    match outcome {
                        Outcome::Sent {
                            provider_message_id,
                            address,
                        } => ("sent", provider_message_id, address, "", None),
                        Outcome::Suppressed(r) => ("suppressed", "", "", r, None),
                        Outcome::Failed(r) => ("failed", "", "", r, None),
                        Outcome::Retry { due, reason } => ("queued", "", "", reason, Some(*due)),
                    };
                let base = values.len();
                values.push((*id).into());
                values.push(state.into());
                values.push(provider.into());
                values.push(address.into());
                values.push(reason.into());
                values.push(due.unwrap_or(now).into());
                let ps: Vec<String> = (1..=6).map(|k| param(backend, base + k)).collect();
                rows.push(if backend == DbBackend::Postgres && rows.is_empty() {
                    format!(
                        "({}::uuid, {}::text, {}::text, {}::text, {}::text, {}::timestamptz)",
                        ps[0], ps[1], ps[2], ps[3], ps[4], ps[5]
                    )
                } else {
                    format!("({})", ps.join(", "))
                });
            }
            let now_p = param(backend, 1);
            let sql = format!(
                "WITH v(id, state, provider, address, reason, due) AS (VALUES {rows}) \
                 UPDATE messages SET \
                   state = v.state, \
                   claimed_until = NULL, \
                   sent_at = CASE WHEN v.state = 'sent' THEN {now_p} ELSE messages.sent_at END, \
                   provider_message_id = CASE WHEN v.state = 'sent' THEN v.provider \
                     ELSE messages.provider_message_id END, \
                   address = CASE WHEN v.state = 'sent' THEN v.address ELSE messages.address END, \
                   failure_reason = v.reason, \
                   due_at = v.due \
                 FROM v WHERE messages.id = v.id \
                   AND (messages.state = 'queued' OR v.state = 'sent')",
                rows = rows.join(", ")
            );
            conn.execute(Statement::from_sql_and_values(backend, sql, values))
                .await?;
        }
        Ok(())
    }

    /// Gives claimed messages back untouched (an outage of a peer), due again at `due`.
    pub async fn release(
        &self,
        conn: &impl ConnectionTrait,
        ids: &[Uuid],
        due: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            messages::Entity::update_many()
                .col_expr(
                    messages::Column::ClaimedUntil,
                    Option::<DateTime<Utc>>::None.into(),
                )
                .col_expr(messages::Column::DueAt, due.into())
                .col_expr(
                    messages::Column::Attempts,
                    sea_orm::sea_query::Expr::col(messages::Column::Attempts).sub(1),
                )
                .filter(messages::Column::Id.is_in(chunk.iter().copied()))
                .filter(messages::Column::State.eq("queued"))
                .exec(conn)
                .await?;
        }
        Ok(())
    }

    /// Whether a campaign still has QUEUED messages, in batches or not.
    pub async fn has_queued(
        &self,
        conn: &impl ConnectionTrait,
        campaign_id: Uuid,
    ) -> Result<bool, ApiError> {
        if self.pending(conn, campaign_id).await?.messages > 0 {
            return Ok(true);
        }
        Ok(messages::Entity::find()
            .select_only()
            .column(messages::Column::Id)
            .filter(messages::Column::CampaignId.eq(campaign_id))
            .filter(messages::Column::State.eq("queued"))
            .limit(1)
            .into_tuple::<Uuid>()
            .one(conn)
            .await?
            .is_some())
    }

    /// Drops a cancelled campaign's unsent messages.
    pub async fn cancel_queued(
        &self,
        conn: &impl ConnectionTrait,
        campaign_id: Uuid,
    ) -> Result<u64, ApiError> {
        Ok(messages::Entity::update_many()
            .col_expr(messages::Column::State, "cancelled".into())
            .col_expr(
                messages::Column::ClaimedUntil,
                Option::<DateTime<Utc>>::None.into(),
            )
            .filter(messages::Column::CampaignId.eq(campaign_id))
            .filter(messages::Column::State.eq("queued"))
            .exec(conn)
            .await?
            .rows_affected)
    }

    /// Counts of a campaign's messages by state and response.
    pub async fn message_counts(&self, campaign_id: Uuid) -> Result<MessageCounts, ApiError> {
        #[derive(FromQueryResult)]
        struct Row {
            state: String,
            bounce_type: String,
            n: i64,
            opens: i64,
            clicks: i64,
            unsubscribes: i64,
            vouchers: i64,
            redeemed: i64,
        }
        let backend = self.db.get_database_backend();
        let rows = Row::find_by_statement(Statement::from_sql_and_values(
            backend,
            format!(
                "SELECT state, bounce_type, COUNT(*) AS n, COUNT(first_open_at) AS opens, \
                   COUNT(first_click_at) AS clicks, COUNT(unsubscribed_at) AS unsubscribes, \
                   SUM(CASE WHEN voucher_code <> '' THEN 1 ELSE 0 END) AS vouchers, \
                   COUNT(voucher_redeemed_at) AS redeemed \
                 FROM messages WHERE campaign_id = {} GROUP BY state, bounce_type",
                param(backend, 1)
            ),
            [campaign_id.into()],
        ))
        .all(&self.db)
        .await?;
        let pending = self.pending(&self.db, campaign_id).await?;
        let mut out = MessageCounts::default();
        if pending.messages > 0 {
            out.by_state
                .insert(MessageState::Queued.as_str(), pending.messages);
            out.vouchers = pending.vouchers;
        }
        for r in rows {
            if let Some(s) = MessageState::parse_str(&r.state) {
                *out.by_state.entry(s.as_str()).or_default() += r.n;
            }
            match r.bounce_type.as_str() {
                "hard" => out.hard_bounces += r.n,
                "soft" => out.soft_bounces += r.n,
                _ => {}
            }
            out.unique_opens += r.opens;
            out.unique_clicks += r.clicks;
            out.unsubscribes += r.unsubscribes;
            out.vouchers += r.vouchers;
            out.vouchers_redeemed += r.redeemed;
        }
        #[derive(FromQueryResult)]
        struct Count {
            n: i64,
        }
        out.complaints = Count::find_by_statement(Statement::from_sql_and_values(
            backend,
            format!(
                "SELECT COUNT(*) AS n FROM delivery_events e JOIN messages m ON m.id = e.message_id \
                 WHERE m.campaign_id = {} AND e.event_type = 'complaint'",
                param(backend, 1)
            ),
            [campaign_id.into()],
        ))
        .one(&self.db)
        .await?
        .map_or(0, |c| c.n);
        Ok(out)
    }

    pub async fn insert_delivery_event(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        e: &DeliveryEvent,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        delivery_events::Entity::insert(delivery_events::ActiveModel {
            id: Set(e.id),
            partner_id: Set(partner_id),
            message_id: Set(e.message_id),
            event_type: Set(e.event_type.as_str().to_owned()),
            url: Set(e.url.clone()),
            diagnostic: Set(e.diagnostic.clone()),
            occurred_at: Set(e.occurred_at),
            recorded_at: Set(now),
        })
        .exec_without_returning(conn)
        .await?;
        Ok(())
    }

    /// A message's delivery events, oldest first, after `after`.
    pub async fn list_delivery_events(
        &self,
        partner_id: Uuid,
        message_id: Uuid,
        limit: u64,
        after: Option<Uuid>,
    ) -> Result<Vec<DeliveryEvent>, ApiError> {
        let mut q = delivery_events::Entity::find()
            .filter(delivery_events::Column::PartnerId.eq(partner_id))
            .filter(delivery_events::Column::MessageId.eq(message_id));
        if let Some(after) = after {
            q = q.filter(delivery_events::Column::Id.gt(after));
        }
        q.order_by_asc(delivery_events::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|e| {
                Ok(DeliveryEvent {
                    id: e.id,
                    message_id: e.message_id,
                    event_type: DeliveryEventType::parse_str(&e.event_type).ok_or_else(|| {
                        ApiError::Internal(anyhow::anyhow!(
                            "stored delivery event {} has an unknown type",
                            e.id
                        ))
                    })?,
                    url: e.url,
                    diagnostic: e.diagnostic,
                    occurred_at: e.occurred_at,
                })
            })
            .collect()
    }
}

/// Counts by state as a map from the state's name (for tests and statistics).
pub fn count_of(counts: &MessageCounts, state: MessageState) -> i64 {
    counts.by_state.get(state.as_str()).copied().unwrap_or(0)
}

/// Records that a campaign message's voucher was redeemed (once: the first redemption
/// counts); how many messages it marked (0 or 1: one message per campaign and customer).
pub async fn record_voucher_redemption(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    campaign_id: Uuid,
    customer_id: Uuid,
    at: DateTime<Utc>,
) -> Result<u64, ApiError> {
    use sea_orm::sea_query::Expr;
    Ok(messages::Entity::update_many()
        .col_expr(messages::Column::VoucherRedeemedAt, Expr::value(Some(at)))
        .filter(messages::Column::PartnerId.eq(partner_id))
        .filter(messages::Column::CampaignId.eq(campaign_id))
        .filter(messages::Column::CustomerId.eq(customer_id))
        .filter(messages::Column::VoucherCode.ne(""))
        .filter(messages::Column::VoucherRedeemedAt.is_null())
        .exec(conn)
        .await?
        .rows_affected)
}

/// Counts the redemptions of campaign vouchers (rewards' `VoucherRedeemed` of source
/// `campaign`) on the campaigns' messages.
pub struct VoucherRedemptions;

#[async_trait::async_trait]
impl loyalty_platform::events::EventHandler for VoucherRedemptions {
    fn handles(&self, event_type: &str) -> bool {
        event_type == "loyalty.events.v1.VoucherRedeemed"
    }

    async fn apply(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        event: &loyalty_proto::events::v1::EventEnvelope,
    ) -> anyhow::Result<()> {
        let Some(e) =
            loyalty_platform::events::decode::<loyalty_proto::events::v1::VoucherRedeemed>(event)
        else {
            return Ok(());
        };
        let ids = (
            Uuid::parse_str(&event.partner_id),
            Uuid::parse_str(&e.source_id),
            Uuid::parse_str(&e.customer_id),
        );
        if let ("campaign", (Ok(partner), Ok(campaign), Ok(customer))) = (e.source.as_str(), ids) {
            let at = event
                .occur_time
                .as_ref()
                .and_then(|t| {
                    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
                })
                .unwrap_or_else(Utc::now);
            record_voucher_redemption(txn, partner, campaign, customer, at).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::pg_array;

    #[test]
    fn array_literals_quote_every_element() {
        let items = [
            Some(r#"a"b"#),
            None,
            Some(r"c\d"),
            Some("e,{f}"),
            Some("NULL"),
            Some(""),
        ];
        assert_eq!(
            pg_array(items.into_iter()),
            r#"{"a\"b",NULL,"c\\d","e,{f}","NULL",""}"#
        );
        assert_eq!(pg_array(std::iter::empty::<Option<&str>>()), "{}");
    }
}

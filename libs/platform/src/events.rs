//! Domain events: written to the outbox in the same transaction as the change, relayed to
//! Redis Streams (one stream per producing service, a consumer group per consuming service),
//! or, in embedded mode without Redis, served from the outbox by `EventFeedService` and pulled
//! by consumers. Consumers apply each event once: the event id is recorded in the same
//! transaction as its effects.
use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use loyalty_proto::events::v1::{
    self as ev, EventEnvelope, ReadEventsRequest, ReadEventsResponse,
    event_feed_service_client::EventFeedServiceClient,
    event_feed_service_server::{EventFeedService, EventFeedServiceServer},
};
use prost::Message;
use redis::AsyncCommands;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use secrecy::{ExposeSecret, SecretString};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::entities::{consumed_events, consumer_cursors, outbox};

/// A protobuf message that travels as a domain event.
pub trait DomainEvent: Message + Default {
    /// Fully-qualified protobuf name, e.g. `loyalty.events.v1.CustomerCreated`.
    const TYPE: &'static str;
}

macro_rules! domain_events {
    ($($name:ident),* $(,)?) => {
        $(impl DomainEvent for ev::$name {
            const TYPE: &'static str = concat!("loyalty.events.v1.", stringify!($name));
        })*
    };
}

domain_events!(
    CustomerCreated,
    CustomerUpdated,
    IdentifierAdded,
    IdentifierBlocked,
    IdentifierUnblocked,
    IdentifierRemoved,
    IdentifierReplaced,
    CustomerMerged,
    CustomerBlocked,
    CustomerUnblocked,
    CustomerErased,
    CustomerRelationChanged,
    ConsentChanged,
    EmailBounceStateChanged,
    EventTracked,
    BusinessUnitChanged,
    ApiKeyRevoked,
    PointsPosted,
    PointsExpired,
    PointsReserved,
    PointsReservationSettled,
    SpendingBlocked,
    SpendingUnblocked,
    PayoutCompleted,
    PurchaseCompleted,
    SegmentChanged,
    RewardsChanged,
    CatalogueChanged,
);

// Vouchers (rewards service, issue #6).
domain_events!(
    VoucherIssued,
    VoucherRedeemed,
    VoucherCancelled,
    VoucherReinstated
);

// Membership levels (rewards service, issue #6): tier changes, and the returns they count.
domain_events!(TierChanged, PurchaseReturned);

// Reward schemes and offers (rewards service, issue #6).
domain_events!(SchemeJoined, SchemeLeft, OfferAwarded);

// Click & collect orders (checkout service, issue #9): placed and every state change after.
domain_events!(CollectOrderStateChanged);

// Segment memberships (segmentation service, issue #7): one per customer entering or leaving.
domain_events!(SegmentEntered, SegmentLeft);

// Responses to campaign messages (campaigns service, issue #8), read by segmentation's
// `messages.*` and `campaigns.*` features (and by identity's bounce states).
domain_events!(
    MessageDelivered,
    MessageBounced,
    MessageOpened,
    MessageClicked,
    MessageUnsubscribed
);
// The send queue (campaigns service, issue #8).
domain_events!(
    MessageSent,
    MessageFailed,
    CampaignLaunched,
    CampaignCancelled,
    CampaignCompleted
);
// Marketing-automation workflows (campaigns service, issue #8): the automation actions of a
// customer's account history.
domain_events!(
    WorkflowExecutionStarted,
    WorkflowStepExecuted,
    WorkflowExecutionEnded
);
// Badge holders (segmentation service, issue #7): one per customer getting or losing a badge.
domain_events!(BadgeAssigned, BadgeRemoved);
// Audiences (segmentation service, issue #7): created (with the member count), a member added
// or removed by hand, locked by a campaign launch.
domain_events!(AudienceCreated, AudienceMembershipChanged, AudienceLocked);

/// Appends an event to the outbox inside the caller's transaction.
pub async fn enqueue<C: ConnectionTrait, E: DomainEvent>(
    conn: &C,
    partner_id: Option<Uuid>,
    event: &E,
) -> Result<Uuid, sea_orm::DbErr> {
    let event_id = Uuid::now_v7();
    outbox::Entity::insert(outbox::ActiveModel {
        event_id: Set(event_id),
        event_type: Set(E::TYPE.to_owned()),
        partner_id: Set(partner_id),
        payload: Set(event.encode_to_vec()),
        traceparent: Set(crate::telemetry::current_traceparent()),
        occurred_at: Set(chrono::Utc::now()),
        published_at: Set(None),
        ..Default::default()
    })
    .exec_without_returning(conn)
    .await?;
    Ok(event_id)
}

/// Appends many events of one type to the outbox inside the caller's transaction, in as few
/// statements as the database's parameter limit allows (bulk writes such as imports).
pub async fn enqueue_all<C: ConnectionTrait, E: DomainEvent>(
    conn: &C,
    partner_id: Option<Uuid>,
    events: &[E],
) -> Result<(), sea_orm::DbErr> {
    // 7 bound columns per row; 1,000 rows stay far below PostgreSQL's and SQLite's limits.
    const ROWS_PER_STATEMENT: usize = 1_000;
    let traceparent = crate::telemetry::current_traceparent();
    let now = chrono::Utc::now();
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let rows = chunk.iter().map(|event| outbox::ActiveModel {
            event_id: Set(Uuid::now_v7()),
            event_type: Set(E::TYPE.to_owned()),
            partner_id: Set(partner_id),
            payload: Set(event.encode_to_vec()),
            traceparent: Set(traceparent.clone()),
            occurred_at: Set(now),
            published_at: Set(None),
            ..Default::default()
        });
        outbox::Entity::insert_many(rows)
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// Decodes an envelope's payload as `E`, if it is one.
pub fn decode<E: DomainEvent>(envelope: &EventEnvelope) -> Option<E> {
    (envelope.event_type == E::TYPE)
        .then(|| E::decode(envelope.payload.as_slice()).ok())
        .flatten()
}

fn envelope(producer: &str, row: outbox::Model) -> EventEnvelope {
    EventEnvelope {
        event_id: row.event_id.to_string(),
        event_type: row.event_type,
        producer: producer.to_owned(),
        partner_id: row.partner_id.map(|p| p.to_string()).unwrap_or_default(),
        occur_time: Some(crate::time::to_timestamp(row.occurred_at)),
        sequence: row.sequence,
        payload: row.payload,
        traceparent: row.traceparent,
    }
}

/// The Redis stream a producer's events go to.
pub fn stream_key(prefix: &str, producer: &str) -> String {
    format!("{prefix}:events:{producer}")
}

/// Moves outbox rows to the producer's Redis stream, oldest first, until the process stops.
/// Delivery is at least once; consumers de-duplicate by event id.
pub fn spawn_relay(
    producer: String,
    db: DatabaseConnection,
    mut redis: redis::aio::ConnectionManager,
    prefix: String,
    poll: Duration,
    batch: u64,
) {
    tokio::spawn(async move {
        let key = stream_key(&prefix, &producer);
        loop {
            match relay_once(&producer, &db, &mut redis, &key, batch).await {
                Ok(n) if n as u64 == batch => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "outbox relay failed; retrying"),
            }
            tokio::time::sleep(poll).await;
        }
    });
}

async fn relay_once(
    producer: &str,
    db: &DatabaseConnection,
    redis: &mut redis::aio::ConnectionManager,
    key: &str,
    batch: u64,
) -> anyhow::Result<usize> {
    let rows = outbox::Entity::find()
        .filter(outbox::Column::PublishedAt.is_null())
        .order_by_asc(outbox::Column::Sequence)
        .limit(batch)
        .all(db)
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let sequences: Vec<i64> = rows.iter().map(|r| r.sequence).collect();
    let mut pipe = redis::pipe();
    for row in rows {
        let bytes = envelope(producer, row).encode_to_vec();
        pipe.cmd("XADD")
            .arg(key)
            .arg("MAXLEN")
            .arg("~")
            .arg(1_000_000)
            .arg("*")
            .arg("envelope")
            .arg(bytes)
            .ignore();
    }
    pipe.query_async::<()>(redis).await?;
    outbox::Entity::update_many()
        .col_expr(
            outbox::Column::PublishedAt,
            sea_orm::sea_query::Expr::value(chrono::Utc::now()),
        )
        .filter(outbox::Column::Sequence.is_in(sequences.clone()))
        .exec(db)
        .await?;
    Ok(sequences.len())
}

/// Serves the outbox in order of sequence (embedded mode's event transport).
pub struct EventFeed {
    producer: String,
    db: DatabaseConnection,
}

impl EventFeed {
    pub fn server(producer: &str, db: DatabaseConnection) -> EventFeedServiceServer<EventFeed> {
        EventFeedServiceServer::new(EventFeed {
            producer: producer.to_owned(),
            db,
        })
    }
}

#[tonic::async_trait]
impl EventFeedService for EventFeed {
    async fn read_events(
        &self,
        request: Request<ReadEventsRequest>,
    ) -> Result<Response<ReadEventsResponse>, Status> {
        crate::auth::principal(&request)?.require_internal()?;
        let r = request.into_inner();
        let limit = match r.page_size {
            0 => 100,
            n if (1..=1000).contains(&n) => n as u64,
            _ => {
                return Err(crate::error::ApiError::invalid("page_size", "must be 0..1000").into());
            }
        };
        let rows = outbox::Entity::find()
            .filter(outbox::Column::Sequence.gt(r.after_sequence))
            .order_by_asc(outbox::Column::Sequence)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(crate::error::ApiError::from)?;
        Ok(Response::new(ReadEventsResponse {
            events: rows
                .into_iter()
                .map(|r| envelope(&self.producer, r))
                .collect(),
        }))
    }
}

/// Applies events of one producer to the consumer's own tables.
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// Whether this handler applies events of `event_type`; others are skipped.
    fn handles(&self, event_type: &str) -> bool;
    /// Applies one event inside the transaction that also records it as consumed.
    async fn apply(&self, txn: &DatabaseTransaction, event: &EventEnvelope) -> anyhow::Result<()>;
    /// Runs after the transaction committed (e.g. to invalidate caches).
    async fn after_commit(&self, _event: &EventEnvelope) {}
}

/// Where a consumer reads a producer's events from.
pub enum EventSource {
    /// Redis Streams with a consumer group.
    Redis {
        client: redis::Client,
        prefix: String,
    },
    /// The producer's `EventFeedService`, with an internal credential.
    Feed {
        channel: tonic::transport::Channel,
        credential: SecretString,
    },
}

/// Applies one event exactly once, as every consumer does: the handler's effects, the event
/// id and the cursor (`(source, position)`, for feeds) in one transaction. Returns false if
/// it had been applied already or the handler does not handle it.
pub async fn apply_once(
    db: &DatabaseConnection,
    consumer: &str,
    handler: &dyn EventHandler,
    event: &EventEnvelope,
    cursor: Option<(&str, i64)>,
) -> anyhow::Result<bool> {
    let Ok(event_id) = Uuid::parse_str(&event.event_id) else {
        tracing::warn!(event_id = %event.event_id, "skipping event with a malformed id");
        return Ok(false);
    };
    let txn = crate::db::begin_write(db).await?;
    let already = consumed_events::Entity::find_by_id((consumer.to_owned(), event_id))
        .one(&txn)
        .await?
        .is_some();
    let applied = !already && handler.handles(&event.event_type);
    if applied {
        handler.apply(&txn, event).await?;
    }
    if !already {
        consumed_events::Entity::insert(consumed_events::ActiveModel {
            consumer: Set(consumer.to_owned()),
            event_id: Set(event_id),
            consumed_at: Set(chrono::Utc::now()),
        })
        .exec_without_returning(&txn)
        .await?;
    }
    if let Some((source, position)) = cursor {
        consumer_cursors::Entity::insert(consumer_cursors::ActiveModel {
            source: Set(source.to_owned()),
            position: Set(position),
        })
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(consumer_cursors::Column::Source)
                .update_column(consumer_cursors::Column::Position)
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    }
    txn.commit().await?;
    if applied {
        handler.after_commit(event).await;
    }
    Ok(applied)
}

/// Makes `consumer` (a service name) apply `producers`' events again from the start, in the
/// caller's transaction: forgets which events it applied and its feed cursors
/// (`feed:<producer>`). With Redis, also call [`rewind_streams`]. The consumers must not be
/// running (a running feed consumer keeps its position in memory and writes it back).
pub async fn forget_consumed<C: ConnectionTrait>(
    conn: &C,
    consumer: &str,
    producers: &[&str],
) -> anyhow::Result<()> {
    consumed_events::Entity::delete_many()
        .filter(consumed_events::Column::Consumer.eq(consumer))
        .exec(conn)
        .await?;
    consumer_cursors::Entity::delete_many()
        .filter(
            consumer_cursors::Column::Source.is_in(producers.iter().map(|p| format!("feed:{p}"))),
        )
        .exec(conn)
        .await?;
    Ok(())
}

/// Moves `consumer`'s group on each producer's Redis stream back to the stream's start, so
/// it reads again every entry the stream still holds (streams are capped, see
/// [`spawn_relay`]; older events are gone from Redis). A stream or group that does not exist
/// yet is skipped: the consumer creates its group at the start when it first runs.
pub async fn rewind_streams(
    redis: &mut redis::aio::ConnectionManager,
    prefix: &str,
    consumer: &str,
    producers: &[&str],
) -> anyhow::Result<()> {
    for producer in producers {
        let key = stream_key(prefix, producer);
        let exists: bool = redis.exists(&key).await?;
        if !exists {
            continue;
        }
        let rewound: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("SETID")
            .arg(&key)
            .arg(consumer)
            .arg("0")
            .query_async(redis)
            .await;
        match rewound {
            Ok(()) => {}
            // No such group: nothing consumed yet, nothing to rewind.
            Err(e) if e.code() == Some("NOGROUP") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Consumes `producer`'s events into `consumer` (a service name) until the process stops.
pub fn spawn_consumer(
    consumer: &str,
    producer: &str,
    source: EventSource,
    db: DatabaseConnection,
    handler: Arc<dyn EventHandler>,
    poll: Duration,
    batch: usize,
) {
    let consumer = consumer.to_owned();
    let producer = producer.to_owned();
    tokio::spawn(async move {
        let result = match source {
            EventSource::Redis { client, prefix } => {
                consume_redis(
                    &consumer, &producer, client, &prefix, db, handler, poll, batch,
                )
                .await
            }
            EventSource::Feed {
                channel,
                credential,
            } => {
                consume_feed(
                    &consumer, &producer, channel, credential, db, handler, poll, batch,
                )
                .await
            }
        };
        if let Err(e) = result {
            tracing::error!(error = ?e, %consumer, %producer, "event consumer stopped");
        }
    });
}

#[allow(clippy::too_many_arguments)]
async fn consume_feed(
    consumer: &str,
    producer: &str,
    channel: tonic::transport::Channel,
    credential: SecretString,
    db: DatabaseConnection,
    handler: Arc<dyn EventHandler>,
    poll: Duration,
    batch: usize,
) -> anyhow::Result<()> {
    let source = format!("feed:{producer}");
    let mut client = EventFeedServiceClient::new(channel);
    let mut after = consumer_cursors::Entity::find_by_id(source.clone())
        .one(&db)
        .await?
        .map(|c| c.position)
        .unwrap_or(0);
    let bearer: tonic::metadata::MetadataValue<_> =
        format!("Bearer {}", credential.expose_secret()).parse()?;
    loop {
        let mut req = Request::new(ReadEventsRequest {
            after_sequence: after,
            page_size: batch as i32,
        });
        req.metadata_mut().insert("authorization", bearer.clone());
        let events = match client.read_events(req).await {
            Ok(r) => r.into_inner().events,
            Err(s) => {
                tracing::debug!(status = %s, %producer, "event feed not readable yet");
                tokio::time::sleep(poll).await;
                continue;
            }
        };
        let full = events.len() == batch;
        for event in events {
            loop {
                match apply_once(
                    &db,
                    consumer,
                    handler.as_ref(),
                    &event,
                    Some((&source, event.sequence)),
                )
                .await
                {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = ?e, event_id = %event.event_id, "applying event failed; retrying");
                        tokio::time::sleep(poll * 5).await;
                    }
                }
            }
            after = event.sequence;
        }
        if !full {
            tokio::time::sleep(poll).await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn consume_redis(
    consumer: &str,
    producer: &str,
    client: redis::Client,
    prefix: &str,
    db: DatabaseConnection,
    handler: Arc<dyn EventHandler>,
    poll: Duration,
    batch: usize,
) -> anyhow::Result<()> {
    let key = stream_key(prefix, producer);
    let group = consumer.to_owned();
    let member = format!("{consumer}-{}", Uuid::now_v7());
    // A broken connection (Redis restarted, a network cut) is replaced and the group made
    // again: a Redis that kept nothing has neither the stream nor the group any more.
    loop {
        // Blocking reads get a connection of their own so they never hold up other commands.
        let mut conn = match client.get_multiplexed_async_connection().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "redis not reachable for consuming; retrying");
                tokio::time::sleep(poll * 5).await;
                continue;
            }
        };
        let created: redis::RedisResult<()> = conn.xgroup_create_mkstream(&key, &group, "0").await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {
                tracing::warn!(error = %e, "redis connection lost for consuming; reconnecting");
                tokio::time::sleep(poll * 5).await;
                continue;
            }
            Err(e) => return Err(e.into()),
            Ok(()) => {}
        }
        // First what this member had claimed but not acknowledged (none for a new member),
        // then new.
        let mut cursor = "0".to_owned();
        loop {
            let Some(ids) = read_stream(
                &mut conn,
                &key,
                &cursor,
                Some((&group, &member)),
                batch,
                poll,
            )
            .await
            else {
                break;
            };
            if ids.is_empty() && cursor != ">" {
                cursor = ">".to_owned();
                continue;
            }
            for entry in ids {
                if let Some(event) = stream_envelope(&entry) {
                    loop {
                        match apply_once(&db, consumer, handler.as_ref(), &event, None).await {
                            Ok(_) => break,
                            Err(e) => {
                                tracing::warn!(error = ?e, event_id = %event.event_id, "applying event failed; retrying");
                                tokio::time::sleep(poll * 5).await;
                            }
                        }
                    }
                } else {
                    tracing::warn!(id = %entry.id, "skipping undecodable stream entry");
                }
                // Unacknowledged (connection lost now) it is read again after reconnecting,
                // and apply_once skips it.
                let _: redis::RedisResult<()> = conn.xack(&key, &group, &[&entry.id]).await;
            }
        }
    }
}

/// One blocking read of `key` after `cursor`, as `group`'s member when given. `None` after a
/// failure (logged and waited for): the caller reconnects.
async fn read_stream(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    cursor: &str,
    group: Option<(&str, &str)>,
    batch: usize,
    poll: Duration,
) -> Option<Vec<redis::streams::StreamId>> {
    let mut opts = redis::streams::StreamReadOptions::default()
        .count(batch)
        .block(poll.as_millis().max(100) as usize * 5);
    if let Some((group, member)) = group {
        opts = opts.group(group, member);
    }
    let reply: redis::RedisResult<redis::streams::StreamReadReply> =
        conn.xread_options(&[key], &[cursor], &opts).await;
    match reply {
        Ok(r) => Some(r.keys.into_iter().flat_map(|k| k.ids).collect()),
        Err(e) => {
            tracing::warn!(error = %e, %key, "reading events from redis failed; reconnecting");
            tokio::time::sleep(poll * 5).await;
            None
        }
    }
}

/// The event a stream entry carries, if it decodes.
fn stream_envelope(entry: &redis::streams::StreamId) -> Option<EventEnvelope> {
    let bytes: Vec<u8> = entry
        .map
        .get("envelope")
        .and_then(|v| redis::from_redis_value(v).ok())?;
    EventEnvelope::decode(bytes.as_slice()).ok()
}

/// What a follower does with each event it sees (see [`spawn_follower`]).
pub type EventCallback = Arc<dyn Fn(&EventEnvelope) + Send + Sync>;

/// Follows `producer`'s events in this process only, until it stops: no consumer group and
/// nothing recorded, so every replica of a service sees every event (a consumer group would
/// hand each event to one replica only). Meant for in-process effects such as dropping cached
/// credentials; `on_event` must tolerate seeing an event twice.
///
/// From Redis it starts one minute (Redis clock) before the process started following, so a
/// change made while the process was starting is not missed; from the feed it reads the whole
/// outbox once, then what comes.
pub fn spawn_follower(
    producer: &str,
    source: EventSource,
    poll: Duration,
    batch: usize,
    on_event: EventCallback,
) {
    let producer = producer.to_owned();
    tokio::spawn(async move {
        let result = match source {
            EventSource::Redis { client, prefix } => {
                follow_redis(&producer, client, &prefix, poll, batch, on_event).await
            }
            EventSource::Feed {
                channel,
                credential,
            } => follow_feed(&producer, channel, credential, poll, batch, on_event).await,
        };
        if let Err(e) = result {
            tracing::error!(error = ?e, %producer, "event follower stopped");
        }
    });
}

async fn follow_redis(
    producer: &str,
    client: redis::Client,
    prefix: &str,
    poll: Duration,
    batch: usize,
    on_event: EventCallback,
) -> anyhow::Result<()> {
    let key = stream_key(prefix, producer);
    let mut last_id: Option<String> = None;
    loop {
        // A connection of its own: the blocking reads must not hold up other commands.
        let mut conn = match client.get_multiplexed_async_connection().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, %producer, "redis not reachable for following; retrying");
                tokio::time::sleep(poll * 5).await;
                continue;
            }
        };
        let mut cursor = match &last_id {
            Some(id) => id.clone(),
            None => {
                let (secs, micros): (u64, u64) =
                    match redis::cmd("TIME").query_async(&mut conn).await {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::warn!(error = %e, "reading the redis clock failed; retrying");
                            tokio::time::sleep(poll * 5).await;
                            continue;
                        }
                    };
                let now_ms = secs * 1000 + micros / 1000;
                format!("{}-0", now_ms.saturating_sub(60_000))
            }
        };
        loop {
            let Some(ids) = read_stream(&mut conn, &key, &cursor, None, batch, poll).await else {
                break;
            };
            for entry in ids {
                match stream_envelope(&entry) {
                    Some(event) => on_event(&event),
                    None => tracing::warn!(id = %entry.id, "skipping undecodable stream entry"),
                }
                cursor = entry.id;
            }
            last_id = Some(cursor.clone());
        }
    }
}

async fn follow_feed(
    producer: &str,
    channel: tonic::transport::Channel,
    credential: SecretString,
    poll: Duration,
    batch: usize,
    on_event: EventCallback,
) -> anyhow::Result<()> {
    let mut client = EventFeedServiceClient::new(channel);
    let bearer: tonic::metadata::MetadataValue<_> =
        format!("Bearer {}", credential.expose_secret()).parse()?;
    let mut after = 0;
    loop {
        let mut req = Request::new(ReadEventsRequest {
            after_sequence: after,
            page_size: batch.clamp(1, 1000) as i32,
        });
        req.metadata_mut().insert("authorization", bearer.clone());
        let events = match client.read_events(req).await {
            Ok(r) => r.into_inner().events,
            Err(s) => {
                tracing::debug!(status = %s, %producer, "event feed not readable yet");
                tokio::time::sleep(poll).await;
                continue;
            }
        };
        let full = events.len() >= batch;
        for event in events {
            on_event(&event);
            after = after.max(event.sequence);
        }
        if !full {
            tokio::time::sleep(poll).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::sqlite;
    use sea_orm::TransactionTrait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(AtomicUsize);

    #[async_trait]
    impl EventHandler for Counting {
        fn handles(&self, event_type: &str) -> bool {
            event_type == ev::CustomerCreated::TYPE
        }
        async fn apply(&self, _: &DatabaseTransaction, _: &EventEnvelope) -> anyhow::Result<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn enqueued_events_read_back_in_order_and_apply_once() {
        let (_dir, db) = sqlite().await;
        let txn = db.begin().await.unwrap();
        for id in ["a", "b"] {
            enqueue(
                &txn,
                Some(Uuid::nil()),
                &ev::CustomerCreated {
                    customer_id: id.into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        }
        txn.commit().await.unwrap();

        let rows = outbox::Entity::find()
            .order_by_asc(outbox::Column::Sequence)
            .all(&db)
            .await
            .unwrap();
        let events: Vec<_> = rows.into_iter().map(|r| envelope("identity", r)).collect();
        assert_eq!(events.len(), 2);
        assert!(events[0].sequence < events[1].sequence);
        let first = decode::<ev::CustomerCreated>(&events[0]).expect("decodes");
        assert_eq!(first.customer_id, "a");
        assert!(decode::<ev::PurchaseCompleted>(&events[0]).is_none());

        let handler = Counting(AtomicUsize::new(0));
        for _ in 0..2 {
            for e in &events {
                apply_once(
                    &db,
                    "segmentation",
                    &handler,
                    e,
                    Some(("feed:identity", e.sequence)),
                )
                .await
                .unwrap();
            }
        }
        assert_eq!(handler.0.load(Ordering::SeqCst), 2, "redelivery is ignored");
        let cursor = consumer_cursors::Entity::find_by_id("feed:identity".to_owned())
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cursor.position, events[1].sequence);
    }

    #[tokio::test]
    async fn every_follower_sees_every_event_including_those_of_the_last_minute() {
        let (_dir, db) = sqlite().await;
        let prefix = format!("test-{}", Uuid::now_v7());
        let (client, mut conn) = crate::cache::connect_redis("redis://127.0.0.1:6379")
            .await
            .expect("redis on 127.0.0.1:6379 (scripts/test starts it)");
        let key = stream_key(&prefix, "identity");
        let revoke = |id: &str| ev::ApiKeyRevoked {
            api_key_id: id.into(),
        };
        // Published just before the followers start: still seen.
        enqueue(&db, None, &revoke("before")).await.unwrap();
        relay_once("identity", &db, &mut conn, &key, 10)
            .await
            .unwrap();
        let seen: Vec<Arc<std::sync::Mutex<Vec<String>>>> =
            (0..2).map(|_| Default::default()).collect();
        for s in &seen {
            let s = s.clone();
            spawn_follower(
                "identity",
                EventSource::Redis {
                    client: client.clone(),
                    prefix: prefix.clone(),
                },
                Duration::from_millis(20),
                10,
                Arc::new(move |e| {
                    if let Some(r) = decode::<ev::ApiKeyRevoked>(e) {
                        s.lock().unwrap().push(r.api_key_id);
                    }
                }),
            );
        }
        enqueue(&db, None, &revoke("after")).await.unwrap();
        relay_once("identity", &db, &mut conn, &key, 10)
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while seen.iter().any(|s| s.lock().unwrap().len() < 2) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "followers saw {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _: () = conn.del(&key).await.unwrap();
        for s in seen {
            assert_eq!(
                *s.lock().unwrap(),
                ["before", "after"],
                "each follower, in order"
            );
        }
    }

    #[tokio::test]
    async fn the_relay_moves_outbox_rows_to_redis_and_a_consumer_group_applies_them_once() {
        let (_dir, db) = sqlite().await;
        let prefix = format!("test-{}", Uuid::now_v7());
        let (client, mut conn) = crate::cache::connect_redis("redis://127.0.0.1:6379")
            .await
            .expect("redis on 127.0.0.1:6379 (scripts/test starts it)");
        for id in ["a", "b", "c"] {
            enqueue(
                &db,
                Some(Uuid::nil()),
                &ev::CustomerCreated {
                    customer_id: id.into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        }
        let key = stream_key(&prefix, "identity");
        assert_eq!(
            relay_once("identity", &db, &mut conn, &key, 2)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            relay_once("identity", &db, &mut conn, &key, 2)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            relay_once("identity", &db, &mut conn, &key, 2)
                .await
                .unwrap(),
            0
        );
        let len: usize = conn.xlen(&key).await.unwrap();
        assert_eq!(len, 3);

        let handler = Arc::new(Counting(AtomicUsize::new(0)));
        spawn_consumer(
            "segmentation",
            "identity",
            EventSource::Redis {
                client,
                prefix: prefix.clone(),
            },
            db.clone(),
            handler.clone(),
            Duration::from_millis(20),
            10,
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while handler.0.load(Ordering::SeqCst) < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "events not consumed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _: () = conn.del(&key).await.unwrap();
        assert_eq!(handler.0.load(Ordering::SeqCst), 3);
    }

    /// A redis-server of one test on a port of its own, so stopping it disturbs no other.
    fn redis_server(port: u16) -> std::process::Child {
        std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server on PATH (scripts/test checks it)")
    }

    async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_consumer_keeps_consuming_after_redis_restarts_empty() {
        let (_dir, db) = sqlite().await;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let url = format!("redis://127.0.0.1:{port}");
        let mut server = redis_server(port);
        let (client, mut conn) = crate::cache::connect_redis(&url).await.unwrap();
        let key = stream_key("restart", "identity");
        let handler = Arc::new(Counting(AtomicUsize::new(0)));
        spawn_consumer(
            "segmentation",
            "identity",
            EventSource::Redis {
                client,
                prefix: "restart".into(),
            },
            db.clone(),
            handler.clone(),
            Duration::from_millis(20),
            10,
        );
        let publish = |id: &'static str| {
            let db = db.clone();
            async move {
                let created = ev::CustomerCreated {
                    customer_id: id.into(),
                    ..Default::default()
                };
                enqueue(&db, Some(Uuid::nil()), &created).await.unwrap();
            }
        };
        publish("before").await;
        relay_once("identity", &db, &mut conn, &key, 10)
            .await
            .unwrap();
        wait_for("the first event consumed", || {
            handler.0.load(Ordering::SeqCst) == 1
        })
        .await;

        // Killed without a goodbye and started again with nothing: no stream, no group.
        server.kill().unwrap();
        server.wait().unwrap();
        let mut server = redis_server(port);
        publish("after").await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while relay_once("identity", &db, &mut conn, &key, 10)
            .await
            .is_err()
        {
            assert!(tokio::time::Instant::now() < deadline, "relay reconnects");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        wait_for("the event after the restart consumed", || {
            handler.0.load(Ordering::SeqCst) == 2
        })
        .await;
        server.kill().unwrap();
        server.wait().unwrap();
    }

    #[tokio::test]
    async fn a_rewound_consumer_applies_every_event_again_from_the_start() {
        let (_dir, db) = sqlite().await;
        let prefix = format!("test-{}", Uuid::now_v7());
        let (client, mut conn) = crate::cache::connect_redis("redis://127.0.0.1:6379")
            .await
            .expect("redis on 127.0.0.1:6379 (scripts/test starts it)");
        for id in ["a", "b"] {
            enqueue(
                &db,
                Some(Uuid::nil()),
                &ev::CustomerCreated {
                    customer_id: id.into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        }
        let key = stream_key(&prefix, "identity");
        relay_once("identity", &db, &mut conn, &key, 10)
            .await
            .unwrap();
        // Consumed already: the group is past both entries and their ids are recorded.
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&key)
            .arg("segmentation")
            .arg("$")
            .query_async(&mut conn)
            .await
            .unwrap();
        let handler = Arc::new(Counting(AtomicUsize::new(0)));
        let rows = outbox::Entity::find().all(&db).await.unwrap();
        for r in rows {
            let e = envelope("identity", r);
            let cursor = Some(("feed:identity", e.sequence));
            assert!(
                apply_once(&db, "segmentation", handler.as_ref(), &e, cursor)
                    .await
                    .unwrap()
            );
        }

        // A producer whose stream does not exist yet (wallet) has nothing to rewind.
        rewind_streams(&mut conn, &prefix, "segmentation", &["identity", "wallet"])
            .await
            .unwrap();
        let txn = db.begin().await.unwrap();
        forget_consumed(&txn, "segmentation", &["identity", "wallet"])
            .await
            .unwrap();
        txn.commit().await.unwrap();
        assert!(
            consumer_cursors::Entity::find_by_id("feed:identity".to_owned())
                .one(&db)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            consumed_events::Entity::find()
                .all(&db)
                .await
                .unwrap()
                .len(),
            0
        );

        spawn_consumer(
            "segmentation",
            "identity",
            EventSource::Redis {
                client,
                prefix: prefix.clone(),
            },
            db.clone(),
            handler.clone(),
            Duration::from_millis(20),
            10,
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while handler.0.load(Ordering::SeqCst) < 4 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the rewound group did not replay the stream"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _: () = conn.del(&key).await.unwrap();
        assert_eq!(handler.0.load(Ordering::SeqCst), 4);
    }
}

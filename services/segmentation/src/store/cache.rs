//! The membership cache of the checkout hot path: what `GetCustomerMemberships` reads from the
//! database, kept in the platform cache (Redis, or in process without Redis) per partner and
//! customer, with a TTL.
//!
//! Entries are stamped with generation tokens (see [`Stamped`]):
//!
//! | token | replaced by | stamps |
//! | --- | --- | --- |
//! | `seg:<partner>:p` | any change of a segment row (definition, counts, recalculation time) | the partner's segments |
//! | `seg:<partner>:b` | a change of many customers' memberships (segment created, updated, deleted, recalculated with changes) | every customer entry of the partner |
//! | `seg:<partner>:c:<customer>` | a change of this customer's features or memberships | this customer's entry |
//!
//! A change deletes its tokens after its transaction committed (and before the RPC answers);
//! the next reader creates a fresh random token *before* reading the database, so a value
//! read before a commit can only be stored under a token that the commit's deletion killed.
//! A deletion Redis does not take is retried until it does, and meanwhile this replica reads
//! the database (`Cache::invalidations_pending`).
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use loyalty_criteria::{Criterion, purchases::Purchase};

use loyalty_platform::{ApiError, cache::Cache, events};
use loyalty_proto::events::v1 as ev;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    QueryFilter, QueryOrder, TransactionTrait,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

use super::{
    badges,
    entities::{segment_members, segments},
    features::{self, FeatureProjector},
    lifecycle, purchases, segment_from,
};
use crate::domain::{
    Features, MemberRow, MembershipCause, Segment, Stamped, StoredMembership, stored_memberships,
};

/// A customer's stored membership rows, oldest first (then by segment id).
pub(crate) async fn member_rows(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<Vec<MemberRow>, ApiError> {
    Ok(segment_members::Entity::find()
        .filter(segment_members::Column::PartnerId.eq(partner_id))
        .filter(segment_members::Column::CustomerId.eq(customer_id))
        .order_by_asc(segment_members::Column::AddedAt)
        .order_by_asc(segment_members::Column::SegmentId)
        .all(conn)
        .await?
        .into_iter()
        .map(|m| MemberRow {
            segment_id: m.segment_id,
            added_at: m.added_at,
            cause: MembershipCause::parse_str(&m.cause).unwrap_or(MembershipCause::Creation),
        })
        .collect())
}

/// Every segment of the partner, by id.
async fn partner_segments(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
) -> Result<Vec<Segment>, ApiError> {
    segments::Entity::find()
        .filter(segments::Column::PartnerId.eq(partner_id))
        .order_by_asc(segments::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .map(segment_from)
        .collect()
}

/// What changed, for [`MembershipCache::changed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A segment's row (definition, member count, last recalculation, deletion).
    Segments,
    /// Memberships of possibly many customers.
    Members,
    /// One customer's features or memberships.
    Customer(Uuid),
}

/// The partner's segments as the hot path needs them.
pub struct Catalogue {
    /// The `p` token this was read under (`None`: not cached).
    token: Option<String>,
    by_id: BTreeMap<Uuid, Segment>,
    /// The segments recalculated online, by id.
    pub online: Vec<Segment>,
}

impl Catalogue {
    fn new(token: Option<String>, segments: Vec<Segment>) -> Self {
        Catalogue {
            token,
            online: segments
                .iter()
                .filter(|s| s.online_recalculation)
                .cloned()
                .collect(),
            by_id: segments.into_iter().map(|s| (s.id, s)).collect(),
        }
    }
}

/// What one customer's entry keeps. Every field is required, so an entry written before
/// one was added does not decode and is read again (a miss), never read as "nothing".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CustomerEntry {
    /// Whether segmentation knows the customer (see [`CustomerView::known`]).
    known: bool,
    rows: Vec<MemberRow>,
    features: Features,
    /// The badges the customer holds, by id.
    badges: Vec<Uuid>,
    /// The purchases the online segments' windows (and the criterion evaluated, for
    /// EvaluateCriterion) read, when any did as the entry was made.
    purchases: Option<RecentPurchases>,
}

/// A customer's purchases after `since` (`None`: all of them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RecentPurchases {
    since: Option<DateTime<Utc>>,
    rows: Vec<Purchase>,
}

impl CustomerEntry {
    /// Whether the entry holds the purchases `reach` asks for ([`purchases::reach`]). A
    /// window's start only moves forward, so an entry stays enough until the catalogue
    /// asks for a longer window.
    fn reaches(&self, reach: Option<Option<DateTime<Utc>>>) -> bool {
        match (reach, &self.purchases) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(needed), Some(p)) => match (p.since, needed) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(have), Some(need)) => have <= need,
            },
        }
    }
}

/// What `GetCustomerMemberships` (and `EvaluateCriterion`) needs of one customer, from the
/// cache or the database.
pub struct CustomerView {
    /// Whether segmentation knows the customer: it has their features (it heard of them and
    /// they were neither erased nor merged away). An unknown customer has no features,
    /// memberships, badges or purchases.
    pub known: bool,
    pub stored: Vec<StoredMembership>,
    pub catalogue: Arc<Catalogue>,
    pub features: Features,
    /// The badges the customer holds, by id.
    pub badges: Vec<Uuid>,
    /// The customer's purchases as far back as the online segments' windows (and the
    /// criterion asked about) reach; empty when none reads purchases.
    pub purchases: Vec<Purchase>,
}

impl CustomerView {
    fn new(catalogue: Arc<Catalogue>, entry: CustomerEntry) -> Self {
        CustomerView {
            known: entry.known,
            stored: stored_memberships(&entry.rows, &catalogue.by_id),
            catalogue,
            features: entry.features,
            badges: entry.badges,
            purchases: entry.purchases.map(|p| p.rows).unwrap_or_default(),
        }
    }
}

/// How far back the catalogue's online segments, and `also`, read purchases at `now`.
fn reach_of(
    catalogue: &Catalogue,
    also: Option<&Criterion>,
    now: DateTime<Utc>,
) -> Option<Option<DateTime<Utc>>> {
    let online = catalogue.online.iter().map(|s| &s.criterion);
    purchases::reach(online.chain(also), now)
}

fn p_key(partner_id: Uuid) -> String {
    format!("seg:{partner_id}:p")
}
fn b_key(partner_id: Uuid) -> String {
    format!("seg:{partner_id}:b")
}
fn c_key(partner_id: Uuid, customer_id: Uuid) -> String {
    format!("seg:{partner_id}:c:{customer_id}")
}
fn catalogue_key(partner_id: Uuid) -> String {
    format!("seg:{partner_id}:segments")
}
fn customer_key(partner_id: Uuid, customer_id: Uuid) -> String {
    format!("seg:{partner_id}:customer:{customer_id}")
}

fn token(raw: Option<Vec<u8>>) -> Option<String> {
    raw.and_then(|b| String::from_utf8(b).ok())
}

fn decode<T: DeserializeOwned>(raw: Option<Vec<u8>>) -> Option<Stamped<T>> {
    serde_json::from_slice(&raw?).ok()
}

/// The membership cache; cheap to clone (replicas share the entries through Redis, each keeps
/// the decoded segments of the partners it serves).
#[derive(Clone)]
pub struct MembershipCache {
    cache: Cache,
    /// Zero: off, every read goes to the database.
    ttl: Duration,
    /// Decoded segments per partner, valid while the partner's `p` token is the same.
    decoded: moka::future::Cache<Uuid, Arc<Catalogue>>,
}

impl MembershipCache {
    pub fn new(cache: Cache, ttl: Duration) -> Self {
        MembershipCache {
            cache,
            ttl,
            decoded: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl.max(Duration::from_secs(1)))
                .build(),
        }
    }

    /// Drops what `changes` make stale. Call after the change's transaction committed.
    pub async fn changed(&self, partner_id: Uuid, changes: &[Change]) {
        if self.ttl.is_zero() {
            return;
        }
        for change in changes {
            let key = match change {
                Change::Segments => {
                    self.decoded.invalidate(&partner_id).await;
                    p_key(partner_id)
                }
                Change::Members => b_key(partner_id),
                Change::Customer(c) => c_key(partner_id, *c),
            };
            self.cache.delete(&key).await;
        }
    }

    /// The token under `key`: the one read, or a fresh one stored now. `None` if no token is
    /// known to be current (another reader's won, or the cache did not answer): then nothing
    /// read now is cached.
    async fn token_or_new(&self, key: &str, read: Option<String>) -> Option<String> {
        if read.is_some() {
            return read;
        }
        let fresh = Uuid::new_v4().simple().to_string();
        self.cache
            .add(key, fresh.as_bytes(), self.ttl)
            .await
            .then_some(fresh)
    }

    async fn store<T: Serialize>(&self, key: &str, stamp: Vec<String>, value: &T) {
        match serde_json::to_vec(&Stamped { stamp, value }) {
            Ok(bytes) => self.cache.set(key, &bytes, self.ttl).await,
            Err(e) => tracing::warn!(error = %e, "membership cache entry not encodable"),
        }
    }

    /// The partner's segments under the `p` token `read` (from the cache or the database).
    async fn catalogue(
        &self,
        db: &DatabaseConnection,
        partner_id: Uuid,
        read: Option<String>,
    ) -> Result<Arc<Catalogue>, ApiError> {
        if let Some(t) = &read {
            if let Some(c) = self.decoded.get(&partner_id).await
                && c.token.as_ref() == Some(t)
            {
                return Ok(c);
            }
            let stored = self.cache.get(&catalogue_key(partner_id)).await;
            if let Some(segments) =
                decode::<Vec<Segment>>(stored).and_then(|s| s.current(std::slice::from_ref(&read)))
            {
                let c = Arc::new(Catalogue::new(read, segments));
                self.decoded.insert(partner_id, c.clone()).await;
                return Ok(c);
            }
        }
        let token = self.token_or_new(&p_key(partner_id), read).await;
        let segments = partner_segments(db, partner_id).await?;
        if let Some(t) = &token {
            self.store(&catalogue_key(partner_id), vec![t.clone()], &segments)
                .await;
        }
        let c = Arc::new(Catalogue::new(token, segments));
        if c.token.is_some() {
            self.decoded.insert(partner_id, c.clone()).await;
        }
        Ok(c)
    }

    /// What `GetCustomerMemberships` reads about a customer: one Redis round trip when warm;
    /// the database, with the very same answer, on a miss or when the cache is down. The
    /// purchases reach as far back as the online segments read, and as `also` (a criterion
    /// evaluated for the customer, `EvaluateCriterion`) reads: an entry reaching less is
    /// read again, and the longer one kept.
    pub async fn customer_view(
        &self,
        db: &DatabaseConnection,
        partner_id: Uuid,
        customer_id: Uuid,
        also: Option<&Criterion>,
        now: DateTime<Utc>,
    ) -> Result<CustomerView, ApiError> {
        if self.ttl.is_zero() || self.cache.invalidations_pending() {
            return from_database(db, partner_id, customer_id, also, now).await;
        }
        let keys = [
            p_key(partner_id),
            b_key(partner_id),
            c_key(partner_id, customer_id),
            customer_key(partner_id, customer_id),
        ];
        let Some(found) = self.cache.get_many(&keys).await else {
            return from_database(db, partner_id, customer_id, also, now).await;
        };
        let [p, b, c, entry]: [Option<Vec<u8>>; 4] = found
            .try_into()
            .map_err(|_| ApiError::Internal(anyhow::anyhow!("cache answered a wrong count")))?;
        let (p, b, c) = (token(p), token(b), token(c));
        let catalogue = self.catalogue(db, partner_id, p).await?;
        let reach = reach_of(&catalogue, also, now);
        if let Some(e) = decode::<CustomerEntry>(entry)
            .and_then(|e| e.current(&[b.clone(), c.clone()]))
            .filter(|e| e.reaches(reach))
        {
            return Ok(CustomerView::new(catalogue, e));
        }
        let b = self.token_or_new(&keys[1], b).await;
        let c = self.token_or_new(&keys[2], c).await;
        let e = customer_entry(db, partner_id, customer_id, reach).await?;
        if let (Some(b), Some(c)) = (b, c) {
            self.store(&keys[3], vec![b, c], &e).await;
        }
        Ok(CustomerView::new(catalogue, e))
    }
}

/// A customer's entry read from the database, with their purchases as far back as `reach`.
async fn customer_entry(
    db: &DatabaseConnection,
    partner_id: Uuid,
    customer_id: Uuid,
    reach: Option<Option<DateTime<Utc>>>,
) -> Result<CustomerEntry, ApiError> {
    let recent = async {
        match reach {
            None => Ok(None),
            Some(since) => purchases::bought(db, partner_id, customer_id, since)
                .await
                .map(|rows| Some(RecentPurchases { since, rows })),
        }
    };
    let (rows, features, badges, purchases) = tokio::try_join!(
        member_rows(db, partner_id, customer_id),
        features::features_updated(db, partner_id, customer_id),
        badges::held_ids(db, partner_id, customer_id),
        recent,
    )?;
    Ok(CustomerEntry {
        known: features.is_some(),
        rows,
        features: features.map(|(f, _)| f).unwrap_or_default(),
        badges,
        purchases,
    })
}

async fn from_database(
    db: &DatabaseConnection,
    partner_id: Uuid,
    customer_id: Uuid,
    also: Option<&Criterion>,
    now: DateTime<Utc>,
) -> Result<CustomerView, ApiError> {
    let catalogue = Catalogue::new(None, partner_segments(db, partner_id).await?);
    let reach = reach_of(&catalogue, also, now);
    let entry = customer_entry(db, partner_id, customer_id, reach).await?;
    Ok(CustomerView::new(Arc::new(catalogue), entry))
}

/// The feature projection, dropping the cache entries of the customers each applied event
/// changed once its transaction committed.
pub struct InvalidatingProjector {
    pub db: DatabaseConnection,
    pub cache: MembershipCache,
}

/// The customer an event is about, parsed.
fn about(id: &str) -> Option<Uuid> {
    Uuid::parse_str(id).ok()
}

impl InvalidatingProjector {
    /// What an applied event changed. An event of a merged account was applied to its
    /// survivor, so both are dropped.
    async fn changes(
        &self,
        partner_id: Uuid,
        e: &ev::EventEnvelope,
    ) -> anyhow::Result<Vec<Change>> {
        if let Some(m) = events::decode::<ev::CustomerMerged>(e) {
            return Ok([
                about(&m.surviving_customer_id),
                about(&m.merged_customer_id),
            ]
            .into_iter()
            .flatten()
            .map(Change::Customer)
            .chain([Change::Segments])
            .collect());
        }
        if let Some(c) = events::decode::<ev::CustomerErased>(e) {
            return Ok(about(&c.customer_id)
                .map(Change::Customer)
                .into_iter()
                .chain([Change::Segments])
                .collect());
        }
        let customer = events::decode::<ev::CustomerCreated>(e)
            .map(|c| c.customer_id)
            .or_else(|| events::decode::<ev::CustomerUpdated>(e).map(|c| c.customer_id))
            .or_else(|| events::decode::<ev::PurchaseCompleted>(e).map(|c| c.customer_id))
            .or_else(|| events::decode::<ev::PurchaseReturned>(e).map(|c| c.customer_id))
            .or_else(|| events::decode::<ev::EventTracked>(e).map(|c| c.customer_id))
            .or_else(|| events::decode::<ev::ConsentChanged>(e).map(|c| c.customer_id))
            .or_else(|| events::decode::<ev::EmailBounceStateChanged>(e).map(|c| c.customer_id))
            .or_else(|| events::decode::<ev::PointsPosted>(e).map(|c| c.customer_id))
            .or_else(|| events::decode::<ev::PointsExpired>(e).map(|c| c.customer_id))
            .or_else(|| events::decode::<ev::TierChanged>(e).map(|c| c.customer_id));
        let Some(id) = customer.as_deref().and_then(about) else {
            return Ok(Vec::new());
        };
        let txn: DatabaseTransaction = self.db.begin().await?;
        let current = lifecycle::current_account(&txn, partner_id, id).await?;
        txn.commit().await?;
        Ok([Some(id), current.filter(|c| *c != id)]
            .into_iter()
            .flatten()
            .map(Change::Customer)
            .collect())
    }
}

#[async_trait::async_trait]
impl events::EventHandler for InvalidatingProjector {
    fn handles(&self, event_type: &str) -> bool {
        FeatureProjector.handles(event_type)
    }

    async fn apply(&self, txn: &DatabaseTransaction, e: &ev::EventEnvelope) -> anyhow::Result<()> {
        FeatureProjector.apply(txn, e).await
    }

    async fn after_commit(&self, e: &ev::EventEnvelope) {
        let Ok(partner_id) = Uuid::parse_str(&e.partner_id) else {
            return;
        };
        match self.changes(partner_id, e).await {
            Ok(changes) => self.cache.changed(partner_id, &changes).await,
            Err(err) => {
                // Without knowing the survivor, drop every entry of the partner.
                tracing::warn!(error = %err, event_id = %e.event_id, "dropping the partner's cached memberships");
                self.cache
                    .changed(partner_id, &[Change::Segments, Change::Members])
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ManualChange;
    use crate::store::{
        Store,
        membership::recalculate_due,
        tests::{
            apply, create, customer_in, envelope, flexi, id, postgres, purchase, segment, sqlite,
        },
    };
    use chrono::Utc;
    use loyalty_criteria::{Operator, Value};
    use loyalty_platform::events::EventHandler;
    use loyalty_testkit::{REDIS_URL, RedisPrefix};

    const TTL: Duration = Duration::from_secs(300);

    /// What the hot path answers, comparable.
    type Answer = (
        Vec<StoredMembership>,
        Vec<Uuid>,
        Features,
        Vec<Uuid>,
        Vec<Purchase>,
        bool,
    );

    fn answer(v: CustomerView) -> Answer {
        (
            v.stored,
            v.catalogue.online.iter().map(|s| s.id).collect(),
            v.features,
            v.badges,
            v.purchases,
            v.known,
        )
    }

    async fn cached(c: &MembershipCache, db: &DatabaseConnection, p: Uuid, id: Uuid) -> Answer {
        answer(c.customer_view(db, p, id, None, Utc::now()).await.unwrap())
    }

    async fn fresh(db: &DatabaseConnection, p: Uuid, id: Uuid) -> Answer {
        answer(from_database(db, p, id, None, Utc::now()).await.unwrap())
    }

    /// Applies an event as the service's consumer does: projection, commit, then invalidation.
    async fn consume(db: &DatabaseConnection, cache: &MembershipCache, e: ev::EventEnvelope) {
        let projector = InvalidatingProjector {
            db: db.clone(),
            cache: cache.clone(),
        };
        let txn = loyalty_platform::db::begin_write(db).await.unwrap();
        projector.apply(&txn, &e).await.unwrap();
        txn.commit().await.unwrap();
        projector.after_commit(&e).await;
    }

    async fn redis_cache(prefix: &RedisPrefix) -> MembershipCache {
        let (_, conn) = loyalty_platform::cache::connect_redis(REDIS_URL)
            .await
            .unwrap();
        MembershipCache::new(Cache::redis(conn, &prefix.0), TTL)
    }

    fn local_cache() -> MembershipCache {
        MembershipCache::new(Cache::local(1_000), TTL)
    }

    /// Jana (Praha) in a standard Praha segment, with an online big-cart segment.
    async fn every_change_reaches_the_next_read(db: DatabaseConnection, cache: MembershipCache) {
        let store = Store::new(db.clone());
        let (partner, other) = (Uuid::now_v7(), Uuid::now_v7());
        let jana = customer_in("Praha");
        let petr = customer_in("Praha");
        consume(&db, &cache, envelope(partner, &jana)).await;
        consume(&db, &cache, envelope(partner, &petr)).await;
        consume(&db, &cache, envelope(other, &jana)).await;
        let praha = || {
            segment(
                "customer.city",
                Operator::Equal,
                Value::String("praha".into()),
                false,
            )
        };
        let standard = create(&store, partner, praha()).await;
        cache
            .changed(partner, &[Change::Segments, Change::Members])
            .await;
        let online = create(
            &store,
            partner,
            segment(
                "cart.total_minor",
                Operator::GreaterOrEqual,
                Value::Int(5_000),
                true,
            ),
        )
        .await;
        cache
            .changed(partner, &[Change::Segments, Change::Members])
            .await;
        let j = id(&jana);

        // Cold, then warm: the database's answer both times.
        let first = cached(&cache, &db, partner, j).await;
        assert_eq!(first, fresh(&db, partner, j).await);
        assert_eq!(first.0.len(), 1);
        assert_eq!(first.0[0].segment_id, standard.id);
        assert_eq!(first.1, [online.id]);
        assert_eq!(cached(&cache, &db, partner, j).await, first);
        assert!(
            cached(&cache, &db, other, j).await.0.is_empty(),
            "another partner's customer with the same id has their own entry"
        );

        // A change nobody announces is not seen (the answer comes from the cache)...
        apply(&db, envelope(partner, &purchase(&jana, 700))).await;
        assert_eq!(cached(&cache, &db, partner, j).await, first);
        // ...and an announced one is, at once.
        consume(&db, &cache, envelope(partner, &purchase(&jana, 300))).await;
        let bought = cached(&cache, &db, partner, j).await;
        assert_eq!(bought, fresh(&db, partner, j).await);
        assert_eq!(bought.2.purchase_count, 2);

        // Another customer's manual change: Jana's entry stays, the count she sees moves.
        let txn = loyalty_platform::db::begin_write(&db).await.unwrap();
        store
            .remove_customer(
                &txn,
                partner,
                standard.id,
                id(&petr),
                ManualChange::Operator,
                Utc::now(),
            )
            .await
            .unwrap();
        txn.commit().await.unwrap();
        cache
            .changed(partner, &[Change::Segments, Change::Customer(id(&petr))])
            .await;
        let counted = cached(&cache, &db, partner, j).await;
        assert_eq!(counted, fresh(&db, partner, j).await);
        assert_eq!(counted.0[0].segment.member_count, 1);
        assert!(cached(&cache, &db, partner, id(&petr)).await.0.is_empty());

        // A recalculation of many customers (the nightly run) drops every customer's entry.
        let buyers = create(
            &store,
            partner,
            flexi(segment(
                "features.purchase_count",
                Operator::GreaterOrEqual,
                Value::Int(3),
                false,
            )),
        )
        .await;
        cache
            .changed(partner, &[Change::Segments, Change::Members])
            .await;
        assert_eq!(cached(&cache, &db, partner, j).await.0.len(), 1);
        apply(&db, envelope(partner, &purchase(&jana, 100))).await; // third purchase, unannounced
        let run = recalculate_due(
            &crate::store::Store::new(db.clone()),
            &cache,
            Utc::now() + chrono::Duration::days(1),
        )
        .await
        .unwrap();
        assert_eq!(run.entered, 1);
        let recalculated = cached(&cache, &db, partner, j).await;
        assert_eq!(recalculated, fresh(&db, partner, j).await);
        assert_eq!(
            recalculated
                .0
                .iter()
                .map(|m| m.segment_id)
                .collect::<Vec<_>>(),
            [standard.id, buyers.id]
        );

        // A merge moves the duplicate's purchases to the survivor; an erasure forgets her.
        let duplicate = customer_in("Brno");
        consume(&db, &cache, envelope(partner, &duplicate)).await;
        consume(&db, &cache, envelope(partner, &purchase(&duplicate, 50))).await;
        cached(&cache, &db, partner, id(&duplicate)).await;
        consume(
            &db,
            &cache,
            envelope(
                partner,
                &ev::CustomerMerged {
                    surviving_customer_id: jana.customer_id.clone(),
                    merged_customer_id: duplicate.customer_id.clone(),
                },
            ),
        )
        .await;
        assert_eq!(
            cached(&cache, &db, partner, j).await,
            fresh(&db, partner, j).await
        );
        assert_eq!(cached(&cache, &db, partner, j).await.2.purchase_count, 4);
        assert_eq!(
            cached(&cache, &db, partner, id(&duplicate)).await,
            fresh(&db, partner, id(&duplicate)).await
        );
        // A late purchase of the merged account counts for (and drops) the survivor.
        consume(&db, &cache, envelope(partner, &purchase(&duplicate, 5))).await;
        assert_eq!(cached(&cache, &db, partner, j).await.2.purchase_count, 5);
        consume(
            &db,
            &cache,
            envelope(
                partner,
                &ev::CustomerErased {
                    customer_id: jana.customer_id.clone(),
                },
            ),
        )
        .await;
        let erased = cached(&cache, &db, partner, j).await;
        assert_eq!(erased, fresh(&db, partner, j).await);
        assert!(erased.0.is_empty());
        assert_eq!(erased.2, Features::default());
        assert!(!erased.5, "an erased customer is no longer known");
        assert!(first.5 && bought.5);
    }

    #[tokio::test]
    async fn every_change_reaches_the_next_read_with_redis_on_postgres() {
        let prefix = RedisPrefix::new();
        let (_db, db) = postgres().await;
        every_change_reaches_the_next_read(db, redis_cache(&prefix).await).await;
    }

    #[tokio::test]
    async fn every_change_reaches_the_next_read_with_redis_on_sqlite() {
        let prefix = RedisPrefix::new();
        let (_dir, db) = sqlite().await;
        every_change_reaches_the_next_read(db, redis_cache(&prefix).await).await;
    }

    #[tokio::test]
    async fn every_change_reaches_the_next_read_in_process_on_sqlite() {
        let (_dir, db) = sqlite().await;
        every_change_reaches_the_next_read(db, local_cache()).await;
    }

    /// A purchase of the customer `days_ago`, as checkout publishes it.
    fn bought(partner: Uuid, customer: &ev::CustomerCreated, days_ago: i64) -> ev::EventEnvelope {
        let p = ev::PurchaseCompleted {
            purchase_id: Uuid::now_v7().to_string(),
            customer_id: customer.customer_id.clone(),
            net_amount_minor: 1_000,
            purchase_time: Some(loyalty_platform::time::to_timestamp(
                Utc::now() - chrono::Duration::days(days_ago),
            )),
            ..Default::default()
        };
        envelope(partner, &p)
    }

    /// Online segments reading a badge and a purchase window: the customer's badges and
    /// purchases come from the entry while it is current, and every change that touches them
    /// is seen at the next read.
    async fn badges_and_purchases_are_cached(db: DatabaseConnection, cache: MembershipCache) {
        use crate::domain::{BadgeDraft, BadgeKind, Icon};
        let store = Store::new(db.clone());
        let partner = Uuid::now_v7();
        let jana = customer_in("Praha");
        let j = id(&jana);
        consume(&db, &cache, envelope(partner, &jana)).await;
        // An old purchase, outside the first window.
        consume(&db, &cache, bought(partner, &jana, 200)).await;
        let vip = BadgeDraft {
            display_name: "VIP".into(),
            kind: Some(BadgeKind::Manual),
            criterion: None,
            icon: Icon::new("https://cdn.example.com/vip.png".into(), "image/png"),
            visible_to_customer: true,
            note: String::new(),
        }
        .into_badge(Uuid::now_v7(), Utc::now())
        .unwrap();
        let txn = loyalty_platform::db::begin_write(&db).await.unwrap();
        let vip = store.create_badge(&txn, partner, vip).await.unwrap();
        txn.commit().await.unwrap();
        cache.changed(partner, &[Change::Members]).await;
        for (field, value) in [
            (format!("badges.{}", vip.id), Value::Bool(true)),
            ("purchases.last_30_days.count".to_owned(), Value::Int(2)),
        ] {
            let op = match value {
                Value::Bool(_) => Operator::Equal,
                _ => Operator::GreaterOrEqual,
            };
            create(&store, partner, segment(&field, op, value, true)).await;
        }
        cache
            .changed(partner, &[Change::Segments, Change::Members])
            .await;

        let first = cached(&cache, &db, partner, j).await;
        assert_eq!(first, fresh(&db, partner, j).await);
        assert!(first.3.is_empty());
        assert!(
            first.4.is_empty(),
            "the old purchase is outside 30 days (and a day)"
        );

        // A badge assigned (the RPC announces the customer) is seen at once...
        let txn = loyalty_platform::db::begin_write(&db).await.unwrap();
        store
            .assign_badge(&txn, partner, vip.id, j, ManualChange::Operator, Utc::now())
            .await
            .unwrap();
        txn.commit().await.unwrap();
        cache.changed(partner, &[Change::Customer(j)]).await;
        let held = cached(&cache, &db, partner, j).await;
        assert_eq!(held, fresh(&db, partner, j).await);
        assert_eq!(held.3, [vip.id]);

        // ...and so are purchases, announced by their events.
        consume(&db, &cache, bought(partner, &jana, 3)).await;
        consume(&db, &cache, bought(partner, &jana, 1)).await;
        let recent = cached(&cache, &db, partner, j).await;
        assert_eq!(recent, fresh(&db, partner, j).await);
        assert_eq!(recent.4.len(), 2);
        // The answer is the entry's: a purchase nobody announced is not read.
        apply(&db, bought(partner, &jana, 2)).await;
        assert_eq!(cached(&cache, &db, partner, j).await, recent);

        // A segment reading further back makes the entry too short: it is read again.
        create(
            &store,
            partner,
            segment(
                "purchases.last_365_days.count",
                Operator::GreaterOrEqual,
                Value::Int(1),
                true,
            ),
        )
        .await;
        cache.changed(partner, &[Change::Segments]).await;
        let longer = cached(&cache, &db, partner, j).await;
        assert_eq!(longer, fresh(&db, partner, j).await);
        assert_eq!(longer.4.len(), 4);

        // A criterion asked about (EvaluateCriterion) reading further back than every
        // online segment also makes the entry too short; the longer one then serves both.
        let ever = loyalty_criteria::Criterion::parse(loyalty_criteria::RawCriterion::Condition {
            field: "purchases.ever.count".into(),
            operator: Some(Operator::GreaterOrEqual),
            values: vec![Value::Int(1)],
        })
        .unwrap();
        apply(&db, bought(partner, &jana, 400)).await; // unannounced: seen only if read again
        for _ in 0..2 {
            let all = cache
                .customer_view(&db, partner, j, Some(&ever), Utc::now())
                .await
                .unwrap();
            assert_eq!(
                all.purchases.len(),
                5,
                "read again, back to the first purchase"
            );
        }
        assert_eq!(cached(&cache, &db, partner, j).await.4.len(), 5);
    }

    #[tokio::test]
    async fn badges_and_purchases_are_cached_with_redis_on_postgres() {
        let prefix = RedisPrefix::new();
        let (_db, db) = postgres().await;
        badges_and_purchases_are_cached(db, redis_cache(&prefix).await).await;
    }

    #[tokio::test]
    async fn badges_and_purchases_are_cached_in_process_on_sqlite() {
        let (_dir, db) = sqlite().await;
        badges_and_purchases_are_cached(db, local_cache()).await;
    }

    #[tokio::test]
    async fn a_value_read_before_a_change_and_stored_after_it_is_never_answered() {
        let prefix = RedisPrefix::new();
        let cache = redis_cache(&prefix).await;
        let (_db, db) = postgres().await;
        let partner = Uuid::now_v7();
        let jana = customer_in("Praha");
        consume(&db, &cache, envelope(partner, &jana)).await;
        let j = id(&jana);
        cached(&cache, &db, partner, j).await;
        // A slow reader's entry, read before the purchase below...
        let late = cache.cache.get(&customer_key(partner, j)).await.unwrap();
        consume(&db, &cache, envelope(partner, &purchase(&jana, 100))).await;
        // ...lands after the purchase committed and dropped the tokens.
        cache.cache.set(&customer_key(partner, j), &late, TTL).await;
        assert_eq!(cached(&cache, &db, partner, j).await.2.purchase_count, 1);
        // Also after a later reader made new tokens.
        cache.cache.set(&customer_key(partner, j), &late, TTL).await;
        assert_eq!(cached(&cache, &db, partner, j).await.2.purchase_count, 1);
    }

    #[tokio::test]
    async fn a_zero_ttl_turns_the_cache_off() {
        let (_dir, db) = sqlite().await;
        let cache = MembershipCache::new(Cache::local(10), Duration::ZERO);
        let partner = Uuid::now_v7();
        let jana = customer_in("Praha");
        apply(&db, envelope(partner, &jana)).await;
        assert_eq!(
            cached(&cache, &db, partner, id(&jana))
                .await
                .2
                .purchase_count,
            0
        );
        apply(&db, envelope(partner, &purchase(&jana, 100))).await; // unannounced
        assert_eq!(
            cached(&cache, &db, partner, id(&jana))
                .await
                .2
                .purchase_count,
            1
        );
    }
}

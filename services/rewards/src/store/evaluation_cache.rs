//! What EvaluateCart reads besides the rules, in memory: each customer's membership level and
//! each product's group and brand, so that a warm evaluation reads nothing from the database.
//!
//! Entries are dropped when what they hold changes: a `TierChanged` drops the customer's
//! level, a `RewardsChanged` (the tier ladder is one of the rules) every level of the
//! partner, a `CatalogueChanged` every product; every replica follows its own service's
//! events. A level also ends on its own at the moment it would lapse (a qualified period or
//! a manual level ending), and every entry after a TTL in any case (a bound for lost events).
//! A fill that started before an invalidation is not kept (a generation counter).
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};
use std::time::Duration;

use chrono::{DateTime, Utc};
use loyalty_platform::{
    ApiError,
    events::{self, EventCallback},
};
use loyalty_proto::events::v1 as ev;
use moka::sync::Cache;
use prost::Message;
use uuid::Uuid;

/// How long a customer's level is kept without an event about it.
pub const TIER_TTL: Duration = Duration::from_secs(300);
/// How long a product's group and brand are kept without a catalogue event.
pub const PRODUCT_TTL: Duration = Duration::from_secs(300);
/// Customers whose level one replica keeps (about 150 bytes each).
const MAX_TIERS: u64 = 500_000;
/// Products one replica keeps.
const MAX_PRODUCTS: u64 = 500_000;

/// A customer's effective level and until when it holds (`None` = until it changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveTier {
    pub tier_id: Option<Uuid>,
    pub until: Option<DateTime<Utc>>,
}

/// Products by code: what is known of each (`None`: no such product).
pub type KnownProducts = Vec<(String, Option<ProductFacts>)>;

/// What the evaluation needs of a product: its first group and its brand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductFacts {
    pub group: Option<String>,
    pub brand: Option<String>,
}

pub struct EvaluationCache {
    tiers: Cache<(Uuid, Uuid), EffectiveTier>,
    /// `None`: no such product (asked again only after the TTL or a catalogue change).
    products: Cache<(Uuid, String), Option<ProductFacts>>,
    tier_generation: AtomicU64,
    product_generation: AtomicU64,
}

impl EvaluationCache {
    pub fn new() -> Arc<Self> {
        Arc::new(EvaluationCache {
            tiers: Cache::builder()
                .max_capacity(MAX_TIERS)
                .time_to_live(TIER_TTL)
                .support_invalidation_closures()
                .build(),
            products: Cache::builder()
                .max_capacity(MAX_PRODUCTS)
                .time_to_live(PRODUCT_TTL)
                .support_invalidation_closures()
                .build(),
            tier_generation: AtomicU64::new(0),
            product_generation: AtomicU64::new(0),
        })
    }

    /// The customer's level at `now`: from memory while it holds, else from `load`.
    pub async fn tier<F, Fut>(
        &self,
        partner_id: Uuid,
        customer_id: Uuid,
        now: DateTime<Utc>,
        load: F,
    ) -> Result<Option<Uuid>, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<EffectiveTier, ApiError>>,
    {
        let key = (partner_id, customer_id);
        if let Some(t) = self.tiers.get(&key)
            && t.until.is_none_or(|until| now < until)
        {
            return Ok(t.tier_id);
        }
        let generation = self.tier_generation.load(Ordering::Acquire);
        let loaded = load().await?;
        if self.tier_generation.load(Ordering::Acquire) == generation {
            self.tiers.insert(key, loaded);
        }
        Ok(loaded.tier_id)
    }

    /// The facts of `codes` known in memory, and the codes to load.
    pub fn products(
        &self,
        partner_id: Uuid,
        codes: impl IntoIterator<Item = String>,
    ) -> (KnownProducts, Vec<String>, u64) {
        let generation = self.product_generation.load(Ordering::Acquire);
        let mut known = Vec::new();
        let mut missing = Vec::new();
        for code in codes {
            match self.products.get(&(partner_id, code.clone())) {
                Some(facts) => known.push((code, facts)),
                None => missing.push(code),
            }
        }
        (known, missing, generation)
    }

    /// Keeps what was loaded for `codes` (absent ones as unknown), unless the catalogue
    /// changed since `generation`.
    pub fn keep_products(
        &self,
        partner_id: Uuid,
        generation: u64,
        loaded: &[(String, Option<ProductFacts>)],
    ) {
        if self.product_generation.load(Ordering::Acquire) != generation {
            return;
        }
        for (code, facts) in loaded {
            self.products
                .insert((partner_id, code.clone()), facts.clone());
        }
    }

    /// Forgets one customer's level.
    pub fn forget_tier(&self, partner_id: Uuid, customer_id: Uuid) {
        self.tier_generation.fetch_add(1, Ordering::AcqRel);
        self.tiers.invalidate(&(partner_id, customer_id));
    }

    /// Forgets every level of a partner (its ladder changed).
    pub fn forget_partner_tiers(&self, partner_id: Uuid) {
        self.tier_generation.fetch_add(1, Ordering::AcqRel);
        if let Err(e) = self
            .tiers
            .invalidate_entries_if(move |(p, _), _| *p == partner_id)
        {
            tracing::warn!(error = %e, "could not drop cached levels; clearing all");
            self.tiers.invalidate_all();
        }
    }

    /// Forgets every product of a partner (its catalogue changed).
    pub fn forget_products(&self, partner_id: Uuid) {
        self.product_generation.fetch_add(1, Ordering::AcqRel);
        if let Err(e) = self
            .products
            .invalidate_entries_if(move |(p, _), _| *p == partner_id)
        {
            tracing::warn!(error = %e, "could not drop cached products; clearing all");
            self.products.invalidate_all();
        }
    }

    /// What to do with each of the service's own events (every replica follows them).
    pub fn on_event(self: &Arc<Self>) -> EventCallback {
        let cache = self.clone();
        Arc::new(move |event: &ev::EventEnvelope| {
            let Ok(partner_id) = event.partner_id.parse::<Uuid>() else {
                return;
            };
            let kind = event.event_type.as_str();
            if kind == <ev::TierChanged as events::DomainEvent>::TYPE {
                if let Ok(changed) = ev::TierChanged::decode(event.payload.as_slice())
                    && let Ok(customer_id) = changed.customer_id.parse()
                {
                    cache.forget_tier(partner_id, customer_id);
                }
            } else if kind == <ev::RewardsChanged as events::DomainEvent>::TYPE {
                cache.forget_partner_tiers(partner_id);
            } else if kind == <ev::CatalogueChanged as events::DomainEvent>::TYPE {
                cache.forget_products(partner_id);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(id: Option<Uuid>, until: Option<DateTime<Utc>>) -> EffectiveTier {
        EffectiveTier { tier_id: id, until }
    }

    #[tokio::test]
    async fn a_level_is_loaded_once_until_it_lapses_or_is_forgotten() {
        let cache = EvaluationCache::new();
        let (partner, customer) = (Uuid::now_v7(), Uuid::now_v7());
        let gold = Some(Uuid::now_v7());
        let now = Utc::now();
        let until = Some(now + chrono::Duration::hours(1));
        let loads = std::sync::atomic::AtomicUsize::new(0);
        let counter = &loads;
        let load = move || async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(tier(gold, until))
        };
        assert_eq!(
            cache.tier(partner, customer, now, load).await.unwrap(),
            gold
        );
        assert_eq!(
            cache.tier(partner, customer, now, load).await.unwrap(),
            gold
        );
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // Past its end, it is loaded again.
        let later = now + chrono::Duration::hours(2);
        cache.tier(partner, customer, later, load).await.unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        // Forgotten, it is loaded again.
        cache.forget_tier(partner, customer);
        cache.tier(partner, customer, now, load).await.unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_load_that_raced_an_invalidation_is_not_kept() {
        let cache = EvaluationCache::new();
        let (partner, customer) = (Uuid::now_v7(), Uuid::now_v7());
        let now = Utc::now();
        let stale = cache
            .tier(partner, customer, now, || async {
                // The level changes while the old one is being read.
                cache.forget_partner_tiers(partner);
                Ok(tier(None, None))
            })
            .await
            .unwrap();
        assert_eq!(stale, None);
        let gold = Some(Uuid::now_v7());
        let fresh = cache
            .tier(partner, customer, now, || async { Ok(tier(gold, None)) })
            .await
            .unwrap();
        assert_eq!(fresh, gold);
    }

    fn event<E: events::DomainEvent + Message>(partner: Uuid, e: &E) -> ev::EventEnvelope {
        ev::EventEnvelope {
            event_type: E::TYPE.to_owned(),
            partner_id: partner.to_string(),
            payload: e.encode_to_vec(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn the_services_events_drop_what_they_change() {
        let cache = EvaluationCache::new();
        let on_event = cache.on_event();
        let (partner, other) = (Uuid::now_v7(), Uuid::now_v7());
        let (eva, jan) = (Uuid::now_v7(), Uuid::now_v7());
        let gold = Some(Uuid::now_v7());
        let now = Utc::now();
        let cached = |p, c| cache.tiers.contains_key(&(p, c));
        for (p, c) in [(partner, eva), (partner, jan), (other, eva)] {
            cache
                .tier(p, c, now, || async { Ok(tier(gold, None)) })
                .await
                .unwrap();
        }
        // A customer's level change drops that customer only.
        on_event(&event(
            partner,
            &ev::TierChanged {
                customer_id: eva.to_string(),
                ..Default::default()
            },
        ));
        assert!(!cached(partner, eva));
        assert!(cached(partner, jan) && cached(other, eva));
        // A ladder change drops the partner's levels.
        on_event(&event(partner, &ev::RewardsChanged::default()));
        cache.tiers.run_pending_tasks();
        assert!(!cached(partner, jan));
        assert!(cached(other, eva));
        // A catalogue change drops the partner's products.
        let (_, _, generation) = cache.products(partner, ["A".to_owned()]);
        cache.keep_products(partner, generation, &[("A".into(), None)]);
        let (_, _, generation) = cache.products(other, ["A".to_owned()]);
        cache.keep_products(other, generation, &[("A".into(), None)]);
        on_event(&event(partner, &ev::CatalogueChanged::default()));
        cache.products.run_pending_tasks();
        assert!(!cache.products.contains_key(&(partner, "A".to_owned())));
        assert!(cache.products.contains_key(&(other, "A".to_owned())));
    }

    #[tokio::test]
    async fn products_are_kept_until_the_catalogue_changes() {
        let cache = EvaluationCache::new();
        let partner = Uuid::now_v7();
        let facts = ProductFacts {
            group: Some("G01".into()),
            brand: None,
        };
        let (known, missing, generation) =
            cache.products(partner, ["A".to_owned(), "B".to_owned()]);
        assert!(known.is_empty());
        assert_eq!(missing, ["A", "B"]);
        cache.keep_products(
            partner,
            generation,
            &[("A".into(), Some(facts.clone())), ("B".into(), None)],
        );
        let (known, missing, _) = cache.products(partner, ["A".to_owned(), "B".to_owned()]);
        assert_eq!(
            known,
            [("A".into(), Some(facts.clone())), ("B".into(), None)]
        );
        assert!(missing.is_empty());
        // A load that started before a catalogue change is not kept.
        let (_, _, before) = cache.products(partner, ["C".to_owned()]);
        cache.forget_products(partner);
        cache.products.run_pending_tasks();
        cache.keep_products(partner, before, &[("C".into(), Some(facts))]);
        let (known, missing, _) = cache.products(partner, ["A".to_owned(), "C".to_owned()]);
        assert!(known.is_empty());
        assert_eq!(missing, ["A", "C"]);
    }
}

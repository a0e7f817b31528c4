//! Each partner's active rules in memory, prepared for evaluation (`CompiledRuleSet`), so an
//! EvaluateCart reads no rule from the database. An entry is dropped when the partner's
//! rules change — right after a write in this process (`invalidate`) and when a
//! `RewardsChanged` event of any instance arrives (`on_event`) — and is reloaded after a TTL
//! in any case.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use loyalty_platform::{
    ApiError,
    events::{self, EventCallback},
};
use loyalty_proto::events::v1 as ev;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::domain::engine::CompiledRuleSet;

/// How long an entry serves without a change event (a safety net for lost events and for
/// rules whose validity starts meanwhile).
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// A partner's rules as of `loaded_at`.
#[derive(Debug)]
pub struct PartnerRules {
    pub rules: CompiledRuleSet<'static>,
    /// Vouchers one purchase may redeem; 0 = unlimited.
    pub max_vouchers_per_purchase: u32,
    pub loaded_at: DateTime<Utc>,
}

#[derive(Default)]
struct Entry {
    rules: Option<(Arc<PartnerRules>, Instant)>,
    /// Bumped by every invalidation, so that a load that started before it is not kept.
    generation: u64,
}

pub struct RulesCache {
    db: DatabaseConnection,
    ttl: Duration,
    entries: RwLock<HashMap<Uuid, Entry>>,
}

impl RulesCache {
    pub fn new(db: DatabaseConnection, ttl: Duration) -> Arc<Self> {
        Arc::new(RulesCache {
            db,
            ttl,
            entries: RwLock::new(HashMap::new()),
        })
    }

    /// The partner's rules active now: from memory when fresh, else loaded and kept.
    pub async fn get(&self, partner_id: Uuid) -> Result<Arc<PartnerRules>, ApiError> {
        let generation = {
            let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
            match entries.get(&partner_id) {
                Some(Entry {
                    rules: Some((rules, at)),
                    ..
                }) if at.elapsed() < self.ttl => return Ok(rules.clone()),
                Some(e) => e.generation,
                None => 0,
            }
        };
        let rules = Arc::new(self.load(partner_id, Utc::now()).await?);
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let entry = entries.entry(partner_id).or_default();
        if entry.generation == generation {
            entry.rules = Some((rules.clone(), Instant::now()));
        }
        Ok(rules)
    }

    /// The partner's rules active at `at`, from the database (for evaluations of another
    /// moment than now).
    pub async fn load(
        &self,
        partner_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<PartnerRules, ApiError> {
        let (set, settings) = super::resolution::rule_set(&self.db, partner_id, at).await?;
        Ok(PartnerRules {
            rules: CompiledRuleSet::new(set),
            max_vouchers_per_purchase: settings.max_vouchers_per_purchase,
            loaded_at: at,
        })
    }

    /// Forgets the partner's rules: the next evaluation loads them again.
    pub fn invalidate(&self, partner_id: Uuid) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let entry = entries.entry(partner_id).or_default();
        entry.generation += 1;
        entry.rules = None;
    }

    /// What to do with each of the service's own events, followed by every replica (a
    /// consumer group would hand each event to one replica only): a `RewardsChanged` drops
    /// the partner's rules.
    pub fn on_event(self: &Arc<Self>) -> EventCallback {
        let cache = self.clone();
        Arc::new(move |event: &ev::EventEnvelope| {
            if event.event_type == <ev::RewardsChanged as events::DomainEvent>::TYPE
                && let Ok(partner_id) = event.partner_id.parse()
            {
                cache.invalidate(partner_id);
            }
        })
    }
}

//! Customers' activity feeding reward offers: `PurchaseCompleted` (producer "checkout") and
//! `EventTracked` (producer "identity") advance the progress of every eligible active offer;
//! `CustomerCreated` with a referrer (producer "identity") and the referred customer's first
//! `PurchaseCompleted` advance the referrer's referral goals.
//! The platform's consumer applies each event once (its id is recorded in the same
//! transaction), and the store applies each purchase or customer event once per customer too,
//! so a redelivery, or the same purchase seen twice, never advances progress twice.
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use loyalty_platform::{
    events::{EventHandler, decode},
    time::from_timestamp,
};
use loyalty_proto::events::v1::{self as ev, EventEnvelope};
use sea_orm::DatabaseTransaction;
use uuid::Uuid;

use crate::{
    domain::schemes::{Activity, ActivityKind, Purchase},
    store::{catalogue::now, schemes as store},
};

/// Several handlers of one producer's events behind one consumer. The platform keeps one
/// consumer group, cursor and consumed-event record per (service, producer), so two
/// `infra.consume` calls for the same producer in this service would split its events between
/// them: every handler of a producer goes in here instead (e.g. tiers' activity next to
/// [`OfferActivity`] for "checkout"), and each event is applied by every handler that handles
/// it, in one transaction.
pub struct Handlers(pub Vec<Arc<dyn EventHandler>>);

#[async_trait]
impl EventHandler for Handlers {
    fn handles(&self, event_type: &str) -> bool {
        self.0.iter().any(|h| h.handles(event_type))
    }

    async fn apply(&self, txn: &DatabaseTransaction, event: &EventEnvelope) -> anyhow::Result<()> {
        for h in self.0.iter().filter(|h| h.handles(&event.event_type)) {
            h.apply(txn, event).await?;
        }
        Ok(())
    }

    async fn after_commit(&self, event: &EventEnvelope) {
        for h in self.0.iter().filter(|h| h.handles(&event.event_type)) {
            h.after_commit(event).await;
        }
    }
}

/// Applies purchases and customer events to reward offers.
pub struct OfferActivity;

impl OfferActivity {
    /// The activity an event describes, with its partner, customer and activity id; `None` for
    /// events that carry no customer (anonymous purchases) or malformed ids.
    pub fn activity_of(event: &EventEnvelope) -> Option<(Uuid, Uuid, String, Activity)> {
        let partner_id = Uuid::parse_str(&event.partner_id).ok()?;
        let occurred = event.occur_time.as_ref().and_then(from_timestamp);
        if let Some(p) = decode::<ev::PurchaseCompleted>(event) {
            let customer_id = Uuid::parse_str(&p.customer_id).ok()?;
            let at = p
                .purchase_time
                .as_ref()
                .and_then(from_timestamp)
                .or(occurred)?;
            let activity = Activity {
                at,
                business_unit_id: Uuid::parse_str(&p.business_unit_id).ok(),
                kind: ActivityKind::Purchase(Purchase {
                    purchase_id: p.purchase_id.clone(),
                    currency_code: p.currency_code,
                    net_amount_minor: p.net_amount_minor,
                    product_codes: p.product_ids,
                    product_group_codes: p.product_group_ids,
                    brand_codes: p.brand_ids,
                }),
            };
            return Some((
                partner_id,
                customer_id,
                format!("purchase:{}", p.purchase_id),
                activity,
            ));
        }
        if let Some(e) = decode::<ev::EventTracked>(event) {
            let customer_id = Uuid::parse_str(&e.customer_id).ok()?;
            let at = e
                .occur_time
                .as_ref()
                .and_then(from_timestamp)
                .or(occurred)?;
            let activity = Activity {
                at,
                business_unit_id: Uuid::parse_str(&e.business_unit_id).ok(),
                kind: ActivityKind::Event {
                    event_type_code: e.event_type_code,
                },
            };
            return Some((
                partner_id,
                customer_id,
                format!("event:{}", e.customer_event_id),
                activity,
            ));
        }
        None
    }

    /// The referral a `CustomerCreated` announces: partner, referrer, referred customer and
    /// when; `None` for customers nobody referred (or malformed ids).
    pub fn referral_of(event: &EventEnvelope) -> Option<(Uuid, Uuid, Uuid, DateTime<Utc>)> {
        let c = decode::<ev::CustomerCreated>(event)?;
        if c.referrer_customer_id.is_empty() {
            return None;
        }
        let referrer = Uuid::parse_str(&c.referrer_customer_id).ok()?;
        let referred = Uuid::parse_str(&c.customer_id).ok()?;
        if referrer == referred {
            return None;
        }
        let at = event
            .occur_time
            .as_ref()
            .and_then(from_timestamp)
            .unwrap_or_else(now);
        Some((
            Uuid::parse_str(&event.partner_id).ok()?,
            referrer,
            referred,
            at,
        ))
    }
}

#[async_trait]
impl EventHandler for OfferActivity {
    fn handles(&self, event_type: &str) -> bool {
        use loyalty_platform::events::DomainEvent;
        event_type == ev::PurchaseCompleted::TYPE
            || event_type == ev::EventTracked::TYPE
            || event_type == ev::CustomerCreated::TYPE
    }

    async fn apply(&self, txn: &DatabaseTransaction, event: &EventEnvelope) -> anyhow::Result<()> {
        if let Some((partner_id, referrer, referred, at)) = Self::referral_of(event) {
            store::apply_referral(txn, partner_id, referrer, referred, at, now())
                .await
                .map_err(|e| anyhow::anyhow!("applying the referral of {referred}: {e}"))?;
            return Ok(());
        }
        let Some((partner_id, customer_id, activity_id, activity)) = Self::activity_of(event)
        else {
            return Ok(());
        };
        store::apply_activity(txn, partner_id, customer_id, &activity_id, &activity, now())
            .await
            .map_err(|e| anyhow::anyhow!("applying {activity_id} to reward offers: {e}"))?;
        if let ActivityKind::Purchase(p) = &activity.kind {
            store::apply_first_purchase(
                txn,
                partner_id,
                customer_id,
                &p.purchase_id,
                activity.at,
                now(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("applying {activity_id} to referrals: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Counting {
        event_type: &'static str,
        applied: AtomicUsize,
    }

    #[async_trait]
    impl EventHandler for Counting {
        fn handles(&self, event_type: &str) -> bool {
            event_type == self.event_type
        }

        async fn apply(&self, _: &DatabaseTransaction, _: &EventEnvelope) -> anyhow::Result<()> {
            self.applied.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn every_handler_of_an_event_applies_it_in_one_transaction() {
        let db = sea_orm::Database::connect("sqlite::memory:")
            .await
            .expect("sqlite");
        let counting = |event_type| {
            Arc::new(Counting {
                event_type,
                applied: AtomicUsize::new(0),
            })
        };
        let (a, b, c) = (counting("x"), counting("x"), counting("y"));
        let all = Handlers(vec![a.clone(), b.clone(), c.clone()]);
        assert!(all.handles("x") && all.handles("y") && !all.handles("z"));
        let txn = sea_orm::TransactionTrait::begin(&db).await.expect("txn");
        let event = EventEnvelope {
            event_type: "x".into(),
            ..Default::default()
        };
        all.apply(&txn, &event).await.expect("apply");
        txn.commit().await.expect("commit");
        let applied = |h: &Counting| h.applied.load(Ordering::SeqCst);
        assert_eq!((applied(&a), applied(&b), applied(&c)), (1, 1, 0));
    }
}

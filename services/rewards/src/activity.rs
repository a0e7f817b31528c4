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
    ApiError,
    client::for_partner,
    events::{EventHandler, decode},
    time::from_timestamp,
};
use loyalty_proto::{
    events::v1::{self as ev, EventEnvelope},
    segmentation::v1::{
        self as segmentation, segmentation_service_client::SegmentationServiceClient,
    },
};
use sea_orm::DatabaseTransaction;
use secrecy::{ExposeSecret, SecretString};
use tonic::transport::Channel;
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
pub struct OfferActivity {
    segments: Arc<dyn store::CustomerSegments>,
}

impl Default for OfferActivity {
    /// Without segmentation: offers restricted to segments count for nobody.
    fn default() -> Self {
        OfferActivity {
            segments: Arc::new(store::NoSegmentation),
        }
    }
}

/// Segmentation asked by the consumer, outside any request: the platform key acting for the
/// event's partner (`loyalty_platform::client::for_partner`). Any failure fails the event's
/// application, which the consumer retries: a customer's activity waits for segmentation
/// rather than being counted without (or skipped by) the segment offers.
pub struct SegmentationPeer {
    client: SegmentationServiceClient<Channel>,
    platform_key: SecretString,
}

impl SegmentationPeer {
    pub fn new(channel: Channel, platform_key: SecretString) -> Self {
        SegmentationPeer {
            client: SegmentationServiceClient::new(channel),
            platform_key,
        }
    }
}

#[async_trait]
impl store::CustomerSegments for SegmentationPeer {
    async fn of(&self, partner_id: Uuid, customer_id: Uuid) -> Result<Option<Vec<Uuid>>, ApiError> {
        let resp = self
            .client
            .clone()
            .get_customer_memberships(for_partner(
                segmentation::GetCustomerMembershipsRequest {
                    customer_id: customer_id.to_string(),
                    cart: None,
                },
                self.platform_key.expose_secret(),
                partner_id,
            ))
            .await
            .map_err(|s| ApiError::from_upstream("segmentation", s))?
            .into_inner();
        Ok(Some(
            resp.memberships
                .iter()
                .filter_map(|m| m.segment_id.parse().ok())
                .collect(),
        ))
    }
}

impl OfferActivity {
    /// Offers restricted to segments ask `segments` about each customer.
    pub fn with_segments(segments: Arc<dyn store::CustomerSegments>) -> Self {
        OfferActivity { segments }
    }

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
            store::apply_referral(
                txn,
                partner_id,
                referrer,
                referred,
                at,
                now(),
                self.segments.as_ref(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("applying the referral of {referred}: {e}"))?;
            return Ok(());
        }
        let Some((partner_id, customer_id, activity_id, activity)) = Self::activity_of(event)
        else {
            return Ok(());
        };
        store::apply_activity(
            txn,
            partner_id,
            customer_id,
            &activity_id,
            &activity,
            now(),
            self.segments.as_ref(),
        )
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
                self.segments.as_ref(),
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

    #[test]
    fn a_customer_created_with_a_referrer_is_a_referral() {
        use loyalty_platform::events::DomainEvent;
        use prost::Message;
        let (partner, referrer, referred) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let envelope = |referrer: &str| EventEnvelope {
            event_type: ev::CustomerCreated::TYPE.into(),
            partner_id: partner.to_string(),
            payload: ev::CustomerCreated {
                customer_id: referred.to_string(),
                referrer_customer_id: referrer.into(),
                ..Default::default()
            }
            .encode_to_vec(),
            ..Default::default()
        };
        let (p, from, to, _) =
            OfferActivity::referral_of(&envelope(&referrer.to_string())).expect("a referral");
        assert_eq!((p, from, to), (partner, referrer, referred));
        assert!(OfferActivity::referral_of(&envelope("")).is_none());
        assert!(OfferActivity::referral_of(&envelope("nope")).is_none());
        assert!(OfferActivity::referral_of(&envelope(&referred.to_string())).is_none());
        assert!(OfferActivity::default().handles(ev::CustomerCreated::TYPE));
    }
}

//! Customers' activity feeding reward offers: `PurchaseCompleted` (producer "checkout") and
//! `EventTracked` (producer "identity") advance the progress of every eligible active offer.
//! The platform's consumer applies each event once (its id is recorded in the same
//! transaction), and the store applies each purchase or customer event once per customer too,
//! so a redelivery, or the same purchase seen twice, never advances progress twice.
use async_trait::async_trait;
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
}

#[async_trait]
impl EventHandler for OfferActivity {
    fn handles(&self, event_type: &str) -> bool {
        use loyalty_platform::events::DomainEvent;
        event_type == ev::PurchaseCompleted::TYPE || event_type == ev::EventTracked::TYPE
    }

    async fn apply(&self, txn: &DatabaseTransaction, event: &EventEnvelope) -> anyhow::Result<()> {
        let Some((partner_id, customer_id, activity_id, activity)) = Self::activity_of(event)
        else {
            return Ok(());
        };
        store::apply_activity(txn, partner_id, customer_id, &activity_id, &activity, now())
            .await
            .map_err(|e| anyhow::anyhow!("applying {activity_id} to reward offers: {e}"))?;
        Ok(())
    }
}

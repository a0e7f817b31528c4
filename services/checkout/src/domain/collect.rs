//! Click & collect orders: bought online, picked up in a store.
//! CREATED → READY_FOR_PICKUP → COLLECTED, or CANCELLED before pickup.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Cart;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectState {
    Created,
    ReadyForPickup,
    Collected,
    Cancelled,
}

impl CollectState {
    pub fn as_str(self) -> &'static str {
        match self {
            CollectState::Created => "created",
            CollectState::ReadyForPickup => "ready_for_pickup",
            CollectState::Collected => "collected",
            CollectState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            CollectState::Created,
            CollectState::ReadyForPickup,
            CollectState::Collected,
            CollectState::Cancelled,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// Days a store keeps an order that is ready when the change gives no date.
pub const DEFAULT_PICKUP_DAYS: i64 = 7;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectOrder {
    pub id: Uuid,
    pub order_number: String,
    pub customer_id: Uuid,
    pub business_unit_id: String,
    pub cart: Cart,
    pub state: CollectState,
    pub created_at: DateTime<Utc>,
    pub ready_at: Option<DateTime<Utc>>,
    pub pickup_until: Option<DateTime<Utc>>,
    pub collected_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: String,
    pub transaction_id: String,
    pub updated_at: DateTime<Utc>,
    /// Bumped by every change (the etag).
    pub version: i64,
}

/// A requested change of state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Ready { pickup_until: Option<DateTime<Utc>> },
    Collected { transaction_id: String },
    Cancelled { reason: String },
}

impl Change {
    fn target(&self) -> CollectState {
        match self {
            Change::Ready { .. } => CollectState::ReadyForPickup,
            Change::Collected { .. } => CollectState::Collected,
            Change::Cancelled { .. } => CollectState::Cancelled,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an order {} cannot become {}", .from.as_str(), .to.as_str())]
pub struct InvalidTransition {
    pub from: CollectState,
    pub to: CollectState,
}

impl CollectOrder {
    pub fn total_minor(&self) -> i64 {
        self.cart.gross_minor()
    }

    /// Applies `change` at `now`: `Ok(None)` when the order is in that state already (a
    /// retry), the changed order otherwise.
    pub fn apply(
        &self,
        change: Change,
        now: DateTime<Utc>,
    ) -> Result<Option<CollectOrder>, InvalidTransition> {
        use CollectState::*;
        let to = change.target();
        if self.state == to {
            return Ok(None);
        }
        let allowed = matches!(
            (self.state, to),
            (Created, ReadyForPickup)
                | (ReadyForPickup, Collected)
                | (Created, Cancelled)
                | (ReadyForPickup, Cancelled)
        );
        if !allowed {
            return Err(InvalidTransition {
                from: self.state,
                to,
            });
        }
        let mut next = self.clone();
        next.state = to;
        next.updated_at = now;
        next.version += 1;
        match change {
            Change::Ready { pickup_until } => {
                next.ready_at = Some(now);
                next.pickup_until =
                    Some(pickup_until.unwrap_or(now + chrono::Duration::days(DEFAULT_PICKUP_DAYS)));
            }
            Change::Collected { transaction_id } => {
                next.collected_at = Some(now);
                next.transaction_id = transaction_id;
            }
            Change::Cancelled { reason } => {
                next.cancelled_at = Some(now);
                next.cancel_reason = reason;
            }
        }
        Ok(Some(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CartLine;

    fn order() -> CollectOrder {
        let now = Utc::now();
        CollectOrder {
            id: Uuid::now_v7(),
            order_number: "E-1".into(),
            customer_id: Uuid::now_v7(),
            business_unit_id: "store-12".into(),
            cart: Cart {
                currency_code: "EUR".into(),
                lines: vec![CartLine {
                    line_id: "1".into(),
                    product_id: "SKU-1".into(),
                    product_group_ids: vec![],
                    brand_id: String::new(),
                    quantity: 2,
                    unit_price_minor: 500,
                }],
            },
            state: CollectState::Created,
            created_at: now,
            ready_at: None,
            pickup_until: None,
            collected_at: None,
            cancelled_at: None,
            cancel_reason: String::new(),
            transaction_id: String::new(),
            updated_at: now,
            version: 1,
        }
    }

    #[test]
    fn an_order_goes_from_created_to_ready_to_collected() {
        let now = Utc::now();
        let o = order();
        assert_eq!(o.total_minor(), 1000);
        let ready = o
            .apply(Change::Ready { pickup_until: None }, now)
            .unwrap()
            .unwrap();
        assert_eq!(ready.state, CollectState::ReadyForPickup);
        assert_eq!(
            ready.pickup_until,
            Some(now + chrono::Duration::days(DEFAULT_PICKUP_DAYS))
        );
        assert_eq!(ready.version, 2);
        // A retry changes nothing.
        assert_eq!(
            ready.apply(Change::Ready { pickup_until: None }, now),
            Ok(None)
        );
        let collected = ready
            .apply(
                Change::Collected {
                    transaction_id: "till-1/9".into(),
                },
                now,
            )
            .unwrap()
            .unwrap();
        assert_eq!(collected.transaction_id, "till-1/9");
        assert_eq!(
            collected.apply(Change::Cancelled { reason: "x".into() }, now),
            Err(InvalidTransition {
                from: CollectState::Collected,
                to: CollectState::Cancelled
            })
        );
    }

    #[test]
    fn an_order_is_collected_only_when_ready_and_cancelled_only_before_pickup() {
        let now = Utc::now();
        let o = order();
        assert!(
            o.apply(
                Change::Collected {
                    transaction_id: String::new()
                },
                now
            )
            .is_err()
        );
        let cancelled = o
            .apply(
                Change::Cancelled {
                    reason: "out of stock".into(),
                },
                now,
            )
            .unwrap()
            .unwrap();
        assert_eq!(cancelled.cancel_reason, "out of stock");
        assert!(
            cancelled
                .apply(Change::Ready { pickup_until: None }, now)
                .is_err()
        );
        for s in ["created", "ready_for_pickup", "collected", "cancelled"] {
            assert_eq!(CollectState::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(CollectState::parse("lost"), None);
    }
}

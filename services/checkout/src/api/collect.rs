//! Click & collect orders: placed online, prepared, picked up in a store. Each change is
//! one transaction with its `CollectOrderStateChanged` event.
use chrono::Utc;
use loyalty_platform::{
    ApiError, Principal, Violations,
    db::begin_write,
    events,
    idempotency::request_hash,
    paging::{next_time_token, page_size, parse_time_token},
    time::{from_timestamp, to_timestamp},
};
use loyalty_proto::{checkout::v1 as pb, events::v1 as ev, types::v1 as types};
use uuid::Uuid;

use super::{CheckoutApi, convert::cart_from_proto};
use crate::{
    domain::collect::{Change, CollectOrder, CollectState},
    store::collect::{self, OrderFilter},
};

fn state_to_proto(s: CollectState) -> pb::CollectOrderState {
    match s {
        CollectState::Created => pb::CollectOrderState::Created,
        CollectState::ReadyForPickup => pb::CollectOrderState::ReadyForPickup,
        CollectState::Collected => pb::CollectOrderState::Collected,
        CollectState::Cancelled => pb::CollectOrderState::Cancelled,
    }
}

fn state_from_proto(s: i32) -> Option<CollectState> {
    match pb::CollectOrderState::try_from(s).ok()? {
        pb::CollectOrderState::Created => Some(CollectState::Created),
        pb::CollectOrderState::ReadyForPickup => Some(CollectState::ReadyForPickup),
        pb::CollectOrderState::Collected => Some(CollectState::Collected),
        pb::CollectOrderState::Cancelled => Some(CollectState::Cancelled),
        pb::CollectOrderState::Unspecified => None,
    }
}

fn order_to_proto(o: &CollectOrder) -> pb::CollectOrder {
    pb::CollectOrder {
        id: o.id.to_string(),
        order_number: o.order_number.clone(),
        customer_id: o.customer_id.to_string(),
        business_unit_id: o.business_unit_id.clone(),
        cart: Some(types::Cart {
            currency_code: o.cart.currency_code.clone(),
            lines: o
                .cart
                .lines
                .iter()
                .map(|l| types::CartLine {
                    line_id: l.line_id.clone(),
                    product_id: l.product_id.clone(),
                    product_group_ids: l.product_group_ids.clone(),
                    brand_id: l.brand_id.clone(),
                    quantity: l.quantity,
                    unit_price_minor: l.unit_price_minor,
                })
                .collect(),
        }),
        total_amount_minor: o.total_minor(),
        state: state_to_proto(o.state) as i32,
        create_time: Some(to_timestamp(o.created_at)),
        ready_time: o.ready_at.map(to_timestamp),
        pickup_until_time: o.pickup_until.map(to_timestamp),
        collect_time: o.collected_at.map(to_timestamp),
        cancel_time: o.cancelled_at.map(to_timestamp),
        cancel_reason: o.cancel_reason.clone(),
        transaction_id: o.transaction_id.clone(),
        update_time: Some(to_timestamp(o.updated_at)),
        etag: o.version.to_string(),
    }
}

fn changed_event(o: &CollectOrder, previous: Option<CollectState>) -> ev::CollectOrderStateChanged {
    ev::CollectOrderStateChanged {
        order_id: o.id.to_string(),
        order_number: o.order_number.clone(),
        customer_id: o.customer_id.to_string(),
        business_unit_id: o.business_unit_id.clone(),
        state: o.state.as_str().to_owned(),
        previous_state: previous.map(|p| p.as_str().to_owned()).unwrap_or_default(),
        currency_code: o.cart.currency_code.clone(),
        total_amount_minor: o.total_minor(),
        pickup_until_time: o.pickup_until.map(to_timestamp),
    }
}

fn reused() -> ApiError {
    ApiError::Conflict {
        reason: "ORDER_NUMBER_REUSED",
        message: "this order_number was used for a different order".into(),
    }
}

impl CheckoutApi {
    pub(super) async fn create_order(
        &self,
        who: &Principal,
        partner_id: Uuid,
        req: pb::CreateCollectOrderRequest,
    ) -> Result<pb::CollectOrder, ApiError> {
        let fingerprint = request_hash(&req);
        let o = req.order.unwrap_or_default();
        let mut v = Violations::new();
        if o.order_number.trim().is_empty() || o.order_number.chars().count() > 64 {
            v.add("order.order_number", "must be 1..64 characters");
        }
        let customer_id = Uuid::try_parse(&o.customer_id).ok();
        if customer_id.is_none() {
            v.add("order.customer_id", "must be a UUID");
        }
        if o.business_unit_id.trim().is_empty() || o.business_unit_id.chars().count() > 64 {
            v.add("order.business_unit_id", "must be 1..64 characters");
        }
        let mut cart_v = Violations::new();
        let cart = cart_from_proto(&mut cart_v, o.cart.as_ref());
        for f in cart_v.into_vec() {
            v.add(format!("order.{}", f.field), f.description);
        }
        v.into_result()?;
        let (Some(customer_id), Some(cart)) = (customer_id, cart) else {
            return Err(ApiError::invalid("order", "is incomplete"));
        };
        if let Some(stored) =
            collect::find_by_number(self.store.db(), partner_id, &o.order_number).await?
        {
            return if stored.request_hash == fingerprint {
                Ok(order_to_proto(&stored.order))
            } else {
                Err(reused())
            };
        }
        self.peers.check_customer(who, customer_id).await?;
        let now = Utc::now();
        let order = CollectOrder {
            id: Uuid::now_v7(),
            order_number: o.order_number.trim().to_owned(),
            customer_id,
            business_unit_id: o.business_unit_id.trim().to_owned(),
            cart,
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
        };
        let txn = begin_write(self.store.db()).await?;
        if !collect::insert(&txn, partner_id, &fingerprint, &order).await? {
            drop(txn);
            // A concurrent call with the same number won.
            let stored = collect::find_by_number(self.store.db(), partner_id, &o.order_number)
                .await?
                .ok_or_else(|| ApiError::Unavailable("order being created; retry".into()))?;
            return if stored.request_hash == fingerprint {
                Ok(order_to_proto(&stored.order))
            } else {
                Err(reused())
            };
        }
        events::enqueue(&txn, Some(partner_id), &changed_event(&order, None)).await?;
        txn.commit().await?;
        Ok(order_to_proto(&order))
    }

    pub(super) async fn get_order(
        &self,
        partner_id: Uuid,
        req: pb::GetCollectOrderRequest,
    ) -> Result<pb::CollectOrder, ApiError> {
        let found = match (req.order_id.is_empty(), req.order_number.is_empty()) {
            (false, true) => {
                let id = Uuid::try_parse(&req.order_id)
                    .map_err(|_| ApiError::invalid("order_id", "must be a UUID"))?;
                collect::find_by_id(self.store.db(), partner_id, id).await?
            }
            (true, false) => {
                collect::find_by_number(self.store.db(), partner_id, &req.order_number).await?
            }
            _ => {
                return Err(ApiError::invalid(
                    "order_id",
                    "exactly one of order_id and order_number is required",
                ));
            }
        };
        found
            .map(|s| order_to_proto(&s.order))
            .ok_or_else(|| ApiError::NotFound("collect order".into()))
    }

    pub(super) async fn list_orders(
        &self,
        partner_id: Uuid,
        req: pb::ListCollectOrdersRequest,
    ) -> Result<pb::ListCollectOrdersResponse, ApiError> {
        let mut v = Violations::new();
        let customer_id = if req.customer_id.is_empty() {
            None
        } else {
            let parsed = Uuid::try_parse(&req.customer_id).ok();
            if parsed.is_none() {
                v.add("customer_id", "must be a UUID");
            }
            parsed
        };
        if pb::CollectOrderState::try_from(req.state).is_err() {
            v.add("state", "must be a known state");
        }
        let limit = page_size(&mut v, req.page_size);
        let after = parse_time_token(&mut v, &req.page_token);
        v.into_result()?;
        let filter = OrderFilter {
            customer_id,
            business_unit_id: (!req.business_unit_id.is_empty())
                .then(|| req.business_unit_id.clone()),
            state: state_from_proto(req.state),
        };
        let page = collect::list(self.store.db(), partner_id, &filter, after, limit).await?;
        Ok(pb::ListCollectOrdersResponse {
            next_page_token: next_time_token(
                page.len(),
                limit,
                page.last().map(|o| (o.created_at, o.id)),
            ),
            orders: page.iter().map(order_to_proto).collect(),
        })
    }

    pub(super) async fn change_order(
        &self,
        partner_id: Uuid,
        req: pb::UpdateCollectOrderStateRequest,
    ) -> Result<pb::CollectOrder, ApiError> {
        let mut v = Violations::new();
        let id = Uuid::try_parse(&req.order_id).ok();
        if id.is_none() {
            v.add("order_id", "must be a UUID");
        }
        let pickup_until = match req.pickup_until_time.as_ref().map(from_timestamp) {
            Some(None) => {
                v.add("pickup_until_time", "must be a valid timestamp");
                None
            }
            Some(Some(t)) => Some(t),
            None => None,
        };
        let change = match state_from_proto(req.state) {
            Some(CollectState::ReadyForPickup) => Some(Change::Ready { pickup_until }),
            Some(CollectState::Collected) => {
                if req.transaction_id.chars().count() > 128 {
                    v.add("transaction_id", "must be at most 128 characters");
                }
                Some(Change::Collected {
                    transaction_id: req.transaction_id.clone(),
                })
            }
            Some(CollectState::Cancelled) => {
                if req.cancel_reason.trim().is_empty() || req.cancel_reason.chars().count() > 200 {
                    v.add("cancel_reason", "must be 1..200 characters");
                }
                Some(Change::Cancelled {
                    reason: req.cancel_reason.trim().to_owned(),
                })
            }
            _ => {
                v.add("state", "must be READY_FOR_PICKUP, COLLECTED or CANCELLED");
                None
            }
        };
        v.into_result()?;
        let (Some(id), Some(change)) = (id, change) else {
            return Err(ApiError::invalid("state", "is required"));
        };
        let txn = begin_write(self.store.db()).await?;
        let stored = collect::find_by_id(&txn, partner_id, id)
            .await?
            .ok_or_else(|| ApiError::NotFound("collect order".into()))?;
        let current = stored.order;
        if !req.etag.is_empty() && req.etag != current.version.to_string() {
            return Err(ApiError::precondition(
                "ETAG_MISMATCH",
                "the order changed since it was read",
            ));
        }
        let next = current
            .apply(change, Utc::now())
            .map_err(|e| ApiError::precondition("INVALID_TRANSITION", e.to_string()))?;
        let Some(next) = next else {
            return Ok(order_to_proto(&current));
        };
        if !collect::update(&txn, &next, current.version).await? {
            return Err(ApiError::Unavailable(
                "the order changed meanwhile; retry".into(),
            ));
        }
        events::enqueue(
            &txn,
            Some(partner_id),
            &changed_event(&next, Some(current.state)),
        )
        .await?;
        txn.commit().await?;
        Ok(order_to_proto(&next))
    }
}

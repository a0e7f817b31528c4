//! gRPC adapter of `CheckoutService`.
use loyalty_platform::{
    ApiError, Principal, Role, Violations,
    auth::principal,
    events,
    idempotency::request_hash,
    time::{from_timestamp, to_timestamp},
};
use loyalty_proto::{
    checkout::v1::{self as pb, checkout_service_server::CheckoutService},
    events::v1 as ev,
    types::v1 as types,
};
use sea_orm::DatabaseConnection;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    domain::{
        self, AppliedBenefit, Cart, CartLine, Discount, PricedLine, Pricing, Receipt, SalesChannel,
        Totals,
    },
    peers::Peers,
    store::{PurchaseStatus, Store},
};

pub struct CheckoutApi {
    peers: Peers,
    store: Store,
    db: DatabaseConnection,
}

impl CheckoutApi {
    pub fn new(peers: Peers, store: Store, db: DatabaseConnection) -> Self {
        Self { peers, store, db }
    }
}

fn validate_identifier(v: &mut Violations, identifier: Option<&types::IdentifierRef>) {
    match identifier {
        None => v.add("identifier", "is required"),
        Some(i) => {
            if matches!(
                types::IdentifierType::try_from(i.r#type),
                Err(_) | Ok(types::IdentifierType::Unspecified)
            ) {
                v.add("identifier.type", "must be a known identifier type");
            }
            if i.value.trim().is_empty() {
                v.add("identifier.value", "is required");
            } else if i.value.chars().count() > 128 {
                v.add("identifier.value", "must be at most 128 characters");
            }
        }
    }
}

fn cart_from_proto(v: &mut Violations, cart: Option<&types::Cart>) -> Option<Cart> {
    let Some(c) = cart else {
        v.add("cart", "is required");
        return None;
    };
    let cart = Cart {
        currency_code: c.currency_code.clone(),
        lines: c
            .lines
            .iter()
            .map(|l| CartLine {
                line_id: l.line_id.clone(),
                product_id: l.product_id.clone(),
                product_group_ids: l.product_group_ids.clone(),
                brand_id: l.brand_id.clone(),
                quantity: l.quantity,
                unit_price_minor: l.unit_price_minor,
            })
            .collect(),
    };
    let violations = cart.validate();
    let ok = violations.is_empty();
    for violation in violations {
        v.add(format!("cart.{}", violation.field), violation.reason);
    }
    ok.then_some(cart)
}

fn discount_to_proto(d: &Discount) -> pb::LineDiscount {
    pb::LineDiscount {
        benefit_type: d.benefit_type.as_str().to_owned(),
        benefit_id: d.benefit_id.to_string(),
        benefit_display_name: d.benefit_name.clone(),
        amount_minor: d.amount_minor,
    }
}

fn line_to_proto(l: &PricedLine) -> pb::PricedLine {
    pb::PricedLine {
        line_id: l.line_id.clone(),
        product_id: l.product_id.clone(),
        quantity: l.quantity,
        unit_price_minor: l.unit_price_minor,
        gross_amount_minor: l.gross_minor,
        discounts: l.discounts.iter().map(discount_to_proto).collect(),
        net_amount_minor: l.net_minor,
    }
}

fn totals_to_proto(t: &Totals) -> pb::CartTotals {
    pb::CartTotals {
        currency_code: t.currency_code.clone(),
        gross_amount_minor: t.gross_minor,
        discount_amount_minor: t.discount_minor,
        net_amount_minor: t.net_minor,
    }
}

fn applied_to_proto(a: &AppliedBenefit) -> pb::AppliedBenefit {
    pb::AppliedBenefit {
        benefit_type: a.benefit_type.as_str().to_owned(),
        benefit_id: a.benefit_id.to_string(),
        benefit_display_name: a.benefit_name.clone(),
        discount_minor: a.discount_minor,
        points: a.points,
    }
}

fn receipt_to_proto(r: &Receipt) -> pb::Receipt {
    pb::Receipt {
        purchase_id: r.purchase_id.to_string(),
        transaction_id: r.transaction_id.clone(),
        customer_id: r.customer_id.to_string(),
        lines: r.pricing.lines.iter().map(line_to_proto).collect(),
        totals: Some(totals_to_proto(&r.pricing.totals)),
        applied_benefits: r.pricing.applied.iter().map(applied_to_proto).collect(),
        points_earned: r.points_earned,
        points_balance: r.points_balance,
        commit_time: Some(to_timestamp(r.committed_at)),
        business_unit_id: r.business_unit_id.clone(),
        channel: channel_to_proto(r.channel) as i32,
        purchase_time: Some(to_timestamp(r.purchase_time)),
        ..Default::default()
    }
}

fn channel_from_proto(v: i32) -> SalesChannel {
    match types::SalesChannel::try_from(v).unwrap_or_default() {
        types::SalesChannel::Pos => SalesChannel::Pos,
        types::SalesChannel::Eshop => SalesChannel::Eshop,
        types::SalesChannel::MobileApp => SalesChannel::MobileApp,
        types::SalesChannel::Kiosk => SalesChannel::Kiosk,
        types::SalesChannel::Unspecified => SalesChannel::Unspecified,
    }
}

fn channel_to_proto(c: SalesChannel) -> types::SalesChannel {
    match c {
        SalesChannel::Pos => types::SalesChannel::Pos,
        SalesChannel::Eshop => types::SalesChannel::Eshop,
        SalesChannel::MobileApp => types::SalesChannel::MobileApp,
        SalesChannel::Kiosk => types::SalesChannel::Kiosk,
        SalesChannel::Unspecified => types::SalesChannel::Unspecified,
    }
}

fn unique<'a>(items: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = items.cloned().collect();
    out.sort();
    out.dedup();
    out
}

/// Everything Evaluate and Commit need to price a cart, fetched in parallel.
struct Priced {
    customer_id: Uuid,
    segment_ids: Vec<Uuid>,
    pricing: Pricing,
    balance: i64,
}

impl CheckoutApi {
    async fn price(
        &self,
        who: &Principal,
        partner_id: Uuid,
        identifier: &types::IdentifierRef,
        proto_cart: &types::Cart,
        cart: &Cart,
    ) -> Result<Priced, ApiError> {
        let customer_id = self.peers.resolve_customer(who, identifier).await?;
        let (memberships, benefits, balance) = tokio::try_join!(
            self.peers.memberships(who, customer_id, proto_cart),
            self.peers.benefits(who, partner_id),
            self.peers.balance(who, customer_id),
        )?;
        let pricing = domain::price(
            cart,
            &memberships,
            &benefits.rewards,
            &benefits.bonuses,
            chrono::Utc::now(),
        );
        let mut segment_ids: Vec<Uuid> = memberships.into_iter().collect();
        segment_ids.sort();
        Ok(Priced {
            customer_id,
            segment_ids,
            pricing,
            balance,
        })
    }

    /// Finishes a pending purchase: earns its points (once, whatever the retries), then marks
    /// it committed and publishes `PurchaseCompleted` in one transaction.
    async fn complete(
        &self,
        who: &Principal,
        partner_id: Uuid,
        mut receipt: Receipt,
    ) -> Result<Receipt, ApiError> {
        let points = receipt.pricing.points_to_earn;
        receipt.points_balance = if points > 0 {
            self.peers
                .award(
                    who,
                    receipt.customer_id,
                    points,
                    format!("purchase:{}", receipt.purchase_id),
                    format!("purchase:{}", receipt.transaction_id),
                )
                .await?
        } else {
            self.peers.balance(who, receipt.customer_id).await?
        };
        receipt.points_earned = points;
        receipt.committed_at = chrono::Utc::now();
        let txn = loyalty_platform::db::begin_write(&self.db).await?;
        if !self
            .store
            .mark_committed(&txn, partner_id, &receipt)
            .await?
        {
            // Another attempt finished first and published the event; its receipt wins.
            return Ok(receipt);
        }
        events::enqueue(
            &txn,
            Some(partner_id),
            &ev::PurchaseCompleted {
                purchase_id: receipt.purchase_id.to_string(),
                transaction_id: receipt.transaction_id.clone(),
                customer_id: receipt.customer_id.to_string(),
                currency_code: receipt.pricing.totals.currency_code.clone(),
                net_amount_minor: receipt.pricing.totals.net_minor,
                discount_amount_minor: receipt.pricing.totals.discount_minor,
                points_earned: receipt.points_earned,
                product_ids: receipt
                    .pricing
                    .lines
                    .iter()
                    .map(|l| l.product_id.clone())
                    .collect(),
                product_group_ids: unique(
                    receipt
                        .pricing
                        .lines
                        .iter()
                        .flat_map(|l| l.product_group_ids.iter()),
                ),
                brand_ids: unique(
                    receipt
                        .pricing
                        .lines
                        .iter()
                        .map(|l| &l.brand_id)
                        .filter(|b| !b.is_empty()),
                ),
                business_unit_id: receipt.business_unit_id.clone(),
                channel: receipt.channel.as_str().to_owned(),
                purchase_time: Some(to_timestamp(receipt.purchase_time)),
                ..Default::default()
            },
        )
        .await?;
        txn.commit().await?;
        Ok(receipt)
    }
}

#[tonic::async_trait]
impl CheckoutService for CheckoutApi {
    #[tracing::instrument(skip_all)]
    async fn evaluate(
        &self,
        request: Request<pb::EvaluateRequest>,
    ) -> Result<Response<pb::EvaluateResponse>, Status> {
        let who = principal(&request)?;
        let partner_id = who.partner_with_role(&[Role::Pos, Role::Service])?;
        let req = request.into_inner();
        let mut v = Violations::new();
        validate_identifier(&mut v, req.identifier.as_ref());
        let cart = cart_from_proto(&mut v, req.cart.as_ref());
        v.into_result()?;
        let (Some(identifier), Some(proto_cart), Some(cart)) = (req.identifier, req.cart, cart)
        else {
            return Err(ApiError::invalid("cart", "is required").into());
        };
        let priced = self
            .price(&who, partner_id, &identifier, &proto_cart, &cart)
            .await?;
        let p = &priced.pricing;
        Ok(Response::new(pb::EvaluateResponse {
            customer_id: priced.customer_id.to_string(),
            lines: p.lines.iter().map(line_to_proto).collect(),
            totals: Some(totals_to_proto(&p.totals)),
            applied_benefits: p.applied.iter().map(applied_to_proto).collect(),
            points_to_earn: p.points_to_earn,
            points_balance: priced.balance,
            segment_ids: priced.segment_ids.iter().map(Uuid::to_string).collect(),
            ..Default::default()
        }))
    }

    #[tracing::instrument(skip_all, fields(transaction_id))]
    async fn commit(
        &self,
        request: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        let who = principal(&request)?;
        let partner_id = who.partner_with_role(&[Role::Pos, Role::Service])?;
        let req = request.into_inner();
        let fingerprint = request_hash(&req);
        let mut v = Violations::new();
        if req.transaction_id.is_empty() || req.transaction_id.chars().count() > 128 {
            v.add("transaction_id", "must be 1..128 characters");
        }
        validate_identifier(&mut v, req.identifier.as_ref());
        let cart = cart_from_proto(&mut v, req.cart.as_ref());
        for (i, p) in req.payments.iter().enumerate() {
            if p.method.is_empty() || p.method.chars().count() > 64 {
                v.add(format!("payments[{i}].method"), "must be 1..64 characters");
            }
            if p.amount_minor <= 0 {
                v.add(
                    format!("payments[{i}].amount_minor"),
                    "must be greater than 0",
                );
            }
        }
        if let Some(t) = &req.purchase_time
            && from_timestamp(t).is_none()
        {
            v.add("purchase_time", "must be a valid timestamp");
        }
        v.into_result()?;
        let (Some(identifier), Some(proto_cart), Some(cart)) =
            (req.identifier.as_ref(), req.cart.as_ref(), cart)
        else {
            return Err(ApiError::invalid("cart", "is required").into());
        };
        tracing::Span::current().record("transaction_id", req.transaction_id.as_str());

        let existing = self.store.find(partner_id, &req.transaction_id).await?;
        let pending = match existing {
            Some(p) if p.request_hash != fingerprint => {
                return Err(ApiError::Conflict {
                    reason: "TRANSACTION_ID_REUSED",
                    message: "this transaction_id was committed with a different request"
                        .to_owned(),
                }
                .into());
            }
            Some(p) if p.status == PurchaseStatus::Committed => {
                return Ok(Response::new(pb::CommitResponse {
                    receipt: Some(receipt_to_proto(&p.receipt)),
                }));
            }
            Some(p) => p.receipt,
            None => {
                let priced = self
                    .price(&who, partner_id, identifier, proto_cart, &cart)
                    .await?;
                let draft = Receipt {
                    purchase_id: Uuid::now_v7(),
                    transaction_id: req.transaction_id.clone(),
                    customer_id: priced.customer_id,
                    business_unit_id: req.business_unit_id.clone(),
                    channel: channel_from_proto(req.channel),
                    purchase_time: req
                        .purchase_time
                        .as_ref()
                        .and_then(from_timestamp)
                        .unwrap_or_else(chrono::Utc::now),
                    pricing: priced.pricing,
                    points_earned: 0,
                    points_balance: priced.balance,
                    committed_at: chrono::Utc::now(),
                };
                if self
                    .store
                    .insert_pending(partner_id, &fingerprint, &draft)
                    .await?
                {
                    draft
                } else {
                    // A concurrent commit of the same transaction fixed the pricing first.
                    match self.store.find(partner_id, &req.transaction_id).await? {
                        Some(p) if p.request_hash != fingerprint => {
                            return Err(ApiError::Conflict {
                                reason: "TRANSACTION_ID_REUSED",
                                message:
                                    "this transaction_id was committed with a different request"
                                        .to_owned(),
                            }
                            .into());
                        }
                        Some(p) if p.status == PurchaseStatus::Committed => {
                            return Ok(Response::new(pb::CommitResponse {
                                receipt: Some(receipt_to_proto(&p.receipt)),
                            }));
                        }
                        Some(p) => p.receipt,
                        None => {
                            return Err(ApiError::Unavailable(
                                "purchase is being committed; retry".into(),
                            )
                            .into());
                        }
                    }
                }
            }
        };
        let receipt = self.complete(&who, partner_id, pending).await?;
        // A concurrent retry may have completed first; answer with what was stored.
        let stored = self.store.find(partner_id, &req.transaction_id).await?;
        let receipt = match stored {
            Some(p) if p.status == PurchaseStatus::Committed => p.receipt,
            _ => receipt,
        };
        Ok(Response::new(pb::CommitResponse {
            receipt: Some(receipt_to_proto(&receipt)),
        }))
    }

    loyalty_platform::rpcs_not_yet_implemented! {
        "lands with issue #9 (checkout for POS gateways)";
        r#return(pb::ReturnRequest) -> pb::ReturnResponse;
        get_purchase(pb::GetPurchaseRequest) -> pb::GetPurchaseResponse;
        list_purchases(pb::ListPurchasesRequest) -> pb::ListPurchasesResponse;
    }
}

/// Keeps the in-memory benefits fresh: a `RewardsChanged` event drops the partner's entry.
pub struct RewardsChangedHandler {
    pub peers: Peers,
}

#[tonic::async_trait]
impl events::EventHandler for RewardsChangedHandler {
    fn handles(&self, event_type: &str) -> bool {
        event_type == <ev::RewardsChanged as events::DomainEvent>::TYPE
    }

    async fn apply(
        &self,
        _txn: &sea_orm::DatabaseTransaction,
        _event: &ev::EventEnvelope,
    ) -> anyhow::Result<()> {
        Ok(())
    }

    async fn after_commit(&self, event: &ev::EventEnvelope) {
        if let Ok(partner_id) = event.partner_id.parse() {
            self.peers.invalidate_benefits(partner_id).await;
        }
    }
}

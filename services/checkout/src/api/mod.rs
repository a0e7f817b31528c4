//! gRPC adapter of `CheckoutService`: authorize → validate → domain → persist → respond.
//! The commit saga lives in `commit`, returns and voids in `returns`.
mod collect;
mod commit;
mod convert;
mod returns;

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use loyalty_platform::{
    ApiError, Principal, Role, Violations,
    auth::principal,
    config::CheckoutSettings,
    paging::{next_time_token, page_size, parse_time_token},
    time::{from_timestamp, to_timestamp},
};
use loyalty_proto::{
    checkout::v1::{self as pb, checkout_service_server::CheckoutService},
    rewards::v1 as rewards,
    types::v1 as types,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    domain::{
        Cart, Pricing, SalesChannel, Spend,
        credit::{self, CreditRefusal, CreditWallet},
        points::{self, PointsRefusal},
        priced_request_hash,
        quote::{self, QuoteBody},
    },
    peers::{Peers, WalletState, pricing_from_evaluation},
    store::{HistoryFilter, PurchaseStatus, Store, StoredPurchase},
};
use convert::*;

pub use commit::Recovery;

/// Transactions one CommitBatch stream may replay.
const MAX_BATCH: usize = 10_000;

pub struct CheckoutApi {
    peers: Peers,
    store: Store,
    quote_secret: Vec<u8>,
    settings: CheckoutSettings,
}

impl CheckoutApi {
    pub fn new(
        peers: Peers,
        store: Store,
        quote_secret: Vec<u8>,
        settings: CheckoutSettings,
    ) -> Self {
        Self {
            peers,
            store,
            quote_secret,
            settings,
        }
    }
}

/// What is priced: the same for Evaluate and Commit.
struct PriceRequest<'a> {
    identifier: &'a types::IdentifierRef,
    proto_cart: &'a types::Cart,
    cart: &'a Cart,
    business_unit_id: &'a str,
    channel: SalesChannel,
    voucher_codes: &'a [String],
    spend: Spend<'a>,
    /// The moment to price at; `None` = now.
    at: Option<DateTime<Utc>>,
    /// Vouchers held by this transaction are not refused as reserved.
    transaction_id: Option<&'a str>,
}

/// How strictly a request is priced.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Evaluate: a missing segmentation degrades the answer; points beyond what is spendable
    /// are cut down to it.
    Evaluate,
    /// Commit: every dependency must answer; points beyond what is spendable are refused.
    Commit,
}

struct Priced {
    /// Evaluate only: the customer's vouchers not presented that would apply.
    available: Vec<pb::AvailableVoucher>,
    customer_id: Uuid,
    segment_ids: Vec<String>,
    tier_id: String,
    wallet: WalletState,
    /// The CREDIT wallet that pays (or would pay) this cart.
    purse: Option<CreditWallet>,
    pricing: Pricing,
    degraded: Vec<String>,
}

impl CheckoutApi {
    /// Resolves the customer, then fetches memberships (with this cart), wallet and (for
    /// Evaluate) the customer's vouchers in parallel, then evaluates the cart in rewards
    /// (whose rules, customer levels and catalogue are in its memory).
    async fn price(
        &self,
        who: &Principal,
        r: &PriceRequest<'_>,
        mode: Mode,
    ) -> Result<Priced, ApiError> {
        let customer_id = self.peers.resolve_customer(who, r.identifier).await?;
        let owned = async {
            match mode {
                Mode::Evaluate => {
                    self.peers
                        .active_vouchers(who, customer_id, MAX_OFFERED_VOUCHERS as i32)
                        .await
                }
                Mode::Commit => Ok(Vec::new()),
            }
        };
        let (memberships, wallet, owned) = tokio::join!(
            self.peers.memberships(who, customer_id, r.proto_cart),
            self.peers.wallet_state(who, customer_id),
            owned,
        );
        let wallet = wallet?;
        let mut degraded = Vec::new();
        let segment_ids = match memberships {
            Ok(ids) => ids,
            Err(ApiError::Unavailable(why)) if mode == Mode::Evaluate => {
                tracing::warn!(%why, "segmentation unavailable: evaluating without segments");
                degraded.push("segmentation unavailable: segment-only benefits left out".into());
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        let request = rewards::EvaluateCartRequest {
            lines: evaluation_lines(r.cart),
            customer_id: customer_id.to_string(),
            segment_ids: segment_ids.clone(),
            use_customer_tier: true,
            omit_rules_not_applied: true,
            business_unit_id: r.business_unit_id.to_owned(),
            channel: channel_to_proto(r.channel) as i32,
            voucher_codes: r.voucher_codes.to_vec(),
            evaluate_time: r.at.map(to_timestamp),
            transaction_id: r.transaction_id.unwrap_or_default().to_owned(),
            ..Default::default()
        };
        // The customer's vouchers not presented: evaluated together with the presented ones,
        // side by side with the real evaluation, to tell which would apply.
        let presented: HashSet<String> = r
            .voucher_codes
            .iter()
            .map(|c| c.trim().to_uppercase())
            .collect();
        let unpresented: Vec<rewards::Voucher> = owned?
            .into_iter()
            .filter(|v| !presented.contains(&v.code.to_uppercase()))
            .take(MAX_OFFERED_VOUCHERS.saturating_sub(r.voucher_codes.len()))
            .collect();
        let with_owned = (!unpresented.is_empty()).then(|| rewards::EvaluateCartRequest {
            voucher_codes: r
                .voucher_codes
                .iter()
                .cloned()
                .chain(unpresented.iter().map(|v| v.code.clone()))
                .collect(),
            ..request.clone()
        });
        let (evaluation, trial) = tokio::join!(self.peers.evaluate_cart(who, request), async {
            match with_owned {
                Some(req) => self.peers.evaluate_cart(who, req).await.map(Some),
                None => Ok(None),
            }
        });
        let evaluation = evaluation?;
        let tier_id = evaluation.tier_id.clone();
        let available = match trial {
            Ok(Some(t)) => offered(&unpresented, &t),
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::debug!(error = %e, "owned vouchers not evaluated");
                Vec::new()
            }
        };
        let evaluated = pricing_from_evaluation(r.cart, evaluation)?;
        let mut pricing = evaluated.pricing;
        let payable = evaluated.payable.as_ref();
        pricing.points_spendable = points::spendable(
            payable,
            wallet.available_points,
            wallet.blocked_from_spending,
        );
        let payment = points::pay(
            payable,
            wallet.available_points,
            wallet.blocked_from_spending,
            r.spend.points,
            mode == Mode::Commit,
        )
        .map_err(|refusal| match refusal {
            PointsRefusal::Blocked => ApiError::precondition(
                "BLOCKED_FROM_SPENDING",
                "the customer is blocked from spending points",
            ),
            PointsRefusal::NotSpendable { spendable } => ApiError::precondition(
                "POINTS_NOT_SPENDABLE",
                format!("at most {spendable} points can pay for this cart"),
            ),
        })?;
        if let Some(p) = payment {
            pricing.totals.points_payment_minor = p.value_minor;
        }
        pricing.points_payment = payment;
        // Open balance pays what the points leave.
        let purse =
            credit::choose(&wallet.credits, &r.cart.currency_code, r.spend.credit_type).cloned();
        let purse_ref = purse.as_ref();
        let due = pricing.totals.amount_due_minor();
        pricing.credit_spendable_minor = credit::spendable(purse_ref, due);
        let credit_payment =
            credit::pay(purse_ref, due, r.spend.credit_minor, mode == Mode::Commit).map_err(
                |refusal| match refusal {
                    CreditRefusal::Blocked => ApiError::precondition(
                        "BLOCKED_FROM_SPENDING",
                        "the customer is blocked from spending open balance",
                    ),
                    CreditRefusal::NotSpendable { spendable } => ApiError::precondition(
                        "CREDIT_NOT_SPENDABLE",
                        format!(
                            "at most {spendable} {} of open balance can pay for this cart",
                            r.cart.currency_code
                        ),
                    ),
                },
            )?;
        if let Some(c) = credit_payment {
            pricing.totals.credit_payment_minor = c.amount_minor;
        }
        pricing.credit_payment = credit_payment;
        Ok(Priced {
            available,
            customer_id,
            segment_ids,
            tier_id,
            wallet,
            purse,
            pricing,
            degraded,
        })
    }
}

/// Vouchers one Evaluate looks at among the customer's own (rewards evaluates at most 50 codes).
const MAX_OFFERED_VOUCHERS: usize = 50;

/// The owned vouchers whose rule applied in the trial evaluation.
fn offered(
    owned: &[rewards::Voucher],
    trial: &rewards::EvaluateCartResponse,
) -> Vec<pb::AvailableVoucher> {
    owned
        .iter()
        .filter_map(|v| {
            let applied = trial
                .applied_rules
                .iter()
                .find(|a| a.voucher_code.eq_ignore_ascii_case(&v.code))?;
            Some(pb::AvailableVoucher {
                code: v.code.clone(),
                voucher_id: v.id.clone(),
                reward_id: v.reward_id.clone(),
                reward_display_name: v.reward_display_name.clone(),
                valid_until_time: v.valid_until_time,
                discount_minor: applied.discount_minor,
                points: applied.points,
            })
        })
        .collect()
}

fn purchase_to_proto(p: &StoredPurchase, returns: Vec<pb::ReturnReceipt>) -> pb::Purchase {
    let units: i64 = p.receipt.pricing.lines.iter().map(|l| l.quantity).sum();
    let returned: i64 = returns
        .iter()
        .flat_map(|r| &r.lines)
        .map(|l| l.quantity)
        .sum();
    let state = match p.status {
        PurchaseStatus::Voided => pb::PurchaseState::Voided,
        _ if returned == 0 => pb::PurchaseState::Completed,
        _ if returned >= units => pb::PurchaseState::Returned,
        _ => pb::PurchaseState::PartiallyReturned,
    };
    pb::Purchase {
        receipt: Some(receipt_to_proto(&p.receipt)),
        state: state as i32,
        payments: p
            .receipt
            .payments
            .iter()
            .map(|p| pb::Payment {
                method: p.method.clone(),
                amount_minor: p.amount_minor,
            })
            .collect(),
        returns,
        void_time: p.voided_at.map(to_timestamp),
        void_reason: p.void_reason.clone(),
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
        validate_business_unit(&mut v, &req.business_unit_id);
        validate_codes(&mut v, &req.voucher_codes);
        validate_points(&mut v, req.points_to_spend);
        validate_credit(&mut v, req.credit_to_spend_minor, &req.credit_type_id);
        v.into_result()?;
        let (Some(identifier), Some(proto_cart), Some(cart)) = (&req.identifier, &req.cart, cart)
        else {
            return Err(ApiError::invalid("cart", "is required").into());
        };
        let channel = channel_from_proto(req.channel);
        let spend = Spend {
            points: req.points_to_spend,
            credit_minor: req.credit_to_spend_minor,
            credit_type: &req.credit_type_id,
        };
        let priced = self
            .price(
                &who,
                &PriceRequest {
                    identifier,
                    proto_cart,
                    cart: &cart,
                    business_unit_id: &req.business_unit_id,
                    channel,
                    voucher_codes: &req.voucher_codes,
                    spend,
                    at: None,
                    transaction_id: None,
                },
                Mode::Evaluate,
            )
            .await?;
        let now = Utc::now();
        let body = QuoteBody {
            partner_id,
            customer_id: priced.customer_id,
            request_hash: priced_request_hash(
                &cart,
                &req.business_unit_id,
                channel,
                &req.voucher_codes,
                spend,
            ),
            issued_at: now,
            expires_at: now
                + chrono::Duration::seconds(self.settings.quote_ttl_secs.min(86_400) as i64),
            pricing: priced.pricing,
        };
        let quote_id = quote::seal(&body, &self.quote_secret);
        let p = &body.pricing;
        let purse = priced.purse.as_ref();
        Ok(Response::new(pb::EvaluateResponse {
            customer_id: priced.customer_id.to_string(),
            lines: p.lines.iter().map(line_to_proto).collect(),
            totals: Some(totals_to_proto(&p.totals)),
            applied_benefits: p.applied.iter().map(applied_to_proto).collect(),
            points_to_earn: p.points_to_earn,
            points_balance: priced.wallet.available_points,
            segment_ids: priced.segment_ids,
            rejected_vouchers: p.rejected_vouchers.iter().map(rejected_to_proto).collect(),
            points_spendable: p.points_spendable,
            accepted_vouchers: p
                .vouchers
                .iter()
                .map(|v| pb::RedeemedVoucher {
                    code: v.code.clone(),
                    reward_id: v.reward_id.to_string(),
                    reward_display_name: v.reward_name.clone(),
                    discount_minor: v.discount_minor,
                    ..Default::default()
                })
                .collect(),
            points_to_spend: p.points_payment.map(|x| x.points).unwrap_or(0),
            points_discount_minor: p.points_payment.map(|x| x.value_minor).unwrap_or(0),
            quote: Some(pb::Quote {
                id: quote_id,
                expire_time: Some(to_timestamp(body.expires_at)),
            }),
            degraded: !priced.degraded.is_empty(),
            degraded_reasons: priced.degraded,
            tier_id: priced.tier_id,
            blocked_from_spending: priced.wallet.blocked_from_spending,
            available_vouchers: priced.available,
            credit_type_id: purse
                .map(|w| w.points_type_id.to_string())
                .unwrap_or_default(),
            credit_balance_minor: purse.map(|w| w.available).unwrap_or(0),
            credit_spendable_minor: p.credit_spendable_minor,
            credit_to_spend_minor: p.credit_payment.map(|c| c.amount_minor).unwrap_or(0),
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
        tracing::Span::current().record("transaction_id", req.transaction_id.as_str());
        let receipt = self.commit_purchase(&who, partner_id, req).await?;
        Ok(Response::new(pb::CommitResponse {
            receipt: Some(receipt_to_proto(&receipt)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn commit_batch(
        &self,
        request: Request<tonic::Streaming<pb::CommitBatchRequest>>,
    ) -> Result<Response<pb::CommitBatchResponse>, Status> {
        let who = principal(&request)?;
        let partner_id = who.partner_with_role(&[Role::Pos, Role::Service])?;
        let mut stream = request.into_inner();
        let mut out = pb::CommitBatchResponse::default();
        // In the order sent: a later offline purchase may spend what an earlier one earned.
        while let Some(message) = stream.message().await? {
            if out.results.len() >= MAX_BATCH {
                return Err(ApiError::invalid(
                    "commit",
                    format!("at most {MAX_BATCH} transactions per stream"),
                )
                .into());
            }
            let commit = message.commit.unwrap_or_default();
            let transaction_id = commit.transaction_id.clone();
            let result = if commit.purchase_time.is_none() {
                Err(ApiError::invalid(
                    "commit.purchase_time",
                    "is required: when the purchase happened",
                ))
            } else if !commit.quote_id.is_empty() {
                Err(ApiError::invalid(
                    "commit.quote_id",
                    "must be empty: offline purchases are priced at their time",
                ))
            } else {
                self.commit_purchase(&who, partner_id, commit).await
            };
            out.results.push(match result {
                Ok(receipt) => {
                    out.committed_count += 1;
                    pb::CommitBatchResult {
                        transaction_id,
                        receipt: Some(receipt_to_proto(&receipt)),
                        error: None,
                    }
                }
                Err(e) => {
                    out.failed_count += 1;
                    let status = Status::from(e);
                    pb::CommitBatchResult {
                        transaction_id,
                        receipt: None,
                        error: Some(pb::CommitError {
                            code: status.code() as i32,
                            reason: tonic_types::StatusExt::get_error_details(&status)
                                .error_info()
                                .map(|i| i.reason.clone())
                                .unwrap_or_default(),
                            message: status.message().to_owned(),
                        }),
                    }
                }
            });
        }
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(return_id))]
    async fn r#return(
        &self,
        request: Request<pb::ReturnRequest>,
    ) -> Result<Response<pb::ReturnResponse>, Status> {
        let who = principal(&request)?;
        let partner_id = who.partner_with_role(&[Role::Pos, Role::Service])?;
        let req = request.into_inner();
        tracing::Span::current().record("return_id", req.return_id.as_str());
        let receipt = self.return_goods(&who, partner_id, req).await?;
        Ok(Response::new(pb::ReturnResponse {
            receipt: Some(receipt),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn void_purchase(
        &self,
        request: Request<pb::VoidPurchaseRequest>,
    ) -> Result<Response<pb::VoidPurchaseResponse>, Status> {
        let who = principal(&request)?;
        let partner_id = who.partner_with_role(&[Role::Pos, Role::Service])?;
        let req = request.into_inner();
        let purchase = self.void(&who, partner_id, req).await?;
        Ok(Response::new(pb::VoidPurchaseResponse {
            purchase: Some(purchase),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn create_collect_order(
        &self,
        request: Request<pb::CreateCollectOrderRequest>,
    ) -> Result<Response<pb::CreateCollectOrderResponse>, Status> {
        let who = principal(&request)?;
        let partner_id = who.partner_with_role(&[Role::Pos, Role::Service])?;
        let order = self
            .create_order(&who, partner_id, request.into_inner())
            .await?;
        Ok(Response::new(pb::CreateCollectOrderResponse {
            order: Some(order),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_collect_order(
        &self,
        request: Request<pb::GetCollectOrderRequest>,
    ) -> Result<Response<pb::GetCollectOrderResponse>, Status> {
        let who = principal(&request)?;
        let partner_id =
            who.partner_with_role(&[Role::Pos, Role::Service, Role::Support, Role::Marketing])?;
        let order = self.get_order(partner_id, request.into_inner()).await?;
        Ok(Response::new(pb::GetCollectOrderResponse {
            order: Some(order),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_collect_orders(
        &self,
        request: Request<pb::ListCollectOrdersRequest>,
    ) -> Result<Response<pb::ListCollectOrdersResponse>, Status> {
        let who = principal(&request)?;
        let partner_id =
            who.partner_with_role(&[Role::Pos, Role::Service, Role::Support, Role::Marketing])?;
        Ok(Response::new(
            self.list_orders(partner_id, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn update_collect_order_state(
        &self,
        request: Request<pb::UpdateCollectOrderStateRequest>,
    ) -> Result<Response<pb::UpdateCollectOrderStateResponse>, Status> {
        let who = principal(&request)?;
        let partner_id = who.partner_with_role(&[Role::Pos, Role::Service])?;
        let order = self.change_order(partner_id, request.into_inner()).await?;
        Ok(Response::new(pb::UpdateCollectOrderStateResponse {
            order: Some(order),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_purchase(
        &self,
        request: Request<pb::GetPurchaseRequest>,
    ) -> Result<Response<pb::GetPurchaseResponse>, Status> {
        let who = principal(&request)?;
        let partner_id =
            who.partner_with_role(&[Role::Pos, Role::Service, Role::Support, Role::Marketing])?;
        let req = request.into_inner();
        let found = match (req.purchase_id.is_empty(), req.transaction_id.is_empty()) {
            (false, true) => {
                let id = Uuid::try_parse(&req.purchase_id)
                    .map_err(|_| ApiError::invalid("purchase_id", "must be a UUID"))?;
                self.store.find_by_id(partner_id, id).await?
            }
            (true, false) => self.store.find(partner_id, &req.transaction_id).await?,
            _ => {
                return Err(ApiError::invalid(
                    "purchase_id",
                    "exactly one of purchase_id and transaction_id is required",
                )
                .into());
            }
        };
        let purchase = found
            .filter(|p| p.status != PurchaseStatus::Pending)
            .ok_or_else(|| ApiError::NotFound("purchase".into()))?;
        let returns = self.return_receipts(purchase.receipt.purchase_id).await?;
        Ok(Response::new(pb::GetPurchaseResponse {
            purchase: Some(purchase_to_proto(&purchase, returns)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_purchases(
        &self,
        request: Request<pb::ListPurchasesRequest>,
    ) -> Result<Response<pb::ListPurchasesResponse>, Status> {
        let who = principal(&request)?;
        let partner_id =
            who.partner_with_role(&[Role::Pos, Role::Service, Role::Support, Role::Marketing])?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let customer_id = Uuid::try_parse(&req.customer_id).ok();
        if customer_id.is_none() {
            v.add("customer_id", "must be a UUID");
        }
        let limit = page_size(&mut v, req.page_size);
        let after = parse_time_token(&mut v, &req.page_token);
        let mut time = |field: &str, t: &Option<prost_types::Timestamp>| {
            let parsed = t.as_ref().map(from_timestamp);
            if matches!(parsed, Some(None)) {
                v.add(field, "must be a valid timestamp");
            }
            parsed.flatten()
        };
        let filter = HistoryFilter {
            start: time("start_time", &req.start_time),
            end: time("end_time", &req.end_time),
            business_unit_id: (!req.business_unit_id.is_empty())
                .then(|| req.business_unit_id.clone()),
            channel: (req.channel != 0).then(|| channel_from_proto(req.channel)),
        };
        validate_business_unit(&mut v, &req.business_unit_id);
        v.into_result()?;
        let Some(customer_id) = customer_id else {
            return Err(ApiError::invalid("customer_id", "must be a UUID").into());
        };
        let page = self
            .store
            .history(partner_id, customer_id, &filter, after, limit)
            .await?;
        let next_page_token = next_time_token(
            page.len(),
            limit,
            page.last()
                .map(|p| (p.receipt.purchase_time, p.receipt.purchase_id)),
        );
        let mut purchases = Vec::with_capacity(page.len());
        for p in &page {
            let returns = self.return_receipts(p.receipt.purchase_id).await?;
            purchases.push(purchase_to_proto(p, returns));
        }
        Ok(Response::new(pb::ListPurchasesResponse {
            purchases,
            next_page_token,
        }))
    }
}

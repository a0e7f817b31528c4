//! The services checkout orchestrates, over gRPC on channels opened once and reused:
//! identity (identifier → customer, answered from its Redis cache that every change to the
//! identifier drops, so a blocked card is refused at once), segmentation (memberships with
//! online recalculation for this cart), rewards (the evaluation of the cart against the
//! partner's rules and the customer's membership level held in rewards' memory, vouchers) and
//! wallet (balance, reservations, postings).
use std::collections::HashMap;

use loyalty_platform::{ApiError, Principal, client::outgoing};
use loyalty_proto::{
    identity::v1::{self as identity, identity_service_client::IdentityServiceClient},
    rewards::v1::{self as rewards, rewards_service_client::RewardsServiceClient},
    segmentation::v1::{
        self as segmentation, segmentation_service_client::SegmentationServiceClient,
    },
    types::v1 as types,
    wallet::v1::{self as wallet, wallet_service_client::WalletServiceClient},
};
use tonic::transport::Channel;
use uuid::Uuid;

use crate::domain::{
    AcceptedVoucher, AppliedBenefit, Cart, Discount, PricedLine, Pricing, RejectedVoucher,
    Rejection, Totals, credit::CreditWallet, points::PointsPayable,
};

#[derive(Clone)]
pub struct Peers {
    identity: IdentityServiceClient<Channel>,
    wallet: WalletServiceClient<Channel>,
    rewards: RewardsServiceClient<Channel>,
    segmentation: SegmentationServiceClient<Channel>,
}

fn upstream(service: &'static str) -> impl Fn(tonic::Status) -> ApiError {
    move |s| ApiError::from_upstream(service, s)
}

fn bad_id(service: &str) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("{service} answered a malformed id"))
}

fn parse_id(service: &str, id: &str) -> Result<Uuid, ApiError> {
    id.parse().map_err(|_| bad_id(service))
}

/// The wallet figures checkout needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalletState {
    pub available_points: i64,
    pub blocked_from_spending: bool,
    /// The customer's CREDIT wallets (open balance), any currency.
    pub credits: Vec<CreditWallet>,
}

impl WalletState {
    /// The open balance of one CREDIT type; 0 without a wallet of it.
    pub fn credit_available(&self, points_type_id: Uuid) -> i64 {
        self.credits
            .iter()
            .find(|w| w.points_type_id == points_type_id)
            .map_or(0, |w| w.available)
    }
}

/// What the rewards evaluation answered, in checkout's terms.
pub struct Evaluated {
    pub pricing: Pricing,
    pub payable: Option<PointsPayable>,
}

/// A voucher redemption's outcome.
pub struct Redeemed {
    pub points_spent: i64,
}

/// The rewards evaluation as checkout's pricing (before any points payment).
pub fn pricing_from_evaluation(
    cart: &Cart,
    e: rewards::EvaluateCartResponse,
) -> Result<Evaluated, ApiError> {
    let mut names: HashMap<String, (String, String)> = HashMap::new();
    let mut applied = Vec::with_capacity(e.applied_rules.len());
    let mut vouchers = Vec::new();
    for a in &e.applied_rules {
        names.insert(
            a.rule_id.clone(),
            (a.rule_type.clone(), a.rule_display_name.clone()),
        );
        let rule_id = parse_id("rewards", &a.rule_id)?;
        if !a.voucher_code.is_empty() {
            vouchers.push(AcceptedVoucher {
                code: a.voucher_code.clone(),
                reward_id: rule_id,
                reward_name: a.rule_display_name.clone(),
                discount_minor: a.discount_minor,
                points: a.points,
            });
        }
        applied.push(AppliedBenefit {
            rule_type: a.rule_type.clone(),
            rule_id,
            rule_name: a.rule_display_name.clone(),
            discount_minor: a.discount_minor,
            points: a.points,
            voucher_code: (!a.voucher_code.is_empty()).then(|| a.voucher_code.clone()),
        });
    }
    let mut lines = Vec::with_capacity(cart.lines.len());
    for (i, l) in cart.lines.iter().enumerate() {
        let evaluated = e
            .lines
            .iter()
            .find(|x| x.line_index as usize == i)
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("rewards left out line {i}")))?;
        let discounts = evaluated
            .discounts
            .iter()
            .map(|d| {
                let (rule_type, rule_name) = names.get(&d.rule_id).cloned().unwrap_or_default();
                Ok(Discount {
                    rule_type,
                    rule_id: parse_id("rewards", &d.rule_id)?,
                    rule_name,
                    amount_minor: d.amount_minor,
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        lines.push(PricedLine {
            line_id: l.line_id.clone(),
            product_id: l.product_id.clone(),
            product_group_ids: l.product_group_ids.clone(),
            brand_id: l.brand_id.clone(),
            quantity: l.quantity,
            unit_price_minor: l.unit_price_minor,
            gross_minor: evaluated.gross_minor,
            discounts,
            net_minor: evaluated.total_minor,
            points: evaluated.points,
        });
    }
    let payable = match e.points_payable {
        Some(p) => Some(PointsPayable {
            rule_id: parse_id("rewards", &p.rule_id)?,
            points_per_step: p.points_per_step,
            value_per_step_minor: p.value_per_step_minor,
            max_points: p.max_points,
            max_value_minor: p.max_value_minor,
        }),
        None => None,
    };
    Ok(Evaluated {
        pricing: Pricing {
            lines,
            totals: Totals {
                currency_code: cart.currency_code.clone(),
                gross_minor: e.gross_minor,
                discount_minor: e.discount_minor,
                net_minor: e.total_minor,
                points_payment_minor: 0,
                credit_payment_minor: 0,
            },
            applied,
            points_to_earn: e.points,
            vouchers,
            rejected_vouchers: e
                .rejected_vouchers
                .into_iter()
                .map(|r| RejectedVoucher {
                    reason: Rejection::from_rewards_reason(&r.reason),
                    code: r.code,
                    detail: r.reason,
                })
                .collect(),
            points_payment: None,
            points_spendable: 0,
            credit_payment: None,
            credit_spendable_minor: 0,
        },
        payable,
    })
}

impl Peers {
    pub fn new(
        identity: Channel,
        wallet: Channel,
        rewards: Channel,
        segmentation: Channel,
    ) -> Self {
        Self {
            identity: IdentityServiceClient::new(identity),
            wallet: WalletServiceClient::new(wallet),
            rewards: RewardsServiceClient::new(rewards),
            segmentation: SegmentationServiceClient::new(segmentation),
        }
    }

    /// The customer behind an identifier.
    pub async fn resolve_customer(
        &self,
        who: &Principal,
        identifier: &types::IdentifierRef,
    ) -> Result<Uuid, ApiError> {
        let resp = self
            .identity
            .clone()
            .resolve_identifier(outgoing(
                identity::ResolveIdentifierRequest {
                    identifier: Some(identifier.clone()),
                },
                who,
            ))
            .await
            .map_err(upstream("identity"))?
            .into_inner();
        parse_id("identity", &resp.customer_id)
    }

    /// Checks that the customer exists for the caller's partner (NOT_FOUND otherwise).
    pub async fn check_customer(&self, who: &Principal, customer_id: Uuid) -> Result<(), ApiError> {
        self.identity
            .clone()
            .get_customer(outgoing(
                identity::GetCustomerRequest {
                    customer_id: customer_id.to_string(),
                },
                who,
            ))
            .await
            .map_err(upstream("identity"))?;
        Ok(())
    }

    /// The segments the customer is in, recalculated online with this cart where a segment
    /// asks for it.
    pub async fn memberships(
        &self,
        who: &Principal,
        customer_id: Uuid,
        cart: &types::Cart,
    ) -> Result<Vec<String>, ApiError> {
        let resp = self
            .segmentation
            .clone()
            .get_customer_memberships(outgoing(
                segmentation::GetCustomerMembershipsRequest {
                    customer_id: customer_id.to_string(),
                    cart: Some(cart.clone()),
                },
                who,
            ))
            .await
            .map_err(upstream("segmentation"))?
            .into_inner();
        let mut ids: Vec<String> = resp.memberships.into_iter().map(|m| m.segment_id).collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Spendable points, the spending block and the open balances, in one call.
    pub async fn wallet_state(
        &self,
        who: &Principal,
        customer_id: Uuid,
    ) -> Result<WalletState, ApiError> {
        let resp = self
            .wallet
            .clone()
            .get_balance(outgoing(
                wallet::GetBalanceRequest {
                    customer_id: customer_id.to_string(),
                    ..Default::default()
                },
                who,
            ))
            .await
            .map_err(upstream("wallet"))?
            .into_inner();
        let Some(b) = resp.balance else {
            return Ok(WalletState::default());
        };
        let credits = b
            .wallets
            .iter()
            .filter(|w| !w.currency_code.is_empty())
            .map(|w| {
                Ok(CreditWallet {
                    points_type_id: parse_id("wallet", &w.points_type_id)?,
                    points_type_code: w.points_type_code.clone(),
                    currency_code: w.currency_code.clone(),
                    available: w.available,
                    blocked_from_spending: w.blocked_from_spending,
                })
            })
            .collect::<Result<_, ApiError>>()?;
        Ok(WalletState {
            available_points: b.available_points,
            blocked_from_spending: b.blocked_from_spending,
            credits,
        })
    }

    /// The customer's active vouchers, newest first, at most `limit`.
    pub async fn active_vouchers(
        &self,
        who: &Principal,
        customer_id: Uuid,
        limit: i32,
    ) -> Result<Vec<rewards::Voucher>, ApiError> {
        Ok(self
            .rewards
            .clone()
            .list_vouchers(outgoing(
                rewards::ListVouchersRequest {
                    customer_id: customer_id.to_string(),
                    states: vec![rewards::VoucherState::Active as i32],
                    page_size: limit,
                    ..Default::default()
                },
                who,
            ))
            .await
            .map_err(upstream("rewards"))?
            .into_inner()
            .vouchers)
    }

    pub async fn evaluate_cart(
        &self,
        who: &Principal,
        request: rewards::EvaluateCartRequest,
    ) -> Result<rewards::EvaluateCartResponse, ApiError> {
        Ok(self
            .rewards
            .clone()
            .evaluate_cart(outgoing(request, who))
            .await
            .map_err(upstream("rewards"))?
            .into_inner())
    }

    /// Holds a voucher for the transaction; answers its id.
    pub async fn reserve_voucher(
        &self,
        who: &Principal,
        request: rewards::ReserveVoucherRequest,
    ) -> Result<Uuid, ApiError> {
        let voucher = self
            .rewards
            .clone()
            .reserve_voucher(outgoing(request, who))
            .await
            .map_err(upstream("rewards"))?
            .into_inner()
            .voucher
            .ok_or_else(|| bad_id("rewards"))?;
        parse_id("rewards", &voucher.id)
    }

    pub async fn release_voucher(
        &self,
        who: &Principal,
        request: rewards::ReleaseVoucherRequest,
    ) -> Result<(), ApiError> {
        self.rewards
            .clone()
            .release_voucher(outgoing(request, who))
            .await
            .map_err(upstream("rewards"))?;
        Ok(())
    }

    pub async fn redeem_voucher(
        &self,
        who: &Principal,
        request: rewards::RedeemVoucherRequest,
    ) -> Result<Redeemed, ApiError> {
        let resp = self
            .rewards
            .clone()
            .redeem_voucher(outgoing(request, who))
            .await
            .map_err(upstream("rewards"))?
            .into_inner();
        Ok(Redeemed {
            points_spent: resp.points_spent,
        })
    }

    /// Undoes a redemption; answers whether the voucher is usable again (not expired).
    pub async fn reinstate_voucher(
        &self,
        who: &Principal,
        request: rewards::ReinstateVoucherRequest,
    ) -> Result<bool, ApiError> {
        let voucher = self
            .rewards
            .clone()
            .reinstate_voucher(outgoing(request, who))
            .await
            .map_err(upstream("rewards"))?
            .into_inner()
            .voucher;
        Ok(voucher.is_some_and(|v| v.state == rewards::VoucherState::Active as i32))
    }

    /// Holds points; answers the reservation id.
    pub async fn reserve_points(
        &self,
        who: &Principal,
        request: wallet::ReservePointsRequest,
    ) -> Result<Uuid, ApiError> {
        let reservation = self
            .wallet
            .clone()
            .reserve_points(outgoing(request, who))
            .await
            .map_err(upstream("wallet"))?
            .into_inner()
            .reservation
            .ok_or_else(|| bad_id("wallet"))?;
        parse_id("wallet", &reservation.id)
    }

    /// Captures a reservation; answers the CAPTURE posting id and the balance after.
    pub async fn capture_points(
        &self,
        who: &Principal,
        request: wallet::CapturePointsRequest,
    ) -> Result<(Uuid, i64), ApiError> {
        let resp = self
            .wallet
            .clone()
            .capture_points(outgoing(request, who))
            .await
            .map_err(upstream("wallet"))?
            .into_inner();
        let capture = resp
            .postings
            .iter()
            .find(|p| p.kind == wallet::PostingKind::Capture as i32)
            .ok_or_else(|| bad_id("wallet"))?;
        Ok((
            parse_id("wallet", &capture.id)?,
            resp.wallet.map(|w| w.available).unwrap_or(0),
        ))
    }

    pub async fn release_points(
        &self,
        who: &Principal,
        request: wallet::ReleasePointsRequest,
    ) -> Result<(), ApiError> {
        self.wallet
            .clone()
            .release_points(outgoing(request, who))
            .await
            .map_err(upstream("wallet"))?;
        Ok(())
    }

    /// Reverses (part of) a posting; answers the balance after.
    pub async fn reverse_posting(
        &self,
        who: &Principal,
        request: wallet::ReversePostingRequest,
    ) -> Result<i64, ApiError> {
        let resp = self
            .wallet
            .clone()
            .reverse_posting(outgoing(request, who))
            .await
            .map_err(upstream("wallet"))?
            .into_inner();
        Ok(resp.wallet.map(|w| w.available).unwrap_or(0))
    }

    /// Credits points; answers the AWARD posting id and the balance after.
    pub async fn award(
        &self,
        who: &Principal,
        request: wallet::AwardPointsRequest,
    ) -> Result<(Uuid, i64), ApiError> {
        let resp = self
            .wallet
            .clone()
            .award_points(outgoing(request, who))
            .await
            .map_err(upstream("wallet"))?
            .into_inner();
        let posting = resp.posting.ok_or_else(|| bad_id("wallet"))?;
        Ok((
            parse_id("wallet", &posting.id)?,
            resp.balance.map(|b| b.available_points).unwrap_or(0),
        ))
    }
}

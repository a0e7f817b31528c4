//! What the checkout tests share: a shop with a customer, rules, a voucher, and the calls a
//! POS makes.
#![allow(dead_code)]

use std::collections::BTreeMap;

use loyalty_proto::{
    checkout::v1 as checkout, identity::v1 as identity, rewards::v1 as rewards,
    segmentation::v1 as segmentation, types::v1 as types, wallet::v1 as wallet,
};
use loyalty_testkit::{Suite, authed, segment_where_equals};
use tonic::transport::Channel;

pub type Checkout = checkout::checkout_service_client::CheckoutServiceClient<Channel>;

pub const CARD: &str = "3000 0000 0001";

pub fn card() -> types::IdentifierRef {
    types::IdentifierRef {
        r#type: types::IdentifierType::Card as i32,
        value: CARD.to_owned(),
    }
}

pub fn line(id: &str, product: &str, quantity: i64, price: i64) -> types::CartLine {
    types::CartLine {
        line_id: id.into(),
        product_id: product.into(),
        quantity,
        unit_price_minor: price,
        ..Default::default()
    }
}

/// 2 × 12.50 + 1 × 5.50 = 30.50 EUR.
pub fn cart() -> types::Cart {
    types::Cart {
        currency_code: "EUR".into(),
        lines: vec![line("1", "SKU-1", 2, 1250), line("2", "SKU-2", 1, 550)],
    }
}

pub fn eur(amount_minor: i64) -> Option<types::Money> {
    Some(types::Money {
        currency_code: "EUR".into(),
        amount_minor,
    })
}

pub struct Shop {
    pub key: String,
    pub customer_id: String,
}

/// A partner with a customer holding card `CARD` and `points` points, a base earn of 1 point
/// per euro, a 10 % campaign reward (behind a voucher) and points payment (100 points =
/// 1.00 EUR, up to half the cart).
pub async fn shop(suite: &Suite, points: i64) -> anyhow::Result<Shop> {
    let (_, key) = suite
        .partner_with_key(
            "Shop",
            &[
                identity::Role::Admin,
                identity::Role::Pos,
                identity::Role::Marketing,
            ],
        )
        .await?;
    let customer_id = suite
        .identity()
        .await?
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: "register-eva".into(),
                customer: Some(identity::Customer {
                    first_name: "Eva".into(),
                    properties: BTreeMap::from([("tier".to_owned(), "gold".to_owned())]),
                    ..Default::default()
                }),
                identifiers: vec![card()],
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .customer
        .expect("customer")
        .id;
    if points > 0 {
        suite
            .wallet()
            .await?
            .award_points(authed(
                wallet::AwardPointsRequest {
                    idempotency_key: "welcome".into(),
                    customer_id: customer_id.clone(),
                    points,
                    reason: "welcome bonus".into(),
                    ..Default::default()
                },
                &key,
            ))
            .await?;
    }
    let mut r = suite.rewards().await?;
    r.create_purchase_bonus(authed(
        rewards::CreatePurchaseBonusRequest {
            idempotency_key: "base-earn".into(),
            purchase_bonus: Some(rewards::PurchaseBonus {
                display_name: "1 point per euro".into(),
                points: 1,
                spend_amount_minor: 100,
                currency_code: "EUR".into(),
                ..Default::default()
            }),
        },
        &key,
    ))
    .await?;
    r.create_reward(authed(
        rewards::CreateRewardRequest {
            idempotency_key: "pay-with-points".into(),
            reward: Some(rewards::Reward {
                display_name: "Pay with points".into(),
                r#type: rewards::RewardType::CashDesk as i32,
                benefit: Some(rewards::reward::Benefit::PointsPayment(
                    rewards::PointsPayment {
                        points_per_step: 100,
                        value_per_step: eur(100),
                        max_points: 0,
                        max_cart_basis_points: 5000,
                    },
                )),
                combinable: true,
                ..Default::default()
            }),
        },
        &key,
    ))
    .await?;
    Ok(Shop { key, customer_id })
}

/// A 10 % campaign reward and a voucher of it for the shop's customer; answers the code.
pub async fn voucher(suite: &Suite, shop: &Shop) -> anyhow::Result<String> {
    let mut r = suite.rewards().await?;
    let reward_id = r
        .create_reward(authed(
            rewards::CreateRewardRequest {
                idempotency_key: "ten-off".into(),
                reward: Some(rewards::Reward {
                    display_name: "Ten off".into(),
                    r#type: rewards::RewardType::Campaign as i32,
                    benefit: Some(rewards::reward::Benefit::CartPercentageDiscount(
                        rewards::CartPercentageDiscount { basis_points: 1000 },
                    )),
                    voucher_validity_days: 30,
                    voucher_code_prefix: "TEN".into(),
                    // Combines with the base earn and the points payment.
                    combinable: true,
                    ..Default::default()
                }),
            },
            &shop.key,
        ))
        .await?
        .into_inner()
        .reward
        .expect("reward")
        .id;
    Ok(r.issue_voucher(authed(
        rewards::IssueVoucherRequest {
            idempotency_key: "voucher-1".into(),
            reward_id,
            customer_id: shop.customer_id.clone(),
            source: rewards::VoucherSource::Campaign as i32,
            ..Default::default()
        },
        &shop.key,
    ))
    .await?
    .into_inner()
    .voucher
    .expect("voucher")
    .code)
}

pub async fn balance(suite: &Suite, shop: &Shop) -> anyhow::Result<i64> {
    Ok(suite
        .wallet()
        .await?
        .get_balance(authed(
            wallet::GetBalanceRequest {
                customer_id: shop.customer_id.clone(),
                ..Default::default()
            },
            &shop.key,
        ))
        .await?
        .into_inner()
        .balance
        .expect("balance")
        .available_points)
}

pub async fn trial_balance_holds(suite: &Suite, shop: &Shop) -> anyhow::Result<()> {
    let t = suite
        .wallet()
        .await?
        .trial_balance(authed(wallet::TrialBalanceRequest::default(), &shop.key))
        .await?
        .into_inner();
    anyhow::ensure!(t.balanced, "ledger out of balance: {:?}", t.discrepancies);
    Ok(())
}

pub async fn voucher_state(suite: &Suite, shop: &Shop, code: &str) -> anyhow::Result<i32> {
    Ok(suite
        .rewards()
        .await?
        .get_voucher(authed(
            rewards::GetVoucherRequest {
                code: code.into(),
                ..Default::default()
            },
            &shop.key,
        ))
        .await?
        .into_inner()
        .voucher
        .expect("voucher")
        .state)
}

pub fn evaluate_request(codes: &[&str], points: i64) -> checkout::EvaluateRequest {
    checkout::EvaluateRequest {
        identifier: Some(card()),
        cart: Some(cart()),
        channel: types::SalesChannel::Pos as i32,
        voucher_codes: codes.iter().map(|c| (*c).to_owned()).collect(),
        points_to_spend: points,
        ..Default::default()
    }
}

pub fn commit_request(
    transaction_id: &str,
    codes: &[&str],
    points: i64,
    quote_id: &str,
    paid: i64,
) -> checkout::CommitRequest {
    checkout::CommitRequest {
        transaction_id: transaction_id.into(),
        identifier: Some(card()),
        cart: Some(cart()),
        channel: types::SalesChannel::Pos as i32,
        voucher_codes: codes.iter().map(|c| (*c).to_owned()).collect(),
        points_to_spend: points,
        quote_id: quote_id.into(),
        payments: vec![checkout::Payment {
            method: "card".into(),
            amount_minor: paid,
        }],
        ..Default::default()
    }
}

pub async fn commit(
    pos: &mut Checkout,
    key: &str,
    req: checkout::CommitRequest,
) -> Result<checkout::Receipt, tonic::Status> {
    Ok(pos
        .commit(authed(req, key))
        .await?
        .into_inner()
        .receipt
        .expect("receipt"))
}

/// Codes a POS retries on: the call may or may not have happened.
pub fn retryable(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    )
}

/// Commits as a POS following docs/checkout.md does: the same request again on an answer
/// that may not be final, backing off from 50 ms doubling to 1 s, for up to 120 s; answers
/// the first definitive answer.
pub async fn commit_retrying(
    pos: &mut Checkout,
    key: &str,
    req: checkout::CommitRequest,
) -> Result<checkout::Receipt, tonic::Status> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut backoff = std::time::Duration::from_millis(50);
    loop {
        match commit(pos, key, req.clone()).await {
            Err(s) if retryable(s.code()) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
            }
            answer => return answer,
        }
    }
}

/// A "Gold" segment (the customer's `tier` property is `gold`, as the shop's customer's is),
/// recalculated online when `online`, and a combinable 5 % cart discount for it.
pub async fn gold_discount(suite: &Suite, shop: &Shop, online: bool) -> anyhow::Result<()> {
    let gold = segment_where_equals("Gold", "customer.properties.tier", "gold");
    if !online {
        // A standard segment is filled once, at creation: wait until segmentation has applied
        // the customer's CustomerCreated, or the customer would never be in it.
        let criterion = gold.criterion.clone();
        loyalty_testkit::eventually(std::time::Duration::from_secs(20), || async {
            let known = suite
                .segmentation()
                .await?
                .evaluate_criterion(authed(
                    segmentation::EvaluateCriterionRequest {
                        customer_id: shop.customer_id.clone(),
                        criterion: criterion.clone(),
                        ..Default::default()
                    },
                    &shop.key,
                ))
                .await?
                .into_inner()
                .matches;
            Ok(known.then_some(()))
        })
        .await?;
    }
    let segment = suite
        .segmentation()
        .await?
        .create_segment(authed(
            segmentation::CreateSegmentRequest {
                idempotency_key: "gold".into(),
                segment: Some(segmentation::Segment {
                    online_recalculation: online,
                    ..gold
                }),
            },
            &shop.key,
        ))
        .await?
        .into_inner()
        .segment
        .expect("segment");
    suite
        .rewards()
        .await?
        .create_reward(authed(
            rewards::CreateRewardRequest {
                idempotency_key: "gold-5".into(),
                reward: Some(rewards::Reward {
                    display_name: "Gold 5 %".into(),
                    r#type: rewards::RewardType::CashDesk as i32,
                    benefit: Some(rewards::reward::Benefit::CartPercentageDiscount(
                        rewards::CartPercentageDiscount { basis_points: 500 },
                    )),
                    segment_ids: vec![segment.id],
                    combinable: true,
                    ..Default::default()
                }),
            },
            &shop.key,
        ))
        .await?;
    Ok(())
}

/// Returns lines of the purchase `till-1/1` under `return_id`.
pub async fn return_lines(
    pos: &mut Checkout,
    key: &str,
    return_id: &str,
    lines: &[(&str, i64)],
) -> Result<checkout::ReturnReceipt, tonic::Status> {
    Ok(pos
        .r#return(authed(
            checkout::ReturnRequest {
                return_id: return_id.into(),
                original_transaction_id: "till-1/1".into(),
                lines: lines
                    .iter()
                    .map(|(id, q)| checkout::ReturnLine {
                        line_id: (*id).into(),
                        quantity: *q,
                    })
                    .collect(),
                ..Default::default()
            },
            key,
        ))
        .await?
        .into_inner()
        .receipt
        .expect("receipt"))
}

/// The first page of the shop's customer's purchase history.
pub async fn history(
    pos: &mut Checkout,
    shop: &Shop,
) -> Result<checkout::ListPurchasesResponse, tonic::Status> {
    Ok(pos
        .list_purchases(authed(
            checkout::ListPurchasesRequest {
                customer_id: shop.customer_id.clone(),
                ..Default::default()
            },
            &shop.key,
        ))
        .await?
        .into_inner())
}

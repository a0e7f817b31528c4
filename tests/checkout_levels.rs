//! End to end on PostgreSQL, all six services as processes: a level discount at checkout
//! follows the customer's membership level, which rewards keeps in memory for EvaluateCart,
//! from one Evaluate to the next as the level is set and cleared.
use loyalty_proto::{checkout::v1 as checkout, rewards::v1 as rewards, types::v1::Money};
use loyalty_testkit::{Backend, Suite, authed};

mod checkout_support;

use checkout_support::*;

async fn evaluate(pos: &mut Checkout, key: &str) -> anyhow::Result<checkout::EvaluateResponse> {
    Ok(pos
        .evaluate(authed(evaluate_request(&[], 0), key))
        .await?
        .into_inner())
}

fn level_discount(e: &checkout::EvaluateResponse) -> i64 {
    e.applied_benefits
        .iter()
        .filter(|b| b.benefit_display_name == "Gold members −10 %")
        .map(|b| b.discount_minor)
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_level_discount_follows_the_customers_level_from_one_evaluate_to_the_next()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let shop = shop(&suite, 0).await?;
    let mut r = suite.rewards().await?;
    // Gold is reached by spending 100,000 EUR a year: only a manual level gets it here.
    let gold = r
        .create_tier(authed(
            rewards::CreateTierRequest {
                idempotency_key: "gold".into(),
                tier: Some(rewards::Tier {
                    code: "gold".into(),
                    display_name: "Gold".into(),
                    rank: 1,
                    qualification: Some(rewards::TierQualification {
                        minimum_spend: Some(Money {
                            currency_code: "EUR".into(),
                            amount_minor: 10_000_000,
                        }),
                        period_type: rewards::TierPeriodType::CalendarYear as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
            &shop.key,
        ))
        .await?
        .into_inner()
        .tier
        .expect("tier");
    r.create_reward(authed(
        rewards::CreateRewardRequest {
            idempotency_key: "gold-ten".into(),
            reward: Some(rewards::Reward {
                display_name: "Gold members −10 %".into(),
                r#type: rewards::RewardType::CashDesk as i32,
                benefit: Some(rewards::reward::Benefit::CartPercentageDiscount(
                    rewards::CartPercentageDiscount { basis_points: 1000 },
                )),
                tier_ids: vec![gold.id.clone()],
                combinable: true,
                ..Default::default()
            }),
        },
        &shop.key,
    ))
    .await?;
    let mut pos = suite.checkout().await?;

    // No level: no level discount (and the level, now remembered, is "none").
    let before = evaluate(&mut pos, &shop.key).await?;
    assert_eq!((before.tier_id.as_str(), level_discount(&before)), ("", 0));

    // Set to gold: the very next Evaluate has the discount.
    let set = |key: &str, tier: &str| rewards::SetCustomerTierRequest {
        idempotency_key: key.into(),
        customer_id: shop.customer_id.clone(),
        tier_id: tier.into(),
        reason: "VIP guest".into(),
        ..Default::default()
    };
    r.set_customer_tier(authed(set("to-gold", "gold"), &shop.key))
        .await?;
    let gold_cart = evaluate(&mut pos, &shop.key).await?;
    assert_eq!(gold_cart.tier_id, gold.id);
    assert_eq!(level_discount(&gold_cart), 305, "10 % of 30.50 EUR");
    let again = evaluate(&mut pos, &shop.key).await?;
    assert_eq!(level_discount(&again), 305);

    // Cleared: gone again at once.
    r.set_customer_tier(authed(set("cleared", ""), &shop.key))
        .await?;
    let after = evaluate(&mut pos, &shop.key).await?;
    assert_eq!((after.tier_id.as_str(), level_discount(&after)), ("", 0));

    // A commit without a quote is priced with the level too.
    r.set_customer_tier(authed(set("gold-again", "gold"), &shop.key))
        .await?;
    let receipt = commit_retrying(
        &mut pos,
        &shop.key,
        commit_request("till-9/1", &[], 0, "", 3_050 - 305),
    )
    .await?;
    assert_eq!(receipt.totals.expect("totals").discount_amount_minor, 305);
    Ok(())
}

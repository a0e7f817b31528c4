//! EvaluateCart against PostgreSQL and SQLite with rewards and purchase bonuses defined through
//! the API: product scopes mixing products, groups and brands with exclusions (and their
//! round trip through GetReward).
use loyalty_proto::{
    rewards::v1::{self as pb, rewards_service_server::RewardsService},
    types::v1::ProductScope,
};
use uuid::Uuid;

use super::tests::{Fixture, evaluate, not_applied};

fn line(code: &str, group: &str, brand: &str, quantity: i64, price: i64) -> pb::EvaluationLine {
    pb::EvaluationLine {
        product_code: code.into(),
        product_group_code: group.into(),
        brand_code: brand.into(),
        quantity,
        unit_price_minor: price,
        ..Default::default()
    }
}

fn cart(lines: Vec<pb::EvaluationLine>) -> pb::EvaluateCartRequest {
    pb::EvaluateCartRequest {
        lines,
        base_earn_points: 1,
        base_earn_per_spend_minor: 100,
        ..Default::default()
    }
}

/// A combinable cash desk reward with `benefit` (and `condition`), as created.
async fn create_reward(
    f: &Fixture,
    name: &str,
    benefit: pb::reward::Benefit,
    condition: Option<pb::CartCondition>,
) -> Result<pb::Reward, tonic::Status> {
    Ok(f.api
        .create_reward(f.req(pb::CreateRewardRequest {
            idempotency_key: Uuid::now_v7().to_string(),
            reward: Some(pb::Reward {
                display_name: name.into(),
                r#type: pb::RewardType::CashDesk as i32,
                benefit: Some(benefit),
                cart_condition: condition,
                combinable: true,
                ..Default::default()
            }),
        }))
        .await?
        .into_inner()
        .reward
        .expect("reward"))
}

async fn get_reward(f: &Fixture, id: &str) -> pb::Reward {
    f.api
        .get_reward(f.req(pb::GetRewardRequest {
            reward_id: id.into(),
        }))
        .await
        .expect("get")
        .into_inner()
        .reward
        .expect("reward")
}

fn discounts(e: &pb::EvaluateCartResponse) -> Vec<i64> {
    e.lines
        .iter()
        .map(|l| l.discounts.iter().map(|d| d.amount_minor).sum())
        .collect()
}

// --- product scopes ------------------------------------------------------------------------------

async fn mixed_scopes_with_exclusions_price_the_right_lines(f: Fixture) {
    // 10 % off the wine group, the Acme brand and the product CHEESE, never the Acme gift card.
    let scope = ProductScope {
        product_codes: vec!["CHEESE".into()],
        product_group_codes: vec!["wine".into()],
        brand_codes: vec!["acme".into()],
        excluded_product_codes: vec!["ACME-GIFT".into()],
    };
    let reward = create_reward(
        &f,
        "Ten off the deli",
        pb::reward::Benefit::ProductPercentageDiscount(pb::ProductPercentageDiscount {
            products: Some(scope.clone()),
            basis_points: 1000,
            max_quantity: 0,
        }),
        None,
    )
    .await
    .expect("mixed scope");
    // The scope reads back as sent.
    let got = get_reward(&f, &reward.id).await;
    match got.benefit {
        Some(pb::reward::Benefit::ProductPercentageDiscount(d)) => {
            assert_eq!(d.products, Some(scope))
        }
        other => panic!("{other:?}"),
    }
    // A purchase bonus on everything but tobacco: 1 point per full 1.00.
    f.api
        .create_purchase_bonus(f.req(pb::CreatePurchaseBonusRequest {
            idempotency_key: Uuid::now_v7().to_string(),
            purchase_bonus: Some(pb::PurchaseBonus {
                display_name: "A point per euro, not on tobacco".into(),
                points: 1,
                spend_amount_minor: 100,
                currency_code: "EUR".into(),
                products: Some(ProductScope {
                    excluded_product_codes: vec!["TOBACCO".into()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }))
        .await
        .expect("bonus excluding a product");

    let e = evaluate(
        &f.api,
        f.partner,
        cart(vec![
            line("RIOJA", "wine", "", 1, 1000),
            line("ACME-JAM", "deli", "acme", 1, 500),
            line("ACME-GIFT", "deli", "acme", 1, 2000),
            line("CHEESE", "deli", "", 1, 800),
            line("BREAD", "deli", "", 1, 300),
            line("TOBACCO", "tobacco", "", 1, 900),
        ]),
    )
    .await;
    assert_eq!(discounts(&e), vec![100, 50, 0, 80, 0, 0]);
    // Bonus: all but tobacco, after discounts: 9.00 + 4.50 + 20.00 + 7.20 + 3.00 = 43.70 → 43.
    let bonus_points: i64 = e
        .lines
        .iter()
        .flat_map(|l| &l.points_detail)
        .filter(|p| p.reason == "BONUS_POINTS")
        .map(|p| p.points)
        .sum();
    assert_eq!(bonus_points, 43);
    assert!(
        e.lines[5]
            .points_detail
            .iter()
            .all(|p| p.reason != "BONUS_POINTS")
    );
    // Only the excluded product in the cart: the reward reaches no line.
    let e = evaluate(
        &f.api,
        f.partner,
        cart(vec![line("ACME-GIFT", "deli", "acme", 1, 2000)]),
    )
    .await;
    assert_eq!(e.discount_minor, 0);
    assert_eq!(not_applied(&e, &reward.id), "NO_MATCHING_ITEMS");
}

#[tokio::test]
async fn mixed_scopes_with_exclusions_price_the_right_lines_on_postgres() {
    mixed_scopes_with_exclusions_price_the_right_lines(Fixture::postgres().await).await;
}

#[tokio::test]
async fn mixed_scopes_with_exclusions_price_the_right_lines_on_sqlite() {
    mixed_scopes_with_exclusions_price_the_right_lines(Fixture::sqlite().await).await;
}

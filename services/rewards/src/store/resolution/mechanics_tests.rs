//! EvaluateCart against PostgreSQL and SQLite with rewards and purchase bonuses defined through
//! the API: product scopes mixing products, groups and brands with exclusions (and their
//! round trip through GetReward); cart conditions (minimum spend, required products, update
//! and refusal by field).
use loyalty_proto::{
    rewards::v1::{self as pb, rewards_service_server::RewardsService},
    types::v1::{Money, ProductScope},
};
use uuid::Uuid;

use super::tests::{Fixture, evaluate, not_applied};

fn eur(amount_minor: i64) -> Money {
    Money {
        currency_code: "EUR".into(),
        amount_minor,
    }
}

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

// --- cart conditions -----------------------------------------------------------------------------

async fn a_cart_condition_keeps_a_reward_off_until_the_cart_meets_it(f: Fixture) {
    let condition = pb::CartCondition {
        minimum_spend: Some(eur(2000)),
        minimum_quantity: 0,
        required_products: vec![pb::RequiredProducts {
            products: Some(ProductScope {
                product_group_codes: vec!["coffee".into()],
                ..Default::default()
            }),
            minimum_quantity: 1,
        }],
        spend_products: None,
    };
    let reward = create_reward(
        &f,
        "Five off from 20.00 with coffee",
        pb::reward::Benefit::CartFixedDiscount(pb::CartFixedDiscount {
            amount: Some(eur(500)),
        }),
        Some(condition.clone()),
    )
    .await
    .expect("reward with a condition");
    assert_eq!(reward.cart_condition, Some(condition.clone()));
    assert_eq!(
        get_reward(&f, &reward.id).await.cart_condition,
        Some(condition)
    );

    let why = |e: &pb::EvaluateCartResponse| {
        e.rules_not_applied
            .iter()
            .find(|n| n.rule_id == reward.id)
            .map(|n| (n.reason.clone(), n.explanation.clone()))
            .unwrap_or_default()
    };
    let small = evaluate(
        &f.api,
        f.partner,
        cart(vec![line("ESP", "coffee", "", 1, 1200)]),
    )
    .await;
    assert_eq!(small.discount_minor, 0);
    let (reason, explanation) = why(&small);
    assert_eq!(reason, "CART_CONDITION_NOT_MET");
    assert!(
        explanation.ends_with("cart value 12.00 is below the minimum 20.00"),
        "{explanation}"
    );
    let no_coffee = evaluate(
        &f.api,
        f.partner,
        cart(vec![line("TEA", "tea", "", 5, 500)]),
    )
    .await;
    let (reason, explanation) = why(&no_coffee);
    assert_eq!(reason, "CART_CONDITION_NOT_MET");
    assert!(
        explanation.ends_with("the cart has 0 units of groups coffee, fewer than the required 1"),
        "{explanation}"
    );
    let met = evaluate(
        &f.api,
        f.partner,
        cart(vec![
            line("ESP", "coffee", "", 1, 1200),
            line("TEA", "tea", "", 2, 500),
        ]),
    )
    .await;
    assert_eq!(met.discount_minor, 500);

    // The condition is changed through the update mask, and removed by masking it unset.
    let updated = f
        .api
        .update_reward(f.req(pb::UpdateRewardRequest {
            idempotency_key: Uuid::now_v7().to_string(),
            reward: Some(pb::Reward {
                id: reward.id.clone(),
                cart_condition: Some(pb::CartCondition {
                    minimum_quantity: 4,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["cart_condition".into()],
            }),
            ..Default::default()
        }))
        .await
        .expect("update")
        .into_inner()
        .reward
        .expect("reward");
    assert_eq!(
        updated.cart_condition.as_ref().map(|c| c.minimum_quantity),
        Some(4)
    );
    let three = evaluate(
        &f.api,
        f.partner,
        cart(vec![line("TEA", "tea", "", 3, 500)]),
    )
    .await;
    assert_eq!(why(&three).0, "CART_CONDITION_NOT_MET");
    let cleared = f
        .api
        .update_reward(f.req(pb::UpdateRewardRequest {
            idempotency_key: Uuid::now_v7().to_string(),
            reward: Some(pb::Reward {
                id: reward.id.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["cart_condition".into()],
            }),
            ..Default::default()
        }))
        .await
        .expect("clear")
        .into_inner()
        .reward
        .expect("reward");
    assert_eq!(cleared.cart_condition, None);
    let three = evaluate(
        &f.api,
        f.partner,
        cart(vec![line("TEA", "tea", "", 3, 500)]),
    )
    .await;
    assert_eq!(three.discount_minor, 500);

    // Bad conditions are refused naming the field.
    let refused = create_reward(
        &f,
        "Bad condition",
        pb::reward::Benefit::CartFixedDiscount(pb::CartFixedDiscount {
            amount: Some(eur(500)),
        }),
        Some(pb::CartCondition {
            minimum_spend: Some(Money {
                currency_code: "USD".into(),
                amount_minor: 0,
            }),
            required_products: vec![pb::RequiredProducts {
                products: None,
                minimum_quantity: 1,
            }],
            ..Default::default()
        }),
    )
    .await
    .expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let fields = loyalty_testkit::violated_fields(&refused);
    for f in [
        "reward.cart_condition.minimum_spend.amount_minor",
        "reward.cart_condition.minimum_spend.currency_code",
        "reward.cart_condition.required_products[0].products",
    ] {
        assert!(fields.iter().any(|x| x == f), "{f} in {fields:?}");
    }
}

#[tokio::test]
async fn a_cart_condition_keeps_a_reward_off_until_the_cart_meets_it_on_postgres() {
    a_cart_condition_keeps_a_reward_off_until_the_cart_meets_it(Fixture::postgres().await).await;
}

#[tokio::test]
async fn a_cart_condition_keeps_a_reward_off_until_the_cart_meets_it_on_sqlite() {
    a_cart_condition_keeps_a_reward_off_until_the_cart_meets_it(Fixture::sqlite().await).await;
}

// --- per-unit discounts --------------------------------------------------------------------------

async fn per_unit_discounts_take_the_dearest_units_first(f: Fixture) {
    let wine = || {
        Some(ProductScope {
            product_group_codes: vec!["wine".into()],
            ..Default::default()
        })
    };
    // 2.00 off each bottle of wine, at most 3 bottles a purchase.
    let fixed = create_reward(
        &f,
        "2.00 off up to 3 bottles",
        pb::reward::Benefit::ProductFixedDiscount(pb::ProductFixedDiscount {
            products: wine(),
            amount_per_unit: Some(eur(200)),
            max_quantity: 3,
        }),
        None,
    )
    .await
    .expect("product_fixed_discount");
    match get_reward(&f, &fixed.id).await.benefit {
        Some(pb::reward::Benefit::ProductFixedDiscount(d)) => {
            assert_eq!(d.amount_per_unit, Some(eur(200)));
            assert_eq!(d.max_quantity, 3);
        }
        other => panic!("{other:?}"),
    }
    let wines = cart(vec![
        line("RIOJA", "wine", "", 2, 1000),
        line("BAROLO", "wine", "", 2, 3000),
        line("BREAD", "deli", "", 1, 300),
    ]);
    // Both Barolos and one Rioja: 3 × 2.00.
    let e = evaluate(&f.api, f.partner, wines.clone()).await;
    assert_eq!(discounts(&e), vec![200, 400, 0]);
    assert_eq!(e.lines[1].discounts[0].reason, "UNIT_AMOUNT_DISCOUNT");

    // A percentage limited to the first unit: 50 % off the dearest bottle only.
    let refused = create_reward(
        &f,
        "Bad cap",
        pb::reward::Benefit::ProductPercentageDiscount(pb::ProductPercentageDiscount {
            products: wine(),
            basis_points: 5000,
            max_quantity: -1,
        }),
        None,
    )
    .await
    .expect_err("negative cap");
    assert_eq!(
        loyalty_testkit::violated_fields(&refused),
        ["reward.product_percentage_discount.max_quantity"]
    );
    let half = create_reward(
        &f,
        "Half price on one bottle",
        pb::reward::Benefit::ProductPercentageDiscount(pb::ProductPercentageDiscount {
            products: wine(),
            basis_points: 5000,
            max_quantity: 1,
        }),
        None,
    )
    .await
    .expect("capped percentage");
    let e = evaluate(&f.api, f.partner, wines).await;
    let on_barolo: Vec<(String, i64)> = e.lines[1]
        .discounts
        .iter()
        .map(|d| (d.rule_id.clone(), d.amount_minor))
        .collect();
    // Rules apply in id order at equal priority: the 2.00 first, then half of one Barolo's 28.00.
    assert_eq!(
        on_barolo,
        [(fixed.id.clone(), 400), (half.id.clone(), 1400)]
    );
    assert_eq!(discounts(&e), vec![200, 1800, 0]);
}

#[tokio::test]
async fn per_unit_discounts_take_the_dearest_units_first_on_postgres() {
    per_unit_discounts_take_the_dearest_units_first(Fixture::postgres().await).await;
}

#[tokio::test]
async fn per_unit_discounts_take_the_dearest_units_first_on_sqlite() {
    per_unit_discounts_take_the_dearest_units_first(Fixture::sqlite().await).await;
}

// --- points payment ------------------------------------------------------------------------------

async fn evaluate_cart_says_how_much_may_be_paid_with_points(f: Fixture) {
    let payment = pb::PointsPayment {
        points_per_step: 100,
        value_per_step: Some(eur(100)),
        max_points: 5000,
        max_cart_basis_points: 5000,
    };
    let reward = create_reward(
        &f,
        "Pay with points",
        pb::reward::Benefit::PointsPayment(payment.clone()),
        None,
    )
    .await
    .expect("points payment");
    match get_reward(&f, &reward.id).await.benefit {
        Some(pb::reward::Benefit::PointsPayment(p)) => assert_eq!(p, payment),
        other => panic!("{other:?}"),
    }
    let mut gift = line("GIFT-CARD", "gifts", "", 1, 1250);
    gift.pay_only_with_points = true;
    let e = evaluate(
        &f.api,
        f.partner,
        cart(vec![line("RIOJA", "wine", "", 2, 1000), gift]),
    )
    .await;
    // Half of the wine (10.00) and the whole gift card (12.50 → 13 steps): 2300 points pay 22.50.
    let p = e.points_payable.expect("points payable");
    assert_eq!(p.rule_id, reward.id);
    assert_eq!(p.points_per_step, 100);
    assert_eq!(p.value_per_step_minor, 100);
    assert_eq!(p.max_points, 2300);
    assert_eq!(p.max_value_minor, 2250);
    assert_eq!(p.pay_only_with_points_points, 1300);
    assert_eq!(e.discount_minor, 0);
    assert!(e.applied_rules.iter().any(|a| a.rule_id == reward.id));

    let refused = create_reward(
        &f,
        "Bad payment",
        pb::reward::Benefit::PointsPayment(pb::PointsPayment {
            points_per_step: 0,
            value_per_step: None,
            max_points: -1,
            max_cart_basis_points: 20_000,
        }),
        None,
    )
    .await
    .expect_err("refused");
    let fields = loyalty_testkit::violated_fields(&refused);
    for want in [
        "reward.points_payment.points_per_step",
        "reward.points_payment.value_per_step",
        "reward.points_payment.max_points",
        "reward.points_payment.max_cart_basis_points",
    ] {
        assert!(fields.iter().any(|x| x == want), "{want} in {fields:?}");
    }
}

#[tokio::test]
async fn evaluate_cart_says_how_much_may_be_paid_with_points_on_postgres() {
    evaluate_cart_says_how_much_may_be_paid_with_points(Fixture::postgres().await).await;
}

#[tokio::test]
async fn evaluate_cart_says_how_much_may_be_paid_with_points_on_sqlite() {
    evaluate_cart_says_how_much_may_be_paid_with_points(Fixture::sqlite().await).await;
}

use super::Strategy as Resolve;
use super::*;
use crate::domain::{self, RewardType};
use chrono::TimeZone;
use loyalty_platform::Violations;
use proptest::prelude::*;
use proptest::strategy::Strategy;

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn line(sku: &str, qty: u32, price: i64) -> CartLine {
    CartLine {
        product_id: sku.into(),
        group: None,
        brand: None,
        quantity: qty,
        unit_price_minor: price,
        no_reward_application: false,
        pay_only_with_points: false,
    }
}

fn in_group(mut l: CartLine, g: &str) -> CartLine {
    l.group = Some(g.into());
    l
}

fn branded(mut l: CartLine, b: &str) -> CartLine {
    l.brand = Some(b.into());
    l
}

/// Wednesday 2026-11-25 12:00 UTC.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

fn ctx() -> CustomerContext {
    CustomerContext {
        customer_id: Some(id(999)),
        segment_ids: vec![],
        level_id: None,
        vouchers: vec![],
        at: now(),
        utc_offset_minutes: 0,
        business_unit: Some("store-1".into()),
        channel: Some("pos".into()),
        earn_rate: EarnRate {
            points: 1,
            per_spend_minor: 100,
        },
        usage: BTreeMap::new(),
    }
}

fn rule(n: u128, benefit: Benefit) -> Rule {
    Rule {
        id: id(n),
        kind: RuleKind::Reward,
        name: format!("rule {n}"),
        benefits: vec![benefit],
        priority: 0,
        stackable: true,
        eligibility: Eligibility::default(),
        validity: Validity::default(),
        schedule: Schedule::default(),
        business_units: vec![],
        channels: vec![],
        limits: Limits::default(),
        condition: None,
    }
}

fn set(rules: Vec<Rule>) -> RuleSet {
    RuleSet {
        rules,
        policy: Policy::default(),
    }
}

fn pct(bp: u32, target: Target) -> Benefit {
    Benefit::PercentageDiscount {
        basis_points: bp,
        target,
    }
}

fn discounts(e: &Evaluation) -> Vec<i64> {
    e.lines
        .iter()
        .map(|l| l.discounts.iter().map(|d| d.amount_minor).sum())
        .collect()
}

// --- benefits ---------------------------------------------------------------------------------

#[test]
fn a_per_unit_discount_takes_its_amount_off_each_unit_and_never_more_than_the_unit() {
    let cart = [line("A", 3, 500), line("B", 1, 80), line("C", 2, 1000)];
    let off = |off, max_units| {
        set(vec![rule(
            1,
            Benefit::UnitDiscount {
                off,
                max_units,
                target: Target::products(vec!["A".into(), "B".into(), "C".into()]),
            },
        )])
    };
    // 1.00 off every unit; B costs 0.80, so it gets 0.80 off, not more.
    let e = evaluate(&cart, &ctx(), &off(UnitOff::AmountMinor(100), None));
    assert_eq!(discounts(&e), vec![300, 80, 200]);
    assert_eq!(e.lines[0].discounts[0].reason, "UNIT_AMOUNT_DISCOUNT");
    assert!(
        e.lines[0].discounts[0]
            .explanation
            .contains("1.00 off each unit of products A, B, C"),
        "{}",
        e.lines[0].discounts[0].explanation
    );
    // At most 3 units: the dearest first — both C (10.00), then one A (5.00).
    let e = evaluate(&cart, &ctx(), &off(UnitOff::AmountMinor(100), Some(3)));
    assert_eq!(discounts(&e), vec![100, 0, 200]);
    // 50 % of the 3 dearest units: 5.00 + 5.00 off C, 2.50 off one A.
    let e = evaluate(&cart, &ctx(), &off(UnitOff::BasisPoints(5000), Some(3)));
    assert_eq!(discounts(&e), vec![250, 0, 1000]);
    // At 2.00 each, at most 4 units: C ×2 (8.00 off each), A ×2 (3.00 off each).
    let e = evaluate(&cart, &ctx(), &off(UnitOff::PriceMinor(200), Some(4)));
    assert_eq!(discounts(&e), vec![600, 0, 1600]);
    // Ties between equally dear units go to the earlier line.
    let twins = [line("A", 2, 500), line("B", 2, 500)];
    let e = evaluate(&twins, &ctx(), &off(UnitOff::AmountMinor(100), Some(3)));
    assert_eq!(discounts(&e), vec![200, 100]);
}

fn pay_with_points(max_points: Option<i64>, max_cart_basis_points: u32) -> Benefit {
    Benefit::PointsPayment {
        points_per_step: 100,
        value_per_step_minor: 100,
        max_points,
        max_cart_basis_points,
    }
}

#[test]
fn a_points_payment_offers_whole_steps_of_what_is_left_to_pay() {
    let mut gift = line("GIFT", 1, 1250);
    gift.pay_only_with_points = true;
    let mut tobacco = line("T", 1, 900);
    tobacco.no_reward_application = true;
    let cart = [line("A", 2, 1000), gift, tobacco];
    // Half of A (20.00 − 10 % = 18.00 → 9.00) and all of the gift card (12.50 → 13 steps).
    let rules = set(vec![
        rule(1, pay_with_points(None, 5000)),
        rule(2, pct(1000, Target::products(vec!["A".into()]))),
    ]);
    let e = evaluate(&cart, &ctx(), &rules);
    let p = e.points_payable.clone().expect("payable");
    assert_eq!(p.rule_id, id(1));
    assert_eq!(p.max_points, 2200);
    assert_eq!(p.max_value_minor, 1250 + 900);
    assert_eq!(p.pay_only_with_points_points, 1300);
    assert!(
        p.explanation.ends_with("up to 2200 points pay 21.50"),
        "{}",
        p.explanation
    );
    // It is no discount: the totals are the discount rule's alone.
    assert_eq!(e.discount_minor, 200);
    assert!(
        e.applied
            .iter()
            .any(|a| a.rule_id == id(1) && a.discount_minor == 0)
    );
    // Capped by max_points; the better of two payment rules is offered, the other says why.
    let rules = set(vec![
        rule(1, pay_with_points(Some(1000), 0)),
        rule(3, pay_with_points(None, 0)),
    ]);
    let e = evaluate(&cart, &ctx(), &rules);
    let p = e.points_payable.expect("payable");
    assert_eq!(p.rule_id, id(3));
    // 20.00 + 12.50 (tobacco is not payable with points).
    assert_eq!((p.max_points, p.max_value_minor), (3300, 3250));
    assert_eq!(e.not_applied[0].rule_id, id(1));
    assert_eq!(e.not_applied[0].reason, SkipReason::PointsPaymentNotChosen);
    // Less than one step payable: not applied.
    let e = evaluate(
        &[line("A", 1, 150)],
        &ctx(),
        &set(vec![rule(1, pay_with_points(None, 5000))]),
    );
    assert_eq!(e.points_payable, None);
    assert_eq!(e.not_applied[0].reason, SkipReason::ThresholdNotReached);
    // Only the tobacco: nothing payable with points reaches the rule.
    let e = evaluate(
        &cart[2..],
        &ctx(),
        &set(vec![rule(1, pay_with_points(None, 0))]),
    );
    assert_eq!(e.not_applied[0].reason, SkipReason::NoMatchingItems);
}

#[test]
fn a_cart_condition_keeps_a_rule_off_until_the_cart_meets_it_and_says_which_part_failed() {
    let mut r = rule(1, pct(1000, Target::cart()));
    r.condition = Some(CartCondition {
        minimum_spend_minor: Some(2000),
        ..CartCondition::default()
    });
    let rules = set(vec![r.clone()]);
    let e = evaluate(&[line("A", 1, 1200)], &ctx(), &rules);
    assert_eq!(e.discount_minor, 0);
    assert_eq!(e.not_applied[0].reason, SkipReason::CartConditionNotMet);
    assert_eq!(
        &*e.not_applied[0].explanation,
        "rule 1: cart value 12.00 is below the minimum 20.00"
    );
    // Gross, before discounts, counts; a no-reward line does not.
    let mut tobacco = line("T", 1, 5000);
    tobacco.no_reward_application = true;
    let e = evaluate(&[line("A", 1, 1200), tobacco.clone()], &ctx(), &rules);
    assert_eq!(e.not_applied[0].reason, SkipReason::CartConditionNotMet);
    let e = evaluate(&[line("A", 2, 1000)], &ctx(), &rules);
    assert_eq!(e.discount_minor, 200);

    // Only spend on wine counts.
    r.condition = Some(CartCondition {
        minimum_spend_minor: Some(2000),
        spend_target: Target::groups(vec!["wine".into()]),
        ..CartCondition::default()
    });
    let cart = [in_group(line("W", 1, 1500), "wine"), line("A", 1, 1000)];
    let e = evaluate(&cart, &ctx(), &set(vec![r.clone()]));
    assert_eq!(
        &*e.not_applied[0].explanation,
        "rule 1: spend on groups wine 15.00 is below the minimum 20.00"
    );

    // At least 3 units, and 2 of product B.
    r.condition = Some(CartCondition {
        minimum_quantity: 3,
        required: vec![(Target::products(vec!["B".into()]), 2)],
        ..CartCondition::default()
    });
    let rules = set(vec![r]);
    let e = evaluate(&[line("A", 2, 100)], &ctx(), &rules);
    assert_eq!(
        &*e.not_applied[0].explanation,
        "rule 1: the cart has 2 units, fewer than the minimum 3"
    );
    let e = evaluate(&[line("A", 2, 100), line("B", 1, 100)], &ctx(), &rules);
    assert_eq!(
        &*e.not_applied[0].explanation,
        "rule 1: the cart has 1 unit of products B, fewer than the required 2"
    );
    let e = evaluate(&[line("A", 2, 100), line("B", 2, 100)], &ctx(), &rules);
    assert_eq!(e.discount_minor, 40);
    assert!(e.not_applied.is_empty());
    // The prepared rule set says the same.
    let compiled = CompiledRuleSet::new(rules.clone());
    let e = evaluate_compiled(&[line("A", 2, 100)], &ctx(), &compiled);
    assert_eq!(e.not_applied[0].reason, SkipReason::CartConditionNotMet);
}

#[test]
fn a_mixed_scope_reaches_listed_products_groups_and_brands_but_never_excluded_products() {
    let cart = [
        line("A", 1, 1000),
        in_group(line("B", 1, 1000), "wine"),
        branded(line("C", 1, 1000), "acme"),
        branded(line("GIFT", 1, 1000), "acme"),
        line("D", 1, 1000),
    ];
    let target = Target {
        products: vec!["A".into()],
        groups: vec!["wine".into()],
        brands: vec!["acme".into()],
        excluded_products: vec!["GIFT".into()],
    };
    let rules = set(vec![rule(1, pct(1000, target.clone()))]);
    let e = evaluate(&cart, &ctx(), &rules);
    assert_eq!(discounts(&e), vec![100, 100, 100, 0, 0]);
    assert!(
        e.lines[0].discounts[0]
            .explanation
            .contains("10 % off products A; groups wine; brands acme except products GIFT"),
        "{}",
        e.lines[0].discounts[0].explanation
    );
    // The index finds the rule through any of its codes.
    let compiled = CompiledRuleSet::new(rules.clone());
    for l in &cart[..3] {
        let one = [l.clone()];
        assert_eq!(
            evaluate_compiled(&one, &ctx(), &compiled).discount_minor,
            100
        );
    }
    let gift_only = [cart[3].clone()];
    let e = evaluate_compiled(&gift_only, &ctx(), &compiled);
    assert_eq!(e.not_applied[0].reason, SkipReason::NoMatchingItems);
    // Nothing included: the whole cart minus the exclusions.
    let all_but_gift = Target::cart().excluding(vec!["GIFT".into()]);
    let e = evaluate(&cart, &ctx(), &set(vec![rule(1, pct(1000, all_but_gift))]));
    assert_eq!(discounts(&e), vec![100, 100, 100, 0, 100]);
    let e = evaluate(
        &cart,
        &ctx(),
        &set(vec![rule(
            1,
            Benefit::SpendXSaveY {
                spend_minor: 4000,
                save_minor: 500,
                repeat: false,
                target: Target::cart().excluding(vec!["GIFT".into()]),
            },
        )]),
    );
    // 40.00 without the gift card reaches the threshold; the gift card gets no share.
    assert_eq!(e.discount_minor, 500);
    assert_eq!(discounts(&e)[3], 0);
}

#[test]
fn a_percentage_discount_takes_its_share_of_each_targeted_line() {
    let cart = [
        in_group(line("A", 2, 1000), "shoes"),
        in_group(line("B", 1, 500), "hats"),
    ];
    let e = evaluate(
        &cart,
        &ctx(),
        &set(vec![rule(
            1,
            pct(1000, Target::groups(vec!["shoes".into()])),
        )]),
    );
    assert_eq!(discounts(&e), vec![200, 0]);
    assert_eq!(e.total_minor, 2300);
    assert_eq!(e.lines[0].discounts[0].reason, "PERCENTAGE_DISCOUNT");
    assert!(
        e.lines[0].discounts[0]
            .explanation
            .contains("10 % off groups shoes")
    );
}

#[test]
fn a_fixed_discount_is_split_over_the_targeted_lines_in_proportion() {
    let cart = [line("A", 1, 3000), line("B", 1, 1000)];
    let e = evaluate(
        &cart,
        &ctx(),
        &set(vec![rule(
            1,
            Benefit::FixedDiscount {
                amount_minor: 1000,
                target: Target::cart(),
            },
        )]),
    );
    assert_eq!(discounts(&e), vec![750, 250]);
}

#[test]
fn a_fixed_discount_larger_than_the_cart_stops_at_zero() {
    let cart = [line("A", 1, 300)];
    let e = evaluate(
        &cart,
        &ctx(),
        &set(vec![rule(
            1,
            Benefit::FixedDiscount {
                amount_minor: 1000,
                target: Target::cart(),
            },
        )]),
    );
    assert_eq!(e.total_minor, 0);
    assert_eq!(e.discount_minor, 300);
}

#[test]
fn a_fixed_price_lowers_each_unit_and_never_raises_it() {
    let cart = [
        branded(line("A", 3, 1000), "acme"),
        branded(line("B", 1, 500), "acme"),
    ];
    let e = evaluate(
        &cart,
        &ctx(),
        &set(vec![rule(
            1,
            Benefit::FixedPrice {
                unit_price_minor: 799,
                target: Target::brands(vec!["acme".into()]),
            },
        )]),
    );
    assert_eq!(discounts(&e), vec![3 * 201, 0]);
}

#[test]
fn a_free_item_makes_that_many_units_free() {
    let cart = [line("COFFEE", 3, 250), line("CAKE", 1, 400)];
    let e = evaluate(
        &cart,
        &ctx(),
        &set(vec![rule(
            1,
            Benefit::FreeItem {
                product_id: "COFFEE".into(),
                quantity: 1,
            },
        )]),
    );
    assert_eq!(discounts(&e), vec![250, 0]);
}

#[test]
fn buy_two_get_one_frees_the_cheapest_unit_of_each_set() {
    let cart = [line("A", 2, 1000), line("B", 2, 600), line("C", 1, 300)];
    let b = Benefit::BuyXGetY {
        buy: 2,
        get: 1,
        discount_basis_points: 10_000,
        target: Target::cart(),
    };
    // Units dearest first: A A B | B C — one full set; its third unit is a B.
    let e = evaluate(&cart, &ctx(), &set(vec![rule(1, b.clone())]));
    assert_eq!(discounts(&e), vec![0, 600, 0]);
    // Six units: A A B | B C C → a B and a C.
    let cart = [line("A", 2, 1000), line("B", 2, 600), line("C", 2, 300)];
    let e = evaluate(&cart, &ctx(), &set(vec![rule(1, b)]));
    assert_eq!(discounts(&e), vec![0, 600, 300]);
}

#[test]
fn buy_x_get_y_without_a_full_set_does_not_apply_and_says_so() {
    let cart = [line("A", 2, 1000)];
    let b = Benefit::BuyXGetY {
        buy: 2,
        get: 1,
        discount_basis_points: 5000,
        target: Target::cart(),
    };
    let e = evaluate(&cart, &ctx(), &set(vec![rule(1, b)]));
    assert_eq!(e.discount_minor, 0);
    assert_eq!(e.not_applied[0].reason, SkipReason::ThresholdNotReached);
}

#[test]
fn spend_x_save_y_applies_once_or_per_step_up_to_the_application_cap() {
    let cart = [line("A", 1, 2500)];
    let b = |repeat| Benefit::SpendXSaveY {
        spend_minor: 1000,
        save_minor: 100,
        repeat,
        target: Target::cart(),
    };
    assert_eq!(
        evaluate(&cart, &ctx(), &set(vec![rule(1, b(false))])).discount_minor,
        100
    );
    assert_eq!(
        evaluate(&cart, &ctx(), &set(vec![rule(1, b(true))])).discount_minor,
        200
    );
    let mut r = rule(1, b(true));
    r.limits.max_applications_per_transaction = Some(1);
    assert_eq!(evaluate(&cart, &ctx(), &set(vec![r])).discount_minor, 100);
    let e = evaluate(&[line("A", 1, 999)], &ctx(), &set(vec![rule(1, b(false))]));
    assert_eq!(e.not_applied[0].reason, SkipReason::ThresholdNotReached);
}

#[test]
fn bonus_points_are_flat_or_per_spend() {
    let cart = [line("A", 1, 1000), line("B", 1, 500)];
    let flat = Benefit::BonusPoints {
        points: 50,
        per_spend_minor: None,
        target: Target::products(vec!["B".into()]),
    };
    let e = evaluate(&cart, &ctx(), &set(vec![rule(1, flat)]));
    // base: 10 + 5; flat 50 on the cart.
    assert_eq!(e.points, 65);
    assert_eq!(e.cart_points[0].points, 50);
    let per = Benefit::BonusPoints {
        points: 2,
        per_spend_minor: Some(100),
        target: Target::products(vec!["A".into()]),
    };
    let e = evaluate(&cart, &ctx(), &set(vec![rule(1, per)]));
    assert_eq!(e.lines[0].points, 10 + 20);
    assert_eq!(e.lines[1].points, 5);
}

#[test]
fn a_points_multiplier_multiplies_the_base_earn_of_targeted_lines_after_discounts() {
    let cart = [in_group(line("A", 1, 1000), "wine"), line("B", 1, 1000)];
    let mut r = rule(
        1,
        Benefit::PointsMultiplier {
            multiplier_basis_points: 30_000,
            target: Target::groups(vec!["wine".into()]),
        },
    );
    r.kind = RuleKind::PurchaseBonus;
    let d = rule(2, pct(5000, Target::cart()));
    let e = evaluate(&cart, &ctx(), &set(vec![r, d]));
    // A: 500 left → base 5, ×3 → +10.
    assert_eq!(e.lines[0].points, 15);
    assert_eq!(e.lines[1].points, 5);
}

#[test]
fn points_caps_limit_the_bonus_per_transaction() {
    let cart = [line("A", 10, 1000)];
    let mut r = rule(
        1,
        Benefit::PointsMultiplier {
            multiplier_basis_points: 50_000,
            target: Target::cart(),
        },
    );
    r.limits.max_points_per_transaction = Some(100);
    let e = evaluate(&cart, &ctx(), &set(vec![r]));
    assert_eq!(e.points, 100 + 100);
}

// --- items and targeting -----------------------------------------------------------------------

#[test]
fn items_with_no_reward_application_are_never_discounted_nor_bonused() {
    let mut tobacco = line("T", 1, 1000);
    tobacco.no_reward_application = true;
    let cart = [tobacco, line("A", 1, 1000)];
    let e = evaluate(
        &cart,
        &ctx(),
        &set(vec![
            rule(1, pct(5000, Target::cart())),
            rule(
                2,
                Benefit::PointsMultiplier {
                    multiplier_basis_points: 20_000,
                    target: Target::cart(),
                },
            ),
        ]),
    );
    assert_eq!(discounts(&e), vec![0, 500]);
    assert_eq!(e.lines[0].points, 10, "base earn only");
    assert!(e.lines[0].no_reward_application);
}

#[test]
fn items_payable_only_with_points_are_reported_and_earn_no_points() {
    let mut gift = line("G", 1, 1000);
    gift.pay_only_with_points = true;
    let e = evaluate(&[gift, line("A", 1, 1000)], &ctx(), &set(vec![]));
    assert_eq!(e.pay_only_with_points_lines, vec![0]);
    assert!(e.lines[0].pay_only_with_points);
    assert_eq!(e.lines[0].points, 0);
    assert_eq!(e.lines[1].points, 10);
}

#[test]
fn a_rule_targeting_nothing_in_the_cart_says_so() {
    let e = evaluate(
        &[line("A", 1, 100)],
        &ctx(),
        &set(vec![rule(1, pct(1000, Target::products(vec!["Z".into()])))]),
    );
    assert_eq!(e.not_applied[0].reason, SkipReason::NoMatchingItems);
    assert!(e.not_applied[0].explanation.contains("no item"));
}

// --- eligibility -------------------------------------------------------------------------------

#[test]
fn eligibility_is_checked_and_explained() {
    let cart = [line("A", 1, 1000)];
    type Change = Box<dyn Fn(&mut Rule)>;
    let cases: Vec<(Change, SkipReason)> = vec![
        (
            Box::new(|r| r.validity.from = Some(now() + chrono::Duration::days(1))),
            SkipReason::OutsideValidity,
        ),
        (
            Box::new(|r| r.schedule.days_of_week = 1), // Mondays only
            SkipReason::OutsideSchedule,
        ),
        (
            Box::new(|r| r.schedule.hours = Some((13 * 60, 18 * 60))),
            SkipReason::OutsideSchedule,
        ),
        (
            Box::new(|r| r.business_units = vec!["store-2".into()]),
            SkipReason::BusinessUnitNotIncluded,
        ),
        (
            Box::new(|r| r.channels = vec!["web".into()]),
            SkipReason::ChannelNotIncluded,
        ),
        (
            Box::new(|r| r.eligibility.segment_ids = vec![id(50)]),
            SkipReason::SegmentNotMatched,
        ),
        (
            Box::new(|r| r.eligibility.level_ids = vec![id(60)]),
            SkipReason::LevelNotMatched,
        ),
        (
            Box::new(|r| r.eligibility.requires_voucher = true),
            SkipReason::VoucherRequired,
        ),
        (
            Box::new(|r| r.limits.max_uses_per_customer = Some(1)),
            SkipReason::CustomerLimitReached,
        ),
    ];
    for (change, reason) in cases {
        let mut r = rule(1, pct(1000, Target::cart()));
        change(&mut r);
        let mut c = ctx();
        c.usage.insert(
            id(1),
            RuleUsage {
                customer_uses: 1,
                ..RuleUsage::default()
            },
        );
        let e = evaluate(&cart, &c, &set(vec![r]));
        assert_eq!(e.discount_minor, 0, "{reason:?}");
        assert_eq!(e.not_applied[0].reason, reason);
    }
}

#[test]
fn overnight_hours_and_local_time_are_honoured() {
    let mut r = rule(1, pct(1000, Target::cart()));
    r.schedule.hours = Some((22 * 60, 2 * 60));
    let mut c = ctx();
    c.utc_offset_minutes = 11 * 60; // 12:00 UTC = 23:00 local
    let e = evaluate(&[line("A", 1, 1000)], &c, &set(vec![r]));
    assert_eq!(e.discount_minor, 100);
}

#[test]
fn segments_and_levels_admit_their_customers() {
    let mut r = rule(1, pct(1000, Target::cart()));
    r.eligibility.segment_ids = vec![id(50), id(51)];
    r.eligibility.level_ids = vec![id(60)];
    let mut c = ctx();
    c.segment_ids = vec![id(51)];
    c.level_id = Some(id(60));
    assert_eq!(
        evaluate(&[line("A", 1, 1000)], &c, &set(vec![r])).discount_minor,
        100
    );
}

// --- budgets and caps -----------------------------------------------------------------------------

#[test]
fn an_exhausted_budget_stops_the_reward_and_a_small_one_caps_it() {
    let cart = [line("A", 1, 1000)];
    let r = rule(1, pct(5000, Target::cart()));
    let mut c = ctx();
    c.usage.insert(
        id(1),
        RuleUsage {
            budget_remaining: Some(0),
            ..RuleUsage::default()
        },
    );
    let e = evaluate(&cart, &c, &set(vec![r.clone()]));
    assert_eq!(e.not_applied[0].reason, SkipReason::BudgetExhausted);
    c.usage.get_mut(&id(1)).unwrap().budget_remaining = Some(120);
    assert_eq!(evaluate(&cart, &c, &set(vec![r])).discount_minor, 120);
}

#[test]
fn a_discount_cap_per_transaction_limits_the_rule() {
    let mut r = rule(1, pct(5000, Target::cart()));
    r.limits.max_discount_per_transaction_minor = Some(300);
    let e = evaluate(&[line("A", 1, 1000)], &ctx(), &set(vec![r]));
    assert_eq!(e.discount_minor, 300);
}

#[test]
fn the_period_limit_stops_a_rule_for_everyone() {
    let mut r = rule(1, pct(5000, Target::cart()));
    r.limits.max_uses_per_period = Some(100);
    let mut c = ctx();
    c.usage.insert(
        id(1),
        RuleUsage {
            period_uses: 100,
            ..RuleUsage::default()
        },
    );
    let e = evaluate(&[line("A", 1, 1000)], &c, &set(vec![r]));
    assert_eq!(e.not_applied[0].reason, SkipReason::PeriodLimitReached);
}

// --- resolution ----------------------------------------------------------------------------------

fn exclusive(rules: &[u128]) -> Policy {
    Policy {
        strategy: Resolve::Priority,
        groups: vec![RuleGroup {
            name: "weekly".into(),
            mode: GroupMode::Exclusive,
            rule_ids: rules.iter().map(|n| id(*n)).collect(),
        }],
        max_rules_per_transaction: None,
        combine_campaign_products: false,
    }
}

#[test]
fn in_an_exclusive_group_priority_wins_under_the_priority_strategy() {
    let mut small = rule(1, pct(1000, Target::cart()));
    small.priority = 10;
    let big = rule(2, pct(3000, Target::cart()));
    let rules = RuleSet {
        rules: vec![small, big],
        policy: exclusive(&[1, 2]),
    };
    let e = evaluate(&[line("A", 1, 1000)], &ctx(), &rules);
    assert_eq!(e.discount_minor, 100);
    assert_eq!(e.not_applied[0].rule_id, id(2));
    assert_eq!(e.not_applied[0].reason, SkipReason::LostExclusiveGroup);
}

#[test]
fn in_an_exclusive_group_the_best_for_the_customer_wins_under_that_strategy() {
    let mut small = rule(1, pct(1000, Target::cart()));
    small.priority = 10;
    let big = rule(2, pct(3000, Target::cart()));
    let mut policy = exclusive(&[1, 2]);
    policy.strategy = Resolve::BestForCustomer;
    let rules = RuleSet {
        rules: vec![small, big],
        policy,
    };
    let e = evaluate(&[line("A", 1, 1000)], &ctx(), &rules);
    assert_eq!(e.discount_minor, 300);
}

#[test]
fn stackable_rules_apply_one_after_the_other_on_what_is_left() {
    let mut first = rule(1, pct(5000, Target::cart()));
    first.priority = 5;
    let second = rule(
        2,
        Benefit::FixedDiscount {
            amount_minor: 100,
            target: Target::cart(),
        },
    );
    let e = evaluate(&[line("A", 1, 1000)], &ctx(), &set(vec![second, first]));
    assert_eq!(e.discount_minor, 600);
    assert_eq!(e.applied[0].rule_id, id(1));
    assert_eq!(e.applied[1].rule_id, id(2));
}

#[test]
fn a_non_stackable_rule_applies_alone_or_not_at_all() {
    let a = rule(1, pct(1000, Target::cart()));
    let b = rule(2, pct(1000, Target::cart()));
    let mut lone = rule(3, pct(2500, Target::cart()));
    lone.stackable = false;
    let mut rules = set(vec![a.clone(), b.clone(), lone.clone()]);
    rules.policy.strategy = Resolve::BestForCustomer;
    // 10 % then 10 % of the rest = 190 < 250.
    let e = evaluate(&[line("A", 1, 1000)], &ctx(), &rules);
    assert_eq!(e.discount_minor, 250);
    assert_eq!(e.not_applied.len(), 2);
    assert!(
        e.not_applied
            .iter()
            .all(|n| n.reason == SkipReason::NotStackable)
    );
    // Under priority with equal priorities the better value wins: make the stack better.
    lone.benefits = vec![pct(1500, Target::cart())];
    let e = evaluate(
        &[line("A", 1, 1000)],
        &ctx(),
        &set(vec![a, b, lone.clone()]),
    );
    assert_eq!(e.discount_minor, 190);
    assert_eq!(e.not_applied[0].rule_id, lone.id);
}

#[test]
fn a_stackable_group_lets_its_members_combine() {
    let mut a = rule(1, pct(1000, Target::cart()));
    a.stackable = false;
    let mut b = rule(2, pct(1000, Target::cart()));
    b.stackable = false;
    let rules = RuleSet {
        rules: vec![a, b],
        policy: Policy {
            groups: vec![RuleGroup {
                name: "together".into(),
                mode: GroupMode::Stackable,
                rule_ids: vec![id(1), id(2)],
            }],
            ..Policy::default()
        },
    };
    assert_eq!(
        evaluate(&[line("A", 1, 1000)], &ctx(), &rules).discount_minor,
        190
    );
}

#[test]
fn the_transaction_rule_limit_keeps_the_first_rules_by_the_strategy() {
    let mut a = rule(1, pct(1000, Target::cart()));
    a.priority = 1;
    let b = rule(2, pct(2000, Target::cart()));
    let mut rules = set(vec![a, b]);
    rules.policy.max_rules_per_transaction = Some(1);
    let e = evaluate(&[line("A", 1, 1000)], &ctx(), &rules);
    assert_eq!(e.discount_minor, 100);
    assert_eq!(e.not_applied[0].reason, SkipReason::TransactionRuleLimit);
}

// --- campaign prices and reward discounts ---------------------------------------------------------

/// A campaign price rule (an entry of the discount catalogue).
fn campaign(n: u128, benefit: Benefit) -> Rule {
    Rule {
        kind: RuleKind::CampaignProduct,
        name: format!("campaign {n}"),
        ..rule(n, benefit)
    }
}

fn combining(rules: Vec<Rule>, combine: bool) -> RuleSet {
    let mut s = set(rules);
    s.policy.combine_campaign_products = combine;
    s
}

fn fixed_price(price: i64, sku: &str) -> Benefit {
    Benefit::FixedPrice {
        unit_price_minor: price,
        target: Target::products(vec![sku.into()]),
    }
}

/// (rule id, amount, reason) of a line's discounts or forgone discounts.
fn said(d: &[LineDiscount]) -> Vec<(Uuid, i64, &'static str)> {
    d.iter()
        .map(|d| (d.rule_id, d.amount_minor, d.reason))
        .collect()
}

fn not_applied(e: &Evaluation) -> Vec<(Uuid, SkipReason)> {
    e.not_applied
        .iter()
        .map(|n| (n.rule_id, n.reason))
        .collect()
}

#[test]
fn a_better_campaign_price_replaces_the_reward_discounts_on_its_line_only() {
    // A at 10.00 for 7.00 (3.00 off) against 10 % off the cart (1.00 a line).
    let cart = [line("A", 1, 1000), line("B", 1, 1000)];
    let rules = combining(
        vec![
            campaign(1, fixed_price(700, "A")),
            rule(2, pct(1000, Target::cart())),
        ],
        false,
    );
    let e = evaluate(&cart, &ctx(), &rules);
    assert_eq!(said(&e.lines[0].discounts), [(id(1), 300, "FIXED_PRICE")]);
    assert_eq!(
        said(&e.lines[0].forgone),
        [(id(2), 100, "BETTER_CAMPAIGN_PRICE")]
    );
    assert_eq!(
        &*e.lines[0].forgone[0].explanation,
        "rule 2: 10 % off the cart"
    );
    assert_eq!(
        said(&e.lines[1].discounts),
        [(id(2), 100, "PERCENTAGE_DISCOUNT")]
    );
    assert!(e.lines[1].forgone.is_empty());
    assert_eq!((e.discount_minor, e.total_minor), (400, 1600));
    // The campaign price applied first; the reward keeps what it gave on B.
    let applied: Vec<(Uuid, i64)> = e
        .applied
        .iter()
        .map(|a| (a.rule_id, a.discount_minor))
        .collect();
    assert_eq!(applied, [(id(1), 300), (id(2), 100)]);
    assert!(e.not_applied.is_empty());
    // On A alone the reward has nothing left: it says a campaign price applies instead.
    let e = evaluate(&cart[..1], &ctx(), &rules);
    assert_eq!(e.total_minor, 700);
    assert_eq!(not_applied(&e), [(id(2), SkipReason::BetterCampaignPrice)]);
    assert_eq!(
        &*e.not_applied[0].explanation,
        "rule 2: a campaign price worth at least as much applies to its items instead \
         (campaign prices and reward discounts do not combine)"
    );
    assert_eq!(e.not_applied[0].reason.code(), "BETTER_CAMPAIGN_PRICE");
}

#[test]
fn better_reward_discounts_replace_the_campaign_price_on_the_line() {
    // 5 % off A as campaign price against 10 % and 15 % rewards stacking (2.35 off in all).
    let cart = [line("A", 1, 1000)];
    let rules = combining(
        vec![
            campaign(1, pct(500, Target::products(vec!["A".into()]))),
            rule(2, pct(1000, Target::cart())),
            rule(3, pct(1500, Target::cart())),
        ],
        false,
    );
    let e = evaluate(&cart, &ctx(), &rules);
    assert_eq!(
        said(&e.lines[0].discounts),
        [
            (id(2), 100, "PERCENTAGE_DISCOUNT"),
            (id(3), 135, "PERCENTAGE_DISCOUNT")
        ]
    );
    assert_eq!(
        said(&e.lines[0].forgone),
        [(id(1), 50, "CAMPAIGN_PRICE_NOT_COMBINED")]
    );
    assert_eq!(e.total_minor, 765);
    assert_eq!(
        not_applied(&e),
        [(id(1), SkipReason::CampaignPriceNotCombined)]
    );
    assert_eq!(
        &*e.not_applied[0].explanation,
        "campaign 1: reward discounts worth more apply to its items instead \
         (campaign prices and reward discounts do not combine)"
    );
}

#[test]
fn on_a_tie_the_campaign_price_applies_and_the_reward_is_kept_for_other_lines() {
    let cart = [line("A", 2, 500)];
    let rules = combining(
        vec![
            campaign(7, pct(1000, Target::cart())),
            rule(3, pct(1000, Target::products(vec!["A".into()]))),
        ],
        false,
    );
    let e = evaluate(&cart, &ctx(), &rules);
    assert_eq!(
        said(&e.lines[0].discounts),
        [(id(7), 100, "PERCENTAGE_DISCOUNT")]
    );
    assert_eq!(
        said(&e.lines[0].forgone),
        [(id(3), 100, "BETTER_CAMPAIGN_PRICE")]
    );
    assert_eq!(not_applied(&e), [(id(3), SkipReason::BetterCampaignPrice)]);
    // Whatever the ids and the order of the rules.
    let mut swapped = rules.clone();
    swapped.rules.reverse();
    assert_eq!(evaluate(&cart, &ctx(), &swapped), e);
}

#[test]
fn combining_applies_the_campaign_price_first_and_rewards_on_the_rest_never_below_zero() {
    let cart = [line("A", 1, 1000), line("B", 1, 1000)];
    let rules = combining(
        vec![
            campaign(1, fixed_price(700, "A")),
            rule(2, pct(1000, Target::cart())),
        ],
        true,
    );
    let e = evaluate(&cart, &ctx(), &rules);
    // A: 10.00 → 7.00, then 10 % of 7.00; B: 10 % of 10.00.
    assert_eq!(
        said(&e.lines[0].discounts),
        [
            (id(1), 300, "FIXED_PRICE"),
            (id(2), 70, "PERCENTAGE_DISCOUNT")
        ]
    );
    assert_eq!(discounts(&e), [370, 100]);
    assert!(e.lines.iter().all(|l| l.forgone.is_empty()));
    let applied: Vec<(Uuid, i64)> = e
        .applied
        .iter()
        .map(|a| (a.rule_id, a.discount_minor))
        .collect();
    assert_eq!(applied, [(id(1), 300), (id(2), 170)]);
    // A reward worth more than what the campaign price leaves takes the line to zero, not below.
    let rules = combining(
        vec![
            campaign(1, fixed_price(200, "A")),
            rule(
                2,
                Benefit::FixedDiscount {
                    amount_minor: 500,
                    target: Target::products(vec!["A".into()]),
                },
            ),
        ],
        true,
    );
    let e = evaluate(&cart[..1], &ctx(), &rules);
    assert_eq!(
        said(&e.lines[0].discounts),
        [(id(1), 800, "FIXED_PRICE"), (id(2), 200, "FIXED_DISCOUNT")]
    );
    assert_eq!(e.total_minor, 0);
    // The same rules without combining: the reward (5.00) loses to the campaign price (8.00).
    let mut apart = rules.clone();
    apart.policy.combine_campaign_products = false;
    let e = evaluate(&cart[..1], &ctx(), &apart);
    assert_eq!(e.total_minor, 200);
    assert_eq!(not_applied(&e), [(id(2), SkipReason::BetterCampaignPrice)]);
}

#[test]
fn the_choice_is_made_per_line_with_every_unit_of_the_line_counted() {
    // 3 × A at 10.00; the campaign price takes an amount off at most two units; the reward
    // takes 25 % off the whole line (7.50).
    let cart = [line("A", 3, 1000)];
    let unit_off = |amount| {
        campaign(
            1,
            Benefit::UnitDiscount {
                off: UnitOff::AmountMinor(amount),
                max_units: Some(2),
                target: Target::products(vec!["A".into()]),
            },
        )
    };
    let reward = rule(2, pct(2500, Target::products(vec!["A".into()])));
    // 2 × 3.00 = 6.00 < 7.50: the reward applies to the line, the third unit included.
    let e = evaluate(
        &cart,
        &ctx(),
        &combining(vec![unit_off(300), reward.clone()], false),
    );
    assert_eq!(
        said(&e.lines[0].discounts),
        [(id(2), 750, "PERCENTAGE_DISCOUNT")]
    );
    assert_eq!(
        said(&e.lines[0].forgone),
        [(id(1), 600, "CAMPAIGN_PRICE_NOT_COMBINED")]
    );
    // 2 × 4.00 = 8.00 > 7.50: the campaign price applies, the third unit at full price.
    let e = evaluate(
        &cart,
        &ctx(),
        &combining(vec![unit_off(400), reward.clone()], false),
    );
    assert_eq!(
        said(&e.lines[0].discounts),
        [(id(1), 800, "UNIT_AMOUNT_DISCOUNT")]
    );
    assert_eq!(e.total_minor, 2200);
    // Combining: 8.00 off two units, then 25 % of the 22.00 left.
    let e = evaluate(&cart, &ctx(), &combining(vec![unit_off(400), reward], true));
    assert_eq!(discounts(&e), [800 + 550]);
}

#[test]
fn points_are_not_discounts_and_come_on_the_price_the_customer_pays() {
    // The reward gives 10 % off A and 50 bonus points for buying A; a purchase bonus gives
    // 1 point per 1.00; the campaign price (6.00 for A) beats the 10 %.
    let cart = [line("A", 1, 1000)];
    let mut reward = rule(2, pct(1000, Target::products(vec!["A".into()])));
    reward.benefits.push(Benefit::BonusPoints {
        points: 50,
        per_spend_minor: None,
        target: Target::products(vec!["A".into()]),
    });
    let mut bonus = rule(
        3,
        Benefit::SpendPoints {
            points: 1,
            per_spend_minor: 100,
            multiplier_basis_points: 10_000,
            target: Target::cart(),
        },
    );
    bonus.kind = RuleKind::PurchaseBonus;
    let rules = combining(
        vec![campaign(1, fixed_price(600, "A")), reward, bonus],
        false,
    );
    let e = evaluate(&cart, &ctx(), &rules);
    assert_eq!(e.total_minor, 600);
    assert_eq!(
        said(&e.lines[0].forgone),
        [(id(2), 100, "BETTER_CAMPAIGN_PRICE")]
    );
    let applied: Vec<(Uuid, i64, i64)> = e
        .applied
        .iter()
        .map(|a| (a.rule_id, a.discount_minor, a.points))
        .collect();
    // Base earn 6 and the bonus 6 on the 6.00 paid, the reward's 50 points kept.
    assert_eq!(applied, [(id(1), 400, 0), (id(2), 0, 50), (id(3), 0, 6)]);
    assert_eq!(e.points, 6 + 50 + 6);
}

#[test]
fn campaign_prices_stay_outside_stacking_groups_and_the_rule_limit() {
    let cart = [line("A", 1, 1000), line("B", 1, 1000)];
    // A non-stackable reward on B applies alone among the rewards; the campaign price on A
    // is not a reward and still applies. The limit of one rule does not count it either.
    let mut lone = rule(2, pct(2000, Target::products(vec!["B".into()])));
    lone.stackable = false;
    let other = rule(3, pct(500, Target::cart()));
    let mut rules = combining(vec![campaign(1, fixed_price(700, "A")), lone, other], false);
    let e = evaluate(&cart, &ctx(), &rules);
    assert_eq!(discounts(&e), [300, 200]);
    assert_eq!(not_applied(&e), [(id(3), SkipReason::NotStackable)]);
    rules.policy.max_rules_per_transaction = Some(1);
    rules.policy.groups = vec![RuleGroup {
        name: "g".into(),
        mode: GroupMode::Exclusive,
        rule_ids: vec![id(1), id(2)],
    }];
    let e2 = evaluate(&cart, &ctx(), &rules);
    assert_eq!(discounts(&e2), [300, 200]);
}

/// The worked example of docs/rewards.md (*Campaign prices and reward discounts*).
#[test]
fn the_campaign_price_worked_example_of_the_documentation_holds() {
    let cart = [line("ESP", 2, 250), line("TEA", 1, 300)];
    let mut espresso = campaign(1, fixed_price(199, "ESP"));
    espresso.name = "Espresso for 1.99".into();
    let mut ten = rule(2, pct(1000, Target::cart()));
    ten.name = "Ten off".into();
    let mut thirty = rule(3, pct(3000, Target::cart()));
    thirty.name = "Thirty off".into();
    let totals = |e: &Evaluation| -> Vec<i64> { e.lines.iter().map(|l| l.total_minor).collect() };

    let e = evaluate(
        &cart,
        &ctx(),
        &combining(vec![espresso.clone(), ten.clone()], false),
    );
    assert_eq!(totals(&e), [398, 270]);
    assert_eq!(said(&e.lines[0].discounts), [(id(1), 102, "FIXED_PRICE")]);
    assert_eq!(
        said(&e.lines[0].forgone),
        [(id(2), 50, "BETTER_CAMPAIGN_PRICE")]
    );
    assert_eq!(e.total_minor, 668);

    let e = evaluate(
        &cart,
        &ctx(),
        &combining(vec![espresso.clone(), thirty], false),
    );
    assert_eq!(totals(&e), [350, 210]);
    assert_eq!(
        said(&e.lines[0].forgone),
        [(id(1), 102, "CAMPAIGN_PRICE_NOT_COMBINED")]
    );
    assert_eq!(
        not_applied(&e),
        [(id(1), SkipReason::CampaignPriceNotCombined)]
    );

    let e = evaluate(&cart, &ctx(), &combining(vec![espresso, ten], true));
    assert_eq!(totals(&e), [359, 270]);
    assert_eq!(
        said(&e.lines[0].discounts),
        [
            (id(1), 102, "FIXED_PRICE"),
            (id(2), 39, "PERCENTAGE_DISCOUNT")
        ]
    );
}

// --- vouchers -----------------------------------------------------------------------------------

#[test]
fn a_presented_voucher_unlocks_its_reward_and_is_to_be_redeemed() {
    let mut r = rule(1, pct(1000, Target::cart()));
    r.eligibility.requires_voucher = true;
    let mut c = ctx();
    c.vouchers = vec![
        PresentedVoucher {
            code: "SAVE10".into(),
            reward_id: Some(id(1)),
            rejection: None,
            value_minor: None,
        },
        PresentedVoucher {
            code: "AGAIN".into(),
            reward_id: Some(id(1)),
            rejection: None,
            value_minor: None,
        },
        PresentedVoucher {
            code: "NOPE".into(),
            reward_id: None,
            rejection: None,
            value_minor: None,
        },
        PresentedVoucher {
            code: "OLD".into(),
            reward_id: Some(id(1)),
            rejection: Some("VOUCHER_EXPIRED".into()),
            value_minor: None,
        },
        PresentedVoucher {
            code: "GONE".into(),
            reward_id: Some(id(77)),
            rejection: None,
            value_minor: None,
        },
    ];
    let e = evaluate(&[line("A", 1, 1000)], &c, &set(vec![r]));
    assert_eq!(e.discount_minor, 100);
    assert_eq!(e.vouchers_to_redeem, vec!["SAVE10".to_owned()]);
    assert_eq!(e.applied[0].voucher_code.as_deref(), Some("SAVE10"));
    let rejected: Vec<(&str, &str)> = e
        .rejected_vouchers
        .iter()
        .map(|r| (r.code.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(
        rejected,
        vec![
            ("AGAIN", "VOUCHER_REWARD_ALREADY_PRESENTED"),
            ("NOPE", "VOUCHER_UNKNOWN"),
            ("OLD", "VOUCHER_EXPIRED"),
            ("GONE", "VOUCHER_REWARD_NOT_ACTIVE"),
        ]
    );
}

#[test]
fn a_voucher_whose_reward_does_not_apply_is_rejected_with_the_rules_reason() {
    let mut r = rule(1, pct(1000, Target::products(vec!["Z".into()])));
    r.eligibility.requires_voucher = true;
    let mut c = ctx();
    c.vouchers = vec![PresentedVoucher {
        code: "Z10".into(),
        reward_id: Some(id(1)),
        rejection: None,
        value_minor: None,
    }];
    let e = evaluate(&[line("A", 1, 1000)], &c, &set(vec![r]));
    assert!(e.vouchers_to_redeem.is_empty());
    assert_eq!(e.rejected_vouchers[0].reason, "NO_MATCHING_ITEMS");
}

#[test]
fn a_gift_voucher_takes_its_own_value_off_the_cart() {
    // The gift rule carries the smallest allowed value (20.00); the voucher was bought at 50.00.
    let mut r = rule(
        1,
        Benefit::FixedDiscount {
            amount_minor: 2000,
            target: Target::cart(),
        },
    );
    r.eligibility.requires_voucher = true;
    let mut c = ctx();
    c.vouchers = vec![PresentedVoucher {
        code: "GIFT50".into(),
        reward_id: Some(id(1)),
        rejection: None,
        value_minor: Some(5000),
    }];
    let e = evaluate(&[line("A", 1, 8000)], &c, &set(vec![r.clone()]));
    assert_eq!(e.applied[0].discount_minor, 5000);
    assert_eq!(e.vouchers_to_redeem, vec!["GIFT50".to_owned()]);
    // Never more than the cart: a 50.00 voucher on a 30.00 cart takes 30.00.
    let e = evaluate(&[line("A", 1, 3000)], &c, &set(vec![r.clone()]));
    assert_eq!(e.applied[0].discount_minor, 3000);
    // Without a value of its own the rule's amount applies.
    c.vouchers[0].value_minor = None;
    let e = evaluate(&[line("A", 1, 8000)], &c, &set(vec![r]));
    assert_eq!(e.applied[0].discount_minor, 2000);
}

// --- conversions and validation ---------------------------------------------------------------

#[test]
fn stored_rewards_and_purchase_bonuses_convert_into_rules() {
    let reward = domain::Reward {
        id: id(1),
        display_name: "Gold 10 %".into(),
        description: String::new(),
        reward_type: RewardType::CashDesk,
        benefit: domain::Benefit::CartPercentageDiscount { basis_points: 1000 },
        segment_ids: vec![],
        validity: Validity::default(),
        created_at: now(),
        state: domain::RewardState::Active,
        image_url: String::new(),
        tier_ids: vec![],
        priority: 0,
        combinable: true,
        stacking_group: String::new(),
        caps: domain::rewards::Caps::default(),
        budget: None,
        cart_condition: None,
        revision: 1,
        updated_at: now(),
        archived_at: None,
    };
    let bonus = domain::PurchaseBonus {
        id: id(2),
        display_name: "Double points".into(),
        points: 1,
        spend_amount_minor: 100,
        currency_code: "EUR".into(),
        multiplier_basis_points: 20_000,
        segment_ids: vec![],
        validity: Validity::default(),
        created_at: now(),
        ..domain::PurchaseBonus::default()
    };
    let rules = set(vec![from_reward(&reward), from_purchase_bonus(&bonus)]);
    for r in &rules.rules {
        let mut v = Violations::new();
        validate_rule(&mut v, "rule", r);
        assert!(v.is_empty(), "{:?}", v.into_vec());
    }
    let mut c = ctx();
    c.earn_rate.points = 0;
    let e = evaluate(&[line("A", 1, 1000)], &c, &set(rules.rules.clone()));
    assert_eq!(e.discount_minor, 100);
    // 900 left: 1 point per 1.00, doubled by the bonus's multiplier.
    assert_eq!(e.points, 18);
    let coupon = domain::Reward {
        reward_type: RewardType::Coupon,
        ..reward
    };
    assert!(from_reward(&coupon).eligibility.requires_voucher);
}

fn fields(v: Violations) -> Vec<String> {
    v.into_vec().into_iter().map(|f| f.field).collect()
}

#[test]
fn invalid_rule_definitions_name_their_fields() {
    let mut r = rule(
        1,
        pct(
            10_001,
            Target::brands(vec!["acme".into()]).excluding(vec![" ".into()]),
        ),
    );
    r.benefits.push(Benefit::BuyXGetY {
        buy: 0,
        get: 0,
        discount_basis_points: 10_000,
        target: Target::cart(),
    });
    r.validity = Validity {
        from: Some(now()),
        until: Some(now()),
    };
    r.schedule.hours = Some((600, 600));
    let mut v = Violations::new();
    validate_rule(&mut v, "reward", &r);
    let f = fields(v);
    for want in [
        "reward.benefits[0].basis_points",
        "reward.benefits[0].target.excluded_products[0]",
        "reward.benefits[1].buy",
        "reward.benefits[1].get",
        "reward.valid_until_time",
        "reward.schedule.hours",
    ] {
        assert!(f.iter().any(|x| x == want), "{want} in {f:?}");
    }
}

#[test]
fn overlapping_and_empty_groups_are_rejected() {
    let rules = vec![
        rule(1, pct(100, Target::cart())),
        rule(2, pct(100, Target::cart())),
    ];
    let policy = Policy {
        groups: vec![
            RuleGroup {
                name: "a".into(),
                mode: GroupMode::Exclusive,
                rule_ids: vec![id(1), id(2)],
            },
            RuleGroup {
                name: "b".into(),
                mode: GroupMode::Exclusive,
                rule_ids: vec![id(2), id(3)],
            },
            RuleGroup {
                name: "c".into(),
                mode: GroupMode::Stackable,
                rule_ids: vec![],
            },
        ],
        ..Policy::default()
    };
    let mut v = Violations::new();
    validate_policy(&mut v, &policy, &rules);
    assert_eq!(
        fields(v),
        vec![
            "policy.groups[1].rule_ids[0]",
            "policy.groups[1].rule_ids[1]",
            "policy.groups[2].rule_ids",
        ]
    );
}

// --- properties ---------------------------------------------------------------------------------

fn arb_target() -> impl Strategy<Value = Target> {
    let single = prop_oneof![
        Just(Target::cart()),
        prop::collection::vec("[ABC]", 1..3).prop_map(Target::products),
        prop::collection::vec("[gh]", 1..2).prop_map(Target::groups),
        prop::collection::vec("[xy]", 1..2).prop_map(Target::brands),
    ];
    // Mixed scopes and exclusions too.
    let mixed = (
        prop::collection::vec("[ABC]", 0..2),
        prop::collection::vec("[gh]", 0..2),
        prop::collection::vec("[xy]", 0..2),
        prop::collection::vec("[ABCD]", 0..2),
    )
        .prop_map(|(products, groups, brands, excluded_products)| Target {
            products,
            groups,
            brands,
            excluded_products,
        });
    prop_oneof![single, mixed]
}

fn arb_benefit() -> impl Strategy<Value = Benefit> {
    prop_oneof![
        (0u32..12_000, arb_target()).prop_map(|(b, t)| pct(b, t)),
        (-100i64..5_000, arb_target()).prop_map(|(a, t)| Benefit::FixedDiscount {
            amount_minor: a,
            target: t
        }),
        (-10i64..2_000, arb_target()).prop_map(|(p, t)| Benefit::FixedPrice {
            unit_price_minor: p,
            target: t
        }),
        (
            prop_oneof![
                (0u32..12_000).prop_map(UnitOff::BasisPoints),
                (-10i64..2_000).prop_map(UnitOff::AmountMinor),
                (-10i64..2_000).prop_map(UnitOff::PriceMinor),
            ],
            prop::option::of(0u32..5),
            arb_target()
        )
            .prop_map(|(off, max_units, target)| Benefit::UnitDiscount {
                off,
                max_units,
                target
            }),
        ("[ABC]", 0u32..4).prop_map(|(p, q)| Benefit::FreeItem {
            product_id: p,
            quantity: q
        }),
        (0u32..4, 0u32..3, 0u32..12_000, arb_target()).prop_map(|(b, g, d, t)| {
            Benefit::BuyXGetY {
                buy: b,
                get: g,
                discount_basis_points: d,
                target: t,
            }
        }),
        (0i64..5_000, 0i64..3_000, any::<bool>(), arb_target()).prop_map(|(s, v, r, t)| {
            Benefit::SpendXSaveY {
                spend_minor: s,
                save_minor: v,
                repeat: r,
                target: t,
            }
        }),
        (0i64..100, prop::option::of(0i64..500), arb_target()).prop_map(|(p, s, t)| {
            Benefit::BonusPoints {
                points: p,
                per_spend_minor: s,
                target: t,
            }
        }),
        (0i64..100, 0i64..500, 0u32..30_000, arb_target()).prop_map(|(p, s, m, t)| {
            Benefit::SpendPoints {
                points: p,
                per_spend_minor: s,
                multiplier_basis_points: m,
                target: t,
            }
        }),
        (
            0i64..300,
            0i64..500,
            prop::option::of(0i64..5_000),
            0u32..12_000
        )
            .prop_map(|(p, v, m, bp)| Benefit::PointsPayment {
                points_per_step: p,
                value_per_step_minor: v,
                max_points: m,
                max_cart_basis_points: bp,
            }),
        (0u32..50_000, arb_target()).prop_map(|(m, t)| Benefit::PointsMultiplier {
            multiplier_basis_points: m,
            target: t
        }),
    ]
}

fn arb_condition() -> impl Strategy<Value = CartCondition> {
    (
        prop::option::of(0i64..6_000),
        arb_target(),
        0u64..6,
        prop::collection::vec((arb_target(), 0u64..4), 0..2),
    )
        .prop_map(
            |(minimum_spend_minor, spend_target, minimum_quantity, required)| CartCondition {
                minimum_spend_minor,
                spend_target,
                minimum_quantity,
                required,
            },
        )
}

fn arb_rule() -> impl Strategy<Value = Rule> {
    (
        (
            0u128..40,
            prop::collection::vec(arb_benefit(), 1..3),
            -2i32..3,
            any::<bool>(),
        ),
        prop::option::of(1i64..3_000),
        prop::option::of(1u32..3),
        prop::option::weighted(0.3, arb_condition()),
        // Campaign prices among the rules too (any benefit: only the money ones count).
        prop_oneof![
            6 => Just(RuleKind::Reward),
            1 => Just(RuleKind::PurchaseBonus),
            3 => Just(RuleKind::CampaignProduct),
        ],
    )
        .prop_map(
            |((n, benefits, priority, stackable), cap, apps, condition, kind)| {
                let mut r = rule(n, pct(1, Target::cart()));
                r.kind = kind;
                r.benefits = benefits;
                r.priority = priority;
                r.stackable = stackable;
                r.limits.max_discount_per_transaction_minor = cap;
                r.limits.max_applications_per_transaction = apps;
                r.condition = condition;
                r
            },
        )
}

fn arb_line() -> impl Strategy<Value = CartLine> {
    (
        "[ABCD]",
        prop::option::of("[gh]"),
        prop::option::of("[xy]"),
        0u32..6,
        -100i64..5_000,
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(p, g, b, q, price, no_reward, points_only)| CartLine {
            product_id: p,
            group: g,
            brand: b,
            quantity: q,
            unit_price_minor: price,
            no_reward_application: no_reward,
            pay_only_with_points: points_only,
        })
}

fn arb_rule_set() -> impl Strategy<Value = RuleSet> {
    (
        prop::collection::vec(arb_rule(), 0..8),
        any::<bool>(),
        prop::collection::vec(0u128..40, 0..4),
        prop::option::of(1u32..4),
        any::<bool>(),
    )
        .prop_map(|(mut rules, best, group, max, combine)| {
            // Unique ids, as stored rules have.
            rules.sort_by_key(|r| r.id);
            rules.dedup_by_key(|r| r.id);
            RuleSet {
                rules,
                policy: Policy {
                    strategy: if best {
                        Resolve::BestForCustomer
                    } else {
                        Resolve::Priority
                    },
                    groups: vec![RuleGroup {
                        name: "g".into(),
                        mode: GroupMode::Exclusive,
                        rule_ids: group.into_iter().map(id).collect(),
                    }],
                    max_rules_per_transaction: max,
                    combine_campaign_products: combine,
                },
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn totals_are_consistent_and_never_negative(
        cart in prop::collection::vec(arb_line(), 0..8),
        rules in arb_rule_set(),
        budgets in prop::collection::vec(prop::option::of(-10i64..2_000), 40),
    ) {
        let mut c = ctx();
        for (n, b) in budgets.iter().enumerate() {
            c.usage.insert(id(n as u128), RuleUsage { budget_remaining: *b, ..RuleUsage::default() });
        }
        let e = evaluate(&cart, &c, &rules);
        prop_assert!(e.total_minor >= 0);
        prop_assert_eq!(e.lines.iter().map(|l| l.total_minor).sum::<i64>(), e.total_minor);
        prop_assert_eq!(e.gross_minor - e.discount_minor, e.total_minor);
        for (l, c) in e.lines.iter().zip(&cart) {
            let d: i64 = l.discounts.iter().map(|d| d.amount_minor).sum();
            prop_assert!(l.discounts.iter().all(|d| d.amount_minor > 0));
            prop_assert!(d <= l.gross_minor, "discount {} > price {}", d, l.gross_minor);
            prop_assert_eq!(l.gross_minor - d, l.total_minor);
            prop_assert!(l.total_minor >= 0);
            prop_assert!(l.points >= 0);
            if c.no_reward_application {
                prop_assert!(l.discounts.is_empty());
            }
        }
        let applied: i64 = e.applied.iter().map(|a| a.discount_minor).sum();
        prop_assert_eq!(applied, e.discount_minor);
        for r in &rules.rules {
            if let Some(cap) = r.limits.max_discount_per_transaction_minor {
                let got: i64 = e.applied.iter().filter(|a| a.rule_id == r.id)
                    .map(|a| a.discount_minor).sum();
                prop_assert!(got <= cap);
            }
            let a = e.applied.iter().find(|a| a.rule_id == r.id);
            if let (Some(a), Some(budget)) = (a, budgets[r.id.as_u128() as usize]) {
                let spent = if r.benefits.iter().any(|b| !b.is_points()) {
                    a.discount_minor
                } else {
                    a.points
                };
                prop_assert!(spent <= budget, "budget {} spent {}", budget, spent);
            }
        }
        // Every rule is either applied or explained.
        prop_assert_eq!(e.applied.len() + e.not_applied.len(), rules.rules.len());
        // Points pay at most what is left to pay, in whole steps.
        if let Some(p) = &e.points_payable {
            prop_assert!(p.max_value_minor > 0 && p.max_value_minor <= e.total_minor);
            prop_assert!(p.max_points > 0 && p.max_points % p.points_per_step == 0);
            prop_assert!(p.pay_only_with_points_points <= p.max_points);
        }
    }

    #[test]
    fn evaluation_is_deterministic_whatever_the_rule_order(
        cart in prop::collection::vec(arb_line(), 0..8),
        rules in arb_rule_set(),
        seed in any::<u64>(),
    ) {
        let e1 = evaluate(&cart, &ctx(), &rules);
        prop_assert_eq!(&e1, &evaluate(&cart, &ctx(), &rules));
        let mut shuffled = rules.clone();
        // A deterministic permutation from the seed.
        let n = shuffled.rules.len();
        let mut s = seed;
        for i in (1..n).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.rules.swap(i, (s >> 33) as usize % (i + 1));
        }
        prop_assert_eq!(&e1, &evaluate(&cart, &ctx(), &shuffled));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Without combining, each line gets exactly the better of what the campaign prices alone
    /// and the rewards alone give it, never a mix; combining, the campaign prices come first
    /// and the rewards only add.
    #[test]
    fn each_line_gets_the_better_of_campaign_prices_and_reward_discounts_unless_combined(
        cart in prop::collection::vec(arb_line(), 0..8),
        rules in arb_rule_set(),
        voucher_rule in prop::option::of(0u128..40),
        budgets in prop::collection::vec(prop::option::of(-10i64..2_000), 40),
    ) {
        let mut c = ctx();
        for (n, b) in budgets.iter().enumerate() {
            c.usage.insert(id(n as u128), RuleUsage { budget_remaining: *b, ..RuleUsage::default() });
        }
        if let Some(n) = voucher_rule {
            c.vouchers.push(PresentedVoucher { code: "V1".into(), reward_id: Some(id(n)), rejection: None, value_minor: None });
        }
        let is_campaign = |r: &Rule| r.kind == RuleKind::CampaignProduct;
        let only = |campaign: bool| {
            let mut s = rules.clone();
            s.rules.retain(|r| is_campaign(r) == campaign);
            discounts(&evaluate(&cart, &c, &s))
        };
        let (campaign, rewards) = (only(true), only(false));
        let e = evaluate(&cart, &c, &rules);
        let kind_of: BTreeMap<Uuid, bool> = rules.rules.iter().map(|r| (r.id, is_campaign(r))).collect();
        for (k, l) in e.lines.iter().enumerate() {
            let d: i64 = l.discounts.iter().map(|d| d.amount_minor).sum();
            let from_campaign: Vec<bool> = l.discounts.iter().map(|d| kind_of[&d.rule_id]).collect();
            if rules.policy.combine_campaign_products {
                prop_assert!(l.forgone.is_empty());
                prop_assert!(from_campaign.windows(2).all(|w| w[0] || !w[1]), "campaign prices first");
                prop_assert!(d >= campaign[k]);
            } else {
                prop_assert_eq!(d, campaign[k].max(rewards[k]));
                prop_assert!(from_campaign.iter().all(|c| *c) || from_campaign.iter().all(|c| !*c));
                prop_assert!(l.forgone.iter().all(|f| f.amount_minor > 0));
                for f in &l.forgone {
                    let expected = if kind_of[&f.rule_id] { "CAMPAIGN_PRICE_NOT_COMBINED" } else { "BETTER_CAMPAIGN_PRICE" };
                    prop_assert_eq!(f.reason, expected);
                }
            }
        }
    }
}

/// The worked example of docs/rewards.md (`## Evaluation engine`).
#[test]
fn the_worked_example_of_the_documentation_holds() {
    let coffee = branded(in_group(line("COFFEE-1KG", 2, 1200), "coffee"), "lavazza");
    let mug = in_group(line("MUG", 3, 500), "kitchen");
    let mut tobacco = line("TOBACCO", 1, 800);
    tobacco.no_reward_application = true;
    let mut toy = line("PLUSH-TOY", 1, 1000);
    toy.pay_only_with_points = true;
    let cart = [coffee, mug, tobacco, toy];

    let mut coffee_week = rule(1, pct(2000, Target::groups(vec!["coffee".into()])));
    coffee_week.name = "Coffee week".into();
    coffee_week.priority = 10;
    let mut coffee_off = rule(
        2,
        Benefit::FixedDiscount {
            amount_minor: 200,
            target: Target::groups(vec!["coffee".into()]),
        },
    );
    coffee_off.name = "Coffee 2.00 off".into();
    let mut mugs = rule(
        3,
        Benefit::BuyXGetY {
            buy: 2,
            get: 1,
            discount_basis_points: 10_000,
            target: Target::products(vec!["MUG".into()]),
        },
    );
    mugs.name = "Mugs 2+1".into();
    let mut spend = rule(
        4,
        Benefit::SpendXSaveY {
            spend_minor: 4000,
            save_minor: 300,
            repeat: false,
            target: Target::cart(),
        },
    );
    spend.name = "Spend 40 save 3".into();
    let mut double = rule(
        5,
        Benefit::PointsMultiplier {
            multiplier_basis_points: 20_000,
            target: Target::brands(vec!["lavazza".into()]),
        },
    );
    double.name = "Double points on Lavazza".into();
    double.kind = RuleKind::PurchaseBonus;
    let mut welcome = rule(
        6,
        Benefit::FixedDiscount {
            amount_minor: 500,
            target: Target::cart(),
        },
    );
    welcome.name = "Welcome 5.00".into();
    welcome.eligibility.requires_voucher = true;
    let rules = RuleSet {
        rules: vec![welcome, double, spend, mugs, coffee_off, coffee_week],
        policy: exclusive(&[1, 2]),
    };
    let mut c = ctx();
    c.vouchers = vec![
        PresentedVoucher {
            code: "WELCOME5".into(),
            reward_id: Some(id(6)),
            rejection: None,
            value_minor: None,
        },
        PresentedVoucher {
            code: "BOGUS".into(),
            reward_id: None,
            rejection: None,
            value_minor: None,
        },
    ];
    let e = evaluate(&cart, &c, &rules);
    let per_line: Vec<(i64, i64, i64)> = e
        .lines
        .iter()
        .map(|l| {
            (
                l.discounts.iter().map(|d| d.amount_minor).sum(),
                l.total_minor,
                l.points,
            )
        })
        .collect();
    assert_eq!(
        per_line,
        vec![(726, 1674, 32), (627, 873, 8), (0, 800, 8), (127, 873, 0)]
    );
    assert_eq!(
        (e.gross_minor, e.discount_minor, e.total_minor, e.points),
        (5700, 1480, 4220, 48)
    );
    let applied: Vec<u128> = e.applied.iter().map(|a| a.rule_id.as_u128()).collect();
    assert_eq!(applied, vec![1, 3, 5, 6]);
    let skipped: Vec<(u128, &str)> = e
        .not_applied
        .iter()
        .map(|n| (n.rule_id.as_u128(), n.reason.code()))
        .collect();
    assert_eq!(
        skipped,
        vec![(2, "LOST_EXCLUSIVE_GROUP"), (4, "THRESHOLD_NOT_REACHED")]
    );
    assert_eq!(e.vouchers_to_redeem, vec!["WELCOME5".to_owned()]);
    assert_eq!(e.rejected_vouchers[0].reason, "VOUCHER_UNKNOWN");
    assert_eq!(e.pay_only_with_points_lines, vec![3]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// The prepared, indexed rule set (what the service caches) answers exactly what the
    /// plain evaluation answers, explanations included.
    #[test]
    fn indexed_and_naive_evaluation_agree(
        cart in prop::collection::vec(arb_line(), 0..8),
        rules in arb_rule_set(),
        voucher_rule in prop::option::of(0u128..40),
        budgets in prop::collection::vec(prop::option::of(-10i64..2_000), 40),
    ) {
        let mut c = ctx();
        for (n, b) in budgets.iter().enumerate() {
            c.usage.insert(id(n as u128), RuleUsage { budget_remaining: *b, ..RuleUsage::default() });
        }
        if let Some(n) = voucher_rule {
            c.vouchers.push(PresentedVoucher { code: "V1".into(), reward_id: Some(id(n)), rejection: None, value_minor: None });
        }
        let naive = evaluate(&cart, &c, &rules);
        let compiled = CompiledRuleSet::new(rules.clone());
        prop_assert_eq!(&naive, &evaluate_compiled(&cart, &c, &compiled));
        // And again: nothing of one evaluation leaks into the next.
        prop_assert_eq!(&naive, &evaluate_compiled(&cart, &c, &compiled));
    }
}

#[test]
fn the_index_skips_rules_no_line_reaches_with_the_same_reason() {
    let cart = [
        branded(in_group(line("A", 1, 1000), "g"), "x"),
        in_group(line("B", 2, 500), "h"),
    ];
    let mut tobacco = line("C", 1, 800);
    tobacco.no_reward_application = true;
    let cart = [cart[0].clone(), cart[1].clone(), tobacco];
    let rules = set(vec![
        rule(1, pct(1000, Target::products(vec!["A".into()]))),
        rule(2, pct(1000, Target::products(vec!["Z".into()]))),
        rule(3, pct(1000, Target::groups(vec!["h".into()]))),
        rule(4, pct(1000, Target::brands(vec!["y".into()]))),
        rule(5, pct(1000, Target::products(vec!["C".into()]))),
        rule(6, pct(1000, Target::cart())),
    ]);
    let e = evaluate_compiled(&cart, &ctx(), &CompiledRuleSet::new(rules.clone()));
    assert_eq!(e, evaluate(&cart, &ctx(), &rules));
    let skipped: Vec<(Uuid, SkipReason)> = e
        .not_applied
        .iter()
        .map(|n| (n.rule_id, n.reason))
        .collect();
    assert_eq!(
        skipped,
        [
            (id(2), SkipReason::NoMatchingItems),
            (id(4), SkipReason::NoMatchingItems),
            (id(5), SkipReason::NoMatchingItems),
        ]
    );
    assert_eq!(
        &*e.not_applied[0].explanation,
        "rule 2: no item in the cart is targeted"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// Carts longer than one word of the line sets (64 lines): the prepared and the plain
    /// evaluation still agree, and discounts stay within each line.
    #[test]
    fn long_carts_evaluate_the_same_prepared_or_plain(
        cart in prop::collection::vec(arb_line(), 60..140),
        rules in arb_rule_set(),
    ) {
        let naive = evaluate(&cart, &ctx(), &rules);
        let compiled = CompiledRuleSet::new(rules.clone());
        prop_assert_eq!(&naive, &evaluate_compiled(&cart, &ctx(), &compiled));
        prop_assert_eq!(naive.lines.len(), cart.len());
        for l in &naive.lines {
            let d: i64 = l.discounts.iter().map(|d| d.amount_minor).sum();
            prop_assert!(d <= l.gross_minor && l.total_minor >= 0);
        }
        prop_assert!(naive.total_minor >= 0);
    }
}

/// Rule sets where pruning is on: no rule limit per transaction, groups exclusive or stackable.
fn arb_prunable_rule_set() -> impl Strategy<Value = RuleSet> {
    (
        arb_rule_set(),
        prop::collection::vec(0u128..40, 0..6),
        any::<bool>(),
    )
        .prop_map(|(mut rules, stacking, exclusive_first)| {
            rules.policy.max_rules_per_transaction = None;
            let stacked = RuleGroup {
                name: "s".into(),
                mode: GroupMode::Stackable,
                rule_ids: stacking.into_iter().map(id).collect(),
            };
            // A rule listed in both groups counts in the first.
            if exclusive_first {
                rules.policy.groups.push(stacked);
            } else {
                rules.policy.groups.insert(0, stacked);
            }
            rules
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    /// Skipping the lone trial of the rules whose value decides nothing gives exactly the
    /// answer of trying every rule alone first, reasons and explanations included.
    #[test]
    fn pruned_and_unpruned_evaluation_agree(
        cart in prop::collection::vec(arb_line(), 0..8),
        rules in prop_oneof![arb_prunable_rule_set(), arb_rule_set()],
        voucher_rule in prop::option::of(0u128..40),
        budgets in prop::collection::vec(prop::option::of(-10i64..2_000), 40),
    ) {
        let mut c = ctx();
        for (n, b) in budgets.iter().enumerate() {
            c.usage.insert(id(n as u128), RuleUsage { budget_remaining: *b, ..RuleUsage::default() });
        }
        if let Some(n) = voucher_rule {
            c.vouchers.push(PresentedVoucher { code: "V1".into(), reward_id: Some(id(n)), rejection: None, value_minor: None });
        }
        let compiled = CompiledRuleSet::new(rules.clone());
        let unpruned = super::resolution::evaluate(&cart, &c, &compiled, false);
        prop_assert_eq!(&unpruned, &super::resolution::evaluate(&cart, &c, &compiled, true));
        prop_assert_eq!(&unpruned, &evaluate(&cart, &c, &rules));
    }
}

//! Evaluation benchmark (issue #6): carts/s on one core for a partner with RULES active rules
//! (default 1,000) and LINES-line carts (default 20), plus per-cart latency percentiles.
//! The rules are prepared once (`CompiledRuleSet`, what the service caches per partner) and
//! evaluated with `evaluate_compiled`; the plain `evaluate` (no index, rules ordered per call)
//! is measured after it for comparison, and both must give the same answers.
//! Run through `scripts/bench-evaluate` (release build).
//! Usage: bench_evaluate [SECONDS] [RULES] [LINES]; `PLAIN=0` skips the plain run and the comparison
//! with it (for profiling the prepared path alone, e.g. under `perf record`).
use chrono::{TimeZone, Utc};
use loyalty_rewards::domain::Validity;
use loyalty_rewards::domain::engine::{
    Benefit, CartLine, CompiledRuleSet, CustomerContext, EarnRate, Eligibility, Evaluation,
    GroupMode, Limits, Policy, Rule, RuleGroup, RuleKind, RuleSet, Schedule, Strategy, Target,
    evaluate, evaluate_compiled,
};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};
use uuid::Uuid;

const PRODUCTS: u64 = 5_000;
const GROUPS: u64 = 50;
const BRANDS: u64 = 30;

/// A small deterministic generator (PCG-style LCG), so every run measures the same work.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

fn target(r: &mut Lcg) -> Target {
    match r.next(10) {
        0 | 1 => Target::cart(),
        2..=5 => Target::products(
            (0..1 + r.next(5))
                .map(|_| format!("SKU-{:05}", r.next(PRODUCTS)))
                .collect(),
        ),
        6..=8 => Target::groups(vec![format!("group-{}", r.next(GROUPS))]),
        _ => Target::brands(vec![format!("brand-{}", r.next(BRANDS))]),
    }
}

fn benefit(r: &mut Lcg) -> Benefit {
    let t = target(r);
    match r.next(8) {
        0 => Benefit::PercentageDiscount {
            basis_points: 500 + r.next(2_000) as u32,
            target: t,
        },
        1 => Benefit::FixedDiscount {
            amount_minor: 100 + r.next(1_000) as i64,
            target: t,
        },
        2 => Benefit::FixedPrice {
            unit_price_minor: 100 + r.next(1_000) as i64,
            target: t,
        },
        3 => Benefit::FreeItem {
            product_id: format!("SKU-{:05}", r.next(PRODUCTS)),
            quantity: 1,
        },
        4 => Benefit::BuyXGetY {
            buy: 1 + r.next(3) as u32,
            get: 1,
            discount_basis_points: 10_000,
            target: t,
        },
        5 => Benefit::SpendXSaveY {
            spend_minor: 2_000 + r.next(10_000) as i64,
            save_minor: 200 + r.next(1_000) as i64,
            repeat: r.next(2) == 0,
            target: t,
        },
        6 => Benefit::BonusPoints {
            points: 10 + r.next(100) as i64,
            per_spend_minor: (r.next(2) == 0).then_some(1_000),
            target: t,
        },
        _ => Benefit::PointsMultiplier {
            multiplier_basis_points: 15_000 + r.next(20_000) as u32,
            target: t,
        },
    }
}

fn rules(n: usize, r: &mut Lcg, segment: Uuid) -> RuleSet {
    let rules: Vec<Rule> = (0..n)
        .map(|i| {
            let b = benefit(r);
            let kind = if b.is_points() {
                RuleKind::PurchaseBonus
            } else {
                RuleKind::Reward
            };
            Rule {
                id: Uuid::from_u128(i as u128 + 1),
                kind,
                name: format!("rule {i}"),
                benefits: vec![b],
                priority: r.next(5) as i32,
                stackable: r.next(10) != 0,
                eligibility: Eligibility {
                    segment_ids: if r.next(4) == 0 {
                        vec![segment]
                    } else {
                        vec![]
                    },
                    level_ids: vec![],
                    requires_voucher: r.next(10) == 0,
                },
                validity: Validity::default(),
                schedule: Schedule {
                    days_of_week: if r.next(5) == 0 { 0b001_1111 } else { 0x7f },
                    hours: None,
                },
                business_units: vec![],
                channels: vec![],
                limits: Limits {
                    max_discount_per_transaction_minor: (r.next(3) == 0).then_some(2_000),
                    ..Limits::default()
                },
                condition: None,
            }
        })
        .collect();
    // Exclusive groups of 10 rules over the first half.
    let groups = (0..n / 20)
        .map(|g| RuleGroup {
            name: format!("group {g}"),
            mode: GroupMode::Exclusive,
            rule_ids: (0..10).map(|k| rules[g * 10 + k].id).collect(),
        })
        .collect();
    RuleSet {
        rules,
        policy: Policy {
            strategy: Strategy::BestForCustomer,
            groups,
            max_rules_per_transaction: None,
            combine_campaign_products: false,
        },
    }
}

fn cart(lines: usize, r: &mut Lcg) -> Vec<CartLine> {
    (0..lines)
        .map(|_| {
            let p = r.next(PRODUCTS);
            CartLine {
                product_id: format!("SKU-{p:05}"),
                group: Some(format!("group-{}", p % GROUPS)),
                brand: Some(format!("brand-{}", p % BRANDS)),
                quantity: 1 + r.next(3) as u32,
                unit_price_minor: 100 + r.next(5_000) as i64,
                no_reward_application: r.next(20) == 0,
                pay_only_with_points: r.next(50) == 0,
            }
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let seconds = arg(0, 10);
    let n_rules = arg(1, 1_000) as usize;
    let n_lines = arg(2, 20) as usize;
    let mut r = Lcg(42);
    let segment = Uuid::from_u128(7);
    let set = rules(n_rules, &mut r, segment);
    let carts: Vec<Vec<CartLine>> = (0..1_000).map(|_| cart(n_lines, &mut r)).collect();
    let ctx = CustomerContext {
        customer_id: Some(Uuid::from_u128(1)),
        segment_ids: vec![segment],
        level_id: None,
        vouchers: vec![],
        at: Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap(),
        utc_offset_minutes: 60,
        business_unit: Some("store-1".into()),
        channel: Some("pos".into()),
        earn_rate: EarnRate {
            points: 1,
            per_spend_minor: 100,
        },
        usage: BTreeMap::new(),
    };
    let prepare = Instant::now();
    let compiled = CompiledRuleSet::new(set.clone());
    let prepare = prepare.elapsed();
    let plain = std::env::var("PLAIN").as_deref() != Ok("0");
    // Warm-up, what a typical evaluation does, and the same answers both ways.
    let (mut applied, mut skipped) = (0usize, 0usize);
    for c in &carts {
        let e = evaluate_compiled(c, &ctx, &compiled);
        if plain {
            assert_eq!(
                e,
                evaluate(c, &ctx, &set),
                "indexed and plain evaluation differ"
            );
        }
        applied += e.applied.len();
        skipped += e.not_applied.len();
    }
    println!(
        "rules {n_rules}, lines per cart {n_lines}, one thread; rule set prepared in {:.1} ms",
        prepare.as_secs_f64() * 1e3
    );
    run("prepared (evaluate_compiled)", seconds, &carts, |c| {
        evaluate_compiled(c, &ctx, &compiled)
    });
    if plain {
        run("plain (evaluate)", seconds.div_ceil(5), &carts, |c| {
            evaluate(c, &ctx, &set)
        });
    }
    println!(
        "per cart on average: {:.1} rules applied, {:.1} rules explained as not applied",
        applied as f64 / carts.len() as f64,
        skipped as f64 / carts.len() as f64
    );
}

/// Evaluates the carts round robin for `seconds` and prints carts/s and latency percentiles.
fn run(
    name: &str,
    seconds: u64,
    carts: &[Vec<CartLine>],
    eval: impl Fn(&[CartLine]) -> Evaluation,
) {
    let mut latencies_ns: Vec<u64> = Vec::new();
    let start = Instant::now();
    let budget = Duration::from_secs(seconds);
    let mut i = 0usize;
    while start.elapsed() < budget {
        let t = Instant::now();
        black_box(eval(black_box(&carts[i % carts.len()])));
        latencies_ns.push(t.elapsed().as_nanos() as u64);
        i += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies_ns.sort_unstable();
    let q = |p: f64| latencies_ns[((latencies_ns.len() - 1) as f64 * p) as usize] as f64 / 1e3;
    println!(
        "{name}, {seconds} s: {i} carts, {:.0} carts/s; latency per cart: p50 {:.1} µs, \
         p90 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        i as f64 / elapsed,
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
}

//! Rule definitions the engine refuses, as (field path, message) violations.
use super::{Benefit, Policy, Rule, RuleKind, Target, UnitOff};
use loyalty_platform::Violations;
use std::collections::BTreeMap;
use uuid::Uuid;

fn target(v: &mut Violations, field: &str, t: &Target) {
    for (name, ids) in [
        ("products", &t.products),
        ("groups", &t.groups),
        ("brands", &t.brands),
        ("excluded_products", &t.excluded_products),
    ] {
        for (i, id) in ids.iter().enumerate() {
            if id.trim().is_empty() {
                v.add(format!("{field}.{name}[{i}]"), "must not be empty");
            }
        }
    }
}

fn benefit(v: &mut Violations, f: &str, b: &Benefit) {
    match b {
        Benefit::PercentageDiscount {
            basis_points,
            target: t,
        } => {
            if !(1..=10_000).contains(basis_points) {
                v.add(
                    format!("{f}.basis_points"),
                    "must be 1..10000 (at most 100 %)",
                );
            }
            target(v, &format!("{f}.target"), t);
        }
        Benefit::FixedDiscount {
            amount_minor,
            target: t,
        } => {
            if *amount_minor < 1 {
                v.add(format!("{f}.amount_minor"), "must be at least 1");
            }
            target(v, &format!("{f}.target"), t);
        }
        Benefit::FixedPrice {
            unit_price_minor,
            target: t,
        } => {
            if *unit_price_minor < 0 {
                v.add(format!("{f}.unit_price_minor"), "must not be negative");
            }
            target(v, &format!("{f}.target"), t);
        }
        Benefit::UnitDiscount {
            off,
            max_units,
            target: t,
        } => {
            match off {
                UnitOff::BasisPoints(bp) if !(1..=10_000).contains(bp) => {
                    v.add(format!("{f}.off"), "basis points must be 1..10000")
                }
                UnitOff::AmountMinor(a) if *a < 1 => {
                    v.add(format!("{f}.off"), "amount must be at least 1")
                }
                UnitOff::PriceMinor(p) if *p < 0 => {
                    v.add(format!("{f}.off"), "price must not be negative")
                }
                _ => {}
            }
            if *max_units == Some(0) {
                v.add(format!("{f}.max_units"), "must be at least 1 when set");
            }
            target(v, &format!("{f}.target"), t);
        }
        Benefit::FreeItem {
            product_id,
            quantity,
        } => {
            if product_id.trim().is_empty() {
                v.add(format!("{f}.product_id"), "must name a product");
            }
            if *quantity < 1 {
                v.add(format!("{f}.quantity"), "must be at least 1");
            }
        }
        Benefit::BuyXGetY {
            buy,
            get,
            discount_basis_points,
            target: t,
        } => {
            if *buy < 1 {
                v.add(format!("{f}.buy"), "must be at least 1");
            }
            if *get < 1 {
                v.add(format!("{f}.get"), "must be at least 1");
            }
            if !(1..=10_000).contains(discount_basis_points) {
                v.add(
                    format!("{f}.discount_basis_points"),
                    "must be 1..10000 (10000 = free)",
                );
            }
            target(v, &format!("{f}.target"), t);
        }
        Benefit::SpendXSaveY {
            spend_minor,
            save_minor,
            target: t,
            ..
        } => {
            if *spend_minor < 1 {
                v.add(format!("{f}.spend_minor"), "must be at least 1");
            }
            if *save_minor < 1 {
                v.add(format!("{f}.save_minor"), "must be at least 1");
            } else if save_minor > spend_minor {
                v.add(format!("{f}.save_minor"), "must not exceed spend_minor");
            }
            target(v, &format!("{f}.target"), t);
        }
        Benefit::BonusPoints {
            points,
            per_spend_minor,
            target: t,
        } => {
            if *points < 1 {
                v.add(format!("{f}.points"), "must be at least 1");
            }
            if per_spend_minor.is_some_and(|s| s < 1) {
                v.add(format!("{f}.per_spend_minor"), "must be at least 1");
            }
            target(v, &format!("{f}.target"), t);
        }
        Benefit::SpendPoints {
            points,
            per_spend_minor,
            multiplier_basis_points,
            target: t,
        } => {
            if *points < 1 {
                v.add(format!("{f}.points"), "must be at least 1");
            }
            if *per_spend_minor < 1 {
                v.add(format!("{f}.per_spend_minor"), "must be at least 1");
            }
            if !(1..=1_000_000).contains(multiplier_basis_points) {
                v.add(
                    format!("{f}.multiplier_basis_points"),
                    "must be 1..1000000 (at most ×100)",
                );
            }
            target(v, &format!("{f}.target"), t);
        }
        Benefit::PointsPayment {
            points_per_step,
            value_per_step_minor,
            max_points,
            max_cart_basis_points,
        } => {
            if *points_per_step < 1 {
                v.add(format!("{f}.points_per_step"), "must be at least 1");
            }
            if *value_per_step_minor < 1 {
                v.add(format!("{f}.value_per_step_minor"), "must be at least 1");
            }
            if max_points.is_some_and(|m| m < 1) {
                v.add(format!("{f}.max_points"), "must be at least 1 when set");
            }
            if *max_cart_basis_points > 10_000 {
                v.add(
                    format!("{f}.max_cart_basis_points"),
                    "must be 0 (all)..10000",
                );
            }
        }
        Benefit::PointsMultiplier {
            multiplier_basis_points,
            target: t,
        } => {
            if !(10_001..=1_000_000).contains(multiplier_basis_points) {
                v.add(
                    format!("{f}.multiplier_basis_points"),
                    "must be 10001..1000000 (above ×1, at most ×100)",
                );
            }
            target(v, &format!("{f}.target"), t);
        }
    }
}

/// Checks one rule; fields are named under `prefix` (e.g. `reward`).
pub fn validate_rule(v: &mut Violations, prefix: &str, rule: &Rule) {
    if rule.name.trim().is_empty() {
        v.add(format!("{prefix}.display_name"), "must not be empty");
    }
    if rule.benefits.is_empty() {
        v.add(
            format!("{prefix}.benefits"),
            "must have at least one benefit",
        );
    }
    for (i, b) in rule.benefits.iter().enumerate() {
        benefit(v, &format!("{prefix}.benefits[{i}]"), b);
        if rule.kind == RuleKind::CampaignProduct && (b.is_points() || b.is_points_payment()) {
            v.add(
                format!("{prefix}.benefits[{i}]"),
                "a campaign price takes money off the price: no points benefit",
            );
        }
        if b.is_points_payment() && rule.benefits.len() > 1 {
            v.add(
                format!("{prefix}.benefits[{i}]"),
                "a points payment must be the rule's only benefit",
            );
        }
    }
    rule.validity.validate(v, prefix);
    if rule.schedule.days_of_week > 0x7f {
        v.add(
            format!("{prefix}.schedule.days_of_week"),
            "only bits 0 (Monday) to 6 (Sunday)",
        );
    }
    if let Some((from, until)) = rule.schedule.hours {
        if from >= 1440 || until > 1440 {
            v.add(
                format!("{prefix}.schedule.hours"),
                "minutes after midnight must be 0..1440",
            );
        } else if from == until {
            v.add(format!("{prefix}.schedule.hours"), "must not be empty");
        }
    }
    for (f, list) in [
        ("business_units", &rule.business_units),
        ("channels", &rule.channels),
    ] {
        for (i, s) in list.iter().enumerate() {
            if s.trim().is_empty() {
                v.add(format!("{prefix}.{f}[{i}]"), "must not be empty");
            }
        }
    }
    if let Some(c) = &rule.condition {
        let f = format!("{prefix}.condition");
        if c.minimum_spend_minor.is_some_and(|m| m < 1) {
            v.add(
                format!("{f}.minimum_spend_minor"),
                "must be at least 1 when set",
            );
        }
        target(v, &format!("{f}.spend_target"), &c.spend_target);
        for (i, (t, min)) in c.required.iter().enumerate() {
            if t.is_cart_wide() {
                v.add(
                    format!("{f}.required[{i}]"),
                    "must name at least one product, group or brand",
                );
            }
            target(v, &format!("{f}.required[{i}]"), t);
            if *min < 1 {
                v.add(
                    format!("{f}.required[{i}].minimum_quantity"),
                    "must be at least 1",
                );
            }
        }
    }
    let l = &rule.limits;
    for (f, cap) in [
        (
            "max_discount_per_transaction_minor",
            l.max_discount_per_transaction_minor,
        ),
        ("max_points_per_transaction", l.max_points_per_transaction),
    ] {
        if cap.is_some_and(|c| c < 1) {
            v.add(
                format!("{prefix}.limits.{f}"),
                "must be at least 1 when set",
            );
        }
    }
    for (f, cap) in [
        (
            "max_applications_per_transaction",
            l.max_applications_per_transaction,
        ),
        ("max_uses_per_customer", l.max_uses_per_customer),
        ("max_uses_per_period", l.max_uses_per_period),
    ] {
        if cap == Some(0) {
            v.add(
                format!("{prefix}.limits.{f}"),
                "must be at least 1 when set",
            );
        }
    }
}

/// Checks a partner's groups against its rules: named, non-empty, known rules, and no rule in
/// two groups (overlapping exclusive groups would make the winner depend on the group order).
pub fn validate_policy(v: &mut Violations, policy: &Policy, rules: &[Rule]) {
    let mut seen_rule: BTreeMap<Uuid, &str> = BTreeMap::new();
    let mut seen_name: BTreeMap<&str, usize> = BTreeMap::new();
    for (g, group) in policy.groups.iter().enumerate() {
        let f = format!("policy.groups[{g}]");
        if group.name.trim().is_empty() {
            v.add(format!("{f}.name"), "must not be empty");
        } else if let Some(other) = seen_name.insert(&group.name, g) {
            v.add(
                format!("{f}.name"),
                format!("same name as policy.groups[{other}]"),
            );
        }
        if group.rule_ids.is_empty() {
            v.add(format!("{f}.rule_ids"), "must list at least one rule");
        }
        for (i, id) in group.rule_ids.iter().enumerate() {
            if !rules.iter().any(|r| r.id == *id) {
                v.add(format!("{f}.rule_ids[{i}]"), "no such active rule");
            }
            if let Some(other) = seen_rule.insert(*id, &group.name) {
                v.add(
                    format!("{f}.rule_ids[{i}]"),
                    format!("rule is already in group {other}; groups must not overlap"),
                );
            }
        }
    }
    if policy.max_rules_per_transaction == Some(0) {
        v.add(
            "policy.max_rules_per_transaction",
            "must be at least 1 when set",
        );
    }
    let mut ids = BTreeMap::new();
    for (i, r) in rules.iter().enumerate() {
        if let Some(other) = ids.insert(r.id, i) {
            v.add(
                format!("rules[{i}].id"),
                format!("same id as rules[{other}]"),
            );
        }
    }
}

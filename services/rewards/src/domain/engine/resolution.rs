//! Which rules apply: eligibility, exclusive and stackable groups, non-stackable rules, the
//! strategy (priority or best for the customer), caps and budgets; then the rules chosen are
//! applied in priority order (ties by id), discounts first, points on the discounted amounts.
use super::benefits;
use super::index::CompiledRuleSet;
use super::{
    AppliedRule, CartLine, CartPoints, CustomerContext, Evaluation, GroupMode, LineDiscount,
    LinePoints, LineResult, NotApplied, RejectedVoucher, Rule, SkipReason, Strategy,
};
use chrono::{Datelike, Duration, Timelike};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use uuid::Uuid;

/// Value of a rule for the customer: (discount in minor units, points).
type Value = (i64, i64);

/// The outcome of applying rules in order to a fresh cart.
struct Applied {
    net: Vec<i64>,
    discounts: Vec<Vec<LineDiscount>>,
    points: Vec<Vec<LinePoints>>,
    cart_points: Vec<CartPoints>,
    /// Per rule, in application order: (rule id, discount, points).
    totals: Vec<(Uuid, i64, i64)>,
    /// Why a rule gave nothing.
    empty: BTreeMap<Uuid, SkipReason>,
}

impl Applied {
    fn value(&self) -> Value {
        self.totals
            .iter()
            .fold((0i64, 0i64), |(d, p), (_, rd, rp)| {
                (d.saturating_add(*rd), p.saturating_add(*rp))
            })
    }
}

/// Budget left for the rule's budget: money for rules with a money benefit, else points.
fn budget(rule: &Rule, ctx: &CustomerContext) -> Option<i64> {
    ctx.usage.get(&rule.id).and_then(|u| u.budget_remaining)
}

fn money_budget(rule: &Rule) -> bool {
    rule.benefits.iter().any(|b| !b.is_points())
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> i64 {
    match (a, b) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => i64::MAX,
    }
}

/// Applies `rules` in order to a fresh cart; `explain` = false records only the totals per
/// rule (for the trial runs that only need values), not the line details nor sentences.
fn apply(rules: &[&Rule], cart: &[CartLine], ctx: &CustomerContext, explain: bool) -> Applied {
    let n = cart.len();
    let mut st = Applied {
        net: cart.iter().map(CartLine::gross_minor).collect(),
        // Line details only when explaining (trial runs need only the totals).
        discounts: if explain {
            vec![Vec::new(); n]
        } else {
            Vec::new()
        },
        points: if explain {
            vec![Vec::new(); n]
        } else {
            Vec::new()
        },
        cart_points: Vec::new(),
        totals: Vec::with_capacity(rules.len()),
        empty: BTreeMap::new(),
    };
    // Per rule (by position in `rules`): why a benefit gave nothing, and its discount.
    let mut first_skip: Vec<Option<SkipReason>> = vec![None; rules.len()];
    let mut discount_of: Vec<i64> = vec![0; rules.len()];
    // Money benefits.
    for (k, rule) in rules.iter().enumerate() {
        let budget = if money_budget(rule) {
            budget(rule, ctx)
        } else {
            None
        };
        let mut cap = min_opt(rule.limits.max_discount_per_transaction_minor, budget);
        let mut total = 0i64;
        for b in rule.benefits.iter().filter(|b| !b.is_points()) {
            match benefits::discount(
                b,
                cart,
                &st.net,
                rule.limits.max_applications_per_transaction,
            ) {
                Ok(mut amounts) => {
                    for (a, net) in amounts.iter_mut().zip(&st.net) {
                        *a = (*a).clamp(0, (*net).max(0));
                    }
                    benefits::trim(&mut amounts, cap);
                    let explanation = if explain {
                        format!("{}: {}", rule.name, benefits::describe(b))
                    } else {
                        String::new()
                    };
                    for (i, a) in amounts.into_iter().enumerate() {
                        if a > 0 {
                            st.net[i] -= a;
                            cap -= a;
                            total = total.saturating_add(a);
                            if explain {
                                st.discounts[i].push(LineDiscount {
                                    rule_id: rule.id,
                                    amount_minor: a,
                                    reason: benefits::code(b),
                                    explanation: explanation.clone(),
                                });
                            }
                        }
                    }
                }
                Err(r) => {
                    first_skip[k].get_or_insert(r);
                }
            }
        }
        discount_of[k] = total;
    }
    // Base earn on what the customer pays in money; a trial of money benefits only needs none.
    let rate = ctx.earn_rate;
    let needs_base = explain
        || rules
            .iter()
            .any(|r| r.benefits.iter().any(|b| b.is_points()));
    let base: Vec<i64> = (0..if needs_base { n } else { 0 })
        .map(|i| {
            if cart[i].pay_only_with_points || rate.per_spend_minor <= 0 {
                0
            } else {
                let p = i128::from(st.net[i].max(0)) * i128::from(rate.points.max(0))
                    / i128::from(rate.per_spend_minor);
                p.min(i128::from(i64::MAX)) as i64
            }
        })
        .collect();
    for (i, b) in base.iter().enumerate() {
        if *b > 0 && explain {
            st.points[i].push(LinePoints {
                rule_id: None,
                points: *b,
                reason: "BASE_EARN",
            });
        }
    }
    // Points benefits.
    for (k, rule) in rules.iter().enumerate() {
        let budget = if money_budget(rule) {
            None
        } else {
            budget(rule, ctx)
        };
        let mut cap = min_opt(rule.limits.max_points_per_transaction, budget);
        let mut total = 0i64;
        for b in rule.benefits.iter().filter(|b| b.is_points()) {
            match benefits::points(b, cart, &st.net, &base) {
                Ok((mut lines, flat)) => {
                    benefits::trim(&mut lines, cap);
                    for (i, p) in lines.into_iter().enumerate() {
                        if p > 0 {
                            cap -= p;
                            total = total.saturating_add(p);
                            if explain {
                                st.points[i].push(LinePoints {
                                    rule_id: Some(rule.id),
                                    points: p,
                                    reason: benefits::code(b),
                                });
                            }
                        }
                    }
                    let flat = flat.clamp(0, cap.max(0));
                    if flat > 0 {
                        cap -= flat;
                        total = total.saturating_add(flat);
                        st.cart_points.push(CartPoints {
                            rule_id: rule.id,
                            points: flat,
                            explanation: if explain {
                                format!("{}: {}", rule.name, benefits::describe(b))
                            } else {
                                String::new()
                            },
                        });
                    }
                }
                Err(r) => {
                    first_skip[k].get_or_insert(r);
                }
            }
        }
        let discount = discount_of[k];
        if discount == 0 && total == 0 {
            let reason = first_skip[k].unwrap_or(SkipReason::NothingLeftToDiscount);
            st.empty.insert(rule.id, reason);
        } else {
            st.totals.push((rule.id, discount, total));
        }
    }
    st
}

/// The store's local day of the week (0 = Monday) and minute of the day, computed once per
/// evaluation rather than per rule.
#[derive(Clone, Copy)]
struct LocalTime {
    weekday: u32,
    minute: u16,
}

impl LocalTime {
    fn of(ctx: &CustomerContext) -> LocalTime {
        let local = ctx.at + Duration::minutes(i64::from(ctx.utc_offset_minutes));
        LocalTime {
            weekday: local.weekday().num_days_from_monday(),
            minute: (local.hour() * 60 + local.minute()) as u16,
        }
    }
}

/// Why the rule cannot apply to this customer, place and time, if it cannot.
fn ineligible(
    rule: &Rule,
    ctx: &CustomerContext,
    local: LocalTime,
    vouchers: &BTreeMap<Uuid, String>,
) -> Option<SkipReason> {
    if !rule.validity.contains(ctx.at) {
        return Some(SkipReason::OutsideValidity);
    }
    let days = rule.schedule.days_of_week & 0x7f;
    if days != 0 && days & (1 << local.weekday) == 0 {
        return Some(SkipReason::OutsideSchedule);
    }
    if let Some((from, until)) = rule.schedule.hours {
        let m = local.minute;
        let inside = if from <= until {
            from <= m && m < until
        } else {
            m >= from || m < until
        };
        if !inside {
            return Some(SkipReason::OutsideSchedule);
        }
    }
    let listed = |list: &[String], v: &Option<String>| {
        list.is_empty() || v.as_ref().is_some_and(|v| list.contains(v))
    };
    if !listed(&rule.business_units, &ctx.business_unit) {
        return Some(SkipReason::BusinessUnitNotIncluded);
    }
    if !listed(&rule.channels, &ctx.channel) {
        return Some(SkipReason::ChannelNotIncluded);
    }
    let e = &rule.eligibility;
    if !e.segment_ids.is_empty() && !e.segment_ids.iter().any(|s| ctx.segment_ids.contains(s)) {
        return Some(SkipReason::SegmentNotMatched);
    }
    if !e.level_ids.is_empty() && !ctx.level_id.is_some_and(|l| e.level_ids.contains(&l)) {
        return Some(SkipReason::LevelNotMatched);
    }
    if e.requires_voucher && !vouchers.contains_key(&rule.id) {
        return Some(SkipReason::VoucherRequired);
    }
    let usage = ctx.usage.get(&rule.id).copied().unwrap_or_default();
    if rule
        .limits
        .max_uses_per_customer
        .is_some_and(|m| usage.customer_uses >= m)
    {
        return Some(SkipReason::CustomerLimitReached);
    }
    if rule
        .limits
        .max_uses_per_period
        .is_some_and(|m| usage.period_uses >= m)
    {
        return Some(SkipReason::PeriodLimitReached);
    }
    if usage.budget_remaining.is_some_and(|b| b <= 0) {
        return Some(SkipReason::BudgetExhausted);
    }
    None
}

/// `Less` when `a` should win over `b`.
fn rank(strategy: Strategy, a: (&Rule, Value), b: (&Rule, Value)) -> Ordering {
    let by_priority = b.0.priority.cmp(&a.0.priority);
    let by_value = b.1.cmp(&a.1);
    match strategy {
        Strategy::Priority => by_priority.then(by_value),
        Strategy::BestForCustomer => by_value.then(by_priority),
    }
    .then(a.0.id.cmp(&b.0.id))
}

fn skip(out: &mut BTreeMap<Uuid, NotApplied>, rule: &Rule, reason: SkipReason, why: &str) {
    out.entry(rule.id).or_insert_with(|| NotApplied {
        rule_id: rule.id,
        reason,
        explanation: Arc::from(super::index::sentence(rule, why)),
    });
}

/// `skip` with the static sentence of `reason` (shared when the rule set is prepared).
fn skip_said(
    out: &mut BTreeMap<Uuid, NotApplied>,
    c: &CompiledRuleSet,
    rule: &Rule,
    reason: SkipReason,
) {
    out.entry(rule.id).or_insert_with(|| NotApplied {
        rule_id: rule.id,
        reason,
        explanation: c.said(rule, reason),
    });
}

pub(super) fn say(reason: SkipReason) -> &'static str {
    match reason {
        SkipReason::OutsideValidity => "not valid at this time",
        SkipReason::OutsideSchedule => "not on this day or at this hour",
        SkipReason::BusinessUnitNotIncluded => "not offered in this business unit",
        SkipReason::ChannelNotIncluded => "not offered in this channel",
        SkipReason::SegmentNotMatched => "the customer is in none of its segments",
        SkipReason::LevelNotMatched => "the customer's membership level is not included",
        SkipReason::VoucherRequired => "needs a voucher, none was presented",
        SkipReason::CustomerLimitReached => "the customer has used it as often as allowed",
        SkipReason::PeriodLimitReached => "used as often as allowed in this period",
        SkipReason::BudgetExhausted => "its budget is exhausted",
        SkipReason::NoMatchingItems => "no item in the cart is targeted",
        SkipReason::ThresholdNotReached => "the cart does not reach its threshold",
        SkipReason::LostExclusiveGroup => "another rule of its exclusive group applies",
        SkipReason::NotStackable => "does not combine with the rules that apply",
        SkipReason::TransactionRuleLimit => "the transaction has as many rules as allowed",
        SkipReason::NothingLeftToDiscount => "nothing left to discount or reward",
        SkipReason::CartConditionNotMet => "the cart does not meet its condition",
        SkipReason::PointsPaymentNotChosen => "another points payment lets the customer pay more",
    }
}

pub(super) fn evaluate(
    cart: &[CartLine],
    ctx: &CustomerContext,
    rs: &CompiledRuleSet,
) -> Evaluation {
    let set = rs.rule_set();
    let strategy = set.policy.strategy;
    let rules = rs.ordered();
    let reachable = rs.reachable(cart);
    let local = LocalTime::of(ctx);

    // Vouchers presented: which rule each one unlocks.
    let mut rejected: BTreeMap<String, String> = BTreeMap::new();
    let mut voucher_for: BTreeMap<Uuid, String> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for v in &ctx.vouchers {
        if !seen.insert(v.code.clone()) {
            continue;
        }
        let reason = match (&v.rejection, v.reward_id) {
            (Some(r), _) => Some(r.clone()),
            (None, None) => Some("VOUCHER_UNKNOWN".to_owned()),
            (None, Some(id)) if rs.get(&id).is_none() => {
                Some("VOUCHER_REWARD_NOT_ACTIVE".to_owned())
            }
            (None, Some(id)) if voucher_for.contains_key(&id) => {
                Some("VOUCHER_REWARD_ALREADY_PRESENTED".to_owned())
            }
            (None, Some(id)) => {
                voucher_for.insert(id, v.code.clone());
                None
            }
        };
        if let Some(r) = reason {
            rejected.insert(v.code.clone(), r);
        }
    }

    let mut not_applied: BTreeMap<Uuid, NotApplied> = BTreeMap::new();
    let mut candidates: Vec<(&Rule, Value)> = Vec::new();
    // Points payment rules: not discounts; decided on the cart after the discounts.
    let mut payments: Vec<&Rule> = Vec::new();
    for (pos, rule) in rules.iter().enumerate() {
        let mut skip_at = |reason: SkipReason| {
            not_applied.entry(rule.id).or_insert_with(|| NotApplied {
                rule_id: rule.id,
                reason,
                explanation: rs.said_at(pos, rule, reason),
            });
        };
        if let Some(r) = ineligible(rule, ctx, local, &voucher_for) {
            skip_at(r);
            continue;
        }
        // Rules the index says reach no line skip the exact (string-comparing) check.
        if !reachable[pos] || !rule.benefits.iter().any(|b| benefits::targets_any(b, cart)) {
            skip_at(SkipReason::NoMatchingItems);
            continue;
        }
        // A cart condition says which part failed (a sentence of this cart).
        if let Some(why) = rule.condition.as_ref().and_then(|c| c.unmet(cart)) {
            skip(
                &mut not_applied,
                rule,
                SkipReason::CartConditionNotMet,
                &why,
            );
            continue;
        }
        if rule.benefits.iter().any(|b| b.is_points_payment()) {
            payments.push(rule);
            continue;
        }
        let alone = apply(&[rule], cart, ctx, false);
        if let Some(r) = alone.empty.get(&rule.id) {
            not_applied.entry(rule.id).or_insert_with(|| NotApplied {
                rule_id: rule.id,
                reason: *r,
                explanation: rs.said_at(pos, rule, *r),
            });
            continue;
        }
        candidates.push((rule, alone.value()));
    }

    // Exclusive groups: one winner each. A rule listed in several groups counts in the first.
    let group_of = |id: &Uuid| rs.group_of(id);
    let mut winners: BTreeMap<usize, (&Rule, Value)> = BTreeMap::new();
    for c in &candidates {
        if let Some(g) = group_of(&c.0.id)
            && set.policy.groups[g].mode == GroupMode::Exclusive
        {
            let w = winners.entry(g).or_insert(*c);
            if rank(strategy, *c, *w) == Ordering::Less {
                *w = *c;
            }
        }
    }
    let mut survivors = Vec::new();
    for c in candidates {
        match group_of(&c.0.id) {
            Some(g) if set.policy.groups[g].mode == GroupMode::Exclusive => {
                let w = winners[&g].0;
                if w.id != c.0.id {
                    let why = format!(
                        "group {} applies {} instead",
                        set.policy.groups[g].name, w.name
                    );
                    skip(&mut not_applied, c.0, SkipReason::LostExclusiveGroup, &why);
                    continue;
                }
            }
            _ => {}
        }
        survivors.push(c);
    }

    // Non-stackable rules apply alone: the best of them against everything stackable together.
    let stacks = |r: &Rule| {
        r.stackable
            || group_of(&r.id).is_some_and(|g| set.policy.groups[g].mode == GroupMode::Stackable)
    };
    let (stackable, lone): (Vec<_>, Vec<_>) = survivors.into_iter().partition(|c| stacks(c.0));
    let mut chosen: Vec<(&Rule, Value)> = stackable.clone();
    // The stack applied in full, kept when it is also the final answer.
    let mut stack_applied: Option<(Vec<Uuid>, Applied)> = None;
    if let Some(best) = lone.iter().copied().min_by(|a, b| rank(strategy, *a, *b)) {
        let stack_rules: Vec<&Rule> = stackable.iter().map(|c| c.0).collect();
        let applied = apply(&stack_rules, cart, ctx, true);
        let stack_value = applied.value();
        stack_applied = Some((stack_rules.iter().map(|r| r.id).collect(), applied));
        let stack_priority = stackable.iter().map(|c| c.0.priority).max();
        let lone_wins = match stack_priority {
            None => true,
            Some(p) => {
                let by_priority = best.0.priority.cmp(&p);
                let by_value = best.1.cmp(&stack_value);
                match strategy {
                    Strategy::Priority => by_priority.then(by_value),
                    Strategy::BestForCustomer => by_value.then(by_priority),
                }
                .is_gt()
            }
        };
        let loser_why = |winner: &str| format!("applies alone; {winner} applies instead");
        if lone_wins {
            for c in lone.iter().chain(&stackable) {
                if c.0.id != best.0.id {
                    skip(
                        &mut not_applied,
                        c.0,
                        SkipReason::NotStackable,
                        &loser_why(&best.0.name),
                    );
                }
            }
            chosen = vec![best];
        } else {
            for c in &lone {
                skip(
                    &mut not_applied,
                    c.0,
                    SkipReason::NotStackable,
                    &loser_why("the stackable rules"),
                );
            }
        }
    }

    // At most N rules per transaction, the best by the strategy.
    if let Some(max) = set.policy.max_rules_per_transaction {
        chosen.sort_by(|a, b| rank(strategy, *a, *b));
        for x in chosen.iter().skip(max as usize) {
            skip_said(&mut not_applied, rs, x.0, SkipReason::TransactionRuleLimit);
        }
        chosen.truncate(max as usize);
    }
    let mut order: Vec<&Rule> = chosen.into_iter().map(|c| c.0).collect();
    order.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));

    let st = match stack_applied {
        Some((ids, applied)) if ids.iter().eq(order.iter().map(|r| &r.id)) => applied,
        _ => apply(&order, cart, ctx, true),
    };
    for (id, r) in &st.empty {
        if let Some(rule) = rs.get(id) {
            skip_said(&mut not_applied, rs, rule, *r);
        }
    }

    // Points payment: what is left to pay after the discounts; the rule paying the most (then
    // the higher priority, then the smaller id) is offered, the others say why not.
    // (rule, (max points, their value, points of the points-only lines), (points, value) a step)
    type Payable<'r> = (&'r Rule, (i64, i64, i64), (i64, i64));
    let mut best: Option<Payable> = None;
    for rule in &payments {
        let payable = rule.benefits.iter().find_map(|b| match b {
            super::Benefit::PointsPayment {
                points_per_step,
                value_per_step_minor,
                ..
            } => benefits::points_payable(b, cart, &st.net)
                .map(|p| (p, (*points_per_step, *value_per_step_minor))),
            _ => None,
        });
        match payable {
            None => skip_said(&mut not_applied, rs, rule, SkipReason::ThresholdNotReached),
            Some((p, step)) => {
                let better = best.is_none_or(|(b, bp, _)| {
                    (p.1, rule.priority, std::cmp::Reverse(rule.id))
                        > (bp.1, b.priority, std::cmp::Reverse(b.id))
                });
                if better {
                    best = Some((rule, p, step));
                }
            }
        }
    }
    let chosen_payment = best.map(|(r, _, _)| r.id);
    if let Some((winner, _, _)) = best {
        for rule in &payments {
            if rule.id != winner.id && !not_applied.contains_key(&rule.id) {
                let why = format!("{} lets the customer pay more with points", winner.name);
                skip(
                    &mut not_applied,
                    rule,
                    SkipReason::PointsPaymentNotChosen,
                    &why,
                );
            }
        }
    }

    let mut out = Evaluation::default();
    for (rid, discount, points) in &st.totals {
        let Some(rule) = rs.get(rid) else { continue };
        let voucher = voucher_for.get(rid).cloned();
        let what: Vec<String> = rule.benefits.iter().map(benefits::describe).collect();
        out.applied.push(AppliedRule {
            rule_id: *rid,
            discount_minor: *discount,
            points: *points,
            explanation: match &voucher {
                Some(code) => format!("{}: {} (voucher {code})", rule.name, what.join("; ")),
                None => format!("{}: {}", rule.name, what.join("; ")),
            },
            voucher_code: voucher,
        });
    }
    if let Some((rule, (max_points, max_value, only_points), (points_per_step, value_per_step))) =
        best
    {
        let explanation = format!(
            "{}: up to {max_points} points pay {}",
            rule.name,
            super::money(max_value)
        );
        let voucher = voucher_for.get(&rule.id).cloned();
        out.applied.push(AppliedRule {
            rule_id: rule.id,
            discount_minor: 0,
            points: 0,
            voucher_code: voucher,
            explanation: explanation.clone(),
        });
        out.points_payable = Some(super::PointsPayable {
            rule_id: rule.id,
            points_per_step,
            value_per_step_minor: value_per_step,
            max_points,
            max_value_minor: max_value,
            pay_only_with_points_points: only_points,
            explanation,
        });
    }
    let mut seen = BTreeSet::new();
    for v in &ctx.vouchers {
        if !seen.insert(v.code.clone()) {
            continue;
        }
        let reason = match rejected.get(&v.code) {
            Some(r) => Some(r.clone()),
            None => {
                let rid = v.reward_id.unwrap_or_default();
                if st.totals.iter().any(|t| t.0 == rid) || chosen_payment == Some(rid) {
                    out.vouchers_to_redeem.push(v.code.clone());
                    None
                } else {
                    Some(
                        not_applied
                            .get(&rid)
                            .map_or("VOUCHER_NOT_APPLICABLE", |n| n.reason.code())
                            .to_owned(),
                    )
                }
            }
        };
        if let Some(reason) = reason {
            out.rejected_vouchers.push(RejectedVoucher {
                code: v.code.clone(),
                reason,
            });
        }
    }

    let Applied {
        net,
        discounts,
        points,
        cart_points,
        ..
    } = st;
    for (i, ((line, discounts), points_detail)) in
        cart.iter().zip(discounts).zip(points).enumerate()
    {
        let points: i64 = points_detail.iter().map(|p| p.points).sum();
        let gross = line.gross_minor();
        out.gross_minor = out.gross_minor.saturating_add(gross);
        out.total_minor = out.total_minor.saturating_add(net[i]);
        out.points = out.points.saturating_add(points);
        if line.pay_only_with_points {
            out.pay_only_with_points_lines.push(i);
        }
        out.lines.push(LineResult {
            index: i,
            product_id: line.product_id.clone(),
            gross_minor: gross,
            discounts,
            total_minor: net[i],
            points,
            points_detail,
            no_reward_application: line.no_reward_application,
            pay_only_with_points: line.pay_only_with_points,
        });
    }
    out.discount_minor = out.gross_minor.saturating_sub(out.total_minor);
    out.points = cart_points
        .iter()
        .fold(out.points, |s, c| s.saturating_add(c.points));
    out.cart_points = cart_points;
    out.not_applied = not_applied.into_values().collect();
    out
}

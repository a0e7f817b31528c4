//! Which rules apply: eligibility, exclusive and stackable groups, non-stackable rules, the
//! strategy (priority or best for the customer), caps and budgets; then the rules chosen are
//! applied in priority order (ties by id), discounts first, points on the discounted amounts.
//!
//! Speed: the lines each benefit of a rule reaches are found once per evaluation (`CartView`,
//! from the prepared index), so the trial run of a rule alone (to learn its value) and the final
//! application visit only those lines, on buffers reused from one run to the next, and the
//! sentences of the answer are prepared with the rule set.
use super::benefits;
use super::index::CompiledRuleSet;
use super::lines::{self, Lines};
use super::{
    AppliedRule, CartLine, CartPoints, CustomerContext, EarnRate, Evaluation, GroupMode,
    LineDiscount, LinePoints, LineResult, NotApplied, RejectedVoucher, Rule, RuleKind, SkipReason,
    Strategy,
};
use chrono::{Datelike, Duration, Timelike};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use uuid::Uuid;

/// Value of a rule for the customer: (discount in minor units, points).
type Value = (i64, i64);

/// A rule by its position in application order.
type Placed<'r> = (usize, &'r Rule);

/// What one evaluation knows of its cart: the amounts per line, the campaign prices and, for the
/// rules that may apply, the lines each of their benefits reaches (`benefits::reaches`).
struct CartView<'c, 'r> {
    cart: &'c [CartLine],
    words: usize,
    gross: Vec<i64>,
    /// Per line, the amount the reward discounts start from: the gross amount, or what the
    /// campaign prices leave when they combine with the rewards.
    start: Vec<i64>,
    /// Base earn per line of `start`.
    base_start: Vec<i64>,
    /// Per rule position, the index (in line sets) of the set of its first benefit.
    first: Vec<u32>,
    /// Line sets of `words` words each.
    sets: Vec<u64>,
    /// Whether campaign prices combine with reward discounts (`Policy`).
    combine: bool,
    campaign: CampaignPrices<'r>,
}

/// The campaign product rules of one evaluation, applied once on the fresh cart (they depend on
/// no other rule): what they take off each line and which rule gave what.
#[derive(Default)]
struct CampaignPrices<'r> {
    /// In application order.
    rules: Vec<Placed<'r>>,
    /// Per line, the campaign prices' discount (0 = none).
    off: Vec<i64>,
    /// The lines with a campaign discount (a line set).
    lines: Vec<u64>,
    /// (line, index in `rules`, benefit, amount), in application order.
    entries: Vec<(usize, usize, usize, i64)>,
    /// Per rule (index in `rules`): why a benefit gave nothing, and the rule's total.
    per_rule: Vec<(Option<SkipReason>, i64)>,
}

impl<'c, 'r> CartView<'c, 'r> {
    fn new(cart: &'c [CartLine], rate: EarnRate, rules: usize, combine: bool) -> Self {
        let gross: Vec<i64> = cart.iter().map(CartLine::gross_minor).collect();
        let base_start = cart
            .iter()
            .zip(&gross)
            .map(|(l, g)| base_earn(l, *g, rate))
            .collect();
        CartView {
            cart,
            words: lines::words(cart.len()),
            start: gross.clone(),
            gross,
            base_start,
            first: vec![u32::MAX; rules],
            sets: Vec::new(),
            combine,
            campaign: CampaignPrices::default(),
        }
    }

    /// Finds the lines each benefit of the rule at `pos` reaches among `candidates`; `false`
    /// when no benefit reaches any line.
    fn prepare(&mut self, pos: usize, rule: &Rule, candidates: Lines) -> bool {
        let w = self.words;
        self.first[pos] = (self.sets.len() / w.max(1)) as u32;
        let mut any = false;
        for b in &rule.benefits {
            let at = self.sets.len();
            self.sets.resize(at + w, 0);
            for i in candidates.iter() {
                if benefits::reaches(b, &self.cart[i]) {
                    lines::set(&mut self.sets[at..], i);
                }
            }
            any |= Lines(&self.sets[at..]).any();
        }
        any
    }

    /// The lines benefit `k` of the rule at `pos` reaches (after `prepare`).
    fn lines(&self, pos: usize, k: usize) -> Lines<'_> {
        let at = (self.first[pos] as usize + k) * self.words;
        Lines(&self.sets[at..at + self.words])
    }

    /// Applies the campaign product `rules` (prepared, in application order) to the fresh
    /// cart; when they combine with the rewards, the rewards start from what they leave.
    fn price_campaign(&mut self, rules: Vec<Placed<'r>>, ctx: &CustomerContext) {
        if rules.is_empty() {
            return;
        }
        let n = self.cart.len();
        let mut net = self.gross.clone();
        let mut amounts = vec![0i64; n];
        let mut per_rule = vec![(None, 0i64); rules.len()];
        let mut entries = Vec::new();
        money(
            &rules,
            &*self,
            ctx,
            &mut net,
            &mut amounts,
            &mut per_rule,
            |k, _, j, i, a| entries.push((i, k, j, a)),
        );
        let mut set = vec![0u64; self.words];
        let off: Vec<i64> = self.gross.iter().zip(&net).map(|(g, n)| g - n).collect();
        for (i, o) in off.iter().enumerate() {
            if *o > 0 {
                lines::set(&mut set, i);
            }
        }
        if self.combine {
            self.base_start = self
                .cart
                .iter()
                .zip(&net)
                .map(|(l, n)| base_earn(l, *n, ctx.earn_rate))
                .collect();
            self.start = net;
        }
        self.campaign = CampaignPrices {
            rules,
            off,
            lines: set,
            entries,
            per_rule,
        };
    }
}

/// Base earn of a line whose net amount is `net`: on what the customer pays in money.
fn base_earn(line: &CartLine, net: i64, rate: EarnRate) -> i64 {
    if line.pay_only_with_points || rate.per_spend_minor <= 0 {
        return 0;
    }
    let (net, points) = (net.max(0), rate.points.max(0));
    match net.checked_mul(points) {
        Some(p) => p / rate.per_spend_minor,
        None => {
            let p = i128::from(net) * i128::from(points) / i128::from(rate.per_spend_minor);
            p.min(i128::from(i64::MAX)) as i64
        }
    }
}

/// The outcome of applying rules in order to a fresh cart, and the buffers that produce it
/// (reused by the trial runs).
#[derive(Default)]
struct Applied {
    net: Vec<i64>,
    discounts: Vec<Vec<LineDiscount>>,
    /// Per line, the discounts not granted because campaign prices and rewards do not combine.
    forgone: Vec<Vec<LineDiscount>>,
    points: Vec<Vec<LinePoints>>,
    cart_points: Vec<CartPoints>,
    /// Per rule that gave something, in application order: (position, discount, points).
    totals: Vec<(usize, i64, i64)>,
    /// Rules that gave nothing, and why.
    empty: Vec<(usize, SkipReason)>,
    /// Scratch: base earn per line, amounts of one benefit, and per rule (by index in the
    /// rules applied) why a benefit gave nothing and its discount.
    base: Vec<i64>,
    amounts: Vec<i64>,
    per_rule: Vec<(Option<SkipReason>, i64)>,
    /// Scratch of the final run when campaign prices do not combine: the reward discounts
    /// granted on campaign lines (line, rule index, amount), per rule whether a discount of
    /// it was forgone, and per campaign rule what it keeps and whether it forwent some.
    grants: Vec<(usize, usize, i64)>,
    forwent: Vec<bool>,
    campaign_kept: Vec<(i64, bool)>,
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

/// Applies the money benefits of `rules` in order, lowering `net` (each amount clamped to the
/// line, then to the rule's cap and budget, in line order), and calls `grant(rule index,
/// position, benefit, line, amount)` for every amount granted. Records per rule (by index) the
/// first reason a benefit gave nothing and the rule's total discount in `per_rule`; returns
/// whether a line was lowered. `amounts` is scratch of one entry per line.
fn money(
    rules: &[Placed],
    view: &CartView,
    ctx: &CustomerContext,
    net: &mut [i64],
    amounts: &mut [i64],
    per_rule: &mut [(Option<SkipReason>, i64)],
    mut grant: impl FnMut(usize, usize, usize, usize, i64),
) -> bool {
    let cart = view.cart;
    let mut lowered = false;
    for (k, (pos, rule)) in rules.iter().enumerate() {
        let budget = if money_budget(rule) {
            budget(rule, ctx)
        } else {
            None
        };
        let mut cap = min_opt(rule.limits.max_discount_per_transaction_minor, budget);
        let mut total = 0i64;
        for (j, b) in rule.benefits.iter().enumerate() {
            if b.is_points() {
                continue;
            }
            let mask = view.lines(*pos, j);
            for i in mask.iter() {
                amounts[i] = 0;
            }
            let max_apps = rule.limits.max_applications_per_transaction;
            match benefits::discount(b, cart, mask, net, max_apps, amounts) {
                Ok(()) => {
                    // Clamped to the line, then at most the cap, in line order.
                    let mut left = cap.max(0);
                    for i in mask.iter() {
                        let a = amounts[i].clamp(0, net[i].max(0)).min(left);
                        left -= a;
                        if a > 0 {
                            net[i] -= a;
                            cap -= a;
                            total = total.saturating_add(a);
                            lowered = true;
                            grant(k, *pos, j, i, a);
                        }
                    }
                }
                Err(r) => {
                    per_rule[k].0.get_or_insert(r);
                }
            }
        }
        per_rule[k].1 = total;
    }
    lowered
}

/// What a run of `apply` is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Run {
    /// A trial that only needs the totals per rule (no line details, no sentences).
    Trial,
    /// The stack of stackable rules, explained, to be reused as the answer when no campaign
    /// price is in the cart.
    Stack,
    /// The answer: with the campaign prices.
    Final,
}

/// A line discount of the rule at `pos`, explained by the sentence of its benefit `j` (looked
/// up once per benefit through `said`).
fn line_discount(
    said: &mut Option<(usize, usize, Arc<str>)>,
    rs: &CompiledRuleSet,
    (pos, rule): Placed,
    j: usize,
    amount_minor: i64,
    reason: &'static str,
) -> LineDiscount {
    let explanation = match said {
        Some((p, k, s)) if *p == pos && *k == j => s.clone(),
        _ => {
            let s = rs.benefit_said(pos, j, rule);
            *said = Some((pos, j, s.clone()));
            s
        }
    };
    LineDiscount {
        rule_id: rule.id,
        amount_minor,
        reason,
        explanation,
    }
}

/// Applies `rules` (rewards and purchase bonuses) in order to a fresh cart into `st`: the
/// reward discounts from `view.start`, then points on the discounted amounts. A `Trial` records
/// only the totals per rule; the `Final` run adds the campaign prices: first on each line when
/// they combine, else on each line either they or the reward discounts, whichever takes more
/// off (the campaign price on a tie), the other side forgone. Every rule must have been
/// `prepare`d in `view`.
fn apply(
    rules: &[Placed],
    view: &CartView,
    ctx: &CustomerContext,
    rs: &CompiledRuleSet,
    run: Run,
    st: &mut Applied,
) {
    let explain = run != Run::Trial;
    let campaign = &view.campaign;
    let layer = run == Run::Final && !campaign.rules.is_empty();
    // Campaign prices and reward discounts compete line by line.
    let choose = layer && !view.combine;
    let cart = view.cart;
    let n = cart.len();
    st.net.clear();
    st.net.extend_from_slice(&view.start);
    st.discounts.clear();
    st.forgone.clear();
    st.points.clear();
    if explain {
        st.discounts.resize(n, Vec::new());
        st.forgone.resize(n, Vec::new());
        st.points.resize(n, Vec::new());
    }
    st.cart_points.clear();
    st.totals.clear();
    st.empty.clear();
    st.per_rule.clear();
    st.per_rule.resize(rules.len(), (None, 0));
    st.amounts.resize(n, 0);
    st.grants.clear();
    st.forwent.clear();
    st.forwent.resize(rules.len(), false);
    st.campaign_kept.clear();
    let mut said = None;
    if layer {
        st.campaign_kept
            .extend(campaign.per_rule.iter().map(|(_, t)| (*t, false)));
        if view.combine && explain {
            // Campaign prices first on each line.
            for &(i, c, j, a) in &campaign.entries {
                let placed = campaign.rules[c];
                let code = benefits::code(&placed.1.benefits[j]);
                let d = line_discount(&mut said, rs, placed, j, a, code);
                st.discounts[i].push(d);
            }
        }
    }
    // Money benefits. Whether one lowered a line (else the base earn is that of `start`).
    let Applied {
        net,
        discounts,
        amounts,
        per_rule,
        grants,
        ..
    } = st;
    let mut lowered = money(
        rules,
        view,
        ctx,
        net,
        amounts,
        per_rule,
        |k, pos, j, i, a| {
            if explain {
                let rule = rules[k].1;
                let code = benefits::code(&rule.benefits[j]);
                discounts[i].push(line_discount(&mut said, rs, (pos, rule), j, a, code));
            }
            if choose && Lines(&campaign.lines).contains(i) {
                grants.push((i, k, a));
            }
        },
    );
    if choose {
        for i in Lines(&campaign.lines).iter() {
            let (c, r) = (campaign.off[i], view.start[i] - st.net[i]);
            if c >= r {
                // The campaign price: the reward discounts of the line are forgone.
                for &(_, k, a) in st.grants.iter().filter(|g| g.0 == i) {
                    st.per_rule[k].1 -= a;
                    st.forwent[k] = true;
                }
                st.net[i] = view.start[i] - c;
                lowered = true;
                if explain {
                    let mut rewards = std::mem::take(&mut st.discounts[i]);
                    rewards
                        .iter_mut()
                        .for_each(|d| d.reason = SkipReason::BetterCampaignPrice.code());
                    st.forgone[i] = rewards;
                }
            }
            for &(_, ci, j, a) in campaign.entries.iter().filter(|e| e.0 == i) {
                let placed = campaign.rules[ci];
                if c >= r {
                    if explain {
                        let code = benefits::code(&placed.1.benefits[j]);
                        let d = line_discount(&mut said, rs, placed, j, a, code);
                        st.discounts[i].push(d);
                    }
                } else {
                    st.campaign_kept[ci].0 -= a;
                    st.campaign_kept[ci].1 = true;
                    if explain {
                        let reason = SkipReason::CampaignPriceNotCombined.code();
                        let d = line_discount(&mut said, rs, placed, j, a, reason);
                        st.forgone[i].push(d);
                    }
                }
            }
        }
    }
    // Base earn on what the customer pays in money; a trial of money benefits only needs none.
    let rate = ctx.earn_rate;
    let needs_base = explain
        || rules
            .iter()
            .any(|(_, r)| r.benefits.iter().any(|b| b.is_points()));
    st.base.clear();
    if needs_base {
        if lowered {
            st.base.extend(
                cart.iter()
                    .zip(&st.net)
                    .map(|(l, net)| base_earn(l, *net, rate)),
            );
        } else {
            st.base.extend_from_slice(&view.base_start);
        }
    }
    if explain {
        for (i, b) in st.base.iter().enumerate() {
            if *b > 0 {
                st.points[i].push(LinePoints {
                    rule_id: None,
                    points: *b,
                    reason: "BASE_EARN",
                });
            }
        }
    }
    // Points benefits.
    for (k, (pos, rule)) in rules.iter().enumerate() {
        let budget = if money_budget(rule) {
            None
        } else {
            budget(rule, ctx)
        };
        let mut cap = min_opt(rule.limits.max_points_per_transaction, budget);
        let mut total = 0i64;
        for (j, b) in rule.benefits.iter().enumerate() {
            if !b.is_points() {
                continue;
            }
            let mask = view.lines(*pos, j);
            for i in mask.iter() {
                st.amounts[i] = 0;
            }
            match benefits::points(b, mask, &st.net, &st.base, &mut st.amounts) {
                Ok(flat) => {
                    let mut left = cap.max(0);
                    for i in mask.iter() {
                        let p = st.amounts[i].min(left);
                        left -= p;
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
                        if explain {
                            st.cart_points.push(CartPoints {
                                rule_id: rule.id,
                                points: flat,
                                explanation: rs.benefit_said(*pos, j, rule).to_string(),
                            });
                        }
                    }
                }
                Err(r) => {
                    st.per_rule[k].0.get_or_insert(r);
                }
            }
        }
        let (first_skip, discount) = st.per_rule[k];
        if discount == 0 && total == 0 {
            let reason = if st.forwent[k] {
                SkipReason::BetterCampaignPrice
            } else {
                first_skip.unwrap_or(SkipReason::NothingLeftToDiscount)
            };
            st.empty.push((*pos, reason));
        } else {
            st.totals.push((*pos, discount, total));
        }
    }
    if layer {
        // The campaign prices applied first.
        let kept = campaign.rules.iter().zip(&st.campaign_kept);
        let front: Vec<(usize, i64, i64)> = kept
            .clone()
            .filter(|(_, (t, _))| *t > 0)
            .map(|((pos, _), (t, _))| (*pos, *t, 0))
            .collect();
        st.totals.splice(0..0, front);
        for (c, ((pos, _), (t, forwent))) in kept.enumerate() {
            if *t <= 0 {
                let reason = if *forwent {
                    SkipReason::CampaignPriceNotCombined
                } else {
                    campaign.per_rule[c]
                        .0
                        .unwrap_or(SkipReason::NothingLeftToDiscount)
                };
                st.empty.push((*pos, reason));
            }
        }
    }
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

/// A candidate as `rank` compares it.
fn ranked<'r>(c: &(Placed<'r>, Value)) -> (&'r Rule, Value) {
    (c.0.1, c.1)
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

/// The "not applied" entries, one slot per rule position; the first reason recorded stays.
struct NotAppliedSlots(Vec<Option<NotApplied>>);

impl NotAppliedSlots {
    fn get(&self, pos: usize) -> Option<&NotApplied> {
        self.0[pos].as_ref()
    }

    fn skip(
        &mut self,
        pos: usize,
        rule: &Rule,
        reason: SkipReason,
        why: impl FnOnce() -> Arc<str>,
    ) {
        self.0[pos].get_or_insert_with(|| NotApplied {
            rule_id: rule.id,
            reason,
            explanation: why(),
        });
    }

    /// `skip` with the static sentence of `reason` (shared when the rule set is prepared).
    fn skip_said(&mut self, rs: &CompiledRuleSet, pos: usize, rule: &Rule, reason: SkipReason) {
        self.skip(pos, rule, reason, || rs.said_at(pos, rule, reason));
    }

    /// The entries sorted by rule id.
    fn into_sorted(mut self, rs: &CompiledRuleSet) -> Vec<NotApplied> {
        rs.by_id_order()
            .iter()
            .filter_map(|pos| self.0[*pos].take())
            .collect()
    }
}

/// "<name>: <parts…>", formatted once.
fn sentence(rule: &Rule, parts: &[&str]) -> Arc<str> {
    let mut s =
        String::with_capacity(rule.name.len() + 2 + parts.iter().map(|p| p.len()).sum::<usize>());
    s.push_str(&rule.name);
    s.push_str(": ");
    parts.iter().for_each(|p| s.push_str(p));
    Arc::from(s)
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
        SkipReason::BetterCampaignPrice => {
            "a campaign price worth at least as much applies to its items instead \
             (campaign prices and reward discounts do not combine)"
        }
        SkipReason::CampaignPriceNotCombined => {
            "reward discounts worth more apply to its items instead \
             (campaign prices and reward discounts do not combine)"
        }
    }
}

/// `prune`: skip the lone trial run of the rules whose value decides nothing (see below);
/// `false` only to prove by test that pruning changes no answer.
pub(super) fn evaluate(
    cart: &[CartLine],
    ctx: &CustomerContext,
    rs: &CompiledRuleSet,
    prune: bool,
) -> Evaluation {
    let set = rs.rule_set();
    let strategy = set.policy.strategy;
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
            (None, Some(id)) if rs.pos_of(&id).is_none() => {
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
    // A voucher with its own value (a gift voucher's chosen value) sets the amount of the
    // fixed discounts of the rule it unlocks.
    let valued: Vec<Rule> = ctx
        .vouchers
        .iter()
        .filter_map(|v| {
            let (value, id) = (v.value_minor?, v.reward_id?);
            if voucher_for.get(&id) != Some(&v.code) {
                return None;
            }
            let mut rule = rs.rule_at(rs.pos_of(&id)?).clone();
            for b in &mut rule.benefits {
                if let super::Benefit::FixedDiscount { amount_minor, .. } = b {
                    *amount_minor = value;
                }
            }
            Some(rule)
        })
        .collect();
    let rule_at = |pos: usize| {
        let r = rs.rule_at(pos);
        valued.iter().find(|v| v.id == r.id).unwrap_or(r)
    };

    // Exclusive groups and rules that combine with the others (stackable, or in a stackable
    // group).
    let exclusive = |pos: usize| {
        rs.group_at(pos)
            .filter(|g| set.policy.groups[*g].mode == GroupMode::Exclusive)
    };
    let stacks = |(pos, r): Placed| {
        r.stackable
            || rs
                .group_at(pos)
                .is_some_and(|g| set.policy.groups[g].mode == GroupMode::Stackable)
    };
    // The value of a rule alone decides only between the members of an exclusive group, between
    // non-stackable rules and the stack, and under a rule limit per transaction. A rule in no
    // exclusive group that stacks needs no lone trial when there is no rule limit: it goes
    // straight into the stack (deferred), and only if it gives nothing there is it tried alone,
    // to learn whether it would give nothing alone too (and why) — a benefit gives no more on
    // the lower amounts left by other rules, so a rule that gives something in the stack gives
    // something alone, and a rule that gives nothing alone gives nothing in the stack and
    // changes nothing for the others (proved by `pruned_and_unpruned_evaluation_agree`).
    let prune = prune && set.policy.max_rules_per_transaction.is_none();
    let mut deferred: Vec<Placed> = Vec::new();

    // Each eligible rule that reaches a line is tried alone on the cart to learn its value.
    let candidate_lines = rs.candidate_lines(cart);
    let combine = set.policy.combine_campaign_products;
    let mut view = CartView::new(cart, ctx.earn_rate, rs.len(), combine);
    let words = view.words;
    let mut not_applied = NotAppliedSlots((0..rs.len()).map(|_| None).collect());
    let mut trial = Applied::default();
    let mut candidates: Vec<(Placed, Value)> = Vec::new();
    // Points payment rules: not discounts; decided on the cart after the discounts.
    let mut payments: Vec<Placed> = Vec::new();
    // Eligible rules reaching the cart: campaign prices, and the rewards and bonuses to try.
    let mut campaign: Vec<Placed> = Vec::new();
    let mut eligible: Vec<Placed> = Vec::new();
    for pos in 0..rs.len() {
        let rule = rule_at(pos);
        if let Some(r) = ineligible(rule, ctx, local, &voucher_for) {
            not_applied.skip_said(rs, pos, rule, r);
            continue;
        }
        let reach = Lines(&candidate_lines[pos * words..(pos + 1) * words]);
        if !reach.any() || !view.prepare(pos, rule, reach) {
            not_applied.skip_said(rs, pos, rule, SkipReason::NoMatchingItems);
            continue;
        }
        // A cart condition says which part failed (a sentence of this cart).
        if let Some(why) = rule.condition.as_ref().and_then(|c| c.unmet(cart)) {
            not_applied.skip(pos, rule, SkipReason::CartConditionNotMet, || {
                sentence(rule, &[&why])
            });
            continue;
        }
        // Campaign prices: applied first, outside the resolution of the rewards.
        if rule.kind == RuleKind::CampaignProduct {
            campaign.push((pos, rule));
            continue;
        }
        if rule.benefits.iter().any(|b| b.is_points_payment()) {
            payments.push((pos, rule));
            continue;
        }
        eligible.push((pos, rule));
    }
    view.price_campaign(campaign, ctx);
    for (pos, rule) in eligible {
        if prune && exclusive(pos).is_none() && stacks((pos, rule)) {
            deferred.push((pos, rule));
            continue;
        }
        apply(&[(pos, rule)], &view, ctx, rs, Run::Trial, &mut trial);
        if let Some((_, r)) = trial.empty.first() {
            not_applied.skip_said(rs, pos, rule, *r);
            continue;
        }
        candidates.push(((pos, rule), trial.value()));
    }

    // Exclusive groups: one winner each. A rule listed in several groups counts in the first.
    let mut winners: Vec<Option<(Placed, Value)>> = vec![None; set.policy.groups.len()];
    for c in &candidates {
        if let Some(g) = exclusive(c.0.0) {
            let w = winners[g].get_or_insert(*c);
            if rank(strategy, ranked(c), ranked(w)) == Ordering::Less {
                *w = *c;
            }
        }
    }
    let mut survivors = Vec::with_capacity(candidates.len());
    for c in candidates {
        if let Some(g) = exclusive(c.0.0)
            && let Some(((_, w), _)) = winners[g]
            && w.id != c.0.1.id
        {
            let group = set.policy.groups[g].name.as_str();
            not_applied.skip(c.0.0, c.0.1, SkipReason::LostExclusiveGroup, || {
                sentence(c.0.1, &["group ", group, " applies ", &w.name, " instead"])
            });
            continue;
        }
        survivors.push(c);
    }

    // Non-stackable rules apply alone: the best of them against everything stackable together.
    let (mut stackable, lone): (Vec<_>, Vec<_>) = survivors.into_iter().partition(|c| stacks(c.0));
    // The stack applied in full, kept when it is also the final answer.
    let mut stack_applied: Option<(Vec<usize>, Applied)> = None;
    if !deferred.is_empty() {
        let mut rules: Vec<Placed> = stackable.iter().map(|c| c.0).collect();
        rules.extend_from_slice(&deferred);
        rules.sort_unstable_by_key(|r| r.0);
        let mut applied = Applied::default();
        apply(&rules, &view, ctx, rs, Run::Stack, &mut applied);
        // `applied.empty` and `deferred` are both in position order.
        let mut empty = applied.empty.iter().map(|e| e.0).peekable();
        let mut dropped: Vec<usize> = Vec::new();
        for &(pos, rule) in &deferred {
            while empty.next_if(|p| *p < pos).is_some() {}
            if empty.next_if_eq(&pos).is_none() {
                // Gave something in the stack; its lone value decides nothing.
                stackable.push(((pos, rule), (0, 0)));
                continue;
            }
            apply(&[(pos, rule)], &view, ctx, rs, Run::Trial, &mut trial);
            if let Some((_, r)) = trial.empty.first() {
                not_applied.skip_said(rs, pos, rule, *r);
                dropped.push(pos);
            } else {
                stackable.push(((pos, rule), trial.value()));
            }
        }
        if !dropped.is_empty() {
            applied
                .empty
                .retain(|(p, _)| dropped.binary_search(p).is_err());
        }
        stackable.sort_unstable_by_key(|c| c.0.0);
        stack_applied = Some((stackable.iter().map(|c| c.0.0).collect(), applied));
    }
    let mut chosen: Vec<(Placed, Value)> = stackable.clone();
    if let Some(best) = lone
        .iter()
        .copied()
        .min_by(|a, b| rank(strategy, ranked(a), ranked(b)))
    {
        let stack_value = match &stack_applied {
            Some((_, applied)) => applied.value(),
            None => {
                let stack_rules: Vec<Placed> = stackable.iter().map(|c| c.0).collect();
                let mut applied = Applied::default();
                apply(&stack_rules, &view, ctx, rs, Run::Stack, &mut applied);
                let value = applied.value();
                stack_applied = Some((stack_rules.iter().map(|r| r.0).collect(), applied));
                value
            }
        };
        let stack_priority = stackable.iter().map(|c| c.0.1.priority).max();
        let lone_wins = match stack_priority {
            None => true,
            Some(p) => {
                let by_priority = best.0.1.priority.cmp(&p);
                let by_value = best.1.cmp(&stack_value);
                match strategy {
                    Strategy::Priority => by_priority.then(by_value),
                    Strategy::BestForCustomer => by_value.then(by_priority),
                }
                .is_gt()
            }
        };
        let mut lose = |(pos, rule): Placed, winner: &str| {
            not_applied.skip(pos, rule, SkipReason::NotStackable, || {
                sentence(rule, &["applies alone; ", winner, " applies instead"])
            });
        };
        if lone_wins {
            for c in lone.iter().chain(&stackable) {
                if c.0.1.id != best.0.1.id {
                    lose(c.0, &best.0.1.name);
                }
            }
            chosen = vec![best];
        } else {
            for c in &lone {
                lose(c.0, "the stackable rules");
            }
        }
    }

    // At most N rules per transaction, the best by the strategy.
    if let Some(max) = set.policy.max_rules_per_transaction {
        chosen.sort_by(|a, b| rank(strategy, ranked(a), ranked(b)));
        for ((pos, rule), _) in chosen.iter().skip(max as usize) {
            not_applied.skip_said(rs, *pos, rule, SkipReason::TransactionRuleLimit);
        }
        chosen.truncate(max as usize);
    }
    // Application order: priority, then id, which is the order of the positions.
    let mut order: Vec<Placed> = chosen.into_iter().map(|c| c.0).collect();
    order.sort_by_key(|(pos, _)| *pos);

    // The stack applied is the answer when it holds the rules chosen and no campaign price
    // is to be added.
    let st = match stack_applied {
        Some((positions, applied))
            if view.campaign.rules.is_empty()
                && positions.iter().eq(order.iter().map(|r| &r.0)) =>
        {
            applied
        }
        _ => {
            let mut applied = Applied::default();
            apply(&order, &view, ctx, rs, Run::Final, &mut applied);
            applied
        }
    };
    for (pos, r) in &st.empty {
        not_applied.skip_said(rs, *pos, rs.rule_at(*pos), *r);
    }

    // Points payment: what is left to pay after the discounts; the rule paying the most (then
    // the higher priority, then the smaller id) is offered, the others say why not.
    // (rule, (max points, their value, points of the points-only lines), (points, value) a step)
    type Payable<'r> = (Placed<'r>, (i64, i64, i64), (i64, i64));
    let mut best: Option<Payable> = None;
    for &(pos, rule) in &payments {
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
            None => not_applied.skip_said(rs, pos, rule, SkipReason::ThresholdNotReached),
            Some((p, step)) => {
                let better = best.is_none_or(|((_, b), bp, _)| {
                    (p.1, rule.priority, std::cmp::Reverse(rule.id))
                        > (bp.1, b.priority, std::cmp::Reverse(b.id))
                });
                if better {
                    best = Some(((pos, rule), p, step));
                }
            }
        }
    }
    let chosen_payment = best.map(|((_, r), _, _)| r.id);
    if let Some(((_, winner), _, _)) = best {
        for &(pos, rule) in &payments {
            if rule.id != winner.id && not_applied.get(pos).is_none() {
                not_applied.skip(pos, rule, SkipReason::PointsPaymentNotChosen, || {
                    sentence(
                        rule,
                        &[&winner.name, " lets the customer pay more with points"],
                    )
                });
            }
        }
    }

    let mut out = Evaluation::default();
    for (pos, discount, points) in &st.totals {
        let rule = rule_at(*pos);
        let voucher = voucher_for.get(&rule.id).cloned();
        let mut explanation = rs.applied_said(*pos, rule);
        if let Some(code) = &voucher {
            explanation.push_str(" (voucher ");
            explanation.push_str(code);
            explanation.push(')');
        }
        out.applied.push(AppliedRule {
            rule_id: rule.id,
            discount_minor: *discount,
            points: *points,
            explanation,
            voucher_code: voucher,
        });
    }
    if let Some((
        (_, rule),
        (max_points, max_value, only_points),
        (points_per_step, value_per_step),
    )) = best
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
                if st.totals.iter().any(|t| rs.rule_at(t.0).id == rid)
                    || chosen_payment == Some(rid)
                {
                    out.vouchers_to_redeem.push(v.code.clone());
                    None
                } else {
                    Some(
                        rs.pos_of(&rid)
                            .and_then(|pos| not_applied.get(pos))
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
        forgone,
        points,
        cart_points,
        ..
    } = st;
    for (i, (((line, discounts), forgone), points_detail)) in cart
        .iter()
        .zip(discounts)
        .zip(forgone)
        .zip(points)
        .enumerate()
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
            forgone,
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
    out.not_applied = not_applied.into_sorted(rs);
    out
}

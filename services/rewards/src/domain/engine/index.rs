//! A rule set prepared once for many evaluations: rules deduplicated and in application order,
//! lookups by id and group, the rules each product, group and brand can reach, and the
//! sentences of the static "not applied" reasons. The cache of a partner's rules holds one.
use super::{Benefit, Rule, RuleSet, SkipReason};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// Every `SkipReason`, in declaration order: `reason as usize` indexes the sentence table.
pub(super) const REASONS: [SkipReason; 18] = [
    SkipReason::OutsideValidity,
    SkipReason::OutsideSchedule,
    SkipReason::BusinessUnitNotIncluded,
    SkipReason::ChannelNotIncluded,
    SkipReason::SegmentNotMatched,
    SkipReason::LevelNotMatched,
    SkipReason::VoucherRequired,
    SkipReason::CustomerLimitReached,
    SkipReason::PeriodLimitReached,
    SkipReason::BudgetExhausted,
    SkipReason::NoMatchingItems,
    SkipReason::ThresholdNotReached,
    SkipReason::LostExclusiveGroup,
    SkipReason::NotStackable,
    SkipReason::TransactionRuleLimit,
    SkipReason::NothingLeftToDiscount,
    SkipReason::CartConditionNotMet,
    SkipReason::PointsPaymentNotChosen,
];

/// The rules a cart line can reach by its product, group or brand; rules with a cart-wide
/// benefit reach every line.
#[derive(Debug, Default)]
struct TargetIndex {
    cart_wide: Vec<u32>,
    by_product: HashMap<String, Vec<u32>>,
    by_group: HashMap<String, Vec<u32>>,
    by_brand: HashMap<String, Vec<u32>>,
}

impl TargetIndex {
    fn build(rules: &[&Rule]) -> TargetIndex {
        let mut ix = TargetIndex::default();
        for (pos, rule) in rules.iter().enumerate() {
            let pos = pos as u32;
            let add = |map: &mut HashMap<String, Vec<u32>>, key: &String| {
                let list = map.entry(key.clone()).or_default();
                if list.last() != Some(&pos) {
                    list.push(pos);
                }
            };
            let mut cart_wide = false;
            for b in &rule.benefits {
                let target = match b {
                    Benefit::PercentageDiscount { target, .. }
                    | Benefit::FixedDiscount { target, .. }
                    | Benefit::FixedPrice { target, .. }
                    | Benefit::UnitDiscount { target, .. }
                    | Benefit::BuyXGetY { target, .. }
                    | Benefit::SpendXSaveY { target, .. }
                    | Benefit::BonusPoints { target, .. }
                    | Benefit::SpendPoints { target, .. }
                    | Benefit::PointsMultiplier { target, .. } => target,
                    Benefit::FreeItem { product_id, .. } => {
                        add(&mut ix.by_product, product_id);
                        continue;
                    }
                    Benefit::PointsPayment { .. } => {
                        cart_wide = true;
                        continue;
                    }
                };
                // Indexed by every included code; exclusions only narrow what the exact check
                // (`targets_any`) then finds.
                if target.is_cart_wide() {
                    cart_wide = true;
                }
                target
                    .products
                    .iter()
                    .for_each(|k| add(&mut ix.by_product, k));
                target.groups.iter().for_each(|k| add(&mut ix.by_group, k));
                target.brands.iter().for_each(|k| add(&mut ix.by_brand, k));
            }
            if cart_wide {
                ix.cart_wide.push(pos);
            }
        }
        ix
    }
}

/// A `RuleSet` prepared for evaluation. `new` indexes it (for the cache of a partner's rules);
/// `naive` only orders it (what a single `evaluate` call needs).
#[derive(Debug)]
pub struct CompiledRuleSet<'a> {
    set: Cow<'a, RuleSet>,
    /// Positions in `set.rules`: one rule per id, in application order (priority, then id).
    order: Vec<usize>,
    /// Rule id → position in `order`.
    by_id: HashMap<Uuid, usize>,
    /// Rule id → its group (the first listing it).
    group_of: HashMap<Uuid, usize>,
    index: Option<TargetIndex>,
    /// Per position in `order`, "<name>: <reason sentence>" for every reason, shared by the
    /// evaluations instead of formatted each time.
    sentences: Option<Vec<Vec<Arc<str>>>>,
}

impl CompiledRuleSet<'static> {
    /// Indexes an owned rule set.
    pub fn new(set: RuleSet) -> Self {
        CompiledRuleSet::build(Cow::Owned(set), true)
    }
}

impl<'a> CompiledRuleSet<'a> {
    /// Orders a borrowed rule set without indexing it (every rule is tried on every cart).
    pub fn naive(set: &'a RuleSet) -> Self {
        CompiledRuleSet::build(Cow::Borrowed(set), false)
    }

    fn build(set: Cow<'a, RuleSet>, indexed: bool) -> Self {
        let mut order: Vec<usize> = (0..set.rules.len()).collect();
        // Ids are unique in a valid rule set (validate_policy); a repeated id keeps one rule.
        order.sort_by_key(|i| set.rules[*i].id);
        order.dedup_by_key(|i| set.rules[*i].id);
        order.sort_by(|a, b| {
            let (a, b) = (&set.rules[*a], &set.rules[*b]);
            b.priority.cmp(&a.priority).then(a.id.cmp(&b.id))
        });
        let by_id = order
            .iter()
            .enumerate()
            .map(|(pos, i)| (set.rules[*i].id, pos))
            .collect();
        let mut group_of = HashMap::new();
        for (g, group) in set.policy.groups.iter().enumerate() {
            for id in &group.rule_ids {
                group_of.entry(*id).or_insert(g);
            }
        }
        let (index, sentences) = if indexed {
            let rules: Vec<&Rule> = order.iter().map(|i| &set.rules[*i]).collect();
            let sentences = rules
                .iter()
                .map(|r| {
                    REASONS
                        .iter()
                        .map(|reason| Arc::from(sentence(r, super::resolution::say(*reason))))
                        .collect()
                })
                .collect();
            (Some(TargetIndex::build(&rules)), Some(sentences))
        } else {
            (None, None)
        };
        CompiledRuleSet {
            set,
            order,
            by_id,
            group_of,
            index,
            sentences,
        }
    }

    pub fn rule_set(&self) -> &RuleSet {
        &self.set
    }

    /// The rules in application order.
    pub(super) fn ordered(&self) -> Vec<&Rule> {
        self.order.iter().map(|i| &self.set.rules[*i]).collect()
    }

    pub(super) fn get(&self, id: &Uuid) -> Option<&Rule> {
        self.by_id
            .get(id)
            .map(|pos| &self.set.rules[self.order[*pos]])
    }

    pub(super) fn group_of(&self, id: &Uuid) -> Option<usize> {
        self.group_of.get(id).copied()
    }

    /// Per position in application order, whether the rule may target a line of `cart`
    /// (`false` = it certainly targets none); everything when not indexed.
    pub(super) fn reachable(&self, cart: &[super::CartLine]) -> Vec<bool> {
        let Some(ix) = &self.index else {
            return vec![true; self.order.len()];
        };
        let mut out = vec![false; self.order.len()];
        if cart.iter().all(|l| l.no_reward_application) {
            return out;
        }
        for p in &ix.cart_wide {
            out[*p as usize] = true;
        }
        let mut mark = |list: Option<&Vec<u32>>| {
            for p in list.into_iter().flatten() {
                out[*p as usize] = true;
            }
        };
        for line in cart.iter().filter(|l| !l.no_reward_application) {
            mark(ix.by_product.get(&line.product_id));
            if let Some(g) = &line.group {
                mark(ix.by_group.get(g));
            }
            if let Some(b) = &line.brand {
                mark(ix.by_brand.get(b));
            }
        }
        out
    }

    /// "<name>: <why>" of the rule for a static reason, shared when prepared.
    pub(super) fn said(&self, rule: &Rule, reason: SkipReason) -> Arc<str> {
        match self.by_id.get(&rule.id) {
            Some(pos) => self.said_at(*pos, rule, reason),
            None => Arc::from(sentence(rule, super::resolution::say(reason))),
        }
    }

    /// `said` for the rule at `pos` in application order.
    pub(super) fn said_at(&self, pos: usize, rule: &Rule, reason: SkipReason) -> Arc<str> {
        match &self.sentences {
            Some(s) => s[pos][reason as usize].clone(),
            None => Arc::from(sentence(rule, super::resolution::say(reason))),
        }
    }
}

pub(super) fn sentence(rule: &Rule, why: &str) -> String {
    format!("{}: {why}", rule.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_at_its_own_index() {
        for (i, r) in REASONS.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
        assert_eq!(
            REASONS.len(),
            SkipReason::PointsPaymentNotChosen as usize + 1
        );
    }
}

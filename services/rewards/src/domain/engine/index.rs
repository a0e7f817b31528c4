//! A rule set prepared once for many evaluations: rules deduplicated and in application order,
//! lookups by id and group, the rules each product, group and brand can reach, and the
//! sentences of the static "not applied" reasons. The cache of a partner's rules holds one.
use super::lines;
use super::{Benefit, CartLine, Rule, RuleSet, SkipReason, benefits};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// Every `SkipReason`, in declaration order: `reason as usize` indexes the sentence table.
pub(super) const REASONS: [SkipReason; 20] = [
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
    SkipReason::BetterCampaignPrice,
    SkipReason::CampaignPriceNotCombined,
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
                // (`benefits::reaches`) then finds.
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
    /// Per position in `order`: the rule's group (the first listing it).
    group_at: Vec<Option<usize>>,
    /// Positions in `order` sorted by rule id (the order of the "not applied" list).
    by_id_order: Vec<usize>,
    index: Option<TargetIndex>,
    /// Per position in `order`, "<name>: <reason sentence>" for every reason, shared by the
    /// evaluations instead of formatted each time.
    sentences: Option<Vec<Vec<Arc<str>>>>,
    /// Per position in `order`, the explanations of an applied rule: of the rule
    /// ("<name>: <benefit>; <benefit>") and of each benefit ("<name>: <benefit>").
    applied: Option<Vec<(String, Vec<Arc<str>>)>>,
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
        let group_at = order
            .iter()
            .map(|i| group_of.get(&set.rules[*i].id).copied())
            .collect();
        let mut by_id_order: Vec<usize> = (0..order.len()).collect();
        by_id_order.sort_by_key(|pos| set.rules[order[*pos]].id);
        let (index, sentences, applied) = if indexed {
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
            let applied = rules
                .iter()
                .map(|r| {
                    (
                        applied_sentence(r),
                        benefit_sentences(r).map(Arc::from).collect(),
                    )
                })
                .collect();
            (
                Some(TargetIndex::build(&rules)),
                Some(sentences),
                Some(applied),
            )
        } else {
            (None, None, None)
        };
        CompiledRuleSet {
            set,
            order,
            by_id,
            group_at,
            by_id_order,
            index,
            sentences,
            applied,
        }
    }

    pub fn rule_set(&self) -> &RuleSet {
        &self.set
    }

    /// The rule with this id.
    pub fn rule(&self, id: &Uuid) -> Option<&Rule> {
        self.by_id
            .get(id)
            .map(|&position| &self.set.rules[self.order[position]])
    }

    /// Number of rules (one per id).
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }

    /// The rule at `pos` in application order (priority, then id).
    pub(super) fn rule_at(&self, pos: usize) -> &Rule {
        &self.set.rules[self.order[pos]]
    }

    /// Position in application order of the rule with this id.
    pub(super) fn pos_of(&self, id: &Uuid) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    pub(super) fn group_at(&self, pos: usize) -> Option<usize> {
        self.group_at[pos]
    }

    /// Positions in application order, sorted by rule id.
    pub(super) fn by_id_order(&self) -> &[usize] {
        &self.by_id_order
    }

    /// Per position in application order, the lines of `cart` the rule may reach, as a line
    /// set of `lines::words(cart.len())` words (empty = it certainly reaches none); every line
    /// when not indexed.
    pub(super) fn candidate_lines(&self, cart: &[CartLine]) -> Vec<u64> {
        let w = lines::words(cart.len());
        let mut out = vec![0u64; self.order.len() * w];
        let Some(ix) = &self.index else {
            for pos in 0..self.order.len() {
                for i in 0..cart.len() {
                    lines::set(&mut out[pos * w..], i);
                }
            }
            return out;
        };
        let mut mark = |list: Option<&Vec<u32>>, i: usize| {
            for p in list.into_iter().flatten() {
                lines::set(&mut out[*p as usize * w..], i);
            }
        };
        for (i, line) in cart.iter().enumerate() {
            if line.no_reward_application {
                continue;
            }
            mark(Some(&ix.cart_wide), i);
            mark(ix.by_product.get(&line.product_id), i);
            if let Some(g) = &line.group {
                mark(ix.by_group.get(g), i);
            }
            if let Some(b) = &line.brand {
                mark(ix.by_brand.get(b), i);
            }
        }
        out
    }

    /// The explanation of the rule at `pos` when it applies.
    pub(super) fn applied_said(&self, pos: usize, rule: &Rule) -> String {
        match &self.applied {
            // A rule changed for this cart (a gift voucher's own value) is said afresh.
            Some(a) if std::ptr::eq(rule, self.rule_at(pos)) => a[pos].0.clone(),
            _ => applied_sentence(rule),
        }
    }

    /// The explanation of the discounts and points of benefit `k` of the rule at `pos`.
    pub(super) fn benefit_said(&self, pos: usize, k: usize, rule: &Rule) -> Arc<str> {
        match &self.applied {
            Some(a) if std::ptr::eq(rule, self.rule_at(pos)) => a[pos].1[k].clone(),
            _ => Arc::from(benefit_sentences(rule).nth(k).unwrap_or_default()),
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

fn applied_sentence(rule: &Rule) -> String {
    let what: Vec<String> = rule.benefits.iter().map(benefits::describe).collect();
    sentence(rule, &what.join("; "))
}

fn benefit_sentences(rule: &Rule) -> impl Iterator<Item = String> + '_ {
    rule.benefits
        .iter()
        .map(|b| sentence(rule, &benefits::describe(b)))
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
            SkipReason::CampaignPriceNotCombined as usize + 1
        );
    }
}

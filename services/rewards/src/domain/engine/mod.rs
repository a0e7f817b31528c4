//! The pure evaluation engine: (cart, customer context, a partner's active rules) → effects
//! (line discounts, points to earn, vouchers to redeem) with an explanation for every rule that
//! applied and every rule that did not. No I/O; the same input always gives the same output.
//!
//! Money is in minor units (`i64`), percentages and multipliers in basis points
//! (10000 = 100 % / ×1). Arithmetic saturates and clamps, so no input makes it panic.
mod benefits;
mod convert;
mod index;
mod lines;
mod resolution;
mod validate;

#[cfg(test)]
mod tests;

use super::Validity;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

pub use convert::{from_campaign_product, from_purchase_bonus, from_reward};
pub use index::CompiledRuleSet;
pub use validate::{validate_policy, validate_rule};

// ---------------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------------

/// One line of the cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLine {
    /// Product id or SKU.
    pub product_id: String,
    pub group: Option<String>,
    pub brand: Option<String>,
    pub quantity: u32,
    /// Price of one unit in minor units; a negative price is treated as 0.
    pub unit_price_minor: i64,
    /// Item type that gets no reward application: never discounted, no bonus points.
    pub no_reward_application: bool,
    /// Item that may be paid only with points: reported as such and earns no points.
    pub pay_only_with_points: bool,
}

impl CartLine {
    pub fn gross_minor(&self) -> i64 {
        self.unit_price_minor
            .max(0)
            .saturating_mul(i64::from(self.quantity))
    }
}

/// A voucher the customer presented, already looked up by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresentedVoucher {
    pub code: String,
    /// The reward the voucher was issued from; `None` when the code is unknown or not usable
    /// (expired, redeemed, cancelled: the caller says so in `rejection`).
    pub reward_id: Option<Uuid>,
    /// Why the caller already knows the voucher is unusable (a reason code), if it does.
    pub rejection: Option<String>,
    /// The voucher's own value in minor units (a gift voucher's chosen value): it replaces
    /// the amount of the fixed discounts of the rule the voucher unlocks.
    #[serde(default)]
    pub value_minor: Option<i64>,
}

/// What a rule has been used so far, as the store knows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleUsage {
    /// Times this customer has used the rule.
    pub customer_uses: u32,
    /// Times the rule has been used in its current limit period (all customers).
    pub period_uses: u32,
    /// Budget left in the rule's budget unit (minor units or points); `None` = no budget.
    pub budget_remaining: Option<i64>,
}

/// Base earn rate: `points` per `per_spend_minor` of the net amount (floor, per line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarnRate {
    pub points: i64,
    pub per_spend_minor: i64,
}

impl Default for EarnRate {
    fn default() -> Self {
        EarnRate {
            points: 0,
            per_spend_minor: 1,
        }
    }
}

/// Who buys, where and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerContext {
    pub customer_id: Option<Uuid>,
    pub segment_ids: Vec<Uuid>,
    /// Membership level (tier) id.
    pub level_id: Option<Uuid>,
    pub vouchers: Vec<PresentedVoucher>,
    pub at: DateTime<Utc>,
    /// Offset of the store's local time from UTC, for days-of-week and hours windows.
    pub utc_offset_minutes: i32,
    pub business_unit: Option<String>,
    pub channel: Option<String>,
    pub earn_rate: EarnRate,
    /// Usage so far per rule id; a missing rule has no usage and no budget limit.
    pub usage: BTreeMap<Uuid, RuleUsage>,
}

/// What a benefit applies to: a product scope. A line matches when its product, its group or
/// its brand is listed, and its product is not excluded; with nothing listed, every line of
/// the cart matches except the excluded products.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Target {
    pub products: Vec<String>,
    pub groups: Vec<String>,
    pub brands: Vec<String>,
    /// Never matched, even when listed through a group or brand.
    pub excluded_products: Vec<String>,
}

impl Target {
    /// The whole cart.
    pub fn cart() -> Target {
        Target::default()
    }

    pub fn products(ids: Vec<String>) -> Target {
        Target {
            products: ids,
            ..Target::default()
        }
    }

    pub fn groups(ids: Vec<String>) -> Target {
        Target {
            groups: ids,
            ..Target::default()
        }
    }

    pub fn brands(ids: Vec<String>) -> Target {
        Target {
            brands: ids,
            ..Target::default()
        }
    }

    /// The same scope without these products.
    pub fn excluding(mut self, ids: Vec<String>) -> Target {
        self.excluded_products = ids;
        self
    }

    /// Nothing listed: every line but the excluded products.
    pub fn is_cart_wide(&self) -> bool {
        self.products.is_empty() && self.groups.is_empty() && self.brands.is_empty()
    }

    pub fn matches(&self, line: &CartLine) -> bool {
        if self.excluded_products.contains(&line.product_id) {
            return false;
        }
        let has = |ids: &[String], v: &Option<String>| v.as_ref().is_some_and(|v| ids.contains(v));
        self.is_cart_wide()
            || self.products.contains(&line.product_id)
            || has(&self.groups, &line.group)
            || has(&self.brands, &line.brand)
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (what, ids) in [
            ("products", &self.products),
            ("groups", &self.groups),
            ("brands", &self.brands),
        ] {
            if !ids.is_empty() {
                parts.push(format!("{what} {}", ids.join(", ")));
            }
        }
        let mut out = if parts.is_empty() {
            "the cart".to_owned()
        } else {
            parts.join("; ")
        };
        if !self.excluded_products.is_empty() {
            out.push_str(&format!(
                " except products {}",
                self.excluded_products.join(", ")
            ));
        }
        out
    }
}

/// What a rule gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Benefit {
    /// `basis_points` off each targeted line (1..=10000).
    PercentageDiscount { basis_points: u32, target: Target },
    /// `amount_minor` off the targeted lines together, split in proportion to their amounts.
    FixedDiscount { amount_minor: i64, target: Target },
    /// Each targeted unit costs `unit_price_minor` (never more than its own price).
    FixedPrice {
        unit_price_minor: i64,
        target: Target,
    },
    /// Each targeted unit gets `off`; with `max_units`, only that many units per transaction,
    /// the dearest first (by net unit price, ties by line index).
    UnitDiscount {
        off: UnitOff,
        max_units: Option<u32>,
        target: Target,
    },
    /// Up to `quantity` units of `product_id` in the cart are free.
    FreeItem { product_id: String, quantity: u32 },
    /// Of each `buy + get` targeted units (dearest first), the `get` cheapest ones get
    /// `discount_basis_points` off (10000 = free).
    BuyXGetY {
        buy: u32,
        get: u32,
        discount_basis_points: u32,
        target: Target,
    },
    /// When the targeted lines reach `spend_minor`, `save_minor` off them; with `repeat`, once
    /// per full `spend_minor`.
    SpendXSaveY {
        spend_minor: i64,
        save_minor: i64,
        repeat: bool,
        target: Target,
    },
    /// `points` once when a targeted line is in the cart, or with `per_spend_minor`, `points`
    /// per full `per_spend_minor` of the targeted lines' net total (as `SpendPoints` ×1).
    BonusPoints {
        points: i64,
        per_spend_minor: Option<i64>,
        target: Target,
    },
    /// A purchase bonus: floor(targeted net total / `per_spend_minor`) × `points` ×
    /// `multiplier_basis_points` / 10000 (floor), shared over the targeted lines in
    /// proportion to their net amounts (the remainder to the first lines).
    SpendPoints {
        points: i64,
        per_spend_minor: i64,
        multiplier_basis_points: u32,
        target: Target,
    },
    /// The base points of targeted lines × `multiplier_basis_points` / 10000 (≥ 10000).
    PointsMultiplier {
        multiplier_basis_points: u32,
        target: Target,
    },
    /// Part of the cart may be paid with points, in whole steps of `points_per_step` points =
    /// `value_per_step_minor`: lines payable only with points in full (the last step rounded
    /// up), the other lines up to `max_cart_basis_points` of their net amount (0 = all), at
    /// most `max_points`. Lines with no reward application are not payable with points. Not a
    /// discount: the engine reports it in `Evaluation::points_payable`; a rule with it has no
    /// other benefit.
    PointsPayment {
        points_per_step: i64,
        value_per_step_minor: i64,
        max_points: Option<i64>,
        max_cart_basis_points: u32,
    },
}

impl Benefit {
    pub fn is_points_payment(&self) -> bool {
        matches!(self, Benefit::PointsPayment { .. })
    }

    pub fn is_points(&self) -> bool {
        matches!(
            self,
            Benefit::BonusPoints { .. }
                | Benefit::SpendPoints { .. }
                | Benefit::PointsMultiplier { .. }
        )
    }
}

/// What one unit gets off in a `UnitDiscount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum UnitOff {
    /// Basis points of the unit's price (1..=10000).
    BasisPoints(u32),
    /// An amount in minor units, never more than the unit's price.
    AmountMinor(i64),
    /// The unit costs this (never more than its own price).
    PriceMinor(i64),
}

/// Days-of-week and hours window in the store's local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Bit 0 = Monday … bit 6 = Sunday; 0 or 0x7f = every day.
    pub days_of_week: u8,
    /// Minutes after local midnight, `from` inclusive, `until` exclusive.
    pub hours: Option<(u16, u16)>,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            days_of_week: 0x7f,
            hours: None,
        }
    }
}

/// Who may get a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eligibility {
    /// Any of these segments; empty = everyone.
    pub segment_ids: Vec<Uuid>,
    /// Any of these membership levels; empty = every level (and none).
    pub level_ids: Vec<Uuid>,
    /// Applies only when a voucher of this rule is presented.
    pub requires_voucher: bool,
}

/// Caps and limits of one rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// At most this much discount (minor units) per transaction.
    pub max_discount_per_transaction_minor: Option<i64>,
    /// At most this many points per transaction.
    pub max_points_per_transaction: Option<i64>,
    /// At most this many applications (buy-X-get-Y sets, spend-X steps, free units).
    pub max_applications_per_transaction: Option<u32>,
    pub max_uses_per_customer: Option<u32>,
    pub max_uses_per_period: Option<u32>,
}

/// What a cart must contain for a rule to apply; every part set must hold. Lines flagged
/// no-reward-application count towards none of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CartCondition {
    /// The gross amount (before discounts) of the `spend_target` lines must reach this.
    pub minimum_spend_minor: Option<i64>,
    /// The lines whose amounts count towards `minimum_spend_minor` (the cart by default).
    pub spend_target: Target,
    /// At least this many units in the cart; 0 = no minimum.
    pub minimum_quantity: u64,
    /// Each: at least this many units of the lines in the target.
    pub required: Vec<(Target, u64)>,
}

impl CartCondition {
    /// `None` when `cart` fulfils the condition, else a sentence saying which part failed.
    pub fn unmet(&self, cart: &[CartLine]) -> Option<String> {
        let counted = || cart.iter().filter(|l| !l.no_reward_application);
        let units = |t: &Target| -> u64 {
            counted()
                .filter(|l| t.matches(l))
                .map(|l| u64::from(l.quantity))
                .sum()
        };
        if let Some(min) = self.minimum_spend_minor {
            let spend = counted()
                .filter(|l| self.spend_target.matches(l))
                .fold(0i64, |s, l| s.saturating_add(l.gross_minor()));
            if spend < min {
                let what = if self.spend_target.is_cart_wide()
                    && self.spend_target.excluded_products.is_empty()
                {
                    "cart value".to_owned()
                } else {
                    format!("spend on {}", self.spend_target.describe())
                };
                return Some(format!(
                    "{what} {} is below the minimum {}",
                    money(spend),
                    money(min)
                ));
            }
        }
        if self.minimum_quantity > 0 {
            let n = units(&Target::cart());
            if n < self.minimum_quantity {
                return Some(format!(
                    "the cart has {}, fewer than the minimum {}",
                    plural(n, "unit"),
                    self.minimum_quantity
                ));
            }
        }
        for (target, min) in &self.required {
            let n = units(target);
            if n < *min {
                return Some(format!(
                    "the cart has {} of {}, fewer than the required {min}",
                    plural(n, "unit"),
                    target.describe()
                ));
            }
        }
        None
    }
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Minor units as `12.34`.
pub(crate) fn money(m: i64) -> String {
    let sign = if m < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", (m / 100).abs(), (m % 100).abs())
}

/// Kind of a rule: a reward, a purchase bonus or a campaign product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RuleKind {
    Reward,
    PurchaseBonus,
    /// A campaign price (an entry of the discount catalogue). Not a reward: campaign prices
    /// are applied first, on the fresh cart, outside the resolution of the rewards (priority,
    /// groups, stacking and the rule limit per transaction do not concern them), and combine
    /// with the reward discounts as `Policy::combine_campaign_products` says. Only its money
    /// benefits apply.
    CampaignProduct,
}

/// A partner's active rule as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: Uuid,
    pub kind: RuleKind,
    pub name: String,
    pub benefits: Vec<Benefit>,
    /// Higher first; ties broken by id.
    pub priority: i32,
    /// `false`: the rule combines with no other rule (it applies alone or not at all).
    pub stackable: bool,
    pub eligibility: Eligibility,
    pub validity: Validity,
    pub schedule: Schedule,
    /// Empty = every business unit.
    pub business_units: Vec<String>,
    /// Empty = every channel.
    pub channels: Vec<String>,
    pub limits: Limits,
    /// What the cart must contain for the rule to apply; `None` = nothing.
    pub condition: Option<CartCondition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupMode {
    /// At most one member applies.
    Exclusive,
    /// All applicable members apply together.
    Stackable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleGroup {
    pub name: String,
    pub mode: GroupMode,
    pub rule_ids: Vec<Uuid>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    /// Conflicts go to the higher priority, then the better value, then the smaller id.
    #[default]
    Priority,
    /// Conflicts go to the better value for the customer, then priority, then id.
    BestForCustomer,
}

/// A partner's resolution settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub strategy: Strategy,
    pub groups: Vec<RuleGroup>,
    /// At most this many rules apply to one transaction (the first by the strategy).
    pub max_rules_per_transaction: Option<u32>,
    /// `false`: on each line the better for the customer of the campaign prices and the
    /// reward discounts applies, not both (a tie goes to the campaign price); `true`: reward
    /// discounts apply on what is left after the campaign prices.
    #[serde(default)]
    pub combine_campaign_products: bool,
}

/// A partner's active rules and policy, held in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub policy: Policy,
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

/// One discount on one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineDiscount {
    pub rule_id: Uuid,
    pub amount_minor: i64,
    /// Benefit code, e.g. `PERCENTAGE_DISCOUNT`.
    pub reason: &'static str,
    /// Shared by every line the benefit discounts, and across evaluations of a prepared rule set.
    #[serde(serialize_with = "shared_str")]
    pub explanation: Arc<str>,
}

/// Points on one line (base earn or a bonus).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinePoints {
    /// `None` for the base earn rate.
    pub rule_id: Option<Uuid>,
    pub points: i64,
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineResult {
    pub index: usize,
    pub product_id: String,
    pub gross_minor: i64,
    pub discounts: Vec<LineDiscount>,
    /// Discounts the line did not get because campaign prices and reward discounts do not
    /// combine (`Policy::combine_campaign_products` false) and the other side was worth at
    /// least as much on this line: `reason` is `BETTER_CAMPAIGN_PRICE` (a reward discount) or
    /// `CAMPAIGN_PRICE_NOT_COMBINED` (a campaign price), the explanation the benefit's.
    pub forgone: Vec<LineDiscount>,
    pub total_minor: i64,
    pub points: i64,
    pub points_detail: Vec<LinePoints>,
    pub no_reward_application: bool,
    pub pay_only_with_points: bool,
}

/// Points not tied to a line (flat bonus points).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CartPoints {
    pub rule_id: Uuid,
    pub points: i64,
    pub explanation: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedRule {
    pub rule_id: Uuid,
    pub discount_minor: i64,
    pub points: i64,
    pub voucher_code: Option<String>,
    pub explanation: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedVoucher {
    pub code: String,
    pub reason: String,
}

/// Why a rule did not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SkipReason {
    OutsideValidity,
    OutsideSchedule,
    BusinessUnitNotIncluded,
    ChannelNotIncluded,
    SegmentNotMatched,
    LevelNotMatched,
    VoucherRequired,
    CustomerLimitReached,
    PeriodLimitReached,
    BudgetExhausted,
    NoMatchingItems,
    ThresholdNotReached,
    LostExclusiveGroup,
    NotStackable,
    TransactionRuleLimit,
    NothingLeftToDiscount,
    CartConditionNotMet,
    PointsPaymentNotChosen,
    /// A reward's discounts fell only on lines where a campaign price worth at least as much
    /// applies instead (campaign prices do not combine with reward discounts).
    BetterCampaignPrice,
    /// A campaign price fell only on lines where the reward discounts are worth more, and
    /// campaign prices do not combine with reward discounts.
    CampaignPriceNotCombined,
}

impl SkipReason {
    pub fn code(self) -> &'static str {
        match self {
            SkipReason::OutsideValidity => "OUTSIDE_VALIDITY",
            SkipReason::OutsideSchedule => "OUTSIDE_SCHEDULE",
            SkipReason::BusinessUnitNotIncluded => "BUSINESS_UNIT_NOT_INCLUDED",
            SkipReason::ChannelNotIncluded => "CHANNEL_NOT_INCLUDED",
            SkipReason::SegmentNotMatched => "SEGMENT_NOT_MATCHED",
            SkipReason::LevelNotMatched => "LEVEL_NOT_MATCHED",
            SkipReason::VoucherRequired => "VOUCHER_REQUIRED",
            SkipReason::CustomerLimitReached => "CUSTOMER_LIMIT_REACHED",
            SkipReason::PeriodLimitReached => "PERIOD_LIMIT_REACHED",
            SkipReason::BudgetExhausted => "BUDGET_EXHAUSTED",
            SkipReason::NoMatchingItems => "NO_MATCHING_ITEMS",
            SkipReason::ThresholdNotReached => "THRESHOLD_NOT_REACHED",
            SkipReason::LostExclusiveGroup => "LOST_EXCLUSIVE_GROUP",
            SkipReason::NotStackable => "NOT_STACKABLE",
            SkipReason::TransactionRuleLimit => "TRANSACTION_RULE_LIMIT",
            SkipReason::NothingLeftToDiscount => "NOTHING_LEFT_TO_DISCOUNT",
            SkipReason::CartConditionNotMet => "CART_CONDITION_NOT_MET",
            SkipReason::PointsPaymentNotChosen => "POINTS_PAYMENT_NOT_CHOSEN",
            SkipReason::BetterCampaignPrice => "BETTER_CAMPAIGN_PRICE",
            SkipReason::CampaignPriceNotCombined => "CAMPAIGN_PRICE_NOT_COMBINED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotApplied {
    pub rule_id: Uuid,
    pub reason: SkipReason,
    /// Shared: most sentences are the same for every evaluation of a prepared rule set.
    #[serde(serialize_with = "shared_str")]
    pub explanation: Arc<str>,
}

fn shared_str<S: serde::Serializer>(s: &Arc<str>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s)
}

/// How much of the cart the customer may pay with points (the points payment rule chosen).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PointsPayable {
    pub rule_id: Uuid,
    pub points_per_step: i64,
    pub value_per_step_minor: i64,
    /// Most points payable on this cart, a multiple of `points_per_step`.
    pub max_points: i64,
    /// What `max_points` pay (minor units); never more than the payable lines' total.
    pub max_value_minor: i64,
    /// Of `max_points`, what the lines payable only with points need.
    pub pay_only_with_points_points: i64,
    pub explanation: String,
}

/// Everything the evaluation decided.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    pub lines: Vec<LineResult>,
    pub gross_minor: i64,
    pub discount_minor: i64,
    /// Sum of the lines' totals; never negative.
    pub total_minor: i64,
    /// Points of all lines plus `cart_points`.
    pub points: i64,
    pub cart_points: Vec<CartPoints>,
    /// Applied rules in the order they were applied.
    pub applied: Vec<AppliedRule>,
    pub vouchers_to_redeem: Vec<String>,
    pub rejected_vouchers: Vec<RejectedVoucher>,
    /// Sorted by rule id.
    pub not_applied: Vec<NotApplied>,
    /// Indexes of the lines payable only with points.
    pub pay_only_with_points_lines: Vec<usize>,
    /// What may be paid with points, when a points payment rule applies (the one paying the
    /// most; ties by priority, then id).
    pub points_payable: Option<PointsPayable>,
}

/// Evaluates `cart` for `ctx` against `rules`. Pure and deterministic: the order of
/// `rules.rules` does not matter (ties are broken by rule id).
pub fn evaluate(cart: &[CartLine], ctx: &CustomerContext, rules: &RuleSet) -> Evaluation {
    resolution::evaluate(cart, ctx, &CompiledRuleSet::naive(rules), true)
}

/// `evaluate` against a rule set prepared once (`CompiledRuleSet::new`): the same answer,
/// without visiting the rules no line of the cart can reach.
pub fn evaluate_compiled(
    cart: &[CartLine],
    ctx: &CustomerContext,
    rules: &CompiledRuleSet,
) -> Evaluation {
    resolution::evaluate(cart, ctx, rules, true)
}

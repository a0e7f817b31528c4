//! Reward definitions: what a reward gives (every benefit), to whom, how often, out of which
//! budget, and its lifecycle (DRAFT → ACTIVE → ARCHIVED). Pure: no I/O.
use chrono::{DateTime, Utc};
use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{RewardType, Validity, check_name};

/// ErrorInfo reasons of broken reward rules.
pub mod reason {
    pub const REWARD_ARCHIVED: &str = "REWARD_ARCHIVED";
    pub const REWARD_BUDGET_EXHAUSTED: &str = "REWARD_BUDGET_EXHAUSTED";
}

/// An amount of money in minor units of its currency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    pub currency: String,
    pub minor: i64,
}

impl Amount {
    /// Checks the currency and that the amount is at least `min`.
    pub fn validate(&self, v: &mut Violations, field: &str, min: i64) {
        if !valid_currency(&self.currency) {
            v.add(
                format!("{field}.currency_code"),
                "must be an ISO 4217 code such as EUR",
            );
        }
        if self.minor < min {
            v.add(
                format!("{field}.amount_minor"),
                format!("must be at least {min}"),
            );
        }
    }
}

pub fn valid_currency(c: &str) -> bool {
    c.len() == 3 && c.chars().all(|c| c.is_ascii_uppercase())
}

/// Products by code, product group code or brand code (`loyalty.type.v1.ProductScope`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Scope {
    pub product_codes: Vec<String>,
    pub group_codes: Vec<String>,
    pub brand_codes: Vec<String>,
    pub excluded_product_codes: Vec<String>,
}

impl Scope {
    pub fn is_empty(&self) -> bool {
        self.product_codes.is_empty()
            && self.group_codes.is_empty()
            && self.brand_codes.is_empty()
            && self.excluded_product_codes.is_empty()
    }

    /// Whether nothing is included (the scope then means every product but the excluded).
    pub fn includes_nothing(&self) -> bool {
        self.product_codes.is_empty() && self.group_codes.is_empty() && self.brand_codes.is_empty()
    }

    /// A line is in scope when its product, group or brand is listed (kinds may be mixed) and
    /// its product is not excluded. `required`: the scope must include something (an empty one
    /// would mean "every product", which the cart benefits express instead).
    pub fn validate(&self, v: &mut Violations, field: &str, required: bool) {
        if required && self.includes_nothing() {
            v.add(
                field,
                "must name at least one product, product group or brand",
            );
        }
        for (name, list) in [
            ("product_codes", &self.product_codes),
            ("product_group_codes", &self.group_codes),
            ("brand_codes", &self.brand_codes),
            ("excluded_product_codes", &self.excluded_product_codes),
        ] {
            if list.len() > 1000 {
                v.add(format!("{field}.{name}"), "at most 1000 codes");
            }
            for (i, c) in list.iter().enumerate() {
                if !(1..=64).contains(&c.trim().chars().count()) {
                    v.add(format!("{field}.{name}[{i}]"), "must be 1..64 characters");
                }
            }
        }
    }
}

/// Products that must be in the cart: at least `minimum_quantity` units of `products`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequiredProducts {
    pub products: Scope,
    pub minimum_quantity: i64,
}

/// Conditions a cart must fulfil for a reward to apply (`CartCondition`); every part set must
/// hold. Lines with no reward application count towards none of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CartCondition {
    /// Minimum gross (before discounts) of the `spend_products` lines (all lines when empty).
    pub minimum_spend: Option<Amount>,
    /// Minimum units in the cart; 0 = none.
    pub minimum_quantity: i64,
    pub required_products: Vec<RequiredProducts>,
    /// Only these products count towards `minimum_spend`; empty = all.
    pub spend_products: Scope,
}

impl CartCondition {
    /// Nothing set: no condition at all.
    pub fn is_empty(&self) -> bool {
        *self == CartCondition::default()
    }

    /// Checks the parts; `currency` is the benefit's, which a minimum spend must match.
    pub fn validate(&self, v: &mut Violations, currency: Option<&str>) {
        let f = "reward.cart_condition";
        if let Some(m) = &self.minimum_spend {
            m.validate(v, &format!("{f}.minimum_spend"), 1);
            if let Some(c) = currency
                && c != m.currency
            {
                v.add(
                    format!("{f}.minimum_spend.currency_code"),
                    "must be the currency of the benefit",
                );
            }
        } else if !self.spend_products.is_empty() {
            v.add(
                format!("{f}.spend_products"),
                "is only allowed with minimum_spend",
            );
        }
        self.spend_products
            .validate(v, &format!("{f}.spend_products"), false);
        if !(0..=1_000_000).contains(&self.minimum_quantity) {
            v.add(format!("{f}.minimum_quantity"), "must be 0..1000000");
        }
        if self.required_products.len() > 20 {
            v.add(format!("{f}.required_products"), "at most 20 entries");
        }
        for (i, r) in self.required_products.iter().enumerate() {
            let rf = format!("{f}.required_products[{i}]");
            r.products.validate(v, &format!("{rf}.products"), true);
            if !(1..=1_000_000).contains(&r.minimum_quantity) {
                v.add(format!("{rf}.minimum_quantity"), "must be 1..1000000");
            }
        }
    }
}

/// What a reward gives. Serialised with a `kind` tag; the first variant's stored form predates
/// the others and must keep deserialising.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Benefit {
    /// A percentage off the whole cart, in basis points (1..=10000).
    CartPercentageDiscount { basis_points: u32 },
    /// A fixed amount off the whole cart.
    CartFixedDiscount { amount: Amount },
    /// A percentage off each unit of the selected products; with `max_quantity` > 0, only that
    /// many units per purchase, the dearest first.
    ProductPercentageDiscount {
        products: Scope,
        basis_points: u32,
        #[serde(default)]
        max_quantity: u32,
    },
    /// An amount off each unit of the selected products (never more than the unit's price);
    /// with `max_quantity` > 0, only that many units per purchase, the dearest first.
    ProductFixedDiscount {
        products: Scope,
        amount_per_unit: Amount,
        #[serde(default)]
        max_quantity: u32,
    },
    /// The selected products at a fixed unit price.
    FixedPrice { products: Scope, unit_price: Amount },
    /// `quantity` units of a product in the cart for free.
    FreeProduct { product_code: String, quantity: u32 },
    /// Of every `buy + get` selected units, the `get` cheapest get `discount_basis_points` off.
    BuyXGetY {
        products: Scope,
        buy: u32,
        get: u32,
        discount_basis_points: u32,
    },
    /// `save` off when the selected products (empty scope = the cart) reach `spend`.
    SpendXSaveY {
        products: Scope,
        spend: Amount,
        save: Amount,
        repeat: bool,
    },
    /// Extra points with the purchase.
    BonusPoints { points: i64, points_type_id: String },
    /// The base points of the selected products (empty scope = the cart) multiplied.
    PointsMultiplier {
        products: Scope,
        multiplier_basis_points: u32,
    },
    /// A gift voucher whose value the buyer chooses from these.
    GiftValue { allowed_values: Vec<Amount> },
    /// Part of the cart may be paid with points: `points_per_step` points pay
    /// `value_per_step`; at most `max_points` (0 = unlimited) and at most
    /// `max_cart_basis_points` of the lines not payable only with points (0 = all).
    PointsPayment {
        points_per_step: i64,
        value_per_step: Amount,
        max_points: i64,
        max_cart_basis_points: u32,
    },
}

impl Benefit {
    /// The proto member name, used in field paths and update masks.
    pub fn field(&self) -> &'static str {
        match self {
            Benefit::CartPercentageDiscount { .. } => "cart_percentage_discount",
            Benefit::CartFixedDiscount { .. } => "cart_fixed_discount",
            Benefit::ProductPercentageDiscount { .. } => "product_percentage_discount",
            Benefit::ProductFixedDiscount { .. } => "product_fixed_discount",
            Benefit::FixedPrice { .. } => "fixed_price",
            Benefit::FreeProduct { .. } => "free_product",
            Benefit::BuyXGetY { .. } => "buy_x_get_y",
            Benefit::SpendXSaveY { .. } => "spend_x_save_y",
            Benefit::BonusPoints { .. } => "bonus_points",
            Benefit::PointsMultiplier { .. } => "points_multiplier",
            Benefit::GiftValue { .. } => "gift_value",
            Benefit::PointsPayment { .. } => "points_payment",
        }
    }

    pub fn gives_points(&self) -> bool {
        matches!(
            self,
            Benefit::BonusPoints { .. } | Benefit::PointsMultiplier { .. }
        )
    }

    /// The currency of its amounts, when it has any.
    pub fn currency(&self) -> Option<&str> {
        match self {
            Benefit::CartFixedDiscount { amount } => Some(&amount.currency),
            Benefit::FixedPrice { unit_price, .. } => Some(&unit_price.currency),
            Benefit::ProductFixedDiscount {
                amount_per_unit, ..
            } => Some(&amount_per_unit.currency),
            Benefit::SpendXSaveY { spend, .. } => Some(&spend.currency),
            Benefit::GiftValue { allowed_values } => {
                allowed_values.first().map(|a| a.currency.as_str())
            }
            Benefit::PointsPayment { value_per_step, .. } => Some(&value_per_step.currency),
            _ => None,
        }
    }

    /// The value one redemption grants regardless of the cart (minor units or points), if
    /// there is one.
    pub fn fixed_value(&self) -> Option<i64> {
        match self {
            Benefit::CartFixedDiscount { amount } => Some(amount.minor),
            Benefit::SpendXSaveY {
                save,
                repeat: false,
                ..
            } => Some(save.minor),
            Benefit::BonusPoints { points, .. } => Some(*points),
            Benefit::GiftValue { allowed_values } if allowed_values.len() == 1 => {
                Some(allowed_values[0].minor)
            }
            _ => None,
        }
    }

    pub fn validate(&self, v: &mut Violations) {
        let f = format!("reward.{}", self.field());
        let bp = |v: &mut Violations, bp: u32, name: &str| {
            if !(1..=10_000).contains(&bp) {
                v.add(format!("{f}.{name}"), "must be 1..10000");
            }
        };
        let max_units = |v: &mut Violations, n: u32| {
            if n > 1_000_000 {
                v.add(
                    format!("{f}.max_quantity"),
                    "must be 0 (every unit)..1000000",
                );
            }
        };
        match self {
            Benefit::CartPercentageDiscount { basis_points } => {
                bp(v, *basis_points, "basis_points")
            }
            Benefit::CartFixedDiscount { amount } => amount.validate(v, &format!("{f}.amount"), 1),
            Benefit::ProductPercentageDiscount {
                products,
                basis_points,
                max_quantity,
            } => {
                products.validate(v, &format!("{f}.products"), true);
                bp(v, *basis_points, "basis_points");
                max_units(v, *max_quantity);
            }
            Benefit::ProductFixedDiscount {
                products,
                amount_per_unit,
                max_quantity,
            } => {
                products.validate(v, &format!("{f}.products"), true);
                amount_per_unit.validate(v, &format!("{f}.amount_per_unit"), 1);
                max_units(v, *max_quantity);
            }
            Benefit::FixedPrice {
                products,
                unit_price,
            } => {
                products.validate(v, &format!("{f}.products"), true);
                unit_price.validate(v, &format!("{f}.unit_price"), 0);
            }
            Benefit::FreeProduct {
                product_code,
                quantity,
            } => {
                if !(1..=64).contains(&product_code.trim().chars().count()) {
                    v.add(format!("{f}.product_code"), "must be 1..64 characters");
                }
                if !(1..=100).contains(quantity) {
                    v.add(format!("{f}.quantity"), "must be 1..100");
                }
            }
            Benefit::BuyXGetY {
                products,
                buy,
                get,
                discount_basis_points,
            } => {
                products.validate(v, &format!("{f}.products"), true);
                if !(1..=1000).contains(buy) {
                    v.add(format!("{f}.buy_quantity"), "must be 1..1000");
                }
                if !(1..=1000).contains(get) {
                    v.add(format!("{f}.get_quantity"), "must be 1..1000");
                }
                bp(v, *discount_basis_points, "discount_basis_points");
            }
            Benefit::SpendXSaveY {
                products,
                spend,
                save,
                ..
            } => {
                products.validate(v, &format!("{f}.products"), false);
                spend.validate(v, &format!("{f}.spend"), 1);
                save.validate(v, &format!("{f}.save"), 1);
                if save.currency != spend.currency {
                    v.add(
                        format!("{f}.save.currency_code"),
                        "must be the currency of spend",
                    );
                }
                if save.minor > spend.minor {
                    v.add(format!("{f}.save.amount_minor"), "must not exceed spend");
                }
            }
            Benefit::BonusPoints {
                points,
                points_type_id,
            } => {
                if !(1..=1_000_000).contains(points) {
                    v.add(format!("{f}.points"), "must be 1..1000000");
                }
                if points_type_id.chars().count() > 64 {
                    v.add(
                        format!("{f}.points_type_id"),
                        "must be at most 64 characters",
                    );
                }
            }
            Benefit::PointsMultiplier {
                products,
                multiplier_basis_points,
            } => {
                products.validate(v, &format!("{f}.products"), false);
                if !(10_001..=1_000_000).contains(multiplier_basis_points) {
                    v.add(
                        format!("{f}.multiplier_basis_points"),
                        "must be 10001..1000000 (above ×1, at most ×100)",
                    );
                }
            }
            Benefit::PointsPayment {
                points_per_step,
                value_per_step,
                max_points,
                max_cart_basis_points,
            } => {
                if !(1..=1_000_000).contains(points_per_step) {
                    v.add(format!("{f}.points_per_step"), "must be 1..1000000");
                }
                value_per_step.validate(v, &format!("{f}.value_per_step"), 1);
                if *max_points < 0 {
                    v.add(format!("{f}.max_points"), "must be 0 (unlimited) or more");
                }
                if *max_cart_basis_points > 10_000 {
                    v.add(
                        format!("{f}.max_cart_basis_points"),
                        "must be 0 (the whole cart)..10000",
                    );
                }
            }
            Benefit::GiftValue { allowed_values } => {
                if !(1..=20).contains(&allowed_values.len()) {
                    v.add(format!("{f}.allowed_values"), "must list 1..20 values");
                }
                for (i, a) in allowed_values.iter().enumerate() {
                    a.validate(v, &format!("{f}.allowed_values[{i}]"), 1);
                    if a.currency != allowed_values[0].currency {
                        v.add(
                            format!("{f}.allowed_values[{i}].currency_code"),
                            "all values must be in the same currency",
                        );
                    }
                }
            }
        }
    }
}

/// Lifecycle of a reward.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RewardState {
    /// Being prepared: not applied, no vouchers.
    Draft,
    /// Applied within its validity. Rewards stored before states existed are active.
    #[default]
    Active,
    /// No new vouchers; issued vouchers stay usable until they expire.
    Archived,
}

impl RewardState {
    pub fn as_str(self) -> &'static str {
        match self {
            RewardState::Draft => "draft",
            RewardState::Active => "active",
            RewardState::Archived => "archived",
        }
    }

    pub fn parse_str(s: &str) -> Option<Self> {
        Some(match s {
            "draft" => RewardState::Draft,
            "active" => RewardState::Active,
            "archived" => RewardState::Archived,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UsagePeriod {
    Day,
    Week,
    Month,
    Year,
}

/// Caps of a reward; 0 / `None` = no cap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Caps {
    pub max_discount_per_transaction: Option<Amount>,
    pub max_points_per_transaction: i64,
    pub max_applications_per_transaction: i32,
    pub max_uses_per_customer: i32,
    pub max_uses_per_period: i32,
    pub period: Option<UsagePeriod>,
}

impl Caps {
    pub fn validate(&self, v: &mut Violations) {
        if let Some(m) = &self.max_discount_per_transaction {
            m.validate(v, "reward.caps.max_discount_per_transaction", 1);
        }
        for (name, n) in [
            (
                "max_points_per_transaction",
                self.max_points_per_transaction,
            ),
            (
                "max_applications_per_transaction",
                i64::from(self.max_applications_per_transaction),
            ),
            (
                "max_uses_per_customer",
                i64::from(self.max_uses_per_customer),
            ),
            ("max_uses_per_period", i64::from(self.max_uses_per_period)),
        ] {
            if n < 0 {
                v.add(format!("reward.caps.{name}"), "must not be negative");
            }
        }
        match (self.max_uses_per_period > 0, self.period.is_some()) {
            (true, false) => v.add("reward.caps.period", "is required with max_uses_per_period"),
            (false, true) => v.add(
                "reward.caps.period",
                "is only allowed with max_uses_per_period",
            ),
            _ => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BudgetKind {
    Points,
    Money,
}

impl BudgetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetKind::Points => "points",
            BudgetKind::Money => "money",
        }
    }

    pub fn parse_str(s: &str) -> Option<Self> {
        match s {
            "points" => Some(BudgetKind::Points),
            "money" => Some(BudgetKind::Money),
            _ => None,
        }
    }
}

/// A budget the reward's redemptions consume; `remaining` is kept by the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    pub kind: BudgetKind,
    pub total: i64,
    /// ISO 4217 of a money budget; empty for points.
    pub currency: String,
    pub remaining: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reward {
    pub id: Uuid,
    pub display_name: String,
    pub description: String,
    pub reward_type: RewardType,
    pub benefit: Benefit,
    pub segment_ids: Vec<Uuid>,
    pub validity: Validity,
    pub created_at: DateTime<Utc>,
    pub state: RewardState,
    pub image_url: String,
    /// Membership levels (tiers) eligible; empty = every level.
    pub tier_ids: Vec<Uuid>,
    /// 0..=1000, higher first.
    pub priority: i32,
    /// Combines with other rules on the same cart.
    pub combinable: bool,
    pub stacking_group: String,
    pub caps: Caps,
    pub budget: Option<Budget>,
    /// What the cart must contain for the reward to apply; `None` = nothing.
    pub cart_condition: Option<CartCondition>,
    /// Incremented by every change; the etag.
    pub revision: i64,
    pub updated_at: DateTime<Utc>,
    pub archived_at: Option<DateTime<Utc>>,
}

impl Reward {
    pub fn validate(&self, v: &mut Violations) {
        check_name(v, "reward.display_name", &self.display_name);
        if self.description.chars().count() > 2000 {
            v.add("reward.description", "must be at most 2000 characters");
        }
        if !self.image_url.is_empty()
            && (!self.image_url.starts_with("https://") || self.image_url.chars().count() > 2048)
        {
            v.add(
                "reward.image_url",
                "must be an https URL of at most 2048 characters",
            );
        }
        self.benefit.validate(v);
        let gift_benefit = matches!(self.benefit, Benefit::GiftValue { .. });
        if self.reward_type == RewardType::Gift && !gift_benefit {
            v.add("reward.gift_value", "is required for gift rewards");
        } else if self.reward_type != RewardType::Gift && gift_benefit {
            v.add("reward.gift_value", "is only allowed for gift rewards");
        }
        if !(0..=1000).contains(&self.priority) {
            v.add("reward.priority", "must be 0..1000");
        }
        if self.tier_ids.len() > 100 {
            v.add("reward.tier_ids", "at most 100 tiers");
        }
        if self.stacking_group.chars().count() > 64
            || !self
                .stacking_group
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            v.add(
                "reward.stacking_group",
                "must be 0..64 characters A-Z, a-z, 0-9, _ or -",
            );
        }
        self.caps.validate(v);
        if let (Some(cap), Some(c)) = (
            &self.caps.max_discount_per_transaction,
            self.benefit.currency(),
        ) && cap.currency != c
        {
            v.add(
                "reward.caps.max_discount_per_transaction.currency_code",
                "must be the currency of the benefit",
            );
        }
        if let Some(b) = &self.budget {
            self.validate_budget(v, b);
        }
        if let Some(c) = &self.cart_condition {
            c.validate(v, self.benefit.currency());
        }
        self.validity.validate(v, "reward");
        if v.is_empty() {
            // Whatever passes here must also be a rule the engine accepts.
            super::engine::validate_rule(v, "reward", &super::engine::from_reward(self));
        }
    }

    fn validate_budget(&self, v: &mut Violations, b: &Budget) {
        if b.total < 1 {
            v.add("reward.budget.total", "must be at least 1");
        }
        match b.kind {
            BudgetKind::Money => {
                if !valid_currency(&b.currency) {
                    v.add(
                        "reward.budget.currency_code",
                        "must be an ISO 4217 code such as EUR for a MONEY budget",
                    );
                } else if let Some(c) = self.benefit.currency()
                    && c != b.currency
                {
                    v.add(
                        "reward.budget.currency_code",
                        "must be the currency of the benefit",
                    );
                }
                if self.benefit.gives_points() {
                    v.add(
                        "reward.budget.kind",
                        "must be POINTS for a reward that gives points",
                    );
                }
            }
            BudgetKind::Points => {
                if !b.currency.is_empty() {
                    v.add("reward.budget.currency_code", "must be empty for POINTS");
                }
                if !self.benefit.gives_points() {
                    v.add(
                        "reward.budget.kind",
                        "must be MONEY for a reward that gives a discount",
                    );
                }
            }
        }
    }

    /// Whether vouchers may be issued now (state and validity).
    pub fn issuable_at(&self, at: DateTime<Utc>) -> bool {
        self.state == RewardState::Active && self.validity.contains(at)
    }

    /// What one redemption consumes from the budget: the value checkout reports, else the
    /// benefit's fixed value. `Err` names why neither is known.
    pub fn budget_consumption(&self, granted_value: i64) -> Result<Option<i64>, &'static str> {
        if self.budget.is_none() {
            return Ok(None);
        }
        if granted_value < 0 {
            return Err("must not be negative");
        }
        if granted_value > 0 {
            return Ok(Some(granted_value));
        }
        self.benefit
            .fixed_value()
            .map(Some)
            .ok_or("is required: the reward has a budget and its value depends on the cart")
    }
}

/// A state change an update asks for.
pub fn check_state_change(from: RewardState, to: RewardState) -> Result<(), &'static str> {
    match (from, to) {
        (a, b) if a == b => Ok(()),
        (RewardState::Draft, RewardState::Active) => Ok(()),
        (_, RewardState::Archived) => Err("is changed to ARCHIVED by ArchiveReward"),
        _ => Err("may only change from DRAFT to ACTIVE"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn eur(minor: i64) -> Amount {
        Amount {
            currency: "EUR".into(),
            minor,
        }
    }

    fn products(codes: &[&str]) -> Scope {
        Scope {
            product_codes: codes.iter().map(|c| (*c).to_owned()).collect(),
            ..Scope::default()
        }
    }

    pub(crate) fn reward(reward_type: RewardType, benefit: Benefit) -> Reward {
        let now = Utc::now();
        Reward {
            id: Uuid::now_v7(),
            display_name: "Gold members 10 %".into(),
            description: String::new(),
            reward_type,
            benefit,
            segment_ids: vec![],
            validity: Validity::default(),
            created_at: now,
            state: RewardState::Active,
            image_url: String::new(),
            tier_ids: vec![],
            priority: 0,
            combinable: true,
            stacking_group: String::new(),
            caps: Caps::default(),
            budget: None,
            cart_condition: None,
            revision: 1,
            updated_at: now,
            archived_at: None,
        }
    }

    fn errors(r: &Reward) -> String {
        let mut v = Violations::new();
        r.validate(&mut v);
        v.into_result()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn every_benefit_has_a_valid_form() {
        let ok = [
            Benefit::CartPercentageDiscount { basis_points: 1000 },
            Benefit::CartFixedDiscount { amount: eur(500) },
            Benefit::ProductPercentageDiscount {
                products: products(&["SKU-1"]),
                basis_points: 2000,
                max_quantity: 0,
            },
            Benefit::FixedPrice {
                products: products(&["SKU-1"]),
                unit_price: eur(0),
            },
            Benefit::ProductFixedDiscount {
                products: products(&["SKU-1"]),
                amount_per_unit: eur(100),
                max_quantity: 2,
            },
            Benefit::FreeProduct {
                product_code: "COFFEE".into(),
                quantity: 1,
            },
            Benefit::BuyXGetY {
                products: products(&["SKU-1"]),
                buy: 2,
                get: 1,
                discount_basis_points: 10_000,
            },
            Benefit::SpendXSaveY {
                products: Scope::default(),
                spend: eur(5000),
                save: eur(500),
                repeat: true,
            },
            Benefit::BonusPoints {
                points: 100,
                points_type_id: String::new(),
            },
            Benefit::PointsMultiplier {
                products: Scope::default(),
                multiplier_basis_points: 20_000,
            },
            Benefit::PointsPayment {
                points_per_step: 100,
                value_per_step: eur(100),
                max_points: 0,
                max_cart_basis_points: 5000,
            },
        ];
        for b in ok {
            assert_eq!(
                errors(&reward(RewardType::CashDesk, b.clone())),
                "",
                "{b:?}"
            );
        }
        let gift = reward(
            RewardType::Gift,
            Benefit::GiftValue {
                allowed_values: vec![eur(2000), eur(5000)],
            },
        );
        assert_eq!(errors(&gift), "");
    }

    #[test]
    fn out_of_range_benefits_are_named() {
        let cases = [
            (
                Benefit::CartPercentageDiscount {
                    basis_points: 10_001,
                },
                "reward.cart_percentage_discount.basis_points",
            ),
            (
                Benefit::CartFixedDiscount { amount: eur(0) },
                "reward.cart_fixed_discount.amount.amount_minor",
            ),
            (
                Benefit::ProductPercentageDiscount {
                    products: Scope::default(),
                    basis_points: 100,
                    max_quantity: 0,
                },
                "reward.product_percentage_discount.products",
            ),
            (
                Benefit::FixedPrice {
                    products: products(&["A"]),
                    unit_price: eur(-1),
                },
                "reward.fixed_price.unit_price.amount_minor",
            ),
            (
                Benefit::ProductFixedDiscount {
                    products: products(&["A"]),
                    amount_per_unit: eur(0),
                    max_quantity: 0,
                },
                "reward.product_fixed_discount.amount_per_unit.amount_minor",
            ),
            (
                Benefit::ProductPercentageDiscount {
                    products: products(&["A"]),
                    basis_points: 100,
                    max_quantity: 1_000_001,
                },
                "reward.product_percentage_discount.max_quantity",
            ),
            (
                Benefit::FreeProduct {
                    product_code: " ".into(),
                    quantity: 0,
                },
                "reward.free_product.quantity",
            ),
            (
                Benefit::BuyXGetY {
                    products: products(&["A"]),
                    buy: 0,
                    get: 1,
                    discount_basis_points: 10_000,
                },
                "reward.buy_x_get_y.buy_quantity",
            ),
            (
                Benefit::SpendXSaveY {
                    products: Scope::default(),
                    spend: eur(100),
                    save: eur(200),
                    repeat: false,
                },
                "reward.spend_x_save_y.save.amount_minor",
            ),
            (
                Benefit::PointsMultiplier {
                    products: Scope::default(),
                    multiplier_basis_points: 10_000,
                },
                "reward.points_multiplier.multiplier_basis_points",
            ),
            (
                Benefit::BonusPoints {
                    points: 0,
                    points_type_id: String::new(),
                },
                "reward.bonus_points.points",
            ),
            (
                Benefit::PointsPayment {
                    points_per_step: 0,
                    value_per_step: eur(100),
                    max_points: 0,
                    max_cart_basis_points: 0,
                },
                "reward.points_payment.points_per_step",
            ),
            (
                Benefit::PointsPayment {
                    points_per_step: 100,
                    value_per_step: eur(0),
                    max_points: -1,
                    max_cart_basis_points: 10_001,
                },
                "reward.points_payment.max_cart_basis_points",
            ),
        ];
        for (b, field) in cases {
            let text = errors(&reward(RewardType::CashDesk, b));
            assert!(text.contains(field), "{field}: {text}");
        }
    }

    #[test]
    fn a_scope_mixes_kinds_and_excludes_products_but_must_include_something() {
        let mut mixed = products(&["A"]);
        mixed.brand_codes.push("ACME".into());
        mixed.excluded_product_codes.push("ACME-GIFTCARD".into());
        let r = reward(
            RewardType::Coupon,
            Benefit::ProductPercentageDiscount {
                products: mixed,
                basis_points: 100,
                max_quantity: 0,
            },
        );
        assert_eq!(errors(&r), "");
        let rule = crate::domain::engine::from_reward(&r);
        let target = match &rule.benefits[0] {
            crate::domain::engine::Benefit::PercentageDiscount { target, .. } => target.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(target.products, vec!["A"]);
        assert_eq!(target.brands, vec!["ACME"]);
        assert_eq!(target.excluded_products, vec!["ACME-GIFTCARD"]);
        // Only exclusions: nothing included, refused where a scope is required.
        let only_excluded = Scope {
            excluded_product_codes: vec!["B".into()],
            ..Scope::default()
        };
        let text = errors(&reward(
            RewardType::Coupon,
            Benefit::ProductPercentageDiscount {
                products: only_excluded.clone(),
                basis_points: 100,
                max_quantity: 0,
            },
        ));
        assert!(
            text.contains("reward.product_percentage_discount.products"),
            "{text}"
        );
        // Where the scope is optional, exclusions alone mean the cart minus those products.
        let r = reward(
            RewardType::CashDesk,
            Benefit::PointsMultiplier {
                products: only_excluded,
                multiplier_basis_points: 20_000,
            },
        );
        assert_eq!(errors(&r), "");
        let text = errors(&reward(
            RewardType::Coupon,
            Benefit::ProductPercentageDiscount {
                products: Scope {
                    excluded_product_codes: vec![" ".into()],
                    ..products(&["A"])
                },
                basis_points: 100,
                max_quantity: 0,
            },
        ));
        assert!(
            text.contains("reward.product_percentage_discount.products.excluded_product_codes[0]"),
            "{text}"
        );
    }

    #[test]
    fn a_cart_condition_is_checked_part_by_part() {
        let mut r = reward(
            RewardType::CashDesk,
            Benefit::CartFixedDiscount { amount: eur(500) },
        );
        r.cart_condition = Some(CartCondition {
            minimum_spend: Some(eur(2000)),
            minimum_quantity: 2,
            required_products: vec![RequiredProducts {
                products: products(&["COFFEE"]),
                minimum_quantity: 1,
            }],
            spend_products: Scope {
                group_codes: vec!["coffee".into()],
                ..Scope::default()
            },
        });
        assert_eq!(errors(&r), "");
        // The engine gets the same condition.
        let c = crate::domain::engine::from_reward(&r)
            .condition
            .expect("condition");
        assert_eq!(c.minimum_spend_minor, Some(2000));
        assert_eq!(c.spend_target.groups, vec!["coffee"]);
        assert_eq!(c.minimum_quantity, 2);
        assert_eq!(c.required[0].0.products, vec!["COFFEE"]);
        assert_eq!(c.required[0].1, 1);

        r.cart_condition = Some(CartCondition {
            minimum_spend: Some(Amount {
                currency: "USD".into(),
                minor: 0,
            }),
            minimum_quantity: -1,
            required_products: vec![RequiredProducts {
                products: Scope::default(),
                minimum_quantity: 0,
            }],
            spend_products: Scope::default(),
        });
        let text = errors(&r);
        for f in [
            "reward.cart_condition.minimum_spend.amount_minor",
            "reward.cart_condition.minimum_spend.currency_code",
            "reward.cart_condition.minimum_quantity",
            "reward.cart_condition.required_products[0].products",
            "reward.cart_condition.required_products[0].minimum_quantity",
        ] {
            assert!(text.contains(f), "{f}: {text}");
        }
        r.cart_condition = Some(CartCondition {
            spend_products: products(&["A"]),
            ..CartCondition::default()
        });
        assert!(errors(&r).contains("reward.cart_condition.spend_products"));
    }

    #[test]
    fn gift_rewards_need_a_gift_value_and_only_they_have_one() {
        let text = errors(&reward(
            RewardType::Gift,
            Benefit::CartFixedDiscount { amount: eur(100) },
        ));
        assert!(text.contains("reward.gift_value"), "{text}");
        let text = errors(&reward(
            RewardType::Coupon,
            Benefit::GiftValue {
                allowed_values: vec![eur(100)],
            },
        ));
        assert!(text.contains("reward.gift_value"), "{text}");
        let text = errors(&reward(
            RewardType::Gift,
            Benefit::GiftValue {
                allowed_values: vec![
                    eur(100),
                    Amount {
                        currency: "USD".into(),
                        minor: 100,
                    },
                ],
            },
        ));
        assert!(
            text.contains("reward.gift_value.allowed_values[1].currency_code"),
            "{text}"
        );
    }

    #[test]
    fn an_inverted_window_and_bad_settings_are_named() {
        let now = Utc::now();
        let mut r = reward(
            RewardType::CashDesk,
            Benefit::CartPercentageDiscount { basis_points: 100 },
        );
        r.validity = Validity {
            from: Some(now),
            until: Some(now - Duration::days(1)),
        };
        r.priority = 1001;
        r.image_url = "http://x".into();
        r.stacking_group = "no spaces".into();
        r.caps.max_uses_per_period = 3;
        let text = errors(&r);
        for f in [
            "reward.valid_until_time",
            "reward.priority",
            "reward.image_url",
            "reward.stacking_group",
            "reward.caps.period",
        ] {
            assert!(text.contains(f), "{f}: {text}");
        }
    }

    #[test]
    fn a_budget_counts_what_the_benefit_gives() {
        let mut r = reward(
            RewardType::Coupon,
            Benefit::CartFixedDiscount { amount: eur(500) },
        );
        r.budget = Some(Budget {
            kind: BudgetKind::Points,
            total: 100,
            currency: String::new(),
            remaining: 100,
        });
        assert!(errors(&r).contains("reward.budget.kind"));
        r.budget = Some(Budget {
            kind: BudgetKind::Money,
            total: 10_000,
            currency: "USD".into(),
            remaining: 10_000,
        });
        assert!(errors(&r).contains("reward.budget.currency_code"));
        r.budget = Some(Budget {
            kind: BudgetKind::Money,
            total: 0,
            currency: "EUR".into(),
            remaining: 0,
        });
        assert!(errors(&r).contains("reward.budget.total"));
        r.budget = Some(Budget {
            kind: BudgetKind::Money,
            total: 10_000,
            currency: "EUR".into(),
            remaining: 10_000,
        });
        assert_eq!(errors(&r), "");
        assert_eq!(r.budget_consumption(0), Ok(Some(500)));
        assert_eq!(r.budget_consumption(120), Ok(Some(120)));
        assert!(r.budget_consumption(-1).is_err());
        let mut pct = reward(
            RewardType::Coupon,
            Benefit::CartPercentageDiscount { basis_points: 100 },
        );
        assert_eq!(pct.budget_consumption(0), Ok(None));
        pct.budget = r.budget.clone();
        assert!(pct.budget_consumption(0).is_err());
    }

    #[test]
    fn state_moves_only_forward_and_archiving_has_its_own_call() {
        use RewardState::*;
        assert!(check_state_change(Draft, Active).is_ok());
        assert!(check_state_change(Active, Active).is_ok());
        assert!(check_state_change(Active, Draft).is_err());
        assert!(check_state_change(Draft, Archived).is_err());
        assert!(check_state_change(Archived, Active).is_err());
    }

    #[test]
    fn a_draft_or_archived_reward_issues_nothing() {
        let now = Utc::now();
        let mut r = reward(
            RewardType::Coupon,
            Benefit::CartPercentageDiscount { basis_points: 100 },
        );
        assert!(r.issuable_at(now));
        r.state = RewardState::Draft;
        assert!(!r.issuable_at(now));
        r.state = RewardState::Archived;
        assert!(!r.issuable_at(now));
    }

    #[test]
    fn the_stored_form_of_the_first_benefit_still_reads() {
        let b: Benefit =
            serde_json::from_str(r#"{"kind":"cart_percentage_discount","basis_points":1000}"#)
                .unwrap();
        assert_eq!(b, Benefit::CartPercentageDiscount { basis_points: 1000 });
    }
}

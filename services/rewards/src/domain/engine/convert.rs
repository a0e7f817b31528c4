//! The engine's rules from the stored definitions (`domain::Reward`, `domain::PurchaseBonus`).
use super::{
    Benefit, CartCondition, Eligibility, Limits, Rule, RuleKind, Schedule, Target, UnitOff,
};
use crate::domain::{
    self, RewardType,
    campaign_products::{CampaignProduct, Discount},
    purchase_bonuses,
};
use uuid::Uuid;

/// The engine's target of a reward's product scope: any listed product, group or brand, minus
/// the excluded products; nothing listed is the whole cart (minus exclusions).
fn target(s: &domain::rewards::Scope) -> Target {
    Target {
        products: s.product_codes.clone(),
        groups: s.group_codes.clone(),
        brands: s.brand_codes.clone(),
        excluded_products: s.excluded_product_codes.clone(),
    }
}

fn positive<T: TryFrom<i64>>(n: i64) -> Option<T> {
    (n > 0).then(|| T::try_from(n).ok()).flatten()
}

/// A reward as an engine rule. Cash desk rewards apply on the cart by themselves; every other
/// type needs its voucher presented. The state is not looked at: only ACTIVE rewards belong
/// in a rule set (`store::active_rewards` returns only those).
pub fn from_reward(r: &domain::Reward) -> Rule {
    use domain::Benefit as B;
    let benefit = match &r.benefit {
        B::CartPercentageDiscount { basis_points } => Benefit::PercentageDiscount {
            basis_points: *basis_points,
            target: Target::cart(),
        },
        B::CartFixedDiscount { amount } => Benefit::FixedDiscount {
            amount_minor: amount.minor,
            target: Target::cart(),
        },
        B::ProductPercentageDiscount {
            products,
            basis_points,
            max_quantity: 0,
        } => Benefit::PercentageDiscount {
            basis_points: *basis_points,
            target: target(products),
        },
        B::ProductPercentageDiscount {
            products,
            basis_points,
            max_quantity,
        } => Benefit::UnitDiscount {
            off: UnitOff::BasisPoints(*basis_points),
            max_units: Some(*max_quantity),
            target: target(products),
        },
        B::ProductFixedDiscount {
            products,
            amount_per_unit,
            max_quantity,
        } => Benefit::UnitDiscount {
            off: UnitOff::AmountMinor(amount_per_unit.minor),
            max_units: (*max_quantity > 0).then_some(*max_quantity),
            target: target(products),
        },
        B::FixedPrice {
            products,
            unit_price,
        } => Benefit::FixedPrice {
            unit_price_minor: unit_price.minor,
            target: target(products),
        },
        B::FreeProduct {
            product_code,
            quantity,
        } => Benefit::FreeItem {
            product_id: product_code.clone(),
            quantity: *quantity,
        },
        B::BuyXGetY {
            products,
            buy,
            get,
            discount_basis_points,
        } => Benefit::BuyXGetY {
            buy: *buy,
            get: *get,
            discount_basis_points: *discount_basis_points,
            target: target(products),
        },
        B::SpendXSaveY {
            products,
            spend,
            save,
            repeat,
        } => Benefit::SpendXSaveY {
            spend_minor: spend.minor,
            save_minor: save.minor,
            repeat: *repeat,
            target: target(products),
        },
        B::BonusPoints { points, .. } => Benefit::BonusPoints {
            points: *points,
            per_spend_minor: None,
            target: Target::cart(),
        },
        B::PointsMultiplier {
            products,
            multiplier_basis_points,
        } => Benefit::PointsMultiplier {
            multiplier_basis_points: *multiplier_basis_points,
            target: target(products),
        },
        B::PointsPayment {
            points_per_step,
            value_per_step,
            max_points,
            max_cart_basis_points,
        } => Benefit::PointsPayment {
            points_per_step: *points_per_step,
            value_per_step_minor: value_per_step.minor,
            max_points: positive(*max_points),
            max_cart_basis_points: *max_cart_basis_points,
        },
        // The value is chosen per voucher; the rule carries the smallest allowed one, which
        // every voucher of the reward is worth at least.
        B::GiftValue { allowed_values } => Benefit::FixedDiscount {
            amount_minor: allowed_values.iter().map(|a| a.minor).min().unwrap_or(0),
            target: Target::cart(),
        },
    };
    let caps = &r.caps;
    Rule {
        id: r.id,
        kind: RuleKind::Reward,
        name: r.display_name.clone(),
        benefits: vec![benefit],
        priority: r.priority,
        stackable: r.combinable || r.reward_type == RewardType::Gift,
        eligibility: Eligibility {
            segment_ids: r.segment_ids.clone(),
            level_ids: r.tier_ids.clone(),
            requires_voucher: r.reward_type != RewardType::CashDesk,
        },
        validity: r.validity,
        schedule: Schedule::default(),
        business_units: Vec::new(),
        channels: Vec::new(),
        limits: Limits {
            max_discount_per_transaction_minor: caps
                .max_discount_per_transaction
                .as_ref()
                .and_then(|a| positive(a.minor)),
            max_points_per_transaction: positive(caps.max_points_per_transaction),
            max_applications_per_transaction: positive(i64::from(
                caps.max_applications_per_transaction,
            )),
            max_uses_per_customer: positive(i64::from(caps.max_uses_per_customer)),
            max_uses_per_period: positive(i64::from(caps.max_uses_per_period)),
        },
        condition: r.cart_condition.as_ref().map(condition),
    }
}

/// A reward's cart condition for the engine.
fn condition(c: &domain::rewards::CartCondition) -> CartCondition {
    CartCondition {
        minimum_spend_minor: c.minimum_spend.as_ref().map(|a| a.minor),
        spend_target: target(&c.spend_products),
        minimum_quantity: u64::try_from(c.minimum_quantity).unwrap_or(0),
        required: c
            .required_products
            .iter()
            .map(|r| {
                (
                    target(&r.products),
                    u64::try_from(r.minimum_quantity).unwrap_or(0),
                )
            })
            .collect(),
    }
}

/// A purchase bonus as an engine rule: floor(in-scope net total / `spend_amount_minor`) ×
/// `points` × multiplier / 10000, as the proto says, on its schedule, places, channels and
/// tiers, capped per purchase.
pub fn from_purchase_bonus(b: &domain::PurchaseBonus) -> Rule {
    Rule {
        id: b.id,
        kind: RuleKind::PurchaseBonus,
        name: b.display_name.clone(),
        benefits: vec![Benefit::SpendPoints {
            points: b.points,
            per_spend_minor: b.spend_amount_minor,
            multiplier_basis_points: b.multiplier_basis_points.max(1).unsigned_abs(),
            target: b.products.target(),
        }],
        priority: 0,
        stackable: true,
        eligibility: Eligibility {
            segment_ids: b.segment_ids.clone(),
            level_ids: b.tier_ids.clone(),
            requires_voucher: false,
        },
        validity: b.validity,
        schedule: purchase_bonuses::schedule(&b.days_of_week, &b.hour_ranges),
        business_units: b.business_unit_ids.iter().map(Uuid::to_string).collect(),
        channels: b.channels.iter().map(|c| c.as_str().to_owned()).collect(),
        limits: Limits {
            max_points_per_transaction: (b.max_points_per_purchase > 0)
                .then_some(b.max_points_per_purchase),
            ..Limits::default()
        },
        condition: None,
    }
}

/// A campaign product as an engine rule: its campaign price (a fixed unit price or a
/// percentage) on the products it names, in its business units and channels, for its
/// segments and validity. Callers convert active entries only.
pub fn from_campaign_product(c: &CampaignProduct) -> Rule {
    let target = c.products.target();
    let max_units = u32::try_from(c.max_quantity_per_purchase)
        .ok()
        .filter(|m| *m > 0);
    let off = match &c.discount {
        Some(Discount::Percentage { basis_points }) => {
            UnitOff::BasisPoints(basis_points.unsigned_abs())
        }
        Some(Discount::AmountOffPerUnit { amount_minor, .. }) => {
            UnitOff::AmountMinor(*amount_minor)
        }
        Some(Discount::FixedUnitPrice { amount_minor, .. }) => UnitOff::PriceMinor(*amount_minor),
        // Refused by validation; a stored one gives nothing rather than a wrong price.
        None => UnitOff::BasisPoints(0),
    };
    // Every unit: the plain benefits (the same prices, their own reason codes).
    let benefit = match (off, max_units) {
        (UnitOff::BasisPoints(basis_points), None) => Benefit::PercentageDiscount {
            basis_points,
            target,
        },
        (UnitOff::PriceMinor(unit_price_minor), None) => Benefit::FixedPrice {
            unit_price_minor,
            target,
        },
        (off, max_units) => Benefit::UnitDiscount {
            off,
            max_units,
            target,
        },
    };
    Rule {
        id: c.id,
        kind: RuleKind::CampaignProduct,
        name: c.display_name.clone(),
        benefits: vec![benefit],
        priority: 0,
        stackable: true,
        eligibility: Eligibility {
            segment_ids: c.segment_ids.clone(),
            level_ids: Vec::new(),
            requires_voucher: false,
        },
        validity: c.validity,
        schedule: Schedule::default(),
        business_units: c.business_unit_ids.iter().map(Uuid::to_string).collect(),
        channels: c.channels.iter().map(|ch| ch.as_str().to_owned()).collect(),
        limits: Limits::default(),
        condition: None,
    }
}

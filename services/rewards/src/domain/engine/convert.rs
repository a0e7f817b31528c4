//! The engine's rules from the stored definitions (`domain::Reward`, `domain::PurchaseBonus`).
use super::{Benefit, Eligibility, Limits, Rule, RuleKind, Schedule, Target};
use crate::domain::{
    self, RewardType,
    campaign_products::{CampaignProduct, Discount},
    purchase_bonuses,
};
use uuid::Uuid;

/// A reward as an engine rule. Cash desk rewards apply on the cart by themselves; every other
/// type needs its voucher presented.
pub fn from_reward(r: &domain::Reward) -> Rule {
    let benefits = match r.benefit {
        domain::Benefit::CartPercentageDiscount { basis_points } => {
            vec![Benefit::PercentageDiscount {
                basis_points,
                target: Target::Cart,
            }]
        }
    };
    Rule {
        id: r.id,
        kind: RuleKind::Reward,
        name: r.display_name.clone(),
        benefits,
        priority: 0,
        stackable: true,
        eligibility: Eligibility {
            segment_ids: r.segment_ids.clone(),
            level_ids: Vec::new(),
            requires_voucher: r.reward_type != RewardType::CashDesk,
        },
        validity: r.validity,
        schedule: Schedule::default(),
        business_units: Vec::new(),
        channels: Vec::new(),
        limits: Limits::default(),
    }
}

/// A purchase bonus as an engine rule: `points × multiplier` per `spend_amount_minor` of the
/// in-scope lines' net amounts, on its schedule, places, channels and tiers, capped per purchase.
pub fn from_purchase_bonus(b: &domain::PurchaseBonus) -> Rule {
    let multiplier = i64::from(b.multiplier_basis_points.max(1));
    let scaled = b.points.saturating_mul(multiplier);
    // Exact points per step when the multiplier divides out (×2 of 1 → 2 per step); otherwise
    // the step is scaled instead, so that ×1.5 of 1 point per 1.00 gives 3 points per 2.00.
    let (points, per_spend) = if scaled % 10_000 == 0 {
        (scaled / 10_000, b.spend_amount_minor)
    } else {
        (scaled, b.spend_amount_minor.saturating_mul(10_000))
    };
    Rule {
        id: b.id,
        kind: RuleKind::PurchaseBonus,
        name: b.display_name.clone(),
        benefits: vec![Benefit::BonusPoints {
            points,
            per_spend_minor: Some(per_spend),
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
    }
}

/// A campaign product as an engine rule: its campaign price (a fixed unit price or a
/// percentage) on the products it names, in its business units and channels, for its
/// segments and validity. Callers convert active entries only.
pub fn from_campaign_product(c: &CampaignProduct) -> Rule {
    let target = c.products.target();
    let benefit = match &c.discount {
        Some(Discount::Percentage { basis_points }) => Benefit::PercentageDiscount {
            basis_points: basis_points.unsigned_abs(),
            target,
        },
        Some(Discount::FixedUnitPrice { amount_minor, .. }) => Benefit::FixedPrice {
            unit_price_minor: *amount_minor,
            target,
        },
        // Refused by validation; a stored one would give nothing rather than a wrong price.
        Some(Discount::AmountOffPerUnit { .. }) | None => Benefit::PercentageDiscount {
            basis_points: 0,
            target,
        },
    };
    Rule {
        id: c.id,
        kind: RuleKind::Reward,
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
    }
}

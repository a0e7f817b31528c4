//! The engine's rules from the stored definitions (`domain::Reward`, `domain::PurchaseBonus`).
use super::{Benefit, Eligibility, Limits, Rule, RuleKind, Schedule, Target};
use crate::domain::{self, RewardType};

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

/// A purchase bonus as an engine rule: `points` per `spend_amount_minor` on the whole cart,
/// and its multiplier (when above ×1) on the base earn.
pub fn from_purchase_bonus(b: &domain::PurchaseBonus) -> Rule {
    let mut benefits = vec![Benefit::BonusPoints {
        points: b.points,
        per_spend_minor: Some(b.spend_amount_minor),
        target: Target::Cart,
    }];
    if b.multiplier_basis_points > 10_000 {
        benefits.push(Benefit::PointsMultiplier {
            multiplier_basis_points: b.multiplier_basis_points.unsigned_abs(),
            target: Target::Cart,
        });
    }
    Rule {
        id: b.id,
        kind: RuleKind::PurchaseBonus,
        name: b.display_name.clone(),
        benefits,
        priority: 0,
        stackable: true,
        eligibility: Eligibility {
            segment_ids: b.segment_ids.clone(),
            ..Eligibility::default()
        },
        validity: b.validity,
        schedule: Schedule::default(),
        business_units: Vec::new(),
        channels: Vec::new(),
        limits: Limits::default(),
    }
}

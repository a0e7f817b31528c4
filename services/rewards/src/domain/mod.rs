//! Reward and purchase-bonus rules: what a valid definition is and when it is active.
use chrono::{DateTime, Utc};
use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod campaign_products;
pub mod catalogue;
pub mod engine;
pub mod payments;
pub mod purchase_bonuses;
pub mod resolution;
pub mod rewards;
pub mod schemes;
pub mod tiers;
pub mod vouchers;

pub use rewards::{Benefit, Reward, RewardState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RewardType {
    CashDesk,
    Campaign,
    Coupon,
    Simple,
    Gift,
}

impl RewardType {
    pub fn as_str(self) -> &'static str {
        match self {
            RewardType::CashDesk => "cash_desk",
            RewardType::Campaign => "campaign",
            RewardType::Coupon => "coupon",
            RewardType::Simple => "simple",
            RewardType::Gift => "gift",
        }
    }

    pub fn parse_str(s: &str) -> Option<Self> {
        Some(match s {
            "cash_desk" => RewardType::CashDesk,
            "campaign" => RewardType::Campaign,
            "coupon" => RewardType::Coupon,
            "simple" => RewardType::Simple,
            "gift" => RewardType::Gift,
            _ => return None,
        })
    }
}

/// Validity window: `from` inclusive, `until` exclusive; open where unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl Validity {
    pub fn validate(&self, v: &mut Violations, prefix: &str) {
        if let (Some(f), Some(u)) = (self.from, self.until)
            && f >= u
        {
            v.add(
                format!("{prefix}.valid_until_time"),
                "must be after valid_from_time",
            );
        }
    }

    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.from.is_none_or(|f| f <= t) && self.until.is_none_or(|u| t < u)
    }
}

fn check_name(v: &mut Violations, field: &str, name: &str) {
    if !(1..=200).contains(&name.trim().chars().count()) {
        v.add(field, "must be 1..200 characters");
    }
}

/// Parses segment ids (at most 100 UUIDs), reporting bad ones by index.
pub fn parse_segment_ids(v: &mut Violations, field: &str, ids: &[String]) -> Vec<Uuid> {
    if ids.len() > 100 {
        v.add(field, "at most 100 segments");
    }
    let mut out = Vec::new();
    for (i, s) in ids.iter().enumerate() {
        match Uuid::parse_str(s) {
            Ok(id) if !out.contains(&id) => out.push(id),
            Ok(_) => {}
            Err(_) => v.add(format!("{field}[{i}]"), "must be a segment UUID"),
        }
    }
    out
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseBonus {
    pub id: Uuid,
    pub display_name: String,
    /// Points per `spend_amount_minor` spent.
    pub points: i64,
    pub spend_amount_minor: i64,
    pub currency_code: String,
    /// Multiplier in basis points; 10000 = ×1.
    pub multiplier_basis_points: i32,
    pub segment_ids: Vec<Uuid>,
    pub validity: Validity,
    pub created_at: DateTime<Utc>,
    /// Only spend on these products counts; empty = the whole cart.
    pub products: purchase_bonuses::ProductScope,
    pub business_unit_ids: Vec<Uuid>,
    pub channels: Vec<purchase_bonuses::Channel>,
    /// 1 = Monday ..= 7 = Sunday; empty = every day.
    pub days_of_week: Vec<u8>,
    pub hour_ranges: Vec<purchase_bonuses::HourRange>,
    pub tier_ids: Vec<Uuid>,
    pub points_type_id: String,
    /// 0 = unlimited.
    pub max_points_per_purchase: i64,
    pub state: purchase_bonuses::BonusState,
    pub revision: i64,
    pub updated_at: DateTime<Utc>,
}

impl PurchaseBonus {
    pub fn validate(&self, v: &mut Violations) {
        check_name(v, "purchase_bonus.display_name", &self.display_name);
        if !(1..=1_000_000).contains(&self.points) {
            v.add("purchase_bonus.points", "must be 1..1000000");
        }
        if self.spend_amount_minor < 1 {
            v.add("purchase_bonus.spend_amount_minor", "must be at least 1");
        }
        if !(self.currency_code.len() == 3
            && self.currency_code.chars().all(|c| c.is_ascii_uppercase()))
        {
            v.add(
                "purchase_bonus.currency_code",
                "must be an ISO 4217 code such as EUR",
            );
        }
        if !(1..=1_000_000).contains(&self.multiplier_basis_points) {
            v.add(
                "purchase_bonus.multiplier_basis_points",
                "must be 0 (×1) or 1..1000000",
            );
        }
        self.validity.validate(v, "purchase_bonus");
        purchase_bonuses::validate(self, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn validity_is_inclusive_at_the_start_and_exclusive_at_the_end() {
        let now = Utc::now();
        let w = Validity {
            from: Some(now),
            until: Some(now + Duration::hours(1)),
        };
        assert!(w.contains(now));
        assert!(!w.contains(now + Duration::hours(1)));
        assert!(!w.contains(now - Duration::seconds(1)));
        let mut v = Violations::new();
        Validity {
            from: w.until,
            until: w.from,
        }
        .validate(&mut v, "reward");
        assert!(
            v.into_result()
                .unwrap_err()
                .to_string()
                .contains("reward.valid_until_time")
        );
    }

    #[test]
    fn a_purchase_bonus_needs_points_a_step_and_a_currency() {
        let mut v = Violations::new();
        PurchaseBonus {
            id: Uuid::now_v7(),
            display_name: "x".into(),
            points: 0,
            spend_amount_minor: 0,
            currency_code: "euro".into(),
            multiplier_basis_points: 10_000,
            segment_ids: vec![],
            validity: Validity::default(),
            created_at: Utc::now(),
            ..PurchaseBonus::default()
        }
        .validate(&mut v);
        let text = v.into_result().unwrap_err().to_string();
        for f in [
            "purchase_bonus.points",
            "purchase_bonus.spend_amount_minor",
            "purchase_bonus.currency_code",
        ] {
            assert!(text.contains(f), "{f}");
        }
    }

    #[test]
    fn segment_ids_are_checked() {
        let mut v = Violations::new();
        let ids = parse_segment_ids(
            &mut v,
            "reward.segment_ids",
            &[Uuid::nil().to_string(), "x".into()],
        );
        assert_eq!(ids, vec![Uuid::nil()]);
        let text = v.into_result().unwrap_err().to_string();
        assert!(text.contains("reward.segment_ids[1]"), "{text}");
    }
}

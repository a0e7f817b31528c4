//! The partner's resolution settings: how competing offers and cart discounts resolve, rule
//! groups, and the caps per purchase; and the engine `Policy` they give.
use chrono::{DateTime, Utc};
use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::engine::{self, Policy, RuleGroup, Strategy};

/// How competing offers or discounts resolve (CRM.COM "rewards resolution").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResolutionMode {
    All,
    HighestAward,
    Priority,
    LowestAward,
}

impl ResolutionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ResolutionMode::All => "all",
            ResolutionMode::HighestAward => "highest_award",
            ResolutionMode::Priority => "priority",
            ResolutionMode::LowestAward => "lowest_award",
        }
    }

    pub fn parse_str(s: &str) -> Option<Self> {
        Some(match s {
            "all" => ResolutionMode::All,
            "highest_award" => ResolutionMode::HighestAward,
            "priority" => ResolutionMode::Priority,
            "lowest_award" => ResolutionMode::LowestAward,
            _ => return None,
        })
    }
}

/// At most this many rule groups per partner.
pub const MAX_GROUPS: usize = 100;
/// At most this many rules in one group.
pub const MAX_GROUP_RULES: usize = 1000;

/// A partner's resolution settings; `Default` is what a partner has before it sets any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolutionSettings {
    pub offer_mode: ResolutionMode,
    /// Awards per purchase or event from offers; 0 = unlimited.
    pub max_awards_per_event: u32,
    /// How competing cart discounts resolve: `HighestAward` or `Priority`.
    pub discount_mode: ResolutionMode,
    pub combine_campaign_products: bool,
    /// Vouchers redeemed in one purchase; 0 = unlimited.
    pub max_vouchers_per_purchase: u32,
    /// Rewards and purchase bonuses applied to one cart; 0 = unlimited.
    pub max_rules_per_purchase: u32,
    pub groups: Vec<RuleGroup>,
    /// 0 until first stored.
    pub revision: i64,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Default for ResolutionSettings {
    fn default() -> Self {
        ResolutionSettings {
            offer_mode: ResolutionMode::All,
            max_awards_per_event: 0,
            discount_mode: ResolutionMode::HighestAward,
            combine_campaign_products: false,
            max_vouchers_per_purchase: 0,
            max_rules_per_purchase: 0,
            groups: Vec::new(),
            revision: 0,
            updated_at: None,
        }
    }
}

impl ResolutionSettings {
    /// `r<revision>`, the concurrency token.
    pub fn etag(&self) -> String {
        format!("r{}", self.revision)
    }

    /// The engine's policy for cart evaluation.
    pub fn policy(&self) -> Policy {
        Policy {
            strategy: match self.discount_mode {
                ResolutionMode::Priority => Strategy::Priority,
                // Validation admits only the two; anything else resolves for the customer.
                _ => Strategy::BestForCustomer,
            },
            groups: self.groups.clone(),
            max_rules_per_transaction: (self.max_rules_per_purchase > 0)
                .then_some(self.max_rules_per_purchase),
            combine_campaign_products: self.combine_campaign_products,
        }
    }

    /// Checks the settings against the partner's rule ids (rewards and purchase bonuses);
    /// fields are named `settings.<field>`.
    pub fn validate(&self, v: &mut Violations, known_rule_ids: &[Uuid]) {
        if self.max_awards_per_event > 100 {
            v.add("settings.max_awards_per_event", "must be 0..100");
        }
        if self.max_vouchers_per_purchase > 100 {
            v.add("settings.max_vouchers_per_purchase", "must be 0..100");
        }
        if self.max_rules_per_purchase > 1000 {
            v.add("settings.max_rules_per_purchase", "must be 0..1000");
        }
        if !matches!(
            self.discount_mode,
            ResolutionMode::HighestAward | ResolutionMode::Priority
        ) {
            v.add(
                "settings.discount_mode",
                "cart discounts resolve by HIGHEST_AWARD or PRIORITY",
            );
        }
        if self.groups.len() > MAX_GROUPS {
            v.add("settings.rule_groups", "at most 100 groups");
        }
        for (g, group) in self.groups.iter().enumerate() {
            if group.name.chars().count() > 100 {
                v.add(
                    format!("settings.rule_groups[{g}].name"),
                    "must be 1..100 characters",
                );
            }
            if group.rule_ids.len() > MAX_GROUP_RULES {
                v.add(
                    format!("settings.rule_groups[{g}].rule_ids"),
                    "at most 1000 rules",
                );
            }
        }
        // The engine's own checks (named, non-empty, known, not overlapping). It needs rules
        // only for their ids.
        let known: Vec<engine::Rule> = known_rule_ids.iter().map(|id| id_only(*id)).collect();
        let mut inner = Violations::new();
        engine::validate_policy(&mut inner, &self.policy(), &known);
        for f in inner.into_vec() {
            let field = match f.field.strip_prefix("policy.groups") {
                Some(rest) => format!("settings.rule_groups{rest}"),
                None => f.field.replace(
                    "policy.max_rules_per_transaction",
                    "settings.max_rules_per_purchase",
                ),
            };
            let description = f.description.replace("no such active rule", "no such rule");
            v.add(field, description);
        }
    }
}

/// A rule known only by its id (for `validate_policy`, which reads nothing else).
fn id_only(id: Uuid) -> engine::Rule {
    engine::Rule {
        id,
        kind: engine::RuleKind::Reward,
        name: String::new(),
        benefits: Vec::new(),
        priority: 0,
        stackable: true,
        eligibility: engine::Eligibility::default(),
        validity: super::Validity::default(),
        schedule: engine::Schedule::default(),
        business_units: Vec::new(),
        channels: Vec::new(),
        limits: engine::Limits::default(),
        condition: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::engine::GroupMode;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn group(name: &str, ids: &[u128]) -> RuleGroup {
        RuleGroup {
            name: name.into(),
            mode: GroupMode::Exclusive,
            rule_ids: ids.iter().map(|n| id(*n)).collect(),
        }
    }

    fn fields(s: &ResolutionSettings, known: &[u128]) -> Vec<String> {
        let known: Vec<Uuid> = known.iter().map(|n| id(*n)).collect();
        let mut v = Violations::new();
        s.validate(&mut v, &known);
        v.into_vec().into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn the_defaults_resolve_for_the_customer_without_caps() {
        let s = ResolutionSettings::default();
        assert_eq!(
            s.policy(),
            Policy {
                strategy: Strategy::BestForCustomer,
                groups: vec![],
                max_rules_per_transaction: None,
                combine_campaign_products: false,
            }
        );
        assert_eq!(s.etag(), "r0");
        assert!(fields(&s, &[]).is_empty());
    }

    #[test]
    fn priority_mode_and_the_cap_reach_the_policy() {
        let s = ResolutionSettings {
            discount_mode: ResolutionMode::Priority,
            max_rules_per_purchase: 3,
            groups: vec![group("weekly", &[1, 2])],
            ..Default::default()
        };
        let p = s.policy();
        assert_eq!(p.strategy, Strategy::Priority);
        assert_eq!(p.max_rules_per_transaction, Some(3));
        assert_eq!(p.groups, vec![group("weekly", &[1, 2])]);
    }

    #[test]
    fn overlapping_empty_and_unknown_groups_are_named() {
        let s = ResolutionSettings {
            groups: vec![
                group("a", &[1, 2]),
                group("b", &[2, 9]),
                group("", &[]),
                group("a", &[3]),
            ],
            discount_mode: ResolutionMode::LowestAward,
            max_vouchers_per_purchase: 101,
            ..Default::default()
        };
        assert_eq!(
            fields(&s, &[1, 2, 3]),
            [
                "settings.max_vouchers_per_purchase",
                "settings.discount_mode",
                "settings.rule_groups[1].rule_ids[0]",
                "settings.rule_groups[1].rule_ids[1]",
                "settings.rule_groups[2].name",
                "settings.rule_groups[2].rule_ids",
                "settings.rule_groups[3].name",
            ]
        );
    }

    #[test]
    fn modes_round_trip_through_their_stored_names() {
        for m in [
            ResolutionMode::All,
            ResolutionMode::HighestAward,
            ResolutionMode::Priority,
            ResolutionMode::LowestAward,
        ] {
            assert_eq!(ResolutionMode::parse_str(m.as_str()), Some(m));
        }
        assert_eq!(ResolutionMode::parse_str("x"), None);
    }
}

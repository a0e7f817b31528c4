//! Business units: the partner's stores, e-shops, kiosks, apps, branches and merchants.
use chrono::{DateTime, Utc};
use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnitType {
    Store,
    Eshop,
    Kiosk,
    MobileApp,
    Branch,
    Merchant,
    Other,
}

impl UnitType {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitType::Store => "store",
            UnitType::Eshop => "eshop",
            UnitType::Kiosk => "kiosk",
            UnitType::MobileApp => "mobile_app",
            UnitType::Branch => "branch",
            UnitType::Merchant => "merchant",
            UnitType::Other => "other",
        }
    }

    pub fn parse_str(s: &str) -> Option<Self> {
        Some(match s {
            "store" => UnitType::Store,
            "eshop" => UnitType::Eshop,
            "kiosk" => UnitType::Kiosk,
            "mobile_app" => UnitType::MobileApp,
            "branch" => UnitType::Branch,
            "merchant" => UnitType::Merchant,
            "other" => UnitType::Other,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnitState {
    Active,
    Closed,
}

/// A business unit. `version` grows with every update; its etag is `"v<version>"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusinessUnit {
    pub id: Uuid,
    pub code: String,
    pub display_name: String,
    pub unit_type: UnitType,
    pub state: UnitState,
    /// Sales channel names ("pos", "eshop", …).
    pub channels: Vec<String>,
    pub parent_id: Option<Uuid>,
    pub address: String,
    pub city: String,
    pub country_code: String,
    pub time_zone: String,
    pub owner_name: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl BusinessUnit {
    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }

    /// Checks every field, reporting under `business_unit.<field>`.
    pub fn validate(&self, v: &mut Violations) {
        let f = |n: &str| format!("business_unit.{n}");
        let code_ok = (1..=64).contains(&self.code.len())
            && self
                .code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !code_ok {
            v.add(
                f("code"),
                "must be 1..64 characters of letters, digits, '-', '_' or '.'",
            );
        }
        if !(1..=200).contains(&self.display_name.trim().chars().count()) {
            v.add(f("display_name"), "must be 1..200 characters");
        }
        if !(self.country_code.is_empty()
            || (self.country_code.len() == 2
                && self.country_code.chars().all(|c| c.is_ascii_uppercase())))
        {
            v.add(
                f("country_code"),
                "must be an ISO 3166-1 alpha-2 code such as CZ",
            );
        }
        let tz_ok = self.time_zone.is_empty()
            || self.time_zone == "UTC"
            || (self.time_zone.len() <= 64
                && self.time_zone.contains('/')
                && self
                    .time_zone
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+')));
        if !tz_ok {
            v.add(
                f("time_zone"),
                "must be an IANA time zone such as Europe/Prague",
            );
        }
        for (name, value, max) in [
            ("address", &self.address, 500),
            ("city", &self.city, 100),
            ("owner_name", &self.owner_name, 200),
        ] {
            if value.chars().count() > max {
                v.add(f(name), format!("must be at most {max} characters"));
            }
        }
        if self.parent_id == Some(self.id) {
            v.add(
                f("parent_business_unit_id"),
                "a business unit cannot be its own parent",
            );
        }
    }
}

/// Whether making `parent` the parent of `unit` would close a loop, given each unit's parent.
pub fn creates_cycle(unit: Uuid, parent: Uuid, parent_of: impl Fn(Uuid) -> Option<Uuid>) -> bool {
    let mut current = Some(parent);
    for _ in 0..1_000 {
        match current {
            None => return false,
            Some(p) if p == unit => return true,
            Some(p) => current = parent_of(p),
        }
    }
    true
}

/// Fields an update may change, by update-mask path.
pub const UPDATABLE: &[&str] = &[
    "code",
    "display_name",
    "type",
    "state",
    "channels",
    "parent_business_unit_id",
    "address",
    "city",
    "country_code",
    "time_zone",
    "owner_name",
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn unit() -> BusinessUnit {
        let now = Utc::now();
        BusinessUnit {
            id: Uuid::now_v7(),
            code: "PRG-01".into(),
            display_name: "Praha Chodov".into(),
            unit_type: UnitType::Store,
            state: UnitState::Active,
            channels: vec!["pos".into()],
            parent_id: None,
            address: String::new(),
            city: "Praha".into(),
            country_code: "CZ".into(),
            time_zone: "Europe/Prague".into(),
            owner_name: String::new(),
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn a_unit_needs_a_code_a_name_and_a_real_time_zone() {
        let mut ok = Violations::new();
        unit().validate(&mut ok);
        assert!(ok.is_empty());
        let mut v = Violations::new();
        BusinessUnit {
            code: "bad code".into(),
            display_name: " ".into(),
            time_zone: "Prague".into(),
            country_code: "cz".into(),
            ..unit()
        }
        .validate(&mut v);
        let text = v.into_result().unwrap_err().to_string();
        for f in ["code", "display_name", "time_zone", "country_code"] {
            assert!(text.contains(&format!("business_unit.{f}")), "{f}: {text}");
        }
    }

    #[test]
    fn parents_may_not_form_a_loop() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let parents = HashMap::from([(b, a), (c, b)]);
        let parent_of = |u| parents.get(&u).copied();
        assert!(creates_cycle(a, c, parent_of), "a under c under b under a");
        assert!(!creates_cycle(c, a, parent_of));
    }
}

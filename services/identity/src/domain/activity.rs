//! Customer events: event types with typed property definitions (the partner's own and the
//! built-in ones every partner has), and the rules a tracked event must satisfy.
use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use super::consents::is_code;

/// Data type of an event property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PropertyType {
    String,
    Integer,
    Boolean,
    Timestamp,
    MoneyMinor,
}

/// Longest string property value, in characters.
pub const MAX_STRING_CHARS: usize = 1024;
/// Most properties of an event type or an event.
pub const MAX_PROPERTIES: usize = 100;
/// Largest `payload_json`, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024;
/// How far in the future an event may occur (clock skew of trackers).
pub const MAX_FUTURE_SKEW: Duration = Duration::minutes(5);
/// Longest purchase id.
pub const MAX_PURCHASE_ID_CHARS: usize = 100;

impl PropertyType {
    /// Whether `value` is a valid value of this type; the error says what is expected.
    pub fn check(self, value: &str) -> Result<(), &'static str> {
        let ok = match self {
            PropertyType::String => value.chars().count() <= MAX_STRING_CHARS,
            PropertyType::Integer | PropertyType::MoneyMinor => value.parse::<i64>().is_ok(),
            PropertyType::Boolean => matches!(value, "true" | "false"),
            PropertyType::Timestamp => DateTime::parse_from_rfc3339(value).is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(match self {
                PropertyType::String => "must be at most 1024 characters",
                PropertyType::Integer => "must be a whole number",
                PropertyType::MoneyMinor => "must be an amount in minor units (a whole number)",
                PropertyType::Boolean => "must be \"true\" or \"false\"",
                PropertyType::Timestamp => "must be an RFC 3339 timestamp",
            })
        }
    }
}

/// A property an event type carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropertyDefinition {
    pub key: String,
    pub display_name: String,
    pub property_type: PropertyType,
    pub required: bool,
}

/// An event type. Built-in types exist for every partner, have fixed ids and cannot change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventType {
    pub id: Uuid,
    pub code: String,
    pub display_name: String,
    pub group: String,
    pub properties: Vec<PropertyDefinition>,
    pub active: bool,
    pub built_in: bool,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Fields an update may change, by update-mask path.
pub const UPDATABLE: &[&str] = &["display_name", "group", "properties", "active"];

/// Codes of the built-in event types.
pub const PAGE_VIEW: &str = "page_view";
pub const APP_OPEN: &str = "app_open";
pub const PURCHASE: &str = "purchase";
pub const CUSTOM: &str = "custom";

fn prop(key: &str, name: &str, t: PropertyType, required: bool) -> PropertyDefinition {
    PropertyDefinition {
        key: key.into(),
        display_name: name.into(),
        property_type: t,
        required,
    }
}

/// The built-in event types, ordered by code. Their ids are the same for every partner
/// (UUIDs ending in 1..4); they are never stored.
pub fn built_in_types() -> Vec<EventType> {
    use PropertyType as T;
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    let make = |n: u128, code: &str, name: &str, group: &str, properties| EventType {
        id: Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0000 | n),
        code: code.into(),
        display_name: name.into(),
        group: group.into(),
        properties,
        active: true,
        built_in: true,
        revision: 1,
        created_at: epoch,
        updated_at: epoch,
    };
    vec![
        make(
            2,
            APP_OPEN,
            "App opened",
            "app",
            vec![
                prop("app_version", "App version", T::String, false),
                prop("platform", "Platform (ios, android, ...)", T::String, false),
                prop("screen", "First screen", T::String, false),
            ],
        ),
        make(
            4,
            CUSTOM,
            "Custom event",
            "custom",
            vec![prop("name", "What happened", T::String, true)],
        ),
        make(
            1,
            PAGE_VIEW,
            "Page viewed",
            "web",
            vec![
                prop("url", "URL", T::String, true),
                prop("title", "Page title", T::String, false),
                prop("referrer", "Referrer", T::String, false),
            ],
        ),
        make(
            3,
            PURCHASE,
            "Purchase",
            "commerce",
            vec![
                prop("total_minor", "Total in minor units", T::MoneyMinor, false),
                prop("currency_code", "ISO 4217 currency", T::String, false),
                prop("item_count", "Items", T::Integer, false),
            ],
        ),
    ]
}

/// A built-in type by id or code.
pub fn built_in(id_or_code: &str) -> Option<EventType> {
    let id = Uuid::try_parse(id_or_code).ok();
    built_in_types()
        .into_iter()
        .find(|t| t.code == id_or_code || Some(t.id) == id)
}

impl EventType {
    pub fn etag(&self) -> String {
        format!("r{}", self.revision)
    }

    /// Checks every field, reporting under `event_type.<field>`.
    pub fn validate(&self, v: &mut Violations) {
        if !is_code(&self.code) {
            v.add("event_type.code", "must be 1..64 characters of [a-z0-9_]");
        }
        if !(1..=200).contains(&self.display_name.trim().chars().count()) {
            v.add("event_type.display_name", "must be 1..200 characters");
        }
        if self.group.chars().count() > 64 {
            v.add("event_type.group", "must be at most 64 characters");
        }
        if self.properties.len() > MAX_PROPERTIES {
            v.add(
                "event_type.properties",
                format!("at most {MAX_PROPERTIES} properties"),
            );
        }
        for (i, p) in self.properties.iter().enumerate() {
            let f = |n: &str| format!("event_type.properties[{i}].{n}");
            if !is_code(&p.key) {
                v.add(f("key"), "must be 1..64 characters of [a-z0-9_]");
            } else if self.properties[..i].iter().any(|q| q.key == p.key) {
                v.add(f("key"), "is listed twice");
            }
            if !(1..=200).contains(&p.display_name.trim().chars().count()) {
                v.add(f("display_name"), "must be 1..200 characters");
            }
        }
    }

    /// Checks that `next` properties may replace these: a property keeps its type, and a
    /// required one may not be removed.
    pub fn check_property_change(&self, next: &[PropertyDefinition], v: &mut Violations) {
        for old in &self.properties {
            match next.iter().position(|p| p.key == old.key) {
                None if old.required => v.add(
                    "event_type.properties",
                    format!(
                        "the required property {:?} cannot be removed; make it optional first",
                        old.key
                    ),
                ),
                None => {}
                Some(i) if next[i].property_type != old.property_type => v.add(
                    format!("event_type.properties[{i}].type"),
                    "the type of an existing property cannot change",
                ),
                Some(_) => {}
            }
        }
    }

    /// Checks an event's properties against the definitions, reporting `properties.<key>`.
    pub fn check_properties(&self, properties: &BTreeMap<String, String>, v: &mut Violations) {
        if properties.len() > MAX_PROPERTIES {
            v.add("properties", format!("at most {MAX_PROPERTIES} properties"));
            return;
        }
        for (key, value) in properties {
            match self.properties.iter().find(|p| &p.key == key) {
                None => v.add(
                    format!("properties.{key}"),
                    format!("is not a property of the event type {:?}", self.code),
                ),
                Some(def) => {
                    if let Err(e) = def.property_type.check(value) {
                        v.add(format!("properties.{key}"), e);
                    }
                }
            }
        }
        for def in self.properties.iter().filter(|d| d.required) {
            if !properties.contains_key(&def.key) {
                v.add(format!("properties.{}", def.key), "is required");
            }
        }
    }
}

/// Checks `payload_json`: empty, or a JSON object of at most 16 KiB. Returns it compacted.
pub fn check_payload(payload: &str, v: &mut Violations) -> String {
    if payload.trim().is_empty() {
        return String::new();
    }
    if payload.len() > MAX_PAYLOAD_BYTES {
        v.add("payload_json", "must be at most 16 KiB");
        return String::new();
    }
    match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(value @ serde_json::Value::Object(_)) => value.to_string(),
        Ok(_) => {
            v.add("payload_json", "must be a JSON object");
            String::new()
        }
        Err(_) => {
            v.add("payload_json", "is not valid JSON");
            String::new()
        }
    }
}

/// The moment an event occurred: `at` or now; at most `MAX_FUTURE_SKEW` ahead of `now`.
pub fn check_occur_time(
    at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    v: &mut Violations,
) -> DateTime<Utc> {
    let at = at.unwrap_or(now);
    if at > now + MAX_FUTURE_SKEW {
        v.add("occur_time", "must be at most 5 minutes in the future");
    }
    at
}

/// A recorded customer event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerEvent {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub event_type_id: Uuid,
    pub event_type_code: String,
    pub properties: BTreeMap<String, String>,
    pub business_unit_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// Compact JSON object, or empty.
    pub payload: String,
    pub purchase_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom_type() -> EventType {
        let now = Utc::now();
        EventType {
            id: Uuid::now_v7(),
            code: "store_visit".into(),
            display_name: "Store visit".into(),
            group: "retail".into(),
            properties: vec![
                prop("store", "Store", PropertyType::String, true),
                prop("minutes", "Minutes", PropertyType::Integer, false),
                prop("vip", "VIP", PropertyType::Boolean, false),
                prop("at", "At", PropertyType::Timestamp, false),
                prop("spent", "Spent", PropertyType::MoneyMinor, false),
            ],
            active: true,
            built_in: false,
            revision: 1,
            created_at: now,
            updated_at: now,
        }
    }

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn properties_are_checked_against_their_types() {
        let t = custom_type();
        let mut ok = Violations::new();
        t.check_properties(
            &props(&[
                ("store", "PRG-01"),
                ("minutes", "-5"),
                ("vip", "true"),
                ("at", "2025-01-02T03:04:05Z"),
                ("spent", "12990"),
            ]),
            &mut ok,
        );
        assert!(ok.is_empty(), "{:?}", ok.into_result());
        let mut v = Violations::new();
        t.check_properties(
            &props(&[
                ("minutes", "ten"),
                ("vip", "yes"),
                ("at", "yesterday"),
                ("spent", "12.90"),
                ("colour", "red"),
            ]),
            &mut v,
        );
        let text = v.into_result().unwrap_err().to_string();
        for k in ["store", "minutes", "vip", "at", "spent", "colour"] {
            assert!(text.contains(&format!("properties.{k}")), "{k}: {text}");
        }
    }

    #[test]
    fn the_payload_must_be_a_small_json_object() {
        let mut v = Violations::new();
        assert_eq!(check_payload("", &mut v), "");
        assert_eq!(check_payload("{ \"a\": 1 }", &mut v), "{\"a\":1}");
        assert!(v.is_empty());
        for bad in ["[1]", "{", "\"x\""] {
            let mut v = Violations::new();
            check_payload(bad, &mut v);
            assert!(!v.is_empty(), "{bad}");
        }
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_PAYLOAD_BYTES));
        let mut v = Violations::new();
        check_payload(&big, &mut v);
        assert!(v.into_result().unwrap_err().to_string().contains("16 KiB"));
    }

    #[test]
    fn an_event_may_occur_at_most_five_minutes_ahead() {
        let now = Utc::now();
        let mut v = Violations::new();
        assert_eq!(check_occur_time(None, now, &mut v), now);
        check_occur_time(Some(now + Duration::minutes(4)), now, &mut v);
        assert!(v.is_empty());
        check_occur_time(Some(now + Duration::minutes(6)), now, &mut v);
        assert!(
            v.into_result()
                .unwrap_err()
                .to_string()
                .contains("occur_time")
        );
    }

    #[test]
    fn built_in_types_are_found_by_code_or_id() {
        let types = built_in_types();
        let codes: Vec<_> = types.iter().map(|t| t.code.as_str()).collect();
        assert_eq!(
            codes,
            [APP_OPEN, CUSTOM, PAGE_VIEW, PURCHASE],
            "ordered by code"
        );
        let purchase = built_in(PURCHASE).unwrap();
        assert_eq!(built_in(&purchase.id.to_string()), Some(purchase));
        assert!(built_in("store_visit").is_none());
    }

    #[test]
    fn a_required_property_cannot_be_removed_nor_a_type_changed() {
        let t = custom_type();
        let mut next = t.properties.clone();
        next.retain(|p| p.key != "store");
        next[0].property_type = PropertyType::String;
        let mut v = Violations::new();
        t.check_property_change(&next, &mut v);
        let text = v.into_result().unwrap_err().to_string();
        assert!(
            text.contains("\"store\"") && text.contains("type"),
            "{text}"
        );
        let mut optional_removed = t.properties.clone();
        optional_removed.retain(|p| p.key != "vip");
        let mut ok = Violations::new();
        t.check_property_change(&optional_removed, &mut ok);
        assert!(ok.is_empty());
    }
}

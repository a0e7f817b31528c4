//! Customer data catalogues (contact sources, interests), user-defined customer properties and
//! relations between customer accounts. Pure rules; no I/O.
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Whether `code` is 1..64 characters of `[a-z0-9_]`.
pub fn is_code(code: &str) -> bool {
    (1..=64).contains(&code.len())
        && code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn check_code(v: &mut Violations, field: String, code: &str) {
    if !is_code(code) {
        v.add(field, "must be 1..64 characters of [a-z0-9_]");
    }
}

fn check_len(v: &mut Violations, field: String, value: &str, min: usize, max: usize) {
    let n = value.chars().count();
    if n < min {
        v.add(
            field,
            if min == 1 {
                "is required".to_owned()
            } else {
                format!("must be at least {min} characters")
            },
        );
    } else if n > max {
        v.add(field, format!("must be at most {max} characters"));
    }
}

/// A touchpoint customer data was obtained from (e-shop, app, kiosk, campaign …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactSource {
    pub id: Uuid,
    pub code: String,
    pub display_name: String,
    pub description: String,
    /// Grows with every update; the etag is `"v<version>"`.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ContactSource {
    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }

    /// Checks every field, reporting under `contact_source.<field>`.
    pub fn validate(&self, v: &mut Violations) {
        let f = |n: &str| format!("contact_source.{n}");
        check_code(v, f("code"), &self.code);
        check_len(v, f("display_name"), &self.display_name, 1, 200);
        check_len(v, f("description"), &self.description, 0, 2000);
    }
}

/// Fields UpdateContactSource may change.
pub const CONTACT_SOURCE_UPDATABLE: &[&str] = &["display_name", "description"];

/// An area customers like or prefer, optionally grouped under a parent interest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interest {
    pub id: Uuid,
    pub code: String,
    pub display_name: String,
    pub parent_id: Option<Uuid>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Interest {
    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }

    /// Checks every field, reporting under `interest.<field>`.
    pub fn validate(&self, v: &mut Violations) {
        let f = |n: &str| format!("interest.{n}");
        check_code(v, f("code"), &self.code);
        check_len(v, f("display_name"), &self.display_name, 1, 200);
        if self.parent_id == Some(self.id) {
            v.add(
                f("parent_interest_id"),
                "an interest cannot be its own parent",
            );
        }
    }
}

/// Fields UpdateInterest may change.
pub const INTEREST_UPDATABLE: &[&str] = &["display_name", "parent_interest_id"];

/// The data type of a user-defined customer property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PropertyType {
    String,
    Integer,
    Boolean,
    Date,
    Timestamp,
    Enum,
}

impl PropertyType {
    pub fn as_str(self) -> &'static str {
        match self {
            PropertyType::String => "string",
            PropertyType::Integer => "integer",
            PropertyType::Boolean => "boolean",
            PropertyType::Date => "date",
            PropertyType::Timestamp => "timestamp",
            PropertyType::Enum => "enum",
        }
    }

    pub fn parse_str(s: &str) -> Option<Self> {
        Some(match s {
            "string" => PropertyType::String,
            "integer" => PropertyType::Integer,
            "boolean" => PropertyType::Boolean,
            "date" => PropertyType::Date,
            "timestamp" => PropertyType::Timestamp,
            "enum" => PropertyType::Enum,
            _ => return None,
        })
    }
}

/// The longest string value a property may hold, and the default of `max_length`.
pub const MAX_PROPERTY_LENGTH: i32 = 1024;

/// The schema one key of `Customer.properties` is validated against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropertyDefinition {
    pub id: Uuid,
    pub key: String,
    pub display_name: String,
    pub data_type: PropertyType,
    /// The values an enum property accepts, in the order given.
    pub allowed_values: Vec<String>,
    /// Longest string value in characters; 0 = [`MAX_PROPERTY_LENGTH`].
    pub max_length: i32,
    pub required: bool,
    /// Personal data is erased with the customer.
    pub personal_data: bool,
    pub description: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Fields UpdateCustomerPropertyDefinition may change (`key` and `data_type` are immutable).
pub const PROPERTY_DEFINITION_UPDATABLE: &[&str] = &[
    "display_name",
    "allowed_values",
    "max_length",
    "required",
    "personal_data",
    "description",
];

impl PropertyDefinition {
    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }

    /// Checks every field, reporting under `definition.<field>`.
    pub fn validate(&self, v: &mut Violations) {
        let f = |n: &str| format!("definition.{n}");
        check_code(v, f("key"), &self.key);
        check_len(v, f("display_name"), &self.display_name, 1, 200);
        check_len(v, f("description"), &self.description, 0, 2000);
        if !(0..=MAX_PROPERTY_LENGTH).contains(&self.max_length) {
            v.add(f("max_length"), "must be 1..1024, or 0 for 1024");
        }
        if self.data_type == PropertyType::Enum {
            if !(1..=200).contains(&self.allowed_values.len()) {
                v.add(f("allowed_values"), "an enum needs 1..200 allowed values");
            }
            let mut seen = BTreeSet::new();
            for (i, value) in self.allowed_values.iter().enumerate() {
                if value.is_empty() || value.chars().count() > 200 {
                    v.add(
                        format!("definition.allowed_values[{i}]"),
                        "must be 1..200 characters",
                    );
                } else if !seen.insert(value.to_lowercase()) {
                    v.add(format!("definition.allowed_values[{i}]"), "is listed twice");
                }
            }
        } else if !self.allowed_values.is_empty() {
            v.add(f("allowed_values"), "only an enum has allowed values");
        }
    }

    fn limit(&self) -> usize {
        if self.max_length <= 0 {
            MAX_PROPERTY_LENGTH as usize
        } else {
            self.max_length as usize
        }
    }

    /// The value in canonical form, or why it does not fit this definition.
    pub fn normalise_value(&self, raw: &str) -> Result<String, String> {
        match self.data_type {
            PropertyType::String => {
                if raw.chars().count() > self.limit() {
                    Err(format!("must be at most {} characters", self.limit()))
                } else {
                    Ok(raw.to_owned())
                }
            }
            PropertyType::Integer => raw
                .trim()
                .parse::<i64>()
                .map(|n| n.to_string())
                .map_err(|_| "must be a whole number such as 42".to_owned()),
            PropertyType::Boolean => match raw.trim().to_ascii_lowercase().as_str() {
                "true" => Ok("true".to_owned()),
                "false" => Ok("false".to_owned()),
                _ => Err("must be true or false".to_owned()),
            },
            PropertyType::Date => NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
                .map(|d| d.format("%Y-%m-%d").to_string())
                .map_err(|_| "must be a date as YYYY-MM-DD".to_owned()),
            PropertyType::Timestamp => DateTime::parse_from_rfc3339(raw.trim())
                .map(|t| {
                    t.with_timezone(&Utc)
                        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
                })
                .map_err(|_| {
                    "must be an RFC 3339 timestamp such as 2024-05-01T10:00:00Z".to_owned()
                }),
            PropertyType::Enum => {
                let wanted = raw.trim();
                self.allowed_values
                    .iter()
                    .find(|a| a.as_str() == wanted)
                    .or_else(|| {
                        self.allowed_values
                            .iter()
                            .find(|a| a.eq_ignore_ascii_case(wanted))
                    })
                    .cloned()
                    .ok_or_else(|| format!("must be one of {}", self.allowed_values.join(", ")))
            }
        }
    }
}

/// Validates and normalises customer `properties` (reported under `<prefix>.properties[key]`)
/// against a partner's definitions.
///
/// - A partner without any definition accepts free properties (they are only checked for the
///   key syntax and length by `CustomerProfile::normalise`): that keeps partners that never
///   defined their properties working.
/// - Otherwise every key needs a definition ("no such property") and every value must fit it;
///   values are returned in canonical form (`"TRUE"` -> `"true"`, `"007"` -> `"7"`).
/// - `previous` is the stored map on an update: a value that did not change is kept as it is
///   (it was accepted when written), and a required property the account never had stays
///   missing; a required property may not be removed, nor be missing on create.
pub fn validate_properties(
    definitions: &[PropertyDefinition],
    properties: &BTreeMap<String, String>,
    previous: Option<&BTreeMap<String, String>>,
    prefix: &str,
    v: &mut Violations,
) -> BTreeMap<String, String> {
    if definitions.is_empty() {
        return properties.clone();
    }
    let by_key: BTreeMap<&str, &PropertyDefinition> =
        definitions.iter().map(|d| (d.key.as_str(), d)).collect();
    let mut out = BTreeMap::new();
    for (key, value) in properties {
        let field = format!("{prefix}.properties[{key}]");
        if previous.and_then(|p| p.get(key)) == Some(value) {
            out.insert(key.clone(), value.clone());
            continue;
        }
        match by_key.get(key.as_str()) {
            None => v.add(field, "no such property"),
            Some(d) => match d.normalise_value(value) {
                Ok(n) => {
                    out.insert(key.clone(), n);
                }
                Err(reason) => v.add(field, reason),
            },
        }
    }
    for d in definitions.iter().filter(|d| d.required) {
        if properties.contains_key(&d.key) {
            continue;
        }
        let field = format!("{prefix}.properties[{}]", d.key);
        match previous {
            None => v.add(field, "is required"),
            Some(p) if p.contains_key(&d.key) => v.add(field, "is required and cannot be removed"),
            Some(_) => {}
        }
    }
    out
}

/// Why existing values stop fitting a changed definition: the first offending account and the
/// reason, or `None` when every value fits.
pub fn first_misfit<'a>(
    definition: &PropertyDefinition,
    values: impl IntoIterator<Item = (Uuid, Option<&'a str>)>,
) -> Option<(Uuid, String)> {
    for (customer, value) in values {
        match value {
            None if definition.required => return Some((customer, "has no value".to_owned())),
            None => {}
            Some(value) => {
                if let Err(reason) = definition.normalise_value(value) {
                    return Some((customer, format!("value {value:?} {reason}")));
                }
            }
        }
    }
    None
}

/// A kind of relation between customer accounts, e.g. household or referral.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationType {
    pub id: Uuid,
    pub code: String,
    pub display_name: String,
    pub from_role_name: String,
    pub to_role_name: String,
    pub symmetric: bool,
    /// Most relations of this type one account may have; 0 = unlimited.
    pub max_relations_per_customer: i32,
    pub share_benefits: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Fields UpdateRelationType may change (`code` and `symmetric` are immutable).
pub const RELATION_TYPE_UPDATABLE: &[&str] = &[
    "display_name",
    "from_role_name",
    "to_role_name",
    "max_relations_per_customer",
    "share_benefits",
];

impl RelationType {
    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }

    /// Fills defaults: a symmetric type's `to` role is its `from` role.
    pub fn normalise(&mut self) {
        self.code = self.code.trim().to_owned();
        self.display_name = self.display_name.trim().to_owned();
        self.from_role_name = self.from_role_name.trim().to_owned();
        self.to_role_name = self.to_role_name.trim().to_owned();
        if self.symmetric && self.to_role_name.is_empty() {
            self.to_role_name = self.from_role_name.clone();
        }
    }

    /// Checks every field, reporting under `relation_type.<field>`.
    pub fn validate(&self, v: &mut Violations) {
        let f = |n: &str| format!("relation_type.{n}");
        check_code(v, f("code"), &self.code);
        check_len(v, f("display_name"), &self.display_name, 1, 200);
        check_len(v, f("from_role_name"), &self.from_role_name, 1, 100);
        check_len(v, f("to_role_name"), &self.to_role_name, 1, 100);
        if self.symmetric && self.to_role_name != self.from_role_name {
            v.add(
                f("to_role_name"),
                "a symmetric relation has one role name for both sides",
            );
        }
        if self.max_relations_per_customer < 0 {
            v.add(
                f("max_relations_per_customer"),
                "must be 0 (unlimited) or more",
            );
        }
    }
}

/// A relation between two customer accounts of one partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRelation {
    pub id: Uuid,
    pub relation_type_id: Uuid,
    pub from_customer_id: Uuid,
    pub to_customer_id: Uuid,
    pub note: String,
    pub created_at: DateTime<Utc>,
}

impl CustomerRelation {
    /// The two accounts in a fixed order: a pair is related at most once per type, whichever
    /// side each is on.
    pub fn pair(&self) -> (Uuid, Uuid) {
        ordered(self.from_customer_id, self.to_customer_id)
    }

    /// The account on the other side from `customer`.
    pub fn other_side(&self, customer: Uuid) -> Uuid {
        if self.from_customer_id == customer {
            self.to_customer_id
        } else {
            self.from_customer_id
        }
    }

    /// Checks the fields, reporting under `relation.<field>`.
    pub fn validate(&self, v: &mut Violations) {
        if self.from_customer_id == self.to_customer_id {
            v.add(
                "relation.to_customer_id",
                "a customer cannot be related to itself",
            );
        }
        check_len(v, "relation.note".into(), &self.note, 0, 2000);
    }
}

/// Two ids in ascending order.
pub fn ordered(a: Uuid, b: Uuid) -> (Uuid, Uuid) {
    if a <= b { (a, b) } else { (b, a) }
}

/// What re-pointing `from`'s relations to `to` does (a merge of `from` into `to`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationMove {
    /// Relations now on `to`'s side, as they are after the move.
    pub moved: Vec<CustomerRelation>,
    /// Relations dropped because they would relate `to` to itself or repeat one `to` has.
    pub dropped: Vec<CustomerRelation>,
}

/// Plans moving the relations of `from` (`of_from`) to `to`, given the relations `to` already
/// has (`of_to`).
pub fn plan_relation_move(
    of_from: &[CustomerRelation],
    of_to: &[CustomerRelation],
    from: Uuid,
    to: Uuid,
) -> RelationMove {
    let mut taken: BTreeSet<(Uuid, (Uuid, Uuid))> = of_to
        .iter()
        .map(|r| (r.relation_type_id, r.pair()))
        .collect();
    let mut plan = RelationMove::default();
    for r in of_from {
        let mut next = r.clone();
        if next.from_customer_id == from {
            next.from_customer_id = to;
        }
        if next.to_customer_id == from {
            next.to_customer_id = to;
        }
        if next.from_customer_id == next.to_customer_id
            || !taken.insert((next.relation_type_id, next.pair()))
        {
            plan.dropped.push(r.clone());
        } else {
            plan.moved.push(next);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn definition(key: &str, data_type: PropertyType) -> PropertyDefinition {
        let now = Utc::now();
        PropertyDefinition {
            id: Uuid::now_v7(),
            key: key.into(),
            display_name: key.into(),
            data_type,
            allowed_values: if data_type == PropertyType::Enum {
                vec!["Gold".into(), "Silver".into()]
            } else {
                vec![]
            },
            max_length: 0,
            required: false,
            personal_data: false,
            description: String::new(),
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn fields(v: Violations) -> String {
        v.into_result()
            .map(|_| String::new())
            .unwrap_or_else(|e| format!("{e:?}"))
    }

    #[test]
    fn values_are_checked_and_normalised_by_type() {
        let cases = [
            (PropertyType::Integer, " 007 ", Ok("7")),
            (PropertyType::Integer, "-12", Ok("-12")),
            (PropertyType::Integer, "1.5", Err(())),
            (PropertyType::Boolean, "TRUE", Ok("true")),
            (PropertyType::Boolean, "False", Ok("false")),
            (PropertyType::Boolean, "yes", Err(())),
            (PropertyType::Date, "2024-02-29", Ok("2024-02-29")),
            (PropertyType::Date, "2023-02-29", Err(())),
            (PropertyType::Date, "01.02.2024", Err(())),
            (
                PropertyType::Timestamp,
                "2024-05-01T12:00:00+02:00",
                Ok("2024-05-01T10:00:00Z"),
            ),
            (PropertyType::Timestamp, "2024-05-01", Err(())),
            (PropertyType::Enum, "gold", Ok("Gold")),
            (PropertyType::Enum, "Silver", Ok("Silver")),
            (PropertyType::Enum, "bronze", Err(())),
            (PropertyType::String, " as is ", Ok(" as is ")),
        ];
        for (t, raw, expected) in cases {
            let got = definition("p", t).normalise_value(raw);
            match expected {
                Ok(want) => assert_eq!(got.as_deref(), Ok(want), "{t:?} {raw:?}"),
                Err(()) => assert!(got.is_err(), "{t:?} {raw:?} should be rejected: {got:?}"),
            }
        }
    }

    #[test]
    fn strings_longer_than_max_length_are_rejected() {
        let mut d = definition("nick", PropertyType::String);
        d.max_length = 3;
        assert!(d.normalise_value("abc").is_ok());
        assert!(d.normalise_value("abcd").is_err());
        d.max_length = 0;
        assert!(d.normalise_value(&"x".repeat(1024)).is_ok());
        assert!(d.normalise_value(&"x".repeat(1025)).is_err());
    }

    #[test]
    fn a_partner_without_definitions_accepts_free_properties() {
        let mut v = Violations::new();
        let p = props(&[("tier", "gold")]);
        assert_eq!(validate_properties(&[], &p, None, "customer", &mut v), p);
        assert!(v.is_empty());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named_and_good_ones_normalised() {
        let defs = [
            definition("vip", PropertyType::Boolean),
            definition("shoe_size", PropertyType::Integer),
        ];
        let mut v = Violations::new();
        let out = validate_properties(
            &defs,
            &props(&[("vip", "TRUE"), ("shoe_size", "big"), ("tier", "gold")]),
            None,
            "customer",
            &mut v,
        );
        assert_eq!(out.get("vip").map(String::as_str), Some("true"));
        let text = fields(v);
        assert!(text.contains("customer.properties[shoe_size]"), "{text}");
        assert!(
            text.contains("customer.properties[tier]") && text.contains("no such property"),
            "{text}"
        );
    }

    #[test]
    fn a_required_property_is_needed_on_create_and_cannot_be_removed() {
        let mut d = definition("vip", PropertyType::Boolean);
        d.required = true;
        let defs = [d];
        let mut v = Violations::new();
        validate_properties(&defs, &props(&[]), None, "customer", &mut v);
        assert!(fields(v).contains("customer.properties[vip]"));

        let mut v = Violations::new();
        validate_properties(
            &defs,
            &props(&[]),
            Some(&props(&[("vip", "true")])),
            "customer",
            &mut v,
        );
        assert!(fields(v).contains("cannot be removed"));

        // An account from before the property was required keeps working.
        let mut v = Violations::new();
        validate_properties(&defs, &props(&[]), Some(&props(&[])), "customer", &mut v);
        assert!(v.is_empty());
    }

    #[test]
    fn unchanged_values_on_update_are_kept_even_without_a_definition() {
        let defs = [definition("vip", PropertyType::Boolean)];
        let before = props(&[("legacy", "x"), ("vip", "true")]);
        let mut v = Violations::new();
        let out = validate_properties(
            &defs,
            &props(&[("legacy", "x"), ("vip", "False")]),
            Some(&before),
            "customer",
            &mut v,
        );
        assert!(v.is_empty());
        assert_eq!(out, props(&[("legacy", "x"), ("vip", "false")]));
    }

    #[test]
    fn definitions_need_a_key_a_name_and_enum_values() {
        let mut d = definition("Bad Key", PropertyType::Enum);
        d.allowed_values = vec!["a".into(), "A".into(), String::new()];
        d.display_name = String::new();
        d.max_length = 5000;
        let mut v = Violations::new();
        d.validate(&mut v);
        let text = fields(v);
        for f in [
            "definition.key",
            "definition.display_name",
            "definition.max_length",
            "allowed_values[1]",
            "allowed_values[2]",
        ] {
            assert!(text.contains(f), "{f}: {text}");
        }
        let mut s = definition("nick", PropertyType::String);
        s.allowed_values = vec!["x".into()];
        let mut v = Violations::new();
        s.validate(&mut v);
        assert!(fields(v).contains("only an enum"));
    }

    #[test]
    fn existing_values_that_no_longer_fit_are_reported() {
        let mut d = definition("tier", PropertyType::Enum);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(first_misfit(&d, [(a, Some("gold")), (b, None)]), None);
        d.allowed_values = vec!["Silver".into()];
        assert_eq!(first_misfit(&d, [(a, Some("gold"))]).map(|m| m.0), Some(a));
        d.allowed_values = vec!["Gold".into()];
        d.required = true;
        assert_eq!(
            first_misfit(&d, [(a, Some("gold")), (b, None)]).map(|m| m.0),
            Some(b)
        );
    }

    #[test]
    fn symmetric_relation_types_share_one_role_name() {
        let now = Utc::now();
        let mut t = RelationType {
            id: Uuid::now_v7(),
            code: "household".into(),
            display_name: "Household".into(),
            from_role_name: "member".into(),
            to_role_name: String::new(),
            symmetric: true,
            max_relations_per_customer: 0,
            share_benefits: true,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        t.normalise();
        assert_eq!(t.to_role_name, "member");
        let mut v = Violations::new();
        t.validate(&mut v);
        assert!(v.is_empty());
        t.to_role_name = "head".into();
        t.max_relations_per_customer = -1;
        let mut v = Violations::new();
        t.validate(&mut v);
        let text = fields(v);
        assert!(
            text.contains("relation_type.to_role_name")
                && text.contains("max_relations_per_customer")
        );
    }

    fn relation(t: Uuid, from: Uuid, to: Uuid) -> CustomerRelation {
        CustomerRelation {
            id: Uuid::now_v7(),
            relation_type_id: t,
            from_customer_id: from,
            to_customer_id: to,
            note: String::new(),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn a_customer_cannot_be_related_to_itself() {
        let a = Uuid::now_v7();
        let mut v = Violations::new();
        relation(Uuid::now_v7(), a, a).validate(&mut v);
        assert!(fields(v).contains("relation.to_customer_id"));
    }

    #[test]
    fn moving_relations_drops_self_relations_and_duplicates() {
        let (t, from, to, x, y) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let with_to = relation(t, from, to);
        let dup = relation(t, x, from);
        let fresh = relation(t, from, y);
        let plan = plan_relation_move(
            &[with_to.clone(), dup.clone(), fresh.clone()],
            &[with_to.clone(), relation(t, to, x)],
            from,
            to,
        );
        assert_eq!(plan.dropped, vec![with_to, dup]);
        assert_eq!(plan.moved.len(), 1);
        assert_eq!(
            (plan.moved[0].from_customer_id, plan.moved[0].to_customer_id),
            (to, y)
        );
        assert_eq!(plan.moved[0].id, fresh.id);
    }

    proptest! {
        #[test]
        fn every_whole_number_round_trips(n in any::<i64>()) {
            let d = definition("n", PropertyType::Integer);
            prop_assert_eq!(d.normalise_value(&format!(" {n} ")), Ok(n.to_string()));
        }

        #[test]
        fn normalised_values_are_accepted_again_unchanged(raw in ".{0,40}", t in 0usize..6) {
            let types = [PropertyType::String, PropertyType::Integer, PropertyType::Boolean,
                PropertyType::Date, PropertyType::Timestamp, PropertyType::Enum];
            let d = definition("p", types[t]);
            if let Ok(n) = d.normalise_value(&raw) {
                prop_assert_eq!(d.normalise_value(&n), Ok(n.clone()));
            }
        }

        #[test]
        fn moved_relations_are_never_self_or_duplicate(edges in proptest::collection::vec((0u8..2, 0u8..4, 0u8..4), 0..12)) {
            let ids: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
            let types = [Uuid::now_v7(), Uuid::now_v7()];
            let (from, to) = (ids[0], ids[1]);
            let mut seen = BTreeSet::new();
            let rels: Vec<CustomerRelation> = edges.iter()
                .filter(|(_, a, b)| a != b)
                .map(|(t, a, b)| relation(types[*t as usize], ids[*a as usize], ids[*b as usize]))
                .filter(|r| seen.insert((r.relation_type_id, r.pair())))
                .collect();
            let of = |c: Uuid| rels.iter().filter(|r| r.from_customer_id == c || r.to_customer_id == c).cloned().collect::<Vec<_>>();
            let plan = plan_relation_move(&of(from), &of(to), from, to);
            let mut after: BTreeSet<(Uuid, (Uuid, Uuid))> = of(to).iter().map(|r| (r.relation_type_id, r.pair())).collect();
            for r in &plan.moved {
                prop_assert!(r.from_customer_id != r.to_customer_id);
                prop_assert!(r.from_customer_id != from && r.to_customer_id != from);
                prop_assert!(after.insert((r.relation_type_id, r.pair())));
            }
            prop_assert_eq!(plan.moved.len() + plan.dropped.len(), of(from).len());
        }
    }
}

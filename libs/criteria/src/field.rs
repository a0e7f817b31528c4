//! The fields a condition can compare, and what each of them allows.
use serde::{Deserialize, Serialize};

use crate::Operator;
use crate::purchases::{Measure, Window};

/// Customer attributes (`customer.<attribute>`).
pub const CUSTOMER_ATTRIBUTES: &[&str] = &[
    "first_name",
    "last_name",
    "email",
    "phone",
    "birth_date",
    "gender",
    "language_code",
    "city",
    "country_code",
    "state",
];
/// Features projected from events (`features.<name>`); integers, except
/// [`STRING_FEATURES`].
pub const FEATURES: &[&str] = &[
    "purchase_count",
    "total_spent_minor",
    "last_purchase_days_ago",
    "email_hard_bounced",
    "email_soft_bounce_count",
    "tier_id",
    "tier_rank",
    "marketing_consent_email",
    "marketing_consent_sms",
    "marketing_consent_push",
    "marketing_consent_viber",
    "data_processing_consent",
    "rfm_recency_months",
    "rfm_frequency",
    "rfm_monetary_minor",
    "rfm_recency_score",
    "rfm_frequency_score",
    "rfm_monetary_score",
];
/// The [`FEATURES`] holding strings: `tier_id` (a UUID), and `"true"`/`"false"` (compared
/// with a boolean value): `email_hard_bounced`, `marketing_consent_<channel>`,
/// `data_processing_consent`.
pub const STRING_FEATURES: &[&str] = &[
    "email_hard_bounced",
    "tier_id",
    "marketing_consent_email",
    "marketing_consent_sms",
    "marketing_consent_push",
    "marketing_consent_viber",
    "data_processing_consent",
];
/// Integer fields of the current cart (`cart.<name>`).
pub const CART_NUMBERS: &[&str] = &["total_minor", "line_count"];
/// List fields of the current cart (`cart.<name>`).
pub const CART_LISTS: &[&str] = &["product_ids", "product_group_ids"];
/// Longest key of a user-defined property.
pub const MAX_PROPERTY_KEY_LEN: usize = 64;

const PROPERTIES_PREFIX: &str = "customer.properties.";
const CONSENTS_PREFIX: &str = "consents.";
const POINTS_PREFIX: &str = "points.";
const EVENTS_PREFIX: &str = "events.";
const EVENT_COUNT_SUFFIX: &str = ".count";
const PURCHASES_PREFIX: &str = "purchases.";

const TEXT_OPERATORS: &[Operator] = &[
    Operator::Equal,
    Operator::NotEqual,
    Operator::In,
    Operator::Exists,
    Operator::Contains,
];
const PROPERTY_OPERATORS: &[Operator] = &[
    Operator::Equal,
    Operator::NotEqual,
    Operator::Less,
    Operator::LessOrEqual,
    Operator::Greater,
    Operator::GreaterOrEqual,
    Operator::In,
    Operator::Exists,
    Operator::Contains,
];
const NUMBER_OPERATORS: &[Operator] = &[
    Operator::Equal,
    Operator::NotEqual,
    Operator::Less,
    Operator::LessOrEqual,
    Operator::Greater,
    Operator::GreaterOrEqual,
    Operator::In,
    Operator::Exists,
];
const LIST_OPERATORS: &[Operator] = &[Operator::Contains, Operator::In, Operator::Exists];

/// The kind of value a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// A string (customer attributes and user-defined properties).
    String,
    /// A 64-bit integer (features, cart totals).
    Int,
    /// A list of strings (cart product ids).
    StringList,
}

impl ValueKind {
    /// The name used on the wire: `"string"`, `"int"` or `"string_list"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueKind::String => "string",
            ValueKind::Int => "int",
            ValueKind::StringList => "string_list",
        }
    }
}

/// A known field. Build it with [`Field::parse`]; its canonical path is [`Field::path`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// `customer.<attribute>`, e.g. `customer.city`.
    Customer(String),
    /// `customer.properties.<key>`, a user-defined property (a string).
    Property(String),
    /// `features.<name>`, e.g. `features.total_spent_minor`.
    Feature(String),
    /// `cart.<name>`, e.g. `cart.total_minor`.
    Cart(String),
    /// `consents.<consent type code>`: the state of the customer's consent of that type,
    /// `granted`, `withdrawn` or `expired` (a string; missing = never answered).
    Consent(String),
    /// `points.<points type code>`: the customer's available balance of that points type.
    Points(String),
    /// `events.<event type code>.count`: how many events of that type were tracked for the
    /// customer.
    EventCount(String),
    /// `purchases.<window>.<measure>`, e.g. `purchases.last_90_days.count` (see
    /// [`crate::purchases`]).
    Purchases { window: Window, measure: Measure },
}

impl Field {
    /// Parses a field path such as `customer.properties.vip`; the error is a human-readable
    /// reason.
    pub fn parse(path: &str) -> Result<Field, String> {
        if let Some(key) = path.strip_prefix(PROPERTIES_PREFIX) {
            return if is_property_key(key) {
                Ok(Field::Property(key.to_owned()))
            } else {
                Err(format!(
                    "a property key must be 1..{MAX_PROPERTY_KEY_LEN} characters of [a-z0-9_], \
                     got {key:?}"
                ))
            };
        }
        let code = |prefix: &str, suffix: &str| {
            path.strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(suffix))
        };
        let bad_code = |what: &str, key: &str| {
            Err(format!(
                "a {what} code must be 1..{MAX_PROPERTY_KEY_LEN} characters of [a-z0-9_], \
                 got {key:?}"
            ))
        };
        if let Some(key) = code(CONSENTS_PREFIX, "") {
            return if is_property_key(key) {
                Ok(Field::Consent(key.to_owned()))
            } else {
                bad_code("consent type", key)
            };
        }
        if let Some(key) = code(POINTS_PREFIX, "") {
            return if is_property_key(key) {
                Ok(Field::Points(key.to_owned()))
            } else {
                bad_code("points type", key)
            };
        }
        if let Some(key) = code(EVENTS_PREFIX, EVENT_COUNT_SUFFIX) {
            return if is_property_key(key) {
                Ok(Field::EventCount(key.to_owned()))
            } else {
                bad_code("event type", key)
            };
        }
        if let Some(rest) = path.strip_prefix(PURCHASES_PREFIX) {
            let (window, measure) = rest.split_once('.').unwrap_or((rest, ""));
            let window = Window::parse(window)?;
            let measure = Measure::parse(measure).ok_or_else(|| {
                let all: Vec<_> = Measure::ALL.iter().map(|m| m.as_str()).collect();
                format!(
                    "a purchase field ends with one of {}, got {path:?}",
                    all.join(", ")
                )
            })?;
            return Ok(Field::Purchases { window, measure });
        }
        let known = |list: &[&str], name: &str| list.contains(&name).then(|| name.to_owned());
        let field = match path.split_once('.') {
            Some(("customer", a)) => known(CUSTOMER_ATTRIBUTES, a).map(Field::Customer),
            Some(("features", f)) => known(FEATURES, f).map(Field::Feature),
            Some(("cart", c)) => known(CART_NUMBERS, c)
                .or_else(|| known(CART_LISTS, c))
                .map(Field::Cart),
            _ => None,
        };
        field.ok_or_else(|| format!("unknown field {path:?}"))
    }

    /// The canonical path, e.g. `customer.properties.tier`; [`crate::Facts`] are keyed by it.
    pub fn path(&self) -> String {
        match self {
            Field::Customer(a) => format!("customer.{a}"),
            Field::Property(k) => format!("{PROPERTIES_PREFIX}{k}"),
            Field::Feature(f) => format!("features.{f}"),
            Field::Cart(c) => format!("cart.{c}"),
            Field::Consent(c) => format!("{CONSENTS_PREFIX}{c}"),
            Field::Points(c) => format!("{POINTS_PREFIX}{c}"),
            Field::EventCount(c) => format!("{EVENTS_PREFIX}{c}{EVENT_COUNT_SUFFIX}"),
            Field::Purchases { window, measure } => {
                format!("{PURCHASES_PREFIX}{window}.{}", measure.as_str())
            }
        }
    }

    /// The kind of value the field holds.
    pub fn value_kind(&self) -> ValueKind {
        match self {
            Field::Customer(_) | Field::Property(_) | Field::Consent(_) => ValueKind::String,
            Field::Feature(f) if STRING_FEATURES.contains(&f.as_str()) => ValueKind::String,
            Field::Feature(_) | Field::Points(_) | Field::EventCount(_) => ValueKind::Int,
            Field::Cart(c) if CART_LISTS.contains(&c.as_str()) => ValueKind::StringList,
            Field::Cart(_) => ValueKind::Int,
            Field::Purchases { measure, .. } if measure.is_list() => ValueKind::StringList,
            Field::Purchases { .. } => ValueKind::Int,
        }
    }

    /// The operators the field allows. Properties are strings but may hold numbers, so they
    /// also allow the ordering operators (the fact is parsed as an integer).
    pub fn operators(&self) -> &'static [Operator] {
        match (self, self.value_kind()) {
            (Field::Property(_), _) => PROPERTY_OPERATORS,
            (_, ValueKind::String) => TEXT_OPERATORS,
            (_, ValueKind::Int) => NUMBER_OPERATORS,
            (_, ValueKind::StringList) => LIST_OPERATORS,
        }
    }

    /// Whether the field reads the current cart.
    pub fn is_cart(&self) -> bool {
        matches!(self, Field::Cart(_))
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.path())
    }
}

fn is_property_key(key: &str) -> bool {
    (1..=MAX_PROPERTY_KEY_LEN).contains(&key.len())
        && key
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

/// One entry of the field catalogue (what `ListCriterionFields` shows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    /// The path; user-defined properties appear as `customer.properties.<key>`.
    pub path: String,
    /// Human-readable description.
    pub description: String,
    /// The kind of value.
    pub value_kind: ValueKind,
    /// Allowed operators.
    pub operators: &'static [Operator],
    /// Whether it reads the cart (only for online-recalculated segments).
    pub cart: bool,
}

/// Every field the language knows, in a stable order.
pub fn catalog() -> Vec<FieldSpec> {
    let spec = |field: Field, path: String, description: String| FieldSpec {
        path,
        description,
        value_kind: field.value_kind(),
        operators: field.operators(),
        cart: field.is_cart(),
    };
    let mut out = Vec::new();
    for a in CUSTOMER_ATTRIBUTES {
        let f = Field::Customer((*a).to_owned());
        out.push(spec(f.clone(), f.path(), format!("Customer attribute {a}")));
    }
    out.push(spec(
        Field::Property("key".to_owned()),
        format!("{PROPERTIES_PREFIX}<key>"),
        "User-defined customer property; key of [a-z0-9_]{1,64}".to_owned(),
    ));
    for name in FEATURES {
        let f = Field::Feature((*name).to_owned());
        out.push(spec(f.clone(), f.path(), format!("Feature {name}")));
    }
    out.push(spec(
        Field::Consent("code".to_owned()),
        format!("{CONSENTS_PREFIX}<consent_type_code>"),
        "State of the customer's consent of that type: granted, withdrawn or expired; \
         missing if never answered"
            .to_owned(),
    ));
    out.push(spec(
        Field::Points("code".to_owned()),
        format!("{POINTS_PREFIX}<points_type_code>"),
        "Available points of that points type; missing if none were ever posted".to_owned(),
    ));
    out.push(spec(
        Field::EventCount("code".to_owned()),
        format!("{EVENTS_PREFIX}<event_type_code>{EVENT_COUNT_SUFFIX}"),
        "Number of tracked customer events of that type; missing if none".to_owned(),
    ));
    for measure in Measure::ALL {
        let f = Field::Purchases {
            window: Window::Ever,
            measure,
        };
        out.push(spec(
            f,
            format!("{PURCHASES_PREFIX}<window>.{}", measure.as_str()),
            format!(
                "{}; window = last_<N>_days (N in 1..=3650, purchases after now - N days) or ever",
                measure.description()
            ),
        ));
    }
    for name in CART_NUMBERS.iter().chain(CART_LISTS) {
        let f = Field::Cart((*name).to_owned());
        out.push(spec(f.clone(), f.path(), format!("Current cart: {name}")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_parse_and_print_back_unchanged() {
        for path in [
            "customer.city",
            "customer.birth_date",
            "customer.properties.vip",
            "customer.properties.a_1",
            "features.total_spent_minor",
            "cart.total_minor",
            "cart.product_group_ids",
            "features.email_hard_bounced",
            "features.tier_rank",
            "consents.newsletter_email",
            "points.standard",
            "events.store_visit.count",
            "purchases.last_90_days.count",
            "purchases.ever.business_unit_ids",
            "purchases.last_3650_days.avg_minor",
        ] {
            assert_eq!(Field::parse(path).unwrap().path(), path);
        }
    }

    #[test]
    fn unknown_paths_are_rejected() {
        for path in [
            "",
            "customer",
            "customer.",
            "customer.shoe_size",
            "customer.properties",
            "customer.properties.",
            "customer.properties.VIP",
            "customer.properties.a.b",
            "customer.properties.ü",
            "features.unknown",
            "cart.items",
            "Customer.city",
            "customer.city ",
            "consents.",
            "consents.Email",
            "consents.a.b",
            "points.",
            "points.a-b",
            "events.visit",
            "events.visit.last",
            "events..count",
            "events.Visit.count",
            "purchases",
            "purchases.",
            "purchases.ever",
            "purchases.ever.",
            "purchases.ever.total",
            "purchases.last_0_days.count",
            "purchases.last_3651_days.count",
            "purchases.last_90_days.count.x",
        ] {
            assert!(Field::parse(path).is_err(), "{path:?} should be rejected");
        }
    }

    #[test]
    fn property_keys_are_at_most_sixty_four_characters() {
        assert!(Field::parse(&format!("customer.properties.{}", "a".repeat(64))).is_ok());
        assert!(Field::parse(&format!("customer.properties.{}", "a".repeat(65))).is_err());
    }

    #[test]
    fn fields_have_the_documented_kinds() {
        let kind = |p: &str| Field::parse(p).unwrap().value_kind();
        assert_eq!(kind("customer.email"), ValueKind::String);
        assert_eq!(kind("customer.properties.visits"), ValueKind::String);
        assert_eq!(kind("features.purchase_count"), ValueKind::Int);
        assert_eq!(kind("cart.line_count"), ValueKind::Int);
        assert_eq!(kind("cart.product_ids"), ValueKind::StringList);
        assert_eq!(kind("features.email_hard_bounced"), ValueKind::String);
        assert_eq!(kind("features.tier_id"), ValueKind::String);
        assert_eq!(kind("features.email_soft_bounce_count"), ValueKind::Int);
        assert_eq!(kind("features.tier_rank"), ValueKind::Int);
        assert_eq!(kind("consents.newsletter"), ValueKind::String);
        assert_eq!(kind("points.standard"), ValueKind::Int);
        assert_eq!(kind("events.visit.count"), ValueKind::Int);
        assert_eq!(kind("purchases.last_9_days.sum_minor"), ValueKind::Int);
        assert_eq!(kind("purchases.ever.last_days_ago"), ValueKind::Int);
        assert_eq!(kind("purchases.ever.brand_ids"), ValueKind::StringList);
    }

    #[test]
    fn lists_allow_only_contains_in_and_exists() {
        let ops = Field::parse("cart.product_ids").unwrap().operators();
        assert_eq!(ops, [Operator::Contains, Operator::In, Operator::Exists]);
    }

    #[test]
    fn the_catalog_lists_every_field_once() {
        let c = catalog();
        assert_eq!(
            c.len(),
            10 + 1 + FEATURES.len() + 3 + Measure::ALL.len() + 4
        );
        assert!(c.iter().filter(|f| f.cart).count() == 4);
        assert!(c.iter().any(|f| f.path == "customer.properties.<key>"));
        assert!(c.iter().any(|f| f.path == "events.<event_type_code>.count"));
        assert!(c.iter().any(|f| f.path == "purchases.<window>.avg_minor"
            && f.value_kind == ValueKind::Int));
        assert!(
            c.iter().any(|f| f.path == "purchases.<window>.product_ids"
                && f.value_kind == ValueKind::StringList)
        );
    }
}

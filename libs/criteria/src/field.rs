//! The fields a condition can compare, and what each of them allows.
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
/// List attributes of the customer account (`customer.<list>`): ids of the partner's
/// catalogues the account lists (identity's contact sources and interests).
pub const CUSTOMER_LISTS: &[&str] = &["contact_source_ids", "interest_ids"];
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
/// Responses to a campaign message (the campaigns service's `MessageResponseRecorded`),
/// as they appear in `messages.<response>.*` and `campaigns.<campaign id>.<response>`.
pub const MESSAGE_RESPONSES: &[&str] = &[
    "delivered",
    "opened",
    "clicked",
    "hard_bounced",
    "soft_bounced",
    "unsubscribed",
];
/// Longest key of a user-defined property.
pub const MAX_PROPERTY_KEY_LEN: usize = 64;

const PROPERTIES_PREFIX: &str = "customer.properties.";
const EVENT_PREFIX: &str = "event.";
const CONSENTS_PREFIX: &str = "consents.";
const POINTS_PREFIX: &str = "points.";
const EVENTS_PREFIX: &str = "events.";
const EVENT_COUNT_SUFFIX: &str = ".count";
const PURCHASES_PREFIX: &str = "purchases.";
const LAST_DAYS_AGO_SUFFIX: &str = ".last_days_ago";
const MESSAGES_PREFIX: &str = "messages.";
const CAMPAIGNS_PREFIX: &str = "campaigns.";
const SEGMENTS_PREFIX: &str = "segments.";
const BADGES_PREFIX: &str = "badges.";

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
const BOOL_OPERATORS: &[Operator] = &[Operator::Equal, Operator::NotEqual];

/// The kind of value a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// A string (customer attributes and user-defined properties).
    String,
    /// A 64-bit integer (features, cart totals).
    Int,
    /// A list of strings (cart product ids).
    StringList,
    /// A boolean, always known (membership of a segment or badge: not a member is `false`).
    Bool,
}

impl ValueKind {
    /// The name used on the wire: `"string"`, `"int"` or `"string_list"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueKind::String => "string",
            ValueKind::Int => "int",
            ValueKind::StringList => "string_list",
            ValueKind::Bool => "bool",
        }
    }
}

/// A known field. Build it with [`Field::parse`]; its canonical path is [`Field::path`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// `customer.<attribute>`, e.g. `customer.city`, or a list of the account
    /// ([`CUSTOMER_LISTS`]), e.g. `customer.interest_ids`.
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
    /// `events.<event type code>.last_days_ago`: whole days since the last tracked event of
    /// that type (missing = none).
    EventLastDaysAgo(String),
    /// `messages.<response>.count`: how many campaign messages got that response (one of
    /// [`MESSAGE_RESPONSES`]); always present, 0 without one.
    MessageCount(String),
    /// `messages.<response>.last_days_ago`: whole days since the last message response of
    /// that kind (missing = none).
    MessageLastDaysAgo(String),
    /// `campaigns.<campaign id>.<response>`: whether a message of that campaign (a UUID,
    /// lower-case hyphenated) got that response: `"true"`/`"false"` once the customer had any
    /// response to the campaign, missing before.
    CampaignResponse { campaign: String, response: String },
    /// `segments.<segment uuid>`: whether the customer is a (stored) member of that segment
    /// of the same partner; a boolean, `false` when not a member.
    Segment(Uuid),
    /// `badges.<badge uuid>`: whether the customer holds that badge; as [`Field::Segment`].
    Badge(Uuid),
    /// `event.<key>`: a property of the event that triggered a workflow (a string, which may
    /// hold a number, like [`Field::Property`]). Nothing stores it: the caller of an
    /// evaluation supplies it, so only [`crate::Criterion::parse_with_event`] accepts it.
    Event(String),
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
        if let Some(key) = path.strip_prefix(EVENT_PREFIX) {
            return if is_property_key(key) {
                Ok(Field::Event(key.to_owned()))
            } else {
                Err(format!(
                    "an event property key must be 1..{MAX_PROPERTY_KEY_LEN} characters of \
                     [a-z0-9_], got {key:?}"
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
        if let Some(key) = code(EVENTS_PREFIX, LAST_DAYS_AGO_SUFFIX) {
            return if is_property_key(key) {
                Ok(Field::EventLastDaysAgo(key.to_owned()))
            } else {
                bad_code("event type", key)
            };
        }
        let response = |r: &str| {
            if MESSAGE_RESPONSES.contains(&r) {
                Ok(r.to_owned())
            } else {
                Err(format!(
                    "a message response must be one of {}, got {r:?}",
                    MESSAGE_RESPONSES.join(", ")
                ))
            }
        };
        if let Some(r) = code(MESSAGES_PREFIX, EVENT_COUNT_SUFFIX) {
            return response(r).map(Field::MessageCount);
        }
        if let Some(r) = code(MESSAGES_PREFIX, LAST_DAYS_AGO_SUFFIX) {
            return response(r).map(Field::MessageLastDaysAgo);
        }
        if let Some(rest) = path.strip_prefix(CAMPAIGNS_PREFIX) {
            let Some((campaign, r)) = rest.split_once('.') else {
                return Err(format!(
                    "a campaign field is campaigns.<campaign id>.<response>, got {path:?}"
                ));
            };
            let Ok(id) = uuid::Uuid::try_parse(campaign) else {
                return Err(format!("a campaign id must be a UUID, got {campaign:?}"));
            };
            return Ok(Field::CampaignResponse {
                campaign: id.hyphenated().to_string(),
                response: response(r)?,
            });
        }
        for (prefix, field) in [
            (SEGMENTS_PREFIX, Field::Segment as fn(Uuid) -> Field),
            (BADGES_PREFIX, Field::Badge),
        ] {
            if let Some(id) = path.strip_prefix(prefix) {
                // The hyphenated form only, so that a group has one path.
                return match Uuid::try_parse(id) {
                    Ok(uuid) if id.len() == 36 => Ok(field(uuid)),
                    _ => Err(format!("{prefix}<id> needs a UUID, got {id:?}")),
                };
            }
        }
        let known = |list: &[&str], name: &str| list.contains(&name).then(|| name.to_owned());
        let field = match path.split_once('.') {
            Some(("customer", a)) => known(CUSTOMER_ATTRIBUTES, a)
                .or_else(|| known(CUSTOMER_LISTS, a))
                .map(Field::Customer),
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
            Field::EventLastDaysAgo(c) => format!("{EVENTS_PREFIX}{c}{LAST_DAYS_AGO_SUFFIX}"),
            Field::MessageCount(r) => format!("{MESSAGES_PREFIX}{r}{EVENT_COUNT_SUFFIX}"),
            Field::MessageLastDaysAgo(r) => format!("{MESSAGES_PREFIX}{r}{LAST_DAYS_AGO_SUFFIX}"),
            Field::CampaignResponse { campaign, response } => {
                format!("{CAMPAIGNS_PREFIX}{campaign}.{response}")
            }
            Field::Segment(id) => format!("{SEGMENTS_PREFIX}{id}"),
            Field::Badge(id) => format!("{BADGES_PREFIX}{id}"),
            Field::Event(k) => format!("{EVENT_PREFIX}{k}"),
        }
    }

    /// The kind of value the field holds.
    pub fn value_kind(&self) -> ValueKind {
        match self {
            Field::Customer(a) if CUSTOMER_LISTS.contains(&a.as_str()) => ValueKind::StringList,
            Field::Customer(_)
            | Field::Property(_)
            | Field::Event(_)
            | Field::Consent(_)
            | Field::CampaignResponse { .. } => ValueKind::String,
            Field::Feature(f) if STRING_FEATURES.contains(&f.as_str()) => ValueKind::String,
            Field::Feature(_)
            | Field::Points(_)
            | Field::EventCount(_)
            | Field::EventLastDaysAgo(_)
            | Field::MessageCount(_)
            | Field::MessageLastDaysAgo(_) => ValueKind::Int,
            Field::Cart(c) if CART_LISTS.contains(&c.as_str()) => ValueKind::StringList,
            Field::Cart(_) => ValueKind::Int,
            Field::Purchases { measure, .. } if measure.is_list() => ValueKind::StringList,
            Field::Purchases { .. } => ValueKind::Int,
            Field::Segment(_) | Field::Badge(_) => ValueKind::Bool,
        }
    }

    /// The operators the field allows. Properties (of the customer or of the triggering
    /// event) are strings but may hold numbers, so they also allow the ordering operators
    /// (the fact is parsed as an integer).
    pub fn operators(&self) -> &'static [Operator] {
        match (self, self.value_kind()) {
            (Field::Property(_) | Field::Event(_), _) => PROPERTY_OPERATORS,
            (_, ValueKind::String) => TEXT_OPERATORS,
            (_, ValueKind::Int) => NUMBER_OPERATORS,
            (_, ValueKind::StringList) => LIST_OPERATORS,
            (_, ValueKind::Bool) => BOOL_OPERATORS,
        }
    }

    /// Whether the field reads the current cart.
    pub fn is_cart(&self) -> bool {
        matches!(self, Field::Cart(_))
    }

    /// Whether the field is the membership of another group (`segments.*`, `badges.*`):
    /// its fact is always known, a missing one meaning "not a member".
    pub fn is_membership(&self) -> bool {
        matches!(self, Field::Segment(_) | Field::Badge(_))
    }

    /// Whether the field reads the event that triggered a workflow (`event.<key>`).
    pub fn is_event(&self) -> bool {
        matches!(self, Field::Event(_))
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
    /// Whether it reads the event that triggered a workflow (only for workflow criteria).
    pub event: bool,
}

/// Every field the language knows, in a stable order.
pub fn catalog() -> Vec<FieldSpec> {
    let spec = |field: Field, path: String, description: String| FieldSpec {
        path,
        description,
        value_kind: field.value_kind(),
        operators: field.operators(),
        cart: field.is_cart(),
        event: field.is_event(),
    };
    let mut out = Vec::new();
    for a in CUSTOMER_ATTRIBUTES {
        let f = Field::Customer((*a).to_owned());
        out.push(spec(f.clone(), f.path(), format!("Customer attribute {a}")));
    }
    for (list, what) in CUSTOMER_LISTS.iter().zip(["contact sources", "interests"]) {
        let f = Field::Customer((*list).to_owned());
        out.push(spec(
            f.clone(),
            f.path(),
            format!("Ids of the partner's {what} the customer account lists (empty if none)"),
        ));
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
    out.push(spec(
        Field::EventLastDaysAgo("code".to_owned()),
        format!("{EVENTS_PREFIX}<event_type_code>{LAST_DAYS_AGO_SUFFIX}"),
        "Whole days since the last tracked customer event of that type; missing if none".to_owned(),
    ));
    for r in MESSAGE_RESPONSES {
        let f = Field::MessageCount((*r).to_owned());
        out.push(spec(
            f.clone(),
            f.path(),
            format!("Campaign messages the customer responded to as {r}; 0 if none"),
        ));
        let f = Field::MessageLastDaysAgo((*r).to_owned());
        out.push(spec(
            f.clone(),
            f.path(),
            format!("Whole days since the last campaign message response {r}; missing if none"),
        ));
    }
    for r in MESSAGE_RESPONSES {
        let f = Field::CampaignResponse {
            campaign: String::new(),
            response: (*r).to_owned(),
        };
        out.push(spec(
            f,
            format!("{CAMPAIGNS_PREFIX}<campaign_id>.{r}"),
            format!(
                "Whether a message of that campaign got the response {r} (compare with a \
                 boolean); missing if the customer had no response to the campaign"
            ),
        ));
    }
    out.push(spec(
        Field::Segment(Uuid::nil()),
        format!("{SEGMENTS_PREFIX}<segment_id>"),
        "Whether the customer is a member of that segment (compare with a boolean)".to_owned(),
    ));
    out.push(spec(
        Field::Badge(Uuid::nil()),
        format!("{BADGES_PREFIX}<badge_id>"),
        "Whether the customer holds that badge (compare with a boolean)".to_owned(),
    ));
    for name in CART_NUMBERS.iter().chain(CART_LISTS) {
        let f = Field::Cart((*name).to_owned());
        out.push(spec(f.clone(), f.path(), format!("Current cart: {name}")));
    }
    out.push(spec(
        Field::Event("key".to_owned()),
        format!("{EVENT_PREFIX}<key>"),
        "Property of the event that triggered the workflow (workflow criteria only); key of \
         [a-z0-9_]{1,64}; missing without such an event or property"
            .to_owned(),
    ));
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
            "customer.contact_source_ids",
            "customer.interest_ids",
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
            "events.store_visit.last_days_ago",
            "messages.opened.count",
            "messages.hard_bounced.last_days_ago",
            "campaigns.0190d8a2-7c1e-7e59-9d3a-3f1c2b4a5e6f.clicked",
            "segments.0190a0b1-7c2d-7e3f-8a4b-5c6d7e8f9a0b",
            "badges.0190a0b1-7c2d-7e3f-8a4b-5c6d7e8f9a0b",
            "event.store",
            "event.order_total_minor",
        ] {
            assert_eq!(Field::parse(path).unwrap().path(), path);
        }
        // A campaign id is kept in its canonical form.
        assert_eq!(
            Field::parse("campaigns.0190D8A27C1E7E599D3A3F1C2B4A5E6F.opened")
                .unwrap()
                .path(),
            "campaigns.0190d8a2-7c1e-7e59-9d3a-3f1c2b4a5e6f.opened"
        );
    }

    #[test]
    fn unknown_paths_are_rejected() {
        for path in [
            "",
            "customer",
            "customer.",
            "customer.shoe_size",
            "customer.interest_id",
            "customer.contact_sources",
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
            "events.visit.last_days",
            "events..last_days_ago",
            "messages.read.count",
            "messages.opened",
            "messages.opened.last",
            "campaigns.opened",
            "campaigns.x.opened",
            "campaigns.0190d8a2-7c1e-7e59-9d3a-3f1c2b4a5e6f.read",
            "campaigns.0190d8a2-7c1e-7e59-9d3a-3f1c2b4a5e6f",
            "segments.",
            "segments.gold",
            "segments.0190a0b17c2d7e3f8a4b5c6d7e8f9a0b",
            "segments.{0190a0b1-7c2d-7e3f-8a4b-5c6d7e8f9a0b}",
            "badges.0190a0b1-7c2d-7e3f-8a4b-5c6d7e8f9a0b.x",
            "event",
            "event.",
            "event.Store",
            "event.store.city",
            "event.store-id",
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
        assert_eq!(kind("customer.contact_source_ids"), ValueKind::StringList);
        assert_eq!(kind("customer.interest_ids"), ValueKind::StringList);
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
        assert_eq!(kind("events.visit.last_days_ago"), ValueKind::Int);
        assert_eq!(kind("messages.clicked.count"), ValueKind::Int);
        assert_eq!(kind("messages.clicked.last_days_ago"), ValueKind::Int);
        assert_eq!(
            kind("campaigns.0190d8a2-7c1e-7e59-9d3a-3f1c2b4a5e6f.opened"),
            ValueKind::String
        );
        let segment = Field::parse("segments.0190a0b1-7c2d-7e3f-8a4b-5c6d7e8f9a0b").unwrap();
        assert_eq!(segment.value_kind(), ValueKind::Bool);
        assert_eq!(segment.operators(), [Operator::Equal, Operator::NotEqual]);
        assert!(segment.is_membership() && !segment.is_cart());
        let event = Field::parse("event.store").unwrap();
        assert_eq!(event.value_kind(), ValueKind::String);
        assert_eq!(event.operators(), PROPERTY_OPERATORS);
        assert!(event.is_event() && !event.is_cart() && !event.is_membership());
        assert!(!Field::parse("events.visit.count").unwrap().is_event());
    }

    #[test]
    fn lists_allow_only_contains_in_and_exists() {
        for path in ["cart.product_ids", "customer.interest_ids"] {
            let ops = Field::parse(path).unwrap().operators();
            assert_eq!(ops, [Operator::Contains, Operator::In, Operator::Exists]);
        }
    }

    #[test]
    fn the_catalog_lists_every_field_once() {
        let c = catalog();
        assert_eq!(
            c.len(),
            10 + 2 + 1 + FEATURES.len() + 3 + Measure::ALL.len() + 1 + 6 * 3 + 2 + 4 + 1
        );
        assert!(c.iter().filter(|f| f.cart).count() == 4);
        let events: Vec<_> = c.iter().filter(|f| f.event).collect();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].path, "event.<key>");
        assert_eq!(events[0].value_kind, ValueKind::String);
        assert!(c.iter().any(|f| f.path == "customer.properties.<key>"));
        assert!(c.iter().any(|f| f.path == "customer.contact_source_ids"
            && f.value_kind == ValueKind::StringList
            && !f.cart));
        assert!(c.iter().any(|f| f.path == "events.<event_type_code>.count"));
        assert!(c.iter().any(|f| f.path == "purchases.<window>.avg_minor"
            && f.value_kind == ValueKind::Int));
        assert!(
            c.iter().any(|f| f.path == "purchases.<window>.product_ids"
                && f.value_kind == ValueKind::StringList)
        );
        assert!(
            c.iter()
                .any(|f| f.path == "events.<event_type_code>.last_days_ago")
        );
        assert!(c.iter().any(|f| f.path == "campaigns.<campaign_id>.opened"));
        let mut paths: Vec<&str> = c.iter().map(|f| f.path.as_str()).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), c.len());
    }
}

//! Deciding criteria for one customer now: the facts `GetCustomerMemberships` decides online
//! segments on, and `EvaluateCriterion` (a campaigns workflow's condition node or date
//! trigger), which adds the properties of the event that triggered the workflow as
//! `event.<key>` facts. No I/O here.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use loyalty_criteria::{
    Criterion, Fact, Facts, Field, MAX_PROPERTY_KEY_LEN, MAX_STRING_CHARS, RawCriterion,
    purchases::Purchase,
};
use loyalty_platform::Violations;
use uuid::Uuid;

use super::{CriterionTarget, Features, StoredMembership, add_membership_facts, purchase_facts};

/// Most event properties an evaluation carries: as many as identity lets an event have.
pub const MAX_EVENT_PROPERTIES: usize = 100;

/// What criteria read about a customer at `now`: their features, the purchase windows
/// `criteria` read (from `bought`, at least the purchases of those windows), their stored
/// segment memberships and the badges they hold (`segments.<id>`, `badges.<id>`).
pub fn customer_facts<'c>(
    features: &Features,
    bought: &[Purchase],
    stored: &[StoredMembership],
    badges: &[Uuid],
    criteria: impl IntoIterator<Item = &'c Criterion>,
    now: DateTime<Utc>,
) -> Facts {
    let mut facts = features.facts(now);
    facts.extend(purchase_facts(bought, criteria, now));
    let segment_ids: Vec<Uuid> = stored.iter().map(|m| m.segment_id).collect();
    add_membership_facts(&mut facts, &segment_ids, badges);
    facts
}

/// The properties of the event that triggered a workflow, read by its criterion as
/// `event.<key>` (string facts: compared as strings, or as integers with an integer value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventProperties(BTreeMap<String, String>);

impl EventProperties {
    /// Checks what a client sent under `field`: at most [`MAX_EVENT_PROPERTIES`] entries,
    /// keys of 1..64 characters `[a-z0-9_]` (as identity's event property keys), values of
    /// at most 1024 characters. A bad key is reported at `field`, a bad value at
    /// `<field>.<key>`.
    pub fn parse(
        v: &mut Violations,
        field: &str,
        sent: impl IntoIterator<Item = (String, String)>,
    ) -> EventProperties {
        let sent: BTreeMap<String, String> = sent.into_iter().collect();
        if sent.len() > MAX_EVENT_PROPERTIES {
            v.add(
                field,
                format!("at most {MAX_EVENT_PROPERTIES} entries, got {}", sent.len()),
            );
        }
        for (key, value) in &sent {
            if !matches!(Field::parse(&format!("event.{key}")), Ok(Field::Event(_))) {
                v.add(
                    field,
                    format!(
                        "a key must be 1..{MAX_PROPERTY_KEY_LEN} characters of [a-z0-9_], \
                         got {key:?}"
                    ),
                );
            } else if value.chars().count() > MAX_STRING_CHARS {
                v.add(
                    format!("{field}.{key}"),
                    format!("must be at most {MAX_STRING_CHARS} characters"),
                );
            }
        }
        EventProperties(sent)
    }

    /// Adds the `event.<key>` facts.
    pub fn add_facts(&self, facts: &mut Facts) {
        for (key, value) in &self.0 {
            facts.insert(
                Field::Event(key.clone()).path(),
                Fact::String(value.clone()),
            );
        }
    }
}

/// One `EvaluateCriterion` question: does this criterion hold for a customer now, given the
/// event that triggered the workflow (none for a date trigger: every `event.*` is missing)?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// Valid for [`CriterionTarget::Workflow`]: may read `event.*`, never `cart.*`.
    pub criterion: Criterion,
    pub event: EventProperties,
}

impl Evaluation {
    /// Checks the criterion (under `criterion`, as ValidateCriterion with target WORKFLOW
    /// checks it, group references aside) and the event properties (under
    /// `event_properties`), reporting every problem to `v`. Use the answer only when `v`
    /// stayed empty; `None` when the criterion is missing or its tree invalid.
    pub fn parse(
        v: &mut Violations,
        criterion: Option<RawCriterion>,
        event_properties: impl IntoIterator<Item = (String, String)>,
    ) -> Option<Evaluation> {
        let criterion = CriterionTarget::Workflow.parse_criterion(v, "criterion", criterion);
        let event = EventProperties::parse(v, "event_properties", event_properties);
        criterion.map(|criterion| Evaluation { criterion, event })
    }

    /// Whether the customer with `facts` ([`customer_facts`] of the customer, read for this
    /// criterion) matches. A reference to a group the customer is not a stored member of,
    /// unknown or deleted ones included, reads "not a member".
    pub fn matches(&self, mut facts: Facts) -> bool {
        self.event.add_facts(&mut facts);
        self.criterion.evaluate(&facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use loyalty_criteria::{Operator, Value};

    fn cond(field: &str, op: Operator, value: Value) -> RawCriterion {
        RawCriterion::Condition {
            field: field.into(),
            operator: Some(op),
            values: vec![value],
        }
    }

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    fn props(entries: &[(&str, &str)]) -> Vec<(String, String)> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn evaluation(raw: RawCriterion, event: &[(&str, &str)]) -> Evaluation {
        let mut v = Violations::new();
        let e = Evaluation::parse(&mut v, Some(raw), props(event));
        assert!(v.is_empty(), "{:?}", v.into_vec());
        e.unwrap()
    }

    /// The field paths `parse` reports.
    fn problems(
        raw: Option<RawCriterion>,
        event: impl IntoIterator<Item = (String, String)>,
    ) -> Vec<String> {
        let mut v = Violations::new();
        Evaluation::parse(&mut v, raw, event);
        fields(v)
    }

    fn fields(v: Violations) -> Vec<String> {
        v.into_vec().into_iter().map(|f| f.field).collect()
    }

    /// A customer who bought twice (3 and 40 days ago) for 1000 each, in Praha.
    fn customer() -> (Features, Vec<Purchase>) {
        let now = Utc::now();
        let mut f = Features::default();
        f.attributes.insert("city".into(), "Praha".into());
        let mut bought = Vec::new();
        for days in [3, 40] {
            let at = now - Duration::days(days);
            f.record_purchase(1_000, "CZK", at);
            bought.push(Purchase {
                purchased_at: at,
                net_amount_minor: 1_000,
                returned_amount_minor: 0,
                product_ids: vec![],
                product_group_ids: vec![],
                brand_ids: vec![],
                business_unit_id: String::new(),
            });
        }
        (f, bought)
    }

    fn decide(e: &Evaluation, badges: &[Uuid]) -> bool {
        let (features, bought) = customer();
        let facts = customer_facts(&features, &bought, &[], badges, [&e.criterion], Utc::now());
        e.matches(facts)
    }

    #[test]
    fn a_feature_a_purchase_window_and_a_badge_are_decided_for_the_customer() {
        let buyer = evaluation(
            cond(
                "features.purchase_count",
                Operator::GreaterOrEqual,
                Value::Int(2),
            ),
            &[],
        );
        assert!(decide(&buyer, &[]));
        let big = evaluation(
            cond("features.purchase_count", Operator::Greater, Value::Int(2)),
            &[],
        );
        assert!(!decide(&big, &[]));
        let month = evaluation(
            cond(
                "purchases.last_30_days.count",
                Operator::Equal,
                Value::Int(1),
            ),
            &[],
        );
        assert!(decide(&month, &[]), "only the purchase of 3 days ago");
        let vip = Uuid::now_v7();
        let holds = evaluation(
            cond(&format!("badges.{vip}"), Operator::Equal, Value::Bool(true)),
            &[],
        );
        assert!(decide(&holds, &[vip]));
        assert!(!decide(&holds, &[]), "an unknown badge reads not held");
    }

    #[test]
    fn event_properties_are_read_as_event_fields() {
        let in_prague = RawCriterion::All(vec![
            cond("customer.city", Operator::Equal, s("praha")),
            cond("event.store", Operator::Equal, s("prague")),
        ]);
        assert!(decide(
            &evaluation(in_prague.clone(), &[("store", "Prague")]),
            &[]
        ));
        assert!(!decide(
            &evaluation(in_prague.clone(), &[("store", "Brno")]),
            &[]
        ));
        // A date trigger has no event: every event.* is missing.
        assert!(!decide(&evaluation(in_prague, &[]), &[]));
        let not_brno = cond("event.store", Operator::NotEqual, s("brno"));
        assert!(decide(&evaluation(not_brno, &[]), &[]));

        // Numbers compare as numbers when the value is an integer.
        let big_order = cond(
            "event.total_minor",
            Operator::GreaterOrEqual,
            Value::Int(500),
        );
        assert!(decide(
            &evaluation(big_order.clone(), &[("total_minor", "1200")]),
            &[]
        ));
        assert!(!decide(
            &evaluation(big_order.clone(), &[("total_minor", "99")]),
            &[]
        ));
        assert!(!decide(
            &evaluation(big_order, &[("total_minor", "many")]),
            &[]
        ));
        let tagged = RawCriterion::Any(vec![
            cond("event.tags", Operator::Contains, s("vip")),
            RawCriterion::Condition {
                field: "event.channel".into(),
                operator: Some(Operator::In),
                values: vec![s("web"), s("app")],
            },
        ]);
        assert!(decide(
            &evaluation(tagged.clone(), &[("tags", "new,VIP")]),
            &[]
        ));
        assert!(decide(
            &evaluation(tagged.clone(), &[("channel", "App")]),
            &[]
        ));
        assert!(!decide(&evaluation(tagged, &[("channel", "pos")]), &[]));
    }

    #[test]
    fn a_bad_criterion_or_bad_properties_are_reported_by_field_path() {
        let bad = RawCriterion::All(vec![
            cond("customer.shoe_size", Operator::Equal, s("44")),
            cond("cart.total_minor", Operator::Greater, Value::Int(1)),
            cond("event.Store", Operator::Equal, s("x")),
        ]);
        let long = "x".repeat(MAX_STRING_CHARS + 1);
        let sent = props(&[("Store", "x"), ("note", &long), ("ok", "fine")]);
        assert_eq!(
            problems(Some(bad), sent),
            [
                "criterion.all.criteria[0].condition.field",
                "criterion.all.criteria[2].condition.field",
                "event_properties",
                "event_properties.note",
            ]
        );
        // The cart is a target problem, found once the tree is valid.
        let cart = cond("cart.total_minor", Operator::Greater, Value::Int(1));
        assert_eq!(problems(Some(cart), []), ["criterion.condition.field"]);
        assert_eq!(problems(None, []), ["criterion"]);
        let exists = RawCriterion::Condition {
            field: "customer.city".into(),
            operator: Some(Operator::Exists),
            values: vec![s("x")],
        };
        assert_eq!(problems(Some(exists), []), ["criterion.condition.values"]);
        let fine = cond("event.store", Operator::Equal, s("x"));
        let many = (0..=MAX_EVENT_PROPERTIES).map(|i| (format!("k{i}"), String::new()));
        assert_eq!(problems(Some(fine.clone()), many), ["event_properties"]);
        let most = (0..MAX_EVENT_PROPERTIES).map(|i| (format!("k{i}"), "v".repeat(1024)));
        assert!(problems(Some(fine), most).is_empty());
    }
}

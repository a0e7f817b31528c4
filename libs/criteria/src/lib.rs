//! The segment criteria language of the loyalty platform.
//!
//! Segments, badges and audiences select customers with a *criterion*: a tree of
//!
//! * `all` — every child criterion holds (1..100 children),
//! * `any` — at least one child holds (1..100 children),
//! * `not` — the child does not hold,
//! * a *condition* — one [`Field`], one [`Operator`], and literal [`Value`]s,
//!
//! nested at most [`MAX_DEPTH`] levels (a lone condition is one level).
//!
//! # Fields
//!
//! | path | kind | operators |
//! |---|---|---|
//! | `customer.<attribute>` (`first_name`, `last_name`, `email`, `phone`, `birth_date`, `gender`, `language_code`, `city`, `country_code`, `state`) | string | `=` `!=` `in` `exists` `contains` |
//! | `customer.properties.<key>` (key of `[a-z0-9_]{1,64}`) | string | all; the ordering ones with integer values |
//! | `customer.contact_source_ids`, `customer.interest_ids` (catalogue ids the account lists) | string list | `contains` `in` `exists` |
//! | `features.purchase_count`, `features.total_spent_minor`, `features.last_purchase_days_ago` | int | all but `contains` |
//! | `cart.total_minor`, `cart.line_count` | int | all but `contains` |
//! | `cart.product_ids`, `cart.product_group_ids` | string list | `contains` `in` `exists` |
//! | `purchases.<window>.<measure>` ([`purchases`]): `count`, `sum_minor`, `avg_minor`, `last_days_ago` | int | all but `contains` |
//! | `purchases.<window>.<list>`: `product_ids`, `product_group_ids`, `brand_ids`, `business_unit_ids` | string list | `contains` `in` `exists` |
//! | `event.<key>` (key of `[a-z0-9_]{1,64}`): a property of the event that triggered a workflow | string | all; the ordering ones with integer values |
//!
//! `exists` takes no values, `in` 1..100, every other operator exactly one; string values are
//! at most 1024 characters and contain no U+0000. `cart.*` fields only make sense for segments recalculated online
//! at checkout ([`Criterion::uses_cart`]). `event.*` fields are known only to whoever evaluates
//! a workflow's criterion for one customer, never stored: [`Criterion::parse`] rejects them,
//! [`Criterion::parse_with_event`] accepts them ([`Criterion::uses_event`]). The same
//! catalogue is available as [`catalog`].
//!
//! # Semantics
//!
//! A condition whose fact is missing is false, except `NOT_EQUAL`, which is true (`not` then
//! applies on top as usual). Strings compare case-insensitively. A string fact compared with an
//! integer (or boolean) value is parsed first, so `customer.properties.visits >= 5` holds for
//! the string property `"7"`. `contains` looks for a substring in a string fact, or for an
//! equal element in a list fact; `in` holds when the fact (or one of its elements) equals one
//! of the values; `exists` holds when the fact is present and not an empty string or list.
//!
//! # Use
//!
//! [`Criterion::parse`] is the only way to build a criterion from client input
//! ([`RawCriterion`], which mirrors the protobuf message): it reports every problem as a
//! [`Violation`] with its path (e.g. `all.criteria[1].condition.values`). A parsed criterion
//! is evaluated against [`Facts`] and stored as JSON ([`Criterion::to_json`];
//! [`Criterion::from_json`] validates again).
//!
//! ```
//! use loyalty_criteria::{Criterion, Fact, Facts, Operator, RawCriterion, Value};
//!
//! let raw = RawCriterion::All(vec![
//!     RawCriterion::Condition {
//!         field: "customer.city".into(),
//!         operator: Some(Operator::In),
//!         values: vec![Value::String("Praha".into()), Value::String("Brno".into())],
//!     },
//!     RawCriterion::Condition {
//!         field: "customer.properties.visits".into(),
//!         operator: Some(Operator::GreaterOrEqual),
//!         values: vec![Value::Int(5)],
//!     },
//! ]);
//! let criterion = Criterion::parse(raw).expect("valid");
//! let facts = Facts::default()
//!     .with("customer.city", Fact::String("praha".into()))
//!     .with("customer.properties.visits", Fact::String("7".into()));
//! assert!(criterion.evaluate(&facts));
//! assert_eq!(Criterion::from_json(&criterion.to_json()).unwrap(), criterion);
//! ```
mod condition;
mod facts;
mod field;
pub mod purchases;
mod raw;
pub mod sql;
pub mod wire;

use serde::{Deserialize, Serialize};

pub use condition::{Condition, MAX_STRING_CHARS, MAX_VALUES, Operator, Value};
pub use facts::{Fact, Facts};
pub use field::{
    CART_LISTS, CART_NUMBERS, CUSTOMER_ATTRIBUTES, CUSTOMER_LISTS, FEATURES, Field, FieldSpec,
    MAX_PROPERTY_KEY_LEN, MESSAGE_RESPONSES, STRING_FEATURES, ValueKind, catalog,
};
pub use raw::{MAX_CHILDREN, MAX_DEPTH, RawCriterion, Violation};

/// A validated criterion; build it with [`Criterion::parse`] or [`Criterion::from_json`].
///
/// JSON (externally tagged, snake case): `{"all": [..]}`, `{"any": [..]}`, `{"not": {..}}`,
/// `{"condition": {"field": {"customer": "city"}, "operator": "equal", "values":
/// [{"string": "Praha"}]}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    All(Vec<Criterion>),
    Any(Vec<Criterion>),
    Not(Box<Criterion>),
    Condition(Condition),
}

/// Why a stored criterion could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum StoredCriterionError {
    /// The JSON does not have the shape of a criterion.
    #[error("malformed criterion JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The shape is right but the criterion breaks the rules (e.g. a field was retired).
    #[error("invalid criterion: {}", list(.0))]
    Invalid(Vec<Violation>),
}

fn list(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(Violation::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Criterion {
    /// Checks client input and reports every problem with its path. `event.<key>` fields
    /// are rejected: what is stored and compiled to SQL (segments, badges, audiences) has no
    /// triggering event.
    pub fn parse(raw: RawCriterion) -> Result<Criterion, Vec<Violation>> {
        Self::check(raw, false)
    }

    /// As [`Criterion::parse`], also accepting `event.<key>` fields: for a criterion
    /// evaluated in memory for one customer with the properties of the event that triggered
    /// a workflow as `event.<key>` facts (a missing one is a missing fact).
    pub fn parse_with_event(raw: RawCriterion) -> Result<Criterion, Vec<Violation>> {
        Self::check(raw, true)
    }

    fn check(raw: RawCriterion, with_event: bool) -> Result<Criterion, Vec<Violation>> {
        let mut out = Vec::new();
        match raw::check(raw, "", 1, with_event, &mut out) {
            Some(c) if out.is_empty() => Ok(c),
            _ => Err(out),
        }
    }

    /// Whether the facts fulfil the criterion.
    pub fn evaluate(&self, facts: &Facts) -> bool {
        match self {
            Criterion::All(cs) => cs.iter().all(|c| c.evaluate(facts)),
            Criterion::Any(cs) => cs.iter().any(|c| c.evaluate(facts)),
            Criterion::Not(c) => !c.evaluate(facts),
            Criterion::Condition(c) => c.evaluate(facts),
        }
    }

    /// Whether any condition reads a `cart.*` field (such criteria need online recalculation).
    pub fn uses_cart(&self) -> bool {
        self.conditions().any(|c| c.field.is_cart())
    }

    /// Whether any condition reads the triggering event (`event.<key>`); only
    /// [`Criterion::parse_with_event`] builds such a criterion.
    pub fn uses_event(&self) -> bool {
        self.conditions().any(|c| c.field.is_event())
    }

    /// Every condition of the tree, depth first.
    pub fn conditions(&self) -> impl Iterator<Item = &Condition> {
        let mut stack = vec![self];
        std::iter::from_fn(move || {
            while let Some(c) = stack.pop() {
                match c {
                    Criterion::All(cs) | Criterion::Any(cs) => stack.extend(cs.iter().rev()),
                    Criterion::Not(c) => stack.push(c),
                    Criterion::Condition(c) => return Some(c),
                }
            }
            None
        })
    }

    /// The storage form.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a criterion has only string keys and plain values")
    }

    /// Reads the storage form, validating it again.
    pub fn from_json(v: &serde_json::Value) -> Result<Criterion, StoredCriterionError> {
        let c = Criterion::deserialize(v)?;
        Criterion::parse(c.into_raw()).map_err(StoredCriterionError::Invalid)
    }

    /// As [`Criterion::from_json`], also accepting `event.<key>` fields (a workflow
    /// condition's criterion, see [`Criterion::parse_with_event`]).
    pub fn from_json_with_event(v: &serde_json::Value) -> Result<Criterion, StoredCriterionError> {
        let c = Criterion::deserialize(v)?;
        Criterion::parse_with_event(c.into_raw()).map_err(StoredCriterionError::Invalid)
    }

    /// The unvalidated form, e.g. to hand a stored criterion back to a client.
    pub fn into_raw(self) -> RawCriterion {
        match self {
            Criterion::All(cs) => {
                RawCriterion::All(cs.into_iter().map(Criterion::into_raw).collect())
            }
            Criterion::Any(cs) => {
                RawCriterion::Any(cs.into_iter().map(Criterion::into_raw).collect())
            }
            Criterion::Not(c) => RawCriterion::Not(Some(Box::new(c.into_raw()))),
            Criterion::Condition(c) => RawCriterion::Condition {
                field: c.field.path(),
                operator: Some(c.operator),
                values: c.values,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn cond(field: &str, operator: Operator, values: Vec<Value>) -> RawCriterion {
        RawCriterion::Condition {
            field: field.into(),
            operator: Some(operator),
            values,
        }
    }

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    fn gold() -> Facts {
        Facts::default()
            .with("customer.city", Fact::String("Praha".into()))
            .with("customer.properties.tier", Fact::String("Gold".into()))
            .with("features.total_spent_minor", Fact::Int(25_000))
            .with(
                "cart.product_ids",
                Fact::List(vec!["SKU-1".into(), "SKU-2".into()]),
            )
    }

    #[test]
    fn groups_negation_lists_and_missing_facts_combine() {
        let c = Criterion::parse(RawCriterion::All(vec![
            cond("customer.city", Operator::In, vec![s("Brno"), s("praha")]),
            RawCriterion::Not(Some(Box::new(cond(
                "customer.email",
                Operator::Exists,
                vec![],
            )))),
            cond("cart.product_ids", Operator::Contains, vec![s("sku-2")]),
            cond("customer.country_code", Operator::NotEqual, vec![s("SK")]),
        ]))
        .unwrap();
        assert!(c.evaluate(&gold()));
        let any = Criterion::parse(RawCriterion::Any(vec![
            cond("customer.city", Operator::Equal, vec![s("Brno")]),
            cond(
                "features.total_spent_minor",
                Operator::Less,
                vec![Value::Int(100)],
            ),
        ]))
        .unwrap();
        assert!(!any.evaluate(&gold()));
    }

    #[test]
    fn a_criterion_uses_the_cart_when_any_condition_reads_it() {
        let deep = Criterion::parse(RawCriterion::Any(vec![
            cond("customer.city", Operator::Exists, vec![]),
            RawCriterion::Not(Some(Box::new(RawCriterion::All(vec![cond(
                "cart.line_count",
                Operator::Greater,
                vec![Value::Int(2)],
            )])))),
        ]))
        .unwrap();
        assert!(deep.uses_cart());
        let none = Criterion::parse(cond("customer.city", Operator::Exists, vec![])).unwrap();
        assert!(!none.uses_cart());
    }

    #[test]
    fn only_parse_with_event_accepts_event_fields() {
        let raw = RawCriterion::All(vec![
            cond("customer.city", Operator::Exists, vec![]),
            RawCriterion::Not(Some(Box::new(cond(
                "event.store",
                Operator::Equal,
                vec![s("Prague")],
            )))),
        ]);
        let err = Criterion::parse(raw.clone()).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].path, "all.criteria[1].negation.condition.field");
        let c = Criterion::parse_with_event(raw).unwrap();
        assert!(c.uses_event() && !c.uses_cart());
        assert!(!c.evaluate(&gold().with("event.store", Fact::String("prague".into()))));
        assert!(c.evaluate(&gold().with("event.store", Fact::String("brno".into()))));
        assert!(c.evaluate(&gold()), "no event: the property is missing");
        assert_eq!(
            Criterion::parse_with_event(c.clone().into_raw()),
            Ok(c.clone())
        );
        // Such a criterion is never stored: read back, it is invalid.
        assert!(matches!(
            Criterion::from_json(&c.to_json()),
            Err(StoredCriterionError::Invalid(_))
        ));
        let plain = Criterion::parse(cond("customer.city", Operator::Exists, vec![])).unwrap();
        assert!(!plain.uses_event());
    }

    #[test]
    fn conditions_are_listed_depth_first() {
        let c = Criterion::parse(RawCriterion::All(vec![
            cond("customer.city", Operator::Exists, vec![]),
            RawCriterion::Any(vec![cond("customer.state", Operator::Exists, vec![])]),
            cond("customer.email", Operator::Exists, vec![]),
        ]))
        .unwrap();
        let paths: Vec<_> = c.conditions().map(|c| c.field.path()).collect();
        assert_eq!(paths, ["customer.city", "customer.state", "customer.email"]);
    }

    #[test]
    fn the_json_form_is_stable() {
        let c = Criterion::parse(RawCriterion::Not(Some(Box::new(RawCriterion::All(vec![
            cond(
                "customer.properties.vip",
                Operator::Equal,
                vec![Value::Bool(true)],
            ),
            cond(
                "features.purchase_count",
                Operator::In,
                vec![Value::Int(1), Value::Int(2)],
            ),
            cond("customer.city", Operator::Contains, vec![s("pra")]),
        ])))))
        .unwrap();
        let expected = json!({"not": {"all": [
            {"condition": {"field": {"property": "vip"}, "operator": "equal",
                           "values": [{"bool": true}]}},
            {"condition": {"field": {"feature": "purchase_count"}, "operator": "in",
                           "values": [{"int": 1}, {"int": 2}]}},
            {"condition": {"field": {"customer": "city"}, "operator": "contains",
                           "values": [{"string": "pra"}]}},
        ]}});
        assert_eq!(c.to_json(), expected);
        assert_eq!(Criterion::from_json(&expected).unwrap(), c);
    }

    #[test]
    fn stored_json_is_validated_again() {
        let retired = json!({"condition": {"field": {"customer": "shoe_size"},
                                           "operator": "exists", "values": []}});
        let err = Criterion::from_json(&retired).unwrap_err();
        assert!(matches!(&err, StoredCriterionError::Invalid(v) if v[0].path == "condition.field"));
        assert!(err.to_string().contains("shoe_size"));
        assert!(matches!(
            Criterion::from_json(&json!({"any": []})),
            Err(StoredCriterionError::Invalid(_))
        ));
        assert!(matches!(
            Criterion::from_json(&json!({"maybe": []})),
            Err(StoredCriterionError::Json(_))
        ));
    }

    // ---- properties ----

    const FIELDS: &[&str] = &[
        "customer.city",
        "customer.email",
        "customer.properties.tier",
        "customer.properties.visits",
        "features.purchase_count",
        "features.total_spent_minor",
        "features.email_hard_bounced",
        "features.tier_rank",
        "consents.news",
        "points.standard",
        "events.visit.count",
        "purchases.last_30_days.count",
        "purchases.ever.avg_minor",
        "purchases.last_7_days.product_ids",
        "segments.0190a0b1-7c2d-7e3f-8a4b-5c6d7e8f9a0b",
        "badges.0190a0b1-7c2d-7e3f-8a4b-5c6d7e8f9a0c",
        "cart.total_minor",
        "cart.line_count",
        "cart.product_ids",
        "cart.product_group_ids",
    ];
    const WORDS: &[&str] = &["praha", "PRAHA", "gold", "7", "-2", "sku-1", "true", ""];

    fn word() -> impl Strategy<Value = String> {
        prop::sample::select(WORDS).prop_map(str::to_owned)
    }

    fn value_of(field: &Field, op: Operator) -> BoxedStrategy<Value> {
        let int = (-3i64..10).prop_map(Value::Int);
        let string = word().prop_map(Value::String);
        match (field.value_kind(), op) {
            (ValueKind::Int, _) => int.boxed(),
            (ValueKind::Bool, _) => any::<bool>().prop_map(Value::Bool).boxed(),
            (_, o) if o.is_ordering() => int.boxed(),
            (ValueKind::StringList, _) | (_, Operator::Contains) => string.boxed(),
            _ => prop_oneof![string, int, any::<bool>().prop_map(Value::Bool)].boxed(),
        }
    }

    /// Conditions that obey every rule.
    fn valid_condition() -> impl Strategy<Value = RawCriterion> {
        prop::sample::select(FIELDS)
            .prop_flat_map(|path| {
                let field = Field::parse(path).unwrap();
                (Just(path), prop::sample::select(field.operators()))
            })
            .prop_flat_map(|(path, op)| {
                let field = Field::parse(path).unwrap();
                let count = match op {
                    Operator::Exists => 0..1,
                    Operator::In => 1..4,
                    _ => 1..2,
                };
                let values = prop::collection::vec(value_of(&field, op), count);
                values.prop_map(move |values| cond(path, op, values))
            })
    }

    fn valid_raw() -> impl Strategy<Value = RawCriterion> {
        valid_condition().prop_recursive(5, 40, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 1..4).prop_map(RawCriterion::All),
                prop::collection::vec(inner.clone(), 1..4).prop_map(RawCriterion::Any),
                inner.prop_map(|c| RawCriterion::Not(Some(Box::new(c)))),
            ]
        })
    }

    fn criterion() -> impl Strategy<Value = Criterion> {
        valid_raw().prop_map(|raw| Criterion::parse(raw).expect("generated to be valid"))
    }

    /// Anything at all, including deep trees, junk fields and overlong strings.
    fn arbitrary_raw() -> impl Strategy<Value = RawCriterion> {
        let field = prop_oneof![
            prop::sample::select(FIELDS).prop_map(str::to_owned),
            ".*",
            "customer\\.properties\\.[a-zA-Z0-9_.]{0,70}",
        ];
        let value = prop_oneof![
            ".{0,8}".prop_map(Value::String),
            (1020usize..1030).prop_map(|n| Value::String("x".repeat(n))),
            any::<i64>().prop_map(Value::Int),
            any::<bool>().prop_map(Value::Bool),
        ];
        let leaf = prop_oneof![
            (
                field,
                prop::option::of(prop::sample::select(&Operator::ALL[..])),
                prop::collection::vec(value, 0..4)
            )
                .prop_map(|(field, operator, values)| RawCriterion::Condition {
                    field,
                    operator,
                    values
                }),
            Just(RawCriterion::Empty),
            Just(RawCriterion::Not(None)),
        ];
        leaf.prop_recursive(24, 64, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(RawCriterion::All),
                prop::collection::vec(inner.clone(), 0..4).prop_map(RawCriterion::Any),
                inner.prop_map(|c| RawCriterion::Not(Some(Box::new(c)))),
            ]
        })
    }

    fn facts() -> impl Strategy<Value = Facts> {
        let fact = |path: &'static str| {
            let f = match Field::parse(path).unwrap().value_kind() {
                ValueKind::String => word().prop_map(Fact::String).boxed(),
                ValueKind::Int => (-3i64..10).prop_map(Fact::Int).boxed(),
                ValueKind::StringList => prop::collection::vec(word(), 0..3)
                    .prop_map(Fact::List)
                    .boxed(),
                ValueKind::Bool => any::<bool>().prop_map(Fact::Bool).boxed(),
            };
            prop::option::of(f).prop_map(move |f| f.map(|f| (path, f)))
        };
        FIELDS
            .iter()
            .map(|p| fact(p))
            .collect::<Vec<_>>()
            .prop_map(|fs| fs.into_iter().flatten().collect())
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_fails_only_with_violations(raw in arbitrary_raw()) {
            match Criterion::parse(raw) {
                Ok(c) => prop_assert_eq!(Criterion::parse(c.clone().into_raw()), Ok(c)),
                Err(v) => prop_assert!(!v.is_empty()),
            }
        }

        #[test]
        fn criteria_that_obey_the_rules_are_accepted(raw in valid_raw()) {
            prop_assert!(Criterion::parse(raw).is_ok());
        }

        #[test]
        fn a_parsed_criterion_parses_back_from_its_raw_form(c in criterion()) {
            prop_assert_eq!(Criterion::parse(c.clone().into_raw()), Ok(c));
        }

        #[test]
        fn the_json_round_trip_preserves_the_criterion(c in criterion(), f in facts()) {
            let back = Criterion::from_json(&c.to_json()).expect("round trip");
            prop_assert_eq!(back.evaluate(&f), c.evaluate(&f));
            prop_assert_eq!(back, c);
        }

        #[test]
        fn double_negation_changes_nothing(c in criterion(), f in facts()) {
            let not_not = Criterion::Not(Box::new(Criterion::Not(Box::new(c.clone()))));
            prop_assert_eq!(not_not.evaluate(&f), c.evaluate(&f));
            prop_assert_eq!(Criterion::Not(Box::new(c.clone())).evaluate(&f), !c.evaluate(&f));
        }

        #[test]
        fn a_group_of_one_is_its_child(c in criterion(), f in facts()) {
            prop_assert_eq!(Criterion::All(vec![c.clone()]).evaluate(&f), c.evaluate(&f));
            prop_assert_eq!(Criterion::Any(vec![c.clone()]).evaluate(&f), c.evaluate(&f));
        }

        #[test]
        fn de_morgan_holds(a in criterion(), b in criterion(), f in facts()) {
            let not = |c: &Criterion| Criterion::Not(Box::new(c.clone()));
            let lhs = not(&Criterion::All(vec![a.clone(), b.clone()]));
            let rhs = Criterion::Any(vec![not(&a), not(&b)]);
            prop_assert_eq!(lhs.evaluate(&f), rhs.evaluate(&f));
        }

        #[test]
        fn without_facts_only_not_equal_holds(c in valid_condition()) {
            let c = Criterion::parse(c).unwrap();
            let Criterion::Condition(cond) = &c else { unreachable!() };
            // A membership is never missing: without facts it is "not a member".
            let as_not_member = cond.field.is_membership()
                && c.evaluate(&Facts::default().with(cond.field.path(), Fact::Bool(false)));
            let expected = if cond.field.is_membership() {
                as_not_member
            } else {
                cond.operator == Operator::NotEqual
            };
            prop_assert_eq!(c.evaluate(&Facts::default()), expected);
        }

        #[test]
        fn uses_cart_means_some_condition_reads_the_cart(c in criterion()) {
            let raw = c.clone().into_raw();
            prop_assert_eq!(c.uses_cart(), format!("{raw:?}").contains("\"cart."));
        }
    }
}

//! Conditions: one field, one operator, literal values. Their validation and evaluation.
use serde::{Deserialize, Serialize};

use crate::facts::{Fact, Facts};
use crate::field::{Field, ValueKind};
use crate::raw::{Violation, join};

/// Largest number of values of an `in`.
pub const MAX_VALUES: usize = 100;
/// Longest string value, in characters.
pub const MAX_STRING_CHARS: usize = 1024;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    /// The fact equals the value (strings case-insensitively).
    Equal,
    /// The fact is missing or differs from the value.
    NotEqual,
    /// The fact, as an integer, is less than the value.
    Less,
    /// The fact, as an integer, is at most the value.
    LessOrEqual,
    /// The fact, as an integer, is greater than the value.
    Greater,
    /// The fact, as an integer, is at least the value.
    GreaterOrEqual,
    /// The fact equals one of the values (a list: one of its elements does).
    In,
    /// The fact is present (and not an empty string or list); takes no values.
    Exists,
    /// A string fact contains the value (case-insensitively), or a list fact has an element
    /// equal to it.
    Contains,
}

impl Operator {
    /// Every operator, in protobuf order.
    pub const ALL: [Operator; 9] = [
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

    /// Whether this is `<`, `<=`, `>` or `>=`.
    pub fn is_ordering(self) -> bool {
        matches!(
            self,
            Operator::Less | Operator::LessOrEqual | Operator::Greater | Operator::GreaterOrEqual
        )
    }

    /// The name used in messages, e.g. `GREATER_OR_EQUAL`.
    pub fn name(self) -> &'static str {
        match self {
            Operator::Equal => "EQUAL",
            Operator::NotEqual => "NOT_EQUAL",
            Operator::Less => "LESS",
            Operator::LessOrEqual => "LESS_OR_EQUAL",
            Operator::Greater => "GREATER",
            Operator::GreaterOrEqual => "GREATER_OR_EQUAL",
            Operator::In => "IN",
            Operator::Exists => "EXISTS",
            Operator::Contains => "CONTAINS",
        }
    }
}

/// A literal of a condition. JSON: `{"string": "x"}`, `{"int": 5}`, `{"bool": true}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    String(String),
    Int(i64),
    Bool(bool),
}

/// A validated comparison of one field with literals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    pub field: Field,
    pub operator: Operator,
    pub values: Vec<Value>,
}

/// Checks a raw condition at `path` (the path of the `condition` node), pushing every
/// problem; returns the condition when it has none. `event.<key>` fields are accepted only
/// `with_event` (see [`crate::Criterion::parse_with_event`]).
pub(crate) fn check_condition(
    path: &str,
    field: &str,
    operator: Option<Operator>,
    values: Vec<Value>,
    with_event: bool,
    out: &mut Vec<Violation>,
) -> Option<Condition> {
    let before = out.len();
    let mut bad = |p: String, r: String| out.push(Violation { path: p, reason: r });
    let field_path = join(path, "field");
    let operator_path = join(path, "operator");
    let values_path = join(path, "values");

    let field = match Field::parse(field) {
        Ok(f) if f.is_event() && !with_event => {
            bad(
                field_path,
                format!(
                    "{f} reads the event that triggered a workflow; only a workflow criterion \
                     may read event.<key>"
                ),
            );
            None
        }
        Ok(f) => Some(f),
        Err(reason) => {
            bad(field_path, reason);
            None
        }
    };
    if operator.is_none() {
        bad(operator_path.clone(), "an operator is required".to_owned());
    }
    // The operator-specific value checks below make sense only when the operator fits.
    let mut operator_fits = true;
    if let (Some(f), Some(op)) = (&field, operator)
        && !f.operators().contains(&op)
    {
        operator_fits = false;
        let allowed: Vec<_> = f.operators().iter().map(|o| o.name()).collect();
        bad(
            operator_path,
            format!(
                "{} does not apply to {f}; use one of {}",
                op.name(),
                allowed.join(", ")
            ),
        );
    }
    if let Some(op) = operator {
        let (ok, want) = match op {
            Operator::Exists => (values.is_empty(), "no values".to_owned()),
            Operator::In => (
                (1..=MAX_VALUES).contains(&values.len()),
                format!("1..{MAX_VALUES} values"),
            ),
            _ => (values.len() == 1, "exactly one value".to_owned()),
        };
        if !ok {
            bad(
                values_path.clone(),
                format!("{} takes {want}, got {}", op.name(), values.len()),
            );
        }
    }
    // Types of the values: what the field holds, else what the operator needs (when it fits).
    let all = |pred: fn(&Value) -> bool| values.iter().all(pred);
    let is_int = |v: &Value| matches!(v, Value::Int(_));
    let is_string = |v: &Value| matches!(v, Value::String(_));
    let is_bool = |v: &Value| matches!(v, Value::Bool(_));
    let kind = field.as_ref().map(Field::value_kind);
    if kind == Some(ValueKind::Bool) && !all(is_bool) {
        bad(
            values_path.clone(),
            format!(
                "{} holds a boolean: values must be booleans",
                fmt_field(&field)
            ),
        );
    } else if kind == Some(ValueKind::Int) && !all(is_int) {
        bad(
            values_path.clone(),
            format!(
                "{} holds integers: values must be integers",
                fmt_field(&field)
            ),
        );
    } else if kind == Some(ValueKind::StringList) && !all(is_string) {
        bad(
            values_path.clone(),
            format!(
                "{} holds strings: values must be strings",
                fmt_field(&field)
            ),
        );
    } else if operator_fits && operator.is_some_and(Operator::is_ordering) && !all(is_int) {
        bad(
            values_path.clone(),
            "ordering comparisons need integer values".to_owned(),
        );
    } else if operator_fits && operator == Some(Operator::Contains) && !all(is_string) {
        bad(
            values_path.clone(),
            "CONTAINS needs a string value".to_owned(),
        );
    }
    for (i, v) in values.iter().enumerate() {
        if let Value::String(s) = v {
            if s.chars().count() > MAX_STRING_CHARS {
                bad(
                    format!("{values_path}[{i}]"),
                    format!("a string value is at most {MAX_STRING_CHARS} characters"),
                );
            } else if s.contains('\0') {
                // No stored text can hold it (PostgreSQL text refuses U+0000).
                bad(
                    format!("{values_path}[{i}]"),
                    "a string value must not contain U+0000".to_owned(),
                );
            }
        }
    }
    match (field, operator) {
        (Some(field), Some(operator)) if out.len() == before => Some(Condition {
            field,
            operator,
            values,
        }),
        _ => None,
    }
}

fn fmt_field(f: &Option<Field>) -> String {
    f.as_ref().map(Field::path).unwrap_or_default()
}

/// The case-insensitive form of a string: Unicode lower case.
pub(crate) fn fold(s: &str) -> String {
    s.to_lowercase()
}

fn str_eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b) || fold(a) == fold(b)
}

/// A string read as an integer: trimmed, optional sign, decimal digits, within `i64`.
pub(crate) fn parse_int(s: &str) -> Option<i64> {
    s.trim().parse().ok()
}

/// A string read as a boolean: trimmed `true` or `false`, any case.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Whether a scalar fact equals a value; a string on one side is parsed to the other's type.
fn scalar_equals(fact: &Fact, value: &Value) -> bool {
    match (fact, value) {
        (Fact::String(f), Value::String(v)) => str_eq(f, v),
        (Fact::String(f), Value::Int(v)) => parse_int(f) == Some(*v),
        (Fact::String(f), Value::Bool(v)) => parse_bool(f) == Some(*v),
        (Fact::Int(f), Value::Int(v)) => f == v,
        (Fact::Int(f), Value::String(v)) => parse_int(v) == Some(*f),
        (Fact::Bool(f), Value::Bool(v)) => f == v,
        (Fact::Bool(f), Value::String(v)) => parse_bool(v) == Some(*f),
        (Fact::List(items), v) => items
            .iter()
            .any(|i| scalar_equals(&Fact::String(i.clone()), v)),
        _ => false,
    }
}

fn as_int(fact: &Fact) -> Option<i64> {
    match fact {
        Fact::Int(n) => Some(*n),
        Fact::String(s) => parse_int(s),
        _ => None,
    }
}

impl Condition {
    /// Whether the facts fulfil the condition. A missing fact fulfils only `NOT_EQUAL`,
    /// except a membership (`segments.*`, `badges.*`), which is then `false`.
    pub fn evaluate(&self, facts: &Facts) -> bool {
        let not_member = Fact::Bool(false);
        let fact = match facts.get(&self.field) {
            Some(fact) => fact,
            // Facts list the groups a customer is in; any other group is known: not a member.
            None if self.field.is_membership() => &not_member,
            None => return self.operator == Operator::NotEqual,
        };
        let first = self.values.first();
        let order = |f: fn(i64, i64) -> bool| match (as_int(fact), first) {
            (Some(a), Some(Value::Int(b))) => f(a, *b),
            _ => false,
        };
        match self.operator {
            Operator::Exists => match fact {
                Fact::String(s) => !s.is_empty(),
                Fact::List(l) => !l.is_empty(),
                Fact::Int(_) | Fact::Bool(_) => true,
            },
            Operator::Equal => first.is_some_and(|v| scalar_equals(fact, v)),
            Operator::NotEqual => first.is_some_and(|v| !scalar_equals(fact, v)),
            Operator::In => self.values.iter().any(|v| scalar_equals(fact, v)),
            Operator::Contains => match (fact, first) {
                (Fact::String(s), Some(Value::String(v))) => fold(s).contains(&fold(v)),
                (Fact::List(_), Some(v)) => scalar_equals(fact, v),
                _ => false,
            },
            Operator::Less => order(|a, b| a < b),
            Operator::LessOrEqual => order(|a, b| a <= b),
            Operator::Greater => order(|a, b| a > b),
            Operator::GreaterOrEqual => order(|a, b| a >= b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    fn check(
        field: &str,
        op: Option<Operator>,
        values: Vec<Value>,
    ) -> Result<Condition, Vec<Violation>> {
        let mut out = Vec::new();
        check_condition("condition", field, op, values, false, &mut out).ok_or(out)
    }

    fn paths(r: Result<Condition, Vec<Violation>>) -> Vec<String> {
        r.unwrap_err().into_iter().map(|v| v.path).collect()
    }

    fn cond(field: &str, op: Operator, values: Vec<Value>) -> Condition {
        check(field, Some(op), values).unwrap()
    }

    fn facts() -> Facts {
        Facts::default()
            .with("customer.city", Fact::String("Praha".into()))
            .with("customer.email", Fact::String(String::new()))
            .with("customer.properties.visits", Fact::String(" 7 ".into()))
            .with("customer.properties.vip", Fact::String("TRUE".into()))
            .with("features.purchase_count", Fact::Int(3))
            .with(
                "cart.product_ids",
                Fact::List(vec!["SKU-1".into(), "Sku-2".into()]),
            )
            .with("cart.product_group_ids", Fact::List(vec![]))
    }

    #[test]
    fn a_well_formed_condition_is_accepted() {
        let c = cond("features.purchase_count", Operator::In, vec![Value::Int(1)]);
        assert_eq!(c.field, Field::Feature("purchase_count".into()));
    }

    #[test]
    fn an_unknown_field_and_a_missing_operator_are_both_reported() {
        assert_eq!(
            paths(check("customer.shoe", None, vec![])),
            ["condition.field", "condition.operator"]
        );
    }

    #[test]
    fn exists_takes_no_values_in_takes_some_and_the_rest_exactly_one() {
        let p = |op, n: usize| paths(check("customer.city", Some(op), vec![s("x"); n]));
        assert_eq!(p(Operator::Exists, 1), ["condition.values"]);
        assert_eq!(p(Operator::In, 0), ["condition.values"]);
        assert_eq!(p(Operator::In, 101), ["condition.values"]);
        assert_eq!(p(Operator::Equal, 2), ["condition.values"]);
        assert_eq!(p(Operator::Contains, 0), ["condition.values"]);
        assert!(check("customer.city", Some(Operator::In), vec![s("x"); 100]).is_ok());
    }

    #[test]
    fn ordering_needs_integers_and_a_numeric_field() {
        let p = |f, v| paths(check(f, Some(Operator::Greater), vec![v]));
        assert_eq!(p("features.purchase_count", s("5")), ["condition.values"]);
        assert_eq!(
            p("customer.properties.visits", s("5")),
            ["condition.values"]
        );
        assert_eq!(p("customer.city", Value::Int(5)), ["condition.operator"]);
        assert_eq!(
            p("cart.product_ids", Value::Int(5)),
            ["condition.operator", "condition.values"]
        );
        assert!(
            check(
                "customer.properties.visits",
                Some(Operator::Greater),
                vec![Value::Int(5)]
            )
            .is_ok()
        );
    }

    #[test]
    fn numeric_fields_take_only_integers_and_lists_only_strings() {
        let p = |f, op, v| paths(check(f, Some(op), vec![v]));
        assert_eq!(
            p("cart.total_minor", Operator::Equal, Value::Bool(true)),
            ["condition.values"]
        );
        assert_eq!(
            p("features.purchase_count", Operator::Contains, Value::Int(1)),
            ["condition.operator"]
        );
        assert_eq!(
            p("cart.product_ids", Operator::Contains, Value::Int(1)),
            ["condition.values"]
        );
        assert_eq!(
            p("customer.city", Operator::Contains, Value::Int(1)),
            ["condition.values"]
        );
    }

    #[test]
    fn overlong_strings_are_reported_with_their_index() {
        let long = "é".repeat(MAX_STRING_CHARS + 1);
        let fine = "é".repeat(MAX_STRING_CHARS);
        assert_eq!(
            paths(check(
                "customer.city",
                Some(Operator::In),
                vec![s(&fine), s(&long)]
            )),
            ["condition.values[1]"]
        );
    }

    #[test]
    fn a_nul_character_in_a_string_value_is_reported_with_its_index() {
        assert_eq!(
            paths(check(
                "customer.city",
                Some(Operator::In),
                vec![s("ok"), s("a\0b")]
            )),
            ["condition.values[1]"]
        );
    }

    #[test]
    fn strings_are_equal_case_insensitively() {
        assert!(cond("customer.city", Operator::Equal, vec![s("PRAHA")]).evaluate(&facts()));
        assert!(!cond("customer.city", Operator::Equal, vec![s("Brno")]).evaluate(&facts()));
        assert!(cond("customer.city", Operator::NotEqual, vec![s("brno")]).evaluate(&facts()));
        assert!(!cond("customer.city", Operator::NotEqual, vec![s("praha")]).evaluate(&facts()));
    }

    #[test]
    fn a_missing_fact_fulfils_only_not_equal() {
        let none = Facts::default();
        assert!(cond("customer.state", Operator::NotEqual, vec![s("x")]).evaluate(&none));
        for (op, values) in [
            (Operator::Equal, vec![s("x")]),
            (Operator::In, vec![s("x")]),
            (Operator::Exists, vec![]),
            (Operator::Contains, vec![s("")]),
            (Operator::Less, vec![Value::Int(i64::MAX)]),
        ] {
            assert!(
                !cond("customer.properties.x", op, values).evaluate(&none),
                "{op:?}"
            );
        }
    }

    #[test]
    fn string_properties_compare_as_integers_when_the_value_is_an_integer() {
        let f = facts();
        let c = |op, n| cond("customer.properties.visits", op, vec![Value::Int(n)]).evaluate(&f);
        assert!(c(Operator::GreaterOrEqual, 5));
        assert!(c(Operator::GreaterOrEqual, 7));
        assert!(!c(Operator::Greater, 7));
        assert!(c(Operator::Less, 8));
        assert!(c(Operator::LessOrEqual, 7));
        assert!(c(Operator::Equal, 7));
        assert!(!cond("customer.city", Operator::Equal, vec![Value::Int(7)]).evaluate(&f));
        assert!(
            !cond(
                "customer.properties.vip",
                Operator::Greater,
                vec![Value::Int(0)]
            )
            .evaluate(&f)
        );
    }

    #[test]
    fn string_properties_compare_as_booleans_when_the_value_is_a_boolean() {
        let vip = |b| {
            cond(
                "customer.properties.vip",
                Operator::Equal,
                vec![Value::Bool(b)],
            )
        };
        assert!(vip(true).evaluate(&facts()));
        assert!(!vip(false).evaluate(&facts()));
    }

    #[test]
    fn integer_facts_equal_strings_that_parse_as_that_integer() {
        let f = Facts::default().with("customer.properties.n", Fact::Int(3));
        assert!(cond("customer.properties.n", Operator::Equal, vec![s("3")]).evaluate(&f));
        assert!(!cond("customer.properties.n", Operator::Equal, vec![s("three")]).evaluate(&f));
    }

    #[test]
    fn exists_is_false_for_empty_strings_and_lists() {
        let f = facts();
        assert!(cond("customer.city", Operator::Exists, vec![]).evaluate(&f));
        assert!(cond("features.purchase_count", Operator::Exists, vec![]).evaluate(&f));
        assert!(!cond("customer.email", Operator::Exists, vec![]).evaluate(&f));
        assert!(!cond("cart.product_group_ids", Operator::Exists, vec![]).evaluate(&f));
    }

    #[test]
    fn contains_finds_substrings_and_list_elements_case_insensitively() {
        let f = facts();
        assert!(cond("customer.city", Operator::Contains, vec![s("RAH")]).evaluate(&f));
        assert!(!cond("customer.city", Operator::Contains, vec![s("brno")]).evaluate(&f));
        assert!(cond("cart.product_ids", Operator::Contains, vec![s("sku-2")]).evaluate(&f));
        assert!(!cond("cart.product_ids", Operator::Contains, vec![s("SKU")]).evaluate(&f));
    }

    #[test]
    fn in_matches_any_value_and_any_list_element() {
        let f = facts();
        let c = |field, values| cond(field, Operator::In, values).evaluate(&f);
        assert!(c("customer.city", vec![s("Brno"), s("praha")]));
        assert!(!c("customer.city", vec![s("Brno")]));
        assert!(c("cart.product_ids", vec![s("x"), s("sku-1")]));
        assert!(!c("cart.product_ids", vec![s("x")]));
        assert!(c(
            "features.purchase_count",
            vec![Value::Int(1), Value::Int(3)]
        ));
    }

    #[test]
    fn comparisons_are_exact_at_the_integer_limits() {
        let f = Facts::default().with("features.purchase_count", Fact::Int(i64::MIN));
        let c = |op| cond("features.purchase_count", op, vec![Value::Int(i64::MIN)]).evaluate(&f);
        assert!(c(Operator::LessOrEqual));
        assert!(!c(Operator::Less));
    }

    #[test]
    fn a_membership_is_false_unless_the_facts_say_so_and_takes_only_booleans() {
        let path = "segments.0190a0b1-7c2d-7e3f-8a4b-5c6d7e8f9a0b";
        let member = Facts::default().with(path, Fact::Bool(true));
        let none = Facts::default();
        let is = cond(path, Operator::Equal, vec![Value::Bool(true)]);
        let is_not = cond(path, Operator::Equal, vec![Value::Bool(false)]);
        let differs = cond(path, Operator::NotEqual, vec![Value::Bool(true)]);
        assert!(is.evaluate(&member) && !is.evaluate(&none));
        assert!(!is_not.evaluate(&member) && is_not.evaluate(&none));
        assert!(!differs.evaluate(&member) && differs.evaluate(&none));
        assert_eq!(
            paths(check(path, Some(Operator::Equal), vec![s("true")])),
            ["condition.values"]
        );
        assert_eq!(
            paths(check(path, Some(Operator::Exists), vec![])),
            ["condition.operator"]
        );
    }

    #[test]
    fn event_properties_are_accepted_only_with_the_event_and_compare_like_properties() {
        let mut out = Vec::new();
        let event = |op, values| {
            check_condition(
                "condition",
                "event.store",
                op,
                values,
                true,
                &mut Vec::new(),
            )
            .unwrap()
        };
        assert!(
            check_condition(
                "condition",
                "event.store",
                Some(Operator::Equal),
                vec![s("x")],
                false,
                &mut out
            )
            .is_none()
        );
        assert_eq!(out[0].path, "condition.field");
        assert!(out[0].reason.contains("workflow"), "{}", out[0].reason);

        let f = Facts::default()
            .with("event.store", Fact::String("Prague".into()))
            .with("event.total_minor", Fact::String("1250".into()));
        assert!(event(Some(Operator::Equal), vec![s("prague")]).evaluate(&f));
        assert!(event(Some(Operator::In), vec![s("brno"), s("PRAGUE")]).evaluate(&f));
        assert!(event(Some(Operator::Contains), vec![s("rag")]).evaluate(&f));
        assert!(!event(Some(Operator::NotEqual), vec![s("prague")]).evaluate(&f));
        let total = |op, n| {
            check_condition(
                "condition",
                "event.total_minor",
                Some(op),
                vec![Value::Int(n)],
                true,
                &mut Vec::new(),
            )
            .unwrap()
            .evaluate(&f)
        };
        assert!(total(Operator::GreaterOrEqual, 1000));
        assert!(!total(Operator::Less, 1000));
        assert!(total(Operator::Equal, 1250));
        // A missing event property fulfils only NOT_EQUAL, as any missing fact.
        let none = Facts::default();
        assert!(!event(Some(Operator::Equal), vec![s("prague")]).evaluate(&none));
        assert!(event(Some(Operator::NotEqual), vec![s("prague")]).evaluate(&none));
    }
}

//! Unvalidated criteria (as the API layer builds them from protobuf) and their validation.
use serde::{Deserialize, Serialize};

use crate::Criterion;
use crate::condition::{Operator, Value, check_condition};

/// Largest depth of a criterion tree (a lone condition has depth 1).
pub const MAX_DEPTH: usize = 16;
/// Largest number of children of a group.
pub const MAX_CHILDREN: usize = 100;

/// A criterion as a client sent it, not yet checked (mirrors the protobuf message).
#[derive(Debug, Clone, PartialEq)]
pub enum RawCriterion {
    /// `all`: every child holds.
    All(Vec<RawCriterion>),
    /// `any`: at least one child holds.
    Any(Vec<RawCriterion>),
    /// `negation`; `None` when the message was absent.
    Not(Option<Box<RawCriterion>>),
    /// `condition`.
    Condition {
        field: String,
        /// `None` when the client left it `UNSPECIFIED`.
        operator: Option<Operator>,
        values: Vec<Value>,
    },
    /// The oneof was not set.
    Empty,
}

/// One problem of a criterion: where and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Violation {
    /// Path of the offending node relative to the criterion, in protobuf field names, e.g.
    /// `all.criteria[1].condition.values`; empty for the root itself.
    pub path: String,
    /// What is wrong, human-readable.
    pub reason: String,
}

impl Violation {
    /// The request field of the problem when the criterion is the field `criterion_field`
    /// (e.g. `segment.criterion` → `segment.criterion.all.criteria[1].condition.field`).
    pub fn field_under(&self, criterion_field: &str) -> String {
        if self.path.is_empty() {
            criterion_field.to_owned()
        } else {
            format!("{criterion_field}.{}", self.path)
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "criterion: {}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Checks `raw` found at `path` and `depth` (the root has depth 1), pushing every problem;
/// `event.<key>` fields are accepted only `with_event`.
pub(crate) fn check(
    raw: RawCriterion,
    path: &str,
    depth: usize,
    with_event: bool,
    out: &mut Vec<Violation>,
) -> Option<Criterion> {
    if depth > MAX_DEPTH {
        out.push(Violation {
            path: path.to_owned(),
            reason: format!("criteria nest at most {MAX_DEPTH} levels deep"),
        });
        return None;
    }
    let group = |name: &str, children: Vec<RawCriterion>, out: &mut Vec<Violation>| {
        let p = join(path, name);
        if children.is_empty() || children.len() > MAX_CHILDREN {
            out.push(Violation {
                path: join(&p, "criteria"),
                reason: format!(
                    "a group needs 1..{MAX_CHILDREN} criteria, got {}",
                    children.len()
                ),
            });
        }
        let parsed: Vec<_> = children
            .into_iter()
            .enumerate()
            .map(|(i, c)| check(c, &format!("{p}.criteria[{i}]"), depth + 1, with_event, out))
            .collect();
        parsed.into_iter().collect::<Option<Vec<_>>>()
    };
    match raw {
        RawCriterion::All(children) => group("all", children, out).map(Criterion::All),
        RawCriterion::Any(children) => group("any", children, out).map(Criterion::Any),
        RawCriterion::Not(None) => {
            out.push(Violation {
                path: join(path, "negation"),
                reason: "the negated criterion is required".to_owned(),
            });
            None
        }
        RawCriterion::Not(Some(inner)) => {
            check(*inner, &join(path, "negation"), depth + 1, with_event, out)
                .map(|c| Criterion::Not(Box::new(c)))
        }
        RawCriterion::Condition {
            field,
            operator,
            values,
        } => check_condition(
            &join(path, "condition"),
            &field,
            operator,
            values,
            with_event,
            out,
        )
        .map(Criterion::Condition),
        RawCriterion::Empty => {
            out.push(Violation {
                path: path.to_owned(),
                reason: "a criterion needs one of all, any, negation or condition".to_owned(),
            });
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn exists() -> RawCriterion {
        cond("customer.city", Operator::Exists, vec![])
    }

    fn not(c: RawCriterion) -> RawCriterion {
        RawCriterion::Not(Some(Box::new(c)))
    }

    fn paths(raw: RawCriterion) -> Vec<String> {
        Criterion::parse(raw)
            .unwrap_err()
            .into_iter()
            .map(|v| v.path)
            .collect()
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let raw = RawCriterion::All(vec![
            cond("customer.shoe_size", Operator::Equal, vec![s("44")]),
            RawCriterion::Condition {
                field: "customer.city".into(),
                operator: None,
                values: vec![],
            },
            cond(
                "features.purchase_count",
                Operator::Greater,
                vec![s("many")],
            ),
            cond("cart.product_ids", Operator::Equal, vec![s("x")]),
            cond("customer.city", Operator::Exists, vec![s("x")]),
            RawCriterion::Empty,
            RawCriterion::Any(vec![]),
            not(RawCriterion::Any(vec![exists(), RawCriterion::Not(None)])),
        ]);
        assert_eq!(
            paths(raw),
            [
                "all.criteria[0].condition.field",
                "all.criteria[1].condition.operator",
                "all.criteria[2].condition.values",
                "all.criteria[3].condition.operator",
                "all.criteria[4].condition.values",
                "all.criteria[5]",
                "all.criteria[6].any.criteria",
                "all.criteria[7].negation.any.criteria[1].negation",
            ]
        );
    }

    #[test]
    fn an_unset_root_is_reported_at_the_empty_path() {
        assert_eq!(paths(RawCriterion::Empty), [""]);
        assert_eq!(paths(RawCriterion::Not(None)), ["negation"]);
    }

    #[test]
    fn groups_hold_at_most_a_hundred_criteria() {
        assert!(Criterion::parse(RawCriterion::Any(vec![exists(); 100])).is_ok());
        assert_eq!(
            paths(RawCriterion::Any(vec![exists(); 101])),
            ["any.criteria"]
        );
    }

    #[test]
    fn sixteen_levels_are_allowed_and_seventeen_are_not() {
        let nest = |levels: usize| (1..levels).fold(exists(), |c, _| not(c));
        assert!(Criterion::parse(nest(16)).is_ok());
        let deep = "negation.".repeat(16);
        assert_eq!(paths(nest(17)), [deep.trim_end_matches('.')]);
        assert_eq!(paths(nest(500)).len(), 1);
    }

    #[test]
    fn violations_read_as_path_and_reason() {
        let v = Violation {
            path: "all.criteria[0]".into(),
            reason: "bad".into(),
        };
        assert_eq!(v.to_string(), "all.criteria[0]: bad");
    }
}

//! The criterion on the wire (`loyalty.segmentation.v1.Criterion`): read by segmentation's
//! segments, badges and audiences, by campaigns' workflow conditions, and sent back by
//! campaigns' workflow engine when it asks segmentation to evaluate one.
use loyalty_proto::segmentation::v1 as pb;

use crate::{Criterion, Operator, RawCriterion, Value, Violation};

/// The operator of a wire condition; `None` when UNSPECIFIED or unknown.
pub fn operator_from_proto(v: i32) -> Option<Operator> {
    use pb::ComparisonOperator as O;
    Some(match O::try_from(v).ok()? {
        O::Equal => Operator::Equal,
        O::NotEqual => Operator::NotEqual,
        O::Less => Operator::Less,
        O::LessOrEqual => Operator::LessOrEqual,
        O::Greater => Operator::Greater,
        O::GreaterOrEqual => Operator::GreaterOrEqual,
        O::In => Operator::In,
        O::Exists => Operator::Exists,
        O::Contains => Operator::Contains,
        O::Unspecified => return None,
    })
}

pub fn operator_to_proto(o: Operator) -> pb::ComparisonOperator {
    use pb::ComparisonOperator as O;
    match o {
        Operator::Equal => O::Equal,
        Operator::NotEqual => O::NotEqual,
        Operator::Less => O::Less,
        Operator::LessOrEqual => O::LessOrEqual,
        Operator::Greater => O::Greater,
        Operator::GreaterOrEqual => O::GreaterOrEqual,
        Operator::In => O::In,
        Operator::Exists => O::Exists,
        Operator::Contains => O::Contains,
    }
}

/// Maps the wire criterion to the unchecked form; an unset value is a problem at its path
/// (relative to the criterion, like [`Violation::path`]), added to `problems`.
pub fn raw_from_proto(c: &pb::Criterion, problems: &mut Vec<Violation>) -> RawCriterion {
    raw_at(c, "", problems)
}

fn join(path: &str, rest: &str) -> String {
    if path.is_empty() {
        rest.to_owned()
    } else {
        format!("{path}.{rest}")
    }
}

fn raw_at(c: &pb::Criterion, path: &str, problems: &mut Vec<Violation>) -> RawCriterion {
    use pb::criterion::Kind;
    match &c.kind {
        None => RawCriterion::Empty,
        Some(Kind::All(g)) => RawCriterion::All(
            g.criteria
                .iter()
                .enumerate()
                .map(|(i, c)| raw_at(c, &join(path, &format!("all.criteria[{i}]")), problems))
                .collect(),
        ),
        Some(Kind::Any(g)) => RawCriterion::Any(
            g.criteria
                .iter()
                .enumerate()
                .map(|(i, c)| raw_at(c, &join(path, &format!("any.criteria[{i}]")), problems))
                .collect(),
        ),
        Some(Kind::Negation(inner)) => RawCriterion::Not(Some(Box::new(raw_at(
            inner,
            &join(path, "negation"),
            problems,
        )))),
        Some(Kind::Condition(cond)) => RawCriterion::Condition {
            field: cond.field.clone(),
            operator: operator_from_proto(cond.operator),
            values: cond
                .values
                .iter()
                .enumerate()
                .filter_map(|(i, val)| {
                    use pb::value::Kind as K;
                    match &val.kind {
                        Some(K::StringValue(s)) => Some(Value::String(s.clone())),
                        Some(K::IntValue(n)) => Some(Value::Int(*n)),
                        Some(K::BoolValue(b)) => Some(Value::Bool(*b)),
                        None => {
                            problems.push(Violation {
                                path: join(path, &format!("condition.values[{i}]")),
                                reason: "must be set".into(),
                            });
                            None
                        }
                    }
                })
                .collect(),
        },
    }
}

/// The wire form of a checked criterion.
pub fn to_proto(c: &Criterion) -> pb::Criterion {
    use pb::criterion::Kind;
    let kind = match c {
        Criterion::All(cs) => Kind::All(pb::CriterionGroup {
            criteria: cs.iter().map(to_proto).collect(),
        }),
        Criterion::Any(cs) => Kind::Any(pb::CriterionGroup {
            criteria: cs.iter().map(to_proto).collect(),
        }),
        Criterion::Not(inner) => Kind::Negation(Box::new(to_proto(inner))),
        Criterion::Condition(cond) => Kind::Condition(pb::Condition {
            field: cond.field.path(),
            operator: operator_to_proto(cond.operator) as i32,
            values: cond
                .values
                .iter()
                .map(|v| pb::Value {
                    kind: Some(match v {
                        Value::String(s) => pb::value::Kind::StringValue(s.clone()),
                        Value::Int(n) => pb::value::Kind::IntValue(*n),
                        Value::Bool(b) => pb::value::Kind::BoolValue(*b),
                    }),
                })
                .collect(),
        }),
    };
    pb::Criterion { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_criterion_goes_over_the_wire_and_back() {
        let raw = RawCriterion::All(vec![
            RawCriterion::Condition {
                field: "customer.city".into(),
                operator: Some(Operator::Equal),
                values: vec![Value::String("Praha".into())],
            },
            RawCriterion::Not(Some(Box::new(RawCriterion::Condition {
                field: "event.store".into(),
                operator: Some(Operator::In),
                values: vec![Value::String("a".into()), Value::String("b".into())],
            }))),
        ]);
        let c = Criterion::parse_with_event(raw).expect("valid");
        let mut problems = Vec::new();
        let back = raw_from_proto(&to_proto(&c), &mut problems);
        assert!(problems.is_empty());
        assert_eq!(Criterion::parse_with_event(back).expect("valid"), c);
        // Stored by a workflow: read back only where events are known.
        assert_eq!(
            Criterion::from_json_with_event(&c.to_json()).expect("valid"),
            c
        );
        assert!(Criterion::from_json(&c.to_json()).is_err());
    }

    #[test]
    fn an_unset_value_is_named_by_its_path() {
        let c = pb::Criterion {
            kind: Some(pb::criterion::Kind::Any(pb::CriterionGroup {
                criteria: vec![pb::Criterion {
                    kind: Some(pb::criterion::Kind::Condition(pb::Condition {
                        field: "customer.city".into(),
                        operator: pb::ComparisonOperator::Equal as i32,
                        values: vec![pb::Value { kind: None }],
                    })),
                }],
            })),
        };
        let mut problems = Vec::new();
        raw_from_proto(&c, &mut problems);
        assert_eq!(problems[0].path, "any.criteria[0].condition.values[0]");
    }
}

//! Criteria reading the membership of other groups (`segments.<id>`, `badges.<id>`): the
//! facts the in-memory evaluator needs, which groups a criterion references (and where), the
//! reference graph of a partner's groups with cycle detection, what a deletion would break,
//! and the order the nightly run recalculates groups in. No I/O here.
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use loyalty_criteria::{Criterion, Fact, Facts, Field};
use loyalty_platform::Violations;
use uuid::Uuid;

use super::GroupKind;

/// A segment or badge.
pub type GroupId = (GroupKind, Uuid);

/// Adds the facts "is a member" of `segments` and holds `badges`; any other group reads as
/// "not a member" ([`Field::is_membership`]).
pub fn add_membership_facts(facts: &mut Facts, segments: &[Uuid], badges: &[Uuid]) {
    for id in segments {
        facts.insert(Field::Segment(*id).path(), Fact::Bool(true));
    }
    for id in badges {
        facts.insert(Field::Badge(*id).path(), Fact::Bool(true));
    }
}

fn group_of(field: &Field) -> Option<GroupId> {
    match field {
        Field::Segment(id) => Some((GroupKind::Segment, *id)),
        Field::Badge(id) => Some((GroupKind::Badge, *id)),
        _ => None,
    }
}

/// Each condition reading a group's membership: its path in the criterion (e.g.
/// `all.criteria[1].condition.field`) and the group, depth first.
pub fn references(c: &Criterion) -> Vec<(String, GroupId)> {
    fn walk(c: &Criterion, path: &str, out: &mut Vec<(String, GroupId)>) {
        let join = |name: &str| {
            if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            }
        };
        match c {
            Criterion::All(cs) | Criterion::Any(cs) => {
                let group = if matches!(c, Criterion::All(_)) {
                    "all"
                } else {
                    "any"
                };
                for (i, c) in cs.iter().enumerate() {
                    walk(c, &join(&format!("{group}.criteria[{i}]")), out);
                }
            }
            Criterion::Not(c) => walk(c, &join("negation"), out),
            Criterion::Condition(cond) => {
                if let Some(g) = group_of(&cond.field) {
                    out.push((join("condition.field"), g));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(c, "", &mut out);
    out
}

/// The groups a criterion references, each once.
pub fn referenced(c: &Criterion) -> BTreeSet<GroupId> {
    references(c).into_iter().map(|(_, g)| g).collect()
}

fn describe(g: GroupId) -> String {
    format!("{} {}", g.0.as_str(), g.1)
}

/// Which groups of a partner reference which (through their criteria).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferenceGraph(BTreeMap<GroupId, BTreeSet<GroupId>>);

impl ReferenceGraph {
    pub fn new(edges: impl IntoIterator<Item = (GroupId, BTreeSet<GroupId>)>) -> Self {
        ReferenceGraph(edges.into_iter().collect())
    }

    /// Replaces what `group` references (its criterion changes).
    pub fn set(&mut self, group: GroupId, refs: BTreeSet<GroupId>) {
        self.0.insert(group, refs);
    }

    /// A shortest chain of references from `from` to `to` (both included), if any.
    pub fn chain(&self, from: GroupId, to: GroupId) -> Option<Vec<GroupId>> {
        let mut previous: BTreeMap<GroupId, GroupId> = BTreeMap::new();
        let mut queue = VecDeque::from([from]);
        let mut seen = BTreeSet::from([from]);
        while let Some(g) = queue.pop_front() {
            if g == to {
                let mut chain = vec![g];
                let mut at = g;
                while let Some(p) = previous.get(&at) {
                    chain.push(*p);
                    at = *p;
                }
                chain.reverse();
                return Some(chain);
            }
            for next in self.0.get(&g).into_iter().flatten() {
                if seen.insert(*next) {
                    previous.insert(*next, g);
                    queue.push_back(*next);
                }
            }
        }
        None
    }

    /// The groups whose criteria reference `group`.
    pub fn referencing(&self, group: GroupId) -> Vec<GroupId> {
        self.0
            .iter()
            .filter(|(g, refs)| **g != group && refs.contains(&group))
            .map(|(g, _)| *g)
            .collect()
    }

    /// `groups` ordered so that a group comes after every group it references (directly or
    /// not) among them; otherwise in the given order. Groups on a cycle (which validation
    /// refuses, so only from data written before it) keep their given order.
    pub fn order(&self, groups: &[GroupId]) -> Vec<GroupId> {
        fn visit(
            g: GroupId,
            graph: &ReferenceGraph,
            wanted: &BTreeSet<GroupId>,
            state: &mut BTreeMap<GroupId, bool>,
            out: &mut Vec<GroupId>,
        ) {
            // false = on the current path, true = done.
            if state.contains_key(&g) {
                return;
            }
            state.insert(g, false);
            for r in graph.0.get(&g).into_iter().flatten() {
                visit(*r, graph, wanted, state, out);
            }
            state.insert(g, true);
            if wanted.contains(&g) {
                out.push(g);
            }
        }
        let wanted: BTreeSet<GroupId> = groups.iter().copied().collect();
        let mut state = BTreeMap::new();
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            visit(*g, self, &wanted, &mut state, &mut out);
        }
        out
    }
}

/// What `referenced` (a criterion's group, by path) may be: `Ok(())`, or why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Referable {
    Yes,
    /// Not a group of this partner.
    Unknown,
    /// A segment whose criterion reads the cart: decided at checkout, it stores no members
    /// a criterion could read.
    OnlineOnly,
}

/// Checks the references of `group`'s new `criterion`, reported under `field` (e.g.
/// `segment.criterion`) plus the condition's path: every referenced group must exist for the
/// partner and store members, and no chain of references may lead back to `group` (itself
/// included). `graph` holds the partner's groups as they are.
pub fn check_references(
    v: &mut Violations,
    field: &str,
    group: GroupId,
    criterion: &Criterion,
    referable: impl Fn(GroupId) -> Referable,
    graph: &ReferenceGraph,
) {
    let refs = references(criterion);
    let mut graph = graph.clone();
    graph.set(group, refs.iter().map(|(_, g)| *g).collect());
    for (path, target) in refs {
        let at = format!("{field}.{path}");
        match referable(target) {
            _ if target == group => {
                v.add(at, format!("{} references itself", describe(group)));
            }
            Referable::Unknown => v.add(at, format!("no such {}", describe(target))),
            Referable::OnlineOnly => v.add(
                at,
                format!(
                    "{} reads the cart and is decided at checkout; it stores no members to \
                     refer to",
                    describe(target)
                ),
            ),
            Referable::Yes => {
                if let Some(chain) = graph.chain(target, group) {
                    let chain: Vec<String> =
                        std::iter::once(group).chain(chain).map(describe).collect();
                    v.add(at, format!("makes a cycle: {}", chain.join(" → ")));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loyalty_criteria::{Operator, RawCriterion, Value};

    fn seg(n: u128) -> GroupId {
        (GroupKind::Segment, Uuid::from_u128(n))
    }

    fn badge(n: u128) -> GroupId {
        (GroupKind::Badge, Uuid::from_u128(n))
    }

    fn is(g: GroupId) -> RawCriterion {
        let field = match g.0 {
            GroupKind::Segment => Field::Segment(g.1),
            GroupKind::Badge => Field::Badge(g.1),
        };
        RawCriterion::Condition {
            field: field.path(),
            operator: Some(Operator::Equal),
            values: vec![Value::Bool(true)],
        }
    }

    fn all(cs: Vec<RawCriterion>) -> Criterion {
        Criterion::parse(RawCriterion::All(cs)).unwrap()
    }

    fn graph(edges: &[(GroupId, &[GroupId])]) -> ReferenceGraph {
        ReferenceGraph::new(
            edges
                .iter()
                .map(|(g, refs)| (*g, refs.iter().copied().collect())),
        )
    }

    fn problems(group: GroupId, c: &Criterion, g: &ReferenceGraph) -> Vec<(String, String)> {
        let mut v = Violations::new();
        let known: BTreeSet<GroupId> = g.0.keys().copied().collect();
        let referable = |t: GroupId| {
            if t == seg(99) {
                Referable::OnlineOnly
            } else if known.contains(&t) || t == group {
                Referable::Yes
            } else {
                Referable::Unknown
            }
        };
        check_references(&mut v, "segment.criterion", group, c, referable, g);
        v.into_vec()
            .into_iter()
            .map(|f| (f.field, f.description))
            .collect()
    }

    #[test]
    fn references_are_found_with_their_paths() {
        let c = Criterion::parse(RawCriterion::Any(vec![
            is(seg(1)),
            RawCriterion::Not(Some(Box::new(is(badge(2))))),
        ]))
        .unwrap();
        assert_eq!(
            references(&c),
            [
                ("any.criteria[0].condition.field".to_owned(), seg(1)),
                (
                    "any.criteria[1].negation.condition.field".to_owned(),
                    badge(2)
                ),
            ]
        );
        let lone = Criterion::parse(is(seg(1))).unwrap();
        assert_eq!(references(&lone), [("condition.field".to_owned(), seg(1))]);
    }

    #[test]
    fn membership_facts_make_the_criterion_hold() {
        let c = all(vec![is(seg(1)), is(badge(2))]);
        let mut facts = Facts::default();
        assert!(!c.evaluate(&facts));
        add_membership_facts(&mut facts, &[seg(1).1], &[badge(2).1]);
        assert!(c.evaluate(&facts));
    }

    #[test]
    fn a_cycle_direct_through_badges_or_to_itself_is_named_with_its_chain() {
        // 1 → badge 2 → 3; making 3 reference 1 closes the loop.
        let g = graph(&[(seg(1), &[badge(2)]), (badge(2), &[seg(3)]), (seg(3), &[])]);
        let p = problems(seg(3), &all(vec![is(seg(1))]), &g);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "segment.criterion.all.criteria[0].condition.field");
        assert_eq!(
            p[0].1,
            format!(
                "makes a cycle: segment {} → segment {} → badge {} → segment {}",
                seg(3).1,
                seg(1).1,
                badge(2).1,
                seg(3).1
            )
        );
        let own = problems(seg(3), &all(vec![is(seg(3))]), &g);
        assert!(own[0].1.ends_with("references itself"), "{own:?}");
        // A direct loop A → B → A.
        let pair = graph(&[(seg(1), &[seg(2)]), (seg(2), &[])]);
        assert_eq!(problems(seg(2), &all(vec![is(seg(1))]), &pair).len(), 1);
        // Referencing something that references others is fine without a loop.
        assert!(problems(seg(4), &all(vec![is(seg(1)), is(seg(3))]), &g).is_empty());
    }

    #[test]
    fn unknown_and_online_only_groups_cannot_be_referenced() {
        let g = graph(&[(seg(1), &[])]);
        let p = problems(
            seg(5),
            &all(vec![is(seg(1)), is(badge(7)), is(seg(99))]),
            &g,
        );
        assert_eq!(
            p.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(),
            [
                "segment.criterion.all.criteria[1].condition.field",
                "segment.criterion.all.criteria[2].condition.field"
            ]
        );
        assert!(p[0].1.starts_with("no such badge"));
        assert!(p[1].1.contains("stores no members"));
    }

    #[test]
    fn referenced_groups_come_first_and_referencing_groups_are_found() {
        let g = graph(&[
            (seg(1), &[badge(2), seg(3)]),
            (badge(2), &[seg(3)]),
            (seg(3), &[]),
            (seg(4), &[]),
        ]);
        assert_eq!(
            g.order(&[seg(1), badge(2), seg(3), seg(4)]),
            [seg(3), badge(2), seg(1), seg(4)]
        );
        // Only the wanted groups are ordered, through groups that are not wanted.
        assert_eq!(g.order(&[seg(1), seg(3)]), [seg(3), seg(1)]);
        assert_eq!(g.referencing(seg(3)), [seg(1), badge(2)]);
        assert!(g.referencing(seg(4)).is_empty());
        // A cycle from old data does not loop forever.
        let cyclic = graph(&[(seg(1), &[seg(2)]), (seg(2), &[seg(1)])]);
        assert_eq!(cyclic.order(&[seg(1), seg(2)]).len(), 2);
    }
}

//! What the membership cache keeps and when a kept entry may be answered: the rules, without
//! Redis or the database (those are in `crate::store::cache`).
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{MembershipCause, Segment, StoredMembership};

/// A customer's stored membership without the segment's columns, which change with every
/// other member (`member_count`) and are joined at read time from the partner's segments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRow {
    pub segment_id: Uuid,
    pub added_at: DateTime<Utc>,
    pub cause: MembershipCause,
}

/// The stored memberships of `rows` (kept in their order), each with its segment's name and
/// Customer 360 columns; a row whose segment is not among `segments` (deleted meanwhile) is
/// left out.
pub fn stored_memberships(
    rows: &[MemberRow],
    segments: &BTreeMap<Uuid, Segment>,
) -> Vec<StoredMembership> {
    rows.iter()
        .filter_map(|r| {
            let segment = segments.get(&r.segment_id)?;
            Some(StoredMembership {
                segment_id: r.segment_id,
                segment_display_name: segment.display_name.clone(),
                added_at: r.added_at,
                cause: r.cause,
                segment: segment.overview(),
            })
        })
        .collect()
}

/// A cached value with the generation tokens that were current when it was read from the
/// database. Every committed change replaces (deletes) the tokens it affects, and tokens are
/// random, never reused: a value stamped with an old token can never be answered again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamped<T> {
    pub stamp: Vec<String>,
    pub value: T,
}

impl<T> Stamped<T> {
    /// The value, if it was read under exactly the current tokens (all of them present).
    pub fn current(self, tokens: &[Option<String>]) -> Option<T> {
        let same = self.stamp.len() == tokens.len()
            && self
                .stamp
                .iter()
                .zip(tokens)
                .all(|(s, t)| t.as_deref() == Some(s.as_str()));
        same.then_some(self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{SegmentDraft, SegmentKind};
    use loyalty_criteria::{Criterion, Operator, RawCriterion, Value};

    fn segment(name: &str) -> Segment {
        SegmentDraft {
            display_name: name.into(),
            kind: Some(SegmentKind::Flexi),
            online_recalculation: false,
            criterion: Some(
                Criterion::parse(RawCriterion::Condition {
                    field: "customer.city".into(),
                    operator: Some(Operator::Equal),
                    values: vec![Value::String("praha".into())],
                })
                .unwrap(),
            ),
            note: format!("{name} note"),
        }
        .into_segment(Uuid::now_v7(), Utc::now())
        .unwrap()
    }

    #[test]
    fn rows_are_joined_with_their_segments_in_row_order_and_deleted_segments_drop_out() {
        let (gold, silver) = (segment("Gold"), segment("Silver"));
        let mut gold_now = gold.clone();
        gold_now.member_count = 42;
        let segments: BTreeMap<Uuid, Segment> =
            [(gold.id, gold_now.clone()), (silver.id, silver.clone())].into();
        let at = Utc::now();
        let rows = [
            MemberRow {
                segment_id: silver.id,
                added_at: at,
                cause: MembershipCause::Manual,
            },
            MemberRow {
                segment_id: Uuid::now_v7(), // deleted since
                added_at: at,
                cause: MembershipCause::Creation,
            },
            MemberRow {
                segment_id: gold.id,
                added_at: at,
                cause: MembershipCause::Recalculation,
            },
        ];
        let stored = stored_memberships(&rows, &segments);
        assert_eq!(
            stored
                .iter()
                .map(|m| (m.segment_id, m.segment_display_name.as_str(), m.cause))
                .collect::<Vec<_>>(),
            [
                (silver.id, "Silver", MembershipCause::Manual),
                (gold.id, "Gold", MembershipCause::Recalculation)
            ]
        );
        assert_eq!(
            stored[1].segment.member_count, 42,
            "the segment's columns are today's, not the row's"
        );
    }

    #[test]
    fn a_stamped_value_is_current_only_under_the_very_tokens_it_was_read_with() {
        let stamped = || Stamped {
            stamp: vec!["a".to_owned(), "b".to_owned()],
            value: 7,
        };
        let t = |s: &str| Some(s.to_owned());
        assert_eq!(stamped().current(&[t("a"), t("b")]), Some(7));
        assert_eq!(
            stamped().current(&[t("a"), t("c")]),
            None,
            "one token replaced"
        );
        assert_eq!(
            stamped().current(&[t("a"), None]),
            None,
            "one token deleted"
        );
        assert_eq!(stamped().current(&[t("a")]), None, "another shape");
        assert_eq!(stamped().current(&[None, None]), None);
    }
}

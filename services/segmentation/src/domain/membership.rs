//! The segment lifecycle rules: why a membership changes, what a recalculation changes, which
//! segments can be recalculated, what an update may change, and when the nightly Flexi run
//! is due. No I/O here.
use std::collections::BTreeSet;

use chrono::{DateTime, Duration, NaiveTime, Utc};
use uuid::Uuid;

use super::{Segment, SegmentKind};

/// Why a customer entered or left a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum MembershipCause {
    /// The criterion, when the segment was created.
    Creation,
    /// A recalculation of the criterion (nightly Flexi run or RecalculateSegment).
    Recalculation,
    /// An operator (Customer 360).
    Manual,
    /// A marketing-automation workflow node.
    Workflow,
    /// The segment was deleted.
    GroupDeleted,
    /// The customer was erased, or merged into another account.
    CustomerRemoved,
}

impl MembershipCause {
    pub fn as_str(self) -> &'static str {
        match self {
            MembershipCause::Creation => "creation",
            MembershipCause::Recalculation => "recalculation",
            MembershipCause::Manual => "manual",
            MembershipCause::Workflow => "workflow",
            MembershipCause::GroupDeleted => "group_deleted",
            MembershipCause::CustomerRemoved => "customer_removed",
        }
    }

    pub fn parse_str(s: &str) -> Option<MembershipCause> {
        Some(match s {
            "creation" => MembershipCause::Creation,
            "recalculation" => MembershipCause::Recalculation,
            "manual" => MembershipCause::Manual,
            "workflow" => MembershipCause::Workflow,
            "group_deleted" => MembershipCause::GroupDeleted,
            "customer_removed" => MembershipCause::CustomerRemoved,
            _ => return None,
        })
    }
}

/// The kinds of customer group whose members are stored here.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum GroupKind {
    Segment,
    Badge,
}

impl GroupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupKind::Segment => "segment",
            GroupKind::Badge => "badge",
        }
    }

    pub fn parse_str(s: &str) -> Option<GroupKind> {
        Some(match s {
            "segment" => GroupKind::Segment,
            "badge" => GroupKind::Badge,
            _ => return None,
        })
    }
}

/// A group whose membership changes: what kind, which one, and its name at the time (kept in
/// the history, which outlives the group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group<'a> {
    pub kind: GroupKind,
    pub id: Uuid,
    pub display_name: &'a str,
}

/// Who changes a membership by hand: an operator, or a workflow (its execution, if known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManualChange {
    Operator,
    Workflow { execution_id: Option<Uuid> },
}

impl ManualChange {
    pub fn cause(self) -> MembershipCause {
        match self {
            ManualChange::Operator => MembershipCause::Manual,
            ManualChange::Workflow { .. } => MembershipCause::Workflow,
        }
    }

    pub fn workflow_execution_id(self) -> Option<Uuid> {
        match self {
            ManualChange::Operator => None,
            ManualChange::Workflow { execution_id } => execution_id,
        }
    }
}

/// A business rule a segment change broke; `reason` is the FAILED_PRECONDITION reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentRule {
    /// Recalculating a standard segment: it is filled at creation and then fixed.
    StandardSegment,
    /// Its criterion reads the cart: membership is decided online at checkout and no members
    /// are stored, so there is nothing to recalculate or to add a customer to.
    OnlineOnly,
    /// Changing the criterion of a segment that stays standard: its members were fixed at
    /// creation by the old criterion, and nothing would ever apply the new one.
    StandardSegmentFixed,
}

impl SegmentRule {
    pub fn reason(self) -> &'static str {
        match self {
            SegmentRule::StandardSegment => "STANDARD_SEGMENT",
            SegmentRule::OnlineOnly => "SEGMENT_ONLINE_ONLY",
            SegmentRule::StandardSegmentFixed => "STANDARD_SEGMENT_FIXED",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            SegmentRule::StandardSegment => {
                "a standard segment is filled at creation and then fixed; only Flexi segments are \
                 recalculated"
            }
            SegmentRule::OnlineOnly => {
                "the segment's criterion reads the cart: membership is decided online at \
                 checkout and no members are stored"
            }
            SegmentRule::StandardSegmentFixed => {
                "a standard segment's members are fixed by the criterion it was created with; \
                 change the criterion together with kind FLEXI"
            }
        }
    }
}

impl Segment {
    /// This segment as a group whose members change.
    pub fn group(&self) -> Group<'_> {
        Group {
            kind: GroupKind::Segment,
            id: self.id,
            display_name: &self.display_name,
        }
    }

    /// Whether this segment stores members (a criterion reading the cart holds only online).
    pub fn stores_members(&self) -> bool {
        !self.criterion.uses_cart()
    }

    /// Whether a recalculation may run: Flexi segments that store members only.
    pub fn check_recalculable(&self) -> Result<(), SegmentRule> {
        if !self.stores_members() {
            return Err(SegmentRule::OnlineOnly);
        }
        match self.kind {
            SegmentKind::Flexi => Ok(()),
            SegmentKind::Standard => Err(SegmentRule::StandardSegment),
        }
    }

    /// Whether a customer may be added or removed by hand (both kinds store members; a
    /// cart segment does not).
    pub fn check_manual_change(&self) -> Result<(), SegmentRule> {
        if self.stores_members() {
            Ok(())
        } else {
            Err(SegmentRule::OnlineOnly)
        }
    }

    /// Whether the next recalculation overwrites a manual or workflow change (seed: on a
    /// Flexi segment, anything added or removed by hand is recalculated every night).
    pub fn recalculation_overwrites_manual_changes(&self) -> bool {
        self.kind == SegmentKind::Flexi
    }

    /// This segment with a new definition (`next`: the current values with the updated fields
    /// replaced, already validated) as of `now`: version bumped, members and recalculation
    /// time kept. A standard segment's criterion changes only if the segment becomes Flexi.
    pub fn updated(
        &self,
        next: super::SegmentDraft,
        now: DateTime<Utc>,
    ) -> Result<Segment, SegmentRule> {
        let kind = next.kind.unwrap_or(self.kind);
        let criterion = next.criterion.unwrap_or_else(|| self.criterion.clone());
        if kind == SegmentKind::Standard && criterion != self.criterion {
            return Err(SegmentRule::StandardSegmentFixed);
        }
        Ok(Segment {
            display_name: next.display_name.trim().to_owned(),
            kind,
            online_recalculation: next.online_recalculation,
            criterion,
            note: next.note,
            version: self.version.saturating_add(1),
            updated_at: Some(now),
            ..self.clone()
        })
    }
}

/// A member of a segment as listed: since when, and what added them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub customer_id: Uuid,
    pub added_at: DateTime<Utc>,
    pub cause: MembershipCause,
}

/// One change of a customer's membership of a segment or badge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub group_kind: GroupKind,
    /// The segment or badge.
    pub group_id: Uuid,
    /// The group's name at the time (empty for changes recorded before names were kept).
    pub group_display_name: String,
    /// Entered (true) or left (false).
    pub entered: bool,
    pub cause: MembershipCause,
    pub workflow_execution_id: Option<Uuid>,
    pub at: DateTime<Utc>,
}

/// What a recalculation changes: who enters (admitted, not a member yet) and who leaves (a
/// member, not admitted any more, however they were added), each sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recalculation {
    pub entered: Vec<Uuid>,
    pub left: Vec<Uuid>,
}

impl Recalculation {
    pub fn between(members: &[Uuid], admitted: &[Uuid]) -> Recalculation {
        let members: BTreeSet<Uuid> = members.iter().copied().collect();
        let admitted: BTreeSet<Uuid> = admitted.iter().copied().collect();
        Recalculation {
            entered: admitted.difference(&members).copied().collect(),
            left: members.difference(&admitted).copied().collect(),
        }
    }
}

/// The time of day (UTC) of the nightly Flexi recalculation from its setting: `HH:MM`, or
/// `off` / empty to disable it (`Ok(None)`).
pub fn parse_daily_time(setting: &str) -> Result<Option<NaiveTime>, String> {
    let s = setting.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    NaiveTime::parse_from_str(s, "%H:%M")
        .map(Some)
        .map_err(|_| format!("must be HH:MM (UTC) or \"off\", got {setting:?}"))
}

/// The latest daily run at `at` (UTC) at or before `now`: the slot whose run is due now.
pub fn last_daily_run(now: DateTime<Utc>, at: NaiveTime) -> DateTime<Utc> {
    let today = now.date_naive().and_time(at).and_utc();
    if today <= now {
        today
    } else {
        today - Duration::days(1)
    }
}

/// The first daily run at `at` (UTC) strictly after `now`.
pub fn next_daily_run(now: DateTime<Utc>, at: NaiveTime) -> DateTime<Utc> {
    last_daily_run(now, at) + Duration::days(1)
}

/// How long after a nightly run that left failures the scheduler tries again.
pub const NIGHTLY_RETRY_MINUTES: i64 = 10;

/// When the scheduler runs next after a run at `now`: the next slot, or sooner when the run
/// left failures (groups not recalculated for the slot, or the RFM scoring): then
/// [`NIGHTLY_RETRY_MINUTES`] later, which re-runs only what is still due for the slot.
pub fn next_attempt(now: DateTime<Utc>, at: NaiveTime, failed: bool) -> DateTime<Utc> {
    let next = next_daily_run(now, at);
    if failed {
        next.min(now + Duration::minutes(NIGHTLY_RETRY_MINUTES))
    } else {
        next
    }
}

/// Whether a Flexi segment still needs the run of `slot`: not recalculated since then.
pub fn due_for(last_recalculated_at: Option<DateTime<Utc>>, slot: DateTime<Utc>) -> bool {
    last_recalculated_at.is_none_or(|t| t < slot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SegmentDraft;
    use chrono::TimeZone;
    use loyalty_criteria::{Criterion, Operator, RawCriterion, Value};

    fn criterion(field: &str, value: i64) -> Criterion {
        Criterion::parse(RawCriterion::Condition {
            field: field.into(),
            operator: Some(Operator::GreaterOrEqual),
            values: vec![Value::Int(value)],
        })
        .unwrap()
    }

    fn segment(kind: SegmentKind, c: Criterion) -> Segment {
        let online = c.uses_cart();
        SegmentDraft {
            display_name: "Buyers".into(),
            kind: Some(kind),
            online_recalculation: online,
            criterion: Some(c),
            note: "note".into(),
        }
        .into_segment(Uuid::now_v7(), Utc::now())
        .unwrap()
    }

    fn draft_of(s: &Segment) -> SegmentDraft {
        SegmentDraft {
            display_name: s.display_name.clone(),
            kind: Some(s.kind),
            online_recalculation: s.online_recalculation,
            criterion: Some(s.criterion.clone()),
            note: s.note.clone(),
        }
    }

    #[test]
    fn group_kinds_round_trip_through_their_stored_names() {
        for k in [GroupKind::Segment, GroupKind::Badge] {
            assert_eq!(GroupKind::parse_str(k.as_str()), Some(k));
        }
        assert_eq!(GroupKind::parse_str("audience"), None);
    }

    #[test]
    fn causes_round_trip_through_their_stored_names() {
        for c in [
            MembershipCause::Creation,
            MembershipCause::Recalculation,
            MembershipCause::Manual,
            MembershipCause::Workflow,
            MembershipCause::GroupDeleted,
            MembershipCause::CustomerRemoved,
        ] {
            assert_eq!(MembershipCause::parse_str(c.as_str()), Some(c));
        }
        assert_eq!(MembershipCause::parse_str("nightly"), None);
        let run = Uuid::now_v7();
        let wf = ManualChange::Workflow {
            execution_id: Some(run),
        };
        assert_eq!(wf.cause(), MembershipCause::Workflow);
        assert_eq!(wf.workflow_execution_id(), Some(run));
        assert_eq!(ManualChange::Operator.cause(), MembershipCause::Manual);
        assert_eq!(ManualChange::Operator.workflow_execution_id(), None);
    }

    #[test]
    fn a_recalculation_admits_newcomers_and_expels_every_member_who_no_longer_matches() {
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
        // Members 0, 1, 2 (2 added by hand); now 1, 3, 4 match.
        let members = [ids[2], ids[0], ids[1]];
        let admitted = [ids[4], ids[1], ids[3], ids[1]];
        let r = Recalculation::between(&members, &admitted);
        assert_eq!(r.entered, vec![ids[3], ids[4]]);
        assert_eq!(r.left, vec![ids[0], ids[2]]);
        assert_eq!(
            Recalculation::between(&admitted, &admitted),
            Recalculation::default()
        );
    }

    #[test]
    fn only_flexi_segments_that_store_members_are_recalculated() {
        let flexi = segment(SegmentKind::Flexi, criterion("features.purchase_count", 1));
        assert_eq!(flexi.check_recalculable(), Ok(()));
        assert!(flexi.recalculation_overwrites_manual_changes());
        let standard = segment(
            SegmentKind::Standard,
            criterion("features.purchase_count", 1),
        );
        assert_eq!(
            standard.check_recalculable(),
            Err(SegmentRule::StandardSegment)
        );
        assert!(!standard.recalculation_overwrites_manual_changes());
        assert_eq!(standard.check_manual_change(), Ok(()));
        let cart = segment(SegmentKind::Flexi, criterion("cart.total_minor", 1));
        assert_eq!(cart.check_recalculable(), Err(SegmentRule::OnlineOnly));
        assert_eq!(cart.check_manual_change(), Err(SegmentRule::OnlineOnly));
        assert_eq!(SegmentRule::OnlineOnly.reason(), "SEGMENT_ONLINE_ONLY");
    }

    #[test]
    fn an_update_bumps_the_version_and_keeps_members_and_recalculation_time() {
        let now = Utc::now();
        let mut s = segment(SegmentKind::Flexi, criterion("features.purchase_count", 1));
        s.recalculated(12, now);
        let mut next = draft_of(&s);
        next.display_name = "  Loyal buyers ".into();
        next.criterion = Some(criterion("features.purchase_count", 3));
        let later = now + Duration::minutes(5);
        let u = s.updated(next, later).unwrap();
        assert_eq!(u.display_name, "Loyal buyers");
        assert_eq!(u.criterion, criterion("features.purchase_count", 3));
        assert_eq!(u.version, s.version + 1);
        assert_eq!(u.etag(), "v2");
        assert_eq!(u.updated_at, Some(later));
        assert_eq!(
            (u.id, u.member_count, u.last_recalculated_at, u.created_at),
            (s.id, 12, Some(now), s.created_at)
        );
    }

    #[test]
    fn a_standard_segment_changes_its_criterion_only_by_becoming_flexi() {
        let s = segment(
            SegmentKind::Standard,
            criterion("features.purchase_count", 1),
        );
        let mut renamed = draft_of(&s);
        renamed.note = "fixed".into();
        assert!(s.updated(renamed, Utc::now()).is_ok());
        let mut new_criterion = draft_of(&s);
        new_criterion.criterion = Some(criterion("features.purchase_count", 2));
        assert_eq!(
            s.updated(new_criterion.clone(), Utc::now()),
            Err(SegmentRule::StandardSegmentFixed)
        );
        new_criterion.kind = Some(SegmentKind::Flexi);
        let flexi = s.updated(new_criterion, Utc::now()).unwrap();
        assert_eq!(flexi.kind, SegmentKind::Flexi);
        // And a Flexi segment may be frozen as standard with its current criterion.
        let mut freeze = draft_of(&flexi);
        freeze.kind = Some(SegmentKind::Standard);
        assert_eq!(
            flexi.updated(freeze, Utc::now()).unwrap().kind,
            SegmentKind::Standard
        );
    }

    #[test]
    fn the_daily_time_is_hh_mm_or_off() {
        assert_eq!(
            parse_daily_time("02:00"),
            Ok(Some(NaiveTime::from_hms_opt(2, 0, 0).unwrap()))
        );
        assert_eq!(
            parse_daily_time(" 23:59 "),
            Ok(Some(NaiveTime::from_hms_opt(23, 59, 0).unwrap()))
        );
        assert_eq!(parse_daily_time("off"), Ok(None));
        assert_eq!(parse_daily_time("OFF"), Ok(None));
        assert_eq!(parse_daily_time(""), Ok(None));
        for bad in ["2am", "24:00", "02:60", "02"] {
            assert!(parse_daily_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_nightly_run_is_due_once_per_day_at_its_time() {
        let at = NaiveTime::from_hms_opt(2, 0, 0).unwrap();
        let t = |d, h, m| Utc.with_ymd_and_hms(2026, 3, d, h, m, 0).unwrap();
        // Before 02:00 the last slot was yesterday's and the next one is today's.
        assert_eq!(last_daily_run(t(10, 1, 59), at), t(9, 2, 0));
        assert_eq!(next_daily_run(t(10, 1, 59), at), t(10, 2, 0));
        // At 02:00 exactly today's slot is due and the next one is tomorrow's.
        assert_eq!(last_daily_run(t(10, 2, 0), at), t(10, 2, 0));
        assert_eq!(next_daily_run(t(10, 2, 0), at), t(11, 2, 0));
        // Across a month end.
        assert_eq!(
            next_daily_run(Utc.with_ymd_and_hms(2026, 2, 28, 23, 0, 0).unwrap(), at),
            t(1, 2, 0)
        );
        // A segment recalculated since the slot (by a replica, or created after it) is done.
        let slot = t(10, 2, 0);
        assert!(due_for(None, slot));
        assert!(due_for(Some(t(9, 2, 0)), slot));
        assert!(!due_for(Some(slot), slot));
        assert!(!due_for(Some(t(10, 9, 30)), slot));
        // A run with failures tries again 10 minutes later, never past the next slot.
        assert_eq!(next_attempt(t(10, 2, 5), at, false), t(11, 2, 0));
        assert_eq!(next_attempt(t(10, 2, 5), at, true), t(10, 2, 15));
        assert_eq!(next_attempt(t(10, 1, 55), at, true), t(10, 2, 0));
    }
}

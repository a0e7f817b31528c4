//! Membership levels (tiers): which tier a customer's qualifying activity earns, and how the
//! tier a customer holds moves: up at once, down only when the period it was earned for has
//! ended (by the tier's downgrade mode), and a manual tier above both until it is cleared or
//! expires. No I/O: the store loads the ladder, the activity and the state, and saves what
//! this returns.
use chrono::{DateTime, Datelike, Duration, Months, TimeZone, Utc};
use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::catalogue::{check_currency, check_name, check_url};

pub const MAX_RANK: i32 = 100;
pub const MAX_PERIOD_MONTHS: u32 = 120;
pub const MAX_PERIOD_DAYS: u32 = 3660;
pub const MAX_RETENTION_MONTHS: u32 = 120;
pub const MAX_REASON_CHARS: usize = 500;

/// How a tier's qualification period is measured (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Period {
    RollingMonths(u32),
    RollingDays(u32),
    CalendarYear,
    CalendarQuarter,
    CalendarMonth,
}

impl Period {
    /// Months of a calendar period; `None` for rolling ones.
    fn calendar_months(self) -> Option<u32> {
        match self {
            Period::CalendarYear => Some(12),
            Period::CalendarQuarter => Some(3),
            Period::CalendarMonth => Some(1),
            Period::RollingMonths(_) | Period::RollingDays(_) => None,
        }
    }

    /// `t` moved by one period length (rolling) forward or backward.
    fn shift(self, t: DateTime<Utc>, forward: bool) -> DateTime<Utc> {
        let months = |n: u32| {
            let m = Months::new(n);
            let moved = if forward {
                t.checked_add_months(m)
            } else {
                t.checked_sub_months(m)
            };
            moved.unwrap_or(t)
        };
        match self {
            Period::RollingMonths(n) => months(n),
            Period::RollingDays(n) => {
                let d = Duration::days(i64::from(n));
                if forward { t + d } else { t - d }
            }
            other => months(other.calendar_months().unwrap_or(0)),
        }
    }

    /// Start of the calendar period containing `t` (for rolling periods, `t` itself).
    pub fn start_of(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let month = match self {
            Period::CalendarYear => 1,
            Period::CalendarQuarter => (t.month() - 1) / 3 * 3 + 1,
            Period::CalendarMonth => t.month(),
            Period::RollingMonths(_) | Period::RollingDays(_) => return t,
        };
        Utc.with_ymd_and_hms(t.year(), month, 1, 0, 0, 0)
            .single()
            .unwrap_or(t)
    }

    /// The window that counts for qualifying at `now`: the last period length (rolling) or
    /// the calendar period so far.
    fn window(self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        match self.calendar_months() {
            Some(_) => (self.start_of(now), now),
            None => (self.shift(now, false), now),
        }
    }

    /// End of the current qualification period at `now`: the end of the calendar period, or
    /// for a rolling period `None` (its window slides).
    pub fn end_of(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.calendar_months()
            .map(|_| self.shift(self.start_of(now), true))
    }

    /// When a tier not (re)earned at `now` is looked at again: the end of the calendar
    /// period, or one period length on.
    fn next_review(self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.end_of(now).unwrap_or_else(|| self.shift(now, true))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DowngradeMode {
    /// Drop to the tier qualified for.
    #[default]
    ToQualified,
    /// Drop one tier per period end, never below the tier qualified for.
    OneLevel,
    /// Never drop automatically.
    Keep,
}

impl DowngradeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DowngradeMode::ToQualified => "to_qualified",
            DowngradeMode::OneLevel => "one_level",
            DowngradeMode::Keep => "keep",
        }
    }

    pub fn parse_str(s: &str) -> Option<Self> {
        Some(match s {
            "to_qualified" => DowngradeMode::ToQualified,
            "one_level" => DowngradeMode::OneLevel,
            "keep" => DowngradeMode::Keep,
            _ => return None,
        })
    }
}

/// What a customer must achieve within the period; all set thresholds must be met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Qualification {
    /// Minimum net spend (minor units, currency); `None` = no spend threshold.
    pub minimum_spend: Option<(i64, String)>,
    pub minimum_purchase_count: i64,
    pub minimum_points: i64,
    /// UUID or code of the points type counted; empty = every points type.
    pub points_type: String,
    pub period: Period,
}

impl Qualification {
    pub fn has_thresholds(&self) -> bool {
        self.minimum_spend.is_some() || self.minimum_purchase_count > 0 || self.minimum_points > 0
    }

    fn met_by(&self, t: &Totals) -> bool {
        self.minimum_spend
            .as_ref()
            .is_none_or(|(min, _)| t.spend_minor >= *min)
            && t.purchases >= self.minimum_purchase_count
            && t.points >= self.minimum_points
    }
}

/// A membership level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    pub id: Uuid,
    /// 1..64 characters [a-z0-9_], unique in the partner; immutable.
    pub code: String,
    pub display_name: String,
    /// 1..100, unique in the partner; higher is better.
    pub rank: i32,
    pub qualification: Qualification,
    /// Extra months the tier is kept beyond the period it was earned in.
    pub retention_months: u32,
    pub downgrade_mode: DowngradeMode,
    /// Points earning multiplier in basis points (10000 = ×1).
    pub points_multiplier_basis_points: i32,
    /// Membership discount in basis points.
    pub discount_basis_points: i32,
    pub icon_url: String,
    pub color: String,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub fn check_tier_code(v: &mut Violations, field: &str, code: &str) {
    if code.is_empty() {
        v.add(field, "is required");
    } else if code.chars().count() > 64 {
        v.add(field, "must be at most 64 characters");
    } else if !code
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        v.add(field, "must be of [a-z0-9_]");
    }
}

impl Tier {
    /// Checks every field, naming each bad one under `prefix` (e.g. "tier").
    pub fn validate(&self, v: &mut Violations, prefix: &str) {
        let f = |name: &str| format!("{prefix}.{name}");
        check_tier_code(v, &f("code"), &self.code);
        check_name(v, &f("display_name"), &self.display_name);
        if !(1..=MAX_RANK).contains(&self.rank) {
            v.add(f("rank"), format!("must be 1..{MAX_RANK}"));
        }
        let q = &self.qualification;
        if let Some((min, currency)) = &q.minimum_spend {
            if *min < 0 {
                v.add(f("qualification.minimum_spend"), "must not be negative");
            }
            check_currency(v, &f("qualification.minimum_spend.currency_code"), currency);
        }
        if q.minimum_purchase_count < 0 {
            v.add(
                f("qualification.minimum_purchase_count"),
                "must not be negative",
            );
        }
        if q.minimum_points < 0 {
            v.add(f("qualification.minimum_points"), "must not be negative");
        }
        if q.points_type.chars().count() > 64 {
            v.add(
                f("qualification.points_type_id"),
                "must be at most 64 characters",
            );
        }
        match q.period {
            Period::RollingMonths(n) if !(1..=MAX_PERIOD_MONTHS).contains(&n) => v.add(
                f("qualification.period_months"),
                format!("must be 1..{MAX_PERIOD_MONTHS}"),
            ),
            Period::RollingDays(n) if !(1..=MAX_PERIOD_DAYS).contains(&n) => v.add(
                f("qualification.period_days"),
                format!("must be 1..{MAX_PERIOD_DAYS}"),
            ),
            _ => {}
        }
        if self.retention_months > MAX_RETENTION_MONTHS {
            v.add(
                f("retention_months"),
                format!("must be 0..{MAX_RETENTION_MONTHS}"),
            );
        }
        if !(1..=1_000_000).contains(&self.points_multiplier_basis_points) {
            v.add(
                f("points_multiplier_basis_points"),
                "must be 0 (= 10000) or 1..1000000",
            );
        }
        if !(0..=10_000).contains(&self.discount_basis_points) {
            v.add(f("discount_basis_points"), "must be 0..10000");
        }
        check_url(v, &f("icon_url"), &self.icon_url);
        let c = self.color.as_bytes();
        let rgb = c.len() == 7 && c[0] == b'#' && c[1..].iter().all(u8::is_ascii_hexdigit);
        if !(self.color.is_empty() || rgb) {
            v.add(f("color"), "must be \"#RRGGBB\"");
        }
    }

    /// Until when activity up to `now` entitles the customer to this tier, if it does.
    /// Rolling: one period length after now (plus retention). Calendar: qualifying in the
    /// current period holds the tier to the end of the next; having qualified in the previous
    /// (complete) period holds it to the end of the current one.
    pub fn standing(&self, activity: &[Activity], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let q = &self.qualification;
        let retain = |t: DateTime<Utc>| {
            t.checked_add_months(Months::new(self.retention_months))
                .unwrap_or(t)
        };
        let (from, to) = q.period.window(now);
        if q.met_by(&totals(q, activity, from, to, true)) {
            let until = match q.period.end_of(now) {
                Some(end) => q.period.shift(end, true),
                None => q.period.shift(now, true),
            };
            return Some(retain(until));
        }
        q.period.calendar_months()?;
        let start = q.period.start_of(now);
        let previous = q.period.shift(start, false);
        q.met_by(&totals(q, activity, previous, start, false))
            .then(|| retain(q.period.next_review(now)))
    }
}

/// One qualifying event of a customer: a purchase (spend, one purchase), a return (negative
/// spend, and one purchase less when the whole purchase went back) or points earned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    pub at: DateTime<Utc>,
    pub currency_code: String,
    pub spend_minor: i64,
    pub purchases: i64,
    pub points: i64,
    pub points_type_id: String,
    pub points_type_code: String,
}

/// What counts towards one tier's thresholds in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub spend_minor: i64,
    pub purchases: i64,
    pub points: i64,
}

/// Sums the activity in `[from, to]` (`[from, to)` unless `inclusive`) that counts for `q`.
pub fn totals(
    q: &Qualification,
    activity: &[Activity],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    inclusive: bool,
) -> Totals {
    let mut t = Totals::default();
    for a in activity {
        if a.at < from || a.at > to || (!inclusive && a.at == to) {
            continue;
        }
        if let Some((_, currency)) = &q.minimum_spend
            && a.currency_code == *currency
        {
            t.spend_minor = t.spend_minor.saturating_add(a.spend_minor);
        }
        t.purchases = t.purchases.saturating_add(a.purchases);
        if q.points_type.is_empty()
            || a.points_type_id == q.points_type
            || a.points_type_code == q.points_type
        {
            t.points = t.points.saturating_add(a.points);
        }
    }
    t
}

/// The earliest activity time any tier of the ladder looks at, at `now`.
pub fn lookback_start(ladder: &[Tier], now: DateTime<Utc>) -> DateTime<Utc> {
    ladder
        .iter()
        .map(|t| {
            let p = t.qualification.period;
            let (from, _) = p.window(now);
            match p.calendar_months() {
                Some(_) => p.shift(from, false),
                None => from,
            }
        })
        .min()
        .unwrap_or(now)
}

/// A tier set by SetCustomerTier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manual {
    pub tier_id: Uuid,
    /// Until when it holds; `None` = until cleared.
    pub until: Option<DateTime<Utc>>,
    pub reason: String,
}

impl Manual {
    fn active(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|u| now < u)
    }
}

/// The qualified tier a customer holds and until when it is kept without re-qualifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub tier_id: Uuid,
    pub until: DateTime<Utc>,
}

/// A customer's tier state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerState {
    pub qualified: Option<Held>,
    pub manual: Option<Manual>,
    /// When the customer entered the effective tier.
    pub since: Option<DateTime<Utc>>,
}

/// The tier that applies: the manual one while active, else the qualified one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    pub tier_id: Option<Uuid>,
    pub manual: bool,
}

impl CustomerState {
    pub fn effective(&self, now: DateTime<Utc>) -> Effective {
        match &self.manual {
            Some(m) if m.active(now) => Effective {
                tier_id: Some(m.tier_id),
                manual: true,
            },
            _ => Effective {
                tier_id: self.qualified.map(|h| h.tier_id),
                manual: false,
            },
        }
    }

    /// The tier in force when the state was saved: a stored manual tier was active then
    /// (an expired one is removed when the customer is re-qualified).
    pub fn saved_effective(&self) -> Effective {
        match &self.manual {
            Some(m) => Effective {
                tier_id: Some(m.tier_id),
                manual: true,
            },
            None => Effective {
                tier_id: self.qualified.map(|h| h.tier_id),
                manual: false,
            },
        }
    }

    /// When the periodic job must look at the customer again: the qualified tier's review or
    /// the manual tier's expiry, whichever is first.
    pub fn review_at(&self) -> Option<DateTime<Utc>> {
        let manual = self.manual.as_ref().and_then(|m| m.until);
        match (self.qualified.map(|h| h.until), manual) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cause {
    Upgrade,
    Downgrade,
    ManualSet,
    ManualCleared,
    ManualExpired,
    TierDeleted,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Upgrade => "UPGRADE",
            Cause::Downgrade => "DOWNGRADE",
            Cause::ManualSet => "MANUAL_SET",
            Cause::ManualCleared => "MANUAL_CLEARED",
            Cause::ManualExpired => "MANUAL_EXPIRED",
            Cause::TierDeleted => "TIER_DELETED",
        }
    }

    pub fn parse_str(s: &str) -> Option<Self> {
        Some(match s {
            "UPGRADE" => Cause::Upgrade,
            "DOWNGRADE" => Cause::Downgrade,
            "MANUAL_SET" => Cause::ManualSet,
            "MANUAL_CLEARED" => Cause::ManualCleared,
            "MANUAL_EXPIRED" => Cause::ManualExpired,
            "TIER_DELETED" => Cause::TierDeleted,
            _ => return None,
        })
    }
}

/// A change of the effective tier (a history row and a TierChanged event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub previous_tier_id: Option<Uuid>,
    pub previous_rank: i32,
    pub tier_id: Option<Uuid>,
    pub rank: i32,
    pub cause: Cause,
    pub manual: bool,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// What to do to a customer's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Re-qualify from the activity (an event arrived, or the period ended).
    Requalify,
    /// Set a manual tier (it must be in the ladder).
    SetManual(Manual),
    /// Remove the manual tier and re-qualify.
    ClearManual,
}

fn rank_of(ladder: &[&Tier], id: Option<Uuid>) -> i32 {
    id.and_then(|id| ladder.iter().find(|t| t.id == id))
        .map_or(0, |t| t.rank)
}

/// Applies `action` at `now`: the new state and, when the effective tier (or whether it is
/// manual) changed, the change. `ladder` may be in any order.
pub fn apply(
    ladder: &[Tier],
    activity: &[Activity],
    state: &CustomerState,
    action: Action,
    now: DateTime<Utc>,
) -> (CustomerState, Option<Change>) {
    let mut ladder: Vec<&Tier> = ladder.iter().collect();
    ladder.sort_by_key(|t| t.rank);
    let by_id = |id: Uuid| ladder.iter().copied().find(|t| t.id == id);
    let before = state.saved_effective();
    let mut next = state.clone();
    let mut reason = String::new();
    let mut cause = None;
    match action {
        Action::SetManual(m) => {
            reason = m.reason.clone();
            next.manual = Some(m);
            cause = Some(Cause::ManualSet);
        }
        Action::ClearManual => {
            if next.manual.take().is_some() {
                cause = Some(Cause::ManualCleared);
            }
        }
        Action::Requalify => {}
    }
    // A manual tier whose tier was deleted no longer applies.
    if let Some(m) = &next.manual {
        if by_id(m.tier_id).is_none() {
            next.manual = None;
            cause = cause.or(Some(Cause::TierDeleted));
        } else if !m.active(now) {
            next.manual = None;
            cause = cause.or(Some(Cause::ManualExpired));
        }
    }

    let earned = ladder
        .iter()
        .rev()
        .find_map(|t| t.standing(activity, now).map(|until| (*t, until)));
    let held = state
        .qualified
        .and_then(|h| by_id(h.tier_id).map(|t| (t, h.until)));
    let mut qualified_cause = None;
    next.qualified = match (held, earned) {
        (None, earned) => {
            if state.qualified.is_some() {
                qualified_cause = Some(Cause::TierDeleted);
            } else if earned.is_some() {
                qualified_cause = Some(Cause::Upgrade);
            }
            earned.map(|(t, until)| Held {
                tier_id: t.id,
                until,
            })
        }
        (Some((cur, held_until)), Some((t, until))) if t.rank >= cur.rank => {
            if t.rank > cur.rank {
                qualified_cause = Some(Cause::Upgrade);
            }
            Some(Held {
                tier_id: t.id,
                until: if t.rank == cur.rank {
                    until.max(held_until)
                } else {
                    until
                },
            })
        }
        (Some((cur, held_until)), _) if now < held_until => Some(Held {
            tier_id: cur.id,
            until: held_until,
        }),
        (Some((cur, _)), earned) => {
            let period = cur.qualification.period;
            match cur.downgrade_mode {
                DowngradeMode::Keep => Some(Held {
                    tier_id: cur.id,
                    until: period.next_review(now),
                }),
                DowngradeMode::ToQualified => {
                    qualified_cause = Some(Cause::Downgrade);
                    earned.map(|(t, until)| Held {
                        tier_id: t.id,
                        until,
                    })
                }
                DowngradeMode::OneLevel => {
                    qualified_cause = Some(Cause::Downgrade);
                    let below = ladder.iter().rev().find(|t| t.rank < cur.rank);
                    match (below, earned) {
                        (_, Some((t, until))) if below.is_none_or(|b| t.rank >= b.rank) => {
                            Some(Held {
                                tier_id: t.id,
                                until,
                            })
                        }
                        (Some(b), _) => Some(Held {
                            tier_id: b.id,
                            until: b.qualification.period.next_review(now),
                        }),
                        (None, _) => None,
                    }
                }
            }
        }
    };

    let after = next.saved_effective();
    if before == after {
        if before.tier_id.is_none() {
            next.since = None;
        }
        return (next, None);
    }
    next.since = after.tier_id.map(|_| now);
    let (previous_rank, rank) = (
        rank_of(&ladder, before.tier_id),
        rank_of(&ladder, after.tier_id),
    );
    // A manual tier expiring or being cleared names its own cause; otherwise the direction.
    let cause = cause
        .or(qualified_cause)
        .unwrap_or(if rank >= previous_rank {
            Cause::Upgrade
        } else {
            Cause::Downgrade
        });
    let change = Change {
        previous_tier_id: before.tier_id,
        previous_rank,
        tier_id: after.tier_id,
        rank,
        cause,
        manual: after.manual,
        reason: if after.manual { reason } else { String::new() },
        at: now,
    };
    (next, Some(change))
}

/// Progress towards the tier above the customer's effective one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The tier whose period the totals are counted in: the next tier, or at the top the
    /// customer's own; `None` without a ladder.
    pub counted_for: Option<Tier>,
    pub totals: Totals,
    pub next: Option<NextTier>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextTier {
    pub tier: Tier,
    /// Spend still missing (minor units, currency); `None` without a spend threshold.
    pub spend_missing: Option<(i64, String)>,
    pub points_missing: i64,
    pub purchases_missing: i64,
    /// End of the next tier's current (calendar) period; `None` for rolling periods.
    pub period_end: Option<DateTime<Utc>>,
}

pub fn progress(
    ladder: &[Tier],
    activity: &[Activity],
    effective_rank: i32,
    now: DateTime<Utc>,
) -> Progress {
    let next = ladder
        .iter()
        .filter(|t| t.rank > effective_rank)
        .min_by_key(|t| t.rank);
    let counted_for = next
        .or_else(|| ladder.iter().find(|t| t.rank == effective_rank))
        .cloned();
    let totals = counted_for.as_ref().map_or(Totals::default(), |t| {
        let (from, to) = t.qualification.period.window(now);
        totals(&t.qualification, activity, from, to, true)
    });
    let next = next.map(|t| {
        let q = &t.qualification;
        NextTier {
            spend_missing: q
                .minimum_spend
                .as_ref()
                .map(|(min, c)| ((min - totals.spend_minor).max(0), c.clone())),
            points_missing: (q.minimum_points - totals.points).max(0),
            purchases_missing: (q.minimum_purchase_count - totals.purchases).max(0),
            period_end: q.period.end_of(now),
            tier: t.clone(),
        }
    });
    Progress {
        counted_for,
        totals,
        next,
    }
}

#[cfg(test)]
mod tests;

//! A points type's rules: when awarded points expire and become available, and how
//! fractional amounts are rounded. Times are UTC; months and quarters end at their last
//! instant (the lot is expired from the first instant of the next period).
use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpiryRule {
    Never,
    /// Expires `days` days after the award.
    RollingDays(i32),
    /// Expires at the end of the month `months` months after the award's month.
    EndOfMonth(i32),
    /// Expires at the end of the quarter containing the award time plus `months`.
    EndOfQuarter(i32),
    /// Expires at the end of the year containing the award time plus `months`.
    EndOfYear(i32),
}

impl ExpiryRule {
    /// The stored rule name and its (days, months) parameters.
    pub fn to_parts(self) -> (&'static str, i32, i32) {
        match self {
            ExpiryRule::Never => ("never", 0, 0),
            ExpiryRule::RollingDays(d) => ("rolling_days", d, 0),
            ExpiryRule::EndOfMonth(m) => ("end_of_month", 0, m),
            ExpiryRule::EndOfQuarter(m) => ("end_of_quarter", 0, m),
            ExpiryRule::EndOfYear(m) => ("end_of_year", 0, m),
        }
    }

    pub fn from_parts(rule: &str, days: i32, months: i32) -> Option<Self> {
        Some(match rule {
            "never" => ExpiryRule::Never,
            "rolling_days" => ExpiryRule::RollingDays(days),
            "end_of_month" => ExpiryRule::EndOfMonth(months),
            "end_of_quarter" => ExpiryRule::EndOfQuarter(months),
            "end_of_year" => ExpiryRule::EndOfYear(months),
            _ => return None,
        })
    }

    /// When points awarded at `awarded` expire; `None` = never.
    pub fn expire_at(self, awarded: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let shifted = |months: i32| {
            awarded
                .date_naive()
                .checked_add_months(Months::new(months.max(0) as u32))
        };
        // The first instant after the period, so "end of March" expires at April 1st 00:00.
        let start_of = |y: i32, m: u32| -> Option<DateTime<Utc>> {
            let (y, m) = if m > 12 { (y + 1, m - 12) } else { (y, m) };
            let d = NaiveDate::from_ymd_opt(y, m, 1)?;
            Some(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?))
        };
        match self {
            ExpiryRule::Never => None,
            ExpiryRule::RollingDays(d) => awarded.checked_add_signed(Duration::days(d.into())),
            ExpiryRule::EndOfMonth(m) => {
                let d = shifted(m)?;
                start_of(d.year(), d.month() + 1)
            }
            ExpiryRule::EndOfQuarter(m) => {
                let d = shifted(m)?;
                let quarter_end = (d.month() - 1) / 3 * 3 + 3;
                start_of(d.year(), quarter_end + 1)
            }
            ExpiryRule::EndOfYear(m) => {
                let d = shifted(m)?;
                start_of(d.year() + 1, 1)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rounding {
    Down,
    HalfUp,
    Up,
}

impl Rounding {
    pub fn as_str(self) -> &'static str {
        match self {
            Rounding::Down => "down",
            Rounding::HalfUp => "half_up",
            Rounding::Up => "up",
        }
    }

    pub fn parse_str(s: &str) -> Option<Self> {
        Some(match s {
            "down" => Rounding::Down,
            "half_up" => Rounding::HalfUp,
            "up" => Rounding::Up,
            _ => return None,
        })
    }

    /// `amount × numerator / denominator` rounded by this rule, computed without overflow for
    /// amounts and ratios within i64. `denominator` must be > 0.
    pub fn apply(self, amount: i64, numerator: i64, denominator: i64) -> i64 {
        let n = i128::from(amount) * i128::from(numerator);
        let d = i128::from(denominator);
        let (q, r) = (n / d, n % d);
        let away = match self {
            Rounding::Down => false,
            Rounding::Up => r != 0,
            Rounding::HalfUp => 2 * r.abs() >= d.abs(),
        };
        let q = if away { q + n.signum() * d.signum() } else { q };
        q.clamp(i64::MIN.into(), i64::MAX.into()) as i64
    }
}

/// What a points type decides about its lots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeRules {
    pub expiry: ExpiryRule,
    pub pending_days: i32,
    pub rounding: Rounding,
    pub spendable: bool,
    pub overdraft_limit: i64,
    pub reservation_ttl_seconds: i32,
}

impl Default for TypeRules {
    fn default() -> Self {
        Self {
            expiry: ExpiryRule::Never,
            pending_days: 0,
            rounding: Rounding::Down,
            spendable: true,
            overdraft_limit: 0,
            reservation_ttl_seconds: DEFAULT_RESERVATION_TTL_SECONDS,
        }
    }
}

/// Default hold of a reservation.
pub const DEFAULT_RESERVATION_TTL_SECONDS: i32 = 900;

impl TypeRules {
    /// When points awarded at `awarded` become available; `None` = at once.
    pub fn release_at(&self, awarded: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (self.pending_days > 0).then(|| awarded + Duration::days(self.pending_days.into()))
    }

    pub fn reservation_ttl(&self) -> Duration {
        let s = if self.reservation_ttl_seconds > 0 {
            self.reservation_ttl_seconds
        } else {
            DEFAULT_RESERVATION_TTL_SECONDS
        };
        Duration::seconds(s.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn end_of_month_rules_expire_at_the_first_instant_of_the_next_month() {
        let r = ExpiryRule::EndOfMonth(0);
        assert_eq!(
            r.expire_at(t("2026-01-31T23:59:59Z")),
            Some(t("2026-02-01T00:00:00Z"))
        );
        // 12 months after a January 31st award ends with next January.
        assert_eq!(
            ExpiryRule::EndOfMonth(12).expire_at(t("2026-01-31T10:00:00Z")),
            Some(t("2027-02-01T00:00:00Z"))
        );
        // One month after January 31st is February (clamped day), not March.
        assert_eq!(
            ExpiryRule::EndOfMonth(1).expire_at(t("2026-01-31T10:00:00Z")),
            Some(t("2026-03-01T00:00:00Z"))
        );
        // December rolls over the year.
        assert_eq!(
            ExpiryRule::EndOfMonth(0).expire_at(t("2026-12-15T00:00:00Z")),
            Some(t("2027-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn quarter_and_year_rules_round_up_to_the_period_end() {
        assert_eq!(
            ExpiryRule::EndOfQuarter(0).expire_at(t("2026-02-10T00:00:00Z")),
            Some(t("2026-04-01T00:00:00Z"))
        );
        assert_eq!(
            ExpiryRule::EndOfQuarter(3).expire_at(t("2026-11-30T00:00:00Z")),
            Some(t("2027-04-01T00:00:00Z"))
        );
        assert_eq!(
            ExpiryRule::EndOfYear(12).expire_at(t("2026-06-30T00:00:00Z")),
            Some(t("2028-01-01T00:00:00Z"))
        );
        assert_eq!(
            ExpiryRule::RollingDays(30).expire_at(t("2026-01-15T08:00:00Z")),
            Some(t("2026-02-14T08:00:00Z"))
        );
        assert_eq!(ExpiryRule::Never.expire_at(t("2026-01-15T08:00:00Z")), None);
    }

    #[test]
    fn rules_round_trip_through_their_stored_parts() {
        for r in [
            ExpiryRule::Never,
            ExpiryRule::RollingDays(7),
            ExpiryRule::EndOfMonth(2),
            ExpiryRule::EndOfQuarter(0),
            ExpiryRule::EndOfYear(24),
        ] {
            let (name, d, m) = r.to_parts();
            assert_eq!(ExpiryRule::from_parts(name, d, m), Some(r));
        }
    }

    #[test]
    fn rounding_rules() {
        assert_eq!(Rounding::Down.apply(10, 1, 3), 3);
        assert_eq!(Rounding::Up.apply(10, 1, 3), 4);
        assert_eq!(Rounding::HalfUp.apply(10, 1, 3), 3);
        assert_eq!(Rounding::HalfUp.apply(5, 1, 2), 3);
        assert_eq!(Rounding::HalfUp.apply(-5, 1, 2), -3);
        assert_eq!(Rounding::Down.apply(-10, 1, 3), -3);
        assert_eq!(Rounding::Up.apply(9, 1, 3), 3);
        assert_eq!(Rounding::Down.apply(i64::MAX, 2, 2), i64::MAX);
    }

    #[test]
    fn pending_days_delay_the_release() {
        let rules = TypeRules {
            pending_days: 14,
            ..TypeRules::default()
        };
        assert_eq!(
            rules.release_at(t("2026-03-25T12:00:00Z")),
            Some(t("2026-04-08T12:00:00Z"))
        );
        assert_eq!(
            TypeRules::default().release_at(t("2026-03-25T12:00:00Z")),
            None
        );
    }
}

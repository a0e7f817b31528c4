//! Wallet rules: what a valid award is, and how a balance derives from ledger entries.
use chrono::{DateTime, Utc};
use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Largest single award.
pub const MAX_AWARD_POINTS: i64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    Award,
    Spend,
    Reversal,
    Expiry,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Award => "award",
            EntryKind::Spend => "spend",
            EntryKind::Reversal => "reversal",
            EntryKind::Expiry => "expiry",
        }
    }

    pub fn parse_str(s: &str) -> Option<Self> {
        Some(match s {
            "award" => EntryKind::Award,
            "spend" => EntryKind::Spend,
            "reversal" => EntryKind::Reversal,
            "expiry" => EntryKind::Expiry,
            _ => return None,
        })
    }
}

/// One immutable ledger entry; credits are positive, debits negative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub kind: EntryKind,
    pub points: i64,
    pub reason: String,
    pub reference: String,
    pub expires_at: Option<DateTime<Utc>>,
    /// Pending points become available at this time.
    pub released_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A request to credit points, checked.
#[derive(Debug, Clone)]
pub struct Award {
    pub customer_id: Uuid,
    pub points: i64,
    pub reason: String,
    pub reference: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub released_at: Option<DateTime<Utc>>,
}

impl Award {
    /// Checks the award against `now`, reporting every bad field.
    pub fn validate(&self, v: &mut Violations, now: DateTime<Utc>) {
        if !(1..=MAX_AWARD_POINTS).contains(&self.points) {
            v.add("points", "must be 1..1000000000");
        }
        let reason = self.reason.trim().chars().count();
        if !(1..=200).contains(&reason) {
            v.add("reason", "must be 1..200 characters");
        }
        if self.reference.chars().count() > 200 {
            v.add("reference", "must be at most 200 characters");
        }
        if self.expires_at.is_some_and(|e| e <= now) {
            v.add("expire_time", "must be in the future");
        }
        if let (Some(e), Some(r)) = (self.expires_at, self.released_at)
            && e <= r
        {
            v.add("expire_time", "must be after release_time");
        }
    }

    pub fn into_entry(self, now: DateTime<Utc>) -> LedgerEntry {
        LedgerEntry {
            id: Uuid::now_v7(),
            customer_id: self.customer_id,
            kind: EntryKind::Award,
            points: self.points,
            reason: self.reason.trim().to_owned(),
            reference: self.reference,
            expires_at: self.expires_at,
            released_at: self.released_at.filter(|r| *r > now),
            created_at: now,
        }
    }
}

/// A wallet's points at a moment, derived from its entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub available: i64,
    pub pending: i64,
    pub lifetime_earned: i64,
    pub lifetime_debited: i64,
    pub next_expiry: Option<(DateTime<Utc>, i64)>,
}

impl Balance {
    /// Sums entries: credits not yet released are pending; credits past their expiry that no
    /// expiry entry has debited yet are left out of what is available.
    pub fn of(entries: &[LedgerEntry], now: DateTime<Utc>) -> Balance {
        let mut b = Balance::default();
        for e in entries {
            if e.points > 0 {
                b.lifetime_earned += e.points;
            } else {
                b.lifetime_debited -= e.points;
            }
            if e.released_at.is_some_and(|r| r > now) {
                b.pending += e.points;
                continue;
            }
            match e.expires_at {
                Some(x) if e.points > 0 && x <= now => {}
                Some(x) if e.points > 0 => {
                    b.available += e.points;
                    b.next_expiry = Some(match b.next_expiry {
                        Some((t, p)) if t < x => (t, p),
                        Some((t, p)) if t == x => (t, p + e.points),
                        _ => (x, e.points),
                    });
                }
                _ => b.available += e.points,
            }
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn award(points: i64) -> Award {
        Award {
            customer_id: Uuid::now_v7(),
            points,
            reason: "purchase".into(),
            reference: String::new(),
            expires_at: None,
            released_at: None,
        }
    }

    #[test]
    fn an_award_must_be_positive_have_a_reason_and_expire_in_the_future() {
        let now = Utc::now();
        let mut v = Violations::new();
        Award {
            reason: " ".into(),
            expires_at: Some(now - Duration::days(1)),
            ..award(0)
        }
        .validate(&mut v, now);
        let text = v.into_result().unwrap_err().to_string();
        for f in ["points", "reason", "expire_time"] {
            assert!(text.contains(f), "{f} in {text}");
        }
        let mut ok = Violations::new();
        award(10).validate(&mut ok, now);
        assert!(ok.is_empty());
    }

    #[test]
    fn the_balance_is_the_sum_of_released_unexpired_entries() {
        let now = Utc::now();
        let mut entries = vec![award(100).into_entry(now), award(50).into_entry(now)];
        entries.push(LedgerEntry {
            kind: EntryKind::Spend,
            points: -30,
            ..award(1).into_entry(now)
        });
        entries.push(LedgerEntry {
            released_at: Some(now + Duration::days(14)),
            ..award(20).into_entry(now)
        });
        entries.push(LedgerEntry {
            expires_at: Some(now - Duration::seconds(1)),
            ..award(7).into_entry(now)
        });
        entries.push(LedgerEntry {
            expires_at: Some(now + Duration::days(30)),
            ..award(5).into_entry(now)
        });
        let b = Balance::of(&entries, now);
        assert_eq!(b.available, 100 + 50 - 30 + 5);
        assert_eq!(b.pending, 20);
        assert_eq!(b.lifetime_earned, 182);
        assert_eq!(b.lifetime_debited, 30);
        assert_eq!(b.next_expiry.map(|(_, p)| p), Some(5));
    }
    #[test]
    fn a_wallet_without_entries_has_a_zero_balance() {
        assert_eq!(Balance::of(&[], Utc::now()), Balance::default());
    }

    #[test]
    fn a_reference_longer_than_200_characters_is_refused() {
        let mut v = Violations::new();
        Award {
            reference: "r".repeat(201),
            ..award(1)
        }
        .validate(&mut v, Utc::now());
        let text = v.into_result().unwrap_err().to_string();
        assert!(text.contains("reference"), "{text}");
    }

    #[test]
    fn an_award_becomes_a_credit_entry_with_a_trimmed_reason() {
        let now = Utc::now();
        let e = Award {
            reason: "  birthday ".into(),
            ..award(25)
        }
        .into_entry(now);
        assert_eq!(e.kind, EntryKind::Award);
        assert_eq!(e.points, 25);
        assert_eq!(e.reason, "birthday");
        assert_eq!(e.created_at, now);
        assert_eq!(EntryKind::parse_str(e.kind.as_str()), Some(e.kind));
    }
}

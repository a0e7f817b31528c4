//! Wallet rules: what a valid award is, and how a balance derives from ledger entries.
use std::collections::BTreeMap;

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
    /// Points moved between two wallets when identity merged the customers: a debit on the
    /// merged customer and a matching credit on the surviving one, per points lot.
    Merge,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Award => "award",
            EntryKind::Spend => "spend",
            EntryKind::Reversal => "reversal",
            EntryKind::Expiry => "expiry",
            EntryKind::Merge => "merge",
        }
    }

    pub fn parse_str(s: &str) -> Option<Self> {
        Some(match s {
            "award" => EntryKind::Award,
            "spend" => EntryKind::Spend,
            "reversal" => EntryKind::Reversal,
            "expiry" => EntryKind::Expiry,
            "merge" => EntryKind::Merge,
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
    /// Sums entries: entries not yet released are pending; entries of a lot past its expiry
    /// (the credit and any merge debit carrying the same expiry) are left out of what is
    /// available, so a moved lot does not count against its old wallet once it expires.
    pub fn of(entries: &[LedgerEntry], now: DateTime<Utc>) -> Balance {
        let mut b = Balance::default();
        let mut expiring: BTreeMap<DateTime<Utc>, i64> = BTreeMap::new();
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
                Some(x) if x <= now => {}
                Some(x) => {
                    b.available += e.points;
                    *expiring.entry(x).or_default() += e.points;
                }
                None => b.available += e.points,
            }
        }
        b.next_expiry = expiring.into_iter().find(|(_, p)| *p > 0);
        b
    }
}

/// One lot of points moved by a merge: `points` (negative for a debt) with the lot's expiry
/// and, for pending points, release time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MovedLot {
    pub points: i64,
    pub expires_at: Option<DateTime<Utc>>,
    pub released_at: Option<DateTime<Utc>>,
}

/// What a merge moves out of a wallet: its still-valid lots, net of what was already spent
/// or moved, such that appending `-points` to the wallet and `+points` to the survivor for
/// each lot leaves the wallet at zero (available and pending) and the survivor's balance
/// grown by exactly the wallet's.
///
/// Entries are grouped by lot (expiry, and release time while pending) and each group's net
/// is moved with its times, the way `Balance::of` counts them: debits without expiry
/// (spends, reversals) net against the points that never expire, so the survivor's balance
/// evolves exactly as the merged wallet's would have, and the merged wallet stays at zero as
/// lots expire or are released. Debits beyond those points move as a negative lot (a debt).
/// A wallet already emptied by a merge yields nothing, so applying a merge again is harmless.
pub fn merge_lots(entries: &[LedgerEntry], now: DateTime<Utc>) -> Vec<MovedLot> {
    /// A lot: release time while pending, expiry.
    type Lot = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let mut lots: BTreeMap<Lot, i64> = BTreeMap::new();
    for e in entries {
        let pending = e.released_at.filter(|r| *r > now);
        if pending.is_none() && e.expires_at.is_some_and(|x| x <= now) {
            continue;
        }
        *lots.entry((pending, e.expires_at)).or_default() += e.points;
    }
    lots.into_iter()
        .filter(|(_, p)| *p != 0)
        .map(|((released_at, expires_at), points)| MovedLot {
            points,
            expires_at,
            released_at,
        })
        .collect()
}

/// The entry pair for one moved lot: the debit on the merged customer, the credit on the
/// surviving one. Reasons and references name the merge (customer ids only, no free text).
pub fn merge_entries(
    lot: MovedLot,
    merged_customer_id: Uuid,
    surviving_customer_id: Uuid,
    now: DateTime<Utc>,
) -> [LedgerEntry; 2] {
    let entry = |customer_id, points, reason: String| LedgerEntry {
        id: Uuid::now_v7(),
        customer_id,
        kind: EntryKind::Merge,
        points,
        reason,
        reference: format!("merge:{merged_customer_id}:{surviving_customer_id}"),
        expires_at: lot.expires_at,
        released_at: lot.released_at,
        created_at: now,
    };
    [
        entry(
            merged_customer_id,
            -lot.points,
            format!("customer merged into {surviving_customer_id}"),
        ),
        entry(
            surviving_customer_id,
            lot.points,
            format!("customer {merged_customer_id} merged into this one"),
        ),
    ]
}

/// Reason given to entries of an erased customer in place of client-written text.
pub const ERASED_REASON: &str = "erased";

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

    fn spend(points: i64, now: DateTime<Utc>) -> LedgerEntry {
        LedgerEntry {
            kind: EntryKind::Spend,
            points: -points,
            ..award(1).into_entry(now)
        }
    }

    fn apply_merge(
        entries: &[LedgerEntry],
        now: DateTime<Utc>,
    ) -> (Vec<LedgerEntry>, Vec<LedgerEntry>) {
        let (a, b) = (entries[0].customer_id, Uuid::now_v7());
        let mut merged = entries.to_vec();
        let mut survivor = Vec::new();
        for lot in merge_lots(entries, now) {
            let [debit, credit] = merge_entries(lot, a, b, now);
            merged.push(debit);
            survivor.push(credit);
        }
        (merged, survivor)
    }

    #[test]
    fn spends_net_against_points_without_expiry_and_expiring_lots_move_whole() {
        let now = Utc::now();
        let soon = now + Duration::days(2);
        let late = now + Duration::days(20);
        let entries = vec![
            award(100).into_entry(now),
            Award {
                expires_at: Some(soon),
                ..award(30)
            }
            .into_entry(now),
            Award {
                expires_at: Some(late),
                ..award(50)
            }
            .into_entry(now),
            spend(40, now),
        ];
        let lots = merge_lots(&entries, now);
        assert_eq!(
            lots.iter()
                .map(|l| (l.points, l.expires_at))
                .collect::<Vec<_>>(),
            vec![(60, None), (30, Some(soon)), (50, Some(late))]
        );
    }

    #[test]
    fn a_merge_empties_the_merged_wallet_and_moves_its_exact_balance() {
        let now = Utc::now();
        let entries = vec![
            award(100).into_entry(now),
            Award {
                expires_at: Some(now + Duration::days(5)),
                ..award(30)
            }
            .into_entry(now),
            Award {
                expires_at: Some(now - Duration::days(1)),
                ..award(9)
            }
            .into_entry(now - Duration::days(9)),
            Award {
                released_at: Some(now + Duration::days(3)),
                ..award(20)
            }
            .into_entry(now),
            spend(110, now),
        ];
        let before = Balance::of(&entries, now);
        let (merged, survivor) = apply_merge(&entries, now);
        let (m, s) = (Balance::of(&merged, now), Balance::of(&survivor, now));
        assert_eq!((m.available, m.pending), (0, 0));
        assert_eq!((s.available, s.pending), (before.available, before.pending));
        assert_eq!((s.available, s.pending), (20, 20));
        // The survivor's moved points expire as the merged wallet's would have.
        let after_expiry = now + Duration::days(6);
        assert_eq!(
            Balance::of(&survivor, after_expiry).available,
            Balance::of(&entries, after_expiry).available
        );
        // Nothing more to move afterwards, and the moved lots leave the old wallet at zero
        // even after they expire or are released.
        assert!(merge_lots(&merged, now).is_empty());
        let much_later = now + Duration::days(60);
        let m = Balance::of(&merged, much_later);
        assert_eq!((m.available, m.pending), (0, 0));
    }

    #[test]
    fn a_debt_moves_to_the_survivor_as_a_negative_lot() {
        let now = Utc::now();
        let entries = vec![award(10).into_entry(now), spend(25, now)];
        let (merged, survivor) = apply_merge(&entries, now);
        assert_eq!(Balance::of(&merged, now).available, 0);
        assert_eq!(Balance::of(&survivor, now).available, -15);
    }
}

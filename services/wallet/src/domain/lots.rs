//! How debits take from lots: soonest-expiring first, never-expiring last, then oldest first;
//! pending lots (not yet released) and expired ones are never taken.
use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a debit needs to know about a lot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lot {
    pub id: Uuid,
    pub remaining: i64,
    pub release_at: Option<DateTime<Utc>>,
    pub expire_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub payable: bool,
}

impl Lot {
    pub fn is_released(&self, now: DateTime<Utc>) -> bool {
        self.release_at.is_none_or(|r| r <= now)
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expire_at.is_some_and(|e| e <= now)
    }

    /// Can be spent now.
    pub fn is_spendable(&self, now: DateTime<Utc>) -> bool {
        self.remaining > 0 && self.is_released(now) && !self.is_expired(now)
    }
}

/// FIFO order of expiry: soonest-expiring first, never-expiring last, then oldest, then id.
pub fn fifo(a: &Lot, b: &Lot) -> Ordering {
    let expiry = match (a.expire_at, b.expire_at) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    expiry
        .then(a.created_at.cmp(&b.created_at))
        .then(a.id.cmp(&b.id))
}

/// One lot's share of a debit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Take {
    pub lot_id: Uuid,
    pub amount: i64,
}

/// Takes `amount` from the spendable lots in FIFO order (only payable ones when
/// `payable_only`). Returns the takes and what the lots could not cover (0 when covered).
pub fn take_fifo(
    lots: &[Lot],
    amount: i64,
    now: DateTime<Utc>,
    payable_only: bool,
) -> (Vec<Take>, i64) {
    let mut order: Vec<&Lot> = lots
        .iter()
        .filter(|l| l.is_spendable(now) && (!payable_only || l.payable))
        .collect();
    order.sort_by(|a, b| fifo(a, b));
    let mut left = amount;
    let mut takes = Vec::new();
    for lot in order {
        if left == 0 {
            break;
        }
        let t = lot.remaining.min(left);
        takes.push(Take {
            lot_id: lot.id,
            amount: t,
        });
        left -= t;
    }
    (takes, left)
}

/// Spendable amount of the lots now.
pub fn spendable(lots: &[Lot], now: DateTime<Utc>) -> i64 {
    lots.iter()
        .filter(|l| l.is_spendable(now))
        .map(|l| l.remaining)
        .sum()
}

/// Remaining amount of lots not yet released (and not expired).
pub fn pending(lots: &[Lot], now: DateTime<Utc>) -> i64 {
    lots.iter()
        .filter(|l| l.remaining > 0 && !l.is_released(now) && !l.is_expired(now))
        .map(|l| l.remaining)
        .sum()
}

/// The next `n` expirations of lots with points left (pending or available), soonest first,
/// summed per instant.
pub fn next_expirations(lots: &[Lot], now: DateTime<Utc>, n: usize) -> Vec<(DateTime<Utc>, i64)> {
    let mut by_time = std::collections::BTreeMap::<DateTime<Utc>, i64>::new();
    for l in lots {
        if let Some(e) = l.expire_at
            && l.remaining > 0
            && e > now
        {
            *by_time.entry(e).or_default() += l.remaining;
        }
    }
    by_time.into_iter().take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn lot(n: u128, remaining: i64, expire_days: Option<i64>, release_days: Option<i64>) -> Lot {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Lot {
            id: Uuid::from_u128(n),
            remaining,
            release_at: release_days.map(|d| t0 + Duration::days(d)),
            expire_at: expire_days.map(|d| t0 + Duration::days(d)),
            created_at: t0 + Duration::seconds(n as i64),
            payable: n.is_multiple_of(2),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap() + Duration::days(1)
    }

    #[test]
    fn debits_take_soonest_expiring_first_and_never_expiring_last() {
        let lots = [
            lot(1, 10, None, None),
            lot(2, 10, Some(30), None),
            lot(3, 10, Some(10), None),
        ];
        let (takes, short) = take_fifo(&lots, 25, now(), false);
        assert_eq!(short, 0);
        let ids: Vec<_> = takes
            .iter()
            .map(|t| (t.lot_id.as_u128(), t.amount))
            .collect();
        assert_eq!(ids, [(3, 10), (2, 10), (1, 5)]);
    }

    #[test]
    fn pending_and_expired_lots_are_not_spendable() {
        let lots = [
            lot(1, 10, Some(0), None),    // expired
            lot(2, 10, None, Some(5)),    // pending
            lot(3, 4, Some(90), Some(0)), // released
        ];
        assert_eq!(spendable(&lots, now()), 4);
        assert_eq!(pending(&lots, now()), 10);
        let (takes, short) = take_fifo(&lots, 6, now(), false);
        assert_eq!(takes.len(), 1);
        assert_eq!(short, 2);
    }

    #[test]
    fn payouts_take_only_payable_lots() {
        let lots = [lot(1, 10, Some(3), None), lot(2, 10, Some(4), None)];
        let (takes, short) = take_fifo(&lots, 10, now(), true);
        assert_eq!((takes[0].lot_id.as_u128(), short), (2, 0));
    }

    #[test]
    fn expirations_are_summed_per_instant() {
        let lots = [
            lot(1, 10, Some(3), None),
            lot(2, 5, Some(3), None),
            lot(3, 7, Some(9), Some(2)),
            lot(4, 0, Some(2), None),
        ];
        let next = next_expirations(&lots, now(), 5);
        assert_eq!(next.iter().map(|(_, a)| *a).collect::<Vec<_>>(), [15, 7]);
    }
}

//! Paying vouchers with points: when a reward's points price is due, and the wallet
//! idempotency keys of each step of the payment saga. No I/O.
use uuid::Uuid;

use super::{RewardType, vouchers::Voucher};

/// When a voucher's points price moves through the wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceDue {
    /// Catalogue rewards (coupon, simple, gift): the customer buys the voucher.
    AtIssue,
    /// Cash desk and campaign rewards: the customer pays when using it.
    AtRedemption,
}

/// When a reward of this type charges its points price.
pub fn price_due(reward_type: RewardType) -> PriceDue {
    match reward_type {
        RewardType::Coupon | RewardType::Simple | RewardType::Gift => PriceDue::AtIssue,
        RewardType::CashDesk | RewardType::Campaign => PriceDue::AtRedemption,
    }
}

/// Points to charge when issuing: the price of a catalogue reward whose issuer asked to pay
/// with points; 0 otherwise (an operator may hand out a catalogue voucher for free).
pub fn points_at_issue(reward_type: RewardType, price: i64, pay_with_points: bool) -> i64 {
    if pay_with_points && price > 0 && price_due(reward_type) == PriceDue::AtIssue {
        price
    } else {
        0
    }
}

/// Points to charge when redeeming: the price of a cash desk or campaign reward.
pub fn points_at_redemption(reward_type: RewardType, price: i64) -> i64 {
    if price > 0 && price_due(reward_type) == PriceDue::AtRedemption {
        price
    } else {
        0
    }
}

impl Voucher {
    /// Records the points paid for it and the wallet hold that pays them.
    pub fn paid_with(&mut self, points: i64, reservation_id: Uuid) {
        self.points_paid = points;
        self.points_reservation_id = Some(reservation_id);
    }

    /// The wallet hold whose points a refund gives back; `None` for a free voucher.
    pub fn payment(&self) -> Option<Uuid> {
        self.points_reservation_id.filter(|_| self.points_paid > 0)
    }

    /// Forgets the payment after it was given back (or never taken).
    pub fn refunded(&mut self) {
        self.points_paid = 0;
        self.points_reservation_id = None;
    }
}

/// Seconds the wallet holds the points of a payment in flight. A hold whose voucher change
/// never committed (the rewards process died) returns the points on its own after this; a
/// retry of the same request within it finds the same hold and completes the payment.
pub const HOLD_SECONDS: i32 = 900;

/// A short, stable digest of a client's idempotency key (keys are up to 128 characters; the
/// wallet's too, so a derived key must be shorter).
fn digest(idempotency_key: &str) -> String {
    let hash = loyalty_platform::idempotency::request_hash(&idempotency_key.to_owned());
    hash[..32].to_owned()
}

/// Wallet idempotency keys of the payment saga. Each names the voucher (or, before the
/// voucher exists, the request that creates it) and the step, so a retried request replays
/// exactly the wallet calls of the first attempt and the wallet applies each once.
pub mod keys {
    use super::*;

    /// The hold paying for a voucher being issued. The voucher id is drawn afresh by every
    /// attempt, so the hold is named by the IssueVoucher request instead.
    pub fn issue_hold(idempotency_key: &str) -> String {
        format!("voucher-issue:{}", digest(idempotency_key))
    }

    /// The hold paying for a redemption of `voucher_id` by one RedeemVoucher request.
    pub fn redeem_hold(voucher_id: Uuid, idempotency_key: &str) -> String {
        format!("voucher:{voucher_id}:redeem:{}", digest(idempotency_key))
    }

    /// Capturing the hold that paid for the voucher.
    pub fn capture(voucher_id: Uuid, reservation_id: Uuid) -> String {
        format!("voucher:{voucher_id}:capture:{reservation_id}")
    }

    /// Releasing a hold whose voucher change was refused or failed.
    pub fn release(reservation_id: Uuid) -> String {
        format!("voucher-release:{reservation_id}")
    }

    /// Giving back the points of one payment (cancel with refund, reinstate).
    pub fn refund(voucher_id: Uuid, reservation_id: Uuid) -> String {
        format!("voucher:{voucher_id}:refund:{reservation_id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_rewards_charge_at_issue_and_only_when_asked() {
        for t in [RewardType::Coupon, RewardType::Simple, RewardType::Gift] {
            assert_eq!(points_at_issue(t, 500, true), 500);
            assert_eq!(points_at_issue(t, 500, false), 0);
            assert_eq!(points_at_issue(t, 0, true), 0);
            assert_eq!(points_at_redemption(t, 500), 0);
        }
    }

    #[test]
    fn cash_desk_and_campaign_rewards_charge_at_redemption() {
        for t in [RewardType::CashDesk, RewardType::Campaign] {
            assert_eq!(points_at_issue(t, 500, true), 0);
            assert_eq!(points_at_redemption(t, 500), 500);
            assert_eq!(points_at_redemption(t, 0), 0);
        }
    }

    #[test]
    fn only_a_paid_voucher_has_a_payment_to_give_back() {
        let now = chrono::Utc::now();
        let mut v = Voucher {
            customer_id: Some(Uuid::now_v7()),
            ..Voucher::issued(
                Uuid::now_v7(),
                "COFFEE-1234".into(),
                Uuid::now_v7(),
                super::super::vouchers::VoucherSource::Catalogue,
                Default::default(),
                now,
            )
        };
        assert_eq!(v.payment(), None);
        let hold = Uuid::now_v7();
        v.paid_with(300, hold);
        assert_eq!((v.points_paid, v.payment()), (300, Some(hold)));
        v.refunded();
        assert_eq!((v.points_paid, v.payment()), (0, None));
    }

    #[test]
    fn keys_are_stable_distinct_per_step_and_fit_the_wallet() {
        let v = Uuid::now_v7();
        let r = Uuid::now_v7();
        let long = "k".repeat(128);
        assert_eq!(keys::issue_hold("a"), keys::issue_hold("a"));
        assert_ne!(keys::issue_hold("a"), keys::issue_hold("b"));
        assert_ne!(keys::redeem_hold(v, "a"), keys::redeem_hold(v, "b"));
        assert_ne!(keys::redeem_hold(v, "a"), keys::redeem_hold(r, "a"));
        let all = [
            keys::issue_hold(&long),
            keys::redeem_hold(v, &long),
            keys::capture(v, r),
            keys::release(r),
            keys::refund(v, r),
        ];
        for (i, k) in all.iter().enumerate() {
            assert!((1..=128).contains(&k.len()), "{k}");
            assert!(all[i + 1..].iter().all(|o| o != k), "{k} repeats");
        }
    }
}

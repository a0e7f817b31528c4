//! The commit saga's progress, kept with the pending purchase so that a retry, or the
//! recovery of an abandoned commit, knows what was done and what undoes it.
//!
//! Forward: reserve the vouchers, the points and the credit → capture them (redeem, capture) →
//! earn the
//! purchase's points → record the purchase. Every call carries an idempotency key made of
//! the attempt's purchase id, so running a step again returns what it did the first time.
//! A failure turns the saga around: what was captured is reversed, what was reserved is
//! released, and the pending purchase is dropped so that a retry starts afresh.
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Nothing reserved yet.
    #[default]
    Started,
    /// Vouchers and points are held for the transaction.
    Reserved,
    /// Vouchers redeemed and points captured.
    Captured,
    /// Going back: undo whatever the steps recorded.
    Compensating,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoucherHold {
    pub code: String,
    pub voucher_id: Uuid,
    /// Set once redeemed.
    #[serde(default)]
    pub redeemed: bool,
    /// Points its redemption cost (rewards with a points price).
    #[serde(default)]
    pub points_spent: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saga {
    pub phase: Phase,
    /// Phase reached before compensation began (what there is to undo).
    #[serde(default)]
    pub reached: Phase,
    #[serde(default)]
    pub vouchers: Vec<VoucherHold>,
    /// The wallet reservation of the points payment.
    #[serde(default)]
    pub points_reservation_id: Option<Uuid>,
    /// The CAPTURE posting of the points payment (what a return reverses).
    #[serde(default)]
    pub points_capture_posting_id: Option<Uuid>,
    /// The wallet reservation of the open balance (credit) payment.
    #[serde(default)]
    pub credit_reservation_id: Option<Uuid>,
    /// The CAPTURE posting of the credit payment (what a return reverses).
    #[serde(default)]
    pub credit_capture_posting_id: Option<Uuid>,
    /// The AWARD posting of the earned points.
    #[serde(default)]
    pub award_posting_id: Option<Uuid>,
    /// Why the saga turned around.
    #[serde(default)]
    pub abort_reason: Option<String>,
}

/// Which wallet hold: the points payment or the open balance (credit) payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purse {
    Points,
    Credit,
}

impl Purse {
    /// Prefix of the wallet idempotency keys of this hold's steps (points keep the bare one).
    pub fn key(self, step: &str, purchase_id: Uuid) -> String {
        match self {
            Purse::Points => format!("{step}:{purchase_id}"),
            Purse::Credit => format!("{step}-credit:{purchase_id}"),
        }
    }
}

/// One undo action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    ReleaseVoucher { code: String },
    ReinstateVoucher { voucher_id: Uuid },
    ReleasePoints { purse: Purse, reservation_id: Uuid },
    ReverseCapture { purse: Purse, posting_id: Uuid },
    ReverseAward { posting_id: Uuid },
}

impl Saga {
    /// Turns the saga around, remembering how far it got.
    pub fn abort(&mut self, reason: impl Into<String>) {
        if self.phase != Phase::Compensating {
            self.reached = self.phase;
            self.phase = Phase::Compensating;
            self.abort_reason = Some(reason.into());
        }
    }

    /// What undoes the steps done, latest first. Undo calls are idempotent, so an undo that
    /// was already done before a crash is harmless to run again.
    pub fn compensations(&self) -> Vec<Undo> {
        let mut out = Vec::new();
        if let Some(posting_id) = self.award_posting_id {
            out.push(Undo::ReverseAward { posting_id });
        }
        for v in &self.vouchers {
            out.push(if v.redeemed {
                Undo::ReinstateVoucher {
                    voucher_id: v.voucher_id,
                }
            } else {
                Undo::ReleaseVoucher {
                    code: v.code.clone(),
                }
            });
        }
        for (purse, captured, reserved) in [
            (
                Purse::Points,
                self.points_capture_posting_id,
                self.points_reservation_id,
            ),
            (
                Purse::Credit,
                self.credit_capture_posting_id,
                self.credit_reservation_id,
            ),
        ] {
            match (captured, reserved) {
                (Some(posting_id), _) => out.push(Undo::ReverseCapture { purse, posting_id }),
                (None, Some(reservation_id)) => out.push(Undo::ReleasePoints {
                    purse,
                    reservation_id,
                }),
                (None, None) => {}
            }
        }
        out
    }

    /// Points spent to pay: the points payment and the vouchers' points prices.
    pub fn vouchers_points_spent(&self) -> i64 {
        self.vouchers.iter().map(|v| v.points_spent).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compensation_undoes_what_was_done_and_nothing_else() {
        let mut saga = Saga::default();
        assert!(saga.compensations().is_empty());

        let reservation = Uuid::now_v7();
        let credit = Uuid::now_v7();
        let voucher = Uuid::now_v7();
        saga.phase = Phase::Reserved;
        saga.points_reservation_id = Some(reservation);
        saga.credit_reservation_id = Some(credit);
        saga.vouchers.push(VoucherHold {
            code: "A".into(),
            voucher_id: voucher,
            redeemed: false,
            points_spent: 0,
        });
        assert_eq!(
            saga.compensations(),
            vec![
                Undo::ReleaseVoucher { code: "A".into() },
                Undo::ReleasePoints {
                    purse: Purse::Points,
                    reservation_id: reservation
                },
                Undo::ReleasePoints {
                    purse: Purse::Credit,
                    reservation_id: credit
                }
            ]
        );

        let capture = Uuid::now_v7();
        let award = Uuid::now_v7();
        saga.phase = Phase::Captured;
        saga.vouchers[0].redeemed = true;
        saga.points_capture_posting_id = Some(capture);
        saga.award_posting_id = Some(award);
        saga.abort("wallet unavailable");
        saga.abort("second reason is ignored");
        assert_eq!(saga.phase, Phase::Compensating);
        assert_eq!(saga.reached, Phase::Captured);
        assert_eq!(saga.abort_reason.as_deref(), Some("wallet unavailable"));
        assert_eq!(
            saga.compensations(),
            vec![
                Undo::ReverseAward { posting_id: award },
                Undo::ReinstateVoucher {
                    voucher_id: voucher
                },
                Undo::ReverseCapture {
                    purse: Purse::Points,
                    posting_id: capture
                },
                // The credit hold was never captured: released.
                Undo::ReleasePoints {
                    purse: Purse::Credit,
                    reservation_id: credit
                }
            ]
        );
        assert_eq!(
            Purse::Points.key("capture", award),
            format!("capture:{award}")
        );
        assert_eq!(
            Purse::Credit.key("capture", award),
            format!("capture-credit:{award}")
        );
    }
}

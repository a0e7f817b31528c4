//! Returns of goods: what is refunded per line and how many points go back. Every share is
//! computed on the cumulative returned amount and the earlier share subtracted, so rounding
//! never drifts over several partial returns and a full return gives back exactly everything.
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::PricedLine;

/// A line to return: the purchase's line id and the units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnLine {
    pub line_id: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnedLine {
    pub line_id: String,
    pub product_id: String,
    pub quantity: i64,
    pub refund_minor: i64,
}

/// What a return gives back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnPlan {
    pub lines: Vec<ReturnedLine>,
    pub refund_minor: i64,
    /// Earned points to take back.
    pub points_reversed: i64,
    /// Spent points to give back.
    pub points_refunded: i64,
    /// Spent open balance to give back, minor units.
    #[serde(default)]
    pub credit_refunded_minor: i64,
    /// What goes back to the payments (cash, card): the refund less the shares paid with
    /// points and open balance.
    #[serde(default)]
    pub payment_refund_minor: i64,
    /// Whether every unit of the purchase has now come back.
    pub fully_returned: bool,
}

/// A return as recorded: its plan, and what the wallet and vouchers did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnRecord {
    pub return_id: String,
    pub purchase_id: Uuid,
    pub original_transaction_id: String,
    pub customer_id: Uuid,
    pub currency_code: String,
    pub business_unit_id: String,
    pub plan: ReturnPlan,
    /// Available points after the return.
    pub points_balance: i64,
    pub reinstated_voucher_codes: Vec<String>,
    pub return_time: DateTime<Utc>,
}

impl Returned {
    /// What the recorded returns gave back, together.
    pub fn of<'a>(records: impl IntoIterator<Item = &'a ReturnRecord>) -> Self {
        let mut out = Returned::default();
        for r in records {
            for l in &r.plan.lines {
                *out.quantities.entry(l.line_id.clone()).or_default() += l.quantity;
            }
            out.refund_minor += r.plan.refund_minor;
            out.points_reversed += r.plan.points_reversed;
            out.points_refunded += r.plan.points_refunded;
            out.credit_refunded_minor += r.plan.credit_refunded_minor;
            out.payment_refund_minor += r.plan.payment_refund_minor;
        }
        out
    }
}

/// What earlier returns of the purchase gave back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Returned {
    /// Units returned per line id.
    pub quantities: HashMap<String, i64>,
    pub refund_minor: i64,
    pub points_reversed: i64,
    pub points_refunded: i64,
    pub credit_refunded_minor: i64,
    pub payment_refund_minor: i64,
}

/// What the purchase earned and how it was paid: what returns give back in shares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Paid {
    pub points_earned: i64,
    /// Points paying part of the cart.
    pub points_spent: i64,
    /// Open balance paying part of the cart, minor units.
    pub credit_spent_minor: i64,
    /// What the payments covered, minor units.
    pub amount_due_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReturnError {
    #[error("lines[{index}].line_id: the purchase has no line {line_id:?}")]
    UnknownLine { index: usize, line_id: String },
    #[error("lines[{index}].quantity: only {left} of line {line_id:?} can still be returned")]
    QuantityExceeded {
        index: usize,
        line_id: String,
        left: i64,
    },
}

/// Whether a purchase made at `purchase_time` can still be voided at `now`: on the same
/// calendar day in the store's time (`utc_offset_minutes` from UTC).
pub fn voidable(purchase_time: DateTime<Utc>, now: DateTime<Utc>, utc_offset_minutes: i32) -> bool {
    let offset = chrono::TimeDelta::minutes(i64::from(utc_offset_minutes));
    (purchase_time + offset).date_naive() == (now + offset).date_naive() && purchase_time <= now
}

/// `total × part / whole`, rounded down, in 128 bits.
fn share(total: i64, part: i64, whole: i64) -> i64 {
    if whole <= 0 {
        return 0;
    }
    (i128::from(total) * i128::from(part) / i128::from(whole)) as i64
}

/// Plans a return of `lines` (already validated: line ids unique, quantities > 0) from a
/// purchase whose lines are `purchase`, that earned and was paid as `paid` says.
pub fn plan(
    purchase: &[PricedLine],
    paid: Paid,
    before: &Returned,
    lines: &[ReturnLine],
) -> Result<ReturnPlan, ReturnError> {
    let by_id: HashMap<&str, &PricedLine> =
        purchase.iter().map(|l| (l.line_id.as_str(), l)).collect();
    let mut out = Vec::with_capacity(lines.len());
    let mut refund = 0i64;
    let mut after: HashMap<&str, i64> = HashMap::new();
    for (index, r) in lines.iter().enumerate() {
        let Some(line) = by_id.get(r.line_id.as_str()) else {
            return Err(ReturnError::UnknownLine {
                index,
                line_id: r.line_id.clone(),
            });
        };
        let done = before.quantities.get(&r.line_id).copied().unwrap_or(0);
        let left = line.quantity - done;
        if r.quantity > left {
            return Err(ReturnError::QuantityExceeded {
                index,
                line_id: r.line_id.clone(),
                left,
            });
        }
        let line_refund = share(line.net_minor, done + r.quantity, line.quantity)
            - share(line.net_minor, done, line.quantity);
        refund += line_refund;
        after.insert(line.line_id.as_str(), done + r.quantity);
        out.push(ReturnedLine {
            line_id: r.line_id.clone(),
            product_id: line.product_id.clone(),
            quantity: r.quantity,
            refund_minor: line_refund,
        });
    }
    let fully_returned = purchase.iter().all(|l| {
        let returned = after
            .get(l.line_id.as_str())
            .copied()
            .unwrap_or_else(|| before.quantities.get(&l.line_id).copied().unwrap_or(0));
        returned >= l.quantity
    });
    let net: i64 = purchase.iter().map(|l| l.net_minor).sum();
    let refunded_total = before.refund_minor + refund;
    let cumulative = |total: i64| {
        if fully_returned {
            total
        } else {
            share(total, refunded_total, net).min(total)
        }
    };
    Ok(ReturnPlan {
        lines: out,
        refund_minor: refund,
        points_reversed: (cumulative(paid.points_earned) - before.points_reversed).max(0),
        points_refunded: (cumulative(paid.points_spent) - before.points_refunded).max(0),
        credit_refunded_minor: (cumulative(paid.credit_spent_minor) - before.credit_refunded_minor)
            .max(0),
        payment_refund_minor: (cumulative(paid.amount_due_minor) - before.payment_refund_minor)
            .max(0),
        fully_returned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(id: &str, quantity: i64, net: i64) -> PricedLine {
        PricedLine {
            line_id: id.into(),
            product_id: format!("SKU-{id}"),
            product_group_ids: vec![],
            brand_id: String::new(),
            quantity,
            unit_price_minor: net / quantity,
            gross_minor: net,
            discounts: vec![],
            net_minor: net,
            points: 0,
        }
    }

    fn ret(id: &str, quantity: i64) -> ReturnLine {
        ReturnLine {
            line_id: id.into(),
            quantity,
        }
    }

    fn apply(before: &mut Returned, plan: &ReturnPlan) {
        for l in &plan.lines {
            *before.quantities.entry(l.line_id.clone()).or_default() += l.quantity;
        }
        before.refund_minor += plan.refund_minor;
        before.points_reversed += plan.points_reversed;
        before.points_refunded += plan.points_refunded;
        before.credit_refunded_minor += plan.credit_refunded_minor;
        before.payment_refund_minor += plan.payment_refund_minor;
    }

    fn paid(points_earned: i64, points_spent: i64) -> Paid {
        Paid {
            points_earned,
            points_spent,
            ..Paid::default()
        }
    }

    #[test]
    fn a_partial_return_gives_back_its_share() {
        let purchase = [line("1", 2, 2250), line("2", 1, 495)];
        let paid = Paid {
            points_earned: 27,
            points_spent: 100,
            credit_spent_minor: 1_000,
            amount_due_minor: 1_495,
        };
        let p = plan(&purchase, paid, &Returned::default(), &[ret("1", 1)]).unwrap();
        assert_eq!(p.refund_minor, 1125);
        // 27 × 1125 / 2745 = 11.06 → 11; 100 × 1125 / 2745 = 40.98 → 40.
        assert_eq!((p.points_reversed, p.points_refunded), (11, 40));
        // 1000 × 1125 / 2745 = 409.8 → 409; 1495 × 1125 / 2745 = 612.7 → 612.
        assert_eq!(
            (p.credit_refunded_minor, p.payment_refund_minor),
            (409, 612)
        );
        assert!(!p.fully_returned);
    }

    #[test]
    fn the_last_return_gives_back_everything_left() {
        let purchase = [line("1", 3, 1000), line("2", 1, 1)];
        let mut before = Returned::default();
        for r in [ret("1", 1), ret("1", 1), ret("2", 1)] {
            let p = plan(&purchase, paid(10, 7), &before, &[r]).unwrap();
            apply(&mut before, &p);
        }
        let last = plan(&purchase, paid(10, 7), &before, &[ret("1", 1)]).unwrap();
        assert!(last.fully_returned);
        apply(&mut before, &last);
        assert_eq!(before.refund_minor, 1001);
        assert_eq!((before.points_reversed, before.points_refunded), (10, 7));
    }

    #[test]
    fn unknown_lines_and_too_many_units_are_refused() {
        let purchase = [line("1", 2, 200)];
        assert_eq!(
            plan(
                &purchase,
                Paid::default(),
                &Returned::default(),
                &[ret("9", 1)]
            ),
            Err(ReturnError::UnknownLine {
                index: 0,
                line_id: "9".into()
            })
        );
        let mut before = Returned::default();
        before.quantities.insert("1".into(), 2);
        assert_eq!(
            plan(&purchase, Paid::default(), &before, &[ret("1", 1)]),
            Err(ReturnError::QuantityExceeded {
                index: 0,
                line_id: "1".into(),
                left: 0
            })
        );
    }

    #[test]
    fn a_purchase_is_voidable_on_its_business_day_only() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let bought = at("2026-12-07T20:00:00Z");
        assert!(voidable(bought, at("2026-12-07T23:59:59Z"), 0));
        assert!(!voidable(bought, at("2026-12-08T00:00:00Z"), 0));
        // 20:00 UTC is 15:00 in New York; its day ends at 05:00 UTC.
        assert!(voidable(bought, at("2026-12-08T04:59:00Z"), -300));
        assert!(!voidable(bought, at("2026-12-08T05:00:00Z"), -300));
        // In Prague it was already 21:00; the day ends at 23:00 UTC.
        assert!(!voidable(bought, at("2026-12-07T23:00:00Z"), 60));
    }

    proptest! {
        #[test]
        fn returning_every_unit_one_by_one_gives_back_exactly_everything(
            lines in proptest::collection::vec((1i64..6, 0i64..10_000), 1..6),
            earned in 0i64..5_000,
            spent in 0i64..5_000,
            credit_part in 0i64..=100,
        ) {
            let purchase: Vec<_> = lines.iter().enumerate().map(|(i, (q, n))| line(&i.to_string(), *q, *n)).collect();
            let net: i64 = purchase.iter().map(|l| l.net_minor).sum();
            let credit = net * credit_part / 100;
            let paid = Paid { points_earned: earned, points_spent: spent, credit_spent_minor: credit, amount_due_minor: net - credit };
            let mut before = Returned::default();
            for l in &purchase {
                for _ in 0..l.quantity {
                    let p = plan(&purchase, paid, &before, &[ret(&l.line_id, 1)]).unwrap();
                    prop_assert!(p.refund_minor >= 0 && p.points_reversed >= 0 && p.points_refunded >= 0);
                    prop_assert!(p.credit_refunded_minor >= 0 && p.payment_refund_minor >= 0);
                    prop_assert!(p.credit_refunded_minor + p.payment_refund_minor <= p.refund_minor + 1);
                    apply(&mut before, &p);
                }
            }
            prop_assert_eq!(before.refund_minor, net);
            prop_assert_eq!(before.points_reversed, earned);
            prop_assert_eq!(before.points_refunded, spent);
            prop_assert_eq!(before.credit_refunded_minor, credit);
            prop_assert_eq!(before.payment_refund_minor, net - credit);
        }
    }
}

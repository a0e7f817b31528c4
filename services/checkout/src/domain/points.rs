//! Paying part of a cart with points, through the partner's points payment reward (the
//! rewards evaluation says how many points the cart can take and what a step is worth).
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What the points payment reward allows on this cart (rewards' `PointsPayable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointsPayable {
    pub rule_id: Uuid,
    /// Points are paid in whole steps of this many points.
    pub points_per_step: i64,
    /// What one step pays, minor units.
    pub value_per_step_minor: i64,
    /// Most points the cart takes (a multiple of the step).
    pub max_points: i64,
    /// What `max_points` pay, minor units; never more than the payable lines' total.
    pub max_value_minor: i64,
}

/// Points paying part of the cart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsPayment {
    pub rule_id: Uuid,
    pub points: i64,
    pub value_minor: i64,
}

/// Why points cannot pay as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointsRefusal {
    /// The customer is blocked from spending.
    Blocked,
    /// More than the cart and the balance allow (`spendable` is the most).
    NotSpendable { spendable: i64 },
}

/// The most points the customer can pay with on this cart: whole steps of the balance, up to
/// what the cart takes; 0 when blocked or when no points payment reward applies.
pub fn spendable(payable: Option<&PointsPayable>, balance: i64, blocked: bool) -> i64 {
    match payable {
        Some(p) if !blocked && p.points_per_step > 0 && balance > 0 => {
            let whole_steps = balance / p.points_per_step * p.points_per_step;
            whole_steps.min(p.max_points).max(0)
        }
        _ => 0,
    }
}

/// The points payment for `requested` points. Evaluate passes `strict = false` and gets
/// what can be accepted (at most the spendable points, in whole steps); Commit passes
/// `strict = true` and is refused anything above the spendable points.
pub fn pay(
    payable: Option<&PointsPayable>,
    balance: i64,
    blocked: bool,
    requested: i64,
    strict: bool,
) -> Result<Option<PointsPayment>, PointsRefusal> {
    if requested <= 0 {
        return Ok(None);
    }
    if blocked {
        return Err(PointsRefusal::Blocked);
    }
    let most = spendable(payable, balance, blocked);
    if strict && requested > most {
        return Err(PointsRefusal::NotSpendable { spendable: most });
    }
    let Some(p) = payable.filter(|p| p.points_per_step > 0) else {
        return Ok(None);
    };
    let points = requested.min(most) / p.points_per_step * p.points_per_step;
    if points == 0 {
        return Ok(None);
    }
    let steps = i128::from(points / p.points_per_step);
    let value = (steps * i128::from(p.value_per_step_minor))
        .min(i128::from(p.max_value_minor))
        .max(0) as i64;
    Ok(Some(PointsPayment {
        rule_id: p.rule_id,
        points,
        value_minor: value,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payable(max_points: i64, max_value: i64) -> PointsPayable {
        PointsPayable {
            rule_id: Uuid::nil(),
            points_per_step: 100,
            value_per_step_minor: 50,
            max_points,
            max_value_minor: max_value,
        }
    }

    #[test]
    fn spendable_is_whole_steps_of_the_balance_up_to_what_the_cart_takes() {
        let p = payable(1_000, 500);
        assert_eq!(spendable(Some(&p), 450, false), 400);
        assert_eq!(spendable(Some(&p), 5_000, false), 1_000);
        assert_eq!(spendable(Some(&p), 5_000, true), 0);
        assert_eq!(spendable(None, 5_000, false), 0);
        assert_eq!(spendable(Some(&p), -10, false), 0);
    }

    #[test]
    fn evaluate_accepts_what_it_can_and_commit_refuses_more() {
        let p = payable(1_000, 480);
        let accepted = pay(Some(&p), 450, false, 1_000, false).unwrap().unwrap();
        assert_eq!((accepted.points, accepted.value_minor), (400, 200));
        assert_eq!(
            pay(Some(&p), 450, false, 1_000, true),
            Err(PointsRefusal::NotSpendable { spendable: 400 })
        );
        // The last step is worth what is left to pay, not more.
        let all = pay(Some(&p), 5_000, false, 1_000, true).unwrap().unwrap();
        assert_eq!((all.points, all.value_minor), (1_000, 480));
        // Part of a step pays nothing.
        assert_eq!(pay(Some(&p), 5_000, false, 99, true), Ok(None));
        assert_eq!(pay(Some(&p), 5_000, false, 0, true), Ok(None));
        assert_eq!(
            pay(Some(&p), 5_000, true, 100, false),
            Err(PointsRefusal::Blocked)
        );
        assert_eq!(
            pay(None, 5_000, false, 100, true),
            Err(PointsRefusal::NotSpendable { spendable: 0 })
        );
    }
}

//! What each benefit gives on a cart whose lines currently cost `net`. Every function returns
//! per-line amounts that are never negative and never above the line's net amount.
use super::lines::Lines;
use super::{Benefit, CartLine, SkipReason, Target, UnitOff};

/// A line may get a discount or a bonus from `target`.
fn applies(target: &Target, line: &CartLine) -> bool {
    !line.no_reward_application && target.matches(line)
}

fn mul_div(a: i64, b: i64, c: i64) -> i64 {
    if c <= 0 {
        return 0;
    }
    // The common case without the (much slower) 128-bit division; the same result.
    if let Some(p) = a.checked_mul(b) {
        return p / c;
    }
    let r = i128::from(a) * i128::from(b) / i128::from(c);
    r.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Splits `amount` over the lines of `mask` in proportion to `base(i)` (floor), the remainder
/// going to the lines in index order; no line gets more than its base. Writes `out[i]` for the
/// lines of `mask` only.
fn split(amount: i64, mask: Lines, base: impl Fn(usize) -> i64, out: &mut [i64]) {
    let total: i64 = mask.iter().fold(0i64, |s, i| s.saturating_add(base(i)));
    let amount = amount.clamp(0, total);
    if total == 0 {
        return;
    }
    let mut left = amount;
    for i in mask.iter() {
        out[i] = mul_div(base(i), amount, total);
        left -= out[i];
    }
    for i in mask.iter() {
        if left == 0 {
            break;
        }
        let more = (base(i) - out[i]).min(left);
        out[i] += more;
        left -= more;
    }
}

/// Number of positions p in 0..n with p mod (x + y) ≥ x: the "get" units of buy-X-get-Y.
fn get_positions(n: u64, x: u64, y: u64) -> u64 {
    let m = x + y;
    (n / m) * y + (n % m).saturating_sub(x)
}

/// Whether the benefit reaches the line: a discount or a bonus may fall on it. The lines of a
/// benefit (`Lines`) are computed with this once per evaluation.
pub(super) fn reaches(benefit: &Benefit, line: &CartLine) -> bool {
    match benefit {
        Benefit::PercentageDiscount { target, .. }
        | Benefit::FixedDiscount { target, .. }
        | Benefit::FixedPrice { target, .. }
        | Benefit::UnitDiscount { target, .. }
        | Benefit::BuyXGetY { target, .. }
        | Benefit::SpendXSaveY { target, .. } => applies(target, line),
        Benefit::FreeItem { product_id, .. } => {
            !line.no_reward_application && line.product_id == *product_id
        }
        Benefit::PointsPayment { .. } => !line.no_reward_application,
        Benefit::BonusPoints { target, .. }
        | Benefit::SpendPoints { target, .. }
        | Benefit::PointsMultiplier { target, .. } => {
            applies(target, line) && !line.pay_only_with_points
        }
    }
}

/// The discount per line of a money benefit reaching the lines of `mask`, or why it gives
/// nothing. `out` comes zeroed (one entry per line); only the lines of `mask` are written.
pub(super) fn discount(
    benefit: &Benefit,
    lines: &[CartLine],
    mask: Lines,
    net: &[i64],
    max_applications: Option<u32>,
    out: &mut [i64],
) -> Result<(), SkipReason> {
    if benefit.is_points() {
        return Ok(());
    }
    if !mask.any() {
        return Err(SkipReason::NoMatchingItems);
    }
    let masked = |i: usize| net[i].max(0);
    match benefit {
        Benefit::PercentageDiscount { basis_points, .. } => {
            let bp = i64::from((*basis_points).min(10_000));
            for i in mask.iter() {
                out[i] = mul_div(net[i].max(0), bp, 10_000);
            }
        }
        Benefit::FixedDiscount { amount_minor, .. } => split(*amount_minor, mask, masked, out),
        Benefit::FixedPrice {
            unit_price_minor, ..
        } => {
            for i in mask.iter() {
                let price = (*unit_price_minor)
                    .max(0)
                    .saturating_mul(i64::from(lines[i].quantity));
                out[i] = (net[i].max(0) - price).max(0);
            }
        }
        Benefit::UnitDiscount { off, max_units, .. } => {
            // Units dearest first (ties by line index), up to `max_units`.
            // (unit price, line) pairs are distinct: the unstable sort gives the stable order.
            let mut order: Vec<(i64, usize)> = mask
                .iter()
                .filter(|i| lines[*i].quantity > 0)
                .map(|i| (net[i].max(0) / i64::from(lines[i].quantity), i))
                .collect();
            order.sort_unstable_by(|(ua, a), (ub, b)| ub.cmp(ua).then(a.cmp(b)));
            let mut left = max_units.map_or(u64::MAX, u64::from);
            for (_, i) in order {
                if left == 0 {
                    break;
                }
                let q = u64::from(lines[i].quantity);
                let units = left.min(q);
                left -= units;
                // The net value of the units taken (their share of the line).
                let value = mul_div(net[i].max(0), units as i64, q as i64);
                let units = units as i64;
                out[i] = match off {
                    UnitOff::BasisPoints(bp) => {
                        mul_div(value, i64::from((*bp).min(10_000)), 10_000)
                    }
                    UnitOff::AmountMinor(a) => (*a).max(0).saturating_mul(units).min(value),
                    UnitOff::PriceMinor(p) => (value - (*p).max(0).saturating_mul(units)).max(0),
                };
            }
        }
        Benefit::FreeItem { quantity, .. } => {
            let mut left = u64::from(*quantity);
            if let Some(max) = max_applications {
                left = left.min(u64::from(max));
            }
            for i in mask.iter() {
                if lines[i].quantity == 0 || left == 0 {
                    continue;
                }
                let units = left.min(u64::from(lines[i].quantity));
                left -= units;
                let q = i64::from(lines[i].quantity);
                out[i] = mul_div(net[i].max(0), units as i64, q);
            }
        }
        Benefit::BuyXGetY {
            buy,
            get,
            discount_basis_points,
            ..
        } => {
            let (x, y) = (u64::from(*buy), u64::from(*get));
            if y == 0 {
                return Err(SkipReason::ThresholdNotReached);
            }
            // Units dearest first (ties by line index); the last `get` of each `buy + get`.
            // (unit price, line) pairs are distinct: the unstable sort gives the stable order.
            let mut order: Vec<(i64, usize)> = mask
                .iter()
                .filter(|i| lines[*i].quantity > 0)
                .map(|i| (net[i].max(0) / i64::from(lines[i].quantity), i))
                .collect();
            order.sort_unstable_by(|(ua, a), (ub, b)| ub.cmp(ua).then(a.cmp(b)));
            let units: u64 = order
                .iter()
                .map(|(_, i)| u64::from(lines[*i].quantity))
                .sum();
            let mut sets = units / (x + y);
            if let Some(max) = max_applications {
                sets = sets.min(u64::from(max));
            }
            if sets == 0 {
                return Err(SkipReason::ThresholdNotReached);
            }
            let limit = sets * (x + y);
            let bp = i64::from((*discount_basis_points).min(10_000));
            let mut pos = 0u64;
            for (_, i) in order {
                let q = u64::from(lines[i].quantity);
                let (a, b) = (pos.min(limit), (pos + q).min(limit));
                let free = get_positions(b, x, y) - get_positions(a, x, y);
                pos += q;
                let value = mul_div(net[i].max(0), free as i64, q as i64);
                out[i] = mul_div(value, bp, 10_000);
            }
        }
        Benefit::SpendXSaveY {
            spend_minor,
            save_minor,
            repeat,
            ..
        } => {
            let subtotal = mask.iter().fold(0i64, |s, i| s.saturating_add(masked(i)));
            if *spend_minor <= 0 || subtotal < *spend_minor {
                return Err(SkipReason::ThresholdNotReached);
            }
            let mut times = if *repeat { subtotal / spend_minor } else { 1 };
            if let Some(max) = max_applications {
                times = times.min(i64::from(max));
            }
            split(
                (*save_minor).max(0).saturating_mul(times),
                mask,
                masked,
                out,
            )
        }
        Benefit::BonusPoints { .. }
        | Benefit::SpendPoints { .. }
        | Benefit::PointsMultiplier { .. }
        | Benefit::PointsPayment { .. } => {}
    }
    Ok(())
}

/// Points of a points benefit reaching the lines of `mask` (lines that earn): per line into
/// `out` (zeroed, only the lines of `mask` written), and the points not tied to a line as the
/// result. `base` is the base earn per line.
pub(super) fn points(
    benefit: &Benefit,
    mask: Lines,
    net: &[i64],
    base: &[i64],
    out: &mut [i64],
) -> Result<i64, SkipReason> {
    if !benefit.is_points() {
        return Ok(0);
    }
    if !mask.any() {
        return Err(SkipReason::NoMatchingItems);
    }
    match benefit {
        Benefit::BonusPoints {
            points,
            per_spend_minor,
            ..
        } => match per_spend_minor {
            None => Ok((*points).max(0)),
            Some(step) => {
                per_spend(mask, net, *points, *step, 10_000, out);
                Ok(0)
            }
        },
        Benefit::SpendPoints {
            points,
            per_spend_minor,
            multiplier_basis_points,
            ..
        } => {
            if per_spend(
                mask,
                net,
                *points,
                *per_spend_minor,
                *multiplier_basis_points,
                out,
            ) == 0
            {
                return Err(SkipReason::ThresholdNotReached);
            }
            Ok(0)
        }
        Benefit::PointsMultiplier {
            multiplier_basis_points,
            ..
        } => {
            let extra = i64::from(*multiplier_basis_points)
                .saturating_sub(10_000)
                .max(0);
            for i in mask.iter() {
                out[i] = mul_div(base[i].max(0), extra, 10_000);
            }
            Ok(0)
        }
        _ => Ok(0),
    }
}

/// Points per full `step` of the total net amount of the lines of `mask`, times
/// `multiplier_bp` / 10000 (floor), shared over those lines in proportion to their net amounts
/// (floor, the remainder one point at a time to the lines in index order). Writes `out[i]` for
/// the lines of `mask`; returns the points earned.
fn per_spend(
    mask: Lines,
    net: &[i64],
    points: i64,
    step: i64,
    multiplier_bp: u32,
    out: &mut [i64],
) -> i64 {
    if step <= 0 || points <= 0 {
        return 0;
    }
    let total = mask
        .iter()
        .fold(0i64, |s, i| s.saturating_add(net[i].max(0)));
    let steps = i128::from(total / step);
    let earned = (steps * i128::from(points) * i128::from(multiplier_bp) / 10_000)
        .clamp(0, i128::from(i64::MAX)) as i64;
    let mut left = earned;
    for i in mask.iter() {
        out[i] = mul_div(net[i].max(0), earned, total);
        left -= out[i];
    }
    // Fewer than one point per line is left; lines with a zero net get none.
    for i in mask.iter() {
        if left <= 0 {
            break;
        }
        if net[i] > 0 {
            out[i] += 1;
            left -= 1;
        }
    }
    earned
}

/// What a points payment benefit lets the customer pay on lines costing `net`:
/// (max points, their value, the points of the lines payable only with points); `None` for
/// another benefit or when not even one step is payable.
pub(super) fn points_payable(
    benefit: &Benefit,
    lines: &[CartLine],
    net: &[i64],
) -> Option<(i64, i64, i64)> {
    let Benefit::PointsPayment {
        points_per_step: p,
        value_per_step_minor: v,
        max_points,
        max_cart_basis_points,
    } = benefit
    else {
        return None;
    };
    let (p, v) = (*p, *v);
    if p <= 0 || v <= 0 {
        return None;
    }
    let sum = |only: bool| {
        lines
            .iter()
            .zip(net)
            .filter(|(l, _)| !l.no_reward_application && l.pay_only_with_points == only)
            .fold(0i64, |s, (_, n)| s.saturating_add((*n).max(0)))
    };
    let (only, others) = (sum(true), sum(false));
    let bp = match *max_cart_basis_points {
        0 => 10_000,
        b => i64::from(b.min(10_000)),
    };
    let others_cap = mul_div(others, bp, 10_000);
    // Points-only lines are paid in full: their last step is rounded up.
    let only_steps = only / v + i64::from(only % v != 0);
    let mut steps = only_steps.saturating_add(others_cap / v);
    if let Some(m) = max_points {
        steps = steps.min((*m).max(0) / p);
    }
    if steps <= 0 {
        return None;
    }
    let points = steps.saturating_mul(p);
    let value = steps.saturating_mul(v).min(only.saturating_add(others_cap));
    Some((points, value, only_steps.min(steps).saturating_mul(p)))
}

/// A code for the benefit, used as the reason of a line discount.
pub(super) fn code(benefit: &Benefit) -> &'static str {
    match benefit {
        Benefit::PercentageDiscount { .. } => "PERCENTAGE_DISCOUNT",
        Benefit::FixedDiscount { .. } => "FIXED_DISCOUNT",
        Benefit::FixedPrice { .. } => "FIXED_PRICE",
        Benefit::UnitDiscount { off, .. } => match off {
            UnitOff::BasisPoints(_) => "PERCENTAGE_DISCOUNT",
            UnitOff::AmountMinor(_) => "UNIT_AMOUNT_DISCOUNT",
            UnitOff::PriceMinor(_) => "FIXED_PRICE",
        },
        Benefit::FreeItem { .. } => "FREE_ITEM",
        Benefit::BuyXGetY { .. } => "BUY_X_GET_Y",
        Benefit::SpendXSaveY { .. } => "SPEND_X_SAVE_Y",
        Benefit::BonusPoints { .. } | Benefit::SpendPoints { .. } => "BONUS_POINTS",
        Benefit::PointsMultiplier { .. } => "POINTS_MULTIPLIER",
        Benefit::PointsPayment { .. } => "POINTS_PAYMENT",
    }
}

/// A sentence saying what the benefit gives.
pub(super) fn describe(benefit: &Benefit) -> String {
    let money = |m: i64| format!("{}.{:02}", m / 100, (m % 100).abs());
    let pct = |bp: u32| {
        if bp.is_multiple_of(100) {
            format!("{} %", bp / 100)
        } else {
            format!("{}.{:02} %", bp / 100, bp % 100)
        }
    };
    match benefit {
        Benefit::PercentageDiscount {
            basis_points,
            target,
        } => format!("{} off {}", pct(*basis_points), target.describe()),
        Benefit::FixedDiscount {
            amount_minor,
            target,
        } => format!("{} off {}", money(*amount_minor), target.describe()),
        Benefit::FixedPrice {
            unit_price_minor,
            target,
        } => format!(
            "{} for each unit of {}",
            money(*unit_price_minor),
            target.describe()
        ),
        Benefit::UnitDiscount {
            off,
            max_units,
            target,
        } => {
            let what = match off {
                UnitOff::BasisPoints(bp) => format!("{} off each unit of", pct(*bp)),
                UnitOff::AmountMinor(a) => format!("{} off each unit of", money(*a)),
                UnitOff::PriceMinor(p) => format!("{} for each unit of", money(*p)),
            };
            match max_units {
                None => format!("{what} {}", target.describe()),
                Some(m) => format!(
                    "{what} {}, at most {m} units (the dearest first)",
                    target.describe()
                ),
            }
        }
        Benefit::FreeItem {
            product_id,
            quantity,
        } => format!("{quantity} × {product_id} free"),
        Benefit::BuyXGetY {
            buy,
            get,
            discount_basis_points,
            target,
        } => format!(
            "buy {buy} get {get} at {} off of {}",
            pct(*discount_basis_points),
            target.describe()
        ),
        Benefit::SpendXSaveY {
            spend_minor,
            save_minor,
            repeat,
            target,
        } => format!(
            "spend {} on {}, save {}{}",
            money(*spend_minor),
            target.describe(),
            money(*save_minor),
            if *repeat { " per step" } else { "" }
        ),
        Benefit::BonusPoints {
            points,
            per_spend_minor,
            target,
        } => match per_spend_minor {
            None => format!("{points} bonus points for buying {}", target.describe()),
            Some(s) => format!(
                "{points} bonus points per {} spent on {}",
                money(*s),
                target.describe()
            ),
        },
        Benefit::SpendPoints {
            points,
            per_spend_minor,
            multiplier_basis_points,
            target,
        } => {
            let times = if *multiplier_basis_points == 10_000 {
                String::new()
            } else {
                format!(
                    " ×{}.{:02}",
                    multiplier_basis_points / 10_000,
                    multiplier_basis_points % 10_000 / 100
                )
            };
            format!(
                "{points} bonus points per {} spent on {}{times}",
                money(*per_spend_minor),
                target.describe()
            )
        }
        Benefit::PointsPayment {
            points_per_step,
            value_per_step_minor,
            max_points,
            max_cart_basis_points,
        } => {
            let mut out = format!(
                "pay with points: {points_per_step} points = {}",
                money(*value_per_step_minor)
            );
            if *max_cart_basis_points > 0 && *max_cart_basis_points < 10_000 {
                out.push_str(&format!(
                    ", up to {} of the cart",
                    pct(*max_cart_basis_points)
                ));
            }
            if let Some(m) = max_points {
                out.push_str(&format!(", at most {m} points"));
            }
            out
        }
        Benefit::PointsMultiplier {
            multiplier_basis_points,
            target,
        } => format!(
            "points ×{}.{:02} on {}",
            multiplier_basis_points / 10_000,
            multiplier_basis_points % 10_000 / 100,
            target.describe()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_gives_the_remainder_to_the_first_lines_and_never_more_than_a_line() {
        let split_all = |amount: i64, base: &[i64]| {
            let all = [(1u64 << base.len()) - 1];
            let mut out = vec![0; base.len()];
            split(amount, Lines(&all), |i| base[i], &mut out);
            out
        };
        assert_eq!(split_all(10, &[1, 1, 1]), vec![1, 1, 1]);
        assert_eq!(split_all(2, &[1, 1, 1]), vec![1, 1, 0]);
        assert_eq!(split_all(7, &[10, 10]), vec![4, 3]);
        assert_eq!(split_all(5, &[0, 0]), vec![0, 0]);
        // Lines outside the set get nothing and are not written.
        let mut out = vec![-1; 3];
        split(6, Lines(&[0b101]), |_| 10, &mut out);
        assert_eq!(out, vec![3, -1, 3]);
    }

    #[test]
    fn get_positions_counts_the_last_units_of_each_set() {
        // buy 2 get 1: positions 2, 5, 8 …
        assert_eq!(get_positions(3, 2, 1), 1);
        assert_eq!(get_positions(5, 2, 1), 1);
        assert_eq!(get_positions(6, 2, 1), 2);
        assert_eq!(get_positions(0, 2, 1), 0);
    }
}

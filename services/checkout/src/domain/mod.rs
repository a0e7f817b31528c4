//! Checkout rules: pricing a cart with the customer's benefits, and the receipt of a purchase.
//! Pure functions over plain data; every amount is an integer in minor units.
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLine {
    pub line_id: String,
    pub product_id: String,
    pub product_group_ids: Vec<String>,
    pub brand_id: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cart {
    pub currency_code: String,
    pub lines: Vec<CartLine>,
}

/// Largest cart a POS may send.
pub const MAX_LINES: usize = 500;
/// Largest amount of one line or cart, in minor units (keeps every sum far from overflow).
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;

/// One invalid cart field, relative to the cart (e.g. `lines[0].quantity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartViolation {
    pub field: String,
    pub reason: String,
}

impl Cart {
    /// Checks the cart; every problem is reported, not only the first.
    pub fn validate(&self) -> Vec<CartViolation> {
        let mut out = Vec::new();
        let mut bad = |field: String, reason: &str| {
            out.push(CartViolation {
                field,
                reason: reason.to_owned(),
            })
        };
        if !(self.currency_code.len() == 3
            && self.currency_code.chars().all(|c| c.is_ascii_uppercase()))
        {
            bad(
                "currency_code".into(),
                "must be an ISO 4217 code such as EUR",
            );
        }
        if self.lines.is_empty() {
            bad("lines".into(), "at least one line is required");
        } else if self.lines.len() > MAX_LINES {
            bad("lines".into(), "at most 500 lines");
        }
        let mut ids = HashSet::new();
        let mut total: i64 = 0;
        for (i, l) in self.lines.iter().enumerate() {
            let f = |name: &str| format!("lines[{i}].{name}");
            if l.line_id.is_empty() || l.line_id.chars().count() > 64 {
                bad(f("line_id"), "must be 1..64 characters");
            } else if !ids.insert(l.line_id.as_str()) {
                bad(f("line_id"), "must be unique within the cart");
            }
            if l.product_id.trim().is_empty() || l.product_id.chars().count() > 128 {
                bad(f("product_id"), "must be 1..128 characters");
            }
            if l.quantity <= 0 {
                bad(f("quantity"), "must be greater than 0");
            }
            if l.unit_price_minor < 0 {
                bad(f("unit_price_minor"), "must not be negative");
            }
            match l.quantity.checked_mul(l.unit_price_minor) {
                Some(g) if g <= MAX_AMOUNT_MINOR => total = total.saturating_add(g.max(0)),
                _ if l.quantity > 0 && l.unit_price_minor >= 0 => {
                    bad(f("unit_price_minor"), "quantity × unit price is too large")
                }
                _ => {}
            }
        }
        if total > MAX_AMOUNT_MINOR {
            bad("lines".into(), "the cart total is too large");
        }
        out
    }

    pub fn gross_minor(&self) -> i64 {
        self.lines
            .iter()
            .map(|l| l.quantity * l.unit_price_minor)
            .sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BenefitType {
    Reward,
    PurchaseBonus,
}

impl BenefitType {
    pub fn as_str(self) -> &'static str {
        match self {
            BenefitType::Reward => "reward",
            BenefitType::PurchaseBonus => "purchase_bonus",
        }
    }
}

/// What a reward gives at the cash desk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RewardBenefit {
    /// A percentage off the whole cart, in basis points (1..=10000).
    CartPercentage { basis_points: u32 },
}

/// Validity window: `from` inclusive, `until` exclusive, open where unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl Validity {
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.from.is_none_or(|f| f <= t) && self.until.is_none_or(|u| t < u)
    }
}

/// Eligibility by segment: empty = every customer.
fn eligible(segment_ids: &[Uuid], memberships: &HashSet<Uuid>) -> bool {
    segment_ids.is_empty() || segment_ids.iter().any(|s| memberships.contains(s))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reward {
    pub id: Uuid,
    pub name: String,
    pub benefit: RewardBenefit,
    pub segment_ids: Vec<Uuid>,
    pub validity: Validity,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseBonus {
    pub id: Uuid,
    pub name: String,
    /// Points per `spend_amount_minor` spent.
    pub points: i64,
    pub spend_amount_minor: i64,
    /// Multiplier in basis points (10000 = ×1).
    pub multiplier_basis_points: i32,
    pub currency_code: String,
    pub segment_ids: Vec<Uuid>,
    pub validity: Validity,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discount {
    pub benefit_type: BenefitType,
    pub benefit_id: Uuid,
    pub benefit_name: String,
    pub amount_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedLine {
    pub line_id: String,
    pub product_id: String,
    #[serde(default)]
    pub product_group_ids: Vec<String>,
    #[serde(default)]
    pub brand_id: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
    pub gross_minor: i64,
    pub discounts: Vec<Discount>,
    pub net_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub currency_code: String,
    pub gross_minor: i64,
    pub discount_minor: i64,
    pub net_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedBenefit {
    pub benefit_type: BenefitType,
    pub benefit_id: Uuid,
    pub benefit_name: String,
    pub discount_minor: i64,
    pub points: i64,
}

/// A priced cart: what Evaluate answers and what Commit records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pricing {
    pub lines: Vec<PricedLine>,
    pub totals: Totals,
    pub applied: Vec<AppliedBenefit>,
    pub points_to_earn: i64,
}

/// Splits `total` over lines in proportion to `weights` (largest remainder), so the parts add
/// up to `total` exactly and no part exceeds its weight when `total <= sum(weights)`.
fn allocate(total: i64, weights: &[i64]) -> Vec<i64> {
    let base: i128 = weights.iter().map(|w| i128::from(*w)).sum();
    if base == 0 || total == 0 {
        return vec![0; weights.len()];
    }
    let mut parts = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    let mut given: i64 = 0;
    for (i, w) in weights.iter().enumerate() {
        let exact = i128::from(*w) * i128::from(total);
        let part = (exact / base) as i64;
        parts.push(part);
        remainders.push((exact % base, i));
        given += part;
    }
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (rem, i) in remainders {
        if given >= total {
            break;
        }
        if rem > 0 {
            parts[i] += 1;
            given += 1;
        }
    }
    parts
}

/// Prices `cart` for a customer in `memberships`: cash-desk rewards apply in id order, each
/// on what is left after the previous ones; purchase bonuses add points on the amount paid.
pub fn price(
    cart: &Cart,
    memberships: &HashSet<Uuid>,
    rewards: &[Reward],
    bonuses: &[PurchaseBonus],
    now: DateTime<Utc>,
) -> Pricing {
    let mut lines: Vec<PricedLine> = cart
        .lines
        .iter()
        .map(|l| {
            let gross = l.quantity * l.unit_price_minor;
            PricedLine {
                line_id: l.line_id.clone(),
                product_id: l.product_id.clone(),
                product_group_ids: l.product_group_ids.clone(),
                brand_id: l.brand_id.clone(),
                quantity: l.quantity,
                unit_price_minor: l.unit_price_minor,
                gross_minor: gross,
                discounts: Vec::new(),
                net_minor: gross,
            }
        })
        .collect();
    let mut applied = Vec::new();

    let mut active: Vec<&Reward> = rewards
        .iter()
        .filter(|r| r.validity.contains(now) && eligible(&r.segment_ids, memberships))
        .collect();
    active.sort_by_key(|r| r.id);
    for reward in active {
        let RewardBenefit::CartPercentage { basis_points } = reward.benefit;
        let base: i64 = lines.iter().map(|l| l.net_minor).sum();
        let total = (i128::from(base) * i128::from(basis_points.min(10_000)) / 10_000) as i64;
        if total <= 0 {
            continue;
        }
        let weights: Vec<i64> = lines.iter().map(|l| l.net_minor).collect();
        for (line, amount) in lines.iter_mut().zip(allocate(total, &weights)) {
            if amount > 0 {
                line.net_minor -= amount;
                line.discounts.push(Discount {
                    benefit_type: BenefitType::Reward,
                    benefit_id: reward.id,
                    benefit_name: reward.name.clone(),
                    amount_minor: amount,
                });
            }
        }
        applied.push(AppliedBenefit {
            benefit_type: BenefitType::Reward,
            benefit_id: reward.id,
            benefit_name: reward.name.clone(),
            discount_minor: total,
            points: 0,
        });
    }

    let gross: i64 = lines.iter().map(|l| l.gross_minor).sum();
    let net: i64 = lines.iter().map(|l| l.net_minor).sum();
    let mut points_to_earn: i64 = 0;
    let mut active_bonuses: Vec<&PurchaseBonus> = bonuses
        .iter()
        .filter(|b| {
            b.currency_code == cart.currency_code
                && b.spend_amount_minor > 0
                && b.validity.contains(now)
                && eligible(&b.segment_ids, memberships)
        })
        .collect();
    active_bonuses.sort_by_key(|b| b.id);
    for bonus in active_bonuses {
        let base = i128::from(net / bonus.spend_amount_minor) * i128::from(bonus.points);
        let points = (base * i128::from(bonus.multiplier_basis_points.max(0)) / 10_000)
            .clamp(0, i128::from(i64::MAX)) as i64;
        if points > 0 {
            points_to_earn = points_to_earn.saturating_add(points);
            applied.push(AppliedBenefit {
                benefit_type: BenefitType::PurchaseBonus,
                benefit_id: bonus.id,
                benefit_name: bonus.name.clone(),
                discount_minor: 0,
                points,
            });
        }
    }

    Pricing {
        lines,
        totals: Totals {
            currency_code: cart.currency_code.clone(),
            gross_minor: gross,
            discount_minor: gross - net,
            net_minor: net,
        },
        applied,
        points_to_earn,
    }
}

/// Where a purchase was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SalesChannel {
    #[default]
    Unspecified,
    Pos,
    Eshop,
    MobileApp,
    Kiosk,
}

impl SalesChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            SalesChannel::Unspecified => "",
            SalesChannel::Pos => "pos",
            SalesChannel::Eshop => "eshop",
            SalesChannel::MobileApp => "mobile_app",
            SalesChannel::Kiosk => "kiosk",
        }
    }
}

/// The answer to Commit, stored with the purchase so that every retry gets it unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub purchase_id: Uuid,
    pub transaction_id: String,
    pub customer_id: Uuid,
    pub business_unit_id: String,
    pub channel: SalesChannel,
    /// When the purchase happened at the POS.
    pub purchase_time: DateTime<Utc>,
    pub pricing: Pricing,
    pub points_earned: i64,
    pub points_balance: i64,
    pub committed_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(id: &str, qty: i64, price: i64) -> CartLine {
        CartLine {
            line_id: id.into(),
            product_id: format!("sku-{id}"),
            product_group_ids: vec![],
            brand_id: String::new(),
            quantity: qty,
            unit_price_minor: price,
        }
    }

    fn cart(lines: Vec<CartLine>) -> Cart {
        Cart {
            currency_code: "EUR".into(),
            lines,
        }
    }

    fn reward(bp: u32, segments: Vec<Uuid>) -> Reward {
        Reward {
            id: Uuid::now_v7(),
            name: "Gold 10 %".into(),
            benefit: RewardBenefit::CartPercentage { basis_points: bp },
            segment_ids: segments,
            validity: Validity::default(),
        }
    }

    fn bonus(points: i64, per: i64) -> PurchaseBonus {
        PurchaseBonus {
            id: Uuid::now_v7(),
            name: "1 point per euro".into(),
            points,
            spend_amount_minor: per,
            multiplier_basis_points: 10_000,
            currency_code: "EUR".into(),
            segment_ids: vec![],
            validity: Validity::default(),
        }
    }

    #[test]
    fn a_segment_reward_discounts_members_only() {
        let gold = Uuid::now_v7();
        let c = cart(vec![line("1", 2, 1000), line("2", 1, 550)]);
        let rewards = [reward(1000, vec![gold])];
        let member = price(&c, &HashSet::from([gold]), &rewards, &[], Utc::now());
        assert_eq!(member.totals.gross_minor, 2550);
        assert_eq!(member.totals.discount_minor, 255);
        assert_eq!(member.totals.net_minor, 2295);
        assert_eq!(member.lines[0].discounts[0].amount_minor, 200);
        assert_eq!(member.lines[1].discounts[0].amount_minor, 55);
        let stranger = price(&c, &HashSet::new(), &rewards, &[], Utc::now());
        assert_eq!(stranger.totals.discount_minor, 0);
        assert!(stranger.applied.is_empty());
    }

    #[test]
    fn purchase_bonus_points_are_counted_on_the_amount_paid() {
        let c = cart(vec![line("1", 1, 2550)]);
        let p = price(
            &c,
            &HashSet::new(),
            &[reward(1000, vec![])],
            &[bonus(1, 100)],
            Utc::now(),
        );
        // 2550 - 255 = 2295 paid → 22 whole euros → 22 points.
        assert_eq!(p.points_to_earn, 22);
        let usd = Cart {
            currency_code: "USD".into(),
            ..c
        };
        assert_eq!(
            price(&usd, &HashSet::new(), &[], &[bonus(1, 100)], Utc::now()).points_to_earn,
            0
        );
    }

    #[test]
    fn a_bonus_multiplier_scales_the_points() {
        let double = PurchaseBonus {
            multiplier_basis_points: 20_000,
            ..bonus(1, 100)
        };
        let p = price(
            &cart(vec![line("1", 1, 1050)]),
            &HashSet::new(),
            &[],
            &[double],
            Utc::now(),
        );
        assert_eq!(p.points_to_earn, 20);
    }

    #[test]
    fn expired_and_future_benefits_do_not_apply() {
        let now = Utc::now();
        let mut r = reward(5000, vec![]);
        r.validity.until = Some(now);
        let mut b = bonus(1, 1);
        b.validity.from = Some(now + chrono::Duration::seconds(1));
        let p = price(
            &cart(vec![line("1", 1, 100)]),
            &HashSet::new(),
            &[r],
            &[b],
            now,
        );
        assert_eq!(p.totals.discount_minor, 0);
        assert_eq!(p.points_to_earn, 0);
    }

    #[test]
    fn cart_validation_names_each_bad_field() {
        let mut bad = cart(vec![line("1", -1, 100), line("1", 1, -5)]);
        bad.currency_code = "eur".into();
        let fields: Vec<_> = bad.validate().into_iter().map(|v| v.field).collect();
        assert_eq!(
            fields,
            [
                "currency_code",
                "lines[0].quantity",
                "lines[1].line_id",
                "lines[1].unit_price_minor"
            ]
        );
        assert!(cart(vec![]).validate().iter().any(|v| v.field == "lines"));
        assert!(
            cart(vec![line("1", i64::MAX, 2)])
                .validate()
                .iter()
                .any(|v| v.field == "lines[0].unit_price_minor")
        );
    }

    #[test]
    fn allocation_adds_up_and_prefers_the_largest_remainders() {
        assert_eq!(allocate(10, &[1, 1, 1]), vec![4, 3, 3]);
        assert_eq!(allocate(0, &[5, 5]), vec![0, 0]);
        assert_eq!(allocate(3, &[0, 0]), vec![0, 0]);
    }

    proptest! {
        #[test]
        fn discounts_add_up_and_never_make_a_line_negative(
            lines in proptest::collection::vec((1i64..50, 0i64..100_000), 1..20),
            bps in proptest::collection::vec(1u32..=10_000, 0..4),
        ) {
            let c = cart(lines.iter().enumerate().map(|(i, (q, p))| line(&i.to_string(), *q, *p)).collect());
            let rewards: Vec<_> = bps.iter().map(|bp| reward(*bp, vec![])).collect();
            let p = price(&c, &HashSet::new(), &rewards, &[bonus(1, 100)], Utc::now());
            let line_discounts: i64 = p.lines.iter().flat_map(|l| &l.discounts).map(|d| d.amount_minor).sum();
            prop_assert_eq!(line_discounts, p.totals.discount_minor);
            prop_assert_eq!(p.totals.gross_minor - p.totals.discount_minor, p.totals.net_minor);
            prop_assert_eq!(p.totals.gross_minor, c.gross_minor());
            for l in &p.lines {
                prop_assert!(l.net_minor >= 0);
                prop_assert_eq!(l.gross_minor - l.discounts.iter().map(|d| d.amount_minor).sum::<i64>(), l.net_minor);
            }
            let applied: i64 = p.applied.iter().map(|a| a.discount_minor).sum();
            prop_assert_eq!(applied, p.totals.discount_minor);
        }
    }
}

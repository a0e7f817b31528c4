//! Checkout rules: the cart, its pricing (as the rewards evaluation gives it), paying with
//! points, quotes, the commit saga and returns. Pure functions over plain data; every amount
//! is an integer in minor units.
pub mod collect;
pub mod credit;
pub mod points;
pub mod quote;
pub mod returns;
pub mod saga;

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
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

/// A discount on a line and the rule that gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discount {
    /// "reward", "purchase_bonus" or "campaign_product".
    pub rule_type: String,
    pub rule_id: Uuid,
    pub rule_name: String,
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
    /// Points the line earns.
    #[serde(default)]
    pub points: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub currency_code: String,
    pub gross_minor: i64,
    pub discount_minor: i64,
    /// What the goods cost after discounts.
    pub net_minor: i64,
    /// Part of `net_minor` paid with points.
    #[serde(default)]
    pub points_payment_minor: i64,
    /// Part of `net_minor` paid with open balance (store credit).
    #[serde(default)]
    pub credit_payment_minor: i64,
}

impl Totals {
    /// What the payments must add up to.
    pub fn amount_due_minor(&self) -> i64 {
        self.net_minor - self.points_payment_minor - self.credit_payment_minor
    }
}

/// A rule that applied to the cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedBenefit {
    pub rule_type: String,
    pub rule_id: Uuid,
    pub rule_name: String,
    pub discount_minor: i64,
    pub points: i64,
    /// The voucher that unlocked it.
    #[serde(default)]
    pub voucher_code: Option<String>,
}

/// A presented voucher that applies: it is redeemed by the commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedVoucher {
    pub code: String,
    pub reward_id: Uuid,
    pub reward_name: String,
    /// The discount its rule gave, minor units (the value consumed from a reward budget).
    pub discount_minor: i64,
    /// Points its rule gave.
    pub points: i64,
}

/// Why a presented voucher does not apply; mirrors checkout's `VoucherRejectionReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    NotFound,
    AlreadyRedeemed,
    Expired,
    NotYetValid,
    Cancelled,
    OtherCustomer,
    ConditionsNotMet,
    NotValidHere,
    Duplicate,
    LimitReached,
    Reserved,
    RewardNotActive,
}

impl Rejection {
    /// Maps a reason code of the rewards evaluation (`VOUCHER_*`, or the reason the voucher's
    /// rule did not apply) to checkout's reason.
    pub fn from_rewards_reason(reason: &str) -> Self {
        match reason {
            "VOUCHER_UNKNOWN" => Rejection::NotFound,
            "VOUCHER_ALREADY_REDEEMED" => Rejection::AlreadyRedeemed,
            "VOUCHER_EXPIRED" => Rejection::Expired,
            "VOUCHER_NOT_YET_VALID" => Rejection::NotYetValid,
            "VOUCHER_CANCELLED" => Rejection::Cancelled,
            "VOUCHER_OTHER_CUSTOMER" => Rejection::OtherCustomer,
            "VOUCHER_NOT_VALID_HERE" | "BUSINESS_UNIT_NOT_INCLUDED" | "CHANNEL_NOT_INCLUDED" => {
                Rejection::NotValidHere
            }
            "VOUCHER_REWARD_ALREADY_PRESENTED" | "DUPLICATE" => Rejection::Duplicate,
            "VOUCHER_LIMIT_PER_PURCHASE" => Rejection::LimitReached,
            "VOUCHER_RESERVED" => Rejection::Reserved,
            "VOUCHER_REWARD_NOT_ACTIVE" | "OUTSIDE_VALIDITY" => Rejection::RewardNotActive,
            _ => Rejection::ConditionsNotMet,
        }
    }

    /// The reason code a failed commit carries for a voucher that does not apply.
    pub fn commit_reason(self) -> &'static str {
        match self {
            Rejection::NotFound => "VOUCHER_UNKNOWN",
            Rejection::AlreadyRedeemed => "VOUCHER_ALREADY_REDEEMED",
            Rejection::Expired => "VOUCHER_EXPIRED",
            Rejection::NotYetValid => "VOUCHER_NOT_YET_VALID",
            Rejection::Cancelled => "VOUCHER_CANCELLED",
            Rejection::OtherCustomer => "VOUCHER_OTHER_CUSTOMER",
            Rejection::ConditionsNotMet => "VOUCHER_CONDITIONS_NOT_MET",
            Rejection::NotValidHere => "VOUCHER_NOT_VALID_HERE",
            Rejection::Duplicate => "VOUCHER_DUPLICATE",
            Rejection::LimitReached => "VOUCHER_LIMIT_PER_PURCHASE",
            Rejection::Reserved => "VOUCHER_RESERVED",
            Rejection::RewardNotActive => "VOUCHER_REWARD_NOT_ACTIVE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedVoucher {
    pub code: String,
    pub reason: Rejection,
    /// The rewards evaluation's own reason code, for the cashier.
    pub detail: String,
}

/// A priced cart: what Evaluate answers, what a quote pins and what Commit records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pricing {
    pub lines: Vec<PricedLine>,
    pub totals: Totals,
    pub applied: Vec<AppliedBenefit>,
    pub points_to_earn: i64,
    #[serde(default)]
    pub vouchers: Vec<AcceptedVoucher>,
    #[serde(default)]
    pub rejected_vouchers: Vec<RejectedVoucher>,
    /// Points paying part of the cart.
    #[serde(default)]
    pub points_payment: Option<points::PointsPayment>,
    /// Most points the customer could pay with on this cart.
    #[serde(default)]
    pub points_spendable: i64,
    /// Open balance paying part of the cart (after the points).
    #[serde(default)]
    pub credit_payment: Option<credit::CreditPayment>,
    /// Most open balance the customer could pay with on this cart.
    #[serde(default)]
    pub credit_spendable_minor: i64,
}

/// What the customer asks to pay with besides the payments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spend<'a> {
    pub points: i64,
    pub credit_minor: i64,
    /// UUID or code of the CREDIT type; empty = chosen by currency.
    pub credit_type: &'a str,
}

/// Fingerprint of what a quote prices: the cart, where and how it is sold, the vouchers, the
/// points and the credit to spend. Commit compares it with its own request's to honour a quote.
pub fn priced_request_hash(
    cart: &Cart,
    business_unit_id: &str,
    channel: SalesChannel,
    voucher_codes: &[String],
    spend: Spend<'_>,
) -> String {
    let mut codes: Vec<String> = voucher_codes
        .iter()
        .map(|c| c.trim().to_uppercase())
        .collect();
    codes.sort();
    let body = serde_json::to_vec(&(
        cart,
        business_unit_id,
        channel,
        codes,
        spend.points,
        spend.credit_minor,
        spend.credit_type.trim(),
    ))
    .unwrap_or_default();
    hex::encode(Sha256::digest(body))
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
    /// Points spent to pay (the points payment and vouchers with a points price).
    #[serde(default)]
    pub points_spent: i64,
    /// Whether the pricing came from the request's quote.
    #[serde(default)]
    pub quote_honoured: bool,
    /// Redeemed vouchers' ids by code.
    #[serde(default)]
    pub voucher_ids: BTreeMap<String, Uuid>,
    /// Points each redeemed voucher cost, by code.
    #[serde(default)]
    pub voucher_points: BTreeMap<String, i64>,
    /// How the customer paid.
    #[serde(default)]
    pub payments: Vec<Payment>,
    /// Open balance of the spent CREDIT wallet after the purchase.
    #[serde(default)]
    pub credit_balance_minor: i64,
}

impl Receipt {
    /// What the purchase earned and how it was paid, for returns' shares.
    pub fn paid(&self) -> returns::Paid {
        returns::Paid {
            points_earned: self.points_earned,
            points_spent: self.pricing.points_payment.map(|p| p.points).unwrap_or(0),
            credit_spent_minor: self.credit_spent_minor(),
            amount_due_minor: self.pricing.totals.amount_due_minor(),
        }
    }

    /// Open balance spent to pay.
    pub fn credit_spent_minor(&self) -> i64 {
        self.pricing
            .credit_payment
            .map(|c| c.amount_minor)
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub method: String,
    pub amount_minor: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_priced_request_hash_ignores_voucher_order_and_case_only() {
        let c = cart(vec![line("1", 1, 100)]);
        let none = Spend::default();
        let codes: Vec<String> = vec!["ab".into(), "CD".into()];
        let hash = |c: &Cart, bu: &str, codes: &[String], spend: Spend<'_>| {
            priced_request_hash(c, bu, SalesChannel::Pos, codes, spend)
        };
        let a = hash(&c, "bu", &codes, none);
        assert_eq!(a, hash(&c, "bu", &["cd".into(), "AB".into()], none));
        assert_ne!(a, hash(&c, "bu", &["AB".into()], none));
        let points = Spend {
            points: 100,
            ..none
        };
        assert_ne!(a, hash(&c, "bu", &codes, points));
        let credit = Spend {
            credit_minor: 100,
            ..none
        };
        assert_ne!(a, hash(&c, "bu", &codes, credit));
        let named = Spend {
            credit_type: "gift",
            ..credit
        };
        assert_ne!(
            hash(&c, "bu", &codes, credit),
            hash(&c, "bu", &codes, named)
        );
        assert_ne!(a, hash(&c, "", &codes, none));
        assert_ne!(a, hash(&cart(vec![line("1", 2, 100)]), "bu", &codes, none));
    }

    #[test]
    fn the_amount_due_is_what_points_and_credit_leave() {
        let t = Totals {
            currency_code: "EUR".into(),
            gross_minor: 1_000,
            discount_minor: 100,
            net_minor: 900,
            points_payment_minor: 200,
            credit_payment_minor: 300,
        };
        assert_eq!(t.amount_due_minor(), 400);
    }

    #[test]
    fn rewards_reasons_map_to_checkout_reasons() {
        assert_eq!(
            Rejection::from_rewards_reason("VOUCHER_UNKNOWN"),
            Rejection::NotFound
        );
        assert_eq!(
            Rejection::from_rewards_reason("NO_MATCHING_ITEMS"),
            Rejection::ConditionsNotMet
        );
        assert_eq!(
            Rejection::from_rewards_reason("VOUCHER_RESERVED").commit_reason(),
            "VOUCHER_RESERVED"
        );
    }
}

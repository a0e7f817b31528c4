//! Protobuf ↔ domain, and the checks of what POS gateways send.
use loyalty_platform::{Violations, time::to_timestamp};
use loyalty_proto::{checkout::v1 as pb, rewards::v1 as rewards, types::v1 as types};

use crate::domain::{
    AppliedBenefit, Cart, CartLine, Discount, PricedLine, Receipt, RejectedVoucher, Rejection,
    SalesChannel, Totals,
};

/// Vouchers one call may present.
pub const MAX_VOUCHER_CODES: usize = 20;

pub fn validate_identifier(v: &mut Violations, identifier: Option<&types::IdentifierRef>) {
    match identifier {
        None => v.add("identifier", "is required"),
        Some(i) => {
            if matches!(
                types::IdentifierType::try_from(i.r#type),
                Err(_) | Ok(types::IdentifierType::Unspecified)
            ) {
                v.add("identifier.type", "must be a known identifier type");
            }
            if i.value.trim().is_empty() {
                v.add("identifier.value", "is required");
            } else if i.value.chars().count() > 128 {
                v.add("identifier.value", "must be at most 128 characters");
            }
        }
    }
}

pub fn validate_codes(v: &mut Violations, codes: &[String]) {
    if codes.len() > MAX_VOUCHER_CODES {
        v.add("voucher_codes", "at most 20 codes");
    }
    for (i, c) in codes.iter().enumerate() {
        if c.trim().is_empty() || c.chars().count() > 64 {
            v.add(format!("voucher_codes[{i}]"), "must be 1..64 characters");
        }
    }
}

pub fn validate_points(v: &mut Violations, points: i64) {
    if !(0..=1_000_000_000).contains(&points) {
        v.add("points_to_spend", "must be 0..1000000000");
    }
}

/// The open balance to spend: at most what a cart may cost.
pub fn validate_credit(v: &mut Violations, credit_minor: i64, credit_type: &str) {
    if !(0..=crate::domain::MAX_AMOUNT_MINOR).contains(&credit_minor) {
        v.add("credit_to_spend_minor", "must be 0..1000000000000");
    }
    if credit_type.chars().count() > 64 {
        v.add("credit_type_id", "must be at most 64 characters");
    }
}

pub fn validate_business_unit(v: &mut Violations, business_unit_id: &str) {
    if business_unit_id.chars().count() > 64 {
        v.add("business_unit_id", "must be at most 64 characters");
    }
}

pub fn cart_from_proto(v: &mut Violations, cart: Option<&types::Cart>) -> Option<Cart> {
    let Some(c) = cart else {
        v.add("cart", "is required");
        return None;
    };
    let cart = Cart {
        currency_code: c.currency_code.clone(),
        lines: c
            .lines
            .iter()
            .map(|l| CartLine {
                line_id: l.line_id.clone(),
                product_id: l.product_id.clone(),
                product_group_ids: l.product_group_ids.clone(),
                brand_id: l.brand_id.clone(),
                quantity: l.quantity,
                unit_price_minor: l.unit_price_minor,
            })
            .collect(),
    };
    let violations = cart.validate();
    let ok = violations.is_empty();
    for violation in violations {
        v.add(format!("cart.{}", violation.field), violation.reason);
    }
    ok.then_some(cart)
}

/// The cart as the rewards evaluation takes it. The POS's group and brand are catalogue
/// codes; when it sends none, rewards fills them from the catalogue.
pub fn evaluation_lines(cart: &Cart) -> Vec<rewards::EvaluationLine> {
    cart.lines
        .iter()
        .map(|l| rewards::EvaluationLine {
            product_code: l.product_id.clone(),
            quantity: l.quantity,
            unit_price_minor: l.unit_price_minor,
            product_group_code: l.product_group_ids.first().cloned().unwrap_or_default(),
            brand_code: l.brand_id.clone(),
            ..Default::default()
        })
        .collect()
}

fn discount_to_proto(d: &Discount) -> pb::LineDiscount {
    pb::LineDiscount {
        benefit_type: d.rule_type.clone(),
        benefit_id: d.rule_id.to_string(),
        benefit_display_name: d.rule_name.clone(),
        amount_minor: d.amount_minor,
    }
}

pub fn line_to_proto(l: &PricedLine) -> pb::PricedLine {
    pb::PricedLine {
        line_id: l.line_id.clone(),
        product_id: l.product_id.clone(),
        quantity: l.quantity,
        unit_price_minor: l.unit_price_minor,
        gross_amount_minor: l.gross_minor,
        discounts: l.discounts.iter().map(discount_to_proto).collect(),
        net_amount_minor: l.net_minor,
        points: l.points,
    }
}

pub fn totals_to_proto(t: &Totals) -> pb::CartTotals {
    pb::CartTotals {
        currency_code: t.currency_code.clone(),
        gross_amount_minor: t.gross_minor,
        discount_amount_minor: t.discount_minor,
        net_amount_minor: t.net_minor,
        points_payment_minor: t.points_payment_minor,
        amount_due_minor: t.amount_due_minor(),
        credit_payment_minor: t.credit_payment_minor,
    }
}

pub fn applied_to_proto(a: &AppliedBenefit) -> pb::AppliedBenefit {
    pb::AppliedBenefit {
        benefit_type: a.rule_type.clone(),
        benefit_id: a.rule_id.to_string(),
        benefit_display_name: a.rule_name.clone(),
        discount_minor: a.discount_minor,
        points: a.points,
    }
}

fn rejection_to_proto(r: Rejection) -> pb::VoucherRejectionReason {
    use pb::VoucherRejectionReason as P;
    match r {
        Rejection::NotFound => P::NotFound,
        Rejection::AlreadyRedeemed => P::AlreadyRedeemed,
        Rejection::Expired => P::Expired,
        Rejection::NotYetValid => P::NotYetValid,
        Rejection::Cancelled => P::Cancelled,
        Rejection::OtherCustomer => P::OtherCustomer,
        Rejection::ConditionsNotMet => P::ConditionsNotMet,
        Rejection::NotValidHere => P::BusinessUnit,
        Rejection::Duplicate => P::Duplicate,
        Rejection::LimitReached => P::LimitReached,
        Rejection::Reserved => P::Reserved,
        Rejection::RewardNotActive => P::RewardNotActive,
    }
}

pub fn rejected_to_proto(r: &RejectedVoucher) -> pb::RejectedVoucher {
    pb::RejectedVoucher {
        code: r.code.clone(),
        reason: rejection_to_proto(r.reason) as i32,
        message: r.detail.clone(),
    }
}

pub fn receipt_to_proto(r: &Receipt) -> pb::Receipt {
    pb::Receipt {
        purchase_id: r.purchase_id.to_string(),
        transaction_id: r.transaction_id.clone(),
        customer_id: r.customer_id.to_string(),
        lines: r.pricing.lines.iter().map(line_to_proto).collect(),
        totals: Some(totals_to_proto(&r.pricing.totals)),
        applied_benefits: r.pricing.applied.iter().map(applied_to_proto).collect(),
        points_earned: r.points_earned,
        points_balance: r.points_balance,
        commit_time: Some(to_timestamp(r.committed_at)),
        redeemed_vouchers: r
            .pricing
            .vouchers
            .iter()
            .map(|v| pb::RedeemedVoucher {
                code: v.code.clone(),
                voucher_id: r
                    .voucher_ids
                    .get(&v.code)
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
                reward_id: v.reward_id.to_string(),
                reward_display_name: v.reward_name.clone(),
                discount_minor: v.discount_minor,
                points_spent: r.voucher_points.get(&v.code).copied().unwrap_or(0),
            })
            .collect(),
        points_spent: r.points_spent,
        business_unit_id: r.business_unit_id.clone(),
        channel: channel_to_proto(r.channel) as i32,
        purchase_time: Some(to_timestamp(r.purchase_time)),
        quote_honoured: r.quote_honoured,
        credit_spent_minor: r.credit_spent_minor(),
        credit_type_id: r
            .pricing
            .credit_payment
            .map(|c| c.points_type_id.to_string())
            .unwrap_or_default(),
        credit_balance_minor: r.credit_balance_minor,
    }
}

pub fn channel_from_proto(v: i32) -> SalesChannel {
    match types::SalesChannel::try_from(v).unwrap_or_default() {
        types::SalesChannel::Pos => SalesChannel::Pos,
        types::SalesChannel::Eshop => SalesChannel::Eshop,
        types::SalesChannel::MobileApp => SalesChannel::MobileApp,
        types::SalesChannel::Kiosk => SalesChannel::Kiosk,
        types::SalesChannel::Unspecified => SalesChannel::Unspecified,
    }
}

pub fn channel_to_proto(c: SalesChannel) -> types::SalesChannel {
    match c {
        SalesChannel::Pos => types::SalesChannel::Pos,
        SalesChannel::Eshop => types::SalesChannel::Eshop,
        SalesChannel::MobileApp => types::SalesChannel::MobileApp,
        SalesChannel::Kiosk => types::SalesChannel::Kiosk,
        SalesChannel::Unspecified => types::SalesChannel::Unspecified,
    }
}

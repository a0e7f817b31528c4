//! Conversions between the wire types and the domain/store types.
use chrono::{DateTime, Utc};
use loyalty_platform::{
    Violations,
    time::{from_timestamp, to_timestamp},
};
use loyalty_proto::wallet::v1 as pb;
use uuid::Uuid;

use crate::domain::{AccountKind, Cause, PostingKind, ReservationState};
use crate::store::{
    entities::{ledger_postings, lot_allocations, points_lots},
    ledger::{AccountRef, Posting},
    ops::{ReservationView, WalletView},
};

pub fn account_kind_to_proto(k: AccountKind) -> pb::AccountKind {
    use pb::AccountKind as P;
    match k {
        AccountKind::Wallet => P::Wallet,
        AccountKind::Commerce => P::Commerce,
        AccountKind::Reserved => P::Reserved,
        AccountKind::Issuance => P::Issuance,
        AccountKind::Redemption => P::Redemption,
        AccountKind::Expired => P::Expired,
        AccountKind::Payout => P::Payout,
        AccountKind::Adjustment => P::Adjustment,
    }
}

pub fn posting_kind_to_proto(k: PostingKind) -> pb::PostingKind {
    use pb::PostingKind as P;
    match k {
        PostingKind::Award => P::Award,
        PostingKind::Spend => P::Spend,
        PostingKind::Reserve => P::Reserve,
        PostingKind::Capture => P::Capture,
        PostingKind::Release => P::Release,
        PostingKind::Reversal => P::Reversal,
        PostingKind::Adjustment => P::Adjustment,
        PostingKind::Transfer => P::Transfer,
        PostingKind::Redeem => P::Redeem,
        PostingKind::Payout => P::Payout,
        PostingKind::Expiry => P::Expiry,
        PostingKind::Merge => P::Merge,
    }
}

pub fn posting_kind_from_proto(v: i32) -> Option<PostingKind> {
    PostingKind::ALL
        .iter()
        .copied()
        .find(|k| posting_kind_to_proto(*k) as i32 == v)
}

pub fn cause_to_proto(c: Cause) -> pb::PostingCause {
    use pb::PostingCause as P;
    match c {
        Cause::Purchase => P::Purchase,
        Cause::Return => P::Return,
        Cause::Reward => P::Reward,
        Cause::Adjustment => P::Adjustment,
        Cause::Campaign => P::Campaign,
        Cause::Transfer => P::Transfer,
        Cause::Expiry => P::Expiry,
        Cause::Payout => P::Payout,
        Cause::Merge => P::Merge,
        Cause::Other => P::Other,
    }
}

/// A cause from the wire: `None` for UNSPECIFIED (the operation's default); unknown values
/// are reported under `field`.
pub fn cause_from_proto(v: &mut Violations, field: &str, c: i32) -> Option<Cause> {
    if c == 0 {
        return None;
    }
    let found = Cause::ALL
        .iter()
        .copied()
        .find(|k| cause_to_proto(*k) as i32 == c);
    if found.is_none() {
        v.add(field, "is not a known PostingCause");
    }
    found
}

fn account(r: &AccountRef) -> pb::Account {
    pb::Account {
        kind: account_kind_to_proto(r.kind) as i32,
        customer_id: r.customer_id.map(|c| c.to_string()).unwrap_or_default(),
    }
}

fn opt_id(id: Option<Uuid>) -> String {
    id.map(|i| i.to_string()).unwrap_or_default()
}

pub fn posting(p: &Posting) -> pb::Posting {
    pb::Posting {
        id: p.id.to_string(),
        operation_id: p.operation_id.to_string(),
        points_type_id: p.points_type_id.to_string(),
        kind: posting_kind_to_proto(p.kind) as i32,
        cause: cause_to_proto(p.cause) as i32,
        debit: Some(account(&p.debit)),
        credit: Some(account(&p.credit)),
        amount: p.amount,
        reason: p.reason.clone(),
        reference: p.reference.clone(),
        lot_id: opt_id(p.lot.as_ref().map(|(id, _)| *id)),
        allocations: p
            .allocations
            .iter()
            .map(|a| pb::LotAllocation {
                lot_id: a.lot_id.to_string(),
                amount: a.amount,
            })
            .collect(),
        reversed_posting_id: opt_id(p.reversed_posting_id),
        reservation_id: opt_id(p.reservation_id),
        business_unit_id: opt_id(p.business_unit_id),
        create_time: Some(to_timestamp(p.created_at)),
        expire_time: p
            .lot
            .as_ref()
            .and_then(|(_, l)| l.expire_at)
            .map(to_timestamp),
        release_time: p
            .lot
            .as_ref()
            .and_then(|(_, l)| l.release_at)
            .map(to_timestamp),
        payment_method_reference: p.payment_method_reference.clone(),
    }
}

/// A stored posting row (listing), with its allocations and the lot it created.
pub fn posting_row(
    p: &ledger_postings::Model,
    allocations: &[&lot_allocations::Model],
    debit_kind: AccountKind,
    credit_kind: AccountKind,
    lot: Option<&points_lots::Model>,
) -> pb::Posting {
    pb::Posting {
        id: p.id.to_string(),
        operation_id: p.operation_id.to_string(),
        points_type_id: p.points_type_id.to_string(),
        kind: PostingKind::parse_str(&p.kind)
            .map(|k| posting_kind_to_proto(k) as i32)
            .unwrap_or(0),
        cause: Cause::parse_str(&p.cause)
            .map(|c| cause_to_proto(c) as i32)
            .unwrap_or(0),
        debit: Some(pb::Account {
            kind: account_kind_to_proto(debit_kind) as i32,
            customer_id: opt_id(p.debit_customer_id),
        }),
        credit: Some(pb::Account {
            kind: account_kind_to_proto(credit_kind) as i32,
            customer_id: opt_id(p.credit_customer_id),
        }),
        amount: p.amount,
        reason: p.reason.clone(),
        reference: p.reference.clone(),
        lot_id: opt_id(p.lot_id),
        allocations: allocations
            .iter()
            .map(|a| pb::LotAllocation {
                lot_id: a.lot_id.to_string(),
                amount: a.amount,
            })
            .collect(),
        reversed_posting_id: opt_id(p.reversed_posting_id),
        reservation_id: opt_id(p.reservation_id),
        business_unit_id: opt_id(p.business_unit_id),
        create_time: Some(to_timestamp(p.created_at)),
        expire_time: lot.and_then(|l| l.expire_at).map(to_timestamp),
        release_time: lot.and_then(|l| l.release_at).map(to_timestamp),
        payment_method_reference: p.payment_method_reference.clone(),
    }
}

pub fn wallet(w: &WalletView) -> pb::Wallet {
    pb::Wallet {
        customer_id: w.customer_id.to_string(),
        points_type_id: w.points_type_id.to_string(),
        points_type_code: w.points_type_code.clone(),
        available: w.available,
        pending: w.pending,
        reserved: w.reserved,
        commerce: w.commerce,
        payable: w.payable,
        next_expirations: w
            .next_expirations
            .iter()
            .map(|(t, a)| pb::Expiration {
                expire_time: Some(to_timestamp(*t)),
                amount: *a,
            })
            .collect(),
        lifetime_earned: w.lifetime_earned,
        blocked_from_spending: w.block_reason.is_some(),
        block_reason: w.block_reason.clone().unwrap_or_default(),
        create_time: w.create_time.map(to_timestamp),
        update_time: w.update_time.map(to_timestamp),
        currency_code: w.currency_code.clone(),
    }
}

/// The balance message: every wallet, and the default type's figures at the top level.
pub fn balance(customer_id: Uuid, wallets: &[WalletView]) -> pb::Balance {
    let default = wallets.iter().find(|w| w.is_default_type);
    let next = default.and_then(|w| w.next_expirations.first());
    pb::Balance {
        customer_id: customer_id.to_string(),
        available_points: default.map(|w| w.available).unwrap_or(0),
        pending_points: default.map(|w| w.pending).unwrap_or(0),
        blocked_from_spending: default.is_some_and(|w| w.block_reason.is_some()),
        next_expire_time: next.map(|(t, _)| to_timestamp(*t)),
        next_expire_points: next.map(|(_, a)| *a).unwrap_or(0),
        wallets: wallets.iter().map(wallet).collect(),
    }
}

pub fn reservation(r: &ReservationView) -> pb::Reservation {
    use pb::ReservationState as S;
    pb::Reservation {
        id: r.id.to_string(),
        customer_id: r.customer_id.to_string(),
        points_type_id: r.points_type_id.to_string(),
        amount: r.amount,
        captured_amount: r.captured_amount,
        state: (match r.state {
            ReservationState::Held => S::Held,
            ReservationState::Captured => S::Captured,
            ReservationState::Released => S::Released,
            ReservationState::Expired => S::Expired,
        }) as i32,
        expire_time: Some(to_timestamp(r.expire_at)),
        reference: r.reference.clone(),
        create_time: Some(to_timestamp(r.created_at)),
        settle_time: r.settled_at.map(to_timestamp),
    }
}

pub fn lot(l: &points_lots::Model, kind: AccountKind, now: DateTime<Utc>) -> pb::PointsLot {
    use pb::PointsLotState as S;
    let state = if l.expired_at.is_some() {
        S::Expired
    } else if l.remaining_amount == 0 {
        S::Consumed
    } else if l.release_at.is_some_and(|r| r > now) {
        S::Pending
    } else {
        S::Available
    };
    pb::PointsLot {
        id: l.id.to_string(),
        customer_id: l.customer_id.to_string(),
        points_type_id: l.points_type_id.to_string(),
        original_amount: l.original_amount,
        remaining_amount: l.remaining_amount,
        state: state as i32,
        release_time: l.release_at.map(to_timestamp),
        expire_time: l.expire_at.map(to_timestamp),
        posting_id: l.posting_id.to_string(),
        create_time: Some(to_timestamp(l.created_at)),
        account_kind: account_kind_to_proto(kind) as i32,
        payable: l.payable,
    }
}

/// An optional timestamp field; reported under `field` when out of range.
pub fn time(
    v: &mut Violations,
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Option<DateTime<Utc>> {
    let t = t?;
    let parsed = from_timestamp(t);
    if parsed.is_none() {
        v.add(field, "must be a valid timestamp");
    }
    parsed
}

/// A required UUID field.
pub fn uuid(v: &mut Violations, field: &str, s: &str) -> Uuid {
    match Uuid::try_parse(s) {
        Ok(id) => id,
        Err(_) => {
            v.add(field, "must be a UUID");
            Uuid::nil()
        }
    }
}

/// An optional UUID field (empty = none).
pub fn opt_uuid(v: &mut Violations, field: &str, s: &str) -> Option<Uuid> {
    if s.is_empty() {
        return None;
    }
    let id = uuid(v, field, s);
    (!id.is_nil()).then_some(id)
}

pub fn trial_balance(r: &crate::store::check::Report) -> pb::TrialBalanceResponse {
    pb::TrialBalanceResponse {
        balanced: r.balanced(),
        totals: r
            .totals
            .iter()
            .map(|t| pb::PointsTypeTotal {
                points_type_id: t.points_type_id.to_string(),
                points_type_code: t.code.clone(),
                posting_count: t.postings,
                total_debits: t.debits,
                total_credits: t.credits,
                net: t.net,
            })
            .collect(),
        accounts: r
            .accounts
            .iter()
            .map(|a| pb::AccountBalance {
                points_type_id: a.points_type_id.to_string(),
                account: Some(pb::Account {
                    kind: account_kind_to_proto(a.kind) as i32,
                    customer_id: opt_id(a.customer_id),
                }),
                stored_balance: a.stored,
                derived_balance: a.derived,
            })
            .collect(),
        discrepancies: r.discrepancies.clone(),
        checked_account_count: r.checked_accounts,
        checked_lot_count: r.checked_lots,
    }
}

impl From<crate::store::jobs::ExpiryRun> for pb::ExpirePointsResponse {
    fn from(r: crate::store::jobs::ExpiryRun) -> Self {
        pb::ExpirePointsResponse {
            expired_lot_count: r.lots,
            expired_amount: r.amount,
            expired_reservation_count: r.reservations,
            wallet_count: r.wallets,
            more: r.more,
        }
    }
}

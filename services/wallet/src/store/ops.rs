//! Wallet operations, each in the caller's transaction, with the events they publish. Times
//! come from the caller, so tests drive the clock (FIFO across month ends, pending → available,
//! expiry) without waiting.
use chrono::{DateTime, Duration, Utc};
use loyalty_platform::{ApiError, events};
use loyalty_proto::events::v1 as ev;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::entities::{
    ledger_accounts as accounts, ledger_postings as postings, lot_allocations as allocations,
    points_lots as lots, reservations, spending_blocks as blocks,
};
use super::ledger::{
    self, AccountRef, NewLot, Note, Posting, TypeRow, Wallet, give_back, lock_wallet, resolve_type,
    unit_of,
};
use crate::domain::{AccountKind, Cause, PostingKind, ReservationState, Unit, lots::Take};

/// A wallet's figures at a moment; what RPCs answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletView {
    pub customer_id: Uuid,
    pub points_type_id: Uuid,
    pub points_type_code: String,
    pub currency_code: String,
    pub is_default_type: bool,
    pub available: i64,
    pub pending: i64,
    pub reserved: i64,
    pub commerce: i64,
    pub payable: i64,
    pub next_expirations: Vec<(DateTime<Utc>, i64)>,
    pub lifetime_earned: i64,
    pub block_reason: Option<String>,
    pub create_time: Option<DateTime<Utc>>,
    pub update_time: Option<DateTime<Utc>>,
}

/// How many expirations a wallet view lists.
const EXPIRATIONS_SHOWN: usize = 5;

pub async fn view(conn: &impl ConnectionTrait, w: &Wallet) -> Result<WalletView, ApiError> {
    let wallet = w.account(AccountKind::Wallet);
    Ok(WalletView {
        customer_id: w.customer_id,
        points_type_id: w.ty.id,
        points_type_code: w.ty.code.clone(),
        currency_code: w.ty.currency_code.clone(),
        is_default_type: w.ty.is_default,
        available: w.available(),
        pending: w.pending(),
        reserved: w.reserved(),
        commerce: w.commerce(),
        payable: w.payable(),
        next_expirations: w.next_expirations(EXPIRATIONS_SHOWN),
        lifetime_earned: w
            .accounts
            .values()
            .filter(|a| a.kind != AccountKind::Reserved.as_str())
            .map(|a| a.lifetime_credited)
            .sum(),
        block_reason: w.block(conn).await?,
        create_time: wallet.filter(|a| !a.id.is_nil()).map(|a| a.created_at),
        update_time: wallet.filter(|a| !a.id.is_nil()).map(|a| a.updated_at),
    })
}

/// What an operation posted and the wallet after it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Posted {
    pub postings: Vec<Posting>,
    pub wallet: WalletView,
}

/// Common input of operations on one wallet.
#[derive(Debug, Clone)]
pub struct Target {
    pub partner_id: Uuid,
    pub customer_id: Uuid,
    /// UUID or code; empty = the default type.
    pub points_type: String,
    pub now: DateTime<Utc>,
}

async fn open(txn: &DatabaseTransaction, t: &Target) -> Result<Wallet, ApiError> {
    open_named(txn, t, t.customer_id).await
}

/// Locks `customer_id`'s wallet of the type `t` names. The name is resolved through the type
/// cache; when the row proves stale under the lock and the name now means another type (a new
/// default, a changed code), it is resolved again from the database.
async fn open_named(
    txn: &DatabaseTransaction,
    t: &Target,
    customer_id: Uuid,
) -> Result<Wallet, ApiError> {
    let ty = ledger::resolve_type_cached(txn, t.partner_id, &t.points_type, t.now).await?;
    let w = match open_type(txn, t.partner_id, &ty, customer_id, t.now).await {
        Ok(w) => w,
        Err(e) => {
            // E.g. the cached type was deleted meanwhile.
            ledger::forget_types(t.partner_id);
            return Err(e);
        }
    };
    if !w.type_reloaded {
        return Ok(w);
    }
    ledger::forget_types(t.partner_id);
    if ledger::names_type(&t.points_type, &w.ty) {
        return Ok(w);
    }
    // Not the wallet asked for; keep what settling it posted, whole.
    let mut w = w;
    w.flush(txn).await?;
    let ty = resolve_type(txn, t.partner_id, &t.points_type, t.now).await?;
    open_type(txn, t.partner_id, &ty, customer_id, t.now).await
}

async fn open_type(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    ty: &TypeRow,
    customer_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Wallet, ApiError> {
    let mut w = lock_wallet(txn, partner_id, ty, customer_id, now, Uuid::now_v7()).await?;
    settle_due(txn, &mut w).await?;
    Ok(w)
}

/// Posts what is due on a locked wallet and publishes PointsExpired for the lots it expired.
async fn settle_due(txn: &DatabaseTransaction, w: &mut Wallet) -> Result<Expired, ApiError> {
    let settled_before = w.postings.len();
    let (lots, amount, reservations) = w.settle_due(txn).await?;
    if lots > 0 {
        let first = w.postings[settled_before..]
            .iter()
            .find(|p| p.kind == PostingKind::Expiry)
            .map(|p| p.id)
            .unwrap_or_default();
        events::enqueue(
            txn,
            Some(w.partner_id),
            &ev::PointsExpired {
                customer_id: w.customer_id.to_string(),
                entry_id: first.to_string(),
                points: amount,
                available_points: w.available(),
                points_type_id: w.ty.id.to_string(),
                points_type_code: w.ty.code.clone(),
                lot_count: lots as i32,
            },
        )
        .await?;
    }
    Ok(Expired {
        lots,
        amount,
        reservations,
    })
}

/// Publishes one PointsPosted per customer whose spendable/pending points the postings
/// changed, and flushes the wallet.
async fn finish(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    w: &mut Wallet,
    from: usize,
) -> Result<Posted, ApiError> {
    w.flush(txn).await?;
    let made: Vec<Posting> = w.postings[from..].to_vec();
    publish(txn, partner_id, w, &made).await?;
    Ok(Posted {
        wallet: view(txn, w).await?,
        postings: made,
    })
}

fn holds_points(kind: AccountKind) -> bool {
    matches!(kind, AccountKind::Wallet | AccountKind::Commerce)
}

async fn publish(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    w: &Wallet,
    made: &[Posting],
) -> Result<(), ApiError> {
    let mut change = 0;
    let mut first = None;
    for p in made.iter().filter(|p| p.kind != PostingKind::Expiry) {
        let mut touched = false;
        if p.credit.customer_id == Some(w.customer_id) && holds_points(p.credit.kind) {
            change += p.amount;
            touched = true;
        }
        if p.debit.customer_id == Some(w.customer_id) && holds_points(p.debit.kind) {
            change -= p.amount;
            touched = true;
        }
        if touched && first.is_none() {
            first = Some(p);
        }
    }
    let Some(first) = first else {
        return Ok(());
    };
    events::enqueue(
        txn,
        Some(partner_id),
        &ev::PointsPosted {
            customer_id: w.customer_id.to_string(),
            entry_id: first.id.to_string(),
            points: change,
            available_points: w.available(),
            points_type_id: w.ty.id.to_string(),
            points_type_code: w.ty.code.clone(),
            kind: first.kind.as_str().to_uppercase(),
            cause: first.cause.as_str().to_uppercase(),
            reference: first.reference.clone(),
            pending_points: w.pending(),
            currency_code: w.ty.currency_code.clone(),
        },
    )
    .await?;
    Ok(())
}

fn inactive(ty: &TypeRow) -> ApiError {
    ApiError::precondition(
        "POINTS_TYPE_INACTIVE",
        format!("points type {:?} is inactive", ty.code),
    )
}

/// An award as asked for.
#[derive(Debug, Clone)]
pub struct AwardInput {
    pub amount: i64,
    pub note: Note,
    pub expire_at: Option<DateTime<Utc>>,
    pub release_at: Option<DateTime<Utc>>,
    pub auto_redeem: bool,
}

/// Credits a new lot from the issuance account. A CREDIT award goes to the commerce balance
/// unless auto-redeemed (then to the open balance, payable).
pub async fn award(
    txn: &DatabaseTransaction,
    t: &Target,
    input: AwardInput,
) -> Result<Posted, ApiError> {
    // Points still addressed to a customer merged into another go to the surviving one.
    let customer_id = super::resolve_customer(txn, t.partner_id, t.customer_id).await?;
    let mut w = open_named(txn, t, customer_id).await?;
    let ty = w.ty.clone();
    if !ty.active {
        return Err(inactive(&ty));
    }
    let credit_type = unit_of(&ty) == Unit::Credit;
    if input.auto_redeem && !credit_type {
        return Err(ApiError::invalid(
            "auto_redeem",
            "applies to CREDIT points types only",
        ));
    }
    let from = w.postings.len();
    let issuance = AccountRef {
        id: ledger::system_account(txn, t.partner_id, ty.id, AccountKind::Issuance).await?,
        kind: AccountKind::Issuance,
        customer_id: None,
    };
    let to = if credit_type && !input.auto_redeem {
        AccountKind::Commerce
    } else {
        AccountKind::Wallet
    };
    let lot = NewLot {
        release_at: input
            .release_at
            .or_else(|| w.rules.release_at(t.now))
            .filter(|r| *r > t.now),
        expire_at: input.expire_at.or_else(|| w.rules.expiry.expire_at(t.now)),
        payable: credit_type && input.auto_redeem,
    };
    if let (Some(r), Some(e)) = (lot.release_at, lot.expire_at)
        && e <= r
    {
        return Err(ApiError::invalid(
            "expire_time",
            "must be after the release (the points type's pending period)",
        ));
    }
    w.credit_lot(
        txn,
        PostingKind::Award,
        issuance,
        to,
        input.amount,
        &input.note,
        lot,
    )
    .await?;
    finish(txn, t.partner_id, &mut w, from).await
}

/// Debits available points to the redemption account, FIFO.
pub async fn spend(
    txn: &DatabaseTransaction,
    t: &Target,
    amount: i64,
    note: Note,
) -> Result<Posted, ApiError> {
    let mut w = open(txn, t).await?;
    w.check_can_spend(txn).await?;
    let from = w.postings.len();
    let redemption = system_ref(txn, t.partner_id, &w, AccountKind::Redemption).await?;
    w.debit_fifo(
        txn,
        PostingKind::Spend,
        AccountKind::Wallet,
        redemption,
        amount,
        &note,
        false,
        false,
    )
    .await?;
    finish(txn, t.partner_id, &mut w, from).await
}

async fn system_ref(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    w: &Wallet,
    kind: AccountKind,
) -> Result<AccountRef, ApiError> {
    Ok(AccountRef {
        id: ledger::system_account(txn, partner_id, w.ty.id, kind).await?,
        kind,
        customer_id: None,
    })
}

/// A reservation as stored; what RPCs answer.
pub type Reservation = reservations::Model;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reserved {
    pub reservation: ReservationView,
    pub posted: Posted,
}

/// Serializable copy of a reservation row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationView {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub points_type_id: Uuid,
    pub amount: i64,
    pub captured_amount: i64,
    pub state: ReservationState,
    pub expire_at: DateTime<Utc>,
    pub reference: String,
    pub created_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
}

impl From<&Reservation> for ReservationView {
    fn from(r: &Reservation) -> Self {
        Self {
            id: r.id,
            customer_id: r.customer_id,
            points_type_id: r.points_type_id,
            amount: r.amount,
            captured_amount: r.captured_amount,
            state: ReservationState::parse_str(&r.state).unwrap_or(ReservationState::Held),
            expire_at: r.expire_at,
            reference: r.reference.clone(),
            created_at: r.created_at,
            settled_at: r.settled_at,
        }
    }
}

/// Holds points: wallet → reserved, FIFO; the reservation returns them on its own at
/// `now + ttl` (ttl = the type's default when `None`).
pub async fn reserve(
    txn: &DatabaseTransaction,
    t: &Target,
    amount: i64,
    ttl: Option<Duration>,
    note: Note,
) -> Result<Reserved, ApiError> {
    let mut w = open(txn, t).await?;
    w.check_can_spend(txn).await?;
    let from = w.postings.len();
    let id = Uuid::now_v7();
    let reserved = w.ensure(txn, AccountKind::Reserved).await?;
    let note = Note {
        reservation_id: Some(id),
        ..note
    };
    let p = w
        .debit_fifo(
            txn,
            PostingKind::Reserve,
            AccountKind::Wallet,
            reserved,
            amount,
            &note,
            false,
            false,
        )
        .await?;
    let expire_at = t.now + ttl.unwrap_or_else(|| w.rules.reservation_ttl());
    let row = reservations::Model {
        id,
        partner_id: t.partner_id,
        customer_id: w.customer_id,
        points_type_id: w.ty.id,
        amount,
        captured_amount: 0,
        state: ReservationState::Held.as_str().to_owned(),
        expire_at,
        reference: note.reference.clone(),
        reserve_posting_id: p.id,
        created_at: t.now,
        settled_at: None,
    };
    reservations::Entity::insert(reservations::ActiveModel::from(row.clone()))
        .exec_without_returning(txn)
        .await?;
    events::enqueue(
        txn,
        Some(t.partner_id),
        &ev::PointsReserved {
            customer_id: w.customer_id.to_string(),
            reservation_id: id.to_string(),
            points: amount,
            points_type_id: w.ty.id.to_string(),
            expire_time: Some(loyalty_platform::time::to_timestamp(expire_at)),
            reference: note.reference.clone(),
        },
    )
    .await?;
    w.flush(txn).await?;
    Ok(Reserved {
        reservation: (&row).into(),
        posted: Posted {
            postings: w.postings[from..].to_vec(),
            wallet: view(txn, &w).await?,
        },
    })
}

/// Captures `amount` (0 = all) of a held reservation and releases the rest, or (capture =
/// None) releases it all.
pub async fn settle(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    reservation_id: Uuid,
    capture: Option<i64>,
    note: Note,
    now: DateTime<Utc>,
) -> Result<Reserved, ApiError> {
    let r = find_reservation(txn, partner_id, reservation_id).await?;
    let ty = ledger::find_type(txn, partner_id, &r.points_type_id.to_string())
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("reservation's points type vanished")))?;
    let mut w = open_type(txn, partner_id, &ty, r.customer_id, now).await?;
    // Re-read under the wallet lock: a concurrent capture or the expiry may have settled it.
    let r = find_reservation(txn, partner_id, reservation_id).await?;
    if r.state != ReservationState::Held.as_str() {
        return Err(ApiError::precondition(
            "RESERVATION_NOT_HELD",
            format!("reservation {} is {}", r.id, r.state),
        ));
    }
    let (amount, state) = match capture {
        Some(0) => (r.amount, ReservationState::Captured),
        Some(a) if a > r.amount => {
            return Err(ApiError::invalid(
                "points",
                format!("must be at most the reserved {}", r.amount),
            ));
        }
        Some(a) => (a, ReservationState::Captured),
        None => (0, ReservationState::Released),
    };
    let from = w.postings.len();
    let settled = w.settle_reservation(txn, r, amount, state, &note).await?;
    events::enqueue(
        txn,
        Some(partner_id),
        &ev::PointsReservationSettled {
            customer_id: settled.customer_id.to_string(),
            reservation_id: settled.id.to_string(),
            state: state.as_str().to_uppercase(),
            captured_points: settled.captured_amount,
            released_points: settled.amount - settled.captured_amount,
            points_type_id: settled.points_type_id.to_string(),
        },
    )
    .await?;
    let posted = finish(txn, partner_id, &mut w, from).await?;
    Ok(Reserved {
        reservation: (&settled).into(),
        posted,
    })
}

pub async fn find_reservation(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<Reservation, ApiError> {
    reservations::Entity::find_by_id(id)
        .filter(reservations::Column::PartnerId.eq(partner_id))
        .one(conn)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("reservation {id}")))
}

/// Net amount each lot gave to `posting_ids` (allocations summed per lot, in the order the
/// lots were taken: FIFO).
async fn net_taken(
    conn: &impl ConnectionTrait,
    posting_ids: &[Uuid],
) -> Result<Vec<Take>, ApiError> {
    let rows = allocations::Entity::find()
        .filter(allocations::Column::PostingId.is_in(posting_ids.to_vec()))
        .all(conn)
        .await?;
    let mut order: Vec<Uuid> = Vec::new();
    let mut sums = std::collections::HashMap::<Uuid, i64>::new();
    // Positive takes first in posting order, so give-backs walk them in reverse.
    let mut by_posting: Vec<_> = rows.iter().collect();
    by_posting.sort_by_key(|a| {
        (
            posting_ids.iter().position(|p| *p == a.posting_id),
            a.amount < 0,
        )
    });
    for a in by_posting {
        if !sums.contains_key(&a.lot_id) {
            order.push(a.lot_id);
        }
        *sums.entry(a.lot_id).or_default() += a.amount;
    }
    let net = order
        .into_iter()
        .map(|lot_id| Take {
            lot_id,
            amount: sums[&lot_id],
        })
        .filter(|t| t.amount > 0)
        .collect();
    ledger::in_fifo_order(conn, net).await
}

fn posting_kind(p: &postings::Model) -> Result<PostingKind, ApiError> {
    PostingKind::parse_str(&p.kind).ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!("posting {} has kind {:?}", p.id, p.kind))
    })
}

/// Posts the opposite movement of (part of) a posting. Awards and credit adjustments are taken
/// back from their lot first, then FIFO (overdraft as the type allows); spends, captures and
/// debit adjustments give back to the lots they took from, and what cannot go back to a lot
/// (it paid an overdraft that has been settled since) becomes a new lot.
pub async fn reverse(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    posting_id: Uuid,
    amount: i64,
    note: Note,
    now: DateTime<Utc>,
) -> Result<Posted, ApiError> {
    let original = postings::Entity::find_by_id(posting_id)
        .filter(postings::Column::PartnerId.eq(partner_id))
        .one(txn)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("posting {posting_id}")))?;
    let kind = posting_kind(&original)?;
    let credits_customer =
        original.credit_customer_id.is_some() && original.debit_customer_id.is_none();
    let debits_customer =
        original.debit_customer_id.is_some() && original.credit_customer_id.is_none();
    let reversible = matches!(
        kind,
        PostingKind::Award | PostingKind::Spend | PostingKind::Capture | PostingKind::Adjustment
    );
    if !reversible {
        return Err(ApiError::precondition(
            "NOT_REVERSIBLE",
            format!("{} postings cannot be reversed", kind.as_str()),
        ));
    }
    let customer_id = original
        .credit_customer_id
        .or(original.debit_customer_id)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("posting without a customer")))?;
    let ty = ledger::find_type(txn, partner_id, &original.points_type_id.to_string())
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("posting's points type vanished")))?;
    let mut w = open_type(txn, partner_id, &ty, customer_id, now).await?;
    // Under the wallet lock, so concurrent reversals see each other.
    let earlier: Vec<postings::Model> = postings::Entity::find()
        .filter(postings::Column::ReversedPostingId.eq(posting_id))
        .all(txn)
        .await?;
    let left = original.amount - earlier.iter().map(|p| p.amount).sum::<i64>();
    if left <= 0 {
        return Err(ApiError::precondition(
            "NOTHING_TO_REVERSE",
            format!("posting {posting_id} is already reversed in full"),
        ));
    }
    let amount = if amount == 0 { left } else { amount };
    if amount > left {
        return Err(ApiError::invalid(
            "amount",
            format!("must be at most {left}, what is not yet reversed"),
        ));
    }
    let note = Note {
        reversed_posting_id: Some(posting_id),
        ..note
    };
    let from = w.postings.len();
    let counter_kind = |id: Uuid| async move {
        accounts::Entity::find_by_id(id)
            .one(txn)
            .await?
            .and_then(|a| AccountKind::parse_str(&a.kind))
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("account {id} vanished")))
    };
    if credits_customer {
        // Take back what was credited: from the posting's own lot first.
        let to_kind = counter_kind(original.debit_account_id).await?;
        let to = AccountRef {
            id: original.debit_account_id,
            kind: to_kind,
            customer_id: None,
        };
        let from_kind = counter_kind(original.credit_account_id).await?;
        w.debit_own_lot_first(
            txn,
            PostingKind::Reversal,
            from_kind,
            to,
            amount,
            &note,
            original.lot_id,
        )
        .await?;
    } else if debits_customer || kind == PostingKind::Capture {
        let from_acc = AccountRef {
            id: original.credit_account_id,
            kind: counter_kind(original.credit_account_id).await?,
            customer_id: None,
        };
        // The lots the original took from, net of what earlier reversals gave back.
        let mut sources = vec![posting_id];
        if kind == PostingKind::Capture
            && let Some(rid) = original.reservation_id
        {
            let r = find_reservation(txn, partner_id, rid).await?;
            let releases: Vec<Uuid> = postings::Entity::find()
                .filter(postings::Column::ReservationId.eq(rid))
                .filter(postings::Column::Kind.eq(PostingKind::Release.as_str()))
                .all(txn)
                .await?
                .into_iter()
                .map(|p| p.id)
                .collect();
            sources = vec![r.reserve_posting_id];
            sources.extend(releases);
        }
        sources.extend(earlier.iter().map(|p| p.id));
        let taken = net_taken(txn, &sources).await?;
        let back = give_back(&taken, amount);
        let given: i64 = -back.iter().map(|t| t.amount).sum::<i64>();
        let to_kind = if kind == PostingKind::Capture {
            AccountKind::Wallet
        } else {
            counter_kind(original.debit_account_id).await?
        };
        if given > 0 {
            w.credit_back(
                txn,
                PostingKind::Reversal,
                from_acc,
                to_kind,
                given,
                &note,
                back,
            )
            .await?;
        }
        if amount > given {
            let lot = NewLot {
                release_at: None,
                expire_at: w.rules.expiry.expire_at(now),
                payable: false,
            };
            w.credit_lot(
                txn,
                PostingKind::Reversal,
                from_acc,
                to_kind,
                amount - given,
                &note,
                lot,
            )
            .await?;
        }
    } else {
        return Err(ApiError::precondition(
            "NOT_REVERSIBLE",
            "only postings between a customer and the partner can be reversed",
        ));
    }
    finish(txn, partner_id, &mut w, from).await
}

/// A signed manual correction: credits a new lot from the adjustment account, or debits FIFO
/// to it (overdraft as the type allows).
pub async fn adjust(
    txn: &DatabaseTransaction,
    t: &Target,
    amount: i64,
    expire_at: Option<DateTime<Utc>>,
    note: Note,
) -> Result<Posted, ApiError> {
    let mut w = open(txn, t).await?;
    let from = w.postings.len();
    let adjustment = system_ref(txn, t.partner_id, &w, AccountKind::Adjustment).await?;
    if amount > 0 {
        let lot = NewLot {
            release_at: None,
            expire_at: expire_at.or_else(|| w.rules.expiry.expire_at(t.now)),
            payable: false,
        };
        w.credit_lot(
            txn,
            PostingKind::Adjustment,
            adjustment,
            AccountKind::Wallet,
            amount,
            &note,
            lot,
        )
        .await?;
    } else {
        w.debit_fifo(
            txn,
            PostingKind::Adjustment,
            AccountKind::Wallet,
            adjustment,
            -amount,
            &note,
            true,
            false,
        )
        .await?;
    }
    finish(txn, t.partner_id, &mut w, from).await
}

/// Moves available points from one wallet to another, lot by lot, keeping each lot's expiry.
/// Both wallets are locked in customer-id order so opposite transfers cannot deadlock.
pub async fn transfer(
    txn: &DatabaseTransaction,
    t: &Target,
    to_customer_id: Uuid,
    amount: i64,
    note: Note,
) -> Result<(Posted, WalletView), ApiError> {
    let ty = resolve_type(txn, t.partner_id, &t.points_type, t.now).await?;
    let to_customer_id = super::resolve_customer(txn, t.partner_id, to_customer_id).await?;
    if to_customer_id == t.customer_id {
        return Err(ApiError::invalid(
            "to_customer_id",
            "must be another customer than from_customer_id",
        ));
    }
    let (mut giver, mut receiver) = if t.customer_id < to_customer_id {
        let g = open_type(txn, t.partner_id, &ty, t.customer_id, t.now).await?;
        let r = open_type(txn, t.partner_id, &ty, to_customer_id, t.now).await?;
        (g, r)
    } else {
        let r = open_type(txn, t.partner_id, &ty, to_customer_id, t.now).await?;
        let g = open_type(txn, t.partner_id, &ty, t.customer_id, t.now).await?;
        (g, r)
    };
    giver.check_can_spend(txn).await?;
    let from = giver.postings.len();
    let to = receiver.ensure(txn, AccountKind::Wallet).await?;
    let note = Note {
        cause: note.cause.or(Some(Cause::Transfer)),
        ..note
    };
    giver
        .move_lots_to(
            txn,
            PostingKind::Transfer,
            &mut receiver,
            to,
            amount,
            &note,
            false,
        )
        .await?;
    let posted = finish(txn, t.partner_id, &mut giver, from).await?;
    receiver.reload_lots(txn).await?;
    receiver.flush(txn).await?;
    publish(txn, t.partner_id, &receiver, &posted.postings).await?;
    let to_view = view(txn, &receiver).await?;
    Ok((posted, to_view))
}

/// CRM.COM Redeem: commerce → open (wallet) balance, up to the purchase amount, lot by lot
/// keeping each award's validity.
pub async fn redeem(
    txn: &DatabaseTransaction,
    t: &Target,
    purchase_amount: i64,
    note: Note,
) -> Result<(Posted, i64), ApiError> {
    let mut w = open(txn, t).await?;
    if unit_of(&w.ty) != Unit::Credit {
        return Err(not_credit(&w.ty));
    }
    let from = w.postings.len();
    let amount = purchase_amount.min(w.commerce());
    if amount > 0 {
        let to = w.ensure(txn, AccountKind::Wallet).await?;
        w.move_own_lots(
            txn,
            PostingKind::Redeem,
            AccountKind::Commerce,
            to,
            amount,
            &note,
        )
        .await?;
    }
    Ok((finish(txn, t.partner_id, &mut w, from).await?, amount))
}

fn not_credit(ty: &TypeRow) -> ApiError {
    ApiError::precondition(
        "NOT_A_CREDIT_TYPE",
        format!("points type {:?} is not a CREDIT type", ty.code),
    )
}

/// CRM.COM Payout of payable open balance (0 = all of it) to an external payment method.
pub async fn payout(
    txn: &DatabaseTransaction,
    t: &Target,
    amount: i64,
    note: Note,
) -> Result<(Posted, i64), ApiError> {
    let mut w = open(txn, t).await?;
    if unit_of(&w.ty) != Unit::Credit {
        return Err(not_credit(&w.ty));
    }
    w.check_can_spend(txn).await?;
    let payable = w.payable();
    let amount = if amount == 0 { payable } else { amount };
    if amount <= 0 || amount > payable {
        return Err(ApiError::precondition(
            "INSUFFICIENT_POINTS",
            format!("{} requested but only {payable} is payable", amount.max(1)),
        ));
    }
    let from = w.postings.len();
    let to = system_ref(txn, t.partner_id, &w, AccountKind::Payout).await?;
    let note = Note {
        cause: Some(Cause::Payout),
        ..note
    };
    w.debit_fifo(
        txn,
        PostingKind::Payout,
        AccountKind::Wallet,
        to,
        amount,
        &note,
        false,
        true,
    )
    .await?;
    let posted = finish(txn, t.partner_id, &mut w, from).await?;
    events::enqueue(
        txn,
        Some(t.partner_id),
        &ev::PayoutCompleted {
            customer_id: w.customer_id.to_string(),
            entry_id: posted
                .postings
                .first()
                .map(|p| p.id.to_string())
                .unwrap_or_default(),
            amount: Some(loyalty_proto::types::v1::Money {
                currency_code: w.ty.currency_code.clone(),
                amount_minor: amount,
            }),
            payment_method_reference: note.payment_method_reference.clone(),
            points_type_id: w.ty.id.to_string(),
        },
    )
    .await?;
    Ok((posted, amount))
}

/// Sets (block = Some(reason)) or lifts a spending block on one type (Some) or all (None).
pub async fn set_block(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    customer_id: Uuid,
    points_type_id: Option<Uuid>,
    block: Option<String>,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let type_key = points_type_id.unwrap_or(Uuid::nil());
    match &block {
        Some(reason) => {
            blocks::Entity::insert(blocks::ActiveModel {
                partner_id: Set(partner_id),
                customer_id: Set(customer_id),
                points_type_id: Set(type_key),
                reason: Set(reason.trim().to_owned()),
                created_at: Set(now),
            })
            .on_conflict(
                sea_orm::sea_query::OnConflict::columns([
                    blocks::Column::PartnerId,
                    blocks::Column::CustomerId,
                    blocks::Column::PointsTypeId,
                ])
                .update_column(blocks::Column::Reason)
                .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
            events::enqueue(
                txn,
                Some(partner_id),
                &ev::SpendingBlocked {
                    customer_id: customer_id.to_string(),
                    reason: reason.trim().to_owned(),
                    points_type_id: points_type_id.map(|i| i.to_string()).unwrap_or_default(),
                },
            )
            .await?;
        }
        None => {
            let done = blocks::Entity::delete_many()
                .filter(blocks::Column::PartnerId.eq(partner_id))
                .filter(blocks::Column::CustomerId.eq(customer_id))
                .filter(blocks::Column::PointsTypeId.eq(type_key))
                .exec(txn)
                .await?;
            if done.rows_affected > 0 {
                events::enqueue(
                    txn,
                    Some(partner_id),
                    &ev::SpendingUnblocked {
                        customer_id: customer_id.to_string(),
                        points_type_id: points_type_id.map(|i| i.to_string()).unwrap_or_default(),
                    },
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// Every wallet of a customer (or the one of `points_type`), read without locking.
pub async fn balances(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    only_type: Option<&TypeRow>,
    now: DateTime<Utc>,
) -> Result<Vec<WalletView>, ApiError> {
    let mut q = accounts::Entity::find()
        .filter(accounts::Column::PartnerId.eq(partner_id))
        .filter(accounts::Column::CustomerId.eq(customer_id));
    if let Some(t) = only_type {
        q = q.filter(accounts::Column::PointsTypeId.eq(t.id));
    }
    let rows = q.all(conn).await?;
    let mut type_ids: Vec<Uuid> = rows.iter().map(|a| a.points_type_id).collect();
    if let Some(t) = only_type
        && !type_ids.contains(&t.id)
    {
        type_ids.push(t.id);
    }
    type_ids.sort();
    type_ids.dedup();
    let mut out = Vec::new();
    for type_id in type_ids {
        let Some(ty) = ledger::find_type_cached(conn, partner_id, &type_id.to_string()).await?
        else {
            continue;
        };
        let w = Wallet::read(conn, partner_id, &ty, customer_id, now, &rows).await?;
        out.push(view(conn, &w).await?);
    }
    Ok(out)
}

/// Wallets with something due at `as_of` (lots past expiry with points left, reservations
/// past their hold), up to `limit`: (customer, points type).
pub async fn due_wallets(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Option<Uuid>,
    as_of: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<(Uuid, Uuid)>, ApiError> {
    let mut q = lots::Entity::find()
        .select_only()
        .column(lots::Column::CustomerId)
        .column(lots::Column::PointsTypeId)
        .distinct()
        .filter(lots::Column::PartnerId.eq(partner_id))
        .filter(lots::Column::ExpireAt.lte(as_of))
        .filter(lots::Column::RemainingAmount.gt(0));
    if let Some(c) = customer_id {
        q = q.filter(lots::Column::CustomerId.eq(c));
    }
    let mut due: Vec<(Uuid, Uuid)> = q.limit(limit).into_tuple().all(conn).await?;
    let mut r = reservations::Entity::find()
        .select_only()
        .column(reservations::Column::CustomerId)
        .column(reservations::Column::PointsTypeId)
        .distinct()
        .filter(reservations::Column::PartnerId.eq(partner_id))
        .filter(reservations::Column::State.eq(ReservationState::Held.as_str()))
        .filter(reservations::Column::ExpireAt.lte(as_of));
    if let Some(c) = customer_id {
        r = r.filter(reservations::Column::CustomerId.eq(c));
    }
    due.extend(
        r.limit(limit)
            .into_tuple::<(Uuid, Uuid)>()
            .all(conn)
            .await?,
    );
    due.sort();
    due.dedup();
    due.truncate(limit as usize);
    Ok(due)
}

/// What one wallet's expiry pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expired {
    pub lots: i64,
    pub amount: i64,
    pub reservations: i64,
}

/// Posts what is due on one wallet at `as_of` (in the caller's transaction). Safe to run
/// twice or concurrently: the wallet lock serialises runs and a second finds nothing due.
pub async fn expire_wallet(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    customer_id: Uuid,
    points_type_id: Uuid,
    as_of: DateTime<Utc>,
) -> Result<Expired, ApiError> {
    let Some(ty) = ledger::find_type(txn, partner_id, &points_type_id.to_string()).await? else {
        return Ok(Expired::default());
    };
    let mut w = lock_wallet(txn, partner_id, &ty, customer_id, as_of, Uuid::now_v7()).await?;
    let expired = settle_due(txn, &mut w).await?;
    w.flush(txn).await?;
    Ok(expired)
}

/// Partners with something due at `as_of` (for the scheduled job).
pub async fn partners_with_due(
    conn: &impl ConnectionTrait,
    as_of: DateTime<Utc>,
) -> Result<Vec<Uuid>, ApiError> {
    let mut ids: Vec<Uuid> = lots::Entity::find()
        .select_only()
        .column(lots::Column::PartnerId)
        .distinct()
        .filter(lots::Column::ExpireAt.lte(as_of))
        .filter(lots::Column::RemainingAmount.gt(0))
        .into_tuple()
        .all(conn)
        .await?;
    ids.extend(
        reservations::Entity::find()
            .select_only()
            .column(reservations::Column::PartnerId)
            .distinct()
            .filter(reservations::Column::State.eq(ReservationState::Held.as_str()))
            .filter(reservations::Column::ExpireAt.lte(as_of))
            .into_tuple::<Uuid>()
            .all(conn)
            .await?,
    );
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Postings touching a customer, newest first, filtered.
#[derive(Debug, Clone, Default)]
pub struct PostingFilter {
    pub points_type_id: Option<Uuid>,
    pub kinds: Vec<PostingKind>,
    pub causes: Vec<Cause>,
    pub reference: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub after: Option<(DateTime<Utc>, Uuid)>,
}

pub async fn list_postings(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    f: &PostingFilter,
    limit: u64,
) -> Result<Vec<postings::Model>, ApiError> {
    use sea_orm::Condition;
    let mut q = postings::Entity::find()
        .filter(postings::Column::PartnerId.eq(partner_id))
        .filter(
            Condition::any()
                .add(postings::Column::DebitCustomerId.eq(customer_id))
                .add(postings::Column::CreditCustomerId.eq(customer_id)),
        );
    if let Some(t) = f.points_type_id {
        q = q.filter(postings::Column::PointsTypeId.eq(t));
    }
    if !f.kinds.is_empty() {
        q = q.filter(postings::Column::Kind.is_in(f.kinds.iter().map(|k| k.as_str())));
    }
    if !f.causes.is_empty() {
        q = q.filter(postings::Column::Cause.is_in(f.causes.iter().map(|k| k.as_str())));
    }
    if let Some(r) = &f.reference {
        q = q.filter(postings::Column::Reference.eq(r.clone()));
    }
    if let Some(s) = f.start {
        q = q.filter(postings::Column::CreatedAt.gte(s));
    }
    if let Some(e) = f.end {
        q = q.filter(postings::Column::CreatedAt.lt(e));
    }
    if let Some((t, id)) = f.after {
        q = q.filter(loyalty_platform::paging::older_than(
            postings::Column::CreatedAt,
            postings::Column::Id,
            (t, id),
        ));
    }
    Ok(q.order_by_desc(postings::Column::CreatedAt)
        .order_by_desc(postings::Column::Id)
        .limit(limit)
        .all(conn)
        .await?)
}

/// Allocations of many postings, for listing.
pub async fn allocations_of_many(
    conn: &impl ConnectionTrait,
    posting_ids: Vec<Uuid>,
) -> Result<Vec<allocations::Model>, ApiError> {
    if posting_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(allocations::Entity::find()
        .filter(allocations::Column::PostingId.is_in(posting_ids))
        .all(conn)
        .await?)
}

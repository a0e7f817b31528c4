//! Reversals of awards, spends and captures, and overdraft.
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::{Fixture, TypeSpec, at, invalid_field, posting_of, reason};
use crate::domain::{AccountKind, PostingKind};
use crate::store::ops::Posted;

fn feb() -> Option<DateTime<Utc>> {
    Some(at("2026-02-01T00:00:00Z"))
}

fn mar() -> Option<DateTime<Utc>> {
    Some(at("2026-03-01T00:00:00Z"))
}

fn award_id(p: &Posted) -> Uuid {
    posting_of(p, PostingKind::Award).id
}

#[tokio::test]
async fn an_award_is_reversed_from_its_own_lot_first_in_parts_and_then_no_more() {
    let f = Fixture::postgres().await;
    let now = at("2026-01-10T10:00:00Z");
    let ty = f.points_type(TypeSpec::default(), now).await;
    let c = Uuid::now_v7();
    let t = f.target(c, &ty, now);
    f.award(&t, 50, feb(), None).await.unwrap();
    let second = f.award(&t, 30, mar(), None).await.unwrap();

    // Although February's lot expires first, the reversal takes the award's own points.
    let part = f.reverse(award_id(&second), 10, now).await.unwrap();
    let reversal = posting_of(&part, PostingKind::Reversal);
    assert_eq!(reversal.reversed_posting_id, Some(award_id(&second)));
    assert_eq!(reversal.debit.kind, AccountKind::Wallet);
    assert_eq!(reversal.credit.kind, AccountKind::Issuance);
    assert_eq!(f.open_lots(c, &ty).await, [(50, feb()), (20, mar())]);
    // 0 = whatever is left.
    let rest = f.reverse(award_id(&second), 0, now).await.unwrap();
    assert_eq!(posting_of(&rest, PostingKind::Reversal).amount, 20);
    assert_eq!(f.open_lots(c, &ty).await, [(50, feb())]);
    let err = f.reverse(award_id(&second), 0, now).await.unwrap_err();
    assert_eq!(reason(&err), "NOTHING_TO_REVERSE");
    let err = f.reverse(award_id(&second), 1, now).await.unwrap_err();
    assert_eq!(reason(&err), "NOTHING_TO_REVERSE");

    // More than what is left of an award is refused, and changes nothing.
    let third = f.award(&t, 40, None, None).await.unwrap();
    f.reverse(award_id(&third), 15, now).await.unwrap();
    let err = f.reverse(award_id(&third), 26, now).await.unwrap_err();
    assert_eq!(invalid_field(&err), "amount");
    assert_eq!(f.figures(c, &ty, now).await, [75, 0, 0]);
    // A reversal is not itself reversible; another partner's posting is not found.
    let err = f
        .reverse(posting_of(&rest, PostingKind::Reversal).id, 1, now)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "NOT_REVERSIBLE");
    let err = f
        .other_partner()
        .reverse(award_id(&third), 1, now)
        .await
        .unwrap_err();
    assert!(
        matches!(err, loyalty_platform::ApiError::NotFound(_)),
        "{err:?}"
    );
    f.assert_balanced().await;
}

#[tokio::test]
async fn an_award_partly_spent_is_reversed_from_its_lot_then_fifo() {
    let f = Fixture::postgres().await;
    let now = at("2026-01-10T10:00:00Z");
    let ty = f.points_type(TypeSpec::default(), now).await;
    let c = Uuid::now_v7();
    let t = f.target(c, &ty, now);
    let first = f.award(&t, 30, feb(), None).await.unwrap();
    f.award(&t, 50, mar(), None).await.unwrap();
    f.award(&t, 5, None, None).await.unwrap();
    f.spend(&t, 25).await.unwrap();
    assert_eq!(
        f.open_lots(c, &ty).await,
        [(5, feb()), (50, mar()), (5, None)]
    );
    let back = f.reverse(award_id(&first), 0, now).await.unwrap();
    let takes: Vec<i64> = posting_of(&back, PostingKind::Reversal)
        .allocations
        .iter()
        .map(|t| t.amount)
        .collect();
    assert_eq!(takes, [5, 25]);
    assert_eq!(f.open_lots(c, &ty).await, [(25, mar()), (5, None)]);
    f.assert_balanced().await;
}

#[tokio::test]
async fn a_pending_award_is_reversed_from_its_pending_lot() {
    let f = Fixture::postgres().await;
    let now = at("2026-01-10T10:00:00Z");
    let ty = f
        .points_type(
            TypeSpec {
                pending_days: 7,
                ..TypeSpec::default()
            },
            now,
        )
        .await;
    let c = Uuid::now_v7();
    let awarded = f
        .award(&f.target(c, &ty, now), 40, None, None)
        .await
        .unwrap();
    f.reverse(award_id(&awarded), 15, now).await.unwrap();
    assert_eq!(f.figures(c, &ty, now).await, [0, 25, 0]);
    f.assert_balanced().await;
}

#[tokio::test]
async fn a_spend_is_reversed_back_into_the_lots_it_took() {
    let f = Fixture::postgres().await;
    let now = at("2026-01-10T10:00:00Z");
    let ty = f.points_type(TypeSpec::default(), now).await;
    let c = Uuid::now_v7();
    let t = f.target(c, &ty, now);
    f.award(&t, 30, mar(), None).await.unwrap();
    f.award(&t, 20, feb(), None).await.unwrap();
    let spent = f.spend(&t, 35).await.unwrap();
    let spend = posting_of(&spent, PostingKind::Spend).id;
    assert_eq!(f.open_lots(c, &ty).await, [(15, mar())]);

    // The latest-expiring points come back first.
    let part = f.reverse(spend, 10, now).await.unwrap();
    let reversal = posting_of(&part, PostingKind::Reversal);
    assert_eq!(
        (reversal.debit.kind, reversal.credit.kind),
        (AccountKind::Redemption, AccountKind::Wallet)
    );
    assert!(
        reversal.lot.is_none(),
        "no new lot: the points return to theirs"
    );
    assert_eq!(f.open_lots(c, &ty).await, [(25, mar())]);
    f.reverse(spend, 0, now).await.unwrap();
    assert_eq!(f.open_lots(c, &ty).await, [(20, feb()), (30, mar())]);
    let err = f.reverse(spend, 1, now).await.unwrap_err();
    assert_eq!(reason(&err), "NOTHING_TO_REVERSE");
    assert_eq!(f.figures(c, &ty, now).await, [50, 0, 0]);
    f.assert_balanced().await;
}

#[tokio::test]
async fn a_spend_returned_after_its_lot_expired_gives_points_that_expire_at_once() {
    let f = Fixture::postgres().await;
    let now = at("2026-01-10T10:00:00Z");
    let ty = f.points_type(TypeSpec::default(), now).await;
    let c = Uuid::now_v7();
    let t = f.target(c, &ty, now);
    f.award(&t, 20, feb(), None).await.unwrap();
    f.award(&t, 10, None, None).await.unwrap();
    let spent = f.spend(&t, 20).await.unwrap();
    let later = at("2026-02-10T00:00:00Z");
    f.reverse(posting_of(&spent, PostingKind::Spend).id, 0, later)
        .await
        .unwrap();
    assert_eq!(f.figures(c, &ty, later).await, [10, 0, 0]);
    let run = f.expire(later).await;
    assert_eq!((run.lots, run.amount), (1, 20));
    f.assert_balanced().await;
}

#[tokio::test]
async fn a_capture_is_reversed_back_into_the_lots_it_took() {
    let f = Fixture::postgres().await;
    let now = at("2026-01-10T10:00:00Z");
    let ty = f.points_type(TypeSpec::default(), now).await;
    let c = Uuid::now_v7();
    let t = f.target(c, &ty, now);
    f.award(&t, 30, mar(), None).await.unwrap();
    f.award(&t, 20, feb(), None).await.unwrap();
    let held = f.reserve(&t, 35, None).await.unwrap();
    // Capturing 25 takes February's 20 and 5 of March; 10 go back to March.
    let captured = f.settle(held.reservation.id, Some(25), now).await.unwrap();
    assert_eq!(f.open_lots(c, &ty).await, [(25, mar())]);
    let capture = posting_of(&captured.posted, PostingKind::Capture).id;
    f.reverse(capture, 5, now).await.unwrap();
    assert_eq!(f.open_lots(c, &ty).await, [(30, mar())]);
    let err = f.reverse(capture, 21, now).await.unwrap_err();
    assert_eq!(invalid_field(&err), "amount");
    f.reverse(capture, 20, now).await.unwrap();
    assert_eq!(f.open_lots(c, &ty).await, [(20, feb()), (30, mar())]);
    // Neither reserve nor release postings are reversible.
    let reserve = posting_of(&held.posted, PostingKind::Reserve).id;
    assert_eq!(
        reason(&f.reverse(reserve, 1, now).await.unwrap_err()),
        "NOT_REVERSIBLE"
    );
    assert_eq!(f.figures(c, &ty, now).await, [50, 0, 0]);
    f.assert_balanced().await;
}

#[tokio::test]
async fn overdraft_only_within_the_types_limit_and_the_next_award_pays_it() {
    let f = Fixture::postgres().await;
    let now = at("2026-01-10T10:00:00Z");
    let strict = f.points_type(TypeSpec::default(), now).await;
    let lenient = f
        .points_type(
            TypeSpec {
                code: "lenient",
                overdraft_limit: 40,
                is_default: false,
                ..TypeSpec::default()
            },
            now,
        )
        .await;
    let c = Uuid::now_v7();

    // Without a limit: neither a reversal of spent points nor a debit adjustment overdraws.
    let s = f.target(c, &strict, now);
    let a = f.award(&s, 30, None, None).await.unwrap();
    f.spend(&s, 25).await.unwrap();
    let err = f.reverse(award_id(&a), 30, now).await.unwrap_err();
    assert_eq!(reason(&err), "INSUFFICIENT_POINTS");
    let err = f.adjust(&s, -6, None).await.unwrap_err();
    assert_eq!(reason(&err), "INSUFFICIENT_POINTS");
    assert_eq!(f.figures(c, &strict, now).await, [5, 0, 0]);

    // With a limit of 40: down to -40 and no further; spends never overdraw.
    let l = f.target(c, &lenient, now);
    let a = f.award(&l, 30, None, None).await.unwrap();
    f.spend(&l, 25).await.unwrap();
    let err = f.spend(&l, 6).await.unwrap_err();
    assert_eq!(reason(&err), "INSUFFICIENT_POINTS", "spends never overdraw");
    let back = f.reverse(award_id(&a), 30, now).await.unwrap();
    assert_eq!(back.wallet.available, -25);
    let err = f.adjust(&l, -16, None).await.unwrap_err();
    assert_eq!(reason(&err), "INSUFFICIENT_POINTS");
    let down = f.adjust(&l, -15, None).await.unwrap();
    assert_eq!(down.wallet.available, -40);
    let wallet = f.account(c, &lenient, AccountKind::Wallet).await.unwrap();
    assert_eq!((wallet.balance, wallet.debt), (-40, 40));
    f.assert_balanced().await;

    // The next award pays the debt first, from its own lot.
    let later = now + Duration::days(1);
    let paid = f
        .award(&f.target(c, &lenient, later), 50, None, None)
        .await
        .unwrap();
    let award = posting_of(&paid, PostingKind::Award);
    assert_eq!(
        award
            .allocations
            .iter()
            .map(|t| t.amount)
            .collect::<Vec<_>>(),
        [40]
    );
    assert_eq!(paid.wallet.available, 10);
    assert_eq!(f.open_lots(c, &lenient).await, [(10, None)]);
    let wallet = f.account(c, &lenient, AccountKind::Wallet).await.unwrap();
    assert_eq!((wallet.balance, wallet.debt), (10, 0));
    // Reversing that award takes its 10 left and overdraws again by 40.
    let again = f.reverse(award.id, 0, later).await.unwrap();
    assert_eq!(again.wallet.available, -40);
    f.assert_balanced().await;
}

#[tokio::test]
async fn a_reversed_debit_adjustment_in_overdraft_pays_the_debt_first() {
    let f = Fixture::postgres().await;
    let now = at("2026-01-10T10:00:00Z");
    let ty = f.overdraft_type(100, now).await;
    let c = Uuid::now_v7();
    let t = f.target(c, &ty, now);
    f.award(&t, 10, feb(), None).await.unwrap();
    let debit = f.adjust(&t, -30, None).await.unwrap();
    assert_eq!(debit.wallet.available, -20);
    let debit = posting_of(&debit, PostingKind::Adjustment).id;
    // The 10 taken from February's lot come back first and pay half the debt; the 20 that
    // were overdraft become a lot (with the type's validity) that pays the rest.
    let back = f.reverse(debit, 0, now).await.unwrap();
    assert_eq!(back.wallet.available, 10);
    assert_eq!(back.postings.len(), 2);
    assert_eq!(f.open_lots(c, &ty).await, [(10, None)]);
    let wallet = f.account(c, &ty, AccountKind::Wallet).await.unwrap();
    assert_eq!((wallet.balance, wallet.debt), (10, 0));
    f.assert_balanced().await;
}

/// A wallet of a type allowing 50 of overdraft, 10 in debt.
async fn overdrawn(f: &Fixture, now: DateTime<Utc>) -> (crate::store::ledger::TypeRow, Uuid) {
    let ty = f.overdraft_type(50, now).await;
    let c = Uuid::now_v7();
    f.adjust(&f.target(c, &ty, now), -10, None).await.unwrap();
    let w = f.account(c, &ty, AccountKind::Wallet).await.unwrap();
    assert_eq!((w.balance, w.debt), (-10, 10));
    (ty, c)
}

#[tokio::test]
async fn points_transferred_into_an_overdrawn_wallet_pay_the_debt_before_they_can_expire() {
    let f = Fixture::postgres().await;
    let now = at("2026-01-10T10:00:00Z");
    let (ty, c) = overdrawn(&f, now).await;
    let giver = Uuid::now_v7();
    let tomorrow = now + Duration::days(1);
    f.award(&f.target(giver, &ty, now), 15, Some(tomorrow), None)
        .await
        .unwrap();
    let (posted, to) = f.transfer(&f.target(giver, &ty, now), c, 15).await.unwrap();
    assert_eq!(to.available, 5);
    assert_eq!(
        posting_of(&posted, PostingKind::Transfer).allocations.len(),
        2,
        "the giver's lot, and the receiver's debt paid from the moved lot"
    );
    f.expire(tomorrow).await;
    // Only the 5 left over expired; the debt stays paid.
    assert_eq!(f.figures(c, &ty, tomorrow).await, [0, 0, 0]);
    f.assert_balanced().await;
}

#[tokio::test]
async fn returned_and_released_points_pay_the_debt_first() {
    let f = Fixture::postgres().await;
    let now = at("2026-01-10T10:00:00Z");
    let ty = f.overdraft_type(50, now).await;
    let c = Uuid::now_v7();
    let t = f.target(c, &ty, now);
    f.award(&t, 20, feb(), None).await.unwrap();
    f.award(&t, 20, mar(), None).await.unwrap();
    let spent = f.spend(&t, 30).await.unwrap();
    let held = f.reserve(&t, 10, None).await.unwrap();
    f.adjust(&t, -15, None).await.unwrap();
    let w = f.account(c, &ty, AccountKind::Wallet).await.unwrap();
    assert_eq!((w.balance, w.debt), (-15, 15));
    // The release returns 10: they pay 10 of the debt instead of going back to March.
    f.settle(held.reservation.id, None, now).await.unwrap();
    let w = f.account(c, &ty, AccountKind::Wallet).await.unwrap();
    assert_eq!((w.balance, w.debt), (-5, 5));
    assert_eq!(f.open_lots(c, &ty).await, []);
    // The return of the spend pays the remaining 5 out of February's share, so the points
    // left are the latest-expiring ones.
    f.reverse(posting_of(&spent, PostingKind::Spend).id, 0, now)
        .await
        .unwrap();
    let w = f.account(c, &ty, AccountKind::Wallet).await.unwrap();
    assert_eq!((w.balance, w.debt), (25, 0));
    assert_eq!(f.open_lots(c, &ty).await, [(15, feb()), (10, mar())]);
    f.assert_balanced().await;
}

//! Transfers between customers, and CRM.COM credit: commerce balance, redeem, payout.
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::{Fixture, TypeSpec, at, invalid_field, note, posting_of, reason};
use crate::domain::{AccountKind, PostingKind, Unit, rules::ExpiryRule};
use crate::store::{ledger::TypeRow, ops::AwardInput};

fn feb() -> Option<DateTime<Utc>> {
    Some(at("2026-02-01T00:00:00Z"))
}

fn mar() -> Option<DateTime<Utc>> {
    Some(at("2026-03-01T00:00:00Z"))
}

#[tokio::test]
async fn a_transfer_moves_lots_with_their_expiry() {
    let f = Fixture::postgres().await;
    let now = at("2026-01-10T10:00:00Z");
    let ty = f.points_type(TypeSpec::default(), now).await;
    let (giver, receiver) = (Uuid::now_v7(), Uuid::now_v7());
    let t = f.target(giver, &ty, now);
    f.award(&t, 10, None, None).await.unwrap();
    f.award(&t, 30, mar(), None).await.unwrap();
    f.award(&t, 20, feb(), None).await.unwrap();
    f.award(&f.target(receiver, &ty, now), 1, None, None)
        .await
        .unwrap();

    let (posted, to) = f.transfer(&t, receiver, 35).await.expect("transfer");
    assert_eq!(posted.postings.len(), 2, "one posting per lot");
    assert!(
        posted
            .postings
            .iter()
            .all(|p| p.kind == PostingKind::Transfer
                && p.credit.customer_id == Some(receiver)
                && p.debit.customer_id == Some(giver))
    );
    assert_eq!(posted.wallet.available, 25);
    assert_eq!((to.customer_id, to.available), (receiver, 36));
    assert_eq!(f.open_lots(giver, &ty).await, [(15, mar()), (10, None)]);
    assert_eq!(
        f.open_lots(receiver, &ty).await,
        [(20, feb()), (15, mar()), (1, None)]
    );
    assert_eq!(
        f.wallet(receiver, &ty, now).await.next_expirations,
        [(feb().unwrap(), 20), (mar().unwrap(), 15)]
    );
    f.assert_balanced().await;

    let err = f.transfer(&t, receiver, 26).await.unwrap_err();
    assert_eq!(reason(&err), "INSUFFICIENT_POINTS");
    let err = f.transfer(&t, giver, 1).await.unwrap_err();
    assert_eq!(invalid_field(&err), "to_customer_id");
    // The receiver spends the moved points in their own FIFO order.
    f.spend(&f.target(receiver, &ty, now), 21).await.unwrap();
    assert_eq!(f.open_lots(receiver, &ty).await, [(14, mar()), (1, None)]);
    f.assert_balanced().await;
}

#[tokio::test]
async fn a_blocked_giver_cannot_transfer_but_may_receive() {
    let f = Fixture::postgres().await;
    let now = at("2026-01-10T10:00:00Z");
    let ty = f.points_type(TypeSpec::default(), now).await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    f.award(&f.target(a, &ty, now), 10, None, None)
        .await
        .unwrap();
    f.award(&f.target(b, &ty, now), 10, None, None)
        .await
        .unwrap();
    f.block(a, Some(ty.id), Some("chargeback"), now).await;
    assert_eq!(
        f.wallet(a, &ty, now).await.block_reason.as_deref(),
        Some("chargeback")
    );
    let err = f.transfer(&f.target(a, &ty, now), b, 5).await.unwrap_err();
    assert_eq!(reason(&err), "BLOCKED_FROM_SPENDING");
    let err = f.spend(&f.target(a, &ty, now), 5).await.unwrap_err();
    assert_eq!(reason(&err), "BLOCKED_FROM_SPENDING");
    f.transfer(&f.target(b, &ty, now), a, 5)
        .await
        .expect("receiving");
    // A block of another type does not apply; lifting the block lets the giver give.
    f.block(b, Some(Uuid::now_v7()), Some("other type"), now)
        .await;
    f.transfer(&f.target(b, &ty, now), a, 1).await.unwrap();
    f.block(a, Some(ty.id), None, now).await;
    f.transfer(&f.target(a, &ty, now), b, 16).await.unwrap();
    assert_eq!(f.figures(a, &ty, now).await, [0, 0, 0]);
    assert_eq!(f.figures(b, &ty, now).await, [20, 0, 0]);
    f.assert_balanced().await;
}

async fn credit_type(f: &Fixture, now: DateTime<Utc>, overdraft_limit: i64) -> TypeRow {
    f.points_type(
        TypeSpec {
            code: "credit",
            unit: Unit::Credit,
            currency: "EUR",
            expiry: ExpiryRule::RollingDays(30),
            overdraft_limit,
            ..TypeSpec::default()
        },
        now,
    )
    .await
}

fn auto_redeemed(amount: i64) -> AwardInput {
    AwardInput {
        amount,
        note: note("cashback"),
        expire_at: None,
        release_at: None,
        auto_redeem: true,
    }
}

#[tokio::test]
async fn credit_awards_go_to_commerce_and_redeem_moves_them_keeping_validity() {
    let f = Fixture::postgres().await;
    let jan1 = at("2026-01-01T00:00:00Z");
    let ty = credit_type(&f, jan1, 0).await;
    let c = Uuid::now_v7();
    let awarded = f
        .award(&f.target(c, &ty, jan1), 100, None, None)
        .await
        .unwrap();
    let award = posting_of(&awarded, PostingKind::Award);
    assert_eq!(award.credit.kind, AccountKind::Commerce);
    assert_eq!(
        (awarded.wallet.commerce, awarded.wallet.available),
        (100, 0)
    );
    assert_eq!(awarded.wallet.currency_code, "EUR");
    let jan10 = at("2026-01-10T00:00:00Z");
    f.award(&f.target(c, &ty, jan10), 50, None, None)
        .await
        .unwrap();
    // Commerce money is not spendable before it is redeemed.
    let err = f.spend(&f.target(c, &ty, jan10), 1).await.unwrap_err();
    assert_eq!(reason(&err), "INSUFFICIENT_POINTS");

    let jan15 = at("2026-01-15T00:00:00Z");
    let (posted, moved) = f.redeem(&f.target(c, &ty, jan15), 120).await.unwrap();
    assert_eq!(moved, 120);
    assert_eq!(posted.postings.len(), 2, "one posting per lot");
    assert!(posted.postings.iter().all(|p| p.kind == PostingKind::Redeem
        && p.debit.kind == AccountKind::Commerce
        && p.credit.kind == AccountKind::Wallet));
    assert_eq!((posted.wallet.commerce, posted.wallet.available), (30, 120));
    let (in_31, in_40) = (
        Some(jan1 + Duration::days(30)),
        Some(jan10 + Duration::days(30)),
    );
    assert_eq!(
        f.open_lots(c, &ty).await,
        [(100, in_31), (30, in_40), (20, in_40)]
    );
    // The purchase is larger than what is left: only the commerce balance moves.
    let (_, moved) = f.redeem(&f.target(c, &ty, jan15), 500).await.unwrap();
    assert_eq!(moved, 30);
    let (posted, moved) = f.redeem(&f.target(c, &ty, jan15), 10).await.unwrap();
    assert_eq!((moved, posted.postings.len()), (0, 0));

    let spent = f.spend(&f.target(c, &ty, jan15), 110).await.unwrap();
    assert_eq!(spent.wallet.available, 40);
    assert_eq!(f.open_lots(c, &ty).await, [(10, in_40), (30, in_40)]);
    // The redeemed money expires with the award it came from.
    let run = f.expire(in_40.unwrap()).await;
    assert_eq!((run.lots, run.amount), (2, 40));
    f.assert_balanced().await;
}

#[tokio::test]
async fn payouts_pay_only_auto_redeemed_money_and_a_block_stops_them() {
    let f = Fixture::postgres().await;
    let now = at("2026-01-01T00:00:00Z");
    let ty = credit_type(&f, now, 0).await;
    let c = Uuid::now_v7();
    let t = f.target(c, &ty, now);
    f.award(&t, 50, None, None).await.unwrap();
    f.redeem(&t, 50).await.unwrap();
    let later = f.target(c, &ty, now + Duration::days(1));
    let cashback = f.award_with(&later, auto_redeemed(30)).await.unwrap();
    let award = posting_of(&cashback, PostingKind::Award);
    assert_eq!(award.credit.kind, AccountKind::Wallet);
    assert!(award.lot.as_ref().unwrap().1.payable);
    assert_eq!(
        (cashback.wallet.available, cashback.wallet.payable),
        (80, 30)
    );

    let err = f.payout(&later, 31).await.unwrap_err();
    assert_eq!(reason(&err), "INSUFFICIENT_POINTS");
    f.block(c, None, Some("KYC"), later.now).await;
    let err = f.payout(&later, 0).await.unwrap_err();
    assert_eq!(reason(&err), "BLOCKED_FROM_SPENDING");
    f.block(c, None, None, later.now).await;
    // The redeemed lot expires sooner, yet only the payable one is paid out.
    let (paid, amount) = f.payout(&later, 0).await.unwrap();
    assert_eq!(amount, 30);
    let payout = posting_of(&paid, PostingKind::Payout);
    assert_eq!(payout.credit.kind, AccountKind::Payout);
    assert_eq!(payout.payment_method_reference, "iban:CY00");
    assert_eq!(payout.allocations[0].lot_id, award.lot.as_ref().unwrap().0);
    assert_eq!((paid.wallet.available, paid.wallet.payable), (50, 0));
    let err = f.payout(&later, 0).await.unwrap_err();
    assert_eq!(reason(&err), "INSUFFICIENT_POINTS");
    f.assert_balanced().await;
}

#[tokio::test]
async fn credit_operations_are_refused_on_points_types_and_auto_redeem_on_points() {
    let f = Fixture::postgres().await;
    let now = at("2026-01-01T00:00:00Z");
    let ty = f.points_type(TypeSpec::default(), now).await;
    let t = f.target(Uuid::now_v7(), &ty, now);
    f.award(&t, 10, None, None).await.unwrap();
    let err = f.award_with(&t, auto_redeemed(5)).await.unwrap_err();
    assert_eq!(invalid_field(&err), "auto_redeem");
    assert_eq!(
        reason(&f.redeem(&t, 5).await.unwrap_err()),
        "NOT_A_CREDIT_TYPE"
    );
    assert_eq!(
        reason(&f.payout(&t, 5).await.unwrap_err()),
        "NOT_A_CREDIT_TYPE"
    );
    f.assert_balanced().await;
}

#[tokio::test]
async fn a_redeemed_credit_award_is_not_reversed_into_an_overdraft_of_commerce() {
    let f = Fixture::postgres().await;
    let now = at("2026-01-01T00:00:00Z");
    // The type allows overdraft on the wallet; the commerce balance never goes below zero.
    let ty = credit_type(&f, now, 50).await;
    let c = Uuid::now_v7();
    let t = f.target(c, &ty, now);
    let awarded = f.award(&t, 20, None, None).await.unwrap();
    f.redeem(&t, 15).await.unwrap();
    let err = f
        .reverse(posting_of(&awarded, PostingKind::Award).id, 20, now)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "INSUFFICIENT_POINTS");
    f.reverse(posting_of(&awarded, PostingKind::Award).id, 5, now)
        .await
        .unwrap();
    let w = f.wallet(c, &ty, now).await;
    assert_eq!((w.commerce, w.available), (0, 15));
    f.assert_balanced().await;
}

#[tokio::test]
async fn money_redeemed_into_an_overdrawn_wallet_pays_the_debt() {
    let f = Fixture::postgres().await;
    let now = at("2026-01-01T00:00:00Z");
    let ty = credit_type(&f, now, 50).await;
    let c = Uuid::now_v7();
    let t = f.target(c, &ty, now);
    f.adjust(&t, -10, None).await.unwrap();
    f.award(&t, 30, None, None).await.unwrap();
    let (posted, moved) = f.redeem(&t, 30).await.unwrap();
    assert_eq!(moved, 30);
    assert_eq!((posted.wallet.available, posted.wallet.commerce), (20, 0));
    let w = f.account(c, &ty, AccountKind::Wallet).await.unwrap();
    assert_eq!((w.balance, w.debt), (20, 0));
    f.assert_balanced().await;
}

//! FIFO by expiry, pending points, and the expiry job, with the clock moved by hand.
use chrono::Duration;
use uuid::Uuid;

use super::{Fixture, TypeSpec, at, posting_of, reason};
use crate::domain::{PostingKind, ReservationState, rules::ExpiryRule};
use crate::store::{jobs, ops::AwardInput};

#[tokio::test]
async fn spending_takes_the_soonest_expiring_lot_first_across_month_ends() {
    let f = Fixture::postgres().await;
    let jan20 = at("2026-01-20T12:00:00Z");
    // Points expire at the end of the month after the award's month.
    let ty = f
        .points_type(
            TypeSpec {
                expiry: ExpiryRule::EndOfMonth(1),
                ..TypeSpec::default()
            },
            jan20,
        )
        .await;
    let c = Uuid::now_v7();
    let (mar1, apr1) = (at("2026-03-01T00:00:00Z"), at("2026-04-01T00:00:00Z"));
    let feb20 = at("2026-02-20T00:00:00Z");

    let january = f.award(&f.target(c, &ty, jan20), 100, None, None).await;
    let january = january.expect("award in January");
    let feb10 = at("2026-02-10T08:00:00Z");
    f.award(&f.target(c, &ty, feb10), 50, None, None)
        .await
        .expect("award in February");
    // An award with its own, sooner expiry goes first although it is the newest.
    let feb12 = at("2026-02-12T08:00:00Z");
    let soon = f
        .award(&f.target(c, &ty, feb12), 30, Some(feb20), None)
        .await
        .expect("award expiring soon");
    assert_eq!(
        f.open_lots(c, &ty).await,
        [(30, Some(feb20)), (100, Some(mar1)), (50, Some(apr1))]
    );

    let spent = f
        .spend(&f.target(c, &ty, at("2026-02-15T00:00:00Z")), 40)
        .await
        .expect("spend");
    let lot_of = |p: &crate::store::ops::Posted| p.postings[0].lot.as_ref().unwrap().0;
    let takes: Vec<_> = posting_of(&spent, PostingKind::Spend)
        .allocations
        .iter()
        .map(|t| (t.lot_id, t.amount))
        .collect();
    assert_eq!(takes, [(lot_of(&soon), 30), (lot_of(&january), 10)]);
    assert_eq!(
        f.open_lots(c, &ty).await,
        [(90, Some(mar1)), (50, Some(apr1))]
    );
    assert_eq!(spent.wallet.available, 140);
    assert_eq!(
        spent.wallet.next_expirations,
        [(mar1, 90), (apr1, 50)].to_vec()
    );
    f.assert_balanced().await;

    // The last instant of February still counts January's points; the first of March not.
    let last_feb = mar1 - Duration::seconds(1);
    assert_eq!(f.figures(c, &ty, last_feb).await, [140, 0, 0]);
    assert_eq!(f.figures(c, &ty, mar1).await, [50, 0, 0]);
    // The expired lot emptied by the spend has nothing left to expire.
    let run = f.expire(mar1).await;
    assert_eq!((run.lots, run.amount, run.wallets), (1, 90, 1));
    let expiries = f.postings_of_kind(PostingKind::Expiry).await;
    assert_eq!(expiries.len(), 1);
    assert_eq!(expiries[0].amount, 90);
    assert_eq!(expiries[0].lot_id, None);
    assert_eq!(expiries[0].created_at, mar1);
    let expired_lot = f
        .lots(c, &ty)
        .await
        .into_iter()
        .find(|l| l.expire_at == Some(mar1))
        .unwrap();
    assert_eq!(
        (expired_lot.remaining_amount, expired_lot.expired_at),
        (0, Some(mar1))
    );
    let emptied = f
        .lots(c, &ty)
        .await
        .into_iter()
        .find(|l| l.expire_at == Some(feb20))
        .unwrap();
    assert_eq!(emptied.expired_at, None);
    assert_eq!(f.wallet(c, &ty, mar1).await.available, 50);
    let wallet_account = f
        .account(c, &ty, crate::domain::AccountKind::Wallet)
        .await
        .unwrap();
    assert_eq!(wallet_account.balance, 50);
    f.assert_balanced().await;

    // A second run at the same time, and one later, post nothing more until April.
    assert_eq!(f.expire(mar1).await, jobs::ExpiryRun::default());
    assert_eq!(
        f.expire(apr1 - Duration::seconds(1)).await,
        jobs::ExpiryRun::default()
    );
    let run = f.expire(apr1).await;
    assert_eq!((run.lots, run.amount), (1, 50));
    assert_eq!(f.figures(c, &ty, apr1).await, [0, 0, 0]);
    assert_eq!(f.postings_of_kind(PostingKind::Expiry).await.len(), 2);
    f.assert_balanced().await;
}

#[tokio::test]
async fn pending_points_are_spendable_only_once_released() {
    let f = Fixture::postgres().await;
    let mar25 = at("2026-03-25T10:00:00Z");
    let ty = f
        .points_type(
            TypeSpec {
                pending_days: 14,
                expiry: ExpiryRule::EndOfMonth(2),
                ..TypeSpec::default()
            },
            mar25,
        )
        .await;
    let (c, other) = (Uuid::now_v7(), Uuid::now_v7());
    let released_at = at("2026-04-08T10:00:00Z");
    let awarded = f
        .award(&f.target(c, &ty, mar25), 60, None, None)
        .await
        .expect("award");
    let lot = &posting_of(&awarded, PostingKind::Award)
        .lot
        .as_ref()
        .unwrap()
        .1;
    assert_eq!(lot.release_at, Some(released_at));
    assert_eq!(lot.expire_at, Some(at("2026-06-01T00:00:00Z")));
    assert_eq!((awarded.wallet.available, awarded.wallet.pending), (0, 60));

    let before = released_at - Duration::seconds(1);
    for (what, err) in [
        ("spend", f.spend(&f.target(c, &ty, before), 1).await.err()),
        (
            "reserve",
            f.reserve(&f.target(c, &ty, before), 1, None).await.err(),
        ),
        (
            "transfer",
            f.transfer(&f.target(c, &ty, before), other, 1).await.err(),
        ),
    ] {
        let err = err.unwrap_or_else(|| panic!("{what} of pending points succeeded"));
        assert_eq!(reason(&err), "INSUFFICIENT_POINTS", "{what}");
    }
    assert_eq!(f.figures(c, &ty, before).await, [0, 60, 0]);

    assert_eq!(f.figures(c, &ty, released_at).await, [60, 0, 0]);
    let spent = f
        .spend(&f.target(c, &ty, released_at), 20)
        .await
        .expect("spend once released");
    assert_eq!((spent.wallet.available, spent.wallet.pending), (40, 0));
    // An award with an explicit release keeps it; the job does not touch pending lots.
    let later = at("2026-04-09T00:00:00Z");
    f.award_with(
        &f.target(c, &ty, later),
        AwardInput {
            amount: 5,
            note: super::note("pending"),
            expire_at: None,
            release_at: Some(later + Duration::days(2)),
            auto_redeem: false,
        },
    )
    .await
    .expect("award");
    assert_eq!(f.expire(later + Duration::days(1)).await.lots, 0);
    assert_eq!(f.figures(c, &ty, later).await, [40, 5, 0]);
    assert_eq!(
        f.figures(c, &ty, later + Duration::days(2)).await,
        [45, 0, 0]
    );
    f.assert_balanced().await;
}

#[tokio::test]
async fn an_award_whose_expiry_is_not_after_its_release_is_refused() {
    let f = Fixture::postgres().await;
    let now = at("2026-05-01T00:00:00Z");
    let ty = f
        .points_type(
            TypeSpec {
                pending_days: 10,
                ..TypeSpec::default()
            },
            now,
        )
        .await;
    let err = f
        .award(
            &f.target(Uuid::now_v7(), &ty, now),
            5,
            Some(now + Duration::days(10)),
            None,
        )
        .await
        .expect_err("expiring on release");
    assert_eq!(super::invalid_field(&err), "expire_time");
}

#[tokio::test]
async fn operations_settle_due_lots_and_lapsed_reservations_first() {
    let f = Fixture::postgres().await;
    let t0 = at("2026-06-10T10:00:00Z");
    let ty = f.points_type(TypeSpec::default(), t0).await;
    let c = Uuid::now_v7();
    let day = Duration::days(1);
    f.award(&f.target(c, &ty, t0), 30, Some(t0 + day), None)
        .await
        .unwrap();
    f.award(&f.target(c, &ty, t0), 10, None, None)
        .await
        .unwrap();
    let held = f
        .reserve(&f.target(c, &ty, t0), 10, Some(Duration::minutes(15)))
        .await
        .expect("reserve");
    assert_eq!(held.posted.wallet.available, 30);

    // Twenty minutes on, the hold has lapsed: the spend gets the points back first.
    let t1 = t0 + Duration::minutes(20);
    let spent = f.spend(&f.target(c, &ty, t1), 40).await.expect("spend");
    assert_eq!(
        (spent.wallet.available, spent.wallet.reserved),
        (0, 0),
        "the lapsed reservation was released before spending"
    );
    let r = crate::store::ops::find_reservation(&f.db, f.partner, held.reservation.id)
        .await
        .unwrap();
    assert_eq!(r.state, ReservationState::Expired.as_str());
    assert_eq!(r.settled_at, Some(t1));

    // A lot past its expiry is posted as expired by the next award, before the award.
    f.award(&f.target(c, &ty, t1), 8, Some(t1 + day), None)
        .await
        .unwrap();
    let t2 = t1 + day * 2;
    let posted = f.award(&f.target(c, &ty, t2), 1, None, None).await.unwrap();
    assert_eq!(
        posted.postings.len(),
        1,
        "the award answers its own posting"
    );
    let expiries = f.postings_of_kind(PostingKind::Expiry).await;
    assert_eq!(
        expiries
            .iter()
            .map(|p| (p.amount, p.created_at))
            .collect::<Vec<_>>(),
        [(8, t2)]
    );
    assert_eq!(posted.wallet.available, 1);
    // Nothing is left for the job.
    assert_eq!(f.expire(t2).await, jobs::ExpiryRun::default());
    f.assert_balanced().await;
}

#[tokio::test]
async fn the_job_releases_lapsed_reservations_and_expires_lots_once() {
    let f = Fixture::postgres().await;
    let t0 = at("2026-07-01T08:00:00Z");
    let ty = f
        .points_type(
            TypeSpec {
                reservation_ttl_seconds: 600,
                ..TypeSpec::default()
            },
            t0,
        )
        .await;
    let c = Uuid::now_v7();
    f.award(
        &f.target(c, &ty, t0),
        25,
        Some(t0 + Duration::hours(1)),
        None,
    )
    .await
    .unwrap();
    let held = f
        .reserve(&f.target(c, &ty, t0), 20, None)
        .await
        .expect("reserve");
    assert_eq!(held.reservation.expire_at, t0 + Duration::minutes(10));
    assert_eq!(f.expire(t0 + Duration::minutes(9)).await.reservations, 0);
    let run = f.expire(t0 + Duration::minutes(10)).await;
    assert_eq!((run.reservations, run.lots, run.wallets), (1, 0, 1));
    assert_eq!(
        f.figures(c, &ty, t0 + Duration::minutes(10)).await,
        [25, 0, 0]
    );
    // The released points went back to their lot and expire with it.
    let run = f.expire(t0 + Duration::hours(1)).await;
    assert_eq!((run.lots, run.amount), (1, 25));
    assert_eq!(f.expire(t0 + Duration::hours(2)).await, Default::default());
    f.assert_balanced().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_expiry_runs_post_each_expiry_once() {
    let f = Fixture::postgres().await;
    let t0 = at("2026-08-01T00:00:00Z");
    let ty = f.points_type(TypeSpec::default(), t0).await;
    let customers: Vec<Uuid> = (0..24).map(|_| Uuid::now_v7()).collect();
    let due = t0 + Duration::days(30);
    let mut total = 0;
    for (i, c) in customers.iter().enumerate() {
        let amount = 10 + i as i64;
        total += amount;
        f.award(&f.target(*c, &ty, t0), amount, Some(due), None)
            .await
            .unwrap();
        // A second lot, not due, stays.
        f.award(
            &f.target(*c, &ty, t0),
            1,
            Some(due + Duration::days(1)),
            None,
        )
        .await
        .unwrap();
    }
    let (a, b) = (f.connect_again().await, f.connect_again().await);
    let partner = f.partner;
    let one =
        tokio::spawn(async move { jobs::expire_partner(&a, partner, None, due, 1_000).await });
    let two = tokio::spawn(async move { jobs::sweep(&b, due).await });
    let (one, two) = (one.await.unwrap().unwrap(), two.await.unwrap().unwrap());
    assert_eq!(one.lots + two.lots, 24, "{one:?} {two:?}");
    assert_eq!(one.amount + two.amount, total);
    let expiries = f.postings_of_kind(PostingKind::Expiry).await;
    assert_eq!(expiries.len(), 24);
    assert_eq!(expiries.iter().map(|p| p.amount).sum::<i64>(), total);
    for c in &customers {
        assert_eq!(f.figures(*c, &ty, due).await, [1, 0, 0]);
    }
    assert_eq!(jobs::sweep(&f.db, due).await.unwrap(), Default::default());
    f.assert_balanced().await;
}

#[tokio::test]
async fn the_job_works_in_batches_and_says_when_more_is_due() {
    let f = Fixture::postgres().await;
    let t0 = at("2026-09-01T00:00:00Z");
    let ty = f.points_type(TypeSpec::default(), t0).await;
    let due = t0 + Duration::days(1);
    for _ in 0..5 {
        f.award(&f.target(Uuid::now_v7(), &ty, t0), 10, Some(due), None)
            .await
            .unwrap();
    }
    let first = jobs::expire_partner(&f.db, f.partner, None, due, 2)
        .await
        .unwrap();
    assert_eq!((first.wallets, first.amount, first.more), (2, 20, true));
    let second = jobs::expire_partner(&f.db, f.partner, None, due, 2)
        .await
        .unwrap();
    assert_eq!((second.wallets, second.more), (2, true));
    let last = jobs::expire_partner(&f.db, f.partner, None, due, 2)
        .await
        .unwrap();
    assert_eq!((last.wallets, last.more), (1, false));
    assert_eq!(f.postings_of_kind(PostingKind::Expiry).await.len(), 5);
    f.assert_balanced().await;
}

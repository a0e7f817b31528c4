//! Identity's lifecycle events applied to wallets: merges move everything a customer holds,
//! erasures scrub free text.
use chrono::{DateTime, Duration, Utc};
use loyalty_platform::{
    db::begin_write,
    events::{DomainEvent, EventHandler},
};
use loyalty_proto::events::v1 as ev;
use uuid::Uuid;

use super::{Fixture, TypeSpec, posting_of, reason};
use crate::domain::{AccountKind, ERASED_REASON, PostingKind, ReservationState, Unit};
use crate::store::{lifecycle::CustomerLifecycle, ops, resolve_customer};

/// The real time at the precision the databases store: merges post at the time they run.
fn now() -> DateTime<Utc> {
    let t = Utc::now();
    DateTime::from_timestamp(t.timestamp(), 0).expect("in range")
}

fn envelope<E: DomainEvent>(partner_id: Uuid, event: &E) -> ev::EventEnvelope {
    ev::EventEnvelope {
        event_id: Uuid::now_v7().to_string(),
        event_type: E::TYPE.into(),
        producer: "identity".into(),
        partner_id: partner_id.to_string(),
        payload: event.encode_to_vec(),
        ..Default::default()
    }
}

fn merged(partner_id: Uuid, merged: Uuid, surviving: Uuid) -> ev::EventEnvelope {
    envelope(
        partner_id,
        &ev::CustomerMerged {
            surviving_customer_id: surviving.to_string(),
            merged_customer_id: merged.to_string(),
        },
    )
}

fn erased(partner_id: Uuid, customer: Uuid) -> ev::EventEnvelope {
    envelope(
        partner_id,
        &ev::CustomerErased {
            customer_id: customer.to_string(),
        },
    )
}

async fn apply(f: &Fixture, e: &ev::EventEnvelope) {
    let txn = begin_write(&f.db).await.expect("begin");
    CustomerLifecycle.apply(&txn, e).await.expect("apply");
    txn.commit().await.expect("commit");
}

async fn merge_postings(f: &Fixture, customer: Uuid) -> Vec<(i64, bool)> {
    f.postings_of(customer)
        .await
        .into_iter()
        .filter(|p| p.kind == PostingKind::Merge.as_str())
        .map(|p| (p.amount, p.credit_customer_id == Some(customer)))
        .collect()
}

#[tokio::test]
async fn a_merge_moves_every_lot_reservation_and_debt_keeping_their_times() {
    let f = Fixture::postgres().await;
    let t0 = now();
    let points = f.points_type(TypeSpec::default(), t0).await;
    let lenient = f
        .points_type(
            TypeSpec {
                code: "lenient",
                overdraft_limit: 50,
                is_default: false,
                ..TypeSpec::default()
            },
            t0,
        )
        .await;
    let credit = f
        .points_type(
            TypeSpec {
                code: "credit",
                unit: Unit::Credit,
                currency: "EUR",
                is_default: false,
                ..TypeSpec::default()
            },
            t0,
        )
        .await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let (soon, release, credit_expiry) = (
        t0 + Duration::days(30),
        t0 + Duration::days(14),
        t0 + Duration::days(60),
    );
    let pa = f.target(a, &points, t0);
    f.award(&pa, 100, None, None).await.unwrap();
    f.award(&pa, 40, Some(soon), None).await.unwrap();
    f.award(&pa, 25, None, Some(release)).await.unwrap();
    let held = f.reserve(&pa, 10, None).await.unwrap();
    f.award(&f.target(a, &credit, t0), 30, Some(credit_expiry), None)
        .await
        .unwrap();
    f.adjust(&f.target(a, &lenient, t0), -15, None)
        .await
        .unwrap();
    f.award(&f.target(b, &points, t0), 10, None, None)
        .await
        .unwrap();
    f.award(&f.target(b, &lenient, t0), 20, None, None)
        .await
        .unwrap();
    assert_eq!(f.figures(a, &points, t0).await, [130, 25, 10]);

    apply(&f, &merged(f.partner, a, b)).await;

    let r = ops::find_reservation(&f.db, f.partner, held.reservation.id)
        .await
        .unwrap();
    assert_eq!(r.state, ReservationState::Released.as_str());
    for ty in [&points, &lenient, &credit] {
        let w = f.wallet(a, ty, t0).await;
        assert_eq!(
            [w.available, w.pending, w.reserved, w.commerce],
            [0; 4],
            "{}",
            ty.code
        );
    }
    let wa = f.account(a, &lenient, AccountKind::Wallet).await.unwrap();
    assert_eq!((wa.balance, wa.debt), (0, 0));

    assert_eq!(f.figures(b, &points, t0).await, [150, 25, 0]);
    assert_eq!(f.figures(b, &points, release).await, [175, 0, 0]);
    assert_eq!(
        f.wallet(b, &points, t0).await.next_expirations,
        [(soon, 40)]
    );
    let moved: Vec<_> = f
        .lots(b, &points)
        .await
        .into_iter()
        .map(|l| (l.original_amount, l.release_at, l.expire_at))
        .collect();
    for lot in [
        (100, None, None),
        (40, None, Some(soon)),
        (25, Some(release), None),
    ] {
        assert!(moved.contains(&lot), "{lot:?} in {moved:?}");
    }
    let wc = f.wallet(b, &credit, t0).await;
    assert_eq!((wc.commerce, wc.available), (30, 0));
    assert_eq!(wc.next_expirations, [(credit_expiry, 30)]);
    // The debt moved, and the survivor's points paid it: 20 less the merged customer's 15.
    let wl = f.wallet(b, &lenient, t0).await;
    assert_eq!(wl.available, 5);
    let wb = f.account(b, &lenient, AccountKind::Wallet).await.unwrap();
    assert_eq!((wb.balance, wb.debt), (5, 0));
    assert_eq!(f.open_lots(b, &lenient).await, [(5, None)]);

    // Appended only: one merge posting per lot, and one for the debt.
    let from_a = merge_postings(&f, a).await;
    assert_eq!(from_a.len(), 5, "{from_a:?}");
    assert!(
        f.postings_of(a)
            .await
            .iter()
            .filter(|p| p.kind == PostingKind::Merge.as_str())
            .all(|p| p.reference == format!("merge:{a}:{b}"))
    );
    f.assert_balanced().await;
}

#[tokio::test]
async fn applying_a_merge_twice_moves_the_points_once() {
    let f = Fixture::postgres().await;
    let t0 = now();
    let ty = f.points_type(TypeSpec::default(), t0).await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    f.award(
        &f.target(a, &ty, t0),
        70,
        Some(t0 + Duration::days(3)),
        None,
    )
    .await
    .unwrap();
    apply(&f, &merged(f.partner, a, b)).await;
    let count = f.postings_of(b).await.len();
    apply(&f, &merged(f.partner, a, b)).await;
    assert_eq!(f.postings_of(b).await.len(), count);
    assert_eq!(f.figures(b, &ty, t0).await, [70, 0, 0]);
    assert_eq!(f.figures(a, &ty, t0).await, [0, 0, 0]);
    f.assert_balanced().await;
}

#[tokio::test]
async fn awards_for_a_merged_customer_go_to_the_survivor() {
    let f = Fixture::postgres().await;
    let t0 = now();
    let ty = f.points_type(TypeSpec::default(), t0).await;
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    apply(&f, &merged(f.partner, a, b)).await;
    apply(&f, &merged(f.partner, b, c)).await;
    assert_eq!(resolve_customer(&f.db, f.partner, a).await.unwrap(), c);
    assert_eq!(resolve_customer(&f.db, f.partner, c).await.unwrap(), c);
    // Another partner's customer with the same id is not redirected.
    assert_eq!(resolve_customer(&f.db, Uuid::now_v7(), a).await.unwrap(), a);
    let posted = f
        .award(&f.target(a, &ty, t0), 12, None, None)
        .await
        .unwrap();
    assert_eq!(posted.wallet.customer_id, c);
    assert_eq!(
        posting_of(&posted, PostingKind::Award).credit.customer_id,
        Some(c)
    );
    assert_eq!(f.figures(c, &ty, t0).await, [12, 0, 0]);
    assert_eq!(f.figures(a, &ty, t0).await, [0, 0, 0]);
    // A merge back into a customer merged away would strand points: it is skipped.
    apply(&f, &merged(f.partner, c, a)).await;
    assert_eq!(f.figures(c, &ty, t0).await, [12, 0, 0]);
    f.assert_balanced().await;
}

#[tokio::test]
async fn a_merge_of_another_partner_moves_nothing() {
    let f = Fixture::postgres().await;
    let t0 = now();
    let ty = f.points_type(TypeSpec::default(), t0).await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    f.award(&f.target(a, &ty, t0), 12, None, None)
        .await
        .unwrap();
    apply(&f, &merged(Uuid::now_v7(), a, b)).await;
    assert_eq!(f.figures(a, &ty, t0).await, [12, 0, 0]);
    assert!(f.postings_of(b).await.is_empty());
    assert_eq!(resolve_customer(&f.db, f.partner, a).await.unwrap(), a);
    f.assert_balanced().await;
}

#[tokio::test]
async fn an_erasure_scrubs_free_text_and_keeps_amounts() {
    let f = Fixture::postgres().await;
    let t0 = now();
    let ty = f.points_type(TypeSpec::default(), t0).await;
    let (a, other) = (Uuid::now_v7(), Uuid::now_v7());
    f.award(&f.target(a, &ty, t0), 30, None, None)
        .await
        .unwrap();
    f.spend(&f.target(a, &ty, t0), 5).await.unwrap();
    let held = f.reserve(&f.target(a, &ty, t0), 5, None).await.unwrap();
    f.award(&f.target(other, &ty, t0), 5, None, None)
        .await
        .unwrap();
    apply(&f, &erased(f.partner, a)).await;
    let scrubbed = f.postings_of(a).await;
    assert_eq!(scrubbed.len(), 3);
    for p in &scrubbed {
        assert_eq!(
            (p.reason.as_str(), p.reference.as_str()),
            (ERASED_REASON, "")
        );
    }
    assert_eq!(
        scrubbed.iter().map(|p| p.amount).collect::<Vec<_>>(),
        [30, 5, 5]
    );
    let r = ops::find_reservation(&f.db, f.partner, held.reservation.id)
        .await
        .unwrap();
    assert_eq!(r.reference, "");
    let untouched = f.postings_of(other).await;
    assert_eq!(untouched[0].reference, "ref-award");
    assert_eq!(f.figures(a, &ty, t0).await, [20, 0, 5]);
    f.assert_balanced().await;
}

#[tokio::test]
async fn an_erasure_also_scrubs_the_wallets_merged_into_the_customer() {
    let f = Fixture::postgres().await;
    let t0 = now();
    let ty = f.points_type(TypeSpec::default(), t0).await;
    let (dup, survivor) = (Uuid::now_v7(), Uuid::now_v7());
    f.award(&f.target(dup, &ty, t0), 30, None, None)
        .await
        .unwrap();
    apply(&f, &merged(f.partner, dup, survivor)).await;
    apply(&f, &erased(f.partner, survivor)).await;
    let dup_postings = f.postings_of(dup).await;
    let award = dup_postings
        .iter()
        .find(|p| p.kind == PostingKind::Award.as_str())
        .expect("award");
    assert_eq!(
        (award.reason.as_str(), award.reference.as_str()),
        (ERASED_REASON, "")
    );
    // Merge postings keep their ids-only text, and the balances stay.
    assert!(
        dup_postings
            .iter()
            .filter(|p| p.kind == PostingKind::Merge.as_str())
            .all(|p| p.reference.starts_with("merge:"))
    );
    assert_eq!(f.figures(survivor, &ty, t0).await, [30, 0, 0]);
    f.assert_balanced().await;
}

#[tokio::test]
async fn malformed_events_are_skipped() {
    let f = Fixture::postgres().await;
    let p = f.partner;
    let mut bad_payload = merged(p, Uuid::now_v7(), Uuid::now_v7());
    bad_payload.payload = vec![0xff, 0xff, 0xff];
    let bad_ids = envelope(
        p,
        &ev::CustomerMerged {
            surviving_customer_id: "nope".into(),
            merged_customer_id: Uuid::now_v7().to_string(),
        },
    );
    let a = Uuid::now_v7();
    let self_merge = merged(p, a, a);
    let mut bad_partner = merged(p, Uuid::now_v7(), Uuid::now_v7());
    bad_partner.partner_id = "x".into();
    let bad_erasure = envelope(
        p,
        &ev::CustomerErased {
            customer_id: "not-a-uuid".into(),
        },
    );
    for e in [bad_payload, bad_ids, self_merge, bad_partner, bad_erasure] {
        let txn = begin_write(&f.db).await.expect("begin");
        assert!(CustomerLifecycle.apply(&txn, &e).await.is_ok());
        txn.commit().await.expect("commit");
    }
    assert_eq!(resolve_customer(&f.db, p, a).await.unwrap(), a);
    assert!(CustomerLifecycle.handles(ev::CustomerMerged::TYPE));
    assert!(!CustomerLifecycle.handles(ev::CustomerCreated::TYPE));
}

#[tokio::test]
async fn merge_and_erasure_work_on_sqlite_too() {
    let f = Fixture::sqlite().await;
    let t0 = now();
    let ty = f.points_type(TypeSpec::default(), t0).await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    f.award(
        &f.target(a, &ty, t0),
        80,
        Some(t0 + Duration::days(10)),
        None,
    )
    .await
    .unwrap();
    f.award(
        &f.target(a, &ty, t0),
        20,
        None,
        Some(t0 + Duration::days(2)),
    )
    .await
    .unwrap();
    f.reserve(&f.target(a, &ty, t0), 30, None).await.unwrap();
    for _ in 0..2 {
        apply(&f, &merged(f.partner, a, b)).await;
    }
    assert_eq!(f.figures(a, &ty, t0).await, [0, 0, 0]);
    assert_eq!(f.figures(b, &ty, t0).await, [80, 20, 0]);
    assert_eq!(merge_postings(&f, a).await.len(), 2);
    assert_eq!(resolve_customer(&f.db, f.partner, a).await.unwrap(), b);
    apply(&f, &erased(f.partner, b)).await;
    let award = f
        .postings_of(a)
        .await
        .into_iter()
        .find(|p| p.kind == PostingKind::Award.as_str())
        .expect("award");
    assert_eq!(
        (award.reason.as_str(), award.reference.as_str()),
        (ERASED_REASON, "")
    );
    f.assert_balanced().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn awards_racing_a_merge_all_end_with_the_survivor() {
    let f = Fixture::postgres().await;
    let t0 = now();
    let ty = f.points_type(TypeSpec::default(), t0).await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    f.award(&f.target(a, &ty, t0), 5, None, None).await.unwrap();
    let pools = [
        f.db.clone(),
        f.connect_again().await,
        f.connect_again().await,
    ];
    let mut tasks = Vec::new();
    for i in 0..16 {
        let db = pools[i % pools.len()].clone();
        let t = f.target(a, &ty, t0);
        let merge = (i == 5).then(|| merged(f.partner, a, b));
        tasks.push(tokio::spawn(async move {
            let txn = begin_write(&db).await.expect("begin");
            match merge {
                Some(e) => CustomerLifecycle.apply(&txn, &e).await.expect("merge"),
                None => {
                    let input = ops::AwardInput {
                        amount: 1,
                        note: super::note("race"),
                        expire_at: None,
                        release_at: None,
                        auto_redeem: false,
                    };
                    ops::award(&txn, &t, input).await.expect("award");
                }
            }
            txn.commit().await.expect("commit");
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(f.figures(a, &ty, t0).await, [0, 0, 0]);
    assert_eq!(f.figures(b, &ty, t0).await, [20, 0, 0]);
    f.assert_balanced().await;
}

#[tokio::test]
async fn a_merged_debt_beyond_the_survivors_points_stays_a_debt_and_points_merged_in_pay_it() {
    let f = Fixture::postgres().await;
    let t0 = now();
    let ty = f.overdraft_type(50, t0).await;
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    f.award(&f.target(b, &ty, t0), 10, None, None)
        .await
        .unwrap();
    f.adjust(&f.target(a, &ty, t0), -30, None).await.unwrap();
    apply(&f, &merged(f.partner, a, b)).await;
    let wb = f.account(b, &ty, AccountKind::Wallet).await.unwrap();
    assert_eq!((wb.balance, wb.debt), (-20, 20));
    assert_eq!(f.open_lots(b, &ty).await, []);
    // Points merged into an overdrawn wallet pay its debt, as an award would.
    f.award(
        &f.target(c, &ty, t0),
        25,
        Some(t0 + Duration::days(5)),
        None,
    )
    .await
    .unwrap();
    apply(&f, &merged(f.partner, c, b)).await;
    let wb = f.account(b, &ty, AccountKind::Wallet).await.unwrap();
    assert_eq!((wb.balance, wb.debt), (5, 0));
    assert_eq!(
        f.open_lots(b, &ty).await,
        [(5, Some(t0 + Duration::days(5)))]
    );
    f.assert_balanced().await;
}

#[tokio::test]
async fn two_overdrawn_customers_merge_into_one_debt_beyond_the_limit_and_cannot_spend() {
    let f = Fixture::postgres().await;
    let t0 = now();
    let ty = f.overdraft_type(50, t0).await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    f.adjust(&f.target(a, &ty, t0), -40, None).await.unwrap();
    f.adjust(&f.target(b, &ty, t0), -30, None).await.unwrap();
    apply(&f, &merged(f.partner, a, b)).await;
    let wb = f.account(b, &ty, AccountKind::Wallet).await.unwrap();
    assert_eq!((wb.balance, wb.debt), (-70, 70));
    // The debt is kept whole, and the ledger still checks.
    f.assert_balanced().await;
    let refused = f.spend(&f.target(b, &ty, t0), 1).await.unwrap_err();
    assert_eq!(reason(&refused), "INSUFFICIENT_POINTS");
    // Points arriving pay it off first.
    f.award(&f.target(b, &ty, t0), 100, None, None)
        .await
        .unwrap();
    let wb = f.account(b, &ty, AccountKind::Wallet).await.unwrap();
    assert_eq!((wb.balance, wb.debt), (30, 0));
    f.assert_balanced().await;
}

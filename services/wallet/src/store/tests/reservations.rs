//! Reservations: hold, capture (all or part), release, lapse.
use chrono::{DateTime, Duration, Utc};
use loyalty_platform::db::begin_write;
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use super::{Fixture, TypeSpec, at, invalid_field, posting_of, reason};
use crate::domain::{PostingKind, ReservationState};
use crate::store::{
    ledger::{Note, TypeRow},
    ops,
};

/// A wallet holding 20 points expiring on Feb 1st (awarded second) and 30 expiring on March
/// 1st (awarded first), so FIFO order differs from the order the lots were created in.
async fn two_lots(f: &Fixture) -> (TypeRow, Uuid, DateTime<Utc>) {
    let now = at("2026-01-05T10:00:00Z");
    let ty = f.points_type(TypeSpec::default(), now).await;
    let c = Uuid::now_v7();
    f.award(
        &f.target(c, &ty, now),
        30,
        Some(at("2026-03-01T00:00:00Z")),
        None,
    )
    .await
    .unwrap();
    f.award(
        &f.target(c, &ty, now),
        20,
        Some(at("2026-02-01T00:00:00Z")),
        None,
    )
    .await
    .unwrap();
    (ty, c, now)
}

const FEB: Option<DateTime<Utc>> = Some(DateTime::from_timestamp(1_769_904_000, 0).unwrap());
const MAR: Option<DateTime<Utc>> = Some(DateTime::from_timestamp(1_772_323_200, 0).unwrap());

#[test]
fn the_lot_times_are_what_they_say() {
    assert_eq!(FEB, Some(at("2026-02-01T00:00:00Z")));
    assert_eq!(MAR, Some(at("2026-03-01T00:00:00Z")));
}

#[tokio::test]
async fn a_full_capture_moves_the_held_points_to_redemption() {
    let f = Fixture::postgres().await;
    let (ty, c, now) = two_lots(&f).await;
    let held = f.reserve(&f.target(c, &ty, now), 30, None).await.unwrap();
    assert_eq!(held.reservation.state, ReservationState::Held);
    assert_eq!(held.reservation.expire_at, now + Duration::seconds(900));
    let reserve = posting_of(&held.posted, PostingKind::Reserve);
    assert_eq!(
        reserve
            .allocations
            .iter()
            .map(|t| t.amount)
            .collect::<Vec<_>>(),
        [20, 10],
        "soonest-expiring first"
    );
    assert_eq!(f.figures(c, &ty, now).await, [20, 0, 30]);
    f.assert_balanced().await;

    let captured = f
        .settle(held.reservation.id, Some(0), now + Duration::minutes(1))
        .await
        .expect("capture");
    assert_eq!(captured.reservation.state, ReservationState::Captured);
    assert_eq!(captured.reservation.captured_amount, 30);
    assert_eq!(captured.posted.postings.len(), 1);
    assert_eq!(
        posting_of(&captured.posted, PostingKind::Capture).amount,
        30
    );
    assert_eq!(
        (
            captured.posted.wallet.available,
            captured.posted.wallet.reserved
        ),
        (20, 0)
    );
    assert_eq!(f.open_lots(c, &ty).await, [(20, MAR)]);
    f.assert_balanced().await;
}

#[tokio::test]
async fn a_partial_capture_releases_the_rest_to_the_lots_it_came_from() {
    let f = Fixture::postgres().await;
    let (ty, c, now) = two_lots(&f).await;
    let held = f.reserve(&f.target(c, &ty, now), 30, None).await.unwrap();
    let settled = f
        .settle(held.reservation.id, Some(12), now)
        .await
        .expect("capture 12");
    assert_eq!(settled.reservation.captured_amount, 12);
    assert_eq!(settled.reservation.state, ReservationState::Captured);
    // The 12 captured are the soonest-expiring points; the 18 others return with their
    // expiry: 10 to March, 8 to February.
    assert_eq!(f.open_lots(c, &ty).await, [(8, FEB), (30, MAR)]);
    let release = posting_of(&settled.posted, PostingKind::Release);
    assert_eq!(release.amount, 18);
    assert_eq!(
        [
            settled.posted.wallet.available,
            settled.posted.wallet.reserved
        ],
        [38, 0]
    );
    f.assert_balanced().await;
}

/// The order of a reservation's allocations comes from the lots' expiry, not from the order
/// the database returns rows in: with an index scan over (posting_id, lot_id) rows come back
/// in lot-creation order.
#[tokio::test]
async fn a_partial_capture_releases_by_expiry_whatever_order_rows_come_back_in() {
    let f = Fixture::postgres().await;
    let (ty, c, now) = two_lots(&f).await;
    let held = f.reserve(&f.target(c, &ty, now), 30, None).await.unwrap();
    let txn = begin_write(&f.db).await.unwrap();
    txn.execute_unprepared("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        .await
        .unwrap();
    ops::settle(
        &txn,
        f.partner,
        held.reservation.id,
        Some(12),
        Note::default(),
        now,
    )
    .await
    .expect("capture");
    txn.commit().await.unwrap();
    assert_eq!(f.open_lots(c, &ty).await, [(8, FEB), (30, MAR)]);
    f.assert_balanced().await;
}

#[tokio::test]
async fn a_release_returns_every_point_with_its_expiry() {
    let f = Fixture::postgres().await;
    let (ty, c, now) = two_lots(&f).await;
    let held = f.reserve(&f.target(c, &ty, now), 45, None).await.unwrap();
    assert_eq!(f.open_lots(c, &ty).await, [(5, MAR)]);
    let released = f.settle(held.reservation.id, None, now).await.unwrap();
    assert_eq!(released.reservation.state, ReservationState::Released);
    assert_eq!(released.reservation.captured_amount, 0);
    assert_eq!(f.open_lots(c, &ty).await, [(20, FEB), (30, MAR)]);
    assert_eq!(f.figures(c, &ty, now).await, [50, 0, 0]);
    f.assert_balanced().await;
}

#[tokio::test]
async fn a_settled_or_lapsed_reservation_cannot_be_settled_again() {
    let f = Fixture::postgres().await;
    let (ty, c, now) = two_lots(&f).await;
    let captured = f.reserve(&f.target(c, &ty, now), 5, None).await.unwrap();
    f.settle(captured.reservation.id, Some(0), now)
        .await
        .unwrap();
    let released = f.reserve(&f.target(c, &ty, now), 5, None).await.unwrap();
    f.settle(released.reservation.id, None, now).await.unwrap();
    for (id, capture) in [
        (captured.reservation.id, Some(0)),
        (captured.reservation.id, None),
        (released.reservation.id, Some(5)),
        (released.reservation.id, None),
    ] {
        let err = f.settle(id, capture, now).await.expect_err("settled twice");
        assert_eq!(reason(&err), "RESERVATION_NOT_HELD", "{capture:?}");
    }

    // Past its hold a reservation is no longer capturable, although nothing released it yet.
    let lapsing = f
        .reserve(&f.target(c, &ty, now), 7, Some(Duration::minutes(5)))
        .await
        .unwrap();
    let late = now + Duration::minutes(5);
    let err = f
        .settle(lapsing.reservation.id, Some(0), late)
        .await
        .expect_err("capture after the hold");
    assert_eq!(reason(&err), "RESERVATION_NOT_HELD");
    assert_eq!(f.figures(c, &ty, late).await, [38, 0, 7]);
    let run = f.expire(late).await;
    assert_eq!(run.reservations, 1);
    assert_eq!(f.figures(c, &ty, late).await, [45, 0, 0]);
    f.assert_balanced().await;
}

#[tokio::test]
async fn reservations_are_checked_like_spends() {
    let f = Fixture::postgres().await;
    let (ty, c, now) = two_lots(&f).await;
    let err = f
        .reserve(&f.target(c, &ty, now), 51, None)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "INSUFFICIENT_POINTS");
    let held = f.reserve(&f.target(c, &ty, now), 50, None).await.unwrap();
    let err = f.spend(&f.target(c, &ty, now), 1).await.unwrap_err();
    assert_eq!(
        reason(&err),
        "INSUFFICIENT_POINTS",
        "held points are not spendable"
    );
    let err = f
        .settle(held.reservation.id, Some(51), now)
        .await
        .unwrap_err();
    assert_eq!(invalid_field(&err), "points");
    // Another partner's reservation is not found.
    let other = f.other_partner();
    let err = other
        .settle(held.reservation.id, Some(0), now)
        .await
        .unwrap_err();
    assert!(
        matches!(err, loyalty_platform::ApiError::NotFound(_)),
        "{err:?}"
    );
    f.settle(held.reservation.id, None, now).await.unwrap();
    f.block(c, None, Some("fraud check"), now).await;
    let err = f
        .reserve(&f.target(c, &ty, now), 1, None)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "BLOCKED_FROM_SPENDING");
    f.block(c, None, None, now).await;
    f.reserve(&f.target(c, &ty, now), 1, None).await.unwrap();
    f.assert_balanced().await;
}

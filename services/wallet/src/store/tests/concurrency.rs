//! Concurrent operations on one wallet in PostgreSQL, from several pools and tasks.
use loyalty_platform::{
    ApiError,
    db::begin_write,
    idempotency::{self, IdempotencyScope},
};
use loyalty_proto::wallet::v1 as pb;
use uuid::Uuid;

use super::{Fixture, TypeSpec, at, note, reason};
use crate::domain::PostingKind;
use crate::store::ops::{self, Posted};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_spends_of_one_point_from_ten_succeed_ten_times() {
    let f = Fixture::postgres().await;
    let now = at("2026-03-01T12:00:00Z");
    let ty = f.points_type(TypeSpec::default(), now).await;
    let c = Uuid::now_v7();
    // Several lots, so concurrent spends would also collide on lots.
    for amount in [3, 3, 4] {
        f.award(&f.target(c, &ty, now), amount, None, None)
            .await
            .unwrap();
    }
    let pools = [
        f.db.clone(),
        f.connect_again().await,
        f.connect_again().await,
    ];
    let mut tasks = Vec::new();
    for i in 0..64 {
        let db = pools[i % pools.len()].clone();
        let t = f.target(c, &ty, now);
        tasks.push(tokio::spawn(async move {
            let txn = begin_write(&db).await?;
            let r = ops::spend(&txn, &t, 1, note("coffee")).await?;
            txn.commit().await?;
            Ok::<_, ApiError>(r)
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => ok += 1,
            Err(e) if reason(&e) == "INSUFFICIENT_POINTS" => refused += 1,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!((ok, refused), (10, 54));
    assert_eq!(f.postings_of_kind(PostingKind::Spend).await.len(), 10);
    assert_eq!(f.figures(c, &ty, now).await, [0, 0, 0]);
    f.assert_balanced().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opposite_transfers_at_once_neither_deadlock_nor_lose_points() {
    let f = Fixture::postgres().await;
    let now = at("2026-03-01T12:00:00Z");
    let ty = f.points_type(TypeSpec::default(), now).await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    f.award(&f.target(a, &ty, now), 100, None, None)
        .await
        .unwrap();
    f.award(&f.target(b, &ty, now), 100, None, None)
        .await
        .unwrap();
    let pools = [f.db.clone(), f.connect_again().await];
    let mut tasks = Vec::new();
    for i in 0..32 {
        let db = pools[i % 2].clone();
        let (from, to) = if i % 2 == 0 { (a, b) } else { (b, a) };
        let t = f.target(from, &ty, now);
        tasks.push(tokio::spawn(async move {
            let txn = begin_write(&db).await?;
            ops::transfer(&txn, &t, to, 3, note("gift")).await?;
            txn.commit().await?;
            Ok::<_, ApiError>(())
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("transfer");
    }
    assert_eq!(f.figures(a, &ty, now).await, [100, 0, 0]);
    assert_eq!(f.figures(b, &ty, now).await, [100, 0, 0]);
    assert!(f.postings_of_kind(PostingKind::Transfer).await.len() >= 32);
    f.assert_balanced().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_idempotency_key_from_sixteen_tasks_posts_once_and_answers_alike() {
    let f = Fixture::postgres().await;
    let now = at("2026-03-01T12:00:00Z");
    let ty = f.points_type(TypeSpec::default(), now).await;
    let c = Uuid::now_v7();
    f.award(&f.target(c, &ty, now), 10, None, None)
        .await
        .unwrap();
    let request = pb::SpendPointsRequest {
        idempotency_key: "pos-42:spend".into(),
        customer_id: c.to_string(),
        points: 6,
        reason: "checkout".into(),
        ..Default::default()
    };
    let pools = [
        f.db.clone(),
        f.connect_again().await,
        f.connect_again().await,
    ];
    let mut tasks = Vec::new();
    for i in 0..16 {
        let db = pools[i % pools.len()].clone();
        let scope = IdempotencyScope::new(f.partner, "SpendPoints", "pos-42:spend", &request);
        let t = f.target(c, &ty, now);
        tasks.push(tokio::spawn(async move {
            idempotency::run(&db, scope, move |txn| {
                // Enough for one spend of 6 only: a second run would be refused, and the
                // retry must still answer the first one's posting.
                Box::pin(async move { ops::spend(txn, &t, 6, note("checkout")).await })
            })
            .await
        }));
    }
    let mut answers: Vec<Posted> = Vec::new();
    for task in tasks {
        answers.push(
            task.await
                .expect("task")
                .expect("every caller gets the answer"),
        );
    }
    let first = serde_json::to_value(&answers[0]).unwrap();
    for a in &answers[1..] {
        assert_eq!(serde_json::to_value(a).unwrap(), first);
    }
    let spends = f.postings_of_kind(PostingKind::Spend).await;
    assert_eq!(spends.len(), 1);
    assert_eq!(spends[0].id, answers[0].postings[0].id);
    assert_eq!(f.figures(c, &ty, now).await, [4, 0, 0]);

    // The same key with another request is refused.
    let other = pb::SpendPointsRequest {
        points: 1,
        ..request.clone()
    };
    let scope = IdempotencyScope::new(f.partner, "SpendPoints", "pos-42:spend", &other);
    let t = f.target(c, &ty, now);
    let err = idempotency::run::<Posted, _>(&f.db, scope, move |txn| {
        Box::pin(async move { ops::spend(txn, &t, 1, note("checkout")).await })
    })
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Conflict {
                reason: "IDEMPOTENCY_KEY_REUSED",
                ..
            }
        ),
        "{err:?}"
    );
    f.assert_balanced().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_captures_and_releases_settle_a_reservation_once() {
    let f = Fixture::postgres().await;
    let now = at("2026-03-01T12:00:00Z");
    let ty = f.points_type(TypeSpec::default(), now).await;
    let c = Uuid::now_v7();
    f.award(&f.target(c, &ty, now), 30, None, None)
        .await
        .unwrap();
    let held = f.reserve(&f.target(c, &ty, now), 20, None).await.unwrap();
    let pools = [f.db.clone(), f.connect_again().await];
    let mut tasks = Vec::new();
    for i in 0..12 {
        let db = pools[i % 2].clone();
        let (partner, id) = (f.partner, held.reservation.id);
        // Half capture all, half release.
        let capture = (i % 2 == 0).then_some(0);
        tasks.push(tokio::spawn(async move {
            let txn = begin_write(&db).await?;
            let r = ops::settle(&txn, partner, id, capture, note("settle"), now).await?;
            txn.commit().await?;
            Ok::<_, ApiError>(r)
        }));
    }
    let mut settled = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => settled += 1,
            Err(e) => assert_eq!(reason(&e), "RESERVATION_NOT_HELD"),
        }
    }
    assert_eq!(settled, 1);
    let captures = f.postings_of_kind(PostingKind::Capture).await.len();
    let releases = f.postings_of_kind(PostingKind::Release).await.len();
    assert_eq!(captures + releases, 1);
    let available = if captures == 1 { 10 } else { 30 };
    assert_eq!(f.figures(c, &ty, now).await, [available, 0, 0]);
    f.assert_balanced().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reversals_never_reverse_more_than_the_posting() {
    let f = Fixture::postgres().await;
    let now = at("2026-03-01T12:00:00Z");
    let ty = f.points_type(TypeSpec::default(), now).await;
    let c = Uuid::now_v7();
    f.award(&f.target(c, &ty, now), 10, None, None)
        .await
        .unwrap();
    let award = f
        .award(&f.target(c, &ty, now), 20, None, None)
        .await
        .unwrap();
    let award = super::posting_of(&award, PostingKind::Award).id;
    let pools = [f.db.clone(), f.connect_again().await];
    let mut tasks = Vec::new();
    for i in 0..10 {
        let db = pools[i % 2].clone();
        let partner = f.partner;
        tasks.push(tokio::spawn(async move {
            let txn = begin_write(&db).await?;
            let r = ops::reverse(&txn, partner, award, 3, note("return"), now).await?;
            txn.commit().await?;
            Ok::<_, ApiError>(r)
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => ok += 1,
            // 6 × 3 leaves 2: a seventh asks too much, later ones too.
            Err(ApiError::InvalidArgument(_)) => refused += 1,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!((ok, refused), (6, 4));
    let reversed: i64 = f
        .postings_of_kind(PostingKind::Reversal)
        .await
        .iter()
        .map(|p| p.amount)
        .sum();
    assert_eq!(reversed, 18);
    assert_eq!(f.figures(c, &ty, now).await, [12, 0, 0]);
    f.assert_balanced().await;
}

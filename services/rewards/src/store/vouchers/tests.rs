//! Vouchers against PostgreSQL (a fresh database per test), through the service's own API
//! object so that locks, transactions and idempotency are the real ones: exactly-once
//! redemption under concurrency, limits, and unique bulk codes.
use std::collections::HashSet;

use chrono::Utc;
use loyalty_platform::Role;
use loyalty_proto::rewards::v1::{self as pb, rewards_service_server::RewardsService};
use loyalty_testkit::error_reason as reason;
use sea_orm::{ConnectionTrait, Statement};
use tonic::{Code, Request};
use uuid::Uuid;

use crate::store::test_support::{TestApi, request};

enum Vouchers {}
type Fixture = TestApi<Vouchers>;

impl Fixture {
    fn req<T>(&self, partner: Uuid, message: T) -> Request<T> {
        request(partner, Role::Admin, message)
    }

    async fn reward(&self, settings: pb::Reward) -> String {
        self.create_reward(pb::Reward {
            display_name: "Ten percent".into(),
            r#type: pb::RewardType::Campaign as i32,
            benefit: Some(pb::reward::Benefit::CartPercentageDiscount(
                pb::CartPercentageDiscount { basis_points: 1000 },
            )),
            ..settings
        })
        .await
        .expect("reward")
        .id
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_use_voucher_redeemed_by_64_concurrent_calls_is_redeemed_once() {
    let f = std::sync::Arc::new(Fixture::postgres().await);
    let reward = f.reward(Default::default()).await;
    let customer = Uuid::now_v7();
    let voucher = f.issue(&reward, customer).await.expect("issued");
    let mut calls = Vec::new();
    for i in 0..64 {
        let f = f.clone();
        let code = voucher.code.clone();
        calls.push(tokio::spawn(async move {
            f.api
                .redeem_voucher(f.req(
                    f.partner,
                    pb::RedeemVoucherRequest {
                        idempotency_key: format!("redeem-{i}"),
                        code,
                        customer_id: customer.to_string(),
                        transaction_id: format!("T{i}"),
                        ..Default::default()
                    },
                ))
                .await
        }));
    }
    let mut won = Vec::new();
    let mut refused = 0;
    for c in calls {
        match c.await.expect("task") {
            Ok(r) => won.push(r.into_inner().voucher.expect("voucher")),
            Err(s) => {
                assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
                assert_eq!(reason(&s), "VOUCHER_ALREADY_REDEEMED");
                refused += 1;
            }
        }
    }
    assert_eq!(won.len(), 1, "exactly one redemption");
    assert_eq!(refused, 63);
    assert_eq!(won[0].state, pb::VoucherState::Redeemed as i32);
    // One VoucherRedeemed in the outbox, for the winner's transaction.
    let row = f
        .db
        .query_one(Statement::from_string(
            f.db.get_database_backend(),
            "SELECT count(*) AS n FROM outbox WHERE event_type = 'loyalty.events.v1.VoucherRedeemed'",
        ))
        .await
        .expect("count")
        .expect("row");
    assert_eq!(row.try_get::<i64>("", "n").expect("n"), 1);
}

#[tokio::test]
async fn limits_in_total_and_per_customer_are_enforced() {
    let f = Fixture::postgres().await;
    let reward = f
        .reward(pb::Reward {
            max_vouchers_total: 3,
            max_vouchers_per_customer: 2,
            ..Default::default()
        })
        .await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    f.issue(&reward, a).await.expect("a 1");
    f.issue(&reward, a).await.expect("a 2");
    let third = f.issue(&reward, a).await.expect_err("a 3");
    assert_eq!(reason(&third), "VOUCHER_LIMIT_REACHED");
    f.issue(&reward, b).await.expect("b 1");
    let fourth = f.issue(&reward, b).await.expect_err("total reached");
    assert_eq!(reason(&fourth), "VOUCHER_LIMIT_REACHED");
}

#[tokio::test]
async fn a_reservation_is_captured_by_its_own_transaction_only() {
    let f = Fixture::postgres().await;
    let reward = f.reward(Default::default()).await;
    let customer = Uuid::now_v7();
    let v = f.issue(&reward, customer).await.expect("issued");
    let reserved = f
        .api
        .reserve_voucher(f.req(
            f.partner,
            pb::ReserveVoucherRequest {
                idempotency_key: "r1".into(),
                code: v.code.to_lowercase(),
                customer_id: customer.to_string(),
                transaction_id: "T1".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("reserved")
        .into_inner()
        .voucher
        .expect("voucher");
    assert_eq!(reserved.state, pb::VoucherState::Reserved as i32);
    assert_eq!(reserved.reserve_transaction_id, "T1");
    let redeem = |key: &str, tx: &str| pb::RedeemVoucherRequest {
        idempotency_key: key.into(),
        code: v.code.clone(),
        customer_id: customer.to_string(),
        transaction_id: tx.into(),
        ..Default::default()
    };
    let other = f
        .api
        .redeem_voucher(f.req(f.partner, redeem("x1", "T2")))
        .await
        .expect_err("held by T1");
    assert_eq!(reason(&other), "VOUCHER_RESERVED");
    let done = f
        .api
        .redeem_voucher(f.req(f.partner, redeem("x2", "T1")))
        .await
        .expect("captured")
        .into_inner()
        .voucher
        .expect("voucher");
    assert_eq!(done.state, pb::VoucherState::Redeemed as i32);
    assert_eq!(done.redeem_transaction_id, "T1");
}

#[tokio::test]
async fn generated_codes_are_unique_per_partner_and_follow_the_pattern() {
    let f = Fixture::postgres().await;
    let reward = f.reward(Default::default()).await;
    // 8^4 × 24 = 98,304 combinations (the default charset has no 0 and 1): drawing 10,000
    // twice must collide and draw again.
    let generate = |key: &str| pb::GenerateVoucherCodesRequest {
        idempotency_key: key.into(),
        reward_id: reward.clone(),
        count: 10_000,
        prefix: "GOLD".into(),
        pattern: "####-?".into(),
        ..Default::default()
    };
    let first = f
        .api
        .generate_voucher_codes(f.req(f.partner, generate("g1")))
        .await
        .expect("first")
        .into_inner();
    let second = f
        .api
        .generate_voucher_codes(f.req(f.partner, generate("g2")))
        .await
        .expect("second")
        .into_inner();
    assert_eq!(first.generated_count, 10_000);
    assert_eq!(second.generated_count, 10_000);
    assert!(
        second.collisions > 0,
        "a dense pattern collides and is drawn again"
    );
    assert_eq!(first.codes.len(), 1000);
    for c in &first.codes {
        assert!(c.starts_with("GOLD-") && c.len() == 11, "{c}");
    }
    let row = f
        .db
        .query_one(Statement::from_string(
            f.db.get_database_backend(),
            format!(
                "SELECT count(*) AS n, count(DISTINCT code) AS d FROM vouchers WHERE partner_id = '{}'",
                f.partner
            ),
        ))
        .await
        .expect("count")
        .expect("row");
    assert_eq!(row.try_get::<i64>("", "n").expect("n"), 20_000);
    assert_eq!(row.try_get::<i64>("", "d").expect("d"), 20_000);
    // A retry of the same call generates nothing more.
    let again = f
        .api
        .generate_voucher_codes(f.req(f.partner, generate("g1")))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(again.codes, first.codes);
    // The same codes may exist at another partner.
    let other_partner = Uuid::now_v7();
    let code = first.codes[0].clone();
    let lookup = f
        .api
        .get_voucher(f.req(
            other_partner,
            pb::GetVoucherRequest {
                code: code.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("invisible");
    assert_eq!(lookup.code(), Code::NotFound);
    let dense = f
        .api
        .generate_voucher_codes(f.req(
            f.partner,
            pb::GenerateVoucherCodesRequest {
                count: 60_000,
                ..generate("g3")
            },
        ))
        .await
        .expect_err("too few combinations");
    assert_eq!(dense.code(), Code::InvalidArgument);
    let _ = Utc::now();
}

#[tokio::test]
async fn vouchers_work_on_sqlite_too() {
    let f = Fixture::sqlite().await;
    let reward = f.reward(Default::default()).await;
    let customer = Uuid::now_v7();
    let v = f.issue(&reward, customer).await.expect("issued");
    let redeem = |key: &str, tx: &str| pb::RedeemVoucherRequest {
        idempotency_key: key.into(),
        code: v.code.clone(),
        customer_id: customer.to_string(),
        transaction_id: tx.into(),
        ..Default::default()
    };
    f.api
        .redeem_voucher(f.req(f.partner, redeem("a", "T1")))
        .await
        .expect("redeemed");
    let again = f
        .api
        .redeem_voucher(f.req(f.partner, redeem("b", "T2")))
        .await
        .expect_err("once");
    assert_eq!(reason(&again), "VOUCHER_ALREADY_REDEEMED");
    let generated = f
        .api
        .generate_voucher_codes(f.req(
            f.partner,
            pb::GenerateVoucherCodesRequest {
                idempotency_key: "g".into(),
                reward_id: reward.clone(),
                count: 2_000,
                pattern: "####-????".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("generated")
        .into_inner();
    assert_eq!(generated.generated_count, 2_000);
    assert_eq!(generated.codes.len(), 1000);
    let listed = f
        .api
        .list_vouchers(f.req(
            f.partner,
            pb::ListVouchersRequest {
                reward_id: reward,
                states: vec![pb::VoucherState::Active as i32],
                page_size: 1000,
                ..Default::default()
            },
        ))
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(listed.vouchers.len(), 1000);
    assert!(!listed.next_page_token.is_empty());
}

/// Benchmark, not a test: `scripts/bench-voucher-codes` runs it in release mode.
/// VOUCHER_BENCH_COUNT codes (default 1,000,000) into a fresh PostgreSQL database.
#[tokio::test]
#[ignore = "benchmark: scripts/bench-voucher-codes"]
async fn bench_voucher_code_generation() {
    let f = Fixture::postgres().await;
    let reward = f.reward(Default::default()).await;
    let total: i32 = std::env::var("VOUCHER_BENCH_COUNT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let mut done = 0;
    let mut seen = HashSet::new();
    let start = std::time::Instant::now();
    let mut round = 0;
    while done < total {
        let count = (total - done).min(1_000_000);
        let r = f
            .api
            .generate_voucher_codes(f.req(
                f.partner,
                pb::GenerateVoucherCodesRequest {
                    idempotency_key: format!("bench-{round}"),
                    reward_id: reward.clone(),
                    count,
                    prefix: "GOLD".into(),
                    pattern: "####-????".into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("generated")
            .into_inner();
        done += r.generated_count;
        seen.extend(r.codes);
        round += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "generated {done} codes (GOLD-####-????) in {secs:.2} s: {:.0} codes/s into PostgreSQL",
        f64::from(done) / secs
    );
}

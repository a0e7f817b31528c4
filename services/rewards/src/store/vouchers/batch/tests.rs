//! IssueVouchers against PostgreSQL and SQLite (a fresh database per test), through the
//! service's own API object so that transactions, locks and the unique index are the real
//! ones: a thousand vouchers in one call, the same answer again, overlapping calls, limits,
//! refusals, concurrent calls for the same recipients, and codes a generation holds.
use std::{collections::HashSet, sync::Arc};

use chrono::{Duration, SubsecRound, Utc};
use loyalty_platform::{Role, Violations, time::to_timestamp};
use loyalty_proto::rewards::v1::{self as pb, rewards_service_server::RewardsService};
use loyalty_testkit::{error_reason as reason, violated_fields};
use tonic::{Code, Status};
use uuid::Uuid;

use crate::{
    domain::{
        Validity,
        vouchers::{
            CodeRequest, CodeSpec, VoucherSource,
            batch::{BatchAnswer, BatchOrder},
        },
    },
    store::{
        test_support::{TestApi, key, request},
        vouchers::{GeneratedBatch, generated},
    },
};

enum Batches {}
type Fixture = TestApi<Batches>;

const ISSUED: &str = "loyalty.events.v1.VoucherIssued";

fn customers(n: usize) -> Vec<Uuid> {
    (0..n).map(|_| Uuid::now_v7()).collect()
}

fn batch(reward: &str, customers: &[Uuid], source: Uuid) -> pb::IssueVouchersRequest {
    pb::IssueVouchersRequest {
        reward_id: reward.into(),
        customer_ids: customers.iter().map(Uuid::to_string).collect(),
        source: pb::VoucherSource::Campaign as i32,
        source_id: source.to_string(),
        valid_until_time: None,
    }
}

impl Fixture {
    /// A campaign reward whose codes start with `prefix`, valid 30 days, with `settings`.
    async fn campaign(&self, prefix: &str, settings: pb::Reward) -> String {
        self.create_reward(pb::Reward {
            display_name: "Ten percent".into(),
            r#type: pb::RewardType::Campaign as i32,
            benefit: Some(pb::reward::Benefit::CartPercentageDiscount(
                pb::CartPercentageDiscount { basis_points: 1000 },
            )),
            voucher_code_prefix: prefix.into(),
            voucher_validity_days: 30,
            ..settings
        })
        .await
        .expect("reward")
        .id
    }

    async fn issue_as(
        &self,
        role: Role,
        req: pb::IssueVouchersRequest,
    ) -> Result<Vec<pb::IssuedVoucher>, Status> {
        Ok(self
            .api
            .issue_vouchers(request(self.partner, role, req))
            .await?
            .into_inner()
            .vouchers)
    }

    /// IssueVouchers as the campaigns service does it: the partner's `service` role.
    async fn issue_batch(
        &self,
        req: pb::IssueVouchersRequest,
    ) -> Result<Vec<pb::IssuedVoucher>, Status> {
        self.issue_as(Role::Service, req).await
    }

    /// Stored vouchers whose code starts with `prefix`, and how many distinct codes they have.
    async fn stored(&self, prefix: &str) -> (i64, i64) {
        let n = self
            .count(&format!(
                "SELECT count(*) AS n FROM vouchers WHERE code LIKE '{prefix}-%'"
            ))
            .await;
        let distinct = self
            .count(&format!(
                "SELECT count(DISTINCT code) AS n FROM vouchers WHERE code LIKE '{prefix}-%'"
            ))
            .await;
        (n, distinct)
    }

    async fn vouchers_issued(&self, reward: &str) -> i64 {
        self.api
            .get_reward(request(
                self.partner,
                Role::Admin,
                pb::GetRewardRequest {
                    reward_id: reward.into(),
                },
            ))
            .await
            .expect("reward")
            .into_inner()
            .reward
            .expect("reward")
            .vouchers_issued
    }

    async fn voucher_by_code(&self, code: &str) -> pb::Voucher {
        self.api
            .get_voucher(request(
                self.partner,
                Role::Pos,
                pb::GetVoucherRequest {
                    code: code.into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("voucher")
            .into_inner()
            .voucher
            .expect("voucher")
    }
}

fn ids(answers: &[pb::IssuedVoucher]) -> Vec<(String, String, String)> {
    answers
        .iter()
        .map(|a| (a.customer_id.clone(), a.voucher_id.clone(), a.code.clone()))
        .collect()
}

async fn a_thousand_vouchers_in_one_call_then_the_same_again(f: Fixture) {
    let reward = f.campaign("TEN", Default::default()).await;
    let source = Uuid::now_v7();
    let first_customers = customers(1000);
    let first = f
        .issue_batch(batch(&reward, &first_customers, source))
        .await
        .expect("issued");
    assert_eq!(first.len(), 1000);
    for (c, a) in first_customers.iter().zip(&first) {
        assert_eq!(a.customer_id, c.to_string(), "in the request's order");
        assert!(a.newly_issued);
        assert_eq!(a.refusal_reason, "");
        assert!(
            a.code.starts_with("TEN-") && a.code.len() == 14,
            "{}",
            a.code
        );
        assert!(a.valid_until_time.is_some(), "30 days");
    }
    let codes: HashSet<&str> = first.iter().map(|a| a.code.as_str()).collect();
    assert_eq!(codes.len(), 1000);
    assert_eq!(f.stored("TEN").await, (1000, 1000));
    assert_eq!(f.events(ISSUED).await, 1000);
    assert_eq!(f.vouchers_issued(&reward).await, 1000);

    // Asking again answers the same vouchers and issues nothing.
    let again = f
        .issue_batch(batch(&reward, &first_customers, source))
        .await
        .expect("again");
    assert_eq!(ids(&again), ids(&first));
    assert!(again.iter().all(|a| !a.newly_issued));
    assert_eq!(
        again
            .iter()
            .map(|a| &a.valid_until_time)
            .collect::<Vec<_>>(),
        first
            .iter()
            .map(|a| &a.valid_until_time)
            .collect::<Vec<_>>()
    );
    assert_eq!(f.events(ISSUED).await, 1000);

    // Overlapping: every other customer of the first call, interleaved with new ones.
    let fresh = customers(500);
    let mixed: Vec<Uuid> = first_customers
        .iter()
        .step_by(2)
        .zip(&fresh)
        .flat_map(|(old, new)| [*old, *new])
        .collect();
    let overlap = f
        .issue_batch(batch(&reward, &mixed, source))
        .await
        .expect("overlap");
    for (i, a) in overlap.iter().enumerate() {
        assert_eq!(a.customer_id, mixed[i].to_string());
        if i % 2 == 0 {
            let before = &first[i];
            assert_eq!((&a.voucher_id, &a.code), (&before.voucher_id, &before.code));
            assert!(!a.newly_issued);
        } else {
            assert!(a.newly_issued);
        }
    }
    assert_eq!(f.stored("TEN").await, (1500, 1500));
    assert_eq!(f.events(ISSUED).await, 1500);
    assert_eq!(f.vouchers_issued(&reward).await, 1500);

    // Another source (a workflow) gives the same customers vouchers of its own.
    let workflow = pb::IssueVouchersRequest {
        source: pb::VoucherSource::Workflow as i32,
        ..batch(&reward, &first_customers[..10], Uuid::now_v7())
    };
    let other = f.issue_batch(workflow).await.expect("workflow");
    assert!(other.iter().all(|a| a.newly_issued));
    assert!(other.iter().zip(&first).all(|(o, a)| o.code != a.code));
    assert_eq!(f.stored("TEN").await, (1510, 1510));

    // A second reward of the same campaign (same source) gives vouchers of its own.
    let second_reward = f.campaign("TWO", Default::default()).await;
    let two = f
        .issue_batch(batch(&second_reward, &first_customers[..10], source))
        .await
        .expect("second reward");
    assert!(
        two.iter()
            .all(|a| a.newly_issued && a.code.starts_with("TWO-"))
    );
    let again = f
        .issue_batch(batch(&second_reward, &first_customers[..10], source))
        .await
        .expect("second reward again");
    assert_eq!(ids(&again), ids(&two));

    // The vouchers are ordinary vouchers: found by code, listed, redeemable once.
    let v = f.voucher_by_code(&first[3].code).await;
    assert_eq!(v.id, first[3].voucher_id);
    assert_eq!(v.customer_id, first_customers[3].to_string());
    assert_eq!(v.source, pb::VoucherSource::Campaign as i32);
    assert_eq!(v.source_id, source.to_string());
    assert_eq!(v.state, pb::VoucherState::Active as i32);
    assert_eq!(v.valid_until_time, first[3].valid_until_time);
    let listed = f
        .api
        .list_vouchers(request(
            f.partner,
            Role::Pos,
            pb::ListVouchersRequest {
                customer_id: first_customers[3].to_string(),
                ..Default::default()
            },
        ))
        .await
        .expect("listed")
        .into_inner()
        .vouchers;
    assert_eq!(
        listed.len(),
        3,
        "the campaign's two rewards' and the workflow's"
    );
    let redeemed = f
        .api
        .redeem_voucher(request(
            f.partner,
            Role::Pos,
            pb::RedeemVoucherRequest {
                idempotency_key: key(),
                code: first[3].code.clone(),
                customer_id: first_customers[3].to_string(),
                transaction_id: "T1".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("redeemed")
        .into_inner()
        .voucher
        .expect("voucher");
    assert_eq!(redeemed.state, pb::VoucherState::Redeemed as i32);
    // A redeemed voucher is still the customer's voucher of this source.
    let after = f
        .issue_batch(batch(&reward, &first_customers[3..4], source))
        .await
        .expect("after redemption");
    assert_eq!(after[0].voucher_id, first[3].voucher_id);
    assert!(!after[0].newly_issued);
}

#[tokio::test]
async fn a_thousand_vouchers_in_one_call_then_the_same_again_on_postgres() {
    a_thousand_vouchers_in_one_call_then_the_same_again(Fixture::postgres().await).await;
}

#[tokio::test]
async fn a_thousand_vouchers_in_one_call_then_the_same_again_on_sqlite() {
    a_thousand_vouchers_in_one_call_then_the_same_again(Fixture::sqlite().await).await;
}

async fn limits_refuse_per_customer_and_keep_what_was_issued(f: Fixture) {
    let reward = f
        .campaign(
            "LIM",
            pb::Reward {
                max_vouchers_per_customer: 1,
                max_vouchers_total: 5,
                ..Default::default()
            },
        )
        .await;
    let c = customers(7);
    // c[0] already holds a voucher of the reward, issued one by one.
    f.issue(&reward, c[0]).await.expect("single issue");
    let source = Uuid::now_v7();
    let got = f
        .issue_batch(batch(&reward, &c, source))
        .await
        .expect("issued");
    let reasons: Vec<&str> = got.iter().map(|a| a.refusal_reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "VOUCHER_LIMIT_REACHED",
            "",
            "",
            "",
            "",
            "VOUCHER_LIMIT_REACHED",
            "VOUCHER_LIMIT_REACHED"
        ]
    );
    assert!(got[0].voucher_id.is_empty() && got[0].code.is_empty());
    assert!(got[1..5].iter().all(|a| a.newly_issued));
    assert_eq!(f.vouchers_issued(&reward).await, 5);
    assert_eq!(f.events(ISSUED).await, 5);
    // Asked again with the total reached: the issued ones are answered, the others refused.
    let again = f
        .issue_batch(batch(&reward, &c, source))
        .await
        .expect("again");
    assert_eq!(ids(&again), ids(&got));
    assert!(again.iter().all(|a| !a.newly_issued));
    // Another source cannot give c[1] a second voucher.
    let second = f
        .issue_batch(batch(&reward, &c[1..2], Uuid::now_v7()))
        .await
        .expect("second source");
    assert_eq!(second[0].refusal_reason, "VOUCHER_LIMIT_REACHED");
    assert_eq!(f.stored("LIM").await.0, 5);
}

#[tokio::test]
async fn limits_refuse_per_customer_and_keep_what_was_issued_on_postgres() {
    limits_refuse_per_customer_and_keep_what_was_issued(Fixture::postgres().await).await;
}

#[tokio::test]
async fn limits_refuse_per_customer_and_keep_what_was_issued_on_sqlite() {
    limits_refuse_per_customer_and_keep_what_was_issued(Fixture::sqlite().await).await;
}

#[tokio::test]
async fn only_an_active_campaign_reward_of_the_partner_issues_and_bad_input_is_named() {
    let f = Fixture::sqlite().await;
    let reward = f.campaign("OK", Default::default()).await;
    let c = customers(2);
    let coupon = f
        .create_reward(pb::Reward {
            display_name: "Coupon".into(),
            r#type: pb::RewardType::Coupon as i32,
            benefit: Some(pb::reward::Benefit::CartPercentageDiscount(
                pb::CartPercentageDiscount { basis_points: 500 },
            )),
            ..Default::default()
        })
        .await
        .expect("coupon")
        .id;
    let not_campaign = f
        .issue_batch(batch(&coupon, &c, Uuid::now_v7()))
        .await
        .expect_err("coupon");
    assert_eq!(not_campaign.code(), Code::FailedPrecondition);
    assert_eq!(reason(&not_campaign), "REWARD_NOT_CAMPAIGN");

    let draft = f
        .campaign(
            "DRAFT",
            pb::Reward {
                state: pb::RewardState::Draft as i32,
                ..Default::default()
            },
        )
        .await;
    let inactive = f
        .issue_batch(batch(&draft, &c, Uuid::now_v7()))
        .await
        .expect_err("draft");
    assert_eq!(inactive.code(), Code::FailedPrecondition);
    assert_eq!(reason(&inactive), "REWARD_NOT_ACTIVE");

    let rival = f.another_partner();
    let hidden = rival
        .issue_batch(batch(&reward, &c, Uuid::now_v7()))
        .await
        .expect_err("another partner's reward");
    assert_eq!(hidden.code(), Code::NotFound);
    let unknown = f
        .issue_batch(batch(&Uuid::now_v7().to_string(), &c, Uuid::now_v7()))
        .await
        .expect_err("no such reward");
    assert_eq!(unknown.code(), Code::NotFound);

    let bad = f
        .issue_batch(pb::IssueVouchersRequest {
            reward_id: "nope".into(),
            customer_ids: vec![
                c[0].to_string(),
                "x".into(),
                c[0].to_string(),
                String::new(),
            ],
            source: pb::VoucherSource::Manual as i32,
            source_id: String::new(),
            valid_until_time: Some(to_timestamp(Utc::now() - Duration::hours(1))),
        })
        .await
        .expect_err("invalid");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&bad),
        [
            "reward_id",
            "customer_ids[1]",
            "customer_ids[2]",
            "customer_ids[3]",
            "source",
            "source_id",
            "valid_until_time"
        ]
    );
    let none = f
        .issue_batch(batch(&reward, &[], Uuid::now_v7()))
        .await
        .expect_err("no customers");
    assert_eq!(violated_fields(&none), ["customer_ids"]);
    let too_many = f
        .issue_batch(batch(&reward, &customers(1001), Uuid::now_v7()))
        .await
        .expect_err("too many");
    assert_eq!(violated_fields(&too_many), ["customer_ids"]);

    // The requested end may shorten the validity, not pass the reward's end.
    let ending = f
        .campaign(
            "END",
            pb::Reward {
                valid_until_time: Some(to_timestamp(Utc::now() + Duration::days(10))),
                ..Default::default()
            },
        )
        .await;
    let late = f
        .issue_batch(pb::IssueVouchersRequest {
            valid_until_time: Some(to_timestamp(Utc::now() + Duration::days(11))),
            ..batch(&ending, &c, Uuid::now_v7())
        })
        .await
        .expect_err("after the reward's end");
    assert_eq!(violated_fields(&late), ["valid_until_time"]);
    let until = to_timestamp((Utc::now() + Duration::days(2)).trunc_subsecs(0));
    let short = f
        .issue_batch(pb::IssueVouchersRequest {
            valid_until_time: Some(until),
            ..batch(&ending, &c, Uuid::now_v7())
        })
        .await
        .expect("shortened");
    assert!(short.iter().all(|a| a.valid_until_time == Some(until)));

    // Every issuing role may call it; the campaigns service calls it as `service`.
    for role in [Role::Marketing, Role::Pos, Role::Support, Role::Admin] {
        f.issue_as(role, batch(&reward, &c, Uuid::now_v7()))
            .await
            .expect("an issuer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_for_the_same_customers_issue_each_voucher_once() {
    let f = Arc::new(Fixture::postgres().await);
    let reward = f.campaign("CONC", Default::default()).await;
    let source = Uuid::now_v7();
    let c = customers(500);
    let mut reversed = c.clone();
    reversed.reverse();
    let mut calls = Vec::new();
    for order in [c.clone(), reversed, c.clone()] {
        let f = f.clone();
        let req = batch(&reward, &order, source);
        calls.push(tokio::spawn(async move { f.issue_batch(req).await }));
    }
    let mut answers = Vec::new();
    for call in calls {
        let mut got = call.await.expect("task").expect("issued");
        got.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
        answers.push(got);
    }
    for i in 0..500 {
        let same: HashSet<&str> = answers.iter().map(|a| a[i].voucher_id.as_str()).collect();
        assert_eq!(same.len(), 1, "one voucher per customer");
        let new = answers.iter().filter(|a| a[i].newly_issued).count();
        assert_eq!(new, 1, "issued by exactly one call");
    }
    assert_eq!(f.stored("CONC").await, (500, 500));
    assert_eq!(f.events(ISSUED).await, 500);
    assert_eq!(f.vouchers_issued(&reward).await, 500);
}

/// The race made deterministic: a call inserts while another call's transaction holds the
/// same (reward, source, customer) entries; once that one commits, the waiting call skips them,
/// reads them back and answers them as existing, issuing only the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_waiting_on_another_calls_vouchers_answers_them_once_it_commits() {
    let f = Arc::new(Fixture::postgres().await);
    let reward = f.campaign("WAIT", Default::default()).await;
    let source = Uuid::now_v7();
    let c = customers(200);
    let txn = loyalty_platform::db::begin_write(&f.db)
        .await
        .expect("begin");
    let order = BatchOrder {
        reward_id: Uuid::parse_str(&reward).expect("uuid"),
        customer_ids: c[..100].to_vec(),
        source: VoucherSource::Campaign,
        source_id: source,
        requested_until: None,
    };
    let held = super::issue(&txn, f.partner, &order, Utc::now())
        .await
        .expect("first call");
    let waiting = {
        let f = f.clone();
        let req = batch(&reward, &c, source);
        tokio::spawn(async move { f.issue_batch(req).await })
    };
    // Poll until the second call waits on the first one's index entries.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while f
        .count(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock' \
             AND query LIKE 'INSERT INTO vouchers%'",
        )
        .await
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the second call never waited"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    txn.commit().await.expect("commit");
    let second = waiting.await.expect("task").expect("second call");
    for (i, a) in second.iter().enumerate() {
        if i < 100 {
            let BatchAnswer::Issued { voucher, .. } = &held[i] else {
                panic!("issued by the first call");
            };
            assert_eq!(a.voucher_id, voucher.id.to_string());
            assert!(!a.newly_issued);
        } else {
            assert!(a.newly_issued);
        }
    }
    assert_eq!(f.stored("WAIT").await, (200, 200));
    assert_eq!(f.events(ISSUED).await, 200);
    assert_eq!(f.vouchers_issued(&reward).await, 200);
}

async fn codes_of_generations_are_found_in_one_read(f: Fixture) {
    let reward = f.campaign("GEN", Default::default()).await;
    let spec = CodeSpec::parse(
        &mut Violations::new(),
        &CodeRequest {
            prefix: "GEN".into(),
            ..Default::default()
        },
    )
    .expect("spec");
    // A complete generation of the reward's shape, and a pending one (being written).
    let complete = f
        .api
        .generate_voucher_codes(request(
            f.partner,
            Role::Marketing,
            pb::GenerateVoucherCodesRequest {
                idempotency_key: key(),
                reward_id: reward.clone(),
                count: 3000,
                ..Default::default()
            },
        ))
        .await
        .expect("generated")
        .into_inner()
        .codes;
    let pending = generated::insert_for_test(
        &f.db,
        &GeneratedBatch {
            partner_id: f.partner,
            reward_id: Uuid::parse_str(&reward).expect("uuid"),
            source: VoucherSource::Campaign,
            source_id: String::new(),
            validity: Validity::default(),
            issued_at: Utc::now(),
        },
        &spec,
        500,
        generated::PENDING,
    )
    .await
    .expect("pending")
    .first_codes;
    let fresh: Vec<String> = (0..200).map(|i| format!("GEN-ZZZZZZ{i:04}")).collect();
    let asked: Vec<String> = complete[..300]
        .iter()
        .chain(&pending[..100])
        .chain(&fresh)
        .cloned()
        .collect();
    let generations = generated::OverlappingGenerations::read(&f.db, f.partner, &spec)
        .await
        .expect("generations");
    let taken = generations
        .taken(&f.db, f.partner, &asked)
        .await
        .expect("taken");
    assert_eq!(taken.len(), 400);
    assert!(fresh.iter().all(|c| !taken.contains(c)));
    // Another partner's generations take nothing of this one's.
    let rival = f.another_partner();
    let none = generated::OverlappingGenerations::read(&rival.db, rival.partner, &spec)
        .await
        .expect("generations")
        .taken(&rival.db, rival.partner, &asked)
        .await
        .expect("taken");
    assert!(none.is_empty());
}

#[tokio::test]
async fn codes_of_generations_are_found_in_one_read_on_postgres() {
    codes_of_generations_are_found_in_one_read(Fixture::postgres().await).await;
}

#[tokio::test]
async fn codes_of_generations_are_found_in_one_read_on_sqlite() {
    codes_of_generations_are_found_in_one_read(Fixture::sqlite().await).await;
}

/// Measurement, not a test: `cargo test -p loyalty-rewards --release --lib -- --ignored
/// --nocapture bench_issue_vouchers`. On a fresh PostgreSQL database, through the handler in
/// process: CALLS (default 100) calls of 1,000 new recipients one after the other, then as
/// many from TASKS (default 4) tasks at once, then RETRIES (default 10) of earlier calls (every
/// recipient answered from the stored vouchers); prints vouchers per second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "measurement"]
async fn bench_issue_vouchers() {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let (calls, tasks, retries) = (env("CALLS", 100), env("TASKS", 4), env("RETRIES", 10));
    let f = Arc::new(Fixture::postgres().await);
    let reward = f.campaign("BENCH", Default::default()).await;
    let source = Uuid::now_v7();
    let batches: Vec<Vec<Uuid>> = (0..calls).map(|_| customers(1000)).collect();
    let start = std::time::Instant::now();
    for b in &batches {
        f.issue_batch(batch(&reward, b, source))
            .await
            .expect("issued");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "IssueVouchers, 1 caller: {calls} calls x 1000 in {secs:.2} s = {:.0} vouchers/s \
         ({:.1} ms per call)",
        (calls * 1000) as f64 / secs,
        secs * 1000.0 / calls as f64
    );
    let start = std::time::Instant::now();
    let mut running = Vec::new();
    for t in 0..tasks {
        let f = f.clone();
        let reward = reward.clone();
        running.push(tokio::spawn(async move {
            for _ in (t..calls).step_by(tasks) {
                f.issue_batch(batch(&reward, &customers(1000), source))
                    .await
                    .expect("issued");
            }
        }));
    }
    for r in running {
        r.await.expect("task");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "IssueVouchers, {tasks} callers: {calls} calls x 1000 in {secs:.2} s = {:.0} vouchers/s",
        (calls * 1000) as f64 / secs
    );
    let start = std::time::Instant::now();
    for b in batches.iter().take(retries) {
        let again = f
            .issue_batch(batch(&reward, b, source))
            .await
            .expect("again");
        assert!(again.iter().all(|a| !a.newly_issued));
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "IssueVouchers retried: {retries} calls x 1000 in {secs:.2} s ({:.1} ms per call)",
        secs * 1000.0 / retries.max(1) as f64
    );
    assert_eq!(f.stored("BENCH").await.0, (2 * calls * 1000) as i64);
}

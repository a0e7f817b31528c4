//! Vouchers against PostgreSQL (a fresh database per test), through the service's own API
//! object so that locks, transactions and idempotency are the real ones: exactly-once
//! redemption under concurrency, limits, and unique bulk codes.
use std::collections::HashSet;

use chrono::Utc;
use loyalty_platform::Role;
use loyalty_proto::rewards::v1::{self as pb, rewards_service_server::RewardsService};
use loyalty_testkit::error_reason as reason;
use sea_orm::{ConnectionTrait, Statement};
use tonic::{Code, Request, Status};
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

impl Fixture {
    /// Issues a voucher with the code given to a new customer.
    async fn issue_code(&self, reward_id: &str, code: &str) {
        self.api
            .issue_voucher(self.req(
                self.partner,
                pb::IssueVoucherRequest {
                    idempotency_key: format!("issue-{code}"),
                    reward_id: reward_id.into(),
                    customer_id: Uuid::now_v7().to_string(),
                    source: pb::VoucherSource::Manual as i32,
                    code: code.into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("issued");
    }

    /// Every generated code of the partner (complete and pending generations), of length `len`.
    async fn generated_codes(&self, len: usize) -> Vec<String> {
        let rows = self
            .db
            .query_all(Statement::from_string(
                self.db.get_database_backend(),
                format!(
                    "SELECT codes FROM voucher_code_buckets WHERE partner_id = '{}'",
                    self.partner
                ),
            ))
            .await
            .expect("codes");
        rows.iter()
            .flat_map(|r| {
                let codes: String = r.try_get("", "codes").expect("codes");
                codes
                    .as_bytes()
                    .chunks(len)
                    .map(|c| String::from_utf8(c.to_vec()).expect("ascii"))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    async fn generate(
        &self,
        key: &str,
        reward_id: &str,
        count: i32,
        pattern: &str,
        charset: &str,
    ) -> Result<pb::GenerateVoucherCodesResponse, Status> {
        Ok(self
            .api
            .generate_voucher_codes(self.req(
                self.partner,
                pb::GenerateVoucherCodesRequest {
                    idempotency_key: key.into(),
                    reward_id: reward_id.into(),
                    count,
                    pattern: pattern.into(),
                    charset: charset.into(),
                    ..Default::default()
                },
            ))
            .await?
            .into_inner())
    }

    async fn get_code(&self, code: &str) -> Result<pb::Voucher, Status> {
        Ok(self
            .api
            .get_voucher(self.req(
                self.partner,
                pb::GetVoucherRequest {
                    code: code.into(),
                    ..Default::default()
                },
            ))
            .await?
            .into_inner()
            .voucher
            .expect("voucher"))
    }

    async fn list_reward(&self, reward_id: &str, states: Vec<i32>) -> Vec<pb::Voucher> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .api
                .list_vouchers(self.req(
                    self.partner,
                    pb::ListVouchersRequest {
                        reward_id: reward_id.into(),
                        states: states.clone(),
                        page_size: 100,
                        page_token: token.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .expect("list")
                .into_inner();
            out.extend(page.vouchers);
            if page.next_page_token.is_empty() {
                return out;
            }
            token = page.next_page_token;
        }
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
    let codes = f.generated_codes(11).await;
    assert_eq!(codes.len(), 20_000);
    assert_eq!(codes.iter().collect::<HashSet<_>>().len(), 20_000);
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

/// Generated codes have no `vouchers` row until used: lookups, validation, listing,
/// redemption (exactly once under concurrency) and cancellation find them in their generation.
async fn generated_codes_behave_as_vouchers(f: std::sync::Arc<Fixture>, concurrent: usize) {
    let reward = f.reward(Default::default()).await;
    let generated = f
        .generate("gen-1", &reward, 300, "GEN-######", "")
        .await
        .expect("generated");
    assert_eq!(generated.generated_count, 300);
    let code = generated.codes[7].clone();
    let found = f
        .get_code(&code.to_lowercase())
        .await
        .expect("found by code");
    assert_eq!(found.code, code);
    assert_eq!(found.state, pb::VoucherState::Active as i32);
    assert_eq!(found.reward_id, reward);
    assert!(found.customer_id.is_empty());
    let by_id = f
        .api
        .get_voucher(f.req(
            f.partner,
            pb::GetVoucherRequest {
                voucher_id: found.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("found by id")
        .into_inner()
        .voucher
        .expect("voucher");
    assert_eq!(by_id, found);
    let valid = f
        .api
        .validate_voucher(f.req(
            f.partner,
            pb::ValidateVoucherRequest {
                code: code.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("validate")
        .into_inner();
    assert!(valid.valid, "{valid:?}");
    // Listed as the reward's vouchers, each once, newest (highest id) first.
    let listed = f.list_reward(&reward, vec![]).await;
    assert_eq!(listed.len(), 300);
    let ids: HashSet<&str> = listed.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids.len(), 300);
    assert!(listed.windows(2).all(|w| w[0].id > w[1].id));
    let codes: HashSet<&str> = listed.iter().map(|v| v.code.as_str()).collect();
    assert!(generated.codes.iter().all(|c| codes.contains(c.as_str())));
    // Concurrent redemptions of the generated code: exactly one wins.
    let mut calls = Vec::new();
    for i in 0..concurrent {
        let f = f.clone();
        let code = code.clone();
        calls.push(tokio::spawn(async move {
            f.api
                .redeem_voucher(f.req(
                    f.partner,
                    pb::RedeemVoucherRequest {
                        idempotency_key: format!("redeem-gen-{i}"),
                        code,
                        transaction_id: format!("T{i}"),
                        ..Default::default()
                    },
                ))
                .await
        }));
    }
    let mut won = 0;
    for c in calls {
        match c.await.expect("task") {
            Ok(_) => won += 1,
            Err(s) => assert_eq!(reason(&s), "VOUCHER_ALREADY_REDEEMED", "{s:?}"),
        }
    }
    assert_eq!(won, 1, "exactly one redemption");
    let redeemed = f.get_code(&code).await.expect("redeemed");
    assert_eq!(redeemed.id, found.id, "the materialised row keeps the id");
    assert_eq!(redeemed.state, pb::VoucherState::Redeemed as i32);
    let listed = f.list_reward(&reward, vec![]).await;
    assert_eq!(listed.len(), 300, "the materialised voucher is listed once");
    let only_redeemed = f
        .list_reward(&reward, vec![pb::VoucherState::Redeemed as i32])
        .await;
    assert_eq!(only_redeemed.len(), 1);
    assert_eq!(only_redeemed[0].code, code);
    // A generated code cannot be issued again.
    let taken = f
        .api
        .issue_voucher(f.req(
            f.partner,
            pb::IssueVoucherRequest {
                idempotency_key: "issue-taken".into(),
                reward_id: reward.clone(),
                customer_id: Uuid::now_v7().to_string(),
                source: pb::VoucherSource::Manual as i32,
                code: generated.codes[3].clone(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("taken");
    assert_eq!(taken.code(), Code::AlreadyExists);
    // Cancelling the reward's vouchers cancels the generated ones too.
    let archived = f
        .api
        .archive_reward(f.req(
            f.partner,
            pb::ArchiveRewardRequest {
                idempotency_key: "archive".into(),
                reward_id: reward.clone(),
                cancel_vouchers: true,
            },
        ))
        .await;
    archived.expect("archived");
    let other = f.get_code(&generated.codes[8]).await.expect("cancelled");
    assert_eq!(other.state, pb::VoucherState::Cancelled as i32);
    let still = f.get_code(&code).await.expect("redeemed");
    assert_eq!(still.state, pb::VoucherState::Redeemed as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn generated_codes_behave_as_vouchers_on_postgres() {
    generated_codes_behave_as_vouchers(std::sync::Arc::new(Fixture::postgres().await), 32).await;
}

#[tokio::test]
async fn generated_codes_behave_as_vouchers_on_sqlite() {
    generated_codes_behave_as_vouchers(std::sync::Arc::new(Fixture::sqlite().await), 4).await;
}

#[tokio::test]
async fn generation_avoids_taken_codes_and_refuses_an_exhausted_pattern() {
    let f = Fixture::postgres().await;
    let reward = f.reward(Default::default()).await;
    // "AAAA-****" over X and Y: 16 codes. Four are issued, then 8 + 4 generated: all 16.
    let mut issued = HashSet::new();
    for c in ["AAAA-XXXX", "AAAA-XYXY", "AAAA-YYYY", "AAAA-YXXY"] {
        f.api
            .issue_voucher(f.req(
                f.partner,
                pb::IssueVoucherRequest {
                    idempotency_key: format!("issue-{c}"),
                    reward_id: reward.clone(),
                    customer_id: Uuid::now_v7().to_string(),
                    source: pb::VoucherSource::Manual as i32,
                    code: c.into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("issued");
        issued.insert(c.to_owned());
    }
    let first = f
        .generate("g1", &reward, 8, "AAAA-****", "XY")
        .await
        .expect("first");
    let second = f
        .generate("g2", &reward, 4, "AAAA-****", "XY")
        .await
        .expect("second");
    assert_eq!((first.generated_count, second.generated_count), (8, 4));
    assert!(second.collisions > 0, "taken codes are drawn again");
    let all: HashSet<String> = first.codes.iter().chain(&second.codes).cloned().collect();
    assert_eq!(all.len(), 12);
    assert!(all.is_disjoint(&issued));
    // A retry answers the same and adds nothing.
    let again = f
        .generate("g2", &reward, 4, "AAAA-****", "XY")
        .await
        .expect("retry");
    assert_eq!(again.codes, second.codes);
    assert_eq!(f.generated_codes(9).await.len(), 12);
    // Nothing left: refused, and nothing stays behind.
    let exhausted = f
        .generate("g3", &reward, 1, "AAAA-****", "XY")
        .await
        .expect_err("exhausted");
    assert_eq!(exhausted.code(), Code::FailedPrecondition);
    assert_eq!(reason(&exhausted), "CODE_SPACE_EXHAUSTED");
    assert_eq!(f.generated_codes(9).await.len(), 12);
}

#[tokio::test]
async fn a_pending_generation_is_invisible_and_cleaned_up_by_the_next_one() {
    use crate::domain::{
        Validity,
        vouchers::{CodeRequest, CodeSpec, VoucherSource},
    };
    use crate::store::vouchers::{GeneratedBatch, generated};
    let f = Fixture::postgres().await;
    let reward = f.reward(Default::default()).await;
    let spec = CodeSpec::parse(
        &mut loyalty_platform::Violations::new(),
        &CodeRequest {
            pattern: "PEND-######".into(),
            ..Default::default()
        },
    )
    .expect("spec");
    // What a call that crashed between COPY and commit leaves behind.
    let batch = GeneratedBatch {
        partner_id: f.partner,
        reward_id: Uuid::parse_str(&reward).expect("id"),
        source: VoucherSource::Campaign,
        source_id: String::new(),
        validity: Validity::default(),
        issued_at: Utc::now(),
    };
    let crashed = generated::insert_for_test(&f.db, &batch, &spec, 50, generated::PENDING)
        .await
        .expect("pending rows");
    let code = crashed.first_codes[0].clone();
    assert_eq!(
        f.get_code(&code).await.expect_err("invisible").code(),
        Code::NotFound
    );
    assert_eq!(f.list_reward(&reward, vec![]).await.len(), 0);
    // The next generation of the partner deletes it.
    let next = f
        .generate("after-crash", &reward, 10, "PEND-######", "")
        .await
        .expect("generated");
    assert_eq!(next.generated_count, 10);
    let left = f.generated_codes(11).await;
    assert_eq!(left.len(), 10);
    assert!(!left.contains(&code));
    assert_eq!(f.list_reward(&reward, vec![]).await.len(), 10);
}

/// Generations are skipped by their stored spec, not by their codes: a generation whose spec
/// cannot draw the new spec's codes is not read even if (tampered) it held such codes; one
/// with the same prefix, or without a stored spec (written before m0014), is read.
async fn only_generations_that_can_collide_are_read(f: Fixture) {
    use crate::domain::{
        Validity,
        vouchers::{CodeRequest, CodeSpec, VoucherSource},
    };
    use crate::store::vouchers::{GeneratedBatch, generated};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    let reward = f.reward(Default::default()).await;
    let spec = |prefix: &str| {
        CodeSpec::parse(
            &mut loyalty_platform::Violations::new(),
            &CodeRequest {
                prefix: prefix.into(),
                pattern: "####-????".into(),
                ..Default::default()
            },
        )
        .expect("spec")
    };
    let (gold, silv) = (spec("GOLD"), spec("SILV"));
    let batch = GeneratedBatch {
        partner_id: f.partner,
        reward_id: Uuid::parse_str(&reward).expect("id"),
        source: VoucherSource::Campaign,
        source_id: String::new(),
        validity: Validity::default(),
        issued_at: Utc::now(),
    };
    let generate = |spec: CodeSpec| {
        let batch = batch.clone();
        let db = f.db.clone();
        async move {
            generated::insert_for_test(&db, &batch, &spec, 200, generated::COMPLETE)
                .await
                .expect("generation")
        }
    };
    let set_spec = |id: Uuid, stored: Option<String>| {
        let db = f.db.clone();
        async move {
            generated::generations::Entity::update_many()
                .col_expr(
                    generated::generations::Column::CodeSpec,
                    Expr::value(stored),
                )
                .filter(generated::generations::Column::Id.eq(id))
                .exec(&db)
                .await
                .expect("updated");
        }
    };
    let same = generate(gold.clone()).await;
    let other = generate(gold.clone()).await;
    let legacy = generate(gold.clone()).await;
    // GOLD codes filed under a SILV spec: only skipping by spec keeps them out.
    set_spec(other.generation_id, Some(silv.stored())).await;
    set_spec(legacy.generation_id, None).await;
    let silver = generate(silv.clone()).await;
    f.issue_code(&reward, "GOLD-2345-ABCD").await;
    f.issue_code(&reward, "SILV-2345-ABCD").await;

    let taken = generated::taken_codes(&f.db, f.partner, &gold)
        .await
        .expect("taken");
    let has = |codes: &[String]| {
        codes
            .iter()
            .filter(|c| taken.contains(c.as_bytes()))
            .count()
    };
    assert_eq!(has(&same.first_codes), 200);
    assert_eq!(has(&legacy.first_codes), 200);
    assert_eq!(has(&other.first_codes), 0, "a SILV generation is not read");
    assert_eq!(has(&silver.first_codes), 0);
    assert!(taken.contains(b"GOLD-2345-ABCD"));
    assert_eq!(taken.len(), 401);

    let taken = generated::taken_codes(&f.db, f.partner, &silv)
        .await
        .expect("taken");
    assert_eq!(taken.len(), 201);
    assert!(
        silver
            .first_codes
            .iter()
            .all(|c| taken.contains(c.as_bytes()))
    );
    assert!(taken.contains(b"SILV-2345-ABCD"));
    // The GOLD generation filed as SILV is read too (its codes then dropped by shape).
    assert!(!taken.contains(other.first_codes[0].as_bytes()));

    // Through the API: new GOLD codes avoid every GOLD code, whichever way it was found.
    let next = f
        .generate("next", &reward, 1000, "GOLD-####-????", "")
        .await
        .expect("generated");
    let before: HashSet<&String> = same.first_codes.iter().chain(&legacy.first_codes).collect();
    assert!(next.codes.iter().all(|c| !before.contains(c)));
    assert!(!next.codes.contains(&"GOLD-2345-ABCD".to_owned()));
}

#[tokio::test]
async fn only_generations_that_can_collide_are_read_on_postgres() {
    only_generations_that_can_collide_are_read(Fixture::postgres().await).await;
}

#[tokio::test]
async fn only_generations_that_can_collide_are_read_on_sqlite() {
    only_generations_that_can_collide_are_read(Fixture::sqlite().await).await;
}

#[tokio::test]
async fn a_gift_voucher_carries_its_chosen_value_into_evaluation() {
    let f = Fixture::postgres().await;
    let eur = |minor| loyalty_proto::types::v1::Money {
        currency_code: "EUR".into(),
        amount_minor: minor,
    };
    let gift = f
        .api
        .create_reward(f.req(
            f.partner,
            pb::CreateRewardRequest {
                idempotency_key: "gift".into(),
                reward: Some(pb::Reward {
                    display_name: "Gift card".into(),
                    r#type: pb::RewardType::Gift as i32,
                    benefit: Some(pb::reward::Benefit::GiftValue(pb::GiftValue {
                        allowed_values: vec![eur(2000), eur(5000)],
                    })),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("gift reward")
        .into_inner()
        .reward
        .expect("reward")
        .id;
    let plain = f.reward(Default::default()).await;
    let issue = |key: &str, reward: &str, value: Option<i64>| pb::IssueVoucherRequest {
        idempotency_key: key.into(),
        reward_id: reward.into(),
        source: pb::VoucherSource::Gift as i32,
        customer_id: Uuid::now_v7().to_string(),
        gift_recipient_email: "friend@example.com".into(),
        value: value.map(eur),
        ..Default::default()
    };
    for (key, reward, value) in [
        ("bad-value", gift.as_str(), Some(4000)),
        ("no-value", gift.as_str(), None),
        ("not-gift", plain.as_str(), Some(5000)),
    ] {
        let refused = f
            .api
            .issue_voucher(f.req(f.partner, issue(key, reward, value)))
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), Code::InvalidArgument, "{key}");
        assert_eq!(
            loyalty_testkit::violated_fields(&refused),
            ["value"],
            "{key}"
        );
    }
    let voucher = f
        .api
        .issue_voucher(f.req(f.partner, issue("fifty", &gift, Some(5000))))
        .await
        .expect("issued")
        .into_inner()
        .voucher
        .expect("voucher");
    assert_eq!(voucher.value, Some(eur(5000)));
    assert_eq!(
        f.get_code(&voucher.code).await.expect("get").value,
        Some(eur(5000))
    );
    let evaluated = f
        .api
        .evaluate_cart(f.req(
            f.partner,
            pb::EvaluateCartRequest {
                lines: vec![pb::EvaluationLine {
                    product_code: "SHIRT".into(),
                    quantity: 1,
                    unit_price_minor: 8000,
                    ..Default::default()
                }],
                customer_id: voucher.customer_id.clone(),
                voucher_codes: vec![voucher.code.clone()],
                ..Default::default()
            },
        ))
        .await
        .expect("evaluated")
        .into_inner();
    let off: i64 = evaluated.lines[0]
        .discounts
        .iter()
        .map(|d| d.amount_minor)
        .sum();
    assert_eq!(off, 5000, "{evaluated:?}");
}

/// Generates `total` codes `prefix-####-????` for `reward` in calls of up to 1,000,000.
async fn bench_generate(
    api: &crate::api::RewardsApi,
    partner: Uuid,
    reward: &str,
    prefix: &str,
    total: i32,
) -> i32 {
    let mut done = 0;
    while done < total {
        let count = (total - done).min(1_000_000);
        let r = api
            .generate_voucher_codes(request(
                partner,
                Role::Admin,
                pb::GenerateVoucherCodesRequest {
                    idempotency_key: Uuid::now_v7().to_string(),
                    reward_id: reward.into(),
                    count,
                    prefix: prefix.into(),
                    pattern: "####-????".into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("generated")
            .into_inner();
        done += r.generated_count;
    }
    done
}

/// A `kB` line of /proc/self/status (VmHWM: peak resident set, VmRSS: current), in MB.
fn proc_status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim_start_matches(':')
                .split_whitespace()
                .next()
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn env_count(name: &str, default: i32) -> i32 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Benchmark, not a test: `scripts/bench-voucher-codes` runs it in release mode.
/// VOUCHER_BENCH_COUNT codes (default 1,000,000) of `GOLD-####-????` into a fresh PostgreSQL
/// database whose partner already holds VOUCHER_BENCH_SAME (default 0) generated codes of the
/// same pattern and VOUCHER_BENCH_OTHER (default 0) of `SILV-####-????` (same length, another
/// prefix). The timed generation runs in a child process of its own
/// (`bench_voucher_code_generation_call`) so that its peak resident set is its own, not the
/// filling's.
#[tokio::test]
#[ignore = "benchmark: scripts/bench-voucher-codes"]
async fn bench_voucher_code_generation() {
    let f = Fixture::postgres().await;
    let reward = f.reward(Default::default()).await;
    let total = env_count("VOUCHER_BENCH_COUNT", 1_000_000);
    let same = env_count("VOUCHER_BENCH_SAME", 0);
    let other = env_count("VOUCHER_BENCH_OTHER", 0);
    let start = std::time::Instant::now();
    bench_generate(&f.api, f.partner, &reward, "SILV", other).await;
    bench_generate(&f.api, f.partner, &reward, "GOLD", same).await;
    if same + other > 0 {
        println!(
            "filled: {same} codes GOLD-####-????, {other} codes SILV-####-???? in {:.1} s",
            start.elapsed().as_secs_f64()
        );
    }
    let url = f.database_url().expect("PostgreSQL");
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--ignored",
            "--exact",
            "--nocapture",
            "store::vouchers::tests::bench_voucher_code_generation_call",
        ])
        .env("VOUCHER_BENCH_DB", url)
        .env("VOUCHER_BENCH_PARTNER", f.partner.to_string())
        .env("VOUCHER_BENCH_REWARD", &reward)
        .env("VOUCHER_BENCH_COUNT", total.to_string())
        .output()
        .expect("child benchmark");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines().filter(|l| l.starts_with("generated")) {
        println!("{line}");
    }
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The timed part of `bench_voucher_code_generation`, in a process of its own: generates
/// VOUCHER_BENCH_COUNT codes on the database VOUCHER_BENCH_DB for the partner and reward given
/// and prints the rate and the process's peak resident set (VmHWM).
#[tokio::test]
#[ignore = "benchmark: run by bench_voucher_code_generation"]
async fn bench_voucher_code_generation_call() {
    let Ok(url) = std::env::var("VOUCHER_BENCH_DB") else {
        return;
    };
    let partner: Uuid = std::env::var("VOUCHER_BENCH_PARTNER")
        .expect("partner")
        .parse()
        .expect("uuid");
    let reward = std::env::var("VOUCHER_BENCH_REWARD").expect("reward");
    let total = env_count("VOUCHER_BENCH_COUNT", 1_000_000);
    let db = sea_orm::Database::connect(url).await.expect("connect");
    let api = crate::api::RewardsApi::new(db);
    let rss_before = proc_status_mb("VmRSS");
    let start = std::time::Instant::now();
    let done = bench_generate(&api, partner, &reward, "GOLD", total).await;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "generated {done} codes (GOLD-####-????) in {secs:.2} s: {:.0} codes/s into PostgreSQL; \
         peak RSS {:.0} MB (before the call {rss_before:.0} MB)",
        f64::from(done) / secs,
        proc_status_mb("VmHWM"),
    );
}

//! Reward definitions against PostgreSQL (a fresh database per test) and SQLite, through the
//! service's own API object: lifecycle, update rules, partner isolation, rewards stored before
//! the lifecycle existed, and a budget consumed by concurrent redemptions.
use std::sync::Arc;

use loyalty_platform::Role;
use loyalty_proto::{
    rewards::v1::{self as pb, reward::Benefit as B, rewards_service_server::RewardsService},
    types::v1::{Money, ProductScope},
};
use loyalty_testkit::error_reason as reason;
use prost_types::FieldMask;
use sea_orm::ConnectionTrait;
use tonic::{Code, Request, Status};
use uuid::Uuid;

use crate::store::test_support::{TestApi, key, request};

enum Rewards {}
type Fixture = TestApi<Rewards>;

fn eur(m: i64) -> Option<Money> {
    Some(Money {
        currency_code: "EUR".into(),
        amount_minor: m,
    })
}

impl Fixture {
    fn req<T>(&self, partner: Uuid, message: T) -> Request<T> {
        request(partner, Role::Admin, message)
    }

    async fn create(&self, reward: pb::Reward) -> Result<pb::Reward, Status> {
        self.create_reward(reward).await
    }

    async fn get(&self, partner: Uuid, id: &str) -> Result<pb::Reward, Status> {
        Ok(self
            .api
            .get_reward(self.req(
                partner,
                pb::GetRewardRequest {
                    reward_id: id.into(),
                },
            ))
            .await?
            .into_inner()
            .reward
            .expect("reward"))
    }

    async fn update(
        &self,
        reward: pb::Reward,
        paths: &[&str],
        etag: &str,
    ) -> Result<pb::Reward, Status> {
        Ok(self
            .api
            .update_reward(self.req(
                self.partner,
                pb::UpdateRewardRequest {
                    idempotency_key: key(),
                    reward: Some(reward),
                    update_mask: Some(FieldMask {
                        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                    }),
                    etag: etag.into(),
                },
            ))
            .await?
            .into_inner()
            .reward
            .expect("reward"))
    }

    async fn list(&self, t: pb::RewardType, s: pb::RewardState) -> Vec<pb::Reward> {
        self.api
            .list_rewards(self.req(
                self.partner,
                pb::ListRewardsRequest {
                    r#type: t as i32,
                    state: s as i32,
                    ..Default::default()
                },
            ))
            .await
            .expect("list")
            .into_inner()
            .rewards
    }

    async fn archive(&self, id: &str, cancel_vouchers: bool) -> Result<pb::Reward, Status> {
        Ok(self
            .api
            .archive_reward(self.req(
                self.partner,
                pb::ArchiveRewardRequest {
                    idempotency_key: key(),
                    reward_id: id.into(),
                    cancel_vouchers,
                },
            ))
            .await?
            .into_inner()
            .reward
            .expect("reward"))
    }
}

fn one_of_each_type() -> Vec<pb::Reward> {
    let named = |name: &str, t: pb::RewardType, b: B| pb::Reward {
        display_name: name.into(),
        r#type: t as i32,
        benefit: Some(b),
        ..Default::default()
    };
    vec![
        pb::Reward {
            priority: 10,
            combinable: true,
            ..named(
                "2 + 1 on coffee",
                pb::RewardType::CashDesk,
                B::BuyXGetY(pb::BuyXGetY {
                    products: Some(ProductScope {
                        product_group_codes: vec!["COFFEE".into()],
                        ..Default::default()
                    }),
                    buy_quantity: 2,
                    get_quantity: 1,
                    discount_basis_points: 10_000,
                }),
            )
        },
        named(
            "Double points weekend",
            pb::RewardType::Campaign,
            B::PointsMultiplier(pb::PointsMultiplier {
                products: None,
                multiplier_basis_points: 20_000,
            }),
        ),
        pb::Reward {
            points_price: 500,
            ..named(
                "5 EUR off",
                pb::RewardType::Coupon,
                B::CartFixedDiscount(pb::CartFixedDiscount { amount: eur(500) }),
            )
        },
        named(
            "Free coffee",
            pb::RewardType::Simple,
            B::FreeProduct(pb::FreeProduct {
                product_code: "ESPRESSO".into(),
                quantity: 1,
            }),
        ),
        named(
            "Gift card",
            pb::RewardType::Gift,
            B::GiftValue(pb::GiftValue {
                allowed_values: vec![eur(2000).unwrap(), eur(5000).unwrap()],
            }),
        ),
    ]
}

async fn lifecycle(f: &Fixture) {
    let mut created = Vec::new();
    for r in one_of_each_type() {
        let c = f.create(r.clone()).await.expect("created");
        assert_eq!(c.state, pb::RewardState::Active as i32);
        assert_eq!(c.benefit, r.benefit);
        assert_eq!(c.vouchers_remaining, -1);
        assert!(!c.etag.is_empty());
        assert_eq!(f.get(f.partner, &c.id).await.expect("get"), c);
        created.push(c);
    }
    // Newest first, filtered by type and state.
    let all = f
        .list(pb::RewardType::Unspecified, pb::RewardState::Unspecified)
        .await;
    let ids: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
    let mut expected: Vec<&str> = created.iter().map(|r| r.id.as_str()).collect();
    expected.reverse();
    assert_eq!(ids, expected);
    let coupons = f
        .list(pb::RewardType::Coupon, pb::RewardState::Unspecified)
        .await;
    assert_eq!(coupons.len(), 1);
    assert_eq!(coupons[0].points_price, 500);

    // Another partner sees none of them.
    let other = f
        .get(Uuid::now_v7(), &created[0].id)
        .await
        .expect_err("hidden");
    assert_eq!(other.code(), Code::NotFound);

    // Update: masked fields only, etag checked, type immutable.
    let coupon = &created[2];
    let changed = f
        .update(
            pb::Reward {
                id: coupon.id.clone(),
                display_name: "6 EUR off".into(),
                description: "not masked".into(),
                benefit: Some(B::CartFixedDiscount(pb::CartFixedDiscount {
                    amount: eur(600),
                })),
                max_vouchers_total: 10,
                ..Default::default()
            },
            &["display_name", "cart_fixed_discount", "max_vouchers_total"],
            &coupon.etag,
        )
        .await
        .expect("updated");
    assert_eq!(changed.display_name, "6 EUR off");
    assert_eq!(changed.description, "");
    assert_eq!(changed.vouchers_remaining, 10);
    assert_eq!(changed.points_price, 500);
    assert_ne!(changed.etag, coupon.etag);
    let stale = f
        .update(
            pb::Reward {
                id: coupon.id.clone(),
                display_name: "x".into(),
                ..Default::default()
            },
            &["display_name"],
            &coupon.etag,
        )
        .await
        .expect_err("stale");
    assert_eq!(reason(&stale), "ETAG_MISMATCH");
    let typed = f
        .update(
            pb::Reward {
                id: coupon.id.clone(),
                r#type: pb::RewardType::Gift as i32,
                ..Default::default()
            },
            &["type"],
            "",
        )
        .await
        .expect_err("immutable");
    assert_eq!(typed.code(), Code::InvalidArgument);
    assert!(
        loyalty_testkit::violated_fields(&typed).contains(&"reward.type".to_owned()),
        "{typed:?}"
    );
    let to_draft = f
        .update(
            pb::Reward {
                id: coupon.id.clone(),
                state: pb::RewardState::Draft as i32,
                ..Default::default()
            },
            &["state"],
            "",
        )
        .await
        .expect_err("no way back to draft");
    assert_eq!(to_draft.code(), Code::InvalidArgument);

    // Archive: vouchers cancelled with it, idempotent, then no updates.
    let customer = Uuid::now_v7();
    let voucher = f.issue(&coupon.id, customer).await;
    // The coupon has a points price, paid through the wallet: without it issuing is refused
    // or (with the payment wired) succeeds; only a successful one is checked below.
    let archived = f.archive(&coupon.id, true).await.expect("archived");
    assert_eq!(archived.state, pb::RewardState::Archived as i32);
    assert!(archived.archive_time.is_some());
    let again = f.archive(&coupon.id, true).await.expect("again");
    assert_eq!(again.etag, archived.etag);
    if let Ok(v) = voucher {
        let got = f
            .api
            .get_voucher(f.req(
                f.partner,
                pb::GetVoucherRequest {
                    voucher_id: v.id,
                    ..Default::default()
                },
            ))
            .await
            .expect("voucher")
            .into_inner()
            .voucher
            .expect("voucher");
        assert_eq!(got.state, pb::VoucherState::Cancelled as i32);
    }
    let late = f
        .update(
            pb::Reward {
                id: coupon.id.clone(),
                display_name: "y".into(),
                ..Default::default()
            },
            &["display_name"],
            "",
        )
        .await
        .expect_err("archived");
    assert_eq!(reason(&late), "REWARD_ARCHIVED");
    let issue = f.issue(&coupon.id, customer).await.expect_err("archived");
    assert_eq!(reason(&issue), "REWARD_NOT_ACTIVE");
    assert_eq!(
        f.list(pb::RewardType::Unspecified, pb::RewardState::Archived)
            .await
            .len(),
        1
    );
    assert_eq!(
        f.list(pb::RewardType::Unspecified, pb::RewardState::Unspecified)
            .await
            .len(),
        4
    );
}

#[tokio::test]
async fn rewards_of_every_type_live_through_their_lifecycle_postgres() {
    lifecycle(&Fixture::postgres().await).await;
}

#[tokio::test]
async fn rewards_of_every_type_live_through_their_lifecycle_sqlite() {
    lifecycle(&Fixture::sqlite().await).await;
}

#[tokio::test]
async fn archiving_cancels_unredeemed_vouchers_only_when_asked() {
    let f = Fixture::postgres().await;
    let pct = |name: &str| pb::Reward {
        display_name: name.into(),
        r#type: pb::RewardType::Campaign as i32,
        benefit: Some(B::CartPercentageDiscount(pb::CartPercentageDiscount {
            basis_points: 1000,
        })),
        ..Default::default()
    };
    let keep = f.create(pct("keep")).await.expect("created");
    let cancel = f.create(pct("cancel")).await.expect("created");
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let kept = f.issue(&keep.id, a).await.expect("issued");
    f.issue(&cancel.id, a).await.expect("issued");
    f.issue(&cancel.id, b).await.expect("issued");
    f.archive(&keep.id, false).await.expect("archived");
    f.archive(&cancel.id, true).await.expect("archived");
    let n = f
        .count(&format!(
            "SELECT count(*) AS n FROM vouchers WHERE reward_id = '{}' AND state = 'cancelled'",
            cancel.id
        ))
        .await;
    assert_eq!(n, 2);
    // An archived reward's vouchers stay redeemable unless cancelled.
    f.api
        .redeem_voucher(f.req(
            f.partner,
            pb::RedeemVoucherRequest {
                idempotency_key: key(),
                code: kept.code,
                customer_id: a.to_string(),
                transaction_id: "T1".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("redeemed");
    let events = f
        .count(
            "SELECT count(*) AS n FROM outbox \
             WHERE event_type = 'loyalty.events.v1.RewardsChanged'",
        )
        .await;
    assert_eq!(events, 4, "two creations and two archivals");
}

#[tokio::test]
async fn a_draft_issues_nothing_until_activated() {
    let f = Fixture::sqlite().await;
    let draft = f
        .create(pb::Reward {
            display_name: "Soon".into(),
            r#type: pb::RewardType::Coupon as i32,
            state: pb::RewardState::Draft as i32,
            benefit: Some(B::BonusPoints(pb::BonusPoints {
                points: 100,
                points_type_id: String::new(),
            })),
            ..Default::default()
        })
        .await
        .expect("draft");
    assert_eq!(draft.state, pb::RewardState::Draft as i32);
    let refused = f.issue(&draft.id, Uuid::now_v7()).await.expect_err("draft");
    assert_eq!(reason(&refused), "REWARD_NOT_ACTIVE");
    let active = f
        .update(
            pb::Reward {
                id: draft.id.clone(),
                state: pb::RewardState::Active as i32,
                ..Default::default()
            },
            &["state"],
            &draft.etag,
        )
        .await
        .expect("activated");
    assert_eq!(active.state, pb::RewardState::Active as i32);
    f.issue(&draft.id, Uuid::now_v7()).await.expect("issued");
    // The stock shown with the reward follows the vouchers issued.
    let limited = f
        .update(
            pb::Reward {
                id: draft.id.clone(),
                max_vouchers_total: 2,
                ..Default::default()
            },
            &["max_vouchers_total"],
            &active.etag,
        )
        .await
        .expect("limited");
    assert_eq!(
        (limited.vouchers_issued, limited.vouchers_remaining),
        (1, 1)
    );
    f.issue(&draft.id, Uuid::now_v7()).await.expect("issued");
    let full = f.issue(&draft.id, Uuid::now_v7()).await.expect_err("stock");
    assert_eq!(reason(&full), "VOUCHER_LIMIT_REACHED");
    let got = f.get(f.partner, &draft.id).await.expect("get");
    assert_eq!((got.vouchers_issued, got.vouchers_remaining), (2, 0));
}

#[tokio::test]
async fn a_reward_stored_before_the_lifecycle_reads_as_active() {
    let f = Fixture::postgres().await;
    let id = Uuid::now_v7();
    f.db.execute_unprepared(&format!(
        "INSERT INTO rewards (id, partner_id, display_name, description, reward_type, benefit, \
         segment_ids, valid_from, valid_until, created_at) VALUES ('{id}', '{}', 'Old', '', \
         'cash_desk', '{{\"kind\":\"cart_percentage_discount\",\"basis_points\":500}}', '[]', \
         NULL, NULL, now())",
        f.partner
    ))
    .await
    .expect("old row");
    let r = f.get(f.partner, &id.to_string()).await.expect("get");
    assert_eq!(r.state, pb::RewardState::Active as i32);
    assert!(r.combinable, "old rewards kept combining");
    assert_eq!(
        r.benefit,
        Some(B::CartPercentageDiscount(pb::CartPercentageDiscount {
            basis_points: 500
        }))
    );
    let active = f
        .api
        .list_active_rewards(f.req(f.partner, pb::ListActiveRewardsRequest::default()))
        .await
        .expect("active")
        .into_inner()
        .rewards;
    assert_eq!(active.len(), 1);
}

#[tokio::test]
async fn invalid_definitions_name_their_field() {
    let f = Fixture::sqlite().await;
    let err = f
        .create(pb::Reward {
            display_name: "Broken".into(),
            r#type: pb::RewardType::Gift as i32,
            benefit: Some(B::CartPercentageDiscount(pb::CartPercentageDiscount {
                basis_points: 20_000,
            })),
            tier_ids: vec!["x".into()],
            budget: Some(pb::RewardBudget {
                kind: pb::BudgetKind::Money as i32,
                total: 0,
                currency_code: "EUR".into(),
                remaining: 0,
            }),
            ..Default::default()
        })
        .await
        .expect_err("invalid");
    assert_eq!(err.code(), Code::InvalidArgument);
    for field in [
        "reward.cart_percentage_discount.basis_points",
        "reward.gift_value",
        "reward.tier_ids[0]",
        "reward.budget.total",
    ] {
        assert!(
            loyalty_testkit::violated_fields(&err)
                .iter()
                .any(|f| f == field),
            "{field}: {err:?}"
        );
    }
}

/// 64 customers redeem their vouchers of a reward whose budget covers `N` of them at once:
/// exactly `N` succeed, the rest are refused, and nothing is left over or overdrawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_budget_for_n_redemptions_admits_exactly_n_of_64_concurrent_ones() {
    const N: i64 = 10;
    let f = Arc::new(Fixture::postgres().await);
    let reward = f
        .create(pb::Reward {
            display_name: "5 EUR off".into(),
            r#type: pb::RewardType::Campaign as i32,
            benefit: Some(B::CartFixedDiscount(pb::CartFixedDiscount {
                amount: eur(500),
            })),
            budget: Some(pb::RewardBudget {
                kind: pb::BudgetKind::Money as i32,
                total: N * 500,
                currency_code: "EUR".into(),
                remaining: 0,
            }),
            ..Default::default()
        })
        .await
        .expect("reward");
    assert_eq!(reward.budget.as_ref().map(|b| b.remaining), Some(N * 500));
    let mut vouchers = Vec::new();
    for _ in 0..64 {
        let c = Uuid::now_v7();
        vouchers.push((c, f.issue(&reward.id, c).await.expect("issued")));
    }
    let mut calls = Vec::new();
    for (i, (customer, v)) in vouchers.into_iter().enumerate() {
        let f = f.clone();
        calls.push(tokio::spawn(async move {
            f.api
                .redeem_voucher(f.req(
                    f.partner,
                    pb::RedeemVoucherRequest {
                        idempotency_key: format!("redeem-{i}"),
                        code: v.code,
                        customer_id: customer.to_string(),
                        transaction_id: format!("T{i}"),
                        ..Default::default()
                    },
                ))
                .await
                .map(|r| r.into_inner().voucher.expect("voucher"))
        }));
    }
    let mut won = Vec::new();
    for c in calls {
        match c.await.expect("task") {
            Ok(v) => won.push(v),
            Err(s) => {
                assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
                assert_eq!(reason(&s), "REWARD_BUDGET_EXHAUSTED");
            }
        }
    }
    assert_eq!(won.len() as i64, N);
    let after = f.get(f.partner, &reward.id).await.expect("get");
    assert_eq!(after.budget.as_ref().map(|b| b.remaining), Some(0));
    // Undoing a redemption gives its share back.
    f.api
        .reinstate_voucher(f.req(
            f.partner,
            pb::ReinstateVoucherRequest {
                idempotency_key: key(),
                voucher_id: won[0].id.clone(),
                transaction_id: won[0].redeem_transaction_id.clone(),
                reason: "returned".into(),
            },
        ))
        .await
        .expect("reinstated");
    let after = f.get(f.partner, &reward.id).await.expect("get");
    assert_eq!(after.budget.as_ref().map(|b| b.remaining), Some(500));
}

#[tokio::test]
async fn a_budget_of_a_cart_dependent_reward_takes_the_granted_value() {
    let f = Fixture::sqlite().await;
    let reward = f
        .create(pb::Reward {
            display_name: "10 %".into(),
            r#type: pb::RewardType::Campaign as i32,
            benefit: Some(B::CartPercentageDiscount(pb::CartPercentageDiscount {
                basis_points: 1000,
            })),
            budget: Some(pb::RewardBudget {
                kind: pb::BudgetKind::Money as i32,
                total: 1000,
                currency_code: "EUR".into(),
                remaining: 0,
            }),
            ..Default::default()
        })
        .await
        .expect("reward");
    let c = Uuid::now_v7();
    let v = f.issue(&reward.id, c).await.expect("issued");
    let redeem = |granted_value: i64, k: &str| pb::RedeemVoucherRequest {
        idempotency_key: k.into(),
        code: v.code.clone(),
        customer_id: c.to_string(),
        transaction_id: "T1".into(),
        granted_value,
        ..Default::default()
    };
    let unknown = f
        .api
        .redeem_voucher(f.req(f.partner, redeem(0, "a")))
        .await
        .expect_err("value unknown");
    assert_eq!(unknown.code(), Code::InvalidArgument);
    let too_much = f
        .api
        .redeem_voucher(f.req(f.partner, redeem(1001, "b")))
        .await
        .expect_err("over budget");
    assert_eq!(reason(&too_much), "REWARD_BUDGET_EXHAUSTED");
    f.api
        .redeem_voucher(f.req(f.partner, redeem(300, "c")))
        .await
        .expect("redeemed");
    let after = f.get(f.partner, &reward.id).await.expect("get");
    assert_eq!(after.budget.map(|b| b.remaining), Some(700));
}

//! Reward definitions through gRPC (issue #6), the services running as processes on
//! PostgreSQL: one reward of every type (cash desk, campaign, coupon, simple, gift) created,
//! read, listed, updated and archived; another partner's ids answer NOT_FOUND; the rewards
//! catalogue of a customer (ListAvailableRewards) asks segmentation and the wallet.
use loyalty_proto::{
    identity::v1 as identity,
    rewards::v1::{self as pb, reward::Benefit as B},
    types::v1::{Money, ProductScope},
    wallet::v1 as wallet,
};
use loyalty_testkit::{Backend, Suite, authed, error_reason, violated_fields};
use prost_types::FieldMask;
use tonic::Code;
use uuid::Uuid;

fn eur(m: i64) -> Option<Money> {
    Some(Money {
        currency_code: "EUR".into(),
        amount_minor: m,
    })
}

fn reward(name: &str, t: pb::RewardType, b: B) -> pb::Reward {
    pb::Reward {
        display_name: name.into(),
        r#type: t as i32,
        benefit: Some(b),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rewards_of_every_type_are_created_read_listed_updated_and_archived() -> anyhow::Result<()>
{
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, admin) = suite
        .partner_with_key("Shop", &[identity::Role::Admin])
        .await?;
    let (_, rival) = suite
        .partner_with_key("Rival", &[identity::Role::Admin])
        .await?;
    let mut r = suite.rewards().await?;

    let definitions = [
        pb::Reward {
            priority: 100,
            budget: Some(pb::RewardBudget {
                kind: pb::BudgetKind::Money as i32,
                total: 100_000,
                currency_code: "EUR".into(),
                remaining: 0,
            }),
            ..reward(
                "Buy 2 coffees, get 1 free",
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
        pb::Reward {
            caps: Some(pb::RewardCaps {
                max_points_per_transaction: 1000,
                ..Default::default()
            }),
            ..reward(
                "Double points",
                pb::RewardType::Campaign,
                B::PointsMultiplier(pb::PointsMultiplier {
                    products: None,
                    multiplier_basis_points: 20_000,
                }),
            )
        },
        pb::Reward {
            points_price: 500,
            max_vouchers_per_customer: 2,
            ..reward(
                "5 EUR off",
                pb::RewardType::Coupon,
                B::CartFixedDiscount(pb::CartFixedDiscount { amount: eur(500) }),
            )
        },
        reward(
            "Free espresso",
            pb::RewardType::Simple,
            B::FreeProduct(pb::FreeProduct {
                product_code: "ESPRESSO".into(),
                quantity: 1,
            }),
        ),
        reward(
            "Gift card",
            pb::RewardType::Gift,
            B::GiftValue(pb::GiftValue {
                allowed_values: vec![eur(2_000).unwrap(), eur(5_000).unwrap()],
            }),
        ),
    ];
    let mut created = Vec::new();
    for (i, d) in definitions.iter().enumerate() {
        let c = r
            .create_reward(authed(
                pb::CreateRewardRequest {
                    idempotency_key: format!("create-{i}"),
                    reward: Some(d.clone()),
                },
                &admin,
            ))
            .await?
            .into_inner()
            .reward
            .expect("reward");
        assert_eq!(c.benefit, d.benefit);
        assert_eq!(c.state, pb::RewardState::Active as i32);
        let got = r
            .get_reward(authed(
                pb::GetRewardRequest {
                    reward_id: c.id.clone(),
                },
                &admin,
            ))
            .await?
            .into_inner()
            .reward
            .expect("reward");
        assert_eq!(got, c);
        // Another partner's id is unknown to the rival.
        let hidden = r
            .get_reward(authed(
                pb::GetRewardRequest {
                    reward_id: c.id.clone(),
                },
                &rival,
            ))
            .await
            .expect_err("hidden");
        assert_eq!(hidden.code(), Code::NotFound);
        created.push(c);
    }
    assert_eq!(
        created[0].budget.as_ref().map(|b| b.remaining),
        Some(100_000)
    );

    // Newest first; filtered by type.
    let list = |t: pb::RewardType, s: pb::RewardState| pb::ListRewardsRequest {
        r#type: t as i32,
        state: s as i32,
        ..Default::default()
    };
    let all = r
        .list_rewards(authed(
            list(pb::RewardType::Unspecified, pb::RewardState::Unspecified),
            &admin,
        ))
        .await?
        .into_inner()
        .rewards;
    let names: Vec<&str> = all.iter().map(|r| r.display_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Gift card",
            "Free espresso",
            "5 EUR off",
            "Double points",
            "Buy 2 coffees, get 1 free"
        ]
    );
    let gifts = r
        .list_rewards(authed(
            list(pb::RewardType::Gift, pb::RewardState::Unspecified),
            &admin,
        ))
        .await?
        .into_inner()
        .rewards;
    assert_eq!(gifts.len(), 1);
    assert!(
        r.list_rewards(authed(
            list(pb::RewardType::Unspecified, pb::RewardState::Unspecified),
            &rival,
        ))
        .await?
        .into_inner()
        .rewards
        .is_empty()
    );

    // Update with a mask and the etag; a stale etag and another partner are refused.
    let coupon = &created[2];
    let update = |key: &str, etag: &str| pb::UpdateRewardRequest {
        idempotency_key: key.into(),
        reward: Some(pb::Reward {
            id: coupon.id.clone(),
            display_name: "6 EUR off".into(),
            benefit: Some(B::CartFixedDiscount(pb::CartFixedDiscount {
                amount: eur(600),
            })),
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: vec!["display_name".into(), "cart_fixed_discount".into()],
        }),
        etag: etag.into(),
    };
    let updated = r
        .update_reward(authed(update("update-1", &coupon.etag), &admin))
        .await?
        .into_inner()
        .reward
        .expect("reward");
    assert_eq!(updated.display_name, "6 EUR off");
    assert_eq!(updated.points_price, 500, "unmasked fields stay");
    let stale = r
        .update_reward(authed(update("update-2", &coupon.etag), &admin))
        .await
        .expect_err("stale");
    assert_eq!(error_reason(&stale), "ETAG_MISMATCH");
    let foreign = r
        .update_reward(authed(update("update-3", ""), &rival))
        .await
        .expect_err("foreign");
    assert_eq!(foreign.code(), Code::NotFound);
    let bad = r
        .update_reward(authed(
            pb::UpdateRewardRequest {
                idempotency_key: "update-4".into(),
                reward: Some(pb::Reward {
                    id: coupon.id.clone(),
                    valid_from_time: Some(prost_types::Timestamp {
                        seconds: 2_000_000_000,
                        nanos: 0,
                    }),
                    valid_until_time: Some(prost_types::Timestamp {
                        seconds: 1_900_000_000,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["valid_from_time".into(), "valid_until_time".into()],
                }),
                etag: String::new(),
            },
            &admin,
        ))
        .await
        .expect_err("inverted window");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(violated_fields(&bad).contains(&"reward.valid_until_time".to_owned()));

    // The catalogue of a customer with 300 points: the coupon is too dear, the free espresso
    // is affordable; cash desk and campaign rewards are not catalogue rewards.
    let customer = Uuid::now_v7().to_string();
    suite
        .wallet()
        .await?
        .award_points(authed(
            wallet::AwardPointsRequest {
                idempotency_key: "earn".into(),
                customer_id: customer.clone(),
                points: 300,
                reason: "purchase".into(),
                reference: "purchase:1".into(),
                cause: wallet::PostingCause::Purchase as i32,
                ..Default::default()
            },
            &admin,
        ))
        .await?;
    let available = r
        .list_available_rewards(authed(
            pb::ListAvailableRewardsRequest {
                customer_id: customer.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner()
        .rewards;
    let shown: Vec<(&str, bool, i32)> = available
        .iter()
        .map(|a| {
            (
                a.reward
                    .as_ref()
                    .map(|r| r.display_name.as_str())
                    .unwrap_or(""),
                a.affordable,
                a.remaining_for_customer,
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("Gift card", true, -1),
            ("Free espresso", true, -1),
            ("6 EUR off", false, 2)
        ]
    );

    // Archive: idempotent, then refused for updates and vouchers, and gone from the catalogue.
    let archive = |key: &str, id: &str| pb::ArchiveRewardRequest {
        idempotency_key: key.into(),
        reward_id: id.into(),
        cancel_vouchers: true,
    };
    let archived = r
        .archive_reward(authed(archive("archive-1", &coupon.id), &admin))
        .await?
        .into_inner()
        .reward
        .expect("reward");
    assert_eq!(archived.state, pb::RewardState::Archived as i32);
    let again = r
        .archive_reward(authed(archive("archive-2", &coupon.id), &admin))
        .await?
        .into_inner()
        .reward
        .expect("reward");
    assert_eq!(again.etag, archived.etag);
    let late = r
        .update_reward(authed(update("update-5", ""), &admin))
        .await
        .expect_err("archived");
    assert_eq!(error_reason(&late), "REWARD_ARCHIVED");
    let foreign = r
        .archive_reward(authed(archive("archive-3", &created[3].id), &rival))
        .await
        .expect_err("foreign");
    assert_eq!(foreign.code(), Code::NotFound);
    let issue = r
        .issue_voucher(authed(
            pb::IssueVoucherRequest {
                idempotency_key: "issue-archived".into(),
                reward_id: coupon.id.clone(),
                customer_id: customer.clone(),
                source: pb::VoucherSource::Catalogue as i32,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect_err("archived");
    assert_eq!(error_reason(&issue), "REWARD_NOT_ACTIVE");
    let archived_list = r
        .list_rewards(authed(
            list(pb::RewardType::Unspecified, pb::RewardState::Archived),
            &admin,
        ))
        .await?
        .into_inner()
        .rewards;
    assert_eq!(archived_list.len(), 1);
    let available = r
        .list_available_rewards(authed(
            pb::ListAvailableRewardsRequest {
                customer_id: customer,
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner()
        .rewards;
    assert_eq!(available.len(), 2);
    Ok(())
}

//! CRM.COM reward schemes and offers through gRPC (issue #6), the services running as processes
//! on PostgreSQL + Redis: scheme CRUD and sign-up rules with their reasons, another partner sees
//! nothing, and an offer won end to end — purchases committed at checkout advance the offer
//! (PurchaseCompleted → rewards), the award is recorded and announced (OfferAwarded → wallet),
//! and the instantly redeemable 5 EUR land in the customer's open CREDIT balance, once.
use std::time::Duration;

use loyalty_proto::{
    checkout::v1 as checkout, identity::v1 as identity, rewards::v1 as pb,
    segmentation::v1 as segmentation, types::v1 as types, wallet::v1 as wallet,
};
use loyalty_testkit::{Backend, Suite, authed, error_reason, eventually, violated_fields};
use prost_types::FieldMask;
use tonic::{Code, Status};
use uuid::Uuid;

fn fails<T: std::fmt::Debug>(r: Result<T, Status>) -> Status {
    r.expect_err("the call should have been refused")
}

fn eur(amount_minor: i64) -> Option<types::Money> {
    Some(types::Money {
        currency_code: "EUR".into(),
        amount_minor,
    })
}

fn scheme(code: &str, option: pb::SignUpOption) -> pb::RewardScheme {
    pb::RewardScheme {
        code: code.into(),
        display_name: code.into(),
        sign_up_option: option as i32,
        active: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn schemes_sign_up_rules_and_tenancy() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, admin) = suite
        .partner_with_key("Campus", &[identity::Role::Admin])
        .await?;
    let (_, rival) = suite
        .partner_with_key("Rival", &[identity::Role::Admin])
        .await?;
    let mut r = suite.rewards().await?;
    let create = |key: &str, s: pb::RewardScheme| {
        authed(
            pb::CreateRewardSchemeRequest {
                idempotency_key: key.into(),
                reward_scheme: Some(s),
            },
            &admin,
        )
    };
    let students = r
        .create_reward_scheme(create(
            "students",
            pb::RewardScheme {
                sign_up_codes: vec!["UNI-2026".into()],
                max_members: 2,
                ..scheme("students", pb::SignUpOption::Closed)
            },
        ))
        .await?
        .into_inner()
        .reward_scheme
        .expect("scheme");
    assert_eq!(students.sign_up_codes, ["UNI-2026"]);
    assert_eq!(students.etag, "r1");
    // A retry answers the same scheme; the code is taken for another request.
    let retried = r
        .create_reward_scheme(create(
            "students",
            pb::RewardScheme {
                sign_up_codes: vec!["UNI-2026".into()],
                max_members: 2,
                ..scheme("students", pb::SignUpOption::Closed)
            },
        ))
        .await?
        .into_inner()
        .reward_scheme
        .expect("scheme");
    assert_eq!(retried.id, students.id);
    let taken = fails(
        r.create_reward_scheme(create("again", scheme("students", pb::SignUpOption::OptIn)))
            .await,
    );
    assert_eq!(taken.code(), Code::AlreadyExists);
    let invalid = fails(
        r.create_reward_scheme(create(
            "bad",
            pb::RewardScheme {
                max_members: -1,
                ..scheme("Bad Code", pb::SignUpOption::Unspecified)
            },
        ))
        .await,
    );
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&invalid),
        [
            "reward_scheme.sign_up_option",
            "reward_scheme.code",
            "reward_scheme.max_members"
        ]
    );

    let sign_up = |key: &str, customer: &str, code: &str| {
        authed(
            pb::SignUpRequest {
                idempotency_key: key.into(),
                scheme_id: "students".into(),
                customer_id: customer.into(),
                sign_up_code: code.into(),
            },
            &admin,
        )
    };
    let (ana, ben, cyril) = (
        Uuid::now_v7().to_string(),
        Uuid::now_v7().to_string(),
        Uuid::now_v7().to_string(),
    );
    let wrong = fails(r.sign_up(sign_up("s0", &ana, "GUESS")).await);
    assert_eq!(wrong.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&wrong), "SIGN_UP_CODE_INVALID");
    let joined = r
        .sign_up(sign_up("s1", &ana, "uni-2026"))
        .await?
        .into_inner()
        .membership
        .expect("membership");
    assert_eq!(joined.scheme_id, students.id);
    assert!(joined.join_time.is_some() && joined.leave_time.is_none());
    // The same key again is a retry; a new sign-up of a member is a duplicate.
    r.sign_up(sign_up("s1", &ana, "uni-2026")).await?;
    let twice = fails(r.sign_up(sign_up("s2", &ana, "UNI-2026")).await);
    assert_eq!(twice.code(), Code::AlreadyExists);
    r.sign_up(sign_up("s3", &ben, "UNI-2026")).await?;
    let full = fails(r.sign_up(sign_up("s4", &cyril, "UNI-2026")).await);
    assert_eq!(error_reason(&full), "SCHEME_FULL");

    // Deactivated: members stay, nobody joins.
    let updated = r
        .update_reward_scheme(authed(
            pb::UpdateRewardSchemeRequest {
                idempotency_key: "deactivate".into(),
                reward_scheme: Some(pb::RewardScheme {
                    id: students.id.clone(),
                    active: false,
                    max_members: 0,
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["active".into(), "max_members".into()],
                }),
                etag: "r1".into(),
            },
            &admin,
        ))
        .await?
        .into_inner()
        .reward_scheme
        .expect("scheme");
    assert_eq!((updated.active, updated.member_count), (false, 2));
    let inactive = fails(r.sign_up(sign_up("s5", &cyril, "UNI-2026")).await);
    assert_eq!(error_reason(&inactive), "SCHEME_INACTIVE");
    let stale = fails(
        r.delete_reward_scheme(authed(
            pb::DeleteRewardSchemeRequest {
                idempotency_key: "stale".into(),
                reward_scheme_id: students.id.clone(),
                etag: "r1".into(),
            },
            &admin,
        ))
        .await,
    );
    assert_eq!(error_reason(&stale), "ETAG_MISMATCH");

    // Leaving ends the membership; the history keeps it.
    let left = r
        .leave_scheme(authed(
            pb::LeaveSchemeRequest {
                idempotency_key: "leave-ben".into(),
                scheme_id: students.id.clone(),
                customer_id: ben.clone(),
            },
            &admin,
        ))
        .await?
        .into_inner()
        .membership
        .expect("membership");
    assert!(left.leave_time.is_some());
    let not_member = fails(
        r.leave_scheme(authed(
            pb::LeaveSchemeRequest {
                idempotency_key: "leave-cyril".into(),
                scheme_id: students.id.clone(),
                customer_id: cyril.clone(),
            },
            &admin,
        ))
        .await,
    );
    assert_eq!(not_member.code(), Code::NotFound);
    let list = |include_left| {
        authed(
            pb::ListSchemeMembershipsRequest {
                scheme_id: students.id.clone(),
                include_left,
                ..Default::default()
            },
            &admin,
        )
    };
    let current = r.list_scheme_memberships(list(false)).await?.into_inner();
    assert_eq!(current.memberships.len(), 1);
    assert_eq!(current.memberships[0].customer_id, ana);
    let all = r.list_scheme_memberships(list(true)).await?.into_inner();
    assert_eq!(all.memberships.len(), 2);

    // Another partner: NOT_FOUND by id and by code, and an empty list.
    for key in [students.id.clone(), "students".to_owned()] {
        let hidden = fails(
            r.get_reward_scheme(authed(
                pb::GetRewardSchemeRequest {
                    reward_scheme_id: key,
                },
                &rival,
            ))
            .await,
        );
        assert_eq!(hidden.code(), Code::NotFound);
    }
    let rival_list = r
        .list_reward_schemes(authed(
            pb::ListRewardSchemesRequest {
                include_inactive: true,
                ..Default::default()
            },
            &rival,
        ))
        .await?
        .into_inner();
    assert!(rival_list.reward_schemes.is_empty());
    let hidden = fails(
        r.sign_up(authed(
            pb::SignUpRequest {
                idempotency_key: "rival".into(),
                scheme_id: students.id.clone(),
                customer_id: cyril.clone(),
                sign_up_code: "UNI-2026".into(),
            },
            &rival,
        ))
        .await,
    );
    assert_eq!(hidden.code(), Code::NotFound);

    // A scheme with offers cannot go; without them it can.
    let offer = r
        .create_reward_offer(authed(
            pb::CreateRewardOfferRequest {
                idempotency_key: "offer".into(),
                reward_offer: Some(pb::RewardOffer {
                    display_name: "Student stamp card".into(),
                    scheme_id: "students".into(),
                    goal_group: pb::GoalGroup::Frequency as i32,
                    goals: vec![pb::OfferGoal {
                        kind: Some(pb::offer_goal::Kind::Frequency(pb::FrequencyGoal {
                            purchase_count: 5,
                            minimum_purchase_spend: None,
                        })),
                    }],
                    award: Some(pb::OfferAward {
                        kind: Some(pb::offer_award::Kind::Points(100)),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
            &admin,
        ))
        .await?
        .into_inner()
        .reward_offer
        .expect("offer");
    assert_eq!(offer.scheme_id, students.id);
    assert_eq!(offer.state, pb::OfferState::Active as i32);
    let in_use = fails(
        r.delete_reward_scheme(authed(
            pb::DeleteRewardSchemeRequest {
                idempotency_key: "delete-1".into(),
                reward_scheme_id: students.id.clone(),
                etag: String::new(),
            },
            &admin,
        ))
        .await,
    );
    assert_eq!(error_reason(&in_use), "SCHEME_HAS_OFFERS");
    let hidden = fails(
        r.get_reward_offer(authed(
            pb::GetRewardOfferRequest {
                reward_offer_id: offer.id.clone(),
            },
            &rival,
        ))
        .await,
    );
    assert_eq!(hidden.code(), Code::NotFound);
    r.delete_reward_offer(authed(
        pb::DeleteRewardOfferRequest {
            idempotency_key: "delete-offer".into(),
            reward_offer_id: offer.id.clone(),
            etag: offer.etag.clone(),
        },
        &admin,
    ))
    .await?;
    r.delete_reward_scheme(authed(
        pb::DeleteRewardSchemeRequest {
            idempotency_key: "delete-2".into(),
            reward_scheme_id: students.id.clone(),
            etag: String::new(),
        },
        &admin,
    ))
    .await?;
    let gone = fails(
        r.get_reward_scheme(authed(
            pb::GetRewardSchemeRequest {
                reward_scheme_id: students.id.clone(),
            },
            &admin,
        ))
        .await,
    );
    assert_eq!(gone.code(), Code::NotFound);
    suite.stop().await
}

fn card(number: &str) -> types::IdentifierRef {
    types::IdentifierRef {
        r#type: types::IdentifierType::Card as i32,
        value: number.to_owned(),
    }
}

fn purchase(transaction_id: &str, amount: i64) -> checkout::CommitRequest {
    checkout::CommitRequest {
        transaction_id: transaction_id.into(),
        identifier: Some(card("3000 0000 0007")),
        cart: Some(types::Cart {
            currency_code: "EUR".into(),
            lines: vec![types::CartLine {
                line_id: "1".into(),
                product_id: "SKU-1".into(),
                quantity: 1,
                unit_price_minor: amount,
                ..Default::default()
            }],
        }),
        payments: vec![checkout::Payment {
            method: "card".into(),
            amount_minor: amount,
        }],
        ..Default::default()
    }
}

/// The worked example of docs/rewards.md: spend 100 EUR this month → 5 EUR, instantly
/// redeemable, here reached in three visits (40 + 35 + 30 EUR).
#[tokio::test(flavor = "multi_thread")]
async fn purchases_at_checkout_win_an_offer_credited_to_the_wallet_once() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key(
            "Cafe",
            &[
                identity::Role::Admin,
                identity::Role::Pos,
                identity::Role::Marketing,
            ],
        )
        .await?;
    let customer_id = suite
        .identity()
        .await?
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: "register".into(),
                customer: Some(identity::Customer {
                    first_name: "Jana".into(),
                    ..Default::default()
                }),
                identifiers: vec![card("3000 0000 0007")],
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner()
        .customer
        .expect("customer")
        .id;
    let mut w = suite.wallet().await?;
    w.create_points_type(authed(
        wallet::CreatePointsTypeRequest {
            idempotency_key: "credit".into(),
            points_type: Some(wallet::PointsType {
                code: "eur_credit".into(),
                display_name: "Cafe credit".into(),
                unit: wallet::PointsUnit::Credit as i32,
                currency_code: "EUR".into(),
                expiry_rule: wallet::ExpiryRule::Never as i32,
                spendable: true,
                active: true,
                ..Default::default()
            }),
        },
        &key,
    ))
    .await?;
    let mut r = suite.rewards().await?;
    r.create_reward_scheme(authed(
        pb::CreateRewardSchemeRequest {
            idempotency_key: "everyone".into(),
            reward_scheme: Some(scheme("everyone", pb::SignUpOption::Auto)),
        },
        &key,
    ))
    .await?;
    let offer = r
        .create_reward_offer(authed(
            pb::CreateRewardOfferRequest {
                idempotency_key: "spend-100".into(),
                reward_offer: Some(pb::RewardOffer {
                    display_name: "Spend 100 EUR this month, get 5 EUR".into(),
                    scheme_id: "everyone".into(),
                    goal_group: pb::GoalGroup::Purchase as i32,
                    goals: vec![pb::OfferGoal {
                        kind: Some(pb::offer_goal::Kind::Purchase(pb::PurchaseGoal {
                            minimum_spend: eur(10_000),
                            ..Default::default()
                        })),
                    }],
                    award: Some(pb::OfferAward {
                        kind: Some(pb::offer_award::Kind::FixedAmount(types::Money {
                            currency_code: "EUR".into(),
                            amount_minor: 500,
                        })),
                        validity_days: 90,
                        ..Default::default()
                    }),
                    auto_redeem: true,
                    period_days: 30,
                    max_awards_per_customer: 1,
                    ..Default::default()
                }),
            },
            &key,
        ))
        .await?
        .into_inner()
        .reward_offer
        .expect("offer");

    let mut pos = suite.checkout().await?;
    for (i, amount) in [4_000, 3_500, 3_000].into_iter().enumerate() {
        let t = format!("till-1/{i}");
        pos.commit(authed(purchase(&t, amount), &key)).await?;
        // A retried commit publishes nothing new.
        pos.commit(authed(purchase(&t, amount), &key)).await?;
    }
    let progress = eventually(Duration::from_secs(30), || {
        let (mut r, customer_id, key) = (r.clone(), customer_id.clone(), key.clone());
        async move {
            let p = r
                .list_offer_progress(authed(
                    pb::ListOfferProgressRequest {
                        customer_id,
                        ..Default::default()
                    },
                    &key,
                ))
                .await?
                .into_inner()
                .progress;
            Ok(p.into_iter().find(|p| p.award_count == 1))
        }
    })
    .await?;
    assert_eq!(progress.offer_id, offer.id);
    assert_eq!(
        progress.goals[0].current_value, 0,
        "goals restart after the award"
    );
    assert_eq!(progress.goals[0].target_value, 10_000);

    let credit = eventually(Duration::from_secs(30), || {
        let (mut w, customer_id, key) = (w.clone(), customer_id.clone(), key.clone());
        async move {
            let balance = w
                .get_balance(authed(
                    wallet::GetBalanceRequest {
                        customer_id,
                        points_type_id: "eur_credit".into(),
                    },
                    &key,
                ))
                .await?
                .into_inner()
                .balance
                .expect("balance");
            Ok(balance
                .wallets
                .into_iter()
                .find(|w| w.points_type_code == "eur_credit" && w.available > 0))
        }
    })
    .await?;
    // Auto-redeemed: open (spendable, payable) balance, nothing left on the commerce balance.
    assert_eq!(
        (credit.available, credit.payable, credit.commerce),
        (500, 500, 0)
    );
    assert!(
        !credit.next_expirations.is_empty(),
        "the award's validity carries to the wallet"
    );
    // More purchases win nothing more (one award per customer), and nothing is credited twice.
    pos.commit(authed(purchase("till-1/9", 12_000), &key))
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let balance = w
        .get_balance(authed(
            wallet::GetBalanceRequest {
                customer_id: customer_id.clone(),
                points_type_id: "eur_credit".into(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .balance
        .expect("balance");
    assert_eq!(balance.wallets[0].available, 500);
    suite.stop().await
}

fn create_customer(
    key: &str,
    email: &str,
    card_number: Option<&str>,
    referrer: &str,
) -> identity::CreateCustomerRequest {
    identity::CreateCustomerRequest {
        idempotency_key: key.into(),
        customer: Some(identity::Customer {
            first_name: key.into(),
            email: email.into(),
            ..Default::default()
        }),
        identifiers: card_number.map(card).into_iter().collect(),
        referrer_customer_id: referrer.into(),
    }
}

fn referral_offer(
    name: &str,
    reward_id: &str,
    count: i32,
    require_purchase: bool,
) -> pb::RewardOffer {
    pb::RewardOffer {
        display_name: name.into(),
        goal_group: pb::GoalGroup::Referral as i32,
        goals: vec![pb::OfferGoal {
            kind: Some(pb::offer_goal::Kind::Referral(pb::ReferralGoal {
                referral_count: count,
                require_purchase,
            })),
        }],
        award: Some(pb::OfferAward {
            kind: Some(pb::offer_award::Kind::RewardId(reward_id.into())),
            validity_days: 30,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Referral programme across identity → rewards: customers created with a referrer count for
/// the referrer (on sign-up, or on their first purchase at checkout), each once, and the
/// awards are vouchers issued to the referrer; a CLOSED scheme admits students by the domain of
/// the email identity holds.
#[tokio::test(flavor = "multi_thread")]
async fn referrals_win_vouchers_and_students_join_by_email_domain() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key(
            "Cafe",
            &[
                identity::Role::Admin,
                identity::Role::Pos,
                identity::Role::Marketing,
            ],
        )
        .await?;
    let mut id = suite.identity().await?;
    let (ids, k) = (id.clone(), key.clone());
    let customer = move |req: identity::CreateCustomerRequest| {
        let (mut id, key) = (ids.clone(), k.clone());
        async move {
            Ok::<_, Status>(
                id.create_customer(authed(req, &key))
                    .await?
                    .into_inner()
                    .customer
                    .expect("customer")
                    .id,
            )
        }
    };
    let jana = customer(create_customer("jana", "Jana@Students.UNI.cz", None, "")).await?;
    let mut r = suite.rewards().await?;
    let reward = |key_: &str, name: &str| pb::CreateRewardRequest {
        idempotency_key: key_.into(),
        reward: Some(pb::Reward {
            display_name: name.into(),
            r#type: pb::RewardType::Coupon as i32,
            benefit: Some(pb::reward::Benefit::CartPercentageDiscount(
                pb::CartPercentageDiscount { basis_points: 1000 },
            )),
            ..Default::default()
        }),
    };
    let mut rewards = Vec::new();
    for (k, name) in [("coffee", "Free coffee"), ("cake", "Free cake")] {
        rewards.push(
            r.create_reward(authed(reward(k, name), &key))
                .await?
                .into_inner()
                .reward
                .expect("reward")
                .id,
        );
    }
    for (k, offer) in [
        (
            "two-friends",
            referral_offer("Bring two friends", &rewards[0], 2, false),
        ),
        (
            "buying-friend",
            referral_offer("A friend who buys", &rewards[1], 1, true),
        ),
    ] {
        r.create_reward_offer(authed(
            pb::CreateRewardOfferRequest {
                idempotency_key: k.into(),
                reward_offer: Some(offer),
            },
            &key,
        ))
        .await?;
    }

    // The referrer must be an existing customer of the partner.
    let err = fails(
        id.create_customer(authed(
            create_customer("ghost", "", None, &Uuid::now_v7().to_string()),
            &key,
        ))
        .await,
    );
    assert_eq!(err.code(), Code::NotFound);
    let err = fails(
        id.create_customer(authed(create_customer("bad", "", None, "jana"), &key))
            .await,
    );
    assert_eq!(violated_fields(&err), ["referrer_customer_id"]);

    let petr = customer(create_customer(
        "petr",
        "petr@gmail.com",
        Some("3000 0000 0007"),
        &jana,
    ))
    .await?;
    customer(create_customer("eva", "", None, &jana)).await?;
    // Petr buys twice: only his first purchase counts for Jana.
    let mut pos = suite.checkout().await?;
    pos.commit(authed(purchase("till-1/1", 1_000), &key))
        .await?;
    pos.commit(authed(purchase("till-1/2", 2_000), &key))
        .await?;

    let vouchers = |r: &pb::rewards_service_client::RewardsServiceClient<_>| {
        let (mut r, jana, key) = (r.clone(), jana.clone(), key.clone());
        async move {
            anyhow::Ok(
                r.list_vouchers(authed(
                    pb::ListVouchersRequest {
                        customer_id: jana,
                        ..Default::default()
                    },
                    &key,
                ))
                .await?
                .into_inner()
                .vouchers,
            )
        }
    };
    let won = eventually(Duration::from_secs(30), || {
        let f = vouchers(&r);
        async move { Ok(Some(f.await?).filter(|v| v.len() == 2)) }
    })
    .await?;
    let mut won_rewards: Vec<&str> = won.iter().map(|v| v.reward_id.as_str()).collect();
    won_rewards.sort();
    let mut expected: Vec<&str> = rewards.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(won_rewards, expected, "one voucher of each offer's reward");
    assert!(
        won.iter()
            .all(|v| v.source == pb::VoucherSource::Offer as i32)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(vouchers(&r).await?.len(), 2, "nothing counted twice");

    // Students join by the domain of their email in identity; others need a code.
    r.create_reward_scheme(authed(
        pb::CreateRewardSchemeRequest {
            idempotency_key: "students".into(),
            reward_scheme: Some(pb::RewardScheme {
                email_domains: vec!["uni.cz".into()],
                ..scheme("students", pb::SignUpOption::Closed)
            }),
        },
        &key,
    ))
    .await?;
    let sign_up = |k: &str, customer: &str| {
        authed(
            pb::SignUpRequest {
                idempotency_key: k.into(),
                scheme_id: "students".into(),
                customer_id: customer.into(),
                sign_up_code: String::new(),
            },
            &key,
        )
    };
    r.sign_up(sign_up("jana-joins", &jana)).await?;
    let err = fails(r.sign_up(sign_up("petr-joins", &petr)).await);
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&err), "EMAIL_DOMAIN_NOT_ALLOWED");
    let err = fails(
        r.sign_up(sign_up("stranger-joins", &Uuid::now_v7().to_string()))
            .await,
    );
    assert_eq!(err.code(), Code::NotFound, "not a customer of the partner");
    suite.stop().await
}

/// An offer restricted to a segment: the rewards consumer asks segmentation (the platform key
/// acting for the partner) about each purchaser; only the segment's member progresses, while an
/// offer for everyone counts both purchases.
#[tokio::test(flavor = "multi_thread")]
async fn segment_offers_count_only_for_the_segments_members() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key(
            "Cafe",
            &[
                identity::Role::Admin,
                identity::Role::Pos,
                identity::Role::Marketing,
            ],
        )
        .await?;
    let mut id = suite.identity().await?;
    let mut customers = Vec::new();
    for (name, number, tier) in [
        ("jana", "3000 0000 0007", "gold"),
        ("petr", "3000 0000 0015", ""),
    ] {
        let req = identity::CreateCustomerRequest {
            idempotency_key: name.into(),
            customer: Some(identity::Customer {
                first_name: name.into(),
                properties: if tier.is_empty() {
                    Default::default()
                } else {
                    [("tier".to_owned(), tier.to_owned())].into()
                },
                ..Default::default()
            }),
            identifiers: vec![card(number)],
            ..Default::default()
        };
        customers.push(
            id.create_customer(authed(req, &key))
                .await?
                .into_inner()
                .customer
                .expect("customer")
                .id,
        );
    }
    let mut seg = suite.segmentation().await?;
    let gold = seg
        .create_segment(authed(
            segmentation::CreateSegmentRequest {
                idempotency_key: "gold".into(),
                segment: Some(loyalty_testkit::segment_where_equals(
                    "Gold customers",
                    "customer.properties.tier",
                    "gold",
                )),
            },
            &key,
        ))
        .await?
        .into_inner()
        .segment
        .expect("segment");
    eventually(Duration::from_secs(20), || {
        let (mut seg, customer_id, gold, key) = (
            seg.clone(),
            customers[0].clone(),
            gold.id.clone(),
            key.clone(),
        );
        async move {
            let m = seg
                .get_customer_memberships(authed(
                    segmentation::GetCustomerMembershipsRequest {
                        customer_id,
                        cart: None,
                    },
                    &key,
                ))
                .await?
                .into_inner();
            Ok(m.memberships
                .iter()
                .any(|m| m.segment_id == gold)
                .then_some(()))
        }
    })
    .await?;

    let mut r = suite.rewards().await?;
    let offer = |name: &str, segment_ids: Vec<String>| pb::RewardOffer {
        display_name: name.into(),
        goal_group: pb::GoalGroup::Frequency as i32,
        goals: vec![pb::OfferGoal {
            kind: Some(pb::offer_goal::Kind::Frequency(pb::FrequencyGoal {
                purchase_count: 1,
                ..Default::default()
            })),
        }],
        award: Some(pb::OfferAward {
            kind: Some(pb::offer_award::Kind::Points(100)),
            ..Default::default()
        }),
        segment_ids,
        max_awards_per_customer: 1,
        ..Default::default()
    };
    let mut ids = Vec::new();
    for (k, o) in [
        ("gold-visit", offer("Gold visit", vec![gold.id.clone()])),
        ("any-visit", offer("Any visit", Vec::new())),
    ] {
        ids.push(
            r.create_reward_offer(authed(
                pb::CreateRewardOfferRequest {
                    idempotency_key: k.into(),
                    reward_offer: Some(o),
                },
                &key,
            ))
            .await?
            .into_inner()
            .reward_offer
            .expect("offer")
            .id,
        );
    }
    let mut pos = suite.checkout().await?;
    for (i, number) in ["3000 0000 0007", "3000 0000 0015"].into_iter().enumerate() {
        pos.commit(authed(
            checkout::CommitRequest {
                identifier: Some(card(number)),
                ..purchase(&format!("till-1/{i}"), 1_000)
            },
            &key,
        ))
        .await?;
    }
    let awarded = |customer_id: String| {
        let (mut r, key) = (r.clone(), key.clone());
        async move {
            let p = r
                .list_offer_progress(authed(
                    pb::ListOfferProgressRequest {
                        customer_id,
                        ..Default::default()
                    },
                    &key,
                ))
                .await?
                .into_inner()
                .progress;
            anyhow::Ok(
                p.into_iter()
                    .filter(|p| p.award_count == 1)
                    .map(|p| p.offer_id)
                    .collect::<Vec<_>>(),
            )
        }
    };
    for (customer, expected) in [(&customers[0], 2), (&customers[1], 1)] {
        let won = eventually(Duration::from_secs(30), || {
            let f = awarded(customer.clone());
            async move { Ok(Some(f.await?).filter(|w| w.len() == expected)) }
        })
        .await?;
        assert_eq!(
            won.contains(&ids[0]),
            expected == 2,
            "only gold wins the gold offer"
        );
        assert!(won.contains(&ids[1]));
    }
    suite.stop().await
}

/// A scheme signed up to by criteria: rewards asks segmentation (the platform key acting for
/// the partner) whether the customer is in one of the scheme's segments when they sign up.
/// The gold customer joins, the other is refused with the reason, and a segment of another
/// partner never admits anybody.
#[tokio::test(flavor = "multi_thread")]
async fn a_criteria_scheme_admits_members_of_its_segments() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key(
            "Cafe",
            &[
                identity::Role::Admin,
                identity::Role::Pos,
                identity::Role::Marketing,
            ],
        )
        .await?;
    let (_, rival) = suite
        .partner_with_key("Rival", &[identity::Role::Admin, identity::Role::Marketing])
        .await?;
    let mut id = suite.identity().await?;
    let mut customers = Vec::new();
    for (name, tier) in [("jana", "gold"), ("petr", "")] {
        let req = identity::CreateCustomerRequest {
            idempotency_key: name.into(),
            customer: Some(identity::Customer {
                first_name: name.into(),
                properties: if tier.is_empty() {
                    Default::default()
                } else {
                    [("tier".to_owned(), tier.to_owned())].into()
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        customers.push(
            id.create_customer(authed(req, &key))
                .await?
                .into_inner()
                .customer
                .expect("customer")
                .id,
        );
    }
    let mut seg = suite.segmentation().await?;
    let gold_segment = |who: &str| {
        authed(
            segmentation::CreateSegmentRequest {
                idempotency_key: "gold".into(),
                segment: Some(loyalty_testkit::segment_where_equals(
                    "Gold customers",
                    "customer.properties.tier",
                    "gold",
                )),
            },
            who,
        )
    };
    let gold = seg
        .create_segment(gold_segment(&key))
        .await?
        .into_inner()
        .segment
        .expect("segment")
        .id;
    let rivals_gold = seg
        .create_segment(gold_segment(&rival))
        .await?
        .into_inner()
        .segment
        .expect("segment")
        .id;
    eventually(Duration::from_secs(20), || {
        let (mut seg, customer_id, gold, key) =
            (seg.clone(), customers[0].clone(), gold.clone(), key.clone());
        async move {
            let m = seg
                .get_customer_memberships(authed(
                    segmentation::GetCustomerMembershipsRequest {
                        customer_id,
                        cart: None,
                    },
                    &key,
                ))
                .await?
                .into_inner();
            Ok(m.memberships
                .iter()
                .any(|m| m.segment_id == gold)
                .then_some(()))
        }
    })
    .await?;

    let mut r = suite.rewards().await?;
    let create = |code: &str, segments: Vec<String>| {
        authed(
            pb::CreateRewardSchemeRequest {
                idempotency_key: code.into(),
                reward_scheme: Some(pb::RewardScheme {
                    sign_up_segment_ids: segments,
                    ..scheme(code, pb::SignUpOption::Criteria)
                }),
            },
            &key,
        )
    };
    let err = fails(
        r.create_reward_scheme(create("bad", vec![gold.clone(), "gold".into()]))
            .await,
    );
    assert_eq!(
        violated_fields(&err),
        ["reward_scheme.sign_up_segment_ids[1]"]
    );
    let club = r
        .create_reward_scheme(create("gold_club", vec![gold.clone()]))
        .await?
        .into_inner()
        .reward_scheme
        .expect("scheme");
    assert_eq!(club.sign_up_option, pb::SignUpOption::Criteria as i32);
    assert_eq!(club.sign_up_segment_ids, std::slice::from_ref(&gold));
    r.create_reward_scheme(create("rivals_club", vec![rivals_gold]))
        .await?;

    let sign_up = |k: &str, scheme_id: &str, customer: &str| {
        authed(
            pb::SignUpRequest {
                idempotency_key: k.into(),
                scheme_id: scheme_id.into(),
                customer_id: customer.into(),
                sign_up_code: String::new(),
            },
            &key,
        )
    };
    let joined = r
        .sign_up(sign_up("jana-joins", "gold_club", &customers[0]))
        .await?
        .into_inner()
        .membership
        .expect("membership");
    assert_eq!(joined.customer_id, customers[0]);
    let err = fails(
        r.sign_up(sign_up("petr-joins", "gold_club", &customers[1]))
            .await,
    );
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&err), "SIGN_UP_CRITERIA_NOT_MET");
    // Segmentation answers for the caller's partner: another partner's segment, even one
    // Jana would match, never admits her.
    let err = fails(
        r.sign_up(sign_up("jana-joins-rivals", "rivals_club", &customers[0]))
            .await,
    );
    assert_eq!(error_reason(&err), "SIGN_UP_CRITERIA_NOT_MET");
    let got = r
        .get_reward_scheme(authed(
            pb::GetRewardSchemeRequest {
                reward_scheme_id: "gold_club".into(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .reward_scheme
        .expect("scheme");
    assert_eq!(got.member_count, 1);
    suite.stop().await
}

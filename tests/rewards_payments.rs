//! Vouchers paid with points through the wallet (issue #6), the services running as
//! processes on PostgreSQL: a customer registered in identity earns points in the wallet;
//! a catalogue reward with a points price deducts them when its voucher is issued, refuses a
//! customer without enough points, and gives them back when the voucher is cancelled with a
//! refund; a cash desk reward deducts its price at redemption and gives it back when the
//! redemption is reinstated. Retries never move points twice, and the ledger stays balanced.
use loyalty_proto::{identity::v1 as identity, rewards::v1 as pb, wallet::v1 as wallet};
use loyalty_testkit::{Backend, Suite, authed, error_reason};
use tonic::{Code, transport::Channel};

type Wallet = wallet::wallet_service_client::WalletServiceClient<Channel>;
type Rewards = pb::rewards_service_client::RewardsServiceClient<Channel>;

async fn available(w: &mut Wallet, key: &str, customer: &str) -> anyhow::Result<i64> {
    Ok(w.get_balance(authed(
        wallet::GetBalanceRequest {
            customer_id: customer.into(),
            ..Default::default()
        },
        key,
    ))
    .await?
    .into_inner()
    .balance
    .expect("balance")
    .available_points)
}

async fn customer(suite: &Suite, key: &str, name: &str) -> anyhow::Result<String> {
    Ok(suite
        .identity()
        .await?
        .create_customer(authed(
            identity::CreateCustomerRequest {
                idempotency_key: format!("register-{name}"),
                customer: Some(identity::Customer {
                    first_name: name.into(),
                    ..Default::default()
                }),
                identifiers: vec![],
                ..Default::default()
            },
            key,
        ))
        .await?
        .into_inner()
        .customer
        .expect("customer")
        .id)
}

async fn priced_reward(
    r: &mut Rewards,
    key: &str,
    name: &str,
    kind: pb::RewardType,
    points_price: i64,
) -> anyhow::Result<String> {
    Ok(r.create_reward(authed(
        pb::CreateRewardRequest {
            idempotency_key: format!("reward-{name}"),
            reward: Some(pb::Reward {
                display_name: name.into(),
                r#type: kind as i32,
                benefit: Some(pb::reward::Benefit::CartPercentageDiscount(
                    pb::CartPercentageDiscount { basis_points: 1000 },
                )),
                points_price,
                ..Default::default()
            }),
        },
        key,
    ))
    .await?
    .into_inner()
    .reward
    .expect("reward")
    .id)
}

fn issue(key: &str, reward: &str, customer: &str, pay: bool) -> pb::IssueVoucherRequest {
    pb::IssueVoucherRequest {
        idempotency_key: key.into(),
        reward_id: reward.into(),
        customer_id: customer.into(),
        source: pb::VoucherSource::Catalogue as i32,
        pay_with_points: pay,
        ..Default::default()
    }
}

async fn balanced(w: &mut Wallet, key: &str) -> anyhow::Result<()> {
    let report = w
        .trial_balance(authed(wallet::TrialBalanceRequest::default(), key))
        .await?
        .into_inner();
    assert!(report.balanced, "{:?}", report.discrepancies);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn vouchers_are_paid_with_points_and_refunded_exactly_once() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, admin) = suite
        .partner_with_key("Points shop", &[identity::Role::Admin])
        .await?;
    let mut w = suite.wallet().await?;
    let mut r = suite.rewards().await?;
    let jana = customer(&suite, &admin, "jana").await?;
    let petr = customer(&suite, &admin, "petr").await?;
    w.award_points(authed(
        wallet::AwardPointsRequest {
            idempotency_key: "earn-jana".into(),
            customer_id: jana.clone(),
            points: 1_000,
            reason: "purchase".into(),
            reference: "purchase:T0".into(),
            cause: wallet::PostingCause::Purchase as i32,
            ..Default::default()
        },
        &admin,
    ))
    .await?;
    assert_eq!(available(&mut w, &admin, &jana).await?, 1_000);

    // A catalogue reward for 300 points: issuing deducts them, once even when retried.
    let coupon = priced_reward(&mut r, &admin, "Coffee", pb::RewardType::Coupon, 300).await?;
    let paid = r
        .issue_voucher(authed(issue("buy-1", &coupon, &jana, true), &admin))
        .await?
        .into_inner()
        .voucher
        .expect("voucher");
    assert_eq!(paid.points_paid, 300);
    assert_eq!(available(&mut w, &admin, &jana).await?, 700);
    let retried = r
        .issue_voucher(authed(issue("buy-1", &coupon, &jana, true), &admin))
        .await?
        .into_inner()
        .voucher
        .expect("voucher");
    assert_eq!(retried.id, paid.id);
    assert_eq!(available(&mut w, &admin, &jana).await?, 700);
    // The points went out as a capture referring to the voucher.
    let postings = w
        .list_postings(authed(
            wallet::ListPostingsRequest {
                customer_id: jana.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner()
        .postings;
    let capture = postings
        .iter()
        .find(|p| p.kind == wallet::PostingKind::Capture as i32)
        .expect("a capture posting");
    assert_eq!(capture.amount, 300);
    assert_eq!(capture.reference, format!("voucher:{}", paid.id));

    // Without pay_with_points an operator hands it out for free.
    let free = r
        .issue_voucher(authed(issue("gift-1", &coupon, &jana, false), &admin))
        .await?
        .into_inner()
        .voucher
        .expect("voucher");
    assert_eq!(free.points_paid, 0);
    assert_eq!(available(&mut w, &admin, &jana).await?, 700);

    // Petr has no points: refused, nothing issued, nothing held.
    let poor = r
        .issue_voucher(authed(issue("buy-2", &coupon, &petr, true), &admin))
        .await
        .expect_err("no points");
    assert_eq!(poor.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&poor), "INSUFFICIENT_POINTS");
    let petrs = r
        .list_vouchers(authed(
            pb::ListVouchersRequest {
                customer_id: petr.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner()
        .vouchers;
    assert!(petrs.is_empty(), "{petrs:?}");

    // A refusal after the points were held (here: over the reward's limit per customer)
    // releases the hold: the available balance is whole again.
    let once = r
        .create_reward(authed(
            pb::CreateRewardRequest {
                idempotency_key: "reward-once".into(),
                reward: Some(pb::Reward {
                    display_name: "Once".into(),
                    r#type: pb::RewardType::Coupon as i32,
                    benefit: Some(pb::reward::Benefit::CartPercentageDiscount(
                        pb::CartPercentageDiscount { basis_points: 500 },
                    )),
                    points_price: 100,
                    max_vouchers_per_customer: 1,
                    ..Default::default()
                }),
            },
            &admin,
        ))
        .await?
        .into_inner()
        .reward
        .expect("reward")
        .id;
    r.issue_voucher(authed(issue("once-1", &once, &jana, true), &admin))
        .await?;
    assert_eq!(available(&mut w, &admin, &jana).await?, 600);
    let over = r
        .issue_voucher(authed(issue("once-2", &once, &jana, true), &admin))
        .await
        .expect_err("over the limit");
    assert_eq!(error_reason(&over), "VOUCHER_LIMIT_REACHED");
    assert_eq!(available(&mut w, &admin, &jana).await?, 600);

    // Cancelling with a refund gives the 300 points back, once.
    let cancel = pb::CancelVoucherRequest {
        idempotency_key: "cancel-1".into(),
        voucher_id: paid.id.clone(),
        reason: "changed my mind".into(),
        refund_points: true,
    };
    let cancelled = r
        .cancel_voucher(authed(cancel.clone(), &admin))
        .await?
        .into_inner()
        .voucher
        .expect("voucher");
    assert_eq!(cancelled.state, pb::VoucherState::Cancelled as i32);
    assert_eq!(cancelled.points_paid, 0);
    assert_eq!(available(&mut w, &admin, &jana).await?, 900);
    r.cancel_voucher(authed(cancel, &admin)).await?;
    assert_eq!(available(&mut w, &admin, &jana).await?, 900);

    // A cash desk reward for 200 points: issued for free, paid when redeemed.
    let desk = priced_reward(&mut r, &admin, "Desk", pb::RewardType::CashDesk, 200).await?;
    let at_desk = r
        .issue_voucher(authed(
            pb::IssueVoucherRequest {
                source: pb::VoucherSource::CashDesk as i32,
                ..issue("desk-1", &desk, &jana, true)
            },
            &admin,
        ))
        .await?
        .into_inner()
        .voucher
        .expect("voucher");
    assert_eq!(at_desk.points_paid, 0);
    assert_eq!(available(&mut w, &admin, &jana).await?, 900);
    let redeem = pb::RedeemVoucherRequest {
        idempotency_key: "redeem-1".into(),
        code: at_desk.code.clone(),
        customer_id: jana.clone(),
        transaction_id: "T1".into(),
        ..Default::default()
    };
    let redeemed = r
        .redeem_voucher(authed(redeem.clone(), &admin))
        .await?
        .into_inner();
    assert_eq!(redeemed.points_spent, 200);
    assert_eq!(
        redeemed.voucher.as_ref().map(|v| (v.state, v.points_paid)),
        Some((pb::VoucherState::Redeemed as i32, 200))
    );
    assert_eq!(available(&mut w, &admin, &jana).await?, 700);
    let again = r.redeem_voucher(authed(redeem, &admin)).await?.into_inner();
    assert_eq!(again.points_spent, 200);
    assert_eq!(available(&mut w, &admin, &jana).await?, 700);
    // Another redemption of the redeemed voucher is refused and its hold released.
    let twice = r
        .redeem_voucher(authed(
            pb::RedeemVoucherRequest {
                idempotency_key: "redeem-2".into(),
                code: at_desk.code.clone(),
                customer_id: jana.clone(),
                transaction_id: "T2".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect_err("already redeemed");
    assert_eq!(error_reason(&twice), "VOUCHER_ALREADY_REDEEMED");
    assert_eq!(available(&mut w, &admin, &jana).await?, 700);

    // Reinstating the redemption gives the 200 points back, once; the voucher is usable
    // (and payable) again.
    let reinstate = pb::ReinstateVoucherRequest {
        idempotency_key: "reinstate-1".into(),
        voucher_id: at_desk.id.clone(),
        transaction_id: "T1".into(),
        reason: "purchase returned".into(),
    };
    let back = r
        .reinstate_voucher(authed(reinstate.clone(), &admin))
        .await?
        .into_inner()
        .voucher
        .expect("voucher");
    assert_eq!(
        (back.state, back.points_paid),
        (pb::VoucherState::Active as i32, 0)
    );
    assert_eq!(available(&mut w, &admin, &jana).await?, 900);
    r.reinstate_voucher(authed(reinstate, &admin)).await?;
    assert_eq!(available(&mut w, &admin, &jana).await?, 900);

    // A blocked customer cannot pay at the desk; the voucher stays unredeemed.
    w.block_spending(authed(
        wallet::BlockSpendingRequest {
            idempotency_key: "block-jana".into(),
            customer_id: jana.clone(),
            reason: "fraud check".into(),
            ..Default::default()
        },
        &admin,
    ))
    .await?;
    let blocked = r
        .redeem_voucher(authed(
            pb::RedeemVoucherRequest {
                idempotency_key: "redeem-3".into(),
                code: at_desk.code.clone(),
                customer_id: jana.clone(),
                transaction_id: "T3".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect_err("blocked");
    assert_eq!(error_reason(&blocked), "BLOCKED_FROM_SPENDING");
    let still = r
        .get_voucher(authed(
            pb::GetVoucherRequest {
                voucher_id: at_desk.id.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner()
        .voucher
        .expect("voucher");
    assert_eq!(still.state, pb::VoucherState::Active as i32);
    assert_eq!(available(&mut w, &admin, &jana).await?, 900);

    balanced(&mut w, &admin).await?;
    Ok(())
}

/// The saga's compensation: when the hold paying for a voucher is no longer held at capture
/// time, the issued voucher is cancelled and the call refused, and no points move. The hold
/// is made (and released) beforehand under the key the rewards service derives from the
/// IssueVoucher request, as if an earlier attempt had been given up.
#[tokio::test(flavor = "multi_thread")]
async fn a_voucher_whose_hold_was_given_back_is_cancelled_not_given_away() -> anyhow::Result<()> {
    use loyalty_rewards::domain::payments::{HOLD_SECONDS, keys};
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, admin) = suite
        .partner_with_key("Lapsing shop", &[identity::Role::Admin])
        .await?;
    let mut w = suite.wallet().await?;
    let mut r = suite.rewards().await?;
    let jana = customer(&suite, &admin, "jana").await?;
    w.award_points(authed(
        wallet::AwardPointsRequest {
            idempotency_key: "earn".into(),
            customer_id: jana.clone(),
            points: 500,
            reason: "purchase".into(),
            ..Default::default()
        },
        &admin,
    ))
    .await?;
    let coupon = priced_reward(&mut r, &admin, "Tea", pb::RewardType::Coupon, 200).await?;
    let held = w
        .reserve_points(authed(
            wallet::ReservePointsRequest {
                idempotency_key: keys::issue_hold("late-1"),
                customer_id: jana.clone(),
                points: 200,
                reference: format!("reward:{coupon}"),
                ttl_seconds: HOLD_SECONDS,
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner()
        .reservation
        .expect("reservation");
    w.release_points(authed(
        wallet::ReleasePointsRequest {
            idempotency_key: "give-up".into(),
            reservation_id: held.id.clone(),
        },
        &admin,
    ))
    .await?;
    assert_eq!(available(&mut w, &admin, &jana).await?, 500);

    let refused = r
        .issue_voucher(authed(issue("late-1", &coupon, &jana, true), &admin))
        .await
        .expect_err("the hold is gone");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&refused), "POINTS_PAYMENT_UNAVAILABLE");
    let vouchers = r
        .list_vouchers(authed(
            pb::ListVouchersRequest {
                customer_id: jana.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner()
        .vouchers;
    assert_eq!(vouchers.len(), 1, "{vouchers:?}");
    assert_eq!(vouchers[0].state, pb::VoucherState::Cancelled as i32);
    assert_eq!(vouchers[0].points_paid, 0);
    assert_eq!(available(&mut w, &admin, &jana).await?, 500);
    // A retry is refused the same way and changes nothing more.
    let again = r
        .issue_voucher(authed(issue("late-1", &coupon, &jana, true), &admin))
        .await
        .expect_err("still gone");
    assert_eq!(error_reason(&again), "POINTS_PAYMENT_UNAVAILABLE");
    assert_eq!(available(&mut w, &admin, &jana).await?, 500);
    balanced(&mut w, &admin).await?;
    Ok(())
}

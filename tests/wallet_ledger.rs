//! The wallet's ledger through its gRPC contract, on PostgreSQL: the CRM.COM flow (award →
//! redeem → spend → payout), exactly-once spending and idempotency under concurrency,
//! reservations, reversals, spending blocks, roles, validation and tenancy. Every scenario
//! ends with a balanced trial balance.
use loyalty_proto::{identity::v1 as identity, wallet::v1 as wallet};
use loyalty_testkit::{Backend, Suite, authed, error_reason, violated_fields};
use tonic::{Code, transport::Channel};
use uuid::Uuid;

type Wallet = wallet::wallet_service_client::WalletServiceClient<Channel>;

fn award(key: &str, customer: &str, points: i64) -> wallet::AwardPointsRequest {
    wallet::AwardPointsRequest {
        idempotency_key: key.into(),
        customer_id: customer.into(),
        points,
        reason: "purchase".into(),
        reference: format!("purchase:{key}"),
        cause: wallet::PostingCause::Purchase as i32,
        ..Default::default()
    }
}

fn spend(key: &str, customer: &str, points: i64) -> wallet::SpendPointsRequest {
    wallet::SpendPointsRequest {
        idempotency_key: key.into(),
        customer_id: customer.into(),
        points,
        reason: "voucher".into(),
        reference: format!("voucher:{key}"),
        cause: wallet::PostingCause::Reward as i32,
        ..Default::default()
    }
}

/// Another API key of the same partner, with other roles.
async fn key_of(
    suite: &Suite,
    partner_id: &str,
    roles: &[identity::Role],
) -> anyhow::Result<String> {
    Ok(suite
        .identity()
        .await?
        .create_api_key(suite.as_admin(identity::CreateApiKeyRequest {
            idempotency_key: format!("key-{partner_id}-{roles:?}"),
            partner_id: partner_id.into(),
            display_name: format!("{roles:?}"),
            roles: roles.iter().map(|r| *r as i32).collect(),
        }))
        .await?
        .into_inner()
        .secret)
}

async fn balanced(w: &mut Wallet, api_key: &str) -> anyhow::Result<()> {
    let report = w
        .trial_balance(authed(wallet::TrialBalanceRequest::default(), api_key))
        .await?
        .into_inner();
    assert!(report.balanced, "{:?}", report.discrepancies);
    for t in &report.totals {
        assert_eq!(t.net, 0, "{t:?}");
        assert_eq!(t.total_debits, t.total_credits);
    }
    Ok(())
}

async fn available(w: &mut Wallet, api_key: &str, customer: &str) -> anyhow::Result<i64> {
    Ok(w.get_balance(authed(
        wallet::GetBalanceRequest {
            customer_id: customer.into(),
            ..Default::default()
        },
        api_key,
    ))
    .await?
    .into_inner()
    .balance
    .expect("balance")
    .available_points)
}

#[tokio::test(flavor = "multi_thread")]
async fn award_redeem_spend_payout_on_a_credit_type() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, admin) = suite
        .partner_with_key("Credit shop", &[identity::Role::Admin])
        .await?;
    let mut w = suite.wallet().await?;
    w.create_points_type(authed(
        wallet::CreatePointsTypeRequest {
            idempotency_key: "type".into(),
            points_type: Some(wallet::PointsType {
                code: "store_credit".into(),
                display_name: "Store credit".into(),
                unit: wallet::PointsUnit::Credit as i32,
                currency_code: "EUR".into(),
                expiry_rule: wallet::ExpiryRule::EndOfMonth as i32,
                validity_months: 3,
                spendable: true,
                active: true,
                ..Default::default()
            }),
        },
        &admin,
    ))
    .await?;
    let jana = Uuid::now_v7().to_string();
    let credit = |key: &str, amount: i64, auto_redeem: bool| wallet::AwardPointsRequest {
        points_type_id: "store_credit".into(),
        auto_redeem,
        cause: wallet::PostingCause::Reward as i32,
        ..award(key, &jana, amount)
    };

    // Award: commerce money from an offer; nothing spendable yet.
    let awarded = w
        .award_points(authed(credit("offer-1", 1_500, false), &admin))
        .await?
        .into_inner();
    let wallet_after = awarded.wallet.expect("wallet");
    assert_eq!((wallet_after.commerce, wallet_after.available), (1_500, 0));
    let posting = awarded.posting.expect("posting");
    assert_eq!(posting.kind, wallet::PostingKind::Award as i32);
    assert_eq!(
        posting.credit.expect("credit").kind,
        wallet::AccountKind::Commerce as i32
    );
    assert!(posting.expire_time.is_some(), "END_OF_MONTH validity");

    // Redeem against a purchase of 10.00 EUR: commerce → open, at most the purchase amount.
    let redeemed = w
        .redeem_commerce_balance(authed(
            wallet::RedeemCommerceBalanceRequest {
                idempotency_key: "redeem-1".into(),
                customer_id: jana.clone(),
                points_type_id: "store_credit".into(),
                purchase_amount: 1_000,
                reference: "purchase:T-1".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert_eq!(redeemed.redeemed_amount, 1_000);
    let after = redeemed.wallet.expect("wallet");
    assert_eq!(
        (after.commerce, after.available, after.payable),
        (500, 1_000, 0)
    );
    assert_eq!(
        redeemed.postings[0].expire_time, posting.expire_time,
        "the award's validity carries over to the open balance"
    );

    // Spend 4.00 EUR of open balance on the next purchase.
    let spent = w
        .spend_points(authed(
            wallet::SpendPointsRequest {
                points_type_id: "store_credit".into(),
                ..spend("pay-1", &jana, 400)
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert_eq!(spent.wallet.expect("wallet").available, 600);

    // Payout: only auto-redeemed (instantly redeemable) awards are payable.
    let none_payable = w
        .payout(authed(
            wallet::PayoutRequest {
                idempotency_key: "payout-0".into(),
                customer_id: jana.clone(),
                points_type_id: "store_credit".into(),
                payment_method_reference: "iban:tok_123".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect_err("nothing payable");
    assert_eq!(none_payable.code(), Code::FailedPrecondition);
    w.award_points(authed(credit("cashback-1", 250, true), &admin))
        .await?;
    let paid = w
        .payout(authed(
            wallet::PayoutRequest {
                idempotency_key: "payout-1".into(),
                customer_id: jana.clone(),
                points_type_id: "store_credit".into(),
                payment_method_reference: "iban:tok_123".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert_eq!(paid.paid_amount, 250);
    let final_wallet = paid.wallet.expect("wallet");
    assert_eq!((final_wallet.available, final_wallet.payable), (600, 0));
    assert_eq!(final_wallet.currency_code, "EUR");
    assert_eq!(
        paid.postings[0].payment_method_reference, "iban:tok_123",
        "the payout records where the money went"
    );

    // History: newest first, filterable by kind.
    let history = w
        .list_postings(authed(
            wallet::ListPostingsRequest {
                customer_id: jana.clone(),
                points_type_id: "store_credit".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner()
        .postings;
    let kinds: Vec<i32> = history.iter().map(|p| p.kind).collect();
    use wallet::PostingKind as K;
    assert_eq!(
        kinds,
        [K::Payout, K::Award, K::Spend, K::Redeem, K::Award].map(|k| k as i32)
    );
    let awards = w
        .list_postings(authed(
            wallet::ListPostingsRequest {
                customer_id: jana.clone(),
                kinds: vec![K::Award as i32],
                page_size: 1,
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert_eq!(awards.postings.len(), 1);
    assert!(!awards.next_page_token.is_empty());
    balanced(&mut w, &admin).await
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_four_concurrent_spends_of_a_wallet_covering_ten_succeed_exactly_ten_times()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (partner, key) = suite
        .partner_with_key("Busy shop", &[identity::Role::Pos])
        .await?;
    let mut w = suite.wallet().await?;
    let customer = Uuid::now_v7().to_string();
    w.award_points(authed(award("fund", &customer, 10), &key))
        .await?;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (mut w, key, customer) = (w.clone(), key.clone(), customer.clone());
            tokio::spawn(async move {
                w.spend_points(authed(spend(&format!("spend-{i}"), &customer, 1), &key))
                    .await
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await? {
            Ok(_) => ok += 1,
            Err(s) => {
                assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
                assert_eq!(error_reason(&s), "INSUFFICIENT_POINTS");
                refused += 1;
            }
        }
    }
    assert_eq!((ok, refused), (10, 54));
    assert_eq!(available(&mut w, &key, &customer).await?, 0);
    let (_, admin) = suite
        .partner_with_key("Auditor", &[identity::Role::Admin])
        .await?;
    // Another partner's trial balance sees none of this partner's ledger...
    balanced(&mut w, &admin).await?;
    let support = key_of(&suite, &partner, &[identity::Role::Support]).await?;
    // ...and this partner's balances.
    balanced(&mut w, &support).await
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_retries_of_one_idempotency_key_post_once() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key("Retrying POS", &[identity::Role::Pos])
        .await?;
    let mut w = suite.wallet().await?;
    let customer = Uuid::now_v7().to_string();
    w.award_points(authed(award("fund", &customer, 100), &key))
        .await?;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (mut w, key, customer) = (w.clone(), key.clone(), customer.clone());
            tokio::spawn(async move {
                w.spend_points(authed(spend("till-7/tx-42", &customer, 30), &key))
                    .await
                    .map(|r| r.into_inner().posting.expect("posting").id)
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await??);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every retry answers the same posting");
    assert_eq!(available(&mut w, &key, &customer).await?, 70);

    let reused = w
        .spend_points(authed(spend("till-7/tx-42", &customer, 31), &key))
        .await
        .expect_err("same key, other request");
    assert_eq!(reused.code(), Code::AlreadyExists);
    assert_eq!(error_reason(&reused), "IDEMPOTENCY_KEY_REUSED");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn reservations_capture_once_and_reversals_restore_points() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (partner, key) = suite
        .partner_with_key("Checkout shop", &[identity::Role::Pos])
        .await?;
    let mut w = suite.wallet().await?;
    let customer = Uuid::now_v7().to_string();
    let earned = w
        .award_points(authed(award("earn", &customer, 100), &key))
        .await?
        .into_inner()
        .posting
        .expect("posting");

    let held = w
        .reserve_points(authed(
            wallet::ReservePointsRequest {
                idempotency_key: "hold-1".into(),
                customer_id: customer.clone(),
                points: 60,
                reference: "checkout:q-1".into(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner();
    let reservation = held.reservation.expect("reservation");
    let during = held.wallet.expect("wallet");
    assert_eq!((during.available, during.reserved), (40, 60));

    let captured = w
        .capture_points(authed(
            wallet::CapturePointsRequest {
                idempotency_key: "capture-1".into(),
                reservation_id: reservation.id.clone(),
                points: 50,
                reference: "purchase:T-9".into(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner();
    let after = captured.wallet.expect("wallet");
    assert_eq!(
        (after.available, after.reserved),
        (50, 0),
        "10 uncaptured return"
    );
    let twice = w
        .capture_points(authed(
            wallet::CapturePointsRequest {
                idempotency_key: "capture-2".into(),
                reservation_id: reservation.id.clone(),
                ..Default::default()
            },
            &key,
        ))
        .await
        .expect_err("captured already");
    assert_eq!(error_reason(&twice), "RESERVATION_NOT_HELD");

    // The purchase is returned: the capture is reversed, the earned points taken back.
    let capture_id = captured.postings[0].id.clone();
    w.reverse_posting(authed(
        wallet::ReversePostingRequest {
            idempotency_key: "return-1/spent".into(),
            posting_id: capture_id.clone(),
            reason: "return".into(),
            ..Default::default()
        },
        &key,
    ))
    .await?;
    let back = w
        .reverse_posting(authed(
            wallet::ReversePostingRequest {
                idempotency_key: "return-1/earned".into(),
                posting_id: earned.id.clone(),
                amount: 30,
                reason: "return".into(),
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner();
    assert_eq!(back.wallet.expect("wallet").available, 70);
    let again = w
        .reverse_posting(authed(
            wallet::ReversePostingRequest {
                idempotency_key: "return-2/spent".into(),
                posting_id: capture_id,
                reason: "return".into(),
                ..Default::default()
            },
            &key,
        ))
        .await
        .expect_err("reversed in full already");
    assert_eq!(error_reason(&again), "NOTHING_TO_REVERSE");
    let support = key_of(&suite, &partner, &[identity::Role::Support]).await?;
    balanced(&mut w, &support).await
}

#[tokio::test(flavor = "multi_thread")]
async fn blocks_roles_validation_and_tenancy() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (partner, pos) = suite
        .partner_with_key("Blocked shop", &[identity::Role::Pos])
        .await?;
    let support = key_of(&suite, &partner, &[identity::Role::Support]).await?;
    let (_, other) = suite
        .partner_with_key("Other shop", &[identity::Role::Admin])
        .await?;
    let mut w = suite.wallet().await?;
    let customer = Uuid::now_v7().to_string();
    let earned = w
        .award_points(authed(award("earn", &customer, 50), &pos))
        .await?
        .into_inner()
        .posting
        .expect("posting");

    // Support blocks spending; awards still post, spends are refused until unblocked.
    w.block_spending(authed(
        wallet::BlockSpendingRequest {
            idempotency_key: "block".into(),
            customer_id: customer.clone(),
            reason: "card reported stolen".into(),
            ..Default::default()
        },
        &support,
    ))
    .await?;
    let blocked = w
        .spend_points(authed(spend("s1", &customer, 5), &pos))
        .await
        .expect_err("blocked");
    assert_eq!(error_reason(&blocked), "BLOCKED_FROM_SPENDING");
    w.award_points(authed(award("earn-2", &customer, 5), &pos))
        .await?;
    let balance = w
        .get_balance(authed(
            wallet::GetBalanceRequest {
                customer_id: customer.clone(),
                ..Default::default()
            },
            &pos,
        ))
        .await?
        .into_inner()
        .balance
        .expect("balance");
    assert!(balance.blocked_from_spending);
    assert_eq!(balance.wallets[0].block_reason, "card reported stolen");
    w.unblock_spending(authed(
        wallet::UnblockSpendingRequest {
            idempotency_key: "unblock".into(),
            customer_id: customer.clone(),
            ..Default::default()
        },
        &support,
    ))
    .await?;
    w.spend_points(authed(spend("s2", &customer, 5), &pos))
        .await?;

    // Roles: a POS key may not adjust; support must give a reason.
    let adjust = |key: &str, reason: &str| wallet::AdjustPointsRequest {
        idempotency_key: key.into(),
        customer_id: customer.clone(),
        amount: -5,
        reason: reason.into(),
        ..Default::default()
    };
    let denied = w
        .adjust_points(authed(adjust("adj-1", "goodwill"), &pos))
        .await
        .expect_err("POS cannot adjust");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let no_reason = w
        .adjust_points(authed(adjust("adj-2", ""), &support))
        .await
        .expect_err("reason required");
    assert_eq!(violated_fields(&no_reason), ["reason"]);
    let adjusted = w
        .adjust_points(authed(adjust("adj-3", "duplicate receipt"), &support))
        .await?
        .into_inner();
    assert_eq!(adjusted.wallet.expect("wallet").available, 45);

    // Bad input names every bad field.
    let bad = w
        .award_points(authed(
            wallet::AwardPointsRequest {
                idempotency_key: "bad".into(),
                customer_id: "not-a-uuid".into(),
                points: 0,
                reason: "x".into(),
                ..Default::default()
            },
            &pos,
        ))
        .await
        .expect_err("invalid");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&bad), ["customer_id", "points"]);
    let overdrawn = w
        .spend_points(authed(spend("s3", &customer, 1_000), &pos))
        .await
        .expect_err("more than available");
    assert_eq!(error_reason(&overdrawn), "INSUFFICIENT_POINTS");

    // Another partner cannot see or touch this partner's postings.
    let foreign = w
        .reverse_posting(authed(
            wallet::ReversePostingRequest {
                idempotency_key: "steal".into(),
                posting_id: earned.id.clone(),
                reason: "return".into(),
                ..Default::default()
            },
            &other,
        ))
        .await
        .expect_err("another partner's posting");
    assert_eq!(foreign.code(), Code::NotFound);
    assert_eq!(available(&mut w, &other, &customer).await?, 0);
    let unknown_type = w
        .award_points(authed(
            wallet::AwardPointsRequest {
                points_type_id: "no_such_type".into(),
                ..award("t", &customer, 1)
            },
            &pos,
        ))
        .await
        .expect_err("unknown type");
    assert_eq!(unknown_type.code(), Code::NotFound);
    balanced(&mut w, &support).await
}

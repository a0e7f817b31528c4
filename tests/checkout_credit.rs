//! End to end on PostgreSQL, all six services as processes: a customer pays part of a purchase
//! with open balance (CRM.COM credit, store credit) next to points; returns give the credit
//! back in proportion, a void gives it all back, and a commit that fails after holding the
//! credit releases it.
use loyalty_proto::{checkout::v1 as checkout, wallet::v1 as wallet};
use loyalty_testkit::{Backend, Suite, authed, error_reason, violated_fields};
use tonic::Code;

mod checkout_support;

use checkout_support::*;

async fn credit_type(
    suite: &Suite,
    shop: &Shop,
    code: &str,
    currency: &str,
) -> anyhow::Result<String> {
    Ok(suite
        .wallet()
        .await?
        .create_points_type(authed(
            wallet::CreatePointsTypeRequest {
                idempotency_key: format!("type-{code}"),
                points_type: Some(wallet::PointsType {
                    code: code.into(),
                    display_name: code.into(),
                    unit: wallet::PointsUnit::Credit as i32,
                    currency_code: currency.into(),
                    expiry_rule: wallet::ExpiryRule::Never as i32,
                    spendable: true,
                    active: true,
                    ..Default::default()
                }),
            },
            &shop.key,
        ))
        .await?
        .into_inner()
        .points_type
        .expect("points type")
        .id)
}

/// Open balance straight away (an instantly redeemable award).
async fn give_credit(suite: &Suite, shop: &Shop, code: &str, amount: i64) -> anyhow::Result<()> {
    suite
        .wallet()
        .await?
        .award_points(authed(
            wallet::AwardPointsRequest {
                idempotency_key: format!("credit-{code}"),
                customer_id: shop.customer_id.clone(),
                points: amount,
                reason: "refund as store credit".into(),
                points_type_id: code.into(),
                auto_redeem: true,
                cause: wallet::PostingCause::Reward as i32,
                ..Default::default()
            },
            &shop.key,
        ))
        .await?;
    Ok(())
}

/// (open balance, held by reservations) of one CREDIT wallet.
async fn credit(suite: &Suite, shop: &Shop, code: &str) -> anyhow::Result<(i64, i64)> {
    let b = suite
        .wallet()
        .await?
        .get_balance(authed(
            wallet::GetBalanceRequest {
                customer_id: shop.customer_id.clone(),
                points_type_id: code.into(),
            },
            &shop.key,
        ))
        .await?
        .into_inner()
        .balance
        .expect("balance");
    let w = b.wallets.first().cloned().unwrap_or_default();
    Ok((w.available, w.reserved))
}

fn with_credit(
    mut req: checkout::CommitRequest,
    amount: i64,
    credit_type: &str,
) -> checkout::CommitRequest {
    req.credit_to_spend_minor = amount;
    req.credit_type_id = credit_type.into();
    req
}

#[tokio::test(flavor = "multi_thread")]
async fn open_balance_pays_after_points_comes_back_on_returns_and_voids_and_is_released_on_failure()
-> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let shop = shop(&suite, 1000).await?;
    let store_credit = credit_type(&suite, &shop, "store_credit", "EUR").await?;
    credit_type(&suite, &shop, "gift_card", "EUR").await?;
    credit_type(&suite, &shop, "us_credit", "USD").await?;
    give_credit(&suite, &shop, "store_credit", 2_000).await?;
    give_credit(&suite, &shop, "gift_card", 500).await?;
    give_credit(&suite, &shop, "us_credit", 9_000).await?;
    let mut pos = suite.checkout().await?;

    // Bad amounts name the field.
    let mut bad = evaluate_request(&[], 0);
    bad.credit_to_spend_minor = -1;
    let err = pos
        .evaluate(authed(bad, &shop.key))
        .await
        .expect_err("negative credit");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&err), ["credit_to_spend_minor"]);

    // 30.50 EUR: 500 points pay 5.00, then the EUR wallet with the most open balance pays
    // what it can of the 25.50 left; more than that is cut down to it.
    let mut ask = evaluate_request(&[], 500);
    ask.credit_to_spend_minor = 5_000;
    let e = pos.evaluate(authed(ask, &shop.key)).await?.into_inner();
    let totals = e.totals.clone().expect("totals");
    assert_eq!(e.credit_type_id, store_credit);
    assert_eq!(
        (
            e.credit_balance_minor,
            e.credit_spendable_minor,
            e.credit_to_spend_minor
        ),
        (2_000, 2_000, 2_000)
    );
    assert_eq!(
        (
            totals.points_payment_minor,
            totals.credit_payment_minor,
            totals.amount_due_minor
        ),
        (500, 2_000, 550)
    );
    // The USD wallet never pays a EUR cart.
    let mut usd = evaluate_request(&[], 0);
    usd.credit_to_spend_minor = 100;
    usd.credit_type_id = "us_credit".into();
    let u = pos.evaluate(authed(usd, &shop.key)).await?.into_inner();
    assert_eq!(
        (u.credit_type_id.as_str(), u.credit_spendable_minor),
        ("", 0)
    );
    let refused = commit(
        &mut pos,
        &shop.key,
        with_credit(
            commit_request("till-1/0", &[], 0, "", 3_050),
            100,
            "us_credit",
        ),
    )
    .await
    .expect_err("no EUR credit of that type");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&refused), "CREDIT_NOT_SPENDABLE");

    // Committed from the quote: the credit is spent, the payments cover the rest.
    let quote = e.quote.expect("quote").id;
    let receipt = commit_retrying(
        &mut pos,
        &shop.key,
        with_credit(commit_request("till-1/1", &[], 500, &quote, 550), 5_000, ""),
    )
    .await?;
    assert!(receipt.quote_honoured);
    assert_eq!(
        (receipt.credit_spent_minor, receipt.credit_balance_minor),
        (2_000, 0)
    );
    assert_eq!(receipt.credit_type_id, store_credit);
    assert_eq!(credit(&suite, &shop, "store_credit").await?, (0, 0));
    assert_eq!(credit(&suite, &shop, "gift_card").await?, (500, 0));

    // A partial return gives back its share of the credit and of what the card paid:
    // 2000 × 1250 / 3050 = 819.7 → 819; 550 × 1250 / 3050 = 225.4 → 225.
    let first = return_lines(&mut pos, &shop.key, "r-1", &[("1", 1)]).await?;
    assert_eq!(first.refund_amount_minor, 1_250);
    assert_eq!(
        (first.credit_refunded_minor, first.payment_refund_minor),
        (819, 225)
    );
    assert_eq!(credit(&suite, &shop, "store_credit").await?, (819, 0));
    // The rest gives back exactly everything left.
    let rest = return_lines(&mut pos, &shop.key, "r-2", &[("1", 1), ("2", 1)]).await?;
    assert_eq!(
        (rest.credit_refunded_minor, rest.payment_refund_minor),
        (2_000 - 819, 550 - 225)
    );
    assert_eq!(credit(&suite, &shop, "store_credit").await?, (2_000, 0));
    // A retried return answers the same and gives nothing twice.
    let again = return_lines(&mut pos, &shop.key, "r-2", &[("1", 1), ("2", 1)]).await?;
    assert_eq!(again, rest);
    assert_eq!(credit(&suite, &shop, "store_credit").await?, (2_000, 0));

    // A named wallet pays; a void gives it all back.
    let gift = commit_retrying(
        &mut pos,
        &shop.key,
        with_credit(
            commit_request("till-1/2", &[], 0, "", 2_750),
            300,
            "gift_card",
        ),
    )
    .await?;
    assert_eq!(gift.credit_spent_minor, 300);
    assert_eq!(gift.totals.expect("totals").credit_payment_minor, 300);
    assert_eq!(credit(&suite, &shop, "gift_card").await?, (200, 0));
    pos.void_purchase(authed(
        checkout::VoidPurchaseRequest {
            transaction_id: "till-1/2".into(),
            reason: "wrong customer".into(),
            ..Default::default()
        },
        &shop.key,
    ))
    .await?;
    assert_eq!(credit(&suite, &shop, "gift_card").await?, (500, 0));

    // The points quoted are spent elsewhere before the commit: the points hold fails after
    // the credit hold was taken, and the credit is released, not left held.
    let mut ask = evaluate_request(&[], 500);
    ask.credit_to_spend_minor = 1_000;
    let quoted = pos.evaluate(authed(ask, &shop.key)).await?.into_inner();
    assert_eq!(quoted.credit_to_spend_minor, 1_000);
    let points = balance(&suite, &shop).await?;
    suite
        .wallet()
        .await?
        .spend_points(authed(
            wallet::SpendPointsRequest {
                idempotency_key: "spent-elsewhere".into(),
                customer_id: shop.customer_id.clone(),
                points,
                reason: "another shop".into(),
                ..Default::default()
            },
            &shop.key,
        ))
        .await?;
    let failed = commit_retrying(
        &mut pos,
        &shop.key,
        with_credit(
            commit_request(
                "till-1/3",
                &[],
                500,
                &quoted.quote.expect("quote").id,
                1_550,
            ),
            1_000,
            "",
        ),
    )
    .await
    .expect_err("the points are gone");
    assert_eq!(failed.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&failed), "INSUFFICIENT_POINTS");
    assert_eq!(credit(&suite, &shop, "store_credit").await?, (2_000, 0));

    // History shows what credit paid.
    let history = history(&mut pos, &shop).await?;
    let first = history
        .purchases
        .iter()
        .find(|p| {
            p.receipt
                .as_ref()
                .is_some_and(|r| r.transaction_id == "till-1/1")
        })
        .expect("purchase");
    assert_eq!(first.state, checkout::PurchaseState::Returned as i32);
    assert_eq!(
        first.receipt.as_ref().expect("receipt").credit_spent_minor,
        2_000
    );
    trial_balance_holds(&suite, &shop).await
}

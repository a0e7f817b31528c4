//! The checkout fault suite, against real processes on PostgreSQL and Redis: a thousand
//! retries of one commit with duplicates in flight, kill -9 of the wallet and of checkout in
//! the middle of commits, PostgreSQL stopped under load, and Redis flushed and stopped.
//! Every test ends by checking the ledger's trial balance: nothing lost, nothing doubled.
mod checkout_support;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use checkout_support::*;
use loyalty_proto::{checkout::v1 as checkout, rewards::v1 as rewards};
use loyalty_testkit::{
    Backend, OwnPostgres, OwnRedis, Suite, SuiteOptions, authed, eventually, free_port,
};
use tonic::Code;

/// Commits until a definitive answer, which must be a receipt.
async fn commit_until_answered(
    mut pos: Checkout,
    key: String,
    req: checkout::CommitRequest,
    first_delay: Duration,
) -> anyhow::Result<checkout::Receipt> {
    tokio::time::sleep(first_delay).await;
    commit_retrying(&mut pos, &key, req.clone())
        .await
        .map_err(|s| anyhow::anyhow!("{}: {s:?}", req.transaction_id))
}

/// A spread of delays that looks random but repeats: 0..`max_ms`.
fn jitter(i: u64, max_ms: u64) -> Duration {
    Duration::from_millis(i.wrapping_mul(2_654_435_761) % max_ms)
}

fn plain_commit(transaction_id: &str, points: i64) -> checkout::CommitRequest {
    checkout::CommitRequest {
        payments: vec![],
        ..commit_request(transaction_id, &[], points, "", 0)
    }
}

async fn purchases(pos: &mut Checkout, shop: &Shop) -> anyhow::Result<Vec<checkout::Purchase>> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = pos
            .list_purchases(authed(
                checkout::ListPurchasesRequest {
                    customer_id: shop.customer_id.clone(),
                    page_size: 1000,
                    page_token: token,
                    ..Default::default()
                },
                &shop.key,
            ))
            .await?
            .into_inner();
        out.extend(page.purchases);
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_retries_with_duplicates_in_flight_make_one_purchase() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let shop = shop(&suite, 1000).await?;
    let code = voucher(&suite, &shop).await?;
    let pos = suite.checkout().await?;
    // 30.50 − 10 % voucher − 2.00 in points = 25.45 due.
    let req = commit_request("till-7/1", &[&code], 200, "", 2545);
    let calls = (0..1000u64).map(|i| {
        tokio::spawn(commit_until_answered(
            pos.clone(),
            shop.key.clone(),
            req.clone(),
            // Spread over 2 s: hundreds of duplicates in flight at once, as a POS fleet
            // retrying one stuck sale would be at worst.
            jitter(i, 2_000),
        ))
    });
    let mut receipts = Vec::new();
    for call in futures::future::join_all(calls).await {
        receipts.push(call??);
    }
    assert_eq!(receipts.len(), 1000);
    assert!(
        receipts.iter().all(|r| *r == receipts[0]),
        "every call answers the same receipt"
    );
    let receipt = &receipts[0];
    assert_eq!(receipt.points_spent, 200);
    let mut pos = pos;
    assert_eq!(purchases(&mut pos, &shop).await?.len(), 1, "one purchase");
    assert_eq!(
        balance(&suite, &shop).await?,
        1000 - 200 + receipt.points_earned,
        "spent once, earned once"
    );
    assert_eq!(
        voucher_state(&suite, &shop, &code).await?,
        rewards::VoucherState::Redeemed as i32
    );
    trial_balance_holds(&suite, &shop).await?;
    suite.stop().await
}

/// Starts `count` commits (each spending 100 points) from `first`, kills `victim` while they
/// run and starts it again; answers the receipts once every commit got one.
async fn commits_through_a_crash(
    suite: &mut Suite,
    shop: &Shop,
    first: usize,
    count: usize,
    victim: &'static str,
) -> anyhow::Result<Vec<checkout::Receipt>> {
    let pos = suite.checkout().await?;
    let calls: Vec<_> = (first..first + count)
        .map(|i| {
            tokio::spawn(commit_until_answered(
                pos.clone(),
                shop.key.clone(),
                plain_commit(&format!("crash/{i}"), 100),
                jitter(i as u64, 300),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    suite.kill(victim).await?;
    tokio::time::sleep(Duration::from_millis(700)).await;
    suite.restart(victim).await?;
    let mut receipts = Vec::new();
    for call in futures::future::join_all(calls).await {
        receipts.push(call??);
    }
    Ok(receipts)
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_the_wallet_and_of_checkout_mid_commit_loses_and_doubles_nothing()
-> anyhow::Result<()> {
    // Short leases, so that retries take over a killed checkout's commits quickly.
    let options =
        SuiteOptions::default().env("checkout", "LOYALTY_CHECKOUT__COMMIT_LEASE_SECS", "2");
    let mut suite =
        Suite::start_with(Backend::Postgres, loyalty_testkit::REDIS_URL, &options).await?;
    let shop = shop(&suite, 100_000).await?;

    let mut receipts = commits_through_a_crash(&mut suite, &shop, 0, 40, "wallet").await?;
    receipts.extend(commits_through_a_crash(&mut suite, &shop, 40, 40, "checkout").await?);

    let mut pos = suite.checkout().await?;
    let ids: BTreeSet<_> = receipts.iter().map(|r| r.transaction_id.clone()).collect();
    assert_eq!(ids.len(), 80, "every commit got its receipt");
    for r in &receipts {
        let again = commit(&mut pos, &shop.key, plain_commit(&r.transaction_id, 100)).await?;
        assert_eq!(&again, r, "a later retry answers the same receipt");
    }
    let listed = purchases(&mut pos, &shop).await?;
    assert_eq!(listed.len(), 80, "one purchase per transaction");
    let earned: i64 = receipts.iter().map(|r| r.points_earned).sum();
    assert!(receipts.iter().all(|r| r.points_spent == 100));
    eventually(Duration::from_secs(30), || async {
        // Commits undone by the recovery settle their holds; the balance then stands.
        Ok((balance(&suite, &shop).await? == 100_000 - 80 * 100 + earned).then_some(()))
    })
    .await?;
    trial_balance_holds(&suite, &shop).await?;
    suite.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn postgresql_stopped_under_load_answers_unavailable_and_recovers_by_itself()
-> anyhow::Result<()> {
    let pg = OwnPostgres::start(free_port()).await?;
    let mut options = SuiteOptions::default();
    for service in loyalty_testkit::SERVICES {
        options = options.env(service, "LOYALTY_DATABASE__URL", pg.url());
    }
    let suite = Suite::start_with(Backend::Postgres, loyalty_testkit::REDIS_URL, &options).await?;
    let shop = shop(&suite, 0).await?;
    let mut pos = suite.checkout().await?;

    let mut receipts = BTreeMap::new();
    for i in 0..5 {
        let id = format!("pg/{i}");
        receipts.insert(
            id.clone(),
            commit(&mut pos, &shop.key, plain_commit(&id, 0)).await?,
        );
    }

    pg.stop().await?;
    for _ in 0..3 {
        let refused = commit(&mut pos, &shop.key, plain_commit("pg/5", 0))
            .await
            .expect_err("the database is down");
        assert_eq!(
            refused.code(),
            Code::Unavailable,
            "commits fail closed while the database is down: {refused:?}"
        );
    }

    // Back without restarting any service: the refused transaction goes through, then more.
    pg.start_again().await?;
    for i in 5..10 {
        let id = format!("pg/{i}");
        let receipt = commit_until_answered(
            pos.clone(),
            shop.key.clone(),
            plain_commit(&id, 0),
            Duration::ZERO,
        )
        .await?;
        receipts.insert(id, receipt);
    }
    let listed = purchases(&mut pos, &shop).await?;
    assert_eq!(
        listed.len(),
        receipts.len(),
        "nothing lost, nothing doubled"
    );
    let earned: i64 = receipts.values().map(|r| r.points_earned).sum();
    assert_eq!(balance(&suite, &shop).await?, earned);
    trial_balance_holds(&suite, &shop).await?;
    suite.stop().await
}

/// Evaluate's answer without the quote (its id and expiry differ by construction).
async fn evaluate_without_quote(
    pos: &mut Checkout,
    key: &str,
) -> Result<checkout::EvaluateResponse, tonic::Status> {
    let mut e = pos
        .evaluate(authed(evaluate_request(&[], 300), key))
        .await?
        .into_inner();
    e.quote = None;
    Ok(e)
}

#[tokio::test(flavor = "multi_thread")]
async fn evaluate_answers_the_same_with_redis_flushed_and_stopped() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let redis = OwnRedis::start(free_port(), dir.path()).await?;
    let suite = Suite::start_with_redis(Backend::Postgres, &redis.url()).await?;
    let shop = shop(&suite, 1000).await?;

    // A 5 % reward for a segment recalculated online.
    gold_discount(&suite, &shop, true).await?;
    let mut pos = suite.checkout().await?;
    let warm = eventually(Duration::from_secs(20), || {
        let mut pos = pos.clone();
        let key = shop.key.clone();
        async move {
            let e = evaluate_without_quote(&mut pos, &key).await?;
            Ok((e.totals.as_ref().expect("totals").discount_amount_minor > 0).then_some(e))
        }
    })
    .await?;
    assert!(!warm.degraded);
    assert_eq!(warm.points_to_spend, 300);
    // Twice more, so that every cache on the path holds it.
    assert_eq!(evaluate_without_quote(&mut pos, &shop.key).await?, warm);
    assert!(
        !redis.keys("*").await?.is_empty(),
        "the hot path uses Redis"
    );

    redis.command(&["FLUSHALL"]).await?;
    assert_eq!(
        evaluate_without_quote(&mut pos, &shop.key).await?,
        warm,
        "after FLUSHALL"
    );
    redis.kill().await?;
    for _ in 0..3 {
        assert_eq!(
            evaluate_without_quote(&mut pos, &shop.key).await?,
            warm,
            "with Redis down"
        );
    }
    suite.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn commits_abandoned_mid_saga_are_undone_by_the_recovery() -> anyhow::Result<()> {
    // Holds that would outlive the test: only the recovery can give the points back.
    let options = SuiteOptions::default()
        .env("checkout", "LOYALTY_CHECKOUT__COMMIT_LEASE_SECS", "1")
        .env("checkout", "LOYALTY_CHECKOUT__RECOVERY_INTERVAL_SECS", "1")
        .env("checkout", "LOYALTY_CHECKOUT__ABANDON_AFTER_SECS", "1")
        .env("checkout", "LOYALTY_CHECKOUT__HOLD_SECS", "3600");
    let mut suite =
        Suite::start_with(Backend::Postgres, loyalty_testkit::REDIS_URL, &options).await?;
    let shop = shop(&suite, 10_000).await?;
    let pos = suite.checkout().await?;
    // Commits in flight when checkout dies; nobody retries them.
    let calls: Vec<_> = (0..30u64)
        .map(|i| {
            let mut pos = pos.clone();
            let key = shop.key.clone();
            tokio::spawn(async move {
                tokio::time::sleep(jitter(i, 200)).await;
                commit(&mut pos, &key, plain_commit(&format!("gone/{i}"), 100)).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(120)).await;
    suite.kill("checkout").await?;
    for call in calls {
        let _ = call.await?;
    }
    suite.restart("checkout").await?;

    // What was committed stays; what was not is undone: holds released, points back.
    let mut pos = suite.checkout().await?;
    eventually(Duration::from_secs(30), || {
        let mut pos = pos.clone();
        let suite = &suite;
        let shop = &shop;
        async move {
            let listed = purchases(&mut pos, shop).await?;
            let net: i64 = listed
                .iter()
                .map(|p| {
                    let r = p.receipt.as_ref().expect("receipt");
                    r.points_earned - r.points_spent
                })
                .sum();
            Ok((balance(suite, shop).await? == 10_000 + net).then_some(()))
        }
    })
    .await?;
    trial_balance_holds(&suite, &shop).await?;
    // A late retry of an undone commit starts afresh and goes through once.
    let late = commit(&mut pos, &shop.key, plain_commit("gone/29", 100)).await?;
    let again = commit(&mut pos, &shop.key, plain_commit("gone/29", 100)).await?;
    assert_eq!(late, again);
    suite.stop().await
}

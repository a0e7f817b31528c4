//! The raw SQL baseline must write what the wallet service writes: after it runs, the
//! ledger's tables agree with each other and the service reads and spends those wallets.
use chrono::Utc;
use loyalty_loadgen::{
    driver::Workload,
    wallet::{
        Amounts,
        sql::{self, Ledger, Shape, SqlWallet},
    },
};
use loyalty_testkit::TestDb;
use loyalty_wallet::store::{
    ledger::{Note, resolve_type},
    ops::{self, Target},
};
use sea_orm::{DatabaseConnection, TransactionTrait};
use sqlx::PgPool;
use uuid::Uuid;

struct WalletDb {
    _db: TestDb,
    /// The service's own connection (sea-orm), for its store functions.
    service: DatabaseConnection,
    pool: PgPool,
    partner_id: Uuid,
    ledger: Ledger,
}

/// A fresh database with the wallet's schema and one partner's default points type, made
/// by the service's code as a first award would make it.
async fn wallet_db() -> WalletDb {
    let db = TestDb::postgres().await.expect("test database");
    let mut settings = loyalty_platform::Settings::defaults("wallet", 0);
    settings.database.url = db.url().into();
    let service =
        loyalty_platform::db::connect_and_migrate::<loyalty_wallet::migration::Migrator>(&settings)
            .await
            .expect("wallet schema");
    let partner_id = Uuid::now_v7();
    let ty = resolve_type(&service, partner_id, "", Utc::now())
        .await
        .expect("default type");
    let pool = sql::pool(&db.url(), "wallet", 4).await.expect("pool");
    let ledger = sql::ledger(&pool, ty.id).await.expect("ledger ids");
    assert_eq!(ledger.partner_id, partner_id);
    WalletDb {
        _db: db,
        service,
        pool,
        partner_id,
        ledger,
    }
}

async fn baseline_keeps_the_ledger_consistent(shape: Shape) {
    let w = wallet_db().await;
    let amounts = Amounts {
        award: 100,
        spend: 30,
    };
    // One wallet, calls in order: award, spend, award, ... from a funding of 50, so spends
    // take from several lots and sometimes split across two.
    let one = Uuid::new_v4();
    let sequential = SqlWallet::new(
        w.pool.clone(),
        w.ledger.clone(),
        vec![one],
        "seq",
        amounts,
        shape,
    );
    sequential.prefund(50, 1).await.expect("funded");
    for seq in 0..20u64 {
        let out = sequential.call(seq).await;
        assert_eq!(out.error, None, "call {seq}");
    }
    // Three wallets, 60 calls at once over 4 connections: they queue on the wallet locks.
    let three: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let concurrent = SqlWallet::new(
        w.pool.clone(),
        w.ledger.clone(),
        three.clone(),
        "conc",
        amounts,
        shape,
    );
    concurrent.prefund(10_000, 3).await.expect("funded");
    let outcomes = futures::future::join_all((0..60u64).map(|seq| concurrent.call(seq))).await;
    let failed: Vec<_> = outcomes.iter().filter(|o| o.error.is_some()).collect();
    assert!(failed.is_empty(), "{failed:?}");

    let c = sql::check(&w.pool, w.partner_id).await.expect("check");
    assert!(c.balanced(), "{c:?}");
    assert_eq!((c.customer_accounts, c.lots), (4, 1 + 10 + 3 + 30));

    // The service reads what the baseline wrote, and goes on spending from it.
    let mut total = 0;
    for c in std::iter::once(one).chain(three) {
        let txn = w.service.begin().await.expect("begin");
        let target = Target {
            partner_id: w.partner_id,
            customer_id: c,
            points_type: String::new(),
            now: Utc::now(),
        };
        let note = Note {
            reason: "check".to_owned(),
            ..Note::default()
        };
        let posted = ops::spend(&txn, &target, 1, note).await.expect("spend");
        txn.commit().await.expect("commit");
        total += posted.wallet.available + 1;
    }
    assert_eq!(
        total,
        (50 + 10 * 100 - 10 * 30) + (3 * 10_000 + 30 * 100 - 30 * 30)
    );
    let c = sql::check(&w.pool, w.partner_id).await.expect("check");
    assert!(c.balanced(), "{c:?}");
}

#[tokio::test]
async fn minimal_baseline_transactions_keep_the_wallet_ledger_consistent() {
    baseline_keeps_the_ledger_consistent(Shape::Minimal).await;
}

#[tokio::test]
async fn service_shaped_baseline_transactions_keep_the_wallet_ledger_consistent() {
    baseline_keeps_the_ledger_consistent(Shape::Service).await;
}

#[tokio::test]
async fn the_ledger_check_notices_a_balance_that_disagrees_with_its_postings() {
    let w = wallet_db().await;
    let baseline = SqlWallet::new(
        w.pool.clone(),
        w.ledger.clone(),
        vec![Uuid::new_v4()],
        "bad",
        Amounts { award: 5, spend: 1 },
        Shape::Minimal,
    );
    baseline.prefund(10, 1).await.expect("funded");
    let c = sql::check(&w.pool, w.partner_id).await.expect("check");
    assert!(c.balanced(), "{c:?}");
    sqlx::query("UPDATE ledger_accounts SET balance = balance + 1 WHERE kind = 'wallet'")
        .execute(&w.pool)
        .await
        .expect("tamper");
    let c = sql::check(&w.pool, w.partner_id).await.expect("check");
    assert_eq!((c.balances_off, c.lots_off, c.wallets_off), (1, 0, 1));
}

//! The raw-SQL baseline: hand-written transactions that make the same rows as the wallet
//! service's Award and Spend (services/wallet/src/store/ledger.rs and ops.rs) in the same
//! tables of the same schema, one real COMMIT per operation, over a pool of connections.
//!
//! `Shape::Minimal` is what an award or a spend has to do: lock the wallet account (the
//! upsert that also creates it), read its open lots, insert the posting, insert the lot (award)
//! or insert the lot allocations and update the lots taken (spend), update the account's
//! balance, insert the outbox event and the idempotency row. `Shape::Service` adds the
//! statements the wallet service issues beyond those: for an award, the merge lock and the
//! merged-customer lookup (points addressed to a merged customer go to the survivor). The
//! service reads the accounts, lots, type revision and spending block in one statement where
//! the baseline reads the lots, so the two issue the same number otherwise.
use std::{collections::BTreeSet, sync::Mutex};

use chrono::{DateTime, Utc};
use loyalty_proto::events::v1 as ev;
use prost::Message;
use rand::Rng;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Postgres, QueryBuilder, Row, Transaction};
use uuid::Uuid;

use super::{
    Amounts,
    grpc::{award_request, spend_request},
};
use crate::driver::{Outcome, Workload};

/// Which statements a baseline transaction issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// Only the statements an award or a spend needs.
    Minimal,
    /// Also the merge lock and lookup the wallet service makes for an award.
    Service,
}

/// The partner's points type and its system accounts, as the service created them.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub partner_id: Uuid,
    pub points_type_id: Uuid,
    pub points_type_code: String,
    pub issuance: Uuid,
    pub redemption: Uuid,
}

pub use crate::db::pool;

/// Looks up the ids the service made for `points_type_id` (its system accounts included).
pub async fn ledger(pool: &PgPool, points_type_id: Uuid) -> anyhow::Result<Ledger> {
    let row = sqlx::query("SELECT partner_id, code FROM points_types WHERE id = $1")
        .bind(points_type_id)
        .fetch_one(pool)
        .await
        .map_err(|e| anyhow::anyhow!("points type {points_type_id} in the database: {e}"))?;
    let partner_id: Uuid = row.try_get("partner_id")?;
    let code: String = row.try_get("code")?;
    let system = |kind: &'static str| {
        sqlx::query_scalar::<_, Uuid>(
            "SELECT id FROM ledger_accounts WHERE partner_id = $1 AND points_type_id = $2 \
             AND customer_id = $3 AND kind = $4",
        )
        .bind(partner_id)
        .bind(points_type_id)
        .bind(Uuid::nil())
        .bind(kind)
        .fetch_one(pool)
    };
    Ok(Ledger {
        partner_id,
        points_type_id,
        points_type_code: code,
        issuance: system("issuance").await?,
        redemption: system("redemption").await?,
    })
}

/// What [`check`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LedgerCheck {
    pub customer_accounts: i64,
    pub lots: i64,
    /// Customer accounts whose stored balance is not credits minus debits of their postings.
    pub balances_off: i64,
    /// Lots whose remaining amount is not their original amount less their allocations.
    pub lots_off: i64,
    /// WALLET accounts whose balance is not their lots' remaining amounts less the debt.
    pub wallets_off: i64,
}

impl LedgerCheck {
    pub fn balanced(&self) -> bool {
        self.balances_off == 0 && self.lots_off == 0 && self.wallets_off == 0
    }
}

/// Checks a partner's ledger from the tables, independently of the service's own code.
pub async fn check(pool: &PgPool, partner_id: Uuid) -> anyhow::Result<LedgerCheck> {
    let count = |sql: &'static str| {
        sqlx::query_scalar::<_, i64>(sql)
            .bind(partner_id)
            .fetch_one(pool)
    };
    Ok(LedgerCheck {
        customer_accounts: count(
            "SELECT COUNT(*) FROM ledger_accounts WHERE partner_id = $1 \
             AND customer_id <> '00000000-0000-0000-0000-000000000000'",
        )
        .await?,
        lots: count("SELECT COUNT(*) FROM points_lots WHERE partner_id = $1").await?,
        balances_off: count(
            "SELECT COUNT(*) FROM ledger_accounts a LEFT JOIN ( \
               SELECT account_id, SUM(delta) AS derived FROM ( \
                 SELECT credit_account_id AS account_id, amount AS delta FROM ledger_postings \
                 WHERE partner_id = $1 \
                 UNION ALL \
                 SELECT debit_account_id, -amount FROM ledger_postings WHERE partner_id = $1 \
               ) moves GROUP BY account_id \
             ) p ON p.account_id = a.id \
             WHERE a.partner_id = $1 \
             AND a.customer_id <> '00000000-0000-0000-0000-000000000000' \
             AND a.balance <> COALESCE(p.derived, 0)",
        )
        .await?,
        lots_off: count(
            "SELECT COUNT(*) FROM points_lots l LEFT JOIN ( \
               SELECT lot_id, SUM(amount) AS taken FROM lot_allocations GROUP BY lot_id \
             ) t ON t.lot_id = l.id \
             WHERE l.partner_id = $1 \
             AND l.remaining_amount <> l.original_amount - COALESCE(t.taken, 0)",
        )
        .await?,
        wallets_off: count(
            "SELECT COUNT(*) FROM ledger_accounts a LEFT JOIN ( \
               SELECT account_id, SUM(remaining_amount) AS remaining FROM points_lots \
               WHERE partner_id = $1 GROUP BY account_id \
             ) l ON l.account_id = a.id \
             WHERE a.partner_id = $1 AND a.kind = 'wallet' \
             AND a.balance <> COALESCE(l.remaining, 0) - a.debt",
        )
        .await?,
    })
}

pub struct SqlWallet {
    pool: PgPool,
    ledger: Ledger,
    customers: Vec<Uuid>,
    run_id: String,
    amounts: Amounts,
    shape: Shape,
    shown: Mutex<BTreeSet<String>>,
}

/// Why a baseline operation failed.
#[derive(Debug)]
enum Failure {
    Sql(sqlx::Error),
    InsufficientPoints,
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Failure::Sql(e)
    }
}

impl Failure {
    fn class(&self) -> String {
        match self {
            Failure::InsufficientPoints => "INSUFFICIENT_POINTS".to_owned(),
            Failure::Sql(sqlx::Error::Database(d)) => {
                format!("SQLSTATE {}", d.code().unwrap_or_default())
            }
            Failure::Sql(sqlx::Error::PoolTimedOut) => "pool timed out".to_owned(),
            Failure::Sql(e) => format!("sqlx: {e}"),
        }
    }
}

/// A customer's WALLET account, locked.
struct Account {
    id: Uuid,
    balance: i64,
    debt: i64,
    lifetime_credited: i64,
    created_at: DateTime<Utc>,
}

/// An open lot, as FIFO needs it.
struct OpenLot {
    id: Uuid,
    remaining: i64,
    release_at: Option<DateTime<Utc>>,
    expire_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl OpenLot {
    fn spendable(&self, now: DateTime<Utc>) -> bool {
        self.remaining > 0
            && self.release_at.is_none_or(|r| r <= now)
            && self.expire_at.is_none_or(|e| e > now)
    }
}

/// The wallet's FIFO order (domain/lots.rs `fifo`): soonest expiry first, never-expiring
/// last, then oldest first.
fn fifo_takes(lots: &mut [OpenLot], amount: i64, now: DateTime<Utc>) -> Option<Vec<(Uuid, i64)>> {
    lots.sort_by(|a, b| {
        let expiry = match (a.expire_at, b.expire_at) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        expiry
            .then(a.created_at.cmp(&b.created_at))
            .then(a.id.cmp(&b.id))
    });
    let mut left = amount;
    let mut takes = Vec::new();
    for l in lots.iter_mut().filter(|l| l.spendable(now)) {
        if left == 0 {
            break;
        }
        let t = l.remaining.min(left);
        l.remaining -= t;
        takes.push((l.id, t));
        left -= t;
    }
    (left == 0).then_some(takes)
}

fn request_hash(request: &impl Message) -> String {
    hex::encode(Sha256::digest(request.encode_to_vec()))
}

/// What one operation posts.
struct Post {
    operation: &'static str,
    kind: &'static str,
    key: String,
    request_hash: String,
    customer_id: Uuid,
    amount: i64,
    reason: &'static str,
}

impl SqlWallet {
    pub fn new(
        pool: PgPool,
        ledger: Ledger,
        customers: Vec<Uuid>,
        run_id: &str,
        amounts: Amounts,
        shape: Shape,
    ) -> Self {
        Self {
            pool,
            ledger,
            customers,
            run_id: run_id.to_owned(),
            amounts,
            shape,
            shown: Mutex::new(BTreeSet::new()),
        }
    }

    pub fn customers(&self) -> &[Uuid] {
        &self.customers
    }

    /// Awards `points` to every customer, `concurrency` at a time, through the baseline.
    pub async fn prefund(&self, points: i64, concurrency: usize) -> anyhow::Result<()> {
        use futures::{StreamExt, TryStreamExt, stream};
        stream::iter(self.customers.iter().enumerate())
            .map(|(i, c)| async move {
                self.award(*c, points, format!("lg-{}-sqlfund-{i}", self.run_id))
                    .await
                    .map_err(|e| anyhow::anyhow!("funding customer {c} by SQL: {}", e.class()))
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn award(&self, customer_id: Uuid, amount: i64, key: String) -> Result<(), Failure> {
        let request = award_request(key.clone(), customer_id.to_string(), amount);
        let post = Post {
            operation: "AwardPoints",
            kind: "award",
            request_hash: request_hash(&request),
            key,
            customer_id,
            amount,
            reason: "loadgen award",
        };
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
        if self.shape == Shape::Service {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(format!("wallet:{}:{customer_id}", self.ledger.partner_id))
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "SELECT * FROM merged_customers WHERE partner_id = $1 AND merged_customer_id = $2",
            )
            .bind(self.ledger.partner_id)
            .bind(customer_id)
            .fetch_optional(&mut *tx)
            .await?;
        }
        let (mut account, lots) = self.lock_wallet(&mut tx, customer_id, now).await?;
        let posting_id = Uuid::now_v7();
        let lot_id = Uuid::now_v7();
        self.insert_posting(&mut tx, &post, posting_id, Some(lot_id), account.id, now)
            .await?;
        sqlx::query(
            "INSERT INTO points_lots (id, partner_id, account_id, customer_id, points_type_id, \
             posting_id, original_amount, remaining_amount, release_at, expire_at, expired_at, \
             payable, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(lot_id)
        .bind(self.ledger.partner_id)
        .bind(account.id)
        .bind(customer_id)
        .bind(self.ledger.points_type_id)
        .bind(posting_id)
        .bind(amount)
        .bind(amount)
        .bind(None::<DateTime<Utc>>)
        .bind(None::<DateTime<Utc>>)
        .bind(None::<DateTime<Utc>>)
        .bind(false)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        account.balance += amount;
        account.lifetime_credited += amount;
        let available = lots.iter().map(|l| l.remaining).sum::<i64>() + amount - account.debt;
        self.finish(&mut tx, &post, posting_id, &account, available, now)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn spend(&self, customer_id: Uuid, amount: i64, key: String) -> Result<(), Failure> {
        let request = spend_request(key.clone(), customer_id.to_string(), amount);
        let post = Post {
            operation: "SpendPoints",
            kind: "spend",
            request_hash: request_hash(&request),
            key,
            customer_id,
            amount,
            reason: "loadgen spend",
        };
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
        let (mut account, mut lots) = self.lock_wallet(&mut tx, customer_id, now).await?;
        let available = lots
            .iter()
            .filter(|l| l.spendable(now))
            .map(|l| l.remaining)
            .sum::<i64>()
            - account.debt;
        if amount > available {
            return Err(Failure::InsufficientPoints);
        }
        let takes = fifo_takes(&mut lots, amount, now).ok_or(Failure::InsufficientPoints)?;
        let posting_id = Uuid::now_v7();
        self.insert_posting(&mut tx, &post, posting_id, None, account.id, now)
            .await?;
        let mut insert = QueryBuilder::<Postgres>::new(
            "INSERT INTO lot_allocations (posting_id, lot_id, amount) ",
        );
        insert.push_values(&takes, |mut row, (lot, taken)| {
            row.push_bind(posting_id).push_bind(*lot).push_bind(*taken);
        });
        insert.build().execute(&mut *tx).await?;
        for (lot, _) in &takes {
            let remaining = lots
                .iter()
                .find(|l| l.id == *lot)
                .map(|l| l.remaining)
                .unwrap_or_default();
            sqlx::query("UPDATE points_lots SET remaining_amount = $1 WHERE id = $2")
                .bind(remaining)
                .bind(*lot)
                .execute(&mut *tx)
                .await?;
        }
        account.balance -= amount;
        self.finish(
            &mut tx,
            &post,
            posting_id,
            &account,
            available - amount,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes the WALLET account's row lock (creating it on first use) and reads the open lots.
    async fn lock_wallet(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        customer_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(Account, Vec<OpenLot>), Failure> {
        let row = sqlx::query(
            "INSERT INTO ledger_accounts (id, partner_id, points_type_id, customer_id, kind, \
             balance, debt, lifetime_credited, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (partner_id, customer_id, points_type_id, kind) \
             DO UPDATE SET updated_at = excluded.updated_at \
             RETURNING id, balance, debt, lifetime_credited, created_at",
        )
        .bind(Uuid::now_v7())
        .bind(self.ledger.partner_id)
        .bind(self.ledger.points_type_id)
        .bind(customer_id)
        .bind("wallet")
        .bind(0i64)
        .bind(0i64)
        .bind(0i64)
        .bind(now)
        .bind(now)
        .fetch_one(&mut **tx)
        .await?;
        let account = Account {
            id: row.try_get("id")?,
            balance: row.try_get("balance")?,
            debt: row.try_get("debt")?,
            lifetime_credited: row.try_get("lifetime_credited")?,
            created_at: row.try_get("created_at")?,
        };
        let lots = sqlx::query(
            "SELECT id, partner_id, account_id, customer_id, points_type_id, posting_id, \
             original_amount, remaining_amount, release_at, expire_at, expired_at, payable, \
             created_at FROM points_lots WHERE account_id IN ($1) AND remaining_amount > $2",
        )
        .bind(account.id)
        .bind(0i64)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .map(|r| {
            Ok(OpenLot {
                id: r.try_get("id")?,
                remaining: r.try_get("remaining_amount")?,
                release_at: r.try_get("release_at")?,
                expire_at: r.try_get("expire_at")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok((account, lots))
    }

    async fn insert_posting(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        post: &Post,
        posting_id: Uuid,
        lot_id: Option<Uuid>,
        wallet: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(), Failure> {
        // An award moves issuance → wallet, a spend wallet → redemption.
        let (debit, credit, debit_customer, credit_customer) = if post.kind == "award" {
            (self.ledger.issuance, wallet, None, Some(post.customer_id))
        } else {
            (wallet, self.ledger.redemption, Some(post.customer_id), None)
        };
        sqlx::query(
            "INSERT INTO ledger_postings (id, partner_id, operation_id, points_type_id, kind, \
             cause, debit_account_id, credit_account_id, debit_customer_id, credit_customer_id, \
             amount, lot_id, reversed_posting_id, reservation_id, reason, reference, \
             business_unit_id, payment_method_reference, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, $19)",
        )
        .bind(posting_id)
        .bind(self.ledger.partner_id)
        .bind(Uuid::now_v7())
        .bind(self.ledger.points_type_id)
        .bind(post.kind)
        .bind("purchase")
        .bind(debit)
        .bind(credit)
        .bind(debit_customer)
        .bind(credit_customer)
        .bind(post.amount)
        .bind(lot_id)
        .bind(None::<Uuid>)
        .bind(None::<Uuid>)
        .bind(post.reason)
        .bind(format!("purchase:{}", post.key))
        .bind(None::<Uuid>)
        .bind("")
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// The account's new balance, the PointsPosted event and the stored answer.
    async fn finish(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        post: &Post,
        posting_id: Uuid,
        account: &Account,
        available: i64,
        now: DateTime<Utc>,
    ) -> Result<(), Failure> {
        sqlx::query(
            "UPDATE ledger_accounts SET balance = $1, debt = $2, lifetime_credited = $3, \
             updated_at = $4 WHERE id = $5",
        )
        .bind(account.balance)
        .bind(account.debt)
        .bind(account.lifetime_credited)
        .bind(now)
        .bind(account.id)
        .execute(&mut **tx)
        .await?;
        let change = if post.kind == "award" {
            post.amount
        } else {
            -post.amount
        };
        let event = ev::PointsPosted {
            customer_id: post.customer_id.to_string(),
            entry_id: posting_id.to_string(),
            points: change,
            available_points: available,
            points_type_id: self.ledger.points_type_id.to_string(),
            points_type_code: self.ledger.points_type_code.clone(),
            kind: post.kind.to_uppercase(),
            cause: "PURCHASE".to_owned(),
            reference: format!("purchase:{}", post.key),
            pending_points: 0,
            currency_code: String::new(),
        };
        sqlx::query(
            "INSERT INTO outbox (event_id, event_type, partner_id, payload, traceparent, \
             occurred_at, published_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(Uuid::now_v7())
        .bind("loyalty.events.v1.PointsPosted")
        .bind(Some(self.ledger.partner_id))
        .bind(event.encode_to_vec())
        .bind("")
        .bind(Utc::now())
        .bind(None::<DateTime<Utc>>)
        .execute(&mut **tx)
        .await?;
        let response = self.answer(post, posting_id, account, available, now);
        sqlx::query(
            "INSERT INTO idempotency_keys (partner_id, operation, key, request_hash, response, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(self.ledger.partner_id)
        .bind(post.operation)
        .bind(&post.key)
        .bind(&post.request_hash)
        .bind(response)
        .bind(Utc::now())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// An answer of the size and shape the service stores (its `Posted` as JSON).
    fn answer(
        &self,
        post: &Post,
        posting_id: Uuid,
        account: &Account,
        available: i64,
        now: DateTime<Utc>,
    ) -> Vec<u8> {
        let customer = json!({"id": account.id, "kind": "Wallet", "customer_id": post.customer_id});
        let (debit, credit) = if post.kind == "award" {
            let issuance =
                json!({"id": self.ledger.issuance, "kind": "Issuance", "customer_id": null});
            (issuance, customer)
        } else {
            let redemption =
                json!({"id": self.ledger.redemption, "kind": "Redemption", "customer_id": null});
            (customer, redemption)
        };
        json!({
            "postings": [{
                "id": posting_id,
                "operation_id": Uuid::now_v7(),
                "points_type_id": self.ledger.points_type_id,
                "kind": if post.kind == "award" { "Award" } else { "Spend" },
                "cause": "Purchase",
                "debit": debit,
                "credit": credit,
                "amount": post.amount,
                "reason": post.reason,
                "reference": format!("purchase:{}", post.key),
                "lot": null,
                "allocations": [{"lot_id": Uuid::now_v7(), "amount": post.amount}],
                "reversed_posting_id": null,
                "reservation_id": null,
                "business_unit_id": null,
                "payment_method_reference": "",
                "created_at": now,
            }],
            "wallet": {
                "customer_id": post.customer_id,
                "points_type_id": self.ledger.points_type_id,
                "points_type_code": self.ledger.points_type_code,
                "currency_code": "",
                "is_default_type": true,
                "available": available,
                "pending": 0,
                "reserved": 0,
                "commerce": 0,
                "payable": 0,
                "next_expirations": [],
                "lifetime_earned": account.lifetime_credited,
                "block_reason": null,
                "create_time": account.created_at,
                "update_time": now,
            }
        })
        .to_string()
        .into_bytes()
    }

    fn failed(&self, op: &'static str, f: Failure) -> Outcome {
        let c = f.class();
        if self
            .shown
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(format!("{op} {c}"))
        {
            eprintln!("SQL {op} failed (first of its kind): {f:?}");
        }
        Outcome::failed(op, c)
    }
}

impl Workload for SqlWallet {
    /// Even calls award, odd ones spend, each for a random customer (as the gRPC phase).
    async fn call(&self, seq: u64) -> Outcome {
        let customer = self.customers[rand::rng().random_range(0..self.customers.len())];
        let key = format!("lg-{}-sql-{seq}", self.run_id);
        if seq.is_multiple_of(2) {
            match self.award(customer, self.amounts.award, key).await {
                Ok(()) => Outcome::ok("award"),
                Err(f) => self.failed("award", f),
            }
        } else {
            match self.spend(customer, self.amounts.spend, key).await {
                Ok(()) => Outcome::ok("spend"),
                Err(f) => self.failed("spend", f),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lot(n: u128, remaining: i64, expire_in_days: Option<i64>, age_days: i64) -> OpenLot {
        let now = Utc::now();
        OpenLot {
            id: Uuid::from_u128(n),
            remaining,
            release_at: None,
            expire_at: expire_in_days.map(|d| now + chrono::Duration::days(d)),
            created_at: now - chrono::Duration::days(age_days),
        }
    }

    #[test]
    fn spends_take_the_soonest_expiring_lots_first_and_never_expiring_ones_last() {
        let mut lots = vec![
            lot(1, 10, None, 30),
            lot(2, 10, Some(30), 1),
            lot(3, 10, Some(10), 2),
            lot(4, 10, None, 40),
        ];
        let takes = fifo_takes(&mut lots, 35, Utc::now()).expect("enough");
        let ids: Vec<_> = takes.iter().map(|(id, a)| (id.as_u128(), *a)).collect();
        assert_eq!(ids, [(3, 10), (2, 10), (4, 10), (1, 5)]);
        assert!(fifo_takes(&mut lots, 6, Utc::now()).is_none(), "5 left");
    }
}

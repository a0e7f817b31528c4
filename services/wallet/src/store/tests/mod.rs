//! Store-level tests of the ledger against real databases (PostgreSQL, a fresh database per
//! test; SQLite where cheap). The clock is the `now` every operation takes, so months pass,
//! pending points release and lots expire without waiting. Every scenario ends with the
//! trial balance.
use chrono::{DateTime, Duration, Utc};
use loyalty_platform::{ApiError, db::begin_write};
use loyalty_testkit::TestDb;
use sea_orm::{ColumnTrait, Database, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use sea_orm_migration::MigratorTrait;
use uuid::Uuid;

use super::{
    check,
    entities::{ledger_accounts as accounts, ledger_postings as postings, points_lots as lots},
    jobs,
    ledger::{self, Note, TypeRow},
    ops::{self, AwardInput, Posted, Reserved, Target, WalletView},
};
use crate::domain::{
    AccountKind, PostingKind, Unit,
    rules::{ExpiryRule, Rounding},
};

mod concurrency;
mod credit;
mod expiry;
mod lifecycle;
mod model;
mod offer_awards;
mod reservations;
mod reversal;
mod type_cache;

/// A UTC time from RFC 3339 text.
pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

/// The reason of a FAILED_PRECONDITION, or a description of any other error.
pub fn reason(e: &ApiError) -> String {
    match e {
        ApiError::FailedPrecondition { reason, .. } => (*reason).to_owned(),
        other => format!("not a precondition: {other:?}"),
    }
}

/// The field of an INVALID_ARGUMENT.
pub fn invalid_field(e: &ApiError) -> String {
    match e {
        ApiError::InvalidArgument(v) => v.iter().map(|f| f.field.clone()).collect(),
        other => format!("not an invalid argument: {other:?}"),
    }
}

/// A points type as a test wants it; the rest of the row takes the defaults.
#[derive(Debug, Clone)]
pub struct TypeSpec {
    pub code: &'static str,
    pub unit: Unit,
    pub currency: &'static str,
    pub expiry: ExpiryRule,
    pub pending_days: i32,
    pub overdraft_limit: i64,
    pub reservation_ttl_seconds: i32,
    pub is_default: bool,
}

impl Default for TypeSpec {
    fn default() -> Self {
        Self {
            code: "points",
            unit: Unit::Points,
            currency: "",
            expiry: ExpiryRule::Never,
            pending_days: 0,
            overdraft_limit: 0,
            reservation_ttl_seconds: 900,
            is_default: true,
        }
    }
}

/// One partner's ledger in a fresh database.
pub struct Fixture {
    _pg: Option<TestDb>,
    pub db: DatabaseConnection,
    pub partner: Uuid,
}

impl Fixture {
    pub async fn postgres() -> Self {
        let pg = TestDb::postgres()
            .await
            .expect("PostgreSQL on 127.0.0.1:5432");
        let db = Database::connect(pg.url()).await.expect("connect");
        crate::migration::Migrator::up(&db, None)
            .await
            .expect("migrate");
        Self {
            _pg: Some(pg),
            db,
            partner: Uuid::now_v7(),
        }
    }

    pub async fn sqlite() -> Self {
        let db = Database::connect("sqlite::memory:").await.expect("sqlite");
        crate::migration::Migrator::up(&db, None)
            .await
            .expect("migrate");
        Self {
            _pg: None,
            db,
            partner: Uuid::now_v7(),
        }
    }

    /// Another pool on the same PostgreSQL database.
    pub async fn connect_again(&self) -> DatabaseConnection {
        let url = self._pg.as_ref().expect("a PostgreSQL fixture").url();
        Database::connect(url).await.expect("connect")
    }

    /// The same database, another partner.
    pub fn other_partner(&self) -> Self {
        Self {
            _pg: None,
            db: self.db.clone(),
            partner: Uuid::now_v7(),
        }
    }

    /// Creates a points type with its system accounts, as the catalogue does.
    pub async fn points_type(&self, spec: TypeSpec, now: DateTime<Utc>) -> TypeRow {
        use super::entities::points_types as types;
        let (rule, days, months) = spec.expiry.to_parts();
        let row = types::Model {
            id: Uuid::now_v7(),
            partner_id: self.partner,
            code: spec.code.to_owned(),
            display_name: spec.code.to_owned(),
            description: String::new(),
            points_group_id: None,
            unit: spec.unit.as_str().to_owned(),
            currency_code: spec.currency.to_owned(),
            expiry_rule: rule.to_owned(),
            validity_days: days,
            validity_months: months,
            pending_days: spec.pending_days,
            rounding: Rounding::Down.as_str().to_owned(),
            spendable: true,
            overdraft_limit: spec.overdraft_limit,
            reservation_ttl_seconds: spec.reservation_ttl_seconds,
            is_default: spec.is_default,
            active: true,
            revision: 1,
            created_at: now,
            updated_at: now,
        };
        let txn = begin_write(&self.db).await.expect("begin");
        types::Entity::insert(types::ActiveModel::from(row.clone()))
            .exec_without_returning(&txn)
            .await
            .expect("insert type");
        ledger::ensure_system_accounts(&txn, self.partner, row.id, now)
            .await
            .expect("system accounts");
        txn.commit().await.expect("commit");
        row
    }

    /// The default points type, allowing an overdraft of `limit`.
    pub async fn overdraft_type(&self, limit: i64, now: DateTime<Utc>) -> TypeRow {
        self.points_type(
            TypeSpec {
                overdraft_limit: limit,
                ..TypeSpec::default()
            },
            now,
        )
        .await
    }

    pub fn target(&self, customer: Uuid, ty: &TypeRow, now: DateTime<Utc>) -> Target {
        Target {
            partner_id: self.partner,
            customer_id: customer,
            points_type: ty.id.to_string(),
            now,
        }
    }

    pub async fn award(
        &self,
        t: &Target,
        amount: i64,
        expire_at: Option<DateTime<Utc>>,
        release_at: Option<DateTime<Utc>>,
    ) -> Result<Posted, ApiError> {
        self.award_with(
            t,
            AwardInput {
                amount,
                note: note("award"),
                expire_at,
                release_at,
                auto_redeem: false,
            },
        )
        .await
    }

    pub async fn award_with(&self, t: &Target, input: AwardInput) -> Result<Posted, ApiError> {
        let txn = begin_write(&self.db).await?;
        let r = ops::award(&txn, t, input).await?;
        txn.commit().await?;
        Ok(r)
    }

    pub async fn spend(&self, t: &Target, amount: i64) -> Result<Posted, ApiError> {
        let txn = begin_write(&self.db).await?;
        let r = ops::spend(&txn, t, amount, note("spend")).await?;
        txn.commit().await?;
        Ok(r)
    }

    pub async fn reserve(
        &self,
        t: &Target,
        amount: i64,
        ttl: Option<Duration>,
    ) -> Result<Reserved, ApiError> {
        let txn = begin_write(&self.db).await?;
        let r = ops::reserve(&txn, t, amount, ttl, note("reserve")).await?;
        txn.commit().await?;
        Ok(r)
    }

    /// Captures `amount` (0 = all) of a reservation, or releases it (`None`).
    pub async fn settle(
        &self,
        reservation: Uuid,
        capture: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Reserved, ApiError> {
        let txn = begin_write(&self.db).await?;
        let r = ops::settle(
            &txn,
            self.partner,
            reservation,
            capture,
            Note::default(),
            now,
        )
        .await?;
        txn.commit().await?;
        Ok(r)
    }

    pub async fn reverse(
        &self,
        posting: Uuid,
        amount: i64,
        now: DateTime<Utc>,
    ) -> Result<Posted, ApiError> {
        let txn = begin_write(&self.db).await?;
        let r = ops::reverse(&txn, self.partner, posting, amount, note("reversal"), now).await?;
        txn.commit().await?;
        Ok(r)
    }

    pub async fn adjust(
        &self,
        t: &Target,
        amount: i64,
        expire_at: Option<DateTime<Utc>>,
    ) -> Result<Posted, ApiError> {
        let txn = begin_write(&self.db).await?;
        let r = ops::adjust(&txn, t, amount, expire_at, note("adjustment")).await?;
        txn.commit().await?;
        Ok(r)
    }

    pub async fn transfer(
        &self,
        t: &Target,
        to: Uuid,
        amount: i64,
    ) -> Result<(Posted, WalletView), ApiError> {
        let txn = begin_write(&self.db).await?;
        let r = ops::transfer(&txn, t, to, amount, note("transfer")).await?;
        txn.commit().await?;
        Ok(r)
    }

    pub async fn redeem(&self, t: &Target, purchase: i64) -> Result<(Posted, i64), ApiError> {
        let txn = begin_write(&self.db).await?;
        let r = ops::redeem(&txn, t, purchase, note("redeem")).await?;
        txn.commit().await?;
        Ok(r)
    }

    pub async fn payout(&self, t: &Target, amount: i64) -> Result<(Posted, i64), ApiError> {
        let txn = begin_write(&self.db).await?;
        let n = Note {
            payment_method_reference: "iban:CY00".to_owned(),
            ..note("payout")
        };
        let r = ops::payout(&txn, t, amount, n).await?;
        txn.commit().await?;
        Ok(r)
    }

    /// Blocks (`Some(reason)`) or unblocks spending of one type (`Some(id)`) or all.
    pub async fn block(
        &self,
        customer: Uuid,
        points_type: Option<Uuid>,
        block: Option<&str>,
        now: DateTime<Utc>,
    ) {
        let txn = begin_write(&self.db).await.expect("begin");
        ops::set_block(
            &txn,
            self.partner,
            customer,
            points_type,
            block.map(str::to_owned),
            now,
        )
        .await
        .expect("set_block");
        txn.commit().await.expect("commit");
    }

    /// Runs the expiry job for this partner at `as_of`.
    pub async fn expire(&self, as_of: DateTime<Utc>) -> jobs::ExpiryRun {
        jobs::expire_partner(&self.db, self.partner, None, as_of, 1_000)
            .await
            .expect("expiry job")
    }

    /// A customer's wallet of one type at `now`, read without changing anything.
    pub async fn wallet(&self, customer: Uuid, ty: &TypeRow, now: DateTime<Utc>) -> WalletView {
        let mut all = ops::balances(&self.db, self.partner, customer, Some(ty), now)
            .await
            .expect("balances");
        assert_eq!(all.len(), 1, "one wallet of the type");
        all.remove(0)
    }

    /// (available, pending, reserved) of a wallet at `now`.
    pub async fn figures(&self, customer: Uuid, ty: &TypeRow, now: DateTime<Utc>) -> [i64; 3] {
        let w = self.wallet(customer, ty, now).await;
        [w.available, w.pending, w.reserved]
    }

    /// The customer's lots of a type (open or not), oldest first.
    pub async fn lots(&self, customer: Uuid, ty: &TypeRow) -> Vec<lots::Model> {
        lots::Entity::find()
            .filter(lots::Column::PartnerId.eq(self.partner))
            .filter(lots::Column::CustomerId.eq(customer))
            .filter(lots::Column::PointsTypeId.eq(ty.id))
            .order_by_asc(lots::Column::CreatedAt)
            .order_by_asc(lots::Column::Id)
            .all(&self.db)
            .await
            .expect("lots")
    }

    /// (remaining, expire_at) of the customer's lots with points left, soonest-expiring first.
    pub async fn open_lots(
        &self,
        customer: Uuid,
        ty: &TypeRow,
    ) -> Vec<(i64, Option<DateTime<Utc>>)> {
        let mut open: Vec<_> = self
            .lots(customer, ty)
            .await
            .into_iter()
            .filter(|l| l.remaining_amount > 0)
            .map(|l| (l.remaining_amount, l.expire_at))
            .collect();
        open.sort_by_key(|(_, e)| (e.is_none(), *e));
        open
    }

    /// Every posting of the partner of one kind, oldest first.
    pub async fn postings_of_kind(&self, kind: PostingKind) -> Vec<postings::Model> {
        postings::Entity::find()
            .filter(postings::Column::PartnerId.eq(self.partner))
            .filter(postings::Column::Kind.eq(kind.as_str()))
            .order_by_asc(postings::Column::CreatedAt)
            .order_by_asc(postings::Column::Id)
            .all(&self.db)
            .await
            .expect("postings")
    }

    /// Postings touching a customer, oldest first.
    pub async fn postings_of(&self, customer: Uuid) -> Vec<postings::Model> {
        let mut rows = ops::list_postings(
            &self.db,
            self.partner,
            customer,
            &ops::PostingFilter::default(),
            10_000,
        )
        .await
        .expect("postings");
        rows.reverse();
        rows
    }

    /// The stored account of a customer.
    pub async fn account(
        &self,
        customer: Uuid,
        ty: &TypeRow,
        kind: AccountKind,
    ) -> Option<accounts::Model> {
        accounts::Entity::find()
            .filter(accounts::Column::PartnerId.eq(self.partner))
            .filter(accounts::Column::CustomerId.eq(customer))
            .filter(accounts::Column::PointsTypeId.eq(ty.id))
            .filter(accounts::Column::Kind.eq(kind.as_str()))
            .one(&self.db)
            .await
            .expect("account")
    }

    /// The trial balance of this partner must hold.
    pub async fn assert_balanced(&self) -> check::Report {
        let report = check::trial_balance(&self.db, Some(self.partner), None, None)
            .await
            .expect("trial balance");
        assert!(
            report.balanced(),
            "trial balance: {:#?}",
            report.discrepancies
        );
        assert!(report.checked_accounts > 0, "the check saw the accounts");
        report
    }
}

pub fn note(reason: &str) -> Note {
    Note {
        reason: reason.to_owned(),
        reference: format!("ref-{reason}"),
        ..Note::default()
    }
}

/// The only posting of an operation of `kind`.
pub fn posting_of(p: &Posted, kind: PostingKind) -> &ledger::Posting {
    let mut of_kind = p.postings.iter().filter(|x| x.kind == kind);
    let first = of_kind.next().expect("a posting of the kind");
    assert!(of_kind.next().is_none(), "one posting of {kind:?}");
    first
}

#[tokio::test]
async fn an_empty_ledger_and_one_award_balance() {
    let f = Fixture::postgres().await;
    let now = at("2026-01-10T09:00:00Z");
    let ty = f.points_type(TypeSpec::default(), now).await;
    let c = Uuid::now_v7();
    f.award(&f.target(c, &ty, now), 25, None, None)
        .await
        .expect("award");
    let report = f.assert_balanced().await;
    assert_eq!(report.totals.len(), 1);
    assert_eq!(report.totals[0].postings, 1);
    assert_eq!(f.figures(c, &ty, now).await, [25, 0, 0]);
}

#[tokio::test]
async fn the_trial_balance_finds_tampered_balances_lots_and_reservations() {
    use sea_orm::ConnectionTrait;
    let f = Fixture::postgres().await;
    let now = at("2026-01-10T09:00:00Z");
    let ty = f.points_type(TypeSpec::default(), now).await;
    let c = Uuid::now_v7();
    let t = f.target(c, &ty, now);
    f.award(&t, 25, None, None).await.unwrap();
    f.reserve(&t, 5, None).await.unwrap();
    f.assert_balanced().await;
    let tamper = |sql: String| {
        let db = f.db.clone();
        async move { db.execute_unprepared(&sql).await.expect("tamper") }
    };
    let discrepancies = || async {
        check::trial_balance(&f.db, Some(f.partner), None, Some(c))
            .await
            .expect("trial balance")
            .discrepancies
    };
    tamper(format!(
        "UPDATE ledger_accounts SET balance = balance + 1 WHERE customer_id = '{c}' AND kind = 'wallet'"
    ))
    .await;
    let found = discrepancies().await;
    assert!(
        found
            .iter()
            .any(|d| d.contains("stored balance 21 but postings sum to 20")),
        "{found:?}"
    );
    tamper(format!(
        "UPDATE ledger_accounts SET balance = balance - 1 WHERE customer_id = '{c}' AND kind = 'wallet'"
    ))
    .await;
    tamper(format!(
        "UPDATE points_lots SET remaining_amount = remaining_amount - 2 WHERE customer_id = '{c}'"
    ))
    .await;
    let found = discrepancies().await;
    assert!(
        found
            .iter()
            .any(|d| d.contains("remaining 18 but 25 awarded less 5 taken")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|d| d.contains("balance 20 but lots hold 18")),
        "{found:?}"
    );
    tamper(format!(
        "UPDATE reservations SET state = 'released' WHERE customer_id = '{c}'"
    ))
    .await;
    let found = discrepancies().await;
    assert!(
        found
            .iter()
            .any(|d| d.contains("balance 5 but held reservations total 0")),
        "{found:?}"
    );
    tamper("UPDATE ledger_postings SET amount = amount + 3 WHERE kind = 'award'".to_owned()).await;
    let found = discrepancies().await;
    assert!(
        found
            .iter()
            .any(|d| d.contains("stored balance 20 but postings sum to 23")),
        "{found:?}"
    );
}

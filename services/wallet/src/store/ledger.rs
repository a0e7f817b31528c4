//! The posting engine. Every change to a customer's accounts of one points type happens while
//! holding the row lock of that customer's WALLET account (taken by an upsert, so the first
//! posting creates the wallet), in the caller's transaction: concurrent operations on one
//! wallet queue in PostgreSQL, several replicas are safe, and process memory holds only the
//! ids of system accounts (immutable once created) and points types checked by revision under
//! the lock (see `resolve_type_cached`).
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use chrono::{DateTime, Utc};
use loyalty_platform::ApiError;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait, FromQueryResult,
    JoinType, QueryFilter, QueryOrder, QueryResult, QuerySelect, RelationDef,
    sea_query::{Expr, IntoCondition, OnConflict, Order, Query, SimpleExpr},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::entities::{
    ledger_accounts as accounts, ledger_postings as postings, lot_allocations as allocations,
    points_lots as lots, points_types as types, reservations, spending_blocks as blocks,
};
use crate::domain::{
    AccountKind, Cause, PostingKind, ReservationState, Unit,
    lots::{self as lot_rules, Lot, Take},
    rules::{ExpiryRule, Rounding, TypeRules},
};

pub type TypeRow = types::Model;

/// The rules a points type row stores.
pub fn rules_of(t: &TypeRow) -> TypeRules {
    TypeRules {
        expiry: ExpiryRule::from_parts(&t.expiry_rule, t.validity_days, t.validity_months)
            .unwrap_or(ExpiryRule::Never),
        pending_days: t.pending_days,
        rounding: Rounding::parse_str(&t.rounding).unwrap_or(Rounding::Down),
        spendable: t.spendable,
        overdraft_limit: t.overdraft_limit,
        reservation_ttl_seconds: t.reservation_ttl_seconds,
    }
}

pub fn unit_of(t: &TypeRow) -> Unit {
    Unit::parse_str(&t.unit).unwrap_or(Unit::Points)
}

/// Code of the points type a partner gets on first use when it has none.
pub const DEFAULT_TYPE_CODE: &str = "points";

/// A points type by UUID or code; `None` when the partner has no such type.
pub async fn find_type(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id_or_code: &str,
) -> Result<Option<TypeRow>, ApiError> {
    let q = types::Entity::find().filter(types::Column::PartnerId.eq(partner_id));
    let q = match Uuid::try_parse(id_or_code) {
        Ok(id) => q.filter(types::Column::Id.eq(id)),
        Err(_) => q.filter(types::Column::Code.eq(id_or_code)),
    };
    Ok(q.one(conn).await?)
}

/// The points type a call names (UUID or code), or the partner's default when it names none;
/// a partner without any type gets the default "points" type (never expires, spendable).
pub async fn resolve_type(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id_or_code: &str,
    now: DateTime<Utc>,
) -> Result<TypeRow, ApiError> {
    Ok(resolve_or_create_type(conn, partner_id, id_or_code, now)
        .await?
        .0)
}

/// [`resolve_type`], and whether this call created the default type (in its transaction).
async fn resolve_or_create_type(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id_or_code: &str,
    now: DateTime<Utc>,
) -> Result<(TypeRow, bool), ApiError> {
    if !id_or_code.is_empty() {
        return find_type(conn, partner_id, id_or_code)
            .await?
            .map(|t| (t, false))
            .ok_or_else(|| ApiError::NotFound(format!("points type {id_or_code:?}")));
    }
    if let Some(t) = types::Entity::find()
        .filter(types::Column::PartnerId.eq(partner_id))
        .filter(types::Column::IsDefault.eq(true))
        .one(conn)
        .await?
    {
        return Ok((t, false));
    }
    Ok((create_default_type(conn, partner_id, now).await?, true))
}

/// Points types as last read, per (partner, UUID-or-code as asked). An entry is only a guess:
/// `lock_wallet` checks the row's revision under the wallet lock, in the statement that loads
/// the accounts, and the caller re-resolves when it moved (`Wallet::type_reloaded`), so the hot
/// path reads `points_types` only when a type changed. Writes through the catalogue forget the
/// partner's entries at once; the TTL bounds what a missed change could cost.
type TypeCache = HashMap<(Uuid, String), (TypeRow, Instant)>;

fn type_cache() -> &'static Mutex<TypeCache> {
    static TYPES: OnceLock<Mutex<TypeCache>> = OnceLock::new();
    TYPES.get_or_init(Default::default)
}

const TYPE_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Forgets the partner's cached points types (after a catalogue write or a stale read).
pub fn forget_types(partner_id: Uuid) {
    type_cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(p, _), _| *p != partner_id);
}

fn cached_type(key: &(Uuid, String)) -> Option<TypeRow> {
    type_cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(key)
        .filter(|(_, at)| at.elapsed() < TYPE_CACHE_TTL)
        .map(|(t, _)| t.clone())
}

fn keep_type(key: (Uuid, String), t: &TypeRow) {
    type_cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, (t.clone(), Instant::now()));
}

/// [`resolve_type`] through the cache; the answer must be checked under the wallet lock.
pub async fn resolve_type_cached(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id_or_code: &str,
    now: DateTime<Utc>,
) -> Result<TypeRow, ApiError> {
    let key = (partner_id, id_or_code.to_owned());
    if let Some(t) = cached_type(&key) {
        return Ok(t);
    }
    let (t, created) = resolve_or_create_type(conn, partner_id, id_or_code, now).await?;
    // A type this transaction created may still roll back (or lose to a concurrent first
    // call's default); only committed rows are shared.
    if !created {
        keep_type(key, &t);
    }
    Ok(t)
}

/// A points type by UUID or code for reads (balances): the cached row when there is one.
/// Reads check no revision, so another replica's change shows here within the cache's TTL;
/// this replica's catalogue writes forget the partner's entries at once.
pub async fn find_type_cached(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id_or_code: &str,
) -> Result<Option<TypeRow>, ApiError> {
    let key = (partner_id, id_or_code.to_owned());
    if let Some(t) = cached_type(&key) {
        return Ok(Some(t));
    }
    let found = find_type(conn, partner_id, id_or_code).await?;
    if let Some(t) = &found {
        keep_type(key, t);
    }
    Ok(found)
}

/// Whether `t` is the type a call naming `id_or_code` (empty = the default) means.
pub fn names_type(id_or_code: &str, t: &TypeRow) -> bool {
    if id_or_code.is_empty() {
        return t.is_default;
    }
    match Uuid::try_parse(id_or_code) {
        Ok(id) => t.id == id,
        Err(_) => t.code == id_or_code,
    }
}

async fn create_default_type(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    now: DateTime<Utc>,
) -> Result<TypeRow, ApiError> {
    let (rule, days, months) = ExpiryRule::Never.to_parts();
    let row = types::ActiveModel {
        id: Set(Uuid::now_v7()),
        partner_id: Set(partner_id),
        code: Set(DEFAULT_TYPE_CODE.to_owned()),
        display_name: Set("Points".to_owned()),
        description: Set(String::new()),
        points_group_id: Set(None),
        unit: Set(Unit::Points.as_str().to_owned()),
        currency_code: Set(String::new()),
        expiry_rule: Set(rule.to_owned()),
        validity_days: Set(days),
        validity_months: Set(months),
        pending_days: Set(0),
        rounding: Set(Rounding::Down.as_str().to_owned()),
        spendable: Set(true),
        overdraft_limit: Set(0),
        reservation_ttl_seconds: Set(crate::domain::rules::DEFAULT_RESERVATION_TTL_SECONDS),
        is_default: Set(true),
        active: Set(true),
        revision: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
    };
    // A concurrent first call may create it too (the code is unique per partner), or an
    // admin may create the partner's first type at the same moment (one default per partner):
    // either way the default that won is used.
    types::Entity::insert(row)
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_without_returning(conn)
        .await?;
    let t = types::Entity::find()
        .filter(types::Column::PartnerId.eq(partner_id))
        .filter(types::Column::IsDefault.eq(true))
        .one(conn)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("default points type vanished")))?;
    ensure_system_accounts(conn, partner_id, t.id, now).await?;
    Ok(t)
}

/// Creates the partner's system accounts of a points type (idempotent).
pub async fn ensure_system_accounts(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    points_type_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let rows = AccountKind::SYSTEM.iter().map(|k| accounts::ActiveModel {
        id: Set(Uuid::now_v7()),
        partner_id: Set(partner_id),
        points_type_id: Set(points_type_id),
        customer_id: Set(Uuid::nil()),
        kind: Set(k.as_str().to_owned()),
        balance: Set(0),
        debt: Set(0),
        lifetime_credited: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    });
    accounts::Entity::insert_many(rows)
        .on_conflict(owner_conflict().do_nothing().to_owned())
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

fn owner_conflict() -> OnConflict {
    OnConflict::columns([
        accounts::Column::PartnerId,
        accounts::Column::CustomerId,
        accounts::Column::PointsTypeId,
        accounts::Column::Kind,
    ])
}

/// Ids of system accounts; they never change once created, so every replica may remember them.
fn system_ids() -> &'static Mutex<HashMap<(Uuid, AccountKind), Uuid>> {
    static IDS: OnceLock<Mutex<HashMap<(Uuid, AccountKind), Uuid>>> = OnceLock::new();
    IDS.get_or_init(Default::default)
}

/// The id of a system account of a points type.
pub async fn system_account(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    points_type_id: Uuid,
    kind: AccountKind,
) -> Result<Uuid, ApiError> {
    if let Some(id) = system_ids()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&(points_type_id, kind))
    {
        return Ok(*id);
    }
    let find = || {
        accounts::Entity::find()
            .filter(accounts::Column::PartnerId.eq(partner_id))
            .filter(accounts::Column::PointsTypeId.eq(points_type_id))
            .filter(accounts::Column::CustomerId.eq(Uuid::nil()))
            .filter(accounts::Column::Kind.eq(kind.as_str()))
            .one(conn)
    };
    let row = match find().await? {
        Some(r) => r,
        None => {
            ensure_system_accounts(conn, partner_id, points_type_id, Utc::now()).await?;
            find().await?.ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!("system account {kind:?} vanished"))
            })?
        }
    };
    system_ids()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert((points_type_id, kind), row.id);
    Ok(row.id)
}

/// One side of a posting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRef {
    pub id: Uuid,
    pub kind: AccountKind,
    /// Set for customer accounts.
    pub customer_id: Option<Uuid>,
}

/// A lot a posting creates in its credit account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewLot {
    pub release_at: Option<DateTime<Utc>>,
    pub expire_at: Option<DateTime<Utc>>,
    pub payable: bool,
}

/// A posting as written; what RPCs answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Posting {
    pub id: Uuid,
    pub operation_id: Uuid,
    pub points_type_id: Uuid,
    pub kind: PostingKind,
    pub cause: Cause,
    pub debit: AccountRef,
    pub credit: AccountRef,
    pub amount: i64,
    pub reason: String,
    pub reference: String,
    pub lot: Option<(Uuid, NewLot)>,
    pub allocations: Vec<Take>,
    pub reversed_posting_id: Option<Uuid>,
    pub reservation_id: Option<Uuid>,
    pub business_unit_id: Option<Uuid>,
    pub payment_method_reference: String,
    pub created_at: DateTime<Utc>,
}

/// What a caller says about the posting it asks for.
#[derive(Debug, Clone, Default)]
pub struct Note {
    pub cause: Option<Cause>,
    pub reason: String,
    pub reference: String,
    pub business_unit_id: Option<Uuid>,
    pub payment_method_reference: String,
    pub reversed_posting_id: Option<Uuid>,
    pub reservation_id: Option<Uuid>,
}

fn insufficient(available: i64, wanted: i64) -> ApiError {
    ApiError::precondition(
        "INSUFFICIENT_POINTS",
        format!("{wanted} requested but only {available} available"),
    )
}

/// A customer's wallet of one points type, locked for the rest of the transaction.
pub struct Wallet {
    pub ty: TypeRow,
    pub rules: TypeRules,
    pub customer_id: Uuid,
    pub partner_id: Uuid,
    pub accounts: BTreeMap<&'static str, accounts::Model>,
    /// Lots of the WALLET and COMMERCE accounts with something left.
    pub lots: Vec<lots::Model>,
    changed_accounts: Vec<&'static str>,
    pub now: DateTime<Utc>,
    pub operation_id: Uuid,
    /// Postings made through this wallet in this transaction, in order.
    pub postings: Vec<Posting>,
    /// The spending block (its reason), once read.
    block_reason: Option<Option<String>>,
    /// Set when the type row given to `lock_wallet` was stale: `ty` and `rules` were reloaded.
    pub type_reloaded: bool,
}

/// Locks (creating it on first use) the WALLET account of `customer_id` in `ty` and loads
/// the wallet's accounts, spending block and open lots. `ty` may come from a cache: its
/// revision is checked in the same statement and the row reloaded when it moved.
pub async fn lock_wallet(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    ty: &TypeRow,
    customer_id: Uuid,
    now: DateTime<Utc>,
    operation_id: Uuid,
) -> Result<Wallet, ApiError> {
    insert_account(
        txn,
        partner_id,
        ty.id,
        customer_id,
        AccountKind::Wallet,
        now,
    )
    .await?;
    // One round trip after the lock: the accounts with their open lots, the type's current
    // revision and the spending block alongside (read after the lock, so no change made
    // before it is missed).
    let lot_to_account: RelationDef = lots::Entity::belongs_to(accounts::Entity)
        .from(lots::Column::AccountId)
        .to(accounts::Column::Id)
        .into();
    let open_lots_of_account = lot_to_account.rev().on_condition(|_, lot| {
        Expr::col((lot, lots::Column::RemainingAmount))
            .gt(0)
            .into_condition()
    });
    let rows = accounts::Entity::find()
        .select_also(lots::Entity)
        .join(JoinType::LeftJoin, open_lots_of_account)
        .filter(accounts::Column::PartnerId.eq(partner_id))
        .filter(accounts::Column::CustomerId.eq(customer_id))
        .filter(accounts::Column::PointsTypeId.eq(ty.id))
        .expr_as(type_revision_of(ty.id), "type_revision")
        .expr_as(block_query(partner_id, customer_id, ty.id), "block_reason")
        .into_model::<AccountInContext, lots::Model>()
        .all(txn)
        .await?;
    let Some((first, _)) = rows.first() else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "wallet account vanished"
        )));
    };
    let (type_revision, block_reason) = (first.type_revision, first.block_reason.clone());
    let type_reloaded = type_revision != Some(ty.revision);
    let ty = if type_reloaded {
        find_type(txn, partner_id, &ty.id.to_string())
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("points type {}", ty.id)))?
    } else {
        ty.clone()
    };
    let mut accounts_by_kind = BTreeMap::new();
    let mut open_lots = Vec::new();
    for (a, lot) in rows {
        // Lots live in WALLET and COMMERCE only; RESERVED holds none.
        open_lots.extend(lot);
        if let Some(k) = AccountKind::parse_str(&a.account.kind) {
            accounts_by_kind.insert(k.as_str(), a.account);
        }
    }
    Ok(Wallet {
        rules: rules_of(&ty),
        ty,
        customer_id,
        partner_id,
        accounts: accounts_by_kind,
        lots: open_lots,
        changed_accounts: Vec::new(),
        now,
        operation_id,
        postings: Vec::new(),
        block_reason: Some(block_reason),
        type_reloaded,
    })
}

/// An account row with what `lock_wallet` reads alongside it.
struct AccountInContext {
    account: accounts::Model,
    type_revision: Option<i64>,
    block_reason: Option<String>,
}

impl FromQueryResult for AccountInContext {
    fn from_query_result(res: &QueryResult, pre: &str) -> Result<Self, DbErr> {
        Ok(Self {
            account: accounts::Model::from_query_result(res, pre)?,
            // Selected without the prefix `select_also` gives each entity's columns.
            type_revision: res.try_get("", "type_revision")?,
            block_reason: res.try_get("", "block_reason")?,
        })
    }
}

/// A one-value subquery, for a column read alongside another table's rows.
fn scalar(q: &mut sea_orm::sea_query::SelectStatement) -> SimpleExpr {
    SimpleExpr::SubQuery(None, Box::new(q.to_owned().into_sub_query_statement()))
}

fn type_revision_of(points_type_id: Uuid) -> SimpleExpr {
    scalar(
        Query::select()
            .column((types::Entity, types::Column::Revision))
            .from(types::Entity)
            .and_where(Expr::col((types::Entity, types::Column::Id)).eq(points_type_id)),
    )
}

/// The reason of the block on this type or on all types (the older first), as a subquery.
fn block_query(partner_id: Uuid, customer_id: Uuid, points_type_id: Uuid) -> SimpleExpr {
    scalar(
        Query::select()
            .column((blocks::Entity, blocks::Column::Reason))
            .from(blocks::Entity)
            .and_where(Expr::col((blocks::Entity, blocks::Column::PartnerId)).eq(partner_id))
            .and_where(Expr::col((blocks::Entity, blocks::Column::CustomerId)).eq(customer_id))
            .and_where(
                Expr::col((blocks::Entity, blocks::Column::PointsTypeId))
                    .is_in([points_type_id, Uuid::nil()]),
            )
            .order_by((blocks::Entity, blocks::Column::CreatedAt), Order::Asc)
            .limit(1),
    )
}

/// Inserts the account if missing and takes its row lock (the upsert locks the row it finds).
async fn insert_account(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    points_type_id: Uuid,
    customer_id: Uuid,
    kind: AccountKind,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let row = accounts::ActiveModel {
        id: Set(Uuid::now_v7()),
        partner_id: Set(partner_id),
        points_type_id: Set(points_type_id),
        customer_id: Set(customer_id),
        kind: Set(kind.as_str().to_owned()),
        balance: Set(0),
        debt: Set(0),
        lifetime_credited: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    };
    accounts::Entity::insert(row)
        .on_conflict(
            owner_conflict()
                .update_column(accounts::Column::UpdatedAt)
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Inserts the account if missing, takes its row lock and reads it back.
async fn upsert_account(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    points_type_id: Uuid,
    customer_id: Uuid,
    kind: AccountKind,
    now: DateTime<Utc>,
) -> Result<accounts::Model, ApiError> {
    insert_account(conn, partner_id, points_type_id, customer_id, kind, now).await?;
    // Read back rather than RETURNING: without RETURNING (SQLite here) sea-orm finds the
    // row by the new id, which an existing account does not have.
    accounts::Entity::find()
        .filter(accounts::Column::PartnerId.eq(partner_id))
        .filter(accounts::Column::CustomerId.eq(customer_id))
        .filter(accounts::Column::PointsTypeId.eq(points_type_id))
        .filter(accounts::Column::Kind.eq(kind.as_str()))
        .one(conn)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("account {kind:?} vanished")))
}

fn lot_view(l: &lots::Model) -> Lot {
    Lot {
        id: l.id,
        remaining: l.remaining_amount,
        release_at: l.release_at,
        expire_at: l.expire_at,
        created_at: l.created_at,
        payable: l.payable,
    }
}

impl Wallet {
    pub fn account(&self, kind: AccountKind) -> Option<&accounts::Model> {
        self.accounts.get(kind.as_str())
    }

    fn wallet_account(&self) -> &accounts::Model {
        &self.accounts[AccountKind::Wallet.as_str()]
    }

    pub fn account_ref(&self, kind: AccountKind) -> Option<AccountRef> {
        self.account(kind).map(|a| AccountRef {
            id: a.id,
            kind,
            customer_id: Some(self.customer_id),
        })
    }

    /// The customer account of `kind`, created (under the wallet lock) when missing.
    pub async fn ensure(
        &mut self,
        txn: &DatabaseTransaction,
        kind: AccountKind,
    ) -> Result<AccountRef, ApiError> {
        self.ensure_account(txn, kind).await
    }

    async fn ensure_account(
        &mut self,
        txn: &DatabaseTransaction,
        kind: AccountKind,
    ) -> Result<AccountRef, ApiError> {
        if self.account(kind).is_none() {
            let a = upsert_account(
                txn,
                self.partner_id,
                self.ty.id,
                self.customer_id,
                kind,
                self.now,
            )
            .await?;
            self.accounts.insert(kind.as_str(), a);
        }
        Ok(self.account_ref(kind).expect("just ensured"))
    }

    async fn system(
        &self,
        txn: &DatabaseTransaction,
        kind: AccountKind,
    ) -> Result<AccountRef, ApiError> {
        Ok(AccountRef {
            id: system_account(txn, self.partner_id, self.ty.id, kind).await?,
            kind,
            customer_id: None,
        })
    }

    fn lots_of(&self, kind: AccountKind) -> Vec<Lot> {
        let Some(acc) = self.account(kind) else {
            return Vec::new();
        };
        self.lots
            .iter()
            .filter(|l| l.account_id == acc.id && l.remaining_amount > 0)
            .map(lot_view)
            .collect()
    }

    /// What can be spent now: released, unexpired lots minus any overdraft debt.
    pub fn available(&self) -> i64 {
        lot_rules::spendable(&self.lots_of(AccountKind::Wallet), self.now)
            - self.wallet_account().debt
    }

    pub fn pending(&self) -> i64 {
        lot_rules::pending(&self.lots_of(AccountKind::Wallet), self.now)
    }

    pub fn commerce(&self) -> i64 {
        lot_rules::spendable(&self.lots_of(AccountKind::Commerce), self.now)
    }

    pub fn payable(&self) -> i64 {
        self.lots_of(AccountKind::Wallet)
            .iter()
            .filter(|l| l.payable && l.is_spendable(self.now))
            .map(|l| l.remaining)
            .sum::<i64>()
            .min(self.available().max(0))
    }

    pub fn reserved(&self) -> i64 {
        self.account(AccountKind::Reserved)
            .map(|a| a.balance)
            .unwrap_or(0)
    }

    pub fn next_expirations(&self, n: usize) -> Vec<(DateTime<Utc>, i64)> {
        let mut all = self.lots_of(AccountKind::Wallet);
        all.extend(self.lots_of(AccountKind::Commerce));
        lot_rules::next_expirations(&all, self.now, n)
    }

    /// Applies a posting's effect on one of this wallet's accounts (postings to other
    /// wallets and to system accounts are ignored here).
    fn apply_balance(&mut self, r: &AccountRef, delta: i64) {
        if r.customer_id != Some(self.customer_id) {
            return;
        }
        let key = r.kind.as_str();
        if let Some(a) = self.accounts.get_mut(key) {
            a.balance += delta;
            if delta > 0 {
                a.lifetime_credited += delta;
            }
            if !self.changed_accounts.contains(&key) {
                self.changed_accounts.push(key);
            }
        }
    }

    /// Writes a posting: the row, the lot it creates, its allocations (and the lots' new
    /// remaining amounts), and the customer accounts' balances in memory (see `flush`).
    #[allow(clippy::too_many_arguments)]
    async fn post(
        &mut self,
        txn: &DatabaseTransaction,
        kind: PostingKind,
        debit: AccountRef,
        credit: AccountRef,
        amount: i64,
        note: &Note,
        lot: Option<NewLot>,
        allocations: Vec<Take>,
    ) -> Result<Posting, ApiError> {
        let id = Uuid::now_v7();
        let lot = lot.map(|l| (Uuid::now_v7(), l));
        let p = Posting {
            id,
            operation_id: self.operation_id,
            points_type_id: self.ty.id,
            kind,
            cause: note.cause.unwrap_or(Cause::Other),
            debit,
            credit,
            amount,
            reason: note.reason.trim().to_owned(),
            reference: note.reference.clone(),
            lot,
            allocations,
            reversed_posting_id: note.reversed_posting_id,
            reservation_id: note.reservation_id,
            business_unit_id: note.business_unit_id,
            payment_method_reference: note.payment_method_reference.clone(),
            created_at: self.now,
        };
        insert_posting(txn, self.partner_id, &p).await?;
        if let Some((lot_id, l)) = &p.lot {
            let row = lots::Model {
                id: *lot_id,
                partner_id: self.partner_id,
                account_id: credit.id,
                customer_id: self.customer_id_of(&credit),
                points_type_id: self.ty.id,
                posting_id: id,
                original_amount: amount,
                remaining_amount: amount,
                release_at: l.release_at,
                expire_at: l.expire_at,
                expired_at: None,
                payable: l.payable,
                created_at: self.now,
            };
            lots::Entity::insert(lots::ActiveModel::from(row.clone()))
                .exec_without_returning(txn)
                .await?;
            if credit.customer_id == Some(self.customer_id) {
                self.lots.push(row);
            }
        }
        self.take_from_lots(txn, id, &p.allocations).await?;
        self.apply_balance(&debit, -amount);
        self.apply_balance(&credit, amount);
        self.postings.push(p.clone());
        Ok(p)
    }

    fn customer_id_of(&self, r: &AccountRef) -> Uuid {
        r.customer_id.unwrap_or(self.customer_id)
    }

    async fn take_from_lots(
        &mut self,
        txn: &DatabaseTransaction,
        posting_id: Uuid,
        takes: &[Take],
    ) -> Result<(), ApiError> {
        if takes.is_empty() {
            return Ok(());
        }
        allocations::Entity::insert_many(takes.iter().map(|t| allocations::ActiveModel {
            posting_id: Set(posting_id),
            lot_id: Set(t.lot_id),
            amount: Set(t.amount),
        }))
        .exec_without_returning(txn)
        .await?;
        for t in takes {
            let remaining = match self.lots.iter_mut().find(|l| l.id == t.lot_id) {
                Some(l) => {
                    l.remaining_amount -= t.amount;
                    l.remaining_amount
                }
                None => {
                    // A lot given back to that was not loaded (fully taken before).
                    let l = lots::Entity::find_by_id(t.lot_id)
                        .one(txn)
                        .await?
                        .ok_or_else(|| {
                            ApiError::Internal(anyhow::anyhow!("lot {} vanished", t.lot_id))
                        })?;
                    let remaining = l.remaining_amount - t.amount;
                    let mut l = l;
                    l.remaining_amount = remaining;
                    self.lots.push(l);
                    remaining
                }
            };
            if remaining < 0 {
                return Err(ApiError::Internal(anyhow::anyhow!(
                    "lot {} would go below zero",
                    t.lot_id
                )));
            }
            lots::Entity::update_many()
                .col_expr(
                    lots::Column::RemainingAmount,
                    sea_orm::sea_query::Expr::value(remaining),
                )
                .filter(lots::Column::Id.eq(t.lot_id))
                .exec(txn)
                .await?;
        }
        Ok(())
    }

    /// Writes the balances of the customer accounts this transaction changed.
    pub async fn flush(&mut self, txn: &DatabaseTransaction) -> Result<(), ApiError> {
        for key in std::mem::take(&mut self.changed_accounts) {
            let a = &self.accounts[key];
            accounts::Entity::update_many()
                .col_expr(
                    accounts::Column::Balance,
                    sea_orm::sea_query::Expr::value(a.balance),
                )
                .col_expr(
                    accounts::Column::Debt,
                    sea_orm::sea_query::Expr::value(a.debt),
                )
                .col_expr(
                    accounts::Column::LifetimeCredited,
                    sea_orm::sea_query::Expr::value(a.lifetime_credited),
                )
                .col_expr(
                    accounts::Column::UpdatedAt,
                    sea_orm::sea_query::Expr::value(self.now),
                )
                .filter(accounts::Column::Id.eq(a.id))
                .exec(txn)
                .await?;
        }
        Ok(())
    }

    fn mark_debt(&mut self, debt: i64) {
        let key = AccountKind::Wallet.as_str();
        if let Some(a) = self.accounts.get_mut(key) {
            a.debt = debt;
        }
        if !self.changed_accounts.contains(&key) {
            self.changed_accounts.push(key);
        }
    }

    /// Posts what is due on this wallet: the remaining points of lots past their expiry, and
    /// reservations past their hold. Every operation starts with it, so a wallet never
    /// counts points whose time is over; the expiry job sweeps wallets nobody touches.
    /// Returns (lots expired, amount expired, reservations released).
    pub async fn settle_due(
        &mut self,
        txn: &DatabaseTransaction,
    ) -> Result<(i64, i64, i64), ApiError> {
        let mut released = 0;
        if self.reserved() > 0 {
            let due = reservations::Entity::find()
                .filter(reservations::Column::PartnerId.eq(self.partner_id))
                .filter(reservations::Column::CustomerId.eq(self.customer_id))
                .filter(reservations::Column::PointsTypeId.eq(self.ty.id))
                .filter(reservations::Column::State.eq(ReservationState::Held.as_str()))
                .filter(reservations::Column::ExpireAt.lte(self.now))
                .all(txn)
                .await?;
            for r in due {
                self.settle_reservation(txn, r, 0, ReservationState::Expired, &Note::default())
                    .await?;
                released += 1;
            }
        }
        let mut expired_lots = 0;
        let mut expired_amount = 0;
        let due: Vec<lots::Model> = self
            .lots
            .iter()
            .filter(|l| l.remaining_amount > 0 && l.expire_at.is_some_and(|e| e <= self.now))
            .cloned()
            .collect();
        if !due.is_empty() {
            let expired = self.system(txn, AccountKind::Expired).await?;
            for l in due {
                let from =
                    if Some(l.account_id) == self.account(AccountKind::Commerce).map(|a| a.id) {
                        self.account_ref(AccountKind::Commerce)
                    } else {
                        self.account_ref(AccountKind::Wallet)
                    }
                    .expect("a lot's account is loaded");
                let note = Note {
                    cause: Some(Cause::Expiry),
                    reason: "expiry".to_owned(),
                    ..Note::default()
                };
                self.post(
                    txn,
                    PostingKind::Expiry,
                    from,
                    expired,
                    l.remaining_amount,
                    &note,
                    None,
                    vec![Take {
                        lot_id: l.id,
                        amount: l.remaining_amount,
                    }],
                )
                .await?;
                lots::Entity::update_many()
                    .col_expr(
                        lots::Column::ExpiredAt,
                        sea_orm::sea_query::Expr::value(self.now),
                    )
                    .filter(lots::Column::Id.eq(l.id))
                    .exec(txn)
                    .await?;
                expired_lots += 1;
                expired_amount += l.remaining_amount;
            }
        }
        Ok((expired_lots, expired_amount, released))
    }

    /// Credits `amount` to the WALLET (or COMMERCE) account from `from` as a new lot, paying
    /// an overdraft debt first.
    #[allow(clippy::too_many_arguments)]
    pub async fn credit_lot(
        &mut self,
        txn: &DatabaseTransaction,
        kind: PostingKind,
        from: AccountRef,
        to: AccountKind,
        amount: i64,
        note: &Note,
        lot: NewLot,
    ) -> Result<Posting, ApiError> {
        let to = self.ensure_account(txn, to).await?;
        let mut p = self
            .post(txn, kind, from, to, amount, note, Some(lot), Vec::new())
            .await?;
        if to.kind == AccountKind::Wallet {
            let (lot_id, _) = p.lot.clone().expect("credit_lot creates a lot");
            if let Some(paid) = self.pay_debt_from_lot(txn, p.id, lot_id, amount).await? {
                p.allocations.push(paid);
                if let Some(last) = self.postings.last_mut() {
                    last.allocations = p.allocations.clone();
                }
            }
        }
        Ok(p)
    }

    /// Pays the overdraft debt from a lot just credited to the WALLET account by posting
    /// `posting_id`, as an award does: points arriving in an overdrawn wallet (awarded,
    /// transferred, redeemed, merged) settle the debt before they could expire while it stays.
    /// Returns the take, if any.
    async fn pay_debt_from_lot(
        &mut self,
        txn: &DatabaseTransaction,
        posting_id: Uuid,
        lot_id: Uuid,
        amount: i64,
    ) -> Result<Option<Take>, ApiError> {
        let debt = self.wallet_account().debt;
        let pay = debt.min(amount);
        if pay <= 0 {
            return Ok(None);
        }
        let take = Take {
            lot_id,
            amount: pay,
        };
        self.take_from_lots(txn, posting_id, &[take]).await?;
        self.mark_debt(debt - pay);
        Ok(Some(take))
    }

    /// Pays the overdraft debt out of give-backs (negative takes) about to be credited to the
    /// WALLET account, the points going back to the soonest-expiring lots first; returns the
    /// give-backs left.
    fn pay_debt_from_give_backs(&mut self, mut back: Vec<Take>) -> Vec<Take> {
        let debt = self.wallet_account().debt;
        let given = -back.iter().map(|t| t.amount).sum::<i64>();
        let mut pay = debt.min(given);
        if pay <= 0 {
            return back;
        }
        self.mark_debt(debt - pay);
        // Give-backs run latest-expiring first.
        for t in back.iter_mut().rev() {
            let a = (-t.amount).min(pay);
            t.amount += a;
            pay -= a;
        }
        back.retain(|t| t.amount != 0);
        back
    }

    /// Debits `amount` from the WALLET (or COMMERCE) account to `to`, taking lots in FIFO
    /// order. Below what the lots cover, the wallet may go into overdraft only when
    /// `allow_overdraft` and the points type's limit allow it.
    #[allow(clippy::too_many_arguments)]
    pub async fn debit_fifo(
        &mut self,
        txn: &DatabaseTransaction,
        kind: PostingKind,
        from: AccountKind,
        to: AccountRef,
        amount: i64,
        note: &Note,
        allow_overdraft: bool,
        payable_only: bool,
    ) -> Result<Posting, ApiError> {
        let from_ref = self.ensure_account(txn, from).await?;
        let lots = self.lots_of(from);
        let debt = if from == AccountKind::Wallet {
            self.wallet_account().debt
        } else {
            0
        };
        let in_lots = lot_rules::spendable(&lots, self.now);
        let available = in_lots - debt;
        if amount > available {
            let limit = if allow_overdraft && from == AccountKind::Wallet && !payable_only {
                self.rules.overdraft_limit
            } else {
                0
            };
            if amount - available > limit {
                return Err(insufficient(available.max(0), amount));
            }
        }
        // Lots cover what they can; the rest becomes (more) overdraft debt. The invariant is
        // balance = sum of lots' remaining - debt.
        let (takes, short) =
            lot_rules::take_fifo(&lots, amount.min(in_lots), self.now, payable_only);
        let covered = amount.min(in_lots) - short;
        if payable_only && covered < amount {
            return Err(insufficient(covered, amount));
        }
        if covered < amount {
            self.mark_debt(debt + amount - covered);
        }
        self.post(txn, kind, from_ref, to, amount, note, None, takes)
            .await
    }

    /// Whether spending is blocked on this wallet, and why.
    pub async fn block(&self, conn: &impl ConnectionTrait) -> Result<Option<String>, ApiError> {
        match &self.block_reason {
            Some(loaded) => Ok(loaded.clone()),
            None => spending_block(conn, self.partner_id, self.customer_id, self.ty.id).await,
        }
    }

    /// Refuses spending when blocked or when the type cannot be spent.
    pub async fn check_can_spend(&self, conn: &impl ConnectionTrait) -> Result<(), ApiError> {
        if !self.ty.spendable {
            return Err(ApiError::precondition(
                "POINTS_TYPE_NOT_SPENDABLE",
                format!("points of type {:?} cannot be spent", self.ty.code),
            ));
        }
        if let Some(reason) = self.block(conn).await? {
            return Err(ApiError::precondition(
                "BLOCKED_FROM_SPENDING",
                format!("the customer is blocked from spending: {reason}"),
            ));
        }
        Ok(())
    }

    /// Settles a held reservation: captures `capture` of it (to redemption) and releases the
    /// rest back to the lots it came from, in reverse order of taking.
    pub async fn settle_reservation(
        &mut self,
        txn: &DatabaseTransaction,
        r: reservations::Model,
        capture: i64,
        state: ReservationState,
        note: &Note,
    ) -> Result<reservations::Model, ApiError> {
        let reserved = self.ensure_account(txn, AccountKind::Reserved).await?;
        let wallet = self
            .account_ref(AccountKind::Wallet)
            .expect("locked wallet");
        let note = Note {
            reservation_id: Some(r.id),
            ..note.clone()
        };
        if capture > 0 {
            let redemption = self.system(txn, AccountKind::Redemption).await?;
            let capture_note = Note {
                cause: note.cause.or(Some(Cause::Purchase)),
                reason: if note.reason.trim().is_empty() {
                    "capture".to_owned()
                } else {
                    note.reason.clone()
                },
                reference: if note.reference.is_empty() {
                    r.reference.clone()
                } else {
                    note.reference.clone()
                },
                ..note.clone()
            };
            self.post(
                txn,
                PostingKind::Capture,
                reserved,
                redemption,
                capture,
                &capture_note,
                None,
                Vec::new(),
            )
            .await?;
        }
        let rest = r.amount - capture;
        if rest > 0 {
            let given_back = allocations_of(txn, r.reserve_posting_id).await?;
            let returned = give_back(&given_back, rest);
            let returned = self.pay_debt_from_give_backs(returned);
            let release_note = Note {
                cause: Some(if state == ReservationState::Expired {
                    Cause::Expiry
                } else {
                    Cause::Other
                }),
                reason: "release".to_owned(),
                reference: r.reference.clone(),
                reservation_id: Some(r.id),
                ..Note::default()
            };
            self.post(
                txn,
                PostingKind::Release,
                reserved,
                wallet,
                rest,
                &release_note,
                None,
                returned,
            )
            .await?;
        }
        let settled = reservations::Model {
            captured_amount: capture,
            state: state.as_str().to_owned(),
            settled_at: Some(self.now),
            ..r
        };
        reservations::Entity::update(reservations::ActiveModel {
            id: Set(settled.id),
            captured_amount: Set(settled.captured_amount),
            state: Set(settled.state.clone()),
            settled_at: Set(settled.settled_at),
            ..Default::default()
        })
        .exec(txn)
        .await?;
        Ok(settled)
    }
}

impl Wallet {
    /// A wallet read without locking (balances for reading only).
    pub async fn read(
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        ty: &TypeRow,
        customer_id: Uuid,
        now: DateTime<Utc>,
        customer_accounts: &[accounts::Model],
    ) -> Result<Wallet, ApiError> {
        let mut by_kind = BTreeMap::new();
        for a in customer_accounts
            .iter()
            .filter(|a| a.points_type_id == ty.id && a.customer_id == customer_id)
        {
            if let Some(k) = AccountKind::parse_str(&a.kind) {
                by_kind.insert(k.as_str(), a.clone());
            }
        }
        let wallet = match by_kind.get(AccountKind::Wallet.as_str()) {
            Some(a) => a.clone(),
            // An empty wallet: never written, so never created.
            None => accounts::Model {
                id: Uuid::nil(),
                partner_id,
                points_type_id: ty.id,
                customer_id,
                kind: AccountKind::Wallet.as_str().to_owned(),
                balance: 0,
                debt: 0,
                lifetime_credited: 0,
                created_at: now,
                updated_at: now,
            },
        };
        by_kind.insert(AccountKind::Wallet.as_str(), wallet);
        let ids: Vec<Uuid> = by_kind
            .iter()
            .filter(|(k, a)| **k != AccountKind::Reserved.as_str() && a.id != Uuid::nil())
            .map(|(_, a)| a.id)
            .collect();
        let open_lots = if ids.is_empty() {
            Vec::new()
        } else {
            lots::Entity::find()
                .filter(lots::Column::AccountId.is_in(ids))
                .filter(lots::Column::RemainingAmount.gt(0))
                .all(conn)
                .await?
        };
        let w = Wallet {
            rules: rules_of(ty),
            ty: ty.clone(),
            customer_id,
            partner_id,
            accounts: by_kind,
            lots: open_lots,
            changed_accounts: Vec::new(),
            now,
            operation_id: Uuid::nil(),
            postings: Vec::new(),
            block_reason: None,
            type_reloaded: false,
        };
        Ok(w)
    }

    /// Reloads the open lots (after another wallet's postings created lots here).
    pub async fn reload_lots(&mut self, conn: &impl ConnectionTrait) -> Result<(), ApiError> {
        let ids: Vec<Uuid> = self
            .accounts
            .iter()
            .filter(|(k, _)| **k != AccountKind::Reserved.as_str())
            .map(|(_, a)| a.id)
            .collect();
        self.lots = lots::Entity::find()
            .filter(lots::Column::AccountId.is_in(ids))
            .filter(lots::Column::RemainingAmount.gt(0))
            .all(conn)
            .await?;
        Ok(())
    }

    /// Debits `amount` taking the lot `own_lot` first (a reversed award takes back its own
    /// points), then the other lots FIFO; overdraft as the type allows.
    #[allow(clippy::too_many_arguments)]
    pub async fn debit_own_lot_first(
        &mut self,
        txn: &DatabaseTransaction,
        kind: PostingKind,
        from: AccountKind,
        to: AccountRef,
        amount: i64,
        note: &Note,
        own_lot: Option<Uuid>,
    ) -> Result<Posting, ApiError> {
        let own = own_lot
            .and_then(|id| self.lots.iter().find(|l| l.id == id))
            .filter(|l| l.expired_at.is_none() && !lot_view(l).is_expired(self.now))
            .map(|l| (l.id, l.remaining_amount.min(amount)))
            .filter(|(_, a)| *a > 0);
        let Some((lot_id, first)) = own else {
            return self
                .debit_fifo(txn, kind, from, to, amount, note, true, false)
                .await;
        };
        let from_ref = self.ensure_account(txn, from).await?;
        let rest = amount - first;
        // The rest comes from the other lots, FIFO, then overdraft.
        let others: Vec<Lot> = self
            .lots_of(from)
            .into_iter()
            .filter(|l| l.id != lot_id)
            .collect();
        let debt = if from == AccountKind::Wallet {
            self.wallet_account().debt
        } else {
            0
        };
        let in_others = lot_rules::spendable(&others, self.now);
        let covered_by_others = rest.min(in_others);
        let short = rest - covered_by_others;
        let rest_available = in_others - debt;
        // Only the WALLET may go into overdraft: a debt is kept on it alone.
        let limit = if from == AccountKind::Wallet {
            self.rules.overdraft_limit
        } else {
            0
        };
        if rest > rest_available && rest - rest_available > limit {
            return Err(insufficient((first + rest_available).max(0), amount));
        }
        if short > 0 {
            self.mark_debt(debt + short);
        }
        let (mut takes, _) = lot_rules::take_fifo(&others, covered_by_others, self.now, false);
        takes.insert(
            0,
            Take {
                lot_id,
                amount: first,
            },
        );
        self.post(txn, kind, from_ref, to, amount, note, None, takes)
            .await
    }

    /// Credits `amount` back to the lots in `back` (negative takes summing to -amount).
    #[allow(clippy::too_many_arguments)]
    pub async fn credit_back(
        &mut self,
        txn: &DatabaseTransaction,
        kind: PostingKind,
        from: AccountRef,
        to: AccountKind,
        amount: i64,
        note: &Note,
        back: Vec<Take>,
    ) -> Result<Posting, ApiError> {
        let to = self.ensure_account(txn, to).await?;
        let back = if to.kind == AccountKind::Wallet {
            self.pay_debt_from_give_backs(back)
        } else {
            back
        };
        self.post(txn, kind, from, to, amount, note, None, back)
            .await
    }

    /// Moves `amount` of this wallet's spendable lots (FIFO) to `receiver`, one posting per
    /// lot, each creating a lot with the same release and expiry there.
    #[allow(clippy::too_many_arguments)]
    pub async fn move_lots_to(
        &mut self,
        txn: &DatabaseTransaction,
        kind: PostingKind,
        receiver: &mut Wallet,
        to: AccountRef,
        amount: i64,
        note: &Note,
        include_pending: bool,
    ) -> Result<(), ApiError> {
        let lots = self.lots_of(AccountKind::Wallet);
        let available = self.available();
        if amount > available && !include_pending {
            return Err(insufficient(available.max(0), amount));
        }
        let (takes, short) = lot_rules::take_fifo(&lots, amount, self.now, false);
        if short > 0 {
            return Err(insufficient(amount - short, amount));
        }
        let from = self
            .account_ref(AccountKind::Wallet)
            .expect("locked wallet");
        for t in takes {
            let src = self
                .lots
                .iter()
                .find(|l| l.id == t.lot_id)
                .cloned()
                .expect("taken lot is loaded");
            let lot = NewLot {
                release_at: src.release_at.filter(|r| *r > self.now),
                expire_at: src.expire_at,
                payable: src.payable,
            };
            let p = self
                .post(txn, kind, from, to, t.amount, note, Some(lot), vec![t])
                .await?;
            receiver.apply_balance(&to, t.amount);
            if to.kind == AccountKind::Wallet {
                let (lot_id, _) = p.lot.clone().expect("a moved lot");
                if let Some(paid) = receiver
                    .pay_debt_from_lot(txn, p.id, lot_id, t.amount)
                    .await?
                    && let Some(last) = self.postings.last_mut()
                {
                    last.allocations.push(paid);
                }
            }
        }
        Ok(())
    }

    /// Moves `amount` from this wallet's `from` lots (FIFO) to its own account `to` (CRM.COM
    /// redeem: commerce → open), one posting per lot, keeping each lot's validity.
    pub async fn move_own_lots(
        &mut self,
        txn: &DatabaseTransaction,
        kind: PostingKind,
        from: AccountKind,
        to: AccountRef,
        amount: i64,
        note: &Note,
    ) -> Result<(), ApiError> {
        let lots = self.lots_of(from);
        let (takes, short) = lot_rules::take_fifo(&lots, amount, self.now, false);
        if short > 0 {
            return Err(insufficient(amount - short, amount));
        }
        let from_ref = self.account_ref(from).expect("account with lots is loaded");
        for t in takes {
            let src = self
                .lots
                .iter()
                .find(|l| l.id == t.lot_id)
                .cloned()
                .expect("taken lot is loaded");
            let lot = NewLot {
                release_at: None,
                expire_at: src.expire_at,
                payable: src.payable,
            };
            let p = self
                .post(txn, kind, from_ref, to, t.amount, note, Some(lot), vec![t])
                .await?;
            if to.kind == AccountKind::Wallet {
                let (lot_id, _) = p.lot.clone().expect("a moved lot");
                if let Some(paid) = self.pay_debt_from_lot(txn, p.id, lot_id, t.amount).await?
                    && let Some(last) = self.postings.last_mut()
                {
                    last.allocations.push(paid);
                }
            }
        }
        Ok(())
    }
}

impl Wallet {
    /// Moves everything this wallet holds to `receiver` (identity merged the customers):
    /// held reservations are released first, then every lot with points left, pending and
    /// commerce ones included, moves with its release, expiry and payability, and an
    /// overdraft debt moves as a debt. Applying it to an emptied wallet moves nothing.
    pub async fn merge_into(
        &mut self,
        txn: &DatabaseTransaction,
        receiver: &mut Wallet,
    ) -> Result<usize, ApiError> {
        let held = reservations::Entity::find()
            .filter(reservations::Column::PartnerId.eq(self.partner_id))
            .filter(reservations::Column::CustomerId.eq(self.customer_id))
            .filter(reservations::Column::PointsTypeId.eq(self.ty.id))
            .filter(reservations::Column::State.eq(ReservationState::Held.as_str()))
            .all(txn)
            .await?;
        for r in held {
            self.settle_reservation(txn, r, 0, ReservationState::Released, &Note::default())
                .await?;
        }
        let note = Note {
            cause: Some(Cause::Merge),
            reason: "merge".to_owned(),
            reference: format!("merge:{}:{}", self.customer_id, receiver.customer_id),
            ..Note::default()
        };
        let mut moved = 0;
        for kind in [AccountKind::Wallet, AccountKind::Commerce] {
            let Some(from) = self.account_ref(kind) else {
                continue;
            };
            let open: Vec<lots::Model> = self
                .lots
                .iter()
                .filter(|l| l.account_id == from.id && l.remaining_amount > 0)
                .cloned()
                .collect();
            if open.is_empty() {
                continue;
            }
            let to = receiver.ensure_account(txn, kind).await?;
            for l in open {
                let lot = NewLot {
                    release_at: l.release_at,
                    expire_at: l.expire_at,
                    payable: l.payable,
                };
                let take = vec![Take {
                    lot_id: l.id,
                    amount: l.remaining_amount,
                }];
                let p = self
                    .post(
                        txn,
                        PostingKind::Merge,
                        from,
                        to,
                        l.remaining_amount,
                        &note,
                        Some(lot),
                        take,
                    )
                    .await?;
                receiver.apply_balance(&to, l.remaining_amount);
                if kind == AccountKind::Wallet {
                    let (lot_id, _) = p.lot.clone().expect("a moved lot");
                    receiver
                        .pay_debt_from_lot(txn, p.id, lot_id, l.remaining_amount)
                        .await?;
                }
                moved += 1;
            }
        }
        let debt = self
            .account(AccountKind::Wallet)
            .map(|a| a.debt)
            .unwrap_or(0);
        if debt > 0 {
            let from = receiver.ensure_account(txn, AccountKind::Wallet).await?;
            let to = self
                .account_ref(AccountKind::Wallet)
                .expect("locked wallet");
            // The survivor's available points pay the debt as they would pay its own; what
            // they cannot cover stays a debt.
            receiver.reload_lots(txn).await?;
            let (takes, short) = lot_rules::take_fifo(
                &receiver.lots_of(AccountKind::Wallet),
                debt,
                receiver.now,
                false,
            );
            receiver
                .post(txn, PostingKind::Merge, from, to, debt, &note, None, takes)
                .await?;
            self.apply_balance(&to, debt);
            let receiver_debt = receiver.wallet_account().debt;
            receiver.mark_debt(receiver_debt + short);
            self.mark_debt(0);
        }
        receiver.reload_lots(txn).await?;
        Ok(moved)
    }
}

/// The allocations a posting made, in the order it took them.
pub async fn allocations_of(
    conn: &impl ConnectionTrait,
    posting_id: Uuid,
) -> Result<Vec<Take>, ApiError> {
    let takes = allocations::Entity::find()
        .filter(allocations::Column::PostingId.eq(posting_id))
        .all(conn)
        .await?
        .into_iter()
        .map(|a| Take {
            lot_id: a.lot_id,
            amount: a.amount,
        })
        .collect();
    in_fifo_order(conn, takes).await
}

/// Sorts takes by their lots' FIFO order, the order debits take lots in. The table keeps no
/// order of its own (an index scan returns rows by lot id, i.e. by creation), and give-backs
/// must return points to the latest-expiring lots first.
pub async fn in_fifo_order(
    conn: &impl ConnectionTrait,
    mut takes: Vec<Take>,
) -> Result<Vec<Take>, ApiError> {
    if takes.len() < 2 {
        return Ok(takes);
    }
    let mut ids: Vec<Uuid> = takes.iter().map(|t| t.lot_id).collect();
    ids.sort();
    ids.dedup();
    let by_id: HashMap<Uuid, Lot> = lots::Entity::find()
        .filter(lots::Column::Id.is_in(ids))
        .all(conn)
        .await?
        .iter()
        .map(|l| (l.id, lot_view(l)))
        .collect();
    takes.sort_by(|a, b| match (by_id.get(&a.lot_id), by_id.get(&b.lot_id)) {
        (Some(x), Some(y)) => lot_rules::fifo(x, y),
        _ => a.lot_id.cmp(&b.lot_id),
    });
    Ok(takes)
}

/// Negative takes returning `amount` to the lots of `taken`, latest-expiring first (so the
/// points most at risk of expiring are the ones given back last).
pub fn give_back(taken: &[Take], amount: i64) -> Vec<Take> {
    let mut left = amount;
    let mut out = Vec::new();
    for t in taken.iter().rev() {
        if left == 0 {
            break;
        }
        if t.amount <= 0 {
            continue;
        }
        let a = t.amount.min(left);
        out.push(Take {
            lot_id: t.lot_id,
            amount: -a,
        });
        left -= a;
    }
    out
}

/// Why spending is blocked on (customer, type), if it is: a block on the type or on all.
pub async fn spending_block(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    points_type_id: Uuid,
) -> Result<Option<String>, ApiError> {
    Ok(blocks::Entity::find()
        .filter(blocks::Column::PartnerId.eq(partner_id))
        .filter(blocks::Column::CustomerId.eq(customer_id))
        .filter(blocks::Column::PointsTypeId.is_in([points_type_id, Uuid::nil()]))
        .order_by_asc(blocks::Column::CreatedAt)
        .one(conn)
        .await?
        .map(|b| b.reason))
}

async fn insert_posting(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    p: &Posting,
) -> Result<(), ApiError> {
    postings::Entity::insert(postings::ActiveModel {
        id: Set(p.id),
        partner_id: Set(partner_id),
        operation_id: Set(p.operation_id),
        points_type_id: Set(p.points_type_id),
        kind: Set(p.kind.as_str().to_owned()),
        cause: Set(p.cause.as_str().to_owned()),
        debit_account_id: Set(p.debit.id),
        credit_account_id: Set(p.credit.id),
        debit_customer_id: Set(p.debit.customer_id),
        credit_customer_id: Set(p.credit.customer_id),
        amount: Set(p.amount),
        lot_id: Set(p.lot.as_ref().map(|(id, _)| *id)),
        reversed_posting_id: Set(p.reversed_posting_id),
        reservation_id: Set(p.reservation_id),
        reason: Set(p.reason.clone()),
        reference: Set(p.reference.clone()),
        business_unit_id: Set(p.business_unit_id),
        payment_method_reference: Set(p.payment_method_reference.clone()),
        created_at: Set(p.created_at),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

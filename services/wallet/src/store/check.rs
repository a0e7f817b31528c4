//! The trial balance: proves from the tables that every customer account's stored balance
//! equals the sum of its postings (and of its lots, less overdraft), that every lot's
//! remaining amount equals its original amount less what postings took from it, that held
//! reservations equal the reserved balances, that no balance is below what its type allows,
//! that every posting moves between accounts of its own partner and type, and that each
//! type's accounts sum to zero.
use std::collections::BTreeMap;

use loyalty_platform::ApiError;
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};
use uuid::Uuid;

use crate::domain::AccountKind;

#[derive(Debug, Clone)]
pub struct AccountCheck {
    pub points_type_id: Uuid,
    pub kind: AccountKind,
    pub customer_id: Option<Uuid>,
    pub stored: i64,
    pub derived: i64,
}

#[derive(Debug, Clone, Default)]
pub struct TypeTotal {
    pub points_type_id: Uuid,
    pub code: String,
    pub postings: i64,
    pub debits: i64,
    pub credits: i64,
    pub net: i64,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub totals: Vec<TypeTotal>,
    /// System accounts, plus customer accounts that disagree (all of them with a customer
    /// filter).
    pub accounts: Vec<AccountCheck>,
    pub discrepancies: Vec<String>,
    pub checked_accounts: i64,
    pub checked_lots: i64,
}

impl Report {
    pub fn balanced(&self) -> bool {
        self.discrepancies.is_empty()
    }
}

/// Builds a statement with `$n` placeholders for PostgreSQL and `?` for SQLite; every
/// placeholder appears once, in order.
fn stmt(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = if backend == DbBackend::Sqlite {
        let mut out = String::with_capacity(sql.len());
        let mut chars = sql.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                while chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                    chars.next();
                }
                out.push('?');
            } else {
                out.push(c);
            }
        }
        out
    } else {
        sql.to_owned()
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// The filter of one query: `alias.partner_id = $n AND alias.points_type_id = $n ...`.
fn filter(
    alias: &str,
    partner_id: Option<Uuid>,
    points_type_id: Option<Uuid>,
    customer_col: Option<(&str, Uuid)>,
    values: &mut Vec<Value>,
) -> String {
    let mut parts = vec!["1 = 1".to_owned()];
    if let Some(p) = partner_id {
        values.push(p.into());
        parts.push(format!("{alias}.partner_id = ${}", values.len()));
    }
    if let Some(t) = points_type_id {
        values.push(t.into());
        parts.push(format!("{alias}.points_type_id = ${}", values.len()));
    }
    if let Some((col, c)) = customer_col {
        values.push(c.into());
        parts.push(format!("{alias}.{col} = ${}", values.len()));
    }
    parts.join(" AND ")
}

pub async fn trial_balance(
    conn: &impl ConnectionTrait,
    partner_id: Option<Uuid>,
    points_type_id: Option<Uuid>,
    customer_id: Option<Uuid>,
) -> Result<Report, ApiError> {
    let backend = conn.get_database_backend();
    let mut report = Report::default();

    // Per type: postings, and every account's derived balance (all accounts, so the type's
    // sum is over the whole ledger even when one customer is checked).
    let mut values = Vec::new();
    let f = filter("t", partner_id, points_type_id, None, &mut values);
    let types = conn
        .query_all(stmt(
            backend,
            &format!(
                "SELECT t.id, t.code, t.overdraft_limit, \
                 CAST((SELECT COUNT(*) FROM ledger_postings p WHERE p.points_type_id = t.id) AS BIGINT) AS n, \
                 CAST((SELECT COALESCE(SUM(p.amount), 0) FROM ledger_postings p WHERE p.points_type_id = t.id) AS BIGINT) AS total \
                 FROM points_types t WHERE {f} ORDER BY t.code"
            ),
            values,
        ))
        .await?;
    let mut limits = BTreeMap::new();
    for row in types {
        let id: Uuid = row.try_get("", "id")?;
        let total: i64 = row.try_get("", "total")?;
        limits.insert(id, row.try_get::<i64>("", "overdraft_limit")?);
        report.totals.push(TypeTotal {
            points_type_id: id,
            code: row.try_get("", "code")?,
            postings: row.try_get("", "n")?,
            debits: total,
            credits: total,
            net: 0,
        });
    }

    // Accounts with derived balances.
    let mut values = Vec::new();
    let f = filter("a", partner_id, points_type_id, None, &mut values);
    let customer_clause = match customer_id {
        Some(c) => {
            values.push(c.into());
            values.push(Uuid::nil().into());
            format!(
                " AND (a.customer_id = ${} OR a.customer_id = ${})",
                values.len() - 1,
                values.len()
            )
        }
        None => String::new(),
    };
    let rows = conn
        .query_all(stmt(
            backend,
            &format!(
                "SELECT a.id, a.points_type_id, a.customer_id, a.kind, a.balance, a.debt, \
                 CAST(COALESCE((SELECT SUM(p.amount) FROM ledger_postings p WHERE p.credit_account_id = a.id), 0) \
                 - COALESCE((SELECT SUM(p.amount) FROM ledger_postings p WHERE p.debit_account_id = a.id), 0) AS BIGINT) AS derived, \
                 CAST(COALESCE((SELECT SUM(l.remaining_amount) FROM points_lots l WHERE l.account_id = a.id), 0) AS BIGINT) AS in_lots, \
                 CAST(COALESCE((SELECT SUM(r.amount) FROM reservations r WHERE r.partner_id = a.partner_id \
                   AND r.customer_id = a.customer_id AND r.points_type_id = a.points_type_id AND r.state = 'held'), 0) AS BIGINT) AS held \
                 FROM ledger_accounts a WHERE {f}{customer_clause}"
            ),
            values,
        ))
        .await?;
    let mut net_by_type: BTreeMap<Uuid, i64> = BTreeMap::new();
    for row in rows {
        let type_id: Uuid = row.try_get("", "points_type_id")?;
        let customer: Uuid = row.try_get("", "customer_id")?;
        let kind_name: String = row.try_get("", "kind")?;
        let Some(kind) = AccountKind::parse_str(&kind_name) else {
            report.discrepancies.push(format!(
                "account {} has unknown kind {kind_name:?}",
                row.try_get::<Uuid>("", "id")?
            ));
            continue;
        };
        let stored: i64 = row.try_get("", "balance")?;
        let debt: i64 = row.try_get("", "debt")?;
        let derived: i64 = row.try_get("", "derived")?;
        let in_lots: i64 = row.try_get("", "in_lots")?;
        let held: i64 = row.try_get("", "held")?;
        *net_by_type.entry(type_id).or_default() += derived;
        let check = AccountCheck {
            points_type_id: type_id,
            kind,
            customer_id: (!customer.is_nil()).then_some(customer),
            stored: if kind.is_customer() { stored } else { derived },
            derived,
        };
        if !kind.is_customer() {
            report.accounts.push(check);
            continue;
        }
        report.checked_accounts += 1;
        let who = format!(
            "{} account of customer {customer} (type {type_id})",
            kind.as_str()
        );
        let before = report.discrepancies.len();
        if stored != derived {
            report.discrepancies.push(format!(
                "{who}: stored balance {stored} but postings sum to {derived}"
            ));
        }
        match kind {
            AccountKind::Wallet | AccountKind::Commerce => {
                if stored != in_lots - debt {
                    report.discrepancies.push(format!(
                        "{who}: balance {stored} but lots hold {in_lots} less debt {debt}"
                    ));
                }
                // Only a WALLET of a type with an overdraft limit may go below zero. Not
                // bounded by the limit itself: merging two overdrawn customers adds their
                // debts, and a limit may be lowered after it was used; spending is refused
                // until such a debt is paid off.
                let overdraft =
                    kind == AccountKind::Wallet && limits.get(&type_id).copied().unwrap_or(0) > 0;
                if stored < 0 && !overdraft {
                    report
                        .discrepancies
                        .push(format!("{who}: balance {stored} is below 0"));
                }
            }
            AccountKind::Reserved if stored != held => {
                report.discrepancies.push(format!(
                    "{who}: balance {stored} but held reservations total {held}"
                ));
            }
            _ => {}
        }
        if customer_id.is_some() || report.discrepancies.len() > before {
            report.accounts.push(check);
        }
    }
    for t in &mut report.totals {
        t.net = net_by_type.get(&t.points_type_id).copied().unwrap_or(0);
        if t.net != 0 {
            report.discrepancies.push(format!(
                "points type {}: accounts sum to {} instead of 0",
                t.code, t.net
            ));
        }
    }

    // Postings between accounts of another partner or type, or of no account at all.
    let mut values = Vec::new();
    let f = filter("p", partner_id, points_type_id, None, &mut values);
    let stray = conn
        .query_one(stmt(
            backend,
            &format!(
                "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM ledger_postings p \
                 LEFT JOIN ledger_accounts d ON d.id = p.debit_account_id \
                 LEFT JOIN ledger_accounts c ON c.id = p.credit_account_id \
                 WHERE {f} AND (d.id IS NULL OR c.id IS NULL OR d.points_type_id <> p.points_type_id \
                 OR c.points_type_id <> p.points_type_id OR d.partner_id <> p.partner_id \
                 OR c.partner_id <> p.partner_id OR p.debit_account_id = p.credit_account_id OR p.amount <= 0)"
            ),
            values,
        ))
        .await?
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
    if stray > 0 {
        report.discrepancies.push(format!(
            "{stray} postings do not move a positive amount between two accounts of their partner and type"
        ));
    }

    // Lots against their allocations.
    let mut values = Vec::new();
    let f = filter(
        "l",
        partner_id,
        points_type_id,
        customer_id.map(|c| ("customer_id", c)),
        &mut values,
    );
    let lots = conn
        .query_all(stmt(
            backend,
            &format!(
                "SELECT l.id, l.original_amount, l.remaining_amount, \
                 CAST(COALESCE((SELECT SUM(x.amount) FROM lot_allocations x WHERE x.lot_id = l.id), 0) AS BIGINT) AS taken \
                 FROM points_lots l WHERE {f}"
            ),
            values,
        ))
        .await?;
    for row in lots {
        report.checked_lots += 1;
        let original: i64 = row.try_get("", "original_amount")?;
        let remaining: i64 = row.try_get("", "remaining_amount")?;
        let taken: i64 = row.try_get("", "taken")?;
        if remaining != original - taken || remaining < 0 || remaining > original {
            report.discrepancies.push(format!(
                "lot {}: remaining {remaining} but {original} awarded less {taken} taken",
                row.try_get::<Uuid>("", "id")?
            ));
        }
    }
    Ok(report)
}

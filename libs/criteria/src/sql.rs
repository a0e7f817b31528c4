//! Compiling a criterion to one set-based SQL statement over a table of customer facts.
//!
//! The in-memory evaluator ([`Criterion::evaluate`]) decides one customer; the compiled
//! statement selects every customer of a partner at once and returns exactly the customers
//! the evaluator would admit. The library knows no service's table: the caller describes
//! where each field is stored with a [`SqlTarget`].
//!
//! # How facts are stored
//!
//! * An integer fact (`features.purchase_count`) is an integer column ([`Column::Int`]).
//! * `features.last_purchase_days_ago` is a timestamp column ([`Column::DaysBefore`]); the
//!   whole days between it and `now` are compared by turning the day bounds into timestamp
//!   bounds computed here from `now`, so the database does no date arithmetic.
//! * A list fact (`customer.interest_ids`) is a JSON array of lower-cased elements
//!   ([`Column::List`]), matched with `@>` on PostgreSQL and `json_each` on SQLite.
//! * A string fact (customer attributes and properties) is stored in its *search form*
//!   ([`search_form`]) under a key of a JSON column ([`Column::Text`]):
//!   `{"t": <lower-cased text>, "i": <integer, when the text parses as one>, "b": <boolean,
//!   when it reads true/false>}`. The search form is computed by the same functions the
//!   in-memory evaluator uses (Unicode lower-casing, trimmed integer and boolean parsing), so
//!   the database never lower-cases or parses and both evaluators agree whatever the
//!   database's locale.
//!
//! # What the SQL looks like
//!
//! Every condition compiles to `COALESCE(<comparison>, FALSE)`, so SQL's three-valued logic
//! never leaks: `NOT` and the groups then behave exactly like their Rust counterparts, and a
//! missing fact (SQL `NULL`) is false except for `NOT_EQUAL`, which compiles to
//! `NOT COALESCE(<equal>, FALSE)` ("missing or different" is "not present-and-equal"). Every literal, JSON key and timestamp is
//! a bind parameter; only the caller's table and column names (checked to be
//! `[a-z_][a-z0-9_]*`) are written into the text.
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use uuid::Uuid;

use crate::condition::{fold, parse_bool, parse_int};
use crate::purchases::{Measure, Window};
use crate::{Condition, Criterion, Field, Operator, Value};

/// The SQL dialect to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL: `$n` parameters, `jsonb`/`json` operators, timestamps in microseconds.
    Postgres,
    /// SQLite: `?` parameters, `json_extract`, timestamps as RFC 3339 text (as sqlx writes
    /// them), compared as text.
    Sqlite,
}

/// Where a field's fact is stored in the target table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    /// An integer column; `NULL` means the fact is missing.
    Int(&'static str),
    /// A timestamp column whose fact is the whole days from it to `now`, never negative
    /// (a time after `now` is 0 days ago); `NULL` means the fact is missing.
    DaysBefore(&'static str),
    /// A JSON column holding an object whose member `key` is the fact's [`search_form`];
    /// no member means the fact is missing.
    Text { column: &'static str, key: String },
    /// A JSON array column (`jsonb` on PostgreSQL) of a list fact's elements, lower-cased,
    /// without empty or duplicate ones; the fact is always present (`[]` when empty).
    List(&'static str),
    /// A purchase-window field ([`Field::Purchases`]) computed from a table of purchases of
    /// the same partner, joined on the target's id column; its columns are named as in
    /// [`PURCHASE_COLUMNS`]. Each window becomes one aggregated derived table.
    Purchases { table: &'static str },
    /// Like [`Column::DaysBefore`], but the time is the member `key` of a JSON column:
    /// [`time_form`], `{"us": <microseconds since the Unix epoch>}`; no member means the
    /// fact is missing. Stored times must be whole microseconds.
    DaysBeforeMember { column: &'static str, key: String },
    /// Membership of a group: true when `table` has a row with the group's id in
    /// `group_column` and the target row's customer and partner under the target's
    /// `id_column` and `partner_column` names (an `EXISTS`, scoped by partner); never missing.
    Membership {
        table: &'static str,
        group_column: &'static str,
        group_id: Uuid,
    },
}

/// The columns a [`Column::Purchases`] table has: `partner_id`, `customer_id`,
/// `purchased_at` (timestamp), `net_amount_minor`, `returned_amount_minor` (integers),
/// `product_ids`, `product_group_ids`, `brand_ids` (JSON arrays of lower-cased ids, `jsonb`
/// on PostgreSQL) and `business_unit_id` (lower-cased text, empty when unknown).
pub const PURCHASE_COLUMNS: [&str; 9] = [
    "partner_id",
    "customer_id",
    "purchased_at",
    "net_amount_minor",
    "returned_amount_minor",
    "product_ids",
    "product_group_ids",
    "brand_ids",
    "business_unit_id",
];

/// The table a criterion is compiled against.
pub struct SqlTarget<'a> {
    pub dialect: Dialect,
    /// The table, e.g. `customer_features`.
    pub table: &'static str,
    /// The column selected, e.g. `customer_id`.
    pub id_column: &'static str,
    /// The tenant column every statement is scoped by, e.g. `partner_id`.
    pub partner_column: &'static str,
    /// Where each field is stored; `None` for a field the table does not hold.
    pub columns: &'a dyn Fn(&Field) -> Option<Column>,
}

/// A half-open range `[start, end)` of customer ids (`None`: unbounded on that side), for
/// callers splitting one selection into slices that run in parallel: the slices of a
/// partition of the id space select exactly what the whole statement selects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdRange {
    pub start: Option<Uuid>,
    pub end: Option<Uuid>,
}

/// A bind parameter of a compiled statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlValue {
    Text(String),
    Int(i64),
    Bool(bool),
    Timestamp(DateTime<Utc>),
    Uuid(Uuid),
}

/// A statement and its parameters, in placeholder order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlStatement {
    pub sql: String,
    pub values: Vec<SqlValue>,
}

/// Why a criterion cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// The criterion reads the current cart, which exists only at checkout (online
    /// recalculation); such criteria are evaluated in memory.
    #[error("{0} reads the current cart, which only online recalculation knows")]
    OnlineOnly(String),
    /// The target does not store the field.
    #[error("{0} is not stored in the target table")]
    Unmapped(String),
    /// A table or column name the caller gave is not a plain identifier.
    #[error("{0:?} is not a plain SQL identifier ([a-z_][a-z0-9_]*)")]
    Identifier(String),
    /// A purchase field needs the joins only a whole statement ([`Criterion::to_sql`]) has.
    #[error("{0} reads purchases, which only a whole statement (to_sql) joins")]
    NeedsJoin(String),
}

/// The bind parameters of a statement being written, with the dialect's placeholders.
#[derive(Debug)]
pub struct SqlParams {
    dialect: Dialect,
    values: Vec<SqlValue>,
}

impl SqlParams {
    pub fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            values: Vec::new(),
        }
    }

    /// Adds a parameter and returns its placeholder (`$3`, or `?`); placeholders must appear
    /// in the text in the order they were pushed.
    pub fn push(&mut self, v: SqlValue) -> String {
        self.values.push(v);
        match self.dialect {
            Dialect::Postgres => format!("${}", self.values.len()),
            Dialect::Sqlite => "?".to_owned(),
        }
    }

    pub fn into_values(self) -> Vec<SqlValue> {
        self.values
    }
}

/// The search form of a string fact: what a [`Column::Text`] member holds.
///
/// ```
/// use loyalty_criteria::sql::search_form;
/// assert_eq!(search_form(" 7 "), serde_json::json!({"t": " 7 ", "i": 7}));
/// assert_eq!(search_form("ŽLUŤÁ"), serde_json::json!({"t": "žluťá"}));
/// assert_eq!(search_form("TRUE"), serde_json::json!({"t": "true", "b": true}));
/// ```
pub fn search_form(s: &str) -> serde_json::Value {
    let mut form = serde_json::Map::new();
    form.insert("t".into(), fold(s).into());
    if let Some(i) = parse_int(s) {
        form.insert("i".into(), i.into());
    }
    if let Some(b) = parse_bool(s) {
        form.insert("b".into(), b.into());
    }
    serde_json::Value::Object(form)
}

/// The form of a time read by a [`Column::DaysBeforeMember`]: `{"us": <microseconds since
/// the Unix epoch>}` (sub-microseconds are dropped: callers store whole microseconds).
///
/// ```
/// use loyalty_criteria::sql::time_form;
/// let t = chrono::DateTime::from_timestamp(1, 2_000).unwrap();
/// assert_eq!(time_form(t), serde_json::json!({"us": 1_000_002}));
/// ```
pub fn time_form(at: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({ "us": at.timestamp_micros() })
}

/// Earliest and latest times a [`Column::DaysBefore`] bound is written as; a bound outside
/// is "before/after every stored time". Stored times must lie within (years 1..=9999).
fn time_range() -> (DateTime<Utc>, DateTime<Utc>) {
    let min = DateTime::parse_from_rfc3339("0001-01-01T00:00:00Z").expect("valid");
    let max = DateTime::parse_from_rfc3339("9999-12-31T23:59:59.999999999Z").expect("valid");
    (min.to_utc(), max.to_utc())
}

/// ` AND <id> >= <start> AND <id> < <end>` for the bounds `range` has (empty when none).
fn range_filter(id: &str, range: IdRange, params: &mut SqlParams) -> String {
    let mut out = String::new();
    if let Some(start) = range.start {
        let p = params.push(SqlValue::Uuid(start));
        out.push_str(&format!(" AND {id} >= {p}"));
    }
    if let Some(end) = range.end {
        let p = params.push(SqlValue::Uuid(end));
        out.push_str(&format!(" AND {id} < {p}"));
    }
    out
}

/// The target's id column, qualified by its table when the statement joins other tables.
fn qualified_id(target: &SqlTarget<'_>, joined: bool) -> Result<String, SqlError> {
    let id = identifier(target.id_column)?;
    Ok(if joined {
        format!("{}.{id}", identifier(target.table)?)
    } else {
        id
    })
}

fn identifier(name: &'static str) -> Result<String, SqlError> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
    if first_ok && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        Ok(format!("\"{name}\""))
    } else {
        Err(SqlError::Identifier(name.to_owned()))
    }
}

const FALSE: &str = "FALSE";
const TRUE: &str = "TRUE";

impl Criterion {
    /// The statement selecting the id of every customer of `partner_id` who fulfils the
    /// criterion at `now`:
    /// `SELECT "<id>" FROM "<table>" WHERE "<partner>" = $1 AND (<criterion>) ORDER BY "<id>"`.
    /// With purchase fields ([`Column::Purchases`]) each window adds a
    /// `LEFT JOIN (SELECT .. FROM <purchases> WHERE partner = .. AND purchased_at > ..
    /// GROUP BY customer_id) AS "pw<i>"` and the target's columns are qualified by its table.
    /// The partner is part of the statement (and of every derived table), so it cannot
    /// return another partner's rows.
    pub fn to_sql(
        &self,
        target: &SqlTarget<'_>,
        partner_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<SqlStatement, SqlError> {
        self.to_sql_in(target, partner_id, now, IdRange::default())
    }

    /// [`Criterion::to_sql`] restricted to the customers whose id lies in `range`. The range
    /// bounds the target table and every purchase window's derived table, so each slice
    /// aggregates only its own customers' purchases.
    pub fn to_sql_in(
        &self,
        target: &SqlTarget<'_>,
        partner_id: Uuid,
        now: DateTime<Utc>,
        range: IdRange,
    ) -> Result<SqlStatement, SqlError> {
        let mut params = SqlParams::new(target.dialect);
        let select = self.select_in(target, partner_id, now, range, &mut params)?;
        let id = qualified_id(target, !plan_windows(self, target)?.is_empty())?;
        Ok(SqlStatement {
            sql: format!("{select} ORDER BY {id}"),
            values: params.into_values(),
        })
    }

    /// [`Criterion::to_sql`] without the `ORDER BY`, its parameters appended to `params`: for
    /// callers using the selection inside their own statement (e.g. `"id" IN (<select>)`),
    /// which purchase fields need, as they cannot be a bare condition.
    pub fn to_sql_select(
        &self,
        target: &SqlTarget<'_>,
        partner_id: Uuid,
        now: DateTime<Utc>,
        params: &mut SqlParams,
    ) -> Result<String, SqlError> {
        self.select_in(target, partner_id, now, IdRange::default(), params)
    }

    fn select_in(
        &self,
        target: &SqlTarget<'_>,
        partner_id: Uuid,
        now: DateTime<Utc>,
        range: IdRange,
        params: &mut SqlParams,
    ) -> Result<String, SqlError> {
        let (table, partner) = (
            identifier(target.table)?,
            identifier(target.partner_column)?,
        );
        let windows = plan_windows(self, target)?;
        if windows.is_empty() {
            let id = qualified_id(target, false)?;
            let p = params.push(SqlValue::Uuid(partner_id));
            let within = range_filter(&id, range, params);
            let condition = self.to_sql_condition(target, now, params)?;
            return Ok(format!(
                "SELECT {id} FROM {table} WHERE {partner} = {p}{within} AND ({condition})"
            ));
        }
        let id = qualified_id(target, true)?;
        // The derived tables come first in the text, so their parameters are pushed first
        // (SQLite's `?` are positional).
        let mut compiler = Compiler {
            target,
            now,
            params,
            windows,
        };
        let joins = compiler.joins(partner_id, range, &id)?;
        let p = compiler.params.push(SqlValue::Uuid(partner_id));
        let within = range_filter(&id, range, compiler.params);
        let condition = compiler.criterion(self)?;
        Ok(format!(
            "SELECT {id} FROM {table}{joins} WHERE {table}.{partner} = {p}{within} AND ({condition})"
        ))
    }

    /// The criterion as a boolean SQL expression over one row of the target table (never
    /// `NULL`), its parameters appended to `params`; for callers composing their own
    /// statement. The caller must scope that statement by partner. Purchase fields need
    /// joins and fail with [`SqlError::NeedsJoin`].
    pub fn to_sql_condition(
        &self,
        target: &SqlTarget<'_>,
        now: DateTime<Utc>,
        params: &mut SqlParams,
    ) -> Result<String, SqlError> {
        Compiler {
            target,
            now,
            params,
            windows: Vec::new(),
        }
        .criterion(self)
    }
}

/// A list condition on purchases, computed per customer as a flag of its window's derived
/// table (whether any purchase in the window matches).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ListMatch {
    measure: Measure,
    operator: Operator,
    /// The values, lower-cased.
    values: Vec<String>,
}

/// One window's aggregated derived table: `pw<i>`, one row per customer with a purchase in
/// the window, holding only the aggregates some condition reads.
#[derive(Debug)]
struct WindowJoin {
    table: &'static str,
    window: Window,
    count: bool,
    sum: bool,
    last: bool,
    lists: Vec<ListMatch>,
}

/// The string values of a list condition, lower-cased as list elements are stored.
fn folded_strings(values: &[Value]) -> Vec<String> {
    values
        .iter()
        .filter_map(|v| match v {
            Value::String(s) => Some(fold(s)),
            _ => None,
        })
        .collect()
}

fn list_match(c: &Condition, measure: Measure) -> ListMatch {
    ListMatch {
        measure,
        operator: c.operator,
        values: folded_strings(&c.values),
    }
}

/// The derived tables the purchase conditions of `c` need, one per (table, window).
fn plan_windows(c: &Criterion, target: &SqlTarget<'_>) -> Result<Vec<WindowJoin>, SqlError> {
    let mut out: Vec<WindowJoin> = Vec::new();
    for cond in c.conditions() {
        let Field::Purchases { window, measure } = cond.field else {
            continue;
        };
        let Some(Column::Purchases { table }) = (target.columns)(&cond.field) else {
            continue;
        };
        identifier(table)?;
        let i = match out
            .iter()
            .position(|w| w.table == table && w.window == window)
        {
            Some(i) => i,
            None => {
                out.push(WindowJoin {
                    table,
                    window,
                    count: false,
                    sum: false,
                    last: false,
                    lists: Vec::new(),
                });
                out.len() - 1
            }
        };
        let w = &mut out[i];
        match measure {
            Measure::Count => w.count = true,
            Measure::SumMinor => w.sum = true,
            Measure::AvgMinor => (w.count, w.sum) = (true, true),
            Measure::LastDaysAgo => w.last = true,
            list => {
                let m = list_match(cond, list);
                if !w.lists.contains(&m) {
                    w.lists.push(m);
                }
            }
        }
    }
    Ok(out)
}

struct Compiler<'t, 'a, 'p> {
    target: &'t SqlTarget<'a>,
    now: DateTime<Utc>,
    params: &'p mut SqlParams,
    windows: Vec<WindowJoin>,
}

/// How one fact reads in SQL.
enum Source {
    Int(String),
    Days(Time),
    Text {
        column: String,
        key: String,
    },
    Member {
        table: String,
        group_column: String,
        group_id: Uuid,
    },
    List(String),
}

/// Where a days-ago fact's time is: a timestamp column, or microseconds in a JSON member.
enum Time {
    Column(String),
    Micros { column: String, key: String },
}

impl Compiler<'_, '_, '_> {
    fn criterion(&mut self, c: &Criterion) -> Result<String, SqlError> {
        Ok(match c {
            Criterion::All(cs) => self.group(cs, " AND ", TRUE)?,
            Criterion::Any(cs) => self.group(cs, " OR ", FALSE)?,
            Criterion::Not(c) => format!("NOT ({})", self.criterion(c)?),
            Criterion::Condition(c) => self.condition(c)?,
        })
    }

    fn group(&mut self, cs: &[Criterion], op: &str, empty: &str) -> Result<String, SqlError> {
        if cs.is_empty() {
            return Ok(empty.to_owned());
        }
        let parts = cs
            .iter()
            .map(|c| self.criterion(c).map(|s| format!("({s})")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(parts.join(op))
    }

    fn source(&self, field: &Field) -> Result<Source, SqlError> {
        if field.is_cart() {
            return Err(SqlError::OnlineOnly(field.path()));
        }
        let column =
            (self.target.columns)(field).ok_or_else(|| SqlError::Unmapped(field.path()))?;
        Ok(match column {
            Column::Int(c) => Source::Int(identifier(c)?),
            Column::DaysBefore(c) => Source::Days(Time::Column(identifier(c)?)),
            Column::Text { column, key } => Source::Text {
                column: identifier(column)?,
                key,
            },
            Column::List(c) => Source::List(identifier(c)?),
            Column::Purchases { table } => self.purchase_source(field, table)?,
            Column::DaysBeforeMember { column, key } => Source::Days(Time::Micros {
                column: identifier(column)?,
                key,
            }),
            Column::Membership {
                table,
                group_column,
                group_id,
            } => Source::Member {
                table: identifier(table)?,
                group_column: identifier(group_column)?,
                group_id,
            },
        })
    }

    /// A purchase field reads its window's derived table `pw<i>` (see [`Compiler::joins`]).
    fn purchase_source(&self, field: &Field, table: &'static str) -> Result<Source, SqlError> {
        let needs_join = || SqlError::NeedsJoin(field.path());
        let Field::Purchases { window, measure } = *field else {
            return Err(SqlError::Unmapped(field.path()));
        };
        let i = self
            .windows
            .iter()
            .position(|w| w.table == table && w.window == window)
            .ok_or_else(needs_join)?;
        let col = |name: &str| format!("\"pw{i}\".\"pw{i}_{name}\"");
        Ok(match measure {
            // No row in the derived table: no purchase in the window, 0 of each.
            Measure::Count => Source::Int(format!("COALESCE({}, 0)", col("n"))),
            Measure::SumMinor => Source::Int(format!("COALESCE({}, 0)", col("s"))),
            // NULL (missing) without a purchase; both truncate toward zero.
            Measure::AvgMinor => Source::Int(match self.target.dialect {
                Dialect::Postgres => format!("div({}, {})", col("s"), col("n")),
                Dialect::Sqlite => format!("({} / {})", col("s"), col("n")),
            }),
            Measure::LastDaysAgo => Source::Days(Time::Column(col("l"))),
            // List conditions are answered whole by their flag (`list_flag`).
            _ => return Err(needs_join()),
        })
    }

    /// The flag of a purchase list condition (`CONTAINS`, `IN`, `EXISTS` over the ids bought
    /// in a window): whether any purchase of the window matches, computed in the window's
    /// derived table; `None` for any other condition.
    fn list_flag(&self, c: &Condition) -> Result<Option<String>, SqlError> {
        let (Field::Purchases { window, measure }, Some(Column::Purchases { table })) =
            (&c.field, (self.target.columns)(&c.field))
        else {
            return Ok(None);
        };
        if !measure.is_list() {
            return Ok(None);
        }
        let m = list_match(c, *measure);
        let (i, j) = self
            .windows
            .iter()
            .enumerate()
            .filter(|(_, w)| w.table == table && w.window == *window)
            .find_map(|(i, w)| w.lists.iter().position(|l| *l == m).map(|j| (i, j)))
            .ok_or_else(|| SqlError::NeedsJoin(c.field.path()))?;
        Ok(Some(format!("COALESCE(\"pw{i}\".\"pw{i}_f{j}\", 0) = 1")))
    }

    /// Whether the target row's customer is a member of the group (binds the group id at
    /// each use, so that SQLite's positional `?` stay in order).
    fn membership_exists(&mut self, source: &Source) -> Result<String, SqlError> {
        let Source::Member {
            table,
            group_column,
            group_id,
        } = source
        else {
            unreachable!("membership_exists() is called for membership sources only")
        };
        let (target, id, partner) = (
            identifier(self.target.table)?,
            identifier(self.target.id_column)?,
            identifier(self.target.partner_column)?,
        );
        let g = self.params.push(SqlValue::Uuid(*group_id));
        Ok(format!(
            "EXISTS (SELECT 1 FROM {table} AS \"m\" WHERE \"m\".{partner} = {target}.{partner} \
             AND \"m\".{id} = {target}.{id} AND \"m\".{group_column} = {g})"
        ))
    }

    fn condition(&mut self, c: &Condition) -> Result<String, SqlError> {
        if let Some(flag) = self.list_flag(c)? {
            return Ok(format!("COALESCE({flag}, {FALSE})"));
        }
        let source = self.source(&c.field)?;
        if let Source::List(col) = &source {
            let values = folded_strings(&c.values);
            let matches = self.json_list_matches(col, c.operator, &values);
            return Ok(format!("COALESCE({matches}, {FALSE})"));
        }
        let first = c.values.first();
        let sql = match c.operator {
            Operator::Exists => match &source {
                Source::Text { .. } => format!("{} <> ''", self.text(&source, "t")),
                Source::Int(_) | Source::Days(_) | Source::List(_) => self.present(&source),
                Source::Member { .. } => TRUE.to_owned(),
            },
            Operator::Equal => match first {
                Some(v) => self.equals(&source, v)?,
                None => FALSE.to_owned(),
            },
            // "Missing or different" is exactly "not equal-and-present", and a comparison
            // with a missing fact is NULL (or FALSE), so the COALESCE covers the missing fact.
            Operator::NotEqual => match first {
                Some(v) => {
                    let eq = self.equals(&source, v)?;
                    format!("NOT COALESCE({eq}, {FALSE})")
                }
                None => {
                    let present = self.present(&source);
                    format!("NOT ({present})")
                }
            },
            Operator::In => self.one_of(&source, &c.values)?,
            Operator::Contains => match (&source, first) {
                (Source::Text { .. }, Some(Value::String(v))) => {
                    let t = self.text(&source, "t");
                    let needle = self.params.push(SqlValue::Text(fold(v)));
                    match self.target.dialect {
                        Dialect::Postgres => format!("strpos({t}, {needle}) > 0"),
                        Dialect::Sqlite => format!("instr({t}, {needle}) > 0"),
                    }
                }
                _ => FALSE.to_owned(),
            },
            Operator::Less
            | Operator::LessOrEqual
            | Operator::Greater
            | Operator::GreaterOrEqual => match first {
                Some(Value::Int(v)) => self.ordering(&source, c.operator, *v),
                _ => FALSE.to_owned(),
            },
        };
        Ok(format!("COALESCE({sql}, {FALSE})"))
    }

    /// The `LEFT JOIN`s of the planned windows: per window one derived table of the
    /// partner's purchases in it, grouped by customer (PostgreSQL runs each as one hash
    /// aggregate), joined on `outer_id`.
    fn joins(
        &mut self,
        partner_id: Uuid,
        range: IdRange,
        outer_id: &str,
    ) -> Result<String, SqlError> {
        let mut out = String::new();
        for i in 0..self.windows.len() {
            let (table, window, count, sum, last, lists) = {
                let w = &self.windows[i];
                (w.table, w.window, w.count, w.sum, w.last, w.lists.clone())
            };
            let table = identifier(table)?;
            let a = format!("pw{i}");
            let mut columns = vec![format!("\"customer_id\" AS \"{a}_id\"")];
            if count {
                columns.push(format!("COUNT(*) AS \"{a}_n\""));
            }
            if sum {
                columns.push(format!(
                    "SUM(\"net_amount_minor\" - \"returned_amount_minor\") AS \"{a}_s\""
                ));
            }
            if last {
                columns.push(format!("MAX(\"purchased_at\") AS \"{a}_l\""));
            }
            for (j, m) in lists.iter().enumerate() {
                let matches = self.list_matches(m);
                columns.push(format!(
                    "MAX(CASE WHEN {matches} THEN 1 ELSE 0 END) AS \"{a}_f{j}\""
                ));
            }
            let p = self.params.push(SqlValue::Uuid(partner_id));
            let mut filter = format!("\"partner_id\" = {p}");
            // `purchased_at > now − N days`, floored like the day bounds (exact for stored
            // times); a start before every stored time is no bound.
            if let Some(start) = window.days().and_then(|d| self.cutoff(d)) {
                let c = self.params.push(SqlValue::Timestamp(start));
                filter.push_str(&format!(" AND \"purchased_at\" > {c}"));
            }
            filter.push_str(&range_filter("\"customer_id\"", range, self.params));
            out.push_str(&format!(
                " LEFT JOIN (SELECT {} FROM {table} WHERE {filter} GROUP BY \"customer_id\") \
                 AS \"{a}\" ON \"{a}\".\"{a}_id\" = {outer_id}",
                columns.join(", ")
            ));
        }
        Ok(out)
    }

    /// Whether one purchase row matches a list condition (ids are stored lower-cased
    /// without empty ones, so empty values match nothing).
    fn list_matches(&mut self, m: &ListMatch) -> String {
        if m.measure != Measure::BusinessUnitIds {
            let col = format!("\"{}\"", m.measure.as_str());
            return self.json_list_matches(&col, m.operator, &m.values);
        }
        let col = "\"business_unit_id\"";
        let values: Vec<SqlValue> = m
            .values
            .iter()
            .filter(|v| !v.is_empty())
            .map(|v| SqlValue::Text(v.clone()))
            .collect();
        match m.operator {
            Operator::Exists => format!("{col} <> ''"),
            _ if values.is_empty() => FALSE.to_owned(),
            _ => self.in_list(col.to_owned(), values),
        }
    }

    /// Whether a JSON array column of lower-cased elements without empty ones (`col`, an
    /// expression) matches a list condition: `EXISTS` when it is not empty, `IN` and
    /// `CONTAINS` when it holds one of the lower-cased `values` (an empty value matches
    /// nothing). PostgreSQL tests each value with `@>` (which a GIN index can serve),
    /// SQLite scans the array with `json_each`.
    fn json_list_matches(&mut self, col: &str, operator: Operator, values: &[String]) -> String {
        let values: Vec<&String> = values.iter().filter(|v| !v.is_empty()).collect();
        let exists = operator == Operator::Exists;
        if !exists && values.is_empty() {
            return FALSE.to_owned();
        }
        match (self.target.dialect, exists) {
            (Dialect::Postgres, true) => format!("jsonb_array_length({col}) > 0"),
            (Dialect::Sqlite, true) => format!("json_array_length({col}) > 0"),
            (Dialect::Postgres, false) => {
                let parts: Vec<String> = values
                    .into_iter()
                    .map(|v| {
                        let p = self.params.push(SqlValue::Text(v.clone()));
                        format!("{col} @> jsonb_build_array(CAST({p} AS TEXT))")
                    })
                    .collect();
                format!("({})", parts.join(" OR "))
            }
            (Dialect::Sqlite, false) => {
                let list: Vec<SqlValue> = values
                    .into_iter()
                    .map(|v| SqlValue::Text(v.clone()))
                    .collect();
                let in_list = self.in_list("json_each.value".to_owned(), list);
                format!("EXISTS (SELECT 1 FROM json_each({col}) WHERE {in_list})")
            }
        }
    }

    /// Whether the fact is present (never `NULL`).
    fn present(&mut self, source: &Source) -> String {
        match source {
            Source::Int(col) | Source::List(col) => format!("{col} IS NOT NULL"),
            Source::Days(time) => format!("{} IS NOT NULL", self.time(time)),
            Source::Text { .. } => format!("{} IS NOT NULL", self.text(source, "t")),
            Source::Member { .. } => TRUE.to_owned(),
        }
    }

    /// A member of a text fact's search form: `t` (text), `i` (integer) or `b` (boolean).
    fn text(&mut self, source: &Source, part: &str) -> String {
        let Source::Text { column, key } = source else {
            unreachable!("text() is called for text sources only")
        };
        self.member(column, key, part)
    }

    /// A days-ago fact's time (its key, if any, pushed as a parameter where it is written).
    fn time(&mut self, time: &Time) -> String {
        match time {
            Time::Column(col) => col.clone(),
            Time::Micros { column, key } => self.member(column, key, "us"),
        }
    }

    /// A time bound compared with [`Compiler::time`]: a timestamp, or its microseconds
    /// (floored, which is exact for whole-microsecond stored times).
    fn time_bound(&mut self, time: &Time, at: DateTime<Utc>) -> String {
        match time {
            Time::Column(_) => self.params.push(SqlValue::Timestamp(at)),
            Time::Micros { .. } => self.params.push(SqlValue::Int(at.timestamp_micros())),
        }
    }

    /// `part` of the JSON member `key` of `column` (`i` and `us` as integers, `b` as a
    /// boolean, anything else as text).
    fn member(&mut self, column: &str, key: &str, part: &str) -> String {
        match self.target.dialect {
            Dialect::Postgres => {
                let k = self.params.push(SqlValue::Text(key.to_owned()));
                let raw = format!("({column} -> {k} ->> '{part}')");
                match part {
                    "i" | "us" => format!("CAST({raw} AS BIGINT)"),
                    "b" => format!("CAST({raw} AS BOOLEAN)"),
                    _ => raw,
                }
            }
            Dialect::Sqlite => {
                // Keys are bound as JSON paths; a quoted label cannot contain a quote.
                let path = format!("$.\"{}\".{part}", key.replace(['"', '\\'], "_"));
                let p = self.params.push(SqlValue::Text(path));
                format!("json_extract({column}, {p})")
            }
        }
    }

    /// Whether the fact equals one value (`NULL` when the fact is missing).
    fn equals(&mut self, source: &Source, v: &Value) -> Result<String, SqlError> {
        Ok(match (source, v) {
            (Source::Member { .. }, Value::Bool(b)) => {
                let exists = self.membership_exists(source)?;
                if *b { exists } else { format!("NOT {exists}") }
            }
            // As the evaluator: a string reads as a boolean, an integer never equals one.
            (Source::Member { .. }, Value::String(s)) => match parse_bool(s) {
                Some(b) => self.equals(source, &Value::Bool(b))?,
                None => FALSE.to_owned(),
            },
            (Source::Member { .. }, Value::Int(_)) => FALSE.to_owned(),
            (Source::Text { .. }, Value::String(s)) => {
                let t = self.text(source, "t");
                let p = self.params.push(SqlValue::Text(fold(s)));
                format!("{t} = {p}")
            }
            (Source::Text { .. }, Value::Int(n)) => {
                let i = self.text(source, "i");
                let p = self.params.push(SqlValue::Int(*n));
                format!("{i} = {p}")
            }
            (Source::Text { .. }, Value::Bool(b)) => {
                let b_sql = self.text(source, "b");
                let p = self.params.push(SqlValue::Bool(*b));
                format!("{b_sql} = {p}")
            }
            // An integer fact equals a string that parses as that integer, never a boolean.
            (Source::Int(_) | Source::Days(_), Value::String(s)) => match parse_int(s) {
                Some(n) => self.equals(source, &Value::Int(n))?,
                None => FALSE.to_owned(),
            },
            (Source::Int(_) | Source::Days(_), Value::Bool(_)) | (Source::List(_), _) => {
                FALSE.to_owned()
            }
            (Source::Int(col), Value::Int(n)) => {
                let p = self.params.push(SqlValue::Int(*n));
                format!("{col} = {p}")
            }
            (Source::Days(_), Value::Int(n)) => self.days_between(source, *n, *n),
        })
    }

    /// Whether the fact equals one of `values`: one `IN` list per kind of value for a text
    /// fact (the member is read once) or an integer column, equalities otherwise.
    fn one_of(&mut self, source: &Source, values: &[Value]) -> Result<String, SqlError> {
        let mut parts = Vec::new();
        match source {
            Source::Text { .. } => {
                let strings: Vec<SqlValue> = values
                    .iter()
                    .filter_map(|v| match v {
                        Value::String(s) => Some(SqlValue::Text(fold(s))),
                        _ => None,
                    })
                    .collect();
                let ints: Vec<SqlValue> = values
                    .iter()
                    .filter_map(|v| match v {
                        Value::Int(n) => Some(SqlValue::Int(*n)),
                        _ => None,
                    })
                    .collect();
                let bools: Vec<SqlValue> = values
                    .iter()
                    .filter_map(|v| match v {
                        Value::Bool(b) => Some(SqlValue::Bool(*b)),
                        _ => None,
                    })
                    .collect();
                for (part, list) in [("t", strings), ("i", ints), ("b", bools)] {
                    if !list.is_empty() {
                        let member = self.text(source, part);
                        parts.push(self.in_list(member, list));
                    }
                }
            }
            Source::Int(col) => {
                let list: Vec<SqlValue> = values
                    .iter()
                    .filter_map(|v| match v {
                        Value::Int(n) => Some(SqlValue::Int(*n)),
                        Value::String(s) => parse_int(s).map(SqlValue::Int),
                        Value::Bool(_) => None,
                    })
                    .collect();
                if !list.is_empty() {
                    parts.push(self.in_list(col.clone(), list));
                }
            }
            Source::Days(_) | Source::Member { .. } => {
                for v in values {
                    parts.push(self.equals(source, v)?);
                }
            }
            // Answered whole in `condition`.
            Source::List(_) => {}
        }
        if parts.is_empty() {
            return Ok(FALSE.to_owned());
        }
        Ok(parts
            .into_iter()
            .map(|p| format!("COALESCE({p}, {FALSE})"))
            .collect::<Vec<_>>()
            .join(" OR "))
    }

    fn in_list(&mut self, expr: String, list: Vec<SqlValue>) -> String {
        let placeholders: Vec<String> = list.into_iter().map(|v| self.params.push(v)).collect();
        format!("{expr} IN ({})", placeholders.join(", "))
    }

    fn ordering(&mut self, source: &Source, op: Operator, v: i64) -> String {
        let sym = match op {
            Operator::Less => "<",
            Operator::LessOrEqual => "<=",
            Operator::Greater => ">",
            _ => ">=",
        };
        match source {
            Source::Int(col) => {
                let p = self.params.push(SqlValue::Int(v));
                format!("{col} {sym} {p}")
            }
            Source::Text { .. } => {
                let i = self.text(source, "i");
                let p = self.params.push(SqlValue::Int(v));
                format!("{i} {sym} {p}")
            }
            // A boolean is never ordered (as in the evaluator).
            Source::Member { .. } => FALSE.to_owned(),
            Source::Days(_) => {
                let (lo, hi) = match op {
                    Operator::Less => match v.checked_sub(1) {
                        Some(hi) => (i64::MIN, hi),
                        None => return FALSE.to_owned(),
                    },
                    Operator::LessOrEqual => (i64::MIN, v),
                    Operator::Greater => match v.checked_add(1) {
                        Some(lo) => (lo, i64::MAX),
                        None => return FALSE.to_owned(),
                    },
                    _ => (v, i64::MAX),
                };
                self.days_between(source, lo, hi)
            }
            Source::List(_) => FALSE.to_owned(),
        }
    }

    /// `now - days`, floored to the dialect's precision; `None` when it lies before every
    /// stored time.
    fn cutoff(&self, days: i64) -> Option<DateTime<Utc>> {
        let (min, _) = time_range();
        let at = self.now.checked_sub_signed(TimeDelta::try_days(days)?)?;
        if at < min {
            return None;
        }
        Some(match self.target.dialect {
            // PostgreSQL keeps microseconds: with stored times whole microseconds,
            // `t <= c` and `t > c` hold exactly when they hold for `c` floored.
            Dialect::Postgres => at.trunc_subsecs(6),
            Dialect::Sqlite => at,
        })
    }

    /// Whether the whole days between the column and `now` (never negative) lie in
    /// `lo..=hi`. `d >= k` (k ≥ 1) ⇔ `t <= now - k days`; `d <= k` (k ≥ 0) ⇔
    /// `t > now - (k + 1) days`.
    fn days_between(&mut self, source: &Source, lo: i64, hi: i64) -> String {
        let Source::Days(time) = source else {
            unreachable!("days_between() is called for day sources only")
        };
        if lo > hi || hi < 0 {
            return FALSE.to_owned();
        }
        let (_, max) = time_range();
        if self.now > max {
            // Outside the range stored times are assumed to lie in; nothing to compare.
            return FALSE.to_owned();
        }
        let low = if lo >= 1 {
            match self.cutoff(lo) {
                Some(c) => Some(c),
                None => return FALSE.to_owned(),
            }
        } else {
            None
        };
        let high = hi.checked_add(1).and_then(|k| self.cutoff(k));
        // Parameters are pushed in the order they appear in the text.
        let col = self.time(time);
        let mut parts = vec![format!("{col} IS NOT NULL")];
        if let Some(c) = low {
            let col = self.time(time);
            let p = self.time_bound(time, c);
            parts.push(format!("{col} <= {p}"));
        }
        if let Some(c) = high {
            let col = self.time(time);
            let p = self.time_bound(time, c);
            parts.push(format!("{col} > {p}"));
        }
        parts.join(" AND ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RawCriterion;

    fn columns(field: &Field) -> Option<Column> {
        match field {
            Field::Customer(a) if a == "interest_ids" => Some(Column::List("interest_ids")),
            Field::Customer(_) | Field::Property(_) => Some(Column::Text {
                column: "facts",
                key: field.path(),
            }),
            Field::Feature(f) if f == "last_purchase_days_ago" => {
                Some(Column::DaysBefore("last_purchase_at"))
            }
            Field::Feature(f) if f == "purchase_count" => Some(Column::Int("purchase_count")),
            Field::Purchases { .. } => Some(Column::Purchases {
                table: "customer_purchases",
            }),
            Field::EventLastDaysAgo(_) => Some(Column::DaysBeforeMember {
                column: "facts",
                key: field.path(),
            }),
            Field::Segment(id) => Some(Column::Membership {
                table: "segment_members",
                group_column: "segment_id",
                group_id: *id,
            }),
            _ => None,
        }
    }

    fn target(dialect: Dialect) -> SqlTarget<'static> {
        SqlTarget {
            dialect,
            table: "customer_features",
            id_column: "customer_id",
            partner_column: "partner_id",
            columns: &columns,
        }
    }

    fn cond(field: &str, operator: Operator, values: Vec<Value>) -> RawCriterion {
        RawCriterion::Condition {
            field: field.into(),
            operator: Some(operator),
            values,
        }
    }

    fn parse(raw: RawCriterion) -> Criterion {
        Criterion::parse(raw).expect("valid")
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-06T12:00:00.123456789Z")
            .unwrap()
            .to_utc()
    }

    #[test]
    fn a_slice_bounds_the_customers_and_every_purchase_window() {
        let partner = Uuid::now_v7();
        let (start, end) = (Uuid::now_v7(), Uuid::now_v7());
        let c = parse(RawCriterion::All(vec![
            cond(
                "purchases.last_90_days.count",
                Operator::GreaterOrEqual,
                vec![Value::Int(3)],
            ),
            cond(
                "customer.city",
                Operator::Equal,
                vec![Value::String("brno".into())],
            ),
        ]));
        let range = IdRange {
            start: Some(start),
            end: Some(end),
        };
        let pg = c
            .to_sql_in(&target(Dialect::Postgres), partner, now(), range)
            .unwrap();
        assert_eq!(
            pg.sql,
            "SELECT \"customer_features\".\"customer_id\" FROM \"customer_features\" \
             LEFT JOIN (SELECT \"customer_id\" AS \"pw0_id\", COUNT(*) AS \"pw0_n\" \
             FROM \"customer_purchases\" WHERE \"partner_id\" = $1 AND \"purchased_at\" > $2 \
             AND \"customer_id\" >= $3 AND \"customer_id\" < $4 GROUP BY \"customer_id\") \
             AS \"pw0\" ON \"pw0\".\"pw0_id\" = \"customer_features\".\"customer_id\" \
             WHERE \"customer_features\".\"partner_id\" = $5 \
             AND \"customer_features\".\"customer_id\" >= $6 \
             AND \"customer_features\".\"customer_id\" < $7 AND (\
             (COALESCE(COALESCE(\"pw0\".\"pw0_n\", 0) >= $8, FALSE)) AND \
             (COALESCE((\"facts\" -> $9 ->> 't') = $10, FALSE))) \
             ORDER BY \"customer_features\".\"customer_id\""
        );
        assert_eq!(
            pg.values[2..4],
            [SqlValue::Uuid(start), SqlValue::Uuid(end)]
        );
        assert_eq!(
            pg.values[5..7],
            [SqlValue::Uuid(start), SqlValue::Uuid(end)]
        );
        // Without purchases, one bound alone; SQLite's positional `?` keep the text order.
        let city = parse(cond(
            "customer.city",
            Operator::Equal,
            vec![Value::String("brno".into())],
        ));
        let from = IdRange {
            start: Some(start),
            end: None,
        };
        let lite = city
            .to_sql_in(&target(Dialect::Sqlite), partner, now(), from)
            .unwrap();
        assert_eq!(
            lite.sql,
            "SELECT \"customer_id\" FROM \"customer_features\" WHERE \"partner_id\" = ? \
             AND \"customer_id\" >= ? AND (COALESCE(json_extract(\"facts\", ?) = ?, FALSE)) \
             ORDER BY \"customer_id\""
        );
        assert_eq!(
            lite.values[..2],
            [SqlValue::Uuid(partner), SqlValue::Uuid(start)]
        );
        assert_eq!(
            city.to_sql_in(&target(Dialect::Sqlite), partner, now(), IdRange::default()),
            city.to_sql(&target(Dialect::Sqlite), partner, now())
        );
    }

    #[test]
    fn the_statement_is_scoped_by_partner_and_binds_every_literal() {
        let partner = Uuid::now_v7();
        let evil = "x' OR 1=1 --";
        let c = parse(RawCriterion::All(vec![
            cond(
                "customer.city",
                Operator::Equal,
                vec![Value::String(evil.into())],
            ),
            cond(
                "customer.properties.visits",
                Operator::GreaterOrEqual,
                vec![Value::Int(5)],
            ),
        ]));
        let pg = c
            .to_sql(&target(Dialect::Postgres), partner, now())
            .unwrap();
        assert_eq!(
            pg.sql,
            "SELECT \"customer_id\" FROM \"customer_features\" WHERE \"partner_id\" = $1 AND \
             ((COALESCE((\"facts\" -> $2 ->> 't') = $3, FALSE)) AND \
             (COALESCE(CAST((\"facts\" -> $4 ->> 'i') AS BIGINT) >= $5, FALSE))) \
             ORDER BY \"customer_id\""
        );
        assert_eq!(
            pg.values,
            [
                SqlValue::Uuid(partner),
                SqlValue::Text("customer.city".into()),
                SqlValue::Text(evil.to_lowercase()),
                SqlValue::Text("customer.properties.visits".into()),
                SqlValue::Int(5),
            ]
        );
        let lite = c.to_sql(&target(Dialect::Sqlite), partner, now()).unwrap();
        assert!(!lite.sql.contains('$'));
        assert_eq!(lite.sql.matches('?').count(), lite.values.len());
        assert_eq!(
            lite.values[1],
            SqlValue::Text("$.\"customer.city\".t".into())
        );
        assert!(!lite.sql.contains("OR 1=1"));
    }

    #[test]
    fn a_membership_is_an_exists_over_the_member_table_of_the_same_partner_and_customer() {
        let group = Uuid::now_v7();
        let path = format!("segments.{group}");
        let c = parse(RawCriterion::Any(vec![
            cond(&path, Operator::Equal, vec![Value::Bool(true)]),
            cond(&path, Operator::NotEqual, vec![Value::Bool(false)]),
        ]));
        let pg = c
            .to_sql(&target(Dialect::Postgres), Uuid::nil(), now())
            .unwrap();
        let exists = |n: u8| {
            format!(
                "EXISTS (SELECT 1 FROM \"segment_members\" AS \"m\" WHERE \"m\".\"partner_id\" = \
                 \"customer_features\".\"partner_id\" AND \"m\".\"customer_id\" = \
                 \"customer_features\".\"customer_id\" AND \"m\".\"segment_id\" = ${n})"
            )
        };
        assert_eq!(
            pg.sql,
            format!(
                "SELECT \"customer_id\" FROM \"customer_features\" WHERE \"partner_id\" = $1 AND \
                 ((COALESCE({}, FALSE)) OR (COALESCE(NOT COALESCE(NOT {}, FALSE), FALSE))) \
                 ORDER BY \"customer_id\"",
                exists(2),
                exists(3)
            )
        );
        assert_eq!(
            pg.values[1..],
            [SqlValue::Uuid(group), SqlValue::Uuid(group)]
        );
        let lite = c
            .to_sql(&target(Dialect::Sqlite), Uuid::nil(), now())
            .unwrap();
        assert_eq!(lite.sql.matches('?').count(), lite.values.len());
        let badge = parse(cond(
            &format!("badges.{group}"),
            Operator::Equal,
            vec![Value::Bool(true)],
        ));
        assert_eq!(
            badge.to_sql(&target(Dialect::Postgres), Uuid::nil(), now()),
            Err(SqlError::Unmapped(format!("badges.{group}")))
        );
    }

    #[test]
    fn cart_fields_and_unmapped_fields_do_not_compile() {
        let cart = parse(RawCriterion::Not(Some(Box::new(cond(
            "cart.total_minor",
            Operator::Greater,
            vec![Value::Int(1)],
        )))));
        assert_eq!(
            cart.to_sql(&target(Dialect::Postgres), Uuid::nil(), now()),
            Err(SqlError::OnlineOnly("cart.total_minor".into()))
        );
        let spent = parse(cond("features.total_spent_minor", Operator::Exists, vec![]));
        assert_eq!(
            spent.to_sql(&target(Dialect::Sqlite), Uuid::nil(), now()),
            Err(SqlError::Unmapped("features.total_spent_minor".into()))
        );
    }

    #[test]
    fn a_bad_identifier_is_refused() {
        let c = parse(cond("features.purchase_count", Operator::Exists, vec![]));
        let t = SqlTarget {
            table: "features; DROP TABLE x",
            ..target(Dialect::Postgres)
        };
        assert!(matches!(
            c.to_sql(&t, Uuid::nil(), now()),
            Err(SqlError::Identifier(_))
        ));
    }

    #[test]
    fn not_equal_holds_for_a_missing_fact() {
        let c = parse(cond(
            "customer.city",
            Operator::NotEqual,
            vec![Value::String("Praha".into())],
        ));
        let s = c
            .to_sql_condition(
                &target(Dialect::Postgres),
                now(),
                &mut SqlParams::new(Dialect::Postgres),
            )
            .unwrap();
        assert_eq!(
            s,
            "COALESCE(NOT COALESCE((\"facts\" -> $1 ->> 't') = $2, FALSE), FALSE)"
        );
    }

    #[test]
    fn in_reads_a_text_member_once_per_kind_of_value() {
        let c = parse(cond(
            "customer.properties.tier",
            Operator::In,
            vec![
                Value::String("Gold".into()),
                Value::Int(3),
                Value::String("SILVER".into()),
            ],
        ));
        let mut p = SqlParams::new(Dialect::Postgres);
        let s = c
            .to_sql_condition(&target(Dialect::Postgres), now(), &mut p)
            .unwrap();
        assert_eq!(
            s,
            "COALESCE(COALESCE((\"facts\" -> $1 ->> 't') IN ($2, $3), FALSE) OR \
             COALESCE(CAST((\"facts\" -> $4 ->> 'i') AS BIGINT) IN ($5), FALSE), FALSE)"
        );
        assert_eq!(
            p.into_values()[1..3],
            [
                SqlValue::Text("gold".into()),
                SqlValue::Text("silver".into())
            ]
        );
    }

    fn days(op: Operator, v: i64, dialect: Dialect) -> (String, Vec<SqlValue>) {
        let c = parse(cond(
            "features.last_purchase_days_ago",
            op,
            vec![Value::Int(v)],
        ));
        let mut p = SqlParams::new(dialect);
        let s = c.to_sql_condition(&target(dialect), now(), &mut p).unwrap();
        (s, p.into_values())
    }

    #[test]
    fn days_ago_become_timestamp_bounds_floored_to_microseconds_on_postgres() {
        let at = |s: &str| SqlValue::Timestamp(DateTime::parse_from_rfc3339(s).unwrap().to_utc());
        let (s, v) = days(Operator::GreaterOrEqual, 30, Dialect::Postgres);
        assert_eq!(
            s,
            "COALESCE(\"last_purchase_at\" IS NOT NULL AND \"last_purchase_at\" <= $1, FALSE)"
        );
        assert_eq!(v, [at("2026-11-06T12:00:00.123456Z")]);
        let (s, v) = days(Operator::Equal, 0, Dialect::Sqlite);
        assert_eq!(
            s,
            "COALESCE(\"last_purchase_at\" IS NOT NULL AND \"last_purchase_at\" > ?, FALSE)"
        );
        assert_eq!(v, [at("2026-12-05T12:00:00.123456789Z")]);
        assert_eq!(
            days(Operator::Less, 0, Dialect::Sqlite).0,
            "COALESCE(FALSE, FALSE)"
        );
        assert_eq!(
            days(Operator::Greater, i64::MAX, Dialect::Sqlite).0,
            "COALESCE(FALSE, FALSE)"
        );
        // Further back than any stored time: every purchase is younger.
        let (s, v) = days(Operator::LessOrEqual, 10_000_000, Dialect::Postgres);
        assert_eq!(s, "COALESCE(\"last_purchase_at\" IS NOT NULL, FALSE)");
        assert!(v.is_empty());
    }

    #[test]
    fn purchase_windows_become_one_aggregated_left_join_each() {
        let partner = Uuid::now_v7();
        let c = parse(RawCriterion::All(vec![
            cond(
                "purchases.last_90_days.count",
                Operator::GreaterOrEqual,
                vec![Value::Int(3)],
            ),
            cond(
                "features.marketing_consent_email",
                Operator::Equal,
                vec![Value::Bool(true)],
            ),
            cond(
                "purchases.last_90_days.brand_ids",
                Operator::In,
                vec![Value::String("ACME".into()), Value::String("".into())],
            ),
            cond(
                "purchases.ever.avg_minor",
                Operator::Less,
                vec![Value::Int(500)],
            ),
        ]));
        let columns = |f: &Field| match f {
            Field::Feature(_) => Some(Column::Text {
                column: "facts",
                key: f.path(),
            }),
            _ => columns(f),
        };
        let t = SqlTarget {
            columns: &columns,
            ..target(Dialect::Postgres)
        };
        let pg = c.to_sql(&t, partner, now()).unwrap();
        assert_eq!(
            pg.sql,
            "SELECT \"customer_features\".\"customer_id\" FROM \"customer_features\" \
             LEFT JOIN (SELECT \"customer_id\" AS \"pw0_id\", COUNT(*) AS \"pw0_n\", \
             MAX(CASE WHEN (\"brand_ids\" @> jsonb_build_array(CAST($1 AS TEXT))) THEN 1 ELSE 0 END) \
             AS \"pw0_f0\" FROM \"customer_purchases\" WHERE \"partner_id\" = $2 AND \
             \"purchased_at\" > $3 GROUP BY \"customer_id\") AS \"pw0\" \
             ON \"pw0\".\"pw0_id\" = \"customer_features\".\"customer_id\" \
             LEFT JOIN (SELECT \"customer_id\" AS \"pw1_id\", COUNT(*) AS \"pw1_n\", \
             SUM(\"net_amount_minor\" - \"returned_amount_minor\") AS \"pw1_s\" \
             FROM \"customer_purchases\" WHERE \"partner_id\" = $4 GROUP BY \"customer_id\") \
             AS \"pw1\" ON \"pw1\".\"pw1_id\" = \"customer_features\".\"customer_id\" \
             WHERE \"customer_features\".\"partner_id\" = $5 AND (\
             (COALESCE(COALESCE(\"pw0\".\"pw0_n\", 0) >= $6, FALSE)) AND \
             (COALESCE(CAST((\"facts\" -> $7 ->> 'b') AS BOOLEAN) = $8, FALSE)) AND \
             (COALESCE(COALESCE(\"pw0\".\"pw0_f0\", 0) = 1, FALSE)) AND \
             (COALESCE(div(\"pw1\".\"pw1_s\", \"pw1\".\"pw1_n\") < $9, FALSE))) \
             ORDER BY \"customer_features\".\"customer_id\""
        );
        let at = |s: &str| SqlValue::Timestamp(DateTime::parse_from_rfc3339(s).unwrap().to_utc());
        assert_eq!(
            pg.values,
            [
                SqlValue::Text("acme".into()),
                SqlValue::Uuid(partner),
                at("2026-09-07T12:00:00.123456Z"),
                SqlValue::Uuid(partner),
                SqlValue::Uuid(partner),
                SqlValue::Int(3),
                SqlValue::Text("features.marketing_consent_email".into()),
                SqlValue::Bool(true),
                SqlValue::Int(500),
            ]
        );
        // SQLite: positional parameters in text order, lists through json_each.
        let lite = c
            .to_sql(
                &SqlTarget {
                    dialect: Dialect::Sqlite,
                    ..t
                },
                partner,
                now(),
            )
            .unwrap();
        assert_eq!(lite.sql.matches('?').count(), lite.values.len());
        assert!(lite.sql.contains(
            "EXISTS (SELECT 1 FROM json_each(\"brand_ids\") WHERE json_each.value IN (?))"
        ));
        assert!(lite.sql.contains("(\"pw1\".\"pw1_s\" / \"pw1\".\"pw1_n\")"));
        assert_eq!(lite.values[0], SqlValue::Text("acme".into()));
        assert_eq!(lite.values[4], SqlValue::Uuid(partner));
    }

    #[test]
    fn purchase_lists_on_business_units_compare_the_column_and_need_a_whole_statement() {
        let c = parse(cond(
            "purchases.last_7_days.business_unit_ids",
            Operator::Exists,
            vec![],
        ));
        let s = c
            .to_sql(&target(Dialect::Sqlite), Uuid::nil(), now())
            .unwrap();
        assert!(
            s.sql.contains(
                "MAX(CASE WHEN \"business_unit_id\" <> '' THEN 1 ELSE 0 END) AS \"pw0_f0\""
            )
        );
        assert_eq!(
            c.to_sql_condition(
                &target(Dialect::Sqlite),
                now(),
                &mut SqlParams::new(Dialect::Sqlite)
            ),
            Err(SqlError::NeedsJoin(
                "purchases.last_7_days.business_unit_ids".into()
            ))
        );
        let empty = parse(cond(
            "purchases.ever.product_ids",
            Operator::Contains,
            vec![Value::String(String::new())],
        ));
        let s = empty
            .to_sql(&target(Dialect::Postgres), Uuid::nil(), now())
            .unwrap();
        assert!(s.sql.contains("MAX(CASE WHEN FALSE THEN 1 ELSE 0 END)"));
    }

    #[test]
    fn days_ago_in_a_json_member_become_microsecond_bounds() {
        let c = parse(cond(
            "events.visit.last_days_ago",
            Operator::Equal,
            vec![Value::Int(2)],
        ));
        let mut p = SqlParams::new(Dialect::Postgres);
        let s = c
            .to_sql_condition(&target(Dialect::Postgres), now(), &mut p)
            .unwrap();
        let us = "CAST((\"facts\" -> $KEY ->> 'us') AS BIGINT)";
        let expected = format!(
            "COALESCE({} IS NOT NULL AND {} <= $3 AND {} > $5, FALSE)",
            us.replace("$KEY", "$1"),
            us.replace("$KEY", "$2"),
            us.replace("$KEY", "$4")
        );
        assert_eq!(s, expected);
        let micros = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .unwrap()
                .to_utc()
                .timestamp_micros()
        };
        let key = SqlValue::Text("events.visit.last_days_ago".into());
        assert_eq!(
            p.into_values(),
            [
                key.clone(),
                key.clone(),
                SqlValue::Int(micros("2026-12-04T12:00:00.123456Z")),
                key,
                SqlValue::Int(micros("2026-12-03T12:00:00.123456Z")),
            ]
        );
        let mut p = SqlParams::new(Dialect::Sqlite);
        let s = parse(cond("events.visit.last_days_ago", Operator::Exists, vec![]))
            .to_sql_condition(&target(Dialect::Sqlite), now(), &mut p)
            .unwrap();
        assert_eq!(s, "COALESCE(json_extract(\"facts\", ?) IS NOT NULL, FALSE)");
        assert_eq!(
            p.into_values(),
            [SqlValue::Text("$.\"events.visit.last_days_ago\".us".into())]
        );
    }

    #[test]
    fn list_columns_match_lower_cased_values_by_containment_and_skip_empty_ones() {
        let c = parse(RawCriterion::Any(vec![
            cond(
                "customer.interest_ids",
                Operator::In,
                vec![Value::String("Wine".into()), Value::String(String::new())],
            ),
            cond("customer.interest_ids", Operator::Exists, vec![]),
            cond(
                "customer.interest_ids",
                Operator::Contains,
                vec![Value::String(String::new())],
            ),
        ]));
        let mut p = SqlParams::new(Dialect::Postgres);
        let pg = c
            .to_sql_condition(&target(Dialect::Postgres), now(), &mut p)
            .unwrap();
        assert_eq!(
            pg,
            "(COALESCE((\"interest_ids\" @> jsonb_build_array(CAST($1 AS TEXT))), FALSE)) OR \
             (COALESCE(jsonb_array_length(\"interest_ids\") > 0, FALSE)) OR \
             (COALESCE(FALSE, FALSE))"
        );
        assert_eq!(p.into_values(), [SqlValue::Text("wine".into())]);
        let mut p = SqlParams::new(Dialect::Sqlite);
        let lite = c
            .to_sql_condition(&target(Dialect::Sqlite), now(), &mut p)
            .unwrap();
        assert_eq!(
            lite,
            "(COALESCE(EXISTS (SELECT 1 FROM json_each(\"interest_ids\") WHERE \
             json_each.value IN (?)), FALSE)) OR \
             (COALESCE(json_array_length(\"interest_ids\") > 0, FALSE)) OR \
             (COALESCE(FALSE, FALSE))"
        );
        assert_eq!(p.into_values(), [SqlValue::Text("wine".into())]);
    }

    #[test]
    fn the_search_form_holds_what_the_evaluator_parses() {
        assert_eq!(
            search_form("ΟΔΟΣ"),
            serde_json::json!({"t": "οδος"}),
            "Unicode lower-casing, final sigma included"
        );
        assert_eq!(search_form("+12"), serde_json::json!({"t": "+12", "i": 12}));
        assert_eq!(
            search_form("99999999999999999999"),
            serde_json::json!({"t": "99999999999999999999"})
        );
        assert_eq!(
            search_form(" false\t"),
            serde_json::json!({"t": " false\t", "b": false})
        );
    }
}

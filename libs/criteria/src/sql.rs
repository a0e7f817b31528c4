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
    /// Membership of a group: true when `table` has a row with the group's id in
    /// `group_column` and the target row's customer and partner under the target's
    /// `id_column` and `partner_column` names (an `EXISTS`, scoped by partner); never missing.
    Membership {
        table: &'static str,
        group_column: &'static str,
        group_id: Uuid,
    },
}

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

/// Earliest and latest times a [`Column::DaysBefore`] bound is written as; a bound outside
/// is "before/after every stored time". Stored times must lie within (years 1..=9999).
fn time_range() -> (DateTime<Utc>, DateTime<Utc>) {
    let min = DateTime::parse_from_rfc3339("0001-01-01T00:00:00Z").expect("valid");
    let max = DateTime::parse_from_rfc3339("9999-12-31T23:59:59.999999999Z").expect("valid");
    (min.to_utc(), max.to_utc())
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
    /// The partner is part of the statement, so it cannot return another partner's rows.
    pub fn to_sql(
        &self,
        target: &SqlTarget<'_>,
        partner_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<SqlStatement, SqlError> {
        let (table, id, partner) = (
            identifier(target.table)?,
            identifier(target.id_column)?,
            identifier(target.partner_column)?,
        );
        let mut params = SqlParams::new(target.dialect);
        let p = params.push(SqlValue::Uuid(partner_id));
        let condition = self.to_sql_condition(target, now, &mut params)?;
        Ok(SqlStatement {
            sql: format!(
                "SELECT {id} FROM {table} WHERE {partner} = {p} AND ({condition}) ORDER BY {id}"
            ),
            values: params.into_values(),
        })
    }

    /// The criterion as a boolean SQL expression over one row of the target table (never
    /// `NULL`), its parameters appended to `params`; for callers composing their own
    /// statement. The caller must scope that statement by partner.
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
        }
        .criterion(self)
    }
}

struct Compiler<'t, 'a, 'p> {
    target: &'t SqlTarget<'a>,
    now: DateTime<Utc>,
    params: &'p mut SqlParams,
}

/// How one fact reads in SQL.
enum Source {
    Int(String),
    Days(String),
    Text {
        column: String,
        key: String,
    },
    Member {
        table: String,
        group_column: String,
        group_id: Uuid,
    },
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
            Column::DaysBefore(c) => Source::Days(identifier(c)?),
            Column::Text { column, key } => Source::Text {
                column: identifier(column)?,
                key,
            },
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

    /// Whether the target row's customer is a member of the group (binds the group id at
    /// each use, so that SQLite's positional `?` stay in order).
    fn member(&mut self, source: &Source) -> Result<String, SqlError> {
        let Source::Member {
            table,
            group_column,
            group_id,
        } = source
        else {
            unreachable!("member() is called for membership sources only")
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
        let source = self.source(&c.field)?;
        let first = c.values.first();
        let sql = match c.operator {
            Operator::Exists => match &source {
                Source::Text { .. } => format!("{} <> ''", self.text(&source, "t")),
                Source::Int(col) | Source::Days(col) => format!("{col} IS NOT NULL"),
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

    /// Whether the fact is present (never `NULL`).
    fn present(&mut self, source: &Source) -> String {
        match source {
            Source::Int(col) | Source::Days(col) => format!("{col} IS NOT NULL"),
            Source::Text { .. } => format!("{} IS NOT NULL", self.text(source, "t")),
            Source::Member { .. } => TRUE.to_owned(),
        }
    }

    /// A member of a text fact's search form: `t` (text), `i` (integer) or `b` (boolean).
    fn text(&mut self, source: &Source, part: &str) -> String {
        let Source::Text { column, key } = source else {
            unreachable!("text() is called for text sources only")
        };
        match self.target.dialect {
            Dialect::Postgres => {
                let k = self.params.push(SqlValue::Text(key.clone()));
                let raw = format!("({column} -> {k} ->> '{part}')");
                match part {
                    "i" => format!("CAST({raw} AS BIGINT)"),
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
                let exists = self.member(source)?;
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
            (Source::Int(_) | Source::Days(_), Value::Bool(_)) => FALSE.to_owned(),
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
        let Source::Days(col) = source else {
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
        let mut parts = vec![format!("{col} IS NOT NULL")];
        if lo >= 1 {
            match self.cutoff(lo) {
                Some(c) => {
                    let p = self.params.push(SqlValue::Timestamp(c));
                    parts.push(format!("{col} <= {p}"));
                }
                None => return FALSE.to_owned(),
            }
        }
        if let Some(k) = hi.checked_add(1)
            && let Some(c) = self.cutoff(k)
        {
            let p = self.params.push(SqlValue::Timestamp(c));
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
            Field::Customer(_) | Field::Property(_) => Some(Column::Text {
                column: "facts",
                key: field.path(),
            }),
            Field::Feature(f) if f == "last_purchase_days_ago" => {
                Some(Column::DaysBefore("last_purchase_at"))
            }
            Field::Feature(f) if f == "purchase_count" => Some(Column::Int("purchase_count")),
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

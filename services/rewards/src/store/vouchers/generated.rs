//! Bulk-generated codes, stored narrow: a `voucher_generations` row per generation and a
//! `voucher_code_buckets` row per hash bucket (`domain::vouchers::codes`). A generated code
//! is a voucher without a `vouchers` row until its first change, which materialises the row
//! (same id, same code); lookups by code or id find it either way.
//!
//! Writing a generation on PostgreSQL: under a per-partner advisory lock (held on a dedicated
//! connection), the partner's crashed pending generations are deleted, the taken codes that
//! can collide are read (see [`taken_codes`]), codes are drawn against them, the generation
//! row (with its code spec) is inserted
//! `pending` and its bucket rows are sent with `COPY … FROM STDIN`; the transaction that
//! stores the idempotent answer flips it to `complete`. SQLite does it all inside that
//! transaction with plain INSERTs (SQLite serialises writers).
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use loyalty_platform::ApiError;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement,
};
use uuid::Uuid;

use super::GeneratedBatch;
use crate::domain::{
    Validity,
    vouchers::{
        CodeSpec, FastRng, ShownState, Voucher, VoucherSource, VoucherState,
        codes::{DrawnCodes, TakenCodes, bucket_of, draw_unique, find_in_bucket, may_overlap},
        reason,
    },
};

pub mod generations {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "voucher_generations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub reward_id: Uuid,
        pub state: String,
        pub code_len: i32,
        pub count: i64,
        pub first_voucher_id: Uuid,
        pub source: String,
        pub source_id: String,
        pub valid_from: Option<DateTimeUtc>,
        pub valid_until: Option<DateTimeUtc>,
        pub issued_at: DateTimeUtc,
        pub cancelled_at: Option<DateTimeUtc>,
        pub cancel_reason: Option<String>,
        /// `CodeSpec::stored` of the spec the codes were drawn with; NULL on rows written
        /// before it was recorded (they may hold any code of their length).
        pub code_spec: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod buckets {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "voucher_code_buckets")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub generation_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub first_index: i32,
        pub partner_id: Uuid,
        pub bucket: i32,
        pub codes: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A generation still being written (or left by a crash); its codes are not vouchers.
pub const PENDING: &str = "pending";
/// A generation whose answer was committed.
pub const COMPLETE: &str = "complete";

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("{e}"))
}

fn voucher_of(g: &generations::Model, index: u64, code: String) -> Result<Voucher, ApiError> {
    let cancelled = g.cancelled_at.is_some();
    let source = VoucherSource::parse_str(&g.source)
        .ok_or_else(|| internal(format!("unknown voucher source {}", g.source)))?;
    Ok(Voucher {
        state: if cancelled {
            VoucherState::Cancelled
        } else {
            VoucherState::Active
        },
        source_id: g.source_id.clone(),
        cancelled_at: g.cancelled_at,
        cancel_reason: g.cancel_reason.clone(),
        ..Voucher::issued(
            Uuid::from_u128(g.first_voucher_id.as_u128().wrapping_add(u128::from(index))),
            code,
            g.reward_id,
            source,
            Validity {
                from: g.valid_from,
                until: g.valid_until,
            },
            g.issued_at,
        )
    })
}

/// The bucket rows holding `code`'s bucket with their generations (complete ones only unless
/// `pending_too`), of generations whose codes have `code`'s length.
async fn bucket_rows_for(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    code: &str,
    pending_too: bool,
) -> Result<Vec<(buckets::Model, generations::Model)>, ApiError> {
    let rows = buckets::Entity::find()
        .filter(buckets::Column::PartnerId.eq(partner_id))
        .filter(buckets::Column::Bucket.eq(bucket_of(code.as_bytes()) as i32))
        .all(conn)
        .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = generations::Entity::find()
        .filter(generations::Column::PartnerId.eq(partner_id))
        .filter(generations::Column::Id.is_in(rows.iter().map(|r| r.generation_id)))
        .filter(generations::Column::CodeLen.eq(code.len() as i32));
    if !pending_too {
        q = q.filter(generations::Column::State.eq(COMPLETE));
    }
    let gens = q.all(conn).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let g = gens.iter().find(|g| g.id == r.generation_id)?.clone();
            Some((r, g))
        })
        .collect())
}

/// A generated code of a complete generation as its (not yet stored) voucher.
pub async fn by_code(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    code: &str,
) -> Result<Option<Voucher>, ApiError> {
    for (row, g) in bucket_rows_for(conn, partner_id, code, false).await? {
        if let Some(k) = find_in_bucket(row.codes.as_bytes(), code.len(), code.as_bytes()) {
            let index = u64::try_from(row.first_index).map_err(internal)? + k as u64;
            return voucher_of(&g, index, code.to_owned()).map(Some);
        }
    }
    Ok(None)
}

/// Whether a generation, complete or still being written, holds `code`.
pub async fn code_taken(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    code: &str,
) -> Result<bool, ApiError> {
    Ok(bucket_rows_for(conn, partner_id, code, true)
        .await?
        .iter()
        .any(|(row, _)| {
            find_in_bucket(row.codes.as_bytes(), code.len(), code.as_bytes()).is_some()
        }))
}

/// The partner's generations (complete or still being written) whose codes a spec can draw:
/// what a batch of newly drawn codes is checked against, read once per batch.
#[derive(Debug, Clone)]
pub struct OverlappingGenerations {
    ids: Vec<Uuid>,
    code_len: usize,
}

impl OverlappingGenerations {
    /// One query: the partner's generations of `spec`'s code length whose stored spec can draw
    /// one of its codes (a generation without a stored spec may hold any code of its length).
    pub async fn read(
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        spec: &CodeSpec,
    ) -> Result<Self, ApiError> {
        let code_len = spec.code_len();
        let gens: Vec<(Uuid, Option<String>)> = generations::Entity::find()
            .select_only()
            .column(generations::Column::Id)
            .column(generations::Column::CodeSpec)
            .filter(generations::Column::PartnerId.eq(partner_id))
            .filter(generations::Column::CodeLen.eq(code_len as i32))
            .into_tuple()
            .all(conn)
            .await?;
        let ids = gens
            .into_iter()
            .filter(|(_, stored)| {
                stored
                    .as_deref()
                    .and_then(CodeSpec::from_stored)
                    .is_none_or(|g| may_overlap(&g, spec))
            })
            .map(|(id, _)| id)
            .collect();
        Ok(OverlappingGenerations { ids, code_len })
    }

    /// Which of `codes` (all of the spec's length) these generations hold: one query reading
    /// the codes' hash buckets of these generations; none when there are no generations.
    pub async fn taken(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        codes: &[String],
    ) -> Result<HashSet<String>, ApiError> {
        let mut taken = HashSet::new();
        if self.ids.is_empty() || codes.is_empty() {
            return Ok(taken);
        }
        let mut by_bucket: std::collections::HashMap<i32, Vec<&str>> =
            std::collections::HashMap::new();
        for c in codes {
            by_bucket
                .entry(bucket_of(c.as_bytes()) as i32)
                .or_default()
                .push(c);
        }
        let rows: Vec<(i32, String)> = buckets::Entity::find()
            .select_only()
            .column(buckets::Column::Bucket)
            .column(buckets::Column::Codes)
            .filter(buckets::Column::PartnerId.eq(partner_id))
            .filter(buckets::Column::GenerationId.is_in(self.ids.iter().copied()))
            .filter(buckets::Column::Bucket.is_in(by_bucket.keys().copied()))
            .into_tuple()
            .all(conn)
            .await?;
        for (bucket, stored) in rows {
            for c in by_bucket.get(&bucket).into_iter().flatten() {
                if find_in_bucket(stored.as_bytes(), self.code_len, c.as_bytes()).is_some() {
                    taken.insert((*c).to_owned());
                }
            }
        }
        Ok(taken)
    }
}

/// A generated code of a complete generation by its voucher id.
pub async fn by_id(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<Option<Voucher>, ApiError> {
    let Some(g) = generations::Entity::find()
        .filter(generations::Column::PartnerId.eq(partner_id))
        .filter(generations::Column::FirstVoucherId.lte(id))
        .filter(generations::Column::State.eq(COMPLETE))
        .order_by_desc(generations::Column::FirstVoucherId)
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    let offset = id.as_u128().wrapping_sub(g.first_voucher_id.as_u128());
    if offset >= g.count as u128 {
        return Ok(None);
    }
    let offset = offset as i64;
    let Some(row) = buckets::Entity::find()
        .filter(buckets::Column::GenerationId.eq(g.id))
        .filter(buckets::Column::FirstIndex.lte(offset))
        .order_by_desc(buckets::Column::FirstIndex)
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    let len = usize::try_from(g.code_len).map_err(internal)?;
    let k = usize::try_from(offset - i64::from(row.first_index)).map_err(internal)?;
    let Some(code) = row.codes.get(k * len..(k + 1) * len) else {
        return Err(internal(format!(
            "generation {} bucket row too short",
            g.id
        )));
    };
    voucher_of(&g, offset as u64, code.to_owned()).map(Some)
}

/// The shown state every not yet materialised code of a generation has at `at`.
fn generation_state(g: &generations::Model, at: DateTime<Utc>) -> Result<ShownState, ApiError> {
    Ok(voucher_of(g, 0, String::new())?.shown_state(at))
}

/// Up to `limit` not yet materialised generated vouchers of a reward with ids below `before`,
/// newest (highest id) first, in the given shown states (empty = all).
pub async fn list(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    reward_id: Uuid,
    states: &[ShownState],
    at: DateTime<Utc>,
    before: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Voucher>, ApiError> {
    let mut q = generations::Entity::find()
        .filter(generations::Column::PartnerId.eq(partner_id))
        .filter(generations::Column::RewardId.eq(reward_id))
        .filter(generations::Column::State.eq(COMPLETE));
    if let Some(b) = before {
        q = q.filter(generations::Column::FirstVoucherId.lt(b));
    }
    let gens = q
        .order_by_desc(generations::Column::FirstVoucherId)
        .all(conn)
        .await?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    for g in gens {
        if out.len() >= limit {
            break;
        }
        if !states.is_empty() && !states.contains(&generation_state(&g, at)?) {
            continue;
        }
        let first = g.first_voucher_id.as_u128();
        // Offsets below `end` are listed, highest first.
        let end = match before {
            Some(b) => (b.as_u128() - first).min(g.count as u128) as i64,
            None => g.count,
        };
        let len = usize::try_from(g.code_len).map_err(internal)?;
        let mut cursor = end;
        while cursor > 0 && out.len() < limit {
            let rows = buckets::Entity::find()
                .filter(buckets::Column::GenerationId.eq(g.id))
                .filter(buckets::Column::FirstIndex.lt(cursor))
                .order_by_desc(buckets::Column::FirstIndex)
                .limit(64)
                .all(conn)
                .await?;
            let Some(last) = rows.last() else { break };
            let mut found = Vec::new();
            for row in &rows {
                let n = row.codes.len() / len;
                for k in (0..n).rev() {
                    let index = i64::from(row.first_index) + k as i64;
                    if index < cursor {
                        found.push(voucher_of(
                            &g,
                            index as u64,
                            row.codes[k * len..(k + 1) * len].to_owned(),
                        )?);
                    }
                }
            }
            cursor = i64::from(last.first_index);
            // Materialised ones are listed from their `vouchers` row.
            let stored: HashSet<Uuid> = super::voucher_rows::Entity::find()
                .select_only()
                .column(super::voucher_rows::Column::Id)
                .filter(super::voucher_rows::Column::PartnerId.eq(partner_id))
                .filter(super::voucher_rows::Column::Id.is_in(found.iter().map(|v| v.id)))
                .into_tuple::<Uuid>()
                .all(conn)
                .await?
                .into_iter()
                .collect();
            for v in found {
                if out.len() >= limit {
                    break;
                }
                if !stored.contains(&v.id) {
                    out.push(v);
                }
            }
        }
    }
    Ok(out)
}

/// Marks the reward's generations cancelled; returns how many of their codes were not yet
/// materialised (those are cancelled with it; materialised ones are cancelled by their row).
pub async fn cancel_generations(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    reward_id: Uuid,
    at: DateTime<Utc>,
    why: &str,
) -> Result<u64, ApiError> {
    let gens = generations::Entity::find()
        .filter(generations::Column::PartnerId.eq(partner_id))
        .filter(generations::Column::RewardId.eq(reward_id))
        .filter(generations::Column::State.eq(COMPLETE))
        .filter(generations::Column::CancelledAt.is_null())
        .all(conn)
        .await?;
    let mut unmaterialised = 0u64;
    for g in gens {
        let first = g.first_voucher_id;
        let end = Uuid::from_u128(first.as_u128().wrapping_add(g.count as u128));
        use sea_orm::PaginatorTrait;
        let stored = super::voucher_rows::Entity::find()
            .filter(super::voucher_rows::Column::PartnerId.eq(partner_id))
            .filter(super::voucher_rows::Column::Id.gte(first))
            .filter(super::voucher_rows::Column::Id.lt(end))
            .count(conn)
            .await?;
        unmaterialised += u64::try_from(g.count).unwrap_or(0).saturating_sub(stored);
        generations::Entity::update_many()
            .col_expr(
                generations::Column::CancelledAt,
                sea_orm::sea_query::Expr::value(at),
            )
            .col_expr(
                generations::Column::CancelReason,
                sea_orm::sea_query::Expr::value(why),
            )
            .filter(generations::Column::Id.eq(g.id))
            .exec(conn)
            .await?;
    }
    Ok(unmaterialised)
}

/// Generations whose codes are read together, up to about this many codes (a generation holds
/// at most 1,000,000).
const READ_CODES: i64 = 1_000_000;
/// `vouchers` rows read per query.
const READ_VOUCHERS: u64 = 50_000;

/// `prefix` as a LIKE pattern matching the strings that start with it (`\` escapes).
fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The partner's taken codes that `spec` could draw, as fingerprints: the codes of its
/// generations (complete, and pending ones under the generation lock) and of its stored
/// vouchers. Only what can collide is read:
/// - generations of another code length, or whose stored spec cannot draw any code of `spec`
///   ([`may_overlap`]), are skipped without reading their codes; a generation without a
///   stored spec (written before m0014) is read;
/// - `vouchers` rows are read only if they start with `spec`'s literal prefix (LIKE);
/// - of what is read, only codes `spec` can draw are kept.
pub(crate) async fn taken_codes(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    spec: &CodeSpec,
) -> Result<TakenCodes, ApiError> {
    let len = spec.code_len();
    let shape = spec.shape();
    let mut taken = TakenCodes::collecting(shape.clone());
    let gens: Vec<(Uuid, Option<String>, i64)> = generations::Entity::find()
        .select_only()
        .column(generations::Column::Id)
        .column(generations::Column::CodeSpec)
        .column(generations::Column::Count)
        .filter(generations::Column::PartnerId.eq(partner_id))
        .filter(generations::Column::CodeLen.eq(len as i32))
        .order_by_asc(generations::Column::Id)
        .into_tuple()
        .all(conn)
        .await?;
    let all = gens.len();
    let gens: Vec<(Uuid, i64)> = gens
        .into_iter()
        .filter(|(_, stored, _)| {
            stored
                .as_deref()
                .and_then(CodeSpec::from_stored)
                .is_none_or(|g| may_overlap(&g, spec))
        })
        .map(|(id, _, count)| (id, count))
        .collect();
    taken.reserve(gens.iter().map(|g| usize::try_from(g.1).unwrap_or(0)).sum());
    let mut rest = gens.as_slice();
    while !rest.is_empty() {
        // A run of generations of up to READ_CODES codes (at least one).
        let mut n = 0;
        let mut codes = 0;
        while n < rest.len() && (n == 0 || codes + rest[n].1 <= READ_CODES) {
            codes += rest[n].1;
            n += 1;
        }
        let (run, after) = rest.split_at(n);
        rest = after;
        let rows: Vec<String> = buckets::Entity::find()
            .select_only()
            .column(buckets::Column::Codes)
            .filter(buckets::Column::GenerationId.is_in(run.iter().map(|g| g.0)))
            .into_tuple::<String>()
            .all(conn)
            .await?;
        for codes in rows {
            taken.add_concatenated(codes.as_bytes(), len);
        }
    }
    let prefix = String::from_utf8_lossy(&shape.literal_prefix()).into_owned();
    let backend = conn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT code FROM vouchers WHERE partner_id = $1 AND length(code) = $2 \
             AND code LIKE $3 ESCAPE '\\' AND code > $4 ORDER BY code LIMIT $5"
        }
        _ => {
            "SELECT code FROM vouchers WHERE partner_id = ? AND length(code) = ? \
             AND code LIKE ? ESCAPE '\\' AND code > ? ORDER BY code LIMIT ?"
        }
    };
    let mut after = String::new();
    let mut stored = 0usize;
    loop {
        let rows = conn
            .query_all(Statement::from_sql_and_values(
                backend,
                sql,
                [
                    partner_id.into(),
                    (len as i32).into(),
                    like_prefix(&prefix).into(),
                    after.clone().into(),
                    (READ_VOUCHERS as i64).into(),
                ],
            ))
            .await?;
        let full = rows.len() as u64 == READ_VOUCHERS;
        stored += rows.len();
        for row in rows {
            let code: String = row.try_get("", "code")?;
            taken.add(code.as_bytes());
            after = code;
        }
        if !full {
            break;
        }
    }
    taken.seal();
    tracing::debug!(
        generations = all,
        generations_read = gens.len(),
        vouchers_read = stored,
        taken = taken.len(),
        "taken voucher codes read"
    );
    Ok(taken)
}

/// Draws `count` codes unique against the partner's taken codes.
async fn draw(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    spec: &CodeSpec,
    count: u64,
    rng: &mut FastRng,
) -> Result<DrawnCodes, ApiError> {
    let taken = taken_codes(conn, partner_id, spec).await?;
    let count = usize::try_from(count).map_err(internal)?;
    draw_unique(spec, count, rng, |c| taken.contains(c)).ok_or_else(|| {
        ApiError::precondition(
            reason::CODE_SPACE_EXHAUSTED,
            "no new code could be drawn: the pattern's codes are (nearly) all taken",
        )
    })
}

fn generation_model(
    id: Uuid,
    b: &GeneratedBatch,
    spec: &CodeSpec,
    drawn: &DrawnCodes,
    first_voucher_id: Uuid,
    state: &str,
) -> generations::ActiveModel {
    generations::ActiveModel {
        id: Set(id),
        partner_id: Set(b.partner_id),
        reward_id: Set(b.reward_id),
        state: Set(state.to_owned()),
        code_len: Set(drawn.code_len as i32),
        count: Set(drawn.len() as i64),
        first_voucher_id: Set(first_voucher_id),
        source: Set(b.source.as_str().to_owned()),
        source_id: Set(b.source_id.clone()),
        valid_from: Set(b.validity.from),
        valid_until: Set(b.validity.until),
        issued_at: Set(b.issued_at),
        cancelled_at: Set(None),
        cancel_reason: Set(None),
        code_spec: Set(Some(spec.stored())),
    }
}

/// What a generation produced (the answer of GenerateVoucherCodes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generated {
    pub generation_id: Uuid,
    pub count: u64,
    /// The first up to 1,000 codes (by voucher id).
    pub first_codes: Vec<String>,
    /// Codes drawn again because they were taken.
    pub collisions: u64,
}

fn generated(id: Uuid, drawn: &DrawnCodes) -> Generated {
    Generated {
        generation_id: id,
        count: drawn.len() as u64,
        first_codes: (0..drawn.len().min(1000))
            .map(|i| String::from_utf8_lossy(drawn.code(i)).into_owned())
            .collect(),
        collisions: drawn.collisions,
    }
}

/// Inserts a generation and its bucket rows with plain INSERTs (SQLite, and tests).
async fn insert_rows(
    conn: &impl ConnectionTrait,
    id: Uuid,
    b: &GeneratedBatch,
    spec: &CodeSpec,
    drawn: &DrawnCodes,
    state: &str,
) -> Result<(), ApiError> {
    generations::Entity::insert(generation_model(id, b, spec, drawn, Uuid::now_v7(), state))
        .exec_without_returning(conn)
        .await?;
    for chunk in drawn.buckets.chunks(500) {
        let rows = chunk.iter().map(|r| buckets::ActiveModel {
            generation_id: Set(id),
            first_index: Set(r.first_index as i32),
            partner_id: Set(b.partner_id),
            bucket: Set(r.bucket as i32),
            codes: Set(String::from_utf8_lossy(drawn.bucket_codes(r)).into_owned()),
        });
        buckets::Entity::insert_many(rows)
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// Advisory lock class of voucher code generation ("vouc").
const LOCK_CLASS: i32 = 0x766f_7563;

/// The advisory lock key of a partner's codes.
fn lock_key(partner_id: Uuid) -> i32 {
    let b = partner_id.as_u128();
    ((b ^ (b >> 32) ^ (b >> 64) ^ (b >> 96)) as u32) as i32
}

/// Makes IssueVoucher wait for a generation of the partner being written (PostgreSQL), so
/// that a new code and a generation never both take one code: taken first in the issuing
/// transaction, before any row lock.
pub async fn lock_for_issue(conn: &impl ConnectionTrait, partner_id: Uuid) -> Result<(), ApiError> {
    if conn.get_database_backend() == DbBackend::Postgres {
        conn.execute(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock_shared($1, $2)",
            [LOCK_CLASS.into(), lock_key(partner_id).into()],
        ))
        .await?;
    }
    Ok(())
}

fn sqlx_error(e: sqlx::Error) -> ApiError {
    ApiError::Internal(anyhow::Error::new(e).context("voucher code generation"))
}

/// The partner's generation lock: on PostgreSQL a session advisory lock held on a dedicated
/// connection (generations of a partner run one at a time, and IssueVoucher waits for them);
/// SQLite serialises writers anyway.
pub struct GenerationLock {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    key: i32,
}

impl GenerationLock {
    pub async fn acquire(db: &DatabaseConnection, partner_id: Uuid) -> Result<Self, ApiError> {
        let key = lock_key(partner_id);
        if db.get_database_backend() != DbBackend::Postgres {
            return Ok(GenerationLock { conn: None, key });
        }
        let mut conn = db
            .get_postgres_connection_pool()
            .acquire()
            .await
            .map_err(sqlx_error)?;
        // A call dropped while holding the lock closes its connection, which releases it.
        conn.close_on_drop();
        sqlx::query("SELECT pg_advisory_lock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(key)
            .execute(&mut *conn)
            .await
            .map_err(sqlx_error)?;
        Ok(GenerationLock {
            conn: Some(conn),
            key,
        })
    }

    /// Releases the lock (closing the connection releases it too).
    pub async fn release(mut self) -> Result<(), ApiError> {
        if let Some(conn) = self.conn.as_mut() {
            sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                .bind(LOCK_CLASS)
                .bind(self.key)
                .execute(&mut **conn)
                .await
                .map_err(sqlx_error)?;
        }
        Ok(())
    }
}

/// A generation in progress.
#[derive(Debug, Clone)]
pub enum Staged {
    /// PostgreSQL: written `pending`; the answer it will give once complete.
    Pending(Generated),
    /// SQLite: drawn and written by [`complete`], in the answer's transaction.
    Deferred,
}

/// Starts a generation under the partner's lock. PostgreSQL: deletes crashed pending
/// generations, draws the codes against the taken ones and COPYs them as a pending
/// generation.
pub async fn stage(
    db: &DatabaseConnection,
    lock: &mut GenerationLock,
    b: &GeneratedBatch,
    spec: &CodeSpec,
    count: u64,
) -> Result<Staged, ApiError> {
    let Some(conn) = lock.conn.as_mut() else {
        return Ok(Staged::Deferred);
    };
    delete_pending(db, b.partner_id).await?;
    let drawn = draw(db, b.partner_id, spec, count, &mut FastRng::from_os()).await?;
    let id = Uuid::now_v7();
    generations::Entity::insert(generation_model(
        id,
        b,
        spec,
        &drawn,
        Uuid::now_v7(),
        PENDING,
    ))
    .exec_without_returning(db)
    .await?;
    if let Err(e) = copy_buckets(conn, id, b.partner_id, &drawn).await {
        delete_pending(db, b.partner_id).await?;
        return Err(e);
    }
    Ok(Staged::Pending(generated(id, &drawn)))
}

/// Gives up a staged generation whose answer was not committed: deletes its pending rows.
pub async fn abandon(db: &DatabaseConnection, staged: &Staged) -> Result<(), ApiError> {
    if let Staged::Pending(g) = staged {
        buckets::Entity::delete_many()
            .filter(buckets::Column::GenerationId.eq(g.generation_id))
            .exec(db)
            .await?;
        generations::Entity::delete_many()
            .filter(generations::Column::Id.eq(g.generation_id))
            .filter(generations::Column::State.eq(PENDING))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Sends a generation's bucket rows with COPY (text format, in ~1 MB messages).
async fn copy_buckets(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    partner_id: Uuid,
    drawn: &DrawnCodes,
) -> Result<(), ApiError> {
    let mut copy = conn
        .copy_in_raw(
            "COPY voucher_code_buckets (generation_id, first_index, partner_id, bucket, codes) \
             FROM STDIN",
        )
        .await
        .map_err(sqlx_error)?;
    let mut ids = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let mut pids = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = id.hyphenated().encode_lower(&mut ids).to_owned();
    let partner = partner_id.hyphenated().encode_lower(&mut pids).to_owned();
    let mut buf = Vec::with_capacity(1 << 20);
    let mut sent = Ok(());
    for r in &drawn.buckets {
        use std::io::Write;
        // Codes hold only A-Z, 0-9 and '-': nothing to escape in COPY text format.
        let _ = write!(buf, "{id}\t{}\t{partner}\t{}\t", r.first_index, r.bucket);
        buf.extend_from_slice(drawn.bucket_codes(r));
        buf.push(b'\n');
        if buf.len() >= 1 << 20 {
            if let Err(e) = copy.send(std::mem::take(&mut buf)).await {
                sent = Err(e);
                break;
            }
            buf.reserve(1 << 20);
        }
    }
    if sent.is_ok() && !buf.is_empty() {
        sent = copy.send(buf).await.map(|_| ());
    }
    match sent {
        Ok(()) => copy.finish().await.map(|_| ()).map_err(sqlx_error),
        Err(e) => {
            let _ = copy.abort("send failed").await;
            Err(sqlx_error(e))
        }
    }
}

/// Deletes the partner's pending generations: under the generation lock, a pending one is a
/// crashed or failed call's.
pub async fn delete_pending(conn: &impl ConnectionTrait, partner_id: Uuid) -> Result<(), ApiError> {
    let pending: Vec<Uuid> = generations::Entity::find()
        .select_only()
        .column(generations::Column::Id)
        .filter(generations::Column::PartnerId.eq(partner_id))
        .filter(generations::Column::State.eq(PENDING))
        .into_tuple::<Uuid>()
        .all(conn)
        .await?;
    if pending.is_empty() {
        return Ok(());
    }
    buckets::Entity::delete_many()
        .filter(buckets::Column::GenerationId.is_in(pending.iter().copied()))
        .exec(conn)
        .await?;
    generations::Entity::delete_many()
        .filter(generations::Column::Id.is_in(pending))
        .exec(conn)
        .await?;
    Ok(())
}

/// Completes a staged generation inside the answer's transaction: PostgreSQL flips it to
/// complete; SQLite draws and inserts it here.
pub async fn complete(
    txn: &impl ConnectionTrait,
    staged: &Staged,
    b: &GeneratedBatch,
    spec: &CodeSpec,
    count: u64,
) -> Result<Generated, ApiError> {
    match staged {
        Staged::Pending(answer) => {
            let r = generations::Entity::update_many()
                .col_expr(
                    generations::Column::State,
                    sea_orm::sea_query::Expr::value(COMPLETE),
                )
                .filter(generations::Column::Id.eq(answer.generation_id))
                .filter(generations::Column::State.eq(PENDING))
                .exec(txn)
                .await?;
            if r.rows_affected != 1 {
                return Err(internal("the pending generation vanished"));
            }
            Ok(answer.clone())
        }
        Staged::Deferred => {
            let drawn = draw(txn, b.partner_id, spec, count, &mut FastRng::from_os()).await?;
            let id = Uuid::now_v7();
            insert_rows(txn, id, b, spec, &drawn, COMPLETE).await?;
            Ok(generated(id, &drawn))
        }
    }
}

#[cfg(test)]
pub(crate) async fn insert_for_test(
    conn: &impl ConnectionTrait,
    b: &GeneratedBatch,
    spec: &CodeSpec,
    count: u64,
    state: &str,
) -> Result<Generated, ApiError> {
    let drawn = draw(conn, b.partner_id, spec, count, &mut FastRng::seeded(11)).await?;
    let id = Uuid::now_v7();
    insert_rows(conn, id, b, spec, &drawn, state).await?;
    Ok(generated(id, &drawn))
}

//! IssueVouchers: one campaign voucher per recipient, up to 1,000 recipients, in the caller's
//! transaction and with a constant number of statements whatever the batch size (never one
//! per recipient):
//!
//! 1. the partner's shared generation lock (as IssueVoucher: a code generation being written
//!    finishes first), the reward and its voucher settings — the settings row locked only when
//!    the reward limits vouchers in total or per customer, so that limits are counted under it;
//! 2. only for such a limited reward: one SELECT of the recipients' vouchers of this (reward,
//!    source) issued by earlier calls, by their keys (`BatchOrder::key`, unique index
//!    `vouchers_batch_key`), and, with a per-customer limit, one grouped count of their
//!    vouchers of the reward;
//! 3. codes drawn in memory the way IssueVoucher draws one (the reward's prefix, the default
//!    alphabet), checked against the partner's generated codes in one read of their hash
//!    buckets (none when no generation can hold such a code);
//! 4. one INSERT of every new voucher with its key, `ON CONFLICT DO NOTHING RETURNING
//!    customer_id` (PostgreSQL: the rows as four unnested text arrays; SQLite: a multi-row
//!    VALUES), in customer order so that concurrent batches take the index entries in one
//!    order;
//! 5. one outbox INSERT of the VoucherIssued events and one UPDATE of the issued count.
//!
//! A row the INSERT skipped has a key that is taken — the recipient's voucher from an earlier
//! call (a retry) or from a concurrent call that committed first — and is read back by key
//! (one SELECT) and answered as existing; without limits this is how a retry finds them, so a
//! first call reads nothing before writing. A row skipped for a code taken meanwhile gets a
//! new code in another round (rare enough that a round is one more INSERT).
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, SubsecRound, Utc};
use loyalty_platform::{ApiError, Violations, events, time::to_timestamp};
use loyalty_proto::events::v1 as ev;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QuerySelect, Statement,
    sea_query::{Alias, Expr, OnConflict, Query, SimpleExpr},
};
use uuid::Uuid;

use super::{count_issued, from_model, generated, internal, reward_for_vouchers, voucher_rows};
use crate::{
    domain::vouchers::{
        CodeRequest, CodeSpec, FastRng, Voucher,
        batch::{
            Allotment, BatchAnswer, BatchOrder, Holdings, allot, check_requested_until,
            check_reward, counts_under_lock, draw_codes,
        },
        reason, voucher_validity,
    },
    store::rewards,
};

/// Rounds of drawing codes for recipients whose code turned out taken.
const DRAW_ROUNDS: usize = 5;

fn refused(r: &'static str) -> ApiError {
    let message = match r {
        reason::REWARD_NOT_CAMPAIGN => "only a CAMPAIGN reward issues vouchers in batches",
        _ => "the reward is not active now",
    };
    ApiError::precondition(r, message)
}

/// Issues the order's vouchers in the caller's transaction; one answer per recipient, in the
/// order's order.
pub async fn issue(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    order: &BatchOrder,
    now: DateTime<Utc>,
) -> Result<Vec<BatchAnswer>, ApiError> {
    // Stored times have microseconds: the first answer and a retry's must agree.
    let now = now.trunc_subsecs(6);
    let not_found = || ApiError::NotFound(format!("reward {}", order.reward_id));
    generated::lock_for_issue(conn, partner_id).await?;
    let reward = rewards::find_reward(conn, partner_id, order.reward_id, false)
        .await?
        .ok_or_else(not_found)?;
    check_reward(reward.reward_type, reward.issuable_at(now)).map_err(refused)?;
    check_requested_until(order.requested_until, &reward.validity)
        .map_err(|why| ApiError::invalid("valid_until_time", why))?;
    let mut settings = reward_for_vouchers(conn, partner_id, order.reward_id, false)
        .await?
        .ok_or_else(not_found)?;
    if counts_under_lock(&settings.rules) {
        settings = reward_for_vouchers(conn, partner_id, order.reward_id, true)
            .await?
            .ok_or_else(not_found)?;
    }
    let rules = &settings.rules;
    // A limited reward decides who may get a voucher only after knowing who already has one.
    // Without limits the INSERT finds them: a recipient whose key is taken is skipped and read
    // back below, so a first call (a campaign launch) reads nothing before writing.
    let limited = counts_under_lock(rules);
    let holdings = Holdings {
        existing: if limited {
            existing(conn, partner_id, order, &order.customer_ids).await?
        } else {
            HashMap::new()
        },
        held: if rules.max_per_customer > 0 {
            held(conn, partner_id, order.reward_id, &order.customer_ids).await?
        } else {
            HashMap::new()
        },
        issued_count: settings.issued_count,
    };
    let allotted = allot(&order.customer_ids, rules, &holdings);
    let mut wanted: Vec<Uuid> = order
        .customer_ids
        .iter()
        .zip(&allotted)
        .filter(|(_, a)| **a == Allotment::New)
        .map(|(c, _)| *c)
        .collect();
    wanted.sort_unstable();

    let validity = voucher_validity(&settings.validity, rules, order.requested_until, now);
    let spec = CodeSpec::parse(
        &mut Violations::new(),
        &CodeRequest {
            prefix: rules.code_prefix.clone(),
            ..Default::default()
        },
    )
    .ok_or_else(|| internal("bad stored code prefix"))?;
    let generations = if wanted.is_empty() {
        None
    } else {
        Some(generated::OverlappingGenerations::read(conn, partner_id, &spec).await?)
    };
    let mut rng = FastRng::from_os();
    let mut used = HashSet::new();
    let mut issued: HashMap<Uuid, Voucher> = HashMap::with_capacity(wanted.len());
    // Vouchers of this source a concurrent call issued first.
    let mut theirs: HashMap<Uuid, Voucher> = HashMap::new();
    for _ in 0..DRAW_ROUNDS {
        let Some(generations) = generations.as_ref().filter(|_| !wanted.is_empty()) else {
            break;
        };
        let codes = draw_codes(&spec, wanted.len(), &mut rng, &mut used);
        let taken = generations.taken(conn, partner_id, &codes).await?;
        let mut again = Vec::new();
        let mut batch = Vec::with_capacity(wanted.len());
        for (i, customer) in wanted.iter().enumerate() {
            match codes.get(i) {
                Some(code) if !taken.contains(code) => batch.push(order.voucher(
                    Uuid::now_v7(),
                    *customer,
                    code.clone(),
                    validity,
                    now,
                )),
                _ => again.push(*customer),
            }
        }
        let inserted = insert(conn, partner_id, order, &batch).await?;
        let missed: Vec<Uuid> = batch
            .iter()
            .filter_map(|v| v.customer_id)
            .filter(|c| !inserted.contains(c))
            .collect();
        if !missed.is_empty() {
            let mut found = existing(conn, partner_id, order, &missed).await?;
            for c in missed {
                match found.remove(&c) {
                    Some(v) => {
                        theirs.insert(c, v);
                    }
                    // Its code was taken by a voucher written meanwhile: draw again.
                    None => again.push(c),
                }
            }
        }
        for v in batch {
            if let Some(c) = v.customer_id.filter(|c| inserted.contains(c)) {
                issued.insert(c, v);
            }
        }
        again.sort_unstable();
        wanted = again;
    }

    let mut answers = Vec::with_capacity(order.customer_ids.len());
    let mut published = Vec::with_capacity(issued.len());
    for (customer, allotment) in order.customer_ids.iter().zip(allotted) {
        answers.push(match allotment {
            Allotment::Existing(voucher) => BatchAnswer::Issued {
                voucher,
                newly_issued: false,
            },
            Allotment::Refused(r) => BatchAnswer::Refused(r),
            Allotment::New => {
                if let Some(voucher) = issued.remove(customer) {
                    published.push(issued_event(&voucher));
                    BatchAnswer::Issued {
                        voucher,
                        newly_issued: true,
                    }
                } else if let Some(voucher) = theirs.remove(customer) {
                    BatchAnswer::Issued {
                        voucher,
                        newly_issued: false,
                    }
                } else {
                    BatchAnswer::Refused(reason::CODE_SPACE_EXHAUSTED)
                }
            }
        });
    }
    if !published.is_empty() {
        events::enqueue_all(conn, Some(partner_id), &published).await?;
        count_issued(
            conn,
            order.reward_id,
            i64::try_from(published.len()).unwrap_or(i64::MAX),
        )
        .await?;
    }
    Ok(answers)
}

fn issued_event(v: &Voucher) -> ev::VoucherIssued {
    ev::VoucherIssued {
        voucher_id: v.id.to_string(),
        reward_id: v.reward_id.to_string(),
        customer_id: v.customer_id.map(|c| c.to_string()).unwrap_or_default(),
        code: v.code.clone(),
        source: v.source.as_str().to_owned(),
        source_id: v.source_id.clone(),
        valid_until_time: v.validity.until.map(to_timestamp),
        gift_recipient_email: String::new(),
    }
}

/// UUIDs as one PostgreSQL array parameter (`string_to_array($n, ',')::uuid[]`).
fn uuid_list(ids: impl IntoIterator<Item = Uuid>) -> String {
    ids.into_iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The vouchers of the order's (reward, source) that earlier batches issued to `customers`:
/// one SELECT of their keys on the unique index `vouchers_batch_key` (see m0015 for why one
/// key column). A row is taken only if it is what its key names.
async fn existing(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    order: &BatchOrder,
    customers: &[Uuid],
) -> Result<HashMap<Uuid, Voucher>, ApiError> {
    // Only the keys as a condition (they name the partner): given the partner too, the
    // planner may prefer reading the partner's vouchers to probing the keys.
    let keys = customers.iter().map(|c| order.key(partner_id, *c));
    let find = voucher_rows::Entity::find();
    let rows = if conn.get_database_backend() == DbBackend::Postgres {
        // One array parameter: a list of 1,000 bound values costs more to plan than to run.
        find.filter(Expr::cust_with_values(
            "batch_key = ANY(string_to_array($1, ',')::uuid[])",
            [uuid_list(keys)],
        ))
    } else {
        find.filter(Expr::col(Alias::new("batch_key")).is_in(keys))
    }
    .all(conn)
    .await?;
    let source_id = order.source_id.to_string();
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        if row.partner_id != partner_id
            || row.reward_id != order.reward_id
            || row.source_id != source_id
        {
            continue;
        }
        let v = from_model(row)?;
        if let Some(c) = v.customer_id {
            out.insert(c, v);
        }
    }
    Ok(out)
}

/// How many vouchers of the reward each of `customers` holds, of any source and state (one
/// grouped count); customers holding none are absent. On PostgreSQL the customers are an
/// unnested array joined on (partner, customer) and the reward is picked here, not in SQL:
/// given the reward, a planner whose statistics predate a new campaign's reward may take it
/// for a handful of rows and read all its vouchers for each batch.
async fn held(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    reward_id: Uuid,
    customers: &[Uuid],
) -> Result<HashMap<Uuid, u64>, ApiError> {
    use voucher_rows::Column as C;
    let backend = conn.get_database_backend();
    let rows: Vec<(Option<Uuid>, Uuid, i64)> = if backend == DbBackend::Postgres {
        conn.query_all(Statement::from_sql_and_values(
            backend,
            "SELECT v.customer_id, v.reward_id, count(*) AS n \
             FROM unnest(string_to_array($2, ',')::uuid[]) AS c(customer_id) \
             JOIN vouchers v ON v.partner_id = $1 AND v.customer_id = c.customer_id \
             GROUP BY v.customer_id, v.reward_id",
            [
                partner_id.into(),
                uuid_list(customers.iter().copied()).into(),
            ],
        ))
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("", "customer_id")?,
                r.try_get("", "reward_id")?,
                r.try_get("", "n")?,
            ))
        })
        .collect::<Result<_, sea_orm::DbErr>>()?
    } else {
        voucher_rows::Entity::find()
            .select_only()
            .column(C::CustomerId)
            .column(C::RewardId)
            .column_as(C::Id.count(), "n")
            .filter(C::PartnerId.eq(partner_id))
            .filter(C::RewardId.eq(reward_id))
            .filter(C::CustomerId.is_in(customers.iter().copied()))
            .group_by(C::CustomerId)
            .group_by(C::RewardId)
            .into_tuple()
            .all(conn)
            .await?
    };
    Ok(rows
        .into_iter()
        .filter(|(_, r, _)| *r == reward_id)
        .filter_map(|(c, _, n)| Some((c?, u64::try_from(n).unwrap_or(0))))
        .collect())
}

/// Inserts the order's new vouchers in one statement, each with its key, skipping any that
/// hits a unique index (a code taken, or the key written by a concurrent call); answers the
/// customers whose voucher was inserted.
async fn insert(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    order: &BatchOrder,
    vouchers: &[Voucher],
) -> Result<HashSet<Uuid>, ApiError> {
    let Some(first) = vouchers.first() else {
        return Ok(HashSet::new());
    };
    let key = |v: &Voucher| v.customer_id.map(|c| order.key(partner_id, c));
    let backend = conn.get_database_backend();
    let statement = if backend == DbBackend::Postgres {
        // Ids, codes, customers and keys hold no comma: four text parameters, unnested. What
        // the vouchers of one batch share (reward, source, validity, issue time) is bound once.
        let joined = |part: &dyn Fn(&Voucher) -> String| {
            vouchers.iter().map(part).collect::<Vec<_>>().join(",")
        };
        let uuid = |id: Option<Uuid>| id.map(|id| id.to_string()).unwrap_or_default();
        Statement::from_sql_and_values(
            backend,
            "INSERT INTO vouchers (id, partner_id, code, reward_id, customer_id, state, source, \
             source_id, valid_from, valid_until, points_paid, gift_recipient_email, \
             gift_recipient_name, issued_at, batch_key) \
             SELECT t.id::uuid, $1, t.code, $2, t.customer_id::uuid, $3, $4, $5, $6, $7, 0, \
             '', '', $8, t.batch_key::uuid \
             FROM unnest(string_to_array($9, ','), string_to_array($10, ','), \
             string_to_array($11, ','), string_to_array($12, ',')) \
             AS t(id, code, customer_id, batch_key) \
             ON CONFLICT DO NOTHING RETURNING customer_id",
            [
                partner_id.into(),
                first.reward_id.into(),
                first.state.as_str().into(),
                first.source.as_str().into(),
                first.source_id.clone().into(),
                first.validity.from.into(),
                first.validity.until.into(),
                first.issued_at.into(),
                joined(&|v| v.id.to_string()).into(),
                joined(&|v| v.code.clone()).into(),
                joined(&|v| uuid(v.customer_id)).into(),
                joined(&|v| uuid(key(v))).into(),
            ],
        )
    } else {
        let mut q = Query::insert();
        q.into_table(Alias::new("vouchers")).columns(
            [
                "id",
                "partner_id",
                "code",
                "reward_id",
                "customer_id",
                "state",
                "source",
                "source_id",
                "valid_from",
                "valid_until",
                "points_paid",
                "gift_recipient_email",
                "gift_recipient_name",
                "issued_at",
                "batch_key",
            ]
            .map(Alias::new),
        );
        for v in vouchers {
            let row: [SimpleExpr; 15] = [
                v.id.into(),
                partner_id.into(),
                v.code.clone().into(),
                v.reward_id.into(),
                v.customer_id.into(),
                v.state.as_str().into(),
                v.source.as_str().into(),
                v.source_id.clone().into(),
                v.validity.from.into(),
                v.validity.until.into(),
                0i64.into(),
                "".into(),
                "".into(),
                v.issued_at.into(),
                key(v).into(),
            ];
            q.values(row).map_err(internal)?;
        }
        q.on_conflict(OnConflict::new().do_nothing().to_owned())
            .returning_col(Alias::new("customer_id"));
        backend.build(&q)
    };
    conn.query_all(statement)
        .await?
        .iter()
        .map(|row| {
            row.try_get::<Uuid>("", "customer_id")
                .map_err(ApiError::from)
        })
        .collect()
}

#[cfg(test)]
mod tests;

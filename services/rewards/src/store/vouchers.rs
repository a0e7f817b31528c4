//! Vouchers and the voucher settings of rewards, scoped by partner. Changes of one voucher
//! run under a row lock (`SELECT … FOR UPDATE` on PostgreSQL; SQLite serialises writers), so
//! concurrent redemptions of one voucher see each other's result.
use chrono::{DateTime, Utc};
use loyalty_platform::ApiError;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement, sea_query::OnConflict,
};
use uuid::Uuid;

use super::rewards;
use crate::domain::{
    RewardType, Validity,
    vouchers::{
        CodeSpec, FastRng, ShownState, Voucher, VoucherRules, VoucherSource, VoucherState, reason,
    },
};

pub mod rules {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "reward_voucher_rules")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub reward_id: Uuid,
        pub partner_id: Uuid,
        pub points_price: i64,
        pub validity_days: i32,
        pub max_per_customer: i32,
        pub max_total: i64,
        pub code_prefix: String,
        pub business_unit_ids: Json,
        pub channels: Json,
        pub issued_count: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod voucher_rows {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "vouchers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub code: String,
        pub reward_id: Uuid,
        pub customer_id: Option<Uuid>,
        pub state: String,
        pub source: String,
        pub source_id: String,
        pub valid_from: Option<DateTimeUtc>,
        pub valid_until: Option<DateTimeUtc>,
        pub points_paid: i64,
        pub gift_recipient_email: String,
        pub gift_recipient_name: String,
        pub issued_at: DateTimeUtc,
        pub reserve_transaction_id: Option<String>,
        pub reserve_until: Option<DateTimeUtc>,
        pub redeemed_at: Option<DateTimeUtc>,
        pub redeem_transaction_id: Option<String>,
        pub redeem_business_unit_id: Option<Uuid>,
        pub cancelled_at: Option<DateTimeUtc>,
        pub cancel_reason: Option<String>,
        pub points_reservation_id: Option<Uuid>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("{e}"))
}

fn json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(v).map_err(internal)
}

/// What the voucher operations need of a reward.
#[derive(Debug, Clone)]
pub struct RewardForVouchers {
    pub id: Uuid,
    pub display_name: String,
    pub reward_type: RewardType,
    pub validity: Validity,
    pub rules: VoucherRules,
    /// Vouchers issued so far (for `max_total`).
    pub issued_count: i64,
}

fn rules_model(
    partner_id: Uuid,
    reward_id: Uuid,
    r: &VoucherRules,
) -> Result<rules::ActiveModel, ApiError> {
    Ok(rules::ActiveModel {
        reward_id: Set(reward_id),
        partner_id: Set(partner_id),
        points_price: Set(r.points_price),
        validity_days: Set(r.validity_days),
        max_per_customer: Set(r.max_per_customer),
        max_total: Set(r.max_total),
        code_prefix: Set(r.code_prefix.clone()),
        business_unit_ids: Set(json(&r.business_unit_ids)?),
        channels: Set(json(&r.channels)?),
        issued_count: Set(0),
    })
}

/// Stores the voucher settings of a new reward.
pub async fn insert_rules(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    reward_id: Uuid,
    r: &VoucherRules,
) -> Result<(), ApiError> {
    rules::Entity::insert(rules_model(partner_id, reward_id, r)?)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// The voucher settings of rewards (for listing rewards with them); missing = defaults.
pub async fn rules_of(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    reward_ids: &[Uuid],
) -> Result<Vec<(Uuid, VoucherRules)>, ApiError> {
    let rows = rules::Entity::find()
        .filter(rules::Column::PartnerId.eq(partner_id))
        .filter(rules::Column::RewardId.is_in(reward_ids.iter().copied()))
        .all(conn)
        .await?;
    rows.into_iter()
        .map(|m| Ok((m.reward_id, rules_from(&m)?)))
        .collect()
}

fn rules_from(m: &rules::Model) -> Result<VoucherRules, ApiError> {
    Ok(VoucherRules {
        points_price: m.points_price,
        validity_days: m.validity_days,
        max_per_customer: m.max_per_customer,
        max_total: m.max_total,
        code_prefix: m.code_prefix.clone(),
        business_unit_ids: serde_json::from_value(m.business_unit_ids.clone()).map_err(internal)?,
        channels: serde_json::from_value(m.channels.clone()).map_err(internal)?,
    })
}

/// A reward of the partner with its voucher settings. With `lock`, the settings row is locked
/// until the transaction ends (issuing: limits are counted under it); a reward created before
/// vouchers existed gets default settings.
pub async fn reward_for_vouchers(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    reward_id: Uuid,
    lock: bool,
) -> Result<Option<RewardForVouchers>, ApiError> {
    let Some(reward) = rewards::Entity::find_by_id(reward_id)
        .filter(rewards::Column::PartnerId.eq(partner_id))
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    let find =
        || rules::Entity::find_by_id(reward_id).filter(rules::Column::PartnerId.eq(partner_id));
    let mut row = if lock {
        find().lock_exclusive().one(conn).await?
    } else {
        find().one(conn).await?
    };
    if row.is_none() && lock {
        rules::Entity::insert(rules_model(
            partner_id,
            reward_id,
            &VoucherRules::default(),
        )?)
        .on_conflict(
            OnConflict::column(rules::Column::RewardId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
        row = find().lock_exclusive().one(conn).await?;
    }
    let (rules, issued_count) = match &row {
        Some(m) => (rules_from(m)?, m.issued_count),
        None => (VoucherRules::default(), 0),
    };
    Ok(Some(RewardForVouchers {
        id: reward.id,
        display_name: reward.display_name,
        reward_type: RewardType::parse_str(&reward.reward_type)
            .ok_or_else(|| internal(format!("unknown reward type {}", reward.reward_type)))?,
        validity: Validity {
            from: reward.valid_from,
            until: reward.valid_until,
        },
        rules,
        issued_count,
    }))
}

/// Adds `by` to the reward's issued count (its settings row must be locked by the caller).
pub async fn count_issued(
    conn: &impl ConnectionTrait,
    reward_id: Uuid,
    by: i64,
) -> Result<(), ApiError> {
    rules::Entity::update_many()
        .col_expr(
            rules::Column::IssuedCount,
            sea_orm::sea_query::Expr::col(rules::Column::IssuedCount).add(by),
        )
        .filter(rules::Column::RewardId.eq(reward_id))
        .exec(conn)
        .await?;
    Ok(())
}

/// How many vouchers of a reward a customer holds (in any state).
pub async fn customer_voucher_count(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    reward_id: Uuid,
    customer_id: Uuid,
) -> Result<u64, ApiError> {
    use sea_orm::PaginatorTrait;
    Ok(voucher_rows::Entity::find()
        .filter(voucher_rows::Column::PartnerId.eq(partner_id))
        .filter(voucher_rows::Column::RewardId.eq(reward_id))
        .filter(voucher_rows::Column::CustomerId.eq(customer_id))
        .count(conn)
        .await?)
}

fn to_model(partner_id: Uuid, v: &Voucher) -> voucher_rows::ActiveModel {
    voucher_rows::ActiveModel {
        id: Set(v.id),
        partner_id: Set(partner_id),
        code: Set(v.code.clone()),
        reward_id: Set(v.reward_id),
        customer_id: Set(v.customer_id),
        state: Set(v.state.as_str().to_owned()),
        source: Set(v.source.as_str().to_owned()),
        source_id: Set(v.source_id.clone()),
        valid_from: Set(v.validity.from),
        valid_until: Set(v.validity.until),
        points_paid: Set(v.points_paid),
        gift_recipient_email: Set(v.gift_recipient_email.clone()),
        gift_recipient_name: Set(v.gift_recipient_name.clone()),
        issued_at: Set(v.issued_at),
        reserve_transaction_id: Set(v.reserve_transaction_id.clone()),
        reserve_until: Set(v.reserve_until),
        redeemed_at: Set(v.redeemed_at),
        redeem_transaction_id: Set(v.redeem_transaction_id.clone()),
        redeem_business_unit_id: Set(v.redeem_business_unit_id),
        cancelled_at: Set(v.cancelled_at),
        cancel_reason: Set(v.cancel_reason.clone()),
        points_reservation_id: Set(v.points_reservation_id),
    }
}

fn from_model(m: voucher_rows::Model) -> Result<Voucher, ApiError> {
    Ok(Voucher {
        id: m.id,
        state: VoucherState::parse_str(&m.state)
            .ok_or_else(|| internal(format!("unknown voucher state {}", m.state)))?,
        source: VoucherSource::parse_str(&m.source)
            .ok_or_else(|| internal(format!("unknown voucher source {}", m.source)))?,
        code: m.code,
        reward_id: m.reward_id,
        customer_id: m.customer_id,
        source_id: m.source_id,
        validity: Validity {
            from: m.valid_from,
            until: m.valid_until,
        },
        points_paid: m.points_paid,
        gift_recipient_email: m.gift_recipient_email,
        gift_recipient_name: m.gift_recipient_name,
        issued_at: m.issued_at,
        reserve_transaction_id: m.reserve_transaction_id,
        reserve_until: m.reserve_until,
        redeemed_at: m.redeemed_at,
        redeem_transaction_id: m.redeem_transaction_id,
        redeem_business_unit_id: m.redeem_business_unit_id,
        cancelled_at: m.cancelled_at,
        cancel_reason: m.cancel_reason,
        points_reservation_id: m.points_reservation_id,
    })
}

/// Inserts a voucher unless its code is taken; `false` when taken (the transaction stays
/// usable: ON CONFLICT DO NOTHING).
pub async fn insert_voucher(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    v: &Voucher,
) -> Result<bool, ApiError> {
    let n = voucher_rows::Entity::insert(to_model(partner_id, v))
        .on_conflict(
            OnConflict::columns([voucher_rows::Column::PartnerId, voucher_rows::Column::Code])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(n == 1)
}

/// Writes a voucher's changed state.
pub async fn update_voucher(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    v: &Voucher,
) -> Result<(), ApiError> {
    voucher_rows::Entity::update(to_model(partner_id, v))
        .filter(voucher_rows::Column::PartnerId.eq(partner_id))
        .exec(conn)
        .await?;
    Ok(())
}

/// How to find one voucher.
#[derive(Debug, Clone)]
pub enum VoucherKey {
    Id(Uuid),
    /// A normalised (upper-case) code.
    Code(String),
}

/// One voucher of the partner; with `lock`, its row is locked until the transaction ends.
pub async fn voucher(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    key: &VoucherKey,
    lock: bool,
) -> Result<Option<Voucher>, ApiError> {
    let mut q = voucher_rows::Entity::find().filter(voucher_rows::Column::PartnerId.eq(partner_id));
    q = match key {
        VoucherKey::Id(id) => q.filter(voucher_rows::Column::Id.eq(*id)),
        VoucherKey::Code(code) => q.filter(voucher_rows::Column::Code.eq(code.as_str())),
    };
    if lock {
        q = q.lock_exclusive();
    }
    q.one(conn).await?.map(from_model).transpose()
}

/// The stored condition for a state as shown at `at`.
fn shown_state_condition(s: ShownState, at: DateTime<Utc>) -> Condition {
    use voucher_rows::Column as C;
    let unused = C::State.is_in([
        VoucherState::Active.as_str(),
        VoucherState::Reserved.as_str(),
    ]);
    let not_expired = Condition::any()
        .add(C::ValidUntil.is_null())
        .add(C::ValidUntil.gt(at));
    match s {
        ShownState::Redeemed => Condition::all().add(C::State.eq(VoucherState::Redeemed.as_str())),
        ShownState::Cancelled => {
            Condition::all().add(C::State.eq(VoucherState::Cancelled.as_str()))
        }
        ShownState::Expired => Condition::all().add(unused).add(C::ValidUntil.lte(at)),
        ShownState::Reserved => Condition::all()
            .add(C::State.eq(VoucherState::Reserved.as_str()))
            .add(C::ReserveUntil.gt(at))
            .add(not_expired),
        ShownState::Active => Condition::all().add(unused).add(not_expired).add(
            Condition::any()
                .add(C::State.eq(VoucherState::Active.as_str()))
                .add(C::ReserveUntil.lte(at)),
        ),
    }
}

/// A page of vouchers, newest first (by id), of a customer and/or a reward, in the given
/// shown states (empty = all), before `before`.
#[allow(clippy::too_many_arguments)]
pub async fn list_vouchers(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Option<Uuid>,
    reward_id: Option<Uuid>,
    states: &[ShownState],
    at: DateTime<Utc>,
    before: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Voucher>, ApiError> {
    let mut q = voucher_rows::Entity::find().filter(voucher_rows::Column::PartnerId.eq(partner_id));
    if let Some(c) = customer_id {
        q = q.filter(voucher_rows::Column::CustomerId.eq(c));
    }
    if let Some(r) = reward_id {
        q = q.filter(voucher_rows::Column::RewardId.eq(r));
    }
    if !states.is_empty() {
        let mut any = Condition::any();
        for s in states {
            any = any.add(shown_state_condition(*s, at));
        }
        q = q.filter(any);
    }
    if let Some(b) = before {
        q = q.filter(voucher_rows::Column::Id.lt(b));
    }
    q.order_by_desc(voucher_rows::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(from_model)
        .collect()
}

/// What every generated voucher of one call shares.
#[derive(Debug, Clone)]
pub struct GeneratedBatch {
    pub partner_id: Uuid,
    pub reward_id: Uuid,
    pub source: VoucherSource,
    pub source_id: String,
    pub validity: Validity,
    pub issued_at: DateTime<Utc>,
}

/// Inserts generated bearer vouchers `(id, code)`, skipping codes already taken; returns how
/// many were inserted. PostgreSQL gets all rows in one statement (two text parameters
/// unnested), SQLite multi-row inserts.
pub async fn insert_generated(
    conn: &impl ConnectionTrait,
    b: &GeneratedBatch,
    ids: &str,
    codes: &str,
    rows: &[(Uuid, &str)],
) -> Result<u64, ApiError> {
    if conn.get_database_backend() == DbBackend::Postgres {
        let sql = "INSERT INTO vouchers (id, partner_id, code, reward_id, customer_id, state, \
                   source, source_id, valid_from, valid_until, points_paid, \
                   gift_recipient_email, gift_recipient_name, issued_at) \
                   SELECT t.id::uuid, $1, t.code, $2, NULL, 'active', $3, $4, $5, $6, 0, '', '', $7 \
                   FROM unnest(string_to_array($8, ','), string_to_array($9, ',')) AS t(id, code)";
        let values = || -> Vec<sea_orm::Value> {
            vec![
                b.partner_id.into(),
                b.reward_id.into(),
                b.source.as_str().into(),
                b.source_id.clone().into(),
                b.validity.from.into(),
                b.validity.until.into(),
                b.issued_at.into(),
                ids.into(),
                codes.into(),
            ]
        };
        // A plain INSERT is ~40 % faster than one with ON CONFLICT, and a code taken by an
        // earlier call is rare in a code space at least twice the count: try it under a
        // savepoint and fall back to skipping taken codes when it hits one.
        conn.execute_unprepared("SAVEPOINT voucher_codes").await?;
        match conn
            .execute(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                values(),
            ))
            .await
        {
            Ok(r) => {
                conn.execute_unprepared("RELEASE SAVEPOINT voucher_codes")
                    .await?;
                return Ok(r.rows_affected());
            }
            Err(e) if loyalty_platform::db::is_unique_violation(&e) => {
                conn.execute_unprepared("ROLLBACK TO SAVEPOINT voucher_codes")
                    .await?;
            }
            Err(e) => return Err(e.into()),
        }
        let r = conn
            .execute(Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!("{sql} ON CONFLICT (partner_id, code) DO NOTHING"),
                values(),
            ))
            .await?;
        return Ok(r.rows_affected());
    }
    let mut inserted = 0;
    for chunk in rows.chunks(500) {
        let models = chunk.iter().map(|(id, code)| voucher_rows::ActiveModel {
            id: Set(*id),
            partner_id: Set(b.partner_id),
            code: Set((*code).to_owned()),
            reward_id: Set(b.reward_id),
            customer_id: Set(None),
            state: Set(VoucherState::Active.as_str().to_owned()),
            source: Set(b.source.as_str().to_owned()),
            source_id: Set(b.source_id.clone()),
            valid_from: Set(b.validity.from),
            valid_until: Set(b.validity.until),
            points_paid: Set(0),
            gift_recipient_email: Set(String::new()),
            gift_recipient_name: Set(String::new()),
            issued_at: Set(b.issued_at),
            reserve_transaction_id: Set(None),
            reserve_until: Set(None),
            redeemed_at: Set(None),
            redeem_transaction_id: Set(None),
            redeem_business_unit_id: Set(None),
            cancelled_at: Set(None),
            cancel_reason: Set(None),
            points_reservation_id: Set(None),
        });
        inserted += voucher_rows::Entity::insert_many(models)
            .on_conflict(
                OnConflict::columns([voucher_rows::Column::PartnerId, voucher_rows::Column::Code])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
    }
    Ok(inserted)
}

/// The first `limit` codes (by id) of the vouchers with ids in `from..to`.
pub async fn codes_in_id_range(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    from: Uuid,
    to: Uuid,
    limit: u64,
) -> Result<Vec<String>, ApiError> {
    Ok(voucher_rows::Entity::find()
        .filter(voucher_rows::Column::PartnerId.eq(partner_id))
        .filter(voucher_rows::Column::Id.gte(from))
        .filter(voucher_rows::Column::Id.lt(to))
        .order_by_asc(voucher_rows::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(|m| m.code)
        .collect())
}

/// What a bulk generation produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generated {
    pub count: u64,
    /// The first up to 1,000 codes.
    pub first_codes: Vec<String>,
    /// Codes drawn again because they were taken.
    pub collisions: u64,
}

/// Rows per statement of a bulk generation.
const GENERATE_BATCH: u64 = 100_000;

/// Draws `count` codes in memory and inserts them as bearer vouchers in batches, drawing
/// again as many codes as collided, until all are in. Ids are consecutive after one UUIDv7,
/// so the batch lists newest first like other vouchers.
pub async fn generate(
    conn: &impl ConnectionTrait,
    b: &GeneratedBatch,
    spec: &CodeSpec,
    count: u64,
    rng: &mut FastRng,
) -> Result<Generated, ApiError> {
    let first_id = Uuid::now_v7().as_u128();
    let mut next_id = first_id;
    let mut out = Generated::default();
    let mut barren_rounds = 0;
    let width = spec.code_len() + 1;
    let mut ids = String::new();
    let mut codes = Vec::new();
    while out.count < count {
        let n = (count - out.count).min(GENERATE_BATCH);
        ids.clear();
        codes.clear();
        ids.reserve(37 * n as usize);
        codes.reserve(width * n as usize);
        // Drawn into fixed-width slots, then sorted: the unique index on (partner_id, code)
        // is then filled in key order, which PostgreSQL does far faster than random inserts.
        let len = spec.code_len();
        let mut drawn = Vec::with_capacity(len * n as usize);
        for _ in 0..n {
            spec.draw(rng, &mut drawn);
        }
        let mut slots: Vec<&[u8]> = drawn.chunks_exact(len).collect();
        slots.sort_unstable();
        // Duplicates within the batch are dropped here (and drawn again in the next round),
        // so only a code taken by an earlier call can still collide.
        slots.dedup();
        let n = slots.len() as u64;
        let mut rows = Vec::with_capacity(n as usize);
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        for (i, code) in slots.iter().enumerate() {
            let id = Uuid::from_u128(next_id);
            next_id = next_id.wrapping_add(1);
            if i > 0 {
                ids.push(',');
                codes.push(b',');
            }
            ids.push_str(id.hyphenated().encode_lower(&mut buf));
            codes.extend_from_slice(code);
            rows.push(id);
        }
        let codes_text = std::str::from_utf8(&codes).map_err(internal)?;
        let pairs: Vec<(Uuid, &str)> = if conn.get_database_backend() == DbBackend::Postgres {
            Vec::new()
        } else {
            rows.iter().copied().zip(codes_text.split(',')).collect()
        };
        let inserted = insert_generated(conn, b, &ids, codes_text, &pairs).await?;
        out.count += inserted;
        out.collisions += drawn.len() as u64 / len as u64 - inserted;
        barren_rounds = if inserted == 0 { barren_rounds + 1 } else { 0 };
        if barren_rounds >= 5 {
            return Err(ApiError::precondition(
                reason::CODE_SPACE_EXHAUSTED,
                "no new code could be drawn: the pattern's codes are (nearly) all taken",
            ));
        }
    }
    out.first_codes = codes_in_id_range(
        conn,
        b.partner_id,
        Uuid::from_u128(first_id),
        Uuid::from_u128(next_id),
        1000,
    )
    .await?;
    Ok(out)
}

/// A voucher to issue to a customer (or, for gift rewards, to a recipient): what IssueVoucher
/// asks, and what a reward offer's voucher award issues.
#[derive(Debug, Clone)]
pub struct IssueOrder {
    pub reward_id: Uuid,
    pub customer_id: Option<Uuid>,
    pub source: VoucherSource,
    pub source_id: String,
    /// The latest end of validity asked for (the reward's own limits still apply).
    pub requested_until: Option<DateTime<Utc>>,
    pub gift_recipient_email: String,
    pub gift_recipient_name: String,
    /// A code chosen by the caller; `None` = drawn with the reward's prefix.
    pub code: Option<String>,
    pub pay_with_points: bool,
    /// Points the caller holds in the wallet for the voucher (0 = none) and that hold.
    pub price: i64,
    pub hold: Option<Uuid>,
}

/// Issues one voucher in the caller's transaction: checks the reward (exists in the partner,
/// active now, limits in total and per customer counted under its locked settings row), draws
/// or takes the code, stores the voucher, counts it and enqueues `VoucherIssued`. The one
/// issue path of the service (IssueVoucher and offer awards). Returns the voucher and the
/// reward's display name.
pub async fn issue(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    order: &IssueOrder,
    now: DateTime<Utc>,
) -> Result<(Voucher, String), ApiError> {
    use loyalty_platform::{Violations, events, time::to_timestamp};
    use loyalty_proto::events::v1 as ev;

    use crate::domain::{
        payments::points_at_issue,
        vouchers::{CodeRequest, voucher_validity},
    };

    let reward_id = order.reward_id;
    let customer_id = order.customer_id;
    let reward = reward_for_vouchers(conn, partner_id, reward_id, true)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("reward {reward_id}")))?;
    let gift = reward.reward_type == RewardType::Gift;
    let mut v = Violations::new();
    if customer_id.is_none() && !gift {
        v.add(
            "customer_id",
            "is required (only gift vouchers may be bearer vouchers)",
        );
    }
    if gift && order.gift_recipient_email.is_empty() {
        v.add("gift_recipient_email", "is required for gift vouchers");
    }
    v.into_result()?;
    let active = rewards::find_reward(conn, partner_id, reward_id, false)
        .await?
        .is_some_and(|r| r.issuable_at(now));
    if !reward.validity.contains(now) || !active {
        return Err(ApiError::precondition(
            reason::REWARD_NOT_ACTIVE,
            "the reward is not active now",
        ));
    }
    let due = points_at_issue(
        reward.reward_type,
        reward.rules.points_price,
        order.pay_with_points,
    );
    if due != order.price {
        return Err(ApiError::precondition(
            reason::POINTS_PAYMENT_UNAVAILABLE,
            "the reward's points price changed while the points were held; retry",
        ));
    }
    if reward.rules.max_total > 0 && reward.issued_count >= reward.rules.max_total {
        return Err(ApiError::precondition(
            reason::LIMIT_REACHED,
            format!(
                "the reward's {} vouchers are all issued",
                reward.rules.max_total
            ),
        ));
    }
    if let Some(c) = customer_id
        && reward.rules.max_per_customer > 0
        && customer_voucher_count(conn, partner_id, reward_id, c).await?
            >= u64::try_from(reward.rules.max_per_customer).unwrap_or(0)
    {
        return Err(ApiError::precondition(
            reason::LIMIT_REACHED,
            format!(
                "the customer already has the {} vouchers of this reward allowed",
                reward.rules.max_per_customer
            ),
        ));
    }
    let mut voucher = Voucher {
        id: Uuid::now_v7(),
        code: String::new(),
        reward_id,
        customer_id,
        state: VoucherState::Active,
        source: order.source,
        source_id: order.source_id.clone(),
        validity: voucher_validity(&reward.validity, &reward.rules, order.requested_until, now),
        points_paid: 0,
        gift_recipient_email: order.gift_recipient_email.clone(),
        gift_recipient_name: order.gift_recipient_name.clone(),
        issued_at: now,
        reserve_transaction_id: None,
        reserve_until: None,
        redeemed_at: None,
        redeem_transaction_id: None,
        redeem_business_unit_id: None,
        cancelled_at: None,
        cancel_reason: None,
        points_reservation_id: None,
    };
    if let Some(h) = order.hold {
        voucher.paid_with(order.price, h);
    }
    if let Some(c) = &order.code {
        voucher.code = c.clone();
        if !insert_voucher(conn, partner_id, &voucher).await? {
            return Err(ApiError::AlreadyExists(format!(
                "voucher code {}",
                voucher.code
            )));
        }
    } else {
        let spec = CodeSpec::parse(
            &mut Violations::new(),
            &CodeRequest {
                prefix: reward.rules.code_prefix.clone(),
                ..Default::default()
            },
        )
        .ok_or_else(|| internal("bad stored code prefix"))?;
        let mut rng = FastRng::from_os();
        let mut inserted = false;
        for _ in 0..5 {
            let mut buf = Vec::new();
            spec.draw(&mut rng, &mut buf);
            voucher.code = String::from_utf8(buf).map_err(internal)?;
            if insert_voucher(conn, partner_id, &voucher).await? {
                inserted = true;
                break;
            }
        }
        if !inserted {
            return Err(ApiError::precondition(
                reason::CODE_SPACE_EXHAUSTED,
                "no free voucher code could be drawn",
            ));
        }
    }
    count_issued(conn, reward_id, 1).await?;
    events::enqueue(
        conn,
        Some(partner_id),
        &ev::VoucherIssued {
            voucher_id: voucher.id.to_string(),
            reward_id: reward_id.to_string(),
            customer_id: customer_id.map(|c| c.to_string()).unwrap_or_default(),
            code: voucher.code.clone(),
            source: order.source.as_str().to_owned(),
            source_id: voucher.source_id.clone(),
            valid_until_time: voucher.validity.until.map(to_timestamp),
            gift_recipient_email: voucher.gift_recipient_email.clone(),
        },
    )
    .await?;
    Ok((voucher, reward.display_name))
}

#[cfg(test)]
mod tests;

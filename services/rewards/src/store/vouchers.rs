//! Vouchers and the voucher settings of rewards, scoped by partner. Changes of one voucher
//! run under a row lock (`SELECT … FOR UPDATE` on PostgreSQL; SQLite serialises writers), so
//! concurrent redemptions of one voucher see each other's result.
use chrono::{DateTime, Utc};
use loyalty_platform::ApiError;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::OnConflict,
};
use uuid::Uuid;

use super::rewards;
use crate::domain::{
    Benefit, RewardType, Validity,
    rewards::Amount,
    vouchers::{ShownState, Voucher, VoucherRules, VoucherSource, VoucherState},
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
        pub value_minor: Option<i64>,
        pub value_currency: Option<String>,
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
    /// What the reward grants (a gift value reward's vouchers carry their chosen value).
    pub benefit: Benefit,
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
        benefit: serde_json::from_value(reward.benefit).map_err(internal)?,
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
        value_minor: Set(v.value.as_ref().map(|a| a.minor)),
        value_currency: Set(v.value.as_ref().map(|a| a.currency.clone())),
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
        value: match (m.value_minor, m.value_currency) {
            (Some(minor), Some(currency)) => Some(Amount { currency, minor }),
            _ => None,
        },
    })
}

/// Inserts a voucher unless its code (or id) is taken; `false` when taken (the transaction
/// stays usable: ON CONFLICT DO NOTHING). Without a conflict target, so that concurrent
/// materialisations of one generated code (same id and code) meet on whichever unique index
/// PostgreSQL checks first instead of failing on the one that is not the arbiter.
pub async fn insert_voucher(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    v: &Voucher,
) -> Result<bool, ApiError> {
    let n = voucher_rows::Entity::insert(to_model(partner_id, v))
        .on_conflict(OnConflict::new().do_nothing().to_owned())
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
/// A generated code without a row yet is found in its generation; locking materialises its
/// row first (concurrent callers insert it once and then queue on its lock).
pub async fn voucher(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    key: &VoucherKey,
    lock: bool,
) -> Result<Option<Voucher>, ApiError> {
    if let Some(v) = stored_voucher(conn, partner_id, key, lock).await? {
        return Ok(Some(v));
    }
    let found = match key {
        VoucherKey::Id(id) => generated::by_id(conn, partner_id, *id).await?,
        VoucherKey::Code(code) => generated::by_code(conn, partner_id, code).await?,
    };
    let Some(v) = found else {
        return Ok(None);
    };
    if !lock {
        return Ok(Some(v));
    }
    insert_voucher(conn, partner_id, &v).await?;
    stored_voucher(conn, partner_id, &VoucherKey::Id(v.id), true).await
}

async fn stored_voucher(
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
    let mut out: Vec<Voucher> = q
        .order_by_desc(voucher_rows::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(from_model)
        .collect::<Result<_, _>>()?;
    // Generated codes without a row yet are bearer vouchers of their reward.
    if let (None, Some(r)) = (customer_id, reward_id) {
        out.extend(generated::list(conn, partner_id, r, states, at, before, limit).await?);
        out.sort_unstable_by_key(|v| std::cmp::Reverse(v.id));
        out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    Ok(out)
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

pub mod batch;
pub mod generated;

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
    /// The value chosen by the buyer of a gift value reward's voucher; `None` otherwise.
    pub value: Option<Amount>,
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
        vouchers::{CodeRequest, CodeSpec, FastRng, chosen_value, reason, voucher_validity},
    };

    let reward_id = order.reward_id;
    let customer_id = order.customer_id;
    // First: a code generation of the partner being written finishes before.
    generated::lock_for_issue(conn, partner_id).await?;
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
    let value = chosen_value(&reward.benefit, order.value.as_ref())
        .map_err(|why| v.add("value", why))
        .unwrap_or_default();
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
        customer_id,
        source_id: order.source_id.clone(),
        gift_recipient_email: order.gift_recipient_email.clone(),
        gift_recipient_name: order.gift_recipient_name.clone(),
        value,
        ..Voucher::issued(
            Uuid::now_v7(),
            String::new(),
            reward_id,
            order.source,
            voucher_validity(&reward.validity, &reward.rules, order.requested_until, now),
            now,
        )
    };
    if let Some(h) = order.hold {
        voucher.paid_with(order.price, h);
    }
    if let Some(c) = &order.code {
        voucher.code = c.clone();
        if generated::code_taken(conn, partner_id, &voucher.code).await?
            || !insert_voucher(conn, partner_id, &voucher).await?
        {
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
            if !generated::code_taken(conn, partner_id, &voucher.code).await?
                && insert_voucher(conn, partner_id, &voucher).await?
            {
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

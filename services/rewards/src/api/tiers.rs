//! Membership levels (tiers): the ladder (ADMIN and MARKETING change it, every role reads it;
//! each change is one idempotent transaction publishing `RewardsChanged`), a customer's tier
//! with progress to the next, manual tiers and the tier history.
use chrono::{DateTime, Utc};
use loyalty_platform::{
    ApiError, Role, Violations,
    auth::principal,
    error::{check_etag, check_idempotency_key, mask_paths, parse_uuid},
    idempotency::{self, IdempotencyScope},
    paging::{next_code_token, next_page_token, page_size, parse_code_token, parse_page_token},
    time::{from_timestamp, to_timestamp},
};
use loyalty_proto::{rewards::v1 as pb, types::v1::Money};
use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    domain::{
        catalogue::etag,
        tiers::{
            Action, Activity, Cause, CustomerState, DowngradeMode, MAX_REASON_CHARS, Manual,
            Period, Qualification, Tier, apply, lookback_start, progress,
        },
    },
    store::{evaluation_cache::EffectiveTier, tiers as store},
};

const WRITERS: &[Role] = &[Role::Admin, Role::Marketing];
const READERS: &[Role] = &[
    Role::Admin,
    Role::Marketing,
    Role::Pos,
    Role::Service,
    Role::Support,
];
/// Who may set a manual tier (support agents handle goodwill and complaints).
const MANUAL_SETTERS: &[Role] = &[Role::Admin, Role::Marketing, Role::Support];

const UPDATABLE: &[&str] = &[
    "display_name",
    "rank",
    "qualification",
    "retention_months",
    "downgrade_mode",
    "points_multiplier_basis_points",
    "discount_basis_points",
    "icon_url",
    "color",
];

fn partner<T>(request: &Request<T>, roles: &[Role]) -> Result<Uuid, Status> {
    Ok(principal(request)?.partner_with_role(roles)?)
}

fn not_found(key: &str) -> ApiError {
    ApiError::NotFound(format!("tier {key:?}"))
}

// ---- Conversions ----

fn period_from_proto(v: &mut Violations, q: &pb::TierQualification, thresholds: bool) -> Period {
    let field = |f: &str| format!("tier.qualification.{f}");
    match pb::TierPeriodType::try_from(q.period_type).unwrap_or_default() {
        pb::TierPeriodType::Unspecified | pb::TierPeriodType::Rolling => {
            match (q.period_months, q.period_days) {
                (0, 0) if thresholds => {
                    v.add(
                        field("period_months"),
                        "is required (or period_days) when a threshold is set",
                    );
                    Period::RollingMonths(12)
                }
                (0, 0) => Period::RollingMonths(12),
                (m, 0) => Period::RollingMonths(u32::try_from(m).unwrap_or(0)),
                (0, d) => Period::RollingDays(u32::try_from(d).unwrap_or(0)),
                _ => {
                    v.add(
                        field("period_days"),
                        "set either period_months or period_days",
                    );
                    Period::RollingMonths(12)
                }
            }
        }
        calendar => {
            if q.period_months != 0 || q.period_days != 0 {
                v.add(
                    field("period_type"),
                    "a calendar period takes neither period_months nor period_days",
                );
            }
            match calendar {
                pb::TierPeriodType::CalendarQuarter => Period::CalendarQuarter,
                pb::TierPeriodType::CalendarMonth => Period::CalendarMonth,
                _ => Period::CalendarYear,
            }
        }
    }
}

/// The tier's settings from the proto (id, code, revision and times are the caller's).
fn tier_from_proto(v: &mut Violations, p: pb::Tier) -> Tier {
    let q = p.qualification.unwrap_or_default();
    let minimum_spend = q
        .minimum_spend
        .as_ref()
        .filter(|m| m.amount_minor != 0)
        .map(|m| (m.amount_minor, m.currency_code.clone()));
    let thresholds =
        minimum_spend.is_some() || q.minimum_purchase_count > 0 || q.minimum_points > 0;
    let period = period_from_proto(v, &q, thresholds);
    if u32::try_from(p.retention_months).is_err() {
        v.add("tier.retention_months", "must be 0..120");
    }
    let downgrade_mode = match pb::TierDowngradeMode::try_from(p.downgrade_mode) {
        Ok(pb::TierDowngradeMode::OneLevel) => DowngradeMode::OneLevel,
        Ok(pb::TierDowngradeMode::Keep) => DowngradeMode::Keep,
        Ok(_) => DowngradeMode::ToQualified,
        Err(_) => {
            v.add("tier.downgrade_mode", "is not a known mode");
            DowngradeMode::ToQualified
        }
    };
    let at = Utc::now();
    Tier {
        id: Uuid::nil(),
        code: p.code,
        display_name: p.display_name.trim().to_owned(),
        rank: p.rank,
        qualification: Qualification {
            minimum_spend,
            minimum_purchase_count: q.minimum_purchase_count,
            minimum_points: q.minimum_points,
            points_type: q.points_type_id,
            period,
        },
        retention_months: u32::try_from(p.retention_months).unwrap_or(0),
        downgrade_mode,
        points_multiplier_basis_points: if p.points_multiplier_basis_points == 0 {
            10_000
        } else {
            p.points_multiplier_basis_points
        },
        discount_basis_points: p.discount_basis_points,
        icon_url: p.icon_url,
        color: p.color,
        revision: 1,
        created_at: at,
        updated_at: at,
    }
}

pub fn tier_to_proto(t: &Tier) -> pb::Tier {
    let q = &t.qualification;
    let (period_type, period_months, period_days) = match q.period {
        Period::RollingMonths(n) => (pb::TierPeriodType::Rolling, n as i32, 0),
        Period::RollingDays(n) => (pb::TierPeriodType::Rolling, 0, n as i32),
        Period::CalendarYear => (pb::TierPeriodType::CalendarYear, 0, 0),
        Period::CalendarQuarter => (pb::TierPeriodType::CalendarQuarter, 0, 0),
        Period::CalendarMonth => (pb::TierPeriodType::CalendarMonth, 0, 0),
    };
    pb::Tier {
        id: t.id.to_string(),
        code: t.code.clone(),
        display_name: t.display_name.clone(),
        rank: t.rank,
        qualification: Some(pb::TierQualification {
            minimum_spend: q.minimum_spend.as_ref().map(|(a, c)| Money {
                currency_code: c.clone(),
                amount_minor: *a,
            }),
            minimum_purchase_count: q.minimum_purchase_count,
            minimum_points: q.minimum_points,
            points_type_id: q.points_type.clone(),
            period_months,
            period_type: period_type as i32,
            period_days,
        }),
        retention_months: t.retention_months as i32,
        points_multiplier_basis_points: t.points_multiplier_basis_points,
        discount_basis_points: t.discount_basis_points,
        icon_url: t.icon_url.clone(),
        color: t.color.clone(),
        etag: etag(t.revision),
        create_time: Some(to_timestamp(t.created_at)),
        update_time: Some(to_timestamp(t.updated_at)),
        downgrade_mode: match t.downgrade_mode {
            DowngradeMode::ToQualified => pb::TierDowngradeMode::ToQualified,
            DowngradeMode::OneLevel => pb::TierDowngradeMode::OneLevel,
            DowngradeMode::Keep => pb::TierDowngradeMode::Keep,
        } as i32,
    }
}

fn cause_to_proto(c: Cause) -> pb::TierChangeCause {
    match c {
        Cause::Upgrade => pb::TierChangeCause::Upgrade,
        Cause::Downgrade => pb::TierChangeCause::Downgrade,
        Cause::ManualSet => pb::TierChangeCause::ManualSet,
        Cause::ManualCleared => pb::TierChangeCause::ManualCleared,
        Cause::ManualExpired => pb::TierChangeCause::ManualExpired,
        Cause::TierDeleted => pb::TierChangeCause::TierDeleted,
    }
}

fn customer(v: &mut Violations, id: &str) -> Option<Uuid> {
    let parsed = Uuid::parse_str(id).ok();
    if parsed.is_none() {
        v.add(
            "customer_id",
            if id.is_empty() {
                "is required"
            } else {
                "must be a UUID"
            },
        );
    }
    parsed
}

fn id_string(id: Option<Uuid>) -> String {
    id.map(|i| i.to_string()).unwrap_or_default()
}

/// The stored state; for a customer without one (no activity yet), what the ladder gives
/// their activity, e.g. a base tier.
fn state_or_requalified(
    ladder: &[Tier],
    activity: &[Activity],
    stored: Option<CustomerState>,
    now: DateTime<Utc>,
) -> CustomerState {
    stored.unwrap_or_else(|| {
        apply(
            ladder,
            activity,
            &CustomerState::default(),
            Action::Requalify,
            now,
        )
        .0
    })
}

/// Until when the effective level holds: a manual level's end, else the qualified period's.
fn held_until(state: &CustomerState, manual: bool) -> Option<DateTime<Utc>> {
    match (&state.manual, manual) {
        (Some(m), true) => m.until,
        _ => state.qualified.map(|h| h.until),
    }
}

/// The customer's effective level at `now` and until when it holds, for evaluations: what
/// GetCustomerTier answers as `tier_id`, without the progress.
pub(crate) async fn effective_tier(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    now: DateTime<Utc>,
) -> Result<EffectiveTier, ApiError> {
    let ladder = store::ladder(conn, partner_id).await?;
    if ladder.is_empty() {
        return Ok(EffectiveTier {
            tier_id: None,
            until: None,
        });
    }
    let stored = store::customer_state(conn, partner_id, customer_id)
        .await?
        .map(|(s, _)| s);
    // Activity only matters without a stored state.
    let activity = match stored {
        Some(_) => Vec::new(),
        None => {
            store::activity_since(conn, partner_id, customer_id, lookback_start(&ladder, now))
                .await?
        }
    };
    let state = state_or_requalified(&ladder, &activity, stored, now);
    let effective = state.effective(now);
    let tier_id = effective
        .tier_id
        .filter(|id| ladder.iter().any(|t| t.id == *id));
    Ok(EffectiveTier {
        tier_id,
        until: held_until(&state, effective.manual),
    })
}

/// The customer's tier and progress at `now`.
pub(crate) async fn customer_tier(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    now: DateTime<Utc>,
) -> Result<pb::CustomerTier, ApiError> {
    let ladder = store::ladder(conn, partner_id).await?;
    let activity =
        store::activity_since(conn, partner_id, customer_id, lookback_start(&ladder, now)).await?;
    let stored = store::customer_state(conn, partner_id, customer_id)
        .await?
        .map(|(s, _)| s);
    let state = state_or_requalified(&ladder, &activity, stored, now);
    let effective = state.effective(now);
    let tier = effective
        .tier_id
        .and_then(|id| ladder.iter().find(|t| t.id == id));
    let valid_until = held_until(&state, effective.manual);
    let p = progress(&ladder, &activity, tier.map_or(0, |t| t.rank), now);
    let spend_currency = p
        .counted_for
        .as_ref()
        .and_then(|t| t.qualification.minimum_spend.as_ref())
        .map(|(_, c)| c.clone());
    let next = p.next.as_ref();
    Ok(pb::CustomerTier {
        customer_id: customer_id.to_string(),
        tier_id: id_string(tier.map(|t| t.id)),
        tier_code: tier.map(|t| t.code.clone()).unwrap_or_default(),
        tier_display_name: tier.map(|t| t.display_name.clone()).unwrap_or_default(),
        rank: tier.map_or(0, |t| t.rank),
        manual: effective.manual && tier.is_some(),
        assign_time: tier.and(state.since).map(to_timestamp),
        valid_until_time: tier.and(valid_until).map(to_timestamp),
        qualifying_spend: spend_currency.map(|c| Money {
            currency_code: c,
            amount_minor: p.totals.spend_minor,
        }),
        qualifying_purchase_count: p.totals.purchases,
        qualifying_points: p.totals.points,
        next_tier_id: id_string(next.map(|n| n.tier.id)),
        next_tier_code: next.map(|n| n.tier.code.clone()).unwrap_or_default(),
        spend_to_next_tier: next
            .and_then(|n| n.spend_missing.as_ref())
            .map(|(a, c)| Money {
                currency_code: c.clone(),
                amount_minor: *a,
            }),
        period_end_time: next.and_then(|n| n.period_end).map(to_timestamp),
        points_to_next_tier: next.map_or(0, |n| n.points_missing),
        purchases_to_next_tier: next.map_or(0, |n| n.purchases_missing),
    })
}

// ---- The ladder ----

pub async fn create_tier(
    db: &DatabaseConnection,
    request: Request<pb::CreateTierRequest>,
) -> Result<Response<pb::CreateTierResponse>, Status> {
    let partner_id = partner(&request, WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "CreateTier", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let Some(proto) = req.tier else {
        return Err(ApiError::invalid("tier", "is required").into());
    };
    let mut tier = tier_from_proto(&mut v, proto);
    tier.id = Uuid::now_v7();
    tier.validate(&mut v, "tier");
    v.into_result()?;
    let tier: Tier = idempotency::run(db, scope, move |txn| {
        Box::pin(async move {
            store::lock_ladder(txn, partner_id).await?;
            store::insert_tier(txn, partner_id, &tier).await?;
            super::rules_changed(txn, partner_id, Some(tier.id)).await?;
            Ok(tier)
        })
    })
    .await?;
    Ok(Response::new(pb::CreateTierResponse {
        tier: Some(tier_to_proto(&tier)),
    }))
}

pub async fn get_tier(
    db: &DatabaseConnection,
    request: Request<pb::GetTierRequest>,
) -> Result<Response<pb::GetTierResponse>, Status> {
    let partner_id = partner(&request, READERS)?;
    let key = request.into_inner().tier_id;
    if key.is_empty() {
        return Err(ApiError::invalid("tier_id", "is required").into());
    }
    let tier = store::find_tier(db, partner_id, &key)
        .await?
        .ok_or_else(|| not_found(&key))?;
    Ok(Response::new(pb::GetTierResponse {
        tier: Some(tier_to_proto(&tier)),
    }))
}

pub async fn list_tiers(
    db: &DatabaseConnection,
    request: Request<pb::ListTiersRequest>,
) -> Result<Response<pb::ListTiersResponse>, Status> {
    let partner_id = partner(&request, READERS)?;
    let req = request.into_inner();
    let mut v = Violations::new();
    let limit = page_size(&mut v, req.page_size);
    let after = parse_code_token(&mut v, &req.page_token).map(|t| t.parse::<i32>());
    let after = match after {
        Some(Ok(rank)) => Some(rank),
        Some(Err(_)) => {
            v.add("page_token", "is not a token this service issued");
            None
        }
        None => None,
    };
    v.into_result()?;
    let tiers = store::list_tiers(db, partner_id, after, Some(limit)).await?;
    let last = tiers.last().map(|t| t.rank.to_string());
    Ok(Response::new(pb::ListTiersResponse {
        next_page_token: next_code_token(tiers.len(), limit, last.as_deref()),
        tiers: tiers.iter().map(tier_to_proto).collect(),
    }))
}

pub async fn update_tier(
    db: &DatabaseConnection,
    request: Request<pb::UpdateTierRequest>,
) -> Result<Response<pb::UpdateTierResponse>, Status> {
    let partner_id = partner(&request, WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "UpdateTier", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let p = req.tier.unwrap_or_default();
    if p.id.is_empty() {
        v.add("tier.id", "is required");
    }
    let paths = mask_paths(&mut v, req.update_mask, UPDATABLE);
    v.into_result()?;
    let sent_etag = req.etag;
    let tier: Tier = idempotency::run(db, scope, move |txn| {
        Box::pin(async move {
            store::lock_ladder(txn, partner_id).await?;
            let current = store::find_tier(txn, partner_id, &p.id)
                .await?
                .ok_or_else(|| not_found(&p.id))?;
            check_etag(&sent_etag, &etag(current.revision), "tier")?;
            // The masked fields of the request over the current tier, validated as a whole.
            let mut merged = tier_to_proto(&current);
            for path in &paths {
                match path.as_str() {
                    "display_name" => merged.display_name = p.display_name.clone(),
                    "rank" => merged.rank = p.rank,
                    "qualification" => merged.qualification = p.qualification.clone(),
                    "retention_months" => merged.retention_months = p.retention_months,
                    "downgrade_mode" => merged.downgrade_mode = p.downgrade_mode,
                    "points_multiplier_basis_points" => {
                        merged.points_multiplier_basis_points = p.points_multiplier_basis_points
                    }
                    "discount_basis_points" => {
                        merged.discount_basis_points = p.discount_basis_points
                    }
                    "icon_url" => merged.icon_url = p.icon_url.clone(),
                    "color" => merged.color = p.color.clone(),
                    _ => {}
                }
            }
            let mut v = Violations::new();
            let new = tier_from_proto(&mut v, merged);
            new.validate(&mut v, "tier");
            v.into_result()?;
            let tier = Tier {
                id: current.id,
                code: current.code,
                revision: current.revision + 1,
                created_at: current.created_at,
                updated_at: Utc::now(),
                ..new
            };
            store::update_tier(txn, partner_id, &tier).await?;
            super::rules_changed(txn, partner_id, Some(tier.id)).await?;
            Ok(tier)
        })
    })
    .await?;
    Ok(Response::new(pb::UpdateTierResponse {
        tier: Some(tier_to_proto(&tier)),
    }))
}

pub async fn delete_tier(
    db: &DatabaseConnection,
    request: Request<pb::DeleteTierRequest>,
) -> Result<Response<pb::DeleteTierResponse>, Status> {
    let partner_id = partner(&request, WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "DeleteTier", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    if req.tier_id.is_empty() {
        v.add("tier_id", "is required");
    }
    v.into_result()?;
    let (key, sent_etag) = (req.tier_id, req.etag);
    let (): () = idempotency::run(db, scope, move |txn| {
        Box::pin(async move {
            store::lock_ladder(txn, partner_id).await?;
            let current = store::find_tier(txn, partner_id, &key)
                .await?
                .ok_or_else(|| not_found(&key))?;
            check_etag(&sent_etag, &etag(current.revision), "tier")?;
            store::delete_tier(txn, partner_id, &current, Utc::now()).await?;
            super::rules_changed(txn, partner_id, Some(current.id)).await
        })
    })
    .await?;
    Ok(Response::new(pb::DeleteTierResponse {}))
}

// ---- Customers ----

pub async fn get_customer_tier(
    db: &DatabaseConnection,
    request: Request<pb::GetCustomerTierRequest>,
) -> Result<Response<pb::GetCustomerTierResponse>, Status> {
    let partner_id = partner(&request, READERS)?;
    let customer_id = parse_uuid("customer_id", &request.into_inner().customer_id)?;
    let tier = customer_tier(db, partner_id, customer_id, Utc::now()).await?;
    Ok(Response::new(pb::GetCustomerTierResponse {
        customer_tier: Some(tier),
    }))
}

pub async fn set_customer_tier(
    db: &DatabaseConnection,
    request: Request<pb::SetCustomerTierRequest>,
) -> Result<Response<pb::SetCustomerTierResponse>, Status> {
    let partner_id = partner(&request, MANUAL_SETTERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "SetCustomerTier", &req.idempotency_key, &req);
    let now = Utc::now();
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let customer_id = customer(&mut v, &req.customer_id);
    let reason = req.reason.trim().to_owned();
    if reason.is_empty() {
        v.add("reason", "is required");
    } else if reason.chars().count() > MAX_REASON_CHARS {
        v.add(
            "reason",
            format!("must be at most {MAX_REASON_CHARS} characters"),
        );
    }
    let until = match req.valid_until_time.as_ref() {
        None => None,
        Some(t) => match from_timestamp(t) {
            Some(u) if u > now => Some(u),
            Some(_) => {
                v.add("valid_until_time", "must be in the future");
                None
            }
            None => {
                v.add("valid_until_time", "must be a valid timestamp");
                None
            }
        },
    };
    if req.tier_id.is_empty() && req.valid_until_time.is_some() {
        v.add("valid_until_time", "applies to a manual tier only");
    }
    v.into_result()?;
    let Some(customer_id) = customer_id else {
        return Err(ApiError::invalid("customer_id", "must be a UUID").into());
    };
    let key = req.tier_id;
    // The answer is stored encoded, so a retry gets the very same response.
    let encoded: Vec<u8> = idempotency::run(db, scope, move |txn| {
        Box::pin(async move {
            let action = if key.is_empty() {
                Action::ClearManual
            } else {
                let tier = store::find_tier(txn, partner_id, &key)
                    .await?
                    .ok_or_else(|| not_found(&key))?;
                Action::SetManual(Manual {
                    tier_id: tier.id,
                    until,
                    reason,
                })
            };
            store::requalify(txn, partner_id, customer_id, action, now).await?;
            let tier = customer_tier(txn, partner_id, customer_id, now).await?;
            Ok(tier.encode_to_vec())
        })
    })
    .await?;
    let tier = pb::CustomerTier::decode(encoded.as_slice())
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e)))?;
    Ok(Response::new(pb::SetCustomerTierResponse {
        customer_tier: Some(tier),
    }))
}

pub async fn list_customer_tier_history(
    db: &DatabaseConnection,
    request: Request<pb::ListCustomerTierHistoryRequest>,
) -> Result<Response<pb::ListCustomerTierHistoryResponse>, Status> {
    let partner_id = partner(&request, READERS)?;
    let req = request.into_inner();
    let mut v = Violations::new();
    let customer_id = customer(&mut v, &req.customer_id);
    let limit = page_size(&mut v, req.page_size);
    let after = parse_page_token(&mut v, &req.page_token);
    v.into_result()?;
    let Some(customer_id) = customer_id else {
        return Err(ApiError::invalid("customer_id", "must be a UUID").into());
    };
    let rows = store::history(db, partner_id, customer_id, after, limit).await?;
    Ok(Response::new(pb::ListCustomerTierHistoryResponse {
        next_page_token: next_page_token(rows.len(), limit, rows.last().map(|r| r.id)),
        changes: rows
            .iter()
            .map(|r| {
                let c = &r.change;
                pb::CustomerTierChange {
                    id: r.id.to_string(),
                    customer_id: r.customer_id.to_string(),
                    previous_tier_id: id_string(c.previous_tier_id),
                    previous_rank: c.previous_rank,
                    tier_id: id_string(c.tier_id),
                    rank: c.rank,
                    cause: cause_to_proto(c.cause) as i32,
                    manual: c.manual,
                    reason: c.reason.clone(),
                    change_time: Some(to_timestamp(c.at)),
                }
            })
            .collect(),
    }))
}

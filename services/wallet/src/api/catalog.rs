//! Points groups and points types: the partner's catalogue of what wallets count. ADMIN keys
//! change it, every role reads it; each change is one idempotent transaction.
use chrono::{DateTime, SubsecRound, Utc};
use loyalty_platform::{
    ApiError, Role, Violations,
    error::{check_etag, check_idempotency_key, mask_paths},
    idempotency::IdempotencyScope,
    paging,
    time::to_timestamp,
};
use loyalty_proto::wallet::v1 as pb;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{READ, partner, run};
use crate::{
    domain::{
        Unit,
        catalog::{
            GROUP_IMMUTABLE, GROUP_UPDATABLE, GroupSpec, PointsGroup, PointsType, TYPE_IMMUTABLE,
            TYPE_UPDATABLE, TypeSpec, check_delete, check_update,
        },
        rules::{ExpiryRule, Rounding},
    },
    store::catalog::{self as store, TypeFilter},
};

const ADMIN: &[Role] = &[Role::Admin];

/// Fields a create takes from the request: every editable one; a new type starts active.
const TYPE_CREATE: &[&str] = &[
    "code",
    "display_name",
    "description",
    "unit",
    "currency_code",
    "expiry_rule",
    "pending_days",
    "spendable",
    "default",
    "rounding",
    "overdraft_limit",
    "reservation_ttl_seconds",
];

/// Now, at the precision PostgreSQL stores, so an answer equals a later read.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// `validate` yields nothing only after reporting why.
fn checked<T>(v: Violations, value: Option<T>) -> Result<T, ApiError> {
    v.into_result()?;
    value.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("validation yielded no value")))
}

// ---- Conversions ----

/// Stored name of a wire enum value: empty for UNSPECIFIED, the number itself when unknown
/// (the domain then reports it).
fn unit_name(v: i32) -> String {
    use pb::PointsUnit as P;
    match P::try_from(v) {
        Ok(P::Unspecified) => String::new(),
        Ok(P::Points) => Unit::Points.as_str().to_owned(),
        Ok(P::Credit) => Unit::Credit.as_str().to_owned(),
        Err(_) => v.to_string(),
    }
}

fn expiry_name(v: i32) -> String {
    use pb::ExpiryRule as P;
    let rule = match P::try_from(v) {
        Ok(P::Unspecified) => return String::new(),
        Ok(P::Never) => ExpiryRule::Never,
        Ok(P::RollingDays) => ExpiryRule::RollingDays(0),
        Ok(P::EndOfMonth) => ExpiryRule::EndOfMonth(0),
        Ok(P::EndOfQuarter) => ExpiryRule::EndOfQuarter(0),
        Ok(P::EndOfYear) => ExpiryRule::EndOfYear(0),
        Err(_) => return v.to_string(),
    };
    rule.to_parts().0.to_owned()
}

fn rounding_name(v: i32) -> String {
    use pb::Rounding as P;
    match P::try_from(v) {
        Ok(P::Unspecified) => String::new(),
        Ok(P::Down) => Rounding::Down.as_str().to_owned(),
        Ok(P::HalfUp) => Rounding::HalfUp.as_str().to_owned(),
        Ok(P::Up) => Rounding::Up.as_str().to_owned(),
        Err(_) => v.to_string(),
    }
}

fn expiry_to_proto(r: ExpiryRule) -> pb::ExpiryRule {
    match r {
        ExpiryRule::Never => pb::ExpiryRule::Never,
        ExpiryRule::RollingDays(_) => pb::ExpiryRule::RollingDays,
        ExpiryRule::EndOfMonth(_) => pb::ExpiryRule::EndOfMonth,
        ExpiryRule::EndOfQuarter(_) => pb::ExpiryRule::EndOfQuarter,
        ExpiryRule::EndOfYear(_) => pb::ExpiryRule::EndOfYear,
    }
}

fn rounding_to_proto(r: Rounding) -> pb::Rounding {
    match r {
        Rounding::Down => pb::Rounding::Down,
        Rounding::HalfUp => pb::Rounding::HalfUp,
        Rounding::Up => pb::Rounding::Up,
    }
}

pub fn group_to_proto(g: &PointsGroup) -> pb::PointsGroup {
    pb::PointsGroup {
        id: g.id.to_string(),
        code: g.code.clone(),
        display_name: g.display_name.clone(),
        description: g.description.clone(),
        etag: g.etag(),
        create_time: Some(to_timestamp(g.created_at)),
        update_time: Some(to_timestamp(g.updated_at)),
    }
}

pub fn type_to_proto(t: &PointsType) -> pb::PointsType {
    let d = &t.definition;
    let (_, validity_days, validity_months) = d.rules.expiry.to_parts();
    pb::PointsType {
        id: t.id.to_string(),
        code: d.code.clone(),
        display_name: d.display_name.clone(),
        points_group_id: d.points_group_id.map(|g| g.to_string()).unwrap_or_default(),
        expiry_rule: expiry_to_proto(d.rules.expiry) as i32,
        validity_days,
        validity_months,
        pending_days: d.rules.pending_days,
        spendable: d.rules.spendable,
        default: d.is_default,
        active: d.active,
        etag: t.etag(),
        create_time: Some(to_timestamp(t.created_at)),
        update_time: Some(to_timestamp(t.updated_at)),
        unit: (match d.unit {
            Unit::Points => pb::PointsUnit::Points,
            Unit::Credit => pb::PointsUnit::Credit,
        }) as i32,
        currency_code: d.currency_code.clone(),
        rounding: rounding_to_proto(d.rules.rounding) as i32,
        overdraft_limit: d.rules.overdraft_limit,
        reservation_ttl_seconds: d.rules.reservation_ttl_seconds,
        description: d.description.clone(),
    }
}

/// Copies the fields named by `paths` from the request onto `spec`. `expiry_rule` brings its
/// two parameters along: the three together make the rule. `points_group_id` is resolved
/// separately (it may name a group by code).
fn apply_type(spec: &mut TypeSpec, p: &pb::PointsType, paths: &[&str]) {
    for path in paths {
        match *path {
            "code" => spec.code = p.code.clone(),
            "display_name" => spec.display_name = p.display_name.clone(),
            "description" => spec.description = p.description.clone(),
            "unit" => spec.unit = unit_name(p.unit),
            "currency_code" => spec.currency_code = p.currency_code.clone(),
            "expiry_rule" => {
                spec.expiry_rule = expiry_name(p.expiry_rule);
                spec.validity_days = p.validity_days;
                spec.validity_months = p.validity_months;
            }
            "validity_days" => spec.validity_days = p.validity_days,
            "validity_months" => spec.validity_months = p.validity_months,
            "pending_days" => spec.pending_days = p.pending_days,
            "spendable" => spec.spendable = p.spendable,
            "default" => spec.is_default = p.default,
            "active" => spec.active = p.active,
            "rounding" => spec.rounding = rounding_name(p.rounding),
            "overdraft_limit" => spec.overdraft_limit = p.overdraft_limit,
            "reservation_ttl_seconds" => spec.reservation_ttl_seconds = p.reservation_ttl_seconds,
            // points_group_id, and paths refused by `update_paths`.
            _ => {}
        }
    }
}

/// The paths of an update's mask: immutable fields are refused by name, unknown ones under
/// `update_mask`.
fn update_paths(
    v: &mut Violations,
    mask: Option<prost_types::FieldMask>,
    resource: &str,
    immutable: &[&str],
    updatable: &[&str],
) -> Vec<String> {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    let (fixed, rest): (Vec<String>, Vec<String>) = paths
        .iter()
        .cloned()
        .partition(|p| immutable.contains(&p.as_str()));
    for p in &fixed {
        v.add(
            format!("{resource}.{p}"),
            "is immutable; create a new one instead",
        );
    }
    if fixed.is_empty() || !rest.is_empty() {
        mask_paths(v, Some(prost_types::FieldMask { paths: rest }), updatable);
    }
    paths
}

/// The group a points type names (UUID or code); empty = none.
async fn resolve_group(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id_or_code: &str,
) -> Result<Option<Uuid>, ApiError> {
    if id_or_code.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        store::find_group(conn, partner_id, id_or_code)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("points group {id_or_code:?}")))?
            .id,
    ))
}

fn group_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("points group {id:?}"))
}

fn type_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("points type {id:?}"))
}

fn required(v: &mut Violations, field: &str, value: &str) {
    if value.is_empty() {
        v.add(field, "is required");
    }
}

// ---- Points groups ----

#[tracing::instrument(skip_all)]
pub async fn create_points_group(
    db: &DatabaseConnection,
    request: Request<pb::CreatePointsGroupRequest>,
) -> Result<Response<pb::CreatePointsGroupResponse>, Status> {
    let partner_id = partner(&request, ADMIN)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "CreatePointsGroup", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let p = req.points_group.unwrap_or_default();
    let spec = GroupSpec {
        code: p.code,
        display_name: p.display_name,
        description: p.description,
    }
    .validate(&mut v);
    let spec = checked(v, spec)?;
    let now = now();
    let group: PointsGroup = run(db, scope, move |txn| {
        Box::pin(async move {
            store::lock_catalog(txn, partner_id).await?;
            store::insert_group(txn, partner_id, &spec, now).await
        })
    })
    .await?;
    Ok(Response::new(pb::CreatePointsGroupResponse {
        points_group: Some(group_to_proto(&group)),
    }))
}

#[tracing::instrument(skip_all)]
pub async fn get_points_group(
    db: &DatabaseConnection,
    request: Request<pb::GetPointsGroupRequest>,
) -> Result<Response<pb::GetPointsGroupResponse>, Status> {
    let partner_id = partner(&request, READ)?;
    let req = request.into_inner();
    let mut v = Violations::new();
    required(&mut v, "points_group_id", &req.points_group_id);
    v.into_result()?;
    let group = store::find_group(db, partner_id, &req.points_group_id)
        .await?
        .ok_or_else(|| group_not_found(&req.points_group_id))?;
    Ok(Response::new(pb::GetPointsGroupResponse {
        points_group: Some(group_to_proto(&group)),
    }))
}

#[tracing::instrument(skip_all)]
pub async fn list_points_groups(
    db: &DatabaseConnection,
    request: Request<pb::ListPointsGroupsRequest>,
) -> Result<Response<pb::ListPointsGroupsResponse>, Status> {
    let partner_id = partner(&request, READ)?;
    let req = request.into_inner();
    let (limit, after) = paging::code_page(req.page_size, &req.page_token)?;
    let groups = store::list_groups(db, partner_id, after.as_deref(), limit).await?;
    Ok(Response::new(pb::ListPointsGroupsResponse {
        next_page_token: paging::next_code_token(
            groups.len(),
            limit,
            groups.last().map(|g| g.code.as_str()),
        ),
        points_groups: groups.iter().map(group_to_proto).collect(),
    }))
}

#[tracing::instrument(skip_all)]
pub async fn update_points_group(
    db: &DatabaseConnection,
    request: Request<pb::UpdatePointsGroupRequest>,
) -> Result<Response<pb::UpdatePointsGroupResponse>, Status> {
    let partner_id = partner(&request, ADMIN)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "UpdatePointsGroup", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let p = req.points_group.unwrap_or_default();
    required(&mut v, "points_group.id", &p.id);
    let paths = update_paths(
        &mut v,
        req.update_mask,
        "points_group",
        GROUP_IMMUTABLE,
        GROUP_UPDATABLE,
    );
    v.into_result()?;
    let (etag, now) = (req.etag, now());
    let group: PointsGroup = run(db, scope, move |txn| {
        Box::pin(async move {
            store::lock_catalog(txn, partner_id).await?;
            let current = store::find_group(txn, partner_id, &p.id)
                .await?
                .ok_or_else(|| group_not_found(&p.id))?;
            check_etag(&etag, &current.etag(), "points group")?;
            let mut spec = current.spec();
            for path in &paths {
                match path.as_str() {
                    "display_name" => spec.display_name = p.display_name.clone(),
                    "description" => spec.description = p.description.clone(),
                    _ => {}
                }
            }
            let mut v = Violations::new();
            let spec = spec.validate(&mut v);
            let spec = checked(v, spec)?;
            store::update_group(txn, partner_id, &current, &spec, now).await
        })
    })
    .await?;
    Ok(Response::new(pb::UpdatePointsGroupResponse {
        points_group: Some(group_to_proto(&group)),
    }))
}

#[tracing::instrument(skip_all)]
pub async fn delete_points_group(
    db: &DatabaseConnection,
    request: Request<pb::DeletePointsGroupRequest>,
) -> Result<Response<pb::DeletePointsGroupResponse>, Status> {
    let partner_id = partner(&request, ADMIN)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "DeletePointsGroup", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    required(&mut v, "points_group_id", &req.points_group_id);
    v.into_result()?;
    let id = req.points_group_id;
    let (): () = run(db, scope, move |txn| {
        Box::pin(async move {
            store::lock_catalog(txn, partner_id).await?;
            let group = store::find_group(txn, partner_id, &id)
                .await?
                .ok_or_else(|| group_not_found(&id))?;
            store::delete_group(txn, partner_id, &group).await
        })
    })
    .await?;
    Ok(Response::new(pb::DeletePointsGroupResponse {}))
}

// ---- Points types ----

#[tracing::instrument(skip_all)]
pub async fn create_points_type(
    db: &DatabaseConnection,
    request: Request<pb::CreatePointsTypeRequest>,
) -> Result<Response<pb::CreatePointsTypeResponse>, Status> {
    let partner_id = partner(&request, ADMIN)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "CreatePointsType", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let p = req.points_type.unwrap_or_default();
    let mut spec = TypeSpec {
        active: true,
        ..TypeSpec::default()
    };
    apply_type(&mut spec, &p, TYPE_CREATE);
    let def = spec.validate(&mut v);
    let mut def = checked(v, def)?;
    let now = now();
    let ty: PointsType = run(db, scope, move |txn| {
        Box::pin(async move {
            store::lock_catalog(txn, partner_id).await?;
            def.points_group_id = resolve_group(txn, partner_id, &p.points_group_id).await?;
            store::insert_type(txn, partner_id, &def, now).await
        })
    })
    .await?;
    Ok(Response::new(pb::CreatePointsTypeResponse {
        points_type: Some(type_to_proto(&ty)),
    }))
}

#[tracing::instrument(skip_all)]
pub async fn get_points_type(
    db: &DatabaseConnection,
    request: Request<pb::GetPointsTypeRequest>,
) -> Result<Response<pb::GetPointsTypeResponse>, Status> {
    let partner_id = partner(&request, READ)?;
    let req = request.into_inner();
    let mut v = Violations::new();
    required(&mut v, "points_type_id", &req.points_type_id);
    v.into_result()?;
    let ty = store::find_type(db, partner_id, &req.points_type_id)
        .await?
        .ok_or_else(|| type_not_found(&req.points_type_id))?;
    Ok(Response::new(pb::GetPointsTypeResponse {
        points_type: Some(type_to_proto(&ty)),
    }))
}

#[tracing::instrument(skip_all)]
pub async fn list_points_types(
    db: &DatabaseConnection,
    request: Request<pb::ListPointsTypesRequest>,
) -> Result<Response<pb::ListPointsTypesResponse>, Status> {
    let partner_id = partner(&request, READ)?;
    let req = request.into_inner();
    let (limit, after) = paging::code_page(req.page_size, &req.page_token)?;
    let filter = TypeFilter {
        points_group_id: resolve_group(db, partner_id, &req.points_group_id).await?,
        include_inactive: req.include_inactive,
    };
    let types = store::list_types(db, partner_id, filter, after.as_deref(), limit).await?;
    Ok(Response::new(pb::ListPointsTypesResponse {
        next_page_token: paging::next_code_token(
            types.len(),
            limit,
            types.last().map(|t| t.definition.code.as_str()),
        ),
        points_types: types.iter().map(type_to_proto).collect(),
    }))
}

#[tracing::instrument(skip_all)]
pub async fn update_points_type(
    db: &DatabaseConnection,
    request: Request<pb::UpdatePointsTypeRequest>,
) -> Result<Response<pb::UpdatePointsTypeResponse>, Status> {
    let partner_id = partner(&request, ADMIN)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "UpdatePointsType", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let p = req.points_type.unwrap_or_default();
    required(&mut v, "points_type.id", &p.id);
    let paths = update_paths(
        &mut v,
        req.update_mask,
        "points_type",
        TYPE_IMMUTABLE,
        TYPE_UPDATABLE,
    );
    v.into_result()?;
    let (etag, now) = (req.etag, now());
    let ty: PointsType = run(db, scope, move |txn| {
        Box::pin(async move {
            store::lock_catalog(txn, partner_id).await?;
            let current = store::find_type(txn, partner_id, &p.id)
                .await?
                .ok_or_else(|| type_not_found(&p.id))?;
            check_etag(&etag, &current.etag(), "points type")?;
            let mut spec = current.definition.spec();
            let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
            apply_type(&mut spec, &p, &paths);
            if paths.contains(&"points_group_id") {
                spec.points_group_id = resolve_group(txn, partner_id, &p.points_group_id).await?;
            }
            let mut v = Violations::new();
            let next = spec.validate(&mut v);
            let next = checked(v, next)?;
            check_update(current.definition.is_default, &next)?;
            store::update_type(txn, partner_id, &current, &next, now).await
        })
    })
    .await?;
    Ok(Response::new(pb::UpdatePointsTypeResponse {
        points_type: Some(type_to_proto(&ty)),
    }))
}

#[tracing::instrument(skip_all)]
pub async fn delete_points_type(
    db: &DatabaseConnection,
    request: Request<pb::DeletePointsTypeRequest>,
) -> Result<Response<pb::DeletePointsTypeResponse>, Status> {
    let partner_id = partner(&request, ADMIN)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "DeletePointsType", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    required(&mut v, "points_type_id", &req.points_type_id);
    v.into_result()?;
    let id = req.points_type_id;
    let (): () = run(db, scope, move |txn| {
        Box::pin(async move {
            store::lock_catalog(txn, partner_id).await?;
            let ty = store::find_type(txn, partner_id, &id)
                .await?
                .ok_or_else(|| type_not_found(&id))?;
            let used = store::has_postings(txn, partner_id, ty.id).await?;
            check_delete(&ty, used)?;
            store::delete_type(txn, partner_id, ty.id).await
        })
    })
    .await?;
    Ok(Response::new(pb::DeletePointsTypeResponse {}))
}

//! Purchase bonuses: points assigned automatically after a purchase, restricted to products,
//! business units, channels, days, hours and tiers. MARKETING keys change them; each change is
//! one idempotent transaction publishing `RewardsChanged`.
use loyalty_platform::{
    ApiError, Role, Violations,
    auth::principal,
    error::{check_etag, check_idempotency_key, mask_paths},
    idempotency::{self, IdempotencyScope},
    paging::{next_page_token, page_size, parse_page_token},
    time::to_timestamp,
};
use loyalty_proto::{
    rewards::v1 as pb,
    types::v1::{self as types, SalesChannel},
};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{READERS, page, parse_time};
use crate::{
    domain::{
        PurchaseBonus, Validity,
        catalogue::etag,
        parse_segment_ids,
        purchase_bonuses::{BonusState, Channel, HourRange, ProductScope, parse_uuids},
    },
    store::{self, catalogue::now, purchase_bonuses as bonuses},
};

const WRITERS: &[Role] = &[Role::Marketing];

const UPDATABLE: &[&str] = &[
    "display_name",
    "points",
    "spend_amount_minor",
    "segment_ids",
    "valid_from_time",
    "valid_until_time",
    "products",
    "business_unit_ids",
    "channels",
    "days_of_week",
    "hour_ranges",
    "multiplier_basis_points",
    "points_type_id",
    "tier_ids",
    "state",
    "max_points_per_purchase",
];

// ---- Conversions shared with campaign products ----

pub(super) fn scope_from_proto(s: Option<types::ProductScope>) -> ProductScope {
    let s = s.unwrap_or_default();
    ProductScope {
        product_codes: s.product_codes,
        group_codes: s.product_group_codes,
        brand_codes: s.brand_codes,
        excluded_product_codes: s.excluded_product_codes,
    }
}

pub(super) fn scope_to_proto(s: &ProductScope) -> Option<types::ProductScope> {
    (!s.is_all()).then(|| types::ProductScope {
        product_codes: s.product_codes.clone(),
        product_group_codes: s.group_codes.clone(),
        brand_codes: s.brand_codes.clone(),
        excluded_product_codes: s.excluded_product_codes.clone(),
    })
}

pub(super) fn channels_from_proto(v: &mut Violations, field: &str, list: &[i32]) -> Vec<Channel> {
    let mut out = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let channel = match SalesChannel::try_from(*c).unwrap_or_default() {
            SalesChannel::Pos => Channel::Pos,
            SalesChannel::Eshop => Channel::Eshop,
            SalesChannel::MobileApp => Channel::MobileApp,
            SalesChannel::Kiosk => Channel::Kiosk,
            SalesChannel::Unspecified => {
                v.add(
                    format!("{field}[{i}]"),
                    "must be POS, ESHOP, MOBILE_APP or KIOSK",
                );
                continue;
            }
        };
        if !out.contains(&channel) {
            out.push(channel);
        }
    }
    out
}

pub(super) fn channels_to_proto(list: &[Channel]) -> Vec<i32> {
    list.iter()
        .map(|c| match c {
            Channel::Pos => SalesChannel::Pos,
            Channel::Eshop => SalesChannel::Eshop,
            Channel::MobileApp => SalesChannel::MobileApp,
            Channel::Kiosk => SalesChannel::Kiosk,
        } as i32)
        .collect()
}

/// The partner's catalogue codes named by `scope` must exist.
pub(super) async fn check_scope_known(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    field: &str,
    scope: &ProductScope,
) -> Result<(), ApiError> {
    if scope.is_all() {
        return Ok(());
    }
    let mut codes = scope.product_codes.clone();
    codes.extend(scope.excluded_product_codes.iter().cloned());
    let products = store::catalogue::products_by_code(conn, partner_id, codes).await?;
    let (groups, brands) = store::catalogue::known_codes(conn, partner_id).await?;
    let mut v = Violations::new();
    scope.check_known(
        &mut v,
        field,
        |c| products.contains_key(c),
        &groups,
        &brands,
    );
    v.into_result()
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("purchase bonus {id:?}"))
}

fn parse_id(field: &str, id: &str) -> Result<Uuid, ApiError> {
    super::stored_id(field, id, not_found)
}

// ---- Purchase bonus ↔ proto ----

/// A new bonus from the proto (id and times assigned); parse problems are named in `v`.
pub fn from_proto(v: &mut Violations, b: pb::PurchaseBonus) -> PurchaseBonus {
    let at = now();
    const F: &str = "purchase_bonus";
    let state = match pb::PurchaseBonusState::try_from(b.state).unwrap_or_default() {
        pb::PurchaseBonusState::Inactive => BonusState::Inactive,
        pb::PurchaseBonusState::Active | pb::PurchaseBonusState::Unspecified => BonusState::Active,
    };
    PurchaseBonus {
        id: Uuid::now_v7(),
        display_name: b.display_name.trim().to_owned(),
        points: b.points,
        spend_amount_minor: b.spend_amount_minor,
        currency_code: b.currency_code,
        multiplier_basis_points: if b.multiplier_basis_points == 0 {
            10_000
        } else {
            b.multiplier_basis_points
        },
        segment_ids: parse_segment_ids(v, &format!("{F}.segment_ids"), &b.segment_ids),
        validity: Validity {
            from: parse_time(
                v,
                &format!("{F}.valid_from_time"),
                b.valid_from_time.as_ref(),
            ),
            until: parse_time(
                v,
                &format!("{F}.valid_until_time"),
                b.valid_until_time.as_ref(),
            ),
        },
        created_at: at,
        products: scope_from_proto(b.products),
        business_unit_ids: parse_uuids(
            v,
            &format!("{F}.business_unit_ids"),
            "business unit",
            &b.business_unit_ids,
        ),
        channels: channels_from_proto(v, &format!("{F}.channels"), &b.channels),
        // Out-of-range values become 0, which validation names.
        days_of_week: b
            .days_of_week
            .iter()
            .map(|d| u8::try_from(*d).unwrap_or(0))
            .collect(),
        hour_ranges: b
            .hour_ranges
            .iter()
            .map(|h| HourRange {
                start: h.start_hour,
                end: h.end_hour,
            })
            .collect(),
        tier_ids: parse_uuids(v, &format!("{F}.tier_ids"), "tier", &b.tier_ids),
        points_type_id: b.points_type_id,
        max_points_per_purchase: b.max_points_per_purchase,
        state,
        revision: 1,
        updated_at: at,
    }
}

pub fn to_proto(b: &PurchaseBonus) -> pb::PurchaseBonus {
    pb::PurchaseBonus {
        id: b.id.to_string(),
        display_name: b.display_name.clone(),
        points: b.points,
        spend_amount_minor: b.spend_amount_minor,
        currency_code: b.currency_code.clone(),
        segment_ids: b.segment_ids.iter().map(Uuid::to_string).collect(),
        valid_from_time: b.validity.from.map(to_timestamp),
        valid_until_time: b.validity.until.map(to_timestamp),
        create_time: Some(to_timestamp(b.created_at)),
        products: scope_to_proto(&b.products),
        business_unit_ids: b.business_unit_ids.iter().map(Uuid::to_string).collect(),
        channels: channels_to_proto(&b.channels),
        days_of_week: b.days_of_week.iter().map(|d| i32::from(*d)).collect(),
        hour_ranges: b
            .hour_ranges
            .iter()
            .map(|h| types::HourRange {
                start_hour: h.start,
                end_hour: h.end,
            })
            .collect(),
        multiplier_basis_points: b.multiplier_basis_points,
        points_type_id: b.points_type_id.clone(),
        tier_ids: b.tier_ids.iter().map(Uuid::to_string).collect(),
        state: match b.state {
            BonusState::Active => pb::PurchaseBonusState::Active,
            BonusState::Inactive => pb::PurchaseBonusState::Inactive,
        } as i32,
        etag: etag(b.revision),
        update_time: Some(to_timestamp(b.updated_at)),
        max_points_per_purchase: b.max_points_per_purchase,
    }
}

/// `into` with the masked fields taken from `from`.
fn merge(into: &mut pb::PurchaseBonus, from: pb::PurchaseBonus, paths: &[String]) {
    for path in paths {
        match path.as_str() {
            "display_name" => into.display_name = from.display_name.clone(),
            "points" => into.points = from.points,
            "spend_amount_minor" => into.spend_amount_minor = from.spend_amount_minor,
            "segment_ids" => into.segment_ids = from.segment_ids.clone(),
            "valid_from_time" => into.valid_from_time = from.valid_from_time,
            "valid_until_time" => into.valid_until_time = from.valid_until_time,
            "products" => into.products = from.products.clone(),
            "business_unit_ids" => into.business_unit_ids = from.business_unit_ids.clone(),
            "channels" => into.channels = from.channels.clone(),
            "days_of_week" => into.days_of_week = from.days_of_week.clone(),
            "hour_ranges" => into.hour_ranges = from.hour_ranges.clone(),
            "multiplier_basis_points" => {
                into.multiplier_basis_points = from.multiplier_basis_points
            }
            "points_type_id" => into.points_type_id = from.points_type_id.clone(),
            "tier_ids" => into.tier_ids = from.tier_ids.clone(),
            "state" => into.state = from.state,
            "max_points_per_purchase" => {
                into.max_points_per_purchase = from.max_points_per_purchase
            }
            _ => {}
        }
    }
}

// ---- Handlers ----

pub async fn create(
    db: &DatabaseConnection,
    request: Request<pb::CreatePurchaseBonusRequest>,
) -> Result<Response<pb::CreatePurchaseBonusResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(
        partner_id,
        "CreatePurchaseBonus",
        &req.idempotency_key,
        &req,
    );
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let Some(proto) = req.purchase_bonus else {
        return Err(ApiError::invalid("purchase_bonus", "is required").into());
    };
    let bonus = from_proto(&mut v, proto);
    bonus.validate(&mut v);
    v.into_result()?;
    let bonus: PurchaseBonus = idempotency::run(db, scope, move |txn| {
        Box::pin(async move {
            check_scope_known(txn, partner_id, "purchase_bonus.products", &bonus.products).await?;
            bonuses::insert(txn, partner_id, &bonus).await?;
            super::rules_changed(txn, partner_id, Some(bonus.id)).await?;
            Ok(bonus)
        })
    })
    .await?;
    Ok(Response::new(pb::CreatePurchaseBonusResponse {
        purchase_bonus: Some(to_proto(&bonus)),
    }))
}

pub async fn list_active(
    db: &DatabaseConnection,
    request: Request<pb::ListActivePurchaseBonusesRequest>,
) -> Result<Response<pb::ListActivePurchaseBonusesResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(READERS)?;
    let req = request.into_inner();
    let (at, limit, after) = page(req.active_time.as_ref(), req.page_size, &req.page_token)?;
    let list = bonuses::active(db, partner_id, at, after, limit).await?;
    Ok(Response::new(pb::ListActivePurchaseBonusesResponse {
        next_page_token: next_page_token(list.len(), limit, list.last().map(|b| b.id)),
        purchase_bonuses: list.iter().map(to_proto).collect(),
    }))
}

pub async fn get(
    db: &DatabaseConnection,
    request: Request<pb::GetPurchaseBonusRequest>,
) -> Result<Response<pb::GetPurchaseBonusResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(READERS)?;
    let key = request.into_inner().purchase_bonus_id;
    let id = parse_id("purchase_bonus_id", &key)?;
    let bonus = bonuses::find(db, partner_id, id)
        .await?
        .ok_or_else(|| not_found(&key))?;
    Ok(Response::new(pb::GetPurchaseBonusResponse {
        purchase_bonus: Some(to_proto(&bonus)),
    }))
}

pub async fn list(
    db: &DatabaseConnection,
    request: Request<pb::ListPurchaseBonusesRequest>,
) -> Result<Response<pb::ListPurchaseBonusesResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(READERS)?;
    let req = request.into_inner();
    let mut v = Violations::new();
    let limit = page_size(&mut v, req.page_size);
    let before = parse_page_token(&mut v, &req.page_token);
    let state = match pb::PurchaseBonusState::try_from(req.state) {
        Ok(pb::PurchaseBonusState::Unspecified) => None,
        Ok(pb::PurchaseBonusState::Active) => Some(BonusState::Active),
        Ok(pb::PurchaseBonusState::Inactive) => Some(BonusState::Inactive),
        Err(_) => {
            v.add("state", "unknown state");
            None
        }
    };
    v.into_result()?;
    let list = bonuses::list(db, partner_id, state, before, limit).await?;
    Ok(Response::new(pb::ListPurchaseBonusesResponse {
        next_page_token: next_page_token(list.len(), limit, list.last().map(|b| b.id)),
        purchase_bonuses: list.iter().map(to_proto).collect(),
    }))
}

pub async fn update(
    db: &DatabaseConnection,
    request: Request<pb::UpdatePurchaseBonusRequest>,
) -> Result<Response<pb::UpdatePurchaseBonusResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(
        partner_id,
        "UpdatePurchaseBonus",
        &req.idempotency_key,
        &req,
    );
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let incoming = req.purchase_bonus.unwrap_or_default();
    if incoming.id.is_empty() {
        v.add("purchase_bonus.id", "is required");
    }
    let paths = mask_paths(&mut v, req.update_mask, UPDATABLE);
    if paths.iter().any(|p| p == "state") && incoming.state == 0 {
        v.add("purchase_bonus.state", "must be ACTIVE or INACTIVE");
    }
    v.into_result()?;
    let id = parse_id("purchase_bonus.id", &incoming.id)?;
    let sent_etag = req.etag;
    let bonus: PurchaseBonus = idempotency::run(db, scope, move |txn| {
        Box::pin(async move {
            let current = bonuses::find(txn, partner_id, id)
                .await?
                .ok_or_else(|| not_found(&incoming.id))?;
            check_etag(&sent_etag, &etag(current.revision), "purchase bonus")?;
            let mut merged = to_proto(&current);
            merge(&mut merged, incoming, &paths);
            let mut v = Violations::new();
            let next = PurchaseBonus {
                id: current.id,
                created_at: current.created_at,
                revision: current.revision + 1,
                ..from_proto(&mut v, merged)
            };
            next.validate(&mut v);
            v.into_result()?;
            if paths.iter().any(|p| p == "products") {
                check_scope_known(txn, partner_id, "purchase_bonus.products", &next.products)
                    .await?;
            }
            bonuses::update(txn, partner_id, &next, current.revision).await?;
            super::rules_changed(txn, partner_id, Some(next.id)).await?;
            Ok(next)
        })
    })
    .await?;
    Ok(Response::new(pb::UpdatePurchaseBonusResponse {
        purchase_bonus: Some(to_proto(&bonus)),
    }))
}

pub async fn delete(
    db: &DatabaseConnection,
    request: Request<pb::DeletePurchaseBonusRequest>,
) -> Result<Response<pb::DeletePurchaseBonusResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(
        partner_id,
        "DeletePurchaseBonus",
        &req.idempotency_key,
        &req,
    );
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    v.into_result()?;
    let key = req.purchase_bonus_id;
    let id = parse_id("purchase_bonus_id", &key)?;
    let (): () = idempotency::run(db, scope, move |txn| {
        Box::pin(async move {
            if !bonuses::delete(txn, partner_id, id).await? {
                return Err(not_found(&key));
            }
            super::rules_changed(txn, partner_id, Some(id)).await?;
            Ok(())
        })
    })
    .await?;
    Ok(Response::new(pb::DeletePurchaseBonusResponse {}))
}

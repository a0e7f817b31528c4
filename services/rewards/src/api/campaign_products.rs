//! Campaign products: the discount catalogue. MARKETING keys change it, checkout and staff
//! read it; each change is one idempotent transaction publishing `RewardsChanged`.
use std::collections::{HashMap, HashSet};

use loyalty_platform::{
    ApiError, Role, Violations,
    auth::principal,
    error::{check_etag, check_idempotency_key, mask_paths},
    idempotency::{self, IdempotencyScope},
    paging::{next_page_token, page_size, parse_page_token},
    time::to_timestamp,
};
use loyalty_proto::{
    rewards::v1::{self as pb, campaign_product::Discount as PbDiscount},
    types::v1::{Money, SalesChannel},
};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    READERS, parse_time,
    purchase_bonuses::{channels_from_proto, channels_to_proto, scope_from_proto, scope_to_proto},
};
use crate::{
    domain::{
        Validity,
        campaign_products::{CampaignProduct, Discount},
        catalogue::etag,
        parse_segment_ids,
        purchase_bonuses::{Channel, parse_uuids},
    },
    store::{self, campaign_products as entries, catalogue::now},
};

const WRITERS: &[Role] = &[Role::Marketing];
const F: &str = "campaign_product";

const UPDATABLE: &[&str] = &[
    "display_name",
    "description",
    "products",
    "percentage_basis_points",
    "amount_off_per_unit",
    "fixed_unit_price",
    "discount",
    "valid_from_time",
    "valid_until_time",
    "business_unit_ids",
    "channels",
    "segment_ids",
    "image_url",
    "max_quantity_per_purchase",
    "active",
];

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("campaign product {id:?}"))
}

fn parse_id(field: &str, id: &str) -> Result<Uuid, ApiError> {
    super::stored_id(field, id, not_found)
}

/// A new entry from the proto (id and times assigned); parse problems are named in `v`.
pub fn from_proto(v: &mut Violations, c: pb::CampaignProduct) -> CampaignProduct {
    let at = now();
    let discount = c.discount.map(|d| match d {
        PbDiscount::PercentageBasisPoints(bp) => Discount::Percentage { basis_points: bp },
        PbDiscount::AmountOffPerUnit(m) => Discount::AmountOffPerUnit {
            amount_minor: m.amount_minor,
            currency: m.currency_code,
        },
        PbDiscount::FixedUnitPrice(m) => Discount::FixedUnitPrice {
            amount_minor: m.amount_minor,
            currency: m.currency_code,
        },
    });
    CampaignProduct {
        id: Uuid::now_v7(),
        display_name: c.display_name.trim().to_owned(),
        description: c.description,
        products: scope_from_proto(c.products),
        discount,
        validity: Validity {
            from: parse_time(
                v,
                &format!("{F}.valid_from_time"),
                c.valid_from_time.as_ref(),
            ),
            until: parse_time(
                v,
                &format!("{F}.valid_until_time"),
                c.valid_until_time.as_ref(),
            ),
        },
        business_unit_ids: parse_uuids(
            v,
            &format!("{F}.business_unit_ids"),
            "business unit",
            &c.business_unit_ids,
        ),
        channels: channels_from_proto(v, &format!("{F}.channels"), &c.channels),
        segment_ids: parse_segment_ids(v, &format!("{F}.segment_ids"), &c.segment_ids),
        image_url: c.image_url,
        max_quantity_per_purchase: c.max_quantity_per_purchase,
        active: c.active,
        revision: 1,
        created_at: at,
        updated_at: at,
    }
}

pub fn to_proto(c: &CampaignProduct) -> pb::CampaignProduct {
    let money = |amount_minor: i64, currency: &str| Money {
        currency_code: currency.to_owned(),
        amount_minor,
    };
    pb::CampaignProduct {
        id: c.id.to_string(),
        display_name: c.display_name.clone(),
        description: c.description.clone(),
        products: scope_to_proto(&c.products),
        discount: c.discount.as_ref().map(|d| match d {
            Discount::Percentage { basis_points } => {
                PbDiscount::PercentageBasisPoints(*basis_points)
            }
            Discount::AmountOffPerUnit {
                amount_minor,
                currency,
            } => PbDiscount::AmountOffPerUnit(money(*amount_minor, currency)),
            Discount::FixedUnitPrice {
                amount_minor,
                currency,
            } => PbDiscount::FixedUnitPrice(money(*amount_minor, currency)),
        }),
        valid_from_time: c.validity.from.map(to_timestamp),
        valid_until_time: c.validity.until.map(to_timestamp),
        business_unit_ids: c.business_unit_ids.iter().map(Uuid::to_string).collect(),
        channels: channels_to_proto(&c.channels),
        segment_ids: c.segment_ids.iter().map(Uuid::to_string).collect(),
        image_url: c.image_url.clone(),
        max_quantity_per_purchase: c.max_quantity_per_purchase,
        active: c.active,
        etag: etag(c.revision),
        create_time: Some(to_timestamp(c.created_at)),
        update_time: Some(to_timestamp(c.updated_at)),
    }
}

/// `into` with the masked fields taken from `from`; the discount is masked by its member
/// name (or `discount`).
fn merge(into: &mut pb::CampaignProduct, from: pb::CampaignProduct, paths: &[String]) {
    for path in paths {
        match path.as_str() {
            "display_name" => into.display_name = from.display_name.clone(),
            "description" => into.description = from.description.clone(),
            "products" => into.products = from.products.clone(),
            "percentage_basis_points" | "amount_off_per_unit" | "fixed_unit_price" | "discount" => {
                into.discount = from.discount.clone()
            }
            "valid_from_time" => into.valid_from_time = from.valid_from_time,
            "valid_until_time" => into.valid_until_time = from.valid_until_time,
            "business_unit_ids" => into.business_unit_ids = from.business_unit_ids.clone(),
            "channels" => into.channels = from.channels.clone(),
            "segment_ids" => into.segment_ids = from.segment_ids.clone(),
            "image_url" => into.image_url = from.image_url.clone(),
            "max_quantity_per_purchase" => {
                into.max_quantity_per_purchase = from.max_quantity_per_purchase
            }
            "active" => into.active = from.active,
            _ => {}
        }
    }
}

/// The entry's codes must be in the partner's catalogue and a fixed price below the known
/// list prices.
async fn check_catalogue(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    c: &CampaignProduct,
) -> Result<(), ApiError> {
    let mut codes = c.products.product_codes.clone();
    codes.extend(c.products.excluded_product_codes.iter().cloned());
    let prices: HashMap<String, Option<(i64, String)>> =
        store::catalogue::products_by_code(conn, partner_id, codes)
            .await?
            .into_iter()
            .map(|(code, p)| (code, p.spec.list_price))
            .collect();
    let (groups, brands) = store::catalogue::known_codes(conn, partner_id).await?;
    let mut v = Violations::new();
    c.check_catalogue(&mut v, &prices, &groups, &brands);
    v.into_result()
}

pub async fn create(
    db: &DatabaseConnection,
    request: Request<pb::CreateCampaignProductRequest>,
) -> Result<Response<pb::CreateCampaignProductResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(
        partner_id,
        "CreateCampaignProduct",
        &req.idempotency_key,
        &req,
    );
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let Some(proto) = req.campaign_product else {
        return Err(ApiError::invalid(F, "is required").into());
    };
    let entry = from_proto(&mut v, proto);
    entry.validate(&mut v);
    v.into_result()?;
    let entry: CampaignProduct = idempotency::run(db, scope, move |txn| {
        Box::pin(async move {
            check_catalogue(txn, partner_id, &entry).await?;
            entries::insert(txn, partner_id, &entry).await?;
            super::rules_changed(txn, partner_id, Some(entry.id)).await?;
            Ok(entry)
        })
    })
    .await?;
    Ok(Response::new(pb::CreateCampaignProductResponse {
        campaign_product: Some(to_proto(&entry)),
    }))
}

pub async fn get(
    db: &DatabaseConnection,
    request: Request<pb::GetCampaignProductRequest>,
) -> Result<Response<pb::GetCampaignProductResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(READERS)?;
    let key = request.into_inner().campaign_product_id;
    let id = parse_id("campaign_product_id", &key)?;
    let entry = entries::find(db, partner_id, id)
        .await?
        .ok_or_else(|| not_found(&key))?;
    Ok(Response::new(pb::GetCampaignProductResponse {
        campaign_product: Some(to_proto(&entry)),
    }))
}

/// The groups a product is in, with their ancestors (a product in a child group is also in
/// its parents), and its brand; only its code when the catalogue lacks it.
async fn product_codes(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    code: &str,
) -> Result<(Vec<String>, String), ApiError> {
    let Some(product) = store::catalogue::products_by_code(conn, partner_id, vec![code.into()])
        .await?
        .remove(code)
    else {
        return Ok((Vec::new(), String::new()));
    };
    let parents = store::catalogue::group_parents(conn, partner_id).await?;
    let mut groups: Vec<String> = Vec::new();
    for g in &product.spec.product_group_codes {
        let mut at = g.clone();
        let mut seen = HashSet::new();
        while !at.is_empty() && seen.insert(at.clone()) {
            groups.push(at.clone());
            at = parents.get(&at).cloned().unwrap_or_default();
        }
    }
    Ok((groups, product.spec.brand_code))
}

pub async fn list(
    db: &DatabaseConnection,
    request: Request<pb::ListCampaignProductsRequest>,
) -> Result<Response<pb::ListCampaignProductsResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(READERS)?;
    let req = request.into_inner();
    let mut v = Violations::new();
    let limit = page_size(&mut v, req.page_size);
    let after = parse_page_token(&mut v, &req.page_token);
    let active_at = parse_time(&mut v, "active_time", req.active_time.as_ref());
    let business_unit = (!req.business_unit_id.is_empty())
        .then(|| Uuid::parse_str(&req.business_unit_id))
        .transpose()
        .unwrap_or_else(|_| {
            v.add("business_unit_id", "must be a business unit UUID");
            None
        });
    let channel: Option<Channel> = if req.channel == SalesChannel::Unspecified as i32 {
        None
    } else {
        let parsed = channels_from_proto(&mut Violations::new(), "channel", &[req.channel]);
        if parsed.is_empty() {
            v.add("channel", "must be POS, ESHOP, MOBILE_APP or KIOSK");
        }
        parsed.first().copied()
    };
    v.into_result()?;
    let product = if req.product_code.is_empty() {
        None
    } else {
        let (groups, brand) = product_codes(db, partner_id, &req.product_code).await?;
        Some((req.product_code, groups, brand))
    };
    let keep = |c: &CampaignProduct| {
        active_at.is_none_or(|t| c.active_at(t))
            && business_unit
                .is_none_or(|b| c.business_unit_ids.is_empty() || c.business_unit_ids.contains(&b))
            && channel.is_none_or(|ch| c.channels.is_empty() || c.channels.contains(&ch))
            && product
                .as_ref()
                .is_none_or(|(code, groups, brand)| c.products.covers(code, groups, brand))
    };
    let list = entries::list(db, partner_id, after, limit, keep).await?;
    Ok(Response::new(pb::ListCampaignProductsResponse {
        next_page_token: next_page_token(list.len(), limit, list.last().map(|c| c.id)),
        campaign_products: list.iter().map(to_proto).collect(),
    }))
}

pub async fn update(
    db: &DatabaseConnection,
    request: Request<pb::UpdateCampaignProductRequest>,
) -> Result<Response<pb::UpdateCampaignProductResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(
        partner_id,
        "UpdateCampaignProduct",
        &req.idempotency_key,
        &req,
    );
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let incoming = req.campaign_product.unwrap_or_default();
    if incoming.id.is_empty() {
        v.add("campaign_product.id", "is required");
    }
    let paths = mask_paths(&mut v, req.update_mask, UPDATABLE);
    v.into_result()?;
    let id = parse_id("campaign_product.id", &incoming.id)?;
    let sent_etag = req.etag;
    let entry: CampaignProduct = idempotency::run(db, scope, move |txn| {
        Box::pin(async move {
            let current = entries::find(txn, partner_id, id)
                .await?
                .ok_or_else(|| not_found(&incoming.id))?;
            check_etag(&sent_etag, &etag(current.revision), "campaign product")?;
            let mut merged = to_proto(&current);
            merge(&mut merged, incoming, &paths);
            let mut v = Violations::new();
            let next = CampaignProduct {
                id: current.id,
                created_at: current.created_at,
                revision: current.revision + 1,
                ..from_proto(&mut v, merged)
            };
            next.validate(&mut v);
            v.into_result()?;
            // Only what the update touches is checked again: pausing an entry whose product
            // left the catalogue since must still work.
            let touches_catalogue = paths.iter().any(|p| {
                matches!(
                    p.as_str(),
                    "products" | "fixed_unit_price" | "percentage_basis_points" | "discount"
                )
            });
            if touches_catalogue {
                check_catalogue(txn, partner_id, &next).await?;
            }
            entries::update(txn, partner_id, &next, current.revision).await?;
            super::rules_changed(txn, partner_id, Some(next.id)).await?;
            Ok(next)
        })
    })
    .await?;
    Ok(Response::new(pb::UpdateCampaignProductResponse {
        campaign_product: Some(to_proto(&entry)),
    }))
}

pub async fn delete(
    db: &DatabaseConnection,
    request: Request<pb::DeleteCampaignProductRequest>,
) -> Result<Response<pb::DeleteCampaignProductResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(
        partner_id,
        "DeleteCampaignProduct",
        &req.idempotency_key,
        &req,
    );
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    v.into_result()?;
    let key = req.campaign_product_id;
    let id = parse_id("campaign_product_id", &key)?;
    let sent_etag = req.etag;
    let (): () = idempotency::run(db, scope, move |txn| {
        Box::pin(async move {
            let current = entries::find(txn, partner_id, id)
                .await?
                .ok_or_else(|| not_found(&key))?;
            check_etag(&sent_etag, &etag(current.revision), "campaign product")?;
            entries::delete(txn, partner_id, id, current.revision).await?;
            super::rules_changed(txn, partner_id, Some(id)).await?;
            Ok(())
        })
    })
    .await?;
    Ok(Response::new(pb::DeleteCampaignProductResponse {}))
}

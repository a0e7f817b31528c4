//! The product catalogue: products, product groups and brands. ADMIN and MARKETING keys change
//! it, every role reads it; each change is one idempotent transaction that publishes
//! `CatalogueChanged` through the outbox.
use loyalty_platform::{
    ApiError, Role, Violations,
    auth::principal,
    error::{check_etag, check_idempotency_key, mask_paths},
    events,
    idempotency::{self, IdempotencyScope},
    paging::{code_page, next_code_token},
    time::to_timestamp,
};
use loyalty_proto::{events::v1 as ev, rewards::v1 as pb, types::v1::Money};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    domain::catalogue::{
        Brand, Product, ProductGroup, ProductSpec, check_code, check_name, check_references,
        check_url, etag, would_cycle,
    },
    store::catalogue::{self as store, Item, ProductFilter, now},
};

const WRITERS: &[Role] = &[Role::Admin, Role::Marketing];
const READERS: &[Role] = &[
    Role::Admin,
    Role::Marketing,
    Role::Pos,
    Role::Service,
    Role::Support,
];
/// Products per ImportProducts call.
pub const MAX_IMPORT: usize = 1000;

const PRODUCT_UPDATABLE: &[&str] = &[
    "display_name",
    "product_group_codes",
    "brand_code",
    "list_price",
    "barcodes",
    "image_url",
    "properties",
    "active",
];
const GROUP_UPDATABLE: &[&str] = &["display_name", "parent_group_code"];
const BRAND_UPDATABLE: &[&str] = &["display_name", "logo_url"];

fn partner<T>(request: &Request<T>, roles: &[Role]) -> Result<Uuid, Status> {
    Ok(principal(request)?.partner_with_role(roles)?)
}

fn not_found(what: &str, key: &str) -> ApiError {
    ApiError::NotFound(format!("{what} {key:?}"))
}

fn required(v: &mut Violations, field: &str, value: &str) {
    if value.is_empty() {
        v.add(field, "is required");
    }
}

/// `CatalogueChanged` for `item`, through the outbox.
async fn changed<T: Item>(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    item: &T,
    deleted: bool,
) -> Result<(), ApiError> {
    events::enqueue(
        conn,
        Some(partner_id),
        &ev::CatalogueChanged {
            item_kind: T::KIND.to_owned(),
            code: item.code().to_owned(),
            deleted,
        },
    )
    .await?;
    Ok(())
}

/// The partner's item with this UUID or code; NOT_FOUND naming it otherwise.
async fn existing<T: Item>(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    key: &str,
) -> Result<T, ApiError> {
    T::find(conn, partner_id, key)
        .await?
        .ok_or_else(|| not_found(T::NAME, key))
}

/// The partner's item about to change, with the partner's catalogue writes locked.
async fn locked<T: Item>(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    key: &str,
) -> Result<T, ApiError> {
    store::lock(txn, partner_id).await?;
    existing(txn, partner_id, key).await
}

/// Get{Product,ProductGroup,Brand}: the item whose UUID or code is the request's `field`.
async fn get<T: Item, R>(
    db: &DatabaseConnection,
    request: Request<R>,
    field: &str,
    key: impl FnOnce(R) -> String,
) -> Result<T, Status> {
    let partner_id = partner(&request, READERS)?;
    let key = key(request.into_inner());
    if key.is_empty() {
        return Err(ApiError::invalid(field, "is required").into());
    }
    Ok(existing(db, partner_id, &key).await?)
}

/// Delete{Product,ProductGroup,Brand}: one idempotent transaction that deletes the item whose
/// UUID or code is `key` (the request's `field`) and announces it.
async fn delete<T: Item + 'static>(
    db: &DatabaseConnection,
    scope: IdempotencyScope,
    field: &str,
    key: String,
    sent_etag: String,
) -> Result<(), Status> {
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &scope.key);
    required(&mut v, field, &key);
    v.into_result()?;
    let partner_id = scope.partner_id;
    let (): () = idempotency::run(db, scope, move |txn| {
        Box::pin(async move {
            let current: T = locked(txn, partner_id, &key).await?;
            current.delete(txn, partner_id, &sent_etag).await?;
            changed(txn, partner_id, &current, true).await
        })
    })
    .await?;
    Ok(())
}

/// The token of the page after `items`, a page of `limit` by code (empty after the last).
fn next_token<T: Item>(items: &[T], limit: u64) -> String {
    next_code_token(items.len(), limit, items.last().map(Item::code))
}

// ---- Conversions ----

pub(super) fn spec_from_proto(p: pb::Product) -> ProductSpec {
    ProductSpec {
        code: p.code,
        display_name: p.display_name.trim().to_owned(),
        product_group_codes: p.product_group_codes,
        brand_code: p.brand_code,
        list_price: p.list_price.map(|m| (m.amount_minor, m.currency_code)),
        barcodes: p.barcodes,
        image_url: p.image_url,
        properties: p.properties.into_iter().collect(),
        active: p.active,
    }
}

pub fn product_to_proto(p: &Product) -> pb::Product {
    let s = &p.spec;
    pb::Product {
        id: p.id.to_string(),
        code: s.code.clone(),
        display_name: s.display_name.clone(),
        product_group_codes: s.product_group_codes.clone(),
        brand_code: s.brand_code.clone(),
        list_price: s.list_price.as_ref().map(|(a, c)| Money {
            currency_code: c.clone(),
            amount_minor: *a,
        }),
        barcodes: s.barcodes.clone(),
        image_url: s.image_url.clone(),
        properties: s.properties.clone().into_iter().collect(),
        active: s.active,
        etag: etag(p.revision),
        create_time: Some(to_timestamp(p.created_at)),
        update_time: Some(to_timestamp(p.updated_at)),
    }
}

fn group_to_proto(g: &ProductGroup) -> pb::ProductGroup {
    pb::ProductGroup {
        id: g.id.to_string(),
        code: g.code.clone(),
        display_name: g.display_name.clone(),
        parent_group_code: g.parent_group_code.clone(),
        etag: etag(g.revision),
        create_time: Some(to_timestamp(g.created_at)),
        update_time: Some(to_timestamp(g.updated_at)),
    }
}

fn brand_to_proto(b: &Brand) -> pb::Brand {
    pb::Brand {
        id: b.id.to_string(),
        code: b.code.clone(),
        display_name: b.display_name.clone(),
        logo_url: b.logo_url.clone(),
        etag: etag(b.revision),
        create_time: Some(to_timestamp(b.created_at)),
        update_time: Some(to_timestamp(b.updated_at)),
    }
}

async fn checked_references(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    prefix: &str,
    spec: &ProductSpec,
) -> Result<(), ApiError> {
    let (groups, brands) = store::known_codes(conn, partner_id).await?;
    let mut v = Violations::new();
    check_references(&mut v, prefix, spec, &groups, &brands);
    v.into_result()
}

// ---- Products ----

pub async fn create_product(
    db: &DatabaseConnection,
    request: Request<pb::CreateProductRequest>,
) -> Result<Response<pb::CreateProductResponse>, Status> {
    let partner_id = partner(&request, WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "CreateProduct", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let Some(proto) = req.product else {
        return Err(ApiError::invalid("product", "is required").into());
    };
    let spec = spec_from_proto(proto);
    spec.validate(&mut v, "product");
    v.into_result()?;
    let at = now();
    let product = Product {
        id: Uuid::now_v7(),
        spec,
        revision: 1,
        created_at: at,
        updated_at: at,
    };
    let product: Product = idempotency::run(db, scope, move |txn| {
        Box::pin(async move {
            store::lock(txn, partner_id).await?;
            checked_references(txn, partner_id, "product", &product.spec).await?;
            store::insert_product(txn, partner_id, &product).await?;
            changed(txn, partner_id, &product, false).await?;
            Ok(product)
        })
    })
    .await?;
    Ok(Response::new(pb::CreateProductResponse {
        product: Some(product_to_proto(&product)),
    }))
}

pub async fn get_product(
    db: &DatabaseConnection,
    request: Request<pb::GetProductRequest>,
) -> Result<Response<pb::GetProductResponse>, Status> {
    let product: Product = get(db, request, "product_id", |r| r.product_id).await?;
    Ok(Response::new(pb::GetProductResponse {
        product: Some(product_to_proto(&product)),
    }))
}

pub async fn list_products(
    db: &DatabaseConnection,
    request: Request<pb::ListProductsRequest>,
) -> Result<Response<pb::ListProductsResponse>, Status> {
    let partner_id = partner(&request, READERS)?;
    let req = request.into_inner();
    let (limit, after) = code_page(req.page_size, &req.page_token)?;
    let some = |s: String| (!s.is_empty()).then_some(s);
    let filter = ProductFilter {
        product_group_code: some(req.product_group_code),
        brand_code: some(req.brand_code),
        query: some(req.query),
        include_inactive: req.include_inactive,
    };
    let products = store::list_products(db, partner_id, &filter, after, limit).await?;
    Ok(Response::new(pb::ListProductsResponse {
        next_page_token: next_token(&products, limit),
        products: products.iter().map(product_to_proto).collect(),
    }))
}

pub async fn update_product(
    db: &DatabaseConnection,
    request: Request<pb::UpdateProductRequest>,
) -> Result<Response<pb::UpdateProductResponse>, Status> {
    let partner_id = partner(&request, WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "UpdateProduct", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let p = req.product.unwrap_or_default();
    required(&mut v, "product.id", &p.id);
    let paths = mask_paths(&mut v, req.update_mask, PRODUCT_UPDATABLE);
    v.into_result()?;
    let (sent_etag, at) = (req.etag, now());
    let product: Product = idempotency::run(db, scope, move |txn| {
        Box::pin(async move {
            let current: Product = locked(txn, partner_id, &p.id).await?;
            check_etag(&sent_etag, &etag(current.revision), Product::NAME)?;
            let new = spec_from_proto(p);
            let mut spec = current.spec.clone();
            for path in &paths {
                match path.as_str() {
                    "display_name" => spec.display_name = new.display_name.clone(),
                    "product_group_codes" => {
                        spec.product_group_codes = new.product_group_codes.clone()
                    }
                    "brand_code" => spec.brand_code = new.brand_code.clone(),
                    "list_price" => spec.list_price = new.list_price.clone(),
                    "barcodes" => spec.barcodes = new.barcodes.clone(),
                    "image_url" => spec.image_url = new.image_url.clone(),
                    "properties" => spec.properties = new.properties.clone(),
                    "active" => spec.active = new.active,
                    _ => {}
                }
            }
            let mut v = Violations::new();
            spec.validate(&mut v, "product");
            v.into_result()?;
            checked_references(txn, partner_id, "product", &spec).await?;
            let product = Product {
                spec,
                revision: current.revision + 1,
                updated_at: at,
                ..current
            };
            store::update_product(txn, partner_id, &product).await?;
            changed(txn, partner_id, &product, false).await?;
            Ok(product)
        })
    })
    .await?;
    Ok(Response::new(pb::UpdateProductResponse {
        product: Some(product_to_proto(&product)),
    }))
}

pub async fn delete_product(
    db: &DatabaseConnection,
    request: Request<pb::DeleteProductRequest>,
) -> Result<Response<pb::DeleteProductResponse>, Status> {
    let partner_id = partner(&request, WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "DeleteProduct", &req.idempotency_key, &req);
    delete::<Product>(db, scope, "product_id", req.product_id, req.etag).await?;
    Ok(Response::new(pb::DeleteProductResponse {}))
}

pub async fn import_products(
    db: &DatabaseConnection,
    request: Request<pb::ImportProductsRequest>,
) -> Result<Response<pb::ImportProductsResponse>, Status> {
    let partner_id = partner(&request, WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "ImportProducts", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    if req.products.is_empty() {
        v.add("products", "is required");
    } else if req.products.len() > MAX_IMPORT {
        v.add("products", format!("at most {MAX_IMPORT} per call"));
    }
    v.into_result()?;
    let specs: Vec<ProductSpec> = req.products.into_iter().map(spec_from_proto).collect();
    let counts: store::ImportCounts = idempotency::run(db, scope, move |txn| {
        Box::pin(async move { store::import_products(txn, partner_id, specs).await })
    })
    .await?;
    Ok(Response::new(pb::ImportProductsResponse {
        created_count: counts.created,
        updated_count: counts.updated,
        unchanged_count: counts.unchanged,
    }))
}

// ---- Product groups ----

fn check_group(v: &mut Violations, g: &ProductGroup) {
    check_name(v, "product_group.display_name", &g.display_name);
    if !g.parent_group_code.is_empty() {
        check_code(v, "product_group.parent_group_code", &g.parent_group_code);
    }
}

pub async fn create_product_group(
    db: &DatabaseConnection,
    request: Request<pb::CreateProductGroupRequest>,
) -> Result<Response<pb::CreateProductGroupResponse>, Status> {
    let partner_id = partner(&request, WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "CreateProductGroup", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let Some(p) = req.product_group else {
        return Err(ApiError::invalid("product_group", "is required").into());
    };
    let at = now();
    let group = ProductGroup {
        id: Uuid::now_v7(),
        code: p.code,
        display_name: p.display_name.trim().to_owned(),
        parent_group_code: p.parent_group_code,
        revision: 1,
        created_at: at,
        updated_at: at,
    };
    check_code(&mut v, "product_group.code", &group.code);
    check_group(&mut v, &group);
    v.into_result()?;
    let group: ProductGroup = idempotency::run(db, scope, move |txn| {
        Box::pin(async move {
            store::lock(txn, partner_id).await?;
            if !group.parent_group_code.is_empty()
                && ProductGroup::find(txn, partner_id, &group.parent_group_code)
                    .await?
                    .is_none_or(|p| p.code != group.parent_group_code)
            {
                return Err(not_found("parent product group", &group.parent_group_code));
            }
            store::insert_group(txn, partner_id, &group).await?;
            changed(txn, partner_id, &group, false).await?;
            Ok(group)
        })
    })
    .await?;
    Ok(Response::new(pb::CreateProductGroupResponse {
        product_group: Some(group_to_proto(&group)),
    }))
}

pub async fn get_product_group(
    db: &DatabaseConnection,
    request: Request<pb::GetProductGroupRequest>,
) -> Result<Response<pb::GetProductGroupResponse>, Status> {
    let group: ProductGroup = get(db, request, "product_group_id", |r| r.product_group_id).await?;
    Ok(Response::new(pb::GetProductGroupResponse {
        product_group: Some(group_to_proto(&group)),
    }))
}

pub async fn list_product_groups(
    db: &DatabaseConnection,
    request: Request<pb::ListProductGroupsRequest>,
) -> Result<Response<pb::ListProductGroupsResponse>, Status> {
    let partner_id = partner(&request, READERS)?;
    let req = request.into_inner();
    let (limit, after) = code_page(req.page_size, &req.page_token)?;
    let parent = (!req.parent_group_code.is_empty()).then_some(req.parent_group_code);
    let groups = store::list_groups(db, partner_id, parent, after, limit).await?;
    Ok(Response::new(pb::ListProductGroupsResponse {
        next_page_token: next_token(&groups, limit),
        product_groups: groups.iter().map(group_to_proto).collect(),
    }))
}

pub async fn update_product_group(
    db: &DatabaseConnection,
    request: Request<pb::UpdateProductGroupRequest>,
) -> Result<Response<pb::UpdateProductGroupResponse>, Status> {
    let partner_id = partner(&request, WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "UpdateProductGroup", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let p = req.product_group.unwrap_or_default();
    required(&mut v, "product_group.id", &p.id);
    let paths = mask_paths(&mut v, req.update_mask, GROUP_UPDATABLE);
    v.into_result()?;
    let (sent_etag, at) = (req.etag, now());
    let group: ProductGroup = idempotency::run(db, scope, move |txn| {
        Box::pin(async move {
            let current: ProductGroup = locked(txn, partner_id, &p.id).await?;
            check_etag(&sent_etag, &etag(current.revision), ProductGroup::NAME)?;
            let mut group = current.clone();
            for path in &paths {
                match path.as_str() {
                    "display_name" => group.display_name = p.display_name.trim().to_owned(),
                    "parent_group_code" => group.parent_group_code = p.parent_group_code.clone(),
                    _ => {}
                }
            }
            let mut v = Violations::new();
            check_group(&mut v, &group);
            v.into_result()?;
            if group.parent_group_code != current.parent_group_code
                && !group.parent_group_code.is_empty()
            {
                let parents = store::group_parents(txn, partner_id).await?;
                if !parents.contains_key(&group.parent_group_code) {
                    return Err(not_found("parent product group", &group.parent_group_code));
                }
                if would_cycle(&parents, &group.code, &group.parent_group_code) {
                    return Err(ApiError::precondition(
                        "PRODUCT_GROUP_CYCLE",
                        format!(
                            "product group {:?} is {:?} itself or one of its sub-groups",
                            group.parent_group_code, group.code
                        ),
                    ));
                }
            }
            group.revision += 1;
            group.updated_at = at;
            store::update_group(txn, partner_id, &group).await?;
            changed(txn, partner_id, &group, false).await?;
            Ok(group)
        })
    })
    .await?;
    Ok(Response::new(pb::UpdateProductGroupResponse {
        product_group: Some(group_to_proto(&group)),
    }))
}

pub async fn delete_product_group(
    db: &DatabaseConnection,
    request: Request<pb::DeleteProductGroupRequest>,
) -> Result<Response<pb::DeleteProductGroupResponse>, Status> {
    let partner_id = partner(&request, WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "DeleteProductGroup", &req.idempotency_key, &req);
    delete::<ProductGroup>(
        db,
        scope,
        "product_group_id",
        req.product_group_id,
        req.etag,
    )
    .await?;
    Ok(Response::new(pb::DeleteProductGroupResponse {}))
}

// ---- Brands ----

pub async fn create_brand(
    db: &DatabaseConnection,
    request: Request<pb::CreateBrandRequest>,
) -> Result<Response<pb::CreateBrandResponse>, Status> {
    let partner_id = partner(&request, WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "CreateBrand", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let Some(b) = req.brand else {
        return Err(ApiError::invalid("brand", "is required").into());
    };
    check_code(&mut v, "brand.code", &b.code);
    check_name(&mut v, "brand.display_name", &b.display_name);
    check_url(&mut v, "brand.logo_url", &b.logo_url);
    v.into_result()?;
    let at = now();
    let brand = Brand {
        id: Uuid::now_v7(),
        code: b.code,
        display_name: b.display_name.trim().to_owned(),
        logo_url: b.logo_url,
        revision: 1,
        created_at: at,
        updated_at: at,
    };
    let brand: Brand = idempotency::run(db, scope, move |txn| {
        Box::pin(async move {
            store::insert_brand(txn, partner_id, &brand).await?;
            changed(txn, partner_id, &brand, false).await?;
            Ok(brand)
        })
    })
    .await?;
    Ok(Response::new(pb::CreateBrandResponse {
        brand: Some(brand_to_proto(&brand)),
    }))
}

pub async fn get_brand(
    db: &DatabaseConnection,
    request: Request<pb::GetBrandRequest>,
) -> Result<Response<pb::GetBrandResponse>, Status> {
    let brand: Brand = get(db, request, "brand_id", |r| r.brand_id).await?;
    Ok(Response::new(pb::GetBrandResponse {
        brand: Some(brand_to_proto(&brand)),
    }))
}

pub async fn list_brands(
    db: &DatabaseConnection,
    request: Request<pb::ListBrandsRequest>,
) -> Result<Response<pb::ListBrandsResponse>, Status> {
    let partner_id = partner(&request, READERS)?;
    let req = request.into_inner();
    let (limit, after) = code_page(req.page_size, &req.page_token)?;
    let brands = store::list_brands(db, partner_id, after, limit).await?;
    Ok(Response::new(pb::ListBrandsResponse {
        next_page_token: next_token(&brands, limit),
        brands: brands.iter().map(brand_to_proto).collect(),
    }))
}

pub async fn update_brand(
    db: &DatabaseConnection,
    request: Request<pb::UpdateBrandRequest>,
) -> Result<Response<pb::UpdateBrandResponse>, Status> {
    let partner_id = partner(&request, WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "UpdateBrand", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let b = req.brand.unwrap_or_default();
    required(&mut v, "brand.id", &b.id);
    let paths = mask_paths(&mut v, req.update_mask, BRAND_UPDATABLE);
    v.into_result()?;
    let (sent_etag, at) = (req.etag, now());
    let brand: Brand = idempotency::run(db, scope, move |txn| {
        Box::pin(async move {
            let current: Brand = locked(txn, partner_id, &b.id).await?;
            check_etag(&sent_etag, &etag(current.revision), Brand::NAME)?;
            let mut brand = current;
            for path in &paths {
                match path.as_str() {
                    "display_name" => brand.display_name = b.display_name.trim().to_owned(),
                    "logo_url" => brand.logo_url = b.logo_url.clone(),
                    _ => {}
                }
            }
            let mut v = Violations::new();
            check_name(&mut v, "brand.display_name", &brand.display_name);
            check_url(&mut v, "brand.logo_url", &brand.logo_url);
            v.into_result()?;
            brand.revision += 1;
            brand.updated_at = at;
            store::update_brand(txn, partner_id, &brand).await?;
            changed(txn, partner_id, &brand, false).await?;
            Ok(brand)
        })
    })
    .await?;
    Ok(Response::new(pb::UpdateBrandResponse {
        brand: Some(brand_to_proto(&brand)),
    }))
}

pub async fn delete_brand(
    db: &DatabaseConnection,
    request: Request<pb::DeleteBrandRequest>,
) -> Result<Response<pb::DeleteBrandResponse>, Status> {
    let partner_id = partner(&request, WRITERS)?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "DeleteBrand", &req.idempotency_key, &req);
    delete::<Brand>(db, scope, "brand_id", req.brand_id, req.etag).await?;
    Ok(Response::new(pb::DeleteBrandResponse {}))
}

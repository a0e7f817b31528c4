//! The product catalogue's tables, scoped by partner: products (with their group links),
//! product groups and brands.
use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use loyalty_platform::{ApiError, Violations, error::check_etag};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, Func, Query},
};
use uuid::Uuid;

use crate::domain::catalogue::{
    Brand, Product, ProductGroup, ProductSpec, check_references, etag, subtree,
};

pub mod products {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "catalogue_products")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub code: String,
        pub display_name: String,
        pub brand_code: String,
        pub list_price_minor: Option<i64>,
        pub list_price_currency: String,
        pub barcodes: Json,
        pub image_url: String,
        pub properties: Json,
        pub active: bool,
        pub revision: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod group_links {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "catalogue_product_group_links")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub partner_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub product_code: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub group_code: String,
        pub position: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod groups {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "catalogue_product_groups")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub code: String,
        pub display_name: String,
        pub parent_group_code: String,
        pub revision: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod brands {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "catalogue_brands")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub code: String,
        pub display_name: String,
        pub logo_url: String,
        pub revision: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> ApiError {
    ApiError::Internal(anyhow::Error::new(e))
}

fn taken(e: sea_orm::DbErr, what: &str, code: &str) -> ApiError {
    loyalty_platform::db::taken(e, || format!("{what} with code {code:?}"))
}

/// Serialises catalogue writes of one partner on PostgreSQL (group trees and references are
/// checked by reading; SQLite serialises write transactions already).
pub async fn lock(conn: &impl ConnectionTrait, partner_id: Uuid) -> Result<(), ApiError> {
    Ok(
        loyalty_platform::db::advisory_xact_lock(conn, &format!("rewards-catalogue:{partner_id}"))
            .await?,
    )
}

/// What products, product groups and brands share: a partner's item is found by UUID or code,
/// deleted under its etag once nothing refers to it, and announced by code in
/// `CatalogueChanged`.
pub trait Item: Sized + Send + Sync {
    /// `CatalogueChanged.item_kind`.
    const KIND: &'static str;
    /// What messages call it ("product group").
    const NAME: &'static str;

    fn code(&self) -> &str;

    fn revision(&self) -> i64;

    /// The partner's item with this UUID or code; `None` when it has none.
    fn find(
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        key: &str,
    ) -> impl Future<Output = Result<Option<Self>, ApiError>> + Send;

    /// Deletes it when `sent_etag` (empty = any) is its current one (ETAG_MISMATCH otherwise)
    /// and nothing refers to it (FAILED_PRECONDITION otherwise).
    fn delete(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        sent_etag: &str,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}

// ---- Products ----

fn product_from(m: products::Model, groups: Vec<String>) -> Result<Product, ApiError> {
    let list_price = m.list_price_minor.map(|a| (a, m.list_price_currency));
    Ok(Product {
        id: m.id,
        spec: ProductSpec {
            code: m.code,
            display_name: m.display_name,
            product_group_codes: groups,
            brand_code: m.brand_code,
            list_price,
            barcodes: serde_json::from_value(m.barcodes).map_err(internal)?,
            image_url: m.image_url,
            properties: serde_json::from_value::<BTreeMap<String, String>>(m.properties)
                .map_err(internal)?,
            active: m.active,
        },
        revision: m.revision,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

/// The group codes of these products, in each product's order.
async fn links_of(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    codes: Vec<String>,
) -> Result<HashMap<String, Vec<String>>, ApiError> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    if codes.is_empty() {
        return Ok(out);
    }
    let rows = group_links::Entity::find()
        .filter(group_links::Column::PartnerId.eq(partner_id))
        .filter(group_links::Column::ProductCode.is_in(codes))
        .order_by_asc(group_links::Column::ProductCode)
        .order_by_asc(group_links::Column::Position)
        .all(conn)
        .await?;
    for r in rows {
        out.entry(r.product_code).or_default().push(r.group_code);
    }
    Ok(out)
}

async fn with_links(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    rows: Vec<products::Model>,
) -> Result<Vec<Product>, ApiError> {
    let mut links = links_of(
        conn,
        partner_id,
        rows.iter().map(|m| m.code.clone()).collect(),
    )
    .await?;
    rows.into_iter()
        .map(|m| {
            let groups = links.remove(&m.code).unwrap_or_default();
            product_from(m, groups)
        })
        .collect()
}

/// Matches a UUID or a code.
fn id_or_code<C: ColumnTrait>(id: C, code: C, key: &str) -> Condition {
    match Uuid::parse_str(key) {
        Ok(uuid) => Condition::any().add(id.eq(uuid)).add(code.eq(key)),
        Err(_) => Condition::all().add(code.eq(key)),
    }
}

impl Item for Product {
    const KIND: &'static str = "product";
    const NAME: &'static str = "product";

    fn code(&self) -> &str {
        &self.spec.code
    }

    fn revision(&self) -> i64 {
        self.revision
    }

    async fn find(
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        key: &str,
    ) -> Result<Option<Product>, ApiError> {
        let row = products::Entity::find()
            .filter(products::Column::PartnerId.eq(partner_id))
            .filter(id_or_code(
                products::Column::Id,
                products::Column::Code,
                key,
            ))
            .one(conn)
            .await?;
        match row {
            None => Ok(None),
            Some(m) => Ok(with_links(conn, partner_id, vec![m]).await?.pop()),
        }
    }

    /// Deletes the product and its group links (nothing refers to a product).
    async fn delete(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        sent_etag: &str,
    ) -> Result<(), ApiError> {
        check_etag(sent_etag, &etag(self.revision), Self::NAME)?;
        group_links::Entity::delete_many()
            .filter(group_links::Column::PartnerId.eq(partner_id))
            .filter(group_links::Column::ProductCode.eq(&self.spec.code))
            .exec(conn)
            .await?;
        products::Entity::delete_many()
            .filter(products::Column::PartnerId.eq(partner_id))
            .filter(products::Column::Id.eq(self.id))
            .exec(conn)
            .await?;
        Ok(())
    }
}

/// The products with these codes, by code.
pub async fn products_by_code(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    codes: Vec<String>,
) -> Result<HashMap<String, Product>, ApiError> {
    let rows = products::Entity::find()
        .filter(products::Column::PartnerId.eq(partner_id))
        .filter(products::Column::Code.is_in(codes))
        .all(conn)
        .await?;
    Ok(with_links(conn, partner_id, rows)
        .await?
        .into_iter()
        .map(|p| (p.spec.code.clone(), p))
        .collect())
}

fn product_row(partner_id: Uuid, p: &Product) -> Result<products::ActiveModel, ApiError> {
    let (minor, currency) = match &p.spec.list_price {
        Some((a, c)) => (Some(*a), c.clone()),
        None => (None, String::new()),
    };
    Ok(products::ActiveModel {
        id: Set(p.id),
        partner_id: Set(partner_id),
        code: Set(p.spec.code.clone()),
        display_name: Set(p.spec.display_name.clone()),
        brand_code: Set(p.spec.brand_code.clone()),
        list_price_minor: Set(minor),
        list_price_currency: Set(currency),
        barcodes: Set(serde_json::to_value(&p.spec.barcodes).map_err(internal)?),
        image_url: Set(p.spec.image_url.clone()),
        properties: Set(serde_json::to_value(&p.spec.properties).map_err(internal)?),
        active: Set(p.spec.active),
        revision: Set(p.revision),
        created_at: Set(p.created_at),
        updated_at: Set(p.updated_at),
    })
}

async fn replace_links(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    spec: &ProductSpec,
) -> Result<(), ApiError> {
    group_links::Entity::delete_many()
        .filter(group_links::Column::PartnerId.eq(partner_id))
        .filter(group_links::Column::ProductCode.eq(&spec.code))
        .exec(conn)
        .await?;
    if spec.product_group_codes.is_empty() {
        return Ok(());
    }
    let rows = spec
        .product_group_codes
        .iter()
        .enumerate()
        .map(|(i, g)| group_links::ActiveModel {
            partner_id: Set(partner_id),
            product_code: Set(spec.code.clone()),
            group_code: Set(g.clone()),
            position: Set(i32::try_from(i).unwrap_or(i32::MAX)),
        });
    group_links::Entity::insert_many(rows)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// A new product; ALREADY_EXISTS when its code is taken.
pub async fn insert_product(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    p: &Product,
) -> Result<(), ApiError> {
    products::Entity::insert(product_row(partner_id, p)?)
        .exec_without_returning(conn)
        .await
        .map_err(|e| taken(e, "a product", &p.spec.code))?;
    replace_links(conn, partner_id, &p.spec).await
}

/// Replaces a product's fields (its code stays); the caller has moved the revision on.
pub async fn update_product(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    p: &Product,
) -> Result<(), ApiError> {
    products::Entity::update(product_row(partner_id, p)?)
        .filter(products::Column::PartnerId.eq(partner_id))
        .exec(conn)
        .await?;
    replace_links(conn, partner_id, &p.spec).await
}

/// What ListProducts filters by.
#[derive(Debug, Clone, Default)]
pub struct ProductFilter {
    /// Products of this group or its sub-groups.
    pub product_group_code: Option<String>,
    pub brand_code: Option<String>,
    /// Code or name starts with this (case-insensitive).
    pub query: Option<String>,
    pub include_inactive: bool,
}

/// A page of products by code, after the code `after`.
pub async fn list_products(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    filter: &ProductFilter,
    after: Option<String>,
    limit: u64,
) -> Result<Vec<Product>, ApiError> {
    let mut q = products::Entity::find().filter(products::Column::PartnerId.eq(partner_id));
    if let Some(group) = &filter.product_group_code {
        let parents = group_parents(conn, partner_id).await?;
        let codes = subtree(&parents, group);
        q = q.filter(
            products::Column::Code.in_subquery(
                Query::select()
                    .column(group_links::Column::ProductCode)
                    .from(group_links::Entity)
                    .and_where(group_links::Column::PartnerId.eq(partner_id))
                    .and_where(group_links::Column::GroupCode.is_in(codes))
                    .to_owned(),
            ),
        );
    }
    if let Some(brand) = &filter.brand_code {
        q = q.filter(products::Column::BrandCode.eq(brand));
    }
    if let Some(text) = &filter.query {
        let escaped: String = text
            .to_lowercase()
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let pattern = format!("{escaped}%");
        let starts = |col: products::Column| {
            Expr::expr(Func::lower(Expr::col(col)))
                .like(sea_orm::sea_query::LikeExpr::new(pattern.clone()).escape('\\'))
        };
        q = q.filter(
            Condition::any()
                .add(starts(products::Column::Code))
                .add(starts(products::Column::DisplayName)),
        );
    }
    if !filter.include_inactive {
        q = q.filter(products::Column::Active.eq(true));
    }
    if let Some(after) = after {
        q = q.filter(products::Column::Code.gt(after));
    }
    let rows = q
        .order_by_asc(products::Column::Code)
        .limit(limit)
        .all(conn)
        .await?;
    with_links(conn, partner_id, rows).await
}

/// The group and brand codes the partner has, to check a product's references.
pub async fn known_codes(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
) -> Result<(HashSet<String>, HashSet<String>), ApiError> {
    let groups = group_parents(conn, partner_id).await?.into_keys().collect();
    let brands = brands::Entity::find()
        .select_only()
        .column(brands::Column::Code)
        .filter(brands::Column::PartnerId.eq(partner_id))
        .into_tuple::<String>()
        .all(conn)
        .await?
        .into_iter()
        .collect();
    Ok((groups, brands))
}

// ---- Product groups ----

fn group_from(m: groups::Model) -> ProductGroup {
    ProductGroup {
        id: m.id,
        code: m.code,
        display_name: m.display_name,
        parent_group_code: m.parent_group_code,
        revision: m.revision,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

fn group_row(partner_id: Uuid, g: &ProductGroup) -> groups::ActiveModel {
    groups::ActiveModel {
        id: Set(g.id),
        partner_id: Set(partner_id),
        code: Set(g.code.clone()),
        display_name: Set(g.display_name.clone()),
        parent_group_code: Set(g.parent_group_code.clone()),
        revision: Set(g.revision),
        created_at: Set(g.created_at),
        updated_at: Set(g.updated_at),
    }
}

/// Every group code of the partner with its parent code (empty for roots).
pub async fn group_parents(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
) -> Result<HashMap<String, String>, ApiError> {
    Ok(groups::Entity::find()
        .select_only()
        .column(groups::Column::Code)
        .column(groups::Column::ParentGroupCode)
        .filter(groups::Column::PartnerId.eq(partner_id))
        .into_tuple::<(String, String)>()
        .all(conn)
        .await?
        .into_iter()
        .collect())
}

impl Item for ProductGroup {
    const KIND: &'static str = "product_group";
    const NAME: &'static str = "product group";

    fn code(&self) -> &str {
        &self.code
    }

    fn revision(&self) -> i64 {
        self.revision
    }

    async fn find(
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        key: &str,
    ) -> Result<Option<ProductGroup>, ApiError> {
        Ok(groups::Entity::find()
            .filter(groups::Column::PartnerId.eq(partner_id))
            .filter(id_or_code(groups::Column::Id, groups::Column::Code, key))
            .one(conn)
            .await?
            .map(group_from))
    }

    /// A group with children or products is kept: FAILED_PRECONDITION
    /// `PRODUCT_GROUP_HAS_CHILDREN` or `PRODUCT_GROUP_IN_USE`.
    async fn delete(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        sent_etag: &str,
    ) -> Result<(), ApiError> {
        check_etag(sent_etag, &etag(self.revision), Self::NAME)?;
        let children = groups::Entity::find()
            .filter(groups::Column::PartnerId.eq(partner_id))
            .filter(groups::Column::ParentGroupCode.eq(&self.code))
            .count(conn)
            .await?;
        if children > 0 {
            return Err(ApiError::precondition(
                "PRODUCT_GROUP_HAS_CHILDREN",
                format!(
                    "product group {:?} has {children} child group(s)",
                    self.code
                ),
            ));
        }
        let products = group_links::Entity::find()
            .filter(group_links::Column::PartnerId.eq(partner_id))
            .filter(group_links::Column::GroupCode.eq(&self.code))
            .count(conn)
            .await?;
        if products > 0 {
            return Err(ApiError::precondition(
                "PRODUCT_GROUP_IN_USE",
                format!(
                    "{products} product(s) belong to product group {:?}",
                    self.code
                ),
            ));
        }
        groups::Entity::delete_by_id(self.id).exec(conn).await?;
        Ok(())
    }
}

pub async fn insert_group(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    g: &ProductGroup,
) -> Result<(), ApiError> {
    groups::Entity::insert(group_row(partner_id, g))
        .exec_without_returning(conn)
        .await
        .map_err(|e| taken(e, "a product group", &g.code))?;
    Ok(())
}

pub async fn update_group(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    g: &ProductGroup,
) -> Result<(), ApiError> {
    groups::Entity::update(group_row(partner_id, g))
        .filter(groups::Column::PartnerId.eq(partner_id))
        .exec(conn)
        .await?;
    Ok(())
}

/// A page of groups by code after `after`; only direct children of `parent` when given.
pub async fn list_groups(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    parent: Option<String>,
    after: Option<String>,
    limit: u64,
) -> Result<Vec<ProductGroup>, ApiError> {
    let mut q = groups::Entity::find().filter(groups::Column::PartnerId.eq(partner_id));
    if let Some(parent) = parent {
        q = q.filter(groups::Column::ParentGroupCode.eq(parent));
    }
    if let Some(after) = after {
        q = q.filter(groups::Column::Code.gt(after));
    }
    Ok(q.order_by_asc(groups::Column::Code)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(group_from)
        .collect())
}

// ---- Brands ----

fn brand_from(m: brands::Model) -> Brand {
    Brand {
        id: m.id,
        code: m.code,
        display_name: m.display_name,
        logo_url: m.logo_url,
        revision: m.revision,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

fn brand_row(partner_id: Uuid, b: &Brand) -> brands::ActiveModel {
    brands::ActiveModel {
        id: Set(b.id),
        partner_id: Set(partner_id),
        code: Set(b.code.clone()),
        display_name: Set(b.display_name.clone()),
        logo_url: Set(b.logo_url.clone()),
        revision: Set(b.revision),
        created_at: Set(b.created_at),
        updated_at: Set(b.updated_at),
    }
}

impl Item for Brand {
    const KIND: &'static str = "brand";
    const NAME: &'static str = "brand";

    fn code(&self) -> &str {
        &self.code
    }

    fn revision(&self) -> i64 {
        self.revision
    }

    async fn find(
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        key: &str,
    ) -> Result<Option<Brand>, ApiError> {
        Ok(brands::Entity::find()
            .filter(brands::Column::PartnerId.eq(partner_id))
            .filter(id_or_code(brands::Column::Id, brands::Column::Code, key))
            .one(conn)
            .await?
            .map(brand_from))
    }

    /// A brand of any product is kept: FAILED_PRECONDITION `BRAND_IN_USE`.
    async fn delete(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        sent_etag: &str,
    ) -> Result<(), ApiError> {
        check_etag(sent_etag, &etag(self.revision), Self::NAME)?;
        let products = products::Entity::find()
            .filter(products::Column::PartnerId.eq(partner_id))
            .filter(products::Column::BrandCode.eq(&self.code))
            .count(conn)
            .await?;
        if products > 0 {
            return Err(ApiError::precondition(
                "BRAND_IN_USE",
                format!("{products} product(s) are of brand {:?}", self.code),
            ));
        }
        brands::Entity::delete_by_id(self.id).exec(conn).await?;
        Ok(())
    }
}

pub async fn insert_brand(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    b: &Brand,
) -> Result<(), ApiError> {
    brands::Entity::insert(brand_row(partner_id, b))
        .exec_without_returning(conn)
        .await
        .map_err(|e| taken(e, "a brand", &b.code))?;
    Ok(())
}

pub async fn update_brand(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    b: &Brand,
) -> Result<(), ApiError> {
    brands::Entity::update(brand_row(partner_id, b))
        .filter(brands::Column::PartnerId.eq(partner_id))
        .exec(conn)
        .await?;
    Ok(())
}

pub async fn list_brands(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    after: Option<String>,
    limit: u64,
) -> Result<Vec<Brand>, ApiError> {
    let mut q = brands::Entity::find().filter(brands::Column::PartnerId.eq(partner_id));
    if let Some(after) = after {
        q = q.filter(brands::Column::Code.gt(after));
    }
    Ok(q.order_by_asc(brands::Column::Code)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(brand_from)
        .collect())
}

/// What an import did, by product.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportCounts {
    pub created: i32,
    pub updated: i32,
    pub unchanged: i32,
}

/// Creates or replaces products by code, all or nothing: every invalid product is reported
/// under `products[i]`; products equal to the stored ones are left alone (a re-run of the
/// same file changes nothing and publishes nothing).
pub async fn import_products(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    specs: Vec<ProductSpec>,
) -> Result<ImportCounts, ApiError> {
    let mut v = Violations::new();
    let mut seen = HashSet::new();
    for (i, spec) in specs.iter().enumerate() {
        spec.validate(&mut v, &format!("products[{i}]"));
        if !spec.code.is_empty() && !seen.insert(spec.code.clone()) {
            v.add(format!("products[{i}].code"), "appears twice in the import");
        }
    }
    v.into_result()?;
    lock(conn, partner_id).await?;
    let (groups, brands) = known_codes(conn, partner_id).await?;
    let mut v = Violations::new();
    for (i, spec) in specs.iter().enumerate() {
        check_references(&mut v, &format!("products[{i}]"), spec, &groups, &brands);
    }
    v.into_result()?;
    let mut existing = products_by_code(
        conn,
        partner_id,
        specs.iter().map(|s| s.code.clone()).collect(),
    )
    .await?;
    let at = now();
    let mut counts = ImportCounts::default();
    let mut events = Vec::new();
    for spec in specs {
        match existing.remove(&spec.code) {
            Some(current) if current.spec == spec => counts.unchanged += 1,
            Some(current) => {
                let code = spec.code.clone();
                let product = Product {
                    spec,
                    revision: current.revision + 1,
                    updated_at: at,
                    ..current
                };
                update_product(conn, partner_id, &product).await?;
                counts.updated += 1;
                events.push(code);
            }
            None => {
                let code = spec.code.clone();
                let product = Product {
                    id: Uuid::now_v7(),
                    spec,
                    revision: 1,
                    created_at: at,
                    updated_at: at,
                };
                insert_product(conn, partner_id, &product).await?;
                counts.created += 1;
                events.push(code);
            }
        }
    }
    let events: Vec<loyalty_proto::events::v1::CatalogueChanged> = events
        .into_iter()
        .map(|code| loyalty_proto::events::v1::CatalogueChanged {
            item_kind: Product::KIND.to_owned(),
            code,
            deleted: false,
        })
        .collect();
    loyalty_platform::events::enqueue_all(conn, Some(partner_id), &events).await?;
    Ok(counts)
}

/// Now, truncated to microseconds (what PostgreSQL keeps), so that an answer equals a re-read.
pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

#[cfg(test)]
mod tests;

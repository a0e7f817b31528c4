//! Contact sources, interests, property definitions, relation types and customer relations,
//! scoped by partner. Catalogue entries are deleted for good: a contact source only when no
//! account lists it, an interest after it was taken off every account.
use std::collections::{BTreeMap, HashMap};

use loyalty_platform::ApiError;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Alias, Expr, Func},
};
use uuid::Uuid;

use super::entities::customers;
use crate::domain::customer_data::{
    ContactSource, CustomerRelation, Interest, PropertyDefinition, PropertyType, RelationMove,
    RelationType, ordered, plan_relation_move,
};

pub mod entities {
    pub mod contact_sources {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "contact_sources")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub partner_id: Uuid,
            pub code: String,
            pub display_name: String,
            pub description: String,
            pub version: i64,
            pub created_at: DateTimeUtc,
            pub updated_at: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod interests {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "interests")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub partner_id: Uuid,
            pub code: String,
            pub display_name: String,
            pub parent_id: Option<Uuid>,
            pub version: i64,
            pub created_at: DateTimeUtc,
            pub updated_at: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod customer_property_definitions {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
        #[sea_orm(table_name = "customer_property_definitions")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub partner_id: Uuid,
            pub key: String,
            pub display_name: String,
            pub data_type: String,
            /// JSON array of strings.
            pub allowed_values: Json,
            pub max_length: i32,
            pub required: bool,
            pub personal_data: bool,
            pub description: String,
            pub version: i64,
            pub created_at: DateTimeUtc,
            pub updated_at: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod relation_types {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "relation_types")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub partner_id: Uuid,
            pub code: String,
            pub display_name: String,
            pub from_role_name: String,
            pub to_role_name: String,
            pub symmetric: bool,
            pub max_relations_per_customer: i32,
            pub share_benefits: bool,
            pub version: i64,
            pub created_at: DateTimeUtc,
            pub updated_at: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod customer_relations {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "customer_relations")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub partner_id: Uuid,
            pub relation_type_id: Uuid,
            pub from_customer_id: Uuid,
            pub to_customer_id: Uuid,
            /// The smaller of the two customer ids (unique per type with `pair_high`).
            pub pair_low: Uuid,
            pub pair_high: Uuid,
            pub note: String,
            pub created_at: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }
}

use entities::{
    contact_sources as cs, customer_property_definitions as pd, customer_relations as cr,
    interests as it, relation_types as rt,
};

fn taken(e: sea_orm::DbErr, what: &str) -> ApiError {
    loyalty_platform::db::taken(e, || what.to_owned())
}

fn json_err(e: serde_json::Error) -> ApiError {
    ApiError::Internal(anyhow::Error::new(e).context("customer data JSON"))
}

/// Customers whose data is live (not erased, not merged away).
fn live_customers(partner_id: Uuid) -> sea_orm::Select<customers::Entity> {
    customers::Entity::find()
        .filter(customers::Column::PartnerId.eq(partner_id))
        .filter(customers::Column::State.is_in(["active", "blocked"]))
}

/// `CAST(column AS TEXT) LIKE %needle%`: a cheap pre-filter on JSON columns that works the same
/// on PostgreSQL and SQLite; callers confirm matches on the decoded value.
fn json_mentions(column: customers::Column, needle: &str) -> sea_orm::sea_query::SimpleExpr {
    Expr::expr(Func::cast_as(Expr::col(column), Alias::new("TEXT"))).like(format!("%{needle}%"))
}

fn uuid_list(v: &serde_json::Value) -> Vec<Uuid> {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

/// Row locks without a change (`SET version = version`): a customer write that lists an entry
/// and a delete of that entry then run one after the other on PostgreSQL, so the delete's
/// in-use check sees the account or the write sees the entry gone. (SQLite writes are
/// serialised anyway.)
macro_rules! touch {
    ($conn:expr, $entity:ident, $partner_id:expr, $ids:expr) => {{
        let ids: Vec<Uuid> = $ids;
        if ids.is_empty() {
            Ok::<(), ApiError>(())
        } else {
            $entity::Entity::update_many()
                .col_expr(
                    $entity::Column::Version,
                    Expr::col($entity::Column::Version).into(),
                )
                .filter($entity::Column::PartnerId.eq($partner_id))
                .filter($entity::Column::Id.is_in(ids))
                .exec($conn)
                .await?;
            Ok(())
        }
    }};
}

/// Locks the partner's contact sources `ids` until the transaction ends.
pub async fn lock_contact_sources(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    ids: &[Uuid],
) -> Result<(), ApiError> {
    touch!(conn, cs, partner_id, ids.to_vec())
}

/// Locks the partner's interests `ids` until the transaction ends.
pub async fn lock_interests(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    ids: &[Uuid],
) -> Result<(), ApiError> {
    touch!(conn, it, partner_id, ids.to_vec())
}

/// Locks a relation type until the transaction ends, so relation limits hold under
/// concurrent creates.
pub async fn lock_relation_type(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<(), ApiError> {
    touch!(conn, rt, partner_id, vec![id])
}

// ---- contact sources ----

fn source_from(m: cs::Model) -> ContactSource {
    ContactSource {
        id: m.id,
        code: m.code,
        display_name: m.display_name,
        description: m.description,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

fn source_row(partner_id: Uuid, s: &ContactSource) -> cs::ActiveModel {
    cs::ActiveModel {
        id: Set(s.id),
        partner_id: Set(partner_id),
        code: Set(s.code.clone()),
        display_name: Set(s.display_name.clone()),
        description: Set(s.description.clone()),
        version: Set(s.version),
        created_at: Set(s.created_at),
        updated_at: Set(s.updated_at),
    }
}

pub async fn insert_contact_source(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    s: &ContactSource,
) -> Result<(), ApiError> {
    cs::Entity::insert(source_row(partner_id, s))
        .exec_without_returning(conn)
        .await
        .map_err(|e| taken(e, &format!("contact source with code {:?}", s.code)))?;
    Ok(())
}

pub async fn contact_source(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<Option<ContactSource>, ApiError> {
    Ok(cs::Entity::find_by_id(id)
        .filter(cs::Column::PartnerId.eq(partner_id))
        .one(conn)
        .await?
        .map(source_from))
}

/// A page ordered by code, after the code `after`.
pub async fn contact_sources(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<ContactSource>, ApiError> {
    let mut q = cs::Entity::find().filter(cs::Column::PartnerId.eq(partner_id));
    if let Some(after) = after {
        q = q.filter(cs::Column::Code.gt(after));
    }
    Ok(q.order_by_asc(cs::Column::Code)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(source_from)
        .collect())
}

/// Writes `s` if its stored version is still `expected_version`; `false` if it moved on.
pub async fn update_contact_source(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    s: &ContactSource,
    expected_version: i64,
) -> Result<bool, ApiError> {
    let mut row = source_row(partner_id, s);
    (row.id, row.partner_id, row.code, row.created_at) = (NotSet, NotSet, NotSet, NotSet);
    let res = cs::Entity::update_many()
        .set(row)
        .filter(cs::Column::PartnerId.eq(partner_id))
        .filter(cs::Column::Id.eq(s.id))
        .filter(cs::Column::Version.eq(expected_version))
        .exec(conn)
        .await?;
    Ok(res.rows_affected == 1)
}

pub async fn delete_contact_source(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<(), ApiError> {
    cs::Entity::delete_many()
        .filter(cs::Column::PartnerId.eq(partner_id))
        .filter(cs::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Whether a live customer account lists the contact source.
pub async fn contact_source_in_use(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<bool, ApiError> {
    Ok(live_customers(partner_id)
        .filter(json_mentions(
            customers::Column::ContactSourceIds,
            &id.to_string(),
        ))
        .all(conn)
        .await?
        .iter()
        .any(|m| uuid_list(&m.contact_source_ids).contains(&id)))
}

/// The ids among `ids` that are not contact sources of the partner.
pub async fn unknown_contact_sources(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, ApiError> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let found: Vec<Uuid> = cs::Entity::find()
        .select_only()
        .column(cs::Column::Id)
        .filter(cs::Column::PartnerId.eq(partner_id))
        .filter(cs::Column::Id.is_in(ids.to_vec()))
        .into_tuple()
        .all(conn)
        .await?;
    Ok(ids.iter().filter(|i| !found.contains(i)).copied().collect())
}

// ---- interests ----

fn interest_from(m: it::Model) -> Interest {
    Interest {
        id: m.id,
        code: m.code,
        display_name: m.display_name,
        parent_id: m.parent_id,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

fn interest_row(partner_id: Uuid, i: &Interest) -> it::ActiveModel {
    it::ActiveModel {
        id: Set(i.id),
        partner_id: Set(partner_id),
        code: Set(i.code.clone()),
        display_name: Set(i.display_name.clone()),
        parent_id: Set(i.parent_id),
        version: Set(i.version),
        created_at: Set(i.created_at),
        updated_at: Set(i.updated_at),
    }
}

pub async fn insert_interest(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    i: &Interest,
) -> Result<(), ApiError> {
    it::Entity::insert(interest_row(partner_id, i))
        .exec_without_returning(conn)
        .await
        .map_err(|e| taken(e, &format!("interest with code {:?}", i.code)))?;
    Ok(())
}

pub async fn interest(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<Option<Interest>, ApiError> {
    Ok(it::Entity::find_by_id(id)
        .filter(it::Column::PartnerId.eq(partner_id))
        .one(conn)
        .await?
        .map(interest_from))
}

/// A page ordered by code, after the code `after`, optionally only children of `parent`.
pub async fn interests(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    parent: Option<Uuid>,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<Interest>, ApiError> {
    let mut q = it::Entity::find().filter(it::Column::PartnerId.eq(partner_id));
    if let Some(p) = parent {
        q = q.filter(it::Column::ParentId.eq(p));
    }
    if let Some(after) = after {
        q = q.filter(it::Column::Code.gt(after));
    }
    Ok(q.order_by_asc(it::Column::Code)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(interest_from)
        .collect())
}

/// Each interest's parent, for cycle checks.
pub async fn interest_parents(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
) -> Result<HashMap<Uuid, Uuid>, ApiError> {
    Ok(it::Entity::find()
        .filter(it::Column::PartnerId.eq(partner_id))
        .filter(it::Column::ParentId.is_not_null())
        .all(conn)
        .await?
        .into_iter()
        .filter_map(|m| Some((m.id, m.parent_id?)))
        .collect())
}

pub async fn update_interest(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    i: &Interest,
    expected_version: i64,
) -> Result<bool, ApiError> {
    let mut row = interest_row(partner_id, i);
    (row.id, row.partner_id, row.code, row.created_at) = (NotSet, NotSet, NotSet, NotSet);
    let res = it::Entity::update_many()
        .set(row)
        .filter(it::Column::PartnerId.eq(partner_id))
        .filter(it::Column::Id.eq(i.id))
        .filter(it::Column::Version.eq(expected_version))
        .exec(conn)
        .await?;
    Ok(res.rows_affected == 1)
}

pub async fn interest_has_children(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<bool, ApiError> {
    Ok(it::Entity::find()
        .filter(it::Column::PartnerId.eq(partner_id))
        .filter(it::Column::ParentId.eq(id))
        .count(conn)
        .await?
        > 0)
}

pub async fn delete_interest(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<(), ApiError> {
    it::Entity::delete_many()
        .filter(it::Column::PartnerId.eq(partner_id))
        .filter(it::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

/// The ids among `ids` that are not interests of the partner.
pub async fn unknown_interests(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, ApiError> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let found: Vec<Uuid> = it::Entity::find()
        .select_only()
        .column(it::Column::Id)
        .filter(it::Column::PartnerId.eq(partner_id))
        .filter(it::Column::Id.is_in(ids.to_vec()))
        .into_tuple()
        .all(conn)
        .await?;
    Ok(ids.iter().filter(|i| !found.contains(i)).copied().collect())
}

/// Live customer accounts that list the interest.
pub async fn customers_with_interest(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<Vec<Uuid>, ApiError> {
    Ok(live_customers(partner_id)
        .filter(json_mentions(
            customers::Column::InterestIds,
            &id.to_string(),
        ))
        .all(conn)
        .await?
        .into_iter()
        .filter(|m| uuid_list(&m.interest_ids).contains(&id))
        .map(|m| m.id)
        .collect())
}

// ---- customer property definitions ----

fn definition_from(m: pd::Model) -> Result<PropertyDefinition, ApiError> {
    Ok(PropertyDefinition {
        id: m.id,
        data_type: PropertyType::parse_str(&m.data_type).ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("unknown property type {}", m.data_type))
        })?,
        key: m.key,
        display_name: m.display_name,
        allowed_values: serde_json::from_value(m.allowed_values).map_err(json_err)?,
        max_length: m.max_length,
        required: m.required,
        personal_data: m.personal_data,
        description: m.description,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn definition_row(partner_id: Uuid, d: &PropertyDefinition) -> Result<pd::ActiveModel, ApiError> {
    Ok(pd::ActiveModel {
        id: Set(d.id),
        partner_id: Set(partner_id),
        key: Set(d.key.clone()),
        display_name: Set(d.display_name.clone()),
        data_type: Set(d.data_type.as_str().to_owned()),
        allowed_values: Set(serde_json::to_value(&d.allowed_values).map_err(json_err)?),
        max_length: Set(d.max_length),
        required: Set(d.required),
        personal_data: Set(d.personal_data),
        description: Set(d.description.clone()),
        version: Set(d.version),
        created_at: Set(d.created_at),
        updated_at: Set(d.updated_at),
    })
}

pub async fn insert_property_definition(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    d: &PropertyDefinition,
) -> Result<(), ApiError> {
    pd::Entity::insert(definition_row(partner_id, d)?)
        .exec_without_returning(conn)
        .await
        .map_err(|e| taken(e, &format!("customer property with key {:?}", d.key)))?;
    Ok(())
}

pub async fn property_definition(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<Option<PropertyDefinition>, ApiError> {
    pd::Entity::find_by_id(id)
        .filter(pd::Column::PartnerId.eq(partner_id))
        .one(conn)
        .await?
        .map(definition_from)
        .transpose()
}

/// Every property definition of the partner, by key: what customer writes (and the bulk
/// import) validate `properties` against with
/// [`validate_properties`](crate::domain::customer_data::validate_properties).
pub async fn property_definitions(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
) -> Result<Vec<PropertyDefinition>, ApiError> {
    page_of_property_definitions(conn, partner_id, None, u64::MAX).await
}

/// A page ordered by key, after the key `after`.
pub async fn page_of_property_definitions(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<PropertyDefinition>, ApiError> {
    let mut q = pd::Entity::find().filter(pd::Column::PartnerId.eq(partner_id));
    if let Some(after) = after {
        q = q.filter(pd::Column::Key.gt(after));
    }
    let mut q = q.order_by_asc(pd::Column::Key);
    if limit != u64::MAX {
        q = q.limit(limit);
    }
    q.all(conn)
        .await?
        .into_iter()
        .map(definition_from)
        .collect()
}

pub async fn update_property_definition(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    d: &PropertyDefinition,
    expected_version: i64,
) -> Result<bool, ApiError> {
    let mut row = definition_row(partner_id, d)?;
    (
        row.id,
        row.partner_id,
        row.key,
        row.data_type,
        row.created_at,
    ) = (NotSet, NotSet, NotSet, NotSet, NotSet);
    let res = pd::Entity::update_many()
        .set(row)
        .filter(pd::Column::PartnerId.eq(partner_id))
        .filter(pd::Column::Id.eq(d.id))
        .filter(pd::Column::Version.eq(expected_version))
        .exec(conn)
        .await?;
    Ok(res.rows_affected == 1)
}

pub async fn delete_property_definition(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<(), ApiError> {
    pd::Entity::delete_many()
        .filter(pd::Column::PartnerId.eq(partner_id))
        .filter(pd::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

/// The properties of the partner's live customer accounts; with `key`, only accounts that
/// have that property.
pub async fn customer_properties(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    key: Option<&str>,
) -> Result<Vec<(Uuid, BTreeMap<String, String>)>, ApiError> {
    let mut q = live_customers(partner_id);
    if let Some(key) = key {
        q = q.filter(json_mentions(
            customers::Column::Properties,
            &format!("\"{key}\""),
        ));
    }
    let mut out = Vec::new();
    for m in q.order_by_asc(customers::Column::Id).all(conn).await? {
        let props: BTreeMap<String, String> =
            serde_json::from_value(m.properties).unwrap_or_default();
        if key.is_none_or(|k| props.contains_key(k)) {
            out.push((m.id, props));
        }
    }
    Ok(out)
}

// ---- relation types ----

fn relation_type_from(m: rt::Model) -> RelationType {
    RelationType {
        id: m.id,
        code: m.code,
        display_name: m.display_name,
        from_role_name: m.from_role_name,
        to_role_name: m.to_role_name,
        symmetric: m.symmetric,
        max_relations_per_customer: m.max_relations_per_customer,
        share_benefits: m.share_benefits,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

fn relation_type_row(partner_id: Uuid, t: &RelationType) -> rt::ActiveModel {
    rt::ActiveModel {
        id: Set(t.id),
        partner_id: Set(partner_id),
        code: Set(t.code.clone()),
        display_name: Set(t.display_name.clone()),
        from_role_name: Set(t.from_role_name.clone()),
        to_role_name: Set(t.to_role_name.clone()),
        symmetric: Set(t.symmetric),
        max_relations_per_customer: Set(t.max_relations_per_customer),
        share_benefits: Set(t.share_benefits),
        version: Set(t.version),
        created_at: Set(t.created_at),
        updated_at: Set(t.updated_at),
    }
}

pub async fn insert_relation_type(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    t: &RelationType,
) -> Result<(), ApiError> {
    rt::Entity::insert(relation_type_row(partner_id, t))
        .exec_without_returning(conn)
        .await
        .map_err(|e| taken(e, &format!("relation type with code {:?}", t.code)))?;
    Ok(())
}

pub async fn relation_type(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<Option<RelationType>, ApiError> {
    Ok(rt::Entity::find_by_id(id)
        .filter(rt::Column::PartnerId.eq(partner_id))
        .one(conn)
        .await?
        .map(relation_type_from))
}

/// A page ordered by code, after the code `after`.
pub async fn relation_types(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<RelationType>, ApiError> {
    let mut q = rt::Entity::find().filter(rt::Column::PartnerId.eq(partner_id));
    if let Some(after) = after {
        q = q.filter(rt::Column::Code.gt(after));
    }
    Ok(q.order_by_asc(rt::Column::Code)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(relation_type_from)
        .collect())
}

pub async fn update_relation_type(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    t: &RelationType,
    expected_version: i64,
) -> Result<bool, ApiError> {
    let mut row = relation_type_row(partner_id, t);
    (
        row.id,
        row.partner_id,
        row.code,
        row.symmetric,
        row.created_at,
    ) = (NotSet, NotSet, NotSet, NotSet, NotSet);
    let res = rt::Entity::update_many()
        .set(row)
        .filter(rt::Column::PartnerId.eq(partner_id))
        .filter(rt::Column::Id.eq(t.id))
        .filter(rt::Column::Version.eq(expected_version))
        .exec(conn)
        .await?;
    Ok(res.rows_affected == 1)
}

pub async fn delete_relation_type(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<(), ApiError> {
    rt::Entity::delete_many()
        .filter(rt::Column::PartnerId.eq(partner_id))
        .filter(rt::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

pub async fn relation_type_in_use(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<bool, ApiError> {
    Ok(cr::Entity::find()
        .filter(cr::Column::PartnerId.eq(partner_id))
        .filter(cr::Column::RelationTypeId.eq(id))
        .count(conn)
        .await?
        > 0)
}

// ---- customer relations ----

fn relation_from(m: cr::Model) -> CustomerRelation {
    CustomerRelation {
        id: m.id,
        relation_type_id: m.relation_type_id,
        from_customer_id: m.from_customer_id,
        to_customer_id: m.to_customer_id,
        note: m.note,
        created_at: m.created_at,
    }
}

fn either_side(customer_id: Uuid) -> Condition {
    Condition::any()
        .add(cr::Column::FromCustomerId.eq(customer_id))
        .add(cr::Column::ToCustomerId.eq(customer_id))
}

/// Stores a relation; a pair of accounts already related by the type is ALREADY_EXISTS.
pub async fn insert_relation(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    r: &CustomerRelation,
) -> Result<(), ApiError> {
    let (low, high) = r.pair();
    cr::Entity::insert(cr::ActiveModel {
        id: Set(r.id),
        partner_id: Set(partner_id),
        relation_type_id: Set(r.relation_type_id),
        from_customer_id: Set(r.from_customer_id),
        to_customer_id: Set(r.to_customer_id),
        pair_low: Set(low),
        pair_high: Set(high),
        note: Set(r.note.clone()),
        created_at: Set(r.created_at),
    })
    .exec_without_returning(conn)
    .await
    .map_err(|e| taken(e, "relation between these customers of this type"))?;
    Ok(())
}

pub async fn relation(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<Option<CustomerRelation>, ApiError> {
    Ok(cr::Entity::find_by_id(id)
        .filter(cr::Column::PartnerId.eq(partner_id))
        .one(conn)
        .await?
        .map(relation_from))
}

/// Whether the two accounts are already related by the type (either direction).
pub async fn relation_exists(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    relation_type_id: Uuid,
    a: Uuid,
    b: Uuid,
) -> Result<bool, ApiError> {
    let (low, high) = ordered(a, b);
    Ok(cr::Entity::find()
        .filter(cr::Column::PartnerId.eq(partner_id))
        .filter(cr::Column::RelationTypeId.eq(relation_type_id))
        .filter(cr::Column::PairLow.eq(low))
        .filter(cr::Column::PairHigh.eq(high))
        .count(conn)
        .await?
        > 0)
}

/// How many relations of the type the account has (either side).
pub async fn count_relations(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    relation_type_id: Uuid,
    customer_id: Uuid,
) -> Result<u64, ApiError> {
    Ok(cr::Entity::find()
        .filter(cr::Column::PartnerId.eq(partner_id))
        .filter(cr::Column::RelationTypeId.eq(relation_type_id))
        .filter(either_side(customer_id))
        .count(conn)
        .await?)
}

/// A page of the account's relations (either side), newest first, before the id `before`.
pub async fn page_of_relations(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    relation_type_id: Option<Uuid>,
    before: Option<Uuid>,
    limit: u64,
) -> Result<Vec<CustomerRelation>, ApiError> {
    let mut q = cr::Entity::find()
        .filter(cr::Column::PartnerId.eq(partner_id))
        .filter(either_side(customer_id));
    if let Some(t) = relation_type_id {
        q = q.filter(cr::Column::RelationTypeId.eq(t));
    }
    if let Some(before) = before {
        q = q.filter(cr::Column::Id.lt(before));
    }
    Ok(q.order_by_desc(cr::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(relation_from)
        .collect())
}

/// Every relation of the account (either side), oldest first: for the GDPR export.
pub async fn relations_of(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<Vec<CustomerRelation>, ApiError> {
    Ok(cr::Entity::find()
        .filter(cr::Column::PartnerId.eq(partner_id))
        .filter(either_side(customer_id))
        .order_by_asc(cr::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .map(relation_from)
        .collect())
}

pub async fn delete_relation(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<(), ApiError> {
    cr::Entity::delete_many()
        .filter(cr::Column::PartnerId.eq(partner_id))
        .filter(cr::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Deletes every relation of the account (for erasure) and returns them, so the caller can
/// publish `CustomerRelationChanged { deleted: true }` for each.
pub async fn delete_relations(
    txn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<Vec<CustomerRelation>, ApiError> {
    let gone = relations_of(txn, partner_id, customer_id).await?;
    cr::Entity::delete_many()
        .filter(cr::Column::PartnerId.eq(partner_id))
        .filter(either_side(customer_id))
        .exec(txn)
        .await?;
    Ok(gone)
}

/// Re-points the relations of `from` to `to` (a merge of `from` into `to`), dropping those
/// that would relate `to` to itself or repeat a relation `to` already has. Returns what moved
/// and what was dropped, so the caller can publish the changes.
pub async fn move_relations(
    txn: &impl ConnectionTrait,
    partner_id: Uuid,
    from: Uuid,
    to: Uuid,
) -> Result<RelationMove, ApiError> {
    if from == to {
        return Ok(RelationMove::default());
    }
    let of_from = relations_of(txn, partner_id, from).await?;
    let of_to = relations_of(txn, partner_id, to).await?;
    let plan = plan_relation_move(&of_from, &of_to, from, to);
    if !plan.dropped.is_empty() {
        cr::Entity::delete_many()
            .filter(cr::Column::PartnerId.eq(partner_id))
            .filter(cr::Column::Id.is_in(plan.dropped.iter().map(|r| r.id)))
            .exec(txn)
            .await?;
    }
    for r in &plan.moved {
        let (low, high) = r.pair();
        cr::Entity::update_many()
            .col_expr(cr::Column::FromCustomerId, Expr::value(r.from_customer_id))
            .col_expr(cr::Column::ToCustomerId, Expr::value(r.to_customer_id))
            .col_expr(cr::Column::PairLow, Expr::value(low))
            .col_expr(cr::Column::PairHigh, Expr::value(high))
            .filter(cr::Column::PartnerId.eq(partner_id))
            .filter(cr::Column::Id.eq(r.id))
            .exec(txn)
            .await?;
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use sea_orm::{Database, DatabaseConnection};
    use sea_orm_migration::MigratorTrait;

    /// A migrated SQLite database in a file removed when the guard drops.
    struct TestDb {
        db: DatabaseConnection,
        path: std::path::PathBuf,
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    async fn test_db() -> TestDb {
        let path =
            std::env::temp_dir().join(format!("identity-customer-data-{}.db", Uuid::now_v7()));
        let db = Database::connect(format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .expect("sqlite");
        crate::migration::Migrator::up(&db, None)
            .await
            .expect("migrate");
        TestDb { db, path }
    }

    async fn relate(
        db: &DatabaseConnection,
        p: Uuid,
        t: Uuid,
        a: Uuid,
        b: Uuid,
    ) -> CustomerRelation {
        let r = CustomerRelation {
            id: Uuid::now_v7(),
            relation_type_id: t,
            from_customer_id: a,
            to_customer_id: b,
            note: String::new(),
            created_at: Utc::now(),
        };
        insert_relation(db, p, &r).await.expect("insert");
        r
    }

    #[tokio::test]
    async fn a_pair_is_related_once_per_type_in_either_direction() {
        let t = test_db().await;
        let (p, ty, a, b) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        relate(&t.db, p, ty, a, b).await;
        let again = CustomerRelation {
            id: Uuid::now_v7(),
            from_customer_id: b,
            to_customer_id: a,
            relation_type_id: ty,
            note: String::new(),
            created_at: Utc::now(),
        };
        assert!(matches!(
            insert_relation(&t.db, p, &again).await,
            Err(ApiError::AlreadyExists(_))
        ));
        assert!(relation_exists(&t.db, p, ty, b, a).await.unwrap());
        assert!(
            !relation_exists(&t.db, Uuid::now_v7(), ty, b, a)
                .await
                .unwrap(),
            "another partner"
        );
    }

    #[tokio::test]
    async fn moving_relations_repoints_them_and_drops_self_and_duplicates() {
        let t = test_db().await;
        let (p, ty) = (Uuid::now_v7(), Uuid::now_v7());
        let (from, to, x, y) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let between = relate(&t.db, p, ty, from, to).await;
        let dup = relate(&t.db, p, ty, x, from).await;
        relate(&t.db, p, ty, to, x).await;
        let fresh = relate(&t.db, p, ty, y, from).await;
        let plan = move_relations(&t.db, p, from, to).await.unwrap();
        let mut dropped: Vec<Uuid> = plan.dropped.iter().map(|r| r.id).collect();
        dropped.sort();
        assert_eq!(dropped, vec![between.id, dup.id]);
        assert!(relations_of(&t.db, p, from).await.unwrap().is_empty());
        let of_to = relations_of(&t.db, p, to).await.unwrap();
        assert_eq!(of_to.len(), 2);
        let moved = of_to.iter().find(|r| r.id == fresh.id).expect("moved");
        assert_eq!((moved.from_customer_id, moved.to_customer_id), (y, to));
        // The moved row keeps the pair index right: relating y and to again is a duplicate.
        assert!(relation_exists(&t.db, p, ty, to, y).await.unwrap());
    }

    #[tokio::test]
    async fn deleting_relations_of_a_customer_leaves_others_alone() {
        let t = test_db().await;
        let (p, ty) = (Uuid::now_v7(), Uuid::now_v7());
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        relate(&t.db, p, ty, a, b).await;
        relate(&t.db, p, ty, c, a).await;
        let keep = relate(&t.db, p, ty, b, c).await;
        let gone = delete_relations(&t.db, p, a).await.unwrap();
        assert_eq!(gone.len(), 2);
        assert!(relations_of(&t.db, p, a).await.unwrap().is_empty());
        assert_eq!(relations_of(&t.db, p, b).await.unwrap(), vec![keep]);
        assert!(
            relations_of(&t.db, Uuid::now_v7(), b)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

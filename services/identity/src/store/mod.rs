//! Persistence of the identity service. Every query is scoped by partner.
pub mod accounts;
pub mod activity;
pub mod business_units;
pub mod cards;
pub mod consents;
pub mod customer_data;
pub mod entities;
pub mod import;

use async_trait::async_trait;
use loyalty_platform::{ApiError, Principal, Role, auth::KeyStore, db::is_unique_violation};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::Expr,
};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::domain::{
    ApiKey, Customer, CustomerProfile, CustomerState, Gender, Identifier, IdentifierKind,
    IdentifierState, IdentifierValue, Partner,
};
use entities::{api_keys, customers, identifiers, partners};

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Admin => "admin",
        Role::Pos => "pos",
        Role::Marketing => "marketing",
        Role::Support => "support",
        Role::Service => "service",
    }
}

fn role_from_name(s: &str) -> Option<Role> {
    Some(match s {
        "admin" => Role::Admin,
        "pos" => Role::Pos,
        "marketing" => Role::Marketing,
        "support" => Role::Support,
        "service" => Role::Service,
        _ => return None,
    })
}

fn partner_from(m: partners::Model) -> Partner {
    Partner {
        id: m.id,
        display_name: m.display_name,
        default_currency_code: m.default_currency_code,
        created_at: m.created_at,
    }
}

fn api_key_from(m: api_keys::Model) -> ApiKey {
    ApiKey {
        id: m.id,
        partner_id: m.partner_id,
        display_name: m.display_name,
        roles: m.roles.split(',').filter_map(role_from_name).collect(),
        prefix: m.prefix,
        created_at: m.created_at,
        revoked_at: m.revoked_at,
    }
}

pub(crate) fn customer_from(m: customers::Model) -> Customer {
    Customer {
        id: m.id,
        partner_id: m.partner_id,
        profile: CustomerProfile {
            first_name: m.first_name,
            last_name: m.last_name,
            email: m.email,
            phone: m.phone,
            birth_date: m.birth_date,
            gender: Some(Gender::parse_str(&m.gender)),
            language_code: m.language_code,
            city: m.city,
            country_code: m.country_code,
            properties: serde_json::from_value(m.properties).unwrap_or_default(),
            street: m.street,
            postal_code: m.postal_code,
            home_business_unit_id: m.home_business_unit_id,
            contact_source_ids: serde_json::from_value(m.contact_source_ids).unwrap_or_default(),
            interest_ids: serde_json::from_value(m.interest_ids).unwrap_or_default(),
        },
        state: CustomerState::parse_str(&m.state),
        created_at: m.created_at,
        updated_at: m.updated_at,
        block_reason: m.block_reason,
        blocked_at: m.blocked_at,
        erased_at: m.erased_at,
        merged_into: m.merged_into,
        referrer: m.referrer_customer_id,
    }
}

/// Every column of an identifier.
pub fn identifier_model(partner_id: Uuid, i: &Identifier) -> identifiers::ActiveModel {
    identifiers::ActiveModel {
        id: Set(i.id),
        partner_id: Set(partner_id),
        customer_id: Set(i.customer_id),
        kind: Set(i.value.kind.as_str().to_owned()),
        value: Set(i.value.value.clone()),
        state: Set(i.state.as_str().to_owned()),
        block_reason: Set(i.block_reason.clone()),
        created_at: Set(i.created_at),
        updated_at: Set(i.updated_at),
    }
}

/// Every column of a customer, for inserts and whole-row updates.
pub fn customer_model(c: &Customer) -> Result<customers::ActiveModel, ApiError> {
    let p = &c.profile;
    let json = |v: serde_json::Result<serde_json::Value>| v.map_err(anyhow::Error::from);
    Ok(customers::ActiveModel {
        id: Set(c.id),
        partner_id: Set(c.partner_id),
        first_name: Set(p.first_name.clone()),
        last_name: Set(p.last_name.clone()),
        email: Set(p.email.clone()),
        phone: Set(p.phone.clone()),
        birth_date: Set(p.birth_date.clone()),
        gender: Set(p.gender.unwrap_or(Gender::Unspecified).as_str().to_owned()),
        language_code: Set(p.language_code.clone()),
        city: Set(p.city.clone()),
        country_code: Set(p.country_code.clone()),
        properties: Set(json(serde_json::to_value(&p.properties))?),
        state: Set(c.state.as_str().to_owned()),
        created_at: Set(c.created_at),
        updated_at: Set(c.updated_at),
        street: Set(p.street.clone()),
        postal_code: Set(p.postal_code.clone()),
        home_business_unit_id: Set(p.home_business_unit_id),
        contact_source_ids: Set(json(serde_json::to_value(&p.contact_source_ids))?),
        interest_ids: Set(json(serde_json::to_value(&p.interest_ids))?),
        block_reason: Set(c.block_reason.clone()),
        blocked_at: Set(c.blocked_at),
        erased_at: Set(c.erased_at),
        merged_into: Set(c.merged_into),
        referrer_customer_id: Set(c.referrer),
    })
}

pub(crate) fn identifier_from(m: identifiers::Model) -> Option<Identifier> {
    Some(Identifier {
        id: m.id,
        customer_id: m.customer_id,
        value: IdentifierValue {
            kind: IdentifierKind::parse_str(&m.kind)?,
            value: m.value,
        },
        state: IdentifierState::parse_str(&m.state),
        block_reason: m.block_reason,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

impl Store {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    pub async fn insert_partner(
        &self,
        conn: &impl ConnectionTrait,
        partner: &Partner,
    ) -> Result<(), ApiError> {
        partners::Entity::insert(partners::ActiveModel {
            id: Set(partner.id),
            display_name: Set(partner.display_name.clone()),
            default_currency_code: Set(partner.default_currency_code.clone()),
            created_at: Set(partner.created_at),
        })
        .exec_without_returning(conn)
        .await?;
        Ok(())
    }

    pub async fn partner(&self, id: Uuid) -> Result<Option<Partner>, ApiError> {
        Ok(partners::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .map(partner_from))
    }

    pub async fn insert_api_key(
        &self,
        conn: &impl ConnectionTrait,
        key: &ApiKey,
        key_hash: &str,
    ) -> Result<(), ApiError> {
        api_keys::Entity::insert(api_keys::ActiveModel {
            id: Set(key.id),
            partner_id: Set(key.partner_id),
            display_name: Set(key.display_name.clone()),
            roles: Set(key
                .roles
                .iter()
                .map(|r| role_name(*r))
                .collect::<Vec<_>>()
                .join(",")),
            prefix: Set(key.prefix.clone()),
            key_hash: Set(key_hash.to_owned()),
            created_at: Set(key.created_at),
            revoked_at: Set(None),
        })
        .exec_without_returning(conn)
        .await?;
        Ok(())
    }

    /// A page of a partner's keys by id.
    pub async fn api_keys(
        &self,
        partner_id: Uuid,
        include_revoked: bool,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<ApiKey>, ApiError> {
        let mut q = api_keys::Entity::find().filter(api_keys::Column::PartnerId.eq(partner_id));
        if !include_revoked {
            q = q.filter(api_keys::Column::RevokedAt.is_null());
        }
        if let Some(after) = after {
            q = q.filter(api_keys::Column::Id.gt(after));
        }
        Ok(q.order_by_asc(api_keys::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(api_key_from)
            .collect())
    }

    pub async fn api_key(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Option<Uuid>,
        id: Uuid,
    ) -> Result<Option<ApiKey>, ApiError> {
        let mut q = api_keys::Entity::find_by_id(id);
        if let Some(p) = partner_id {
            q = q.filter(api_keys::Column::PartnerId.eq(p));
        }
        Ok(q.one(conn).await?.map(api_key_from))
    }

    /// Active admin keys of a partner other than `except`.
    pub async fn other_active_admin_keys(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        except: Uuid,
    ) -> Result<usize, ApiError> {
        Ok(api_keys::Entity::find()
            .filter(api_keys::Column::PartnerId.eq(partner_id))
            .filter(api_keys::Column::RevokedAt.is_null())
            .filter(api_keys::Column::Id.ne(except))
            .all(conn)
            .await?
            .into_iter()
            .map(api_key_from)
            .filter(|k| k.roles.contains(&Role::Admin))
            .count())
    }

    pub async fn revoke_api_key(
        &self,
        conn: &impl ConnectionTrait,
        id: Uuid,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), ApiError> {
        api_keys::Entity::update_many()
            .col_expr(api_keys::Column::RevokedAt, Expr::value(at))
            .filter(api_keys::Column::Id.eq(id))
            .filter(api_keys::Column::RevokedAt.is_null())
            .exec(conn)
            .await?;
        Ok(())
    }

    pub async fn insert_customer(
        &self,
        conn: &impl ConnectionTrait,
        c: &Customer,
    ) -> Result<(), ApiError> {
        customers::Entity::insert(customer_model(c)?)
            .exec_without_returning(conn)
            .await?;
        Ok(())
    }

    /// Writes a customer's whole row if it was not changed since `expected_updated_at`;
    /// `false` if it was.
    pub async fn update_customer(
        &self,
        conn: &impl ConnectionTrait,
        c: &Customer,
        expected_updated_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, ApiError> {
        let mut row = customer_model(c)?;
        row.id = sea_orm::ActiveValue::NotSet;
        row.partner_id = sea_orm::ActiveValue::NotSet;
        row.created_at = sea_orm::ActiveValue::NotSet;
        let res = customers::Entity::update_many()
            .set(row)
            .filter(customers::Column::PartnerId.eq(c.partner_id))
            .filter(customers::Column::Id.eq(c.id))
            .filter(customers::Column::UpdatedAt.eq(expected_updated_at))
            .exec(conn)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// A customer of `partner_id`; another partner's customer is `None`.
    pub async fn customer(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        id: Uuid,
    ) -> Result<Option<Customer>, ApiError> {
        Ok(customers::Entity::find_by_id(id)
            .filter(customers::Column::PartnerId.eq(partner_id))
            .one(conn)
            .await?
            .map(customer_from))
    }

    /// Inserts an identifier; ALREADY_EXISTS if the partner already has that value.
    pub async fn insert_identifier(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        i: &Identifier,
    ) -> Result<(), ApiError> {
        let res = identifiers::Entity::insert(identifier_model(partner_id, i))
            .exec_without_returning(conn)
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(ApiError::AlreadyExists(format!(
                "{} identifier {:?}",
                i.value.kind.as_str(),
                i.value.value
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn identifiers_of(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        customer_id: Uuid,
    ) -> Result<Vec<Identifier>, ApiError> {
        Ok(identifiers::Entity::find()
            .filter(identifiers::Column::PartnerId.eq(partner_id))
            .filter(identifiers::Column::CustomerId.eq(customer_id))
            .filter(identifiers::Column::State.ne(IdentifierState::Removed.as_str()))
            .order_by_asc(identifiers::Column::CreatedAt)
            .all(conn)
            .await?
            .into_iter()
            .filter_map(identifier_from)
            .collect())
    }

    /// The assigned (not removed) identifier with this value.
    pub async fn find_identifier(
        &self,
        partner_id: Uuid,
        value: &IdentifierValue,
    ) -> Result<Option<Identifier>, ApiError> {
        Ok(identifiers::Entity::find()
            .filter(identifiers::Column::PartnerId.eq(partner_id))
            .filter(identifiers::Column::Kind.eq(value.kind.as_str()))
            .filter(identifiers::Column::Value.eq(value.value.as_str()))
            .filter(identifiers::Column::State.ne(IdentifierState::Removed.as_str()))
            .one(&self.db)
            .await?
            .and_then(identifier_from))
    }

    /// An identifier of `partner_id` by id; another partner's is `None`.
    pub async fn identifier(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        id: Uuid,
    ) -> Result<Option<Identifier>, ApiError> {
        Ok(identifiers::Entity::find_by_id(id)
            .filter(identifiers::Column::PartnerId.eq(partner_id))
            .one(conn)
            .await?
            .and_then(identifier_from))
    }

    /// Writes an identifier's new state; ALREADY_EXISTS-style conflicts surface as the
    /// `IDENTIFIER_TAKEN` precondition (its value was assigned elsewhere meanwhile).
    pub async fn update_identifier(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        i: &Identifier,
    ) -> Result<(), ApiError> {
        let res = identifiers::Entity::update_many()
            .col_expr(identifiers::Column::State, Expr::value(i.state.as_str()))
            .col_expr(
                identifiers::Column::BlockReason,
                Expr::value(i.block_reason.clone()),
            )
            .col_expr(identifiers::Column::UpdatedAt, Expr::value(i.updated_at))
            .filter(identifiers::Column::PartnerId.eq(partner_id))
            .filter(identifiers::Column::Id.eq(i.id))
            .exec(conn)
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(ApiError::precondition(
                "IDENTIFIER_TAKEN",
                "the identifier's value was assigned to another customer meanwhile",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// A page of a customer's identifiers in creation order.
    pub async fn list_identifiers(
        &self,
        partner_id: Uuid,
        customer_id: Uuid,
        include_removed: bool,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<Identifier>, ApiError> {
        let mut q = identifiers::Entity::find()
            .filter(identifiers::Column::PartnerId.eq(partner_id))
            .filter(identifiers::Column::CustomerId.eq(customer_id));
        if !include_removed {
            q = q.filter(identifiers::Column::State.ne(IdentifierState::Removed.as_str()));
        }
        if let Some(after) = after {
            q = q.filter(identifiers::Column::Id.gt(after));
        }
        Ok(q.order_by_asc(identifiers::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .filter_map(identifier_from)
            .collect())
    }
}

#[async_trait]
impl KeyStore for Store {
    async fn lookup(&self, secret: &SecretString) -> Result<Option<Principal>, ApiError> {
        let hash = loyalty_platform::auth::hash_key(secret.expose_secret());
        let found = api_keys::Entity::find()
            .filter(api_keys::Column::KeyHash.eq(hash))
            .filter(api_keys::Column::RevokedAt.is_null())
            .one(&self.db)
            .await?;
        Ok(found.map(|m| {
            let key = api_key_from(m);
            Principal {
                partner_id: Some(key.partner_id),
                api_key_id: Some(key.id),
                roles: key.roles,
                platform_admin: false,
                credential: secret.clone(),
            }
        }))
    }
}

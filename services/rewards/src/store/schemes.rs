//! Reward schemes and their memberships, reward offers, commercial terms, and each customer's
//! offer progress and awards, scoped by partner.
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use loyalty_platform::{ApiError, db::advisory_xact_lock, events};
use loyalty_proto::events::v1 as ev;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, OnConflict},
};
use uuid::Uuid;

use crate::domain::{
    Validity,
    schemes::{
        Achieved, Activity, Advance, AwardValue, Membership, Offer, OfferState, Progress, Scheme,
        SignUpOption, Standing, Terms, TermsSpec, advance, is_member, resolve_awards,
    },
};

pub mod reward_schemes {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "reward_schemes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub code: String,
        pub display_name: String,
        pub description: String,
        pub sign_up_option: String,
        pub sign_up_codes: Json,
        pub email_domains: Json,
        /// JSON array of segment UUIDs (CRITERIA schemes; `[]` otherwise).
        pub sign_up_segment_ids: Json,
        pub max_members: i64,
        pub member_count: i64,
        pub active: bool,
        pub revision: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod scheme_memberships {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "scheme_memberships")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub scheme_id: Uuid,
        pub customer_id: Uuid,
        pub join_time: DateTimeUtc,
        pub leave_time: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod reward_offers {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "reward_offers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub scheme_id: Option<Uuid>,
        pub state: String,
        pub goal_group: String,
        pub merchant_business_unit_id: Option<Uuid>,
        pub commercial_terms_id: Option<Uuid>,
        pub priority: i32,
        pub spec: Json,
        pub revision: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod commercial_terms {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "commercial_terms")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub merchant_business_unit_id: Uuid,
        pub valid_from: DateTimeUtc,
        pub valid_until: Option<DateTimeUtc>,
        pub spec: Json,
        pub revision: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod offer_progress {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "offer_progress")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub partner_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub offer_id: Uuid,
        pub state: Json,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod offer_activities {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "offer_activities")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub partner_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub activity_id: String,
        pub applied_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod offer_awards {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "offer_awards")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Uuid,
        pub offer_id: Uuid,
        pub customer_id: Uuid,
        pub sequence: i32,
        pub amount_minor: i64,
        pub currency_code: String,
        pub points: i64,
        pub points_type_id: String,
        pub auto_redeem: bool,
        pub purchase_id: String,
        pub business_unit_id: Option<Uuid>,
        pub expire_at: Option<DateTimeUtc>,
        pub awarded_at: DateTimeUtc,
        pub reward_id: Option<Uuid>,
        pub voucher_id: Option<Uuid>,
        pub voucher_code: String,
        pub voucher_refusal: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod offer_referrals {
    use sea_orm::entity::prelude::*;

    /// Who referred a customer, and the referred customer's first purchase once seen.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "offer_referrals")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub partner_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub referred_customer_id: Uuid,
        pub referrer_customer_id: Uuid,
        pub referred_at: DateTimeUtc,
        pub first_purchase_id: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

fn json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::Internal(e.into()))
}

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::Internal(e.into()))
}

fn corrupt(what: &str, value: &str) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("stored {what} {value:?} is not known"))
}

/// Serialises scheme, offer and terms writes of one partner on PostgreSQL (member counts, offer
/// limits and term overlaps are checked by reading; SQLite serialises write transactions).
pub async fn lock(conn: &impl ConnectionTrait, partner_id: Uuid) -> Result<(), ApiError> {
    Ok(advisory_xact_lock(conn, &format!("rewards-schemes:{partner_id}")).await?)
}

/// Serialises the offer progress of one customer (events of a customer may be applied by
/// several replicas at once).
pub async fn lock_customer(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<(), ApiError> {
    Ok(advisory_xact_lock(conn, &format!("offer-progress:{partner_id}:{customer_id}")).await?)
}

// ---- Schemes ----

fn scheme_from(m: reward_schemes::Model) -> Result<Scheme, ApiError> {
    Ok(Scheme {
        id: m.id,
        sign_up_option: SignUpOption::parse_str(&m.sign_up_option)
            .ok_or_else(|| corrupt("sign-up option", &m.sign_up_option))?,
        code: m.code,
        display_name: m.display_name,
        description: m.description,
        sign_up_codes: from_json(m.sign_up_codes)?,
        email_domains: from_json(m.email_domains)?,
        sign_up_segment_ids: from_json(m.sign_up_segment_ids)?,
        max_members: m.max_members,
        member_count: m.member_count,
        active: m.active,
        revision: m.revision,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn scheme_model(partner_id: Uuid, s: &Scheme) -> Result<reward_schemes::ActiveModel, ApiError> {
    Ok(reward_schemes::ActiveModel {
        id: Set(s.id),
        partner_id: Set(partner_id),
        code: Set(s.code.clone()),
        display_name: Set(s.display_name.clone()),
        description: Set(s.description.clone()),
        sign_up_option: Set(s.sign_up_option.as_str().to_owned()),
        sign_up_codes: Set(json(&s.sign_up_codes)?),
        email_domains: Set(json(&s.email_domains)?),
        sign_up_segment_ids: Set(json(&s.sign_up_segment_ids)?),
        max_members: Set(s.max_members),
        member_count: Set(s.member_count),
        active: Set(s.active),
        revision: Set(s.revision),
        created_at: Set(s.created_at),
        updated_at: Set(s.updated_at),
    })
}

/// A scheme by UUID or code.
pub async fn find_scheme(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    key: &str,
) -> Result<Option<Scheme>, ApiError> {
    let by = match Uuid::parse_str(key) {
        Ok(id) => reward_schemes::Column::Id.eq(id),
        Err(_) => reward_schemes::Column::Code.eq(key),
    };
    reward_schemes::Entity::find()
        .filter(reward_schemes::Column::PartnerId.eq(partner_id))
        .filter(by)
        .one(conn)
        .await?
        .map(scheme_from)
        .transpose()
}

pub async fn insert_scheme(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    s: &Scheme,
) -> Result<(), ApiError> {
    reward_schemes::Entity::insert(scheme_model(partner_id, s)?)
        .exec_without_returning(conn)
        .await
        .map_err(|e| {
            loyalty_platform::db::taken(e, || format!("reward scheme with code {:?}", s.code))
        })?;
    Ok(())
}

pub async fn update_scheme(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    s: &Scheme,
) -> Result<(), ApiError> {
    reward_schemes::Entity::update(scheme_model(partner_id, s)?)
        .filter(reward_schemes::Column::PartnerId.eq(partner_id))
        .exec(conn)
        .await?;
    Ok(())
}

pub async fn scheme_has_offers(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    scheme_id: Uuid,
) -> Result<bool, ApiError> {
    Ok(reward_offers::Entity::find()
        .filter(reward_offers::Column::PartnerId.eq(partner_id))
        .filter(reward_offers::Column::SchemeId.eq(scheme_id))
        .count(conn)
        .await?
        > 0)
}

/// Deletes a scheme; its memberships end (they stay listed as left) and SchemeLeft is
/// published for each.
pub async fn delete_scheme(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    scheme: &Scheme,
    at: DateTime<Utc>,
) -> Result<(), ApiError> {
    let current = scheme_memberships::Entity::find()
        .filter(scheme_memberships::Column::PartnerId.eq(partner_id))
        .filter(scheme_memberships::Column::SchemeId.eq(scheme.id))
        .filter(scheme_memberships::Column::LeaveTime.is_null())
        .all(conn)
        .await?;
    scheme_memberships::Entity::update_many()
        .col_expr(scheme_memberships::Column::LeaveTime, Expr::value(at))
        .filter(scheme_memberships::Column::PartnerId.eq(partner_id))
        .filter(scheme_memberships::Column::SchemeId.eq(scheme.id))
        .filter(scheme_memberships::Column::LeaveTime.is_null())
        .exec(conn)
        .await?;
    let left: Vec<ev::SchemeLeft> = current
        .iter()
        .map(|m| ev::SchemeLeft {
            scheme_id: scheme.id.to_string(),
            customer_id: m.customer_id.to_string(),
        })
        .collect();
    events::enqueue_all(conn, Some(partner_id), &left).await?;
    reward_schemes::Entity::delete_many()
        .filter(reward_schemes::Column::PartnerId.eq(partner_id))
        .filter(reward_schemes::Column::Id.eq(scheme.id))
        .exec(conn)
        .await?;
    Ok(())
}

/// A page of schemes by code, after `after`.
pub async fn list_schemes(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    include_inactive: bool,
    after: Option<String>,
    limit: u64,
) -> Result<Vec<Scheme>, ApiError> {
    let mut q =
        reward_schemes::Entity::find().filter(reward_schemes::Column::PartnerId.eq(partner_id));
    if !include_inactive {
        q = q.filter(reward_schemes::Column::Active.eq(true));
    }
    if let Some(after) = after {
        q = q.filter(reward_schemes::Column::Code.gt(after));
    }
    q.order_by_asc(reward_schemes::Column::Code)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(scheme_from)
        .collect()
}

// ---- Memberships ----

fn membership_from(m: scheme_memberships::Model) -> Membership {
    Membership {
        scheme_id: m.scheme_id,
        customer_id: m.customer_id,
        join_time: m.join_time,
        leave_time: m.leave_time,
    }
}

/// The customer's latest membership row of a scheme, if any.
async fn latest_membership(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    scheme_id: Uuid,
    customer_id: Uuid,
) -> Result<Option<scheme_memberships::Model>, ApiError> {
    Ok(scheme_memberships::Entity::find()
        .filter(scheme_memberships::Column::PartnerId.eq(partner_id))
        .filter(scheme_memberships::Column::SchemeId.eq(scheme_id))
        .filter(scheme_memberships::Column::CustomerId.eq(customer_id))
        .order_by_desc(scheme_memberships::Column::Id)
        .one(conn)
        .await?)
}

pub async fn standing(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    scheme_id: Uuid,
    customer_id: Uuid,
) -> Result<Standing, ApiError> {
    Ok(
        match latest_membership(conn, partner_id, scheme_id, customer_id).await? {
            None => Standing::NeverJoined,
            Some(m) if m.leave_time.is_none() => Standing::Member,
            Some(_) => Standing::Left,
        },
    )
}

/// Records a sign-up (the caller checked the rules under [`lock`]) and publishes SchemeJoined.
pub async fn join(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    scheme: &mut Scheme,
    customer_id: Uuid,
    at: DateTime<Utc>,
) -> Result<Membership, ApiError> {
    scheme_memberships::Entity::insert(scheme_memberships::ActiveModel {
        id: Set(Uuid::now_v7()),
        partner_id: Set(partner_id),
        scheme_id: Set(scheme.id),
        customer_id: Set(customer_id),
        join_time: Set(at),
        leave_time: Set(None),
    })
    .exec_without_returning(conn)
    .await
    .map_err(|e| {
        loyalty_platform::db::taken(e, || {
            format!("membership of customer {customer_id} in {:?}", scheme.code)
        })
    })?;
    scheme.member_count += 1;
    set_member_count(conn, partner_id, scheme).await?;
    events::enqueue(
        conn,
        Some(partner_id),
        &ev::SchemeJoined {
            scheme_id: scheme.id.to_string(),
            customer_id: customer_id.to_string(),
        },
    )
    .await?;
    Ok(Membership {
        scheme_id: scheme.id,
        customer_id,
        join_time: at,
        leave_time: None,
    })
}

async fn set_member_count(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    scheme: &Scheme,
) -> Result<(), ApiError> {
    reward_schemes::Entity::update_many()
        .col_expr(
            reward_schemes::Column::MemberCount,
            Expr::value(scheme.member_count),
        )
        .filter(reward_schemes::Column::PartnerId.eq(partner_id))
        .filter(reward_schemes::Column::Id.eq(scheme.id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Ends a customer's membership and publishes SchemeLeft. An AUTO scheme's member who never
/// signed up leaves with a row that records it (joined when the scheme was created). `None`
/// when the customer is not a member.
pub async fn leave(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    scheme: &mut Scheme,
    customer_id: Uuid,
    at: DateTime<Utc>,
) -> Result<Option<Membership>, ApiError> {
    let latest = latest_membership(conn, partner_id, scheme.id, customer_id).await?;
    let membership = match latest {
        Some(m) if m.leave_time.is_none() => {
            scheme_memberships::Entity::update_many()
                .col_expr(scheme_memberships::Column::LeaveTime, Expr::value(at))
                .filter(scheme_memberships::Column::Id.eq(m.id))
                .exec(conn)
                .await?;
            scheme.member_count = (scheme.member_count - 1).max(0);
            set_member_count(conn, partner_id, scheme).await?;
            Membership {
                leave_time: Some(at),
                ..membership_from(m)
            }
        }
        None if scheme.sign_up_option == SignUpOption::Auto => {
            let join_time = scheme.created_at.min(at);
            scheme_memberships::Entity::insert(scheme_memberships::ActiveModel {
                id: Set(Uuid::now_v7()),
                partner_id: Set(partner_id),
                scheme_id: Set(scheme.id),
                customer_id: Set(customer_id),
                join_time: Set(join_time),
                leave_time: Set(Some(at)),
            })
            .exec_without_returning(conn)
            .await?;
            Membership {
                scheme_id: scheme.id,
                customer_id,
                join_time,
                leave_time: Some(at),
            }
        }
        _ => return Ok(None),
    };
    events::enqueue(
        conn,
        Some(partner_id),
        &ev::SchemeLeft {
            scheme_id: scheme.id.to_string(),
            customer_id: customer_id.to_string(),
        },
    )
    .await?;
    Ok(Some(membership))
}

/// Filter of [`list_memberships`]; at least one of the ids is set.
pub struct MembershipFilter {
    pub scheme_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub include_left: bool,
}

/// A page of membership rows, newest first, before `after` (a row id).
pub async fn list_memberships(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    f: &MembershipFilter,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<(Uuid, Membership)>, ApiError> {
    let mut q = scheme_memberships::Entity::find()
        .filter(scheme_memberships::Column::PartnerId.eq(partner_id));
    if let Some(s) = f.scheme_id {
        q = q.filter(scheme_memberships::Column::SchemeId.eq(s));
    }
    if let Some(c) = f.customer_id {
        q = q.filter(scheme_memberships::Column::CustomerId.eq(c));
    }
    if !f.include_left {
        q = q.filter(scheme_memberships::Column::LeaveTime.is_null());
    }
    if let Some(after) = after {
        q = q.filter(scheme_memberships::Column::Id.lt(after));
    }
    Ok(q.order_by_desc(scheme_memberships::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(|m| (m.id, membership_from(m)))
        .collect())
}

// ---- Offers ----

fn offer_from(m: reward_offers::Model) -> Result<Offer, ApiError> {
    Ok(Offer {
        id: m.id,
        spec: from_json(m.spec)?,
        revision: m.revision,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn offer_model(partner_id: Uuid, o: &Offer) -> Result<reward_offers::ActiveModel, ApiError> {
    Ok(reward_offers::ActiveModel {
        id: Set(o.id),
        partner_id: Set(partner_id),
        scheme_id: Set(o.spec.scheme_id),
        state: Set(o.spec.state.as_str().to_owned()),
        goal_group: Set(o.spec.goal_group.as_str().to_owned()),
        merchant_business_unit_id: Set(o.spec.merchant_business_unit_id),
        commercial_terms_id: Set(o.spec.commercial_terms_id),
        priority: Set(o.spec.priority),
        spec: Set(json(&o.spec)?),
        revision: Set(o.revision),
        created_at: Set(o.created_at),
        updated_at: Set(o.updated_at),
    })
}

pub async fn find_offer(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<Option<Offer>, ApiError> {
    reward_offers::Entity::find()
        .filter(reward_offers::Column::PartnerId.eq(partner_id))
        .filter(reward_offers::Column::Id.eq(id))
        .one(conn)
        .await?
        .map(offer_from)
        .transpose()
}

pub async fn insert_offer(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    o: &Offer,
) -> Result<(), ApiError> {
    reward_offers::Entity::insert(offer_model(partner_id, o)?)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

pub async fn update_offer(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    o: &Offer,
) -> Result<(), ApiError> {
    reward_offers::Entity::update(offer_model(partner_id, o)?)
        .filter(reward_offers::Column::PartnerId.eq(partner_id))
        .exec(conn)
        .await?;
    Ok(())
}

pub async fn offer_has_awards(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    offer_id: Uuid,
) -> Result<bool, ApiError> {
    Ok(offer_awards::Entity::find()
        .filter(offer_awards::Column::PartnerId.eq(partner_id))
        .filter(offer_awards::Column::OfferId.eq(offer_id))
        .count(conn)
        .await?
        > 0)
}

/// Deletes an offer (the caller checked it never awarded) with its progress.
pub async fn delete_offer(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    offer_id: Uuid,
) -> Result<(), ApiError> {
    offer_progress::Entity::delete_many()
        .filter(offer_progress::Column::PartnerId.eq(partner_id))
        .filter(offer_progress::Column::OfferId.eq(offer_id))
        .exec(conn)
        .await?;
    reward_offers::Entity::delete_many()
        .filter(reward_offers::Column::PartnerId.eq(partner_id))
        .filter(reward_offers::Column::Id.eq(offer_id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Active offers of a merchant, other than `except`.
pub async fn active_merchant_offers(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    merchant: Uuid,
    except: Option<Uuid>,
) -> Result<i64, ApiError> {
    let mut q = reward_offers::Entity::find()
        .filter(reward_offers::Column::PartnerId.eq(partner_id))
        .filter(reward_offers::Column::MerchantBusinessUnitId.eq(merchant))
        .filter(reward_offers::Column::State.eq(OfferState::Active.as_str()));
    if let Some(id) = except {
        q = q.filter(reward_offers::Column::Id.ne(id));
    }
    Ok(q.count(conn).await? as i64)
}

#[derive(Default)]
pub struct OfferFilter {
    pub scheme_id: Option<Uuid>,
    pub state: Option<OfferState>,
    pub goal_group: Option<String>,
    pub merchant_business_unit_id: Option<Uuid>,
}

/// A page of offers by decreasing priority then id, after the offer `after`.
pub async fn list_offers(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    f: &OfferFilter,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Offer>, ApiError> {
    let mut q =
        reward_offers::Entity::find().filter(reward_offers::Column::PartnerId.eq(partner_id));
    if let Some(s) = f.scheme_id {
        q = q.filter(reward_offers::Column::SchemeId.eq(s));
    }
    if let Some(s) = f.state {
        q = q.filter(reward_offers::Column::State.eq(s.as_str()));
    }
    if let Some(g) = &f.goal_group {
        q = q.filter(reward_offers::Column::GoalGroup.eq(g.as_str()));
    }
    if let Some(m) = f.merchant_business_unit_id {
        q = q.filter(reward_offers::Column::MerchantBusinessUnitId.eq(m));
    }
    if let Some(after) = after {
        let priority = reward_offers::Entity::find_by_id(after)
            .filter(reward_offers::Column::PartnerId.eq(partner_id))
            .one(conn)
            .await?
            .map(|o| o.priority);
        // A token of a deleted offer restarts nothing: it continues after that id at any
        // priority, which may repeat or skip offers only if the list changed meanwhile.
        q = q.filter(match priority {
            Some(p) => Condition::any()
                .add(reward_offers::Column::Priority.lt(p))
                .add(
                    Condition::all()
                        .add(reward_offers::Column::Priority.eq(p))
                        .add(reward_offers::Column::Id.gt(after)),
                ),
            None => Condition::all().add(reward_offers::Column::Id.gt(after)),
        });
    }
    q.order_by_desc(reward_offers::Column::Priority)
        .order_by_asc(reward_offers::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(offer_from)
        .collect()
}

// ---- Commercial terms ----

fn terms_from(m: commercial_terms::Model) -> Result<Terms, ApiError> {
    Ok(Terms {
        id: m.id,
        spec: from_json(m.spec)?,
        revision: m.revision,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn terms_model(partner_id: Uuid, t: &Terms) -> Result<commercial_terms::ActiveModel, ApiError> {
    Ok(commercial_terms::ActiveModel {
        id: Set(t.id),
        partner_id: Set(partner_id),
        merchant_business_unit_id: Set(t.spec.merchant_business_unit_id),
        valid_from: Set(t.spec.validity.from.unwrap_or(t.created_at)),
        valid_until: Set(t.spec.validity.until),
        spec: Set(json(&t.spec)?),
        revision: Set(t.revision),
        created_at: Set(t.created_at),
        updated_at: Set(t.updated_at),
    })
}

pub async fn find_terms(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<Option<Terms>, ApiError> {
    commercial_terms::Entity::find()
        .filter(commercial_terms::Column::PartnerId.eq(partner_id))
        .filter(commercial_terms::Column::Id.eq(id))
        .one(conn)
        .await?
        .map(terms_from)
        .transpose()
}

/// Another terms of the same merchant whose validity overlaps `spec`'s.
pub async fn overlapping_terms(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    spec: &TermsSpec,
    except: Option<Uuid>,
) -> Result<Option<Terms>, ApiError> {
    let mut q = commercial_terms::Entity::find()
        .filter(commercial_terms::Column::PartnerId.eq(partner_id))
        .filter(
            commercial_terms::Column::MerchantBusinessUnitId.eq(spec.merchant_business_unit_id),
        );
    if let Some(id) = except {
        q = q.filter(commercial_terms::Column::Id.ne(id));
    }
    for m in q.all(conn).await? {
        let other = Validity {
            from: Some(m.valid_from),
            until: m.valid_until,
        };
        if spec.overlaps(&other) {
            return Ok(Some(terms_from(m)?));
        }
    }
    Ok(None)
}

pub async fn insert_terms(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    t: &Terms,
) -> Result<(), ApiError> {
    commercial_terms::Entity::insert(terms_model(partner_id, t)?)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

pub async fn update_terms(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    t: &Terms,
) -> Result<(), ApiError> {
    commercial_terms::Entity::update(terms_model(partner_id, t)?)
        .filter(commercial_terms::Column::PartnerId.eq(partner_id))
        .exec(conn)
        .await?;
    Ok(())
}

pub async fn terms_in_use(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    terms_id: Uuid,
) -> Result<bool, ApiError> {
    Ok(reward_offers::Entity::find()
        .filter(reward_offers::Column::PartnerId.eq(partner_id))
        .filter(reward_offers::Column::CommercialTermsId.eq(terms_id))
        .count(conn)
        .await?
        > 0)
}

pub async fn delete_terms(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    terms_id: Uuid,
) -> Result<(), ApiError> {
    commercial_terms::Entity::delete_many()
        .filter(commercial_terms::Column::PartnerId.eq(partner_id))
        .filter(commercial_terms::Column::Id.eq(terms_id))
        .exec(conn)
        .await?;
    Ok(())
}

/// A page of terms by merchant then start of validity (then id), after the terms `after`.
pub async fn list_terms(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    merchant: Option<Uuid>,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Terms>, ApiError> {
    let mut q =
        commercial_terms::Entity::find().filter(commercial_terms::Column::PartnerId.eq(partner_id));
    if let Some(m) = merchant {
        q = q.filter(commercial_terms::Column::MerchantBusinessUnitId.eq(m));
    }
    if let Some(after) = after
        && let Some(a) = commercial_terms::Entity::find_by_id(after)
            .filter(commercial_terms::Column::PartnerId.eq(partner_id))
            .one(conn)
            .await?
    {
        use commercial_terms::Column as C;
        q = q.filter(
            Condition::any()
                .add(C::MerchantBusinessUnitId.gt(a.merchant_business_unit_id))
                .add(
                    Condition::all()
                        .add(C::MerchantBusinessUnitId.eq(a.merchant_business_unit_id))
                        .add(
                            Condition::any().add(C::ValidFrom.gt(a.valid_from)).add(
                                Condition::all()
                                    .add(C::ValidFrom.eq(a.valid_from))
                                    .add(C::Id.gt(a.id)),
                            ),
                        ),
                ),
        );
    }
    q.order_by_asc(commercial_terms::Column::MerchantBusinessUnitId)
        .order_by_asc(commercial_terms::Column::ValidFrom)
        .order_by_asc(commercial_terms::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(terms_from)
        .collect()
}

// ---- Progress and awards ----

/// An award as recorded (and announced by OfferAwarded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwardRecord {
    pub id: Uuid,
    pub offer_id: Uuid,
    pub customer_id: Uuid,
    pub sequence: i32,
    pub value: AwardValue,
    pub auto_redeem: bool,
    pub purchase_id: String,
    pub business_unit_id: Option<Uuid>,
    pub expire_at: Option<DateTime<Utc>>,
    pub awarded_at: DateTime<Utc>,
    /// The voucher a voucher award issued; `None` otherwise, or when the reward refused it.
    pub voucher: Option<AwardedVoucher>,
    /// Why a voucher award issued nothing (the ErrorInfo reason the reward gave, e.g.
    /// `REWARD_NOT_ACTIVE`, `VOUCHER_LIMIT_REACHED`); empty otherwise.
    pub voucher_refusal: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwardedVoucher {
    pub id: Uuid,
    pub code: String,
}

/// Issues the voucher of a voucher award through the vouchers' one issue path, in the
/// caller's transaction (so with the award record: exactly once per award). A reward that
/// refuses (no longer active, all its vouchers issued, the customer's limit reached) refuses
/// every retry too: the award is then recorded with the refusal instead of retrying forever.
async fn issue_award_voucher(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    record: &mut AwardRecord,
    reward_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let order = super::vouchers::IssueOrder {
        reward_id,
        customer_id: Some(record.customer_id),
        source: crate::domain::vouchers::VoucherSource::Offer,
        source_id: record.id.to_string(),
        requested_until: record.expire_at,
        gift_recipient_email: String::new(),
        gift_recipient_name: String::new(),
        code: None,
        pay_with_points: false,
        price: 0,
        hold: None,
        value: None,
    };
    match super::vouchers::issue(conn, partner_id, &order, now).await {
        Ok((v, _)) => {
            record.voucher = Some(AwardedVoucher {
                id: v.id,
                code: v.code,
            })
        }
        Err(ApiError::FailedPrecondition { reason, message }) => {
            tracing::warn!(award_id = %record.id, %reward_id, %reason, %message,
                "the offer award's voucher was refused by its reward");
            record.voucher_refusal = reason.to_owned();
        }
        Err(ApiError::NotFound(_)) => {
            tracing::warn!(award_id = %record.id, %reward_id,
                "the offer award's reward no longer exists");
            record.voucher_refusal = "REWARD_NOT_FOUND".to_owned();
        }
        // Failures that may pass (the database, a peer) fail the event, which is retried.
        Err(e @ (ApiError::Internal(_) | ApiError::Unavailable(_))) => return Err(e),
        // Anything else the reward answers will be answered again on every retry.
        Err(e) => {
            tracing::warn!(award_id = %record.id, %reward_id, error = %e,
                "the offer award's voucher cannot be issued");
            record.voucher_refusal = "VOUCHER_NOT_ISSUABLE".to_owned();
        }
    }
    Ok(())
}

/// Whether the customer counts as a member of each scheme (by id) their offers need.
async fn memberships_of(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<HashMap<Uuid, bool>, ApiError> {
    let schemes: HashMap<Uuid, SignUpOption> = reward_schemes::Entity::find()
        .filter(reward_schemes::Column::PartnerId.eq(partner_id))
        .all(conn)
        .await?
        .into_iter()
        .filter_map(|m| SignUpOption::parse_str(&m.sign_up_option).map(|o| (m.id, o)))
        .collect();
    let mut latest: HashMap<Uuid, Standing> = HashMap::new();
    // Oldest first, so the latest row of each scheme wins.
    for m in scheme_memberships::Entity::find()
        .filter(scheme_memberships::Column::PartnerId.eq(partner_id))
        .filter(scheme_memberships::Column::CustomerId.eq(customer_id))
        .order_by_asc(scheme_memberships::Column::Id)
        .all(conn)
        .await?
    {
        let s = if m.leave_time.is_none() {
            Standing::Member
        } else {
            Standing::Left
        };
        latest.insert(m.scheme_id, s);
    }
    Ok(schemes
        .into_iter()
        .map(|(id, option)| {
            let standing = latest.get(&id).copied().unwrap_or(Standing::NeverJoined);
            (id, is_member(option, standing))
        })
        .collect())
}

/// Active offers the customer is eligible for (no scheme, or a scheme they belong to), by id,
/// after `after`.
pub async fn eligible_offers(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    after: Option<Uuid>,
    limit: Option<u64>,
) -> Result<Vec<Offer>, ApiError> {
    let member = memberships_of(conn, partner_id, customer_id).await?;
    let mut q = reward_offers::Entity::find()
        .filter(reward_offers::Column::PartnerId.eq(partner_id))
        .filter(reward_offers::Column::State.eq(OfferState::Active.as_str()));
    if let Some(after) = after {
        q = q.filter(reward_offers::Column::Id.gt(after));
    }
    let mut out = Vec::new();
    // Scheme membership filters after the query, so page through until `limit` are eligible.
    for m in q.order_by_asc(reward_offers::Column::Id).all(conn).await? {
        if m.scheme_id
            .is_none_or(|s| member.get(&s).copied().unwrap_or(false))
        {
            out.push(offer_from(m)?);
            if limit.is_some_and(|l| out.len() as u64 >= l) {
                break;
            }
        }
    }
    Ok(out)
}

pub async fn progress_of(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    offer_ids: &[Uuid],
) -> Result<HashMap<Uuid, Progress>, ApiError> {
    if offer_ids.is_empty() {
        return Ok(HashMap::new());
    }
    offer_progress::Entity::find()
        .filter(offer_progress::Column::PartnerId.eq(partner_id))
        .filter(offer_progress::Column::CustomerId.eq(customer_id))
        .filter(offer_progress::Column::OfferId.is_in(offer_ids.iter().copied()))
        .all(conn)
        .await?
        .into_iter()
        .map(|m| Ok((m.offer_id, from_json(m.state)?)))
        .collect()
}

async fn save_progress(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    offer_id: Uuid,
    p: &Progress,
    at: DateTime<Utc>,
) -> Result<(), ApiError> {
    offer_progress::Entity::insert(offer_progress::ActiveModel {
        partner_id: Set(partner_id),
        customer_id: Set(customer_id),
        offer_id: Set(offer_id),
        state: Set(json(p)?),
        updated_at: Set(at),
    })
    .on_conflict(
        OnConflict::columns([
            offer_progress::Column::PartnerId,
            offer_progress::Column::CustomerId,
            offer_progress::Column::OfferId,
        ])
        .update_columns([
            offer_progress::Column::State,
            offer_progress::Column::UpdatedAt,
        ])
        .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Records that an activity was applied; false when it had been already.
async fn first_application(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    activity_id: &str,
    at: DateTime<Utc>,
) -> Result<bool, ApiError> {
    let inserted = offer_activities::Entity::insert(offer_activities::ActiveModel {
        partner_id: Set(partner_id),
        customer_id: Set(customer_id),
        activity_id: Set(activity_id.to_owned()),
        applied_at: Set(at),
    })
    .on_conflict(
        OnConflict::columns([
            offer_activities::Column::PartnerId,
            offer_activities::Column::CustomerId,
            offer_activities::Column::ActivityId,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(inserted > 0)
}

fn award_event(a: &AwardRecord) -> ev::OfferAwarded {
    let (amount, points, points_type_id, reward_id) = match &a.value {
        AwardValue::Money {
            amount_minor,
            currency_code,
        } => (
            Some(loyalty_proto::types::v1::Money {
                currency_code: currency_code.clone(),
                amount_minor: *amount_minor,
            }),
            0,
            String::new(),
            String::new(),
        ),
        AwardValue::Points {
            points,
            points_type_id,
        } => (None, *points, points_type_id.clone(), String::new()),
        AwardValue::Voucher { reward_id } => (None, 0, String::new(), reward_id.to_string()),
    };
    ev::OfferAwarded {
        offer_id: a.offer_id.to_string(),
        customer_id: a.customer_id.to_string(),
        amount,
        points,
        voucher_id: a
            .voucher
            .as_ref()
            .map(|v| v.id.to_string())
            .unwrap_or_default(),
        voucher_code: a
            .voucher
            .as_ref()
            .map(|v| v.code.clone())
            .unwrap_or_default(),
        reward_id,
        voucher_refusal: a.voucher_refusal.clone(),
        award_id: a.id.to_string(),
        auto_redeem: a.auto_redeem,
        purchase_id: a.purchase_id.clone(),
        expire_time: a.expire_at.map(loyalty_platform::time::to_timestamp),
        points_type_id,
        business_unit_id: a
            .business_unit_id
            .map(|b| b.to_string())
            .unwrap_or_default(),
    }
}

/// A customer's segment memberships, asked when an offer restricted to segments could count
/// their activity.
#[async_trait::async_trait]
pub trait CustomerSegments: Send + Sync {
    /// The customer's segments; `Ok(None)` when no segmentation service is configured (then
    /// segment offers count for nobody). An error (segmentation unreachable) fails the
    /// application, so that the event is retried rather than skipped.
    async fn of(&self, partner_id: Uuid, customer_id: Uuid) -> Result<Option<Vec<Uuid>>, ApiError>;
}

/// No segmentation: offers restricted to segments count for nobody.
pub struct NoSegmentation;

#[async_trait::async_trait]
impl CustomerSegments for NoSegmentation {
    async fn of(&self, _: Uuid, _: Uuid) -> Result<Option<Vec<Uuid>>, ApiError> {
        Ok(None)
    }
}

/// Applies one activity of a customer to every eligible active offer, once per `activity_id`
/// (a redelivered event changes nothing): advances progress, records each award won and
/// publishes OfferAwarded for it, all in the caller's transaction. Offers restricted to
/// segments count only for a member of one of them (`segments` is asked once, only then).
/// Returns the awards won.
pub async fn apply_activity(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    activity_id: &str,
    activity: &Activity,
    now: DateTime<Utc>,
    segments: &dyn CustomerSegments,
) -> Result<Vec<AwardRecord>, ApiError> {
    lock_customer(conn, partner_id, customer_id).await?;
    if !first_application(conn, partner_id, customer_id, activity_id, now).await? {
        return Ok(Vec::new());
    }
    let offers = eligible_offers(conn, partner_id, customer_id, None, None).await?;
    let mut offers: Vec<Offer> = offers
        .into_iter()
        .filter(|o| o.spec.counts(activity.at, activity.business_unit_id))
        .collect();
    if offers.iter().any(|o| !o.spec.segment_ids.is_empty()) {
        let member_of = segments.of(partner_id, customer_id).await?;
        offers.retain(|o| o.spec.admits(member_of.as_deref()));
    }
    let ids: Vec<Uuid> = offers.iter().map(|o| o.id).collect();
    let mut progress = progress_of(conn, partner_id, customer_id, &ids).await?;
    let advances: Vec<(&Offer, Advance)> = offers
        .iter()
        .map(|o| {
            let current = progress.remove(&o.id).unwrap_or_default();
            (o, advance(&o.spec, &current, activity))
        })
        .filter(|(_, a)| a.counted)
        .collect();
    // Several offers achieved at once: the partner's rewards resolution picks the awards; the
    // others are left as if the activity had not counted for them.
    let achieved: Vec<Achieved> = advances
        .iter()
        .filter_map(|(o, a)| {
            a.award.as_ref().map(|value| Achieved {
                offer_id: o.id,
                priority: o.spec.priority,
                value,
            })
        })
        .collect();
    let winners = if achieved.len() > 1 {
        let settings = super::resolution::settings(conn, partner_id).await?;
        resolve_awards(
            settings.offer_mode,
            settings.max_awards_per_event,
            &achieved,
        )
    } else {
        achieved.iter().map(|a| a.offer_id).collect()
    };
    let mut awards = Vec::new();
    for (offer, adv) in advances {
        if adv.award.is_some() && !winners.contains(&offer.id) {
            continue;
        }
        let Advance {
            progress: next,
            award,
            ..
        } = adv;
        save_progress(conn, partner_id, customer_id, offer.id, &next, now).await?;
        if let Some(value) = award {
            let mut record = AwardRecord {
                id: Uuid::now_v7(),
                offer_id: offer.id,
                customer_id,
                sequence: next.award_count,
                auto_redeem: offer.spec.auto_redeem,
                purchase_id: match &activity.kind {
                    crate::domain::schemes::ActivityKind::Purchase(p) => p.purchase_id.clone(),
                    crate::domain::schemes::ActivityKind::Event { .. }
                    | crate::domain::schemes::ActivityKind::Referral { .. } => String::new(),
                },
                business_unit_id: activity.business_unit_id,
                expire_at: offer.spec.award.expires_at(activity.at),
                awarded_at: activity.at,
                voucher: None,
                voucher_refusal: String::new(),
                value,
            };
            if let AwardValue::Voucher { reward_id } = record.value {
                issue_award_voucher(conn, partner_id, &mut record, reward_id, now).await?;
            }
            insert_award(conn, partner_id, &record).await?;
            events::enqueue(conn, Some(partner_id), &award_event(&record)).await?;
            awards.push(record);
        }
    }
    Ok(awards)
}

// ---- Referrals ----

/// Records that `referrer` referred `referred` (from identity's `CustomerCreated`) and counts
/// the sign-up towards the referrer's referral goals; when the referred customer's first
/// purchase was already seen (the checkout feed ran ahead of identity's), it counts that too.
/// Each referred customer counts once per kind, however often the event is delivered.
pub async fn apply_referral(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    referrer: Uuid,
    referred: Uuid,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
    segments: &dyn CustomerSegments,
) -> Result<Vec<AwardRecord>, ApiError> {
    offer_referrals::Entity::insert(offer_referrals::ActiveModel {
        partner_id: Set(partner_id),
        referred_customer_id: Set(referred),
        referrer_customer_id: Set(referrer),
        referred_at: Set(at),
        first_purchase_id: Set(None),
    })
    .on_conflict(
        OnConflict::columns([
            offer_referrals::Column::PartnerId,
            offer_referrals::Column::ReferredCustomerId,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    let mut awards = apply_activity(
        conn,
        partner_id,
        referrer,
        &format!("referral:{referred}"),
        &referral(referred, false, at),
        now,
        segments,
    )
    .await?;
    let earlier_purchase = offer_activities::Entity::find()
        .filter(offer_activities::Column::PartnerId.eq(partner_id))
        .filter(offer_activities::Column::CustomerId.eq(referred))
        .filter(offer_activities::Column::ActivityId.starts_with("purchase:"))
        .order_by_asc(offer_activities::Column::AppliedAt)
        .one(conn)
        .await?;
    if let Some(p) = earlier_purchase {
        let purchase_id = p.activity_id.trim_start_matches("purchase:");
        awards.extend(
            apply_first_purchase(conn, partner_id, referred, purchase_id, at, now, segments)
                .await?,
        );
    }
    Ok(awards)
}

/// Counts a referred customer's first purchase towards their referrer's referral goals that
/// require a purchase; nothing for customers nobody referred or for later purchases.
pub async fn apply_first_purchase(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    purchase_id: &str,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
    segments: &dyn CustomerSegments,
) -> Result<Vec<AwardRecord>, ApiError> {
    let Some(r) = offer_referrals::Entity::find()
        .filter(offer_referrals::Column::PartnerId.eq(partner_id))
        .filter(offer_referrals::Column::ReferredCustomerId.eq(customer_id))
        .one(conn)
        .await?
    else {
        return Ok(Vec::new());
    };
    if r.first_purchase_id.is_some() {
        return Ok(Vec::new());
    }
    offer_referrals::Entity::update_many()
        .col_expr(
            offer_referrals::Column::FirstPurchaseId,
            Expr::value(purchase_id.to_owned()),
        )
        .filter(offer_referrals::Column::PartnerId.eq(partner_id))
        .filter(offer_referrals::Column::ReferredCustomerId.eq(customer_id))
        .exec(conn)
        .await?;
    apply_activity(
        conn,
        partner_id,
        r.referrer_customer_id,
        &format!("referral-purchase:{customer_id}"),
        &referral(customer_id, true, at),
        now,
        segments,
    )
    .await
}

fn referral(referred: Uuid, purchased: bool, at: DateTime<Utc>) -> Activity {
    Activity {
        kind: crate::domain::schemes::ActivityKind::Referral {
            referred_customer_id: referred,
            purchased,
        },
        at,
        business_unit_id: None,
    }
}

async fn insert_award(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    a: &AwardRecord,
) -> Result<(), ApiError> {
    let (amount_minor, currency_code, points, points_type_id, reward_id) = match &a.value {
        AwardValue::Money {
            amount_minor,
            currency_code,
        } => (*amount_minor, currency_code.clone(), 0, String::new(), None),
        AwardValue::Points {
            points,
            points_type_id,
        } => (0, String::new(), *points, points_type_id.clone(), None),
        AwardValue::Voucher { reward_id } => (0, String::new(), 0, String::new(), Some(*reward_id)),
    };
    offer_awards::Entity::insert(offer_awards::ActiveModel {
        id: Set(a.id),
        partner_id: Set(partner_id),
        offer_id: Set(a.offer_id),
        customer_id: Set(a.customer_id),
        sequence: Set(a.sequence),
        amount_minor: Set(amount_minor),
        currency_code: Set(currency_code),
        points: Set(points),
        points_type_id: Set(points_type_id),
        auto_redeem: Set(a.auto_redeem),
        purchase_id: Set(a.purchase_id.clone()),
        business_unit_id: Set(a.business_unit_id),
        expire_at: Set(a.expire_at),
        awarded_at: Set(a.awarded_at),
        reward_id: Set(reward_id),
        voucher_id: Set(a.voucher.as_ref().map(|v| v.id)),
        voucher_code: Set(a
            .voucher
            .as_ref()
            .map(|v| v.code.clone())
            .unwrap_or_default()),
        voucher_refusal: Set(a.voucher_refusal.clone()),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Awards of a customer, oldest first.
pub async fn awards_of(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<Vec<AwardRecord>, ApiError> {
    offer_awards::Entity::find()
        .filter(offer_awards::Column::PartnerId.eq(partner_id))
        .filter(offer_awards::Column::CustomerId.eq(customer_id))
        .order_by_asc(offer_awards::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .map(|m| {
            Ok(AwardRecord {
                id: m.id,
                offer_id: m.offer_id,
                customer_id: m.customer_id,
                sequence: m.sequence,
                value: if let Some(reward_id) = m.reward_id {
                    AwardValue::Voucher { reward_id }
                } else if m.currency_code.is_empty() {
                    AwardValue::Points {
                        points: m.points,
                        points_type_id: m.points_type_id,
                    }
                } else {
                    AwardValue::Money {
                        amount_minor: m.amount_minor,
                        currency_code: m.currency_code,
                    }
                },
                auto_redeem: m.auto_redeem,
                purchase_id: m.purchase_id,
                business_unit_id: m.business_unit_id,
                expire_at: m.expire_at,
                awarded_at: m.awarded_at,
                voucher: m.voucher_id.map(|id| AwardedVoucher {
                    id,
                    code: m.voucher_code,
                }),
                voucher_refusal: m.voucher_refusal,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;

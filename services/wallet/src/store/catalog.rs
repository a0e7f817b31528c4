//! Storage of points groups and points types. Every change to a partner's catalogue runs
//! under one per-partner lock, so exactly one type stays the default and a group is never
//! deleted while a type joins it.
use chrono::{DateTime, Utc};
use loyalty_platform::ApiError;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use super::entities::{
    ledger_accounts as accounts, ledger_postings as postings, points_groups as groups,
    points_types as types, spending_blocks as blocks,
};
use super::ledger::{self, TypeRow, rules_of, unit_of};
use crate::domain::catalog::{GroupSpec, PointsGroup, PointsType, TypeDefinition, becomes_default};

/// Serialises changes to one partner's groups and types until the transaction ends (SQLite
/// serialises write transactions already).
pub async fn lock_catalog(conn: &impl ConnectionTrait, partner_id: Uuid) -> Result<(), ApiError> {
    Ok(
        loyalty_platform::db::advisory_xact_lock(conn, &format!("wallet-catalog:{partner_id}"))
            .await?,
    )
}

fn taken(e: sea_orm::DbErr, what: &str, code: &str) -> ApiError {
    loyalty_platform::db::taken(e, || format!("{what} with code {code:?}"))
}

// ---- Points groups ----

fn group_from(m: groups::Model) -> PointsGroup {
    PointsGroup {
        id: m.id,
        code: m.code,
        display_name: m.display_name,
        description: m.description,
        revision: m.revision,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

/// A group by UUID or code; `None` when the partner has no such group.
pub async fn find_group(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id_or_code: &str,
) -> Result<Option<PointsGroup>, ApiError> {
    let q = groups::Entity::find().filter(groups::Column::PartnerId.eq(partner_id));
    let q = match Uuid::try_parse(id_or_code) {
        Ok(id) => q.filter(groups::Column::Id.eq(id)),
        Err(_) => q.filter(groups::Column::Code.eq(id_or_code)),
    };
    Ok(q.one(conn).await?.map(group_from))
}

pub async fn insert_group(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    spec: &GroupSpec,
    now: DateTime<Utc>,
) -> Result<PointsGroup, ApiError> {
    let group = PointsGroup {
        id: Uuid::now_v7(),
        code: spec.code.clone(),
        display_name: spec.display_name.clone(),
        description: spec.description.clone(),
        revision: 1,
        created_at: now,
        updated_at: now,
    };
    groups::Entity::insert(groups::ActiveModel {
        id: Set(group.id),
        partner_id: Set(partner_id),
        code: Set(group.code.clone()),
        display_name: Set(group.display_name.clone()),
        description: Set(group.description.clone()),
        revision: Set(group.revision),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(conn)
    .await
    .map_err(|e| taken(e, "points group", &group.code))?;
    Ok(group)
}

/// A page of groups ordered by code, after the code `after`.
pub async fn list_groups(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<PointsGroup>, ApiError> {
    let mut q = groups::Entity::find().filter(groups::Column::PartnerId.eq(partner_id));
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

fn moved_on(what: &str) -> ApiError {
    ApiError::precondition("ETAG_MISMATCH", format!("the {what} changed concurrently"))
}

/// Writes the group's new fields if it is still at `current.revision`.
pub async fn update_group(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    current: &PointsGroup,
    spec: &GroupSpec,
    now: DateTime<Utc>,
) -> Result<PointsGroup, ApiError> {
    let next = PointsGroup {
        display_name: spec.display_name.clone(),
        description: spec.description.clone(),
        revision: current.revision + 1,
        updated_at: now,
        ..current.clone()
    };
    let done = groups::Entity::update_many()
        .col_expr(
            groups::Column::DisplayName,
            Expr::value(next.display_name.clone()),
        )
        .col_expr(
            groups::Column::Description,
            Expr::value(next.description.clone()),
        )
        .col_expr(groups::Column::Revision, Expr::value(next.revision))
        .col_expr(groups::Column::UpdatedAt, Expr::value(now))
        .filter(groups::Column::PartnerId.eq(partner_id))
        .filter(groups::Column::Id.eq(current.id))
        .filter(groups::Column::Revision.eq(current.revision))
        .exec(conn)
        .await?;
    if done.rows_affected != 1 {
        return Err(moved_on("points group"));
    }
    Ok(next)
}

/// Deletes a group no points type belongs to.
pub async fn delete_group(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    group: &PointsGroup,
) -> Result<(), ApiError> {
    let members = types::Entity::find()
        .filter(types::Column::PartnerId.eq(partner_id))
        .filter(types::Column::PointsGroupId.eq(group.id))
        .count(conn)
        .await?;
    if members > 0 {
        return Err(ApiError::precondition(
            "POINTS_GROUP_IN_USE",
            format!(
                "{members} points type(s) belong to points group {:?}; move or delete them first",
                group.code
            ),
        ));
    }
    groups::Entity::delete_many()
        .filter(groups::Column::PartnerId.eq(partner_id))
        .filter(groups::Column::Id.eq(group.id))
        .exec(conn)
        .await?;
    Ok(())
}

// ---- Points types ----

pub fn type_from(m: TypeRow) -> PointsType {
    let (rules, unit) = (rules_of(&m), unit_of(&m));
    PointsType {
        id: m.id,
        definition: TypeDefinition {
            code: m.code,
            display_name: m.display_name,
            description: m.description,
            points_group_id: m.points_group_id,
            unit,
            currency_code: m.currency_code,
            rules,
            is_default: m.is_default,
            active: m.active,
        },
        revision: m.revision,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

/// A points type by UUID or code; `None` when the partner has no such type.
pub async fn find_type(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id_or_code: &str,
) -> Result<Option<PointsType>, ApiError> {
    Ok(ledger::find_type(conn, partner_id, id_or_code)
        .await?
        .map(type_from))
}

async fn has_default(conn: &impl ConnectionTrait, partner_id: Uuid) -> Result<bool, ApiError> {
    Ok(types::Entity::find()
        .filter(types::Column::PartnerId.eq(partner_id))
        .filter(types::Column::IsDefault.eq(true))
        .count(conn)
        .await?
        > 0)
}

/// Takes the default flag from the partner's other types (each one's etag moves on).
async fn clear_default_except(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    keep: Uuid,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    types::Entity::update_many()
        .col_expr(types::Column::IsDefault, Expr::value(false))
        .col_expr(
            types::Column::Revision,
            Expr::col(types::Column::Revision).add(1),
        )
        .col_expr(types::Column::UpdatedAt, Expr::value(now))
        .filter(types::Column::PartnerId.eq(partner_id))
        .filter(types::Column::IsDefault.eq(true))
        .filter(types::Column::Id.ne(keep))
        .exec(conn)
        .await?;
    Ok(())
}

fn columns(def: &TypeDefinition) -> [(types::Column, sea_orm::Value); 14] {
    let (rule, days, months) = def.rules.expiry.to_parts();
    use types::Column as C;
    [
        (C::DisplayName, def.display_name.clone().into()),
        (C::Description, def.description.clone().into()),
        (C::PointsGroupId, def.points_group_id.into()),
        (C::ExpiryRule, rule.into()),
        (C::ValidityDays, days.into()),
        (C::ValidityMonths, months.into()),
        (C::PendingDays, def.rules.pending_days.into()),
        (C::Rounding, def.rules.rounding.as_str().into()),
        (C::Spendable, def.rules.spendable.into()),
        (C::OverdraftLimit, def.rules.overdraft_limit.into()),
        (
            C::ReservationTtlSeconds,
            def.rules.reservation_ttl_seconds.into(),
        ),
        (C::IsDefault, def.is_default.into()),
        (C::Active, def.active.into()),
        (C::CurrencyCode, def.currency_code.clone().into()),
    ]
}

/// Creates a type and its system accounts. It becomes the partner's default when asked to or
/// when the partner has no default yet; a new default takes the flag from the others. The
/// caller holds the catalogue lock.
pub async fn insert_type(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    def: &TypeDefinition,
    now: DateTime<Utc>,
) -> Result<PointsType, ApiError> {
    // Other replicas notice by the revision (see `ledger::resolve_type_cached`).
    ledger::forget_types(partner_id);
    let ty = PointsType {
        id: Uuid::now_v7(),
        definition: TypeDefinition {
            is_default: becomes_default(def.is_default, has_default(conn, partner_id).await?),
            ..def.clone()
        },
        revision: 1,
        created_at: now,
        updated_at: now,
    };
    let d = &ty.definition;
    let (rule, days, months) = d.rules.expiry.to_parts();
    // At most one default per partner (a unique index): the old one gives it up first.
    if d.is_default {
        clear_default_except(conn, partner_id, ty.id, now).await?;
    }
    types::Entity::insert(types::ActiveModel {
        id: Set(ty.id),
        partner_id: Set(partner_id),
        code: Set(d.code.clone()),
        display_name: Set(d.display_name.clone()),
        description: Set(d.description.clone()),
        points_group_id: Set(d.points_group_id),
        unit: Set(d.unit.as_str().to_owned()),
        currency_code: Set(d.currency_code.clone()),
        expiry_rule: Set(rule.to_owned()),
        validity_days: Set(days),
        validity_months: Set(months),
        pending_days: Set(d.rules.pending_days),
        rounding: Set(d.rules.rounding.as_str().to_owned()),
        spendable: Set(d.rules.spendable),
        overdraft_limit: Set(d.rules.overdraft_limit),
        reservation_ttl_seconds: Set(d.rules.reservation_ttl_seconds),
        is_default: Set(d.is_default),
        active: Set(d.active),
        revision: Set(ty.revision),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(conn)
    .await
    .map_err(|e| taken(e, "points type", &d.code))?;
    ledger::ensure_system_accounts(conn, partner_id, ty.id, now).await?;
    Ok(ty)
}

/// Which types a list shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct TypeFilter {
    pub points_group_id: Option<Uuid>,
    pub include_inactive: bool,
}

/// A page of types ordered by code, after the code `after`.
pub async fn list_types(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    filter: TypeFilter,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<PointsType>, ApiError> {
    let mut q = types::Entity::find().filter(types::Column::PartnerId.eq(partner_id));
    if let Some(g) = filter.points_group_id {
        q = q.filter(types::Column::PointsGroupId.eq(g));
    }
    if !filter.include_inactive {
        q = q.filter(types::Column::Active.eq(true));
    }
    if let Some(after) = after {
        q = q.filter(types::Column::Code.gt(after));
    }
    Ok(q.order_by_asc(types::Column::Code)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(type_from)
        .collect())
}

/// Writes the type's new definition if it is still at `current.revision`; a type made the
/// default takes the flag from the others. The caller holds the catalogue lock and has
/// checked the change (`domain::catalog::check_update`).
pub async fn update_type(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    current: &PointsType,
    next: &TypeDefinition,
    now: DateTime<Utc>,
) -> Result<PointsType, ApiError> {
    // Other replicas notice by the revision (see `ledger::resolve_type_cached`).
    ledger::forget_types(partner_id);
    // At most one default per partner (a unique index): the old one gives it up first; a
    // refused update rolls the whole transaction back.
    if next.is_default && !current.definition.is_default {
        clear_default_except(conn, partner_id, current.id, now).await?;
    }
    let mut q = types::Entity::update_many();
    for (column, value) in columns(next) {
        q = q.col_expr(column, Expr::value(value));
    }
    let done = q
        .col_expr(types::Column::Revision, Expr::value(current.revision + 1))
        .col_expr(types::Column::UpdatedAt, Expr::value(now))
        .filter(types::Column::PartnerId.eq(partner_id))
        .filter(types::Column::Id.eq(current.id))
        .filter(types::Column::Revision.eq(current.revision))
        .exec(conn)
        .await?;
    if done.rows_affected != 1 {
        return Err(moved_on("points type"));
    }
    Ok(PointsType {
        id: current.id,
        definition: next.clone(),
        revision: current.revision + 1,
        created_at: current.created_at,
        updated_at: now,
    })
}

/// Whether any posting names the type. Postings move amounts between the type's accounts,
/// and the account and posting lookups below are indexed, so an unused type is answered
/// without scanning the ledger.
pub async fn has_postings(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    points_type_id: Uuid,
) -> Result<bool, ApiError> {
    let of_type = || {
        accounts::Entity::find()
            .filter(accounts::Column::PartnerId.eq(partner_id))
            .filter(accounts::Column::PointsTypeId.eq(points_type_id))
    };
    let system: Vec<Uuid> = of_type()
        .filter(accounts::Column::CustomerId.eq(Uuid::nil()))
        .select_only()
        .column(accounts::Column::Id)
        .into_tuple()
        .all(conn)
        .await?;
    if touches_any(conn, &system).await? {
        return Ok(true);
    }
    // Without customer accounts, postings could only have touched system accounts.
    let customer_account = of_type()
        .filter(accounts::Column::CustomerId.ne(Uuid::nil()))
        .one(conn)
        .await?;
    if customer_account.is_none() {
        return Ok(false);
    }
    Ok(postings::Entity::find()
        .filter(postings::Column::PartnerId.eq(partner_id))
        .filter(postings::Column::PointsTypeId.eq(points_type_id))
        .one(conn)
        .await?
        .is_some())
}

async fn touches_any(conn: &impl ConnectionTrait, account_ids: &[Uuid]) -> Result<bool, ApiError> {
    if account_ids.is_empty() {
        return Ok(false);
    }
    for column in [
        postings::Column::DebitAccountId,
        postings::Column::CreditAccountId,
    ] {
        if postings::Entity::find()
            .filter(column.is_in(account_ids.iter().copied()))
            .one(conn)
            .await?
            .is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Deletes a type no posting names, with its accounts (its system accounts, and any empty
/// customer account) and the spending blocks set on it. The caller holds the catalogue lock
/// and has checked `has_postings`.
pub async fn delete_type(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    points_type_id: Uuid,
) -> Result<(), ApiError> {
    ledger::forget_types(partner_id);
    accounts::Entity::delete_many()
        .filter(accounts::Column::PartnerId.eq(partner_id))
        .filter(accounts::Column::PointsTypeId.eq(points_type_id))
        .exec(conn)
        .await?;
    blocks::Entity::delete_many()
        .filter(blocks::Column::PartnerId.eq(partner_id))
        .filter(blocks::Column::PointsTypeId.eq(points_type_id))
        .exec(conn)
        .await?;
    types::Entity::delete_many()
        .filter(types::Column::PartnerId.eq(partner_id))
        .filter(types::Column::Id.eq(points_type_id))
        .exec(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalog::TypeSpec;
    use crate::store::{
        ledger::Note,
        ops::{self, AwardInput, Target},
    };
    use loyalty_platform::Violations;
    use sea_orm::{DatabaseConnection, TransactionTrait};

    async fn postgres() -> (loyalty_testkit::TestDb, DatabaseConnection) {
        let test_db = loyalty_testkit::TestDb::postgres().await.expect("postgres");
        let mut settings = loyalty_platform::Settings::defaults("wallet", 0);
        settings.database.url = test_db.url().into();
        let db = loyalty_platform::db::connect_and_migrate::<crate::migration::Migrator>(&settings)
            .await
            .expect("migrate");
        (test_db, db)
    }

    fn definition(code: &str, is_default: bool) -> TypeDefinition {
        let mut v = Violations::new();
        let d = TypeSpec {
            code: code.into(),
            display_name: code.into(),
            expiry_rule: "never".into(),
            spendable: true,
            active: true,
            is_default,
            ..TypeSpec::default()
        }
        .validate(&mut v);
        assert!(v.is_empty(), "{:?}", v.into_vec());
        d.expect("valid")
    }

    async fn create(
        db: &DatabaseConnection,
        partner_id: Uuid,
        code: &str,
        default: bool,
    ) -> PointsType {
        let txn = db.begin().await.unwrap();
        lock_catalog(&txn, partner_id).await.unwrap();
        let ty = insert_type(&txn, partner_id, &definition(code, default), Utc::now())
            .await
            .unwrap();
        txn.commit().await.unwrap();
        ty
    }

    async fn accounts_of(db: &DatabaseConnection, points_type_id: Uuid) -> u64 {
        accounts::Entity::find()
            .filter(accounts::Column::PointsTypeId.eq(points_type_id))
            .count(db)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_first_type_or_a_requested_one_is_the_only_default() {
        let (_guard, db) = postgres().await;
        let partner = Uuid::now_v7();
        let first = create(&db, partner, "first", false).await;
        let second = create(&db, partner, "second", false).await;
        assert!(first.definition.is_default);
        assert!(!second.definition.is_default);
        let third = create(&db, partner, "third", true).await;
        assert!(third.definition.is_default);
        let first = find_type(&db, partner, "first").await.unwrap().unwrap();
        assert!(!first.definition.is_default);
        assert_eq!(first.revision, 2, "losing the flag moves the etag on");
        assert_eq!(
            find_type(&db, partner, "second")
                .await
                .unwrap()
                .unwrap()
                .revision,
            1
        );
        // Another partner's first type is its own default.
        let other = create(&db, Uuid::now_v7(), "first", false).await;
        assert!(other.definition.is_default);
        assert!(
            find_type(&db, partner, "third")
                .await
                .unwrap()
                .unwrap()
                .definition
                .is_default
        );
    }

    #[tokio::test]
    async fn a_type_with_postings_is_in_use_and_an_unused_one_goes_with_its_accounts() {
        let (_guard, db) = postgres().await;
        let partner = Uuid::now_v7();
        let stars = create(&db, partner, "stars", false).await;
        let promo = create(&db, partner, "promo", false).await;
        assert_eq!(accounts_of(&db, promo.id).await, 5, "system accounts");
        assert!(!has_postings(&db, partner, promo.id).await.unwrap());

        let txn = db.begin().await.unwrap();
        let target = Target {
            partner_id: partner,
            customer_id: Uuid::now_v7(),
            points_type: "promo".into(),
            now: Utc::now(),
        };
        let input = AwardInput {
            amount: 10,
            note: Note {
                reason: "purchase".into(),
                ..Note::default()
            },
            expire_at: None,
            release_at: None,
            auto_redeem: false,
        };
        ops::award(&txn, &target, input).await.unwrap();
        txn.commit().await.unwrap();
        assert!(has_postings(&db, partner, promo.id).await.unwrap());
        assert!(!has_postings(&db, partner, stars.id).await.unwrap());
        assert!(!has_postings(&db, Uuid::now_v7(), promo.id).await.unwrap());

        let unused = create(&db, partner, "unused", false).await;
        let txn = db.begin().await.unwrap();
        delete_type(&txn, partner, unused.id).await.unwrap();
        txn.commit().await.unwrap();
        assert_eq!(accounts_of(&db, unused.id).await, 0);
        assert!(find_type(&db, partner, "unused").await.unwrap().is_none());
        assert_eq!(
            accounts_of(&db, promo.id).await,
            6,
            "promo keeps its accounts"
        );
    }
}

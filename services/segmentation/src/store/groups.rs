//! Stored members of any kind of group (segment or badge): one set of queries over tables
//! with the same columns, the group's id under its own name. Callers pick the table by
//! [`GroupKind`] with [`on_members!`].
use chrono::{DateTime, Utc};
use loyalty_platform::ApiError;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::entities::{badge_members, segment_members};
use crate::domain::{Member, MembershipCause};

/// A table of group members: `(group, customer)` key, partner, since when, what added them.
pub(crate) trait MemberTable: EntityTrait {
    const GROUP: Self::Column;
    const CUSTOMER: Self::Column;
    const PARTNER: Self::Column;
    const ADDED_AT: Self::Column;
    const CAUSE: Self::Column;

    fn row(
        group_id: Uuid,
        customer_id: Uuid,
        partner_id: Uuid,
        added_at: DateTime<Utc>,
        cause: MembershipCause,
    ) -> Self::ActiveModel;
}

impl MemberTable for segment_members::Entity {
    const GROUP: Self::Column = segment_members::Column::SegmentId;
    const CUSTOMER: Self::Column = segment_members::Column::CustomerId;
    const PARTNER: Self::Column = segment_members::Column::PartnerId;
    const ADDED_AT: Self::Column = segment_members::Column::AddedAt;
    const CAUSE: Self::Column = segment_members::Column::Cause;

    fn row(
        group_id: Uuid,
        customer_id: Uuid,
        partner_id: Uuid,
        added_at: DateTime<Utc>,
        cause: MembershipCause,
    ) -> Self::ActiveModel {
        segment_members::ActiveModel {
            segment_id: Set(group_id),
            customer_id: Set(customer_id),
            partner_id: Set(partner_id),
            added_at: Set(added_at),
            cause: Set(cause.as_str().to_owned()),
        }
    }
}

impl MemberTable for badge_members::Entity {
    const GROUP: Self::Column = badge_members::Column::BadgeId;
    const CUSTOMER: Self::Column = badge_members::Column::CustomerId;
    const PARTNER: Self::Column = badge_members::Column::PartnerId;
    const ADDED_AT: Self::Column = badge_members::Column::AddedAt;
    const CAUSE: Self::Column = badge_members::Column::Cause;

    fn row(
        group_id: Uuid,
        customer_id: Uuid,
        partner_id: Uuid,
        added_at: DateTime<Utc>,
        cause: MembershipCause,
    ) -> Self::ActiveModel {
        badge_members::ActiveModel {
            badge_id: Set(group_id),
            customer_id: Set(customer_id),
            partner_id: Set(partner_id),
            added_at: Set(added_at),
            cause: Set(cause.as_str().to_owned()),
        }
    }
}

/// Runs a generic member-table function on the table of `$kind`:
/// `on_members!(kind, insert(conn, ...))`.
macro_rules! on_members {
    ($kind:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match $kind {
            $crate::domain::GroupKind::Segment => {
                $crate::store::groups::$f::<$crate::store::entities::segment_members::Entity>($($arg),*).await
            }
            $crate::domain::GroupKind::Badge => {
                $crate::store::groups::$f::<$crate::store::entities::badge_members::Entity>($($arg),*).await
            }
        }
    };
}
pub(crate) use on_members;

fn cause_of(stored: &str) -> MembershipCause {
    MembershipCause::parse_str(stored).unwrap_or(MembershipCause::Creation)
}

/// Stores `customers` as members of the group since `at`.
pub(crate) async fn insert<E: MemberTable>(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    group_id: Uuid,
    customers: &[Uuid],
    at: DateTime<Utc>,
    cause: MembershipCause,
) -> Result<(), ApiError>
where
    E::Model: IntoActiveModel<E::ActiveModel>,
{
    if customers.is_empty() {
        return Ok(());
    }
    E::insert_many(
        customers
            .iter()
            .map(|c| E::row(group_id, *c, partner_id, at, cause)),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Deletes the memberships of `customers`.
pub(crate) async fn delete<E: MemberTable>(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    group_id: Uuid,
    customers: &[Uuid],
) -> Result<(), ApiError> {
    E::delete_many()
        .filter(E::PARTNER.eq(partner_id))
        .filter(E::GROUP.eq(group_id))
        .filter(E::CUSTOMER.is_in(customers.iter().copied()))
        .exec(conn)
        .await?;
    Ok(())
}

/// Every member of the group, by customer id.
pub(crate) async fn ids<E: MemberTable>(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    group_id: Uuid,
) -> Result<Vec<Uuid>, ApiError> {
    Ok(E::find()
        .select_only()
        .column(E::CUSTOMER)
        .filter(E::PARTNER.eq(partner_id))
        .filter(E::GROUP.eq(group_id))
        .order_by_asc(E::CUSTOMER)
        .into_tuple::<Uuid>()
        .all(conn)
        .await?)
}

/// The customer's membership of the group, if any.
pub(crate) async fn find<E: MemberTable>(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    group_id: Uuid,
    customer_id: Uuid,
) -> Result<Option<Member>, ApiError> {
    let row: Option<(DateTime<Utc>, String)> = E::find()
        .select_only()
        .column(E::ADDED_AT)
        .column(E::CAUSE)
        .filter(E::PARTNER.eq(partner_id))
        .filter(E::GROUP.eq(group_id))
        .filter(E::CUSTOMER.eq(customer_id))
        .into_tuple()
        .one(conn)
        .await?;
    Ok(row.map(|(added_at, cause)| Member {
        customer_id,
        added_at,
        cause: cause_of(&cause),
    }))
}

/// A page of the group's members by customer id, after `after`.
pub(crate) async fn page<E: MemberTable>(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    group_id: Uuid,
    limit: u64,
    after: Option<Uuid>,
) -> Result<Vec<Member>, ApiError> {
    let mut q = E::find()
        .select_only()
        .column(E::CUSTOMER)
        .column(E::ADDED_AT)
        .column(E::CAUSE)
        .filter(E::PARTNER.eq(partner_id))
        .filter(E::GROUP.eq(group_id));
    if let Some(after) = after {
        q = q.filter(E::CUSTOMER.gt(after));
    }
    let rows: Vec<(Uuid, DateTime<Utc>, String)> = q
        .order_by_asc(E::CUSTOMER)
        .limit(limit)
        .into_tuple()
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(customer_id, added_at, cause)| Member {
            customer_id,
            added_at,
            cause: cause_of(&cause),
        })
        .collect())
}

//! Badges in the database: definitions, holders (assigned at creation by the criterion, by
//! hand, or by the nightly Flexi run), and a customer's badges. Holder changes go through the
//! same code as segment members ([`super::membership::enter_many`] and friends), so they
//! write history rows of group kind `badge` and publish `BadgeAssigned`/`BadgeRemoved`. Every
//! change of one badge runs under its lock (a PostgreSQL advisory lock; SQLite serialises
//! writers).
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use loyalty_criteria::{Criterion, Facts};
use loyalty_platform::{
    ApiError,
    db::{advisory_xact_lock, begin_write},
    error::{check_etag, check_guarded_write},
    paging,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use super::{
    Store,
    entities::{badge_members, badges},
    groups::on_members,
    membership::{Rerun, enter_keeping, enter_many, leave_many, member_ids, rerun, stored_time},
};
use crate::domain::{
    Badge, BadgeKind, BadgeRule, CustomerBadge, GroupKind, Icon, ManualChange, Member,
    MembershipCause, due_for,
};

/// The outcome of an assignment or removal by hand.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BadgeChange {
    pub badge: Badge,
    /// The customer's badge after the change (`None` after a removal).
    pub held: Option<CustomerBadge>,
    /// Whether anything changed (false for assigning a held badge or removing an unheld one).
    pub changed: bool,
}

pub(crate) fn badge_rule(r: BadgeRule) -> ApiError {
    ApiError::precondition(r.reason(), r.message())
}

fn not_found() -> ApiError {
    ApiError::NotFound("badge".into())
}

pub(crate) fn badge_from(m: badges::Model) -> Result<Badge, ApiError> {
    let id = m.id;
    let bad = |what: String| ApiError::Internal(anyhow::anyhow!("badge {id}: {what}"));
    Ok(Badge {
        id: m.id,
        kind: BadgeKind::parse_str(&m.kind)
            .ok_or_else(|| bad(format!("unknown kind {:?}", m.kind)))?,
        criterion: m
            .criterion
            .as_ref()
            .map(Criterion::from_json)
            .transpose()
            .map_err(|e| bad(format!("stored criterion: {e}")))?,
        display_name: m.display_name,
        icon: Icon {
            url: m.icon_url,
            content_type: m.icon_content_type,
        },
        visible_to_customer: m.visible_to_customer,
        note: m.note,
        member_count: m.member_count,
        last_recalculated_at: m.last_recalculated_at,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn customer_badge(badge: &Badge, member: &Member) -> CustomerBadge {
    CustomerBadge {
        badge_id: badge.id,
        display_name: badge.display_name.clone(),
        icon: badge.icon.clone(),
        visible_to_customer: badge.visible_to_customer,
        assigned_at: member.added_at,
        cause: member.cause,
    }
}

/// Locks a badge of the partner for the rest of the transaction and reads it.
async fn lock_badge(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    badge_id: Uuid,
) -> Result<Badge, ApiError> {
    advisory_xact_lock(conn, &format!("segmentation-badge:{badge_id}")).await?;
    find_badge(conn, partner_id, badge_id)
        .await?
        .ok_or_else(not_found)
}

async fn find_badge(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    badge_id: Uuid,
) -> Result<Option<Badge>, ApiError> {
    badges::Entity::find_by_id(badge_id)
        .filter(badges::Column::PartnerId.eq(partner_id))
        .one(conn)
        .await?
        .map(badge_from)
        .transpose()
}

/// Writes a badge's holder count and recalculation time.
async fn write_counts(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    badge: &Badge,
) -> Result<(), ApiError> {
    badges::Entity::update_many()
        .col_expr(badges::Column::MemberCount, Expr::value(badge.member_count))
        .col_expr(
            badges::Column::LastRecalculatedAt,
            Expr::value(badge.last_recalculated_at),
        )
        .filter(badges::Column::PartnerId.eq(partner_id))
        .filter(badges::Column::Id.eq(badge.id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Re-runs a locked Flexi badge's criterion at `now` and stores the count and time.
async fn recalculate_locked(
    store: &Store,
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    mut badge: Badge,
    now: DateTime<Utc>,
) -> Result<(Badge, Rerun), ApiError> {
    let now = stored_time(now);
    let criterion = badge.recalculable_criterion().map_err(badge_rule)?.clone();
    let r = rerun(store, conn, partner_id, badge.group(), &criterion, now).await?;
    badge.recalculated(r.member_count, now);
    write_counts(conn, partner_id, &badge).await?;
    Ok((badge, r))
}

/// Recalculates a Flexi badge for the nightly run of `slot` in its own transaction, unless
/// it was recalculated since (by another replica) or is gone or no longer Flexi (`None`).
pub(crate) async fn recalculate_if_due(
    store: &Store,
    partner_id: Uuid,
    badge_id: Uuid,
    slot: DateTime<Utc>,
) -> Result<Option<Rerun>, ApiError> {
    let txn = begin_write(store.db()).await?;
    let badge = match lock_badge(&txn, partner_id, badge_id).await {
        Ok(b) => b,
        Err(ApiError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    if !due_for(badge.last_recalculated_at, slot) || badge.recalculable_criterion().is_err() {
        return Ok(None);
    }
    let (_, r) = recalculate_locked(store, &txn, partner_id, badge, Utc::now().max(slot)).await?;
    txn.commit().await?;
    Ok(Some(r))
}

/// An erased customer holds no badge any more (their history rows go with the rest of it);
/// each badge's holder count drops.
pub(crate) async fn forget_holder(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<(), ApiError> {
    let held: Vec<Uuid> = badge_members::Entity::find()
        .select_only()
        .column(badge_members::Column::BadgeId)
        .filter(badge_members::Column::PartnerId.eq(partner_id))
        .filter(badge_members::Column::CustomerId.eq(customer_id))
        .into_tuple()
        .all(conn)
        .await?;
    if held.is_empty() {
        return Ok(());
    }
    badge_members::Entity::delete_many()
        .filter(badge_members::Column::PartnerId.eq(partner_id))
        .filter(badge_members::Column::CustomerId.eq(customer_id))
        .exec(conn)
        .await?;
    badges::Entity::update_many()
        .col_expr(
            badges::Column::MemberCount,
            Expr::col(badges::Column::MemberCount).sub(1),
        )
        .filter(badges::Column::PartnerId.eq(partner_id))
        .filter(badges::Column::Id.is_in(held))
        .exec(conn)
        .await?;
    Ok(())
}

/// Folds a merged account's badges into the survivor's. The merged account loses each
/// (cause `customer_removed`). The survivor then holds a manual badge either account held
/// (one taken over keeps the merged account's time and cause) and a Flexi badge whose
/// criterion admits its folded `facts`; what changes for it has cause `recalculation`.
pub(crate) async fn merge_holder(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    survivor: Uuid,
    merged: Uuid,
    facts: &Facts,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let now = stored_time(now);
    let merged_held = holdings(conn, partner_id, merged).await?;
    let survivor_held = holdings(conn, partner_id, survivor).await?;
    let partner_badges = badges::Entity::find()
        .filter(badges::Column::PartnerId.eq(partner_id))
        .order_by_asc(badges::Column::Id)
        .all(conn)
        .await?;
    for row in partner_badges {
        let badge = badge_from(row)?;
        let held = merged_held.get(&badge.id).copied();
        let was = survivor_held.contains_key(&badge.id);
        let mut delta = 0;
        if held.is_some() {
            let cause = MembershipCause::CustomerRemoved;
            leave_many(conn, partner_id, badge.group(), &[merged], now, cause, None).await?;
            delta -= 1;
        }
        let cause = MembershipCause::Recalculation;
        match badge.holds_survivor(was, held.is_some(), facts) {
            true if !was => {
                enter_keeping(conn, partner_id, badge.group(), survivor, held, now, cause).await?;
                delta += 1;
            }
            false if was => {
                leave_many(
                    conn,
                    partner_id,
                    badge.group(),
                    &[survivor],
                    now,
                    cause,
                    None,
                )
                .await?;
                delta -= 1;
            }
            _ => {}
        }
        if delta != 0 {
            badges::Entity::update_many()
                .col_expr(
                    badges::Column::MemberCount,
                    Expr::col(badges::Column::MemberCount).add(delta),
                )
                .filter(badges::Column::PartnerId.eq(partner_id))
                .filter(badges::Column::Id.eq(badge.id))
                .exec(conn)
                .await?;
        }
    }
    Ok(())
}

/// The badges a customer holds: since when and by what cause.
pub(crate) async fn holdings(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<BTreeMap<Uuid, (DateTime<Utc>, MembershipCause)>, ApiError> {
    let rows: Vec<(Uuid, DateTime<Utc>, String)> = badge_members::Entity::find()
        .select_only()
        .column(badge_members::Column::BadgeId)
        .column(badge_members::Column::AddedAt)
        .column(badge_members::Column::Cause)
        .filter(badge_members::Column::PartnerId.eq(partner_id))
        .filter(badge_members::Column::CustomerId.eq(customer_id))
        .into_tuple()
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(badge, at, cause)| {
            let cause = MembershipCause::parse_str(&cause).unwrap_or(MembershipCause::Creation);
            (badge, (at, cause))
        })
        .collect())
}

/// The ids of the badges a customer holds, in id order.
pub(crate) async fn held_ids(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<Vec<Uuid>, ApiError> {
    Ok(badge_members::Entity::find()
        .select_only()
        .column(badge_members::Column::BadgeId)
        .filter(badge_members::Column::PartnerId.eq(partner_id))
        .filter(badge_members::Column::CustomerId.eq(customer_id))
        .order_by_asc(badge_members::Column::BadgeId)
        .into_tuple()
        .all(conn)
        .await?)
}

/// The criteria of the partner's badges (those that have one).
pub(crate) async fn criteria(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
) -> Result<Vec<Criterion>, ApiError> {
    let rows = badges::Entity::find()
        .filter(badges::Column::PartnerId.eq(partner_id))
        .all(conn)
        .await?;
    let mut out = Vec::new();
    for row in rows {
        out.extend(badge_from(row)?.criterion);
    }
    Ok(out)
}

/// Every Flexi badge of every partner not recalculated since `slot`, as (partner, badge).
pub(crate) async fn due(
    db: &DatabaseConnection,
    slot: DateTime<Utc>,
) -> Result<Vec<(Uuid, Uuid)>, ApiError> {
    Ok(badges::Entity::find()
        .select_only()
        .column(badges::Column::PartnerId)
        .column(badges::Column::Id)
        .filter(badges::Column::Kind.eq(BadgeKind::Flexi.as_str()))
        .filter(
            sea_orm::Condition::any()
                .add(badges::Column::LastRecalculatedAt.is_null())
                .add(badges::Column::LastRecalculatedAt.lt(slot)),
        )
        .order_by_asc(badges::Column::Id)
        .into_tuple()
        .all(db)
        .await?)
}

impl Store {
    /// Records a new badge and assigns it (cause `creation`) to every customer of the partner
    /// its criterion admits now, if it has one.
    pub async fn create_badge(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        mut badge: Badge,
    ) -> Result<Badge, ApiError> {
        let now = stored_time(badge.created_at);
        badge.created_at = now;
        if let Some(c) = &badge.criterion {
            let me = (GroupKind::Badge, badge.id);
            self.check_references(conn, partner_id, me, "badge.criterion", c)
                .await?;
        }
        let holders = match &badge.criterion {
            Some(c) => self.admitted(conn, partner_id, c, now).await?,
            None => Vec::new(),
        };
        badge.recalculated(holders.len(), now);
        badges::Entity::insert(badges::ActiveModel {
            id: Set(badge.id),
            partner_id: Set(partner_id),
            display_name: Set(badge.display_name.clone()),
            kind: Set(badge.kind.as_str().to_owned()),
            criterion: Set(badge.criterion.as_ref().map(Criterion::to_json)),
            icon_url: Set(badge.icon.url.clone()),
            icon_content_type: Set(badge.icon.content_type.clone()),
            visible_to_customer: Set(badge.visible_to_customer),
            note: Set(badge.note.clone()),
            member_count: Set(badge.member_count),
            last_recalculated_at: Set(badge.last_recalculated_at),
            created_at: Set(badge.created_at),
            version: Set(badge.version),
            updated_at: Set(badge.updated_at),
        })
        .exec_without_returning(conn)
        .await?;
        let cause = MembershipCause::Creation;
        enter_many(conn, partner_id, badge.group(), &holders, now, cause, None).await?;
        Ok(badge)
    }

    /// A badge of `partner_id`; another partner's badge is `None`.
    pub async fn badge(&self, partner_id: Uuid, id: Uuid) -> Result<Option<Badge>, ApiError> {
        find_badge(&self.db, partner_id, id).await
    }

    /// The partner's badges, newest first, after the badge `after`.
    pub async fn list_badges(
        &self,
        partner_id: Uuid,
        kind: Option<BadgeKind>,
        limit: u64,
        after: Option<Uuid>,
    ) -> Result<Vec<Badge>, ApiError> {
        let mut q = badges::Entity::find().filter(badges::Column::PartnerId.eq(partner_id));
        if let Some(kind) = kind {
            q = q.filter(badges::Column::Kind.eq(kind.as_str()));
        }
        if let Some(after) = after {
            q = q.filter(badges::Column::Id.lt(after));
        }
        q.order_by_desc(badges::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(badge_from)
            .collect()
    }

    /// Replaces a badge's definition by `update(current)` (version-guarded, `etag` checked
    /// when sent). Holders stay; a new Flexi criterion applies at the next recalculation.
    pub async fn update_badge(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        badge_id: Uuid,
        etag: &str,
        update: impl FnOnce(&Badge) -> Result<Badge, ApiError>,
    ) -> Result<Badge, ApiError> {
        let current = lock_badge(conn, partner_id, badge_id).await?;
        check_etag(etag, &current.etag(), "badge")?;
        let next = update(&current)?;
        if let Some(c) = &next.criterion
            && next.criterion != current.criterion
        {
            let me = (GroupKind::Badge, badge_id);
            self.check_references(conn, partner_id, me, "badge.criterion", c)
                .await?;
        }
        let written = badges::Entity::update_many()
            .col_expr(
                badges::Column::DisplayName,
                Expr::value(next.display_name.clone()),
            )
            .col_expr(badges::Column::Kind, Expr::value(next.kind.as_str()))
            .col_expr(
                badges::Column::Criterion,
                Expr::value(next.criterion.as_ref().map(Criterion::to_json)),
            )
            .col_expr(badges::Column::IconUrl, Expr::value(next.icon.url.clone()))
            .col_expr(
                badges::Column::IconContentType,
                Expr::value(next.icon.content_type.clone()),
            )
            .col_expr(
                badges::Column::VisibleToCustomer,
                Expr::value(next.visible_to_customer),
            )
            .col_expr(badges::Column::Note, Expr::value(next.note.clone()))
            .col_expr(badges::Column::Version, Expr::value(next.version))
            .col_expr(badges::Column::UpdatedAt, Expr::value(next.updated_at))
            .filter(badges::Column::PartnerId.eq(partner_id))
            .filter(badges::Column::Id.eq(badge_id))
            .filter(badges::Column::Version.eq(current.version))
            .exec(conn)
            .await?;
        check_guarded_write(written.rows_affected, "badge")?;
        Ok(next)
    }

    /// Deletes a badge: every holder loses it (history cause `group_deleted`, kept after the
    /// badge is gone, and `BadgeRemoved`).
    pub async fn delete_badge(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        badge_id: Uuid,
        etag: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        let now = stored_time(now);
        let badge = lock_badge(conn, partner_id, badge_id).await?;
        check_etag(etag, &badge.etag(), "badge")?;
        self.check_unreferenced(conn, partner_id, (GroupKind::Badge, badge_id))
            .await?;
        let holders = member_ids(conn, partner_id, GroupKind::Badge, badge_id).await?;
        let cause = MembershipCause::GroupDeleted;
        leave_many(conn, partner_id, badge.group(), &holders, now, cause, None).await?;
        badges::Entity::delete_many()
            .filter(badges::Column::PartnerId.eq(partner_id))
            .filter(badges::Column::Id.eq(badge_id))
            .exec(conn)
            .await?;
        Ok(())
    }

    /// Assigns a badge by hand (operator or workflow); a held badge stays as it was.
    /// NOT_FOUND for an unknown badge or customer of the partner.
    pub async fn assign_badge(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        badge_id: Uuid,
        customer_id: Uuid,
        by: ManualChange,
        now: DateTime<Utc>,
    ) -> Result<BadgeChange, ApiError> {
        let now = stored_time(now);
        let mut badge = lock_badge(conn, partner_id, badge_id).await?;
        if !self.knows_customer(conn, partner_id, customer_id).await? {
            return Err(ApiError::NotFound("customer".into()));
        }
        let held = on_members!(
            GroupKind::Badge,
            find(conn, partner_id, badge_id, customer_id)
        )?;
        let (member, changed) = match held {
            Some(m) => (m, false),
            None => {
                let (cause, run) = (by.cause(), by.workflow_execution_id());
                enter_many(
                    conn,
                    partner_id,
                    badge.group(),
                    &[customer_id],
                    now,
                    cause,
                    run,
                )
                .await?;
                badge.member_count = badge.member_count.saturating_add(1);
                write_counts(conn, partner_id, &badge).await?;
                let m = Member {
                    customer_id,
                    added_at: now,
                    cause,
                };
                (m, true)
            }
        };
        Ok(BadgeChange {
            held: Some(customer_badge(&badge, &member)),
            badge,
            changed,
        })
    }

    /// Removes a badge from a customer by hand; removing an unheld badge changes nothing.
    /// NOT_FOUND for an unknown badge of the partner.
    pub async fn remove_badge(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        badge_id: Uuid,
        customer_id: Uuid,
        by: ManualChange,
        now: DateTime<Utc>,
    ) -> Result<BadgeChange, ApiError> {
        let now = stored_time(now);
        let mut badge = lock_badge(conn, partner_id, badge_id).await?;
        let held = on_members!(
            GroupKind::Badge,
            find(conn, partner_id, badge_id, customer_id)
        )?;
        if held.is_some() {
            let (cause, run) = (by.cause(), by.workflow_execution_id());
            leave_many(
                conn,
                partner_id,
                badge.group(),
                &[customer_id],
                now,
                cause,
                run,
            )
            .await?;
            badge.member_count = (badge.member_count - 1).max(0);
            write_counts(conn, partner_id, &badge).await?;
        }
        Ok(BadgeChange {
            badge,
            held: None,
            changed: held.is_some(),
        })
    }

    /// A page of a badge's holders by customer id, after `after`; NOT_FOUND for another
    /// partner's badge.
    pub async fn badge_members(
        &self,
        partner_id: Uuid,
        badge_id: Uuid,
        limit: u64,
        after: Option<Uuid>,
    ) -> Result<Vec<Member>, ApiError> {
        if self.badge(partner_id, badge_id).await?.is_none() {
            return Err(not_found());
        }
        on_members!(
            GroupKind::Badge,
            page(&self.db, partner_id, badge_id, limit, after)
        )
    }

    /// The ids of every badge the customer holds (the facts `badges.<id>` of online
    /// recalculation).
    pub async fn customer_badge_ids(
        &self,
        partner_id: Uuid,
        customer_id: Uuid,
    ) -> Result<Vec<Uuid>, ApiError> {
        held_ids(&self.db, partner_id, customer_id).await
    }

    /// A page of the badges a customer holds, newest assignment first, after
    /// `(assigned at, badge id)`.
    pub async fn customer_badges(
        &self,
        partner_id: Uuid,
        customer_id: Uuid,
        limit: u64,
        after: Option<(DateTime<Utc>, Uuid)>,
    ) -> Result<Vec<CustomerBadge>, ApiError> {
        let mut q = badge_members::Entity::find()
            .filter(badge_members::Column::PartnerId.eq(partner_id))
            .filter(badge_members::Column::CustomerId.eq(customer_id));
        if let Some(after) = after {
            q = q.filter(paging::older_than(
                badge_members::Column::AddedAt,
                badge_members::Column::BadgeId,
                after,
            ));
        }
        let held = q
            .order_by_desc(badge_members::Column::AddedAt)
            .order_by_desc(badge_members::Column::BadgeId)
            .limit(limit)
            .all(&self.db)
            .await?;
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let badges: BTreeMap<Uuid, Badge> = badges::Entity::find()
            .filter(badges::Column::PartnerId.eq(partner_id))
            .filter(badges::Column::Id.is_in(held.iter().map(|m| m.badge_id)))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|b| badge_from(b).map(|b| (b.id, b)))
            .collect::<Result<_, _>>()?;
        Ok(held
            .into_iter()
            .filter_map(|m| {
                let member = Member {
                    customer_id,
                    added_at: m.added_at,
                    cause: MembershipCause::parse_str(&m.cause)
                        .unwrap_or(MembershipCause::Creation),
                };
                Some(customer_badge(badges.get(&m.badge_id)?, &member))
            })
            .collect())
    }
}

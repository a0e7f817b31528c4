//! The segment lifecycle in the database: listing, updating and deleting segments,
//! recalculating Flexi segments (on demand and nightly), adding and removing customers by hand,
//! and the pages of members and membership history. Every change of one segment's members
//! runs in one transaction under the segment's lock (a PostgreSQL advisory lock; SQLite
//! serialises writers), so two recalculations, or a recalculation and a manual change, never
//! interleave.
use std::{collections::BTreeMap, time::Duration as StdDuration};

use chrono::{DateTime, NaiveTime, Utc};
use loyalty_criteria::Criterion;
use loyalty_platform::{
    ApiError,
    db::{advisory_xact_lock, begin_write},
    error::{check_etag, check_guarded_write},
    events, paging,
};
use loyalty_proto::events::v1 as ev;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use super::{
    Store,
    cache::{Change, MembershipCache},
    entities::{customer_features, membership_history, segments},
    groups::on_members,
    segment_from,
};
use crate::domain::{
    Group, GroupId, GroupKind, HistoryEntry, ManualChange, Member, MembershipCause, Recalculation,
    Segment, SegmentKind, SegmentRule, StoredMembership, due_for, last_daily_run, next_attempt,
};

/// Rows written (or ids matched) per statement when many members change at once.
const CHUNK: usize = 500;

/// Filters of ListSegments.
#[derive(Debug, Clone, Copy, Default)]
pub struct SegmentFilter {
    pub kind: Option<SegmentKind>,
    pub online_only: bool,
}

/// Filters of ListMembershipHistory: at least one of customer and group.
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryFilter {
    pub customer_id: Option<Uuid>,
    /// A segment or badge.
    pub group_id: Option<Uuid>,
    /// Only changes of this kind of group; `None` = all.
    pub group_kind: Option<GroupKind>,
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// The outcome of a recalculation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Recalculated {
    pub segment: Segment,
    pub entered: u64,
    pub left: u64,
}

impl Recalculated {
    /// What the recalculation makes stale: the segment's row, and everyone's memberships
    /// when anyone entered or left.
    pub fn cache_changes(&self) -> Vec<Change> {
        let mut changes = vec![Change::Segments];
        if self.entered + self.left > 0 {
            changes.push(Change::Members);
        }
        changes
    }
}

/// The outcome of a manual or workflow change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManualOutcome {
    pub segment: Segment,
    /// The membership after the change (`None` after a removal).
    pub membership: Option<StoredMembership>,
    /// Whether anything changed (false for adding a member or removing a non-member).
    pub changed: bool,
}

/// `t` at the precision the database keeps (microseconds), so that what a call answers is
/// what a later read returns.
pub(crate) fn stored_time(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound;
    t.trunc_subsecs(6)
}

pub(crate) fn rule(r: SegmentRule) -> ApiError {
    ApiError::precondition(r.reason(), r.message())
}

fn not_found() -> ApiError {
    ApiError::NotFound("segment".into())
}

fn lock_key(segment_id: Uuid) -> String {
    format!("segmentation-segment:{segment_id}")
}

/// Locks a segment of the partner for the rest of the transaction and reads it.
async fn lock_segment(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    segment_id: Uuid,
) -> Result<Segment, ApiError> {
    advisory_xact_lock(conn, &lock_key(segment_id)).await?;
    segments::Entity::find_by_id(segment_id)
        .filter(segments::Column::PartnerId.eq(partner_id))
        .one(conn)
        .await?
        .map(segment_from)
        .transpose()?
        .ok_or_else(not_found)
}

fn history_row(
    partner_id: Uuid,
    group: Group<'_>,
    customer_id: Uuid,
    entered: bool,
    cause: MembershipCause,
    workflow_execution_id: Option<Uuid>,
    at: DateTime<Utc>,
) -> membership_history::ActiveModel {
    membership_history::ActiveModel {
        id: Set(Uuid::now_v7()),
        partner_id: Set(partner_id),
        segment_id: Set(group.id),
        customer_id: Set(customer_id),
        change: Set(if entered { "entered" } else { "left" }.to_owned()),
        at: Set(at),
        cause: Set(cause.as_str().to_owned()),
        workflow_execution_id: Set(workflow_execution_id),
        segment_display_name: Set(group.display_name.to_owned()),
        group_kind: Set(group.kind.as_str().to_owned()),
    }
}

/// Publishes one membership event per customer: `SegmentEntered`/`SegmentLeft` for a
/// segment, `BadgeAssigned`/`BadgeRemoved` for a badge.
async fn publish_changes(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    group: Group<'_>,
    customers: &[Uuid],
    entered: bool,
    cause: MembershipCause,
) -> Result<(), ApiError> {
    let (group_id, cause) = (group.id.to_string(), cause.as_str().to_owned());
    let partner = Some(partner_id);
    match (group.kind, entered) {
        (GroupKind::Segment, true) => {
            enqueue_each(conn, partner, customers, |customer_id| ev::SegmentEntered {
                segment_id: group_id.clone(),
                customer_id,
                cause: cause.clone(),
            })
            .await
        }
        (GroupKind::Segment, false) => {
            enqueue_each(conn, partner, customers, |customer_id| ev::SegmentLeft {
                segment_id: group_id.clone(),
                customer_id,
                cause: cause.clone(),
            })
            .await
        }
        (GroupKind::Badge, true) => {
            enqueue_each(conn, partner, customers, |customer_id| ev::BadgeAssigned {
                badge_id: group_id.clone(),
                customer_id,
                cause: cause.clone(),
            })
            .await
        }
        (GroupKind::Badge, false) => {
            enqueue_each(conn, partner, customers, |customer_id| ev::BadgeRemoved {
                badge_id: group_id.clone(),
                customer_id,
                cause: cause.clone(),
            })
            .await
        }
    }
}

/// One event per customer, made by `make` from the customer's id.
async fn enqueue_each<E: events::DomainEvent>(
    conn: &impl ConnectionTrait,
    partner: Option<Uuid>,
    customers: &[Uuid],
    make: impl Fn(String) -> E,
) -> Result<(), ApiError> {
    let e: Vec<E> = customers.iter().map(|c| make(c.to_string())).collect();
    events::enqueue_all(conn, partner, &e).await?;
    Ok(())
}

/// Stores `customers` (not members yet) as members of `group` since `at`, records their
/// entry in the history and publishes an entered/assigned event for each. Counts are the
/// caller's.
pub(crate) async fn enter_many(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    group: Group<'_>,
    customers: &[Uuid],
    at: DateTime<Utc>,
    cause: MembershipCause,
    workflow_execution_id: Option<Uuid>,
) -> Result<(), ApiError> {
    change_many(
        conn,
        partner_id,
        group,
        customers,
        true,
        at,
        cause,
        workflow_execution_id,
    )
    .await
}

/// Removes `customers` (members) from `group`, records their leaving in the history and
/// publishes a left/removed event for each. Counts are the caller's.
pub(crate) async fn leave_many(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    group: Group<'_>,
    customers: &[Uuid],
    at: DateTime<Utc>,
    cause: MembershipCause,
    workflow_execution_id: Option<Uuid>,
) -> Result<(), ApiError> {
    change_many(
        conn,
        partner_id,
        group,
        customers,
        false,
        at,
        cause,
        workflow_execution_id,
    )
    .await
}

/// Stores `customer` as a member of `group`, since the time and with the cause of `kept`
/// (the merged account's membership it takes over) or else since `at` with `cause`; records
/// the entering at `at` with `cause` and publishes the event. Counts are the caller's.
pub(crate) async fn enter_keeping(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    group: Group<'_>,
    customer: Uuid,
    kept: Option<(DateTime<Utc>, MembershipCause)>,
    at: DateTime<Utc>,
    cause: MembershipCause,
) -> Result<(), ApiError> {
    let (since, stored) = kept.unwrap_or((at, cause));
    on_members!(
        group.kind,
        insert(conn, partner_id, group.id, &[customer], since, stored)
    )?;
    membership_history::Entity::insert(history_row(
        partner_id, group, customer, true, cause, None, at,
    ))
    .exec_without_returning(conn)
    .await?;
    publish_changes(conn, partner_id, group, &[customer], true, cause).await
}

#[allow(clippy::too_many_arguments)]
async fn change_many(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    group: Group<'_>,
    customers: &[Uuid],
    entered: bool,
    at: DateTime<Utc>,
    cause: MembershipCause,
    workflow_execution_id: Option<Uuid>,
) -> Result<(), ApiError> {
    for chunk in customers.chunks(CHUNK) {
        if entered {
            on_members!(
                group.kind,
                insert(conn, partner_id, group.id, chunk, at, cause)
            )?;
        } else {
            on_members!(group.kind, delete(conn, partner_id, group.id, chunk))?;
        }
        membership_history::Entity::insert_many(chunk.iter().map(|c| {
            history_row(
                partner_id,
                group,
                *c,
                entered,
                cause,
                workflow_execution_id,
                at,
            )
        }))
        .exec_without_returning(conn)
        .await?;
        publish_changes(conn, partner_id, group, chunk, entered, cause).await?;
    }
    Ok(())
}

/// Every member of a group, by customer id.
pub(crate) async fn member_ids(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    group: GroupKind,
    group_id: Uuid,
) -> Result<Vec<Uuid>, ApiError> {
    on_members!(group, ids(conn, partner_id, group_id))
}

/// Writes a segment's member count and recalculation time.
async fn write_counts(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    segment: &Segment,
) -> Result<(), ApiError> {
    segments::Entity::update_many()
        .col_expr(
            segments::Column::MemberCount,
            Expr::value(segment.member_count),
        )
        .col_expr(
            segments::Column::LastRecalculatedAt,
            Expr::value(segment.last_recalculated_at),
        )
        .filter(segments::Column::PartnerId.eq(partner_id))
        .filter(segments::Column::Id.eq(segment.id))
        .exec(conn)
        .await?;
    Ok(())
}

async fn changed(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    segment_id: Uuid,
) -> Result<(), ApiError> {
    events::enqueue(
        conn,
        Some(partner_id),
        &ev::SegmentChanged {
            segment_id: segment_id.to_string(),
        },
    )
    .await?;
    Ok(())
}

/// What re-running a criterion changed in a group's members.
pub(crate) struct Rerun {
    pub entered: u64,
    pub left: u64,
    /// Members after the run.
    pub member_count: usize,
}

/// Re-runs `criterion` for a locked group at `now` (already at stored precision): admits
/// newcomers and expels members who no longer match (however they were added), with
/// history rows and events of cause `recalculation`. Counts are the caller's to store.
pub(crate) async fn rerun(
    store: &Store,
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    group: Group<'_>,
    criterion: &Criterion,
    now: DateTime<Utc>,
) -> Result<Rerun, ApiError> {
    let admitted = store.admitted(conn, partner_id, criterion, now).await?;
    let members = member_ids(conn, partner_id, group.kind, group.id).await?;
    let Recalculation { entered, left } = Recalculation::between(&members, &admitted);
    let cause = MembershipCause::Recalculation;
    leave_many(conn, partner_id, group, &left, now, cause, None).await?;
    enter_many(conn, partner_id, group, &entered, now, cause, None).await?;
    Ok(Rerun {
        entered: entered.len() as u64,
        left: left.len() as u64,
        member_count: members.len() - left.len() + entered.len(),
    })
}

/// Re-runs a locked Flexi segment's criterion at `now` and stores the count and time.
async fn recalculate_locked(
    store: &Store,
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    mut segment: Segment,
    now: DateTime<Utc>,
) -> Result<Recalculated, ApiError> {
    segment.check_recalculable().map_err(rule)?;
    let now = stored_time(now);
    let r = rerun(
        store,
        conn,
        partner_id,
        segment.group(),
        &segment.criterion,
        now,
    )
    .await?;
    segment.recalculated(r.member_count, now);
    write_counts(conn, partner_id, &segment).await?;
    changed(conn, partner_id, segment.id).await?;
    Ok(Recalculated {
        segment,
        entered: r.entered,
        left: r.left,
    })
}

impl Store {
    /// The partner's segments, newest first, after the segment `after`.
    pub async fn list_segments(
        &self,
        partner_id: Uuid,
        filter: SegmentFilter,
        limit: u64,
        after: Option<Uuid>,
    ) -> Result<Vec<Segment>, ApiError> {
        let mut q = segments::Entity::find().filter(segments::Column::PartnerId.eq(partner_id));
        if let Some(kind) = filter.kind {
            q = q.filter(segments::Column::Kind.eq(kind.as_str()));
        }
        if filter.online_only {
            q = q.filter(segments::Column::OnlineRecalculation.eq(true));
        }
        if let Some(after) = after {
            q = q.filter(segments::Column::Id.lt(after));
        }
        q.order_by_desc(segments::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(segment_from)
            .collect()
    }

    /// Replaces a segment's definition by `update(current)` (version-guarded, `etag` checked
    /// when sent) and publishes `SegmentChanged`. A criterion that now reads the cart stores
    /// no members, so the stored ones leave (cause recalculation).
    pub async fn update_segment(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        segment_id: Uuid,
        etag: &str,
        update: impl FnOnce(&Segment) -> Result<Segment, ApiError>,
    ) -> Result<Segment, ApiError> {
        let current = lock_segment(conn, partner_id, segment_id).await?;
        check_etag(etag, &current.etag(), "segment")?;
        let mut next = update(&current)?;
        let now = next.updated_at.unwrap_or_else(Utc::now);
        let me = (GroupKind::Segment, segment_id);
        if next.criterion != current.criterion {
            self.check_references(conn, partner_id, me, "segment.criterion", &next.criterion)
                .await?;
        }
        if current.stores_members() && !next.stores_members() {
            // Groups reading its membership would silently read "nobody".
            self.check_unreferenced(conn, partner_id, me).await?;
            let members = member_ids(conn, partner_id, GroupKind::Segment, segment_id).await?;
            leave_many(
                conn,
                partner_id,
                next.group(),
                &members,
                now,
                MembershipCause::Recalculation,
                None,
            )
            .await?;
            next.member_count = 0;
        }
        let written = segments::Entity::update_many()
            .col_expr(
                segments::Column::DisplayName,
                Expr::value(next.display_name.clone()),
            )
            .col_expr(segments::Column::Kind, Expr::value(next.kind.as_str()))
            .col_expr(
                segments::Column::OnlineRecalculation,
                Expr::value(next.online_recalculation),
            )
            .col_expr(
                segments::Column::Criterion,
                Expr::value(next.criterion.to_json()),
            )
            .col_expr(segments::Column::Note, Expr::value(next.note.clone()))
            .col_expr(
                segments::Column::MemberCount,
                Expr::value(next.member_count),
            )
            .col_expr(segments::Column::Version, Expr::value(next.version))
            .col_expr(segments::Column::UpdatedAt, Expr::value(next.updated_at))
            .filter(segments::Column::PartnerId.eq(partner_id))
            .filter(segments::Column::Id.eq(segment_id))
            .filter(segments::Column::Version.eq(current.version))
            .exec(conn)
            .await?;
        check_guarded_write(written.rows_affected, "segment")?;
        changed(conn, partner_id, segment_id).await?;
        Ok(next)
    }

    /// Deletes a segment: every member leaves (history cause `group_deleted`, kept after the
    /// segment is gone) and `SegmentChanged` is published.
    pub async fn delete_segment(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        segment_id: Uuid,
        etag: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        let now = stored_time(now);
        let segment = lock_segment(conn, partner_id, segment_id).await?;
        check_etag(etag, &segment.etag(), "segment")?;
        self.check_unreferenced(conn, partner_id, (GroupKind::Segment, segment_id))
            .await?;
        let members = member_ids(conn, partner_id, GroupKind::Segment, segment_id).await?;
        leave_many(
            conn,
            partner_id,
            segment.group(),
            &members,
            now,
            MembershipCause::GroupDeleted,
            None,
        )
        .await?;
        segments::Entity::delete_many()
            .filter(segments::Column::PartnerId.eq(partner_id))
            .filter(segments::Column::Id.eq(segment_id))
            .exec(conn)
            .await?;
        changed(conn, partner_id, segment_id).await
    }

    /// Recalculates a Flexi segment now. A concurrent recalculation (or manual change) of the
    /// same segment is waited for; this one then finds only what is left to change.
    pub async fn recalculate(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        segment_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Recalculated, ApiError> {
        let segment = lock_segment(conn, partner_id, segment_id).await?;
        recalculate_locked(self, conn, partner_id, segment, now).await
    }

    /// Whether the partner has the group (a segment or a badge; either for `None`).
    pub async fn group_exists(
        &self,
        partner_id: Uuid,
        kind: Option<GroupKind>,
        id: Uuid,
    ) -> Result<bool, ApiError> {
        let segment = matches!(kind, None | Some(GroupKind::Segment))
            && self.segment(partner_id, id).await?.is_some();
        let badge = matches!(kind, None | Some(GroupKind::Badge))
            && self.badge(partner_id, id).await?.is_some();
        Ok(segment || badge)
    }

    /// Whether segmentation knows the partner's customer (has their features: it heard of
    /// them and they were neither erased nor merged away).
    pub async fn knows_customer(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        customer_id: Uuid,
    ) -> Result<bool, ApiError> {
        Ok(
            customer_features::Entity::find_by_id((partner_id, customer_id))
                .one(conn)
                .await?
                .is_some(),
        )
    }

    /// Adds a customer to a segment by hand (operator or workflow); a member stays as they
    /// were. NOT_FOUND for an unknown segment or customer of the partner.
    pub async fn add_customer(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        segment_id: Uuid,
        customer_id: Uuid,
        by: ManualChange,
        now: DateTime<Utc>,
    ) -> Result<ManualOutcome, ApiError> {
        let now = stored_time(now);
        let mut segment = lock_segment(conn, partner_id, segment_id).await?;
        if !self.knows_customer(conn, partner_id, customer_id).await? {
            return Err(ApiError::NotFound("customer".into()));
        }
        segment.check_manual_change().map_err(rule)?;
        let existing = on_members!(
            GroupKind::Segment,
            find(conn, partner_id, segment_id, customer_id)
        )?;
        let (member, changed_now) = match existing {
            Some(m) => (m, false),
            None => {
                enter_many(
                    conn,
                    partner_id,
                    segment.group(),
                    &[customer_id],
                    now,
                    by.cause(),
                    by.workflow_execution_id(),
                )
                .await?;
                segment.member_count = segment.member_count.saturating_add(1);
                write_counts(conn, partner_id, &segment).await?;
                changed(conn, partner_id, segment_id).await?;
                let m = Member {
                    customer_id,
                    added_at: now,
                    cause: by.cause(),
                };
                (m, true)
            }
        };
        let membership = StoredMembership {
            segment_id,
            segment_display_name: segment.display_name.clone(),
            added_at: member.added_at,
            cause: member.cause,
            segment: segment.overview(),
        };
        Ok(ManualOutcome {
            segment,
            membership: Some(membership),
            changed: changed_now,
        })
    }

    /// Removes a customer from a segment by hand; removing a non-member changes nothing.
    /// NOT_FOUND for an unknown segment of the partner.
    pub async fn remove_customer(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        segment_id: Uuid,
        customer_id: Uuid,
        by: ManualChange,
        now: DateTime<Utc>,
    ) -> Result<ManualOutcome, ApiError> {
        let now = stored_time(now);
        let mut segment = lock_segment(conn, partner_id, segment_id).await?;
        segment.check_manual_change().map_err(rule)?;
        let member = on_members!(
            GroupKind::Segment,
            find(conn, partner_id, segment_id, customer_id)
        )?;
        if member.is_some() {
            leave_many(
                conn,
                partner_id,
                segment.group(),
                &[customer_id],
                now,
                by.cause(),
                by.workflow_execution_id(),
            )
            .await?;
            segment.member_count = (segment.member_count - 1).max(0);
            write_counts(conn, partner_id, &segment).await?;
            changed(conn, partner_id, segment_id).await?;
        }
        Ok(ManualOutcome {
            segment,
            membership: None,
            changed: member.is_some(),
        })
    }

    /// A page of a segment's members by customer id, after `after`; NOT_FOUND for another
    /// partner's segment.
    pub async fn members(
        &self,
        partner_id: Uuid,
        segment_id: Uuid,
        limit: u64,
        after: Option<Uuid>,
    ) -> Result<Vec<Member>, ApiError> {
        if self.segment(partner_id, segment_id).await?.is_none() {
            return Err(not_found());
        }
        on_members!(
            GroupKind::Segment,
            page(&self.db, partner_id, segment_id, limit, after)
        )
    }

    /// A page of membership history, newest first, after `(at, id)`. A group the partner
    /// never had, or a customer it does not know and has no history of, is NOT_FOUND.
    pub async fn history(
        &self,
        partner_id: Uuid,
        filter: HistoryFilter,
        limit: u64,
        after: Option<(DateTime<Utc>, Uuid)>,
    ) -> Result<Vec<HistoryEntry>, ApiError> {
        let base = || {
            let mut q = membership_history::Entity::find()
                .filter(membership_history::Column::PartnerId.eq(partner_id));
            if let Some(c) = filter.customer_id {
                q = q.filter(membership_history::Column::CustomerId.eq(c));
            }
            if let Some(s) = filter.group_id {
                q = q.filter(membership_history::Column::SegmentId.eq(s));
            }
            if let Some(k) = filter.group_kind {
                q = q.filter(membership_history::Column::GroupKind.eq(k.as_str()));
            }
            q
        };
        let mut q = base();
        if let Some(from) = filter.from {
            q = q.filter(membership_history::Column::At.gte(from));
        }
        if let Some(until) = filter.until {
            q = q.filter(membership_history::Column::At.lt(until));
        }
        if let Some(after) = after {
            q = q.filter(paging::older_than(
                membership_history::Column::At,
                membership_history::Column::Id,
                after,
            ));
        }
        let rows = q
            .order_by_desc(membership_history::Column::At)
            .order_by_desc(membership_history::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        if rows.is_empty() && after.is_none() {
            if let Some(g) = filter.group_id
                && !self.group_exists(partner_id, filter.group_kind, g).await?
                && base().one(&self.db).await?.is_none()
            {
                return Err(not_found());
            }
            if let Some(c) = filter.customer_id
                && !self.knows_customer(&self.db, partner_id, c).await?
                && base().one(&self.db).await?.is_none()
            {
                return Err(ApiError::NotFound("customer".into()));
            }
        }
        Ok(rows
            .into_iter()
            .map(|h| HistoryEntry {
                id: h.id,
                customer_id: h.customer_id,
                group_kind: GroupKind::parse_str(&h.group_kind).unwrap_or(GroupKind::Segment),
                group_id: h.segment_id,
                group_display_name: h.segment_display_name,
                entered: h.change == "entered",
                cause: MembershipCause::parse_str(&h.cause).unwrap_or(MembershipCause::Creation),
                workflow_execution_id: h.workflow_execution_id,
                at: h.at,
            })
            .collect())
    }
}

/// What one nightly run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NightlyRun {
    /// Segments recalculated by this run.
    pub recalculated: u64,
    pub entered: u64,
    pub left: u64,
    /// Segments found due but already recalculated for this slot when locked (by another
    /// replica or an on-demand call) or no longer Flexi.
    pub skipped: u64,
    /// Segments whose recalculation failed (retried at the next run).
    pub failed: u64,
}

/// Recalculates every Flexi segment and Flexi badge of every partner not recalculated since
/// `slot`, each in its own transaction under its lock. Several replicas may run it at once:
/// each group is re-read after its lock is taken and skipped once recalculated for the slot.
pub async fn recalculate_due(
    store: &Store,
    cache: &MembershipCache,
    slot: DateTime<Utc>,
) -> Result<NightlyRun, ApiError> {
    let db = store.db();
    let segments: Vec<(Uuid, Uuid)> = segments::Entity::find()
        .select_only()
        .column(segments::Column::PartnerId)
        .column(segments::Column::Id)
        .filter(segments::Column::Kind.eq(SegmentKind::Flexi.as_str()))
        .filter(
            Condition::any()
                .add(segments::Column::LastRecalculatedAt.is_null())
                .add(segments::Column::LastRecalculatedAt.lt(slot)),
        )
        .order_by_asc(segments::Column::Id)
        .into_tuple()
        .all(db)
        .await?;
    let badges = super::badges::due(db, slot).await?;
    let mut by_partner: BTreeMap<Uuid, Vec<GroupId>> = BTreeMap::new();
    let all = segments
        .into_iter()
        .map(|(p, id)| (p, (GroupKind::Segment, id)))
        .chain(
            badges
                .into_iter()
                .map(|(p, id)| (p, (GroupKind::Badge, id))),
        );
    for (partner_id, group) in all {
        by_partner.entry(partner_id).or_default().push(group);
    }
    // Referenced groups first, so a group reading another's membership sees tonight's.
    let mut due = Vec::new();
    for (partner_id, groups) in by_partner {
        let ordered = match store.reference_graph(db, partner_id).await {
            Ok(graph) => graph.order(&groups),
            Err(e) => {
                tracing::warn!(%partner_id, error = %e, "reading group references failed");
                groups
            }
        };
        due.extend(ordered.into_iter().map(|(kind, id)| (kind, partner_id, id)));
    }
    let mut run = NightlyRun::default();
    for (kind, partner_id, group_id) in due {
        let done = match kind {
            GroupKind::Segment => {
                match recalculate_one_due(store, partner_id, group_id, slot).await {
                    Ok(Some(r)) => {
                        cache.changed(partner_id, &r.cache_changes()).await;
                        Ok(Some((r.entered, r.left)))
                    }
                    other => other.map(|r| r.map(|r| (r.entered, r.left))),
                }
            }
            GroupKind::Badge => {
                match super::badges::recalculate_if_due(store, partner_id, group_id, slot).await {
                    Ok(Some(r)) => {
                        // The hot path caches each customer's badges.
                        if r.entered + r.left > 0 {
                            cache.changed(partner_id, &[Change::Members]).await;
                        }
                        Ok(Some((r.entered, r.left)))
                    }
                    other => other.map(|r| r.map(|r| (r.entered, r.left))),
                }
            }
        };
        match done {
            Ok(Some((entered, left))) => {
                run.recalculated += 1;
                run.entered += entered;
                run.left += left;
            }
            Ok(None) => run.skipped += 1,
            Err(e) => {
                run.failed += 1;
                tracing::warn!(%partner_id, %group_id, kind = kind.as_str(), error = %e, "nightly recalculation failed");
            }
        }
    }
    Ok(run)
}

async fn recalculate_one_due(
    store: &Store,
    partner_id: Uuid,
    segment_id: Uuid,
    slot: DateTime<Utc>,
) -> Result<Option<Recalculated>, ApiError> {
    let txn = begin_write(store.db()).await?;
    let segment = match lock_segment(&txn, partner_id, segment_id).await {
        Ok(s) => s,
        Err(ApiError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    if !due_for(segment.last_recalculated_at, slot) || segment.check_recalculable().is_err() {
        return Ok(None);
    }
    let r = recalculate_locked(store, &txn, partner_id, segment, Utc::now().max(slot)).await?;
    txn.commit().await?;
    Ok(Some(r))
}

/// Runs the nightly Flexi recalculation (segments and badges) in this process at `at` (UTC) every day. At start it
/// catches up on the last slot (a replica that was down at that time, or a fresh start), then
/// sleeps until the next one.
pub fn spawn_scheduler(store: Store, cache: MembershipCache, at: NaiveTime) {
    tokio::spawn(async move {
        loop {
            let now = Utc::now();
            let slot = last_daily_run(now, at);
            let mut failed = false;
            // RFM first, so Flexi segments on RFM see the night's scores.
            match super::rfm::score_due(store.db(), &cache, slot).await {
                Ok(0) => {}
                Ok(partners) => tracing::info!(%slot, partners, "nightly RFM scoring ran"),
                Err(e) => {
                    failed = true;
                    tracing::warn!(error = %e, "nightly RFM scoring failed");
                }
            }
            match recalculate_due(&store, &cache, slot).await {
                Ok(run) if run.recalculated + run.failed > 0 => {
                    tracing::info!(
                        %slot,
                        recalculated = run.recalculated,
                        entered = run.entered,
                        left = run.left,
                        skipped = run.skipped,
                        failed = run.failed,
                        "nightly Flexi recalculation ran"
                    );
                    failed |= run.failed > 0;
                }
                Ok(_) => {}
                Err(e) => {
                    failed = true;
                    tracing::warn!(error = %e, "nightly Flexi recalculation failed");
                }
            }
            let now = Utc::now();
            let wait = (next_attempt(now, at, failed) - now)
                .to_std()
                .unwrap_or(StdDuration::from_secs(1));
            tokio::time::sleep(wait).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{
        apply, create, customer_in, envelope, flexi, id, in_txn, no_cache, postgres, published,
        purchase, reason, segment, sqlite,
    };
    use loyalty_criteria::{Operator, Value};
    use sea_orm::DatabaseConnection;
    use std::collections::BTreeSet;

    fn buyers() -> Segment {
        flexi(segment(
            "features.purchase_count",
            Operator::GreaterOrEqual,
            Value::Int(1),
            false,
        ))
    }

    fn big_cart() -> Segment {
        flexi(segment(
            "cart.total_minor",
            Operator::GreaterOrEqual,
            Value::Int(5_000),
            true,
        ))
    }

    fn standard_buyers() -> Segment {
        segment(
            "features.purchase_count",
            Operator::GreaterOrEqual,
            Value::Int(1),
            false,
        )
    }

    async fn members_of(store: &Store, partner: Uuid, segment: Uuid) -> BTreeSet<Uuid> {
        store
            .members(partner, segment, 1000, None)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.customer_id)
            .collect()
    }

    /// (entered, cause) of a customer's history in a segment, oldest first.
    async fn history(
        store: &Store,
        partner: Uuid,
        customer: Uuid,
        segment: Uuid,
    ) -> Vec<(bool, MembershipCause)> {
        let filter = HistoryFilter {
            customer_id: Some(customer),
            group_id: Some(segment),
            ..Default::default()
        };
        let mut h: Vec<_> = store
            .history(partner, filter, 1000, None)
            .await
            .unwrap()
            .into_iter()
            .map(|h| (h.entered, h.cause))
            .collect();
        h.reverse();
        h
    }

    /// Jana bought (member at creation), Petr did not and is added by hand, Eva buys later.
    /// A recalculation expels Petr (a manual change of a Flexi segment is overwritten), admits
    /// Eva and Jana (removed by a workflow meanwhile), and the history tells why each moved.
    async fn a_recalculation_adds_matches_and_expels_the_rest_including_manual_members(
        db: DatabaseConnection,
    ) {
        let store = Store::new(db.clone());
        let (partner, other) = (Uuid::now_v7(), Uuid::now_v7());
        let (jana, petr, eva) = (
            customer_in("Praha"),
            customer_in("Brno"),
            customer_in("Praha"),
        );
        for c in [&jana, &petr, &eva] {
            apply(&db, envelope(partner, c)).await;
        }
        apply(&db, envelope(partner, &purchase(&jana, 1_000))).await;
        let s = create(&store, partner, buyers()).await;
        assert_eq!(members_of(&store, partner, s.id).await, [id(&jana)].into());

        let now = stored_time(Utc::now());
        let added = in_txn(&db, async |t| {
            store
                .add_customer(t, partner, s.id, id(&petr), ManualChange::Operator, now)
                .await
        })
        .await
        .unwrap();
        assert!(added.changed);
        assert_eq!(added.segment.member_count, 2);
        let m = added.membership.unwrap();
        assert_eq!((m.cause, m.added_at), (MembershipCause::Manual, now));
        // Again: nothing changes, the membership is the first one.
        let again = in_txn(&db, async |t| {
            store
                .add_customer(
                    t,
                    partner,
                    s.id,
                    id(&petr),
                    ManualChange::Workflow { execution_id: None },
                    Utc::now(),
                )
                .await
        })
        .await
        .unwrap();
        assert!(!again.changed);
        assert_eq!(again.membership.unwrap().cause, MembershipCause::Manual);
        let run = Uuid::now_v7();
        let removed = in_txn(&db, async |t| {
            store
                .remove_customer(
                    t,
                    partner,
                    s.id,
                    id(&jana),
                    ManualChange::Workflow {
                        execution_id: Some(run),
                    },
                    Utc::now(),
                )
                .await
        })
        .await
        .unwrap();
        assert!(removed.changed);
        assert_eq!(removed.segment.member_count, 1);
        let stored = store.memberships(partner, id(&petr)).await.unwrap();
        assert_eq!(stored.len(), 1, "a manual member is a stored member");
        assert_eq!(stored[0].cause, MembershipCause::Manual);
        assert_eq!(stored[0].segment.kind, SegmentKind::Flexi);

        apply(&db, envelope(partner, &purchase(&eva, 300))).await;
        let at = stored_time(Utc::now());
        let r = in_txn(&db, async |t| store.recalculate(t, partner, s.id, at).await)
            .await
            .unwrap();
        assert_eq!((r.entered, r.left), (2, 1));
        assert_eq!(r.segment.member_count, 2);
        assert_eq!(r.segment.last_recalculated_at, Some(at));
        assert_eq!(
            members_of(&store, partner, s.id).await,
            [id(&jana), id(&eva)].into()
        );
        let saved = store.segment(partner, s.id).await.unwrap().unwrap();
        assert_eq!(
            (saved.member_count, saved.last_recalculated_at, saved.etag()),
            (2, Some(at), s.etag()),
            "a recalculation is not a change of the definition"
        );
        use MembershipCause::*;
        assert_eq!(
            history(&store, partner, id(&petr), s.id).await,
            [(true, Manual), (false, Recalculation)]
        );
        assert_eq!(
            history(&store, partner, id(&jana), s.id).await,
            [(true, Creation), (false, Workflow), (true, Recalculation)]
        );
        let workflow_entry = store
            .history(
                partner,
                HistoryFilter {
                    customer_id: Some(id(&jana)),
                    ..Default::default()
                },
                10,
                None,
            )
            .await
            .unwrap()
            .into_iter()
            .find(|h| h.cause == Workflow)
            .unwrap();
        assert_eq!(workflow_entry.workflow_execution_id, Some(run));
        assert_eq!(workflow_entry.group_display_name, "Segment");

        // Nothing left to change: a second run is a no-op.
        let r2 = in_txn(&db, async |t| {
            store.recalculate(t, partner, s.id, Utc::now()).await
        })
        .await
        .unwrap();
        assert_eq!((r2.entered, r2.left), (0, 0));
        // Creation, add, remove, two recalculations.
        assert_eq!(published::<ev::SegmentChanged>(&db, partner).await, 5);
        // One per customer and change: Jana at creation, Petr by hand, Jana and Eva at the
        // recalculation enter; Jana (workflow) and Petr (recalculation) leave.
        assert_eq!(published::<ev::SegmentEntered>(&db, partner).await, 4);
        assert_eq!(published::<ev::SegmentLeft>(&db, partner).await, 2);

        // Another partner's segment and customers are not found.
        let err = in_txn(&db, async |t| {
            store.recalculate(t, other, s.id, Utc::now()).await
        })
        .await
        .unwrap_err();
        assert!(matches!(err, ApiError::NotFound(_)), "{err:?}");
        let other_segment = create(&store, other, buyers()).await;
        let err = in_txn(&db, async |t| {
            store
                .add_customer(
                    t,
                    other,
                    other_segment.id,
                    id(&eva),
                    ManualChange::Operator,
                    Utc::now(),
                )
                .await
        })
        .await
        .unwrap_err();
        assert!(
            matches!(err, ApiError::NotFound(ref w) if w == "customer"),
            "{err:?}"
        );
        assert!(matches!(
            store.members(other, s.id, 10, None).await,
            Err(ApiError::NotFound(_))
        ));
        assert!(matches!(
            store
                .history(
                    other,
                    HistoryFilter {
                        group_id: Some(s.id),
                        ..Default::default()
                    },
                    10,
                    None
                )
                .await,
            Err(ApiError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_recalculation_adds_matches_and_expels_the_rest_including_manual_members_on_postgres()
    {
        let (_db, db) = postgres().await;
        a_recalculation_adds_matches_and_expels_the_rest_including_manual_members(db).await;
    }

    #[tokio::test]
    async fn a_recalculation_adds_matches_and_expels_the_rest_including_manual_members_on_sqlite() {
        let (_dir, db) = sqlite().await;
        a_recalculation_adds_matches_and_expels_the_rest_including_manual_members(db).await;
    }

    #[tokio::test]
    async fn standard_and_cart_segments_are_not_recalculated_and_a_cart_one_takes_no_members() {
        let (_dir, db) = sqlite().await;
        let store = Store::new(db.clone());
        let partner = Uuid::now_v7();
        let jana = customer_in("Praha");
        apply(&db, envelope(partner, &jana)).await;
        let standard = create(&store, partner, standard_buyers()).await;
        let cart = create(&store, partner, big_cart()).await;
        let err = in_txn(&db, async |t| {
            store.recalculate(t, partner, standard.id, Utc::now()).await
        })
        .await
        .unwrap_err();
        assert_eq!(reason(err), "STANDARD_SEGMENT");
        let err = in_txn(&db, async |t| {
            store.recalculate(t, partner, cart.id, Utc::now()).await
        })
        .await
        .unwrap_err();
        assert_eq!(reason(err), "SEGMENT_ONLINE_ONLY");
        let err = in_txn(&db, async |t| {
            store
                .add_customer(
                    t,
                    partner,
                    cart.id,
                    id(&jana),
                    ManualChange::Operator,
                    Utc::now(),
                )
                .await
        })
        .await
        .unwrap_err();
        assert_eq!(reason(err), "SEGMENT_ONLINE_ONLY");
        // A standard segment takes manual members, and a recalculation never touches them.
        let added = in_txn(&db, async |t| {
            store
                .add_customer(
                    t,
                    partner,
                    standard.id,
                    id(&jana),
                    ManualChange::Operator,
                    Utc::now(),
                )
                .await
        })
        .await
        .unwrap();
        assert!(added.changed && !added.segment.recalculation_overwrites_manual_changes());
    }

    #[tokio::test]
    async fn recalculations_of_one_segment_at_once_enter_each_customer_once() {
        let (_db, db) = postgres().await;
        let store = Store::new(db.clone());
        let partner = Uuid::now_v7();
        let s = create(&store, partner, buyers()).await;
        let mut customers = Vec::new();
        for _ in 0..40 {
            let c = customer_in("Praha");
            apply(&db, envelope(partner, &c)).await;
            apply(&db, envelope(partner, &purchase(&c, 100))).await;
            customers.push(id(&c));
        }
        let runs = (0..4).map(|_| {
            let (db, store) = (db.clone(), store.clone());
            tokio::spawn(async move {
                let txn = begin_write(&db).await.unwrap();
                let r = store
                    .recalculate(&txn, partner, s.id, Utc::now())
                    .await
                    .unwrap();
                txn.commit().await.unwrap();
                r
            })
        });
        let results = futures::future::join_all(runs).await;
        let entered: u64 = results.iter().map(|r| r.as_ref().unwrap().entered).sum();
        assert_eq!(entered, 40, "each customer entered once in all");
        assert!(results.iter().all(|r| r.as_ref().unwrap().left == 0));
        assert_eq!(
            members_of(&store, partner, s.id).await,
            customers.iter().copied().collect()
        );
        assert_eq!(
            store
                .segment(partner, s.id)
                .await
                .unwrap()
                .unwrap()
                .member_count,
            40
        );
        let entries = store
            .history(
                partner,
                HistoryFilter {
                    group_id: Some(s.id),
                    ..Default::default()
                },
                1000,
                None,
            )
            .await
            .unwrap();
        assert_eq!(entries.len(), 40);
    }

    #[tokio::test]
    async fn the_nightly_run_recalculates_each_due_flexi_segment_once_across_replicas() {
        let (_db, db) = postgres().await;
        let store = Store::new(db.clone());
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let (jana, petr) = (customer_in("Praha"), customer_in("Brno"));
        apply(&db, envelope(a, &jana)).await;
        apply(&db, envelope(b, &petr)).await;
        let flexi_a = create(&store, a, buyers()).await;
        let flexi_b = create(&store, b, buyers()).await;
        let standard = create(&store, a, standard_buyers()).await;
        let cart = create(&store, b, big_cart()).await;
        apply(&db, envelope(a, &purchase(&jana, 100))).await;
        apply(&db, envelope(b, &purchase(&petr, 100))).await;

        // Created after the last slot: nothing is due for it.
        let yesterday = Utc::now() - chrono::Duration::days(1);
        assert_eq!(
            recalculate_due(
                &crate::store::Store::new(db.clone()),
                &no_cache(),
                yesterday
            )
            .await
            .unwrap(),
            NightlyRun::default()
        );

        // Two replicas wake up for the same slot.
        let slot = Utc::now();
        let cache = no_cache();
        let (one, two) = (Store::new(db.clone()), Store::new(db.clone()));
        let (r1, r2) = tokio::join!(
            recalculate_due(&one, &cache, slot),
            recalculate_due(&two, &cache, slot)
        );
        let (r1, r2) = (r1.unwrap(), r2.unwrap());
        assert_eq!(r1.recalculated + r2.recalculated, 2, "{r1:?} {r2:?}");
        assert_eq!(r1.entered + r2.entered, 2);
        assert_eq!(r1.failed + r2.failed, 0);
        assert_eq!(members_of(&store, a, flexi_a.id).await, [id(&jana)].into());
        assert_eq!(members_of(&store, b, flexi_b.id).await, [id(&petr)].into());
        assert!(members_of(&store, a, standard.id).await.is_empty());
        assert!(members_of(&store, b, cart.id).await.is_empty());
        let stamped = store.segment(a, flexi_a.id).await.unwrap().unwrap();
        assert!(stamped.last_recalculated_at.unwrap() >= slot);
        // Done for this slot.
        assert_eq!(
            recalculate_due(&crate::store::Store::new(db.clone()), &no_cache(), slot)
                .await
                .unwrap()
                .recalculated,
            0
        );
    }

    async fn update_and_delete(db: DatabaseConnection) {
        let store = Store::new(db.clone());
        let partner = Uuid::now_v7();
        let jana = customer_in("Praha");
        apply(&db, envelope(partner, &jana)).await;
        apply(&db, envelope(partner, &purchase(&jana, 100))).await;
        let s = create(&store, partner, buyers()).await;
        let renamed = in_txn(&db, async |t| {
            store
                .update_segment(t, partner, s.id, "v1", |c| {
                    let mut n = c.clone();
                    n.display_name = "Renamed".into();
                    n.version += 1;
                    Ok(n)
                })
                .await
        })
        .await
        .unwrap();
        assert_eq!(renamed.etag(), "v2");
        let stale = in_txn(&db, async |t| {
            store
                .update_segment(t, partner, s.id, "v1", |c| Ok(c.clone()))
                .await
        })
        .await
        .unwrap_err();
        assert_eq!(reason(stale), "ETAG_MISMATCH");
        // Becoming a cart segment: no stored members any more.
        let cart = in_txn(&db, async |t| {
            store
                .update_segment(t, partner, s.id, "", |c| {
                    let mut n = big_cart();
                    n.id = c.id;
                    n.member_count = c.member_count;
                    n.version = c.version + 1;
                    Ok(n)
                })
                .await
        })
        .await
        .unwrap();
        assert_eq!(cart.member_count, 0);
        assert!(members_of(&store, partner, s.id).await.is_empty());
        assert_eq!(
            history(&store, partner, id(&jana), s.id).await.last(),
            Some(&(false, MembershipCause::Recalculation))
        );

        let t = create(&store, partner, buyers()).await;
        in_txn(&db, async |txn| {
            store
                .delete_segment(txn, partner, t.id, "v2", Utc::now())
                .await
        })
        .await
        .map(|_| ())
        .map_err(reason)
        .expect_err("stale etag");
        in_txn(&db, async |txn| {
            store
                .delete_segment(txn, partner, t.id, "", Utc::now())
                .await
        })
        .await
        .unwrap();
        assert_eq!(store.segment(partner, t.id).await.unwrap(), None);
        assert!(
            store
                .memberships(partner, id(&jana))
                .await
                .unwrap()
                .is_empty()
        );
        // The history outlives the segment, with its name.
        let h = store
            .history(
                partner,
                HistoryFilter {
                    group_id: Some(t.id),
                    ..Default::default()
                },
                10,
                None,
            )
            .await
            .unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(
            (h[0].entered, h[0].cause),
            (false, MembershipCause::GroupDeleted)
        );
        assert_eq!(h[0].group_display_name, "Segment");
    }

    #[tokio::test]
    async fn an_update_is_etag_guarded_and_a_deletion_expels_members_on_postgres() {
        let (_db, db) = postgres().await;
        update_and_delete(db).await;
    }

    #[tokio::test]
    async fn an_update_is_etag_guarded_and_a_deletion_expels_members_on_sqlite() {
        let (_dir, db) = sqlite().await;
        update_and_delete(db).await;
    }

    #[tokio::test]
    async fn segments_members_and_history_come_in_pages() {
        let (_dir, db) = sqlite().await;
        let store = Store::new(db.clone());
        let partner = Uuid::now_v7();
        let mut customers = Vec::new();
        for _ in 0..5 {
            let c = customer_in("Praha");
            apply(&db, envelope(partner, &c)).await;
            apply(&db, envelope(partner, &purchase(&c, 100))).await;
            customers.push(id(&c));
        }
        customers.sort();
        let standard = create(&store, partner, standard_buyers()).await;
        let flexi = create(&store, partner, buyers()).await;
        let cart = create(&store, partner, big_cart()).await;

        let all = store
            .list_segments(partner, SegmentFilter::default(), 2, None)
            .await
            .unwrap();
        assert_eq!(
            all.iter().map(|s| s.id).collect::<Vec<_>>(),
            [cart.id, flexi.id],
            "newest first"
        );
        let rest = store
            .list_segments(partner, SegmentFilter::default(), 2, Some(flexi.id))
            .await
            .unwrap();
        assert_eq!(rest.iter().map(|s| s.id).collect::<Vec<_>>(), [standard.id]);
        let flexi_only = SegmentFilter {
            kind: Some(SegmentKind::Flexi),
            online_only: false,
        };
        assert_eq!(
            store
                .list_segments(partner, flexi_only, 10, None)
                .await
                .unwrap()
                .len(),
            2
        );
        let online_only = SegmentFilter {
            kind: None,
            online_only: true,
        };
        let online = store
            .list_segments(partner, online_only, 10, None)
            .await
            .unwrap();
        assert_eq!(online.iter().map(|s| s.id).collect::<Vec<_>>(), [cart.id]);
        assert!(
            store
                .list_segments(Uuid::now_v7(), SegmentFilter::default(), 10, None)
                .await
                .unwrap()
                .is_empty()
        );

        let page1 = store.members(partner, standard.id, 3, None).await.unwrap();
        let page2 = store
            .members(partner, standard.id, 3, Some(page1[2].customer_id))
            .await
            .unwrap();
        let listed: Vec<Uuid> = page1.iter().chain(&page2).map(|m| m.customer_id).collect();
        assert_eq!(listed, customers);
        assert!(page1.iter().all(|m| m.cause == MembershipCause::Creation));

        let filter = HistoryFilter {
            group_id: Some(flexi.id),
            ..Default::default()
        };
        let h1 = store.history(partner, filter, 4, None).await.unwrap();
        let last = h1.last().map(|h| (h.at, h.id));
        let h2 = store.history(partner, filter, 4, last).await.unwrap();
        assert_eq!((h1.len(), h2.len()), (4, 1));
        let mut ids: Vec<Uuid> = h1.iter().chain(&h2).map(|h| h.customer_id).collect();
        ids.sort();
        assert_eq!(ids, customers);
        let future = HistoryFilter {
            from: Some(Utc::now() + chrono::Duration::hours(1)),
            ..filter
        };
        assert!(
            store
                .history(partner, future, 10, None)
                .await
                .unwrap()
                .is_empty()
        );
        let unknown = HistoryFilter {
            customer_id: Some(Uuid::now_v7()),
            ..Default::default()
        };
        assert!(matches!(
            store.history(partner, unknown, 10, None).await,
            Err(ApiError::NotFound(_))
        ));
    }
}

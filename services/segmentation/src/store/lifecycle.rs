//! What identity's customer lifecycle does to segmentation: a duplicate account merged into
//! a surviving one is folded into it, and an erased customer leaves nothing personal behind.
//! Both run inside the transaction of the consumed event and are safe to run twice.
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use loyalty_platform::events;
use loyalty_proto::events::v1 as ev;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    sea_query::Expr,
};
use uuid::Uuid;

use super::entities::{
    customer_features, customer_tombstones, membership_history, segment_members, segments,
};
use super::features::{features_from, write};
use super::purchases;
use crate::domain::MembershipCause::{self, CustomerRemoved, Recalculation};
use crate::domain::{GroupKind, add_membership_facts};

/// Longest chain of merges followed to find where a customer's events now belong.
const MAX_SUCCESSORS: usize = 16;

/// Where events about `customer_id` now belong: the customer itself, the account it was
/// (transitively) merged into, or `None` if it (or that account) was erased.
pub(crate) async fn current_account(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    customer_id: Uuid,
) -> anyhow::Result<Option<Uuid>> {
    let mut id = customer_id;
    for _ in 0..MAX_SUCCESSORS {
        match customer_tombstones::Entity::find_by_id((partner_id, id))
            .one(txn)
            .await?
        {
            None => return Ok(Some(id)),
            Some(t) => match t.successor_id {
                Some(next) => id = next,
                None => return Ok(None),
            },
        }
    }
    tracing::warn!(%customer_id, "merge chain too long or circular; event dropped");
    Ok(None)
}

/// Records that `customer_id` was merged into `successor` or (with `None`) erased; an
/// erasure overrides a merge.
async fn tombstone(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    customer_id: Uuid,
    successor: Option<Uuid>,
) -> anyhow::Result<()> {
    let existing = customer_tombstones::Entity::find_by_id((partner_id, customer_id))
        .one(txn)
        .await?;
    match existing {
        None => {
            customer_tombstones::Entity::insert(customer_tombstones::ActiveModel {
                partner_id: Set(partner_id),
                customer_id: Set(customer_id),
                successor_id: Set(successor),
                at: Set(Utc::now()),
            })
            .exec_without_returning(txn)
            .await?;
        }
        Some(t) if successor.is_none() && t.successor_id.is_some() => {
            customer_tombstones::Entity::update_many()
                .col_expr(
                    customer_tombstones::Column::SuccessorId,
                    Expr::value(Option::<Uuid>::None),
                )
                .filter(customer_tombstones::Column::PartnerId.eq(partner_id))
                .filter(customer_tombstones::Column::CustomerId.eq(customer_id))
                .exec(txn)
                .await?;
        }
        Some(_) => {}
    }
    Ok(())
}

/// The stored memberships of a customer, by segment.
async fn stored_memberships(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    customer_id: Uuid,
) -> anyhow::Result<BTreeMap<Uuid, segment_members::Model>> {
    Ok(segment_members::Entity::find()
        .filter(segment_members::Column::PartnerId.eq(partner_id))
        .filter(segment_members::Column::CustomerId.eq(customer_id))
        .all(txn)
        .await?
        .into_iter()
        .map(|m| (m.segment_id, m))
        .collect())
}

async fn count_member(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    segment_id: Uuid,
    delta: i64,
) -> anyhow::Result<()> {
    segments::Entity::update_many()
        .col_expr(
            segments::Column::MemberCount,
            Expr::col(segments::Column::MemberCount).add(delta),
        )
        .filter(segments::Column::PartnerId.eq(partner_id))
        .filter(segments::Column::Id.eq(segment_id))
        .exec(txn)
        .await?;
    Ok(())
}

/// Records a change caused by a merge: the merged account leaves (`customer_removed`), the
/// survivor's memberships follow the segments' rules (`recalculation`).
async fn record(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    segment_id: Uuid,
    customer_id: Uuid,
    change: &str,
    cause: MembershipCause,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    let segment_display_name = segments::Entity::find_by_id(segment_id)
        .one(txn)
        .await?
        .map(|s| s.display_name)
        .unwrap_or_default();
    membership_history::Entity::insert(membership_history::ActiveModel {
        id: Set(Uuid::now_v7()),
        partner_id: Set(partner_id),
        segment_id: Set(segment_id),
        customer_id: Set(customer_id),
        change: Set(change.to_owned()),
        at: Set(at),
        cause: Set(cause.as_str().to_owned()),
        workflow_execution_id: Set(None),
        segment_display_name: Set(segment_display_name),
        group_kind: Set(GroupKind::Segment.as_str().to_owned()),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Removes a stored membership and publishes `SegmentLeft` with `cause`; false (and
/// nothing published) if there was none.
async fn leave(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    segment_id: Uuid,
    customer_id: Uuid,
    cause: MembershipCause,
) -> anyhow::Result<bool> {
    let removed = segment_members::Entity::delete_many()
        .filter(segment_members::Column::PartnerId.eq(partner_id))
        .filter(segment_members::Column::SegmentId.eq(segment_id))
        .filter(segment_members::Column::CustomerId.eq(customer_id))
        .exec(txn)
        .await?
        .rows_affected;
    if removed > 0 {
        count_member(txn, partner_id, segment_id, -1).await?;
        events::enqueue(
            txn,
            Some(partner_id),
            &ev::SegmentLeft {
                segment_id: segment_id.to_string(),
                customer_id: customer_id.to_string(),
                cause: cause.as_str().to_owned(),
            },
        )
        .await?;
    }
    Ok(removed > 0)
}

/// Stores a membership (keeping `stored_cause`, the cause it was first added by) and
/// publishes `SegmentEntered` with the cause of this change, `Recalculation`.
async fn enter(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    segment_id: Uuid,
    customer_id: Uuid,
    added_at: DateTime<Utc>,
    stored_cause: &str,
) -> anyhow::Result<()> {
    segment_members::Entity::insert(segment_members::ActiveModel {
        segment_id: Set(segment_id),
        customer_id: Set(customer_id),
        partner_id: Set(partner_id),
        added_at: Set(added_at),
        cause: Set(stored_cause.to_owned()),
    })
    .exec_without_returning(txn)
    .await?;
    count_member(txn, partner_id, segment_id, 1).await?;
    events::enqueue(
        txn,
        Some(partner_id),
        &ev::SegmentEntered {
            segment_id: segment_id.to_string(),
            customer_id: customer_id.to_string(),
            cause: Recalculation.as_str().to_owned(),
        },
    )
    .await?;
    Ok(())
}

/// Tells readers of cached memberships that these segments changed.
async fn changed(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    segments: BTreeSet<Uuid>,
) -> anyhow::Result<()> {
    for segment_id in segments {
        events::enqueue(
            txn,
            Some(partner_id),
            &ev::SegmentChanged {
                segment_id: segment_id.to_string(),
            },
        )
        .await?;
    }
    Ok(())
}

/// Folds `merged` into `survivor`: purchases add up and the profile stays the survivor's
/// ([`crate::domain::Features::absorb`]), the merged account's features and memberships are
/// removed, and the survivor's stored memberships are recalculated
/// ([`crate::domain::Segment::holds_survivor`]). Once the merged account is gone, running
/// it again finds nothing to fold and changes nothing.
pub(crate) async fn merge(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    survivor: Uuid,
    merged: Uuid,
) -> anyhow::Result<()> {
    let now = Utc::now();
    tombstone(txn, partner_id, merged, Some(survivor)).await?;
    let survivor_row = customer_features::Entity::find_by_id((partner_id, survivor))
        .one(txn)
        .await?;
    let merged_row = customer_features::Entity::find_by_id((partner_id, merged))
        .one(txn)
        .await?;
    let merged_members = stored_memberships(txn, partner_id, merged).await?;
    let merged_badges = super::badges::holdings(txn, partner_id, merged).await?;
    if merged_row.is_none() && merged_members.is_empty() && merged_badges.is_empty() {
        // Nothing to fold: a merge applied again, or replayed by a rebuild of the projection
        // (the tombstone already sent the merged account's events to the survivor). The
        // survivor's features did not change, so neither do its memberships.
        return Ok(());
    }
    let mut folded = survivor_row.as_ref().map(features_from).unwrap_or_default();
    if let Some(m) = &merged_row {
        folded.absorb(&features_from(m));
        write(txn, partner_id, survivor, survivor_row.is_some(), &folded).await?;
        customer_features::Entity::delete_many()
            .filter(customer_features::Column::PartnerId.eq(partner_id))
            .filter(customer_features::Column::CustomerId.eq(merged))
            .exec(txn)
            .await?;
    }

    purchases::move_to_survivor(txn, partner_id, merged, survivor).await?;

    let survivor_members = stored_memberships(txn, partner_id, survivor).await?;
    let mut touched = BTreeSet::new();
    for &segment_id in merged_members.keys() {
        if leave(txn, partner_id, segment_id, merged, CustomerRemoved).await? {
            record(
                txn,
                partner_id,
                segment_id,
                merged,
                "left",
                CustomerRemoved,
                now,
            )
            .await?;
            touched.insert(segment_id);
        }
    }
    let partner_segments = segments::Entity::find()
        .filter(segments::Column::PartnerId.eq(partner_id))
        .order_by_asc(segments::Column::Id)
        .all(txn)
        .await?;
    let mut partner_segments_parsed = Vec::new();
    for row in partner_segments {
        let segment_id = row.id;
        match super::segment_from(row) {
            Ok(s) => partner_segments_parsed.push(s),
            Err(e) => {
                tracing::warn!(%segment_id, error = %e, "segment not recalculated for a merge");
            }
        }
    }
    let partner_badges = super::badges::criteria(txn, partner_id).await?;
    // The survivor's facts, with the purchase windows any segment or badge reads (both
    // accounts' purchases are the survivor's now).
    let mut facts = folded.facts(now);
    facts.extend(
        purchases::facts_for(
            txn,
            partner_id,
            survivor,
            partner_segments_parsed
                .iter()
                .map(|s| &s.criterion)
                .chain(partner_badges.iter()),
            now,
        )
        .await?,
    );
    // Membership of other groups reads as what either account held before the merge (the
    // groups are decided one by one below; the nightly run settles any chain of them).
    let survivor_badges = super::badges::holdings(txn, partner_id, survivor).await?;
    let segments_held: Vec<Uuid> = survivor_members
        .keys()
        .chain(merged_members.keys())
        .copied()
        .collect();
    let badges_held: Vec<Uuid> = survivor_badges
        .keys()
        .chain(merged_badges.keys())
        .copied()
        .collect();
    add_membership_facts(&mut facts, &segments_held, &badges_held);
    for segment in partner_segments_parsed {
        let segment_id = segment.id;
        let was = survivor_members.contains_key(&segment_id);
        let merged_membership = merged_members.get(&segment_id);
        match segment.holds_survivor(was, merged_membership.is_some(), &facts) {
            Some(true) if !was => {
                // A membership carried over keeps the time and cause of the merged account's.
                let (added_at, cause) = merged_membership
                    .map_or((now, Recalculation.as_str()), |m| {
                        (m.added_at, m.cause.as_str())
                    });
                enter(txn, partner_id, segment_id, survivor, added_at, cause).await?;
                record(
                    txn,
                    partner_id,
                    segment_id,
                    survivor,
                    "entered",
                    Recalculation,
                    now,
                )
                .await?;
                touched.insert(segment_id);
            }
            Some(false)
                if was && leave(txn, partner_id, segment_id, survivor, Recalculation).await? =>
            {
                record(
                    txn,
                    partner_id,
                    segment_id,
                    survivor,
                    "left",
                    Recalculation,
                    now,
                )
                .await?;
                touched.insert(segment_id);
            }
            _ => {}
        }
    }
    super::badges::merge_holder(txn, partner_id, survivor, merged, &facts, now).await?;
    super::audiences::merge_customer(txn, partner_id, survivor, merged, &facts, now).await?;
    changed(txn, partner_id, touched).await
}

/// Erases what segmentation holds of a customer: features (attributes, properties,
/// purchase totals), every stored purchase, memberships (segment counts follow) and membership history. Only the
/// customer's id stays, as an anonymous key, so that late events about them are dropped.
pub(crate) async fn erase(
    txn: &DatabaseTransaction,
    partner_id: Uuid,
    customer_id: Uuid,
) -> anyhow::Result<()> {
    tombstone(txn, partner_id, customer_id, None).await?;
    purchases::erase(txn, partner_id, customer_id).await?;
    customer_features::Entity::delete_many()
        .filter(customer_features::Column::PartnerId.eq(partner_id))
        .filter(customer_features::Column::CustomerId.eq(customer_id))
        .exec(txn)
        .await?;
    let mut touched = BTreeSet::new();
    for segment_id in stored_memberships(txn, partner_id, customer_id)
        .await?
        .into_keys()
    {
        if leave(txn, partner_id, segment_id, customer_id, CustomerRemoved).await? {
            touched.insert(segment_id);
        }
    }
    super::badges::forget_holder(txn, partner_id, customer_id).await?;
    membership_history::Entity::delete_many()
        .filter(membership_history::Column::PartnerId.eq(partner_id))
        .filter(membership_history::Column::CustomerId.eq(customer_id))
        .exec(txn)
        .await?;
    super::audiences::erase_customer(txn, partner_id, customer_id).await?;
    changed(txn, partner_id, touched).await
}

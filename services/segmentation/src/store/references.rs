//! References between a partner's groups (criteria reading `segments.<id>`/`badges.<id>`):
//! checked when a criterion is written (existence, cycles) and when a group is deleted
//! (SEGMENT_IN_USE / BADGE_IN_USE). Both take the partner's references lock, so two writes
//! cannot each close half of a cycle, nor a deletion race a new reference.
use std::collections::{BTreeMap, BTreeSet};

use loyalty_criteria::Criterion;
use loyalty_platform::{ApiError, Violations, db::advisory_xact_lock};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::{
    Store,
    entities::{badges, segments},
};
use crate::domain::{GroupId, GroupKind, Referable, ReferenceGraph, check_references, referenced};

/// A partner's groups: what each references, and whether each stores members.
struct Groups {
    graph: ReferenceGraph,
    stores_members: BTreeMap<GroupId, bool>,
}

fn stored_criterion(json: &serde_json::Value, g: GroupId) -> Result<Criterion, ApiError> {
    Criterion::from_json(json).map_err(|e| {
        ApiError::Internal(anyhow::anyhow!(
            "{} {}: stored criterion: {e}",
            g.0.as_str(),
            g.1
        ))
    })
}

async fn lock(conn: &impl ConnectionTrait, partner_id: Uuid) -> Result<(), ApiError> {
    advisory_xact_lock(conn, &format!("segmentation-references:{partner_id}")).await?;
    Ok(())
}

async fn groups(conn: &impl ConnectionTrait, partner_id: Uuid) -> Result<Groups, ApiError> {
    let segments: Vec<(Uuid, serde_json::Value)> = segments::Entity::find()
        .select_only()
        .column(segments::Column::Id)
        .column(segments::Column::Criterion)
        .filter(segments::Column::PartnerId.eq(partner_id))
        .into_tuple()
        .all(conn)
        .await?;
    let badges: Vec<(Uuid, Option<serde_json::Value>)> = badges::Entity::find()
        .select_only()
        .column(badges::Column::Id)
        .column(badges::Column::Criterion)
        .filter(badges::Column::PartnerId.eq(partner_id))
        .into_tuple()
        .all(conn)
        .await?;
    let mut edges = Vec::with_capacity(segments.len() + badges.len());
    let mut stores_members = BTreeMap::new();
    for (id, json) in segments {
        let g = (GroupKind::Segment, id);
        let c = stored_criterion(&json, g)?;
        stores_members.insert(g, !c.uses_cart());
        edges.push((g, referenced(&c)));
    }
    for (id, json) in badges {
        let g = (GroupKind::Badge, id);
        let refs = match json {
            Some(json) => referenced(&stored_criterion(&json, g)?),
            None => BTreeSet::new(),
        };
        stores_members.insert(g, true);
        edges.push((g, refs));
    }
    Ok(Groups {
        graph: ReferenceGraph::new(edges),
        stores_members,
    })
}

/// What is wrong with the groups `criterion` (about to be `group`'s) references.
async fn problems(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    group: GroupId,
    field: &str,
    criterion: &Criterion,
) -> Result<Violations, ApiError> {
    let mut v = Violations::new();
    if referenced(criterion).is_empty() {
        return Ok(v);
    }
    let Groups {
        graph,
        stores_members,
    } = groups(conn, partner_id).await?;
    let referable = |g: GroupId| match stores_members.get(&g) {
        None => Referable::Unknown,
        Some(false) => Referable::OnlineOnly,
        Some(true) => Referable::Yes,
    };
    check_references(&mut v, field, group, criterion, referable, &graph);
    Ok(v)
}

impl Store {
    /// The reference graph of the partner's groups.
    pub async fn reference_graph(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
    ) -> Result<ReferenceGraph, ApiError> {
        Ok(groups(conn, partner_id).await?.graph)
    }

    /// What is wrong with the groups a criterion of no group yet references (ValidateCriterion):
    /// another partner's or an unknown group, a segment storing no members, under `field`
    /// and the condition's path. (A new group cannot close a cycle: nothing references it.)
    pub async fn reference_problems(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        field: &str,
        criterion: &Criterion,
    ) -> Result<Violations, ApiError> {
        let nobody = (GroupKind::Segment, Uuid::nil());
        problems(conn, partner_id, nobody, field, criterion).await
    }

    /// Checks the groups `criterion` (about to be `group`'s) references: INVALID_ARGUMENT under
    /// `field` and the condition's path for another partner's or an unknown group, a segment
    /// storing no members, or a cycle back to `group`.
    pub async fn check_references(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        group: GroupId,
        field: &str,
        criterion: &Criterion,
    ) -> Result<(), ApiError> {
        if referenced(criterion).is_empty() {
            return Ok(());
        }
        lock(conn, partner_id).await?;
        problems(conn, partner_id, group, field, criterion)
            .await?
            .into_result()
    }

    /// FAILED_PRECONDITION `SEGMENT_IN_USE` / `BADGE_IN_USE` when another group's criterion
    /// references `group`; the referencing ids are in the ErrorInfo metadata
    /// (`referencing_segment_ids`, `referencing_badge_ids`, comma-separated).
    pub async fn check_unreferenced(
        &self,
        conn: &impl ConnectionTrait,
        partner_id: Uuid,
        group: GroupId,
    ) -> Result<(), ApiError> {
        lock(conn, partner_id).await?;
        let users = groups(conn, partner_id).await?.graph.referencing(group);
        if users.is_empty() {
            return Ok(());
        }
        let ids = |kind: GroupKind| {
            users
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, id)| id.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut metadata = BTreeMap::new();
        for (key, kind) in [
            ("referencing_segment_ids", GroupKind::Segment),
            ("referencing_badge_ids", GroupKind::Badge),
        ] {
            let list = ids(kind);
            if !list.is_empty() {
                metadata.insert(key.to_owned(), list);
            }
        }
        let (reason, what) = match group.0 {
            GroupKind::Segment => ("SEGMENT_IN_USE", "segment"),
            GroupKind::Badge => ("BADGE_IN_USE", "badge"),
        };
        Err(ApiError::PreconditionWithMetadata {
            reason,
            message: format!(
                "the {what} is referenced by the criteria of {} other group(s); change them first",
                users.len()
            ),
            metadata,
        })
    }
}

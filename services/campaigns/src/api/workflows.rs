//! Marketing-automation workflow RPCs: create, read, list, update and delete workflows;
//! activate and pause them; list, read and cancel their per-customer executions (which the
//! automation engine starts and steps).
//!
//! The rules live in `domain/workflow.rs`; this module converts the protobuf messages to and
//! from the domain types (criteria through `loyalty_criteria`, reported under the node's or
//! trigger's path) and runs each change in one transaction with its idempotency key.
use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use loyalty_criteria::{Criterion, Violation, wire};
use loyalty_platform::{
    ApiError, Role, Violations,
    auth::{Principal, principal},
    client::outgoing,
    error::{check_etag, check_idempotency_key, mask_paths, parse_uuid},
    idempotency::{self, IdempotencyScope},
    paging,
    time::{from_timestamp, to_timestamp},
};
use loyalty_proto::{campaigns::v1 as pb, rewards::v1 as rewards_pb, segmentation::v1 as seg};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{CampaignsApi, READERS};
use crate::{
    domain::workflow::{
        CollectOrderTrigger, ConditionTest, ConsentChange, ConsentTrigger, DateTrigger,
        EventTrigger, Execution, ExecutionState, Node, NodeKind, PurchaseTrigger, ReentryPolicy,
        SegmentDirection, SegmentTrigger, SplitBranch, StepOutcome, Trigger, UPDATABLE_FIELDS,
        Workflow, WorkflowRule, WorkflowState, WorkflowStep,
    },
    store::workflows::{self as store, ExecutionFilter, Progress},
};

/// Who changes workflows and cancels executions (as campaigns); [`READERS`] read them.
const WRITERS: &[Role] = &[Role::Marketing];
/// Longest cancellation reason.
const MAX_REASON_CHARS: usize = 500;
/// How often a cancellation reads the execution again when the engine moved it meanwhile.
const CANCEL_ATTEMPTS: usize = 3;

fn rule(r: WorkflowRule) -> ApiError {
    ApiError::precondition(r.reason(), r.message())
}

fn workflow_not_found() -> ApiError {
    ApiError::NotFound("workflow".into())
}

fn execution_not_found() -> ApiError {
    ApiError::NotFound("workflow execution".into())
}

/// The id of a state-change request, with its idempotency key checked.
fn target(idempotency_key: &str, field: &str, id: &str) -> Result<Uuid, ApiError> {
    let mut v = Violations::new();
    check_idempotency_key(&mut v, idempotency_key);
    let id = v.uuid(field, id);
    v.into_result()?;
    Ok(id.unwrap_or_default())
}

// ---- proto → domain ----

/// A UUID field whose absence the domain reports (`validate`: the nil UUID is "is
/// required"): empty → nil; malformed → reported here, and a non-nil placeholder returned so
/// that the field is not reported twice (the request fails anyway).
fn id_field(v: &mut Violations, field: &str, raw: &str) -> Uuid {
    if raw.is_empty() {
        return Uuid::nil();
    }
    Uuid::try_parse(raw).unwrap_or_else(|_| {
        v.add(field, "must be a UUID");
        Uuid::max()
    })
}

/// A timestamp field: `None` when unset; an out-of-range one is reported.
fn time_field(
    v: &mut Violations,
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Option<DateTime<Utc>> {
    let t = t?;
    Some(from_timestamp(t).unwrap_or_else(|| {
        v.add(field, "is not a valid time");
        DateTime::UNIX_EPOCH
    }))
}

/// A criterion checked and in its storage form (`Criterion::to_json`), its problems reported
/// under `path`. `with_event`: it may read `event.<key>` of the triggering event (a
/// condition node; a date trigger has no event). A bad one answers a placeholder that
/// `validate` does not report again.
fn criterion_from_proto(
    v: &mut Violations,
    path: &str,
    c: &seg::Criterion,
    with_event: bool,
) -> serde_json::Value {
    let mut problems = Vec::new();
    let raw = wire::raw_from_proto(c, &mut problems);
    let parsed = if with_event {
        Criterion::parse_with_event(raw)
    } else {
        Criterion::parse(raw)
    };
    match parsed {
        Ok(c) if problems.is_empty() => c.to_json(),
        parsed => {
            problems.extend(parsed.err().unwrap_or_default());
            report(v, path, problems);
            serde_json::Value::Object(serde_json::Map::new())
        }
    }
}

/// Criterion problems under the field `path` of the request.
fn report(v: &mut Violations, path: &str, problems: Vec<Violation>) {
    for p in problems {
        v.add(p.field_under(path), p.reason);
    }
}

/// The stored criterion back on the wire; `None` (logged) if it cannot be read.
fn criterion_json_to_proto(json: &serde_json::Value) -> Option<seg::Criterion> {
    match serde_json::from_value::<Criterion>(json.clone()) {
        Ok(c) => Some(wire::to_proto(&c)),
        Err(e) => {
            tracing::warn!(error = %e, "a stored workflow criterion cannot be read");
            None
        }
    }
}

fn trigger_from_proto(v: &mut Violations, t: Option<pb::WorkflowTrigger>) -> Option<Trigger> {
    use pb::workflow_trigger::Kind;
    let f = |kind: &str, field: &str| format!("workflow.trigger.{kind}.{field}");
    Some(match t?.kind? {
        Kind::Event(e) => Trigger::Event(EventTrigger {
            event_type_code: e.event_type_code.trim().to_owned(),
            property_filters: e.property_filters.into_iter().collect(),
        }),
        Kind::Segment(s) => Trigger::Segment(SegmentTrigger {
            segment_id: id_field(v, &f("segment", "segment_id"), &s.segment_id),
            direction: match pb::SegmentTriggerDirection::try_from(s.direction).unwrap_or_default()
            {
                pb::SegmentTriggerDirection::Entered => Some(SegmentDirection::Entered),
                pb::SegmentTriggerDirection::Left => Some(SegmentDirection::Left),
                pb::SegmentTriggerDirection::Unspecified => None,
            },
        }),
        Kind::Purchase(p) => Trigger::Purchase(PurchaseTrigger {
            minimum_amount_minor: p.minimum_amount_minor,
            currency_code: p.currency_code.trim().to_owned(),
            business_unit_ids: p
                .business_unit_ids
                .iter()
                .enumerate()
                .map(|(i, id)| id_field(v, &f("purchase", &format!("business_unit_ids[{i}]")), id))
                .collect(),
            product_codes: p.product_codes,
        }),
        Kind::Date(d) => Trigger::Date(DateTrigger {
            run_time: time_field(v, &f("date", "run_time"), d.run_time.as_ref()),
            customer_date_field: d.customer_date_field.trim().to_owned(),
            offset_days: d.offset_days,
            hour_of_day: d.hour_of_day,
            criterion: d
                .criterion
                .as_ref()
                .map(|c| criterion_from_proto(v, &f("date", "criterion"), c, false)),
        }),
        Kind::CollectOrder(c) => Trigger::CollectOrder(CollectOrderTrigger {
            state: c.state.trim().to_owned(),
            business_unit_ids: c
                .business_unit_ids
                .iter()
                .map(|b| b.trim().to_owned())
                .collect(),
        }),
        Kind::Consent(c) => Trigger::Consent(ConsentTrigger {
            consent_type_code: c.consent_type_code.trim().to_owned(),
            change: match pb::ConsentTriggerChange::try_from(c.change).unwrap_or_default() {
                pb::ConsentTriggerChange::Granted => Some(ConsentChange::Granted),
                pb::ConsentTriggerChange::Withdrawn => Some(ConsentChange::Withdrawn),
                pb::ConsentTriggerChange::Unspecified => None,
            },
        }),
    })
}

/// A wait node. proto3 cannot tell an unset `until_hour_of_day` from 0, so: -1 = unused;
/// 0 next to a duration or a moment = unused (the default); 0 alone = until midnight.
fn wait_from_proto(v: &mut Violations, path: &str, w: &pb::WaitNode) -> NodeKind {
    let duration_seconds = (w.duration_seconds != 0).then_some(w.duration_seconds);
    let until_time = time_field(v, &format!("{path}.until_time"), w.until_time.as_ref());
    let other = duration_seconds.is_some() || until_time.is_some();
    let until_hour_of_day = match w.until_hour_of_day {
        -1 => None,
        0 if other => None,
        h => Some(h),
    };
    NodeKind::Wait {
        duration_seconds,
        until_hour_of_day,
        until_time,
    }
}

fn node_from_proto(v: &mut Violations, i: usize, n: pb::WorkflowNode) -> Node {
    use pb::workflow_node::Kind;
    let path = |kind: &str| format!("workflow.nodes[{i}].{kind}");
    let field = |kind: &str, name: &str| format!("workflow.nodes[{i}].{kind}.{name}");
    let kind = match n.kind {
        None => NodeKind::Unknown,
        Some(Kind::Wait(w)) => wait_from_proto(v, &path("wait"), &w),
        Some(Kind::Condition(c)) => {
            use pb::condition_node::Test;
            let f = |name: &str| field("condition", name);
            NodeKind::Condition {
                test: c.test.map(|t| match t {
                    Test::Criterion(c) => {
                        ConditionTest::Criterion(criterion_from_proto(v, &f("criterion"), &c, true))
                    }
                    Test::InSegmentId(id) => {
                        ConditionTest::InSegment(id_field(v, &f("in_segment_id"), &id))
                    }
                    Test::HasBadgeId(id) => {
                        ConditionTest::HasBadge(id_field(v, &f("has_badge_id"), &id))
                    }
                    Test::OpenedMessageNodeKey(key) => ConditionTest::OpenedMessage(key),
                }),
                true_node_key: c.true_node_key,
                false_node_key: c.false_node_key,
            }
        }
        Some(Kind::SendMessage(s)) => NodeKind::SendMessage {
            message_template_id: id_field(
                v,
                &field("send_message", "message_template_id"),
                &s.message_template_id,
            ),
        },
        Some(Kind::AddPoints(a)) => NodeKind::AddPoints {
            points: a.points,
            points_type_id: a.points_type_id.trim().to_owned(),
            validity_days: a.validity_days,
        },
        Some(Kind::IssueVoucher(r)) => NodeKind::IssueVoucher {
            reward_id: id_field(v, &field("issue_voucher", "reward_id"), &r.reward_id),
        },
        Some(Kind::AddToSegment(s)) => NodeKind::AddToSegment {
            segment_id: id_field(v, &field("add_to_segment", "segment_id"), &s.segment_id),
        },
        Some(Kind::RemoveFromSegment(s)) => NodeKind::RemoveFromSegment {
            segment_id: id_field(
                v,
                &field("remove_from_segment", "segment_id"),
                &s.segment_id,
            ),
        },
        Some(Kind::AssignBadge(b)) => NodeKind::AssignBadge {
            badge_id: id_field(v, &field("assign_badge", "badge_id"), &b.badge_id),
        },
        Some(Kind::RemoveBadge(b)) => NodeKind::RemoveBadge {
            badge_id: id_field(v, &field("remove_badge", "badge_id"), &b.badge_id),
        },
        Some(Kind::DeductPoints(d)) => NodeKind::DeductPoints {
            points: d.points,
            points_type_id: d.points_type_id.trim().to_owned(),
        },
        Some(Kind::Split(s)) => NodeKind::Split {
            branches: s
                .branches
                .into_iter()
                .map(|b| SplitBranch {
                    percent: b.percent,
                    next_node_key: b.next_node_key,
                })
                .collect(),
        },
        Some(Kind::End(_)) => NodeKind::End,
    };
    Node {
        key: n.key,
        display_name: n.display_name.trim().to_owned(),
        kind,
        next: n.next_node_key,
    }
}

/// A workflow from the wire: a DRAFT of version 1 created at `now` with a nil id (the caller
/// assigns it). Conversion problems are reported; the rest is for `Workflow::validate`.
fn workflow_from_proto(v: &mut Violations, w: pb::Workflow, now: DateTime<Utc>) -> Workflow {
    let reentry_policy = match pb::ReentryPolicy::try_from(w.reentry_policy) {
        Ok(pb::ReentryPolicy::Unspecified | pb::ReentryPolicy::Once) => ReentryPolicy::Once,
        Ok(pb::ReentryPolicy::AfterCompletion) => ReentryPolicy::AfterCompletion,
        Ok(pb::ReentryPolicy::Always) => ReentryPolicy::Always,
        Err(_) => {
            v.add("workflow.reentry_policy", "is not a re-entry policy");
            ReentryPolicy::Once
        }
    };
    Workflow {
        id: Uuid::nil(),
        display_name: w.display_name.trim().to_owned(),
        state: WorkflowState::Draft,
        trigger: trigger_from_proto(v, w.trigger),
        nodes: w
            .nodes
            .into_iter()
            .enumerate()
            .map(|(i, n)| node_from_proto(v, i, n))
            .collect(),
        entry_node_key: w.entry_node_key,
        reentry_policy,
        version: 1,
        note: w.note,
        created_at: now,
        updated_at: None,
        activated_at: None,
    }
}

fn state_from_proto(n: i32) -> Option<WorkflowState> {
    match pb::WorkflowState::try_from(n).unwrap_or_default() {
        pb::WorkflowState::Draft => Some(WorkflowState::Draft),
        pb::WorkflowState::Active => Some(WorkflowState::Active),
        pb::WorkflowState::Paused => Some(WorkflowState::Paused),
        pb::WorkflowState::Unspecified => None,
    }
}

fn execution_state_from_proto(n: i32) -> Option<ExecutionState> {
    match pb::ExecutionState::try_from(n).ok()? {
        pb::ExecutionState::Running => Some(ExecutionState::Running),
        pb::ExecutionState::Waiting => Some(ExecutionState::Waiting),
        pb::ExecutionState::Completed => Some(ExecutionState::Completed),
        pb::ExecutionState::Failed => Some(ExecutionState::Failed),
        pb::ExecutionState::Cancelled => Some(ExecutionState::Cancelled),
        pb::ExecutionState::Unspecified => None,
    }
}

// ---- domain → proto ----

fn state_to_proto(s: WorkflowState) -> pb::WorkflowState {
    match s {
        WorkflowState::Draft => pb::WorkflowState::Draft,
        WorkflowState::Active => pb::WorkflowState::Active,
        WorkflowState::Paused => pb::WorkflowState::Paused,
    }
}

fn trigger_to_proto(t: &Trigger) -> pb::WorkflowTrigger {
    use pb::workflow_trigger::Kind;
    let kind = match t {
        Trigger::Event(e) => Kind::Event(pb::EventTrigger {
            event_type_code: e.event_type_code.clone(),
            property_filters: e.property_filters.clone().into_iter().collect(),
        }),
        Trigger::Segment(s) => Kind::Segment(pb::SegmentTrigger {
            segment_id: s.segment_id.to_string(),
            direction: (match s.direction {
                Some(SegmentDirection::Entered) => pb::SegmentTriggerDirection::Entered,
                Some(SegmentDirection::Left) => pb::SegmentTriggerDirection::Left,
                None => pb::SegmentTriggerDirection::Unspecified,
            }) as i32,
        }),
        Trigger::Purchase(p) => Kind::Purchase(pb::PurchaseTrigger {
            minimum_amount_minor: p.minimum_amount_minor,
            currency_code: p.currency_code.clone(),
            business_unit_ids: p.business_unit_ids.iter().map(Uuid::to_string).collect(),
            product_codes: p.product_codes.clone(),
        }),
        Trigger::Date(d) => Kind::Date(pb::DateTrigger {
            run_time: d.run_time.map(to_timestamp),
            customer_date_field: d.customer_date_field.clone(),
            offset_days: d.offset_days,
            hour_of_day: d.hour_of_day,
            criterion: d.criterion.as_ref().and_then(criterion_json_to_proto),
        }),
        Trigger::CollectOrder(c) => Kind::CollectOrder(pb::CollectOrderTrigger {
            state: c.state.clone(),
            business_unit_ids: c.business_unit_ids.clone(),
        }),
        Trigger::Consent(c) => Kind::Consent(pb::ConsentTrigger {
            consent_type_code: c.consent_type_code.clone(),
            change: (match c.change {
                Some(ConsentChange::Granted) => pb::ConsentTriggerChange::Granted,
                Some(ConsentChange::Withdrawn) => pb::ConsentTriggerChange::Withdrawn,
                None => pb::ConsentTriggerChange::Unspecified,
            }) as i32,
        }),
    };
    pb::WorkflowTrigger { kind: Some(kind) }
}

fn node_to_proto(n: &Node) -> pb::WorkflowNode {
    use pb::workflow_node::Kind;
    let kind = match &n.kind {
        NodeKind::Wait {
            duration_seconds,
            until_hour_of_day,
            until_time,
        } => Some(Kind::Wait(pb::WaitNode {
            duration_seconds: duration_seconds.unwrap_or(0),
            until_hour_of_day: until_hour_of_day.unwrap_or(-1),
            until_time: until_time.map(to_timestamp),
        })),
        NodeKind::Condition {
            test,
            true_node_key,
            false_node_key,
        } => {
            use pb::condition_node::Test;
            Some(Kind::Condition(pb::ConditionNode {
                test: test.as_ref().and_then(|t| match t {
                    ConditionTest::Criterion(c) => criterion_json_to_proto(c).map(Test::Criterion),
                    ConditionTest::InSegment(id) => Some(Test::InSegmentId(id.to_string())),
                    ConditionTest::HasBadge(id) => Some(Test::HasBadgeId(id.to_string())),
                    ConditionTest::OpenedMessage(key) => {
                        Some(Test::OpenedMessageNodeKey(key.clone()))
                    }
                }),
                true_node_key: true_node_key.clone(),
                false_node_key: false_node_key.clone(),
            }))
        }
        NodeKind::SendMessage {
            message_template_id,
        } => Some(Kind::SendMessage(pb::SendMessageNode {
            message_template_id: message_template_id.to_string(),
        })),
        NodeKind::AddPoints {
            points,
            points_type_id,
            validity_days,
        } => Some(Kind::AddPoints(pb::AddPointsNode {
            points: *points,
            points_type_id: points_type_id.clone(),
            validity_days: *validity_days,
        })),
        NodeKind::IssueVoucher { reward_id } => Some(Kind::IssueVoucher(pb::IssueVoucherNode {
            reward_id: reward_id.to_string(),
        })),
        NodeKind::AddToSegment { segment_id } => Some(Kind::AddToSegment(pb::AddToSegmentNode {
            segment_id: segment_id.to_string(),
        })),
        NodeKind::RemoveFromSegment { segment_id } => {
            Some(Kind::RemoveFromSegment(pb::RemoveFromSegmentNode {
                segment_id: segment_id.to_string(),
            }))
        }
        NodeKind::AssignBadge { badge_id } => Some(Kind::AssignBadge(pb::AssignBadgeNode {
            badge_id: badge_id.to_string(),
        })),
        NodeKind::RemoveBadge { badge_id } => Some(Kind::RemoveBadge(pb::RemoveBadgeNode {
            badge_id: badge_id.to_string(),
        })),
        NodeKind::DeductPoints {
            points,
            points_type_id,
        } => Some(Kind::DeductPoints(pb::DeductPointsNode {
            points: *points,
            points_type_id: points_type_id.clone(),
        })),
        NodeKind::Split { branches } => Some(Kind::Split(pb::SplitNode {
            branches: branches
                .iter()
                .map(|b| pb::SplitBranch {
                    percent: b.percent,
                    next_node_key: b.next_node_key.clone(),
                })
                .collect(),
        })),
        NodeKind::End => Some(Kind::End(pb::EndNode {})),
        NodeKind::Unknown => None,
    };
    pb::WorkflowNode {
        key: n.key.clone(),
        display_name: n.display_name.clone(),
        kind,
        next_node_key: n.next.clone(),
    }
}

fn workflow_to_proto(w: &Workflow) -> pb::Workflow {
    pb::Workflow {
        id: w.id.to_string(),
        display_name: w.display_name.clone(),
        state: state_to_proto(w.state) as i32,
        trigger: w.trigger.as_ref().map(trigger_to_proto),
        nodes: w.nodes.iter().map(node_to_proto).collect(),
        entry_node_key: w.entry_node_key.clone(),
        reentry_policy: (match w.reentry_policy {
            ReentryPolicy::Once => pb::ReentryPolicy::Once,
            ReentryPolicy::AfterCompletion => pb::ReentryPolicy::AfterCompletion,
            ReentryPolicy::Always => pb::ReentryPolicy::Always,
        }) as i32,
        version: w.version,
        note: w.note.clone(),
        etag: w.etag(),
        create_time: Some(to_timestamp(w.created_at)),
        update_time: Some(to_timestamp(w.updated_at.unwrap_or(w.created_at))),
        activate_time: w.activated_at.map(to_timestamp),
    }
}

fn execution_state_to_proto(s: ExecutionState) -> pb::ExecutionState {
    match s {
        ExecutionState::Running => pb::ExecutionState::Running,
        ExecutionState::Waiting => pb::ExecutionState::Waiting,
        ExecutionState::Completed => pb::ExecutionState::Completed,
        ExecutionState::Failed => pb::ExecutionState::Failed,
        ExecutionState::Cancelled => pb::ExecutionState::Cancelled,
    }
}

fn step_to_proto(s: &WorkflowStep) -> pb::WorkflowStep {
    pb::WorkflowStep {
        node_key: s.node_key.clone(),
        outcome: (match s.outcome {
            StepOutcome::Done => pb::StepOutcome::Done,
            StepOutcome::Skipped => pb::StepOutcome::Skipped,
            StepOutcome::Failed => pb::StepOutcome::Failed,
        }) as i32,
        condition_result: s.condition_result.unwrap_or(false),
        result_reference: s.result_reference.clone(),
        error: s.error.clone(),
        attempt_count: s.attempt_count,
        execute_time: Some(to_timestamp(s.executed_at)),
    }
}

/// An execution on the wire; its steps only where they were read (Get, Cancel), not in
/// lists.
fn execution_to_proto(e: &Execution, steps: &[WorkflowStep]) -> pb::WorkflowExecution {
    pb::WorkflowExecution {
        id: e.id.to_string(),
        workflow_id: e.workflow_id.to_string(),
        workflow_version: e.workflow_version,
        customer_id: e.customer_id.to_string(),
        state: execution_state_to_proto(e.state) as i32,
        current_node_key: e.current_node_key.clone(),
        wake_time: e.wake_at.map(to_timestamp),
        trigger_event_id: e
            .trigger_event_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        steps: steps.iter().map(step_to_proto).collect(),
        start_time: Some(to_timestamp(e.started_at)),
        end_time: e.ended_at.map(to_timestamp),
    }
}

/// Whether the violation `field` lies under one of the masked workflow fields
/// (`workflow.nodes` covers `workflow.nodes[2].wait`).
fn under_mask(field: &str, paths: &[String]) -> bool {
    paths.iter().any(|p| {
        field
            .strip_prefix("workflow.")
            .and_then(|rest| rest.strip_prefix(p.as_str()))
            .is_some_and(|tail| tail.is_empty() || tail.starts_with(['.', '[']))
    })
}

impl CampaignsApi {
    /// Checks that every message template the workflow sends is one of the partner's
    /// (segments, badges and rewards are checked by the engine when a node runs).
    /// What the workflow names must exist for the partner: its message templates (here), its
    /// rewards (CAMPAIGN rewards, in rewards), segments and badges (in segmentation), each
    /// read with the caller's key, so another partner's is NOT_FOUND, naming the node's
    /// field. A service that is down makes the activation UNAVAILABLE rather than unchecked.
    async fn check_references(&self, who: &Principal, w: &Workflow) -> Result<(), ApiError> {
        let partner_id = who.partner()?;
        let mut seen = BTreeSet::new();
        let missing = |what: &str, id: Uuid, field: String| {
            ApiError::NotFound(format!("{what} {id} ({field})"))
        };
        let mut segments = Vec::new();
        if let Some(Trigger::Segment(t)) = &w.trigger {
            segments.push((
                t.segment_id,
                "workflow.trigger.segment.segment_id".to_owned(),
            ));
        }
        for (i, n) in w.nodes.iter().enumerate() {
            let field = |f: &str| format!("workflow.nodes[{i}].{}.{f}", n.kind.type_name());
            match &n.kind {
                NodeKind::SendMessage {
                    message_template_id: id,
                } => {
                    let known =
                        !seen.insert(*id) || self.store.template(partner_id, *id).await?.is_some();
                    if !known {
                        return Err(missing(
                            "message template",
                            *id,
                            field("message_template_id"),
                        ));
                    }
                }
                NodeKind::IssueVoucher { reward_id } if seen.insert(*reward_id) => {
                    let reward = self.reward(who, *reward_id).await.map_err(|e| match e {
                        ApiError::NotFound(_) => missing("reward", *reward_id, field("reward_id")),
                        e => e,
                    })?;
                    if reward.r#type != rewards_pb::RewardType::Campaign as i32 {
                        return Err(ApiError::precondition(
                            "REWARD_NOT_CAMPAIGN",
                            format!(
                                "{}: only a CAMPAIGN reward issues vouchers to workflow                                  customers",
                                field("reward_id")
                            ),
                        ));
                    }
                }
                NodeKind::AddToSegment { segment_id }
                | NodeKind::RemoveFromSegment { segment_id } => {
                    segments.push((*segment_id, field("segment_id")));
                }
                NodeKind::Condition {
                    test: Some(ConditionTest::InSegment(id)),
                    ..
                } => segments.push((*id, format!("workflow.nodes[{i}].condition.in_segment_id"))),
                NodeKind::AssignBadge { badge_id } | NodeKind::RemoveBadge { badge_id }
                    if seen.insert(*badge_id) =>
                {
                    self.check_badge(who, *badge_id, field("badge_id")).await?;
                }
                NodeKind::Condition {
                    test: Some(ConditionTest::HasBadge(id)),
                    ..
                } if seen.insert(*id) => {
                    self.check_badge(
                        who,
                        *id,
                        format!("workflow.nodes[{i}].condition.has_badge_id"),
                    )
                    .await?;
                }
                _ => {}
            }
        }
        for (id, field) in segments {
            if !seen.insert(id) {
                continue;
            }
            let found = self
                .segmentation_client()?
                .get_segment(outgoing(
                    seg::GetSegmentRequest {
                        segment_id: id.to_string(),
                    },
                    who,
                ))
                .await;
            match found {
                Ok(_) => {}
                Err(s) if s.code() == tonic::Code::NotFound => {
                    return Err(missing("segment", id, field));
                }
                Err(s) => return Err(ApiError::from_upstream("segmentation", s)),
            }
        }
        Ok(())
    }

    async fn check_badge(&self, who: &Principal, id: Uuid, field: String) -> Result<(), ApiError> {
        let found = self
            .segmentation_client()?
            .get_badge(outgoing(
                seg::GetBadgeRequest {
                    badge_id: id.to_string(),
                },
                who,
            ))
            .await;
        match found {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => {
                Err(ApiError::NotFound(format!("badge {id} ({field})")))
            }
            Err(s) => Err(ApiError::from_upstream("segmentation", s)),
        }
    }

    fn segmentation_client(
        &self,
    ) -> Result<
        seg::segmentation_service_client::SegmentationServiceClient<tonic::transport::Channel>,
        ApiError,
    > {
        self.segmentation.clone().ok_or_else(|| {
            ApiError::Unavailable(
                "segmentation is not configured (peers.segmentation_url): workflows naming \
                 segments or badges need it"
                    .into(),
            )
        })
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn create_workflow_rpc(
        &self,
        request: Request<pb::CreateWorkflowRequest>,
    ) -> Result<Response<pb::CreateWorkflowResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(WRITERS)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "CreateWorkflow", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let Some(w) = req.workflow else {
            return Err(ApiError::invalid("workflow", "is required").into());
        };
        let mut workflow = workflow_from_proto(&mut v, w, Utc::now());
        workflow.id = Uuid::now_v7();
        workflow.validate(&mut v);
        v.into_result()?;
        let db = self.store.db();
        let created: Workflow = idempotency::run(db, scope, move |txn| {
            Box::pin(async move {
                store::insert_workflow(txn, partner_id, &workflow).await?;
                Ok(workflow)
            })
        })
        .await?;
        Ok(Response::new(pb::CreateWorkflowResponse {
            workflow: Some(workflow_to_proto(&created)),
        }))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn get_workflow_rpc(
        &self,
        request: Request<pb::GetWorkflowRequest>,
    ) -> Result<Response<pb::GetWorkflowResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let id = parse_uuid("workflow_id", &request.get_ref().workflow_id)?;
        let w = store::workflow(self.store.db(), partner_id, id)
            .await?
            .ok_or_else(workflow_not_found)?;
        Ok(Response::new(pb::GetWorkflowResponse {
            workflow: Some(workflow_to_proto(&w)),
        }))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn list_workflows_rpc(
        &self,
        request: Request<pb::ListWorkflowsRequest>,
    ) -> Result<Response<pb::ListWorkflowsResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let limit = paging::page_size(&mut v, req.page_size);
        let after = paging::parse_page_token(&mut v, &req.page_token);
        if pb::WorkflowState::try_from(req.state).is_err() {
            v.add("state", "is not a workflow state");
        }
        v.into_result()?;
        let found = store::list_workflows(
            self.store.db(),
            partner_id,
            state_from_proto(req.state),
            limit,
            after,
        )
        .await?;
        Ok(Response::new(pb::ListWorkflowsResponse {
            next_page_token: paging::next_page_token(
                found.len(),
                limit,
                found.last().map(|w| w.id),
            ),
            workflows: found.iter().map(workflow_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn update_workflow_rpc(
        &self,
        request: Request<pb::UpdateWorkflowRequest>,
    ) -> Result<Response<pb::UpdateWorkflowResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(WRITERS)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "UpdateWorkflow", &req.idempotency_key, &req);
        let now = Utc::now();
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let paths = mask_paths(&mut v, req.update_mask, UPDATABLE_FIELDS);
        let w = req.workflow.unwrap_or_default();
        let id = v.uuid("workflow.id", &w.id);
        // What the masked fields' values cannot even be converted to; the rest is ignored.
        let mut conversion = Violations::new();
        let changes = workflow_from_proto(&mut conversion, w, now);
        for f in conversion.into_vec() {
            if under_mask(&f.field, &paths) {
                v.add(f.field, f.description);
            }
        }
        v.into_result()?;
        let id = id.unwrap_or_default();
        let etag = req.etag;
        let updated: Workflow = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                let current = store::workflow(txn, partner_id, id)
                    .await?
                    .ok_or_else(workflow_not_found)?;
                check_etag(&etag, &current.etag(), "workflow")?;
                let fields: Vec<&str> = paths.iter().map(String::as_str).collect();
                let next = current.updated(&changes, &fields, now).map_err(rule)?;
                let mut v = Violations::new();
                next.validate(&mut v);
                v.into_result()?;
                store::save_workflow(txn, partner_id, &current, &next).await?;
                Ok(next)
            })
        })
        .await?;
        Ok(Response::new(pb::UpdateWorkflowResponse {
            workflow: Some(workflow_to_proto(&updated)),
        }))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn delete_workflow_rpc(
        &self,
        request: Request<pb::DeleteWorkflowRequest>,
    ) -> Result<Response<pb::DeleteWorkflowResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(WRITERS)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "DeleteWorkflow", &req.idempotency_key, &req);
        let id = target(&req.idempotency_key, "workflow_id", &req.workflow_id)?;
        idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                let current = store::workflow(txn, partner_id, id)
                    .await?
                    .ok_or_else(workflow_not_found)?;
                let live = store::live_executions(txn, partner_id, id).await?;
                current.check_deletable(live).map_err(rule)?;
                store::delete_workflow(txn, partner_id, &current).await
            })
        })
        .await?;
        tracing::info!(%partner_id, workflow_id = %id, "workflow deleted");
        Ok(Response::new(pb::DeleteWorkflowResponse {}))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn activate_workflow_rpc(
        &self,
        request: Request<pb::ActivateWorkflowRequest>,
    ) -> Result<Response<pb::ActivateWorkflowResponse>, Status> {
        let who = principal(&request)?.clone();
        let partner_id = who.partner_with_role(WRITERS)?;
        let req = request.into_inner();
        let scope =
            IdempotencyScope::new(partner_id, "ActivateWorkflow", &req.idempotency_key, &req);
        let id = target(&req.idempotency_key, "workflow_id", &req.workflow_id)?;
        // A retry answers what the first call stored before anything is checked again.
        if let Some(done) = idempotency::stored::<Workflow>(self.store.db(), &scope).await? {
            return Ok(Response::new(pb::ActivateWorkflowResponse {
                workflow: Some(workflow_to_proto(&done)),
            }));
        }
        let read = store::workflow(self.store.db(), partner_id, id)
            .await?
            .ok_or_else(workflow_not_found)?;
        let now = Utc::now();
        // Its state and completeness, then every rule again (a stored draft may predate
        // one), then what it names.
        read.activated(now).map_err(rule)?;
        let mut v = Violations::new();
        read.validate(&mut v);
        v.into_result()?;
        self.check_references(&who, &read).await?;
        let activated: Workflow = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                let current = store::workflow(txn, partner_id, id)
                    .await?
                    .ok_or_else(workflow_not_found)?;
                // Activated as checked above, not as an update made it since.
                if current.version != read.version {
                    return Err(ApiError::precondition(
                        "ETAG_MISMATCH",
                        "the workflow changed during the activation; activate it again",
                    ));
                }
                let next = current.activated(now).map_err(rule)?;
                store::save_workflow(txn, partner_id, &current, &next).await?;
                if current.state == WorkflowState::Paused {
                    store::release_executions(txn, partner_id, id, now).await?;
                }
                Ok(next)
            })
        })
        .await?;
        tracing::info!(%partner_id, workflow_id = %id, version = activated.version, "workflow activated");
        Ok(Response::new(pb::ActivateWorkflowResponse {
            workflow: Some(workflow_to_proto(&activated)),
        }))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn pause_workflow_rpc(
        &self,
        request: Request<pb::PauseWorkflowRequest>,
    ) -> Result<Response<pb::PauseWorkflowResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(WRITERS)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(partner_id, "PauseWorkflow", &req.idempotency_key, &req);
        let id = target(&req.idempotency_key, "workflow_id", &req.workflow_id)?;
        let paused: Workflow = idempotency::run(self.store.db(), scope, move |txn| {
            Box::pin(async move {
                let now = Utc::now();
                let current = store::workflow(txn, partner_id, id)
                    .await?
                    .ok_or_else(workflow_not_found)?;
                let next = current.paused(now).map_err(rule)?;
                store::save_workflow(txn, partner_id, &current, &next).await?;
                store::hold_executions(txn, partner_id, id, now).await?;
                Ok(next)
            })
        })
        .await?;
        tracing::info!(%partner_id, workflow_id = %id, "workflow paused");
        Ok(Response::new(pb::PauseWorkflowResponse {
            workflow: Some(workflow_to_proto(&paused)),
        }))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn list_workflow_executions_rpc(
        &self,
        request: Request<pb::ListWorkflowExecutionsRequest>,
    ) -> Result<Response<pb::ListWorkflowExecutionsResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let workflow_id = v.optional_uuid("workflow_id", &req.workflow_id);
        let customer_id = v.optional_uuid("customer_id", &req.customer_id);
        if req.workflow_id.is_empty() && req.customer_id.is_empty() {
            v.add(
                "workflow_id",
                "give workflow_id, customer_id or both: executions are listed per workflow \
                 or per customer",
            );
        }
        let mut states = Vec::new();
        for (i, n) in req.states.iter().enumerate() {
            match execution_state_from_proto(*n) {
                Some(s) => states.push(s),
                None => v.add(format!("states[{i}]"), "is not an execution state"),
            }
        }
        let limit = paging::page_size(&mut v, req.page_size);
        let after = paging::parse_page_token(&mut v, &req.page_token);
        v.into_result()?;
        // Another partner's workflow is NOT_FOUND; a deleted one still lists its ended
        // executions (its versions are kept).
        if let Some(w) = workflow_id
            && store::workflow_version(self.store.db(), partner_id, w, 1)
                .await?
                .is_none()
        {
            return Err(workflow_not_found().into());
        }
        let filter = ExecutionFilter {
            workflow_id,
            customer_id,
            states,
        };
        let found =
            store::list_executions(self.store.db(), partner_id, &filter, limit, after).await?;
        Ok(Response::new(pb::ListWorkflowExecutionsResponse {
            next_page_token: paging::next_page_token(
                found.len(),
                limit,
                found.last().map(|e| e.id),
            ),
            executions: found.iter().map(|e| execution_to_proto(e, &[])).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn get_workflow_execution_rpc(
        &self,
        request: Request<pb::GetWorkflowExecutionRequest>,
    ) -> Result<Response<pb::GetWorkflowExecutionResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(READERS)?;
        let id = parse_uuid(
            "workflow_execution_id",
            &request.get_ref().workflow_execution_id,
        )?;
        let (e, steps) = store::execution(self.store.db(), partner_id, id)
            .await?
            .ok_or_else(execution_not_found)?;
        Ok(Response::new(pb::GetWorkflowExecutionResponse {
            execution: Some(execution_to_proto(&e, &steps)),
        }))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn cancel_workflow_execution_rpc(
        &self,
        request: Request<pb::CancelWorkflowExecutionRequest>,
    ) -> Result<Response<pb::CancelWorkflowExecutionResponse>, Status> {
        let partner_id = principal(&request)?.partner_with_role(WRITERS)?;
        let req = request.into_inner();
        let scope = IdempotencyScope::new(
            partner_id,
            "CancelWorkflowExecution",
            &req.idempotency_key,
            &req,
        );
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let id = v.uuid("workflow_execution_id", &req.workflow_execution_id);
        if req.reason.chars().count() > MAX_REASON_CHARS {
            v.add(
                "reason",
                format!("must be at most {MAX_REASON_CHARS} characters"),
            );
        }
        v.into_result()?;
        let id = id.unwrap_or_default();
        let (cancelled, steps): (Execution, Vec<WorkflowStep>) =
            idempotency::run(self.store.db(), scope, move |txn| {
                Box::pin(async move {
                    let now = Utc::now();
                    // The engine may move the execution on between the read and the write
                    // (the write is guarded by what was read): read it again and decide anew.
                    for _ in 0..CANCEL_ATTEMPTS {
                        let (before, steps) = store::execution(txn, partner_id, id)
                            .await?
                            .ok_or_else(execution_not_found)?;
                        let after = before.cancelled(now).map_err(rule)?;
                        let progress = Progress {
                            before: &before,
                            after: &after,
                            steps: &[],
                            attempts: 0,
                            due_at: None,
                        };
                        if store::save_progress(txn, partner_id, &progress, now).await? {
                            return Ok((after, steps));
                        }
                    }
                    Err(ApiError::Unavailable(
                        "the execution keeps changing; cancel it again".into(),
                    ))
                })
            })
            .await?;
        tracing::info!(%partner_id, workflow_execution_id = %id, reason = %req.reason, "workflow execution cancelled");
        Ok(Response::new(pb::CancelWorkflowExecutionResponse {
            execution: Some(execution_to_proto(&cancelled, &steps)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn id(n: u128) -> String {
        Uuid::from_u128(n).to_string()
    }

    fn condition(field: &str, operator: seg::ComparisonOperator, value: &str) -> seg::Criterion {
        seg::Criterion {
            kind: Some(seg::criterion::Kind::Condition(seg::Condition {
                field: field.into(),
                operator: operator as i32,
                values: vec![seg::Value {
                    kind: Some(seg::value::Kind::StringValue(value.into())),
                }],
            })),
        }
    }

    fn node(key: &str, kind: pb::workflow_node::Kind, next: &str) -> pb::WorkflowNode {
        pb::WorkflowNode {
            key: key.into(),
            display_name: format!("Node {key}"),
            kind: Some(kind),
            next_node_key: next.into(),
        }
    }

    /// A valid workflow with every kind of node (and every kind of wait and condition).
    fn every_node() -> Vec<pb::WorkflowNode> {
        use pb::condition_node::Test;
        use pb::workflow_node::Kind;
        let cond = |test: Test, t: &str, f: &str| {
            Kind::Condition(pb::ConditionNode {
                test: Some(test),
                true_node_key: t.into(),
                false_node_key: f.into(),
            })
        };
        let vip = seg::Criterion {
            kind: Some(seg::criterion::Kind::All(seg::CriterionGroup {
                criteria: vec![
                    condition("customer.city", seg::ComparisonOperator::Equal, "Praha"),
                    seg::Criterion {
                        kind: Some(seg::criterion::Kind::Negation(Box::new(condition(
                            "event.store",
                            seg::ComparisonOperator::Equal,
                            "online",
                        )))),
                    },
                ],
            })),
        };
        vec![
            node(
                "send",
                Kind::SendMessage(pb::SendMessageNode {
                    message_template_id: id(1),
                }),
                "wait_day",
            ),
            node(
                "wait_day",
                Kind::Wait(pb::WaitNode {
                    duration_seconds: 86_400,
                    until_hour_of_day: -1,
                    until_time: None,
                }),
                "opened",
            ),
            node(
                "opened",
                cond(Test::OpenedMessageNodeKey("send".into()), "vip", "end"),
                "",
            ),
            node(
                "vip",
                cond(Test::Criterion(vip), "in_segment", "has_badge"),
                "",
            ),
            node(
                "in_segment",
                cond(Test::InSegmentId(id(2)), "points", "deduct"),
                "",
            ),
            node(
                "has_badge",
                cond(Test::HasBadgeId(id(3)), "voucher", "split"),
                "",
            ),
            node(
                "points",
                Kind::AddPoints(pb::AddPointsNode {
                    points: 100,
                    points_type_id: "bonus".into(),
                    validity_days: 30,
                }),
                "end",
            ),
            node(
                "deduct",
                Kind::DeductPoints(pb::DeductPointsNode {
                    points: 5,
                    points_type_id: id(4),
                }),
                "end",
            ),
            node(
                "voucher",
                Kind::IssueVoucher(pb::IssueVoucherNode { reward_id: id(5) }),
                "end",
            ),
            node(
                "split",
                Kind::Split(pb::SplitNode {
                    branches: vec![
                        pb::SplitBranch {
                            percent: 20,
                            next_node_key: "add_segment".into(),
                        },
                        pb::SplitBranch {
                            percent: 30,
                            next_node_key: "remove_segment".into(),
                        },
                        pb::SplitBranch {
                            percent: 50,
                            next_node_key: "wait_nine".into(),
                        },
                    ],
                }),
                "",
            ),
            node(
                "add_segment",
                Kind::AddToSegment(pb::AddToSegmentNode { segment_id: id(6) }),
                "assign_badge",
            ),
            node(
                "remove_segment",
                Kind::RemoveFromSegment(pb::RemoveFromSegmentNode { segment_id: id(7) }),
                "remove_badge",
            ),
            node(
                "assign_badge",
                Kind::AssignBadge(pb::AssignBadgeNode { badge_id: id(8) }),
                "end",
            ),
            node(
                "remove_badge",
                Kind::RemoveBadge(pb::RemoveBadgeNode { badge_id: id(9) }),
                "end",
            ),
            node(
                "wait_nine",
                Kind::Wait(pb::WaitNode {
                    duration_seconds: 0,
                    until_hour_of_day: 9,
                    until_time: None,
                }),
                "wait_launch",
            ),
            node(
                "wait_launch",
                Kind::Wait(pb::WaitNode {
                    duration_seconds: 0,
                    until_hour_of_day: -1,
                    until_time: Some(to_timestamp(at("2026-06-01T08:00:00Z"))),
                }),
                "end",
            ),
            node("end", Kind::End(pb::EndNode {}), ""),
        ]
    }

    fn every_trigger() -> Vec<pb::workflow_trigger::Kind> {
        use pb::workflow_trigger::Kind;
        vec![
            Kind::Event(pb::EventTrigger {
                event_type_code: "app_installed".into(),
                property_filters: [("store".to_owned(), "praha_1".to_owned())]
                    .into_iter()
                    .collect(),
            }),
            Kind::Segment(pb::SegmentTrigger {
                segment_id: id(10),
                direction: pb::SegmentTriggerDirection::Left as i32,
            }),
            Kind::Purchase(pb::PurchaseTrigger {
                minimum_amount_minor: 50_000,
                currency_code: "CZK".into(),
                business_unit_ids: vec![id(11), id(12)],
                product_codes: vec!["coffee".into()],
            }),
            Kind::Date(pb::DateTrigger {
                run_time: None,
                customer_date_field: "customer.birth_date".into(),
                offset_days: -7,
                hour_of_day: 9,
                criterion: Some(condition(
                    "customer.city",
                    seg::ComparisonOperator::Equal,
                    "Brno",
                )),
            }),
            Kind::Date(pb::DateTrigger {
                run_time: Some(to_timestamp(at("2026-12-24T17:00:00Z"))),
                customer_date_field: String::new(),
                offset_days: 0,
                hour_of_day: 0,
                criterion: None,
            }),
            Kind::Consent(pb::ConsentTrigger {
                consent_type_code: "newsletter".into(),
                change: pb::ConsentTriggerChange::Granted as i32,
            }),
        ]
    }

    fn wire(trigger: pb::workflow_trigger::Kind) -> pb::Workflow {
        pb::Workflow {
            display_name: "Welcome".into(),
            trigger: Some(pb::WorkflowTrigger {
                kind: Some(trigger),
            }),
            nodes: every_node(),
            entry_node_key: "send".into(),
            reentry_policy: pb::ReentryPolicy::AfterCompletion as i32,
            note: "every kind".into(),
            ..Default::default()
        }
    }

    /// The fields' violations of converting and validating `w`.
    fn problems(w: pb::Workflow) -> Vec<String> {
        let mut v = Violations::new();
        let w = workflow_from_proto(&mut v, w, at("2026-03-01T10:00:00Z"));
        w.validate(&mut v);
        v.into_vec().into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn a_workflow_with_every_node_and_trigger_kind_round_trips() {
        let now = at("2026-03-01T10:00:00Z");
        for trigger in every_trigger() {
            let sent = wire(trigger);
            let mut v = Violations::new();
            let domain = workflow_from_proto(&mut v, sent.clone(), now);
            domain.validate(&mut v);
            assert!(v.is_empty(), "{:?}", v.into_vec());
            assert_eq!(domain.state, WorkflowState::Draft);
            assert_eq!(domain.version, 1);
            let back = workflow_to_proto(&domain);
            assert_eq!(back.trigger, sent.trigger);
            assert_eq!(back.nodes, sent.nodes);
            assert_eq!(back.entry_node_key, sent.entry_node_key);
            assert_eq!(back.reentry_policy, sent.reentry_policy);
            assert_eq!(back.display_name, sent.display_name);
            assert_eq!(back.note, sent.note);
            assert_eq!(back.state, pb::WorkflowState::Draft as i32);
            assert_eq!(back.version, 1);
            assert_eq!(back.etag, "v1");
            assert_eq!(back.create_time, Some(to_timestamp(now)));
            assert_eq!(back.update_time, Some(to_timestamp(now)));
            assert_eq!(back.activate_time, None);
            // And the stored form (JSON) reads back the same.
            let json = serde_json::to_string(&domain).unwrap();
            let stored: Workflow = serde_json::from_str(&json).unwrap();
            assert_eq!(workflow_to_proto(&stored), back);
        }
    }

    #[test]
    fn unset_oneofs_are_reported_by_validate() {
        let mut w = wire(every_trigger().remove(0));
        w.trigger = Some(pb::WorkflowTrigger { kind: None });
        w.nodes[16].kind = None;
        let mut v = Violations::new();
        let domain = workflow_from_proto(&mut v, w.clone(), Utc::now());
        assert!(v.is_empty());
        assert_eq!(domain.trigger, None);
        assert_eq!(domain.nodes[16].kind, NodeKind::Unknown);
        let fields = problems(w.clone());
        assert!(
            fields.contains(&"workflow.trigger".to_owned()),
            "{fields:?}"
        );
        assert!(
            fields.contains(&"workflow.nodes[16].kind".to_owned()),
            "{fields:?}"
        );
        // An unknown node goes back on the wire without a kind.
        assert_eq!(workflow_to_proto(&domain).nodes[16].kind, None);
        // A condition without a test.
        let mut w = wire(every_trigger().remove(0));
        let Some(pb::workflow_node::Kind::Condition(c)) = &mut w.nodes[4].kind else {
            panic!("nodes[4] is a condition");
        };
        c.test = None;
        assert_eq!(problems(w), ["workflow.nodes[4].condition.test"]);
    }

    #[test]
    fn bad_criteria_are_reported_under_the_node_or_trigger() {
        use pb::workflow_node::Kind;
        let mut w = wire(every_trigger().remove(3));
        // A field that does not exist, and a value that is not set.
        let Some(Kind::Condition(c)) = &mut w.nodes[3].kind else {
            panic!("nodes[3] is a condition");
        };
        c.test = Some(pb::condition_node::Test::Criterion(seg::Criterion {
            kind: Some(seg::criterion::Kind::Any(seg::CriterionGroup {
                criteria: vec![
                    condition("customer.shoe_size", seg::ComparisonOperator::Equal, "42"),
                    seg::Criterion {
                        kind: Some(seg::criterion::Kind::Condition(seg::Condition {
                            field: "customer.city".into(),
                            operator: seg::ComparisonOperator::Equal as i32,
                            values: vec![seg::Value { kind: None }],
                        })),
                    },
                ],
            })),
        }));
        // A date trigger cannot read the (absent) triggering event.
        let Some(pb::workflow_trigger::Kind::Date(d)) =
            w.trigger.as_mut().and_then(|t| t.kind.as_mut())
        else {
            panic!("a date trigger");
        };
        d.criterion = Some(condition(
            "event.store",
            seg::ComparisonOperator::Equal,
            "x",
        ));
        let fields = problems(w);
        assert!(
            fields
                .iter()
                .any(|f| f.starts_with("workflow.nodes[3].condition.criterion.any.criteria[0]")),
            "{fields:?}"
        );
        assert!(
            fields.contains(
                &"workflow.nodes[3].condition.criterion.any.criteria[1].condition.values[0]"
                    .to_owned()
            ),
            "{fields:?}"
        );
        assert!(
            fields.contains(&"workflow.trigger.date.criterion.condition.field".to_owned()),
            "{fields:?}"
        );
        // An empty criterion.
        let mut w = wire(every_trigger().remove(0));
        let Some(Kind::Condition(c)) = &mut w.nodes[3].kind else {
            panic!("nodes[3] is a condition");
        };
        c.test = Some(pb::condition_node::Test::Criterion(seg::Criterion {
            kind: None,
        }));
        let fields = problems(w);
        assert!(!fields.is_empty());
        assert!(
            fields
                .iter()
                .all(|f| f.starts_with("workflow.nodes[3].condition.criterion")),
            "{fields:?}"
        );
    }

    #[test]
    fn malformed_ids_and_times_are_reported_once_and_empty_ids_as_required() {
        use pb::workflow_node::Kind;
        let mut w = wire(every_trigger().remove(2));
        w.nodes[0].kind = Some(Kind::SendMessage(pb::SendMessageNode {
            message_template_id: "nope".into(),
        }));
        w.nodes[8].kind = Some(Kind::IssueVoucher(pb::IssueVoucherNode {
            reward_id: String::new(),
        }));
        w.nodes[15].kind = Some(Kind::Wait(pb::WaitNode {
            until_hour_of_day: -1,
            until_time: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: -1,
            }),
            ..Default::default()
        }));
        let Some(pb::workflow_trigger::Kind::Purchase(p)) =
            w.trigger.as_mut().and_then(|t| t.kind.as_mut())
        else {
            panic!("a purchase trigger");
        };
        p.business_unit_ids[1] = "x".into();
        assert_eq!(
            problems(w),
            [
                "workflow.trigger.purchase.business_unit_ids[1]",
                "workflow.nodes[0].send_message.message_template_id",
                "workflow.nodes[15].wait.until_time",
                "workflow.nodes[8].issue_voucher.reward_id",
            ]
        );
    }

    #[test]
    fn an_unused_hour_of_a_wait_is_minus_one_or_zero_next_to_another_choice() {
        let path = "workflow.nodes[0].wait";
        let mut v = Violations::new();
        let wait = |d: i64, h: i32, t: Option<DateTime<Utc>>| pb::WaitNode {
            duration_seconds: d,
            until_hour_of_day: h,
            until_time: t.map(to_timestamp),
        };
        let kind = |v: &mut Violations, w: pb::WaitNode| wait_from_proto(v, path, &w);
        assert_eq!(
            kind(&mut v, wait(3_600, 0, None)),
            NodeKind::Wait {
                duration_seconds: Some(3_600),
                until_hour_of_day: None,
                until_time: None
            }
        );
        let noon = at("2026-06-01T12:00:00Z");
        assert_eq!(
            kind(&mut v, wait(0, 0, Some(noon))),
            NodeKind::Wait {
                duration_seconds: None,
                until_hour_of_day: None,
                until_time: Some(noon)
            }
        );
        assert_eq!(
            kind(&mut v, wait(0, 0, None)),
            NodeKind::Wait {
                duration_seconds: None,
                until_hour_of_day: Some(0),
                until_time: None
            },
            "0 alone: until midnight"
        );
        assert_eq!(
            kind(&mut v, wait(0, -1, None)),
            NodeKind::Wait {
                duration_seconds: None,
                until_hour_of_day: None,
                until_time: None
            },
            "nothing: validate reports it"
        );
        assert_eq!(
            kind(&mut v, wait(3_600, 7, None)),
            NodeKind::Wait {
                duration_seconds: Some(3_600),
                until_hour_of_day: Some(7),
                until_time: None
            },
            "two choices: validate reports it"
        );
        assert!(v.is_empty());
    }

    #[test]
    fn executions_and_steps_go_on_the_wire() {
        let started = at("2026-03-01T10:00:00Z");
        let e = Execution {
            id: Uuid::from_u128(1),
            workflow_id: Uuid::from_u128(2),
            workflow_version: 3,
            customer_id: Uuid::from_u128(4),
            state: ExecutionState::Waiting,
            current_node_key: "remind".into(),
            wake_at: Some(at("2026-03-02T10:00:00Z")),
            trigger_event_id: Some(Uuid::from_u128(5)),
            trigger_facts: Default::default(),
            visits: Default::default(),
            started_at: started,
            ended_at: None,
        };
        let steps = [
            WorkflowStep {
                node_key: "send".into(),
                outcome: StepOutcome::Done,
                condition_result: None,
                result_reference: "message:1".into(),
                error: String::new(),
                attempt_count: 1,
                executed_at: started,
            },
            WorkflowStep {
                node_key: "vip".into(),
                outcome: StepOutcome::Skipped,
                condition_result: Some(true),
                result_reference: String::new(),
                error: "no consent".into(),
                attempt_count: 2,
                executed_at: started,
            },
        ];
        let p = execution_to_proto(&e, &steps);
        assert_eq!(p.id, id(1));
        assert_eq!(p.workflow_id, id(2));
        assert_eq!(p.workflow_version, 3);
        assert_eq!(p.customer_id, id(4));
        assert_eq!(p.state, pb::ExecutionState::Waiting as i32);
        assert_eq!(p.current_node_key, "remind");
        assert_eq!(p.wake_time, Some(to_timestamp(at("2026-03-02T10:00:00Z"))));
        assert_eq!(p.trigger_event_id, id(5));
        assert_eq!(p.start_time, Some(to_timestamp(started)));
        assert_eq!(p.end_time, None);
        assert_eq!(p.steps.len(), 2);
        assert_eq!(p.steps[0].outcome, pb::StepOutcome::Done as i32);
        assert!(!p.steps[0].condition_result);
        assert_eq!(p.steps[0].result_reference, "message:1");
        assert_eq!(p.steps[1].outcome, pb::StepOutcome::Skipped as i32);
        assert!(p.steps[1].condition_result);
        assert_eq!(p.steps[1].error, "no consent");
        assert_eq!(p.steps[1].attempt_count, 2);
        assert_eq!(p.steps[1].execute_time, Some(to_timestamp(started)));
        // Lists carry no steps; a date-started one has no event.
        let listed = execution_to_proto(
            &Execution {
                trigger_event_id: None,
                ..e
            },
            &[],
        );
        assert!(listed.steps.is_empty());
        assert_eq!(listed.trigger_event_id, "");
        for s in [
            ExecutionState::Running,
            ExecutionState::Waiting,
            ExecutionState::Completed,
            ExecutionState::Failed,
            ExecutionState::Cancelled,
        ] {
            assert_eq!(
                execution_state_from_proto(execution_state_to_proto(s) as i32),
                Some(s)
            );
        }
        assert_eq!(execution_state_from_proto(0), None);
        assert_eq!(execution_state_from_proto(99), None);
    }

    #[test]
    fn update_violations_count_only_under_the_masked_fields() {
        let paths = vec!["nodes".to_owned(), "display_name".to_owned()];
        assert!(under_mask("workflow.nodes", &paths));
        assert!(under_mask("workflow.nodes[3].wait.until_time", &paths));
        assert!(under_mask("workflow.display_name", &paths));
        assert!(!under_mask("workflow.note", &paths));
        assert!(!under_mask("workflow.trigger.date.criterion", &paths));
        assert!(!under_mask("workflow.nodesx", &paths));
        assert!(!under_mask("nodes", &paths));
    }
}

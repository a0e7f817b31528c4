//! Marketing-automation workflows: definitions (every version kept), durable per-customer
//! executions and their steps, and the customer dates that date triggers read.
//!
//! Executions are a queue like the messages: `due_at` is when the engine should step one
//! next (`NULL`: nothing to do — ended, or held while its workflow is paused). A worker
//! claims due executions with `FOR UPDATE SKIP LOCKED` (SQLite: the write transaction is the
//! lock) and pushes their `due_at` forward by a lease, so a crashed worker's executions come
//! due again by themselves. Progress is written with a guard on the state read, so an
//! operator's cancellation in the middle of a step is never undone.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use loyalty_platform::{ApiError, error::check_guarded_write, events};
use loyalty_proto::events::v1 as ev;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Statement, sea_query::Expr,
    sea_query::OnConflict,
};
use uuid::Uuid;

use super::entities::{
    workflow_customer_dates as dates, workflow_executions as executions, workflow_steps as steps,
    workflow_versions as versions, workflows,
};
use crate::domain::workflow::{
    Execution, ExecutionState, ExecutionSummary, StepOutcome, Workflow, WorkflowState, WorkflowStep,
};

fn internal(what: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("{what}"))
}

fn definition_from(json: &str) -> Result<Workflow, ApiError> {
    serde_json::from_str(json).map_err(|e| internal(format!("stored workflow: {e}")))
}

fn definition_json(w: &Workflow) -> Result<String, ApiError> {
    serde_json::to_string(w).map_err(internal)
}

fn trigger_kind(w: &Workflow) -> &'static str {
    w.trigger.as_ref().map_or("", |t| t.kind())
}

fn workflow_row(partner_id: Uuid, w: &Workflow) -> Result<workflows::ActiveModel, ApiError> {
    Ok(workflows::ActiveModel {
        id: Set(w.id),
        partner_id: Set(partner_id),
        display_name: Set(w.display_name.clone()),
        state: Set(w.state.as_str().to_owned()),
        version: Set(w.version),
        trigger_kind: Set(trigger_kind(w).to_owned()),
        definition: Set(definition_json(w)?),
        created_at: Set(w.created_at),
        updated_at: Set(w.updated_at.unwrap_or(w.created_at)),
        activated_at: Set(w.activated_at),
        date_run_at: Set(None),
    })
}

async fn insert_version(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    w: &Workflow,
) -> Result<(), ApiError> {
    versions::Entity::insert(versions::ActiveModel {
        workflow_id: Set(w.id),
        version: Set(w.version),
        partner_id: Set(partner_id),
        definition: Set(definition_json(w)?),
        created_at: Set(w.updated_at.unwrap_or(w.created_at)),
    })
    .on_conflict(
        OnConflict::columns([versions::Column::WorkflowId, versions::Column::Version])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Stores a new workflow (version 1 and its definition).
pub async fn insert_workflow(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    w: &Workflow,
) -> Result<(), ApiError> {
    workflows::Entity::insert(workflow_row(partner_id, w)?)
        .exec_without_returning(conn)
        .await?;
    insert_version(conn, partner_id, w).await
}

/// A workflow of `partner_id` as it is now; another partner's is `None`.
pub async fn workflow(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<Option<Workflow>, ApiError> {
    workflows::Entity::find_by_id(id)
        .filter(workflows::Column::PartnerId.eq(partner_id))
        .one(conn)
        .await?
        .map(|m| definition_from(&m.definition))
        .transpose()
}

/// Version `version` of a workflow of `partner_id` (kept after the workflow changed, and
/// after it was deleted).
pub async fn workflow_version(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
    version: i32,
) -> Result<Option<Workflow>, ApiError> {
    versions::Entity::find_by_id((id, version))
        .filter(versions::Column::PartnerId.eq(partner_id))
        .one(conn)
        .await?
        .map(|m| definition_from(&m.definition))
        .transpose()
}

/// The partner's workflows, newest first, after the workflow `after`, optionally in one
/// state.
pub async fn list_workflows(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    state: Option<WorkflowState>,
    limit: u64,
    after: Option<Uuid>,
) -> Result<Vec<Workflow>, ApiError> {
    let mut q = workflows::Entity::find().filter(workflows::Column::PartnerId.eq(partner_id));
    if let Some(s) = state {
        q = q.filter(workflows::Column::State.eq(s.as_str()));
    }
    if let Some(after) = after {
        q = q.filter(workflows::Column::Id.lt(after));
    }
    q.order_by_desc(workflows::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .iter()
        .map(|m| definition_from(&m.definition))
        .collect()
}

/// Replaces a workflow by `next`, guarded by the version and state of `current` (what the
/// caller read in the same transaction): ETAG_MISMATCH if another write came first. A new
/// version's definition is kept next to the older ones.
pub async fn save_workflow(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    current: &Workflow,
    next: &Workflow,
) -> Result<(), ApiError> {
    let written = workflows::Entity::update_many()
        .col_expr(
            workflows::Column::DisplayName,
            Expr::value(next.display_name.clone()),
        )
        .col_expr(workflows::Column::State, Expr::value(next.state.as_str()))
        .col_expr(workflows::Column::Version, Expr::value(next.version))
        .col_expr(
            workflows::Column::TriggerKind,
            Expr::value(trigger_kind(next)),
        )
        .col_expr(
            workflows::Column::Definition,
            Expr::value(definition_json(next)?),
        )
        .col_expr(
            workflows::Column::UpdatedAt,
            Expr::value(next.updated_at.unwrap_or(next.created_at)),
        )
        .col_expr(
            workflows::Column::ActivatedAt,
            Expr::value(next.activated_at),
        )
        .filter(workflows::Column::PartnerId.eq(partner_id))
        .filter(workflows::Column::Id.eq(current.id))
        .filter(workflows::Column::Version.eq(current.version))
        .filter(workflows::Column::State.eq(current.state.as_str()))
        .exec(conn)
        .await?;
    check_guarded_write(written.rows_affected, "workflow")?;
    if next.version != current.version {
        insert_version(conn, partner_id, next).await?;
    }
    Ok(())
}

/// Deletes a workflow (guarded like [`save_workflow`]). Its versions stay for the ended
/// executions that ran them.
pub async fn delete_workflow(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    current: &Workflow,
) -> Result<(), ApiError> {
    let deleted = workflows::Entity::delete_many()
        .filter(workflows::Column::PartnerId.eq(partner_id))
        .filter(workflows::Column::Id.eq(current.id))
        .filter(workflows::Column::Version.eq(current.version))
        .filter(workflows::Column::State.eq(current.state.as_str()))
        .exec(conn)
        .await?;
    check_guarded_write(deleted.rows_affected, "workflow")
}

/// The partner's ACTIVE workflows whose trigger is of `kind` (`Trigger::kind`).
pub async fn active_workflows(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    kind: &str,
) -> Result<Vec<Workflow>, ApiError> {
    workflows::Entity::find()
        .filter(workflows::Column::PartnerId.eq(partner_id))
        .filter(workflows::Column::State.eq(WorkflowState::Active.as_str()))
        .filter(workflows::Column::TriggerKind.eq(kind))
        .all(conn)
        .await?
        .iter()
        .map(|m| definition_from(&m.definition))
        .collect()
}

/// An ACTIVE date workflow of any partner, with when its trigger last ran.
#[derive(Debug, Clone)]
pub struct DateWorkflow {
    pub partner_id: Uuid,
    pub workflow: Workflow,
    pub date_run_at: Option<DateTime<Utc>>,
}

/// Every ACTIVE workflow with a date trigger (the engine's scan; few per partner).
pub async fn active_date_workflows(
    conn: &impl ConnectionTrait,
) -> Result<Vec<DateWorkflow>, ApiError> {
    workflows::Entity::find()
        .filter(workflows::Column::State.eq(WorkflowState::Active.as_str()))
        .filter(workflows::Column::TriggerKind.eq("date"))
        .all(conn)
        .await?
        .into_iter()
        .map(|m| {
            Ok(DateWorkflow {
                partner_id: m.partner_id,
                workflow: definition_from(&m.definition)?,
                date_run_at: m.date_run_at,
            })
        })
        .collect()
}

/// Records that the date trigger of a workflow ran at `at` (all that run's customers were
/// started), unless the workflow changed version since it was read.
pub async fn mark_date_run(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    w: &Workflow,
    at: DateTime<Utc>,
) -> Result<(), ApiError> {
    workflows::Entity::update_many()
        .col_expr(workflows::Column::DateRunAt, Expr::value(Some(at)))
        .filter(workflows::Column::PartnerId.eq(partner_id))
        .filter(workflows::Column::Id.eq(w.id))
        .filter(workflows::Column::Version.eq(w.version))
        .exec(conn)
        .await?;
    Ok(())
}

// ---- executions ----

const LIVE: [&str; 2] = ["running", "waiting"];

fn execution_from(m: executions::Model) -> Result<Execution, ApiError> {
    let id = m.id;
    let bad = |what: &str| internal(format!("stored workflow execution {id} has a bad {what}"));
    Ok(Execution {
        id: m.id,
        workflow_id: m.workflow_id,
        workflow_version: m.workflow_version,
        customer_id: m.customer_id,
        state: ExecutionState::parse_str(&m.state).ok_or_else(|| bad("state"))?,
        current_node_key: m.current_node_key,
        wake_at: m.wake_at,
        trigger_event_id: m.trigger_event_id,
        trigger_facts: serde_json::from_str(&m.trigger_facts).map_err(|_| bad("trigger"))?,
        visits: serde_json::from_str(&m.visits).map_err(|_| bad("visit count"))?,
        started_at: m.started_at,
        ended_at: m.ended_at,
    })
}

/// When the engine should step an execution in `state` next: at once when running, at its
/// wake time when waiting (never while held), not at all when ended.
pub fn due_at(e: &Execution, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match e.state {
        ExecutionState::Running => Some(now),
        ExecutionState::Waiting => e.wake_at,
        _ => None,
    }
}

/// A claimed execution: what the worker steps, with its partner and failed attempts at the
/// current node.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub partner_id: Uuid,
    pub execution: Execution,
    pub attempts: i32,
}

/// Starts an execution for the trigger occurrence `trigger_key` (`event:<id>`,
/// `date:<YYYY-MM-DD>`), with its `WorkflowExecutionStarted` event; `false` when that
/// occurrence had started one already (the unique index decides, also between replicas).
pub async fn start_execution(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    e: &Execution,
    trigger_key: &str,
) -> Result<bool, ApiError> {
    let row = executions::ActiveModel {
        id: Set(e.id),
        partner_id: Set(partner_id),
        workflow_id: Set(e.workflow_id),
        workflow_version: Set(e.workflow_version),
        customer_id: Set(e.customer_id),
        state: Set(e.state.as_str().to_owned()),
        current_node_key: Set(e.current_node_key.clone()),
        wake_at: Set(e.wake_at),
        due_at: Set(due_at(e, e.started_at)),
        attempts: Set(0),
        trigger_key: Set(trigger_key.to_owned()),
        trigger_event_id: Set(e.trigger_event_id),
        trigger_facts: Set(serde_json::to_string(&e.trigger_facts).map_err(internal)?),
        visits: Set(serde_json::to_string(&e.visits).map_err(internal)?),
        started_at: Set(e.started_at),
        ended_at: Set(None),
        updated_at: Set(e.started_at),
    };
    let inserted = executions::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                executions::Column::WorkflowId,
                executions::Column::CustomerId,
                executions::Column::TriggerKey,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    if inserted == 0 {
        return Ok(false);
    }
    events::enqueue(
        conn,
        Some(partner_id),
        &ev::WorkflowExecutionStarted {
            workflow_execution_id: e.id.to_string(),
            workflow_id: e.workflow_id.to_string(),
            customer_id: e.customer_id.to_string(),
        },
    )
    .await?;
    Ok(true)
}

/// The customer's executions of a workflow (any version), for the re-entry policy.
pub async fn customer_executions(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    workflow_id: Uuid,
    customer_id: Uuid,
) -> Result<Vec<ExecutionSummary>, ApiError> {
    let rows: Vec<(Uuid, String)> = executions::Entity::find()
        .select_only()
        .column(executions::Column::Id)
        .column(executions::Column::State)
        .filter(executions::Column::PartnerId.eq(partner_id))
        .filter(executions::Column::CustomerId.eq(customer_id))
        .filter(executions::Column::WorkflowId.eq(workflow_id))
        .into_tuple()
        .all(conn)
        .await?;
    rows.into_iter()
        .map(|(id, state)| {
            Ok(ExecutionSummary {
                id,
                state: ExecutionState::parse_str(&state)
                    .ok_or_else(|| internal("stored execution state"))?,
            })
        })
        .collect()
}

/// How many executions of a workflow are running or waiting.
pub async fn live_executions(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    workflow_id: Uuid,
) -> Result<u64, ApiError> {
    let n = executions::Entity::find()
        .filter(executions::Column::PartnerId.eq(partner_id))
        .filter(executions::Column::WorkflowId.eq(workflow_id))
        .filter(executions::Column::State.is_in(LIVE))
        .count(conn)
        .await?;
    Ok(n)
}

/// Holds the running and waiting executions of a paused workflow: nothing is due until
/// [`release_executions`]. Running ones become WAITING without a wake time
/// (`Execution::held`).
pub async fn hold_executions(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    workflow_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let scope = || {
        Condition::all()
            .add(executions::Column::PartnerId.eq(partner_id))
            .add(executions::Column::WorkflowId.eq(workflow_id))
    };
    executions::Entity::update_many()
        .col_expr(
            executions::Column::State,
            Expr::value(ExecutionState::Waiting.as_str()),
        )
        .col_expr(
            executions::Column::WakeAt,
            Expr::value(None::<DateTime<Utc>>),
        )
        .col_expr(executions::Column::UpdatedAt, Expr::value(now))
        .filter(scope())
        .filter(executions::Column::State.eq(ExecutionState::Running.as_str()))
        .exec(conn)
        .await?;
    executions::Entity::update_many()
        .col_expr(
            executions::Column::DueAt,
            Expr::value(None::<DateTime<Utc>>),
        )
        .filter(scope())
        .filter(executions::Column::State.is_in(LIVE))
        .exec(conn)
        .await?;
    Ok(())
}

/// Releases the executions of a reactivated workflow: held ones (WAITING without a wake
/// time) are due at `now` (`Execution::released`), waiting ones at their wake time.
pub async fn release_executions(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    workflow_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let scope = || {
        Condition::all()
            .add(executions::Column::PartnerId.eq(partner_id))
            .add(executions::Column::WorkflowId.eq(workflow_id))
            .add(executions::Column::State.eq(ExecutionState::Waiting.as_str()))
    };
    executions::Entity::update_many()
        .col_expr(executions::Column::WakeAt, Expr::value(Some(now)))
        .filter(scope())
        .filter(executions::Column::WakeAt.is_null())
        .exec(conn)
        .await?;
    executions::Entity::update_many()
        .col_expr(
            executions::Column::DueAt,
            Expr::col(executions::Column::WakeAt).into(),
        )
        .filter(scope())
        .exec(conn)
        .await?;
    Ok(())
}

/// An execution of `partner_id` with its steps, oldest first; another partner's is `None`.
pub async fn execution(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    id: Uuid,
) -> Result<Option<(Execution, Vec<WorkflowStep>)>, ApiError> {
    let Some(m) = executions::Entity::find_by_id(id)
        .filter(executions::Column::PartnerId.eq(partner_id))
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    let steps = steps::Entity::find()
        .filter(steps::Column::ExecutionId.eq(id))
        .order_by_asc(steps::Column::Seq)
        .all(conn)
        .await?
        .into_iter()
        .map(step_from)
        .collect::<Result<_, _>>()?;
    Ok(Some((execution_from(m)?, steps)))
}

fn step_from(m: steps::Model) -> Result<WorkflowStep, ApiError> {
    Ok(WorkflowStep {
        node_key: m.node_key,
        outcome: StepOutcome::parse_str(&m.outcome)
            .ok_or_else(|| internal("stored step outcome"))?,
        condition_result: m.condition_result,
        result_reference: m.result_reference,
        error: m.error,
        attempt_count: m.attempt_count,
        executed_at: m.executed_at,
    })
}

/// Filters of ListWorkflowExecutions (at least one of the ids is set by the API).
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub workflow_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    /// Empty = any.
    pub states: Vec<ExecutionState>,
}

/// The partner's executions (without steps), newest first, after the execution `after`.
pub async fn list_executions(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    filter: &ExecutionFilter,
    limit: u64,
    after: Option<Uuid>,
) -> Result<Vec<Execution>, ApiError> {
    let mut q = executions::Entity::find().filter(executions::Column::PartnerId.eq(partner_id));
    if let Some(w) = filter.workflow_id {
        q = q.filter(executions::Column::WorkflowId.eq(w));
    }
    if let Some(c) = filter.customer_id {
        q = q.filter(executions::Column::CustomerId.eq(c));
    }
    if !filter.states.is_empty() {
        q = q.filter(executions::Column::State.is_in(filter.states.iter().map(|s| s.as_str())));
    }
    if let Some(after) = after {
        q = q.filter(executions::Column::Id.lt(after));
    }
    q.order_by_desc(executions::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(execution_from)
        .collect()
}

/// What a step of the engine (or an operator) changed of an execution: its new state,
/// steps to append, and the failed attempts at its (new) current node.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    pub before: &'a Execution,
    pub after: &'a Execution,
    pub steps: &'a [(WorkflowStep, &'static str)],
    pub attempts: i32,
    /// When to step it next; `None` = derived from the state ([`due_at`]).
    pub due_at: Option<DateTime<Utc>>,
}

/// Writes an execution's progress with its events (`WorkflowStepExecuted` per step,
/// `WorkflowExecutionEnded` when it ended), guarded by the state it had when read: `false`
/// (nothing written) when it changed meanwhile, e.g. an operator cancelled it mid-step.
pub async fn save_progress(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    p: &Progress<'_>,
    now: DateTime<Utc>,
) -> Result<bool, ApiError> {
    let e = p.after;
    let due = p.due_at.or_else(|| due_at(e, now));
    let written = executions::Entity::update_many()
        .col_expr(executions::Column::State, Expr::value(e.state.as_str()))
        .col_expr(
            executions::Column::CurrentNodeKey,
            Expr::value(e.current_node_key.clone()),
        )
        .col_expr(executions::Column::WakeAt, Expr::value(e.wake_at))
        .col_expr(executions::Column::DueAt, Expr::value(due))
        .col_expr(executions::Column::Attempts, Expr::value(p.attempts))
        .col_expr(
            executions::Column::Visits,
            Expr::value(serde_json::to_string(&e.visits).map_err(internal)?),
        )
        .col_expr(
            executions::Column::TriggerFacts,
            Expr::value(serde_json::to_string(&e.trigger_facts).map_err(internal)?),
        )
        .col_expr(executions::Column::EndedAt, Expr::value(e.ended_at))
        .col_expr(executions::Column::UpdatedAt, Expr::value(now))
        .filter(executions::Column::PartnerId.eq(partner_id))
        .filter(executions::Column::Id.eq(e.id))
        .filter(executions::Column::State.eq(p.before.state.as_str()))
        .filter(executions::Column::CurrentNodeKey.eq(p.before.current_node_key.clone()))
        .exec(conn)
        .await?;
    if written.rows_affected == 0 {
        return Ok(false);
    }
    if !p.steps.is_empty() {
        let last: Option<i32> = steps::Entity::find()
            .select_only()
            .column_as(steps::Column::Seq.max(), "seq")
            .filter(steps::Column::ExecutionId.eq(e.id))
            .into_tuple::<Option<i32>>()
            .one(conn)
            .await?
            .flatten();
        let mut seq = last.unwrap_or(0);
        let mut published = Vec::with_capacity(p.steps.len());
        let mut rows = Vec::with_capacity(p.steps.len());
        for (s, kind) in p.steps {
            seq += 1;
            rows.push(steps::ActiveModel {
                execution_id: Set(e.id),
                seq: Set(seq),
                partner_id: Set(partner_id),
                node_key: Set(s.node_key.clone()),
                node_kind: Set((*kind).to_owned()),
                outcome: Set(s.outcome.as_str().to_owned()),
                condition_result: Set(s.condition_result),
                result_reference: Set(s.result_reference.clone()),
                error: Set(WorkflowStep::clip_error(&s.error)),
                attempt_count: Set(s.attempt_count),
                executed_at: Set(s.executed_at),
            });
            published.push(ev::WorkflowStepExecuted {
                workflow_execution_id: e.id.to_string(),
                workflow_id: e.workflow_id.to_string(),
                customer_id: e.customer_id.to_string(),
                node_key: s.node_key.clone(),
                node_kind: (*kind).to_owned(),
                outcome: s.outcome.as_str().to_owned(),
                result_reference: s.result_reference.clone(),
            });
        }
        steps::Entity::insert_many(rows)
            .exec_without_returning(conn)
            .await?;
        events::enqueue_all(conn, Some(partner_id), &published).await?;
    }
    if e.state.is_ended() && !p.before.state.is_ended() {
        events::enqueue(
            conn,
            Some(partner_id),
            &ev::WorkflowExecutionEnded {
                workflow_execution_id: e.id.to_string(),
                workflow_id: e.workflow_id.to_string(),
                customer_id: e.customer_id.to_string(),
                state: e.state.as_str().to_owned(),
            },
        )
        .await?;
    }
    Ok(true)
}

/// Cancels every running or waiting execution of a customer (erased or blocked), with
/// their `WorkflowExecutionEnded` events; how many.
pub async fn cancel_customer_executions(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    now: DateTime<Utc>,
) -> Result<usize, ApiError> {
    let live = executions::Entity::find()
        .filter(executions::Column::PartnerId.eq(partner_id))
        .filter(executions::Column::CustomerId.eq(customer_id))
        .filter(executions::Column::State.is_in(LIVE))
        .all(conn)
        .await?;
    let mut n = 0;
    for m in live {
        let before = execution_from(m)?;
        let Ok(after) = before.cancelled(now) else {
            continue;
        };
        let progress = Progress {
            before: &before,
            after: &after,
            steps: &[],
            attempts: 0,
            due_at: None,
        };
        if save_progress(conn, partner_id, &progress, now).await? {
            n += 1;
        }
    }
    Ok(n)
}

/// Claims up to `limit` due executions of any partner for `lease` (their `due_at` pushed to
/// `now + lease`), oldest due first. PostgreSQL: `FOR UPDATE SKIP LOCKED`, so workers of
/// every replica claim disjoint sets.
pub async fn claim_due(
    conn: &impl ConnectionTrait,
    now: DateTime<Utc>,
    lease: chrono::TimeDelta,
    limit: u64,
) -> Result<Vec<Claimed>, ApiError> {
    let backend = conn.get_database_backend();
    let until = now + lease;
    let sql = match backend {
        DbBackend::Postgres => {
            "UPDATE workflow_executions SET due_at = $1 WHERE id IN (SELECT id FROM \
             workflow_executions WHERE due_at IS NOT NULL AND due_at <= $2 ORDER BY due_at \
             LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING *"
        }
        _ => {
            "UPDATE workflow_executions SET due_at = ?1 WHERE id IN (SELECT id FROM \
             workflow_executions WHERE due_at IS NOT NULL AND due_at <= ?2 ORDER BY due_at \
             LIMIT ?3) RETURNING *"
        }
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = executions::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            backend,
            sql,
            [until.into(), now.into(), limit.into()],
        ))
        .all(conn)
        .await?;
    rows.into_iter()
        .map(|m| {
            let partner_id = m.partner_id;
            let attempts = m.attempts;
            Ok(Claimed {
                partner_id,
                execution: execution_from(m)?,
                attempts,
            })
        })
        .collect()
}

// ---- customer dates ----

/// The field of the row every known customer has (what a one-off date trigger runs over).
const KNOWN: &str = "customer";

/// Replaces the dates a customer has for date triggers (`field` → date): what identity's
/// CustomerCreated/CustomerUpdated carry. The customer is known from then on (a row of
/// field `customer`, for one-off date triggers).
pub async fn replace_customer_dates(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
    dated: &BTreeMap<String, chrono::NaiveDate>,
) -> Result<(), ApiError> {
    use chrono::Datelike;
    forget_customer_dates(conn, partner_id, customer_id).await?;
    let known = dates::ActiveModel {
        partner_id: Set(partner_id),
        customer_id: Set(customer_id),
        field: Set(KNOWN.to_owned()),
        month_day: Set(0),
        date: Set(String::new()),
    };
    let rows = dated
        .iter()
        .filter(|(field, _)| field.as_str() != KNOWN)
        .map(|(field, date)| dates::ActiveModel {
            partner_id: Set(partner_id),
            customer_id: Set(customer_id),
            field: Set(field.clone()),
            month_day: Set(i32::try_from(date.month() * 100 + date.day()).unwrap_or(0)),
            date: Set(date.format("%Y-%m-%d").to_string()),
        })
        .chain([known]);
    dates::Entity::insert_many(rows)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Forgets a customer's dates (erased).
pub async fn forget_customer_dates(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    customer_id: Uuid,
) -> Result<(), ApiError> {
    dates::Entity::delete_many()
        .filter(dates::Column::PartnerId.eq(partner_id))
        .filter(dates::Column::CustomerId.eq(customer_id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Customers of a partner whose `field` falls on one of `month_days` (month × 100 + day),
/// in customer order after `after`, up to `limit`: (customer, date).
pub async fn customers_on_days(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    field: &str,
    month_days: &[i32],
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<(Uuid, chrono::NaiveDate)>, ApiError> {
    let mut q = dates::Entity::find()
        .filter(dates::Column::PartnerId.eq(partner_id))
        .filter(dates::Column::Field.eq(field))
        .filter(dates::Column::MonthDay.is_in(month_days.iter().copied()));
    if let Some(after) = after {
        q = q.filter(dates::Column::CustomerId.gt(after));
    }
    Ok(q.order_by_asc(dates::Column::CustomerId)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .filter_map(|m| {
            chrono::NaiveDate::parse_from_str(&m.date, "%Y-%m-%d")
                .ok()
                .map(|d| (m.customer_id, d))
        })
        .collect())
}

/// The partner's known customers in customer order after `after`, up to `limit` (a one-off
/// date trigger's run).
pub async fn known_customers(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Uuid>, ApiError> {
    let mut q = dates::Entity::find()
        .select_only()
        .column(dates::Column::CustomerId)
        .filter(dates::Column::PartnerId.eq(partner_id))
        .filter(dates::Column::Field.eq(KNOWN));
    if let Some(after) = after {
        q = q.filter(dates::Column::CustomerId.gt(after));
    }
    Ok(q.order_by_asc(dates::Column::CustomerId)
        .limit(limit)
        .into_tuple()
        .all(conn)
        .await?)
}

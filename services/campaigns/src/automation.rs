//! The workflow engine: starts executions from triggers and steps them durably.
//!
//! - **Triggers from events** ([`Triggers`], one handler for identity, segmentation and
//!   checkout): an event that matches an ACTIVE workflow's trigger starts an execution in
//!   the same transaction that records the event as consumed, so a redelivered event starts
//!   nothing twice (and the unique `(workflow, customer, trigger key)` index would refuse it
//!   anyway). Identity's customer events also keep the customer dates date triggers read,
//!   and an erased or blocked customer's executions are cancelled.
//! - **Date triggers** ([`Engine::scan_dates`], every `automation.date_scan_secs`): a
//!   yearly customer date (a birthday) starts an execution when its run (the date moved by
//!   the offset, at the hour in the partner's time zone) has come, keyed by the run's day; a
//!   one-off `run_time` starts one for every known customer once.
//! - **Stepping** ([`Engine::step_due`]): due executions are claimed like the send queue
//!   (`FOR UPDATE SKIP LOCKED`, a lease that lapses when a replica dies) and walked through
//!   [`workflow::step`]; every node's outcome is written in its own transaction with its
//!   events. Actions on other services carry the step's idempotency key
//!   (`workflow:<execution>:<node>:<visit>`), so a replay after a crash between the call and
//!   the write applies nothing twice; a message is queued in the very transaction that
//!   records its step.
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration as StdDuration,
};

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use futures::StreamExt;
use loyalty_platform::{
    ApiError,
    client::for_partner,
    config::AutomationSettings,
    db::begin_write,
    events::{EventHandler, decode},
    time::to_timestamp,
};
use loyalty_proto::{
    events::v1::{self as ev, EventEnvelope},
    identity::v1::{self as identity_pb, identity_service_client::IdentityServiceClient},
    rewards::v1::{self as rewards_pb, rewards_service_client::RewardsServiceClient},
    segmentation::v1::{self as seg, segmentation_service_client::SegmentationServiceClient},
    wallet::v1::{self as wallet_pb, wallet_service_client::WalletServiceClient},
};
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use secrecy::{ExposeSecret, SecretString};
use tonic::{Code, Status, transport::Channel as GrpcChannel};
use uuid::Uuid;

use crate::{
    domain::{
        message::{Message, Purpose},
        workflow::{
            self, Action, ConditionTest, CustomerDateField, Execution, MAX_NODES, Step, StepFacts,
            StepOutcome, Taken, Trigger, Workflow, WorkflowState, WorkflowStep, may_start,
        },
    },
    sender::{communication_channel, refusal_reason},
    store::{
        Store,
        workflows::{self as wstore, Claimed, Progress},
    },
};

/// Namespace of the ids the engine derives from step idempotency keys (the message a
/// send-message node queues, the source id of a voucher it issues).
const STEP_NAMESPACE: Uuid = Uuid::from_u128(0x6c6f_7961_6c74_792d_776f_726b_666c_6f77);

/// The id derived from a step's idempotency key: the same on every replay.
pub fn step_id(idempotency_key: &str) -> Uuid {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(STEP_NAMESPACE.as_bytes());
    h.update(idempotency_key.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&h.finalize()[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// Customers read per page by a date scan.
const DATE_PAGE: u64 = 500;
/// Date candidates evaluated against a criterion at once.
const CRITERION_CONCURRENCY: usize = 16;
/// How long a partner's time zone is kept.
const ZONE_TTL: StdDuration = StdDuration::from_secs(300);
/// What an execution's facts keep of its own progress (not event properties): keys with
/// one of these prefixes are not sent to criteria.
const DEDUCT_FACT: &str = "deduct:";
const VOUCHER_CODE_FACT: &str = "voucher.code";

// ---- triggers ----

/// Starts executions from identity's, segmentation's and checkout's events; keeps the
/// customer dates; cancels an erased or blocked customer's executions.
pub struct Triggers;

/// Event types [`Triggers`] applies.
const TRIGGER_EVENTS: &[&str] = &[
    "loyalty.events.v1.EventTracked",
    "loyalty.events.v1.ConsentChanged",
    "loyalty.events.v1.CustomerCreated",
    "loyalty.events.v1.CustomerUpdated",
    "loyalty.events.v1.CustomerErased",
    "loyalty.events.v1.CustomerBlocked",
    "loyalty.events.v1.SegmentEntered",
    "loyalty.events.v1.SegmentLeft",
    "loyalty.events.v1.PurchaseCompleted",
    "loyalty.events.v1.CollectOrderStateChanged",
];

fn uuid(s: &str) -> Option<Uuid> {
    Uuid::parse_str(s).ok()
}

/// A customer's dates as identity's customer events carry them: the birth date attribute
/// and every property holding a `YYYY-MM-DD` date.
pub fn customer_dates(
    attributes: &BTreeMap<String, String>,
    properties: &BTreeMap<String, String>,
) -> BTreeMap<String, NaiveDate> {
    let date = |s: &str| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok();
    let mut out = BTreeMap::new();
    if let Some(d) = attributes.get("birth_date").and_then(|s| date(s)) {
        out.insert(CustomerDateField::BirthDate.path(), d);
    }
    for (k, v) in properties {
        if let (Some(d), true) = (date(v), workflow::is_key(k)) {
            out.insert(CustomerDateField::Property(k.clone()).path(), d);
        }
    }
    out
}

impl Triggers {
    /// Starts an execution of every ACTIVE workflow of `kind` whose trigger `matches`, for
    /// the customer, unless its re-entry policy refuses.
    async fn start_matching(
        txn: &DatabaseTransaction,
        partner_id: Uuid,
        kind: &str,
        customer_id: Uuid,
        event_id: Uuid,
        facts: BTreeMap<String, String>,
        matches: impl Fn(&Trigger) -> bool,
    ) -> Result<(), ApiError> {
        let now = Utc::now();
        for w in wstore::active_workflows(txn, partner_id, kind).await? {
            if !w.trigger.as_ref().is_some_and(&matches) {
                continue;
            }
            let previous = wstore::customer_executions(txn, partner_id, w.id, customer_id).await?;
            if !may_start(w.reentry_policy, &previous) {
                continue;
            }
            let e = Execution::start(
                Uuid::now_v7(),
                &w,
                customer_id,
                Some(event_id),
                facts.clone(),
                now,
            );
            wstore::start_execution(txn, partner_id, &e, &format!("event:{event_id}")).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl EventHandler for Triggers {
    fn handles(&self, event_type: &str) -> bool {
        TRIGGER_EVENTS.contains(&event_type)
    }

    async fn apply(&self, txn: &DatabaseTransaction, event: &EventEnvelope) -> anyhow::Result<()> {
        let (Some(partner_id), Some(event_id)) = (uuid(&event.partner_id), uuid(&event.event_id))
        else {
            return Ok(());
        };
        let short = event
            .event_type
            .strip_prefix("loyalty.events.v1.")
            .unwrap_or_default();
        let start = |kind: &'static str,
                     customer: &str,
                     facts,
                     m: Box<dyn Fn(&Trigger) -> bool + Send + Sync>| {
            let customer = uuid(customer);
            async move {
                match customer {
                    Some(c) => {
                        Triggers::start_matching(txn, partner_id, kind, c, event_id, facts, m).await
                    }
                    None => Ok(()),
                }
            }
        };
        match short {
            "EventTracked" => {
                let Some(e) = decode::<ev::EventTracked>(event) else {
                    return Ok(());
                };
                let props: BTreeMap<String, String> = e.properties.into_iter().collect();
                let code = e.event_type_code;
                let facts = props.clone();
                start(
                    "event",
                    &e.customer_id,
                    facts,
                    Box::new(move |t| t.matches_event(&code, &props)),
                )
                .await?;
            }
            "ConsentChanged" => {
                let Some(e) = decode::<ev::ConsentChanged>(event) else {
                    return Ok(());
                };
                let granted = e.state == "granted";
                let code = e.consent_type_code.clone();
                let facts = BTreeMap::from([
                    ("consent_type_code".to_owned(), e.consent_type_code),
                    ("state".to_owned(), e.state),
                ]);
                start(
                    "consent",
                    &e.customer_id,
                    facts,
                    Box::new(move |t| t.matches_consent(&code, granted)),
                )
                .await?;
            }
            "SegmentEntered" | "SegmentLeft" => {
                let entered = short == "SegmentEntered";
                let (customer, segment) = if entered {
                    let Some(e) = decode::<ev::SegmentEntered>(event) else {
                        return Ok(());
                    };
                    (e.customer_id, e.segment_id)
                } else {
                    let Some(e) = decode::<ev::SegmentLeft>(event) else {
                        return Ok(());
                    };
                    (e.customer_id, e.segment_id)
                };
                let Some(segment_id) = uuid(&segment) else {
                    return Ok(());
                };
                let facts = BTreeMap::from([("segment_id".to_owned(), segment)]);
                start(
                    "segment",
                    &customer,
                    facts,
                    Box::new(move |t| t.matches_segment(segment_id, entered)),
                )
                .await?;
            }
            "PurchaseCompleted" => {
                let Some(e) = decode::<ev::PurchaseCompleted>(event) else {
                    return Ok(());
                };
                let facts = BTreeMap::from([
                    ("purchase_id".to_owned(), e.purchase_id.clone()),
                    ("transaction_id".to_owned(), e.transaction_id.clone()),
                    (
                        "net_amount_minor".to_owned(),
                        e.net_amount_minor.to_string(),
                    ),
                    ("currency_code".to_owned(), e.currency_code.clone()),
                    ("business_unit_id".to_owned(), e.business_unit_id.clone()),
                    ("channel".to_owned(), e.channel.clone()),
                ]);
                let unit = uuid(&e.business_unit_id);
                let (amount, currency, products) =
                    (e.net_amount_minor, e.currency_code, e.product_ids);
                start(
                    "purchase",
                    &e.customer_id,
                    facts,
                    Box::new(move |t| t.matches_purchase(amount, &currency, unit, &products)),
                )
                .await?;
            }
            "CollectOrderStateChanged" => {
                let Some(e) = decode::<ev::CollectOrderStateChanged>(event) else {
                    return Ok(());
                };
                let facts = BTreeMap::from([
                    ("order_id".to_owned(), e.order_id.clone()),
                    ("order_number".to_owned(), e.order_number.clone()),
                    ("state".to_owned(), e.state.clone()),
                    ("business_unit_id".to_owned(), e.business_unit_id.clone()),
                    (
                        "pickup_until_time".to_owned(),
                        e.pickup_until_time
                            .as_ref()
                            .and_then(loyalty_platform::time::from_timestamp)
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_default(),
                    ),
                ]);
                let (state, unit) = (e.state, e.business_unit_id);
                start(
                    "collect_order",
                    &e.customer_id,
                    facts,
                    Box::new(move |t| t.matches_collect_order(&state, &unit)),
                )
                .await?;
            }
            "CustomerCreated" | "CustomerUpdated" => {
                let account = if short == "CustomerCreated" {
                    decode::<ev::CustomerCreated>(event)
                        .map(|e| (e.customer_id, e.attributes, e.properties))
                } else {
                    decode::<ev::CustomerUpdated>(event)
                        .map(|e| (e.customer_id, e.attributes, e.properties))
                };
                if let Some((Some(c), attributes, properties)) =
                    account.map(|(c, a, p)| (uuid(&c), a, p))
                {
                    let dates = customer_dates(&attributes, &properties);
                    wstore::replace_customer_dates(txn, partner_id, c, &dates).await?;
                }
            }
            "CustomerErased" => {
                let Some(e) = decode::<ev::CustomerErased>(event) else {
                    return Ok(());
                };
                if let Some(c) = uuid(&e.customer_id) {
                    wstore::forget_customer_dates(txn, partner_id, c).await?;
                    wstore::cancel_customer_executions(txn, partner_id, c, Utc::now()).await?;
                }
            }
            "CustomerBlocked" => {
                let Some(e) = decode::<ev::CustomerBlocked>(event) else {
                    return Ok(());
                };
                if let Some(c) = uuid(&e.customer_id) {
                    wstore::cancel_customer_executions(txn, partner_id, c, Utc::now()).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

// ---- the engine ----

/// The services the engine acts on; an action whose service is not configured fails its
/// node.
pub struct Peers {
    pub identity: Option<GrpcChannel>,
    pub segmentation: Option<GrpcChannel>,
    pub rewards: Option<GrpcChannel>,
    pub wallet: Option<GrpcChannel>,
}

/// Steps executions and scans date triggers.
pub struct Engine {
    db: DatabaseConnection,
    store: Store,
    identity: Option<IdentityServiceClient<GrpcChannel>>,
    segmentation: Option<SegmentationServiceClient<GrpcChannel>>,
    rewards: Option<RewardsServiceClient<GrpcChannel>>,
    wallet: Option<WalletServiceClient<GrpcChannel>>,
    /// The platform key: the engine acts for a partner with it.
    platform_key: SecretString,
    settings: AutomationSettings,
    /// Definitions by (workflow, version): a version never changes.
    definitions: Mutex<HashMap<(Uuid, i32), Arc<Workflow>>>,
    zones: Mutex<HashMap<Uuid, (Tz, std::time::Instant)>>,
}

/// How an action or a condition went.
enum Done {
    /// The node did its work (or was skipped, with why); `facts` are added to the
    /// execution's facts.
    Ok {
        outcome: StepOutcome,
        reference: String,
        error: String,
        facts: Vec<(String, String)>,
        message: Option<Message>,
    },
    /// Worth another try later (a peer unavailable, a timeout).
    Retry(String),
    /// Will not work however often tried (a missing template, an unknown segment).
    Fail(String),
}

impl Done {
    fn ok(reference: impl Into<String>) -> Done {
        Done::Ok {
            outcome: StepOutcome::Done,
            reference: reference.into(),
            error: String::new(),
            facts: Vec::new(),
            message: None,
        }
    }

    fn skipped(why: impl Into<String>) -> Done {
        Done::Ok {
            outcome: StepOutcome::Skipped,
            reference: String::new(),
            error: why.into(),
            facts: Vec::new(),
            message: None,
        }
    }

    /// A peer's refusal: a broken business rule skips the node (the execution goes on), a
    /// transient failure is retried, anything else fails the execution.
    fn from_status(what: &str, s: &Status) -> Done {
        let why = format!("{what}: {}: {}", code_name(s.code()), s.message());
        match s.code() {
            Code::FailedPrecondition => Done::skipped(why),
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Internal
            | Code::Unknown
            | Code::Cancelled => Done::Retry(why),
            _ => Done::Fail(why),
        }
    }
}

/// A wallet posting as the step's result.
fn posted(posting: Option<wallet_pb::Posting>) -> Done {
    Done::ok(
        posting
            .map(|p| format!("ledger_entry:{}", p.id))
            .unwrap_or_default(),
    )
}

fn code_name(c: Code) -> String {
    format!("{c:?}")
}

/// When a node whose peer failed `attempts` times is tried again.
pub fn retry_delay(base_ms: u64, attempts: u32) -> Duration {
    let factor = 1u64 << attempts.saturating_sub(1).min(20);
    let ms = base_ms.saturating_mul(factor).min(3_600_000);
    Duration::milliseconds(i64::try_from(ms).unwrap_or(3_600_000))
}

impl Engine {
    pub fn new(
        db: DatabaseConnection,
        peers: Peers,
        platform_key: SecretString,
        settings: AutomationSettings,
    ) -> Engine {
        Engine {
            store: Store::new(db.clone()),
            db,
            identity: peers.identity.map(IdentityServiceClient::new),
            segmentation: peers.segmentation.map(SegmentationServiceClient::new),
            rewards: peers.rewards.map(RewardsServiceClient::new),
            wallet: peers.wallet.map(WalletServiceClient::new),
            platform_key,
            settings,
            definitions: Mutex::new(HashMap::new()),
            zones: Mutex::new(HashMap::new()),
        }
    }

    /// Runs the steppers and the date scan until the process stops.
    pub fn spawn(self) {
        let engine = Arc::new(self);
        let e = engine.clone();
        tokio::spawn(async move {
            let poll = StdDuration::from_millis(e.settings.poll_ms.max(10));
            loop {
                match e.step_due().await {
                    Ok(0) => tokio::time::sleep(poll).await,
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "stepping workflow executions failed");
                        tokio::time::sleep(poll).await;
                    }
                }
            }
        });
        tokio::spawn(async move {
            let every = StdDuration::from_secs(engine.settings.date_scan_secs.max(1));
            loop {
                if let Err(err) = engine.scan_dates(Utc::now()).await {
                    tracing::warn!(error = %err, "scanning workflow date triggers failed");
                }
                tokio::time::sleep(every).await;
            }
        });
    }

    /// How long a claim lasts.
    fn lease(&self) -> Duration {
        Duration::seconds(i64::try_from(self.settings.claim_ttl_secs).unwrap_or(120))
    }

    fn request<T>(&self, message: T, partner_id: Uuid) -> tonic::Request<T> {
        for_partner(message, self.platform_key.expose_secret(), partner_id)
    }

    /// Claims due executions and steps them, `workers` at a time; how many were claimed.
    pub async fn step_due(&self) -> Result<usize, ApiError> {
        let lease = self.lease();
        let claimed = {
            let txn = begin_write(&self.db).await?;
            let claimed = wstore::claim_due(
                &txn,
                Utc::now(),
                lease,
                u64::from(self.settings.batch_size.max(1)),
            )
            .await?;
            txn.commit().await?;
            claimed
        };
        let n = claimed.len();
        futures::stream::iter(claimed)
            .for_each_concurrent(self.settings.workers.max(1) as usize, |c| async move {
                let id = c.execution.id;
                if let Err(err) = self.run(c).await {
                    // The claim lapses and another look tries again.
                    tracing::warn!(execution = %id, error = %err, "stepping an execution failed");
                }
            })
            .await;
        Ok(n)
    }

    async fn definition(
        &self,
        partner_id: Uuid,
        workflow_id: Uuid,
        version: i32,
    ) -> Result<Option<Arc<Workflow>>, ApiError> {
        if let Some(d) = self
            .definitions
            .lock()
            .ok()
            .and_then(|m| m.get(&(workflow_id, version)).cloned())
        {
            return Ok(Some(d));
        }
        let Some(d) = wstore::workflow_version(&self.db, partner_id, workflow_id, version).await?
        else {
            return Ok(None);
        };
        let d = Arc::new(d);
        if let Ok(mut m) = self.definitions.lock() {
            m.insert((workflow_id, version), d.clone());
        }
        Ok(Some(d))
    }

    /// The partner's time zone (identity), kept for a while; UTC when unknown.
    async fn time_zone(&self, partner_id: Uuid) -> Tz {
        if let Some((tz, at)) = self
            .zones
            .lock()
            .ok()
            .and_then(|m| m.get(&partner_id).copied())
            && at.elapsed() < ZONE_TTL
        {
            return tz;
        }
        let Some(mut identity) = self.identity.clone() else {
            return Tz::UTC;
        };
        let asked = identity
            .get_partner(self.request(
                identity_pb::GetPartnerRequest {
                    partner_id: partner_id.to_string(),
                },
                partner_id,
            ))
            .await;
        let tz = match asked {
            Ok(r) => r
                .into_inner()
                .partner
                .and_then(|p| p.time_zone.parse::<Tz>().ok())
                .unwrap_or(Tz::UTC),
            Err(e) => {
                tracing::warn!(partner = %partner_id, error = %e, "partner time zone unknown, using UTC");
                return Tz::UTC;
            }
        };
        if let Ok(mut m) = self.zones.lock() {
            m.insert(partner_id, (tz, std::time::Instant::now()));
        }
        tz
    }

    /// Writes one step of an execution (and the message it queues) in one transaction;
    /// `false` when the execution changed meanwhile (cancelled), and nothing was written.
    async fn save(
        &self,
        partner_id: Uuid,
        progress: &Progress<'_>,
        message: Option<&Message>,
    ) -> Result<bool, ApiError> {
        let txn = begin_write(&self.db).await?;
        let now = Utc::now();
        if !wstore::save_progress(&txn, partner_id, progress, now).await? {
            return Ok(false);
        }
        if let Some(m) = message {
            self.store
                .insert_messages(&txn, partner_id, std::slice::from_ref(m))
                .await?;
        }
        txn.commit().await?;
        Ok(true)
    }

    /// Walks one claimed execution as far as it goes now: until it waits, ends, or a peer
    /// asks for a retry.
    async fn run(&self, c: Claimed) -> Result<(), ApiError> {
        let partner_id = c.partner_id;
        let mut exec = c.execution;
        let mut attempts = c.attempts;
        let lease = self.lease();
        let current = wstore::workflow(&self.db, partner_id, exec.workflow_id).await?;
        if current
            .as_ref()
            .is_none_or(|w| w.state != WorkflowState::Active)
        {
            // Paused (or gone): this one and the rest are held until activated again.
            let txn = begin_write(&self.db).await?;
            wstore::hold_executions(&txn, partner_id, exec.workflow_id, Utc::now()).await?;
            txn.commit().await?;
            return Ok(());
        }
        let Some(def) = self
            .definition(partner_id, exec.workflow_id, exec.workflow_version)
            .await?
        else {
            let now = Utc::now();
            let failed = exec.failed(now);
            let record = [(
                step_record(
                    &exec.current_node_key,
                    StepOutcome::Failed,
                    "",
                    &format!("version {} of the workflow is gone", exec.workflow_version),
                    1,
                    now,
                ),
                "kind",
            )];
            self.save(
                partner_id,
                &Progress {
                    before: &exec,
                    after: &failed,
                    steps: &record,
                    attempts: 0,
                    due_at: None,
                },
                None,
            )
            .await?;
            return Ok(());
        };
        let tz = self.time_zone(partner_id).await;
        // A valid graph passes a wait within every MAX_NODES steps (cycles must wait).
        for _ in 0..=MAX_NODES {
            let now = Utc::now();
            let mut facts = StepFacts {
                condition: None,
                time_zone: tz,
            };
            let mut s = workflow::step(&def, &exec, &facts, now);
            if let Step::NeedsCondition { node_key, test } = &s {
                match self.evaluate(partner_id, &exec, test).await {
                    Ok(holds) => {
                        facts.condition = Some(holds);
                        s = workflow::step(&def, &exec, &facts, now);
                    }
                    Err(d) => {
                        let node_key = node_key.clone();
                        return self
                            .gave_up(partner_id, &exec, attempts, &node_key, "condition", d)
                            .await;
                    }
                }
            }
            let kind = def
                .node(&exec.current_node_key)
                .map_or("kind", |n| n.kind.type_name());
            let (record, after, message) = match &s {
                Step::NotDue { .. } | Step::Finished => {
                    // The claim pushed it forward: due again when it wakes (or never).
                    self.save(
                        partner_id,
                        &Progress {
                            before: &exec,
                            after: &exec,
                            steps: &[],
                            attempts,
                            due_at: None,
                        },
                        None,
                    )
                    .await?;
                    return Ok(());
                }
                Step::Act {
                    node_key,
                    idempotency_key,
                    action,
                    ..
                } => {
                    let (exec_now, d) = self
                        .perform(partner_id, &exec, attempts, idempotency_key, action)
                        .await?;
                    exec = exec_now;
                    match d {
                        Done::Ok {
                            outcome,
                            reference,
                            error,
                            facts,
                            message,
                        } => {
                            let mut after = exec.after(&s, now);
                            after.trigger_facts.extend(facts);
                            let record = step_record(
                                node_key,
                                outcome,
                                &reference,
                                &error,
                                attempts + 1,
                                now,
                            );
                            (record, after, message)
                        }
                        d => {
                            let node_key = node_key.clone();
                            return self
                                .gave_up(partner_id, &exec, attempts, &node_key, kind, d)
                                .await;
                        }
                    }
                }
                Step::Branch {
                    node_key, taken, ..
                } => {
                    let mut record = step_record(node_key, StepOutcome::Done, "", "", 1, now);
                    match taken {
                        Taken::Condition(holds) => record.condition_result = Some(*holds),
                        Taken::Split(j) => record.result_reference = format!("branch:{j}"),
                    }
                    (record, exec.after(&s, now), None)
                }
                Step::Wait {
                    node_key, until, ..
                } => {
                    let record = step_record(
                        node_key,
                        StepOutcome::Done,
                        &format!("until:{}", until.to_rfc3339()),
                        "",
                        1,
                        now,
                    );
                    (record, exec.after(&s, now), None)
                }
                Step::End { node_key } => {
                    let after = exec.after(&s, now);
                    match node_key {
                        Some(k) => (
                            step_record(k, StepOutcome::Done, "", "", 1, now),
                            after,
                            None,
                        ),
                        None => {
                            // Nothing left after a final wait: no node to record.
                            self.save(
                                partner_id,
                                &Progress {
                                    before: &exec,
                                    after: &after,
                                    steps: &[],
                                    attempts: 0,
                                    due_at: None,
                                },
                                None,
                            )
                            .await?;
                            return Ok(());
                        }
                    }
                }
                Step::Fail { node_key, reason } => (
                    step_record(
                        node_key.as_deref().unwrap_or(&exec.current_node_key),
                        StepOutcome::Failed,
                        "",
                        reason,
                        1,
                        now,
                    ),
                    exec.after(&s, now),
                    None,
                ),
                Step::NeedsCondition { node_key, .. } => (
                    step_record(
                        node_key,
                        StepOutcome::Failed,
                        "",
                        "the condition was not answered",
                        1,
                        now,
                    ),
                    exec.failed(now),
                    None,
                ),
            };
            // Still running: keep the claim while this worker goes on.
            let due_at = (after.state == workflow::ExecutionState::Running).then(|| now + lease);
            let steps = [(record, kind)];
            let saved = self
                .save(
                    partner_id,
                    &Progress {
                        before: &exec,
                        after: &after,
                        steps: &steps,
                        attempts: 0,
                        due_at,
                    },
                    message.as_ref(),
                )
                .await?;
            if !saved {
                return Ok(());
            }
            exec = after;
            attempts = 0;
            if exec.state != workflow::ExecutionState::Running {
                return Ok(());
            }
        }
        // Unreachable for a valid graph; let the next look go on.
        let progress = Progress {
            before: &exec,
            after: &exec,
            steps: &[],
            attempts,
            due_at: Some(Utc::now()),
        };
        self.save(partner_id, &progress, None).await?;
        Ok(())
    }

    /// A node that did not get done: retried later while attempts remain, else the
    /// execution FAILS with the node's failed step.
    async fn gave_up(
        &self,
        partner_id: Uuid,
        exec: &Execution,
        attempts: i32,
        node_key: &str,
        kind: &'static str,
        d: Done,
    ) -> Result<(), ApiError> {
        let now = Utc::now();
        let attempts = attempts.saturating_add(1);
        let why = match d {
            Done::Retry(why)
                if u32::try_from(attempts).unwrap_or(u32::MAX) < self.settings.max_attempts =>
            {
                let delay = retry_delay(
                    self.settings.retry_base_ms,
                    u32::try_from(attempts).unwrap_or(1),
                );
                tracing::info!(execution = %exec.id, node = node_key, %why, attempts, "retrying a workflow node later");
                self.save(
                    partner_id,
                    &Progress {
                        before: exec,
                        after: exec,
                        steps: &[],
                        attempts,
                        due_at: Some(now + delay),
                    },
                    None,
                )
                .await?;
                return Ok(());
            }
            Done::Retry(why) | Done::Fail(why) => why,
            Done::Ok { error, .. } => error,
        };
        let failed = exec.failed(now);
        let steps = [(
            step_record(node_key, StepOutcome::Failed, "", &why, attempts, now),
            kind,
        )];
        self.save(
            partner_id,
            &Progress {
                before: exec,
                after: &failed,
                steps: &steps,
                attempts,
                due_at: None,
            },
            None,
        )
        .await?;
        Ok(())
    }

    /// Evaluates a condition's test for the execution's customer.
    async fn evaluate(
        &self,
        partner_id: Uuid,
        exec: &Execution,
        test: &ConditionTest,
    ) -> Result<bool, Done> {
        let customer_id = exec.customer_id.to_string();
        match test {
            ConditionTest::OpenedMessage(node_key) => {
                let Some(key) = exec.action_key(node_key) else {
                    return Ok(false);
                };
                let message = self
                    .store
                    .message(&self.db, partner_id, step_id(&key))
                    .await
                    .map_err(|e| Done::Retry(e.to_string()))?;
                Ok(message.is_some_and(|m| m.first_open_at.is_some()))
            }
            ConditionTest::InSegment(segment_id) => {
                let mut seg = self.segmentation("segment conditions")?;
                let r = seg
                    .get_customer_memberships(self.request(
                        seg::GetCustomerMembershipsRequest {
                            customer_id,
                            cart: None,
                        },
                        partner_id,
                    ))
                    .await
                    .map_err(|s| Done::from_status("segmentation", &s))?;
                let id = segment_id.to_string();
                Ok(r.into_inner()
                    .memberships
                    .iter()
                    .any(|m| m.segment_id == id))
            }
            ConditionTest::HasBadge(badge_id) => {
                let mut seg = self.segmentation("badge conditions")?;
                let id = badge_id.to_string();
                let mut token = String::new();
                loop {
                    let r = seg
                        .list_customer_badges(self.request(
                            seg::ListCustomerBadgesRequest {
                                customer_id: customer_id.clone(),
                                page_size: 1000,
                                page_token: token,
                            },
                            partner_id,
                        ))
                        .await
                        .map_err(|s| Done::from_status("segmentation", &s))?
                        .into_inner();
                    if r.badges.iter().any(|b| b.badge_id == id) {
                        return Ok(true);
                    }
                    if r.next_page_token.is_empty() {
                        return Ok(false);
                    }
                    token = r.next_page_token;
                }
            }
            ConditionTest::Criterion(json) => {
                let criterion = loyalty_criteria::Criterion::from_json_with_event(json)
                    .map_err(|e| Done::Fail(format!("stored criterion: {e}")))?;
                self.matches(partner_id, exec.customer_id, &criterion, event_facts(exec))
                    .await
            }
        }
    }

    /// Whether a customer matches a criterion now (segmentation's `EvaluateCriterion`).
    async fn matches(
        &self,
        partner_id: Uuid,
        customer_id: Uuid,
        criterion: &loyalty_criteria::Criterion,
        event_properties: BTreeMap<String, String>,
    ) -> Result<bool, Done> {
        let mut seg = self.segmentation("criteria")?;
        let r = seg
            .evaluate_criterion(self.request(
                seg::EvaluateCriterionRequest {
                    customer_id: customer_id.to_string(),
                    criterion: Some(loyalty_criteria::wire::to_proto(criterion)),
                    event_properties,
                },
                partner_id,
            ))
            .await
            .map_err(|s| Done::from_status("segmentation", &s))?;
        Ok(r.into_inner().matches)
    }

    /// Why a message of `template` cannot reach the customer now (identity's
    /// `CheckContactability`, as the send queue asks it): a SKIPPED node, or a retry when
    /// identity does not answer; `None` when it can.
    async fn not_contactable(
        &self,
        partner_id: Uuid,
        customer_id: Uuid,
        template: &crate::domain::MessageTemplate,
    ) -> Option<Done> {
        let Some(mut identity) = self.identity.clone() else {
            return Some(Done::Fail(
                "messages need the identity service (peers.identity_url)".into(),
            ));
        };
        let purpose = match Purpose::of(template.kind) {
            Purpose::Marketing => identity_pb::ContactPurpose::Marketing,
            Purpose::Service => identity_pb::ContactPurpose::Service,
        };
        let answer = identity
            .check_contactability(self.request(
                identity_pb::CheckContactabilityRequest {
                    customer_ids: vec![customer_id.to_string()],
                    channel: communication_channel(template.channel) as i32,
                    purpose: purpose as i32,
                },
                partner_id,
            ))
            .await;
        let refusal = match answer {
            Ok(r) => r.into_inner().contactabilities.into_iter().next().map_or(
                identity_pb::ContactRefusal::UnknownCustomer,
                |c| {
                    identity_pb::ContactRefusal::try_from(c.refusal)
                        .unwrap_or(identity_pb::ContactRefusal::UnknownCustomer)
                },
            ),
            Err(s) => return Some(Done::from_status("identity", &s)),
        };
        (refusal != identity_pb::ContactRefusal::Unspecified)
            .then(|| Done::skipped(refusal_reason(refusal, template.channel)))
    }

    fn segmentation(&self, what: &str) -> Result<SegmentationServiceClient<GrpcChannel>, Done> {
        self.segmentation.clone().ok_or_else(|| {
            Done::Fail(format!(
                "{what} need the segmentation service (peers.segmentation_url)"
            ))
        })
    }

    /// Performs an action once (its idempotency key makes a replay a no-op at the receiving
    /// service). Returns the execution as it is now (a deduction first records how many
    /// points it takes, so a replay takes the same).
    async fn perform(
        &self,
        partner_id: Uuid,
        exec: &Execution,
        attempts: i32,
        key: &str,
        action: &Action,
    ) -> Result<(Execution, Done), ApiError> {
        let customer_id = exec.customer_id.to_string();
        let reason = "workflow".to_owned();
        let reference = format!("workflow:{}", exec.id);
        let unconfigured = |peer: &str| {
            Done::Fail(format!(
                "the {peer} service is not configured (peers.{peer}_url)"
            ))
        };
        let done = match action {
            Action::SendMessage {
                message_template_id,
            } => {
                let Some(template) = self
                    .store
                    .template(partner_id, *message_template_id)
                    .await?
                else {
                    return Ok((
                        exec.clone(),
                        Done::Fail(format!("message template {message_template_id} not found")),
                    ));
                };
                // Not contactable now (consent, address, bounce): the node is SKIPPED with
                // the reason, nothing is queued. The queue checks again when it sends.
                if let Some(why) = self
                    .not_contactable(partner_id, exec.customer_id, &template)
                    .await
                {
                    return Ok((exec.clone(), why));
                }
                let variables: BTreeMap<String, String> = exec
                    .trigger_facts
                    .get(VOUCHER_CODE_FACT)
                    .map(|code| (VOUCHER_CODE_FACT.to_owned(), code.clone()))
                    .into_iter()
                    .collect();
                let mut m = Message::direct(
                    &template,
                    Some(exec.customer_id),
                    String::new(),
                    variables,
                    Some(exec.id),
                    Utc::now(),
                );
                m.id = step_id(key);
                Done::Ok {
                    outcome: StepOutcome::Done,
                    reference: format!("message:{}", m.id),
                    error: String::new(),
                    facts: Vec::new(),
                    message: Some(m),
                }
            }
            Action::AddPoints {
                points,
                points_type_id,
                validity_days,
            } => {
                let Some(mut wallet) = self.wallet.clone() else {
                    return Ok((exec.clone(), unconfigured("wallet")));
                };
                let expire_time = (*validity_days > 0)
                    .then(|| to_timestamp(Utc::now() + Duration::days(i64::from(*validity_days))));
                match wallet
                    .award_points(self.request(
                        wallet_pb::AwardPointsRequest {
                            idempotency_key: key.to_owned(),
                            customer_id,
                            points: *points,
                            reason,
                            reference,
                            expire_time,
                            points_type_id: points_type_id.clone(),
                            cause: wallet_pb::PostingCause::Campaign as i32,
                            ..Default::default()
                        },
                        partner_id,
                    ))
                    .await
                {
                    Ok(r) => posted(r.into_inner().posting),
                    Err(s) => Done::from_status("wallet", &s),
                }
            }
            Action::DeductPoints {
                points,
                points_type_id,
            } => {
                let Some(mut wallet) = self.wallet.clone() else {
                    return Ok((exec.clone(), unconfigured("wallet")));
                };
                let fact = format!("{DEDUCT_FACT}{key}");
                let mut exec = exec.clone();
                let amount = match exec.trigger_facts.get(&fact).and_then(|a| a.parse().ok()) {
                    Some(a) => a,
                    None => {
                        // As many as there are, decided once: a replay takes the same.
                        let available = match wallet
                            .get_balance(self.request(
                                wallet_pb::GetBalanceRequest {
                                    customer_id: customer_id.clone(),
                                    points_type_id: points_type_id.clone(),
                                },
                                partner_id,
                            ))
                            .await
                        {
                            Ok(r) => r.into_inner().balance.map_or(0, |b| b.available_points),
                            Err(s) => return Ok((exec, Done::from_status("wallet", &s))),
                        };
                        let amount: i64 = (*points).min(available.max(0));
                        let mut noted = exec.clone();
                        noted.trigger_facts.insert(fact, amount.to_string());
                        let progress = Progress {
                            before: &exec,
                            after: &noted,
                            steps: &[],
                            attempts,
                            due_at: Some(Utc::now() + self.lease()),
                        };
                        if !self.save(partner_id, &progress, None).await? {
                            return Ok((exec, Done::Fail("the execution changed".into())));
                        }
                        exec = noted;
                        amount
                    }
                };
                if amount == 0 {
                    return Ok((exec, Done::skipped("the customer has no points to deduct")));
                }
                let d = match wallet
                    .spend_points(self.request(
                        wallet_pb::SpendPointsRequest {
                            idempotency_key: key.to_owned(),
                            customer_id,
                            points: amount,
                            reason,
                            reference,
                            points_type_id: points_type_id.clone(),
                            cause: wallet_pb::PostingCause::Campaign as i32,
                            ..Default::default()
                        },
                        partner_id,
                    ))
                    .await
                {
                    Ok(r) => posted(r.into_inner().posting),
                    Err(s) => Done::from_status("wallet", &s),
                };
                return Ok((exec, d));
            }
            Action::IssueVoucher { reward_id } => {
                let Some(mut rewards) = self.rewards.clone() else {
                    return Ok((exec.clone(), unconfigured("rewards")));
                };
                match rewards
                    .issue_vouchers(self.request(
                        rewards_pb::IssueVouchersRequest {
                            reward_id: reward_id.to_string(),
                            customer_ids: vec![customer_id],
                            source: rewards_pb::VoucherSource::Workflow as i32,
                            // One voucher per visit of the node.
                            source_id: step_id(key).to_string(),
                            valid_until_time: None,
                        },
                        partner_id,
                    ))
                    .await
                {
                    Ok(r) => match r.into_inner().vouchers.into_iter().next() {
                        Some(v) if v.refusal_reason.is_empty() => Done::Ok {
                            outcome: StepOutcome::Done,
                            reference: format!("voucher:{}", v.voucher_id),
                            error: String::new(),
                            facts: vec![(VOUCHER_CODE_FACT.to_owned(), v.code)],
                            message: None,
                        },
                        Some(v) => Done::skipped(format!("no voucher: {}", v.refusal_reason)),
                        None => Done::Retry("rewards answered no voucher".into()),
                    },
                    Err(s) => Done::from_status("rewards", &s),
                }
            }
            Action::AddToSegment { segment_id } | Action::RemoveFromSegment { segment_id } => {
                let mut seg = match self.segmentation("segment actions") {
                    Ok(s) => s,
                    Err(d) => return Ok((exec.clone(), d)),
                };
                let adding = matches!(action, Action::AddToSegment { .. });
                let answer = if adding {
                    seg.add_customer_to_segment(self.request(
                        seg::AddCustomerToSegmentRequest {
                            idempotency_key: key.to_owned(),
                            segment_id: segment_id.to_string(),
                            customer_id,
                            cause: seg::MembershipCause::Workflow as i32,
                            workflow_execution_id: exec.id.to_string(),
                        },
                        partner_id,
                    ))
                    .await
                    .map(|_| ())
                } else {
                    seg.remove_customer_from_segment(self.request(
                        seg::RemoveCustomerFromSegmentRequest {
                            idempotency_key: key.to_owned(),
                            segment_id: segment_id.to_string(),
                            customer_id,
                            cause: seg::MembershipCause::Workflow as i32,
                            workflow_execution_id: exec.id.to_string(),
                        },
                        partner_id,
                    ))
                    .await
                    .map(|_| ())
                };
                match answer {
                    Ok(()) => Done::ok(format!("segment:{segment_id}")),
                    Err(s) => Done::from_status("segmentation", &s),
                }
            }
            Action::AssignBadge { badge_id } | Action::RemoveBadge { badge_id } => {
                let mut seg = match self.segmentation("badge actions") {
                    Ok(s) => s,
                    Err(d) => return Ok((exec.clone(), d)),
                };
                let answer = if matches!(action, Action::AssignBadge { .. }) {
                    seg.assign_badge(self.request(
                        seg::AssignBadgeRequest {
                            idempotency_key: key.to_owned(),
                            badge_id: badge_id.to_string(),
                            customer_id,
                            cause: seg::MembershipCause::Workflow as i32,
                        },
                        partner_id,
                    ))
                    .await
                    .map(|_| ())
                } else {
                    seg.remove_badge(self.request(
                        seg::RemoveBadgeRequest {
                            idempotency_key: key.to_owned(),
                            badge_id: badge_id.to_string(),
                            customer_id,
                            cause: seg::MembershipCause::Workflow as i32,
                        },
                        partner_id,
                    ))
                    .await
                    .map(|_| ())
                };
                match answer {
                    Ok(()) => Done::ok(format!("badge:{badge_id}")),
                    Err(s) => Done::from_status("segmentation", &s),
                }
            }
        };
        Ok((exec.clone(), done))
    }

    // ---- date triggers ----

    /// Starts the executions every ACTIVE date workflow owes by `now`.
    pub async fn scan_dates(&self, now: DateTime<Utc>) -> Result<(), ApiError> {
        for dw in wstore::active_date_workflows(&self.db).await? {
            let Some(Trigger::Date(t)) = dw.workflow.trigger.clone() else {
                continue;
            };
            let criterion = match t
                .criterion
                .as_ref()
                .map(loyalty_criteria::Criterion::from_json)
            {
                Some(Err(e)) => {
                    tracing::warn!(workflow = %dw.workflow.id, error = %e, "stored date criterion unreadable");
                    continue;
                }
                Some(Ok(c)) => Some(c),
                None => None,
            };
            let tz = self.time_zone(dw.partner_id).await;
            let done = if let Some(run_time) = t.run_time {
                self.run_once(&dw, run_time, criterion.as_ref(), now)
                    .await?
            } else if let Some(field) = t.date_field() {
                self.run_yearly(&dw, &t, &field, tz, criterion.as_ref(), now)
                    .await?
            } else {
                false
            };
            if done {
                wstore::mark_date_run(&self.db, dw.partner_id, &dw.workflow, now).await?;
            }
        }
        Ok(())
    }

    /// A one-off run at `run_time` for every known customer (matching the criterion), once.
    async fn run_once(
        &self,
        dw: &wstore::DateWorkflow,
        run_time: DateTime<Utc>,
        criterion: Option<&loyalty_criteria::Criterion>,
        now: DateTime<Utc>,
    ) -> Result<bool, ApiError> {
        if run_time > now || dw.date_run_at.is_some_and(|r| r >= run_time) {
            return Ok(false);
        }
        // Not before the workflow was active: activating after the moment runs it at once.
        let key = format!("date:{}", run_time.format("%Y-%m-%dT%H:%M:%SZ"));
        let mut after = None;
        loop {
            let page = wstore::known_customers(&self.db, dw.partner_id, after, DATE_PAGE).await?;
            let Some(last) = page.last().copied() else {
                return Ok(true);
            };
            let candidates: Vec<(Uuid, String)> =
                page.into_iter().map(|c| (c, key.clone())).collect();
            self.start_dated(dw, candidates, criterion, now).await?;
            after = Some(last);
        }
    }

    /// Yearly runs at a customer date: the customers whose run fell between
    /// [`yearly_since`] and `now` (so a run missed while no replica ran is made up within a
    /// day).
    async fn run_yearly(
        &self,
        dw: &wstore::DateWorkflow,
        t: &workflow::DateTrigger,
        field: &CustomerDateField,
        tz: Tz,
        criterion: Option<&loyalty_criteria::Criterion>,
        now: DateTime<Utc>,
    ) -> Result<bool, ApiError> {
        let since = yearly_since(dw.workflow.activated_at, tz, now);
        let today = now.with_timezone(&tz).date_naive();
        let month_days = run_month_days(today, t.offset_days);
        let mut after = None;
        loop {
            let page = wstore::customers_on_days(
                &self.db,
                dw.partner_id,
                &field.path(),
                &month_days,
                after,
                DATE_PAGE,
            )
            .await?;
            let Some((last, _)) = page.last().copied() else {
                return Ok(true);
            };
            let candidates: Vec<(Uuid, String)> = page
                .into_iter()
                .filter_map(|(customer, date)| {
                    let run = t.next_run_for(date, tz, since);
                    (run <= now).then(|| {
                        let day = run.with_timezone(&tz).date_naive();
                        (customer, format!("date:{}", day.format("%Y-%m-%d")))
                    })
                })
                .collect();
            self.start_dated(dw, candidates, criterion, now).await?;
            after = Some(last);
        }
    }

    /// Starts the workflow for each (customer, trigger key) matching the criterion, unless
    /// the re-entry policy refuses or that run started already.
    async fn start_dated(
        &self,
        dw: &wstore::DateWorkflow,
        candidates: Vec<(Uuid, String)>,
        criterion: Option<&loyalty_criteria::Criterion>,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        let admitted: Vec<(Uuid, String)> = match criterion {
            None => candidates,
            Some(c) => futures::stream::iter(candidates)
                .map(|(customer, key)| async move {
                    match self.matches(dw.partner_id, customer, c, BTreeMap::new()).await {
                        Ok(true) => Some((customer, key)),
                        Ok(false) => None,
                        Err(Done::Retry(why) | Done::Fail(why)) => {
                            // Not started this scan; a retryable failure is tried again by
                            // the next scan of the day.
                            tracing::warn!(customer = %customer, %why, "date trigger criterion not evaluated");
                            None
                        }
                        Err(Done::Ok { .. }) => None,
                    }
                })
                .buffered(CRITERION_CONCURRENCY)
                .filter_map(|x| async move { x })
                .collect()
                .await,
        };
        if admitted.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin().await?;
        for (customer, key) in admitted {
            let previous =
                wstore::customer_executions(&txn, dw.partner_id, dw.workflow.id, customer).await?;
            if !may_start(dw.workflow.reentry_policy, &previous) {
                continue;
            }
            let e = Execution::start(
                Uuid::now_v7(),
                &dw.workflow,
                customer,
                None,
                BTreeMap::new(),
                now,
            );
            wstore::start_execution(&txn, dw.partner_id, &e, &key).await?;
        }
        txn.commit().await?;
        Ok(())
    }
}

/// Since when a yearly date trigger's runs are due at `now`: a day back (runs missed while
/// no replica ran are made up), but not before the day (in `tz`) the workflow was activated
/// — a birthday workflow activated at noon greets that day's birthdays whose hour passed,
/// never the day before's.
pub fn yearly_since(
    activated_at: Option<DateTime<Utc>>,
    tz: Tz,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    use chrono::TimeZone;
    let day_back = now - Duration::days(1);
    let Some(activated) = activated_at else {
        return day_back;
    };
    let midnight = activated
        .with_timezone(&tz)
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .and_then(|m| tz.from_local_datetime(&m).earliest())
        .map_or(activated, |m| m.with_timezone(&Utc));
    // Runs are strictly after `since`: one second before midnight lets a midnight run in.
    day_back.max(midnight - Duration::seconds(1))
}

/// The customer dates (month × 100 + day) whose yearly run with `offset_days` falls on
/// `today` or the day before: the run day minus the offset; a 28 February in a common
/// year also stands for 29 February dates.
pub fn run_month_days(today: NaiveDate, offset_days: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for back in [0, 1] {
        let run_day = today - Duration::days(back);
        let Some(date) = run_day.checked_sub_signed(Duration::days(i64::from(offset_days))) else {
            continue;
        };
        let md = i32::try_from(date.month() * 100 + date.day()).unwrap_or(0);
        out.push(md);
        let leap = NaiveDate::from_ymd_opt(date.year(), 2, 29).is_some();
        if md == 228 && !leap {
            out.push(229);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The execution's facts a criterion reads as `event.<key>`: the trigger's, not the
/// engine's own notes.
fn event_facts(exec: &Execution) -> BTreeMap<String, String> {
    exec.trigger_facts
        .iter()
        .filter(|(k, _)| !k.starts_with(DEDUCT_FACT) && k.as_str() != VOUCHER_CODE_FACT)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn step_record(
    node_key: &str,
    outcome: StepOutcome,
    reference: &str,
    error: &str,
    attempt_count: i32,
    at: DateTime<Utc>,
) -> WorkflowStep {
    WorkflowStep {
        node_key: node_key.to_owned(),
        outcome,
        condition_result: None,
        result_reference: reference.to_owned(),
        error: WorkflowStep::clip_error(error),
        attempt_count: attempt_count.max(1),
        executed_at: at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn run_days_cover_today_and_yesterday_moved_by_the_offset() {
        assert_eq!(run_month_days(d("2026-04-10"), 0), vec![409, 410]);
        // Seven days before the birthday: today's run is for dates a week ahead.
        assert_eq!(run_month_days(d("2026-04-10"), -7), vec![416, 417]);
        assert_eq!(run_month_days(d("2026-01-01"), 0), vec![101, 1231]);
    }

    #[test]
    fn yearly_runs_are_due_from_the_activation_day_at_most_a_day_back() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let prague: Tz = "Europe/Prague".parse().unwrap();
        let now = at("2026-04-10T12:00:00Z");
        // Activated this morning (Prague): from Prague's midnight.
        assert_eq!(
            yearly_since(Some(at("2026-04-10T08:00:00Z")), prague, now),
            at("2026-04-09T21:59:59Z")
        );
        // Activated long ago: a day back.
        assert_eq!(
            yearly_since(Some(at("2025-01-01T00:00:00Z")), prague, now),
            at("2026-04-09T12:00:00Z")
        );
        assert_eq!(yearly_since(None, Tz::UTC, now), at("2026-04-09T12:00:00Z"));
    }

    #[test]
    fn leap_day_dates_run_on_the_28th_of_a_common_year() {
        assert_eq!(run_month_days(d("2027-02-28"), 0), vec![227, 228, 229]);
        assert_eq!(run_month_days(d("2028-02-28"), 0), vec![227, 228]);
        assert_eq!(run_month_days(d("2028-02-29"), 0), vec![228, 229]);
    }

    #[test]
    fn dates_come_from_the_birth_date_and_date_properties() {
        let attributes = BTreeMap::from([("birth_date".to_owned(), "1990-04-01".to_owned())]);
        let properties = BTreeMap::from([
            ("anniversary".to_owned(), "2015-06-20".to_owned()),
            ("shoe_size".to_owned(), "42".to_owned()),
            ("Bad Key".to_owned(), "2015-06-20".to_owned()),
        ]);
        let dates = customer_dates(&attributes, &properties);
        assert_eq!(
            dates.keys().collect::<Vec<_>>(),
            vec!["customer.birth_date", "customer.properties.anniversary"]
        );
    }

    #[test]
    fn step_ids_are_stable_and_distinct_per_visit() {
        let e = Uuid::from_u128(7);
        let a = step_id(&workflow::idempotency_key(e, "send", 1));
        assert_eq!(a, step_id(&workflow::idempotency_key(e, "send", 1)));
        assert_ne!(a, step_id(&workflow::idempotency_key(e, "send", 2)));
    }

    #[test]
    fn retries_back_off_doubling_up_to_an_hour() {
        assert_eq!(retry_delay(1000, 1), Duration::seconds(1));
        assert_eq!(retry_delay(1000, 3), Duration::seconds(4));
        assert_eq!(retry_delay(1000, 40), Duration::hours(1));
    }

    #[test]
    fn criteria_see_the_trigger_not_the_engine_notes() {
        let mut e = Execution::start(
            Uuid::from_u128(1),
            &Workflow {
                id: Uuid::from_u128(2),
                display_name: "w".into(),
                state: WorkflowState::Active,
                trigger: None,
                nodes: vec![],
                entry_node_key: "a".into(),
                reentry_policy: Default::default(),
                version: 1,
                note: String::new(),
                created_at: Utc::now(),
                updated_at: None,
                activated_at: None,
            },
            Uuid::from_u128(3),
            None,
            BTreeMap::from([("store".to_owned(), "prague".to_owned())]),
            Utc::now(),
        );
        e.trigger_facts
            .insert(VOUCHER_CODE_FACT.to_owned(), "X".to_owned());
        e.trigger_facts
            .insert(format!("{DEDUCT_FACT}k"), "5".to_owned());
        assert_eq!(
            event_facts(&e),
            BTreeMap::from([("store".to_owned(), "prague".to_owned())])
        );
    }
}

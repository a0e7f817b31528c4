//! Marketing-automation workflows (seed 000, "Workflow (Automation Workflow)" and "Marketing
//! Automation App"): a trigger that starts a durable per-customer *execution*, and a graph of
//! nodes the execution walks — waits, conditions, actions (send a message, add or deduct
//! points, issue a voucher, add to or remove from a segment, assign or remove a badge),
//! random splits (A/B tests) and ends.
//!
//! ```text
//! DRAFT ──activate──▶ ACTIVE ──pause──▶ PAUSED
//!                       ▲                  │
//!                       └────activate──────┘
//! ```
//!
//! Only a DRAFT or PAUSED workflow changes (the name and note of an ACTIVE one too); every
//! update increases `version`. An execution keeps the version it started with, so the store
//! keeps the definition of every version (this type serialises to JSON for that). Activating
//! and pausing do not change the definition and keep the version.
//!
//! # The graph
//!
//! [`Workflow::validate`] checks every field and the graph: keys unique, every key naming a
//! node, every node reachable from the entry, and **every cycle passing a wait node** that
//! always waits (a duration or an hour of the day): a cycle without one would spin forever,
//! a cycle through one is a legitimate loop (a weekly reminder). A wait until a fixed moment
//! waits only once, so it does not break a cycle.
//!
//! # Executions
//!
//! [`step`] is a pure function deciding what the execution's current node does; the engine
//! performs it durably and moves the execution on with [`Execution::after`]:
//!
//! ```text
//! loop {
//!     let s = step(&definition, &execution, &facts, now);
//!     match &s {
//!         Step::Act { action, idempotency_key, .. } => perform `action` once per key,
//!         Step::NeedsCondition { test, .. } => evaluate, call step again with facts.condition,
//!         Step::NotDue { .. } | Step::Finished => stop,
//!         _ => {}
//!     }
//!     execution = execution.after(&s, now);   // persist, with the WorkflowStep record
//!     if execution is WAITING or ended: stop
//! }
//! ```
//!
//! Side effects carry an idempotency key of (execution, node, visit) ([`idempotency_key`]), so
//! a replay after a crash repeats the decision and the receiving service applies it once. A
//! node in a loop is visited again with a new visit number, so each round acts anew. Splits
//! draw from a hash of the execution id and the node key: a replay (and every later visit of
//! the same split) takes the same branch.
//!
//! The engine runs executions of ACTIVE workflows only; while a workflow is PAUSED its
//! executions are held ([`Execution::held`]) and resume on activation
//! ([`Execution::released`]).
use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Most nodes a workflow has.
pub const MAX_NODES: usize = 200;
/// Longest node key.
pub const MAX_KEY_CHARS: usize = 64;
/// Shortest wait for a duration, in seconds (one minute).
pub const MIN_WAIT_SECONDS: i64 = 60;
/// Longest wait for a duration, in seconds (365 days).
pub const MAX_WAIT_SECONDS: i64 = 31_536_000;
/// Most points an add-points or deduct-points node moves.
pub const MAX_POINTS: i64 = 1_000_000;
/// Longest validity of added points, in days.
pub const MAX_VALIDITY_DAYS: i32 = 3_650;
/// Furthest a date trigger runs before or after the customer date, in days.
pub const MAX_DATE_OFFSET_DAYS: i32 = 365;
/// Fewest and most branches of a split.
pub const MIN_SPLIT_BRANCHES: usize = 2;
pub const MAX_SPLIT_BRANCHES: usize = 10;
/// Most property filters of an event trigger.
pub const MAX_PROPERTY_FILTERS: usize = 20;
/// Longest property filter value.
pub const MAX_PROPERTY_VALUE_CHARS: usize = 1_024;
/// Most business units, and most product codes, a purchase trigger lists.
pub const MAX_PURCHASE_FILTERS: usize = 100;
/// The fields an update may name (`display_name` and `note` also while ACTIVE).
pub const UPDATABLE_FIELDS: &[&str] = &[
    "display_name",
    "note",
    "trigger",
    "nodes",
    "entry_node_key",
    "reentry_policy",
];

/// Whether `s` is 1..64 characters of `[a-z0-9_]` (node keys, event type and consent codes,
/// customer property keys).
pub fn is_key(s: &str) -> bool {
    (1..=MAX_KEY_CHARS).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn is_currency(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
}

/// A key naming the next node: `None` for the empty key (= end).
fn target(key: &str) -> Option<String> {
    (!key.is_empty()).then(|| key.to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowState {
    /// Being designed; never triggers.
    Draft,
    /// Triggers and runs executions.
    Active,
    /// Does not trigger; its executions are held until it is activated again.
    Paused,
}

impl WorkflowState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowState::Draft => "draft",
            WorkflowState::Active => "active",
            WorkflowState::Paused => "paused",
        }
    }

    pub fn parse_str(s: &str) -> Option<WorkflowState> {
        Some(match s {
            "draft" => WorkflowState::Draft,
            "active" => WorkflowState::Active,
            "paused" => WorkflowState::Paused,
            _ => return None,
        })
    }
}

/// Whether a customer may run a workflow more than once; unspecified in the API = ONCE.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReentryPolicy {
    /// Once per customer, ever (also after a failed or cancelled execution).
    #[default]
    Once,
    /// Again once the previous execution ended.
    AfterCompletion,
    /// On every trigger, also concurrently.
    Always,
}

impl ReentryPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ReentryPolicy::Once => "once",
            ReentryPolicy::AfterCompletion => "after_completion",
            ReentryPolicy::Always => "always",
        }
    }

    pub fn parse_str(s: &str) -> Option<ReentryPolicy> {
        Some(match s {
            "once" => ReentryPolicy::Once,
            "after_completion" => ReentryPolicy::AfterCompletion,
            "always" => ReentryPolicy::Always,
            _ => return None,
        })
    }
}

/// Whether a segment trigger fires on entering or on leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentDirection {
    Entered,
    Left,
}

impl SegmentDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            SegmentDirection::Entered => "entered",
            SegmentDirection::Left => "left",
        }
    }

    pub fn parse_str(s: &str) -> Option<SegmentDirection> {
        Some(match s {
            "entered" => SegmentDirection::Entered,
            "left" => SegmentDirection::Left,
            _ => return None,
        })
    }
}

/// Whether a consent trigger fires on a grant or a withdrawal (an expiry counts as one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentChange {
    Granted,
    Withdrawn,
}

impl ConsentChange {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentChange::Granted => "granted",
            ConsentChange::Withdrawn => "withdrawn",
        }
    }

    pub fn parse_str(s: &str) -> Option<ConsentChange> {
        Some(match s {
            "granted" => ConsentChange::Granted,
            "withdrawn" => ConsentChange::Withdrawn,
            _ => return None,
        })
    }
}

/// Starts an execution when a customer event of a type is tracked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventTrigger {
    /// Code of the customer event type (identity), `[a-z0-9_]{1,64}`.
    pub event_type_code: String,
    /// Only events whose properties equal these values (case-insensitively); empty = all.
    #[serde(default)]
    pub property_filters: BTreeMap<String, String>,
}

/// Starts an execution when a customer enters or leaves a segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentTrigger {
    /// The segment; nil = missing (reported by `validate`).
    pub segment_id: Uuid,
    /// `None` = missing (reported by `validate`).
    pub direction: Option<SegmentDirection>,
}

/// Starts an execution when a purchase is completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseTrigger {
    /// Minimum net amount in minor units of `currency_code`; 0 = any purchase.
    pub minimum_amount_minor: i64,
    /// ISO 4217 currency of the minimum; required when a minimum is set.
    #[serde(default)]
    pub currency_code: String,
    /// Only purchases in these business units; empty = all.
    #[serde(default)]
    pub business_unit_ids: Vec<Uuid>,
    /// Only purchases containing one of these product codes; empty = any.
    #[serde(default)]
    pub product_codes: Vec<String>,
}

/// Starts executions at a date: once at `run_time` for every matching customer, or yearly at
/// a customer date (see [`next_date_run`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DateTrigger {
    /// A single run at this moment; alternative to `customer_date_field`.
    pub run_time: Option<DateTime<Utc>>,
    /// `customer.birth_date` or `customer.properties.<key>` (see [`CustomerDateField`]);
    /// empty when `run_time` is used.
    #[serde(default)]
    pub customer_date_field: String,
    /// Days before (< 0) or after (> 0) the customer date, -365..365.
    #[serde(default)]
    pub offset_days: i32,
    /// Hour of the day (the partner's time zone) to run, 0..23.
    #[serde(default)]
    pub hour_of_day: i32,
    /// Only customers matching this criterion; `None` = all. Opaque here, see
    /// [`ConditionTest::Criterion`].
    #[serde(default)]
    pub criterion: Option<serde_json::Value>,
}

impl DateTrigger {
    /// The customer date it reads, when it runs yearly.
    pub fn date_field(&self) -> Option<CustomerDateField> {
        CustomerDateField::parse_str(&self.customer_date_field)
    }

    /// The first run for a customer whose date is `date`, after `after` (see
    /// [`next_date_run`]).
    pub fn next_run_for(&self, date: NaiveDate, tz: Tz, after: DateTime<Utc>) -> DateTime<Utc> {
        next_date_run(
            date,
            self.offset_days,
            u32::try_from(self.hour_of_day).unwrap_or(0),
            tz,
            after,
        )
    }
}

/// Starts an execution when a customer's consent changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentTrigger {
    /// Code of the consent type (identity), e.g. `newsletter`.
    pub consent_type_code: String,
    /// `None` = missing (reported by `validate`).
    pub change: Option<ConsentChange>,
}

/// States of a click & collect order a trigger can wait for (checkout's names).
pub const COLLECT_ORDER_STATES: &[&str] =
    &["created", "ready_for_pickup", "collected", "cancelled"];

/// Starts an execution when a click & collect order reaches `state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectOrderTrigger {
    pub state: String,
    /// Empty = every store.
    pub business_unit_ids: Vec<String>,
}

/// What starts an execution of a workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Event(EventTrigger),
    Segment(SegmentTrigger),
    Purchase(PurchaseTrigger),
    Date(DateTrigger),
    Consent(ConsentTrigger),
    CollectOrder(CollectOrderTrigger),
}

impl Trigger {
    /// The kind, as the proto's oneof field is named (`event`, `segment`, `purchase`, `date`,
    /// `consent`); a store may index active workflows by it.
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Event(_) => "event",
            Trigger::Segment(_) => "segment",
            Trigger::Purchase(_) => "purchase",
            Trigger::Date(_) => "date",
            Trigger::Consent(_) => "consent",
            Trigger::CollectOrder(_) => "collect_order",
        }
    }

    /// Whether a tracked event of `code` with `properties` starts an execution: the code is
    /// the trigger's and every property filter equals the event's value (case-insensitively,
    /// as criteria compare strings).
    pub fn matches_event(&self, code: &str, properties: &BTreeMap<String, String>) -> bool {
        let Trigger::Event(t) = self else {
            return false;
        };
        t.event_type_code == code
            && t.property_filters.iter().all(|(key, want)| {
                properties
                    .get(key)
                    .is_some_and(|got| got.to_lowercase() == want.to_lowercase())
            })
    }

    /// Whether entering (`entered`) or leaving segment `segment_id` starts an execution.
    pub fn matches_segment(&self, segment_id: Uuid, entered: bool) -> bool {
        let Trigger::Segment(t) = self else {
            return false;
        };
        let direction = if entered {
            SegmentDirection::Entered
        } else {
            SegmentDirection::Left
        };
        t.segment_id == segment_id && t.direction == Some(direction)
    }

    /// Whether a completed purchase starts an execution: at least the minimum in its currency
    /// (a purchase in another currency does not count when a minimum is set), in one of the
    /// business units (if listed) and containing one of the product codes (if listed).
    pub fn matches_purchase(
        &self,
        amount_minor: i64,
        currency: &str,
        business_unit_id: Option<Uuid>,
        product_codes: &[String],
    ) -> bool {
        let Trigger::Purchase(t) = self else {
            return false;
        };
        let amount_ok = t.minimum_amount_minor <= 0
            || (amount_minor >= t.minimum_amount_minor
                && t.currency_code.eq_ignore_ascii_case(currency));
        let unit_ok = t.business_unit_ids.is_empty()
            || business_unit_id.is_some_and(|u| t.business_unit_ids.contains(&u));
        let product_ok =
            t.product_codes.is_empty() || product_codes.iter().any(|p| t.product_codes.contains(p));
        amount_ok && unit_ok && product_ok
    }

    /// Whether a consent of `code` granted (`granted`) or withdrawn (or expired) starts an
    /// execution.
    pub fn matches_consent(&self, code: &str, granted: bool) -> bool {
        let Trigger::Consent(t) = self else {
            return false;
        };
        let change = if granted {
            ConsentChange::Granted
        } else {
            ConsentChange::Withdrawn
        };
        t.consent_type_code == code && t.change == Some(change)
    }

    /// Whether a click & collect order reaching `state` in store `business_unit_id` starts an
    /// execution.
    pub fn matches_collect_order(&self, state: &str, business_unit_id: &str) -> bool {
        let Trigger::CollectOrder(t) = self else {
            return false;
        };
        t.state == state
            && (t.business_unit_ids.is_empty()
                || t.business_unit_ids.iter().any(|b| b == business_unit_id))
    }

    /// Checks every field, reporting under `workflow.trigger.<kind>.<field>`.
    pub fn validate(&self, v: &mut Violations) {
        let f = |n: &str| format!("workflow.trigger.{}.{n}", self.kind());
        match self {
            Trigger::Event(t) => {
                code(v, f("event_type_code"), &t.event_type_code);
                if t.property_filters.len() > MAX_PROPERTY_FILTERS {
                    v.add(
                        f("property_filters"),
                        format!("at most {MAX_PROPERTY_FILTERS} filters"),
                    );
                }
                for (key, value) in &t.property_filters {
                    if !is_key(key) {
                        v.add(
                            f("property_filters"),
                            format!("key {key:?} must be 1..64 characters of [a-z0-9_]"),
                        );
                    }
                    if value.chars().count() > MAX_PROPERTY_VALUE_CHARS {
                        v.add(
                            f("property_filters"),
                            format!(
                                "the value of {key:?} must be at most \
                                 {MAX_PROPERTY_VALUE_CHARS} characters"
                            ),
                        );
                    }
                }
            }
            Trigger::Segment(t) => {
                required_id(v, f("segment_id"), t.segment_id);
                if t.direction.is_none() {
                    v.add(f("direction"), "is required");
                }
            }
            Trigger::Purchase(t) => {
                if t.minimum_amount_minor < 0 {
                    v.add(f("minimum_amount_minor"), "must be 0 or more");
                }
                if t.currency_code.is_empty() {
                    if t.minimum_amount_minor > 0 {
                        v.add(f("currency_code"), "is required when a minimum is set");
                    }
                } else if !is_currency(&t.currency_code) {
                    v.add(
                        f("currency_code"),
                        "must be an ISO 4217 code of 3 upper-case letters",
                    );
                }
                if t.business_unit_ids.len() > MAX_PURCHASE_FILTERS {
                    v.add(
                        f("business_unit_ids"),
                        format!("at most {MAX_PURCHASE_FILTERS} business units"),
                    );
                }
                if t.business_unit_ids.iter().any(Uuid::is_nil) {
                    v.add(f("business_unit_ids"), "must not contain an empty id");
                }
                if t.product_codes.len() > MAX_PURCHASE_FILTERS {
                    v.add(
                        f("product_codes"),
                        format!("at most {MAX_PURCHASE_FILTERS} product codes"),
                    );
                }
                if t.product_codes
                    .iter()
                    .any(|c| !(1..=MAX_KEY_CHARS).contains(&c.trim().chars().count()))
                {
                    v.add(f("product_codes"), "each must be 1..64 characters");
                }
            }
            Trigger::Date(t) => {
                if t.run_time.is_some() != t.customer_date_field.is_empty() {
                    v.add(
                        "workflow.trigger.date",
                        "needs exactly one of run_time and customer_date_field",
                    );
                }
                if !t.customer_date_field.is_empty() && t.date_field().is_none() {
                    v.add(
                        f("customer_date_field"),
                        "must be customer.birth_date or customer.properties.<key>",
                    );
                }
                if !(-MAX_DATE_OFFSET_DAYS..=MAX_DATE_OFFSET_DAYS).contains(&t.offset_days) {
                    v.add(f("offset_days"), "must be -365..365");
                } else if t.offset_days != 0 && t.run_time.is_some() {
                    v.add(f("offset_days"), "applies to customer_date_field only");
                }
                if !(0..=23).contains(&t.hour_of_day) {
                    v.add(f("hour_of_day"), "must be 0..23");
                }
                if t.criterion.as_ref().is_some_and(serde_json::Value::is_null) {
                    v.add(f("criterion"), "must be a criterion");
                }
            }
            Trigger::Consent(t) => {
                code(v, f("consent_type_code"), &t.consent_type_code);
                if t.change.is_none() {
                    v.add(f("change"), "is required");
                }
            }
            Trigger::CollectOrder(t) => {
                if !COLLECT_ORDER_STATES.contains(&t.state.as_str()) {
                    v.add(
                        f("state"),
                        "must be created, ready_for_pickup, collected or cancelled",
                    );
                }
                if t.business_unit_ids.len() > 100 {
                    v.add(f("business_unit_ids"), "at most 100");
                }
                for (i, b) in t.business_unit_ids.iter().enumerate() {
                    if b.trim().is_empty() || b.chars().count() > 64 {
                        v.add(
                            f(&format!("business_unit_ids[{i}]")),
                            "must be 1..64 characters",
                        );
                    }
                }
            }
        }
    }
}

fn code(v: &mut Violations, field: String, value: &str) {
    if value.is_empty() {
        v.add(field, "is required");
    } else if !is_key(value) {
        v.add(field, "must be 1..64 characters of [a-z0-9_]");
    }
}

/// Ids are `Uuid`s; the nil UUID stands for "not given" (an empty string in the API), so
/// `validate` reports it as missing. A malformed UUID is the API layer's to report.
fn required_id(v: &mut Violations, field: String, id: Uuid) {
    if id.is_nil() {
        v.add(field, "is required");
    }
}

/// The customer date a yearly date trigger reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerDateField {
    /// `customer.birth_date`.
    BirthDate,
    /// `customer.properties.<key>`: a user-defined property holding `YYYY-MM-DD`.
    Property(String),
}

impl CustomerDateField {
    pub fn parse_str(s: &str) -> Option<CustomerDateField> {
        if s == "customer.birth_date" {
            return Some(CustomerDateField::BirthDate);
        }
        s.strip_prefix("customer.properties.")
            .filter(|k| is_key(k))
            .map(|k| CustomerDateField::Property(k.to_owned()))
    }

    pub fn path(&self) -> String {
        match self {
            CustomerDateField::BirthDate => "customer.birth_date".into(),
            CustomerDateField::Property(k) => format!("customer.properties.{k}"),
        }
    }
}

/// What a condition node tests.
///
/// A criterion is kept as opaque JSON: the storage form of `loyalty_criteria::Criterion`
/// (`Criterion::to_json`, which `Criterion::from_json` reads back and validates again). The
/// API layer converts the protobuf criterion and reports its problems under the node's path;
/// the engine parses it to evaluate. JSON rather than the encoded protobuf bytes because a
/// version's definition is stored as JSON: it stays readable in the database and does not
/// depend on the wire format, and this module needs no criteria or protobuf types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditionTest {
    /// The customer matches a criterion (may read `event.*` of the trigger).
    Criterion(serde_json::Value),
    /// The customer is in this segment.
    InSegment(Uuid),
    /// The customer holds this badge.
    HasBadge(Uuid),
    /// The customer opened the message sent by this node (key of a send-message node) in
    /// this execution (see [`Execution::action_key`]).
    OpenedMessage(String),
}

/// One branch of a split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitBranch {
    /// Share of the executions taking it, 1..100 %; the branches add up to 100.
    pub percent: i32,
    /// Key of the node it leads to; empty = end.
    #[serde(default)]
    pub next_node_key: String,
}

/// What a node does. Stored as JSON tagged by `type` (`{"type": "wait", "duration_seconds":
/// 3600}`), with the snake-case names of the proto's oneof fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeKind {
    /// Waits before the next node: exactly one of the three.
    Wait {
        /// Seconds, 60..31,536,000.
        duration_seconds: Option<i64>,
        /// Until the next occurrence of this hour in the partner's time zone, 0..23.
        until_hour_of_day: Option<i32>,
        /// Until this moment (reached later: goes on at once).
        until_time: Option<DateTime<Utc>>,
    },
    /// Branches on a test the engine evaluates.
    Condition {
        /// `None` = missing (reported by `validate`).
        test: Option<ConditionTest>,
        /// Next node when the test holds; empty = end.
        #[serde(default)]
        true_node_key: String,
        /// Next node when it does not; empty = end.
        #[serde(default)]
        false_node_key: String,
    },
    SendMessage {
        message_template_id: Uuid,
    },
    AddPoints {
        /// 1..1,000,000.
        points: i64,
        /// UUID or code of the points type; empty = default.
        #[serde(default)]
        points_type_id: String,
        /// Days until the points expire, 0..3650; 0 = the points type's rule.
        #[serde(default)]
        validity_days: i32,
    },
    IssueVoucher {
        reward_id: Uuid,
    },
    AddToSegment {
        segment_id: Uuid,
    },
    RemoveFromSegment {
        segment_id: Uuid,
    },
    AssignBadge {
        badge_id: Uuid,
    },
    RemoveBadge {
        badge_id: Uuid,
    },
    DeductPoints {
        /// 1..1,000,000 (never below zero: as many as there are).
        points: i64,
        #[serde(default)]
        points_type_id: String,
    },
    /// Sends each execution down one branch at random, by the branches' shares.
    Split {
        branches: Vec<SplitBranch>,
    },
    /// Ends the execution.
    End,
    /// The node type was not given (the proto oneof unset) or is not known (a stored
    /// definition written by a newer version); `validate` reports it under
    /// `workflow.nodes[i].kind`, and an execution reaching it fails.
    #[serde(other)]
    Unknown,
}

impl NodeKind {
    /// The proto's oneof field name of the kind (`wait`, `send_message`, …; `kind` when
    /// unknown): the segment of the field paths under the node.
    pub fn type_name(&self) -> &'static str {
        match self {
            NodeKind::Wait { .. } => "wait",
            NodeKind::Condition { .. } => "condition",
            NodeKind::SendMessage { .. } => "send_message",
            NodeKind::AddPoints { .. } => "add_points",
            NodeKind::IssueVoucher { .. } => "issue_voucher",
            NodeKind::AddToSegment { .. } => "add_to_segment",
            NodeKind::RemoveFromSegment { .. } => "remove_from_segment",
            NodeKind::AssignBadge { .. } => "assign_badge",
            NodeKind::RemoveBadge { .. } => "remove_badge",
            NodeKind::DeductPoints { .. } => "deduct_points",
            NodeKind::Split { .. } => "split",
            NodeKind::End => "end",
            NodeKind::Unknown => "kind",
        }
    }

    /// Whether the node goes on by its own keys (condition, split) or not at all (end),
    /// rather than by the node's `next`.
    fn routes_itself(&self) -> bool {
        matches!(
            self,
            NodeKind::Condition { .. } | NodeKind::Split { .. } | NodeKind::End
        )
    }

    /// Whether every pass through the node waits (a duration or an hour of the day); only
    /// such a wait makes a cycle safe.
    fn always_waits(&self) -> bool {
        matches!(
            self,
            NodeKind::Wait {
                duration_seconds: Some(_),
                ..
            } | NodeKind::Wait {
                until_hour_of_day: Some(_),
                ..
            }
        )
    }
}

/// One node of a workflow graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Unique in the workflow, `[a-z0-9_]{1,64}`.
    pub key: String,
    /// Human-readable label, up to 200 characters.
    #[serde(default)]
    pub display_name: String,
    pub kind: NodeKind,
    /// Key of the next node (not for condition, split and end nodes); empty = end.
    #[serde(default)]
    pub next: String,
}

impl Node {
    /// The keys leading out of the node, each with its field under `workflow.nodes[i]`
    /// (empty keys included: they mean "end").
    pub fn exits(&self) -> Vec<(String, &str)> {
        match &self.kind {
            NodeKind::Condition {
                true_node_key,
                false_node_key,
                ..
            } => vec![
                ("condition.true_node_key".into(), true_node_key.as_str()),
                ("condition.false_node_key".into(), false_node_key.as_str()),
            ],
            NodeKind::Split { branches } => branches
                .iter()
                .enumerate()
                .map(|(j, b)| {
                    (
                        format!("split.branches[{j}].next_node_key"),
                        b.next_node_key.as_str(),
                    )
                })
                .collect(),
            NodeKind::End => Vec::new(),
            _ => vec![("next_node_key".into(), self.next.as_str())],
        }
    }

    fn validate(&self, i: usize, v: &mut Violations) {
        let f = |n: &str| format!("workflow.nodes[{i}].{n}");
        let k = |n: &str| format!("workflow.nodes[{i}].{}.{n}", self.kind.type_name());
        if !is_key(&self.key) {
            v.add(f("key"), "must be 1..64 characters of [a-z0-9_]");
        }
        if self.display_name.chars().count() > 200 {
            v.add(f("display_name"), "must be at most 200 characters");
        }
        if self.kind.routes_itself() && !self.next.is_empty() {
            v.add(
                f("next_node_key"),
                format!(
                    "must be empty: a {} node {}",
                    self.kind.type_name(),
                    match self.kind {
                        NodeKind::Condition { .. } => "goes on by true_node_key and false_node_key",
                        NodeKind::Split { .. } => "goes on by its branches",
                        _ => "ends the execution",
                    }
                ),
            );
        }
        match &self.kind {
            NodeKind::Wait {
                duration_seconds,
                until_hour_of_day,
                until_time,
            } => {
                let set = [
                    duration_seconds.is_some(),
                    until_hour_of_day.is_some(),
                    until_time.is_some(),
                ];
                if set.iter().filter(|s| **s).count() != 1 {
                    v.add(
                        f("wait"),
                        "needs exactly one of duration_seconds, until_hour_of_day and until_time",
                    );
                }
                if duration_seconds
                    .is_some_and(|d| !(MIN_WAIT_SECONDS..=MAX_WAIT_SECONDS).contains(&d))
                {
                    v.add(k("duration_seconds"), "must be 60..31536000");
                }
                if until_hour_of_day.is_some_and(|h| !(0..=23).contains(&h)) {
                    v.add(k("until_hour_of_day"), "must be 0..23");
                }
            }
            NodeKind::Condition { test, .. } => match test {
                None => v.add(
                    k("test"),
                    "needs one of criterion, in_segment_id, has_badge_id and \
                     opened_message_node_key",
                ),
                Some(ConditionTest::Criterion(c)) if c.is_null() => {
                    v.add(k("criterion"), "must be a criterion");
                }
                Some(ConditionTest::InSegment(id)) => required_id(v, k("in_segment_id"), *id),
                Some(ConditionTest::HasBadge(id)) => required_id(v, k("has_badge_id"), *id),
                // Checked with the graph.
                Some(ConditionTest::Criterion(_) | ConditionTest::OpenedMessage(_)) => {}
            },
            NodeKind::SendMessage {
                message_template_id,
            } => required_id(v, k("message_template_id"), *message_template_id),
            NodeKind::AddPoints {
                points,
                points_type_id,
                validity_days,
            } => {
                check_points(v, k("points"), *points);
                check_points_type(v, k("points_type_id"), points_type_id);
                if !(0..=MAX_VALIDITY_DAYS).contains(validity_days) {
                    v.add(k("validity_days"), "must be 0..3650");
                }
            }
            NodeKind::DeductPoints {
                points,
                points_type_id,
            } => {
                check_points(v, k("points"), *points);
                check_points_type(v, k("points_type_id"), points_type_id);
            }
            NodeKind::IssueVoucher { reward_id } => required_id(v, k("reward_id"), *reward_id),
            NodeKind::AddToSegment { segment_id } | NodeKind::RemoveFromSegment { segment_id } => {
                required_id(v, k("segment_id"), *segment_id);
            }
            NodeKind::AssignBadge { badge_id } | NodeKind::RemoveBadge { badge_id } => {
                required_id(v, k("badge_id"), *badge_id);
            }
            NodeKind::Split { branches } => {
                if !(MIN_SPLIT_BRANCHES..=MAX_SPLIT_BRANCHES).contains(&branches.len()) {
                    v.add(k("branches"), "must have 2..10 branches");
                }
                let mut sum = 0i64;
                let mut each_ok = true;
                for (j, b) in branches.iter().enumerate() {
                    if !(1..=100).contains(&b.percent) {
                        each_ok = false;
                        v.add(k(&format!("branches[{j}].percent")), "must be 1..100");
                    }
                    sum += i64::from(b.percent);
                }
                if each_ok && !branches.is_empty() && sum != 100 {
                    v.add(
                        k("branches"),
                        format!("the percentages must add up to 100, not {sum}"),
                    );
                }
            }
            NodeKind::End => {}
            NodeKind::Unknown => v.add(f("kind"), "is required or unknown"),
        }
    }
}

fn check_points(v: &mut Violations, field: String, points: i64) {
    if !(1..=MAX_POINTS).contains(&points) {
        v.add(field, "must be 1..1000000");
    }
}

fn check_points_type(v: &mut Violations, field: String, id: &str) {
    if !id.is_empty() && Uuid::try_parse(id).is_err() && !is_key(id) {
        v.add(field, "must be the UUID or the code of a points type");
    }
}

/// A broken workflow rule: FAILED_PRECONDITION with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkflowRule {
    /// ACTIVE: only its name and note change, it is not deleted, it is already active.
    Active,
    /// Only an ACTIVE workflow pauses.
    NotActive,
    /// Activation needs this field.
    Incomplete(&'static str),
    /// Deleting needs no running or waiting executions.
    ExecutionsRunning,
    /// The execution already completed, failed or was cancelled.
    ExecutionEnded,
}

impl WorkflowRule {
    pub fn reason(self) -> &'static str {
        match self {
            WorkflowRule::Active => "WORKFLOW_ACTIVE",
            WorkflowRule::NotActive => "WORKFLOW_NOT_ACTIVE",
            WorkflowRule::Incomplete(_) => "WORKFLOW_INCOMPLETE",
            WorkflowRule::ExecutionsRunning => "EXECUTIONS_RUNNING",
            WorkflowRule::ExecutionEnded => "EXECUTION_ENDED",
        }
    }

    pub fn message(self) -> String {
        match self {
            WorkflowRule::Active => {
                "the workflow is active; pause it first (its name and note can change)".into()
            }
            WorkflowRule::NotActive => "only an active workflow can pause".into(),
            WorkflowRule::Incomplete(field) => format!("activating needs {field}"),
            WorkflowRule::ExecutionsRunning => {
                "the workflow has running or waiting executions; cancel them first".into()
            }
            WorkflowRule::ExecutionEnded => "the execution has ended".into(),
        }
    }
}

/// A marketing-automation workflow: a trigger and a graph of nodes. `version` grows with
/// every update; its etag is `"v<version>"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workflow {
    pub id: Uuid,
    pub display_name: String,
    pub state: WorkflowState,
    /// `None` = missing (reported by `validate`).
    pub trigger: Option<Trigger>,
    pub nodes: Vec<Node>,
    /// Key of the first node.
    pub entry_node_key: String,
    #[serde(default)]
    pub reentry_policy: ReentryPolicy,
    /// 1 when created.
    pub version: i32,
    #[serde(default)]
    pub note: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    /// When it was last activated; `None` = never.
    #[serde(default)]
    pub activated_at: Option<DateTime<Utc>>,
}

impl Workflow {
    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }

    /// The node with `key`.
    pub fn node(&self, key: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.key == key)
    }

    /// Checks every field and the graph, reporting under `workflow.<field>`,
    /// `workflow.trigger.<kind>.<field>` and `workflow.nodes[i].<field>`.
    pub fn validate(&self, v: &mut Violations) {
        if !(1..=200).contains(&self.display_name.trim().chars().count()) {
            v.add("workflow.display_name", "must be 1..200 characters");
        }
        if self.note.chars().count() > 2_000 {
            v.add("workflow.note", "must be at most 2000 characters");
        }
        match &self.trigger {
            None => v.add("workflow.trigger", "is required"),
            Some(t) => t.validate(v),
        }
        if !(1..=MAX_NODES).contains(&self.nodes.len()) {
            v.add("workflow.nodes", format!("must have 1..{MAX_NODES} nodes"));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            node.validate(i, v);
        }
        self.validate_graph(v);
    }

    fn validate_graph(&self, v: &mut Violations) {
        let nodes = &self.nodes;
        // Key → index of its first node.
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, node) in nodes.iter().enumerate() {
            if !is_key(&node.key) {
                continue;
            }
            if let Some(first) = index.get(node.key.as_str()) {
                v.add(
                    format!("workflow.nodes[{i}].key"),
                    format!("{:?} is also the key of nodes[{first}]", node.key),
                );
            } else {
                index.insert(&node.key, i);
            }
        }
        for (i, node) in nodes.iter().enumerate() {
            for (field, key) in node.exits() {
                if !key.is_empty() && !index.contains_key(key) {
                    v.add(
                        format!("workflow.nodes[{i}].{field}"),
                        format!("names no node ({key:?})"),
                    );
                }
            }
        }
        let entry = if self.entry_node_key.is_empty() {
            v.add("workflow.entry_node_key", "is required");
            None
        } else if let Some(&e) = index.get(self.entry_node_key.as_str()) {
            Some(e)
        } else {
            v.add(
                "workflow.entry_node_key",
                format!("names no node ({:?})", self.entry_node_key),
            );
            None
        };
        if nodes.len() > MAX_NODES {
            return;
        }
        let succ: Vec<Vec<usize>> = nodes
            .iter()
            .map(|n| {
                n.exits()
                    .into_iter()
                    .filter_map(|(_, k)| index.get(k).copied())
                    .collect()
            })
            .collect();
        if let Some(entry) = entry {
            let reached = reachable(&succ, &[entry], |_| true);
            for (i, node) in nodes.iter().enumerate() {
                if !reached[i] && index.get(node.key.as_str()) == Some(&i) {
                    v.add(
                        format!("workflow.nodes[{i}]"),
                        format!(
                            "{:?} is not reachable from the entry node {:?}",
                            node.key, self.entry_node_key
                        ),
                    );
                }
            }
        }
        for cycle in cycles_without_wait(nodes, &succ) {
            let mut names: Vec<&str> = cycle.iter().map(|&i| nodes[i].key.as_str()).collect();
            names.push(names[0]);
            v.add(
                "workflow.nodes",
                format!(
                    "the cycle {} passes no wait node; add a wait for a duration or until an \
                     hour of the day (a wait until a fixed time waits only once)",
                    names.join(" → ")
                ),
            );
        }
        for (i, node) in nodes.iter().enumerate() {
            let NodeKind::Condition {
                test: Some(ConditionTest::OpenedMessage(key)),
                ..
            } = &node.kind
            else {
                continue;
            };
            let field = format!("workflow.nodes[{i}].condition.opened_message_node_key");
            match index.get(key.as_str()) {
                _ if key.is_empty() => v.add(field, "is required"),
                None => v.add(field, format!("names no node ({key:?})")),
                Some(&j) if !matches!(nodes[j].kind, NodeKind::SendMessage { .. }) => {
                    v.add(field, format!("{key:?} is not a send_message node"));
                }
                Some(&j) if !reachable(&succ, &succ[j], |_| true)[i] => v.add(
                    field,
                    format!("the send_message node {key:?} never runs before this condition"),
                ),
                Some(_) => {}
            }
        }
    }

    /// Whether `fields` may change now: anything of a DRAFT or PAUSED workflow, only the name
    /// and note of an ACTIVE one.
    pub fn check_editable(&self, fields: &[&str]) -> Result<(), WorkflowRule> {
        match self.state {
            WorkflowState::Draft | WorkflowState::Paused => Ok(()),
            WorkflowState::Active
                if fields.iter().all(|f| matches!(*f, "display_name" | "note")) =>
            {
                Ok(())
            }
            WorkflowState::Active => Err(WorkflowRule::Active),
        }
    }

    /// The workflow with `fields` (of [`UPDATABLE_FIELDS`]; others are ignored) taken from
    /// `changes`, as a new version updated at `now`. Validate the result before storing it.
    pub fn updated(
        &self,
        changes: &Workflow,
        fields: &[&str],
        now: DateTime<Utc>,
    ) -> Result<Workflow, WorkflowRule> {
        self.check_editable(fields)?;
        let mut w = self.clone();
        for field in fields {
            match *field {
                "display_name" => w.display_name.clone_from(&changes.display_name),
                "note" => w.note.clone_from(&changes.note),
                "trigger" => w.trigger.clone_from(&changes.trigger),
                "nodes" => w.nodes.clone_from(&changes.nodes),
                "entry_node_key" => w.entry_node_key.clone_from(&changes.entry_node_key),
                "reentry_policy" => w.reentry_policy = changes.reentry_policy,
                _ => {}
            }
        }
        w.version = w.version.saturating_add(1);
        w.updated_at = Some(now);
        Ok(w)
    }

    /// The workflow activated at `now` (from DRAFT or PAUSED); the version stays. The API
    /// validates it again first: a stored draft may predate a rule.
    pub fn activated(&self, now: DateTime<Utc>) -> Result<Workflow, WorkflowRule> {
        if self.state == WorkflowState::Active {
            return Err(WorkflowRule::Active);
        }
        if self.trigger.is_none() {
            return Err(WorkflowRule::Incomplete("trigger"));
        }
        if self.nodes.is_empty() {
            return Err(WorkflowRule::Incomplete("nodes"));
        }
        if self.entry_node_key.is_empty() {
            return Err(WorkflowRule::Incomplete("entry_node_key"));
        }
        Ok(Workflow {
            state: WorkflowState::Active,
            activated_at: Some(now),
            updated_at: Some(now),
            ..self.clone()
        })
    }

    /// The workflow paused at `now`: no new executions; running ones are held.
    pub fn paused(&self, now: DateTime<Utc>) -> Result<Workflow, WorkflowRule> {
        if self.state != WorkflowState::Active {
            return Err(WorkflowRule::NotActive);
        }
        Ok(Workflow {
            state: WorkflowState::Paused,
            updated_at: Some(now),
            ..self.clone()
        })
    }

    /// Whether the workflow may be deleted: not ACTIVE, and none of its executions running
    /// or waiting (`live_executions`).
    pub fn check_deletable(&self, live_executions: u64) -> Result<(), WorkflowRule> {
        if self.state == WorkflowState::Active {
            Err(WorkflowRule::Active)
        } else if live_executions > 0 {
            Err(WorkflowRule::ExecutionsRunning)
        } else {
            Ok(())
        }
    }
}

/// `reached[i]`: whether node `i` is reachable from `starts` (included) through nodes
/// `allowed`.
fn reachable(succ: &[Vec<usize>], starts: &[usize], allowed: impl Fn(usize) -> bool) -> Vec<bool> {
    let mut reached = vec![false; succ.len()];
    let mut queue = VecDeque::new();
    for &s in starts {
        if allowed(s) && !reached[s] {
            reached[s] = true;
            queue.push_back(s);
        }
    }
    while let Some(x) = queue.pop_front() {
        for &y in &succ[x] {
            if allowed(y) && !reached[y] {
                reached[y] = true;
                queue.push_back(y);
            }
        }
    }
    reached
}

/// One shortest cycle (node indices, in order) for every group of nodes (strongly connected
/// component) that cycles without passing a wait that always waits.
fn cycles_without_wait(nodes: &[Node], succ: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = nodes.len();
    let free = |i: usize| !nodes[i].kind.always_waits();
    let mut pred = vec![Vec::new(); n];
    for (x, ys) in succ.iter().enumerate() {
        for &y in ys {
            pred[y].push(x);
        }
    }
    let mut covered = vec![false; n];
    let mut found = Vec::new();
    for u in 0..n {
        if covered[u] || !free(u) {
            continue;
        }
        // Breadth-first from u through wait-free nodes, remembering how each was reached.
        let mut parent: Vec<Option<usize>> = vec![None; n];
        let mut seen = vec![false; n];
        seen[u] = true;
        let mut queue = VecDeque::from([u]);
        let mut closing = None;
        while let Some(x) = queue.pop_front() {
            for &y in &succ[x] {
                if y == u && closing.is_none() {
                    closing = Some(x);
                }
                if free(y) && !seen[y] {
                    seen[y] = true;
                    parent[y] = Some(x);
                    queue.push_back(y);
                }
            }
        }
        let Some(last) = closing else {
            continue;
        };
        let mut cycle = vec![last];
        while let Some(p) = parent[*cycle.last().unwrap_or(&u)] {
            cycle.push(p);
        }
        cycle.reverse();
        if cycle.first() != Some(&u) {
            cycle.insert(0, u);
        }
        let back = reachable(&pred, &[u], free);
        for ((c, s), b) in covered.iter_mut().zip(&seen).zip(&back) {
            *c |= *s && *b;
        }
        found.push(cycle);
    }
    found
}

/// State of an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionState {
    /// Running a node.
    Running,
    /// Waiting until `wake_at` (a wait node), or held while the workflow is paused.
    Waiting,
    /// Reached an end.
    Completed,
    /// A node failed after its retries.
    Failed,
    /// Cancelled (operator, customer erased or blocked).
    Cancelled,
}

impl ExecutionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionState::Running => "running",
            ExecutionState::Waiting => "waiting",
            ExecutionState::Completed => "completed",
            ExecutionState::Failed => "failed",
            ExecutionState::Cancelled => "cancelled",
        }
    }

    pub fn parse_str(s: &str) -> Option<ExecutionState> {
        Some(match s {
            "running" => ExecutionState::Running,
            "waiting" => ExecutionState::Waiting,
            "completed" => ExecutionState::Completed,
            "failed" => ExecutionState::Failed,
            "cancelled" => ExecutionState::Cancelled,
            _ => return None,
        })
    }

    /// Completed, failed or cancelled.
    pub fn is_ended(self) -> bool {
        matches!(
            self,
            ExecutionState::Completed | ExecutionState::Failed | ExecutionState::Cancelled
        )
    }
}

/// Outcome of one executed node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    /// The node did its action.
    Done,
    /// The node was skipped (e.g. a message suppressed for lack of consent).
    Skipped,
    /// The node failed; the step's `error` says why.
    Failed,
}

impl StepOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            StepOutcome::Done => "done",
            StepOutcome::Skipped => "skipped",
            StepOutcome::Failed => "failed",
        }
    }

    pub fn parse_str(s: &str) -> Option<StepOutcome> {
        Some(match s {
            "done" => StepOutcome::Done,
            "skipped" => StepOutcome::Skipped,
            "failed" => StepOutcome::Failed,
            _ => return None,
        })
    }
}

/// Longest error text a step records.
pub const MAX_STEP_ERROR_CHARS: usize = 1_000;

/// One executed node of an execution (the proto's `WorkflowStep`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowStep {
    pub node_key: String,
    pub outcome: StepOutcome,
    /// For condition nodes: whether the condition held.
    #[serde(default)]
    pub condition_result: Option<bool>,
    /// What the node created, e.g. `message:<id>`, `voucher:<id>`, `ledger_entry:<id>`.
    #[serde(default)]
    pub result_reference: String,
    /// Why it failed or was skipped, up to [`MAX_STEP_ERROR_CHARS`] characters.
    #[serde(default)]
    pub error: String,
    /// Attempts made, at least 1.
    pub attempt_count: i32,
    pub executed_at: DateTime<Utc>,
}

impl WorkflowStep {
    /// `error` cut to [`MAX_STEP_ERROR_CHARS`] characters.
    pub fn clip_error(error: &str) -> String {
        error.chars().take(MAX_STEP_ERROR_CHARS).collect()
    }
}

/// A durable per-customer execution of one version of a workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    pub id: Uuid,
    pub workflow_id: Uuid,
    /// The version of the workflow it runs, for good.
    pub workflow_version: i32,
    pub customer_id: Uuid,
    pub state: ExecutionState,
    /// Key of the node to run next (when WAITING: after waking); empty when ended, or when a
    /// final wait is all that is left.
    pub current_node_key: String,
    /// When a WAITING execution goes on; `None` while held (the workflow is paused).
    pub wake_at: Option<DateTime<Utc>>,
    /// The domain event that started it (`EventEnvelope.event_id`); `None` for dates.
    pub trigger_event_id: Option<Uuid>,
    /// What the trigger carried (an event's properties), read by conditions as `event.<key>`.
    #[serde(default)]
    pub trigger_facts: BTreeMap<String, String>,
    /// How many times each node was entered; the current node's count is its visit number.
    #[serde(default)]
    pub visits: BTreeMap<String, u32>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl Execution {
    /// A new execution of `workflow` (its current version) for `customer_id`, RUNNING at the
    /// entry node.
    pub fn start(
        id: Uuid,
        workflow: &Workflow,
        customer_id: Uuid,
        trigger_event_id: Option<Uuid>,
        trigger_facts: BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> Execution {
        let entry = workflow.entry_node_key.clone();
        Execution {
            id,
            workflow_id: workflow.id,
            workflow_version: workflow.version,
            customer_id,
            state: ExecutionState::Running,
            visits: BTreeMap::from([(entry.clone(), 1)]),
            current_node_key: entry,
            wake_at: None,
            trigger_event_id,
            trigger_facts,
            started_at: now,
            ended_at: None,
        }
    }

    /// How many times the node was entered (0 = never).
    pub fn visits_of(&self, node_key: &str) -> u32 {
        self.visits.get(node_key).copied().unwrap_or(0)
    }

    /// The idempotency key of the node's latest action in this execution (`None` if never
    /// entered), e.g. to find the message a send-message node sent for an
    /// `opened_message_node_key` condition.
    pub fn action_key(&self, node_key: &str) -> Option<String> {
        match self.visits_of(node_key) {
            0 => None,
            visit => Some(idempotency_key(self.id, node_key, visit)),
        }
    }

    /// The execution after the engine carried out `step` at `now` (performed the action of
    /// [`Step::Act`]): moved on, waiting, completed or failed. Unchanged for
    /// [`Step::NeedsCondition`], [`Step::NotDue`] and [`Step::Finished`].
    pub fn after(&self, step: &Step, now: DateTime<Utc>) -> Execution {
        match step {
            Step::Act { next, .. } | Step::Branch { next, .. } => {
                self.advanced(next.as_deref(), now)
            }
            Step::Wait { until, next, .. } if *until <= now => self.advanced(next.as_deref(), now),
            Step::Wait { until, next, .. } => self.waiting(next.as_deref(), *until),
            Step::End { .. } => self.completed(now),
            Step::Fail { .. } => self.failed(now),
            Step::NeedsCondition { .. } | Step::NotDue { .. } | Step::Finished => self.clone(),
        }
    }

    /// RUNNING at `next` (its visit counted), or COMPLETED when `None`.
    pub fn advanced(&self, next: Option<&str>, now: DateTime<Utc>) -> Execution {
        let Some(next) = next else {
            return self.completed(now);
        };
        let mut e = self.entered(next);
        e.state = ExecutionState::Running;
        e.wake_at = None;
        e
    }

    /// WAITING until `until`, then to go on at `next` (its visit counted now); with `None`
    /// the execution completes when it wakes (a final wait, e.g. a cool-down before
    /// re-entry).
    pub fn waiting(&self, next: Option<&str>, until: DateTime<Utc>) -> Execution {
        let mut e = match next {
            Some(next) => self.entered(next),
            None => Execution {
                current_node_key: String::new(),
                ..self.clone()
            },
        };
        e.state = ExecutionState::Waiting;
        e.wake_at = Some(until);
        e
    }

    fn entered(&self, key: &str) -> Execution {
        let mut e = self.clone();
        let visits = e.visits.entry(key.to_owned()).or_insert(0);
        *visits = visits.saturating_add(1);
        e.current_node_key = key.to_owned();
        e
    }

    /// COMPLETED at `now` (reached an end).
    pub fn completed(&self, now: DateTime<Utc>) -> Execution {
        self.ended(ExecutionState::Completed, now)
    }

    /// FAILED at `now` (a node failed after its retries); the current node stays for the
    /// record.
    pub fn failed(&self, now: DateTime<Utc>) -> Execution {
        Execution {
            state: ExecutionState::Failed,
            wake_at: None,
            ended_at: Some(now),
            ..self.clone()
        }
    }

    /// CANCELLED at `now`; an ended execution stays as it is.
    pub fn cancelled(&self, now: DateTime<Utc>) -> Result<Execution, WorkflowRule> {
        if self.state.is_ended() {
            return Err(WorkflowRule::ExecutionEnded);
        }
        Ok(self.ended(ExecutionState::Cancelled, now))
    }

    fn ended(&self, state: ExecutionState, now: DateTime<Utc>) -> Execution {
        Execution {
            state,
            current_node_key: String::new(),
            wake_at: None,
            ended_at: Some(now),
            ..self.clone()
        }
    }

    /// Held because the workflow was paused: a RUNNING execution waits without a wake time;
    /// a WAITING one keeps its wake time (it goes on at the later of that and the
    /// reactivation). Ended executions stay as they are.
    pub fn held(&self) -> Execution {
        match self.state {
            ExecutionState::Running => Execution {
                state: ExecutionState::Waiting,
                wake_at: None,
                ..self.clone()
            },
            _ => self.clone(),
        }
    }

    /// Released on reactivation at `now`: a held execution (WAITING without a wake time) is
    /// due at once.
    pub fn released(&self, now: DateTime<Utc>) -> Execution {
        match (self.state, self.wake_at) {
            (ExecutionState::Waiting, None) => Execution {
                wake_at: Some(now),
                ..self.clone()
            },
            _ => self.clone(),
        }
    }
}

/// The idempotency key of the side effect of node `node_key` on its `visit`-th entry in
/// execution `execution_id`: `workflow:<execution id>:<node key>:<visit>`, at most 122
/// characters (node keys are `[a-z0-9_]`, so the parts cannot run into each other).
pub fn idempotency_key(execution_id: Uuid, node_key: &str, visit: u32) -> String {
    format!("workflow:{execution_id}:{node_key}:{visit}")
}

/// A side effect the engine performs once, with the step's idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    SendMessage {
        message_template_id: Uuid,
    },
    AddPoints {
        points: i64,
        points_type_id: String,
        validity_days: i32,
    },
    DeductPoints {
        points: i64,
        points_type_id: String,
    },
    IssueVoucher {
        reward_id: Uuid,
    },
    AddToSegment {
        segment_id: Uuid,
    },
    RemoveFromSegment {
        segment_id: Uuid,
    },
    AssignBadge {
        badge_id: Uuid,
    },
    RemoveBadge {
        badge_id: Uuid,
    },
}

/// Which way a branching node went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// A condition held (`true`) or not.
    Condition(bool),
    /// A split drew this branch (index).
    Split(usize),
}

/// What the engine knows when it steps an execution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepFacts {
    /// The answer of the current condition node, once the engine evaluated its test.
    pub condition: Option<bool>,
    /// The partner's time zone, for waits until an hour of the day.
    pub time_zone: Tz,
}

impl Default for StepFacts {
    fn default() -> Self {
        StepFacts {
            condition: None,
            time_zone: Tz::UTC,
        }
    }
}

/// What the current node of an execution does now; see [`step`].
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Perform `action` once with `idempotency_key`, then go to `next` (`None` = end).
    Act {
        node_key: String,
        visit: u32,
        idempotency_key: String,
        action: Action,
        next: Option<String>,
    },
    /// Wait until `until`, then go to `next`; `until` is never before `now` (equal: go on at
    /// once).
    Wait {
        node_key: String,
        until: DateTime<Utc>,
        next: Option<String>,
    },
    /// Evaluate `test` for the customer and step again with `StepFacts::condition` set.
    NeedsCondition {
        node_key: String,
        test: ConditionTest,
    },
    /// A condition was answered or a split drawn: go to `next` (`None` = end).
    Branch {
        node_key: String,
        taken: Taken,
        next: Option<String>,
    },
    /// An end node (or nothing left after a final wait): the execution completes.
    End { node_key: Option<String> },
    /// WAITING and not due before `wake_at` (`None`: held while the workflow is paused).
    NotDue { wake_at: Option<DateTime<Utc>> },
    /// The execution has ended; nothing to do.
    Finished,
    /// The definition cannot go on (an unknown node, a key it lacks): the execution fails.
    Fail {
        node_key: Option<String>,
        reason: String,
    },
}

/// Decides what the current node of `exec` does at `now`, with `def` the definition of the
/// version the execution runs. Pure: the same inputs always decide the same step, so a
/// replay after a crash repeats it (and the idempotency key makes the action happen once).
pub fn step(def: &Workflow, exec: &Execution, facts: &StepFacts, now: DateTime<Utc>) -> Step {
    match exec.state {
        ExecutionState::Completed | ExecutionState::Failed | ExecutionState::Cancelled => {
            return Step::Finished;
        }
        ExecutionState::Waiting => match exec.wake_at {
            Some(at) if at <= now => {}
            wake_at => return Step::NotDue { wake_at },
        },
        ExecutionState::Running => {}
    }
    if exec.workflow_id != def.id || exec.workflow_version != def.version {
        return Step::Fail {
            node_key: None,
            reason: format!(
                "the execution runs version {} of workflow {}, not version {} of {}",
                exec.workflow_version, exec.workflow_id, def.version, def.id
            ),
        };
    }
    let key = exec.current_node_key.as_str();
    if key.is_empty() {
        return Step::End { node_key: None };
    }
    let Some(node) = def.node(key) else {
        return Step::Fail {
            node_key: Some(key.to_owned()),
            reason: format!("version {} has no node {key:?}", def.version),
        };
    };
    let node_key = key.to_owned();
    let next = target(&node.next);
    let visit = exec.visits_of(key).max(1);
    let act = |action: Action| Step::Act {
        node_key: node_key.clone(),
        visit,
        idempotency_key: idempotency_key(exec.id, key, visit),
        action,
        next: next.clone(),
    };
    match &node.kind {
        NodeKind::Wait {
            duration_seconds,
            until_hour_of_day,
            until_time,
        } => Step::Wait {
            until: wait_until(
                *duration_seconds,
                *until_hour_of_day,
                *until_time,
                facts.time_zone,
                now,
            ),
            node_key,
            next,
        },
        NodeKind::Condition {
            test,
            true_node_key,
            false_node_key,
        } => match (facts.condition, test) {
            (Some(holds), _) => Step::Branch {
                node_key,
                taken: Taken::Condition(holds),
                next: target(if holds { true_node_key } else { false_node_key }),
            },
            (None, Some(test)) => Step::NeedsCondition {
                node_key,
                test: test.clone(),
            },
            (None, None) => Step::Fail {
                node_key: Some(node_key),
                reason: "the condition has no test".into(),
            },
        },
        NodeKind::Split { branches } => match split_branch(branches, exec.id, key) {
            Some(j) => Step::Branch {
                next: target(&branches[j].next_node_key),
                node_key,
                taken: Taken::Split(j),
            },
            None => Step::Fail {
                node_key: Some(node_key),
                reason: "the split has no branches".into(),
            },
        },
        NodeKind::End => Step::End {
            node_key: Some(node_key),
        },
        NodeKind::Unknown => Step::Fail {
            node_key: Some(node_key),
            reason: "the node's type is unknown".into(),
        },
        NodeKind::SendMessage {
            message_template_id,
        } => act(Action::SendMessage {
            message_template_id: *message_template_id,
        }),
        NodeKind::AddPoints {
            points,
            points_type_id,
            validity_days,
        } => act(Action::AddPoints {
            points: *points,
            points_type_id: points_type_id.clone(),
            validity_days: *validity_days,
        }),
        NodeKind::DeductPoints {
            points,
            points_type_id,
        } => act(Action::DeductPoints {
            points: *points,
            points_type_id: points_type_id.clone(),
        }),
        NodeKind::IssueVoucher { reward_id } => act(Action::IssueVoucher {
            reward_id: *reward_id,
        }),
        NodeKind::AddToSegment { segment_id } => act(Action::AddToSegment {
            segment_id: *segment_id,
        }),
        NodeKind::RemoveFromSegment { segment_id } => act(Action::RemoveFromSegment {
            segment_id: *segment_id,
        }),
        NodeKind::AssignBadge { badge_id } => act(Action::AssignBadge {
            badge_id: *badge_id,
        }),
        NodeKind::RemoveBadge { badge_id } => act(Action::RemoveBadge {
            badge_id: *badge_id,
        }),
    }
}

/// When a wait node reached at `now` lets the execution go on (never before `now`): after
/// the duration, at the next occurrence of the hour in `tz` (see [`next_hour`]), or at the
/// given moment. The first one set counts; none set: `now`.
pub fn wait_until(
    duration_seconds: Option<i64>,
    until_hour_of_day: Option<i32>,
    until_time: Option<DateTime<Utc>>,
    tz: Tz,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    if let Some(seconds) = duration_seconds {
        return TimeDelta::try_seconds(seconds.max(0))
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
    }
    if let Some(hour) = until_hour_of_day {
        return next_hour(u32::try_from(hour.clamp(0, 23)).unwrap_or(0), tz, now);
    }
    until_time.map_or(now, |t| t.max(now))
}

/// The moment `day` at `hour`:00 in `tz`: a time skipped by a daylight-saving change is taken
/// an hour later, a time occurring twice at its first occurrence (as
/// `Campaign::next_send_time` opens its window).
fn local_at(tz: Tz, day: NaiveDate, hour: u32) -> Option<DateTime<Utc>> {
    let at = day.and_time(NaiveTime::from_hms_opt(hour.min(23), 0, 0)?);
    tz.from_local_datetime(&at)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(at + TimeDelta::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
}

/// The first `hour`:00 in `tz` strictly after `now` (strictly, so a loop through such a
/// wait always waits). On the day clocks skip that hour, an hour later.
pub fn next_hour(hour: u32, tz: Tz, now: DateTime<Utc>) -> DateTime<Utc> {
    let today = now.with_timezone(&tz).date_naive();
    today
        .iter_days()
        .take(3)
        .filter_map(|day| local_at(tz, day, hour))
        .find(|t| *t > now)
        .unwrap_or_else(|| now + TimeDelta::days(1))
}

/// The customer date's occurrence in `year`; a 29 February falls on 28 February in a common
/// year.
fn anniversary(date: NaiveDate, year: i32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(year, date.month(), date.day()).or_else(|| {
        (date.month() == 2 && date.day() == 29)
            .then(|| NaiveDate::from_ymd_opt(year, 2, 28))
            .flatten()
    })
}

/// The first run of a yearly date trigger strictly after `after`: the customer `date`'s
/// anniversary (its month and day in a year, from the date's own year on), moved by
/// `offset_days` (−365..365, so the run may fall in the year before or after), at `hour`:00
/// (0..23) in `tz`.
///
/// A 29 February date (a leap-day birthday) has its anniversary on 28 February in common
/// years, and the offset counts from that day. An hour skipped by a daylight-saving change
/// runs an hour later; an hour occurring twice runs at its first occurrence. Out-of-range
/// `offset_days` and `hour` are clamped. `DateTime::<Utc>::MAX_UTC` only for dates at the
/// end of chrono's range.
pub fn next_date_run(
    date: NaiveDate,
    offset_days: i32,
    hour: u32,
    tz: Tz,
    after: DateTime<Utc>,
) -> DateTime<Utc> {
    let offset = TimeDelta::days(i64::from(
        offset_days.clamp(-MAX_DATE_OFFSET_DAYS, MAX_DATE_OFFSET_DAYS),
    ));
    let year = after.with_timezone(&tz).year();
    let first = (year - 2).max(date.year());
    (first..=first.max(year) + 2)
        .filter_map(|y| anniversary(date, y)?.checked_add_signed(offset))
        .filter_map(|day| local_at(tz, day, hour.min(23)))
        .find(|t| *t > after)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The deterministic draw of an execution at a split node, 0..100: the first eight bytes of
/// SHA-256(execution id ‖ node key) modulo 100. A replay (or a later visit) draws the same.
pub fn split_draw(execution_id: Uuid, node_key: &str) -> u32 {
    let mut h = Sha256::new();
    h.update(execution_id.as_bytes());
    h.update(node_key.as_bytes());
    let digest = h.finalize();
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    // The remainder is below 100.
    u32::try_from(u64::from_be_bytes(head) % 100).unwrap_or(0)
}

/// The branch an execution takes at a split: the one whose cumulative share covers
/// [`split_draw`]. Shares not adding up to 100 (an invalid definition) are scaled by drawing
/// modulo their sum; `None` without branches with a positive share.
pub fn split_branch(branches: &[SplitBranch], execution_id: Uuid, node_key: &str) -> Option<usize> {
    // u64: the shares of an invalid definition may be anything up to i32::MAX each.
    let shares: Vec<u64> = branches
        .iter()
        .map(|b| u64::try_from(b.percent).unwrap_or(0))
        .collect();
    let total: u64 = shares.iter().sum();
    if total == 0 {
        return None;
    }
    let draw = u64::from(split_draw(execution_id, node_key)) % total;
    let mut cumulative = 0;
    shares.iter().position(|s| {
        cumulative += s;
        draw < cumulative
    })
}

/// What re-entry needs to know of a customer's earlier execution of the workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutionSummary {
    pub id: Uuid,
    pub state: ExecutionState,
}

impl From<&Execution> for ExecutionSummary {
    fn from(e: &Execution) -> Self {
        ExecutionSummary {
            id: e.id,
            state: e.state,
        }
    }
}

/// Whether a trigger may start a new execution for a customer whose executions of the
/// workflow (any version) are `previous`: ONCE never after any (also failed or cancelled),
/// AFTER_COMPLETION only when none is running or waiting, ALWAYS yes.
pub fn may_start(policy: ReentryPolicy, previous: &[ExecutionSummary]) -> bool {
    match policy {
        ReentryPolicy::Once => previous.is_empty(),
        ReentryPolicy::AfterCompletion => previous.iter().all(|e| e.state.is_ended()),
        ReentryPolicy::Always => true,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn node(key: &str, kind: NodeKind, next: &str) -> Node {
        Node {
            key: key.into(),
            display_name: String::new(),
            kind,
            next: next.into(),
        }
    }

    fn send(key: &str, next: &str) -> Node {
        node(
            key,
            NodeKind::SendMessage {
                message_template_id: id(1),
            },
            next,
        )
    }

    fn wait_secs(key: &str, seconds: i64, next: &str) -> Node {
        node(
            key,
            NodeKind::Wait {
                duration_seconds: Some(seconds),
                until_hour_of_day: None,
                until_time: None,
            },
            next,
        )
    }

    fn condition(key: &str, test: ConditionTest, yes: &str, no: &str) -> Node {
        node(
            key,
            NodeKind::Condition {
                test: Some(test),
                true_node_key: yes.into(),
                false_node_key: no.into(),
            },
            "",
        )
    }

    fn split(key: &str, branches: &[(i32, &str)]) -> Node {
        node(
            key,
            NodeKind::Split {
                branches: branches
                    .iter()
                    .map(|(percent, next)| SplitBranch {
                        percent: *percent,
                        next_node_key: (*next).into(),
                    })
                    .collect(),
            },
            "",
        )
    }

    fn end(key: &str) -> Node {
        node(key, NodeKind::End, "")
    }

    fn event_trigger() -> Trigger {
        Trigger::Event(EventTrigger {
            event_type_code: "app_installed".into(),
            property_filters: BTreeMap::new(),
        })
    }

    fn workflow(nodes: Vec<Node>) -> Workflow {
        Workflow {
            id: id(100),
            display_name: "Welcome".into(),
            state: WorkflowState::Draft,
            trigger: Some(event_trigger()),
            entry_node_key: nodes.first().map(|n| n.key.clone()).unwrap_or_default(),
            nodes,
            reentry_policy: ReentryPolicy::Once,
            version: 1,
            note: String::new(),
            created_at: at("2026-01-01T00:00:00Z"),
            updated_at: None,
            activated_at: None,
        }
    }

    fn violations(w: &Workflow) -> Vec<(String, String)> {
        let mut v = Violations::new();
        w.validate(&mut v);
        v.into_vec()
            .into_iter()
            .map(|f| (f.field, f.description))
            .collect()
    }

    fn fields(w: &Workflow) -> Vec<String> {
        violations(w).into_iter().map(|(f, _)| f).collect()
    }

    fn welcome() -> Workflow {
        workflow(vec![
            send("welcome", "wait_day"),
            wait_secs("wait_day", 86_400, "opened"),
            condition(
                "opened",
                ConditionTest::OpenedMessage("welcome".into()),
                "points",
                "ab",
            ),
            node(
                "points",
                NodeKind::AddPoints {
                    points: 100,
                    points_type_id: "bonus".into(),
                    validity_days: 30,
                },
                "done",
            ),
            split("ab", &[(50, "voucher"), (50, "done")]),
            node("voucher", NodeKind::IssueVoucher { reward_id: id(2) }, ""),
            end("done"),
        ])
    }

    #[test]
    fn a_collect_order_trigger_matches_its_state_and_stores() {
        let ready = Trigger::CollectOrder(CollectOrderTrigger {
            state: "ready_for_pickup".into(),
            business_unit_ids: vec!["store-12".into()],
        });
        assert!(ready.matches_collect_order("ready_for_pickup", "store-12"));
        assert!(!ready.matches_collect_order("ready_for_pickup", "store-13"));
        assert!(!ready.matches_collect_order("collected", "store-12"));
        assert!(!ready.matches_purchase(100, "EUR", None, &[]));
        let anywhere = Trigger::CollectOrder(CollectOrderTrigger {
            state: "cancelled".into(),
            business_unit_ids: vec![],
        });
        assert!(anywhere.matches_collect_order("cancelled", "any"));
        let mut v = Violations::new();
        Trigger::CollectOrder(CollectOrderTrigger {
            state: "lost".into(),
            business_unit_ids: vec![String::new()],
        })
        .validate(&mut v);
        let fields: Vec<_> = v.into_vec().into_iter().map(|f| f.field).collect();
        assert_eq!(
            fields,
            [
                "workflow.trigger.collect_order.state",
                "workflow.trigger.collect_order.business_unit_ids[0]"
            ]
        );
    }

    #[test]
    fn a_valid_workflow_passes_and_round_trips_as_json() {
        let w = welcome();
        assert_eq!(violations(&w), []);
        let json = serde_json::to_value(&w).unwrap();
        assert_eq!(json["nodes"][1]["kind"]["type"], "wait");
        assert_eq!(json["nodes"][1]["kind"]["duration_seconds"], 86_400);
        assert_eq!(json["trigger"]["event"]["event_type_code"], "app_installed");
        assert_eq!(serde_json::from_value::<Workflow>(json).unwrap(), w);
        for s in [
            WorkflowState::Draft,
            WorkflowState::Active,
            WorkflowState::Paused,
        ] {
            assert_eq!(WorkflowState::parse_str(s.as_str()), Some(s));
        }
        for p in [
            ReentryPolicy::Once,
            ReentryPolicy::AfterCompletion,
            ReentryPolicy::Always,
        ] {
            assert_eq!(ReentryPolicy::parse_str(p.as_str()), Some(p));
        }
        for s in [
            ExecutionState::Running,
            ExecutionState::Waiting,
            ExecutionState::Completed,
            ExecutionState::Failed,
            ExecutionState::Cancelled,
        ] {
            assert_eq!(ExecutionState::parse_str(s.as_str()), Some(s));
        }
        for o in [StepOutcome::Done, StepOutcome::Skipped, StepOutcome::Failed] {
            assert_eq!(StepOutcome::parse_str(o.as_str()), Some(o));
        }
        for d in [SegmentDirection::Entered, SegmentDirection::Left] {
            assert_eq!(SegmentDirection::parse_str(d.as_str()), Some(d));
        }
        for c in [ConsentChange::Granted, ConsentChange::Withdrawn] {
            assert_eq!(ConsentChange::parse_str(c.as_str()), Some(c));
        }
    }

    #[test]
    fn names_notes_and_node_counts_are_checked() {
        let mut w = welcome();
        w.display_name = "  ".into();
        w.note = "x".repeat(2_001);
        w.trigger = None;
        assert_eq!(
            fields(&w),
            ["workflow.display_name", "workflow.note", "workflow.trigger"]
        );
        w = workflow(Vec::new());
        assert_eq!(fields(&w), ["workflow.nodes", "workflow.entry_node_key"]);
        let many: Vec<Node> = (0..=MAX_NODES)
            .map(|i| {
                let next = if i < MAX_NODES {
                    format!("n{}", i + 1)
                } else {
                    String::new()
                };
                send(&format!("n{i}"), &next)
            })
            .collect();
        assert_eq!(fields(&workflow(many.clone())), ["workflow.nodes"]);
        assert_eq!(fields(&workflow(many[1..].to_vec())), Vec::<String>::new());
        let mut labelled = welcome();
        labelled.nodes[0].display_name = "x".repeat(201);
        assert_eq!(fields(&labelled), ["workflow.nodes[0].display_name"]);
    }

    #[test]
    fn node_keys_are_checked_and_unique() {
        let mut w = welcome();
        w.nodes[3].key = "Points!".into();
        w.nodes[6].key = "voucher".into();
        let found = violations(&w);
        let f: Vec<&str> = found.iter().map(|(f, _)| f.as_str()).collect();
        assert!(f.contains(&"workflow.nodes[3].key"), "{found:?}");
        assert!(f.contains(&"workflow.nodes[6].key"), "{found:?}");
        assert!(
            found
                .iter()
                .any(|(f, d)| f == "workflow.nodes[6].key" && d.contains("nodes[5]")),
            "{found:?}"
        );
        // The keys pointing to them now dangle.
        assert!(f.contains(&"workflow.nodes[2].condition.true_node_key"));
        assert!(f.contains(&"workflow.nodes[3].next_node_key"));
        assert!(!is_key(&"a".repeat(65)));
        assert!(is_key(&"a_1".repeat(21)));
    }

    #[test]
    fn dangling_keys_are_reported_under_their_field() {
        let mut w = welcome();
        w.nodes[0].next = "nowhere".into();
        w.nodes[4] = split("ab", &[(50, "voucher"), (50, "ghost")]);
        let found = violations(&w);
        assert!(found.contains(&(
            "workflow.nodes[0].next_node_key".into(),
            "names no node (\"nowhere\")".into()
        )));
        assert!(
            found
                .iter()
                .any(|(f, _)| f == "workflow.nodes[4].split.branches[1].next_node_key")
        );
        // With the first node leading nowhere, the rest is unreachable.
        assert!(
            found
                .iter()
                .any(|(f, d)| f == "workflow.nodes[1]" && d.contains("not reachable"))
        );
    }

    #[test]
    fn the_entry_key_names_a_node() {
        let mut w = welcome();
        w.entry_node_key.clear();
        assert_eq!(fields(&w), ["workflow.entry_node_key"]);
        w.entry_node_key = "start".into();
        assert_eq!(
            violations(&w),
            [(
                "workflow.entry_node_key".into(),
                "names no node (\"start\")".into()
            )]
        );
    }

    #[test]
    fn unreachable_nodes_are_reported() {
        let mut w = welcome();
        w.nodes.push(send("orphan", "done"));
        w.nodes.push(send("orphan_child", ""));
        w.nodes[7].next = "orphan_child".into();
        assert_eq!(fields(&w), ["workflow.nodes[7]", "workflow.nodes[8]"]);
        // Starting elsewhere leaves the earlier nodes unreachable.
        let mut later = welcome();
        later.entry_node_key = "opened".into();
        assert_eq!(fields(&later), ["workflow.nodes[0]", "workflow.nodes[1]"]);
    }

    #[test]
    fn a_cycle_through_a_wait_is_accepted() {
        // A weekly reminder until the customer purchases.
        let w = workflow(vec![
            send("remind", "week"),
            wait_secs("week", 7 * 86_400, "bought"),
            condition("bought", ConditionTest::InSegment(id(5)), "", "remind"),
        ]);
        assert_eq!(violations(&w), []);
        // A wait until an hour of the day breaks a cycle too, and a wait may loop on itself.
        let daily = workflow(vec![
            node(
                "nine",
                NodeKind::Wait {
                    duration_seconds: None,
                    until_hour_of_day: Some(9),
                    until_time: None,
                },
                "remind",
            ),
            send("remind", "nine"),
        ]);
        assert_eq!(violations(&daily), []);
        let self_wait = workflow(vec![wait_secs("tick", 3_600, "tick")]);
        assert_eq!(violations(&self_wait), []);
    }

    #[test]
    fn a_cycle_without_a_wait_is_refused_and_named() {
        let w = workflow(vec![
            send("remind", "bought"),
            condition("bought", ConditionTest::InSegment(id(5)), "done", "points"),
            node(
                "points",
                NodeKind::AddPoints {
                    points: 1,
                    points_type_id: String::new(),
                    validity_days: 0,
                },
                "remind",
            ),
            end("done"),
        ]);
        assert_eq!(
            violations(&w),
            [(
                "workflow.nodes".into(),
                "the cycle remind → bought → points → remind passes no wait node; add a wait \
                 for a duration or until an hour of the day (a wait until a fixed time waits \
                 only once)"
                    .into()
            )]
        );
        // A node leading to itself.
        let self_loop = workflow(vec![send("spam", "spam")]);
        assert!(violations(&self_loop)[0].1.contains("spam → spam"));
        // A wait until a fixed moment waits only once.
        let once = workflow(vec![
            send("remind", "until"),
            node(
                "until",
                NodeKind::Wait {
                    duration_seconds: None,
                    until_hour_of_day: None,
                    until_time: Some(at("2026-06-01T00:00:00Z")),
                },
                "remind",
            ),
        ]);
        assert_eq!(fields(&once), ["workflow.nodes"]);
        // Two separate cycles are both named, each once.
        let two = workflow(vec![
            split("ab", &[(50, "a1"), (50, "b1")]),
            send("a1", "a2"),
            send("a2", "a1"),
            send("b1", "b2"),
            send("b2", "b1"),
        ]);
        let found = violations(&two);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].1.contains("a1 → a2 → a1"));
        assert!(found[1].1.contains("b1 → b2 → b1"));
    }

    #[test]
    fn a_wait_has_exactly_one_bound_in_range() {
        let wait = |d: Option<i64>, h: Option<i32>, t: Option<DateTime<Utc>>| {
            workflow(vec![node(
                "w",
                NodeKind::Wait {
                    duration_seconds: d,
                    until_hour_of_day: h,
                    until_time: t,
                },
                "",
            )])
        };
        assert_eq!(fields(&wait(None, None, None)), ["workflow.nodes[0].wait"]);
        assert_eq!(
            fields(&wait(Some(60), Some(9), None)),
            ["workflow.nodes[0].wait"]
        );
        assert_eq!(
            fields(&wait(Some(59), None, None)),
            ["workflow.nodes[0].wait.duration_seconds"]
        );
        assert_eq!(
            fields(&wait(Some(MAX_WAIT_SECONDS + 1), None, None)),
            ["workflow.nodes[0].wait.duration_seconds"]
        );
        assert_eq!(fields(&wait(Some(MAX_WAIT_SECONDS), None, None)), [""; 0]);
        assert_eq!(
            fields(&wait(None, Some(24), None)),
            ["workflow.nodes[0].wait.until_hour_of_day"]
        );
        assert_eq!(fields(&wait(None, Some(0), None)), [""; 0]);
        assert_eq!(
            fields(&wait(None, None, Some(at("2020-01-01T00:00:00Z")))),
            [""; 0]
        );
    }

    #[test]
    fn points_are_checked() {
        let mut w = workflow(vec![
            node(
                "add",
                NodeKind::AddPoints {
                    points: 0,
                    points_type_id: "Not a code".into(),
                    validity_days: 3_651,
                },
                "take",
            ),
            node(
                "take",
                NodeKind::DeductPoints {
                    points: MAX_POINTS + 1,
                    points_type_id: id(7).to_string(),
                },
                "",
            ),
        ]);
        assert_eq!(
            fields(&w),
            [
                "workflow.nodes[0].add_points.points",
                "workflow.nodes[0].add_points.points_type_id",
                "workflow.nodes[0].add_points.validity_days",
                "workflow.nodes[1].deduct_points.points",
            ]
        );
        w.nodes[0].kind = NodeKind::AddPoints {
            points: MAX_POINTS,
            points_type_id: String::new(),
            validity_days: 0,
        };
        w.nodes[1].kind = NodeKind::DeductPoints {
            points: 1,
            points_type_id: "loyalty_points".into(),
        };
        assert_eq!(fields(&w), [""; 0]);
    }

    #[test]
    fn a_split_has_2_to_10_branches_adding_up_to_100() {
        let check = |branches: &[(i32, &str)]| {
            let mut nodes = vec![split("ab", branches)];
            nodes.push(end("a"));
            fields(&workflow(nodes))
        };
        assert_eq!(check(&[(30, "a"), (70, "")]), [""; 0]);
        assert_eq!(check(&[(100, "a")]), ["workflow.nodes[0].split.branches"]);
        assert_eq!(
            check(&[(30, "a"), (60, "")]),
            ["workflow.nodes[0].split.branches"]
        );
        assert_eq!(
            check(&[(0, "a"), (100, "")]),
            ["workflow.nodes[0].split.branches[0].percent"]
        );
        let eleven: Vec<(i32, &str)> = (0..11)
            .map(|i| (if i == 0 { 0 } else { 10 }, "a"))
            .collect();
        assert_eq!(
            check(&eleven),
            [
                "workflow.nodes[0].split.branches",
                "workflow.nodes[0].split.branches[0].percent"
            ]
        );
        let sum = violations(&workflow(vec![split("ab", &[(30, ""), (60, "")])]));
        assert_eq!(sum[0].1, "the percentages must add up to 100, not 90");
    }

    #[test]
    fn a_condition_has_one_test_and_opened_message_names_an_earlier_send() {
        let mut w = welcome();
        w.nodes[2] = node(
            "opened",
            NodeKind::Condition {
                test: None,
                true_node_key: "points".into(),
                false_node_key: "ab".into(),
            },
            "",
        );
        assert_eq!(fields(&w), ["workflow.nodes[2].condition.test"]);
        for (test, problem) in [
            (
                ConditionTest::OpenedMessage("points".into()),
                "is not a send_message node",
            ),
            (ConditionTest::OpenedMessage("nope".into()), "names no node"),
            (ConditionTest::OpenedMessage(String::new()), "is required"),
        ] {
            w.nodes[2] = condition("opened", test, "points", "ab");
            let found = violations(&w);
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(
                found[0].0,
                "workflow.nodes[2].condition.opened_message_node_key"
            );
            assert!(found[0].1.contains(problem), "{found:?}");
        }
        // A send node that only runs after the condition.
        let mut later = workflow(vec![
            condition(
                "opened",
                ConditionTest::OpenedMessage("mail".into()),
                "mail",
                "",
            ),
            send("mail", ""),
        ]);
        assert!(violations(&later)[0].1.contains("never runs before"));
        // In a loop, it runs before the next round's condition.
        later.nodes[1] = send("mail", "week");
        later.nodes.push(wait_secs("week", 604_800, "opened"));
        assert_eq!(violations(&later), []);
        for (test, field) in [
            (ConditionTest::InSegment(Uuid::nil()), "in_segment_id"),
            (ConditionTest::HasBadge(Uuid::nil()), "has_badge_id"),
            (
                ConditionTest::Criterion(serde_json::Value::Null),
                "criterion",
            ),
        ] {
            w.nodes[2] = condition("opened", test, "points", "ab");
            assert_eq!(fields(&w), [format!("workflow.nodes[2].condition.{field}")]);
        }
        w.nodes[2] = condition(
            "opened",
            ConditionTest::Criterion(serde_json::json!({"condition": {}})),
            "points",
            "ab",
        );
        assert_eq!(fields(&w), [""; 0]);
    }

    #[test]
    fn an_unknown_node_type_is_reported_and_read_back_as_unknown() {
        let mut w = welcome();
        w.nodes[5].kind = NodeKind::Unknown;
        assert_eq!(
            violations(&w),
            [(
                "workflow.nodes[5].kind".into(),
                "is required or unknown".into()
            )]
        );
        let stored: Node = serde_json::from_value(serde_json::json!({
            "key": "future",
            "kind": {"type": "send_carrier_pigeon", "pigeon": 3},
            "next": ""
        }))
        .unwrap();
        assert_eq!(stored.kind, NodeKind::Unknown);
    }

    #[test]
    fn condition_split_and_end_nodes_have_no_next_key() {
        let mut w = welcome();
        w.nodes[2].next = "points".into();
        w.nodes[4].next = "done".into();
        w.nodes[6].next = "welcome".into();
        assert_eq!(
            fields(&w),
            [
                "workflow.nodes[2].next_node_key",
                "workflow.nodes[4].next_node_key",
                "workflow.nodes[6].next_node_key"
            ]
        );
    }

    #[test]
    fn action_nodes_need_their_ids() {
        let w = workflow(vec![
            node(
                "a",
                NodeKind::SendMessage {
                    message_template_id: Uuid::nil(),
                },
                "b",
            ),
            node(
                "b",
                NodeKind::IssueVoucher {
                    reward_id: Uuid::nil(),
                },
                "c",
            ),
            node(
                "c",
                NodeKind::AddToSegment {
                    segment_id: Uuid::nil(),
                },
                "d",
            ),
            node(
                "d",
                NodeKind::RemoveFromSegment {
                    segment_id: Uuid::nil(),
                },
                "e",
            ),
            node(
                "e",
                NodeKind::AssignBadge {
                    badge_id: Uuid::nil(),
                },
                "f",
            ),
            node(
                "f",
                NodeKind::RemoveBadge {
                    badge_id: Uuid::nil(),
                },
                "",
            ),
        ]);
        assert_eq!(
            fields(&w),
            [
                "workflow.nodes[0].send_message.message_template_id",
                "workflow.nodes[1].issue_voucher.reward_id",
                "workflow.nodes[2].add_to_segment.segment_id",
                "workflow.nodes[3].remove_from_segment.segment_id",
                "workflow.nodes[4].assign_badge.badge_id",
                "workflow.nodes[5].remove_badge.badge_id",
            ]
        );
    }

    fn trigger_fields(t: Trigger) -> Vec<String> {
        let mut w = welcome();
        w.trigger = Some(t);
        fields(&w)
    }

    #[test]
    fn triggers_are_checked() {
        let mut filters = BTreeMap::from([("Store".to_owned(), "x".to_owned())]);
        assert_eq!(
            trigger_fields(Trigger::Event(EventTrigger {
                event_type_code: String::new(),
                property_filters: filters.clone(),
            })),
            [
                "workflow.trigger.event.event_type_code",
                "workflow.trigger.event.property_filters"
            ]
        );
        filters = BTreeMap::from([("store".to_owned(), "x".repeat(1_025))]);
        assert_eq!(
            trigger_fields(Trigger::Event(EventTrigger {
                event_type_code: "Bad-Code".into(),
                property_filters: filters,
            })),
            [
                "workflow.trigger.event.event_type_code",
                "workflow.trigger.event.property_filters"
            ]
        );
        assert_eq!(
            trigger_fields(Trigger::Segment(SegmentTrigger {
                segment_id: Uuid::nil(),
                direction: None,
            })),
            [
                "workflow.trigger.segment.segment_id",
                "workflow.trigger.segment.direction"
            ]
        );
        let purchase = |min: i64, currency: &str| {
            trigger_fields(Trigger::Purchase(PurchaseTrigger {
                minimum_amount_minor: min,
                currency_code: currency.into(),
                business_unit_ids: Vec::new(),
                product_codes: Vec::new(),
            }))
        };
        assert_eq!(purchase(0, ""), [""; 0]);
        assert_eq!(purchase(10_000, "CZK"), [""; 0]);
        assert_eq!(
            purchase(10_000, ""),
            ["workflow.trigger.purchase.currency_code"]
        );
        assert_eq!(
            purchase(10_000, "czk"),
            ["workflow.trigger.purchase.currency_code"]
        );
        assert_eq!(
            purchase(-1, ""),
            ["workflow.trigger.purchase.minimum_amount_minor"]
        );
        assert_eq!(
            trigger_fields(Trigger::Purchase(PurchaseTrigger {
                minimum_amount_minor: 0,
                currency_code: String::new(),
                business_unit_ids: vec![Uuid::nil()],
                product_codes: vec![" ".into()],
            })),
            [
                "workflow.trigger.purchase.business_unit_ids",
                "workflow.trigger.purchase.product_codes"
            ]
        );
        let date = |run: Option<&str>, field: &str, offset: i32, hour: i32| {
            trigger_fields(Trigger::Date(DateTrigger {
                run_time: run.map(at),
                customer_date_field: field.into(),
                offset_days: offset,
                hour_of_day: hour,
                criterion: None,
            }))
        };
        assert_eq!(date(None, "customer.birth_date", -7, 9), [""; 0]);
        assert_eq!(
            date(None, "customer.properties.anniversary", 365, 0),
            [""; 0]
        );
        assert_eq!(date(Some("2026-12-24T08:00:00Z"), "", 0, 0), [""; 0]);
        assert_eq!(date(None, "", 0, 9), ["workflow.trigger.date"]);
        assert_eq!(
            date(Some("2026-12-24T08:00:00Z"), "customer.birth_date", 0, 9),
            ["workflow.trigger.date"]
        );
        assert_eq!(
            date(None, "customer.city", 0, 9),
            ["workflow.trigger.date.customer_date_field"]
        );
        assert_eq!(
            date(None, "customer.properties.Bad Key", 0, 9),
            ["workflow.trigger.date.customer_date_field"]
        );
        assert_eq!(
            date(None, "customer.birth_date", -366, 24),
            [
                "workflow.trigger.date.offset_days",
                "workflow.trigger.date.hour_of_day"
            ]
        );
        assert_eq!(
            date(Some("2026-12-24T08:00:00Z"), "", 3, 0),
            ["workflow.trigger.date.offset_days"]
        );
        assert_eq!(
            trigger_fields(Trigger::Consent(ConsentTrigger {
                consent_type_code: String::new(),
                change: None,
            })),
            [
                "workflow.trigger.consent.consent_type_code",
                "workflow.trigger.consent.change"
            ]
        );
        assert_eq!(
            CustomerDateField::parse_str("customer.properties.wedding_day"),
            Some(CustomerDateField::Property("wedding_day".into()))
        );
        assert_eq!(
            CustomerDateField::BirthDate.path(),
            "customer.birth_date".to_owned()
        );
    }

    #[test]
    fn states_move_draft_to_active_and_paused_and_back() {
        let now = at("2026-03-01T10:00:00Z");
        let draft = welcome();
        assert_eq!(draft.paused(now), Err(WorkflowRule::NotActive));
        assert!(draft.check_editable(&["nodes"]).is_ok());
        assert!(draft.check_deletable(0).is_ok());
        let active = draft.activated(now).unwrap();
        assert_eq!(
            (active.state, active.activated_at, active.version),
            (WorkflowState::Active, Some(now), 1)
        );
        assert_eq!(active.activated(now), Err(WorkflowRule::Active));
        assert_eq!(active.check_editable(&["nodes"]), Err(WorkflowRule::Active));
        assert!(active.check_editable(&["display_name", "note"]).is_ok());
        assert_eq!(active.check_deletable(0), Err(WorkflowRule::Active));
        let paused = active.paused(now).unwrap();
        assert_eq!(paused.state, WorkflowState::Paused);
        assert_eq!(paused.paused(now), Err(WorkflowRule::NotActive));
        assert!(paused.check_editable(&["trigger"]).is_ok());
        assert_eq!(
            paused.check_deletable(3),
            Err(WorkflowRule::ExecutionsRunning)
        );
        assert_eq!(paused.activated(now).unwrap().state, WorkflowState::Active);
        let mut empty = welcome();
        empty.trigger = None;
        assert_eq!(
            empty.activated(now),
            Err(WorkflowRule::Incomplete("trigger"))
        );
        assert_eq!(WorkflowRule::Active.reason(), "WORKFLOW_ACTIVE");
        assert_eq!(WorkflowRule::NotActive.reason(), "WORKFLOW_NOT_ACTIVE");
        assert_eq!(
            WorkflowRule::Incomplete("trigger").message(),
            "activating needs trigger"
        );
        assert_eq!(WorkflowRule::ExecutionEnded.reason(), "EXECUTION_ENDED");
    }

    #[test]
    fn an_update_changes_the_masked_fields_and_bumps_the_version() {
        let now = at("2026-03-01T10:00:00Z");
        let draft = welcome();
        let mut changes = welcome();
        changes.display_name = "Welcome v2".into();
        changes.nodes.truncate(1);
        changes.nodes[0].next.clear();
        changes.note = "shorter".into();
        let updated = draft.updated(&changes, &["nodes", "note"], now).unwrap();
        assert_eq!(updated.version, 2);
        assert_eq!(updated.etag(), "v2");
        assert_eq!(updated.updated_at, Some(now));
        assert_eq!(updated.nodes.len(), 1);
        assert_eq!(updated.note, "shorter");
        assert_eq!(updated.display_name, "Welcome");
        let active = draft.activated(now).unwrap();
        assert_eq!(
            active.updated(&changes, &["nodes"], now),
            Err(WorkflowRule::Active)
        );
        let renamed = active.updated(&changes, &["display_name"], now).unwrap();
        assert_eq!(
            (
                renamed.display_name.as_str(),
                renamed.version,
                renamed.state
            ),
            ("Welcome v2", 2, WorkflowState::Active)
        );
        let paused = active.paused(now).unwrap();
        assert_eq!(
            paused.updated(&changes, &["nodes"], now).unwrap().version,
            2
        );
    }

    fn started(w: &Workflow) -> Execution {
        Execution::start(
            id(42),
            w,
            id(7),
            Some(id(8)),
            BTreeMap::from([("store".into(), "praha_1".into())]),
            at("2026-03-01T10:00:00Z"),
        )
    }

    fn facts() -> StepFacts {
        StepFacts::default()
    }

    #[test]
    fn every_action_node_asks_for_its_side_effect_once() {
        let kinds = [
            (
                NodeKind::SendMessage {
                    message_template_id: id(1),
                },
                Action::SendMessage {
                    message_template_id: id(1),
                },
            ),
            (
                NodeKind::AddPoints {
                    points: 50,
                    points_type_id: "bonus".into(),
                    validity_days: 30,
                },
                Action::AddPoints {
                    points: 50,
                    points_type_id: "bonus".into(),
                    validity_days: 30,
                },
            ),
            (
                NodeKind::DeductPoints {
                    points: 20,
                    points_type_id: String::new(),
                },
                Action::DeductPoints {
                    points: 20,
                    points_type_id: String::new(),
                },
            ),
            (
                NodeKind::IssueVoucher { reward_id: id(2) },
                Action::IssueVoucher { reward_id: id(2) },
            ),
            (
                NodeKind::AddToSegment { segment_id: id(3) },
                Action::AddToSegment { segment_id: id(3) },
            ),
            (
                NodeKind::RemoveFromSegment { segment_id: id(3) },
                Action::RemoveFromSegment { segment_id: id(3) },
            ),
            (
                NodeKind::AssignBadge { badge_id: id(4) },
                Action::AssignBadge { badge_id: id(4) },
            ),
            (
                NodeKind::RemoveBadge { badge_id: id(4) },
                Action::RemoveBadge { badge_id: id(4) },
            ),
        ];
        let now = at("2026-03-01T10:00:00Z");
        for (kind, action) in kinds {
            let w = workflow(vec![node("act", kind, "done"), end("done")]);
            assert_eq!(violations(&w), []);
            let e = started(&w);
            let s = step(&w, &e, &facts(), now);
            let expected_key = format!("workflow:{}:act:1", id(42));
            assert_eq!(
                s,
                Step::Act {
                    node_key: "act".into(),
                    visit: 1,
                    idempotency_key: expected_key,
                    action,
                    next: Some("done".into()),
                }
            );
            // A replay decides the same.
            assert_eq!(step(&w, &e, &facts(), now), s);
            let e = e.after(&s, now);
            assert_eq!(
                (e.state, e.current_node_key.as_str(), e.visits_of("done")),
                (ExecutionState::Running, "done", 1)
            );
            let s = step(&w, &e, &facts(), now);
            assert_eq!(
                s,
                Step::End {
                    node_key: Some("done".into())
                }
            );
            let e = e.after(&s, now);
            assert_eq!(
                (e.state, e.ended_at, e.current_node_key.as_str()),
                (ExecutionState::Completed, Some(now), "")
            );
            assert_eq!(step(&w, &e, &facts(), now), Step::Finished);
        }
    }

    #[test]
    fn a_wait_sleeps_for_its_duration_or_until_its_time() {
        let now = at("2026-03-01T10:00:00Z");
        let w = workflow(vec![wait_secs("day", 86_400, "mail"), send("mail", "")]);
        let e = started(&w);
        let s = step(&w, &e, &facts(), now);
        assert_eq!(
            s,
            Step::Wait {
                node_key: "day".into(),
                until: at("2026-03-02T10:00:00Z"),
                next: Some("mail".into()),
            }
        );
        let waiting = e.after(&s, now);
        assert_eq!(waiting.state, ExecutionState::Waiting);
        assert_eq!(waiting.wake_at, Some(at("2026-03-02T10:00:00Z")));
        assert_eq!(waiting.current_node_key, "mail");
        assert_eq!(
            step(&w, &waiting, &facts(), at("2026-03-02T09:59:59Z")),
            Step::NotDue {
                wake_at: Some(at("2026-03-02T10:00:00Z"))
            }
        );
        let woke = step(&w, &waiting, &facts(), at("2026-03-02T10:00:01Z"));
        assert!(matches!(woke, Step::Act { ref node_key, .. } if node_key == "mail"));
        let done = waiting.after(&woke, at("2026-03-02T10:00:01Z"));
        assert_eq!(done.state, ExecutionState::Completed);

        // Until a moment: in the future it waits; already past it goes on at once.
        let until = |t: &str| {
            workflow(vec![
                node(
                    "until",
                    NodeKind::Wait {
                        duration_seconds: None,
                        until_hour_of_day: None,
                        until_time: Some(at(t)),
                    },
                    "mail",
                ),
                send("mail", ""),
            ])
        };
        let later = until("2026-12-24T08:00:00Z");
        let s = step(&later, &started(&later), &facts(), now);
        assert!(matches!(s, Step::Wait { until, .. } if until == at("2026-12-24T08:00:00Z")));
        let past = until("2026-01-01T00:00:00Z");
        let s = step(&past, &started(&past), &facts(), now);
        assert!(matches!(s, Step::Wait { until, .. } if until == now));
        let moved = started(&past).after(&s, now);
        assert_eq!(
            (moved.state, moved.current_node_key.as_str()),
            (ExecutionState::Running, "mail")
        );
        // A final wait completes the execution when it wakes.
        let cool_down = workflow(vec![send("mail", "cool"), wait_secs("cool", 3_600, "")]);
        let e = started(&cool_down);
        let e = e.after(&step(&cool_down, &e, &facts(), now), now);
        let e = e.after(&step(&cool_down, &e, &facts(), now), now);
        assert_eq!(
            (e.state, e.current_node_key.as_str()),
            (ExecutionState::Waiting, "")
        );
        let wake = at("2026-03-01T11:00:00Z");
        assert_eq!(
            step(&cool_down, &e, &facts(), wake),
            Step::End { node_key: None }
        );
    }

    #[test]
    fn a_wait_until_an_hour_crosses_daylight_saving_in_prague() {
        let prague: Tz = "Europe/Prague".parse().unwrap();
        // Saturday 11:00 CET; 09:00 on Sunday is already summer time (UTC+2).
        assert_eq!(
            next_hour(9, prague, at("2026-03-28T10:00:00Z")),
            at("2026-03-29T07:00:00Z")
        );
        // Before 09:00 the same day, and strictly after: at 09:00 sharp, the next day.
        assert_eq!(
            next_hour(9, prague, at("2026-03-28T07:30:00Z")),
            at("2026-03-28T08:00:00Z")
        );
        assert_eq!(
            next_hour(9, prague, at("2026-03-28T08:00:00Z")),
            at("2026-03-29T07:00:00Z")
        );
        // 02:00 does not exist on 29 March: an hour later, 03:00 CEST.
        assert_eq!(
            next_hour(2, prague, at("2026-03-28T12:00:00Z")),
            at("2026-03-29T01:00:00Z")
        );
        // 02:00 happens twice on 25 October: the first, still summer time.
        assert_eq!(
            next_hour(2, prague, at("2026-10-24T12:00:00Z")),
            at("2026-10-25T00:00:00Z")
        );
        // Back to winter time: 09:00 CET = 08:00 UTC.
        assert_eq!(
            next_hour(9, prague, at("2026-10-24T12:00:00Z")),
            at("2026-10-25T08:00:00Z")
        );
        // Through a node, with the partner's zone in the facts.
        let w = workflow(vec![node(
            "nine",
            NodeKind::Wait {
                duration_seconds: None,
                until_hour_of_day: Some(9),
                until_time: None,
            },
            "",
        )]);
        let f = StepFacts {
            condition: None,
            time_zone: prague,
        };
        assert!(matches!(
            step(&w, &started(&w), &f, at("2026-03-28T10:00:00Z")),
            Step::Wait { until, next: None, .. } if until == at("2026-03-29T07:00:00Z")
        ));
    }

    #[test]
    fn a_condition_asks_for_its_answer_then_branches() {
        let now = at("2026-03-01T10:00:00Z");
        let w = workflow(vec![
            condition("vip", ConditionTest::HasBadge(id(9)), "gift", ""),
            node("gift", NodeKind::IssueVoucher { reward_id: id(2) }, ""),
        ]);
        let e = started(&w);
        let ask = step(&w, &e, &facts(), now);
        assert_eq!(
            ask,
            Step::NeedsCondition {
                node_key: "vip".into(),
                test: ConditionTest::HasBadge(id(9)),
            }
        );
        assert_eq!(e.after(&ask, now), e);
        let yes = step(
            &w,
            &e,
            &StepFacts {
                condition: Some(true),
                ..facts()
            },
            now,
        );
        assert_eq!(
            yes,
            Step::Branch {
                node_key: "vip".into(),
                taken: Taken::Condition(true),
                next: Some("gift".into()),
            }
        );
        assert_eq!(e.after(&yes, now).current_node_key, "gift");
        let no = step(
            &w,
            &e,
            &StepFacts {
                condition: Some(false),
                ..facts()
            },
            now,
        );
        assert_eq!(
            no,
            Step::Branch {
                node_key: "vip".into(),
                taken: Taken::Condition(false),
                next: None,
            }
        );
        assert_eq!(e.after(&no, now).state, ExecutionState::Completed);
    }

    #[test]
    fn a_split_draws_the_same_branch_on_replay_and_by_the_shares() {
        let now = at("2026-03-01T10:00:00Z");
        let branches: Vec<SplitBranch> = [(20, "a"), (30, "b"), (50, "c")]
            .iter()
            .map(|(p, k)| SplitBranch {
                percent: *p,
                next_node_key: (*k).into(),
            })
            .collect();
        let mut counts = [0u32; 3];
        for i in 0..10_000u128 {
            let exec = Uuid::from_u128(i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835));
            let j = split_branch(&branches, exec, "ab").unwrap();
            assert_eq!(split_branch(&branches, exec, "ab"), Some(j));
            counts[j] += 1;
        }
        for (count, want) in counts.iter().zip([2_000, 3_000, 5_000]) {
            assert!(count.abs_diff(want) < 200, "{counts:?}");
        }
        // Through a node.
        let w = workflow(vec![
            split("ab", &[(20, "a"), (30, "b"), (50, "")]),
            send("a", ""),
            send("b", ""),
        ]);
        let e = started(&w);
        let s = step(&w, &e, &facts(), now);
        let Step::Branch {
            taken: Taken::Split(j),
            ref next,
            ..
        } = s
        else {
            panic!("{s:?}");
        };
        assert_eq!(next.as_deref(), [Some("a"), Some("b"), None][j]);
        assert_eq!(step(&w, &e, &facts(), now), s);
        assert!(split_branch(&[], id(1), "ab").is_none());
        // Shares of an invalid definition neither overflow nor panic.
        let huge: Vec<SplitBranch> = (0..3)
            .map(|_| SplitBranch {
                percent: i32::MAX,
                next_node_key: String::new(),
            })
            .collect();
        assert!(split_branch(&huge, id(1), "ab").is_some());
    }

    #[test]
    fn a_loop_counts_visits_so_each_round_acts_anew() {
        let now = at("2026-03-01T10:00:00Z");
        let w = workflow(vec![
            send("remind", "week"),
            wait_secs("week", 604_800, "bought"),
            condition("bought", ConditionTest::InSegment(id(5)), "", "remind"),
        ]);
        let mut e = started(&w);
        let mut t = now;
        let mut keys = Vec::new();
        for round in 1..=3u32 {
            let s = step(&w, &e, &facts(), t);
            let Step::Act {
                ref idempotency_key,
                visit,
                ..
            } = s
            else {
                panic!("{s:?}");
            };
            assert_eq!(visit, round);
            keys.push(idempotency_key.clone());
            assert_eq!(e.action_key("remind").as_ref(), Some(idempotency_key));
            e = e.after(&s, t);
            let s = step(&w, &e, &facts(), t);
            e = e.after(&s, t);
            assert_eq!(e.state, ExecutionState::Waiting);
            t = e.wake_at.unwrap();
            let no = StepFacts {
                condition: Some(false),
                ..facts()
            };
            let s = step(&w, &e, &no, t);
            e = e.after(&s, t);
        }
        assert_eq!(
            keys,
            [1, 2, 3].map(|visit| idempotency_key(id(42), "remind", visit))
        );
        assert_eq!(e.visits_of("remind"), 4);
        assert_eq!(e.visits_of("week"), 3);
        assert_eq!(t, at("2026-03-22T10:00:00Z"));
        assert!(idempotency_key(id(42), &"k".repeat(64), u32::MAX).len() <= 128);
    }

    #[test]
    fn broken_or_finished_executions_do_nothing_or_fail() {
        let now = at("2026-03-01T10:00:00Z");
        let w = welcome();
        let mut e = started(&w);
        e.current_node_key = "gone".into();
        let s = step(&w, &e, &facts(), now);
        assert!(matches!(s, Step::Fail { node_key: Some(ref k), .. } if k == "gone"));
        let failed = e.after(&s, now);
        assert_eq!(
            (
                failed.state,
                failed.ended_at,
                failed.current_node_key.as_str()
            ),
            (ExecutionState::Failed, Some(now), "gone")
        );
        assert_eq!(failed.cancelled(now), Err(WorkflowRule::ExecutionEnded));
        // Another version's definition.
        let mut v2 = w.clone();
        v2.version = 2;
        assert!(matches!(
            step(&v2, &started(&w), &facts(), now),
            Step::Fail { node_key: None, .. }
        ));
        // An unknown node fails the execution.
        let mut unknown = w.clone();
        unknown.nodes[0].kind = NodeKind::Unknown;
        assert!(matches!(
            step(&unknown, &started(&unknown), &facts(), now),
            Step::Fail { .. }
        ));
        let cancelled = started(&w).cancelled(now).unwrap();
        assert_eq!(cancelled.state, ExecutionState::Cancelled);
        assert_eq!(step(&w, &cancelled, &facts(), now), Step::Finished);
    }

    #[test]
    fn a_paused_workflow_holds_its_executions_until_released() {
        let now = at("2026-03-01T10:00:00Z");
        let w = welcome();
        let held = started(&w).held();
        assert_eq!((held.state, held.wake_at), (ExecutionState::Waiting, None));
        assert_eq!(
            step(&w, &held, &facts(), now),
            Step::NotDue { wake_at: None }
        );
        let released = held.released(now);
        assert_eq!(released.wake_at, Some(now));
        assert!(matches!(
            step(&w, &released, &facts(), now),
            Step::Act { .. }
        ));
        // A waiting execution keeps its wake time.
        let waiting = started(&w).waiting(Some("opened"), at("2026-03-05T00:00:00Z"));
        assert_eq!(waiting.held(), waiting);
        assert_eq!(waiting.released(now), waiting);
    }

    #[test]
    fn birthdays_run_yearly_with_offsets_and_leap_days() {
        let prague: Tz = "Europe/Prague".parse().unwrap();
        let birthday = NaiveDate::from_ymd_opt(1990, 5, 15).unwrap();
        let jan = at("2026-01-01T00:00:00Z");
        // 09:00 in Prague in May is 07:00 UTC.
        assert_eq!(
            next_date_run(birthday, 0, 9, prague, jan),
            at("2026-05-15T07:00:00Z")
        );
        assert_eq!(
            next_date_run(birthday, -7, 9, prague, jan),
            at("2026-05-08T07:00:00Z")
        );
        // Once this year's ran, next year's.
        assert_eq!(
            next_date_run(birthday, 0, 9, prague, at("2026-05-15T07:00:00Z")),
            at("2027-05-15T07:00:00Z")
        );
        // An offset moving the run into the previous year: 7 days before 3 January.
        let january = NaiveDate::from_ymd_opt(1985, 1, 3).unwrap();
        assert_eq!(
            next_date_run(january, -7, 10, prague, at("2026-06-01T00:00:00Z")),
            at("2026-12-27T09:00:00Z")
        );
        // And into the next: 30 days after 20 December.
        let december = NaiveDate::from_ymd_opt(1985, 12, 20).unwrap();
        assert_eq!(
            next_date_run(december, 30, 0, Tz::UTC, at("2026-01-01T00:00:00Z")),
            at("2026-01-19T00:00:00Z")
        );
        // A leap-day birthday: 28 February in common years, 29 February in leap years.
        let leap = NaiveDate::from_ymd_opt(1992, 2, 29).unwrap();
        assert_eq!(
            next_date_run(leap, 0, 9, prague, jan),
            at("2026-02-28T08:00:00Z")
        );
        assert_eq!(
            next_date_run(leap, 0, 9, prague, at("2027-03-01T00:00:00Z")),
            at("2028-02-29T08:00:00Z")
        );
        // The offset counts from 28 February: a day after is 1 March.
        assert_eq!(
            next_date_run(leap, 1, 9, prague, jan),
            at("2026-03-01T08:00:00Z")
        );
        // A date in the future runs from its own year on.
        let wedding = NaiveDate::from_ymd_opt(2028, 6, 1).unwrap();
        assert_eq!(
            next_date_run(wedding, -30, 9, Tz::UTC, jan),
            at("2028-05-02T09:00:00Z")
        );
        let trigger = DateTrigger {
            run_time: None,
            customer_date_field: "customer.birth_date".into(),
            offset_days: -7,
            hour_of_day: 9,
            criterion: None,
        };
        assert_eq!(trigger.date_field(), Some(CustomerDateField::BirthDate));
        assert_eq!(
            trigger.next_run_for(birthday, prague, jan),
            at("2026-05-08T07:00:00Z")
        );
    }

    #[test]
    fn re_entry_follows_the_policy() {
        let summary = |state| ExecutionSummary { id: id(1), state };
        let none: [ExecutionSummary; 0] = [];
        let ended = [
            summary(ExecutionState::Completed),
            summary(ExecutionState::Cancelled),
        ];
        let live = [
            summary(ExecutionState::Completed),
            summary(ExecutionState::Waiting),
        ];
        assert!(may_start(ReentryPolicy::Once, &none));
        assert!(!may_start(ReentryPolicy::Once, &ended));
        assert!(!may_start(
            ReentryPolicy::Once,
            &[summary(ExecutionState::Failed)]
        ));
        assert!(may_start(ReentryPolicy::AfterCompletion, &none));
        assert!(may_start(ReentryPolicy::AfterCompletion, &ended));
        assert!(!may_start(ReentryPolicy::AfterCompletion, &live));
        assert!(!may_start(
            ReentryPolicy::AfterCompletion,
            &[summary(ExecutionState::Running)]
        ));
        assert!(may_start(ReentryPolicy::Always, &live));
        let e = started(&welcome());
        assert_eq!(
            ExecutionSummary::from(&e),
            ExecutionSummary {
                id: id(42),
                state: ExecutionState::Running
            }
        );
    }

    #[test]
    fn triggers_match_their_events() {
        let props = BTreeMap::from([
            ("store".to_owned(), "Praha_1".to_owned()),
            ("os".to_owned(), "ios".to_owned()),
        ]);
        let event = Trigger::Event(EventTrigger {
            event_type_code: "app_installed".into(),
            property_filters: BTreeMap::from([("store".to_owned(), "praha_1".to_owned())]),
        });
        assert!(event.matches_event("app_installed", &props));
        assert!(!event.matches_event("app_removed", &props));
        assert!(!event.matches_event("app_installed", &BTreeMap::new()));
        assert!(!event.matches_purchase(0, "CZK", None, &[]));
        assert_eq!(event.kind(), "event");

        let segment = Trigger::Segment(SegmentTrigger {
            segment_id: id(5),
            direction: Some(SegmentDirection::Left),
        });
        assert!(segment.matches_segment(id(5), false));
        assert!(!segment.matches_segment(id(5), true));
        assert!(!segment.matches_segment(id(6), false));

        let purchase = Trigger::Purchase(PurchaseTrigger {
            minimum_amount_minor: 50_000,
            currency_code: "CZK".into(),
            business_unit_ids: vec![id(11)],
            product_codes: vec!["coffee".into()],
        });
        let coffee = ["milk".to_owned(), "coffee".to_owned()];
        assert!(purchase.matches_purchase(50_000, "CZK", Some(id(11)), &coffee));
        assert!(!purchase.matches_purchase(49_999, "CZK", Some(id(11)), &coffee));
        assert!(!purchase.matches_purchase(50_000, "EUR", Some(id(11)), &coffee));
        assert!(!purchase.matches_purchase(50_000, "CZK", Some(id(12)), &coffee));
        assert!(!purchase.matches_purchase(50_000, "CZK", None, &coffee));
        assert!(!purchase.matches_purchase(50_000, "CZK", Some(id(11)), &coffee[..1]));
        let any = Trigger::Purchase(PurchaseTrigger {
            minimum_amount_minor: 0,
            currency_code: String::new(),
            business_unit_ids: Vec::new(),
            product_codes: Vec::new(),
        });
        assert!(any.matches_purchase(1, "EUR", None, &[]));

        let consent = Trigger::Consent(ConsentTrigger {
            consent_type_code: "newsletter".into(),
            change: Some(ConsentChange::Granted),
        });
        assert!(consent.matches_consent("newsletter", true));
        assert!(!consent.matches_consent("newsletter", false));
        assert!(!consent.matches_consent("sms", true));
    }

    // ---- property tests ----

    #[derive(Debug, Clone)]
    enum Shape {
        Action,
        Wait,
        Condition,
        Split(usize),
        End,
    }

    fn shape() -> impl Strategy<Value = Shape> {
        prop_oneof![
            3 => Just(Shape::Action),
            2 => Just(Shape::Wait),
            2 => Just(Shape::Condition),
            1 => (2usize..4).prop_map(Shape::Split),
            1 => Just(Shape::End),
        ]
    }

    /// A graph whose only backward edges leave waits, so every cycle passes one; nodes not
    /// reachable from the first are dropped, so it is valid.
    fn valid_graph(shapes: &[(Shape, Vec<u16>)]) -> Workflow {
        let n = shapes.len();
        let key = |i: usize| format!("n{i}");
        // A forward target of node i (or the end).
        let forward = |i: usize, r: u16| {
            let options = n - i; // i+1..n-1 and the end
            match usize::from(r) % options {
                0 => String::new(),
                k => key(i + k),
            }
        };
        let mut nodes = Vec::new();
        for (i, (shape, r)) in shapes.iter().enumerate() {
            let r = |j: usize| r.get(j).copied().unwrap_or(0);
            nodes.push(match shape {
                Shape::Action => node(
                    &key(i),
                    NodeKind::AddPoints {
                        points: 10,
                        points_type_id: String::new(),
                        validity_days: 0,
                    },
                    &forward(i, r(0)),
                ),
                Shape::Wait => {
                    // Anywhere, itself included, or the end.
                    let t = usize::from(r(0)) % (n + 1);
                    wait_secs(&key(i), 3_600, &if t == n { String::new() } else { key(t) })
                }
                Shape::Condition => condition(
                    &key(i),
                    ConditionTest::InSegment(id(5)),
                    &forward(i, r(0)),
                    &forward(i, r(1)),
                ),
                Shape::Split(k) => {
                    let share = 100 / *k as i32;
                    let targets: Vec<(i32, String)> = (0..*k)
                        .map(|j| {
                            let p = if j == 0 {
                                100 - share * (*k as i32 - 1)
                            } else {
                                share
                            };
                            (p, forward(i, r(j)))
                        })
                        .collect();
                    let refs: Vec<(i32, &str)> =
                        targets.iter().map(|(p, t)| (*p, t.as_str())).collect();
                    split(&key(i), &refs)
                }
                Shape::End => end(&key(i)),
            });
        }
        let index: HashMap<String, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.key.clone(), i))
            .collect();
        let succ: Vec<Vec<usize>> = nodes
            .iter()
            .map(|n| {
                n.exits()
                    .iter()
                    .filter_map(|(_, k)| index.get(*k).copied())
                    .collect()
            })
            .collect();
        let reached = reachable(&succ, &[0], |_| true);
        let kept = nodes
            .into_iter()
            .zip(reached)
            .filter_map(|(n, r)| r.then_some(n))
            .collect();
        workflow(kept)
    }

    fn any_key() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-c]",
            Just(String::new()),
            Just("Bad-Key".to_owned()),
            "[a-z_]{60,70}",
        ]
    }

    fn any_kind() -> impl Strategy<Value = NodeKind> {
        prop_oneof![
            (
                proptest::option::of(-10i64..100_000_000),
                proptest::option::of(-2i32..30),
                proptest::option::of(Just(DateTime::<Utc>::UNIX_EPOCH)),
            )
                .prop_map(|(d, h, t)| NodeKind::Wait {
                    duration_seconds: d,
                    until_hour_of_day: h,
                    until_time: t,
                }),
            (any_key(), any_key(), any_key(), any::<bool>()).prop_map(|(t, f, m, opened)| {
                NodeKind::Condition {
                    test: Some(if opened {
                        ConditionTest::OpenedMessage(m)
                    } else {
                        ConditionTest::InSegment(id(1))
                    }),
                    true_node_key: t,
                    false_node_key: f,
                }
            }),
            Just(NodeKind::SendMessage {
                message_template_id: id(1)
            }),
            (any::<i64>(), any::<i32>()).prop_map(|(points, validity_days)| {
                NodeKind::AddPoints {
                    points,
                    points_type_id: String::new(),
                    validity_days,
                }
            }),
            proptest::collection::vec((any::<i32>(), any_key()), 0..12).prop_map(|bs| {
                NodeKind::Split {
                    branches: bs
                        .into_iter()
                        .map(|(percent, next_node_key)| SplitBranch {
                            percent,
                            next_node_key,
                        })
                        .collect(),
                }
            }),
            Just(NodeKind::End),
            Just(NodeKind::Unknown),
        ]
    }

    proptest! {
        #[test]
        fn validate_never_panics_on_random_graphs(
            nodes in proptest::collection::vec((any_key(), any_kind(), any_key()), 0..40),
            entry in any_key(),
        ) {
            let mut w = workflow(
                nodes.into_iter().map(|(k, kind, next)| node(&k, kind, &next)).collect(),
            );
            w.entry_node_key = entry;
            let mut v = Violations::new();
            w.validate(&mut v);
            // And stepping any node of it never panics either.
            let now = at("2026-03-01T10:00:00Z");
            for n in &w.nodes {
                let mut e = started(&w);
                e.current_node_key.clone_from(&n.key);
                let s = step(&w, &e, &facts(), now);
                let _ = e.after(&s, now);
            }
        }

        #[test]
        fn a_valid_graph_reaches_a_wait_or_the_end_within_its_node_count(
            shapes in proptest::collection::vec(
                (shape(), proptest::collection::vec(any::<u16>(), 4)),
                1..30,
            ),
            answers in proptest::collection::vec(any::<bool>(), 1..50),
            exec_seed in any::<u128>(),
        ) {
            let w = valid_graph(&shapes);
            prop_assert_eq!(violations(&w), vec![]);
            let mut e = started(&w);
            e.id = Uuid::from_u128(exec_seed);
            let mut now = at("2026-03-01T10:00:00Z");
            let mut answer = answers.iter().cycle();
            let mut keys = HashSet::new();
            // Several stretches between waits.
            'stretches: for _ in 0..4 {
                let mut steps = 0;
                loop {
                    let mut s = step(&w, &e, &facts(), now);
                    if let Step::NeedsCondition { .. } = s {
                        let f = StepFacts { condition: answer.next().copied(), ..facts() };
                        s = step(&w, &e, &f, now);
                    }
                    steps += 1;
                    prop_assert!(steps <= w.nodes.len() + 1, "no wait or end: {:?}", s);
                    match &s {
                        Step::Act { idempotency_key, .. } => {
                            prop_assert!(keys.insert(idempotency_key.clone()), "{}", idempotency_key);
                        }
                        Step::Branch { .. } => {}
                        Step::Wait { until, .. } => {
                            e = e.after(&s, now);
                            now = *until;
                            continue 'stretches;
                        }
                        Step::End { .. } | Step::Finished => break 'stretches,
                        other => {
                            return Err(TestCaseError::fail(format!("unexpected {other:?}")));
                        }
                    }
                    e = e.after(&s, now);
                }
            }
        }
    }
}

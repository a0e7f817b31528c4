//! Segmentation rules: a customer's features as criteria facts, segment definitions, who
//! belongs, and the memberships a customer sees. No I/O here.
pub mod audience;
mod badges;
mod evaluation;
mod features;
mod membership;
mod membership_cache;
mod purchases;
mod references;
pub mod rfm;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use loyalty_criteria::{
    Criterion, Fact, Facts, RawCriterion,
    purchases::{Purchase, normalized_ids},
};
use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use badges::{Badge, BadgeDraft, BadgeKind, BadgeRule, CustomerBadge, Icon};
pub use evaluation::{Evaluation, EventProperties, MAX_EVENT_PROPERTIES, customer_facts};
pub use features::{CriterionTarget, FeatureSummary};
pub use membership::{
    Group, GroupKind, HistoryEntry, ManualChange, Member, MembershipCause, Recalculation,
    SegmentRule, due_for, last_daily_run, next_attempt, next_daily_run, parse_daily_time,
};
pub use membership_cache::{MemberRow, Stamped, stored_memberships};
pub use purchases::{purchase_facts, purchase_window};
pub use references::{
    GroupId, Referable, ReferenceGraph, add_membership_facts, check_references, referenced,
    references,
};

/// Most lines a cart sent for online recalculation may have.
pub const MAX_CART_LINES: usize = 500;

/// What the feature store knows about a customer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features {
    pub attributes: BTreeMap<String, String>,
    pub properties: BTreeMap<String, String>,
    pub purchase_count: i64,
    pub total_spent_minor: i64,
    pub last_purchase_at: Option<DateTime<Utc>>,
    /// What the other services' events say: consents, email bounces, points, tier, tracked
    /// events.
    #[serde(default)]
    pub activity: Activity,
    /// RFM as of the partner's last scoring; `None` until then.
    #[serde(default)]
    pub rfm: Option<rfm::CustomerRfm>,
    /// The contact sources the account lists (identity's catalogue ids), in their stored
    /// form: lower case, sorted, no empty or duplicate ids (see [`Features::set_lists`]).
    #[serde(default)]
    pub contact_source_ids: Vec<String>,
    /// The interests the account lists, in the same form.
    #[serde(default)]
    pub interest_ids: Vec<String>,
}

/// A value with the position (the producer's outbox sequence) of the event that set it: a
/// state event older than the stored state is ignored, so states are order-safe.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned<T> {
    pub value: T,
    pub sequence: i64,
}

impl<T> Versioned<T> {
    /// Replaces the value unless `sequence` is older than the stored one.
    fn set(slot: &mut Option<Versioned<T>>, value: T, sequence: i64) {
        if slot.as_ref().is_none_or(|v| v.sequence <= sequence) {
            *slot = Some(Versioned { value, sequence });
        }
    }
}

/// Channels a marketing consent can cover (`CommunicationChannel` in lower case).
pub const CHANNELS: &[&str] = &["email", "sms", "push", "viber"];

/// A customer's consent of one type (identity's `ConsentChanged`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// `granted`, `withdrawn` or `expired`.
    pub state: String,
    /// `data_processing`, `marketing`, `profiling`, `other`; empty if the event did not say.
    #[serde(default)]
    pub purpose: String,
    /// The channels covered, from [`CHANNELS`]; empty = all.
    #[serde(default)]
    pub channels: Vec<String>,
}

impl Consent {
    fn granted_for(&self, purpose: &str) -> bool {
        self.state == "granted" && self.purpose == purpose
    }

    fn covers(&self, channel: &str) -> bool {
        self.channels.is_empty() || self.channels.iter().any(|c| c == channel)
    }
}

/// A customer's email bounce state (identity's `EmailBounceStateChanged`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailBounce {
    pub hard_bounced: bool,
    pub soft_bounce_count: i64,
}

/// A customer's tier (rewards' `TierChanged`): the tier's UUID (empty for no tier) and rank.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    pub tier_id: String,
    pub rank: i64,
}

/// How many campaign messages got one kind of response, and when the last one did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub count: i64,
    pub last_at: Option<DateTime<Utc>>,
    /// The counted responses per UTC day, for the days within [`TALLY_DAYS`] of the latest
    /// one: what "in the last 12 months" counts are read from.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_day: BTreeMap<NaiveDate, i64>,
}

/// Days of responses a [`Tally`] keeps per day: a year and a margin for late events.
pub const TALLY_DAYS: i64 = 400;

impl Tally {
    /// Counts one response at `at` (per day too); days older than [`TALLY_DAYS`] before
    /// the latest kept day are dropped.
    fn count_at(&mut self, at: DateTime<Utc>) {
        self.count = self.count.saturating_add(1);
        self.add_days([(at.date_naive(), 1)]);
    }

    fn add_days(&mut self, days: impl IntoIterator<Item = (NaiveDate, i64)>) {
        for (day, n) in days {
            let slot = self.by_day.entry(day).or_default();
            *slot = slot.saturating_add(n);
        }
        if let Some(latest) = self.by_day.keys().next_back().copied() {
            let oldest = latest - chrono::Duration::days(TALLY_DAYS);
            self.by_day = self.by_day.split_off(&oldest);
        }
    }

    /// The counted responses on the UTC days after `start`'s day (`start`'s own day is
    /// left out: counts are kept per whole day).
    pub fn count_after(&self, start: DateTime<Utc>) -> i64 {
        let first = start.date_naive() + chrono::Duration::days(1);
        self.by_day
            .range(first..)
            .fold(0i64, |sum, (_, n)| sum.saturating_add(*n))
    }
}

/// Whole days from `at` to `now` (`floor`), 0 for a time after `now`.
pub fn days_ago(now: DateTime<Utc>, at: DateTime<Utc>) -> i64 {
    (now - at).num_days().max(0)
}

/// A time as the feature store keeps it: whole microseconds (PostgreSQL's precision, and
/// what the compiled SQL compares exactly).
fn stored_time(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

fn latest(slot: &mut Option<DateTime<Utc>>, at: DateTime<Utc>) {
    *slot = Some(slot.map_or(at, |l| l.max(at)));
}

/// The features projected from the events of identity (consents, bounces, tracked events),
/// the wallet (points), rewards (tiers) and campaigns (message responses).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// Consents by consent type code.
    #[serde(default)]
    pub consents: BTreeMap<String, Versioned<Consent>>,
    #[serde(default)]
    pub email_bounce: Option<Versioned<EmailBounce>>,
    /// Available points by points type code.
    #[serde(default)]
    pub points: BTreeMap<String, Versioned<i64>>,
    #[serde(default)]
    pub tier: Option<Versioned<Tier>>,
    /// Number of tracked events by event type code.
    #[serde(default)]
    pub events: BTreeMap<String, i64>,
    /// When the last tracked event of each type happened, by event type code.
    #[serde(default)]
    pub events_last_at: BTreeMap<String, DateTime<Utc>>,
    /// Campaign message responses by response ([`loyalty_criteria::MESSAGE_RESPONSES`]).
    #[serde(default)]
    pub messages: BTreeMap<String, Tally>,
    /// The responses each campaign (its UUID, lower-case hyphenated) got from the customer.
    #[serde(default)]
    pub campaigns: BTreeMap<String, BTreeSet<String>>,
    /// ISO 4217 currency of the customer's latest purchase (the currency of the amounts);
    /// empty before the first purchase that named one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub currency_code: String,
}

fn versioned_entry<T>(
    map: &mut BTreeMap<String, Versioned<T>>,
    key: &str,
    value: T,
    sequence: i64,
) {
    let mut slot = map.remove(key);
    Versioned::set(&mut slot, value, sequence);
    if let Some(v) = slot {
        map.insert(key.to_owned(), v);
    }
}

impl Activity {
    /// Records a consent of one type; an older event than the stored one is ignored.
    pub fn set_consent(&mut self, code: &str, consent: Consent, sequence: i64) {
        versioned_entry(&mut self.consents, code, consent, sequence);
    }

    /// Records the email bounce state; an older event than the stored one is ignored.
    pub fn set_email_bounce(&mut self, bounce: EmailBounce, sequence: i64) {
        Versioned::set(&mut self.email_bounce, bounce, sequence);
    }

    /// Records the available balance of a points type (the events carry the balance after
    /// the posting); an older event than the stored one is ignored.
    pub fn set_points(&mut self, code: &str, available: i64, sequence: i64) {
        versioned_entry(&mut self.points, code, available, sequence);
    }

    /// Records the tier; an older event than the stored one is ignored.
    pub fn set_tier(&mut self, tier: Tier, sequence: i64) {
        Versioned::set(&mut self.tier, tier, sequence);
    }

    /// Counts one more tracked event of a type, which happened `at`.
    pub fn record_event(&mut self, code: &str, at: DateTime<Utc>) {
        let n = self.events.entry(code.to_owned()).or_default();
        *n = n.saturating_add(1);
        let mut last = self.events_last_at.get(code).copied();
        latest(&mut last, stored_time(at));
        if let Some(last) = last {
            self.events_last_at.insert(code.to_owned(), last);
        }
    }

    /// Records a response to a campaign message at `at`: `counted` says whether it counts
    /// in `messages.<response>.count` (a message's repeated opens and clicks count once);
    /// every response moves the last time. `campaign` is the campaign's UUID, if any.
    pub fn record_message(
        &mut self,
        response: &str,
        campaign: Option<Uuid>,
        at: DateTime<Utc>,
        counted: bool,
    ) {
        let tally = self.messages.entry(response.to_owned()).or_default();
        if counted {
            tally.count_at(at);
        }
        latest(&mut tally.last_at, stored_time(at));
        if let Some(c) = campaign {
            self.campaigns
                .entry(c.hyphenated().to_string())
                .or_default()
                .insert(response.to_owned());
        }
    }

    /// The times `*.last_days_ago` facts count from, by field path:
    /// `events.<code>.last_days_ago` and `messages.<response>.last_days_ago`.
    pub fn times(&self) -> Vec<(String, DateTime<Utc>)> {
        let events = self
            .events_last_at
            .iter()
            .map(|(code, at)| (format!("events.{code}.last_days_ago"), *at));
        let messages = self.messages.iter().filter_map(|(response, t)| {
            Some((format!("messages.{response}.last_days_ago"), t.last_at?))
        });
        events.chain(messages).collect()
    }

    /// The facts criteria read: `consents.<code>` (the state),
    /// `features.marketing_consent_<channel>` (always: whether a granted marketing consent
    /// covers the channel), `features.data_processing_consent` (always: whether a
    /// data-processing consent is granted), `features.email_hard_bounced` (always,
    /// `"false"` without a bounce), `features.email_soft_bounce_count` (always, 0 without a
    /// bounce), `points.<code>`, `features.tier_id` and `features.tier_rank` (once a tier
    /// event arrived; `tier_id` only when in a tier), `events.<code>.count`.
    pub fn facts(&self) -> Vec<(String, Fact)> {
        let mut out = Vec::new();
        for (code, state) in &self.consents {
            out.push((
                format!("consents.{code}"),
                Fact::String(state.value.state.clone()),
            ));
        }
        let flag = |b: bool| Fact::String(b.to_string());
        let marketing = || {
            self.consents
                .values()
                .map(|c| &c.value)
                .filter(|c| c.granted_for("marketing"))
        };
        for channel in CHANNELS {
            out.push((
                format!("features.marketing_consent_{channel}"),
                flag(marketing().any(|c| c.covers(channel))),
            ));
        }
        out.push((
            "features.data_processing_consent".to_owned(),
            flag(
                self.consents
                    .values()
                    .any(|c| c.value.granted_for("data_processing")),
            ),
        ));
        let bounce = self
            .email_bounce
            .as_ref()
            .map(|b| b.value.clone())
            .unwrap_or_default();
        out.push((
            "features.email_hard_bounced".to_owned(),
            Fact::String(bounce.hard_bounced.to_string()),
        ));
        out.push((
            "features.email_soft_bounce_count".to_owned(),
            Fact::Int(bounce.soft_bounce_count),
        ));
        for (code, points) in &self.points {
            out.push((format!("points.{code}"), Fact::Int(points.value)));
        }
        if let Some(tier) = &self.tier {
            if !tier.value.tier_id.is_empty() {
                out.push((
                    "features.tier_id".to_owned(),
                    Fact::String(tier.value.tier_id.clone()),
                ));
            }
            out.push(("features.tier_rank".to_owned(), Fact::Int(tier.value.rank)));
        }
        for (code, n) in &self.events {
            out.push((format!("events.{code}.count"), Fact::Int(*n)));
        }
        for response in loyalty_criteria::MESSAGE_RESPONSES {
            let n = self.messages.get(*response).map_or(0, |t| t.count);
            out.push((format!("messages.{response}.count"), Fact::Int(n)));
        }
        for (campaign, responses) in &self.campaigns {
            for response in loyalty_criteria::MESSAGE_RESPONSES {
                out.push((
                    format!("campaigns.{campaign}.{response}"),
                    flag(responses.contains(*response)),
                ));
            }
        }
        out
    }

    /// Folds a merged account's activity into the survivor's: tracked events add up; the
    /// states (consents, bounces, points, tier) stay the survivor's, since the services
    /// owning them announce the survivor's state after a merge.
    pub fn absorb(&mut self, merged: &Activity) {
        for (code, n) in &merged.events {
            let mine = self.events.entry(code.clone()).or_default();
            *mine = mine.saturating_add(*n);
        }
        for (code, at) in &merged.events_last_at {
            let mine = self.events_last_at.entry(code.clone()).or_insert(*at);
            *mine = (*mine).max(*at);
        }
        // Message responses are history too: they add up like tracked events.
        for (response, t) in &merged.messages {
            let mine = self.messages.entry(response.clone()).or_default();
            mine.count = mine.count.saturating_add(t.count);
            mine.add_days(t.by_day.iter().map(|(d, n)| (*d, *n)));
            if let Some(at) = t.last_at {
                latest(&mut mine.last_at, at);
            }
        }
        for (campaign, responses) in &merged.campaigns {
            self.campaigns
                .entry(campaign.clone())
                .or_default()
                .extend(responses.iter().cloned());
        }
    }
}

impl Features {
    /// The facts criteria read, as of `now`: `customer.<attribute>`,
    /// `customer.properties.<key>` and `features.*`.
    pub fn facts(&self, now: DateTime<Utc>) -> Facts {
        let mut facts = Facts::default();
        for (k, v) in &self.attributes {
            facts.insert(format!("customer.{k}"), Fact::String(v.clone()));
        }
        for (k, v) in &self.properties {
            facts.insert(format!("customer.properties.{k}"), Fact::String(v.clone()));
        }
        // Always present (an account listing none has empty lists), like the cart's lists.
        facts.insert(
            "customer.contact_source_ids",
            Fact::List(self.contact_source_ids.clone()),
        );
        facts.insert(
            "customer.interest_ids",
            Fact::List(self.interest_ids.clone()),
        );
        facts.insert("features.purchase_count", Fact::Int(self.purchase_count));
        facts.insert(
            "features.total_spent_minor",
            Fact::Int(self.total_spent_minor),
        );
        if let Some(last) = self.last_purchase_at {
            facts.insert(
                "features.last_purchase_days_ago",
                Fact::Int(days_ago(now, last)),
            );
        }
        facts.extend(self.activity.facts());
        for (path, at) in self.activity.times() {
            facts.insert(path, Fact::Int(days_ago(now, at)));
        }
        if let Some(rfm) = &self.rfm {
            facts.extend(rfm.facts());
        }
        facts
    }

    /// The string facts of [`Features::facts`] in their search form, keyed by field path
    /// (`{"customer.city": {"t": "praha"}, ..}`): what the feature store keeps so a criterion
    /// compiled to SQL compares them exactly as the in-memory evaluator does (see
    /// [`loyalty_criteria::sql`]). Later keys win, as in [`Features::facts`].
    pub fn search_facts(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        let attributes = self
            .attributes
            .iter()
            .map(|(k, v)| (format!("customer.{k}"), v));
        let properties = self
            .properties
            .iter()
            .map(|(k, v)| (format!("customer.properties.{k}"), v));
        for (path, v) in attributes.chain(properties) {
            out.insert(path, loyalty_criteria::sql::search_form(v));
        }
        // The activity facts are kept in their search form too; an integer's is that of its
        // decimal text, whose `i` member is the integer itself.
        for (path, fact) in self.activity.facts() {
            let text = match fact {
                Fact::String(s) => s,
                Fact::Int(n) => n.to_string(),
                Fact::Bool(b) => b.to_string(),
                Fact::List(_) => continue,
            };
            out.insert(path, loyalty_criteria::sql::search_form(&text));
        }
        // Times behind `*.last_days_ago` are kept as microseconds, compared as day bounds.
        for (path, at) in self.activity.times() {
            out.insert(path, loyalty_criteria::sql::time_form(at));
        }
        serde_json::Value::Object(out)
    }

    /// Replaces the account's contact sources and interests (identity's profile events carry
    /// the whole lists), stored lower-cased without empty or duplicate ids: the form the
    /// compiled SQL compares with lower-cased values.
    pub fn set_lists(
        &mut self,
        contact_source_ids: impl IntoIterator<Item = impl AsRef<str>>,
        interest_ids: impl IntoIterator<Item = impl AsRef<str>>,
    ) {
        self.contact_source_ids = normalized_ids(contact_source_ids);
        self.interest_ids = normalized_ids(interest_ids);
    }

    /// Counts one more purchase of `amount_minor` made at `at` (events may arrive out of
    /// order: the last purchase is the latest one seen).
    pub fn record_purchase(&mut self, amount_minor: i64, currency_code: &str, at: DateTime<Utc>) {
        if !currency_code.is_empty() && self.last_purchase_at.is_none_or(|last| at >= last) {
            self.activity.currency_code = currency_code.to_uppercase();
        }
        self.purchase_count = self.purchase_count.saturating_add(1);
        self.total_spent_minor = self.total_spent_minor.saturating_add(amount_minor);
        self.last_purchase_at = Some(self.last_purchase_at.map_or(at, |l| l.max(at)));
    }

    /// Takes back a returned purchase (checkout's `PurchaseReturned`): the refund leaves the
    /// total spent and a purchase returned in full no longer counts. Neither is floored at 0,
    /// so a return applied before its purchase ends up at the same values; the last purchase
    /// time stays.
    pub fn record_return(&mut self, refund_minor: i64, fully_returned: bool) {
        self.total_spent_minor = self.total_spent_minor.saturating_sub(refund_minor);
        if fully_returned {
            self.purchase_count = self.purchase_count.saturating_sub(1);
        }
    }

    /// Folds the features of a duplicate account merged into this one: purchases add up,
    /// the last purchase is the latest of both, and the profile (attributes, properties)
    /// stays this customer's.
    pub fn absorb(&mut self, merged: &Features) {
        // The currency of the latest purchase of either account.
        let merged_later = match (self.last_purchase_at, merged.last_purchase_at) {
            (Some(mine), Some(theirs)) => theirs > mine,
            (mine, _) => mine.is_none(),
        };
        if (merged_later || self.activity.currency_code.is_empty())
            && !merged.activity.currency_code.is_empty()
        {
            self.activity.currency_code = merged.activity.currency_code.clone();
        }
        self.purchase_count = self.purchase_count.saturating_add(merged.purchase_count);
        self.total_spent_minor = self
            .total_spent_minor
            .saturating_add(merged.total_spent_minor);
        self.last_purchase_at = match (self.last_purchase_at, merged.last_purchase_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.activity.absorb(&merged.activity);
    }
}

/// One cart line, as far as criteria care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartLine {
    pub product_id: String,
    pub product_group_ids: Vec<String>,
    /// Empty when not known.
    pub brand_id: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
}

/// The cart of a checkout in progress, sent for online recalculation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cart {
    pub currency_code: String,
    pub lines: Vec<CartLine>,
}

impl Cart {
    /// Every line's quantity × unit price, added up (before any discount), minor units.
    pub fn total_minor(&self) -> i64 {
        self.lines
            .iter()
            .map(|l| l.quantity.saturating_mul(l.unit_price_minor))
            .fold(0i64, i64::saturating_add)
    }

    /// Counts the cart as bought at `now`, for the online decision "does this purchase move
    /// the customer into the segment": one more purchase of the cart's total in `features`
    /// (count, total spent, last purchase) and in `bought` (the purchase windows, with the
    /// lines' products, product groups and brands).
    pub fn count_as_bought(
        &self,
        features: &mut Features,
        bought: &mut Vec<Purchase>,
        now: DateTime<Utc>,
    ) {
        let total = self.total_minor();
        features.record_purchase(total, &self.currency_code, now);
        let lines = &self.lines;
        bought.push(
            Purchase {
                purchased_at: now,
                net_amount_minor: total,
                returned_amount_minor: 0,
                product_ids: lines.iter().map(|l| l.product_id.clone()).collect(),
                product_group_ids: lines
                    .iter()
                    .flat_map(|l| l.product_group_ids.iter().cloned())
                    .collect(),
                brand_ids: lines.iter().map(|l| l.brand_id.clone()).collect(),
                business_unit_id: String::new(),
            }
            .normalized(),
        );
    }

    /// Checks the cart, reporting under `prefix` (e.g. `cart.lines[2].quantity`).
    pub fn validate(&self, v: &mut Violations, prefix: &str) {
        let code = &self.currency_code;
        if !(code.len() == 3 && code.chars().all(|c| c.is_ascii_uppercase())) {
            v.add(
                format!("{prefix}.currency_code"),
                "must be an ISO 4217 code such as EUR",
            );
        }
        if self.lines.len() > MAX_CART_LINES {
            v.add(
                format!("{prefix}.lines"),
                format!("at most {MAX_CART_LINES} lines"),
            );
        }
        for (i, l) in self.lines.iter().enumerate() {
            if l.quantity <= 0 {
                v.add(
                    format!("{prefix}.lines[{i}].quantity"),
                    "must be greater than 0",
                );
            }
            if l.unit_price_minor < 0 {
                v.add(
                    format!("{prefix}.lines[{i}].unit_price_minor"),
                    "must not be negative",
                );
            }
        }
    }

    /// Adds the `cart.*` facts: total, line count, product ids and product group ids.
    pub fn add_facts(&self, facts: &mut Facts) {
        facts.insert("cart.total_minor", Fact::Int(self.total_minor()));
        facts.insert("cart.line_count", Fact::Int(self.lines.len() as i64));
        let mut products: Vec<String> = self.lines.iter().map(|l| l.product_id.clone()).collect();
        products.sort();
        products.dedup();
        facts.insert("cart.product_ids", Fact::List(products));
        let mut groups: Vec<String> = self
            .lines
            .iter()
            .flat_map(|l| l.product_group_ids.iter().cloned())
            .collect();
        groups.sort();
        groups.dedup();
        facts.insert("cart.product_group_ids", Fact::List(groups));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SegmentKind {
    /// Filled at creation and fixed.
    Standard,
    /// Re-runs its criterion every night.
    Flexi,
}

impl SegmentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SegmentKind::Standard => "standard",
            SegmentKind::Flexi => "flexi",
        }
    }

    pub fn parse_str(s: &str) -> Option<SegmentKind> {
        Some(match s {
            "standard" => SegmentKind::Standard,
            "flexi" => SegmentKind::Flexi,
            _ => return None,
        })
    }
}

/// Parses a client's criterion reported under `field`: missing is "is required", and every
/// problem of the tree is named by its path below `field` (e.g.
/// `segment.criterion.all.criteria[1].condition.values`).
pub fn parse_criterion(
    v: &mut Violations,
    field: &str,
    raw: Option<RawCriterion>,
) -> Option<Criterion> {
    parse_criterion_by(v, field, raw, Criterion::parse)
}

/// As [`parse_criterion`], with `parse` (e.g. [`Criterion::parse_with_event`]).
fn parse_criterion_by(
    v: &mut Violations,
    field: &str,
    raw: Option<RawCriterion>,
    parse: fn(RawCriterion) -> Result<Criterion, Vec<loyalty_criteria::Violation>>,
) -> Option<Criterion> {
    let Some(raw) = raw else {
        v.add(field, "is required");
        return None;
    };
    match parse(raw) {
        Ok(c) => Some(c),
        Err(problems) => {
            for p in problems {
                let path = if p.path.is_empty() {
                    field.to_owned()
                } else {
                    format!("{field}.{}", p.path)
                };
                v.add(path, p.reason);
            }
            None
        }
    }
}

/// A segment as a client defines it, before it is checked.
#[derive(Debug, Clone)]
pub struct SegmentDraft {
    pub display_name: String,
    /// `None` when the client left it unspecified.
    pub kind: Option<SegmentKind>,
    pub online_recalculation: bool,
    /// `None` when it was missing or invalid (already reported by [`parse_criterion`]).
    pub criterion: Option<Criterion>,
    pub note: String,
}

impl SegmentDraft {
    /// Checks the definition, reporting under `segment.<field>`.
    pub fn validate(&self, v: &mut Violations) {
        if !(1..=200).contains(&self.display_name.trim().chars().count()) {
            v.add("segment.display_name", "must be 1..200 characters");
        }
        if self.kind.is_none() {
            v.add("segment.kind", "must be STANDARD or FLEXI");
        }
        if self.note.chars().count() > 2000 {
            v.add("segment.note", "must be at most 2000 characters");
        }
        if let Some(c) = &self.criterion
            && c.uses_cart()
            && !self.online_recalculation
        {
            v.add(
                "segment.criterion",
                "reads the cart (cart.*), so the segment needs online_recalculation",
            );
        }
    }

    /// The new segment, without members yet; `None` if the draft is incomplete (call
    /// [`SegmentDraft::validate`] first).
    pub fn into_segment(self, id: Uuid, now: DateTime<Utc>) -> Option<Segment> {
        Some(Segment {
            id,
            display_name: self.display_name.trim().to_owned(),
            kind: self.kind?,
            online_recalculation: self.online_recalculation,
            criterion: self.criterion?,
            note: self.note,
            member_count: 0,
            last_recalculated_at: None,
            version: 1,
            created_at: now,
            updated_at: None,
        })
    }
}

fn first_version() -> i64 {
    1
}

/// A segment. `version` grows with every change of the definition; its etag is
/// `"v<version>"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub id: Uuid,
    pub display_name: String,
    pub kind: SegmentKind,
    pub online_recalculation: bool,
    pub criterion: Criterion,
    pub note: String,
    pub member_count: i64,
    pub last_recalculated_at: Option<DateTime<Utc>>,
    #[serde(default = "first_version")]
    pub version: i64,
    pub created_at: DateTime<Utc>,
    /// When the definition last changed; `None` until it does.
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

impl Segment {
    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }

    /// Whether a customer with `features` belongs now, without a cart. A criterion reading
    /// the cart never admits a stored member: it only holds online, at checkout.
    pub fn admits(&self, features: &Features, now: DateTime<Utc>) -> bool {
        self.admits_on(&features.facts(now))
    }

    /// Whether a customer with `facts` belongs now, without a cart (as [`Segment::admits`],
    /// with facts the caller completed, e.g. with purchase-window facts).
    pub fn admits_on(&self, facts: &Facts) -> bool {
        !self.criterion.uses_cart() && self.criterion.evaluate(facts)
    }

    /// Whether the survivor of a merge belongs to this segment as a stored member, given
    /// whether the survivor and the merged account were members and the survivor's folded
    /// `facts` (its features and purchases); `None` for a segment that stores no members
    /// (its criterion reads the cart). A standard segment is fixed, so the survivor keeps
    /// the membership either account had; a Flexi segment re-runs its criterion on the
    /// folded facts.
    pub fn holds_survivor(
        &self,
        survivor_member: bool,
        merged_member: bool,
        facts: &Facts,
    ) -> Option<bool> {
        if self.criterion.uses_cart() {
            return None;
        }
        Some(match self.kind {
            SegmentKind::Standard => survivor_member || merged_member,
            SegmentKind::Flexi => self.admits_on(facts),
        })
    }

    /// What the Customer 360 segment overview shows of this segment.
    pub fn overview(&self) -> SegmentOverview {
        SegmentOverview {
            kind: self.kind,
            created_at: self.created_at,
            last_recalculated_at: self.last_recalculated_at,
            member_count: self.member_count,
            note: self.note.clone(),
        }
    }

    /// Records the members found by a (re)calculation at `now`.
    pub fn recalculated(&mut self, member_count: usize, now: DateTime<Utc>) {
        self.member_count = i64::try_from(member_count).unwrap_or(i64::MAX);
        self.last_recalculated_at = Some(now);
    }
}

/// The columns of a segment in the Customer 360 segment overview (besides its name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentOverview {
    pub kind: SegmentKind,
    pub created_at: DateTime<Utc>,
    pub last_recalculated_at: Option<DateTime<Utc>>,
    pub member_count: i64,
    pub note: String,
}

/// A membership as stored: the customer was added to the segment at `added_at` by `cause`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMembership {
    pub segment_id: Uuid,
    pub segment_display_name: String,
    pub added_at: DateTime<Utc>,
    pub cause: MembershipCause,
    pub segment: SegmentOverview,
}

/// A membership as a customer's caller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub segment_id: Uuid,
    pub segment_display_name: String,
    /// When the customer was added; `None` for a membership computed online for this call.
    pub added_at: Option<DateTime<Utc>>,
    /// Computed online (with the current cart) rather than stored.
    pub online: bool,
    /// What added the customer; `None` for a membership computed online.
    pub cause: Option<MembershipCause>,
    pub segment: SegmentOverview,
}

/// A customer's memberships: the stored ones, except that a segment recalculated online is
/// evaluated now on `facts` (features and, at checkout, the cart) and appears once, as
/// online, when the customer fulfils it; stored membership of such a segment is superseded
/// by the current answer.
pub fn memberships(
    stored: &[StoredMembership],
    online_segments: &[Segment],
    facts: &Facts,
) -> Vec<Membership> {
    let is_online = |id: Uuid| online_segments.iter().any(|s| s.id == id);
    let mut out: Vec<Membership> = stored
        .iter()
        .filter(|m| !is_online(m.segment_id))
        .map(|m| Membership {
            segment_id: m.segment_id,
            segment_display_name: m.segment_display_name.clone(),
            added_at: Some(m.added_at),
            online: false,
            cause: Some(m.cause),
            segment: m.segment.clone(),
        })
        .collect();
    out.extend(
        online_segments
            .iter()
            .filter(|s| s.criterion.evaluate(facts))
            .map(|s| Membership {
                segment_id: s.id,
                segment_display_name: s.display_name.clone(),
                added_at: None,
                online: true,
                cause: None,
                segment: s.overview(),
            }),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use loyalty_criteria::{Operator, Value};

    fn raw(field: &str, op: Operator, value: Value) -> RawCriterion {
        RawCriterion::Condition {
            field: field.into(),
            operator: Some(op),
            values: vec![value],
        }
    }

    fn criterion(field: &str, op: Operator, value: Value) -> Criterion {
        Criterion::parse(raw(field, op, value)).unwrap()
    }

    fn draft(c: Criterion, online: bool) -> SegmentDraft {
        SegmentDraft {
            display_name: " Gold ".into(),
            kind: Some(SegmentKind::Standard),
            online_recalculation: online,
            criterion: Some(c),
            note: String::new(),
        }
    }

    fn segment(c: Criterion, online: bool) -> Segment {
        draft(c, online)
            .into_segment(Uuid::now_v7(), Utc::now())
            .unwrap()
    }

    fn line(product: &str, groups: &[&str], quantity: i64, unit_price_minor: i64) -> CartLine {
        CartLine {
            product_id: product.into(),
            product_group_ids: groups.iter().map(|g| (*g).to_owned()).collect(),
            brand_id: String::new(),
            quantity,
            unit_price_minor,
        }
    }

    fn cart(lines: Vec<CartLine>) -> Cart {
        Cart {
            currency_code: "EUR".into(),
            lines,
        }
    }

    fn fields(v: Violations) -> String {
        v.into_result()
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn contact_sources_and_interests_are_stored_lower_cased_once_and_read_as_lists() {
        let mut f = Features::default();
        f.set_lists(["ESHOP", "eshop", ""], ["Wine"]);
        assert_eq!(f.contact_source_ids, ["eshop"]);
        let facts = f.facts(Utc::now());
        assert_eq!(
            facts.get_path("customer.interest_ids"),
            Some(&Fact::List(vec!["wine".into()]))
        );
        let wine = segment(
            criterion(
                "customer.interest_ids",
                Operator::Contains,
                Value::String("WINE".into()),
            ),
            false,
        );
        assert!(wine.admits(&f, Utc::now()));
        // A later profile replaces both lists.
        f.set_lists(Vec::<String>::new(), ["cooking"]);
        assert!(!wine.admits(&f, Utc::now()));
        assert_eq!(
            Features::default()
                .facts(Utc::now())
                .get_path("customer.contact_source_ids"),
            Some(&Fact::List(vec![])),
            "always present, empty when the account lists none"
        );
    }

    #[test]
    fn features_become_facts_a_criterion_can_read() {
        let mut f = Features::default();
        f.properties.insert("tier".into(), "gold".into());
        f.attributes.insert("city".into(), "Praha".into());
        f.total_spent_minor = 12_000;
        let now = Utc::now();
        let gold = segment(
            criterion(
                "customer.properties.tier",
                Operator::Equal,
                Value::String("GOLD".into()),
            ),
            false,
        );
        assert!(gold.admits(&f, now));
        let praha = segment(
            criterion(
                "customer.city",
                Operator::Equal,
                Value::String("praha".into()),
            ),
            false,
        );
        assert!(praha.admits(&f, now));
        let big = segment(
            criterion(
                "features.total_spent_minor",
                Operator::GreaterOrEqual,
                Value::Int(10_000),
            ),
            false,
        );
        assert!(big.admits(&f, now));
        assert!(!big.admits(&Features::default(), now));
    }

    #[test]
    fn every_string_fact_has_its_search_form_under_the_same_path() {
        let f = Features {
            attributes: [
                ("city".to_owned(), "PRAHA".to_owned()),
                ("properties.vip".to_owned(), "shadowed".to_owned()),
            ]
            .into(),
            properties: [
                ("visits".to_owned(), " 7 ".to_owned()),
                ("vip".to_owned(), "True".to_owned()),
            ]
            .into(),
            ..Default::default()
        };
        let search = f.search_facts();
        let object = search.as_object().unwrap();
        let facts = f.facts(Utc::now());
        let strings: Vec<(&str, &String)> = facts
            .iter()
            .filter_map(|(path, fact)| match fact {
                Fact::String(s) => Some((path, s)),
                _ => None,
            })
            .collect();
        // Every string fact and every activity integer is kept, nothing else.
        let activity_ints = f
            .activity
            .facts()
            .into_iter()
            .filter(|(_, fact)| matches!(fact, Fact::Int(_)))
            .count();
        assert_eq!(strings.len() + activity_ints, object.len());
        for (path, fact) in f.activity.facts() {
            if let Fact::Int(n) = fact {
                assert_eq!(object[&path]["i"], n, "{path}");
            }
        }
        for (path, s) in strings {
            assert_eq!(
                object.get(path),
                Some(&loyalty_criteria::sql::search_form(s)),
                "{path}"
            );
        }
        assert_eq!(search["customer.properties.vip"]["b"], true);
        assert_eq!(search["customer.properties.visits"]["i"], 7);
    }

    #[test]
    fn purchases_count_up_and_the_last_one_is_the_latest_seen() {
        let now = Utc::now();
        let mut f = Features::default();
        f.record_purchase(1_500, "EUR", now - Duration::days(3));
        f.record_purchase(500, "EUR", now - Duration::days(10));
        assert_eq!(f.purchase_count, 2);
        assert_eq!(f.total_spent_minor, 2_000);
        let facts = f.facts(now);
        assert_eq!(
            facts.get_path("features.last_purchase_days_ago"),
            Some(&Fact::Int(3))
        );
        assert_eq!(
            Features::default()
                .facts(now)
                .get_path("features.last_purchase_days_ago"),
            None,
            "a customer who never bought has no last purchase"
        );
    }

    #[test]
    fn a_cart_counts_as_bought_now_for_the_online_decision() {
        let now = Utc::now();
        let mut f = Features::default();
        f.record_purchase(1_000, "EUR", now - Duration::days(40));
        let mut bought = Vec::new();
        let mut shoes = line("SKU-1", &["Shoes"], 2, 1_500);
        shoes.brand_id = "Acme".into();
        cart(vec![shoes, line("SKU-2", &[], 1, 500)]).count_as_bought(&mut f, &mut bought, now);
        assert_eq!((f.purchase_count, f.total_spent_minor), (2, 4_500));
        assert_eq!(f.last_purchase_at, Some(now));
        assert_eq!(bought.len(), 1);
        let p = &bought[0];
        assert_eq!((p.purchased_at, p.net_amount_minor), (now, 3_500));
        assert_eq!(p.product_ids, ["sku-1", "sku-2"]);
        assert_eq!(p.product_group_ids, ["shoes"]);
        assert_eq!(p.brand_ids, ["acme"]);
        let regular = Criterion::parse(RawCriterion::Condition {
            field: "purchases.last_30_days.count".into(),
            operator: Some(Operator::GreaterOrEqual),
            values: vec![Value::Int(1)],
        })
        .unwrap();
        let mut facts = f.facts(now);
        facts.extend(purchase_facts(&bought, [&regular], now));
        assert!(regular.evaluate(&facts));
    }

    #[test]
    fn a_cart_criterion_needs_online_recalculation() {
        let c = criterion(
            "cart.total_minor",
            Operator::GreaterOrEqual,
            Value::Int(5_000),
        );
        let mut v = Violations::new();
        draft(c.clone(), false).validate(&mut v);
        assert!(fields(v).contains("segment.criterion"));
        let mut ok = Violations::new();
        draft(c, true).validate(&mut ok);
        assert!(ok.is_empty());
    }

    #[test]
    fn a_draft_reports_every_bad_field_at_once() {
        let mut v = Violations::new();
        SegmentDraft {
            display_name: "  ".into(),
            kind: None,
            online_recalculation: false,
            criterion: None,
            note: "x".repeat(2001),
        }
        .validate(&mut v);
        let text = fields(v);
        for field in ["segment.display_name", "segment.kind", "segment.note"] {
            assert!(text.contains(field), "{field} missing in {text}");
        }
    }

    #[test]
    fn criterion_problems_are_named_by_their_path_under_the_field() {
        let mut v = Violations::new();
        let parsed = parse_criterion(
            &mut v,
            "segment.criterion",
            Some(RawCriterion::All(vec![
                raw(
                    "customer.city",
                    Operator::Equal,
                    Value::String("Brno".into()),
                ),
                raw("customer.shoe_size", Operator::Equal, Value::Int(42)),
            ])),
        );
        assert!(parsed.is_none());
        let text = fields(v);
        assert!(
            text.contains("segment.criterion.all.criteria[1].condition"),
            "{text}"
        );
        let mut missing = Violations::new();
        assert!(parse_criterion(&mut missing, "segment.criterion", None).is_none());
        assert!(fields(missing).contains("segment.criterion: is required"));
    }

    #[test]
    fn a_cart_criterion_reads_the_cart_but_never_admits_a_stored_member() {
        let c = criterion(
            "cart.total_minor",
            Operator::GreaterOrEqual,
            Value::Int(5_000),
        );
        let mut facts = Features::default().facts(Utc::now());
        cart(vec![line("SKU", &[], 3, 2_000)]).add_facts(&mut facts);
        assert!(c.evaluate(&facts));
        assert!(!segment(c, true).admits(&Features::default(), Utc::now()));
    }

    #[test]
    fn cart_facts_sum_the_lines_and_list_products_and_groups_once() {
        let mut facts = Facts::default();
        cart(vec![
            line("A", &["shoes", "sale"], 2, 1_000),
            line("B", &["shoes"], 1, 250),
            line("A", &[], 1, 1_000),
        ])
        .add_facts(&mut facts);
        assert_eq!(facts.get_path("cart.total_minor"), Some(&Fact::Int(3_250)));
        assert_eq!(facts.get_path("cart.line_count"), Some(&Fact::Int(3)));
        assert_eq!(
            facts.get_path("cart.product_ids"),
            Some(&Fact::List(vec!["A".into(), "B".into()]))
        );
        assert_eq!(
            facts.get_path("cart.product_group_ids"),
            Some(&Fact::List(vec!["sale".into(), "shoes".into()]))
        );
    }

    #[test]
    fn a_bad_cart_names_each_line_and_field() {
        let mut v = Violations::new();
        Cart {
            currency_code: "eur".into(),
            lines: vec![line("A", &[], 1, 100), line("B", &[], 0, -1)],
        }
        .validate(&mut v, "cart");
        let text = fields(v);
        for field in [
            "cart.currency_code",
            "cart.lines[1].quantity",
            "cart.lines[1].unit_price_minor",
        ] {
            assert!(text.contains(field), "{field} missing in {text}");
        }
        assert!(!text.contains("cart.lines[0]"));
    }

    #[test]
    fn an_online_segment_appears_once_and_only_when_the_customer_fulfils_it_now() {
        let now = Utc::now();
        let big_cart = segment(
            criterion(
                "cart.total_minor",
                Operator::GreaterOrEqual,
                Value::Int(5_000),
            ),
            true,
        );
        let praha = segment(
            criterion(
                "customer.city",
                Operator::Equal,
                Value::String("Praha".into()),
            ),
            true,
        );
        let standard = segment(
            criterion("features.purchase_count", Operator::Greater, Value::Int(0)),
            false,
        );
        let stored = [
            StoredMembership {
                segment_id: standard.id,
                segment_display_name: "Buyers".into(),
                added_at: now,
                cause: MembershipCause::Manual,
                segment: standard.overview(),
            },
            StoredMembership {
                segment_id: big_cart.id,
                segment_display_name: "Gold".into(),
                added_at: now,
                cause: MembershipCause::Creation,
                segment: big_cart.overview(),
            },
        ];
        let online = [big_cart.clone(), praha];
        let mut facts = Features::default().facts(now);
        cart(vec![line("A", &[], 1, 6_000)]).add_facts(&mut facts);
        let got = memberships(&stored, &online, &facts);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].segment_id, standard.id);
        assert_eq!(got[0].added_at, Some(now));
        assert_eq!(got[0].cause, Some(MembershipCause::Manual));
        assert_eq!(got[0].segment, standard.overview());
        assert!(!got[0].online);
        assert_eq!(got[1].segment_id, big_cart.id);
        assert!(got[1].online && got[1].added_at.is_none());

        let without_cart = memberships(&stored, &online, &Features::default().facts(now));
        assert_eq!(without_cart.len(), 1);
        assert_eq!(without_cart[0].segment_id, standard.id);
    }

    #[test]
    fn recalculation_counts_members_and_stamps_the_time() {
        let now = Utc::now();
        let mut s = segment(
            criterion("features.purchase_count", Operator::Greater, Value::Int(0)),
            false,
        );
        assert_eq!(s.display_name, "Gold");
        assert_eq!(s.etag(), "v1");
        s.recalculated(7, now);
        assert_eq!(s.member_count, 7);
        assert_eq!(s.last_recalculated_at, Some(now));
    }

    #[test]
    fn a_merge_adds_up_purchases_keeps_the_latest_and_the_survivors_profile() {
        let early = Utc::now() - Duration::days(30);
        let late = Utc::now() - Duration::days(2);
        let mut survivor = Features {
            attributes: [("city".to_owned(), "Praha".to_owned())].into(),
            purchase_count: 2,
            total_spent_minor: 1_000,
            last_purchase_at: Some(early),
            ..Default::default()
        };
        let merged = Features {
            attributes: [("city".to_owned(), "Brno".to_owned())].into(),
            properties: [("vip".to_owned(), "yes".to_owned())].into(),
            purchase_count: 3,
            total_spent_minor: 2_500,
            last_purchase_at: Some(late),
            ..Default::default()
        };
        survivor.absorb(&merged);
        assert_eq!(survivor.purchase_count, 5);
        assert_eq!(survivor.total_spent_minor, 3_500);
        assert_eq!(survivor.last_purchase_at, Some(late));
        assert_eq!(
            survivor.attributes.get("city").map(String::as_str),
            Some("Praha")
        );
        assert!(survivor.properties.is_empty());

        let mut never_bought = Features::default();
        never_bought.absorb(&Features {
            last_purchase_at: Some(early),
            purchase_count: i64::MAX,
            ..Default::default()
        });
        assert_eq!(never_bought.last_purchase_at, Some(early));
        never_bought.absorb(&Features {
            purchase_count: 1,
            ..Default::default()
        });
        assert_eq!(never_bought.purchase_count, i64::MAX);
        assert_eq!(never_bought.last_purchase_at, Some(early));
    }

    #[test]
    fn a_standard_segment_keeps_either_accounts_membership_and_flexi_reruns_its_criterion() {
        let now = Utc::now();
        let two_purchases = criterion(
            "features.purchase_count",
            Operator::GreaterOrEqual,
            Value::Int(2),
        );
        let standard = segment(two_purchases.clone(), false);
        let mut flexi = segment(two_purchases, false);
        flexi.kind = SegmentKind::Flexi;
        let one = Features {
            purchase_count: 1,
            ..Default::default()
        }
        .facts(now);
        let two = Features {
            purchase_count: 2,
            ..Default::default()
        }
        .facts(now);
        assert_eq!(standard.holds_survivor(false, true, &one), Some(true));
        assert_eq!(standard.holds_survivor(true, false, &one), Some(true));
        assert_eq!(standard.holds_survivor(false, false, &two), Some(false));
        assert_eq!(flexi.holds_survivor(false, false, &two), Some(true));
        assert_eq!(flexi.holds_survivor(true, true, &one), Some(false));
        let cart = segment(
            criterion("cart.total_minor", Operator::GreaterOrEqual, Value::Int(1)),
            true,
        );
        assert_eq!(cart.holds_survivor(true, true, &two), None);
    }

    fn marketing(state: &str, channels: &[&str]) -> Consent {
        Consent {
            state: state.into(),
            purpose: "marketing".into(),
            channels: channels.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    #[test]
    fn marketing_consent_is_per_channel_and_needs_a_granted_marketing_consent() {
        let now = Utc::now();
        let fact = |f: &Features, path: &str| f.facts(now).get_path(path).cloned();
        let yes = Some(Fact::String("true".into()));
        let no = Some(Fact::String("false".into()));
        let mut f = Features::default();
        assert_eq!(fact(&f, "features.marketing_consent_email"), no);
        assert_eq!(fact(&f, "features.data_processing_consent"), no);
        f.activity
            .set_consent("news_sms", marketing("granted", &["sms"]), 1);
        assert_eq!(fact(&f, "features.marketing_consent_sms"), yes);
        assert_eq!(fact(&f, "features.marketing_consent_email"), no);
        // Granted data processing is not a marketing consent, whatever its channels.
        f.activity.set_consent(
            "gdpr",
            Consent {
                state: "granted".into(),
                purpose: "data_processing".into(),
                channels: vec![],
            },
            2,
        );
        assert_eq!(fact(&f, "features.data_processing_consent"), yes);
        assert_eq!(fact(&f, "features.marketing_consent_email"), no);
        // A marketing consent without channels covers all of them; withdrawn covers none.
        f.activity.set_consent("all", marketing("granted", &[]), 3);
        for c in CHANNELS {
            assert_eq!(fact(&f, &format!("features.marketing_consent_{c}")), yes);
        }
        f.activity
            .set_consent("all", marketing("withdrawn", &[]), 4);
        assert_eq!(fact(&f, "features.marketing_consent_viber"), no);
        assert_eq!(fact(&f, "features.marketing_consent_sms"), yes);
        assert_eq!(
            fact(&f, "consents.all"),
            Some(Fact::String("withdrawn".into()))
        );
    }

    #[test]
    fn an_audience_excludes_no_consent_hard_bounces_and_the_fifth_soft_bounce() {
        // Marketing consent granted, not hard bounced, fewer than 5 soft bounces.
        let audience = Criterion::parse(RawCriterion::All(vec![
            raw(
                "features.marketing_consent_email",
                Operator::Equal,
                Value::Bool(true),
            ),
            raw(
                "features.email_hard_bounced",
                Operator::Equal,
                Value::Bool(false),
            ),
            raw(
                "features.email_soft_bounce_count",
                Operator::Less,
                Value::Int(5),
            ),
        ]))
        .unwrap();
        let now = Utc::now();
        let holds = |f: &Features| audience.evaluate(&f.facts(now));
        let mut f = Features::default();
        assert!(!holds(&f), "never answered");
        f.activity
            .set_consent("newsletter", marketing("granted", &["email"]), 10);
        assert!(holds(&f), "no bounce recorded: not bounced, 0 soft bounces");
        let soft = |n| EmailBounce {
            hard_bounced: false,
            soft_bounce_count: n,
        };
        f.activity.set_email_bounce(soft(4), 11);
        assert!(holds(&f));
        f.activity.set_email_bounce(soft(5), 12);
        assert!(!holds(&f), "excluded from the 5th soft bounce");
        f.activity.set_email_bounce(soft(0), 13);
        f.activity.set_email_bounce(
            EmailBounce {
                hard_bounced: true,
                soft_bounce_count: 0,
            },
            14,
        );
        assert!(!holds(&f), "a hard bounce excludes at once");
        f.activity.set_email_bounce(soft(0), 15);
        f.activity
            .set_consent("newsletter", marketing("withdrawn", &["email"]), 16);
        assert!(!holds(&f), "unsubscribed");
    }

    #[test]
    fn a_state_older_than_the_stored_one_is_ignored() {
        let mut a = Activity::default();
        a.set_consent("news", marketing("withdrawn", &[]), 7);
        a.set_consent("news", marketing("granted", &[]), 5);
        assert_eq!(a.consents["news"].value.state, "withdrawn");
        a.set_points("standard", 120, 20);
        a.set_points("standard", 100, 19);
        a.set_points("bonus", 3, 1);
        assert_eq!(a.points["standard"].value, 120);
        assert_eq!(a.points["bonus"].value, 3);
        a.set_tier(
            Tier {
                tier_id: "gold".into(),
                rank: 2,
            },
            9,
        );
        a.set_tier(
            Tier {
                tier_id: "silver".into(),
                rank: 1,
            },
            8,
        );
        assert_eq!(a.tier.as_ref().unwrap().value.rank, 2);
        a.set_email_bounce(
            EmailBounce {
                hard_bounced: true,
                soft_bounce_count: 0,
            },
            3,
        );
        a.set_email_bounce(EmailBounce::default(), 2);
        assert!(a.email_bounce.as_ref().unwrap().value.hard_bounced);
    }

    #[test]
    fn activity_facts_are_read_by_their_fields() {
        let mut f = Features::default();
        f.activity.set_points("standard", 250, 1);
        f.activity.set_tier(
            Tier {
                tier_id: "t1".into(),
                rank: 3,
            },
            1,
        );
        let now = Utc::now();
        f.activity
            .record_event("store_visit", now - chrono::Duration::days(3));
        f.activity.record_event("store_visit", now);
        let facts = f.facts(now);
        assert_eq!(facts.get_path("points.standard"), Some(&Fact::Int(250)));
        assert_eq!(facts.get_path("features.tier_rank"), Some(&Fact::Int(3)));
        assert_eq!(
            facts.get_path("features.tier_id"),
            Some(&Fact::String("t1".into()))
        );
        assert_eq!(
            facts.get_path("events.store_visit.count"),
            Some(&Fact::Int(2))
        );
        assert_eq!(facts.get_path("events.other.count"), None);
        assert_eq!(
            facts.get_path("events.store_visit.last_days_ago"),
            Some(&Fact::Int(0))
        );
        assert_eq!(facts.get_path("events.other.last_days_ago"), None);
        let search = f.search_facts();
        assert_eq!(
            search["events.store_visit.last_days_ago"]["us"],
            now.timestamp_micros()
        );
        assert_eq!(search["points.standard"]["i"], 250);
        assert_eq!(search["features.email_hard_bounced"]["b"], false);
        assert_eq!(search["events.store_visit.count"]["i"], 2);
        // No tier: the rank stays, the tier id is missing.
        f.activity.set_tier(Tier::default(), 2);
        let facts = f.facts(Utc::now());
        assert_eq!(facts.get_path("features.tier_id"), None);
        assert_eq!(facts.get_path("features.tier_rank"), Some(&Fact::Int(0)));
    }

    #[test]
    fn a_return_takes_back_the_refund_and_a_full_return_the_purchase() {
        let at = Utc::now();
        let mut f = Features::default();
        f.record_return(300, false);
        f.record_purchase(1_000, "EUR", at);
        f.record_purchase(500, "EUR", at);
        assert_eq!((f.purchase_count, f.total_spent_minor), (2, 1_200));
        f.record_return(500, true);
        assert_eq!((f.purchase_count, f.total_spent_minor), (1, 700));
        assert_eq!(f.last_purchase_at, Some(at));
    }

    #[test]
    fn a_merge_adds_up_tracked_events_and_keeps_the_survivors_states() {
        let mut survivor = Features::default();
        survivor
            .activity
            .set_consent("news", marketing("withdrawn", &[]), 1);
        let now = Utc::now();
        survivor.activity.record_event("visit", now);
        survivor
            .activity
            .record_message("opened", None, now - chrono::Duration::days(9), true);
        let mut merged = Features::default();
        merged
            .activity
            .set_consent("news", marketing("granted", &[]), 2);
        merged
            .activity
            .set_consent("sms", marketing("granted", &[]), 2);
        merged.activity.set_points("standard", 40, 2);
        merged
            .activity
            .record_event("visit", now - chrono::Duration::days(5));
        merged.activity.record_event("review", now);
        let campaign = Uuid::now_v7();
        merged.activity.record_message(
            "opened",
            Some(campaign),
            now - chrono::Duration::days(2),
            true,
        );
        survivor.absorb(&merged);
        let facts = survivor.facts(now);
        assert_eq!(
            facts.get_path("events.visit.last_days_ago"),
            Some(&Fact::Int(0))
        );
        assert_eq!(facts.get_path("messages.opened.count"), Some(&Fact::Int(2)));
        assert_eq!(
            facts.get_path("messages.opened.last_days_ago"),
            Some(&Fact::Int(2))
        );
        assert_eq!(
            facts.get_path(&format!("campaigns.{campaign}.opened")),
            Some(&Fact::String("true".into()))
        );
        assert_eq!(survivor.activity.events["visit"], 2);
        assert_eq!(survivor.activity.events["review"], 1);
        assert_eq!(survivor.activity.consents["news"].value.state, "withdrawn");
        assert!(!survivor.activity.consents.contains_key("sms"));
        assert!(survivor.activity.points.is_empty());
    }

    #[test]
    fn message_responses_become_counts_days_and_per_campaign_flags() {
        let now = Utc::now();
        let (spring, autumn) = (Uuid::now_v7(), Uuid::now_v7());
        let mut a = Activity::default();
        let ago = |d: i64| now - chrono::Duration::days(d) - chrono::Duration::seconds(1);
        a.record_message("delivered", Some(spring), ago(10), true);
        a.record_message("opened", Some(spring), ago(8), true);
        // A repeated open moves the last time but does not count again.
        a.record_message("opened", Some(spring), ago(4), false);
        a.record_message("delivered", Some(autumn), ago(1), true);
        // A workflow's message has no campaign.
        a.record_message("soft_bounced", None, ago(0), true);
        let f = Features {
            activity: a,
            ..Features::default()
        };
        let facts = f.facts(now);
        let int = |p: &str| facts.get_path(p).cloned();
        assert_eq!(int("messages.delivered.count"), Some(Fact::Int(2)));
        assert_eq!(int("messages.opened.count"), Some(Fact::Int(1)));
        assert_eq!(int("messages.clicked.count"), Some(Fact::Int(0)));
        assert_eq!(int("messages.opened.last_days_ago"), Some(Fact::Int(4)));
        assert_eq!(int("messages.delivered.last_days_ago"), Some(Fact::Int(1)));
        assert_eq!(
            int("messages.soft_bounced.last_days_ago"),
            Some(Fact::Int(0))
        );
        assert_eq!(int("messages.clicked.last_days_ago"), None);
        let flag = |c: Uuid, r: &str| facts.get_path(&format!("campaigns.{c}.{r}")).cloned();
        let yes = Some(Fact::String("true".into()));
        let no = Some(Fact::String("false".into()));
        assert_eq!(flag(spring, "opened"), yes);
        assert_eq!(flag(spring, "clicked"), no);
        assert_eq!(flag(autumn, "delivered"), yes);
        assert_eq!(flag(autumn, "opened"), no);
        assert_eq!(flag(Uuid::now_v7(), "opened"), None);
        // Each stored time is whole microseconds, as the compiled SQL compares it.
        let search = f.search_facts();
        assert_eq!(
            search["messages.opened.last_days_ago"]["us"],
            ago(4).timestamp_micros()
        );
        assert_eq!(search[format!("campaigns.{spring}.opened")]["b"], true);
    }
}

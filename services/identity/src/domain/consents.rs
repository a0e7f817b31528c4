//! Consents (GDPR): consent types, a customer's decisions on them, the append-only history of
//! those decisions, and the email bounce state of a customer's address.
use std::collections::{HashMap, hash_map::Entry};

use chrono::{DateTime, Duration, Utc};
use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::CustomerState;

/// What a consent type permits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    DataProcessing,
    Marketing,
    Profiling,
    Other,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::DataProcessing => "data_processing",
            Purpose::Marketing => "marketing",
            Purpose::Profiling => "profiling",
            Purpose::Other => "other",
        }
    }

    pub fn parse_str(s: &str) -> Option<Self> {
        Some(match s {
            "data_processing" => Purpose::DataProcessing,
            "marketing" => Purpose::Marketing,
            "profiling" => Purpose::Profiling,
            "other" => Purpose::Other,
            _ => return None,
        })
    }
}

/// A communication channel a marketing consent covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Channel {
    Email,
    Sms,
    Push,
    Viber,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Push => "push",
            Channel::Viber => "viber",
        }
    }

    pub fn parse_str(s: &str) -> Option<Self> {
        Some(match s {
            "email" => Channel::Email,
            "sms" => Channel::Sms,
            "push" => Channel::Push,
            "viber" => Channel::Viber,
            _ => return None,
        })
    }
}

/// Longest consent text, in characters.
pub const MAX_TEXT_CHARS: usize = 20_000;
/// Longest validity of a grant: 100 years.
pub const MAX_VALIDITY_DAYS: i32 = 36_500;

/// A consent type of a partner. `version` is the version of `text`; `revision` grows with every
/// change and makes the etag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentType {
    pub id: Uuid,
    pub code: String,
    pub display_name: String,
    pub purpose: Purpose,
    /// Empty = all channels.
    pub channels: Vec<Channel>,
    pub text: String,
    pub version: i32,
    /// 0 = a grant is valid until withdrawn.
    pub validity_days: i32,
    pub active: bool,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Fields an update may change, by update-mask path.
pub const UPDATABLE: &[&str] = &[
    "display_name",
    "channels",
    "text",
    "validity_days",
    "active",
];

/// Whether `code` is 1..64 characters of [a-z0-9_].
pub fn is_code(code: &str) -> bool {
    (1..=64).contains(&code.len())
        && code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl ConsentType {
    pub fn etag(&self) -> String {
        format!("r{}", self.revision)
    }

    /// Checks every field, reporting under `consent_type.<field>`.
    pub fn validate(&self, v: &mut Violations) {
        if !is_code(&self.code) {
            v.add("consent_type.code", "must be 1..64 characters of [a-z0-9_]");
        }
        if !(1..=200).contains(&self.display_name.trim().chars().count()) {
            v.add("consent_type.display_name", "must be 1..200 characters");
        }
        if self.text.chars().count() > MAX_TEXT_CHARS {
            v.add(
                "consent_type.text",
                format!("must be at most {MAX_TEXT_CHARS} characters"),
            );
        }
        if !(0..=MAX_VALIDITY_DAYS).contains(&self.validity_days) {
            v.add(
                "consent_type.validity_days",
                format!("must be 0..{MAX_VALIDITY_DAYS} (0 = until withdrawn)"),
            );
        }
        if !self.channels.is_empty() && self.purpose != Purpose::Marketing {
            v.add(
                "consent_type.channels",
                "only a marketing consent covers channels",
            );
        }
    }

    /// Sets a new text; a different text is a new version.
    pub fn set_text(&mut self, text: String) {
        if text != self.text {
            self.text = text;
            self.version += 1;
        }
    }

    /// When a grant given at `at` expires, if it does.
    pub fn expiry_of_grant(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (self.validity_days > 0).then(|| at + Duration::days(i64::from(self.validity_days)))
    }
}

/// What a customer decided, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    Granted,
    Withdrawn,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Granted => "granted",
            Decision::Withdrawn => "withdrawn",
        }
    }

    pub fn parse_str(s: &str) -> Option<Self> {
        match s {
            "granted" => Some(Decision::Granted),
            "withdrawn" => Some(Decision::Withdrawn),
            _ => None,
        }
    }
}

/// The state of a consent as a reader sees it at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsentState {
    Granted,
    Withdrawn,
    Expired,
    NotGiven,
}

impl ConsentState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentState::Granted => "granted",
            ConsentState::Withdrawn => "withdrawn",
            ConsentState::Expired => "expired",
            ConsentState::NotGiven => "not_given",
        }
    }

    pub fn parse_str(s: &str) -> ConsentState {
        match s {
            "granted" => ConsentState::Granted,
            "withdrawn" => ConsentState::Withdrawn,
            "expired" => ConsentState::Expired,
            _ => ConsentState::NotGiven,
        }
    }
}

/// The current decision of one customer on one consent type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub customer_id: Uuid,
    pub consent_type_id: Uuid,
    pub decision: Decision,
    pub text_version: i32,
    pub source: String,
    pub changed_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Consent {
    /// The state at `now`: a grant past its expiry is `Expired`.
    pub fn state_at(&self, now: DateTime<Utc>) -> ConsentState {
        match self.decision {
            Decision::Withdrawn => ConsentState::Withdrawn,
            Decision::Granted if self.expires_at.is_some_and(|e| e <= now) => ConsentState::Expired,
            Decision::Granted => ConsentState::Granted,
        }
    }
}

/// One entry of the append-only consent history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub consent_type_id: Uuid,
    pub previous_state: ConsentState,
    pub new_state: ConsentState,
    pub text_version: i32,
    pub source: String,
    pub api_key_id: Option<Uuid>,
    pub note: String,
    pub changed_at: DateTime<Utc>,
}

/// A decision asked for by GrantConsent or WithdrawConsent, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRequest {
    pub customer_id: Uuid,
    pub decision: Decision,
    /// 0 = the current version of the text (grants only).
    pub text_version: i32,
    pub source: String,
    pub at: DateTime<Utc>,
    pub note: String,
    pub api_key_id: Option<Uuid>,
}

/// What recording a decision does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to record (withdrawing a consent that is not granted).
    Unchanged,
    /// A history entry; `current` is the consent to store when the decision is the newest
    /// one, `None` when an older (back-dated) decision only adds evidence.
    Recorded {
        entry: HistoryEntry,
        current: Option<Consent>,
    },
}

/// Why a decision cannot be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionError {
    /// (field, description)
    Invalid(&'static str, String),
    /// (reason, message)
    Precondition(&'static str, &'static str),
}

/// Applies a decision to the customer's current consent.
///
/// - A grant needs an active type and a text version 1..=current (0 = current); it appends to
///   the history even when the consent is granted already (the newest grant refreshes the time
///   and validity and is the evidence of the text version agreed to).
/// - A withdrawal of a consent that is not granted changes nothing; an expired grant counts as
///   granted here, so a customer's explicit "no" is always kept as evidence.
/// - A decision older than the current one is kept in the history but does not replace it:
///   the most recent decision wins.
pub fn decide(
    consent_type: &ConsentType,
    current: Option<&Consent>,
    req: &DecisionRequest,
    now: DateTime<Utc>,
) -> Result<Outcome, DecisionError> {
    let previous_state = current.map_or(ConsentState::NotGiven, |c| c.state_at(now));
    let text_version = match req.decision {
        Decision::Granted => {
            if !consent_type.active {
                return Err(DecisionError::Precondition(
                    "CONSENT_TYPE_INACTIVE",
                    "the consent type is not offered any more",
                ));
            }
            match req.text_version {
                0 => consent_type.version,
                v if (1..=consent_type.version).contains(&v) => v,
                _ => {
                    return Err(DecisionError::Invalid(
                        "text_version",
                        format!(
                            "must be 1..{} (the versions of the consent text), or 0 for the current",
                            consent_type.version
                        ),
                    ));
                }
            }
        }
        Decision::Withdrawn => match current {
            Some(c) if c.decision == Decision::Granted => c.text_version,
            _ => return Ok(Outcome::Unchanged),
        },
    };
    let consent = Consent {
        customer_id: req.customer_id,
        consent_type_id: consent_type.id,
        decision: req.decision,
        text_version,
        source: req.source.clone(),
        changed_at: req.at,
        expires_at: match req.decision {
            Decision::Granted => consent_type.expiry_of_grant(req.at),
            Decision::Withdrawn => None,
        },
    };
    let newest = current.is_none_or(|c| c.changed_at <= req.at);
    let new_state = if newest {
        consent.state_at(now)
    } else {
        decision_state(req)
    };
    Ok(Outcome::Recorded {
        entry: HistoryEntry {
            id: Uuid::now_v7(),
            customer_id: req.customer_id,
            consent_type_id: consent_type.id,
            previous_state,
            new_state,
            text_version,
            source: req.source.clone(),
            api_key_id: req.api_key_id,
            note: req.note.clone(),
            changed_at: req.at,
        },
        current: newest.then_some(consent),
    })
}

fn decision_state(req: &DecisionRequest) -> ConsentState {
    match req.decision {
        Decision::Granted => ConsentState::Granted,
        Decision::Withdrawn => ConsentState::Withdrawn,
    }
}

/// Checks `source` (1..64 characters) and `note` (up to 2000 characters).
pub fn check_source_and_note(v: &mut Violations, source: &str, note: &str) {
    if !(1..=64).contains(&source.trim().chars().count()) {
        v.add("source", "must be 1..64 characters");
    }
    if note.chars().count() > 2000 {
        v.add("note", "must be at most 2000 characters");
    }
}

/// Soft bounces in a row after which an address is excluded from audiences, like a hard bounce.
pub const SOFT_BOUNCE_LIMIT: i32 = 5;

/// Kind of an email bounce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BounceKind {
    Hard,
    Soft,
}

/// The bounce state of a customer's email address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BounceState {
    pub customer_id: Uuid,
    pub email: String,
    pub hard_bounced: bool,
    pub soft_bounce_count: i32,
    pub last_bounce_at: Option<DateTime<Utc>>,
    pub reset_at: Option<DateTime<Utc>>,
}

/// Email addresses compare without regard to case or surrounding blanks.
pub fn same_email(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

impl BounceState {
    /// A clean state of `email`.
    pub fn clean(customer_id: Uuid, email: &str) -> Self {
        BounceState {
            customer_id,
            email: email.trim().to_owned(),
            ..Default::default()
        }
    }

    /// The state as it applies to the customer's current `email`: a state recorded for
    /// another address does not count (changing the email resets it).
    pub fn for_current_email(self, email: &str) -> Self {
        if same_email(&self.email, email) {
            self
        } else {
            BounceState {
                reset_at: self.reset_at,
                ..BounceState::clean(self.customer_id, email)
            }
        }
    }

    /// Excluded from audiences: hard bounced, or `SOFT_BOUNCE_LIMIT` soft bounces in a row.
    pub fn excluded(&self) -> bool {
        self.hard_bounced || self.soft_bounce_count >= SOFT_BOUNCE_LIMIT
    }

    /// Counts a bounce of the current address.
    pub fn record(&mut self, kind: BounceKind, at: DateTime<Utc>) {
        match kind {
            BounceKind::Hard => self.hard_bounced = true,
            BounceKind::Soft => self.soft_bounce_count = self.soft_bounce_count.saturating_add(1),
        }
        if self.last_bounce_at.is_none_or(|t| t < at) {
            self.last_bounce_at = Some(at);
        }
    }

    /// A successful delivery ends a run of soft bounces; returns whether anything changed.
    pub fn delivered(&mut self) -> bool {
        let changed = self.soft_bounce_count != 0;
        self.soft_bounce_count = 0;
        changed
    }

    /// Clears everything (e.g. the customer confirmed the address).
    pub fn reset(&mut self, at: DateTime<Utc>) {
        *self = BounceState {
            reset_at: Some(at),
            ..BounceState::clean(self.customer_id, &self.email)
        };
    }
}

/// Whether a marketing consent with these `channels` covers `channel` (empty = all channels).
pub fn covers_channel(channels: &[Channel], channel: Channel) -> bool {
    channels.is_empty() || channels.contains(&channel)
}

impl ConsentType {
    /// Whether a grant of this type permits marketing through `channel`.
    pub fn permits_marketing_on(&self, channel: Channel) -> bool {
        self.purpose == Purpose::Marketing && covers_channel(&self.channels, channel)
    }
}

/// Where an unsubscribe link's withdrawal is recorded as coming from.
pub const UNSUBSCRIBE_SOURCE: &str = "unsubscribe_link";

/// Most customers one CheckContactability call may ask about.
pub const MAX_CONTACT_BATCH: usize = 1_000;

/// What a message is for, which decides the consents it needs: marketing needs consent to
/// data processing and a marketing consent covering the channel, a service (system) message
/// only consent to data processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactPurpose {
    Marketing,
    Service,
}

/// Why a customer may not be messaged, in the order the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactRefusal {
    /// Unknown, erased, merged into another account, or another partner's.
    UnknownCustomer,
    NoDataProcessingConsent,
    NoMarketingConsent,
    NoAddress,
    EmailBounced,
}

/// What a send-time check needs of a customer account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactDetails {
    pub customer_id: Uuid,
    pub state: CustomerState,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: String,
}

/// A customer's current consent together with what its type permits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldConsent {
    pub purpose: Purpose,
    /// The type's channels; empty = all.
    pub channels: Vec<Channel>,
    pub consent: Consent,
}

impl HeldConsent {
    fn granted_at(&self, now: DateTime<Utc>) -> bool {
        self.consent.state_at(now) == ConsentState::Granted
    }
}

/// Where and to whom a message may be sent now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The email, the phone (SMS, Viber) or the customer id (push).
    pub address: String,
    pub first_name: String,
    pub last_name: String,
}

/// Whether a customer may be messaged on `channel` for `purpose` at `now`, and at which
/// address. The checks run in this order and the first that fails is the refusal:
///
/// 1. the account exists and is live (not erased, not merged) — `UnknownCustomer`;
/// 2. a granted, unexpired consent whose type's purpose is data processing —
///    `NoDataProcessingConsent`;
/// 3. for marketing, a granted, unexpired marketing consent whose type covers the channel
///    (no channels = all) — `NoMarketingConsent`;
/// 4. an address for the channel: the email, the phone for SMS and Viber, the customer id
///    for push (always there) — `NoAddress`;
/// 5. for email, the bounce state of the current address does not exclude it (a hard bounce,
///    or `SOFT_BOUNCE_LIMIT` soft bounces in a row; a state of an older address does not
///    count) — `EmailBounced`.
///
/// "Granted and unexpired" is [`Consent::state_at`] being `Granted`: the expiry was fixed
/// when the consent was granted, from the type's `validity_days`. `consents` are the
/// customer's current consents (any purpose; others are ignored), `bounce` the stored bounce
/// state of the customer, if any.
pub fn contactability(
    customer: Option<&ContactDetails>,
    consents: &[HeldConsent],
    bounce: Option<&BounceState>,
    channel: Channel,
    purpose: ContactPurpose,
    now: DateTime<Utc>,
) -> Result<Contact, ContactRefusal> {
    let customer = customer
        .filter(|c| !matches!(c.state, CustomerState::Erased | CustomerState::Merged))
        .ok_or(ContactRefusal::UnknownCustomer)?;
    let granted = |c: &&HeldConsent| c.granted_at(now);
    if !consents
        .iter()
        .filter(granted)
        .any(|c| c.purpose == Purpose::DataProcessing)
    {
        return Err(ContactRefusal::NoDataProcessingConsent);
    }
    if purpose == ContactPurpose::Marketing
        && !consents
            .iter()
            .filter(granted)
            .any(|c| c.purpose == Purpose::Marketing && covers_channel(&c.channels, channel))
    {
        return Err(ContactRefusal::NoMarketingConsent);
    }
    let address = match channel {
        Channel::Email => customer.email.trim().to_owned(),
        Channel::Sms | Channel::Viber => customer.phone.trim().to_owned(),
        Channel::Push => customer.customer_id.to_string(),
    };
    if address.is_empty() {
        return Err(ContactRefusal::NoAddress);
    }
    if channel == Channel::Email
        && bounce.is_some_and(|b| b.clone().for_current_email(&address).excluded())
    {
        return Err(ContactRefusal::EmailBounced);
    }
    Ok(Contact {
        address,
        first_name: customer.first_name.clone(),
        last_name: customer.last_name.clone(),
    })
}

/// Checks the customer ids of a CheckContactability request (1..=`MAX_CONTACT_BATCH` UUIDs,
/// each at most once), reporting under `field` and `field[i]`; answers the parsed ids.
pub fn parse_contact_batch(v: &mut Violations, field: &str, raw: &[String]) -> Vec<Uuid> {
    if raw.is_empty() || raw.len() > MAX_CONTACT_BATCH {
        v.add(
            field,
            format!(
                "must hold 1..{MAX_CONTACT_BATCH} customer ids (got {})",
                raw.len()
            ),
        );
        return Vec::new();
    }
    let mut seen = HashMap::with_capacity(raw.len());
    let mut ids = Vec::with_capacity(raw.len());
    for (i, value) in raw.iter().enumerate() {
        let name = format!("{field}[{i}]");
        let Some(id) = v.uuid(&name, value) else {
            continue;
        };
        match seen.entry(id) {
            Entry::Occupied(first) => v.add(name, format!("repeats {field}[{}]", first.get())),
            Entry::Vacant(slot) => {
                slot.insert(i);
                ids.push(id);
            }
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_channel_including_viber_is_stored_and_read_back() {
        for c in [Channel::Email, Channel::Sms, Channel::Push, Channel::Viber] {
            assert_eq!(Channel::parse_str(c.as_str()), Some(c));
        }
        assert_eq!(Channel::parse_str("fax"), None);
    }

    fn consent_type() -> ConsentType {
        let now = Utc::now();
        ConsentType {
            id: Uuid::now_v7(),
            code: "newsletter".into(),
            display_name: "Newsletter".into(),
            purpose: Purpose::Marketing,
            channels: vec![Channel::Email],
            text: "We may send you offers.".into(),
            version: 1,
            validity_days: 0,
            active: true,
            revision: 1,
            created_at: now,
            updated_at: now,
        }
    }

    fn request(decision: Decision, at: DateTime<Utc>) -> DecisionRequest {
        DecisionRequest {
            customer_id: Uuid::now_v7(),
            decision,
            text_version: 0,
            source: "eshop".into(),
            at,
            note: String::new(),
            api_key_id: None,
        }
    }

    #[test]
    fn a_consent_type_needs_a_code_a_name_and_channels_only_for_marketing() {
        let mut ok = Violations::new();
        consent_type().validate(&mut ok);
        assert!(ok.is_empty());
        let mut v = Violations::new();
        ConsentType {
            code: "News Letter".into(),
            display_name: "".into(),
            purpose: Purpose::Profiling,
            validity_days: -1,
            ..consent_type()
        }
        .validate(&mut v);
        let text = v.into_result().unwrap_err().to_string();
        for f in ["code", "display_name", "channels", "validity_days"] {
            assert!(text.contains(&format!("consent_type.{f}")), "{f}: {text}");
        }
    }

    #[test]
    fn a_new_text_is_a_new_version_and_the_same_text_is_not() {
        let mut t = consent_type();
        t.set_text("We may send you offers.".into());
        assert_eq!(t.version, 1);
        t.set_text("We may send you offers by email.".into());
        assert_eq!(t.version, 2);
    }

    #[test]
    fn a_grant_records_the_current_text_version_and_expires_after_the_validity() {
        let now = Utc::now();
        let t = ConsentType {
            validity_days: 30,
            version: 3,
            ..consent_type()
        };
        let Outcome::Recorded { entry, current } =
            decide(&t, None, &request(Decision::Granted, now), now).unwrap()
        else {
            panic!("a grant is recorded");
        };
        let current = current.expect("newest decision");
        assert_eq!(entry.previous_state, ConsentState::NotGiven);
        assert_eq!(entry.new_state, ConsentState::Granted);
        assert_eq!(current.text_version, 3);
        assert_eq!(current.expires_at, Some(now + Duration::days(30)));
        assert_eq!(
            current.state_at(now + Duration::days(31)),
            ConsentState::Expired
        );
    }

    #[test]
    fn a_grant_of_an_unknown_text_version_or_an_inactive_type_is_refused() {
        let now = Utc::now();
        let mut req = request(Decision::Granted, now);
        req.text_version = 2;
        assert!(matches!(
            decide(&consent_type(), None, &req, now),
            Err(DecisionError::Invalid("text_version", _))
        ));
        let inactive = ConsentType {
            active: false,
            ..consent_type()
        };
        assert_eq!(
            decide(&inactive, None, &request(Decision::Granted, now), now),
            Err(DecisionError::Precondition(
                "CONSENT_TYPE_INACTIVE",
                "the consent type is not offered any more"
            ))
        );
    }

    #[test]
    fn withdrawing_what_is_not_granted_changes_nothing() {
        let now = Utc::now();
        let t = consent_type();
        assert_eq!(
            decide(&t, None, &request(Decision::Withdrawn, now), now),
            Ok(Outcome::Unchanged)
        );
        let withdrawn = Consent {
            customer_id: Uuid::now_v7(),
            consent_type_id: t.id,
            decision: Decision::Withdrawn,
            text_version: 1,
            source: "eshop".into(),
            changed_at: now,
            expires_at: None,
        };
        assert_eq!(
            decide(
                &t,
                Some(&withdrawn),
                &request(Decision::Withdrawn, now),
                now
            ),
            Ok(Outcome::Unchanged)
        );
    }

    #[test]
    fn an_older_decision_is_kept_as_evidence_but_the_newest_one_wins() {
        let now = Utc::now();
        let t = consent_type();
        let granted = Consent {
            customer_id: Uuid::now_v7(),
            consent_type_id: t.id,
            decision: Decision::Granted,
            text_version: 1,
            source: "pos".into(),
            changed_at: now,
            expires_at: None,
        };
        let old = request(Decision::Withdrawn, now - Duration::days(1));
        let Ok(Outcome::Recorded { entry, current }) = decide(&t, Some(&granted), &old, now) else {
            panic!("recorded");
        };
        assert!(current.is_none(), "the newer grant stays");
        assert_eq!(entry.new_state, ConsentState::Withdrawn);
        let newer = request(Decision::Withdrawn, now + Duration::seconds(1));
        let Ok(Outcome::Recorded { current, .. }) = decide(&t, Some(&granted), &newer, now) else {
            panic!("recorded");
        };
        assert_eq!(current.unwrap().decision, Decision::Withdrawn);
    }

    #[test]
    fn five_soft_bounces_in_a_row_exclude_an_address_and_a_delivery_ends_the_run() {
        let now = Utc::now();
        let mut s = BounceState::clean(Uuid::now_v7(), "a@example.com");
        for _ in 0..SOFT_BOUNCE_LIMIT - 1 {
            s.record(BounceKind::Soft, now);
        }
        assert!(!s.excluded());
        assert!(s.delivered());
        assert_eq!(s.soft_bounce_count, 0);
        for _ in 0..SOFT_BOUNCE_LIMIT {
            s.record(BounceKind::Soft, now);
        }
        assert!(s.excluded());
        s.reset(now);
        assert!(!s.excluded());
        assert_eq!(s.reset_at, Some(now));
        s.record(BounceKind::Hard, now);
        assert!(s.excluded());
        assert_eq!(s.last_bounce_at, Some(now));
    }

    #[test]
    fn a_state_of_an_old_address_does_not_apply_to_a_new_one() {
        let mut s = BounceState::clean(Uuid::now_v7(), "Old@Example.com");
        s.record(BounceKind::Hard, Utc::now());
        assert!(s.clone().for_current_email("old@example.com").hard_bounced);
        let fresh = s.for_current_email("new@example.com");
        assert!(!fresh.hard_bounced);
        assert_eq!(fresh.email, "new@example.com");
    }

    fn details(email: &str, phone: &str) -> ContactDetails {
        ContactDetails {
            customer_id: Uuid::now_v7(),
            state: CustomerState::Active,
            first_name: "Jana".into(),
            last_name: "Nováková".into(),
            email: email.into(),
            phone: phone.into(),
        }
    }

    fn held(purpose: Purpose, channels: &[Channel], granted_at: DateTime<Utc>) -> HeldConsent {
        HeldConsent {
            purpose,
            channels: channels.to_vec(),
            consent: Consent {
                customer_id: Uuid::now_v7(),
                consent_type_id: Uuid::now_v7(),
                decision: Decision::Granted,
                text_version: 1,
                source: "eshop".into(),
                changed_at: granted_at,
                expires_at: None,
            },
        }
    }

    /// Consent to data processing and an email newsletter.
    fn both(now: DateTime<Utc>) -> Vec<HeldConsent> {
        vec![
            held(Purpose::DataProcessing, &[], now),
            held(Purpose::Marketing, &[Channel::Email], now),
        ]
    }

    #[test]
    fn a_customer_with_both_consents_is_contactable_by_email_at_their_address() {
        let now = Utc::now();
        let jana = details(" jana@example.com ", "");
        let contact = contactability(
            Some(&jana),
            &both(now),
            None,
            Channel::Email,
            ContactPurpose::Marketing,
            now,
        );
        assert_eq!(
            contact,
            Ok(Contact {
                address: "jana@example.com".into(),
                first_name: "Jana".into(),
                last_name: "Nováková".into(),
            })
        );
    }

    #[test]
    fn unknown_erased_and_merged_customers_are_unknown() {
        let now = Utc::now();
        let check = |c: Option<&ContactDetails>| {
            contactability(
                c,
                &both(now),
                None,
                Channel::Email,
                ContactPurpose::Service,
                now,
            )
        };
        assert_eq!(check(None), Err(ContactRefusal::UnknownCustomer));
        for state in [CustomerState::Erased, CustomerState::Merged] {
            let gone = ContactDetails {
                state,
                ..details("jana@example.com", "")
            };
            assert_eq!(check(Some(&gone)), Err(ContactRefusal::UnknownCustomer));
        }
        let blocked = ContactDetails {
            state: CustomerState::Blocked,
            ..details("jana@example.com", "")
        };
        assert!(
            check(Some(&blocked)).is_ok(),
            "blocking is about loyalty use"
        );
    }

    #[test]
    fn marketing_needs_a_marketing_consent_covering_the_channel_and_service_messages_do_not() {
        let now = Utc::now();
        let jana = details("jana@example.com", "+420777123456");
        let check = |consents: &[HeldConsent], channel, purpose| {
            contactability(Some(&jana), consents, None, channel, purpose, now)
        };
        // The newsletter covers email only.
        assert_eq!(
            check(&both(now), Channel::Sms, ContactPurpose::Marketing),
            Err(ContactRefusal::NoMarketingConsent)
        );
        assert_eq!(
            check(&both(now), Channel::Sms, ContactPurpose::Service).map(|c| c.address),
            Ok("+420777123456".into())
        );
        // A marketing type without channels covers them all.
        let all = vec![
            held(Purpose::DataProcessing, &[], now),
            held(Purpose::Marketing, &[], now),
        ];
        for channel in [Channel::Email, Channel::Sms, Channel::Push, Channel::Viber] {
            assert!(
                check(&all, channel, ContactPurpose::Marketing).is_ok(),
                "{channel:?}"
            );
        }
        // Profiling is no marketing consent.
        let profiling = vec![
            held(Purpose::DataProcessing, &[], now),
            held(Purpose::Profiling, &[], now),
        ];
        assert_eq!(
            check(&profiling, Channel::Email, ContactPurpose::Marketing),
            Err(ContactRefusal::NoMarketingConsent)
        );
    }

    #[test]
    fn withdrawn_and_expired_consents_do_not_count() {
        let now = Utc::now();
        let jana = details("jana@example.com", "");
        let check = |consents: &[HeldConsent], purpose| {
            contactability(Some(&jana), consents, None, Channel::Email, purpose, now)
        };
        assert_eq!(
            check(&[], ContactPurpose::Service),
            Err(ContactRefusal::NoDataProcessingConsent)
        );
        let mut expired = both(now);
        expired[0].consent.expires_at = Some(now);
        assert_eq!(
            check(&expired, ContactPurpose::Service),
            Err(ContactRefusal::NoDataProcessingConsent)
        );
        let mut withdrawn = both(now);
        withdrawn[1].consent.decision = Decision::Withdrawn;
        assert_eq!(
            check(&withdrawn, ContactPurpose::Marketing),
            Err(ContactRefusal::NoMarketingConsent)
        );
        let mut valid = both(now);
        valid[1].consent.expires_at = Some(now + Duration::days(1));
        assert!(check(&valid, ContactPurpose::Marketing).is_ok());
        let mut lapsed = valid;
        lapsed[1].consent.expires_at = Some(now - Duration::seconds(1));
        assert_eq!(
            check(&lapsed, ContactPurpose::Marketing),
            Err(ContactRefusal::NoMarketingConsent)
        );
    }

    #[test]
    fn an_address_is_needed_except_for_push_which_addresses_the_customer_id() {
        let now = Utc::now();
        let all = vec![
            held(Purpose::DataProcessing, &[], now),
            held(Purpose::Marketing, &[], now),
        ];
        let nobody = details("", " ");
        let check = |channel| {
            contactability(
                Some(&nobody),
                &all,
                None,
                channel,
                ContactPurpose::Marketing,
                now,
            )
        };
        for channel in [Channel::Email, Channel::Sms, Channel::Viber] {
            assert_eq!(
                check(channel),
                Err(ContactRefusal::NoAddress),
                "{channel:?}"
            );
        }
        assert_eq!(
            check(Channel::Push).map(|c| c.address),
            Ok(nobody.customer_id.to_string())
        );
    }

    #[test]
    fn a_bounced_current_email_is_refused_but_a_bounce_of_an_older_address_is_not() {
        let now = Utc::now();
        let jana = details("jana@example.com", "+420777123456");
        let check = |bounce: &BounceState, channel| {
            contactability(
                Some(&jana),
                &[
                    held(Purpose::DataProcessing, &[], now),
                    held(Purpose::Marketing, &[], now),
                ],
                Some(bounce),
                channel,
                ContactPurpose::Marketing,
                now,
            )
        };
        let mut hard = BounceState::clean(jana.customer_id, "JANA@example.com");
        hard.record(BounceKind::Hard, now);
        assert_eq!(
            check(&hard, Channel::Email),
            Err(ContactRefusal::EmailBounced)
        );
        assert!(check(&hard, Channel::Sms).is_ok(), "only email bounces");
        let mut old = BounceState::clean(jana.customer_id, "old@example.com");
        old.record(BounceKind::Hard, now);
        assert!(check(&old, Channel::Email).is_ok());
        let mut soft = BounceState::clean(jana.customer_id, "jana@example.com");
        for _ in 0..SOFT_BOUNCE_LIMIT - 1 {
            soft.record(BounceKind::Soft, now);
        }
        assert!(check(&soft, Channel::Email).is_ok());
        soft.record(BounceKind::Soft, now);
        assert_eq!(
            check(&soft, Channel::Email),
            Err(ContactRefusal::EmailBounced)
        );
    }

    #[test]
    fn the_first_failing_check_is_the_refusal() {
        let now = Utc::now();
        let nobody = details("", "");
        let mut hard = BounceState::clean(nobody.customer_id, "");
        hard.record(BounceKind::Hard, now);
        let check = |consents: &[HeldConsent]| {
            contactability(
                Some(&nobody),
                consents,
                Some(&hard),
                Channel::Email,
                ContactPurpose::Marketing,
                now,
            )
        };
        assert_eq!(check(&[]), Err(ContactRefusal::NoDataProcessingConsent));
        assert_eq!(
            check(&[held(Purpose::DataProcessing, &[], now)]),
            Err(ContactRefusal::NoMarketingConsent)
        );
        assert_eq!(check(&both(now)), Err(ContactRefusal::NoAddress));
    }

    #[test]
    fn a_batch_holds_1_to_1000_distinct_uuids_and_each_fault_names_its_position() {
        let ids: Vec<String> = (0..3).map(|_| Uuid::now_v7().to_string()).collect();
        let mut v = Violations::new();
        assert_eq!(parse_contact_batch(&mut v, "customer_ids", &ids).len(), 3);
        assert!(v.is_empty());

        let fields = |raw: &[String]| {
            let mut v = Violations::new();
            parse_contact_batch(&mut v, "customer_ids", raw);
            v.into_vec()
                .into_iter()
                .map(|f| f.field)
                .collect::<Vec<_>>()
        };
        assert_eq!(fields(&[]), vec!["customer_ids"]);
        let many: Vec<String> = (0..=MAX_CONTACT_BATCH)
            .map(|_| Uuid::now_v7().to_string())
            .collect();
        assert_eq!(fields(&many), vec!["customer_ids"]);
        assert!(fields(&many[..MAX_CONTACT_BATCH]).is_empty());
        let faulty = vec![
            ids[0].clone(),
            "nope".into(),
            ids[1].clone(),
            ids[0].to_uppercase(),
            ids[0].clone(),
        ];
        assert_eq!(
            fields(&faulty),
            vec!["customer_ids[1]", "customer_ids[3]", "customer_ids[4]"]
        );
    }
}

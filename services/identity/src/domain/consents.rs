//! Consents (GDPR): consent types, a customer's decisions on them, the append-only history of
//! those decisions, and the email bounce state of a customer's address.
use chrono::{DateTime, Duration, Utc};
use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
}

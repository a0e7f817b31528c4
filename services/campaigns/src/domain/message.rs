//! Messages: one rendered template for one recipient, from a campaign, a workflow or
//! SendMessage; how they move through the send queue, retry, and take delivery and response
//! events; the campaign throttle; unsubscribe link tokens.
//!
//! ```text
//! QUEUED ──consent or address missing at send time──▶ SUPPRESSED
//!   │ ──provider refused, or temporary failures past the last attempt──▶ FAILED
//!   │ ──campaign cancelled──▶ CANCELLED
//!   └──handed to the adapter──▶ SENT ──▶ DELIVERED ──▶ (opens, clicks, unsubscribe, complaint)
//!                                 └──▶ BOUNCED (hard or soft)
//! ```
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use super::{Channel, TemplateKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MessageState {
    Queued,
    Suppressed,
    Sent,
    Delivered,
    Bounced,
    Failed,
    Cancelled,
}

impl MessageState {
    pub const ALL: [MessageState; 7] = [
        MessageState::Queued,
        MessageState::Suppressed,
        MessageState::Sent,
        MessageState::Delivered,
        MessageState::Bounced,
        MessageState::Failed,
        MessageState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Queued => "queued",
            MessageState::Suppressed => "suppressed",
            MessageState::Sent => "sent",
            MessageState::Delivered => "delivered",
            MessageState::Bounced => "bounced",
            MessageState::Failed => "failed",
            MessageState::Cancelled => "cancelled",
        }
    }

    pub fn parse_str(s: &str) -> Option<MessageState> {
        MessageState::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Whether the message reached the adapter (and counts as sent in statistics).
    pub fn was_sent(self) -> bool {
        matches!(
            self,
            MessageState::Sent | MessageState::Delivered | MessageState::Bounced
        )
    }
}

/// What a message is for, which decides the consents it needs (glossary: campaign templates
/// need marketing consent, system templates only consent to personal data processing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Purpose {
    Marketing,
    Service,
}

impl Purpose {
    pub fn of(kind: TemplateKind) -> Purpose {
        match kind {
            TemplateKind::Campaign => Purpose::Marketing,
            TemplateKind::System => Purpose::Service,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Marketing => "marketing",
            Purpose::Service => "service",
        }
    }

    pub fn parse_str(s: &str) -> Option<Purpose> {
        match s {
            "marketing" => Some(Purpose::Marketing),
            "service" => Some(Purpose::Service),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BounceType {
    Hard,
    Soft,
}

/// A message as the queue and tracking keep it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: Uuid,
    pub customer_id: Option<Uuid>,
    pub channel: Channel,
    pub message_template_id: Uuid,
    pub campaign_id: Option<Uuid>,
    pub workflow_execution_id: Option<Uuid>,
    pub purpose: Purpose,
    pub address: String,
    /// Extra template variables (dotted names), e.g. `voucher.code`.
    pub variables: std::collections::BTreeMap<String, String>,
    pub state: MessageState,
    pub attempts: i32,
    pub due_at: DateTime<Utc>,
    pub bounce_type: Option<BounceType>,
    pub failure_reason: String,
    pub provider_message_id: String,
    pub voucher_code: String,
    pub open_count: i32,
    pub click_count: i32,
    pub queued_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub first_open_at: Option<DateTime<Utc>>,
    pub first_click_at: Option<DateTime<Utc>>,
    pub unsubscribed_at: Option<DateTime<Utc>>,
}

/// Most extra variables a message takes.
pub const MAX_VARIABLES: usize = 200;

/// Whether `a` is an address of `channel` for a recipient who is not a customer: an email, an
/// E.164 phone number (`+` and 8..15 digits) for SMS and Viber, a push token (1..500
/// characters without spaces).
pub fn is_address(channel: Channel, a: &str) -> bool {
    match channel {
        Channel::Email => super::is_email(a),
        Channel::Sms | Channel::Viber => a
            .strip_prefix('+')
            .is_some_and(|d| (8..=15).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit())),
        Channel::Push => {
            (1..=500).contains(&a.chars().count()) && !a.chars().any(char::is_whitespace)
        }
    }
}

impl Message {
    /// A message queued now for one recipient, outside any campaign.
    pub fn direct(
        template: &super::MessageTemplate,
        customer_id: Option<Uuid>,
        address: String,
        variables: std::collections::BTreeMap<String, String>,
        workflow_execution_id: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Message {
        Message {
            id: Uuid::now_v7(),
            customer_id,
            channel: template.channel,
            message_template_id: template.id,
            campaign_id: None,
            workflow_execution_id,
            purpose: Purpose::of(template.kind),
            address,
            voucher_code: variables.get("voucher.code").cloned().unwrap_or_default(),
            variables,
            state: MessageState::Queued,
            attempts: 0,
            due_at: now,
            bounce_type: None,
            failure_reason: String::new(),
            provider_message_id: String::new(),
            open_count: 0,
            click_count: 0,
            queued_at: now,
            sent_at: None,
            delivered_at: None,
            first_open_at: None,
            first_click_at: None,
            unsubscribed_at: None,
        }
    }
}

/// What became of a claimed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handed to the adapter: the provider's id and the address used.
    Sent {
        provider_message_id: String,
        address: String,
    },
    /// Not sent: no consent or no address (a recorded reason).
    Suppressed(String),
    /// Never deliverable, or out of attempts.
    Failed(String),
    /// A temporary failure: tried again at `due`.
    Retry { due: DateTime<Utc>, reason: String },
}

impl Message {
    /// The message as it is after `outcome` at `now`: what a batch's row is written as (a
    /// batch's messages get their row only once they were handled, see `store::batches`).
    pub fn settled(mut self, outcome: &Outcome, now: DateTime<Utc>) -> Message {
        match outcome {
            Outcome::Sent {
                provider_message_id,
                address,
            } => {
                self.state = MessageState::Sent;
                self.sent_at = Some(now);
                self.provider_message_id = provider_message_id.clone();
                self.address = address.clone();
                self.failure_reason = String::new();
            }
            Outcome::Suppressed(reason) => {
                self.state = MessageState::Suppressed;
                self.failure_reason = reason.clone();
            }
            Outcome::Failed(reason) => {
                self.state = MessageState::Failed;
                self.failure_reason = reason.clone();
            }
            Outcome::Retry { due, reason } => {
                self.state = MessageState::Queued;
                self.due_at = *due;
                self.failure_reason = reason.clone();
            }
        }
        self
    }

    /// The message as a cancelled campaign leaves it unsent.
    pub fn cancelled(mut self) -> Message {
        self.state = MessageState::Cancelled;
        self
    }
}

/// Longest failure reason kept.
pub const MAX_REASON_CHARS: usize = 500;

pub fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The wait before attempt `attempts + 1` after a temporary failure: `base` doubled per attempt
/// made, at most an hour. `None` once `attempts` reached `max_attempts`: the message fails.
pub fn retry_delay(attempts: u32, max_attempts: u32, base: Duration) -> Option<Duration> {
    if attempts >= max_attempts {
        return None;
    }
    let doublings = attempts.saturating_sub(1).min(20);
    let delay = base * (1_i32 << doublings);
    Some(delay.min(Duration::hours(1)))
}

/// The campaign throttle, a GCRA ("virtual scheduling"): each message of a campaign sending at
/// `rate_per_minute` takes `60 s / rate` of its clock `tat`; a batch may run ahead of `now` by
/// at most `burst` messages. Answers how many of `wanted` may go now and the clock after them.
/// The clock lives on the campaign's row, so every replica shares one rate.
pub fn throttle(
    tat: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    rate_per_minute: i32,
    wanted: usize,
    burst: usize,
) -> (usize, Option<DateTime<Utc>>) {
    if rate_per_minute <= 0 {
        return (wanted, tat);
    }
    let interval = Duration::microseconds(60_000_000 / i64::from(rate_per_minute));
    let start = tat.map_or(now, |t| t.max(now));
    // Messages that fit before `now + burst * interval`.
    let horizon = now + interval * i32::try_from(burst).unwrap_or(i32::MAX);
    let room = if start >= horizon {
        0
    } else {
        let us = (horizon - start).num_microseconds().unwrap_or(i64::MAX);
        let per = interval.num_microseconds().unwrap_or(1).max(1);
        usize::try_from((us + per - 1) / per).unwrap_or(usize::MAX)
    };
    let n = wanted.min(room);
    if n == 0 {
        return (0, Some(start));
    }
    (
        n,
        Some(start + interval * i32::try_from(n).unwrap_or(i32::MAX)),
    )
}

/// Kind of a delivery or response event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryEventType {
    Delivered,
    HardBounce,
    SoftBounce,
    Open,
    Click,
    Unsubscribe,
    Complaint,
    Failed,
}

impl DeliveryEventType {
    pub const ALL: [DeliveryEventType; 8] = [
        DeliveryEventType::Delivered,
        DeliveryEventType::HardBounce,
        DeliveryEventType::SoftBounce,
        DeliveryEventType::Open,
        DeliveryEventType::Click,
        DeliveryEventType::Unsubscribe,
        DeliveryEventType::Complaint,
        DeliveryEventType::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryEventType::Delivered => "delivered",
            DeliveryEventType::HardBounce => "hard_bounce",
            DeliveryEventType::SoftBounce => "soft_bounce",
            DeliveryEventType::Open => "open",
            DeliveryEventType::Click => "click",
            DeliveryEventType::Unsubscribe => "unsubscribe",
            DeliveryEventType::Complaint => "complaint",
            DeliveryEventType::Failed => "failed",
        }
    }

    pub fn parse_str(s: &str) -> Option<DeliveryEventType> {
        DeliveryEventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Why a delivery event does not apply to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventRule {
    /// The message never reached the adapter (queued, suppressed, failed before sending or
    /// cancelled): nothing can have been delivered, opened or clicked.
    NotSent,
}

impl EventRule {
    pub fn reason(self) -> &'static str {
        match self {
            EventRule::NotSent => "MESSAGE_NOT_SENT",
        }
    }
}

/// What an event changed, beyond the message itself: which domain events to publish.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventEffects {
    /// First open or first click (unique counts in statistics).
    pub first: bool,
    /// The recipient unsubscribed now (not before): identity withdraws the consent.
    pub unsubscribed: bool,
}

impl Message {
    /// The message after `event` at `at`. Events may arrive out of order (a click before its
    /// delivery report): an open or click implies delivery; a late DELIVERED after a bounce
    /// does not undo the bounce.
    pub fn apply(
        &self,
        event: DeliveryEventType,
        at: DateTime<Utc>,
        diagnostic: &str,
    ) -> Result<(Message, EventEffects), EventRule> {
        if self.sent_at.is_none() || !(self.state.was_sent() || self.state == MessageState::Failed)
        {
            return Err(EventRule::NotSent);
        }
        let mut m = self.clone();
        let mut fx = EventEffects::default();
        let delivered = |m: &mut Message| {
            if m.state == MessageState::Sent {
                m.state = MessageState::Delivered;
            }
            if m.delivered_at.is_none() && m.state == MessageState::Delivered {
                m.delivered_at = Some(at);
            }
        };
        match event {
            DeliveryEventType::Delivered => delivered(&mut m),
            DeliveryEventType::HardBounce | DeliveryEventType::SoftBounce => {
                m.state = MessageState::Bounced;
                m.bounce_type = Some(if event == DeliveryEventType::HardBounce {
                    BounceType::Hard
                } else {
                    BounceType::Soft
                });
                m.failure_reason = clip(diagnostic, MAX_REASON_CHARS);
            }
            DeliveryEventType::Open => {
                delivered(&mut m);
                m.open_count = m.open_count.saturating_add(1);
                fx.first = m.first_open_at.is_none();
                m.first_open_at.get_or_insert(at);
            }
            DeliveryEventType::Click => {
                delivered(&mut m);
                m.click_count = m.click_count.saturating_add(1);
                fx.first = m.first_click_at.is_none();
                m.first_click_at.get_or_insert(at);
            }
            DeliveryEventType::Unsubscribe | DeliveryEventType::Complaint => {
                fx.unsubscribed = m.unsubscribed_at.is_none();
                m.unsubscribed_at.get_or_insert(at);
                if event == DeliveryEventType::Complaint && m.failure_reason.is_empty() {
                    m.failure_reason = "marked as spam".into();
                }
            }
            DeliveryEventType::Failed => {
                m.state = MessageState::Failed;
                m.failure_reason = clip(diagnostic, MAX_REASON_CHARS);
            }
        }
        Ok((m, fx))
    }
}

/// Unsubscribe link tokens: the message id and a MAC over it with the link secret, so a link
/// cannot be forged for another message. `<32 hex id>.<32 hex mac>`.
pub fn unsubscribe_token(message_id: Uuid, secret: &[u8]) -> String {
    format!(
        "{}.{}",
        message_id.simple(),
        hex::encode(mac(message_id, secret))
    )
}

/// The message a token names, if its MAC is right.
pub fn verify_unsubscribe_token(token: &str, secret: &[u8]) -> Option<Uuid> {
    let (id, tag) = token.trim().split_once('.')?;
    let id = Uuid::try_parse(id).ok()?;
    let tag = hex::decode(tag).ok()?;
    let expected = mac(id, secret);
    // Constant time: a forger learns nothing from how long the comparison took.
    (tag.len() == expected.len()
        && tag
            .iter()
            .zip(expected.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0)
        .then_some(id)
}

/// HMAC-SHA-256 (RFC 2104) of the id, cut to 128 bits.
fn mac(id: Uuid, secret: &[u8]) -> [u8; 16] {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"unsubscribe:");
    mac.update(id.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&mac.finalize().into_bytes()[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn a_settled_message_takes_its_outcome() {
        let now = at("2026-12-07T10:00:00Z");
        let mut queued = sent();
        queued.state = MessageState::Queued;
        queued.sent_at = None;
        queued.provider_message_id.clear();
        let s = queued.clone().settled(
            &Outcome::Sent {
                provider_message_id: "file:1".into(),
                address: "b@example.com".into(),
            },
            now,
        );
        assert_eq!(
            (
                s.state,
                s.sent_at,
                s.provider_message_id.as_str(),
                s.address.as_str()
            ),
            (MessageState::Sent, Some(now), "file:1", "b@example.com")
        );
        let s = queued
            .clone()
            .settled(&Outcome::Suppressed("no consent".into()), now);
        assert_eq!((s.state, s.sent_at), (MessageState::Suppressed, None));
        assert_eq!(s.failure_reason, "no consent");
        let s = queued
            .clone()
            .settled(&Outcome::Failed("refused".into()), now);
        assert_eq!(s.state, MessageState::Failed);
        let due = now + Duration::seconds(30);
        let s = queued.clone().settled(
            &Outcome::Retry {
                due,
                reason: "busy".into(),
            },
            now,
        );
        assert_eq!(
            (s.state, s.due_at, s.sent_at),
            (MessageState::Queued, due, None)
        );
    }

    fn sent() -> Message {
        Message {
            id: Uuid::now_v7(),
            customer_id: Some(Uuid::now_v7()),
            channel: Channel::Email,
            message_template_id: Uuid::now_v7(),
            campaign_id: Some(Uuid::now_v7()),
            workflow_execution_id: None,
            purpose: Purpose::Marketing,
            address: "a@example.com".into(),
            variables: Default::default(),
            state: MessageState::Sent,
            attempts: 1,
            due_at: at("2026-12-07T10:00:00Z"),
            bounce_type: None,
            failure_reason: String::new(),
            provider_message_id: "p-1".into(),
            voucher_code: String::new(),
            open_count: 0,
            click_count: 0,
            queued_at: at("2026-12-07T10:00:00Z"),
            sent_at: Some(at("2026-12-07T10:00:01Z")),
            delivered_at: None,
            first_open_at: None,
            first_click_at: None,
            unsubscribed_at: None,
        }
    }

    #[test]
    fn retries_double_up_to_an_hour_and_stop_at_the_last_attempt() {
        let base = Duration::seconds(30);
        assert_eq!(retry_delay(1, 6, base), Some(Duration::seconds(30)));
        assert_eq!(retry_delay(2, 6, base), Some(Duration::seconds(60)));
        assert_eq!(retry_delay(5, 6, base), Some(Duration::seconds(480)));
        assert_eq!(retry_delay(6, 6, base), None);
        assert_eq!(retry_delay(20, 99, base), Some(Duration::hours(1)));
    }

    #[test]
    fn the_throttle_spreads_a_campaign_over_time() {
        let now = at("2026-12-07T10:00:00Z");
        // 600/min = one per 100 ms; a burst of 10 lets 10 go now, then none until time passes.
        let (n, tat) = throttle(None, now, 600, 500, 10);
        assert_eq!(n, 10);
        assert_eq!(tat, Some(now + Duration::seconds(1)));
        let (n, tat2) = throttle(tat, now, 600, 500, 10);
        assert_eq!((n, tat2), (0, tat));
        // Half a second later, 5 more fit.
        let (n, tat3) = throttle(tat, now + Duration::milliseconds(500), 600, 500, 10);
        assert_eq!(n, 5);
        assert_eq!(tat3, Some(now + Duration::milliseconds(1500)));
        // An idle clock does not bank credit beyond the burst.
        let (n, _) = throttle(tat3, now + Duration::hours(1), 600, 500, 10);
        assert_eq!(n, 10);
        // No rate: everything, clock untouched.
        assert_eq!(throttle(None, now, 0, 500, 10), (500, None));
    }

    #[test]
    fn events_move_a_sent_message_and_count_first_responses() {
        let m = sent();
        let t = at("2026-12-07T11:00:00Z");
        let (m, fx) = m.apply(DeliveryEventType::Open, t, "").unwrap();
        assert_eq!(m.state, MessageState::Delivered);
        assert_eq!(
            (m.open_count, m.first_open_at, fx.first),
            (1, Some(t), true)
        );
        let (m, fx) = m
            .apply(DeliveryEventType::Open, t + Duration::hours(1), "")
            .unwrap();
        assert_eq!(
            (m.open_count, m.first_open_at, fx.first),
            (2, Some(t), false)
        );
        let (m, fx) = m.apply(DeliveryEventType::Click, t, "").unwrap();
        assert!(fx.first);
        assert_eq!(m.click_count, 1);
        let (m, fx) = m.apply(DeliveryEventType::Unsubscribe, t, "").unwrap();
        assert!(fx.unsubscribed);
        let (_, fx) = m.apply(DeliveryEventType::Unsubscribe, t, "").unwrap();
        assert!(!fx.unsubscribed);

        let (b, _) = sent()
            .apply(DeliveryEventType::HardBounce, t, "550 no such user")
            .unwrap();
        assert_eq!(
            (b.state, b.bounce_type, b.failure_reason.as_str()),
            (
                MessageState::Bounced,
                Some(BounceType::Hard),
                "550 no such user"
            )
        );
        // A late delivery report does not undo the bounce.
        let (b, _) = b.apply(DeliveryEventType::Delivered, t, "").unwrap();
        assert_eq!(b.state, MessageState::Bounced);

        let mut q = sent();
        q.state = MessageState::Queued;
        q.sent_at = None;
        assert_eq!(
            q.apply(DeliveryEventType::Open, t, "").unwrap_err(),
            EventRule::NotSent
        );
        for s in MessageState::ALL {
            assert_eq!(MessageState::parse_str(s.as_str()), Some(s));
        }
        for e in DeliveryEventType::ALL {
            assert_eq!(DeliveryEventType::parse_str(e.as_str()), Some(e));
        }
    }

    #[test]
    fn addresses_of_non_customers_are_checked_per_channel() {
        assert!(is_address(Channel::Email, "gift@example.com"));
        assert!(!is_address(Channel::Email, "gift"));
        assert!(is_address(Channel::Sms, "+420601234567"));
        assert!(!is_address(Channel::Sms, "601234567"));
        assert!(!is_address(Channel::Viber, "+42"));
        assert!(is_address(Channel::Push, "fcm:abc123"));
        assert!(!is_address(Channel::Push, "a b"));
    }

    #[test]
    fn unsubscribe_tokens_keep_their_format_for_links_already_sent() {
        // RFC 2104 vectors (Python's hmac): a short key and one longer than a block.
        let id = Uuid::parse_str("01900000-0000-7000-8000-000000000001").unwrap();
        assert_eq!(
            unsubscribe_token(id, b"link-secret"),
            "01900000000070008000000000000001.6e8e8a499b8a81ea4c6d77496db201fa"
        );
        assert_eq!(
            hex::encode(mac(id, &[b'k'; 100])),
            "154a6859e2a8b3692ac5e3c521b9dc7d"
        );
    }

    #[test]
    fn unsubscribe_tokens_are_bound_to_their_message_and_secret() {
        let id = Uuid::now_v7();
        let token = unsubscribe_token(id, b"secret");
        assert_eq!(verify_unsubscribe_token(&token, b"secret"), Some(id));
        assert_eq!(verify_unsubscribe_token(&token, b"other"), None);
        let other = unsubscribe_token(Uuid::now_v7(), b"secret");
        let (_, tag) = other.split_once('.').unwrap();
        let forged = format!("{}.{tag}", id.simple());
        assert_eq!(verify_unsubscribe_token(&forged, b"secret"), None);
        assert_eq!(verify_unsubscribe_token("nonsense", b"secret"), None);
        // A long secret is hashed first (RFC 2104) and still works.
        let long = vec![7u8; 100];
        assert_eq!(
            verify_unsubscribe_token(&unsubscribe_token(id, &long), &long),
            Some(id)
        );
    }
}

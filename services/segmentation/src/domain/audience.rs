//! Audience rules (seed 001): the one-off target group of a campaign. Its members are selected
//! once by a criterion and the final checks (consent for the channel, an address, email
//! bounces); afterwards only manual additions (the same checks) and removals change it, and a
//! campaign launch locks it for good. No I/O here.
use chrono::{DateTime, Utc};
use loyalty_criteria::{Criterion, Operator, RawCriterion, Value};
use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest audience name.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest audience note.
pub const MAX_NOTE_CHARS: usize = 2000;
/// Most consent types an audience may require.
pub const MAX_CONSENT_TYPES: usize = 20;
/// Soft bounces from which an email address is excluded (seed 001: "after the 5th").
pub const SOFT_BOUNCE_LIMIT: i64 = 5;

/// The channel a campaign at the audience communicates through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

    pub fn parse_str(s: &str) -> Option<Channel> {
        Some(match s {
            "email" => Channel::Email,
            "sms" => Channel::Sms,
            "push" => Channel::Push,
            "viber" => Channel::Viber,
            _ => return None,
        })
    }

    /// The customer attribute holding the channel's address; push tokens live with the
    /// devices (not in the feature store), so a push audience checks no address.
    fn address_attribute(self) -> Option<&'static str> {
        match self {
            Channel::Email => Some("email"),
            Channel::Sms | Channel::Viber => Some("phone"),
            Channel::Push => None,
        }
    }
}

/// Why the final checks exclude a customer, in the order they are checked (a customer failing
/// several is counted under the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Exclusion {
    /// No granted marketing consent for the channel (or one of the required consent types).
    NoConsent,
    /// No address for the channel.
    NoAddress,
    /// The email address bounced hard: excluded at once.
    HardBounce,
    /// The email address bounced softly 5 times or more.
    SoftBounce,
}

impl Exclusion {
    /// The FAILED_PRECONDITION reason of a manual addition refused for it.
    pub fn reason(self) -> &'static str {
        match self {
            Exclusion::NoConsent => "NO_CONSENT",
            Exclusion::NoAddress => "NO_ADDRESS",
            Exclusion::HardBounce | Exclusion::SoftBounce => "EMAIL_BOUNCED",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Exclusion::NoConsent => {
                "the customer has not granted marketing consent for the audience's channel"
            }
            Exclusion::NoAddress => "the customer has no address for the audience's channel",
            Exclusion::HardBounce => "the customer's email address bounced hard",
            Exclusion::SoftBounce => "the customer's email address bounced softly 5 times or more",
        }
    }
}

/// How many customers each final check excluded at creation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exclusions {
    pub no_consent: i64,
    pub no_address: i64,
    pub hard_bounce: i64,
    pub soft_bounce: i64,
}

impl Exclusions {
    pub fn add(&mut self, e: Exclusion, n: i64) {
        let slot = match e {
            Exclusion::NoConsent => &mut self.no_consent,
            Exclusion::NoAddress => &mut self.no_address,
            Exclusion::HardBounce => &mut self.hard_bounce,
            Exclusion::SoftBounce => &mut self.soft_bounce,
        };
        *slot = slot.saturating_add(n);
    }
}

fn condition(field: &str, operator: Operator, values: Vec<Value>) -> RawCriterion {
    RawCriterion::Condition {
        field: field.to_owned(),
        operator: Some(operator),
        values,
    }
}

/// The final checks of an audience for `channel`, each a criterion a member must fulfil, in
/// [`Exclusion`] order. They are criteria so that the selection at creation (compiled to SQL)
/// and a manual addition (evaluated in memory) apply exactly the same rules.
pub fn final_checks(channel: Channel, required_consents: &[String]) -> Vec<(Exclusion, Criterion)> {
    let consent = if required_consents.is_empty() {
        vec![condition(
            &format!("features.marketing_consent_{}", channel.as_str()),
            Operator::Equal,
            vec![Value::Bool(true)],
        )]
    } else {
        required_consents
            .iter()
            .map(|code| {
                condition(
                    &format!("consents.{code}"),
                    Operator::Equal,
                    vec![Value::String("granted".into())],
                )
            })
            .collect()
    };
    let mut raw = vec![(Exclusion::NoConsent, RawCriterion::All(consent))];
    if let Some(attribute) = channel.address_attribute() {
        raw.push((
            Exclusion::NoAddress,
            condition(&format!("customer.{attribute}"), Operator::Exists, vec![]),
        ));
    }
    if channel == Channel::Email {
        raw.push((
            Exclusion::HardBounce,
            condition(
                "features.email_hard_bounced",
                Operator::Equal,
                vec![Value::Bool(false)],
            ),
        ));
        raw.push((
            Exclusion::SoftBounce,
            condition(
                "features.email_soft_bounce_count",
                Operator::Less,
                vec![Value::Int(SOFT_BOUNCE_LIMIT)],
            ),
        ));
    }
    raw.into_iter()
        .filter_map(|(e, r)| Criterion::parse(r).ok().map(|c| (e, c)))
        .collect()
}

/// The customers excluded for `checks[k]`: those passing every earlier check and failing it.
pub fn excluded_by(checks: &[(Exclusion, Criterion)], k: usize) -> Option<Criterion> {
    let (_, failing) = checks.get(k)?;
    let mut all: Vec<Criterion> = checks[..k].iter().map(|(_, c)| c.clone()).collect();
    all.push(Criterion::Not(Box::new(failing.clone())));
    Some(Criterion::All(all))
}

/// Who an audience selects: its criterion and every final check.
pub fn selection(criterion: &Criterion, checks: &[(Exclusion, Criterion)]) -> Criterion {
    let mut all = vec![criterion.clone()];
    all.extend(checks.iter().map(|(_, c)| c.clone()));
    Criterion::All(all)
}

/// The first final check a customer with `facts` fails.
pub fn first_exclusion(
    checks: &[(Exclusion, Criterion)],
    facts: &loyalty_criteria::Facts,
) -> Option<Exclusion> {
    checks
        .iter()
        .find(|(_, c)| !c.evaluate(facts))
        .map(|(e, _)| *e)
}

/// Whether the audience can still change, or a campaign launched at it locked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AudienceState {
    Ready,
    Locked,
}

impl AudienceState {
    pub fn as_str(self) -> &'static str {
        match self {
            AudienceState::Ready => "ready",
            AudienceState::Locked => "locked",
        }
    }

    pub fn parse_str(s: &str) -> Option<AudienceState> {
        match s {
            "ready" => Some(AudienceState::Ready),
            "locked" => Some(AudienceState::Locked),
            _ => None,
        }
    }
}

/// A business rule an audience change broke; `reason` is the FAILED_PRECONDITION reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudienceRule {
    /// A campaign was launched at it: nothing can change.
    Locked,
    /// Locking an audience without members.
    Empty,
    /// Changing the criterion or re-running it: the selection is fixed at creation.
    CriterionFixed,
    /// A manual addition the final checks refuse.
    Excluded(Exclusion),
}

impl AudienceRule {
    pub fn reason(self) -> &'static str {
        match self {
            AudienceRule::Locked => "AUDIENCE_LOCKED",
            AudienceRule::Empty => "AUDIENCE_EMPTY",
            AudienceRule::CriterionFixed => "AUDIENCE_CRITERION_FIXED",
            AudienceRule::Excluded(e) => e.reason(),
        }
    }

    pub fn message(self) -> String {
        match self {
            AudienceRule::Locked => {
                "a campaign was launched at the audience: it cannot change".to_owned()
            }
            AudienceRule::Empty => "an audience without members cannot be locked".to_owned(),
            AudienceRule::CriterionFixed => {
                "an audience's selection is fixed at creation: its criterion cannot change \
                 and is not run again (duplicate it with reselect instead)"
                    .to_owned()
            }
            AudienceRule::Excluded(e) => e.message().to_owned(),
        }
    }
}

/// An audience as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audience {
    pub id: Uuid,
    pub display_name: String,
    pub channel: Channel,
    pub criterion: Criterion,
    pub required_consents: Vec<String>,
    pub state: AudienceState,
    pub member_count: i64,
    pub exclusions: Exclusions,
    pub source_audience_id: Option<Uuid>,
    pub campaign_id: Option<Uuid>,
    pub locked_at: Option<DateTime<Utc>>,
    pub note: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What locking for a campaign does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// Lock it now.
    Now,
    /// Already locked for this campaign: answer it unchanged.
    AlreadyForThisCampaign,
}

impl Audience {
    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }

    /// Any change (rename, members, deletion) needs a READY audience.
    pub fn check_changeable(&self) -> Result<(), AudienceRule> {
        match self.state {
            AudienceState::Ready => Ok(()),
            AudienceState::Locked => Err(AudienceRule::Locked),
        }
    }

    /// Whether `campaign_id` may lock it: a locked audience only for the same campaign
    /// again, an empty one never.
    pub fn check_lock(&self, campaign_id: Uuid) -> Result<Lock, AudienceRule> {
        match self.state {
            AudienceState::Locked if self.campaign_id == Some(campaign_id) => {
                Ok(Lock::AlreadyForThisCampaign)
            }
            AudienceState::Locked => Err(AudienceRule::Locked),
            AudienceState::Ready if self.member_count <= 0 => Err(AudienceRule::Empty),
            AudienceState::Ready => Ok(Lock::Now),
        }
    }

    /// The audience locked by `campaign_id` at `now`.
    pub fn locked(mut self, campaign_id: Uuid, now: DateTime<Utc>) -> Audience {
        self.state = AudienceState::Locked;
        self.campaign_id = Some(campaign_id);
        self.locked_at = Some(now);
        self.version += 1;
        self.updated_at = now;
        self
    }

    /// The final checks of this audience.
    pub fn final_checks(&self) -> Vec<(Exclusion, Criterion)> {
        final_checks(self.channel, &self.required_consents)
    }

    /// A new READY audience copying this one's definition; `display_name` empty =
    /// "<original> (copy)", shortened to fit.
    pub fn duplicate(&self, id: Uuid, display_name: &str, now: DateTime<Utc>) -> Audience {
        let display_name = if display_name.is_empty() {
            let suffix = " (copy)";
            let keep = MAX_NAME_CHARS - suffix.chars().count();
            let base: String = self.display_name.chars().take(keep).collect();
            format!("{base}{suffix}")
        } else {
            display_name.to_owned()
        };
        Audience {
            id,
            display_name,
            state: AudienceState::Ready,
            member_count: 0,
            exclusions: Exclusions::default(),
            source_audience_id: Some(self.id),
            campaign_id: None,
            locked_at: None,
            version: 1,
            created_at: now,
            updated_at: now,
            ..self.clone()
        }
    }
}

/// A new audience as requested.
#[derive(Debug, Clone, Default)]
pub struct AudienceDraft {
    pub display_name: String,
    pub channel: Option<Channel>,
    pub criterion: Option<Criterion>,
    pub required_consents: Vec<String>,
    pub note: String,
}

/// Checks a name (1..200 characters) under `field`.
pub fn check_name(v: &mut Violations, field: &str, name: &str) {
    let n = name.chars().count();
    if n == 0 || name.trim().is_empty() {
        v.add(field, "is required");
    } else if n > MAX_NAME_CHARS {
        v.add(
            field,
            format!("must be at most {MAX_NAME_CHARS} characters"),
        );
    }
}

/// Checks a note (up to 2000 characters) under `field`.
pub fn check_note(v: &mut Violations, field: &str, note: &str) {
    if note.chars().count() > MAX_NOTE_CHARS {
        v.add(
            field,
            format!("must be at most {MAX_NOTE_CHARS} characters"),
        );
    }
}

impl AudienceDraft {
    /// Every problem, under `audience.<field>`.
    pub fn validate(&self, v: &mut Violations) {
        check_name(v, "audience.display_name", &self.display_name);
        check_note(v, "audience.note", &self.note);
        if self.channel.is_none() {
            v.add("audience.channel", "is required");
        }
        if self.criterion.as_ref().is_some_and(Criterion::uses_cart) {
            v.add(
                "audience.criterion",
                "cannot read the cart (an audience is selected once, not at checkout)",
            );
        }
        if self.required_consents.len() > MAX_CONSENT_TYPES {
            v.add(
                "audience.required_consent_type_codes",
                format!("at most {MAX_CONSENT_TYPES} consent types"),
            );
        }
        for (i, code) in self.required_consents.iter().enumerate() {
            let field = format!("audience.required_consent_type_codes[{i}]");
            if code.is_empty() {
                v.add(field, "is required");
            } else if loyalty_criteria::Field::parse(&format!("consents.{code}")).is_err() {
                v.add(field, "is not a consent type code");
            } else if self.required_consents[..i].contains(code) {
                v.add(field, "is listed twice");
            }
        }
    }

    /// The audience, before its members are selected; `None` if incomplete (validate first).
    pub fn into_audience(self, id: Uuid, now: DateTime<Utc>) -> Option<Audience> {
        Some(Audience {
            id,
            display_name: self.display_name,
            channel: self.channel?,
            criterion: self.criterion?,
            required_consents: self.required_consents,
            state: AudienceState::Ready,
            member_count: 0,
            exclusions: Exclusions::default(),
            source_audience_id: None,
            campaign_id: None,
            locked_at: None,
            note: self.note,
            version: 1,
            created_at: now,
            updated_at: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Consent, EmailBounce, Features};

    fn everyone() -> Criterion {
        Criterion::parse(RawCriterion::All(vec![condition(
            "features.purchase_count",
            Operator::GreaterOrEqual,
            vec![Value::Int(0)],
        )]))
        .unwrap()
    }

    fn reachable_by_email() -> Features {
        let mut f = Features::default();
        f.attributes.insert("email".into(), "a@example.com".into());
        f.activity.set_consent(
            "newsletter",
            Consent {
                state: "granted".into(),
                purpose: "marketing".into(),
                channels: vec!["email".into()],
            },
            1,
        );
        f
    }

    fn exclusion(channel: Channel, codes: &[String], f: &Features) -> Option<Exclusion> {
        first_exclusion(&final_checks(channel, codes), &f.facts(Utc::now()))
    }

    fn bounce(f: &mut Features, hard: bool, soft: i64, seq: i64) {
        f.activity.set_email_bounce(
            EmailBounce {
                hard_bounced: hard,
                soft_bounce_count: soft,
            },
            seq,
        );
    }

    #[test]
    fn email_checks_consent_address_hard_bounce_and_the_fifth_soft_bounce() {
        let mut f = reachable_by_email();
        assert_eq!(exclusion(Channel::Email, &[], &f), None);
        bounce(&mut f, false, 4, 2);
        assert_eq!(exclusion(Channel::Email, &[], &f), None, "4 soft bounces");
        bounce(&mut f, false, 5, 3);
        assert_eq!(
            exclusion(Channel::Email, &[], &f),
            Some(Exclusion::SoftBounce),
            "from the 5th"
        );
        bounce(&mut f, true, 0, 4);
        assert_eq!(
            exclusion(Channel::Email, &[], &f),
            Some(Exclusion::HardBounce),
            "a hard bounce excludes at once"
        );
        f.attributes.remove("email");
        assert_eq!(
            exclusion(Channel::Email, &[], &f),
            Some(Exclusion::NoAddress),
            "the first failed check counts"
        );
        f.activity.set_consent(
            "newsletter",
            Consent {
                state: "withdrawn".into(),
                purpose: "marketing".into(),
                channels: vec![],
            },
            5,
        );
        assert_eq!(
            exclusion(Channel::Email, &[], &f),
            Some(Exclusion::NoConsent)
        );
    }

    #[test]
    fn consent_is_per_channel_and_sms_needs_a_phone_but_ignores_bounces() {
        let mut f = reachable_by_email();
        assert_eq!(
            exclusion(Channel::Sms, &[], &f),
            Some(Exclusion::NoConsent),
            "an email consent does not cover SMS"
        );
        f.activity.set_consent(
            "sms",
            Consent {
                state: "granted".into(),
                purpose: "marketing".into(),
                channels: vec!["sms".into()],
            },
            2,
        );
        assert_eq!(exclusion(Channel::Sms, &[], &f), Some(Exclusion::NoAddress));
        f.attributes.insert("phone".into(), "+420123".into());
        bounce(&mut f, true, 9, 3);
        assert_eq!(exclusion(Channel::Sms, &[], &f), None);
        assert_eq!(
            exclusion(Channel::Push, &[], &Features::default()),
            Some(Exclusion::NoConsent)
        );
    }

    #[test]
    fn required_consent_types_must_each_be_granted() {
        let f = reachable_by_email();
        let codes = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(exclusion(Channel::Email, &codes(&["newsletter"]), &f), None);
        assert_eq!(
            exclusion(Channel::Email, &codes(&["newsletter", "promo"]), &f),
            Some(Exclusion::NoConsent)
        );
    }

    #[test]
    fn excluded_by_selects_those_failing_only_that_check_first() {
        let checks = final_checks(Channel::Email, &[]);
        let mut f = reachable_by_email();
        bounce(&mut f, true, 7, 1);
        let facts = f.facts(Utc::now());
        let hits: Vec<usize> = (0..checks.len())
            .filter(|k| excluded_by(&checks, *k).unwrap().evaluate(&facts))
            .collect();
        assert_eq!(hits, [2], "counted once, as a hard bounce");
        assert!(!selection(&everyone(), &checks).evaluate(&facts));
        assert!(excluded_by(&checks, checks.len()).is_none());
    }

    fn audience() -> Audience {
        AudienceDraft {
            display_name: "Spring".into(),
            channel: Some(Channel::Email),
            criterion: Some(everyone()),
            ..Default::default()
        }
        .into_audience(Uuid::now_v7(), Utc::now())
        .unwrap()
    }

    #[test]
    fn lock_needs_members_and_then_refuses_every_change_and_other_campaigns() {
        let mut a = audience();
        let campaign = Uuid::now_v7();
        assert_eq!(a.check_lock(campaign), Err(AudienceRule::Empty));
        a.member_count = 3;
        assert_eq!(a.check_lock(campaign), Ok(Lock::Now));
        assert_eq!(a.check_changeable(), Ok(()));
        let a = a.locked(campaign, Utc::now());
        assert_eq!(a.state, AudienceState::Locked);
        assert_eq!(a.version, 2);
        assert_eq!(a.check_lock(campaign), Ok(Lock::AlreadyForThisCampaign));
        assert_eq!(a.check_lock(Uuid::now_v7()), Err(AudienceRule::Locked));
        assert_eq!(a.check_changeable(), Err(AudienceRule::Locked));
        assert_eq!(AudienceRule::Locked.reason(), "AUDIENCE_LOCKED");
    }

    #[test]
    fn a_duplicate_is_ready_unlocked_and_named_after_the_original() {
        let campaign = Uuid::now_v7();
        let mut a = audience();
        a.member_count = 2;
        a.display_name = "x".repeat(MAX_NAME_CHARS);
        let a = a.locked(campaign, Utc::now());
        let copy = a.duplicate(Uuid::now_v7(), "", Utc::now());
        assert_eq!(copy.state, AudienceState::Ready);
        assert_eq!((copy.campaign_id, copy.locked_at), (None, None));
        assert_eq!(copy.source_audience_id, Some(a.id));
        assert_eq!(copy.criterion, a.criterion);
        assert_eq!(copy.display_name.chars().count(), MAX_NAME_CHARS);
        assert!(copy.display_name.ends_with(" (copy)"));
        assert_eq!(
            a.duplicate(Uuid::now_v7(), "B", Utc::now()).display_name,
            "B"
        );
    }

    #[test]
    fn a_draft_names_each_bad_field() {
        let mut v = Violations::new();
        AudienceDraft {
            display_name: " ".into(),
            note: "n".repeat(MAX_NOTE_CHARS + 1),
            required_consents: vec!["news".into(), "".into(), "news".into(), "a b".into()],
            ..Default::default()
        }
        .validate(&mut v);
        let fields: Vec<String> = v.into_vec().into_iter().map(|f| f.field).collect();
        assert_eq!(
            fields,
            [
                "audience.display_name",
                "audience.note",
                "audience.channel",
                "audience.required_consent_type_codes[1]",
                "audience.required_consent_type_codes[2]",
                "audience.required_consent_type_codes[3]",
            ]
        );
    }
}

//! CRM.COM reward schemes, reward offers with their goals, awards and commercial terms: what a
//! valid definition is, who may sign up, and how a customer's activity advances an offer's
//! goals to an award. Pure: no I/O, no clock (callers pass the time).
use chrono::{DateTime, Duration, Utc};
use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Validity;
use super::catalogue::{check_code, check_currency, check_name};

pub const MAX_SIGN_UP_CODES: usize = 1000;
pub const MAX_EMAIL_DOMAINS: usize = 100;
pub const MAX_GOALS: usize = 10;
pub const MAX_SCOPE_CODES: usize = 1000;
pub const MAX_OFFER_SEGMENTS: usize = 100;
pub const MAX_SIGN_UP_SEGMENTS: usize = 50;

/// The concurrency token of a scheme, offer or terms: its revision.
pub use loyalty_platform::error::revision_etag as etag;

fn check_description(v: &mut Violations, field: &str, text: &str) {
    if text.chars().count() > 2000 {
        v.add(field, "must be at most 2000 characters");
    }
}

// ---- Schemes ----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignUpOption {
    /// Every customer is a member without signing up, until they leave.
    Auto,
    /// Customers opt in themselves.
    OptIn,
    /// Customers need one of the scheme's sign-up codes (or an email of its domains).
    Closed,
    /// By criteria: customers in one of the scheme's sign-up segments when they sign up.
    Criteria,
}

impl SignUpOption {
    pub fn as_str(self) -> &'static str {
        match self {
            SignUpOption::Auto => "auto",
            SignUpOption::OptIn => "opt_in",
            SignUpOption::Closed => "closed",
            SignUpOption::Criteria => "criteria",
        }
    }

    pub fn parse_str(s: &str) -> Option<Self> {
        Some(match s {
            "auto" => SignUpOption::Auto,
            "opt_in" => SignUpOption::OptIn,
            "closed" => SignUpOption::Closed,
            "criteria" => SignUpOption::Criteria,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scheme {
    pub id: Uuid,
    pub code: String,
    pub display_name: String,
    pub description: String,
    pub sign_up_option: SignUpOption,
    pub sign_up_codes: Vec<String>,
    pub email_domains: Vec<String>,
    /// Segments whose members may sign up to a CRITERIA scheme (1..50); empty otherwise.
    pub sign_up_segment_ids: Vec<Uuid>,
    /// 0 = unlimited.
    pub max_members: i64,
    /// Members who signed up and have not left (AUTO members without a sign-up are not
    /// counted).
    pub member_count: i64,
    pub active: bool,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Scheme codes: 1..64 characters of [a-z0-9_].
pub fn check_scheme_code(v: &mut Violations, field: &str, code: &str) {
    if code.is_empty() || code.len() > 64 {
        v.add(field, "must be 1..64 characters");
    } else if !code
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        v.add(field, "must contain only a-z, 0-9 and _");
    }
}

impl Scheme {
    pub fn validate(&self, v: &mut Violations, prefix: &str) {
        check_scheme_code(v, &format!("{prefix}.code"), &self.code);
        check_name(v, &format!("{prefix}.display_name"), &self.display_name);
        check_description(v, &format!("{prefix}.description"), &self.description);
        if self.sign_up_codes.len() > MAX_SIGN_UP_CODES {
            v.add(
                format!("{prefix}.sign_up_codes"),
                format!("at most {MAX_SIGN_UP_CODES} codes"),
            );
        }
        for (i, c) in self.sign_up_codes.iter().enumerate() {
            if !(4..=64).contains(&c.chars().count()) || c.chars().any(char::is_whitespace) {
                v.add(
                    format!("{prefix}.sign_up_codes[{i}]"),
                    "must be 4..64 characters without spaces",
                );
            }
        }
        if self.email_domains.len() > MAX_EMAIL_DOMAINS {
            v.add(
                format!("{prefix}.email_domains"),
                format!("at most {MAX_EMAIL_DOMAINS} domains"),
            );
        }
        for (i, d) in self.email_domains.iter().enumerate() {
            if d.is_empty() || d.len() > 253 || !d.contains('.') || d.contains('@') {
                v.add(
                    format!("{prefix}.email_domains[{i}]"),
                    "must be a domain such as \"uni.cz\"",
                );
            }
        }
        if self.sign_up_option == SignUpOption::Closed
            && self.sign_up_codes.is_empty()
            && self.email_domains.is_empty()
        {
            v.add(
                format!("{prefix}.sign_up_codes"),
                "a CLOSED scheme needs at least one sign-up code or email domain",
            );
        }
        let segments = format!("{prefix}.sign_up_segment_ids");
        if self.sign_up_option == SignUpOption::Criteria {
            if self.sign_up_segment_ids.is_empty()
                || self.sign_up_segment_ids.len() > MAX_SIGN_UP_SEGMENTS
            {
                v.add(
                    segments,
                    format!("a CRITERIA scheme needs 1..{MAX_SIGN_UP_SEGMENTS} segments"),
                );
            }
        } else if !self.sign_up_segment_ids.is_empty() {
            v.add(segments, "only a CRITERIA scheme has sign-up segments");
        }
        if self.max_members < 0 {
            v.add(
                format!("{prefix}.max_members"),
                "must be >= 0 (0 = unlimited)",
            );
        }
    }
}

/// Why a customer may not sign up to a scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignUpRefusal {
    Inactive,
    CodeInvalid,
    /// No code was given and none of the customer's emails is of the scheme's domains.
    EmailDomainNotAllowed,
    /// The customer is in none of a CRITERIA scheme's sign-up segments.
    CriteriaNotMet,
    Full,
}

impl SignUpRefusal {
    pub fn reason(self) -> &'static str {
        match self {
            SignUpRefusal::Inactive => "SCHEME_INACTIVE",
            SignUpRefusal::CodeInvalid => "SIGN_UP_CODE_INVALID",
            SignUpRefusal::EmailDomainNotAllowed => "EMAIL_DOMAIN_NOT_ALLOWED",
            SignUpRefusal::CriteriaNotMet => "SIGN_UP_CRITERIA_NOT_MET",
            SignUpRefusal::Full => "SCHEME_FULL",
        }
    }

    pub fn message(self, scheme: &Scheme) -> String {
        match self {
            SignUpRefusal::Inactive => format!("reward scheme {:?} is not active", scheme.code),
            SignUpRefusal::CodeInvalid => format!(
                "reward scheme {:?} is closed: the sign-up code is missing or not one of its codes",
                scheme.code
            ),
            SignUpRefusal::EmailDomainNotAllowed => format!(
                "reward scheme {:?} is closed: none of the customer's emails is of its domains \
                 and no sign-up code was given",
                scheme.code
            ),
            SignUpRefusal::CriteriaNotMet => format!(
                "reward scheme {:?} admits members of its sign-up segments only and the \
                 customer is in none of them",
                scheme.code
            ),
            SignUpRefusal::Full => format!(
                "reward scheme {:?} has its maximum of {} members",
                scheme.code, scheme.max_members
            ),
        }
    }
}

/// Whether an email address is of one of `domains`: its domain (after the last `@`) equals one
/// of them or is a subdomain of one (`jana@mail.uni.cz` is of `uni.cz`; `jana@notuni.cz` is
/// not), case-insensitively, ignoring a trailing dot.
pub fn email_in_domains(email: &str, domains: &[String]) -> bool {
    let Some((local, domain)) = email.trim().rsplit_once('@') else {
        return false;
    };
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if local.is_empty() || domain.is_empty() {
        return false;
    }
    domains.iter().any(|d| {
        let d = d.trim_end_matches('.').to_ascii_lowercase();
        domain == d
            || domain
                .strip_suffix(&d)
                .is_some_and(|rest| rest.ends_with('.'))
    })
}

/// Whether a CLOSED scheme needs the customer's emails to decide a sign-up with `code`: it has
/// email domains and the code is not one of its codes.
pub fn needs_emails(scheme: &Scheme, code: &str) -> bool {
    scheme.sign_up_option == SignUpOption::Closed
        && !scheme.email_domains.is_empty()
        && !code_matches(scheme, code)
}

/// Whether a sign-up needs the customer's segments: the scheme is an active CRITERIA scheme
/// (an inactive one is refused without asking).
pub fn needs_segments(scheme: &Scheme) -> bool {
    scheme.active && scheme.sign_up_option == SignUpOption::Criteria
}

fn code_matches(scheme: &Scheme, code: &str) -> bool {
    !code.is_empty()
        && scheme
            .sign_up_codes
            .iter()
            .any(|c| c.eq_ignore_ascii_case(code))
}

/// What is known about a customer signing up: the code they gave (empty = none), their email
/// addresses (read only for a CLOSED scheme with email domains, see [`needs_emails`]) and the
/// segments they are a member of now (read only for a CRITERIA scheme, see
/// [`needs_segments`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Applicant<'a> {
    pub code: &'a str,
    pub emails: &'a [String],
    pub segments: &'a [Uuid],
}

/// Whether an applicant may sign up. A CLOSED scheme admits one of its codes
/// (case-insensitive) or, without a code, an email of one of its domains; a CRITERIA scheme
/// admits a member of at least one of its sign-up segments.
pub fn check_sign_up(scheme: &Scheme, applicant: &Applicant) -> Result<(), SignUpRefusal> {
    let Applicant {
        code,
        emails,
        segments,
    } = *applicant;
    if !scheme.active {
        return Err(SignUpRefusal::Inactive);
    }
    if scheme.sign_up_option == SignUpOption::Closed && !code_matches(scheme, code) {
        let by_email = code.is_empty()
            && emails
                .iter()
                .any(|e| email_in_domains(e, &scheme.email_domains));
        if !by_email {
            return Err(if code.is_empty() && !scheme.email_domains.is_empty() {
                SignUpRefusal::EmailDomainNotAllowed
            } else {
                SignUpRefusal::CodeInvalid
            });
        }
    }
    if scheme.sign_up_option == SignUpOption::Criteria
        && !scheme
            .sign_up_segment_ids
            .iter()
            .any(|id| segments.contains(id))
    {
        return Err(SignUpRefusal::CriteriaNotMet);
    }
    if scheme.max_members > 0 && scheme.member_count >= scheme.max_members {
        return Err(SignUpRefusal::Full);
    }
    Ok(())
}

/// A customer's standing in a scheme, from their latest membership row (if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    NeverJoined,
    Member,
    Left,
}

/// Whether the customer counts as a member: AUTO schemes enrol everyone who has not left.
pub fn is_member(option: SignUpOption, standing: Standing) -> bool {
    match standing {
        Standing::Member => true,
        Standing::Left => false,
        Standing::NeverJoined => option == SignUpOption::Auto,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub scheme_id: Uuid,
    pub customer_id: Uuid,
    pub join_time: DateTime<Utc>,
    pub leave_time: Option<DateTime<Utc>>,
}

// ---- Offers ----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfferState {
    Active,
    Inactive,
}

impl OfferState {
    pub fn as_str(self) -> &'static str {
        match self {
            OfferState::Active => "active",
            OfferState::Inactive => "inactive",
        }
    }

    pub fn parse_str(s: &str) -> Option<Self> {
        match s {
            "active" => Some(OfferState::Active),
            "inactive" => Some(OfferState::Inactive),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GoalGroup {
    Purchase,
    Frequency,
    Referral,
    Event,
}

impl GoalGroup {
    pub fn as_str(self) -> &'static str {
        match self {
            GoalGroup::Purchase => "purchase",
            GoalGroup::Frequency => "frequency",
            GoalGroup::Referral => "referral",
            GoalGroup::Event => "event",
        }
    }

    pub fn parse_str(s: &str) -> Option<Self> {
        Some(match s {
            "purchase" => GoalGroup::Purchase,
            "frequency" => GoalGroup::Frequency,
            "referral" => GoalGroup::Referral,
            "event" => GoalGroup::Event,
            _ => return None,
        })
    }
}

/// Products whose purchase counts; codes as the purchase events carry them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductScope {
    pub product_codes: Vec<String>,
    pub product_group_codes: Vec<String>,
    pub brand_codes: Vec<String>,
    pub excluded_product_codes: Vec<String>,
}

impl ProductScope {
    fn validate(&self, v: &mut Violations, prefix: &str) {
        let lists = [
            ("product_codes", &self.product_codes),
            ("product_group_codes", &self.product_group_codes),
            ("brand_codes", &self.brand_codes),
            ("excluded_product_codes", &self.excluded_product_codes),
        ];
        for (name, list) in lists {
            if list.len() > MAX_SCOPE_CODES {
                v.add(
                    format!("{prefix}.{name}"),
                    format!("at most {MAX_SCOPE_CODES} codes"),
                );
            }
            for (i, c) in list.iter().enumerate() {
                check_code(v, &format!("{prefix}.{name}[{i}]"), c);
            }
        }
        if self.product_codes.is_empty()
            && self.product_group_codes.is_empty()
            && self.brand_codes.is_empty()
        {
            v.add(
                prefix,
                "names no product, product group or brand (leave it unset for every product)",
            );
        }
    }

    /// Whether a purchase of these lines counts: one line in scope is enough, since purchase
    /// events carry no per-line amounts.
    pub fn matches(&self, p: &Purchase) -> bool {
        let excluded = |code: &String| self.excluded_product_codes.contains(code);
        p.product_codes
            .iter()
            .any(|c| !excluded(c) && self.product_codes.contains(c))
            || p.product_group_codes
                .iter()
                .any(|g| self.product_group_codes.contains(g))
            || p.brand_codes.iter().any(|b| self.brand_codes.contains(b))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Goal {
    /// Spend at least `minimum_spend_minor` (in one purchase, or accumulated over the period).
    Purchase {
        minimum_spend_minor: i64,
        currency_code: String,
        products: Option<ProductScope>,
        single_purchase: bool,
    },
    /// Make `purchase_count` purchases (each of at least the minimum spend, if set).
    Frequency {
        purchase_count: i32,
        minimum_purchase_spend: Option<(i64, String)>,
    },
    /// Refer `referral_count` customers.
    Referral {
        referral_count: i32,
        require_purchase: bool,
    },
    /// `occurrence_count` customer events of a type.
    Event {
        event_type_code: String,
        occurrence_count: i32,
    },
}

impl Goal {
    pub fn group(&self) -> GoalGroup {
        match self {
            Goal::Purchase { .. } => GoalGroup::Purchase,
            Goal::Frequency { .. } => GoalGroup::Frequency,
            Goal::Referral { .. } => GoalGroup::Referral,
            Goal::Event { .. } => GoalGroup::Event,
        }
    }

    /// What achieving it takes: minor units for purchase goals, counts otherwise.
    pub fn target(&self) -> i64 {
        match self {
            Goal::Purchase {
                minimum_spend_minor,
                ..
            } => *minimum_spend_minor,
            Goal::Frequency { purchase_count, .. } => i64::from(*purchase_count),
            Goal::Referral { referral_count, .. } => i64::from(*referral_count),
            Goal::Event {
                occurrence_count, ..
            } => i64::from(*occurrence_count),
        }
    }

    fn validate(&self, v: &mut Violations, prefix: &str) {
        let count = |v: &mut Violations, field: &str, n: i32| {
            if !(1..=1000).contains(&n) {
                v.add(format!("{prefix}.{field}"), "must be 1..1000");
            }
        };
        match self {
            Goal::Purchase {
                minimum_spend_minor,
                currency_code,
                products,
                ..
            } => {
                if *minimum_spend_minor <= 0 {
                    v.add(
                        format!("{prefix}.purchase.minimum_spend.amount_minor"),
                        "must be > 0",
                    );
                }
                check_currency(
                    v,
                    &format!("{prefix}.purchase.minimum_spend.currency_code"),
                    currency_code,
                );
                if let Some(p) = products {
                    p.validate(v, &format!("{prefix}.purchase.products"));
                }
            }
            Goal::Frequency {
                purchase_count,
                minimum_purchase_spend,
            } => {
                count(v, "frequency.purchase_count", *purchase_count);
                if let Some((amount, currency)) = minimum_purchase_spend {
                    if *amount <= 0 {
                        v.add(
                            format!("{prefix}.frequency.minimum_purchase_spend.amount_minor"),
                            "must be > 0",
                        );
                    }
                    check_currency(
                        v,
                        &format!("{prefix}.frequency.minimum_purchase_spend.currency_code"),
                        currency,
                    );
                }
            }
            Goal::Referral { referral_count, .. } => {
                count(v, "referral.referral_count", *referral_count);
            }
            Goal::Event {
                event_type_code,
                occurrence_count,
            } => {
                check_code(
                    v,
                    &format!("{prefix}.event.event_type_code"),
                    event_type_code,
                );
                count(v, "event.occurrence_count", *occurrence_count);
            }
        }
    }

    /// How much one activity adds towards this goal, and whether it replaces (single purchase:
    /// the best purchase) rather than adds.
    fn contribution(&self, activity: &ActivityKind) -> Option<Contribution> {
        match (self, activity) {
            (
                Goal::Purchase {
                    currency_code,
                    products,
                    single_purchase,
                    ..
                },
                ActivityKind::Purchase(p),
            ) => {
                if &p.currency_code != currency_code
                    || p.net_amount_minor <= 0
                    || products.as_ref().is_some_and(|s| !s.matches(p))
                {
                    return None;
                }
                Some(if *single_purchase {
                    Contribution::AtLeast(p.net_amount_minor)
                } else {
                    Contribution::Add(p.net_amount_minor)
                })
            }
            (
                Goal::Frequency {
                    minimum_purchase_spend,
                    ..
                },
                ActivityKind::Purchase(p),
            ) => match minimum_purchase_spend {
                Some((min, currency))
                    if &p.currency_code != currency || p.net_amount_minor < *min =>
                {
                    None
                }
                _ => Some(Contribution::Add(1)),
            },
            (
                Goal::Event {
                    event_type_code, ..
                },
                ActivityKind::Event { event_type_code: c },
            ) if c == event_type_code => Some(Contribution::Add(1)),
            // A referred customer counts once they signed up, or (require_purchase) once they
            // made their first purchase.
            (
                Goal::Referral {
                    require_purchase, ..
                },
                ActivityKind::Referral { purchased, .. },
            ) if require_purchase == purchased => Some(Contribution::Add(1)),
            _ => None,
        }
    }
}

enum Contribution {
    Add(i64),
    AtLeast(i64),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AwardKind {
    /// A fixed amount of commerce money.
    FixedAmount {
        amount_minor: i64,
        currency_code: String,
    },
    /// Cash back: a share of the qualifying spend, optionally capped.
    SpendShare {
        basis_points: i32,
        max_amount_minor: Option<i64>,
        currency_code: Option<String>,
    },
    /// Reward points of a points type (empty = default).
    Points { points: i64, points_type_id: String },
    /// A voucher of a reward, issued to the customer (the reward must be one that can be
    /// issued to a customer: see [`voucher_award_allowed`]).
    Voucher { reward_id: Uuid },
}

/// Whether vouchers of a reward type may be an offer's award: campaign, coupon / catalogue
/// and simple rewards are issued to a customer; a cash desk reward's voucher is created at
/// checkout after payment and a gift voucher is bought for someone else, so neither can be won.
pub fn voucher_award_allowed(t: super::RewardType) -> bool {
    use super::RewardType as T;
    match t {
        T::Campaign | T::Coupon | T::Simple => true,
        T::CashDesk | T::Gift => false,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Award {
    pub kind: AwardKind,
    /// Days the awarded money, points or voucher stays valid; 0 = no end (a voucher still ends
    /// with its reward's own voucher validity).
    pub validity_days: i32,
}

impl Award {
    fn validate(&self, v: &mut Violations, prefix: &str, goals: &[Goal]) {
        match &self.kind {
            AwardKind::FixedAmount {
                amount_minor,
                currency_code,
            } => {
                if *amount_minor <= 0 {
                    v.add(format!("{prefix}.fixed_amount.amount_minor"), "must be > 0");
                }
                check_currency(
                    v,
                    &format!("{prefix}.fixed_amount.currency_code"),
                    currency_code,
                );
            }
            AwardKind::SpendShare {
                basis_points,
                max_amount_minor,
                currency_code,
            } => {
                if !(1..=10_000).contains(basis_points) {
                    v.add(format!("{prefix}.spend_basis_points"), "must be 1..10000");
                }
                if max_amount_minor.is_some_and(|m| m <= 0) {
                    v.add(format!("{prefix}.max_amount.amount_minor"), "must be > 0");
                }
                if let Some(c) = currency_code {
                    check_currency(v, &format!("{prefix}.max_amount.currency_code"), c);
                }
                if !goals.iter().any(|g| matches!(g, Goal::Purchase { .. })) {
                    v.add(
                        format!("{prefix}.spend_basis_points"),
                        "needs a purchase goal: it is a share of the qualifying spend",
                    );
                }
            }
            AwardKind::Points { points, .. } => {
                if !(1..=1_000_000_000).contains(points) {
                    v.add(format!("{prefix}.points"), "must be 1..1000000000");
                }
            }
            AwardKind::Voucher { reward_id } => {
                if reward_id.is_nil() {
                    v.add(format!("{prefix}.reward_id"), "must be a reward UUID");
                }
            }
        }
        if !(0..=3650).contains(&self.validity_days) {
            v.add(format!("{prefix}.validity_days"), "must be 0..3650");
        }
    }

    /// The value won for `qualifying_spend_minor` of `currency`.
    pub fn value(&self, qualifying_spend_minor: i64, currency: &str) -> AwardValue {
        match &self.kind {
            AwardKind::FixedAmount {
                amount_minor,
                currency_code,
            } => AwardValue::Money {
                amount_minor: *amount_minor,
                currency_code: currency_code.clone(),
            },
            AwardKind::SpendShare {
                basis_points,
                max_amount_minor,
                ..
            } => {
                // i128: a large spend times 10,000 must not overflow.
                let share = (i128::from(qualifying_spend_minor) * i128::from(*basis_points)
                    / 10_000) as i64;
                AwardValue::Money {
                    amount_minor: max_amount_minor.map_or(share, |m| share.min(m)),
                    currency_code: currency.to_owned(),
                }
            }
            AwardKind::Points {
                points,
                points_type_id,
            } => AwardValue::Points {
                points: *points,
                points_type_id: points_type_id.clone(),
            },
            AwardKind::Voucher { reward_id } => AwardValue::Voucher {
                reward_id: *reward_id,
            },
        }
    }

    /// When the award stops being spendable; `None` = never.
    pub fn expires_at(&self, awarded_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (self.validity_days > 0).then(|| awarded_at + Duration::days(i64::from(self.validity_days)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AwardValue {
    Money {
        amount_minor: i64,
        currency_code: String,
    },
    Points {
        points: i64,
        points_type_id: String,
    },
    /// A voucher of this reward is issued to the customer.
    Voucher {
        reward_id: Uuid,
    },
}

/// An offer as the partner describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferSpec {
    pub display_name: String,
    pub description: String,
    pub state: OfferState,
    pub scheme_id: Option<Uuid>,
    pub goal_group: GoalGroup,
    pub goals: Vec<Goal>,
    pub award: Award,
    pub auto_redeem: bool,
    pub merchant_business_unit_id: Option<Uuid>,
    pub commercial_terms_id: Option<Uuid>,
    pub priority: i32,
    pub business_unit_ids: Vec<Uuid>,
    /// Only customers in one of these segments progress and win; empty = every customer.
    #[serde(default)]
    pub segment_ids: Vec<Uuid>,
    /// 0 = unlimited.
    pub max_awards_per_customer: i32,
    /// 0 = progress accumulates over the whole validity.
    pub period_days: i32,
    pub validity: Validity,
}

impl OfferSpec {
    pub fn validate(&self, v: &mut Violations, prefix: &str) {
        check_name(v, &format!("{prefix}.display_name"), &self.display_name);
        check_description(v, &format!("{prefix}.description"), &self.description);
        if self.goals.is_empty() || self.goals.len() > MAX_GOALS {
            v.add(
                format!("{prefix}.goals"),
                format!("must have 1..{MAX_GOALS} goals"),
            );
        }
        for (i, g) in self.goals.iter().enumerate() {
            let field = format!("{prefix}.goals[{i}]");
            if g.group() != self.goal_group {
                v.add(
                    field.clone(),
                    format!(
                        "is a {} goal but the offer's goal_group is {}",
                        g.group().as_str().to_uppercase(),
                        self.goal_group.as_str().to_uppercase()
                    ),
                );
            }
            g.validate(v, &field);
        }
        self.award
            .validate(v, &format!("{prefix}.award"), &self.goals);
        if self.merchant_business_unit_id.is_some() && self.commercial_terms_id.is_none() {
            v.add(
                format!("{prefix}.commercial_terms_id"),
                "is required for a merchant's offer",
            );
        }
        if self.merchant_business_unit_id.is_none() && self.commercial_terms_id.is_some() {
            v.add(
                format!("{prefix}.merchant_business_unit_id"),
                "is required with commercial_terms_id",
            );
        }
        if !(0..=1000).contains(&self.priority) {
            v.add(format!("{prefix}.priority"), "must be 0..1000");
        }
        if self.segment_ids.len() > MAX_OFFER_SEGMENTS {
            v.add(
                format!("{prefix}.segment_ids"),
                format!("at most {MAX_OFFER_SEGMENTS} segments"),
            );
        }
        if self.max_awards_per_customer < 0 {
            v.add(
                format!("{prefix}.max_awards_per_customer"),
                "must be >= 0 (0 = unlimited)",
            );
        }
        if !(0..=3660).contains(&self.period_days) {
            v.add(format!("{prefix}.period_days"), "must be 0..3660");
        }
        self.validity.validate(v, prefix);
    }

    /// Whether a customer in `segments` (their segment memberships; `None` = unknown) may
    /// progress: an offer without segments admits everyone, one with segments only members
    /// of one of them (never a customer whose segments are unknown).
    pub fn admits(&self, segments: Option<&[Uuid]>) -> bool {
        self.segment_ids.is_empty()
            || segments.is_some_and(|s| self.segment_ids.iter().any(|id| s.contains(id)))
    }

    /// Whether activity at `at` in `business_unit` can count towards this offer.
    pub fn counts(&self, at: DateTime<Utc>, business_unit: Option<Uuid>) -> bool {
        self.state == OfferState::Active
            && self.validity.contains(at)
            && (self.business_unit_ids.is_empty()
                || business_unit.is_some_and(|b| self.business_unit_ids.contains(&b)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub id: Uuid,
    pub spec: OfferSpec,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

// ---- Activity and progress ----

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purchase {
    pub purchase_id: String,
    pub currency_code: String,
    pub net_amount_minor: i64,
    pub product_codes: Vec<String>,
    pub product_group_codes: Vec<String>,
    pub brand_codes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivityKind {
    Purchase(Purchase),
    Event {
        event_type_code: String,
    },
    /// A customer the activity's customer referred signed up (`purchased: false`) or made
    /// their first purchase (`purchased: true`); the activity is the referrer's.
    Referral {
        referred_customer_id: Uuid,
        purchased: bool,
    },
}

/// Something a customer did that may advance offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub kind: ActivityKind,
    pub at: DateTime<Utc>,
    pub business_unit_id: Option<Uuid>,
}

/// A customer's progress towards one offer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Per goal, in the order of the offer's goals.
    pub values: Vec<i64>,
    /// Spend counted by purchase goals since the last award (the base of a cash-back award).
    pub qualifying_spend_minor: i64,
    pub award_count: i32,
    pub last_award_at: Option<DateTime<Utc>>,
    /// End of the current period (exclusive); `None` = no period running.
    pub period_end: Option<DateTime<Utc>>,
}

/// What one activity did to an offer's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advance {
    pub progress: Progress,
    /// Whether the activity counted at all (otherwise nothing needs storing).
    pub counted: bool,
    /// The award won by this activity, if it completed the goals.
    pub award: Option<AwardValue>,
}

/// Advances `progress` by one activity: applies each goal's contribution, restarts an expired
/// period, and awards when every goal is achieved (then the goals restart).
pub fn advance(offer: &OfferSpec, progress: &Progress, activity: &Activity) -> Advance {
    let unchanged = Advance {
        progress: progress.clone(),
        counted: false,
        award: None,
    };
    if !offer.counts(activity.at, activity.business_unit_id)
        || (offer.max_awards_per_customer > 0
            && progress.award_count >= offer.max_awards_per_customer)
    {
        return unchanged;
    }
    let contributions: Vec<Option<Contribution>> = offer
        .goals
        .iter()
        .map(|g| g.contribution(&activity.kind))
        .collect();
    if contributions.iter().all(Option::is_none) {
        return unchanged;
    }
    let mut next = progress.clone();
    next.values.resize(offer.goals.len(), 0);
    if offer.period_days > 0 {
        if next.period_end.is_some_and(|end| activity.at >= end) {
            next.values.iter_mut().for_each(|x| *x = 0);
            next.qualifying_spend_minor = 0;
            next.period_end = None;
        }
        if next.period_end.is_none() {
            next.period_end = Some(activity.at + Duration::days(i64::from(offer.period_days)));
        }
    }
    for (value, c) in next.values.iter_mut().zip(&contributions) {
        match c {
            Some(Contribution::Add(n)) => *value = value.saturating_add(*n),
            Some(Contribution::AtLeast(n)) => *value = (*value).max(*n),
            None => {}
        }
    }
    let mut currency = String::new();
    if let ActivityKind::Purchase(p) = &activity.kind {
        let spend_counted = offer
            .goals
            .iter()
            .zip(&contributions)
            .any(|(g, c)| c.is_some() && matches!(g, Goal::Purchase { .. }));
        if spend_counted {
            next.qualifying_spend_minor = next
                .qualifying_spend_minor
                .saturating_add(p.net_amount_minor);
        }
        currency = p.currency_code.clone();
    }
    let achieved = offer
        .goals
        .iter()
        .zip(&next.values)
        .all(|(g, value)| *value >= g.target());
    let mut award = None;
    if achieved {
        award = Some(offer.award.value(next.qualifying_spend_minor, &currency));
        next.award_count += 1;
        next.last_award_at = Some(activity.at);
        next.values.iter_mut().for_each(|x| *x = 0);
        next.qualifying_spend_minor = 0;
        next.period_end = None;
    }
    Advance {
        progress: next,
        counted: true,
        award,
    }
}

// ---- Commercial terms ----

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermsSpec {
    pub merchant_business_unit_id: Uuid,
    pub display_name: String,
    pub allow_merchant_offers: bool,
    /// 0 = unlimited.
    pub max_active_offers: i32,
    pub merchant_funding_basis_points: i32,
    pub transaction_fee_basis_points: i32,
    pub transaction_fee: Option<(i64, String)>,
    pub network_spend: bool,
    pub settlement_period_days: i32,
    /// `from` is required.
    pub validity: Validity,
}

impl TermsSpec {
    pub fn validate(&self, v: &mut Violations, prefix: &str) {
        check_name(v, &format!("{prefix}.display_name"), &self.display_name);
        if self.max_active_offers < 0 {
            v.add(
                format!("{prefix}.max_active_offers"),
                "must be >= 0 (0 = unlimited)",
            );
        }
        for (field, bp) in [
            (
                "merchant_funding_basis_points",
                self.merchant_funding_basis_points,
            ),
            (
                "transaction_fee_basis_points",
                self.transaction_fee_basis_points,
            ),
        ] {
            if !(0..=10_000).contains(&bp) {
                v.add(format!("{prefix}.{field}"), "must be 0..10000");
            }
        }
        if let Some((amount, currency)) = &self.transaction_fee {
            if *amount < 0 {
                v.add(
                    format!("{prefix}.transaction_fee.amount_minor"),
                    "must be >= 0",
                );
            }
            check_currency(
                v,
                &format!("{prefix}.transaction_fee.currency_code"),
                currency,
            );
        }
        if !(1..=366).contains(&self.settlement_period_days) {
            v.add(format!("{prefix}.settlement_period_days"), "must be 1..366");
        }
        if self.validity.from.is_none() {
            v.add(format!("{prefix}.valid_from_time"), "is required");
        }
        self.validity.validate(v, prefix);
    }

    /// Whether two validity windows share an instant (`until` is exclusive).
    pub fn overlaps(&self, other: &Validity) -> bool {
        let a = &self.validity;
        let starts_before_other_ends = match (a.from, other.until) {
            (Some(f), Some(u)) => f < u,
            _ => true,
        };
        let other_starts_before_end = match (other.from, a.until) {
            (Some(f), Some(u)) => f < u,
            _ => true,
        };
        starts_before_other_ends && other_starts_before_end
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    pub id: Uuid,
    pub spec: TermsSpec,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Why a merchant may not have (another) active offer under its terms.
pub fn check_merchant_offer(
    terms: &TermsSpec,
    at: DateTime<Utc>,
    active_offers: i64,
) -> Result<(), (&'static str, String)> {
    if !terms.allow_merchant_offers || !terms.validity.contains(at) {
        return Err((
            "MERCHANT_OFFERS_NOT_ALLOWED",
            "the merchant's commercial terms do not allow merchant offers now".to_owned(),
        ));
    }
    if terms.max_active_offers > 0 && active_offers >= i64::from(terms.max_active_offers) {
        return Err((
            "MERCHANT_OFFER_LIMIT_REACHED",
            format!(
                "the merchant already has its maximum of {} active offers",
                terms.max_active_offers
            ),
        ));
    }
    Ok(())
}

/// An offer whose goals one activity reaches, competing for its award.
#[derive(Debug, Clone, Copy)]
pub struct Achieved<'a> {
    pub offer_id: Uuid,
    pub priority: i32,
    pub value: &'a AwardValue,
}

impl AwardValue {
    /// The size HIGHEST_AWARD and LOWEST_AWARD compare, in the award's own unit: minor units of
    /// money, points; a voucher's worth is not known before it is used, so it counts as 0.
    pub fn size(&self) -> i64 {
        match self {
            AwardValue::Money { amount_minor, .. } => *amount_minor,
            AwardValue::Points { points, .. } => *points,
            AwardValue::Voucher { .. } => 0,
        }
    }
}

/// The CRM.COM rewards resolution of the offers one activity achieves: the ids of those that
/// award. `All` and `Priority` keep every offer by decreasing priority (ties: smaller id) up to
/// `max_awards` (0 = no cap); `HighestAward` / `LowestAward` keep the one offer with the
/// largest / smallest award (ties: higher priority, then smaller id).
pub fn resolve_awards(
    mode: super::resolution::ResolutionMode,
    max_awards: u32,
    achieved: &[Achieved],
) -> Vec<Uuid> {
    use super::resolution::ResolutionMode as M;
    let mut order: Vec<&Achieved> = achieved.iter().collect();
    let by_priority = |a: &&Achieved, b: &&Achieved| {
        b.priority
            .cmp(&a.priority)
            .then(a.offer_id.cmp(&b.offer_id))
    };
    let keep = match mode {
        M::All | M::Priority => {
            order.sort_by(by_priority);
            if max_awards == 0 {
                order.len()
            } else {
                max_awards as usize
            }
        }
        M::HighestAward => {
            order.sort_by(|a, b| b.value.size().cmp(&a.value.size()).then(by_priority(a, b)));
            1
        }
        M::LowestAward => {
            order.sort_by(|a, b| a.value.size().cmp(&b.value.size()).then(by_priority(a, b)));
            1
        }
    };
    order.into_iter().take(keep).map(|a| a.offer_id).collect()
}

#[cfg(test)]
mod tests;

//! Identity rules: what a valid partner, customer and identifier are. No I/O here.
pub mod accounts;
pub mod activity;
pub mod business_unit;
pub mod cards;
pub mod consents;
pub mod customer_data;
pub mod import;

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use loyalty_platform::{Role, Violations};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The kind of an identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IdentifierKind {
    Card,
    Ean,
    Qr,
    Email,
    Phone,
    Cookie,
    ExternalId,
}

impl IdentifierKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::Card => "card",
            IdentifierKind::Ean => "ean",
            IdentifierKind::Qr => "qr",
            IdentifierKind::Email => "email",
            IdentifierKind::Phone => "phone",
            IdentifierKind::Cookie => "cookie",
            IdentifierKind::ExternalId => "external_id",
        }
    }

    pub fn parse_str(s: &str) -> Option<Self> {
        Some(match s {
            "card" => IdentifierKind::Card,
            "ean" => IdentifierKind::Ean,
            "qr" => IdentifierKind::Qr,
            "email" => IdentifierKind::Email,
            "phone" => IdentifierKind::Phone,
            "cookie" => IdentifierKind::Cookie,
            "external_id" => IdentifierKind::ExternalId,
            _ => return None,
        })
    }
}

/// An identifier value in canonical form, so that `" 1234 5678 "` and `"12345678"` are the
/// same card and emails compare case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentifierValue {
    pub kind: IdentifierKind,
    pub value: String,
}

impl IdentifierValue {
    /// Errors are the reason, for the `identifier.value` field.
    pub fn parse(kind: IdentifierKind, raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("is required".to_owned());
        }
        let value = match kind {
            IdentifierKind::Card | IdentifierKind::Ean => {
                let v: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
                if kind == IdentifierKind::Ean && !v.chars().all(|c| c.is_ascii_digit()) {
                    return Err("an EAN must be digits only".to_owned());
                }
                if !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    return Err("a card number may hold letters, digits and '-' only".to_owned());
                }
                v.to_ascii_uppercase()
            }
            IdentifierKind::Email => parse_email(trimmed)?,
            IdentifierKind::Phone => parse_phone(trimmed)?,
            IdentifierKind::Qr | IdentifierKind::Cookie | IdentifierKind::ExternalId => {
                trimmed.to_owned()
            }
        };
        if value.chars().count() > 128 {
            return Err("must be at most 128 characters".to_owned());
        }
        Ok(IdentifierValue { kind, value })
    }
}

fn parse_email(s: &str) -> Result<String, String> {
    let s = s.trim().to_lowercase();
    let valid = s.len() <= 254
        && s.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !s.chars().any(char::is_whitespace);
    if valid {
        Ok(s)
    } else {
        Err("must be an email address".to_owned())
    }
}

fn parse_phone(s: &str) -> Result<String, String> {
    let compact: String = s
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
        .collect();
    let digits = compact.strip_prefix('+').unwrap_or("");
    if (8..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) {
        Ok(compact)
    } else {
        Err("must be a phone number in E.164 form, e.g. +420601234567".to_owned())
    }
}

/// Empty, or a two-letter code whose letters pass `letter`.
fn is_code(s: &str, letter: fn(&char) -> bool) -> bool {
    s.is_empty() || (s.len() == 2 && s.chars().all(|c| letter(&c)))
}

fn check_len(v: &mut Violations, field: &str, value: &str, min: usize, max: usize) {
    let n = value.chars().count();
    if n < min {
        v.add(
            field,
            if min == 1 {
                "is required".to_owned()
            } else {
                format!("must be at least {min} characters")
            },
        );
    } else if n > max {
        v.add(field, format!("must be at most {max} characters"));
    }
}

/// An ISO 4217 code: three upper-case letters.
pub fn check_currency(v: &mut Violations, field: &str, code: &str) {
    if !(code.len() == 3 && code.chars().all(|c| c.is_ascii_uppercase())) {
        v.add(field, "must be an ISO 4217 code such as EUR");
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partner {
    pub id: Uuid,
    pub display_name: String,
    pub default_currency_code: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct PartnerDraft {
    pub display_name: String,
    pub default_currency_code: String,
}

impl PartnerDraft {
    pub fn validate(&self, v: &mut Violations, prefix: &str) {
        check_len(
            v,
            &format!("{prefix}.display_name"),
            self.display_name.trim(),
            1,
            200,
        );
        check_currency(
            v,
            &format!("{prefix}.default_currency_code"),
            &self.default_currency_code,
        );
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: Uuid,
    pub partner_id: Uuid,
    pub display_name: String,
    pub roles: Vec<Role>,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A new key and its secret, which exists only in this answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedApiKey {
    pub api_key: ApiKey,
    pub secret: String,
}

#[derive(Debug, Clone)]
pub struct ApiKeyDraft {
    pub partner_id: Uuid,
    pub display_name: String,
    pub roles: Vec<Role>,
}

impl ApiKeyDraft {
    pub fn validate(&self, v: &mut Violations) {
        check_len(v, "display_name", self.display_name.trim(), 1, 200);
        if self.roles.is_empty() {
            v.add("roles", "at least one role is required");
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gender {
    Unspecified,
    Female,
    Male,
    Other,
}

impl Gender {
    pub fn as_str(self) -> &'static str {
        match self {
            Gender::Unspecified => "",
            Gender::Female => "female",
            Gender::Male => "male",
            Gender::Other => "other",
        }
    }

    pub fn parse_str(s: &str) -> Gender {
        match s {
            "female" => Gender::Female,
            "male" => Gender::Male,
            "other" => Gender::Other,
            _ => Gender::Unspecified,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CustomerState {
    Active,
    Blocked,
    Erased,
    /// Merged into another account (`Customer::merged_into`).
    Merged,
}

impl CustomerState {
    pub fn as_str(self) -> &'static str {
        match self {
            CustomerState::Active => "active",
            CustomerState::Blocked => "blocked",
            CustomerState::Erased => "erased",
            CustomerState::Merged => "merged",
        }
    }

    pub fn parse_str(s: &str) -> CustomerState {
        match s {
            "blocked" => CustomerState::Blocked,
            "erased" => CustomerState::Erased,
            "merged" => CustomerState::Merged,
            _ => CustomerState::Active,
        }
    }
}

/// Customer data as the caller gives it; `validate` normalises and checks it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerProfile {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: String,
    pub birth_date: String,
    pub gender: Option<Gender>,
    pub language_code: String,
    pub city: String,
    pub country_code: String,
    pub properties: BTreeMap<String, String>,
    pub street: String,
    pub postal_code: String,
    /// The customer's home store or e-shop (a business unit of the partner).
    pub home_business_unit_id: Option<Uuid>,
    /// Contact sources (how the customer was acquired), as ids of the partner's catalogue.
    pub contact_source_ids: Vec<Uuid>,
    /// Interests, as ids of the partner's catalogue.
    pub interest_ids: Vec<Uuid>,
}

impl CustomerProfile {
    /// Checks every field (reporting under `prefix`) and returns the normalised profile.
    pub fn normalise(mut self, v: &mut Violations, prefix: &str) -> Self {
        let f = |name: &str| format!("{prefix}.{name}");
        self.first_name = self.first_name.trim().to_owned();
        self.last_name = self.last_name.trim().to_owned();
        check_len(v, &f("first_name"), &self.first_name, 0, 100);
        check_len(v, &f("last_name"), &self.last_name, 0, 100);
        if !self.email.trim().is_empty() {
            match parse_email(&self.email) {
                Ok(e) => self.email = e,
                Err(e) => v.add(f("email"), e),
            }
        }
        if !self.phone.trim().is_empty() {
            match parse_phone(&self.phone) {
                Ok(p) => self.phone = p,
                Err(e) => v.add(f("phone"), e),
            }
        }
        if !self.birth_date.is_empty() {
            match NaiveDate::parse_from_str(&self.birth_date, "%Y-%m-%d") {
                Ok(d) if d <= Utc::now().date_naive() => {}
                Ok(_) => v.add(f("birth_date"), "must not be in the future"),
                Err(_) => v.add(f("birth_date"), "must be a date as YYYY-MM-DD"),
            }
        }
        if !is_code(&self.language_code, |c| c.is_ascii_lowercase()) {
            v.add(f("language_code"), "must be an ISO 639-1 code such as cs");
        }
        if !is_code(&self.country_code, |c| c.is_ascii_uppercase()) {
            v.add(
                f("country_code"),
                "must be an ISO 3166-1 alpha-2 code such as CZ",
            );
        }
        check_len(v, &f("city"), &self.city, 0, 100);
        self.street = self.street.trim().to_owned();
        self.postal_code = self.postal_code.trim().to_owned();
        check_len(v, &f("street"), &self.street, 0, 200);
        check_len(v, &f("postal_code"), &self.postal_code, 0, 20);
        for (name, ids) in [
            ("contact_source_ids", &mut self.contact_source_ids),
            ("interest_ids", &mut self.interest_ids),
        ] {
            if ids.len() > 100 {
                v.add(f(name), "at most 100 entries");
            }
            ids.sort();
            ids.dedup();
        }
        if self.properties.len() > 200 {
            v.add(f("properties"), "at most 200 properties");
        }
        for (key, value) in &self.properties {
            let key_ok = (1..=64).contains(&key.len())
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !key_ok {
                v.add(
                    format!("{prefix}.properties[{key}]"),
                    "key must be 1..64 characters of [a-z0-9_]",
                );
            }
            if value.chars().count() > 1024 {
                v.add(
                    format!("{prefix}.properties[{key}]"),
                    "value must be at most 1024 characters",
                );
            }
        }
        self
    }

    /// The attributes segmentation reads, as published in `CustomerCreated`.
    pub fn attributes(&self) -> BTreeMap<String, String> {
        let mut a = BTreeMap::new();
        for (k, v) in [
            ("first_name", &self.first_name),
            ("last_name", &self.last_name),
            ("email", &self.email),
            ("phone", &self.phone),
            ("birth_date", &self.birth_date),
            ("language_code", &self.language_code),
            ("city", &self.city),
            ("country_code", &self.country_code),
        ] {
            if !v.is_empty() {
                a.insert(k.to_owned(), v.clone());
            }
        }
        if let Some(g) = self.gender.filter(|g| *g != Gender::Unspecified) {
            a.insert("gender".to_owned(), g.as_str().to_owned());
        }
        a
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub id: Uuid,
    pub partner_id: Uuid,
    pub profile: CustomerProfile,
    pub state: CustomerState,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Why the account is blocked; empty unless blocked.
    pub block_reason: String,
    pub blocked_at: Option<DateTime<Utc>>,
    pub erased_at: Option<DateTime<Utc>>,
    /// The surviving account, when this one was merged into it.
    pub merged_into: Option<Uuid>,
    /// The customer who referred this one, given when the account was created. A merge
    /// points it from the merged account to the survivor; erasing either account clears it.
    pub referrer: Option<Uuid>,
}

impl Customer {
    /// A new active account.
    pub fn new(partner_id: Uuid, profile: CustomerProfile, now: DateTime<Utc>) -> Self {
        Customer {
            id: Uuid::now_v7(),
            partner_id,
            profile,
            state: CustomerState::Active,
            created_at: now,
            updated_at: now,
            block_reason: String::new(),
            blocked_at: None,
            erased_at: None,
            merged_into: None,
            referrer: None,
        }
    }
}

/// Now, to the microsecond: what PostgreSQL keeps, so etags computed before and after storing
/// agree.
pub fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

impl Customer {
    /// Changes with every update, so a client can detect concurrent edits.
    pub fn etag(&self) -> String {
        format!("t{}", self.updated_at.timestamp_micros())
    }
}

/// Profile fields an update mask may name (`properties.<key>` changes one property).
pub const UPDATABLE_PROFILE_FIELDS: &[&str] = &[
    "first_name",
    "last_name",
    "email",
    "phone",
    "birth_date",
    "gender",
    "language_code",
    "city",
    "country_code",
    "street",
    "postal_code",
    "home_business_unit_id",
    "contact_source_ids",
    "interest_ids",
    "properties",
];

impl CustomerProfile {
    /// Copies the masked fields of `incoming` onto a copy of `self`; unknown paths are reported
    /// under `update_mask`. The result still needs `normalise`.
    pub fn with_updates(
        &self,
        incoming: &CustomerProfile,
        paths: &[String],
        v: &mut Violations,
    ) -> CustomerProfile {
        let mut next = self.clone();
        if paths.is_empty() {
            v.add("update_mask", "name the fields to update");
        }
        for path in paths {
            match path.as_str() {
                "first_name" => next.first_name = incoming.first_name.clone(),
                "last_name" => next.last_name = incoming.last_name.clone(),
                "email" => next.email = incoming.email.clone(),
                "phone" => next.phone = incoming.phone.clone(),
                "birth_date" => next.birth_date = incoming.birth_date.clone(),
                "gender" => next.gender = incoming.gender,
                "language_code" => next.language_code = incoming.language_code.clone(),
                "city" => next.city = incoming.city.clone(),
                "country_code" => next.country_code = incoming.country_code.clone(),
                "street" => next.street = incoming.street.clone(),
                "postal_code" => next.postal_code = incoming.postal_code.clone(),
                "home_business_unit_id" => {
                    next.home_business_unit_id = incoming.home_business_unit_id
                }
                "contact_source_ids" => {
                    next.contact_source_ids = incoming.contact_source_ids.clone()
                }
                "interest_ids" => next.interest_ids = incoming.interest_ids.clone(),
                "properties" => next.properties = incoming.properties.clone(),
                p => match p.strip_prefix("properties.") {
                    Some(key) => match incoming.properties.get(key) {
                        Some(value) => {
                            next.properties.insert(key.to_owned(), value.clone());
                        }
                        None => {
                            next.properties.remove(key);
                        }
                    },
                    None => v.add(
                        "update_mask",
                        format!(
                            "{p:?} cannot be updated (known: {})",
                            UPDATABLE_PROFILE_FIELDS.join(", ")
                        ),
                    ),
                },
            }
        }
        next
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdentifierState {
    Active,
    /// Lost or stolen: does not resolve.
    Blocked,
    /// Detached from its customer; kept for history, the value is free again.
    Removed,
    /// A card reported lost and replaced (ReplaceCard): never resolves again, the value stays
    /// taken.
    Lost,
    /// A card replaced by a new one (damaged, upgraded): never resolves again, the value stays
    /// taken.
    Replaced,
}

impl IdentifierState {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierState::Active => "active",
            IdentifierState::Blocked => "blocked",
            IdentifierState::Removed => "removed",
            IdentifierState::Lost => "lost",
            IdentifierState::Replaced => "replaced",
        }
    }

    pub fn parse_str(s: &str) -> IdentifierState {
        match s {
            "blocked" => IdentifierState::Blocked,
            "removed" => IdentifierState::Removed,
            "lost" => IdentifierState::Lost,
            "replaced" => IdentifierState::Replaced,
            _ => IdentifierState::Active,
        }
    }
}

/// The message of an `ErrorInfo` reason an identifier change or replacement is refused with.
pub fn identifier_refusal_message(reason: &str) -> &'static str {
    match reason {
        "IDENTIFIER_REMOVED" => "the identifier was removed",
        "IDENTIFIER_LOST" => "the card was reported lost and replaced; it cannot change any more",
        "IDENTIFIER_REPLACED" => "the card was replaced; it cannot change any more",
        "IDENTIFIER_NOT_A_CARD" => "only a card identifier can be replaced by a card",
        _ => "the identifier cannot change",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identifier {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub value: IdentifierValue,
    pub state: IdentifierState,
    /// Why it is blocked ("" otherwise).
    #[serde(default)]
    pub block_reason: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

/// A state change of an identifier, as asked by a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentifierChange {
    Block,
    Unblock,
    Remove,
}

impl Identifier {
    /// Applies a change, or says why it cannot be applied (an `ErrorInfo` reason).
    pub fn change(
        &self,
        change: IdentifierChange,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Identifier, &'static str> {
        let mut next = self.clone();
        next.updated_at = Some(now);
        match (change, self.state) {
            (_, IdentifierState::Removed) => return Err("IDENTIFIER_REMOVED"),
            (_, IdentifierState::Lost) => return Err("IDENTIFIER_LOST"),
            (_, IdentifierState::Replaced) => return Err("IDENTIFIER_REPLACED"),
            (IdentifierChange::Block, _) => {
                next.state = IdentifierState::Blocked;
                next.block_reason = reason.trim().to_owned();
            }
            (IdentifierChange::Unblock, _) => {
                next.state = IdentifierState::Active;
                next.block_reason.clear();
            }
            (IdentifierChange::Remove, _) => {
                next.state = IdentifierState::Removed;
            }
        }
        Ok(next)
    }
}

/// What `ResolveIdentifier` finds, as cached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub customer_id: Uuid,
    pub identifier_id: Uuid,
    /// Set when the identifier is blocked: resolving it fails with this reason.
    pub blocked: Option<String>,
    /// Set when the card was replaced (LOST or REPLACED): it never resolves again.
    #[serde(default)]
    pub retired: Option<RetiredCard>,
}

/// Why a replaced card no longer resolves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredCard {
    /// Reported lost or stolen (LOST), rather than REPLACED.
    pub lost: bool,
    /// The reason given on replacement ("" if none).
    pub reason: String,
}

impl From<&Identifier> for Resolution {
    fn from(i: &Identifier) -> Self {
        Resolution {
            customer_id: i.customer_id,
            identifier_id: i.id,
            blocked: (i.state == IdentifierState::Blocked).then(|| i.block_reason.clone()),
            retired: matches!(i.state, IdentifierState::Lost | IdentifierState::Replaced).then(
                || RetiredCard {
                    lost: i.state == IdentifierState::Lost,
                    reason: i.block_reason.clone(),
                },
            ),
        }
    }
}

/// Cache key of an identifier's resolution.
pub fn resolution_key(partner_id: Uuid, value: &IdentifierValue) -> String {
    format!(
        "identity:resolve:{partner_id}:{}:{}",
        value.kind.as_str(),
        value.value
    )
}

/// A customer account with its identifiers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CustomerWithIdentifiers {
    pub customer: Customer,
    pub identifiers: Vec<Identifier>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card() -> Identifier {
        Identifier {
            id: Uuid::now_v7(),
            customer_id: Uuid::now_v7(),
            value: IdentifierValue::parse(IdentifierKind::Card, "1234").unwrap(),
            state: IdentifierState::Active,
            block_reason: String::new(),
            created_at: Utc::now(),
            updated_at: None,
        }
    }

    #[test]
    fn a_blocked_card_resolves_with_its_reason_and_a_removed_one_cannot_change() {
        let now = Utc::now();
        let blocked = card()
            .change(IdentifierChange::Block, " lost ", now)
            .unwrap();
        assert_eq!(Resolution::from(&blocked).blocked.as_deref(), Some("lost"));
        let active = blocked.change(IdentifierChange::Unblock, "", now).unwrap();
        assert_eq!(Resolution::from(&active).blocked, None);
        let removed = active.change(IdentifierChange::Remove, "", now).unwrap();
        assert_eq!(removed.state, IdentifierState::Removed);
        assert_eq!(
            removed.change(IdentifierChange::Unblock, "", now),
            Err("IDENTIFIER_REMOVED")
        );
    }

    #[test]
    fn an_update_changes_only_the_masked_fields_and_single_properties() {
        let mut current = CustomerProfile {
            first_name: "Jana".into(),
            city: "Praha".into(),
            ..Default::default()
        };
        current.properties.insert("tier".into(), "silver".into());
        current.properties.insert("pet".into(), "dog".into());
        let mut incoming = CustomerProfile {
            first_name: "ignored".into(),
            city: "Brno".into(),
            ..Default::default()
        };
        incoming.properties.insert("tier".into(), "gold".into());
        let mut v = Violations::new();
        let next = current.with_updates(
            &incoming,
            &[
                "city".into(),
                "properties.tier".into(),
                "properties.pet".into(),
            ],
            &mut v,
        );
        assert!(v.is_empty());
        assert_eq!(next.first_name, "Jana");
        assert_eq!(next.city, "Brno");
        assert_eq!(
            next.properties.get("tier").map(String::as_str),
            Some("gold")
        );
        assert!(
            !next.properties.contains_key("pet"),
            "a masked key missing from the request is removed"
        );
        let mut bad = Violations::new();
        current.with_updates(&incoming, &["state".into()], &mut bad);
        assert!(
            bad.into_result()
                .unwrap_err()
                .to_string()
                .contains("update_mask")
        );
    }

    #[test]
    fn card_numbers_are_normalised() {
        let v = IdentifierValue::parse(IdentifierKind::Card, " 1234 5678-ab ").unwrap();
        assert_eq!(v.value, "12345678-AB");
        assert!(IdentifierValue::parse(IdentifierKind::Card, "   ").is_err());
        assert!(IdentifierValue::parse(IdentifierKind::Card, "12;34").is_err());
        assert!(IdentifierValue::parse(IdentifierKind::Ean, "12345A").is_err());
    }

    #[test]
    fn emails_and_phones_are_checked_and_canonical() {
        assert_eq!(
            IdentifierValue::parse(IdentifierKind::Email, "Jana@Example.CZ")
                .unwrap()
                .value,
            "jana@example.cz"
        );
        assert!(IdentifierValue::parse(IdentifierKind::Email, "jana@").is_err());
        assert_eq!(
            IdentifierValue::parse(IdentifierKind::Phone, "+420 601 234 567")
                .unwrap()
                .value,
            "+420601234567"
        );
        assert!(IdentifierValue::parse(IdentifierKind::Phone, "601234567").is_err());
    }

    #[test]
    fn a_profile_reports_every_bad_field() {
        let mut v = Violations::new();
        let mut properties = BTreeMap::new();
        properties.insert("Bad Key".to_owned(), "x".to_owned());
        CustomerProfile {
            email: "nope".into(),
            birth_date: "1990-13-01".into(),
            country_code: "cz".into(),
            properties,
            ..Default::default()
        }
        .normalise(&mut v, "customer");
        let err = v.into_result().unwrap_err();
        let text = err.to_string();
        for field in [
            "customer.email",
            "customer.birth_date",
            "customer.country_code",
            "customer.properties[Bad Key]",
        ] {
            assert!(text.contains(field), "{field} missing in {text}");
        }
    }

    #[test]
    fn attributes_skip_empty_fields() {
        let p = CustomerProfile {
            first_name: "Jana".into(),
            city: "Praha".into(),
            gender: Some(Gender::Female),
            ..Default::default()
        };
        let a = p.attributes();
        assert_eq!(a.get("city").map(String::as_str), Some("Praha"));
        assert_eq!(a.get("gender").map(String::as_str), Some("female"));
        assert!(!a.contains_key("email"));
    }
}

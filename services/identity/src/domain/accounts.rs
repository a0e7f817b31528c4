//! Rules of partner settings, customer search, the account lifecycle (block, merge, erase) and
//! the account history (Customer 360 timeline). No I/O here.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use loyalty_platform::Violations;
use loyalty_proto::events::v1 as ev;
use prost::Message;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Customer, CustomerProfile, CustomerState, Identifier, IdentifierKind};

// ---- Partners ----

/// Regions of the IANA time-zone database (`Area/Location` names).
const TZ_AREAS: &[&str] = &[
    "Africa",
    "America",
    "Antarctica",
    "Arctic",
    "Asia",
    "Atlantic",
    "Australia",
    "Europe",
    "Indian",
    "Pacific",
    "Etc",
];

/// Whether `tz` has the shape of an IANA time-zone name: `UTC`, or `Area/Location[/Sub]` with an
/// IANA area and ASCII letters, digits, `_`, `-`, `+` in each part. (No time-zone database is
/// linked into the service, so existence of the location itself is not checked.)
pub fn is_iana_time_zone(tz: &str) -> bool {
    if tz == "UTC" {
        return true;
    }
    let mut parts = tz.split('/');
    let Some(area) = parts.next() else {
        return false;
    };
    let rest: Vec<&str> = parts.collect();
    TZ_AREAS.contains(&area)
        && (1..=2).contains(&rest.len())
        && tz.len() <= 64
        && rest.iter().all(|p| {
            !p.is_empty()
                && p.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        })
}

/// A partner with its settings, as UpdatePartner and ListPartners see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerSettings {
    pub id: Uuid,
    pub display_name: String,
    pub default_currency_code: String,
    pub time_zone: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// Fields UpdatePartner may change.
pub const UPDATABLE_PARTNER_FIELDS: &[&str] =
    &["display_name", "time_zone", "default_currency_code"];

impl PartnerSettings {
    /// Changes with every update.
    pub fn etag(&self) -> String {
        format!(
            "p{}",
            self.updated_at
                .unwrap_or(self.created_at)
                .timestamp_micros()
        )
    }

    /// Applies the masked fields of `incoming`, reporting bad values under `partner.*`.
    pub fn with_updates(
        &self,
        incoming: &PartnerSettings,
        paths: &[String],
        v: &mut Violations,
    ) -> PartnerSettings {
        let mut next = self.clone();
        if paths.is_empty() {
            v.add("update_mask", "name the fields to update");
        }
        for path in paths {
            match path.as_str() {
                "display_name" => {
                    next.display_name = incoming.display_name.trim().to_owned();
                    let n = next.display_name.chars().count();
                    if !(1..=200).contains(&n) {
                        v.add("partner.display_name", "must be 1..200 characters");
                    }
                }
                "time_zone" => {
                    next.time_zone = match incoming.time_zone.trim() {
                        "" => "UTC".to_owned(),
                        tz => tz.to_owned(),
                    };
                    if !is_iana_time_zone(&next.time_zone) {
                        v.add(
                            "partner.time_zone",
                            "must be an IANA time zone such as Europe/Prague",
                        );
                    }
                }
                "default_currency_code" => {
                    next.default_currency_code = incoming.default_currency_code.trim().to_owned();
                    super::check_currency(
                        v,
                        "partner.default_currency_code",
                        &next.default_currency_code,
                    );
                }
                p => v.add(
                    "update_mask",
                    format!(
                        "{p:?} cannot be updated (known: {})",
                        UPDATABLE_PARTNER_FIELDS.join(", ")
                    ),
                ),
            }
        }
        next
    }
}

// ---- Search ----

/// Folds text for search: lower case, Latin diacritics removed (`Dvořák` → `dvorak`).
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let base = match c {
            'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' | 'ā' | 'ă' | 'ą' | 'Á' | 'À' | 'Â' | 'Ä' | 'Ã'
            | 'Å' | 'Ā' | 'Ă' | 'Ą' => "a",
            'æ' | 'Æ' => "ae",
            'č' | 'ć' | 'ç' | 'ĉ' | 'ċ' | 'Č' | 'Ć' | 'Ç' | 'Ĉ' | 'Ċ' => "c",
            'ď' | 'đ' | 'Ď' | 'Đ' => "d",
            'é' | 'è' | 'ê' | 'ë' | 'ě' | 'ē' | 'ė' | 'ę' | 'É' | 'È' | 'Ê' | 'Ë' | 'Ě' | 'Ē'
            | 'Ė' | 'Ę' => "e",
            'ğ' | 'ģ' | 'Ğ' | 'Ģ' => "g",
            'í' | 'ì' | 'î' | 'ï' | 'ī' | 'į' | 'ı' | 'Í' | 'Ì' | 'Î' | 'Ï' | 'Ī' | 'Į' | 'İ' => {
                "i"
            }
            'ķ' | 'Ķ' => "k",
            'ĺ' | 'ľ' | 'ł' | 'ļ' | 'Ĺ' | 'Ľ' | 'Ł' | 'Ļ' => "l",
            'ñ' | 'ň' | 'ń' | 'ņ' | 'Ñ' | 'Ň' | 'Ń' | 'Ņ' => "n",
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' | 'ő' | 'ø' | 'ō' | 'Ó' | 'Ò' | 'Ô' | 'Ö' | 'Õ' | 'Ő'
            | 'Ø' | 'Ō' => "o",
            'œ' | 'Œ' => "oe",
            'ř' | 'ŕ' | 'Ř' | 'Ŕ' => "r",
            'š' | 'ś' | 'ş' | 'ș' | 'Š' | 'Ś' | 'Ş' | 'Ș' => "s",
            'ß' => "ss",
            'ť' | 'ţ' | 'ț' | 'Ť' | 'Ţ' | 'Ț' => "t",
            'ú' | 'ù' | 'û' | 'ü' | 'ů' | 'ű' | 'ū' | 'ų' | 'Ú' | 'Ù' | 'Û' | 'Ü' | 'Ů' | 'Ű'
            | 'Ū' | 'Ų' => "u",
            'ý' | 'ÿ' | 'Ý' | 'Ÿ' => "y",
            'ž' | 'ź' | 'ż' | 'Ž' | 'Ź' | 'Ż' => "z",
            _ => {
                out.extend(c.to_lowercase());
                continue;
            }
        };
        out.push_str(base);
    }
    out
}

/// What a search term was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermField {
    FirstName,
    LastName,
    Email,
    Phone,
    Identifier,
    /// `key=value` of a customer property, matched exactly (not by free text).
    Property,
}

impl TermField {
    pub fn as_str(self) -> &'static str {
        match self {
            TermField::FirstName => "first_name",
            TermField::LastName => "last_name",
            TermField::Email => "email",
            TermField::Phone => "phone",
            TermField::Identifier => "identifier",
            TermField::Property => "property",
        }
    }
}

/// Longest term kept; longer property values are not indexed for property filters.
pub const MAX_TERM_CHARS: usize = 300;

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// The search terms of an account: folded name words, the email, the phone's digits (whole
/// and the national part, its last 9 digits), each identifier value, and `key=value` of each
/// property. Empty for erased or merged accounts: they are never found.
pub fn search_terms(customer: &Customer, identifiers: &[Identifier]) -> Vec<(TermField, String)> {
    if matches!(
        customer.state,
        CustomerState::Erased | CustomerState::Merged
    ) {
        return vec![];
    }
    let p: &CustomerProfile = &customer.profile;
    let mut terms = Vec::new();
    for (field, text) in [
        (TermField::FirstName, &p.first_name),
        (TermField::LastName, &p.last_name),
    ] {
        for word in fold(text).split(|c: char| !c.is_alphanumeric()) {
            if !word.is_empty() {
                terms.push((field, word.to_owned()));
            }
        }
    }
    if !p.email.is_empty() {
        terms.push((TermField::Email, fold(&p.email)));
    }
    push_phone(&mut terms, TermField::Phone, &p.phone);
    for i in identifiers {
        match i.value.kind {
            IdentifierKind::Phone => push_phone(&mut terms, TermField::Identifier, &i.value.value),
            _ => terms.push((TermField::Identifier, fold(&i.value.value))),
        }
    }
    for (k, v) in &p.properties {
        terms.push((TermField::Property, property_term(k, v)));
    }
    terms.retain(|(_, t)| !t.is_empty() && t.chars().count() <= MAX_TERM_CHARS);
    terms.sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
    terms.dedup();
    terms
}

fn push_phone(terms: &mut Vec<(TermField, String)>, field: TermField, phone: &str) {
    let d = digits(phone);
    if d.is_empty() {
        return;
    }
    if d.len() > 9 {
        terms.push((field, d[d.len() - 9..].to_owned()));
    }
    terms.push((field, d));
}

/// The term of a property value: exact, case-sensitive.
pub fn property_term(key: &str, value: &str) -> String {
    format!("{key}={value}")
}

/// A parsed SearchCustomers request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// Every token must be a prefix of one of the account's terms.
    pub tokens: Vec<String>,
    /// Property terms that must all be present.
    pub properties: Vec<String>,
}

impl SearchQuery {
    /// Parses the free text and property filters, reporting under `query` / `property_filters`.
    pub fn parse(
        v: &mut Violations,
        query: &str,
        property_filters: &BTreeMap<String, String>,
    ) -> SearchQuery {
        let q = query.trim();
        let n = q.chars().count();
        let mut tokens = Vec::new();
        if n == 0 && property_filters.is_empty() {
            v.add("query", "is required unless property_filters are given");
        } else if n > 0 && !(2..=200).contains(&n) {
            v.add("query", "must be 2..200 characters");
        } else if n > 0 {
            let phone_like = q
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '-' | '(' | ')' | '/'));
            if phone_like && q.chars().any(|c| c.is_ascii_digit()) {
                tokens.push(digits(q));
            } else {
                tokens = fold(q)
                    .split(char::is_whitespace)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect();
                tokens.sort();
                tokens.dedup();
            }
            if tokens.len() > 8 {
                v.add("query", "at most 8 words");
            }
        }
        if property_filters.len() > 10 {
            v.add("property_filters", "at most 10 entries");
        }
        let properties = property_filters
            .iter()
            .map(|(k, val)| property_term(k, val))
            .collect();
        SearchQuery { tokens, properties }
    }
}

/// Parses `key=value` property filters of ListCustomers.
pub fn parse_property_filters(v: &mut Violations, filters: &[String]) -> Vec<String> {
    if filters.len() > 10 {
        v.add("property_filters", "at most 10 entries");
    }
    filters
        .iter()
        .enumerate()
        .filter_map(|(i, f)| match f.split_once('=') {
            Some((k, val)) if !k.trim().is_empty() => Some(property_term(k.trim(), val)),
            _ => {
                v.add(format!("property_filters[{i}]"), "must be key=value");
                None
            }
        })
        .collect()
}

// ---- Account lifecycle ----

/// Blocks an account, or says why it cannot be (an `ErrorInfo` reason).
pub fn block(c: &Customer, reason: &str, now: DateTime<Utc>) -> Result<Customer, &'static str> {
    check_live(c)?;
    let mut next = c.clone();
    next.state = CustomerState::Blocked;
    next.block_reason = reason.trim().to_owned();
    next.blocked_at = Some(now);
    next.updated_at = now;
    Ok(next)
}

/// Unblocks an account; unblocking an active one changes nothing.
pub fn unblock(c: &Customer, now: DateTime<Utc>) -> Result<Customer, &'static str> {
    check_live(c)?;
    let mut next = c.clone();
    if c.state == CustomerState::Blocked {
        next.state = CustomerState::Active;
        next.block_reason.clear();
        next.blocked_at = None;
        next.updated_at = now;
    }
    Ok(next)
}

fn check_live(c: &Customer) -> Result<(), &'static str> {
    match c.state {
        CustomerState::Erased => Err("CUSTOMER_ERASED"),
        CustomerState::Merged => Err("CUSTOMER_MERGED"),
        CustomerState::Active | CustomerState::Blocked => Ok(()),
    }
}

/// Checks that `merged` may be merged into `survivor` and returns the merged account after.
pub fn merge(
    survivor: &Customer,
    merged: &Customer,
    now: DateTime<Utc>,
) -> Result<Customer, &'static str> {
    check_live(survivor)?;
    check_live(merged)?;
    let mut next = merged.clone();
    next.state = CustomerState::Merged;
    next.merged_into = Some(survivor.id);
    next.updated_at = now;
    Ok(next)
}

/// The surviving account after a merge: changed now, and no longer referred by the merged
/// account (which it absorbs). The merged account keeps its own referrer; every other account
/// the merged one referred is referred by the survivor after the merge (see
/// [`referrer_after_merge`]).
pub fn survivor_after_merge(
    survivor: &Customer,
    merged: &Customer,
    now: DateTime<Utc>,
) -> Customer {
    let mut next = survivor.clone();
    next.referrer = referrer_after_merge(survivor.id, survivor.referrer, survivor.id, merged.id);
    next.updated_at = now;
    next
}

/// Who refers `customer` (referred by `referrer`) once `merged` was merged into `survivor`:
/// the survivor instead of the merged account, except for the survivor itself, which refers
/// nobody to itself.
pub fn referrer_after_merge(
    customer: Uuid,
    referrer: Option<Uuid>,
    survivor: Uuid,
    merged: Uuid,
) -> Option<Uuid> {
    match referrer {
        Some(r) if r == merged => (customer != survivor).then_some(survivor),
        other => other,
    }
}

/// The account after erasure: every personal field emptied, state ERASED. Erasing an erased
/// account returns it unchanged.
pub fn erase(c: &Customer, now: DateTime<Utc>) -> Customer {
    if c.state == CustomerState::Erased {
        return c.clone();
    }
    let mut next = c.clone();
    next.profile = CustomerProfile {
        gender: None,
        ..Default::default()
    };
    next.state = CustomerState::Erased;
    next.referrer = None;
    next.block_reason.clear();
    next.blocked_at = None;
    next.erased_at = Some(now);
    next.updated_at = now;
    next
}

/// The value an erased identifier keeps: no personal data, unique, and never resolvable.
pub fn erased_identifier_value(identifier_id: Uuid) -> String {
    format!("erased-{}", identifier_id.simple())
}

// ---- Account history ----

/// Kind of an account-history entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HistoryKind {
    Purchase,
    Communication,
    Segment,
    Audience,
    AutomationAction,
    Loyalty,
    Account,
    Event,
}

impl HistoryKind {
    pub const ALL: [HistoryKind; 8] = [
        HistoryKind::Purchase,
        HistoryKind::Communication,
        HistoryKind::Segment,
        HistoryKind::Audience,
        HistoryKind::AutomationAction,
        HistoryKind::Loyalty,
        HistoryKind::Account,
        HistoryKind::Event,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HistoryKind::Purchase => "purchase",
            HistoryKind::Communication => "communication",
            HistoryKind::Segment => "segment",
            HistoryKind::Audience => "audience",
            HistoryKind::AutomationAction => "automation_action",
            HistoryKind::Loyalty => "loyalty",
            HistoryKind::Account => "account",
            HistoryKind::Event => "event",
        }
    }

    pub fn parse_str(s: &str) -> Option<HistoryKind> {
        HistoryKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One entry of the account history, before it gets an id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryDraft {
    pub customer_id: Uuid,
    pub kind: HistoryKind,
    /// One line without personal data (names, contacts, identifier values, free text): it
    /// survives erasure. Personal data goes to `details`, which erasure empties.
    pub summary: String,
    pub resource_type: String,
    pub resource_id: String,
    pub details: BTreeMap<String, String>,
    /// When it happened, if the event says so more precisely than its envelope.
    pub occurred_at: Option<DateTime<Utc>>,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub kind: HistoryKind,
    pub event_type: String,
    pub event_id: Uuid,
    pub summary: String,
    pub resource_type: String,
    pub resource_id: String,
    pub details: BTreeMap<String, String>,
    pub occurred_at: DateTime<Utc>,
}

/// Position in a history listed newest first: the last entry's time and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCursor {
    pub occurred_at: DateTime<Utc>,
    pub id: Uuid,
}

impl HistoryCursor {
    pub fn encode(&self) -> String {
        format!(
            "{}.{}",
            self.occurred_at.timestamp_micros(),
            self.id.simple()
        )
    }

    pub fn decode(token: &str) -> Option<HistoryCursor> {
        let (micros, id) = token.split_once('.')?;
        Some(HistoryCursor {
            occurred_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: Uuid::try_parse(id).ok()?,
        })
    }
}

fn uuid_of(s: &str) -> Option<Uuid> {
    Uuid::try_parse(s).ok()
}

fn ts(t: &Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.as_ref().and_then(loyalty_platform::time::from_timestamp)
}

fn identifier_label(r: &Option<loyalty_proto::types::v1::IdentifierRef>) -> &'static str {
    use loyalty_proto::types::v1::IdentifierType as T;
    match r
        .as_ref()
        .and_then(|r| T::try_from(r.r#type).ok())
        .unwrap_or(T::Unspecified)
    {
        T::Card => "Card",
        T::Ean => "EAN code",
        T::Qr => "QR code",
        T::Email => "Email identifier",
        T::Phone => "Phone identifier",
        T::Cookie => "Cookie",
        T::ExternalId => "External id",
        T::Unspecified => "Identifier",
    }
}

fn identifier_details(
    r: &Option<loyalty_proto::types::v1::IdentifierRef>,
) -> BTreeMap<String, String> {
    let mut d = BTreeMap::new();
    if let Some(r) = r {
        d.insert("identifier_value".into(), r.value.clone());
    }
    d
}

fn details<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

struct Draft {
    customer: String,
    kind: HistoryKind,
    summary: String,
    resource_type: &'static str,
    resource_id: String,
    details: BTreeMap<String, String>,
    occurred_at: Option<DateTime<Utc>>,
}

fn draft(
    customer: &str,
    kind: HistoryKind,
    summary: impl Into<String>,
    resource_type: &'static str,
    resource_id: &str,
    details: BTreeMap<String, String>,
) -> Draft {
    Draft {
        customer: customer.to_owned(),
        kind,
        summary: summary.into(),
        resource_type,
        resource_id: resource_id.to_owned(),
        details,
        occurred_at: None,
    }
}

fn money(m: &Option<loyalty_proto::types::v1::Money>) -> String {
    m.as_ref()
        .map(|m| format!("{} {}", m.amount_minor, m.currency_code))
        .unwrap_or_default()
}

/// The account-history entries a domain event makes, one per customer it concerns. Events that
/// concern no customer (or cannot be decoded) make none.
pub fn project(event_type: &str, payload: &[u8]) -> Vec<HistoryDraft> {
    project_drafts(event_type, payload)
        .into_iter()
        .filter_map(|d| {
            let mut summary = d.summary;
            if summary.chars().count() > 500 {
                summary = summary.chars().take(500).collect();
            }
            Some(HistoryDraft {
                customer_id: uuid_of(&d.customer)?,
                kind: d.kind,
                summary,
                resource_type: d.resource_type.to_owned(),
                resource_id: d.resource_id,
                details: d.details,
                occurred_at: d.occurred_at,
            })
        })
        .collect()
}

fn project_drafts(event_type: &str, payload: &[u8]) -> Vec<Draft> {
    use HistoryKind::*;
    let Some(name) = event_type.strip_prefix("loyalty.events.v1.") else {
        return vec![];
    };
    macro_rules! decode {
        ($t:ty) => {
            match <$t>::decode(payload) {
                Ok(e) => e,
                Err(_) => return vec![],
            }
        };
    }
    let one = |d: Draft| vec![d];
    match name {
        "CustomerCreated" => {
            let e = decode!(ev::CustomerCreated);
            one(draft(
                &e.customer_id,
                Account,
                "Account created",
                "customer",
                &e.customer_id,
                BTreeMap::new(),
            ))
        }
        "CustomerUpdated" => {
            let e = decode!(ev::CustomerUpdated);
            let mut fields: Vec<&str> = e.attributes.keys().map(String::as_str).collect();
            fields.sort();
            one(draft(
                &e.customer_id,
                Account,
                "Account data changed",
                "customer",
                &e.customer_id,
                details([("attributes", fields.join(","))]),
            ))
        }
        "IdentifierAdded" => {
            let e = decode!(ev::IdentifierAdded);
            one(draft(
                &e.customer_id,
                Account,
                format!("{} added", identifier_label(&e.identifier)),
                "identifier",
                "",
                identifier_details(&e.identifier),
            ))
        }
        "IdentifierBlocked" => {
            let e = decode!(ev::IdentifierBlocked);
            let mut d = identifier_details(&e.identifier);
            if !e.reason.is_empty() {
                d.insert("reason".into(), e.reason);
            }
            one(draft(
                &e.customer_id,
                Account,
                format!("{} blocked", identifier_label(&e.identifier)),
                "identifier",
                &e.identifier_id,
                d,
            ))
        }
        "IdentifierUnblocked" => {
            let e = decode!(ev::IdentifierUnblocked);
            one(draft(
                &e.customer_id,
                Account,
                format!("{} unblocked", identifier_label(&e.identifier)),
                "identifier",
                &e.identifier_id,
                identifier_details(&e.identifier),
            ))
        }
        "IdentifierRemoved" => {
            let e = decode!(ev::IdentifierRemoved);
            one(draft(
                &e.customer_id,
                Account,
                format!("{} removed", identifier_label(&e.identifier)),
                "identifier",
                &e.identifier_id,
                identifier_details(&e.identifier),
            ))
        }
        "IdentifierReplaced" => {
            let e = decode!(ev::IdentifierReplaced);
            let mut d = BTreeMap::new();
            if let Some(o) = &e.old_identifier {
                d.insert("old_identifier_value".into(), o.value.clone());
            }
            if let Some(n) = &e.new_identifier {
                d.insert("new_identifier_value".into(), n.value.clone());
            }
            d.insert("lost".into(), e.lost.to_string());
            one(draft(
                &e.customer_id,
                Account,
                format!("{} replaced", identifier_label(&e.new_identifier)),
                "identifier",
                &e.new_identifier_id,
                d,
            ))
        }
        "CustomerBlocked" => {
            let e = decode!(ev::CustomerBlocked);
            one(draft(
                &e.customer_id,
                Account,
                "Account blocked",
                "customer",
                &e.customer_id,
                details([("reason", e.reason)]),
            ))
        }
        "CustomerUnblocked" => {
            let e = decode!(ev::CustomerUnblocked);
            one(draft(
                &e.customer_id,
                Account,
                "Account unblocked",
                "customer",
                &e.customer_id,
                BTreeMap::new(),
            ))
        }
        "CustomerMerged" => {
            let e = decode!(ev::CustomerMerged);
            vec![
                draft(
                    &e.surviving_customer_id,
                    Account,
                    "Duplicate account merged into this one",
                    "customer",
                    &e.merged_customer_id,
                    BTreeMap::new(),
                ),
                draft(
                    &e.merged_customer_id,
                    Account,
                    "Account merged into another",
                    "customer",
                    &e.surviving_customer_id,
                    BTreeMap::new(),
                ),
            ]
        }
        "CustomerErased" => {
            let e = decode!(ev::CustomerErased);
            one(draft(
                &e.customer_id,
                Account,
                "Personal data erased",
                "customer",
                &e.customer_id,
                BTreeMap::new(),
            ))
        }
        "CustomerRelationChanged" => {
            let e = decode!(ev::CustomerRelationChanged);
            let verb = if e.deleted { "removed" } else { "recorded" };
            let d = details([("relation_type_id", e.relation_type_id.clone())]);
            vec![
                draft(
                    &e.from_customer_id,
                    Account,
                    format!("Relation {verb}"),
                    "relation",
                    &e.relation_id,
                    d.clone(),
                ),
                draft(
                    &e.to_customer_id,
                    Account,
                    format!("Relation {verb}"),
                    "relation",
                    &e.relation_id,
                    d,
                ),
            ]
        }
        "ConsentChanged" => {
            let e = decode!(ev::ConsentChanged);
            one(draft(
                &e.customer_id,
                Account,
                format!("Consent {} {}", e.consent_type_code, e.state.to_lowercase()),
                "consent_type",
                &e.consent_type_id,
                details([("state", e.state.clone())]),
            ))
        }
        "EmailBounceStateChanged" => {
            let e = decode!(ev::EmailBounceStateChanged);
            let summary = if e.hard_bounced {
                "Email hard-bounced".to_owned()
            } else if e.soft_bounce_count > 0 {
                format!("Email soft-bounced ({}x)", e.soft_bounce_count)
            } else {
                "Email bounce state reset".to_owned()
            };
            one(draft(
                &e.customer_id,
                Communication,
                summary,
                "customer",
                &e.customer_id,
                details([("excluded", e.excluded.to_string())]),
            ))
        }
        "EventTracked" => {
            let e = decode!(ev::EventTracked);
            let mut d: BTreeMap<String, String> = e.properties.into_iter().collect();
            if !e.business_unit_id.is_empty() {
                d.insert("business_unit_id".into(), e.business_unit_id);
            }
            let mut x = draft(
                &e.customer_id,
                Event,
                format!("Event {} tracked", e.event_type_code),
                "customer_event",
                &e.customer_event_id,
                d,
            );
            x.occurred_at = ts(&e.occur_time);
            one(x)
        }
        "PurchaseCompleted" => {
            let e = decode!(ev::PurchaseCompleted);
            let mut x = draft(
                &e.customer_id,
                Purchase,
                format!(
                    "Purchase of {} {} (earned {} points)",
                    e.net_amount_minor, e.currency_code, e.points_earned
                ),
                "purchase",
                &e.purchase_id,
                details([
                    ("transaction_id", e.transaction_id.clone()),
                    ("net_amount_minor", e.net_amount_minor.to_string()),
                    ("discount_amount_minor", e.discount_amount_minor.to_string()),
                    ("currency_code", e.currency_code.clone()),
                    ("points_earned", e.points_earned.to_string()),
                    ("points_spent", e.points_spent.to_string()),
                    ("business_unit_id", e.business_unit_id.clone()),
                    ("channel", e.channel.clone()),
                    ("voucher_codes", e.voucher_codes.join(",")),
                ]),
            );
            x.occurred_at = ts(&e.purchase_time);
            one(x)
        }
        "PurchaseReturned" => {
            let e = decode!(ev::PurchaseReturned);
            one(draft(
                &e.customer_id,
                Purchase,
                format!(
                    "Return of {} {} ({} points reversed)",
                    e.refund_amount_minor, e.currency_code, e.points_reversed
                ),
                "purchase",
                &e.purchase_id,
                details([
                    ("return_id", e.return_id.clone()),
                    ("transaction_id", e.transaction_id.clone()),
                    ("refund_amount_minor", e.refund_amount_minor.to_string()),
                    ("currency_code", e.currency_code.clone()),
                    ("points_reversed", e.points_reversed.to_string()),
                    ("points_refunded", e.points_refunded.to_string()),
                    ("fully_returned", e.fully_returned.to_string()),
                ]),
            ))
        }
        "PointsPosted" => {
            let e = decode!(ev::PointsPosted);
            let verb = if e.points >= 0 { "credited" } else { "debited" };
            let unit = if e.points_type_code.is_empty() {
                "points".to_owned()
            } else {
                e.points_type_code.clone()
            };
            one(draft(
                &e.customer_id,
                Loyalty,
                format!("{} {unit} {verb}", e.points.abs()),
                "ledger_entry",
                &e.entry_id,
                details([
                    ("points", e.points.to_string()),
                    ("available_points", e.available_points.to_string()),
                    ("kind", e.kind.clone()),
                    ("cause", e.cause.clone()),
                    ("reference", e.reference.clone()),
                    ("points_type_id", e.points_type_id.clone()),
                ]),
            ))
        }
        "PointsExpired" => {
            let e = decode!(ev::PointsExpired);
            one(draft(
                &e.customer_id,
                Loyalty,
                format!("{} points expired", e.points.abs()),
                "ledger_entry",
                &e.entry_id,
                details([
                    ("points", e.points.to_string()),
                    ("available_points", e.available_points.to_string()),
                    ("points_type_id", e.points_type_id.clone()),
                ]),
            ))
        }
        "SpendingBlocked" => {
            let e = decode!(ev::SpendingBlocked);
            one(draft(
                &e.customer_id,
                Loyalty,
                "Wallet spending blocked",
                "wallet",
                "",
                details([("reason", e.reason), ("points_type_id", e.points_type_id)]),
            ))
        }
        "SpendingUnblocked" => {
            let e = decode!(ev::SpendingUnblocked);
            one(draft(
                &e.customer_id,
                Loyalty,
                "Wallet spending unblocked",
                "wallet",
                "",
                details([("points_type_id", e.points_type_id)]),
            ))
        }
        "PayoutCompleted" => {
            let e = decode!(ev::PayoutCompleted);
            one(draft(
                &e.customer_id,
                Loyalty,
                format!("Payout of {} completed", money(&e.amount)),
                "ledger_entry",
                &e.entry_id,
                details([("payment_method_reference", e.payment_method_reference)]),
            ))
        }
        "VoucherIssued" => {
            let e = decode!(ev::VoucherIssued);
            one(draft(
                &e.customer_id,
                Loyalty,
                "Voucher issued",
                "voucher",
                &e.voucher_id,
                details([
                    ("reward_id", e.reward_id.clone()),
                    ("code", e.code.clone()),
                    ("source", e.source.clone()),
                    ("gift_recipient_email", e.gift_recipient_email.clone()),
                ]),
            ))
        }
        "VoucherRedeemed" => {
            let e = decode!(ev::VoucherRedeemed);
            one(draft(
                &e.customer_id,
                Loyalty,
                format!("Voucher redeemed ({} discount)", e.discount_minor),
                "voucher",
                &e.voucher_id,
                details([
                    ("reward_id", e.reward_id.clone()),
                    ("transaction_id", e.transaction_id.clone()),
                    ("business_unit_id", e.business_unit_id.clone()),
                    ("discount_minor", e.discount_minor.to_string()),
                ]),
            ))
        }
        "VoucherCancelled" => {
            let e = decode!(ev::VoucherCancelled);
            one(draft(
                &e.customer_id,
                Loyalty,
                "Voucher cancelled",
                "voucher",
                &e.voucher_id,
                details([("reason", e.reason)]),
            ))
        }
        "VoucherReinstated" => {
            let e = decode!(ev::VoucherReinstated);
            one(draft(
                &e.customer_id,
                Loyalty,
                "Voucher reinstated",
                "voucher",
                &e.voucher_id,
                details([("transaction_id", e.transaction_id)]),
            ))
        }
        "TierChanged" => {
            let e = decode!(ev::TierChanged);
            let verb = if e.rank >= e.previous_rank {
                "up"
            } else {
                "down"
            };
            one(draft(
                &e.customer_id,
                Loyalty,
                format!("Membership level changed {verb} to rank {}", e.rank),
                "tier",
                &e.tier_id,
                details([
                    ("previous_tier_id", e.previous_tier_id.clone()),
                    ("manual", e.manual.to_string()),
                ]),
            ))
        }
        "SchemeJoined" => {
            let e = decode!(ev::SchemeJoined);
            one(draft(
                &e.customer_id,
                Loyalty,
                "Reward scheme joined",
                "reward_scheme",
                &e.scheme_id,
                BTreeMap::new(),
            ))
        }
        "SchemeLeft" => {
            let e = decode!(ev::SchemeLeft);
            one(draft(
                &e.customer_id,
                Loyalty,
                "Reward scheme left",
                "reward_scheme",
                &e.scheme_id,
                BTreeMap::new(),
            ))
        }
        "OfferAwarded" => {
            let e = decode!(ev::OfferAwarded);
            one(draft(
                &e.customer_id,
                Loyalty,
                "Reward offer awarded",
                "reward_offer",
                &e.offer_id,
                details([
                    ("amount", money(&e.amount)),
                    ("points", e.points.to_string()),
                    ("voucher_id", e.voucher_id.clone()),
                ]),
            ))
        }
        "SegmentEntered" => {
            let e = decode!(ev::SegmentEntered);
            one(draft(
                &e.customer_id,
                Segment,
                "Entered a segment",
                "segment",
                &e.segment_id,
                details([("cause", e.cause)]),
            ))
        }
        "SegmentLeft" => {
            let e = decode!(ev::SegmentLeft);
            one(draft(
                &e.customer_id,
                Segment,
                "Left a segment",
                "segment",
                &e.segment_id,
                details([("cause", e.cause)]),
            ))
        }
        "BadgeAssigned" => {
            let e = decode!(ev::BadgeAssigned);
            one(draft(
                &e.customer_id,
                Segment,
                "Badge assigned",
                "badge",
                &e.badge_id,
                details([("cause", e.cause)]),
            ))
        }
        "BadgeRemoved" => {
            let e = decode!(ev::BadgeRemoved);
            one(draft(
                &e.customer_id,
                Segment,
                "Badge removed",
                "badge",
                &e.badge_id,
                details([("cause", e.cause)]),
            ))
        }
        "AudienceMembershipChanged" => {
            let e = decode!(ev::AudienceMembershipChanged);
            let s = if e.added {
                "Added to an audience"
            } else {
                "Removed from an audience"
            };
            one(draft(
                &e.customer_id,
                Audience,
                s,
                "audience",
                &e.audience_id,
                BTreeMap::new(),
            ))
        }
        "MessageSent" => {
            let e = decode!(ev::MessageSent);
            one(draft(
                &e.customer_id,
                Communication,
                format!("{} message sent", e.channel),
                "message",
                &e.message_id,
                details([
                    ("campaign_id", e.campaign_id.clone()),
                    ("workflow_execution_id", e.workflow_execution_id.clone()),
                ]),
            ))
        }
        "MessageDelivered" => {
            let e = decode!(ev::MessageDelivered);
            one(draft(
                &e.customer_id,
                Communication,
                format!("{} message delivered", e.channel),
                "message",
                &e.message_id,
                details([("campaign_id", e.campaign_id.clone())]),
            ))
        }
        "MessageBounced" => {
            let e = decode!(ev::MessageBounced);
            let how = if e.hard { "hard" } else { "soft" };
            one(draft(
                &e.customer_id,
                Communication,
                format!("{} message bounced ({how})", e.channel),
                "message",
                &e.message_id,
                details([
                    ("campaign_id", e.campaign_id.clone()),
                    ("address", e.address.clone()),
                ]),
            ))
        }
        "MessageOpened" => {
            let e = decode!(ev::MessageOpened);
            one(draft(
                &e.customer_id,
                Communication,
                "Message opened",
                "message",
                &e.message_id,
                details([("campaign_id", e.campaign_id.clone())]),
            ))
        }
        "MessageClicked" => {
            let e = decode!(ev::MessageClicked);
            one(draft(
                &e.customer_id,
                Communication,
                "Message link clicked",
                "message",
                &e.message_id,
                details([
                    ("campaign_id", e.campaign_id.clone()),
                    ("url", e.url.clone()),
                ]),
            ))
        }
        "MessageUnsubscribed" => {
            let e = decode!(ev::MessageUnsubscribed);
            one(draft(
                &e.customer_id,
                Communication,
                format!("Unsubscribed from {} messages", e.channel),
                "message",
                &e.message_id,
                details([("campaign_id", e.campaign_id.clone())]),
            ))
        }
        "MessageFailed" => {
            let e = decode!(ev::MessageFailed);
            let s = if e.suppressed {
                "Message suppressed"
            } else {
                "Message failed"
            };
            one(draft(
                &e.customer_id,
                Communication,
                s,
                "message",
                &e.message_id,
                details([("reason", e.reason)]),
            ))
        }
        "WorkflowExecutionStarted" => {
            let e = decode!(ev::WorkflowExecutionStarted);
            one(draft(
                &e.customer_id,
                AutomationAction,
                "Automation workflow started",
                "workflow",
                &e.workflow_id,
                details([("workflow_execution_id", e.workflow_execution_id)]),
            ))
        }
        "WorkflowStepExecuted" => {
            let e = decode!(ev::WorkflowStepExecuted);
            one(draft(
                &e.customer_id,
                AutomationAction,
                format!("Automation step {} ({})", e.node_kind, e.outcome),
                "workflow",
                &e.workflow_id,
                details([
                    ("workflow_execution_id", e.workflow_execution_id.clone()),
                    ("node_key", e.node_key.clone()),
                    ("result_reference", e.result_reference.clone()),
                ]),
            ))
        }
        "WorkflowExecutionEnded" => {
            let e = decode!(ev::WorkflowExecutionEnded);
            one(draft(
                &e.customer_id,
                AutomationAction,
                format!("Automation workflow ended ({})", e.state.to_lowercase()),
                "workflow",
                &e.workflow_id,
                details([("workflow_execution_id", e.workflow_execution_id)]),
            ))
        }
        _ => vec![],
    }
}

/// Whether `event_type` can make account-history entries.
pub fn is_projected(event_type: &str) -> bool {
    PROJECTED.iter().any(|n| {
        event_type
            .strip_prefix("loyalty.events.v1.")
            .is_some_and(|s| s == *n)
    })
}

const PROJECTED: &[&str] = &[
    "CustomerCreated",
    "CustomerUpdated",
    "IdentifierAdded",
    "IdentifierBlocked",
    "IdentifierUnblocked",
    "IdentifierRemoved",
    "IdentifierReplaced",
    "CustomerBlocked",
    "CustomerUnblocked",
    "CustomerMerged",
    "CustomerErased",
    "CustomerRelationChanged",
    "ConsentChanged",
    "EmailBounceStateChanged",
    "EventTracked",
    "PurchaseCompleted",
    "PurchaseReturned",
    "PointsPosted",
    "PointsExpired",
    "SpendingBlocked",
    "SpendingUnblocked",
    "PayoutCompleted",
    "VoucherIssued",
    "VoucherRedeemed",
    "VoucherCancelled",
    "VoucherReinstated",
    "TierChanged",
    "SchemeJoined",
    "SchemeLeft",
    "OfferAwarded",
    "SegmentEntered",
    "SegmentLeft",
    "BadgeAssigned",
    "BadgeRemoved",
    "AudienceMembershipChanged",
    "MessageSent",
    "MessageDelivered",
    "MessageBounced",
    "MessageOpened",
    "MessageClicked",
    "MessageUnsubscribed",
    "MessageFailed",
    "WorkflowExecutionStarted",
    "WorkflowStepExecuted",
    "WorkflowExecutionEnded",
];

/// Identity events after which a customer's search terms are rebuilt, with the customer ids
/// they concern.
pub fn reindexed_customers(event_type: &str, payload: &[u8]) -> Vec<Uuid> {
    let ids: Vec<String> = match event_type.strip_prefix("loyalty.events.v1.").unwrap_or("") {
        "CustomerCreated" => ev::CustomerCreated::decode(payload)
            .map(|e| vec![e.customer_id])
            .unwrap_or_default(),
        "CustomerUpdated" => ev::CustomerUpdated::decode(payload)
            .map(|e| vec![e.customer_id])
            .unwrap_or_default(),
        "IdentifierAdded" => ev::IdentifierAdded::decode(payload)
            .map(|e| vec![e.customer_id])
            .unwrap_or_default(),
        "IdentifierRemoved" => ev::IdentifierRemoved::decode(payload)
            .map(|e| vec![e.customer_id])
            .unwrap_or_default(),
        "IdentifierReplaced" => ev::IdentifierReplaced::decode(payload)
            .map(|e| vec![e.customer_id])
            .unwrap_or_default(),
        _ => vec![],
    };
    ids.iter().filter_map(|s| uuid_of(s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{IdentifierState, IdentifierValue};

    fn customer() -> Customer {
        let mut p = CustomerProfile {
            first_name: "Jana Marie".into(),
            last_name: "Dvořáková".into(),
            email: "jana@example.cz".into(),
            phone: "+420601234567".into(),
            ..Default::default()
        };
        p.properties.insert("tier".into(), "Gold".into());
        Customer::new(Uuid::now_v7(), p, Utc::now())
    }

    fn card(c: &Customer, value: &str) -> Identifier {
        Identifier {
            id: Uuid::now_v7(),
            customer_id: c.id,
            value: IdentifierValue::parse(IdentifierKind::Card, value).unwrap(),
            state: IdentifierState::Active,
            block_reason: String::new(),
            created_at: Utc::now(),
            updated_at: None,
        }
    }

    #[test]
    fn folding_removes_case_and_czech_diacritics() {
        assert_eq!(fold("Dvořáková ŽLUŤOUČKÝ Kůň"), "dvorakova zlutoucky kun");
        assert_eq!(fold("Straße"), "strasse");
    }

    #[test]
    fn terms_cover_names_contacts_identifiers_and_properties() {
        let c = customer();
        let terms = search_terms(&c, &[card(&c, "12 34 AB")]);
        let has = |f: TermField, t: &str| terms.contains(&(f, t.to_owned()));
        assert!(has(TermField::FirstName, "jana"));
        assert!(has(TermField::FirstName, "marie"));
        assert!(has(TermField::LastName, "dvorakova"));
        assert!(has(TermField::Email, "jana@example.cz"));
        assert!(has(TermField::Phone, "420601234567"));
        assert!(has(TermField::Phone, "601234567"));
        assert!(has(TermField::Identifier, "1234ab"));
        assert!(has(TermField::Property, "tier=Gold"));
    }

    #[test]
    fn erased_and_merged_accounts_have_no_terms() {
        let c = customer();
        assert!(search_terms(&erase(&c, Utc::now()), &[]).is_empty());
        let other = customer();
        let merged = merge(&other, &c, Utc::now()).unwrap();
        assert!(search_terms(&merged, &[]).is_empty());
    }

    #[test]
    fn queries_are_folded_and_phone_like_queries_become_digits() {
        let mut v = Violations::new();
        let q = SearchQuery::parse(&mut v, " Dvořák  JANA ", &BTreeMap::new());
        assert_eq!(q.tokens, vec!["dvorak", "jana"]);
        let q = SearchQuery::parse(&mut v, "+420 601 234", &BTreeMap::new());
        assert_eq!(q.tokens, vec!["420601234"]);
        assert!(v.is_empty());
        SearchQuery::parse(&mut v, "x", &BTreeMap::new());
        SearchQuery::parse(&mut v, "", &BTreeMap::new());
        assert!(v.into_result().unwrap_err().to_string().contains("query"));
        let mut v = Violations::new();
        let mut props = BTreeMap::new();
        props.insert("tier".to_owned(), "Gold".to_owned());
        let q = SearchQuery::parse(&mut v, "", &props);
        assert!(v.is_empty(), "a property filter alone is a valid search");
        assert_eq!(q.properties, vec!["tier=Gold"]);
    }

    #[test]
    fn list_property_filters_need_key_and_value() {
        let mut v = Violations::new();
        assert_eq!(
            parse_property_filters(&mut v, &["tier=gold".into()]),
            vec!["tier=gold"]
        );
        parse_property_filters(&mut v, &["nokey".into()]);
        assert!(
            v.into_result()
                .unwrap_err()
                .to_string()
                .contains("property_filters[0]")
        );
    }

    #[test]
    fn block_unblock_and_erase_follow_the_lifecycle() {
        let now = Utc::now();
        let c = customer();
        let blocked = block(&c, " fraud ", now).unwrap();
        assert_eq!(blocked.state, CustomerState::Blocked);
        assert_eq!(blocked.block_reason, "fraud");
        let active = unblock(&blocked, now).unwrap();
        assert_eq!(active.state, CustomerState::Active);
        assert!(active.blocked_at.is_none());
        let erased = erase(&blocked, now);
        assert_eq!(erased.state, CustomerState::Erased);
        assert_eq!(
            erased.profile,
            CustomerProfile {
                gender: None,
                ..Default::default()
            }
        );
        assert_eq!(
            erase(&erased, now + chrono::Duration::seconds(1)),
            erased,
            "idempotent"
        );
        assert_eq!(block(&erased, "x", now), Err("CUSTOMER_ERASED"));
        assert_eq!(unblock(&erased, now), Err("CUSTOMER_ERASED"));
    }

    #[test]
    fn erasure_forgets_who_referred_the_account() {
        let mut c = customer();
        c.referrer = Some(Uuid::now_v7());
        assert_eq!(erase(&c, Utc::now()).referrer, None);
    }

    #[test]
    fn a_merge_points_referrals_of_the_merged_account_to_the_survivor() {
        let now = Utc::now();
        let (survivor, merged, other, third) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let after = |customer, referrer| referrer_after_merge(customer, referrer, survivor, merged);
        assert_eq!(after(other, Some(merged)), Some(survivor));
        assert_eq!(
            after(other, Some(third)),
            Some(third),
            "other referrers stay"
        );
        assert_eq!(after(other, None), None);
        assert_eq!(
            after(survivor, Some(merged)),
            None,
            "never referred by itself"
        );
        assert_eq!(after(survivor, Some(third)), Some(third));

        let (mut a, mut b) = (customer(), customer());
        a.referrer = Some(b.id);
        b.referrer = Some(third);
        let a_after = survivor_after_merge(&a, &b, now);
        assert_eq!(a_after.referrer, None);
        assert_eq!(a_after.updated_at, now);
        assert_eq!(
            merge(&a, &b, now).unwrap().referrer,
            Some(third),
            "kept as it was"
        );
        a.referrer = Some(third);
        assert_eq!(survivor_after_merge(&a, &b, now).referrer, Some(third));
    }

    #[test]
    fn a_merged_account_points_to_the_survivor_and_cannot_be_merged_again() {
        let now = Utc::now();
        let (a, b) = (customer(), customer());
        let merged = merge(&a, &b, now).unwrap();
        assert_eq!(merged.state, CustomerState::Merged);
        assert_eq!(merged.merged_into, Some(a.id));
        assert_eq!(merge(&a, &merged, now), Err("CUSTOMER_MERGED"));
        assert_eq!(merge(&merged, &a, now), Err("CUSTOMER_MERGED"));
    }

    #[test]
    fn time_zones_are_checked_for_iana_shape() {
        for ok in [
            "UTC",
            "Europe/Prague",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+2",
        ] {
            assert!(is_iana_time_zone(ok), "{ok}");
        }
        for bad in [
            "",
            "Prague",
            "Mars/Base",
            "Europe/",
            "europe/prague",
            "Europe/Prague/x/y",
        ] {
            assert!(!is_iana_time_zone(bad), "{bad}");
        }
    }

    #[test]
    fn partner_updates_change_only_masked_fields_and_check_them() {
        let p = PartnerSettings {
            id: Uuid::now_v7(),
            display_name: "Shop".into(),
            default_currency_code: "EUR".into(),
            time_zone: "UTC".into(),
            created_at: Utc::now(),
            updated_at: None,
        };
        let incoming = PartnerSettings {
            display_name: "ignored".into(),
            time_zone: "Europe/Prague".into(),
            ..p.clone()
        };
        let mut v = Violations::new();
        let next = p.with_updates(&incoming, &["time_zone".into()], &mut v);
        assert!(v.is_empty());
        assert_eq!(next.time_zone, "Europe/Prague");
        assert_eq!(next.display_name, "Shop");
        let bad = PartnerSettings {
            time_zone: "Nowhere".into(),
            ..p.clone()
        };
        p.with_updates(&bad, &["time_zone".into(), "id".into()], &mut v);
        let text = v.into_result().unwrap_err().to_string();
        assert!(text.contains("partner.time_zone") && text.contains("update_mask"));
    }

    #[test]
    fn history_cursors_round_trip_and_garbage_is_refused() {
        let c = HistoryCursor {
            occurred_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(HistoryCursor::decode(&c.encode()), Some(c));
        assert_eq!(HistoryCursor::decode("nope"), None);
    }

    #[test]
    fn a_purchase_projects_to_one_entry_without_personal_data_in_the_summary() {
        let customer_id = Uuid::now_v7();
        let e = ev::PurchaseCompleted {
            purchase_id: Uuid::now_v7().to_string(),
            customer_id: customer_id.to_string(),
            currency_code: "EUR".into(),
            net_amount_minor: 1250,
            points_earned: 12,
            ..Default::default()
        };
        let drafts = project("loyalty.events.v1.PurchaseCompleted", &e.encode_to_vec());
        assert_eq!(drafts.len(), 1);
        assert_eq!(drafts[0].customer_id, customer_id);
        assert_eq!(drafts[0].kind, HistoryKind::Purchase);
        assert!(drafts[0].summary.contains("1250 EUR"));
        assert_eq!(
            drafts[0].details.get("points_earned").map(String::as_str),
            Some("12")
        );
        let added = ev::IdentifierAdded {
            customer_id: customer_id.to_string(),
            identifier: Some(loyalty_proto::types::v1::IdentifierRef {
                r#type: loyalty_proto::types::v1::IdentifierType::Email as i32,
                value: "jana@example.cz".into(),
            }),
        };
        let d = project("loyalty.events.v1.IdentifierAdded", &added.encode_to_vec());
        assert!(
            !d[0].summary.contains("jana"),
            "summaries carry no personal data"
        );
        assert!(project("loyalty.events.v1.SegmentChanged", &[]).is_empty());
        assert!(project("loyalty.events.v1.PurchaseCompleted", &[0xff, 0xff]).is_empty());
    }

    #[test]
    fn a_merge_projects_onto_both_accounts() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let e = ev::CustomerMerged {
            surviving_customer_id: a.to_string(),
            merged_customer_id: b.to_string(),
        };
        let d = project("loyalty.events.v1.CustomerMerged", &e.encode_to_vec());
        let ids: Vec<Uuid> = d.iter().map(|d| d.customer_id).collect();
        assert_eq!(ids, vec![a, b]);
        assert!(is_projected("loyalty.events.v1.CustomerMerged"));
        assert!(!is_projected("loyalty.events.v1.SegmentChanged"));
    }
}

//! Badges (seed 001): a mark on the customer account, shown to staff (Customer 360, POS) and,
//! when visible, to the customer. Assigned by hand (MANUAL, a criterion optionally applied
//! once at creation) or by a criterion re-run every night (FLEXI). No I/O here.
use chrono::{DateTime, Utc};
use loyalty_criteria::{Criterion, Facts};
use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Group, GroupKind, MembershipCause};

/// Media types an icon may have (raster or SVG images browsers and apps render).
pub const ICON_CONTENT_TYPES: &[&str] = &["image/png", "image/svg+xml", "image/webp", "image/jpeg"];
/// Longest icon URL.
pub const MAX_ICON_URL_LEN: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BadgeKind {
    /// Assigned and removed by staff or workflows.
    Manual,
    /// Its criterion re-runs every night.
    Flexi,
}

impl BadgeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BadgeKind::Manual => "manual",
            BadgeKind::Flexi => "flexi",
        }
    }

    pub fn parse_str(s: &str) -> Option<BadgeKind> {
        Some(match s {
            "manual" => BadgeKind::Manual,
            "flexi" => BadgeKind::Flexi,
            _ => return None,
        })
    }
}

/// Where a badge's icon is stored (an https URL: the service stores the reference, not the
/// image) and its media type, so every channel knows how to render it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Icon {
    pub url: String,
    pub content_type: String,
}

impl Icon {
    /// The icon with its media type in canonical (lower) case.
    pub fn new(url: String, content_type: &str) -> Icon {
        Icon {
            url,
            content_type: content_type.trim().to_ascii_lowercase(),
        }
    }

    /// Checks the icon, reporting under `<prefix>.icon_url` and `<prefix>.icon_content_type`.
    pub fn validate(&self, v: &mut Violations, prefix: &str) {
        if let Err(why) = check_icon_url(&self.url) {
            v.add(format!("{prefix}.icon_url"), why);
        }
        if !ICON_CONTENT_TYPES.contains(&self.content_type.as_str()) {
            v.add(
                format!("{prefix}.icon_content_type"),
                format!("must be one of {}", ICON_CONTENT_TYPES.join(", ")),
            );
        }
    }
}

/// An absolute https URL with a host, without whitespace or control characters (the icon is
/// fetched by customer apps and POS terminals, which must not be sent elsewhere).
fn check_icon_url(url: &str) -> Result<(), &'static str> {
    if url.is_empty() {
        return Err("is required");
    }
    if url.len() > MAX_ICON_URL_LEN {
        return Err("must be at most 2048 characters");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters");
    }
    let Some(rest) = url
        .get(..8)
        .filter(|s| s.eq_ignore_ascii_case("https://"))
        .map(|_| &url[8..])
    else {
        return Err("must be an https:// URL");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') || authority.contains('@') {
        return Err("must name a host (and no user information)");
    }
    Ok(())
}

/// A business rule a badge change broke; `reason` is the FAILED_PRECONDITION reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadgeRule {
    /// Recalculating a manual badge: only Flexi badges re-run a criterion.
    ManualBadge,
    /// Changing the criterion of a badge that stays manual: it was applied once at creation
    /// and nothing would apply the new one.
    CriterionFixed,
}

impl BadgeRule {
    pub fn reason(self) -> &'static str {
        match self {
            BadgeRule::ManualBadge => "MANUAL_BADGE",
            BadgeRule::CriterionFixed => "MANUAL_BADGE_CRITERION_FIXED",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            BadgeRule::ManualBadge => {
                "a manual badge is assigned by hand; only Flexi badges are recalculated"
            }
            BadgeRule::CriterionFixed => {
                "a manual badge's criterion was applied once at creation; change it together with \
                 kind FLEXI"
            }
        }
    }
}

/// A badge as a client defines it, before it is checked.
#[derive(Debug, Clone)]
pub struct BadgeDraft {
    pub display_name: String,
    /// `None` when the client left it unspecified.
    pub kind: Option<BadgeKind>,
    /// `None` when none was sent (or it was invalid, already reported).
    pub criterion: Option<Criterion>,
    pub icon: Icon,
    pub visible_to_customer: bool,
    pub note: String,
}

impl BadgeDraft {
    /// Checks the definition, reporting under `badge.<field>`.
    pub fn validate(&self, v: &mut Violations) {
        if !(1..=200).contains(&self.display_name.trim().chars().count()) {
            v.add("badge.display_name", "must be 1..200 characters");
        }
        match self.kind {
            None => v.add("badge.kind", "must be MANUAL or FLEXI"),
            Some(BadgeKind::Flexi) if self.criterion.is_none() => {
                v.add("badge.criterion", "is required for a FLEXI badge");
            }
            Some(_) => {}
        }
        if self.note.chars().count() > 2000 {
            v.add("badge.note", "must be at most 2000 characters");
        }
        if self.criterion.as_ref().is_some_and(Criterion::uses_cart) {
            v.add(
                "badge.criterion",
                "reads the cart (cart.*), which exists only at checkout; badges are stored",
            );
        }
        self.icon.validate(v, "badge");
    }

    /// The new badge, without holders yet; `None` if the draft is incomplete (call
    /// [`BadgeDraft::validate`] first).
    pub fn into_badge(self, id: Uuid, now: DateTime<Utc>) -> Option<Badge> {
        Some(Badge {
            id,
            display_name: self.display_name.trim().to_owned(),
            kind: self.kind?,
            criterion: self.criterion,
            icon: self.icon,
            visible_to_customer: self.visible_to_customer,
            note: self.note,
            member_count: 0,
            last_recalculated_at: None,
            version: 1,
            created_at: now,
            updated_at: None,
        })
    }
}

/// A badge. `version` grows with every change of the definition; its etag is `"v<version>"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Badge {
    pub id: Uuid,
    pub display_name: String,
    pub kind: BadgeKind,
    pub criterion: Option<Criterion>,
    pub icon: Icon,
    pub visible_to_customer: bool,
    pub note: String,
    pub member_count: i64,
    pub last_recalculated_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Badge {
    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }

    /// This badge as a group whose members change.
    pub fn group(&self) -> Group<'_> {
        Group {
            kind: GroupKind::Badge,
            id: self.id,
            display_name: &self.display_name,
        }
    }

    /// The criterion a recalculation re-runs: Flexi badges only.
    pub fn recalculable_criterion(&self) -> Result<&Criterion, BadgeRule> {
        match (self.kind, &self.criterion) {
            (BadgeKind::Flexi, Some(c)) => Ok(c),
            _ => Err(BadgeRule::ManualBadge),
        }
    }

    /// Whether the survivor of a merge holds this badge, given whether it and the merged
    /// account held it and the survivor's folded `facts` (its features and purchases): a
    /// manual badge stays with whoever held it, a Flexi badge re-runs its criterion (which
    /// never reads the cart).
    pub fn holds_survivor(&self, survivor_held: bool, merged_held: bool, facts: &Facts) -> bool {
        match self.recalculable_criterion() {
            Ok(c) => c.evaluate(facts),
            Err(_) => survivor_held || merged_held,
        }
    }

    /// Whether the next recalculation overwrites a manual or workflow assignment.
    pub fn recalculation_overwrites_manual_changes(&self) -> bool {
        self.kind == BadgeKind::Flexi
    }

    /// This badge with a new definition (`next`: the current values with the updated fields
    /// replaced, already validated) as of `now`: version bumped, holders kept. A manual
    /// badge's criterion changes only if the badge becomes Flexi.
    pub fn updated(&self, next: BadgeDraft, now: DateTime<Utc>) -> Result<Badge, BadgeRule> {
        let kind = next.kind.unwrap_or(self.kind);
        if kind == BadgeKind::Manual && next.criterion != self.criterion {
            return Err(BadgeRule::CriterionFixed);
        }
        Ok(Badge {
            display_name: next.display_name.trim().to_owned(),
            kind,
            criterion: next.criterion,
            icon: next.icon,
            visible_to_customer: next.visible_to_customer,
            note: next.note,
            version: self.version.saturating_add(1),
            updated_at: Some(now),
            ..self.clone()
        })
    }

    /// Records the holders found by a (re)calculation at `now`.
    pub fn recalculated(&mut self, member_count: usize, now: DateTime<Utc>) {
        self.member_count = i64::try_from(member_count).unwrap_or(i64::MAX);
        self.last_recalculated_at = Some(now);
    }

    /// The draft that leaves this badge as it is (the base an update changes fields of).
    pub fn as_draft(&self) -> BadgeDraft {
        BadgeDraft {
            display_name: self.display_name.clone(),
            kind: Some(self.kind),
            criterion: self.criterion.clone(),
            icon: self.icon.clone(),
            visible_to_customer: self.visible_to_customer,
            note: self.note.clone(),
        }
    }
}

/// A badge a customer holds, as Customer 360 and the POS show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerBadge {
    pub badge_id: Uuid,
    pub display_name: String,
    pub icon: Icon,
    pub visible_to_customer: bool,
    pub assigned_at: DateTime<Utc>,
    pub cause: MembershipCause,
}

#[cfg(test)]
mod tests {
    use super::*;
    use loyalty_criteria::{Operator, RawCriterion, Value};

    fn criterion(field: &str, value: i64) -> Criterion {
        Criterion::parse(RawCriterion::Condition {
            field: field.into(),
            operator: Some(Operator::GreaterOrEqual),
            values: vec![Value::Int(value)],
        })
        .unwrap()
    }

    fn draft(kind: Option<BadgeKind>, criterion: Option<Criterion>) -> BadgeDraft {
        BadgeDraft {
            display_name: " VIP ".into(),
            kind,
            criterion,
            icon: Icon::new(
                "https://cdn.example.com/badges/vip.svg".into(),
                "Image/SVG+XML",
            ),
            visible_to_customer: true,
            note: String::new(),
        }
    }

    fn problems(d: &BadgeDraft) -> Vec<String> {
        let mut v = Violations::new();
        d.validate(&mut v);
        v.into_vec().into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn a_flexi_badge_needs_a_criterion_and_a_manual_one_may_have_one() {
        assert!(problems(&draft(Some(BadgeKind::Manual), None)).is_empty());
        let c = criterion("features.purchase_count", 3);
        assert!(problems(&draft(Some(BadgeKind::Manual), Some(c.clone()))).is_empty());
        assert!(problems(&draft(Some(BadgeKind::Flexi), Some(c))).is_empty());
        assert_eq!(
            problems(&draft(Some(BadgeKind::Flexi), None)),
            ["badge.criterion"]
        );
        assert_eq!(problems(&draft(None, None)), ["badge.kind"]);
        let cart = criterion("cart.total_minor", 100);
        assert_eq!(
            problems(&draft(Some(BadgeKind::Flexi), Some(cart))),
            ["badge.criterion"]
        );
    }

    #[test]
    fn a_merge_keeps_a_manual_badge_of_either_account_and_reruns_a_flexi_one() {
        let badge = |kind, criterion| Badge {
            id: Uuid::now_v7(),
            display_name: "VIP".into(),
            kind,
            criterion,
            icon: draft(None, None).icon,
            visible_to_customer: true,
            note: String::new(),
            member_count: 0,
            last_recalculated_at: None,
            version: 1,
            created_at: Utc::now(),
            updated_at: None,
        };
        let three = criterion("features.purchase_count", 3);
        let mut facts = Facts::default();
        facts.insert("features.purchase_count", loyalty_criteria::Fact::Int(4));
        let manual = badge(BadgeKind::Manual, Some(three.clone()));
        assert!(manual.holds_survivor(false, true, &Facts::default()));
        assert!(manual.holds_survivor(true, false, &Facts::default()));
        assert!(!manual.holds_survivor(false, false, &facts));
        let flexi = badge(BadgeKind::Flexi, Some(three));
        assert!(flexi.holds_survivor(false, false, &facts));
        assert!(!flexi.holds_survivor(true, true, &Facts::default()));
    }

    #[test]
    fn the_icon_is_an_https_url_with_a_known_image_type() {
        let d = draft(Some(BadgeKind::Manual), None);
        assert_eq!(d.icon.content_type, "image/svg+xml");
        for bad in [
            "",
            "http://cdn.example.com/a.png",
            "javascript:alert(1)",
            "https://",
            "https:///a.png",
            "https://user@host/a.png",
            "https://cdn.example.com/a b.png",
            "https://cdn.example.com/\u{0}.png",
        ] {
            let mut d = d.clone();
            d.icon.url = bad.into();
            assert_eq!(problems(&d), ["badge.icon_url"], "{bad:?}");
        }
        let mut long = d.clone();
        long.icon.url = format!("https://x.example/{}", "a".repeat(MAX_ICON_URL_LEN));
        assert_eq!(problems(&long), ["badge.icon_url"]);
        let mut ok = d.clone();
        ok.icon.url = "HTTPS://cdn.example.com:8443/i.png?v=2#x".into();
        assert!(problems(&ok).is_empty());
        for bad in ["", "image/bmp", "text/html", "image/svg"] {
            let mut d = d.clone();
            d.icon = Icon::new(d.icon.url.clone(), bad);
            assert_eq!(problems(&d), ["badge.icon_content_type"], "{bad:?}");
        }
    }

    #[test]
    fn a_manual_badge_keeps_its_criterion_unless_it_becomes_flexi() {
        let now = Utc::now();
        let b = draft(
            Some(BadgeKind::Manual),
            Some(criterion("features.purchase_count", 1)),
        )
        .into_badge(Uuid::now_v7(), now)
        .unwrap();
        assert_eq!(b.display_name, "VIP");
        assert_eq!(b.recalculable_criterion(), Err(BadgeRule::ManualBadge));
        assert!(!b.recalculation_overwrites_manual_changes());
        let mut renamed = b.as_draft();
        renamed.display_name = "Gold".into();
        let u = b.updated(renamed, now).unwrap();
        assert_eq!((u.display_name.as_str(), u.etag().as_str()), ("Gold", "v2"));
        let mut changed = b.as_draft();
        changed.criterion = Some(criterion("features.purchase_count", 5));
        assert_eq!(
            b.updated(changed.clone(), now),
            Err(BadgeRule::CriterionFixed)
        );
        changed.kind = Some(BadgeKind::Flexi);
        let flexi = b.updated(changed, now).unwrap();
        assert_eq!(
            flexi.recalculable_criterion(),
            Ok(&criterion("features.purchase_count", 5))
        );
        assert!(flexi.recalculation_overwrites_manual_changes());
        assert_eq!(flexi.group().kind, GroupKind::Badge);
        assert_eq!(
            BadgeRule::CriterionFixed.reason(),
            "MANUAL_BADGE_CRITERION_FIXED"
        );
    }

    #[test]
    fn badge_kinds_round_trip_through_their_stored_names() {
        for k in [BadgeKind::Manual, BadgeKind::Flexi] {
            assert_eq!(BadgeKind::parse_str(k.as_str()), Some(k));
        }
        assert_eq!(BadgeKind::parse_str("standard"), None);
    }
}

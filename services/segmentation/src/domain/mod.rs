//! Segmentation rules: a customer's features as criteria facts, segment definitions, who
//! belongs, and the memberships a customer sees. No I/O here.
mod membership;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use loyalty_criteria::{Criterion, Fact, Facts, RawCriterion};
use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use membership::{
    HistoryEntry, ManualChange, Member, MembershipCause, Recalculation, SegmentRule, due_for,
    last_daily_run, next_daily_run, parse_daily_time,
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
        facts.insert("features.purchase_count", Fact::Int(self.purchase_count));
        facts.insert(
            "features.total_spent_minor",
            Fact::Int(self.total_spent_minor),
        );
        if let Some(last) = self.last_purchase_at {
            facts.insert(
                "features.last_purchase_days_ago",
                Fact::Int((now - last).num_days().max(0)),
            );
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
        serde_json::Value::Object(out)
    }

    /// Counts one more purchase of `amount_minor` made at `at` (events may arrive out of
    /// order: the last purchase is the latest one seen).
    pub fn record_purchase(&mut self, amount_minor: i64, at: DateTime<Utc>) {
        self.purchase_count = self.purchase_count.saturating_add(1);
        self.total_spent_minor = self.total_spent_minor.saturating_add(amount_minor);
        self.last_purchase_at = Some(self.last_purchase_at.map_or(at, |l| l.max(at)));
    }

    /// Folds the features of a duplicate account merged into this one: purchases add up,
    /// the last purchase is the latest of both, and the profile (attributes, properties)
    /// stays this customer's.
    pub fn absorb(&mut self, merged: &Features) {
        self.purchase_count = self.purchase_count.saturating_add(merged.purchase_count);
        self.total_spent_minor = self
            .total_spent_minor
            .saturating_add(merged.total_spent_minor);
        self.last_purchase_at = match (self.last_purchase_at, merged.last_purchase_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// One cart line, as far as criteria care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartLine {
    pub product_id: String,
    pub product_group_ids: Vec<String>,
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
        let total = self
            .lines
            .iter()
            .map(|l| l.quantity.saturating_mul(l.unit_price_minor))
            .fold(0i64, i64::saturating_add);
        facts.insert("cart.total_minor", Fact::Int(total));
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
    let Some(raw) = raw else {
        v.add(field, "is required");
        return None;
    };
    match Criterion::parse(raw) {
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
        !self.criterion.uses_cart() && self.criterion.evaluate(&features.facts(now))
    }

    /// Whether the survivor of a merge belongs to this segment as a stored member, given
    /// whether the survivor and the merged account were members and the survivor's folded
    /// `features`; `None` for a segment that stores no members (its criterion reads the
    /// cart). A standard segment is fixed, so the survivor keeps the membership either
    /// account had; a Flexi segment re-runs its criterion on the folded features.
    pub fn holds_survivor(
        &self,
        survivor_member: bool,
        merged_member: bool,
        features: &Features,
        now: DateTime<Utc>,
    ) -> Option<bool> {
        if self.criterion.uses_cart() {
            return None;
        }
        Some(match self.kind {
            SegmentKind::Standard => survivor_member || merged_member,
            SegmentKind::Flexi => self.admits(features, now),
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
        assert_eq!(strings.len(), object.len());
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
        f.record_purchase(1_500, now - Duration::days(3));
        f.record_purchase(500, now - Duration::days(10));
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
        };
        let two = Features {
            purchase_count: 2,
            ..Default::default()
        };
        assert_eq!(standard.holds_survivor(false, true, &one, now), Some(true));
        assert_eq!(standard.holds_survivor(true, false, &one, now), Some(true));
        assert_eq!(
            standard.holds_survivor(false, false, &two, now),
            Some(false)
        );
        assert_eq!(flexi.holds_survivor(false, false, &two, now), Some(true));
        assert_eq!(flexi.holds_survivor(true, true, &one, now), Some(false));
        let cart = segment(
            criterion("cart.total_minor", Operator::GreaterOrEqual, Value::Int(1)),
            true,
        );
        assert_eq!(cart.holds_survivor(true, true, &two, now), None);
    }
}

//! What the feature-store RPCs answer: a customer's features as `GetCustomerFeatures` shows
//! them, which fields a criterion may read for a target (`ListCriterionFields`,
//! `ValidateCriterion`). No I/O here.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use loyalty_criteria::{Criterion, Fact, FieldSpec, RawCriterion};
use loyalty_platform::Violations;

use super::{Features, days_ago, parse_criterion_by};

/// What a criterion is for; decides whether it may read the cart or a triggering event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CriterionTarget {
    /// A segment or badge recalculated from the feature store.
    Segment,
    /// A segment recalculated online at checkout: may also read `cart.*`.
    OnlineSegment,
    /// An audience (campaign responses are fields of every target, see the docs).
    Audience,
    /// A workflow's condition node or date trigger (campaigns; EvaluateCriterion): may also
    /// read `event.*`, the properties of the event that triggered the workflow.
    Workflow,
}

impl CriterionTarget {
    /// Whether the target evaluates with a cart (only online recalculation at checkout).
    pub fn reads_cart(self) -> bool {
        self == CriterionTarget::OnlineSegment
    }

    /// Whether the target's criteria may read the event that triggered a workflow
    /// (`event.<key>`). Only a workflow's: everything else is stored or compiled to SQL over
    /// stored facts, and no event is stored.
    pub fn reads_event(self) -> bool {
        self == CriterionTarget::Workflow
    }

    /// The catalogue's fields this target may read, in the catalogue's order. Derived from
    /// [`loyalty_criteria::catalog`], so a field added there is listed here.
    pub fn fields(self) -> Vec<FieldSpec> {
        loyalty_criteria::catalog()
            .into_iter()
            .filter(|f| (!f.cart || self.reads_cart()) && (!f.event || self.reads_event()))
            .collect()
    }

    /// Parses a client's criterion for this target, reporting under `field` as
    /// [`super::parse_criterion`] does: `event.<key>` fields only for a workflow, and then
    /// the target's [`CriterionTarget::problems`] (a cart field). The criterion is returned
    /// even with target problems (the caller checks `v`), so that further checks (group
    /// references) still run and every problem is reported at once.
    pub fn parse_criterion(
        self,
        v: &mut Violations,
        field: &str,
        raw: Option<RawCriterion>,
    ) -> Option<Criterion> {
        let parse = if self.reads_event() {
            Criterion::parse_with_event
        } else {
            Criterion::parse
        };
        let c = parse_criterion_by(v, field, raw, parse)?;
        for (path, why) in self.problems(&c) {
            v.add(format!("{field}.{path}"), why);
        }
        Some(c)
    }

    /// The problems of a valid criterion for this target, as (path of the node, why): a
    /// cart field where the target has no cart.
    pub fn problems(self, criterion: &Criterion) -> Vec<(String, String)> {
        if self.reads_cart() {
            return Vec::new();
        }
        let mut out = Vec::new();
        cart_conditions(criterion, "", &mut out);
        out.into_iter()
            .map(|path| {
                (
                    path,
                    "reads the cart (cart.*), which only an online-recalculated segment may"
                        .to_owned(),
                )
            })
            .collect()
    }
}

/// The paths of the `field` of every condition reading the cart, as the protobuf tree names
/// them (`all.criteria[1].negation.condition.field`).
fn cart_conditions(c: &Criterion, path: &str, out: &mut Vec<String>) {
    let join = |suffix: &str| {
        if path.is_empty() {
            suffix.to_owned()
        } else {
            format!("{path}.{suffix}")
        }
    };
    match c {
        Criterion::All(cs) | Criterion::Any(cs) => {
            let group = if matches!(c, Criterion::All(_)) {
                "all"
            } else {
                "any"
            };
            for (i, child) in cs.iter().enumerate() {
                cart_conditions(child, &join(&format!("{group}.criteria[{i}]")), out);
            }
        }
        Criterion::Not(inner) => cart_conditions(inner, &join("negation"), out),
        Criterion::Condition(cond) if cond.field.is_cart() => out.push(join("condition.field")),
        Criterion::Condition(_) => {}
    }
}

/// A customer's features as `GetCustomerFeatures` answers them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeatureSummary {
    pub purchase_count: i64,
    pub total_spent_minor: i64,
    pub last_purchase_at: Option<DateTime<Utc>>,
    /// Whole days since the last purchase; -1 when the customer never bought.
    pub last_purchase_days_ago: i64,
    /// Net spend per purchase (integer division); 0 without purchases.
    pub average_purchase_minor: i64,
    /// Available points of every points type added up.
    pub points_balance: i64,
    /// The current tier's UUID; empty when none.
    pub tier_id: String,
    /// Tracked events by event type code.
    pub event_counts: BTreeMap<String, i64>,
    /// ISO 4217 currency of the latest purchase; empty before one named it.
    pub currency_code: String,
    /// Opened messages (each counted once) in the 12 months before now, by whole UTC days.
    pub opened_12m: i64,
    /// Clicked messages (each counted once) in the same period.
    pub clicked_12m: i64,
    /// Every other integer fact criteria read, by field path (`points.<code>`,
    /// `features.tier_rank`, `messages.opened.count`, `events.<code>.last_days_ago`, ...).
    pub extra: BTreeMap<String, i64>,
}

/// Integer facts [`FeatureSummary`] has a field of its own for.
const SUMMARY_FIELDS: &[&str] = &[
    "features.purchase_count",
    "features.total_spent_minor",
    "features.last_purchase_days_ago",
];

impl Features {
    /// The summary at `now`.
    /// Messages that got `response` in the RFM period (12 months) before `now`.
    fn responses_12m(&self, response: &str, now: DateTime<Utc>) -> i64 {
        self.activity
            .messages
            .get(response)
            .map_or(0, |t| t.count_after(super::rfm::period_start(now)))
    }

    pub fn summary(&self, now: DateTime<Utc>) -> FeatureSummary {
        let extra = self
            .facts(now)
            .iter()
            .filter_map(|(path, fact)| match fact {
                Fact::Int(n) => Some((path.to_owned(), *n)),
                _ => None,
            })
            .filter(|(path, _)| {
                let event_count = path.starts_with("events.") && path.ends_with(".count");
                !(SUMMARY_FIELDS.contains(&path.as_str()) || event_count)
            })
            .collect();
        FeatureSummary {
            purchase_count: self.purchase_count,
            total_spent_minor: self.total_spent_minor,
            last_purchase_at: self.last_purchase_at,
            last_purchase_days_ago: self.last_purchase_at.map_or(-1, |at| days_ago(now, at)),
            average_purchase_minor: if self.purchase_count > 0 {
                self.total_spent_minor / self.purchase_count
            } else {
                0
            },
            points_balance: self
                .activity
                .points
                .values()
                .fold(0i64, |sum, p| sum.saturating_add(p.value)),
            tier_id: self
                .activity
                .tier
                .as_ref()
                .map(|t| t.value.tier_id.clone())
                .unwrap_or_default(),
            event_counts: self.activity.events.clone(),
            currency_code: self.activity.currency_code.clone(),
            opened_12m: self.responses_12m("opened", now),
            clicked_12m: self.responses_12m("clicked", now),
            extra,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Tier;
    use chrono::Duration;
    use loyalty_criteria::{Operator, RawCriterion, Value};

    fn cond(field: &str, op: Operator, value: Value) -> RawCriterion {
        RawCriterion::Condition {
            field: field.into(),
            operator: Some(op),
            values: vec![value],
        }
    }

    #[test]
    fn only_an_online_segment_lists_and_reads_cart_fields() {
        let all = loyalty_criteria::catalog();
        let online = CriterionTarget::OnlineSegment.fields();
        assert_eq!(online.len(), all.iter().filter(|f| !f.event).count());
        for target in [
            CriterionTarget::Segment,
            CriterionTarget::Audience,
            CriterionTarget::Workflow,
        ] {
            let fields = target.fields();
            assert!(fields.iter().all(|f| !f.cart));
            let event = usize::from(target.reads_event());
            assert_eq!(fields.iter().filter(|f| f.event).count(), event);
            assert_eq!(
                fields.len(),
                all.iter().filter(|f| !f.cart && !f.event).count() + event
            );
            assert!(
                fields
                    .iter()
                    .any(|f| f.path == "events.<event_type_code>.last_days_ago")
            );
        }

        let c = Criterion::parse(RawCriterion::All(vec![
            cond(
                "customer.city",
                Operator::Equal,
                Value::String("Praha".into()),
            ),
            RawCriterion::Not(Some(Box::new(RawCriterion::Any(vec![
                cond("features.purchase_count", Operator::Less, Value::Int(1)),
                cond("cart.total_minor", Operator::Greater, Value::Int(100)),
            ])))),
        ]))
        .unwrap();
        assert_eq!(
            CriterionTarget::Segment
                .problems(&c)
                .into_iter()
                .map(|(p, _)| p)
                .collect::<Vec<_>>(),
            ["all.criteria[1].negation.any.criteria[1].condition.field"]
        );
        assert!(CriterionTarget::OnlineSegment.problems(&c).is_empty());
        let lone =
            Criterion::parse(cond("cart.line_count", Operator::Equal, Value::Int(1))).unwrap();
        assert_eq!(
            CriterionTarget::Audience.problems(&lone)[0].0,
            "condition.field"
        );
    }

    #[test]
    fn the_summary_derives_averages_days_and_balances() {
        let now = Utc::now();
        let never = Features::default().summary(now);
        assert_eq!(never.last_purchase_days_ago, -1);
        assert_eq!(never.average_purchase_minor, 0);
        assert_eq!(never.points_balance, 0);
        assert_eq!(never.extra.get("messages.opened.count"), Some(&0));

        let mut f = Features::default();
        f.record_purchase(1_000, "EUR", now - Duration::days(3) - Duration::hours(1));
        f.record_purchase(501, "EUR", now - Duration::days(10));
        f.activity.set_points("standard", 200, 1);
        f.activity.set_points("bonus", 50, 1);
        f.activity.set_tier(
            Tier {
                tier_id: "gold".into(),
                rank: 2,
            },
            1,
        );
        f.activity.record_event("visit", now - Duration::days(1));
        let s = f.summary(now);
        assert_eq!(s.purchase_count, 2);
        assert_eq!(s.total_spent_minor, 1_501);
        assert_eq!(s.average_purchase_minor, 750);
        assert_eq!(s.last_purchase_days_ago, 3);
        assert_eq!(s.points_balance, 250);
        assert_eq!(s.tier_id, "gold");
        assert_eq!(s.event_counts.get("visit"), Some(&1));
        assert_eq!(s.extra.get("points.bonus"), Some(&50));
        assert_eq!(s.extra.get("features.tier_rank"), Some(&2));
        assert_eq!(s.extra.get("events.visit.last_days_ago"), Some(&1));
        assert!(!s.extra.contains_key("events.visit.count"));
        assert!(!s.extra.contains_key("features.purchase_count"));
        assert_eq!(s.currency_code, "EUR", "the latest purchase's");
    }

    #[test]
    fn opens_and_clicks_count_per_message_over_the_last_12_months() {
        let now = Utc::now();
        let ago = |days| now - Duration::days(days);
        let mut f = Features::default();
        // Counted: opened 10 and 300 days ago; a repeated open of the same message does not
        // count; 380 days ago is outside the 12 months but in the all-time count.
        f.activity.record_message("opened", None, ago(10), true);
        f.activity.record_message("opened", None, ago(9), false);
        f.activity.record_message("opened", None, ago(300), true);
        f.activity.record_message("opened", None, ago(380), true);
        f.activity.record_message("clicked", None, ago(2), true);
        let s = f.summary(now);
        assert_eq!((s.opened_12m, s.clicked_12m), (2, 1));
        assert_eq!(s.extra.get("messages.opened.count"), Some(&3));

        // Days far behind the latest are not kept; the counts stay.
        f.activity.record_message("opened", None, ago(-500), true);
        let opened = &f.activity.messages["opened"];
        assert_eq!(opened.count, 4);
        assert_eq!(opened.by_day.len(), 1);
        assert_eq!(f.summary(now + Duration::days(501)).opened_12m, 1);

        // A merge adds the days up and takes the currency of the later purchase.
        let mut survivor = Features::default();
        survivor.record_purchase(100, "czk", ago(20));
        survivor
            .activity
            .record_message("clicked", None, ago(2), true);
        let mut merged = Features::default();
        merged.record_purchase(100, "EUR", ago(5));
        merged
            .activity
            .record_message("clicked", None, ago(2), true);
        survivor.absorb(&merged);
        let s = survivor.summary(now);
        assert_eq!(s.clicked_12m, 2);
        assert_eq!(s.currency_code, "EUR");
        let mut older = Features::default();
        older.record_purchase(100, "USD", ago(50));
        survivor.absorb(&older);
        assert_eq!(survivor.summary(now).currency_code, "EUR");
    }
}

//! Which purchases a set of criteria needs, and the purchase-window facts they read.
use chrono::{DateTime, Utc};
use loyalty_criteria::purchases::{self, Purchase, Window};
use loyalty_criteria::{Criterion, Fact, Field};

/// Every field the criteria read, purchase fields included.
fn fields<'c>(criteria: impl IntoIterator<Item = &'c Criterion>) -> Vec<&'c Field> {
    criteria
        .into_iter()
        .flat_map(|c| c.conditions().map(|c| &c.field))
        .collect()
}

/// The window whose purchases must be loaded to evaluate `criteria` in memory: `None` when
/// none reads purchases (nothing to load), `Some(Window::Ever)` when all are needed.
pub fn purchase_window<'c>(criteria: impl IntoIterator<Item = &'c Criterion>) -> Option<Window> {
    purchases::longest_window(fields(criteria))
}

/// The `purchases.<window>.<measure>` facts `criteria` read, for a customer with `bought`
/// (at least the purchases of [`purchase_window`]) at `now`.
pub fn purchase_facts<'c>(
    bought: &[Purchase],
    criteria: impl IntoIterator<Item = &'c Criterion>,
    now: DateTime<Utc>,
) -> Vec<(String, Fact)> {
    purchases::facts(bought, fields(criteria), now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use loyalty_criteria::{Facts, Operator, RawCriterion, Value};

    fn criterion(field: &str, op: Operator, value: Value) -> Criterion {
        Criterion::parse(RawCriterion::Condition {
            field: field.into(),
            operator: Some(op),
            values: vec![value],
        })
        .unwrap()
    }

    #[test]
    fn the_longest_window_of_all_criteria_is_loaded_and_none_without_purchase_fields() {
        let week = criterion(
            "purchases.last_7_days.count",
            Operator::Greater,
            Value::Int(1),
        );
        let quarter = criterion(
            "purchases.last_90_days.brand_ids",
            Operator::Contains,
            Value::String("acme".into()),
        );
        let city = criterion(
            "customer.city",
            Operator::Equal,
            Value::String("Praha".into()),
        );
        assert_eq!(
            purchase_window([&week, &quarter]),
            Some(Window::LastDays(90))
        );
        assert_eq!(purchase_window([&city]), None);
    }

    #[test]
    fn a_segment_on_purchases_in_ninety_days_admits_a_customer_with_enough_of_them() {
        let now = Utc::now();
        let c = criterion(
            "purchases.last_90_days.count",
            Operator::GreaterOrEqual,
            Value::Int(2),
        );
        let at = |days: i64| Purchase {
            purchased_at: now - Duration::days(days),
            net_amount_minor: 100,
            ..Purchase::default()
        };
        let facts = |bought: &[Purchase]| -> Facts {
            purchase_facts(bought, [&c], now).into_iter().collect()
        };
        assert!(c.evaluate(&facts(&[at(1), at(89)])));
        assert!(
            !c.evaluate(&facts(&[at(1), at(90)])),
            "exactly 90 days is outside"
        );
        assert!(!c.evaluate(&facts(&[])));
        assert_eq!(
            facts(&[]).get_path("purchases.last_90_days.count"),
            Some(&Fact::Int(0))
        );
    }
}

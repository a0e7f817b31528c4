//! Purchase-window fields (`purchases.<window>.<measure>`): what they mean, and their facts
//! computed from one customer's purchases (the in-memory side; [`crate::sql`] compiles the
//! same definitions).
//!
//! * A window `last_<N>_days` (N in 1..=3650) holds the purchases with
//!   `purchased_at > now − N days` (exactly N × 24 hours; a purchase timed after `now` is in
//!   every window); `ever` holds all of them.
//! * `count`: purchases in the window; `sum_minor`: Σ (net − returned); both 0 (present) for
//!   no purchases.
//! * `avg_minor`: `sum_minor / count` truncated toward zero (integer division, as in Rust,
//!   PostgreSQL's `div` and SQLite); missing when the count is 0.
//! * `last_days_ago`: whole days from the latest purchase of the window to `now` (never
//!   negative); missing when the window is empty.
//! * `product_ids`, `product_group_ids`, `brand_ids`, `business_unit_ids`: every id bought
//!   in the window (a list, present and possibly empty; an empty business unit id is none).
use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::condition::fold;
use crate::{Fact, Field};

/// Longest window, in days (ten years).
pub const MAX_WINDOW_DAYS: u16 = 3650;

/// Which purchases a purchase field looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Window {
    /// `last_<N>_days`: purchased after `now − N days`.
    LastDays(u16),
    /// `ever`: every purchase.
    Ever,
}

impl Window {
    /// Parses `last_<N>_days` (N in 1..=3650, no sign or leading zero) or `ever`.
    pub fn parse(s: &str) -> Result<Window, String> {
        if s == "ever" {
            return Ok(Window::Ever);
        }
        let days = s
            .strip_prefix("last_")
            .and_then(|r| r.strip_suffix("_days"))
            .filter(|n| !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u16>().ok())
            .filter(|n| (1..=MAX_WINDOW_DAYS).contains(n));
        days.map(Window::LastDays).ok_or_else(|| {
            format!("a purchase window is last_<N>_days with N in 1..={MAX_WINDOW_DAYS}, or ever; got {s:?}")
        })
    }

    /// The window's length in days; `None` for `ever`.
    pub fn days(self) -> Option<i64> {
        match self {
            Window::LastDays(n) => Some(i64::from(n)),
            Window::Ever => None,
        }
    }

    /// The earliest purchase time excluded from the window (`now − N days`): the window holds
    /// purchases strictly after it; `None` for `ever`.
    pub fn start(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.days()
            .and_then(TimeDelta::try_days)
            .and_then(|d| now.checked_sub_signed(d))
    }

    /// Whether a purchase at `at` lies in the window.
    pub fn holds(self, at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.start(now).is_none_or(|start| at > start)
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Window::LastDays(n) => write!(f, "last_{n}_days"),
            Window::Ever => f.write_str("ever"),
        }
    }
}

impl TryFrom<String> for Window {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Window::parse(&s)
    }
}

impl From<Window> for String {
    fn from(w: Window) -> String {
        w.to_string()
    }
}

/// What a purchase field measures over its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    Count,
    SumMinor,
    AvgMinor,
    LastDaysAgo,
    ProductIds,
    ProductGroupIds,
    BrandIds,
    BusinessUnitIds,
}

impl Measure {
    /// Every measure, in catalogue order.
    pub const ALL: [Measure; 8] = [
        Measure::Count,
        Measure::SumMinor,
        Measure::AvgMinor,
        Measure::LastDaysAgo,
        Measure::ProductIds,
        Measure::ProductGroupIds,
        Measure::BrandIds,
        Measure::BusinessUnitIds,
    ];

    /// The name in a field path, e.g. `sum_minor`.
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::Count => "count",
            Measure::SumMinor => "sum_minor",
            Measure::AvgMinor => "avg_minor",
            Measure::LastDaysAgo => "last_days_ago",
            Measure::ProductIds => "product_ids",
            Measure::ProductGroupIds => "product_group_ids",
            Measure::BrandIds => "brand_ids",
            Measure::BusinessUnitIds => "business_unit_ids",
        }
    }

    pub fn parse(s: &str) -> Option<Measure> {
        Measure::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Whether the measure is a list of ids (the others are integers).
    pub fn is_list(self) -> bool {
        matches!(
            self,
            Measure::ProductIds
                | Measure::ProductGroupIds
                | Measure::BrandIds
                | Measure::BusinessUnitIds
        )
    }

    /// What the catalogue says of it.
    pub fn description(self) -> &'static str {
        match self {
            Measure::Count => "Number of purchases in the window (0 if none)",
            Measure::SumMinor => {
                "Sum of net minus returned amounts in the window, minor units (0 if none)"
            }
            Measure::AvgMinor => {
                "sum_minor / count truncated toward zero, minor units; missing if no purchase"
            }
            Measure::LastDaysAgo => {
                "Whole days since the latest purchase in the window; missing if none"
            }
            Measure::ProductIds => "Product ids bought in the window",
            Measure::ProductGroupIds => "Product group ids bought in the window",
            Measure::BrandIds => "Brand ids bought in the window",
            Measure::BusinessUnitIds => "Business units where the customer bought in the window",
        }
    }
}

/// One purchase of a customer, as purchase fields read it. Ids are compared
/// case-insensitively, so a store may keep them lower-cased ([`Purchase::normalized`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Purchase {
    pub purchased_at: DateTime<Utc>,
    pub net_amount_minor: i64,
    pub returned_amount_minor: i64,
    pub product_ids: Vec<String>,
    pub product_group_ids: Vec<String>,
    pub brand_ids: Vec<String>,
    /// Empty when not known.
    pub business_unit_id: String,
}

/// The ids lower-cased (as criteria compare them), without empty ones and duplicates, sorted.
pub fn normalized_ids(ids: impl IntoIterator<Item = impl AsRef<str>>) -> Vec<String> {
    ids.into_iter()
        .map(|i| fold(i.as_ref()))
        .filter(|i| !i.is_empty())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

impl Purchase {
    /// The purchase with its ids in the stored form: lower case, no empty or duplicate list
    /// elements (what the compiled SQL compares with lower-cased values).
    #[must_use]
    pub fn normalized(mut self) -> Purchase {
        self.product_ids = normalized_ids(&self.product_ids);
        self.product_group_ids = normalized_ids(&self.product_group_ids);
        self.brand_ids = normalized_ids(&self.brand_ids);
        self.business_unit_id = fold(&self.business_unit_id);
        self
    }

    fn ids(&self, m: Measure) -> Vec<String> {
        match m {
            Measure::ProductIds => self.product_ids.clone(),
            Measure::ProductGroupIds => self.product_group_ids.clone(),
            Measure::BrandIds => self.brand_ids.clone(),
            Measure::BusinessUnitIds if self.business_unit_id.is_empty() => Vec::new(),
            Measure::BusinessUnitIds => vec![self.business_unit_id.clone()],
            _ => Vec::new(),
        }
    }
}

/// The fact of `purchases.<window>.<measure>` for a customer with `purchases` at `now`
/// (`None` when it is missing).
pub fn fact(
    purchases: &[Purchase],
    window: Window,
    measure: Measure,
    now: DateTime<Utc>,
) -> Option<Fact> {
    let inside: Vec<&Purchase> = purchases
        .iter()
        .filter(|p| window.holds(p.purchased_at, now))
        .collect();
    let count = inside.len() as i64;
    // i128: no overflow for any realistic number of purchases of 64-bit amounts.
    let sum: i128 = inside
        .iter()
        .map(|p| i128::from(p.net_amount_minor) - i128::from(p.returned_amount_minor))
        .sum();
    let saturate = |n: i128| i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX });
    match measure {
        Measure::Count => Some(Fact::Int(count)),
        Measure::SumMinor => Some(Fact::Int(saturate(sum))),
        Measure::AvgMinor => (count > 0).then(|| Fact::Int(saturate(sum / i128::from(count)))),
        Measure::LastDaysAgo => inside
            .iter()
            .map(|p| p.purchased_at)
            .max()
            .map(|last| Fact::Int((now - last).num_days().max(0))),
        list => Some(Fact::List(
            inside
                .iter()
                .flat_map(|p| p.ids(list))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        )),
    }
}

/// The facts of every purchase field among `fields` (others are skipped), keyed by path.
pub fn facts<'f>(
    purchases: &[Purchase],
    fields: impl IntoIterator<Item = &'f Field>,
    now: DateTime<Utc>,
) -> Vec<(String, Fact)> {
    fields
        .into_iter()
        .filter_map(|f| match f {
            Field::Purchases { window, measure } => {
                fact(purchases, *window, *measure, now).map(|fact| (f.path(), fact))
            }
            _ => None,
        })
        .collect()
}

/// The longest window among `fields`' purchase fields: `None` when none reads purchases,
/// `Some(Window::Ever)` when one reads them all. Loading the purchases in it is enough to
/// compute every one of those facts.
pub fn longest_window<'f>(fields: impl IntoIterator<Item = &'f Field>) -> Option<Window> {
    fields
        .into_iter()
        .filter_map(|f| match f {
            Field::Purchases { window, .. } => Some(*window),
            _ => None,
        })
        .max_by_key(|w| w.days().unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-06T12:00:00Z")
            .unwrap()
            .to_utc()
    }

    fn bought(days_ago: f64, net: i64, returned: i64) -> Purchase {
        Purchase {
            purchased_at: now() - TimeDelta::milliseconds((days_ago * 86_400_000.0) as i64),
            net_amount_minor: net,
            returned_amount_minor: returned,
            product_ids: vec!["sku-1".into()],
            business_unit_id: if days_ago < 10.0 {
                "bu-1".into()
            } else {
                String::new()
            },
            ..Purchase::default()
        }
    }

    #[test]
    fn windows_parse_within_their_bounds_only() {
        assert_eq!(Window::parse("ever"), Ok(Window::Ever));
        assert_eq!(Window::parse("last_1_days"), Ok(Window::LastDays(1)));
        assert_eq!(Window::parse("last_3650_days"), Ok(Window::LastDays(3650)));
        for bad in [
            "last_0_days",
            "last_3651_days",
            "last_090_days",
            "last_+9_days",
            "last__days",
            "last_9_day",
            "Ever",
            "",
            "last_99999999999_days",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Window::LastDays(90).to_string(), "last_90_days");
    }

    #[test]
    fn a_window_starts_exactly_n_days_before_now_exclusive() {
        let w = Window::LastDays(30);
        let start = now() - TimeDelta::days(30);
        assert!(!w.holds(start, now()));
        assert!(w.holds(start + TimeDelta::nanoseconds(1), now()));
        assert!(w.holds(now() + TimeDelta::days(1), now()));
        assert!(Window::Ever.holds(DateTime::<Utc>::MIN_UTC, now()));
    }

    #[test]
    fn measures_count_sum_average_and_last_day_within_the_window() {
        let ps = [
            bought(1.5, 1_000, 0),
            bought(5.0, 2_001, 1_000),
            bought(40.0, 7, 0),
        ];
        let f = |w, m| fact(&ps, w, m, now());
        let w = Window::LastDays(30);
        assert_eq!(f(w, Measure::Count), Some(Fact::Int(2)));
        assert_eq!(f(w, Measure::SumMinor), Some(Fact::Int(2_001)));
        assert_eq!(f(w, Measure::AvgMinor), Some(Fact::Int(1_000)));
        assert_eq!(f(w, Measure::LastDaysAgo), Some(Fact::Int(1)));
        assert_eq!(f(Window::Ever, Measure::LastDaysAgo), Some(Fact::Int(1)));
        assert_eq!(f(Window::Ever, Measure::Count), Some(Fact::Int(3)));
        assert_eq!(
            f(w, Measure::BusinessUnitIds),
            Some(Fact::List(vec!["bu-1".into()]))
        );
        assert_eq!(
            f(w, Measure::ProductIds),
            Some(Fact::List(vec!["sku-1".into()]))
        );
    }

    #[test]
    fn an_empty_window_counts_zero_and_has_no_average_or_last_day() {
        let ps = [bought(40.0, 7, 0)];
        let f = |m| fact(&ps, Window::LastDays(30), m, now());
        assert_eq!(f(Measure::Count), Some(Fact::Int(0)));
        assert_eq!(f(Measure::SumMinor), Some(Fact::Int(0)));
        assert_eq!(f(Measure::AvgMinor), None);
        assert_eq!(f(Measure::LastDaysAgo), None);
        assert_eq!(f(Measure::BrandIds), Some(Fact::List(vec![])));
    }

    #[test]
    fn the_average_truncates_toward_zero() {
        let ps = [bought(1.0, 0, 5), bought(2.0, 0, 0)];
        assert_eq!(
            fact(&ps, Window::Ever, Measure::AvgMinor, now()),
            Some(Fact::Int(-2))
        );
    }

    #[test]
    fn ids_are_stored_lower_cased_once_without_empty_ones() {
        let p = Purchase {
            product_ids: vec!["SKU-1".into(), "sku-1".into(), String::new()],
            business_unit_id: "BU".into(),
            ..Purchase::default()
        }
        .normalized();
        assert_eq!(p.product_ids, ["sku-1"]);
        assert_eq!(p.business_unit_id, "bu");
    }

    #[test]
    fn the_longest_window_covers_every_field() {
        let f = |p: &str| Field::parse(p).unwrap();
        let fields = [
            f("purchases.last_7_days.count"),
            f("purchases.last_90_days.brand_ids"),
            f("customer.city"),
        ];
        assert_eq!(longest_window(&fields), Some(Window::LastDays(90)));
        let with_ever = [
            f("purchases.last_7_days.count"),
            f("purchases.ever.sum_minor"),
        ];
        assert_eq!(longest_window(&with_ever), Some(Window::Ever));
        assert_eq!(longest_window(&[f("customer.city")]), None);
    }
}

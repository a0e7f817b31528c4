//! Recency – Frequency – Monetary (glossary, seed 000): recency is the number of months since
//! the customer last purchased, frequency the number of purchases and monetary the amount
//! spent, both over the last 12 months. Scores 1..=5 are quintiles among the partner's
//! customers, 5 the best (most recent, most frequent, highest spend).
use chrono::{DateTime, Months, Utc};
use loyalty_criteria::Fact;
use serde::{Deserialize, Serialize};

/// The period frequency and monetary are counted over.
pub const PERIOD_MONTHS: u32 = 12;

/// Score of a customer in no quintile yet (computed before the partner's first scoring).
pub const NOT_SCORED: i32 = 0;

/// Recency months of a customer who never purchased.
pub const NEVER: i32 = -1;

/// The start of the frequency/monetary period ending at `now`: purchases made after it count.
pub fn period_start(now: DateTime<Utc>) -> DateTime<Utc> {
    now.checked_sub_months(Months::new(PERIOD_MONTHS))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Whole calendar months from `last` to `now`: the largest `m` with `last + m months <= now`
/// (a purchase on 31 January is one month old on 28/29 February's end of month, as chrono
/// clamps the day). A purchase after `now` is 0 months old; never purchased is [`NEVER`].
pub fn recency_months(last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> i32 {
    let Some(last) = last else { return NEVER };
    if last >= now {
        return 0;
    }
    // Start from the difference of the calendar months and step back while it overshoots.
    let guess = (now.year_month_index() - last.year_month_index()).max(0);
    let mut m = guess;
    while m > 0 {
        let stepped = u32::try_from(m)
            .ok()
            .and_then(|n| last.checked_add_months(Months::new(n)));
        if stepped.is_some_and(|t| t <= now) {
            break;
        }
        m -= 1;
    }
    i32::try_from(m).unwrap_or(i32::MAX)
}

trait YearMonth {
    fn year_month_index(&self) -> i64;
}

impl YearMonth for DateTime<Utc> {
    fn year_month_index(&self) -> i64 {
        use chrono::Datelike;
        i64::from(self.year()) * 12 + i64::from(self.month0())
    }
}

/// One customer's raw RFM values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RfmValues {
    /// [`recency_months`]; [`NEVER`] if the customer never purchased.
    pub recency_months: i32,
    /// Purchases in the last [`PERIOD_MONTHS`] months.
    pub frequency: i64,
    /// Net spend in the last [`PERIOD_MONTHS`] months, minor units.
    pub monetary_minor: i64,
}

/// Quintile scores of one customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RfmScores {
    pub recency: i32,
    pub frequency: i32,
    pub monetary: i32,
}

/// A customer's RFM as of a scoring run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRfm {
    pub values: RfmValues,
    pub scores: RfmScores,
    pub computed_at: DateTime<Utc>,
}

/// The criteria fields RFM provides (`features.<name>`), all integers.
pub const FIELDS: [&str; 6] = [
    "rfm_recency_months",
    "rfm_frequency",
    "rfm_monetary_minor",
    "rfm_recency_score",
    "rfm_frequency_score",
    "rfm_monetary_score",
];

impl CustomerRfm {
    /// The criteria facts, named by [`FIELDS`]: as stored at the last scoring (they do not
    /// age between runs). `rfm_recency_months` is missing for a customer who never
    /// purchased, like `last_purchase_days_ago`.
    pub fn facts(&self) -> Vec<(String, Fact)> {
        let v = &self.values;
        let s = &self.scores;
        let recency = (v.recency_months != NEVER).then_some(i64::from(v.recency_months));
        [
            recency,
            Some(v.frequency),
            Some(v.monetary_minor),
            Some(i64::from(s.recency)),
            Some(i64::from(s.frequency)),
            Some(i64::from(s.monetary)),
        ]
        .into_iter()
        .zip(FIELDS)
        .filter_map(|(value, name)| Some((format!("features.{name}"), Fact::Int(value?))))
        .collect()
    }
}

/// Scores every customer of a partner, in the order given. A customer's score on one measure
/// is `1 + floor(5 × worse / n)`, where `worse` is the number of the partner's customers with a
/// strictly worse value and `n` their number: so equal values always score the same, the best
/// value scores 5 unless everyone shares it (then all score 1), and each score covers about a
/// fifth of the customers when values are distinct. Less recent is worse (never purchased is
/// the worst), fewer purchases and less spend are worse.
pub fn score(values: &[RfmValues]) -> Vec<RfmScores> {
    // Recency: a larger month count is worse; never purchased is worse than any.
    let recency_badness = |v: &RfmValues| {
        if v.recency_months == NEVER {
            i64::MAX
        } else {
            i64::from(v.recency_months)
        }
    };
    let recency = quintiles(values, |v| -recency_badness(v));
    let frequency = quintiles(values, |v| v.frequency);
    let monetary = quintiles(values, |v| v.monetary_minor);
    (0..values.len())
        .map(|i| RfmScores {
            recency: recency[i],
            frequency: frequency[i],
            monetary: monetary[i],
        })
        .collect()
}

/// The quintile score of each value by `key` (larger is better).
fn quintiles(values: &[RfmValues], key: impl Fn(&RfmValues) -> i64) -> Vec<i32> {
    let n = values.len();
    let mut keys: Vec<i64> = values.iter().map(&key).collect();
    keys.sort_unstable();
    values
        .iter()
        .map(|v| {
            let worse = keys.partition_point(|k| *k < key(v));
            // worse < n, so the score is within 1..=5.
            let score = 1 + (5 * worse) / n;
            i32::try_from(score).unwrap_or(5)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn v(recency_months: i32, frequency: i64, monetary_minor: i64) -> RfmValues {
        RfmValues {
            recency_months,
            frequency,
            monetary_minor,
        }
    }

    #[test]
    fn recency_counts_whole_calendar_months() {
        let now = t("2026-12-07T12:00:00Z");
        assert_eq!(recency_months(None, now), NEVER);
        assert_eq!(recency_months(Some(t("2026-12-07T11:00:00Z")), now), 0);
        assert_eq!(recency_months(Some(t("2026-12-08T00:00:00Z")), now), 0);
        assert_eq!(recency_months(Some(t("2026-11-07T12:00:01Z")), now), 0);
        assert_eq!(recency_months(Some(t("2026-11-07T12:00:00Z")), now), 1);
        assert_eq!(recency_months(Some(t("2026-10-15T00:00:00Z")), now), 1);
        assert_eq!(recency_months(Some(t("2025-12-07T12:00:00Z")), now), 12);
        assert_eq!(recency_months(Some(t("2016-01-31T00:00:00Z")), now), 130);
        // 31 January + 1 month is clamped to 28 February.
        assert_eq!(
            recency_months(Some(t("2026-01-31T00:00:00Z")), t("2026-02-28T00:00:00Z")),
            1
        );
        assert_eq!(
            recency_months(Some(t("2026-01-31T00:00:00Z")), t("2026-02-27T23:59:59Z")),
            0
        );
    }

    #[test]
    fn the_period_is_the_twelve_months_before_now() {
        assert_eq!(
            period_start(t("2026-12-07T12:00:00Z")),
            t("2025-12-07T12:00:00Z")
        );
        assert_eq!(
            period_start(t("2024-02-29T00:00:00Z")),
            t("2023-02-28T00:00:00Z")
        );
    }

    #[test]
    fn five_distinct_customers_get_one_score_each() {
        let values = [
            v(0, 10, 5000),
            v(1, 8, 4000),
            v(2, 6, 3000),
            v(3, 4, 2000),
            v(NEVER, 0, 0),
        ];
        let s = score(&values);
        assert_eq!(
            s.iter().map(|s| s.recency).collect::<Vec<_>>(),
            [5, 4, 3, 2, 1]
        );
        assert_eq!(
            s.iter().map(|s| s.frequency).collect::<Vec<_>>(),
            [5, 4, 3, 2, 1]
        );
        assert_eq!(
            s.iter().map(|s| s.monetary).collect::<Vec<_>>(),
            [5, 4, 3, 2, 1]
        );
    }

    #[test]
    fn ties_score_alike_and_a_shared_value_scores_one() {
        let s = score(&[v(2, 1, 100), v(2, 1, 100), v(2, 1, 100)]);
        assert!(s.iter().all(|s| *s
            == RfmScores {
                recency: 1,
                frequency: 1,
                monetary: 1
            }));
        // Ten customers: six never bought, four bought once: the buyers are all scored 4
        // (six of ten are worse), the others 1.
        let mut values = vec![v(NEVER, 0, 0); 6];
        values.extend(vec![v(0, 1, 500); 4]);
        let s = score(&values);
        assert!(s[..6].iter().all(|s| s.frequency == 1 && s.recency == 1));
        assert!(s[6..].iter().all(|s| s.frequency == 4 && s.recency == 4));
    }

    #[test]
    fn nobody_to_score_is_nothing_scored() {
        assert!(score(&[]).is_empty());
    }

    proptest! {
        #[test]
        fn scores_are_quintiles(
            raw in prop::collection::vec((-1i32..40, 0i64..30, 0i64..100_000), 1..300)
        ) {
            let values: Vec<RfmValues> = raw.iter().map(|&(r, f, m)| v(r, f, m)).collect();
            let scores = score(&values);
            prop_assert_eq!(scores.len(), values.len());
            for (i, a) in values.iter().enumerate() {
                let sa = scores[i];
                prop_assert!((1..=5).contains(&sa.recency));
                prop_assert!((1..=5).contains(&sa.frequency));
                prop_assert!((1..=5).contains(&sa.monetary));
                for (j, b) in values.iter().enumerate() {
                    let sb = scores[j];
                    // Monotone: a better value never scores lower; equal values score alike.
                    if a.frequency > b.frequency { prop_assert!(sa.frequency >= sb.frequency); }
                    if a.frequency == b.frequency { prop_assert_eq!(sa.frequency, sb.frequency); }
                    if a.monetary_minor > b.monetary_minor { prop_assert!(sa.monetary >= sb.monetary); }
                    let rank = |r: i32| if r == NEVER { i32::MAX } else { r };
                    if rank(a.recency_months) < rank(b.recency_months) {
                        prop_assert!(sa.recency >= sb.recency);
                    }
                }
            }
            // With distinct frequencies, each score holds a fifth of the customers (±1).
            let mut distinct: Vec<i64> = values.iter().map(|v| v.frequency).collect();
            distinct.sort_unstable();
            distinct.dedup();
            if distinct.len() == values.len() {
                let n = values.len();
                for s in 1..=5 {
                    let count = scores.iter().filter(|x| x.frequency == s).count();
                    prop_assert!(count.abs_diff(n / 5) <= 1, "score {} holds {} of {}", s, count, n);
                }
            }
        }
    }
}

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
}

fn tier(code: &str, rank: i32, min_spend: i64, period: Period) -> Tier {
    Tier {
        id: Uuid::now_v7(),
        code: code.into(),
        display_name: code.to_uppercase(),
        rank,
        qualification: Qualification {
            minimum_spend: (min_spend > 0).then(|| (min_spend, "EUR".to_owned())),
            minimum_purchase_count: 0,
            minimum_points: 0,
            points_type: String::new(),
            period,
        },
        retention_months: 0,
        downgrade_mode: DowngradeMode::ToQualified,
        points_multiplier_basis_points: 10_000,
        discount_basis_points: 0,
        icon_url: String::new(),
        color: String::new(),
        revision: 1,
        created_at: at(2026, 1, 1),
        updated_at: at(2026, 1, 1),
    }
}

fn purchase(when: DateTime<Utc>, minor: i64) -> Activity {
    Activity {
        at: when,
        currency_code: "EUR".into(),
        spend_minor: minor,
        purchases: 1,
        points: 0,
        points_type_id: String::new(),
        points_type_code: String::new(),
    }
}

fn points(when: DateTime<Utc>, n: i64, type_code: &str) -> Activity {
    Activity {
        at: when,
        currency_code: String::new(),
        spend_minor: 0,
        purchases: 0,
        points: n,
        points_type_id: Uuid::nil().to_string(),
        points_type_code: type_code.into(),
    }
}

/// Silver from 1,000.00 EUR and gold from 5,000.00 EUR a calendar year.
fn ladder() -> Vec<Tier> {
    vec![
        tier("silver", 1, 100_000, Period::CalendarYear),
        tier("gold", 2, 500_000, Period::CalendarYear),
    ]
}

fn requalify(
    ladder: &[Tier],
    activity: &[Activity],
    state: &CustomerState,
    now: DateTime<Utc>,
) -> (CustomerState, Option<Change>) {
    apply(ladder, activity, state, Action::Requalify, now)
}

fn effective(ladder: &[Tier], state: &CustomerState, now: DateTime<Utc>) -> Option<String> {
    let id = state.effective(now).tier_id?;
    ladder.iter().find(|t| t.id == id).map(|t| t.code.clone())
}

#[test]
fn a_customer_moves_up_as_soon_as_a_threshold_is_reached() {
    let l = ladder();
    let mut activity = vec![purchase(at(2026, 2, 1), 60_000)];
    let (s, change) = requalify(&l, &activity, &CustomerState::default(), at(2026, 2, 1));
    assert_eq!(change, None, "600.00 EUR earns no tier");
    assert_eq!(effective(&l, &s, at(2026, 2, 1)), None);

    activity.push(purchase(at(2026, 3, 1), 50_000));
    let (s, change) = requalify(&l, &activity, &s, at(2026, 3, 1));
    let change = change.expect("silver reached");
    assert_eq!(change.cause, Cause::Upgrade);
    assert_eq!((change.previous_rank, change.rank), (0, 1));
    assert_eq!(change.tier_id, Some(l[0].id));
    assert!(!change.manual);
    assert_eq!(s.since, Some(at(2026, 3, 1)));

    activity.push(purchase(at(2026, 4, 1), 400_000));
    let (s, change) = requalify(&l, &activity, &s, at(2026, 4, 1));
    let change = change.expect("gold reached");
    assert_eq!((change.previous_rank, change.rank), (1, 2));
    assert_eq!(change.previous_tier_id, Some(l[0].id));
    // Earned in 2026: kept to the end of 2027.
    assert_eq!(
        s.qualified.unwrap().until,
        Utc.with_ymd_and_hms(2028, 1, 1, 0, 0, 0).unwrap()
    );
    assert_eq!(s.review_at(), s.qualified.map(|h| h.until));
}

#[test]
fn a_calendar_tier_is_kept_through_the_next_year_and_dropped_at_its_end() {
    let l = ladder();
    let activity = vec![purchase(at(2026, 5, 1), 500_000)];
    let (s, _) = requalify(&l, &activity, &CustomerState::default(), at(2026, 5, 1));
    assert_eq!(effective(&l, &s, at(2026, 5, 1)).as_deref(), Some("gold"));

    // Nothing bought in 2027: still gold throughout 2027.
    let (s, change) = requalify(&l, &activity, &s, at(2027, 12, 31));
    assert_eq!(change, None);
    assert_eq!(effective(&l, &s, at(2027, 12, 31)).as_deref(), Some("gold"));

    // The review at the end of 2027 finds nothing earned: down to no tier.
    let review = s.review_at().unwrap();
    let (s, change) = requalify(&l, &activity, &s, review);
    let change = change.expect("dropped");
    assert_eq!(change.cause, Cause::Downgrade);
    assert_eq!((change.previous_rank, change.rank), (2, 0));
    assert_eq!(s.qualified, None);
    assert_eq!(s.review_at(), None, "nothing left to review");
}

#[test]
fn the_period_just_ended_counts_at_the_review() {
    let l = ladder();
    let mut activity = vec![purchase(at(2026, 5, 1), 500_000)];
    let (s, _) = requalify(&l, &activity, &CustomerState::default(), at(2026, 5, 1));
    // 2027: only silver's threshold is met.
    activity.push(purchase(at(2027, 6, 1), 150_000));
    let (s, change) = requalify(&l, &activity, &s, at(2027, 6, 1));
    assert_eq!(change, None, "gold is held until the end of 2027");
    let (s, change) = requalify(&l, &activity, &s, s.review_at().unwrap());
    let change = change.expect("down to silver");
    assert_eq!((change.previous_rank, change.rank), (2, 1));
    assert_eq!(change.cause, Cause::Downgrade);
    // Silver earned in 2027 holds to the end of 2028.
    assert_eq!(
        s.qualified.unwrap().until,
        Utc.with_ymd_and_hms(2029, 1, 1, 0, 0, 0).unwrap()
    );
}

#[test]
fn requalifying_extends_the_tier() {
    let l = ladder();
    let mut activity = vec![purchase(at(2026, 5, 1), 500_000)];
    let (s, _) = requalify(&l, &activity, &CustomerState::default(), at(2026, 5, 1));
    activity.push(purchase(at(2027, 3, 1), 500_000));
    let (s, change) = requalify(&l, &activity, &s, at(2027, 3, 1));
    assert_eq!(change, None);
    assert_eq!(
        s.qualified.unwrap().until,
        Utc.with_ymd_and_hms(2029, 1, 1, 0, 0, 0).unwrap()
    );
    let (s, change) = requalify(&l, &activity, &s, at(2028, 1, 1));
    assert_eq!(change, None);
    assert_eq!(effective(&l, &s, at(2028, 1, 1)).as_deref(), Some("gold"));
}

#[test]
fn retention_months_extend_the_hold() {
    let mut l = ladder();
    l[1].retention_months = 3;
    let activity = vec![purchase(at(2026, 5, 1), 500_000)];
    let (s, _) = requalify(&l, &activity, &CustomerState::default(), at(2026, 5, 1));
    assert_eq!(
        s.qualified.unwrap().until,
        Utc.with_ymd_and_hms(2028, 4, 1, 0, 0, 0).unwrap()
    );
}

#[test]
fn one_level_drops_a_single_tier_per_review() {
    let mut l = vec![
        tier("silver", 1, 100_000, Period::CalendarQuarter),
        tier("gold", 2, 300_000, Period::CalendarQuarter),
        tier("platinum", 3, 900_000, Period::CalendarQuarter),
    ];
    for t in &mut l {
        t.downgrade_mode = DowngradeMode::OneLevel;
    }
    let activity = vec![purchase(at(2026, 1, 10), 900_000)];
    let (s, _) = requalify(&l, &activity, &CustomerState::default(), at(2026, 1, 10));
    assert_eq!(
        effective(&l, &s, at(2026, 1, 10)).as_deref(),
        Some("platinum")
    );
    // Earned in Q1: held to the end of Q2.
    let review = s.review_at().unwrap();
    assert_eq!(review, Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap());
    let (s, change) = requalify(&l, &activity, &s, review);
    assert_eq!(change.unwrap().rank, 2, "one level down, not to none");
    // Gold is given for one quarter.
    let review = s.review_at().unwrap();
    assert_eq!(review, Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap());
    let (s, change) = requalify(&l, &activity, &s, review);
    assert_eq!(change.unwrap().rank, 1);
    let (s, change) = requalify(&l, &activity, &s, s.review_at().unwrap());
    assert_eq!(change.unwrap().rank, 0);
    assert_eq!(s.qualified, None);
}

#[test]
fn one_level_never_drops_below_the_tier_qualified_for() {
    let mut l = vec![
        tier("silver", 1, 100_000, Period::CalendarYear),
        tier("gold", 2, 300_000, Period::CalendarYear),
        tier("platinum", 3, 900_000, Period::CalendarYear),
    ];
    l[2].downgrade_mode = DowngradeMode::OneLevel;
    let mut activity = vec![purchase(at(2026, 1, 10), 900_000)];
    let (s, _) = requalify(&l, &activity, &CustomerState::default(), at(2026, 1, 10));
    activity.push(purchase(at(2027, 6, 1), 300_000));
    let (_, change) = requalify(&l, &activity, &s, s.review_at().unwrap());
    let change = change.unwrap();
    assert_eq!(change.rank, 2);
    assert_eq!(change.tier_id, Some(l[1].id));
}

#[test]
fn keep_never_drops() {
    let mut l = ladder();
    l[1].downgrade_mode = DowngradeMode::Keep;
    let activity = vec![purchase(at(2026, 5, 1), 500_000)];
    let (mut s, _) = requalify(&l, &activity, &CustomerState::default(), at(2026, 5, 1));
    for _ in 0..5 {
        let review = s.review_at().unwrap();
        let (next, change) = requalify(&l, &activity, &s, review);
        assert_eq!(change, None);
        assert!(next.review_at().unwrap() > review, "the review moves on");
        s = next;
    }
    assert_eq!(effective(&l, &s, at(2031, 6, 1)).as_deref(), Some("gold"));
}

#[test]
fn a_rolling_tier_is_kept_one_period_after_the_customer_last_qualified() {
    let l = vec![tier("vip", 1, 10_000, Period::RollingDays(30))];
    let activity = vec![purchase(at(2026, 3, 1), 10_000)];
    let (s, change) = requalify(&l, &activity, &CustomerState::default(), at(2026, 3, 1));
    assert_eq!(change.unwrap().cause, Cause::Upgrade);
    assert_eq!(s.review_at(), Some(at(2026, 3, 31)));
    // Two weeks on the purchase still counts: the hold moves on.
    let (s, change) = requalify(&l, &activity, &s, at(2026, 3, 15));
    assert_eq!(change, None);
    assert_eq!(s.review_at(), Some(at(2026, 4, 14)));
    let (s, change) = requalify(&l, &activity, &s, at(2026, 4, 14));
    assert_eq!(change.unwrap().cause, Cause::Downgrade);
    assert_eq!(s.qualified, None);
}

#[test]
fn rolling_months_count_the_last_months_only() {
    let l = vec![tier("vip", 1, 10_000, Period::RollingMonths(2))];
    let old = vec![
        purchase(at(2026, 1, 1), 5_000),
        purchase(at(2026, 3, 15), 5_000),
    ];
    let (_, change) = requalify(&l, &old, &CustomerState::default(), at(2026, 3, 15));
    assert_eq!(change, None, "January is outside the last two months");
    let recent = vec![
        purchase(at(2026, 1, 20), 5_000),
        purchase(at(2026, 3, 15), 5_000),
    ];
    let (_, change) = requalify(&l, &recent, &CustomerState::default(), at(2026, 3, 15));
    assert!(change.is_some());
}

#[test]
fn a_return_lowers_the_spend_but_the_tier_holds_until_the_review() {
    let l = ladder();
    let mut activity = vec![purchase(at(2026, 5, 1), 120_000)];
    let (s, _) = requalify(&l, &activity, &CustomerState::default(), at(2026, 5, 1));
    assert_eq!(effective(&l, &s, at(2026, 5, 1)).as_deref(), Some("silver"));
    activity.push(Activity {
        spend_minor: -50_000,
        purchases: 0,
        ..purchase(at(2026, 5, 1), 0)
    });
    let (s, change) = requalify(&l, &activity, &s, at(2026, 5, 2));
    assert_eq!(change, None);
    assert_eq!(effective(&l, &s, at(2026, 5, 2)).as_deref(), Some("silver"));
    // Earned in 2026 although taken back later: the review at the end of 2026 keeps it
    // (held to the end of 2027), and the one at the end of 2027 drops it.
    let (s, change) = requalify(&l, &activity, &s, at(2027, 1, 1));
    assert_eq!(change, None);
    let (_, change) = requalify(&l, &activity, &s, s.review_at().unwrap());
    assert_eq!(change.unwrap().rank, 0);
}

#[test]
fn only_the_threshold_currency_and_points_type_count() {
    let mut l = vec![tier("gold", 1, 10_000, Period::CalendarYear)];
    l[0].qualification.minimum_points = 100;
    l[0].qualification.points_type = "status".into();
    let now = at(2026, 6, 1);
    let mut activity = vec![
        Activity {
            currency_code: "USD".into(),
            ..purchase(now, 50_000)
        },
        purchase(now, 10_000),
        points(now, 90, "status"),
        points(now, 500, "regular"),
    ];
    let (_, change) = requalify(&l, &activity, &CustomerState::default(), now);
    assert_eq!(change, None, "90 status points of 100");
    activity.push(points(now, 10, "status"));
    let (_, change) = requalify(&l, &activity, &CustomerState::default(), now);
    assert!(change.is_some());
}

#[test]
fn every_threshold_must_be_met() {
    let mut l = vec![tier("gold", 1, 10_000, Period::CalendarYear)];
    l[0].qualification.minimum_purchase_count = 3;
    let now = at(2026, 6, 1);
    let two = vec![purchase(now, 10_000), purchase(now, 1)];
    assert_eq!(requalify(&l, &two, &CustomerState::default(), now).1, None);
    let three = vec![purchase(now, 10_000), purchase(now, 1), purchase(now, 1)];
    assert!(
        requalify(&l, &three, &CustomerState::default(), now)
            .1
            .is_some()
    );
}

#[test]
fn a_tier_without_thresholds_is_everyones() {
    let l = vec![
        tier("member", 1, 0, Period::CalendarYear),
        tier("gold", 2, 10_000, Period::CalendarYear),
    ];
    let (s, change) = requalify(&l, &[], &CustomerState::default(), at(2026, 1, 5));
    assert_eq!(change.unwrap().rank, 1);
    assert_eq!(effective(&l, &s, at(2026, 1, 5)).as_deref(), Some("member"));
}

#[test]
fn a_manual_tier_overrides_until_cleared_or_expired() {
    let l = ladder();
    let activity = vec![purchase(at(2026, 5, 1), 100_000)];
    let (s, _) = requalify(&l, &activity, &CustomerState::default(), at(2026, 5, 1));
    let manual = Manual {
        tier_id: l[1].id,
        until: Some(at(2026, 8, 1)),
        reason: "complaint goodwill".into(),
    };
    let (s, change) = apply(
        &l,
        &activity,
        &s,
        Action::SetManual(manual.clone()),
        at(2026, 6, 1),
    );
    let change = change.unwrap();
    assert_eq!(change.cause, Cause::ManualSet);
    assert!(change.manual);
    assert_eq!(change.reason, "complaint goodwill");
    assert_eq!((change.previous_rank, change.rank), (1, 2));
    assert_eq!(
        s.review_at(),
        Some(at(2026, 8, 1)),
        "the expiry comes first"
    );

    // Qualifying activity does not move a manual tier.
    let more = vec![
        purchase(at(2026, 5, 1), 100_000),
        purchase(at(2026, 7, 1), 400_000),
    ];
    let (s2, change) = requalify(&l, &more, &s, at(2026, 7, 1));
    assert_eq!(change, None);
    assert_eq!(
        s2.qualified.unwrap().tier_id,
        l[1].id,
        "qualified underneath"
    );

    // It expires: back to the qualified tier.
    let (s3, change) = requalify(&l, &activity, &s, at(2026, 8, 1));
    let change = change.unwrap();
    assert_eq!(change.cause, Cause::ManualExpired);
    assert_eq!((change.previous_rank, change.rank), (2, 1));
    assert!(!change.manual);
    assert_eq!(s3.manual, None);

    // Or it is cleared earlier.
    let (s4, change) = apply(&l, &activity, &s, Action::ClearManual, at(2026, 7, 1));
    assert_eq!(change.unwrap().cause, Cause::ManualCleared);
    assert_eq!(
        effective(&l, &s4, at(2026, 7, 1)).as_deref(),
        Some("silver")
    );
}

#[test]
fn setting_the_qualified_tier_manually_still_records_the_override() {
    let l = ladder();
    let activity = vec![purchase(at(2026, 5, 1), 100_000)];
    let (s, _) = requalify(&l, &activity, &CustomerState::default(), at(2026, 5, 1));
    let (_, change) = apply(
        &l,
        &activity,
        &s,
        Action::SetManual(Manual {
            tier_id: l[0].id,
            until: None,
            reason: "pinned".into(),
        }),
        at(2026, 6, 1),
    );
    let change = change.unwrap();
    assert!(change.manual);
    assert_eq!(change.rank, change.previous_rank);
}

#[test]
fn a_deleted_tier_requalifies_its_members() {
    let l = ladder();
    let activity = vec![purchase(at(2026, 5, 1), 500_000)];
    let (s, _) = requalify(&l, &activity, &CustomerState::default(), at(2026, 5, 1));
    let without_gold = vec![l[0].clone()];
    let (s, change) = requalify(&without_gold, &activity, &s, at(2026, 6, 1));
    let change = change.unwrap();
    assert_eq!(change.cause, Cause::TierDeleted);
    assert_eq!(change.tier_id, Some(l[0].id));
    assert_eq!(change.previous_tier_id, Some(l[1].id));
    assert_eq!(effective(&l, &s, at(2026, 6, 1)).as_deref(), Some("silver"));
}

#[test]
fn progress_names_what_is_still_missing() {
    let mut l = ladder();
    l[1].qualification.minimum_points = 1_000;
    let now = at(2026, 6, 1);
    let activity = vec![purchase(now, 150_000), points(now, 400, "any")];
    let p = progress(&l, &activity, 1, now);
    let next = p.next.unwrap();
    assert_eq!(next.tier.code, "gold");
    assert_eq!(next.spend_missing, Some((350_000, "EUR".into())));
    assert_eq!(next.points_missing, 600);
    assert_eq!(next.purchases_missing, 0);
    assert_eq!(
        next.period_end,
        Some(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap())
    );
    assert_eq!(p.totals.spend_minor, 150_000);
    assert_eq!(p.totals.purchases, 1);
    let top = progress(&l, &activity, 2, now);
    assert!(top.next.is_none());
    assert_eq!(top.counted_for.unwrap().code, "gold");
}

#[test]
fn calendar_periods_start_and_end_on_utc_boundaries() {
    let t = Utc.with_ymd_and_hms(2026, 8, 17, 9, 30, 0).unwrap();
    let d = |y, m| Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).unwrap();
    assert_eq!(Period::CalendarYear.start_of(t), d(2026, 1));
    assert_eq!(Period::CalendarQuarter.start_of(t), d(2026, 7));
    assert_eq!(Period::CalendarMonth.start_of(t), d(2026, 8));
    assert_eq!(Period::CalendarYear.end_of(t), Some(d(2027, 1)));
    assert_eq!(Period::CalendarQuarter.end_of(t), Some(d(2026, 10)));
    assert_eq!(Period::CalendarMonth.end_of(t), Some(d(2026, 9)));
    assert_eq!(Period::RollingMonths(3).end_of(t), None);
    let l = vec![
        tier("a", 1, 1, Period::RollingDays(10)),
        tier("b", 2, 1, Period::CalendarQuarter),
    ];
    assert_eq!(lookback_start(&l, t), d(2026, 4));
}

#[test]
fn validation_names_every_bad_field() {
    let mut t = tier("Gold!", 0, 100, Period::RollingMonths(0));
    t.display_name = " ".into();
    t.qualification.minimum_spend = Some((-1, "eur".into()));
    t.qualification.minimum_points = -5;
    t.retention_months = 121;
    t.points_multiplier_basis_points = 0;
    t.discount_basis_points = 10_001;
    t.icon_url = "http://x".into();
    t.color = "red".into();
    let mut v = Violations::new();
    t.validate(&mut v, "tier");
    let text = v.into_result().unwrap_err().to_string();
    for field in [
        "tier.code",
        "tier.display_name",
        "tier.rank",
        "tier.qualification.minimum_spend",
        "tier.qualification.minimum_spend.currency_code",
        "tier.qualification.minimum_points",
        "tier.qualification.period_months",
        "tier.retention_months",
        "tier.points_multiplier_basis_points",
        "tier.discount_basis_points",
        "tier.icon_url",
        "tier.color",
    ] {
        assert!(text.contains(&format!("{field}:")), "{field} in {text}");
    }
    let mut v = Violations::new();
    tier("gold", 2, 100, Period::RollingDays(365)).validate(&mut v, "tier");
    assert!(v.is_empty());
}

fn arb_period() -> impl Strategy<Value = Period> {
    prop_oneof![
        (1u32..24).prop_map(Period::RollingMonths),
        (1u32..400).prop_map(Period::RollingDays),
        Just(Period::CalendarYear),
        Just(Period::CalendarQuarter),
        Just(Period::CalendarMonth),
    ]
}

fn arb_mode() -> impl Strategy<Value = DowngradeMode> {
    prop_oneof![
        Just(DowngradeMode::ToQualified),
        Just(DowngradeMode::OneLevel),
        Just(DowngradeMode::Keep),
    ]
}

proptest! {
    /// Whatever the ladder and the purchases, re-qualifying after each purchase and at each
    /// review: a customer is never below the tier the activity earns (upgrades are
    /// immediate), never loses a tier before its review time, and a change always moves the
    /// rank.
    #[test]
    fn upgrades_are_immediate_and_downgrades_wait_for_the_review(
        tiers in proptest::collection::vec((1i64..2_000, arb_period(), arb_mode(), 0u32..3), 1..4),
        buys in proptest::collection::vec((0i64..900, 1i64..1_500), 0..12),
    ) {
        let ladder: Vec<Tier> = tiers
            .iter()
            .enumerate()
            .map(|(i, (min, period, mode, retention))| {
                let mut t = tier(&format!("t{i}"), i as i32 + 1, *min, *period);
                t.downgrade_mode = *mode;
                t.retention_months = *retention;
                t
            })
            .collect();
        let start = at(2026, 1, 1);
        let mut buys = buys;
        buys.sort();
        let mut activity = Vec::new();
        let mut state = CustomerState::default();
        let moments: Vec<DateTime<Utc>> = buys
            .iter()
            .map(|(day, _)| start + chrono::Duration::days(*day))
            .collect();
        let mut i = 0;
        let mut now = start;
        for _ in 0..40 {
            // The next moment: a purchase or the review, whichever is first.
            let review = state.review_at();
            let buy = moments.get(i).copied();
            let next = match (buy, review) {
                (Some(b), Some(r)) => b.min(r),
                (Some(b), None) => b,
                (None, Some(r)) => r,
                (None, None) => break,
            };
            now = now.max(next);
            if buy == Some(next) {
                activity.push(purchase(next, buys[i].1 * 100));
                i += 1;
            }
            let held_before = state.qualified;
            let rank_before = rank_of(&ladder.iter().collect::<Vec<_>>(), state.saved_effective().tier_id);
            let (after, change) = requalify(&ladder, &activity, &state, now);
            let ranks: Vec<&Tier> = ladder.iter().collect();
            let earned = ladder
                .iter()
                .filter(|t| t.standing(&activity, now).is_some())
                .map(|t| t.rank)
                .max()
                .unwrap_or(0);
            let rank_after = rank_of(&ranks, after.effective(now).tier_id);
            prop_assert!(rank_after >= earned, "never below the earned tier");
            if let Some(h) = held_before
                && now < h.until
            {
                prop_assert!(rank_after >= rank_before, "no drop before the review");
            }
            if let Some(c) = change {
                prop_assert_ne!(c.rank, c.previous_rank);
                prop_assert_eq!(c.previous_rank, rank_before);
                prop_assert_eq!(c.rank, rank_after);
            } else {
                prop_assert_eq!(rank_after, rank_before);
            }
            if let Some(r) = after.review_at() {
                prop_assert!(r > now, "the next review lies ahead");
            }
            state = after;
        }
    }
}

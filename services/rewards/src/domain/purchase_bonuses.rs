//! What a purchase bonus (and a campaign product) may be restricted to: products, places,
//! channels, days and hours, tiers; plus the bonus's state and cap. Pure: the API parses the
//! proto into these types, the store keeps them as JSON, the engine gets them through
//! `engine::from_purchase_bonus`.
use std::collections::HashSet;

use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{PurchaseBonus, catalogue::check_code};
use crate::domain::engine::{Schedule, Target};

/// A selection of catalogue codes (`loyalty.type.v1.ProductScope`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductScope {
    pub product_codes: Vec<String>,
    pub group_codes: Vec<String>,
    pub brand_codes: Vec<String>,
    pub excluded_product_codes: Vec<String>,
}

/// Codes per list of a product scope.
const MAX_SCOPE_CODES: usize = 1000;

impl ProductScope {
    pub fn is_all(&self) -> bool {
        self.product_codes.is_empty()
            && self.group_codes.is_empty()
            && self.brand_codes.is_empty()
            && self.excluded_product_codes.is_empty()
    }

    /// Checks the codes, naming them under `field` (e.g. `purchase_bonus.products`). Products,
    /// groups and brands may be mixed (a line matches any of them) and exclusions win.
    pub fn validate(&self, v: &mut Violations, field: &str) {
        let lists = [
            ("product_codes", &self.product_codes),
            ("product_group_codes", &self.group_codes),
            ("brand_codes", &self.brand_codes),
            ("excluded_product_codes", &self.excluded_product_codes),
        ];
        for (name, list) in lists {
            if list.len() > MAX_SCOPE_CODES {
                v.add(
                    format!("{field}.{name}"),
                    format!("at most {MAX_SCOPE_CODES} codes"),
                );
            }
            for (i, code) in list.iter().enumerate() {
                check_code(v, &format!("{field}.{name}[{i}]"), code);
            }
        }
    }

    /// The engine target: any listed product, group or brand minus the excluded products; the
    /// whole cart (minus exclusions) when nothing is listed.
    pub fn target(&self) -> Target {
        Target {
            products: self.product_codes.clone(),
            groups: self.group_codes.clone(),
            brands: self.brand_codes.clone(),
            excluded_products: self.excluded_product_codes.clone(),
        }
    }

    /// Names the codes the catalogue does not have (`known_*` are the partner's codes).
    pub fn check_known(
        &self,
        v: &mut Violations,
        field: &str,
        known_product: impl Fn(&str) -> bool,
        known_groups: &HashSet<String>,
        known_brands: &HashSet<String>,
    ) {
        for (i, c) in self.product_codes.iter().enumerate() {
            if !known_product(c) {
                v.add(
                    format!("{field}.product_codes[{i}]"),
                    format!("no product {c:?} in the catalogue"),
                );
            }
        }
        for (i, c) in self.group_codes.iter().enumerate() {
            if !known_groups.contains(c) {
                v.add(
                    format!("{field}.product_group_codes[{i}]"),
                    format!("no product group {c:?} in the catalogue"),
                );
            }
        }
        for (i, c) in self.brand_codes.iter().enumerate() {
            if !known_brands.contains(c) {
                v.add(
                    format!("{field}.brand_codes[{i}]"),
                    format!("no brand {c:?} in the catalogue"),
                );
            }
        }
    }

    /// Whether a product with these group codes (its groups and their ancestors) and brand
    /// is selected.
    pub fn covers(&self, code: &str, groups: &[String], brand: &str) -> bool {
        if self.excluded_product_codes.iter().any(|c| c == code) {
            return false;
        }
        self.is_all()
            || self.product_codes.iter().any(|c| c == code)
            || self.group_codes.iter().any(|g| groups.contains(g))
            || (!brand.is_empty() && self.brand_codes.iter().any(|b| b == brand))
    }
}

/// A sales channel; `as_str` is the name carts and the engine use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Pos,
    Eshop,
    MobileApp,
    Kiosk,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Pos => "pos",
            Channel::Eshop => "eshop",
            Channel::MobileApp => "mobile_app",
            Channel::Kiosk => "kiosk",
        }
    }
}

/// Hours of the day, `start` inclusive, `end` exclusive (0..=23, 1..=24).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HourRange {
    pub start: i32,
    pub end: i32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BonusState {
    #[default]
    Active,
    Inactive,
}

impl BonusState {
    pub fn as_str(self) -> &'static str {
        match self {
            BonusState::Active => "active",
            BonusState::Inactive => "inactive",
        }
    }

    pub fn parse_str(s: &str) -> Option<Self> {
        match s {
            "active" => Some(BonusState::Active),
            "inactive" => Some(BonusState::Inactive),
            _ => None,
        }
    }
}

/// Parses UUIDs (at most 100), reporting bad ones by index; duplicates are dropped.
pub fn parse_uuids(v: &mut Violations, field: &str, what: &str, ids: &[String]) -> Vec<Uuid> {
    if ids.len() > 100 {
        v.add(field, format!("at most 100 {what}s"));
    }
    let mut out = Vec::new();
    for (i, s) in ids.iter().enumerate() {
        match Uuid::parse_str(s) {
            Ok(id) if !out.contains(&id) => out.push(id),
            Ok(_) => {}
            Err(_) => v.add(format!("{field}[{i}]"), format!("must be a {what} UUID")),
        }
    }
    out
}

/// The ranges merged where they overlap or touch, in order.
pub fn merge_hours(ranges: &[HourRange]) -> Vec<HourRange> {
    let mut sorted = ranges.to_vec();
    sorted.sort();
    let mut out: Vec<HourRange> = Vec::new();
    for r in sorted {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// Days 1 (Monday) ..= 7 (Sunday) and one window of hours as the engine's schedule.
pub fn schedule(days_of_week: &[u8], hour_ranges: &[HourRange]) -> Schedule {
    let days = days_of_week
        .iter()
        .filter(|d| (1..=7).contains(*d))
        .fold(0u8, |m, d| m | (1 << (d - 1)));
    let hours = merge_hours(hour_ranges).first().map(|r| {
        let minutes = |h: i32| (h.clamp(0, 24) * 60) as u16;
        (minutes(r.start), minutes(r.end))
    });
    Schedule {
        days_of_week: if days == 0 { 0x7f } else { days },
        hours,
    }
}

/// Checks days and hours under `prefix` (e.g. `purchase_bonus`).
pub fn check_schedule(
    v: &mut Violations,
    prefix: &str,
    days_of_week: &[u8],
    hour_ranges: &[HourRange],
) {
    for (i, d) in days_of_week.iter().enumerate() {
        if !(1..=7).contains(d) {
            v.add(
                format!("{prefix}.days_of_week[{i}]"),
                "must be MONDAY..SUNDAY",
            );
        }
    }
    for (i, r) in hour_ranges.iter().enumerate() {
        let f = format!("{prefix}.hour_ranges[{i}]");
        if !(0..=23).contains(&r.start) {
            v.add(format!("{f}.start_hour"), "must be 0..23");
        }
        if !(1..=24).contains(&r.end) {
            v.add(format!("{f}.end_hour"), "must be 1..24");
        } else if r.end <= r.start {
            v.add(format!("{f}.end_hour"), "must be after start_hour");
        }
    }
    // The engine has one window of hours per rule; ranges that touch make one window.
    if merge_hours(hour_ranges).len() > 1 {
        v.add(
            format!("{prefix}.hour_ranges"),
            "must form one window of hours (ranges may overlap or touch, e.g. 14..17 and 17..20)",
        );
    }
}

/// The purchase bonus's restrictions, state and cap (`PurchaseBonus::validate` calls this).
pub fn validate(b: &PurchaseBonus, v: &mut Violations) {
    b.products.validate(v, "purchase_bonus.products");
    check_schedule(v, "purchase_bonus", &b.days_of_week, &b.hour_ranges);
    if !b.points_type_id.is_empty() {
        check_code(v, "purchase_bonus.points_type_id", &b.points_type_id);
    }
    if b.max_points_per_purchase < 0 {
        v.add(
            "purchase_bonus.max_points_per_purchase",
            "must be 0 (unlimited) or more",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(list: &[(i32, i32)]) -> Vec<HourRange> {
        list.iter()
            .map(|(start, end)| HourRange {
                start: *start,
                end: *end,
            })
            .collect()
    }

    fn fields(v: Violations) -> Vec<String> {
        v.into_vec().into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn touching_hour_ranges_make_one_window_and_separate_ones_are_refused() {
        assert_eq!(
            merge_hours(&hours(&[(17, 20), (14, 17)])),
            hours(&[(14, 20)])
        );
        let mut v = Violations::new();
        check_schedule(&mut v, "b", &[5], &hours(&[(8, 10), (18, 20)]));
        assert_eq!(fields(v), vec!["b.hour_ranges"]);
        let s = schedule(&[5, 6], &hours(&[(17, 24)]));
        assert_eq!(s.days_of_week, 0b0011_0000);
        assert_eq!(s.hours, Some((17 * 60, 1440)));
        assert_eq!(schedule(&[], &[]), Schedule::default());
    }

    #[test]
    fn bad_days_and_hours_are_named() {
        let mut v = Violations::new();
        check_schedule(&mut v, "b", &[0, 8], &hours(&[(24, 25), (10, 10)]));
        let f = fields(v);
        for want in [
            "b.days_of_week[0]",
            "b.days_of_week[1]",
            "b.hour_ranges[0].start_hour",
            "b.hour_ranges[0].end_hour",
            "b.hour_ranges[1].end_hour",
        ] {
            assert!(f.iter().any(|x| x == want), "{want} in {f:?}");
        }
    }

    #[test]
    fn a_scope_mixes_products_groups_and_brands_minus_exclusions() {
        let scope = ProductScope {
            brand_codes: vec!["lavazza".into()],
            ..Default::default()
        };
        let mut v = Violations::new();
        scope.validate(&mut v, "p");
        assert!(v.is_empty());
        assert_eq!(scope.target(), Target::brands(vec!["lavazza".into()]));
        assert_eq!(ProductScope::default().target(), Target::cart());
        assert!(scope.covers("ESP", &[], "lavazza"));
        assert!(!scope.covers("ESP", &[], "illy"));

        let mixed = ProductScope {
            product_codes: vec!["A".into(), "has space".into()],
            brand_codes: vec!["lavazza".into()],
            excluded_product_codes: vec!["B".into()],
            ..Default::default()
        };
        let mut v = Violations::new();
        mixed.validate(&mut v, "p");
        assert_eq!(fields(v), vec!["p.product_codes[1]"]);
        assert!(!mixed.covers("B", &[], "lavazza"));
        // The engine matches the same lines: a listed product, or the brand, never B.
        let t = mixed.target();
        let line = |code: &str, brand: Option<&str>| crate::domain::engine::CartLine {
            product_id: code.into(),
            group: None,
            brand: brand.map(Into::into),
            quantity: 1,
            unit_price_minor: 100,
            no_reward_application: false,
            pay_only_with_points: false,
        };
        assert!(t.matches(&line("A", None)));
        assert!(t.matches(&line("C", Some("lavazza"))));
        assert!(!t.matches(&line("B", Some("lavazza"))));
        assert!(!t.matches(&line("C", Some("illy"))));
    }

    mod engine_rules {
        use super::super::*;
        use crate::domain::engine::{
            CartLine, CustomerContext, EarnRate, RuleSet, SkipReason, evaluate,
            from_purchase_bonus, validate_rule,
        };
        use chrono::{DateTime, TimeZone, Utc};
        use std::collections::BTreeMap;

        fn coffee(brand: &str, qty: u32, price: i64) -> CartLine {
            CartLine {
                product_id: format!("{brand}-1kg"),
                group: None,
                brand: Some(brand.into()),
                quantity: qty,
                unit_price_minor: price,
                no_reward_application: false,
                pay_only_with_points: false,
            }
        }

        fn ctx(at: DateTime<Utc>) -> CustomerContext {
            CustomerContext {
                customer_id: Some(Uuid::from_u128(1)),
                segment_ids: vec![],
                level_id: None,
                vouchers: vec![],
                at,
                utc_offset_minutes: 60,
                business_unit: Some(Uuid::from_u128(77).to_string()),
                channel: Some("pos".into()),
                earn_rate: EarnRate::default(),
                usage: BTreeMap::new(),
            }
        }

        /// "Friday evening double points on Lavazza": 1 point per 1.00, ×2, Fridays 17..22
        /// local time, brand lavazza, the Prague shop at the cash desk, gold tier only.
        fn friday_double() -> PurchaseBonus {
            PurchaseBonus {
                id: Uuid::from_u128(5),
                display_name: "Friday evening double points on Lavazza".into(),
                points: 1,
                spend_amount_minor: 100,
                currency_code: "EUR".into(),
                multiplier_basis_points: 20_000,
                products: ProductScope {
                    brand_codes: vec!["lavazza".into()],
                    ..Default::default()
                },
                business_unit_ids: vec![Uuid::from_u128(77)],
                channels: vec![Channel::Pos],
                days_of_week: vec![5],
                hour_ranges: vec![HourRange { start: 17, end: 22 }],
                tier_ids: vec![Uuid::from_u128(9)],
                ..PurchaseBonus::default()
            }
        }

        /// Friday 2026-11-27 18:30 local (UTC+1).
        fn friday_evening() -> DateTime<Utc> {
            Utc.with_ymd_and_hms(2026, 11, 27, 17, 30, 0).unwrap()
        }

        #[test]
        fn friday_evening_double_points_on_a_brand_apply_then_and_only_there() {
            let rule = from_purchase_bonus(&friday_double());
            let mut v = Violations::new();
            validate_rule(&mut v, "purchase_bonus", &rule);
            assert!(v.is_empty(), "{:?}", v.into_vec());
            let set = RuleSet {
                rules: vec![rule],
                ..Default::default()
            };
            let cart = [coffee("lavazza", 2, 1250), coffee("illy", 1, 900)];
            let mut gold = ctx(friday_evening());
            gold.level_id = Some(Uuid::from_u128(9));

            // 25.00 of Lavazza → 25 steps × 1 point × 2; the Illy earns nothing.
            let e = evaluate(&cart, &gold, &set);
            assert_eq!(e.points, 50);
            assert_eq!(e.lines[0].points, 50);
            assert_eq!(e.lines[1].points, 0);

            let skipped = |c: &CustomerContext| {
                let e = evaluate(&cart, c, &set);
                assert_eq!(e.points, 0);
                e.not_applied[0].reason
            };
            // Saturday, same hour.
            let mut saturday = gold.clone();
            saturday.at = friday_evening() + chrono::Duration::days(1);
            assert_eq!(skipped(&saturday), SkipReason::OutsideSchedule);
            // Friday 22:00 local is past the window (end exclusive).
            let mut late = gold.clone();
            late.at = Utc.with_ymd_and_hms(2026, 11, 27, 21, 0, 0).unwrap();
            assert_eq!(skipped(&late), SkipReason::OutsideSchedule);
            let mut eshop = gold.clone();
            eshop.channel = Some("eshop".into());
            assert_eq!(skipped(&eshop), SkipReason::ChannelNotIncluded);
            let mut brno = gold.clone();
            brno.business_unit = Some(Uuid::from_u128(78).to_string());
            assert_eq!(skipped(&brno), SkipReason::BusinessUnitNotIncluded);
            assert_eq!(skipped(&ctx(friday_evening())), SkipReason::LevelNotMatched);
        }

        #[test]
        fn the_cap_limits_the_points_of_one_purchase() {
            let mut b = friday_double();
            b.max_points_per_purchase = 30;
            let set = RuleSet {
                rules: vec![from_purchase_bonus(&b)],
                ..Default::default()
            };
            let mut gold = ctx(friday_evening());
            gold.level_id = Some(Uuid::from_u128(9));
            let e = evaluate(&[coffee("lavazza", 4, 1000)], &gold, &set);
            assert_eq!(e.points, 30);
        }

        #[test]
        fn a_multiplier_that_does_not_divide_out_applies_after_counting_steps() {
            let b = PurchaseBonus {
                points: 1,
                spend_amount_minor: 100,
                multiplier_basis_points: 15_000,
                ..friday_double()
            };
            let rule = from_purchase_bonus(&b);
            let mut gold = ctx(friday_evening());
            gold.level_id = Some(Uuid::from_u128(9));
            let set = RuleSet {
                rules: vec![rule],
                ..Default::default()
            };
            // 10.00 × 1 point per 1.00 × 1.5 = 15.
            let e = evaluate(&[coffee("lavazza", 1, 1000)], &gold, &set);
            assert_eq!(e.points, 15);
            // 3.50: 3 full steps × 1 × 1.5 = 4.5 → 4 (the fraction of a step earns nothing).
            let e = evaluate(&[coffee("lavazza", 1, 350)], &gold, &set);
            assert_eq!(e.points, 4);
        }

        #[test]
        fn steps_are_counted_on_the_in_scope_total_not_per_line() {
            let b = PurchaseBonus {
                id: Uuid::from_u128(6),
                display_name: "A point per 5.00".into(),
                points: 1,
                spend_amount_minor: 500,
                currency_code: "EUR".into(),
                multiplier_basis_points: 10_000,
                products: ProductScope {
                    brand_codes: vec!["lavazza".into()],
                    ..Default::default()
                },
                ..PurchaseBonus::default()
            };
            let set = RuleSet {
                rules: vec![from_purchase_bonus(&b)],
                ..Default::default()
            };
            let mut c = ctx(friday_evening());
            c.channel = None;
            c.business_unit = None;
            // Three Lavazza lines at 1.99 (5.97 together) reach one step; none does alone.
            // The Illy is out of scope and does not count towards the step.
            let cart = [
                coffee("lavazza", 1, 199),
                coffee("lavazza", 1, 199),
                coffee("lavazza", 1, 199),
                coffee("illy", 1, 900),
            ];
            let e = evaluate(&cart, &c, &set);
            assert_eq!(e.points, 1);
            assert_eq!(e.lines[3].points, 0);
            // Two lines at 1.99: 3.98 is below the step.
            let e = evaluate(&cart[..2], &c, &set);
            assert_eq!(e.points, 0);
            assert_eq!(e.not_applied[0].reason, SkipReason::ThresholdNotReached);
        }

        #[test]
        fn an_unrestricted_bonus_earns_on_the_whole_cart_every_day() {
            let b = PurchaseBonus {
                id: Uuid::from_u128(6),
                display_name: "Everyday".into(),
                points: 2,
                spend_amount_minor: 500,
                currency_code: "EUR".into(),
                multiplier_basis_points: 10_000,
                ..PurchaseBonus::default()
            };
            let set = RuleSet {
                rules: vec![from_purchase_bonus(&b)],
                ..Default::default()
            };
            let mut c = ctx(friday_evening() + chrono::Duration::days(1));
            c.channel = None;
            c.business_unit = None;
            // 25.00 + 9.00 = 34.00: 6 full steps of 5.00 × 2 points = 12, shared by the lines
            // in proportion to their amounts (25/34 and 9/34 of 12: 8 + 3, the remainder of 1 to
            // the first line).
            let e = evaluate(
                &[coffee("lavazza", 2, 1250), coffee("illy", 1, 900)],
                &c,
                &set,
            );
            assert_eq!(e.points, 12);
            assert_eq!(e.lines[0].points, 9);
            assert_eq!(e.lines[1].points, 3);
        }
    }

    #[test]
    fn uuids_are_parsed_once_and_bad_ones_named() {
        let mut v = Violations::new();
        let id = Uuid::now_v7().to_string();
        let ids = parse_uuids(&mut v, "x", "tier", &[id.clone(), id, "nope".into()]);
        assert_eq!(ids.len(), 1);
        assert_eq!(fields(v), vec!["x[2]"]);
    }
}

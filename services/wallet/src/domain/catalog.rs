//! The partner's catalogue of what wallets count: points groups and points types, the checks
//! of their fields (every bad field reported at once) and the rules about the default type.
use chrono::{DateTime, Utc};
use loyalty_platform::{ApiError, Violations};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    MAX_AMOUNT, Unit,
    rules::{DEFAULT_RESERVATION_TTL_SECONDS, ExpiryRule, Rounding, TypeRules},
};

pub const MAX_CODE_CHARS: usize = 64;
pub const MAX_DISPLAY_NAME_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
pub const MAX_VALIDITY_DAYS: i32 = 36_500;
pub const MAX_VALIDITY_MONTHS: i32 = 1_200;
pub const MAX_PENDING_DAYS: i32 = 365;
pub const MAX_OVERDRAFT_LIMIT: i64 = MAX_AMOUNT;
pub const MAX_RESERVATION_TTL_SECONDS: i32 = 86_400;
/// The shortest month: END_OF_* rules keep a lot at least this many days per validity month.
const MIN_MONTH_DAYS: i32 = 28;

/// Fields UpdatePointsGroup may change.
pub const GROUP_UPDATABLE: &[&str] = &["display_name", "description"];
/// Fields fixed at creation: wallets, postings and integrations depend on them.
pub const GROUP_IMMUTABLE: &[&str] = &["code"];
/// Fields UpdatePointsType may change.
pub const TYPE_UPDATABLE: &[&str] = &[
    "display_name",
    "description",
    "points_group_id",
    "expiry_rule",
    "validity_days",
    "validity_months",
    "pending_days",
    "spendable",
    "default",
    "active",
    "rounding",
    "overdraft_limit",
    "reservation_ttl_seconds",
];
/// Fields fixed at creation: amounts already posted are in this unit and currency.
pub const TYPE_IMMUTABLE: &[&str] = &["code", "unit", "currency_code"];

/// Checks a code: 1..64 characters of `[a-z0-9_]`, and not a UUID (32 hex digits), since
/// lookups take a UUID or a code.
pub fn check_code(v: &mut Violations, field: &str, code: &str) {
    let ok = (1..=MAX_CODE_CHARS).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        v.add(
            field,
            format!("must be 1..{MAX_CODE_CHARS} characters of a-z, 0-9 and _"),
        );
    } else if Uuid::try_parse(code).is_ok() {
        v.add(field, "must not be a UUID");
    }
}

fn check_names(v: &mut Violations, display_name: &str, description: &str) {
    let n = display_name.trim().chars().count();
    if n == 0 || display_name.chars().count() > MAX_DISPLAY_NAME_CHARS {
        v.add(
            "display_name",
            format!("must be 1..{MAX_DISPLAY_NAME_CHARS} characters"),
        );
    }
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        v.add(
            "description",
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        );
    }
}

/// Moves the violations found into `v` under `prefix`; true when there were none.
fn report(v: &mut Violations, prefix: &str, found: Violations) -> bool {
    let ok = found.is_empty();
    v.extend_prefixed(prefix, found.into_vec());
    ok
}

/// True for an upper-case three-letter code such as EUR (the shape of ISO 4217).
pub fn is_currency_code(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
}

/// A points group as a request states it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupSpec {
    pub code: String,
    pub display_name: String,
    pub description: String,
}

impl GroupSpec {
    /// Checks every field, reporting under `points_group.<field>`; returns the group's
    /// fields as they will be stored.
    pub fn validate(&self, v: &mut Violations) -> Option<GroupSpec> {
        let mut found = Violations::new();
        check_code(&mut found, "code", &self.code);
        check_names(&mut found, &self.display_name, &self.description);
        report(v, "points_group", found).then(|| GroupSpec {
            display_name: self.display_name.trim().to_owned(),
            ..self.clone()
        })
    }
}

/// A stored points group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsGroup {
    pub id: Uuid,
    pub code: String,
    pub display_name: String,
    pub description: String,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl PointsGroup {
    pub fn etag(&self) -> String {
        self.revision.to_string()
    }

    pub fn spec(&self) -> GroupSpec {
        GroupSpec {
            code: self.code.clone(),
            display_name: self.display_name.clone(),
            description: self.description.clone(),
        }
    }
}

/// A points type as a request states it. Enums are their stored names (`Unit::as_str`,
/// `ExpiryRule::to_parts`, `Rounding::as_str`); empty = UNSPECIFIED.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeSpec {
    pub code: String,
    pub display_name: String,
    pub description: String,
    pub points_group_id: Option<Uuid>,
    pub unit: String,
    pub currency_code: String,
    pub expiry_rule: String,
    pub validity_days: i32,
    pub validity_months: i32,
    pub pending_days: i32,
    pub rounding: String,
    pub spendable: bool,
    pub overdraft_limit: i64,
    pub reservation_ttl_seconds: i32,
    pub is_default: bool,
    pub active: bool,
}

/// A valid points type's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeDefinition {
    pub code: String,
    pub display_name: String,
    pub description: String,
    pub points_group_id: Option<Uuid>,
    pub unit: Unit,
    /// ISO 4217 code of a CREDIT type; empty for POINTS.
    pub currency_code: String,
    pub rules: TypeRules,
    pub is_default: bool,
    pub active: bool,
}

impl TypeSpec {
    /// Checks every field, reporting under `points_type.<field>`. UNSPECIFIED unit means
    /// POINTS and UNSPECIFIED rounding DOWN; a reservation TTL of 0 means 900 seconds.
    pub fn validate(&self, out: &mut Violations) -> Option<TypeDefinition> {
        let mut v = Violations::new();
        check_code(&mut v, "code", &self.code);
        check_names(&mut v, &self.display_name, &self.description);

        let unit = match self.unit.as_str() {
            "" => Some(Unit::Points),
            s => Unit::parse_str(s),
        };
        match unit {
            None => v.add("unit", "is not a known PointsUnit"),
            Some(Unit::Credit) if !is_currency_code(&self.currency_code) => v.add(
                "currency_code",
                "a CREDIT type needs an upper-case ISO 4217 currency code such as EUR",
            ),
            Some(Unit::Points) if !self.currency_code.is_empty() => {
                v.add("currency_code", "must be empty for a POINTS type")
            }
            Some(_) => {}
        }

        let expiry = self.expiry(&mut v);
        if !(0..=MAX_PENDING_DAYS).contains(&self.pending_days) {
            v.add("pending_days", format!("must be 0..{MAX_PENDING_DAYS}"));
        } else if let Some(rule) = expiry
            && !outlives_pending(rule, self.pending_days)
        {
            v.add(
                "pending_days",
                "must be shorter than the validity (less than validity_days for ROLLING_DAYS, \
                 at most 28 days per validity month for END_OF_*), or points would expire \
                 before they are released",
            );
        }
        let rounding = match self.rounding.as_str() {
            "" => Some(Rounding::Down),
            s => Rounding::parse_str(s),
        };
        if rounding.is_none() {
            v.add("rounding", "is not a known Rounding");
        }
        if !(0..=MAX_OVERDRAFT_LIMIT).contains(&self.overdraft_limit) {
            v.add(
                "overdraft_limit",
                format!("must be 0..{MAX_OVERDRAFT_LIMIT}"),
            );
        }
        if !(0..=MAX_RESERVATION_TTL_SECONDS).contains(&self.reservation_ttl_seconds) {
            v.add(
                "reservation_ttl_seconds",
                format!("must be 0..{MAX_RESERVATION_TTL_SECONDS} (0 = {DEFAULT_RESERVATION_TTL_SECONDS})"),
            );
        }
        if !report(out, "points_type", v) {
            return None;
        }
        Some(TypeDefinition {
            code: self.code.clone(),
            display_name: self.display_name.trim().to_owned(),
            description: self.description.clone(),
            points_group_id: self.points_group_id,
            unit: unit?,
            currency_code: self.currency_code.clone(),
            rules: TypeRules {
                expiry: expiry?,
                pending_days: self.pending_days,
                rounding: rounding?,
                spendable: self.spendable,
                overdraft_limit: self.overdraft_limit,
                reservation_ttl_seconds: if self.reservation_ttl_seconds == 0 {
                    DEFAULT_RESERVATION_TTL_SECONDS
                } else {
                    self.reservation_ttl_seconds
                },
            },
            is_default: self.is_default,
            active: self.active,
        })
    }

    /// The expiry rule and its one parameter; the parameter the rule does not use must be 0.
    fn expiry(&self, out: &mut Violations) -> Option<ExpiryRule> {
        if self.expiry_rule.is_empty() {
            out.add("expiry_rule", "is required");
            return None;
        }
        let Some(rule) =
            ExpiryRule::from_parts(&self.expiry_rule, self.validity_days, self.validity_months)
        else {
            out.add("expiry_rule", "is not a known ExpiryRule");
            return None;
        };
        let mut v = Violations::new();
        match rule {
            ExpiryRule::Never => {
                if self.validity_days != 0 {
                    v.add(
                        "validity_days",
                        "must be 0 unless expiry_rule is ROLLING_DAYS",
                    );
                }
                if self.validity_months != 0 {
                    v.add("validity_months", "must be 0 when points never expire");
                }
            }
            ExpiryRule::RollingDays(days) => {
                if !(1..=MAX_VALIDITY_DAYS).contains(&days) {
                    v.add(
                        "validity_days",
                        format!("must be 1..{MAX_VALIDITY_DAYS} for ROLLING_DAYS"),
                    );
                }
                if self.validity_months != 0 {
                    v.add("validity_months", "must be 0 for ROLLING_DAYS");
                }
            }
            ExpiryRule::EndOfMonth(months)
            | ExpiryRule::EndOfQuarter(months)
            | ExpiryRule::EndOfYear(months) => {
                if self.validity_days != 0 {
                    v.add(
                        "validity_days",
                        "must be 0 unless expiry_rule is ROLLING_DAYS",
                    );
                }
                if !(0..=MAX_VALIDITY_MONTHS).contains(&months) {
                    v.add(
                        "validity_months",
                        format!("must be 0..{MAX_VALIDITY_MONTHS}"),
                    );
                }
            }
        }
        let ok = v.is_empty();
        for found in v.into_vec() {
            out.add(found.field, found.description);
        }
        ok.then_some(rule)
    }
}

/// Whether every lot of a type outlives its pending period, whatever the award time: an
/// END_OF_* lot awarded at the last instant of a period lives only its validity months.
fn outlives_pending(rule: ExpiryRule, pending_days: i32) -> bool {
    if pending_days == 0 {
        return true;
    }
    match rule {
        ExpiryRule::Never => true,
        ExpiryRule::RollingDays(days) => days > pending_days,
        ExpiryRule::EndOfMonth(m) | ExpiryRule::EndOfQuarter(m) | ExpiryRule::EndOfYear(m) => {
            pending_days <= m.saturating_mul(MIN_MONTH_DAYS)
        }
    }
}

impl TypeDefinition {
    /// The fields as a request would state them, to apply an update's masked fields onto.
    pub fn spec(&self) -> TypeSpec {
        let (rule, days, months) = self.rules.expiry.to_parts();
        TypeSpec {
            code: self.code.clone(),
            display_name: self.display_name.clone(),
            description: self.description.clone(),
            points_group_id: self.points_group_id,
            unit: self.unit.as_str().to_owned(),
            currency_code: self.currency_code.clone(),
            expiry_rule: rule.to_owned(),
            validity_days: days,
            validity_months: months,
            pending_days: self.rules.pending_days,
            rounding: self.rules.rounding.as_str().to_owned(),
            spendable: self.rules.spendable,
            overdraft_limit: self.rules.overdraft_limit,
            reservation_ttl_seconds: self.rules.reservation_ttl_seconds,
            is_default: self.is_default,
            active: self.active,
        }
    }
}

/// A stored points type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsType {
    pub id: Uuid,
    pub definition: TypeDefinition,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl PointsType {
    pub fn etag(&self) -> String {
        self.revision.to_string()
    }
}

fn default_refusal(message: &str) -> ApiError {
    ApiError::precondition("DEFAULT_POINTS_TYPE", message)
}

/// Whether a new type becomes the partner's default: when asked to, or when the partner has
/// none yet (its first type).
pub fn becomes_default(requested: bool, partner_has_default: bool) -> bool {
    requested || !partner_has_default
}

/// The default type stays active and default until another type takes over, so calls that
/// name no type always find one; an inactive type cannot become the default.
pub fn check_update(was_default: bool, next: &TypeDefinition) -> Result<(), ApiError> {
    if was_default && !next.active {
        return Err(default_refusal(
            "the partner's default points type cannot be deactivated; make another type the \
             default first",
        ));
    }
    if was_default && !next.is_default {
        return Err(default_refusal(
            "the partner needs a default points type; make another type the default instead",
        ));
    }
    if next.is_default && !next.active {
        return Err(default_refusal(
            "an inactive points type cannot be the default",
        ));
    }
    Ok(())
}

/// A type can be deleted only while no posting names it, and never while it is the default.
pub fn check_delete(ty: &PointsType, has_postings: bool) -> Result<(), ApiError> {
    if ty.definition.is_default {
        return Err(default_refusal(
            "the partner's default points type cannot be deleted; make another type the \
             default first",
        ));
    }
    if has_postings {
        return Err(ApiError::precondition(
            "POINTS_TYPE_IN_USE",
            format!(
                "points type {:?} has postings; deactivate it instead",
                ty.definition.code
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: Violations) -> Vec<String> {
        v.into_vec().into_iter().map(|f| f.field).collect()
    }

    fn spec() -> TypeSpec {
        TypeSpec {
            code: "bonus_points".into(),
            display_name: "Bonus points".into(),
            expiry_rule: "rolling_days".into(),
            validity_days: 365,
            spendable: true,
            active: true,
            ..TypeSpec::default()
        }
    }

    fn check(s: &TypeSpec) -> (Option<TypeDefinition>, Vec<String>) {
        let mut v = Violations::new();
        let d = s.validate(&mut v);
        (d, fields(v))
    }

    #[test]
    fn codes_are_lower_case_letters_digits_and_underscores() {
        for ok in ["a", "gold_2026", &"x".repeat(64)] {
            let mut v = Violations::new();
            check_code(&mut v, "code", ok);
            assert!(v.is_empty(), "{ok:?}");
        }
        for bad in [
            "",
            "Gold",
            "gold-points",
            "gold points",
            "zlatý",
            &"x".repeat(65),
        ] {
            let mut v = Violations::new();
            check_code(&mut v, "code", bad);
            assert_eq!(fields(v), ["code"], "{bad:?}");
        }
    }

    #[test]
    fn unspecified_unit_and_rounding_mean_points_and_down_and_ttl_0_means_900() {
        let (d, bad) = check(&spec());
        assert!(bad.is_empty(), "{bad:?}");
        let d = d.expect("valid");
        assert_eq!(d.unit, Unit::Points);
        assert_eq!(d.rules.rounding, Rounding::Down);
        assert_eq!(d.rules.expiry, ExpiryRule::RollingDays(365));
        assert_eq!(d.rules.reservation_ttl_seconds, 900);
        assert_eq!(d.display_name, "Bonus points");
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let s = TypeSpec {
            code: "Bad Code".into(),
            display_name: "  ".into(),
            description: "d".repeat(2001),
            unit: "credit".into(),
            currency_code: "eur".into(),
            expiry_rule: "rolling_days".into(),
            validity_days: 0,
            validity_months: 2,
            pending_days: 366,
            rounding: "sideways".into(),
            overdraft_limit: -1,
            reservation_ttl_seconds: 86_401,
            ..TypeSpec::default()
        };
        let (d, bad) = check(&s);
        assert!(d.is_none());
        assert_eq!(
            bad,
            [
                "points_type.code",
                "points_type.display_name",
                "points_type.description",
                "points_type.currency_code",
                "points_type.validity_days",
                "points_type.validity_months",
                "points_type.pending_days",
                "points_type.rounding",
                "points_type.overdraft_limit",
                "points_type.reservation_ttl_seconds",
            ]
        );
    }

    #[test]
    fn credit_needs_an_iso_currency_and_points_must_have_none() {
        let credit = |c: &str| TypeSpec {
            unit: "credit".into(),
            currency_code: c.into(),
            ..spec()
        };
        assert_eq!(check(&credit("EUR")).1, Vec::<String>::new());
        assert_eq!(check(&credit("EUR")).0.unwrap().unit, Unit::Credit);
        for bad in ["", "EU", "EURO", "eur", "E1R"] {
            assert_eq!(
                check(&credit(bad)).1,
                ["points_type.currency_code"],
                "{bad:?}"
            );
        }
        let points = TypeSpec {
            currency_code: "EUR".into(),
            ..spec()
        };
        assert_eq!(check(&points).1, ["points_type.currency_code"]);
        let unknown = TypeSpec {
            unit: "7".into(),
            ..spec()
        };
        assert_eq!(check(&unknown).1, ["points_type.unit"]);
    }

    #[test]
    fn expiry_rule_is_required_and_takes_only_its_own_parameter() {
        let rule = |r: &str, days: i32, months: i32| TypeSpec {
            expiry_rule: r.into(),
            validity_days: days,
            validity_months: months,
            ..spec()
        };
        assert_eq!(check(&rule("", 0, 0)).1, ["points_type.expiry_rule"]);
        assert_eq!(check(&rule("9", 0, 0)).1, ["points_type.expiry_rule"]);
        assert_eq!(
            check(&rule("never", 0, 0)).0.unwrap().rules.expiry,
            ExpiryRule::Never
        );
        assert_eq!(
            check(&rule("never", 3, 1)).1,
            ["points_type.validity_days", "points_type.validity_months"]
        );
        assert_eq!(
            check(&rule("rolling_days", 0, 0)).1,
            ["points_type.validity_days"]
        );
        assert_eq!(
            check(&rule("rolling_days", 36_501, 0)).1,
            ["points_type.validity_days"]
        );
        assert_eq!(
            check(&rule("rolling_days", 36_500, 0))
                .0
                .unwrap()
                .rules
                .expiry,
            ExpiryRule::RollingDays(36_500)
        );
        for r in ["end_of_month", "end_of_quarter", "end_of_year"] {
            assert!(check(&rule(r, 0, 0)).1.is_empty(), "{r}");
            assert!(check(&rule(r, 0, 1200)).1.is_empty(), "{r}");
            assert_eq!(check(&rule(r, 0, 1201)).1, ["points_type.validity_months"]);
            assert_eq!(check(&rule(r, 0, -1)).1, ["points_type.validity_months"]);
            assert_eq!(check(&rule(r, 30, 0)).1, ["points_type.validity_days"]);
        }
        assert_eq!(
            check(&rule("end_of_quarter", 0, 3)).0.unwrap().rules.expiry,
            ExpiryRule::EndOfQuarter(3)
        );
    }

    #[test]
    fn ranges_accept_their_bounds() {
        let s = TypeSpec {
            pending_days: 0,
            overdraft_limit: MAX_AMOUNT,
            reservation_ttl_seconds: 86_400,
            ..spec()
        };
        let d = check(&s).0.expect("valid");
        assert_eq!(d.rules.overdraft_limit, MAX_AMOUNT);
        assert_eq!(d.rules.reservation_ttl_seconds, 86_400);
        let never = TypeSpec {
            expiry_rule: "never".into(),
            validity_days: 0,
            pending_days: 365,
            ..spec()
        };
        assert!(check(&never).1.is_empty());
    }

    #[test]
    fn points_must_not_expire_before_their_pending_period_ends() {
        let with = |r: &str, days: i32, months: i32, pending: i32| TypeSpec {
            expiry_rule: r.into(),
            validity_days: days,
            validity_months: months,
            pending_days: pending,
            ..spec()
        };
        assert!(check(&with("rolling_days", 31, 0, 30)).1.is_empty());
        assert_eq!(
            check(&with("rolling_days", 30, 0, 30)).1,
            ["points_type.pending_days"]
        );
        // Awarded at the last instant of a month, END_OF_MONTH(0) expires at once.
        assert_eq!(
            check(&with("end_of_month", 0, 0, 1)).1,
            ["points_type.pending_days"]
        );
        assert!(check(&with("end_of_month", 0, 1, 28)).1.is_empty());
        assert_eq!(
            check(&with("end_of_year", 0, 1, 29)).1,
            ["points_type.pending_days"]
        );
        assert!(check(&with("end_of_quarter", 0, 12, 0)).1.is_empty());
    }

    #[test]
    fn a_definition_round_trips_through_its_spec() {
        let d = check(&TypeSpec {
            unit: "credit".into(),
            currency_code: "CZK".into(),
            expiry_rule: "end_of_year".into(),
            validity_days: 0,
            validity_months: 12,
            rounding: "half_up".into(),
            overdraft_limit: 500,
            reservation_ttl_seconds: 60,
            points_group_id: Some(Uuid::now_v7()),
            ..spec()
        })
        .0
        .expect("valid");
        assert_eq!(check(&d.spec()).0, Some(d));
    }

    #[test]
    fn groups_report_every_bad_field() {
        let mut v = Violations::new();
        let bad = GroupSpec {
            code: "".into(),
            display_name: "x".repeat(201),
            description: "y".repeat(2001),
        };
        assert!(bad.validate(&mut v).is_none());
        assert_eq!(
            fields(v),
            [
                "points_group.code",
                "points_group.display_name",
                "points_group.description"
            ]
        );
        let mut v = Violations::new();
        let ok = GroupSpec {
            code: "fuel".into(),
            display_name: " Fuel ".into(),
            description: String::new(),
        }
        .validate(&mut v)
        .expect("valid");
        assert_eq!(ok.display_name, "Fuel");
    }

    fn definition(is_default: bool, active: bool) -> TypeDefinition {
        TypeDefinition {
            is_default,
            active,
            ..check(&spec()).0.expect("valid")
        }
    }

    fn reason(r: Result<(), ApiError>) -> &'static str {
        match r {
            Ok(()) => "ok",
            Err(ApiError::FailedPrecondition { reason, .. }) => reason,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn the_default_type_stays_active_and_default_until_another_takes_over() {
        assert!(becomes_default(false, false));
        assert!(becomes_default(true, true));
        assert!(!becomes_default(false, true));
        assert_eq!(reason(check_update(true, &definition(true, true))), "ok");
        assert_eq!(
            reason(check_update(true, &definition(true, false))),
            "DEFAULT_POINTS_TYPE"
        );
        assert_eq!(
            reason(check_update(true, &definition(false, true))),
            "DEFAULT_POINTS_TYPE"
        );
        assert_eq!(
            reason(check_update(false, &definition(true, false))),
            "DEFAULT_POINTS_TYPE"
        );
        assert_eq!(reason(check_update(false, &definition(true, true))), "ok");
        assert_eq!(reason(check_update(false, &definition(false, false))), "ok");
    }

    #[test]
    fn only_an_unused_non_default_type_can_be_deleted() {
        let ty = |is_default| PointsType {
            id: Uuid::now_v7(),
            definition: definition(is_default, true),
            revision: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        };
        assert_eq!(reason(check_delete(&ty(false), false)), "ok");
        assert_eq!(reason(check_delete(&ty(false), true)), "POINTS_TYPE_IN_USE");
        assert_eq!(
            reason(check_delete(&ty(true), false)),
            "DEFAULT_POINTS_TYPE"
        );
    }
}

//! Card rules: a partner's card number format (characters, length, prefixes, check digit)
//! and replacing a card (the old one becomes LOST or REPLACED, never resolving again).
use chrono::{DateTime, Utc};
use loyalty_platform::{ApiError, Violations};
use serde::{Deserialize, Serialize};

use super::{Identifier, IdentifierKind, IdentifierState, IdentifierValue};

/// Shortest and longest card numbers a format may ask for.
pub const MIN_CARD_LENGTH: u32 = 4;
pub const MAX_CARD_LENGTH: u32 = 64;
/// The most prefixes a format may list.
pub const MAX_PREFIXES: usize = 20;
/// The longest reason a replacement may carry.
pub const MAX_REASON: usize = 200;

/// A check digit scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Checksum {
    None,
    /// EAN-13 / GTIN: weights 3 and 1 from the digit next to the check digit leftwards.
    Ean13,
    /// Luhn (mod 10), as on payment cards.
    Luhn,
}

impl Checksum {
    pub fn as_str(self) -> &'static str {
        match self {
            Checksum::None => "none",
            Checksum::Ean13 => "ean13",
            Checksum::Luhn => "luhn",
        }
    }

    pub fn parse_str(s: &str) -> Option<Checksum> {
        Some(match s {
            "none" => Checksum::None,
            "ean13" => Checksum::Ean13,
            "luhn" => Checksum::Luhn,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Checksum::None => "no",
            Checksum::Ean13 => "EAN-13",
            Checksum::Luhn => "Luhn",
        }
    }
}

/// The digits of `s`, or `None` if it holds anything else.
fn digits(s: &str) -> Option<Vec<u32>> {
    s.chars().map(|c| c.to_digit(10)).collect()
}

/// The GTIN (EAN-13, EAN-8, UPC) check digit of `payload` (the number without its check
/// digit); `None` unless `payload` is digits only.
pub fn gtin_check_digit(payload: &str) -> Option<u32> {
    let sum: u32 = digits(payload)?
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| if i % 2 == 0 { d * 3 } else { *d })
        .sum();
    Some((10 - sum % 10) % 10)
}

/// The Luhn check digit of `payload`; `None` unless `payload` is digits only.
pub fn luhn_check_digit(payload: &str) -> Option<u32> {
    let sum: u32 = digits(payload)?
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 0 {
                let twice = d * 2;
                if twice > 9 { twice - 9 } else { twice }
            } else {
                *d
            }
        })
        .sum();
    Some((10 - sum % 10) % 10)
}

/// Whether the last digit of `number` is its check digit under `scheme`.
fn check_digit_ok(scheme: Checksum, number: &str) -> bool {
    let Some((payload, last)) = number
        .char_indices()
        .last()
        .map(|(i, c)| (&number[..i], c.to_digit(10)))
    else {
        return false;
    };
    if payload.is_empty() {
        return false;
    }
    let expected = match scheme {
        Checksum::None => return true,
        Checksum::Ean13 => gtin_check_digit(payload),
        Checksum::Luhn => luhn_check_digit(payload),
    };
    expected.is_some() && expected == last
}

/// Why a card number does not fit a format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardNumberError {
    Empty,
    NotDigits,
    NotAlphanumeric,
    TooShort,
    TooLong,
    Prefix,
    CheckDigit,
}

impl CardNumberError {
    /// A short, fixed description (for callers that need a `&'static str`).
    pub fn as_str(self) -> &'static str {
        match self {
            CardNumberError::Empty => "is required",
            CardNumberError::NotDigits => "must be digits only",
            CardNumberError::NotAlphanumeric => "must be letters and digits only",
            CardNumberError::TooShort => "is too short for the card number format",
            CardNumberError::TooLong => "is too long for the card number format",
            CardNumberError::Prefix => {
                "does not start with one of the card number format's prefixes"
            }
            CardNumberError::CheckDigit => "has a wrong check digit",
        }
    }
}

/// A partner's card number format. Built only by [`CardNumberFormat::parse`], so every
/// instance is consistent (lengths in range, EAN-13 means 13 digits, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardNumberFormat {
    digits_only: bool,
    min_length: u32,
    max_length: u32,
    prefixes: Vec<String>,
    checksum: Checksum,
    updated_at: DateTime<Utc>,
}

/// A format as a caller sends it: zero lengths mean the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardNumberFormatDraft {
    pub digits_only: bool,
    pub min_length: i32,
    pub max_length: i32,
    pub prefixes: Vec<String>,
    /// `None` = no check digit.
    pub checksum: Option<Checksum>,
}

/// Spaces and dashes removed, letters upper-cased: how card numbers are compared and stored.
fn compact(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect::<String>()
        .to_ascii_uppercase()
}

impl CardNumberFormat {
    /// Checks a draft, reporting every bad field under `prefix` (e.g. `card_number_format`).
    pub fn parse(
        draft: CardNumberFormatDraft,
        updated_at: DateTime<Utc>,
        prefix: &str,
    ) -> Result<CardNumberFormat, ApiError> {
        let f = |name: &str| format!("{prefix}.{name}");
        let mut v = Violations::new();
        let checksum = draft.checksum.unwrap_or(Checksum::None);
        let default_length = |n: i32, default: u32| -> i64 {
            if n == 0 {
                i64::from(default)
            } else {
                i64::from(n)
            }
        };
        // EAN-13 numbers are 13 digits; unset lengths follow.
        let (min_default, max_default) = match checksum {
            Checksum::Ean13 => (13, 13),
            _ => (MIN_CARD_LENGTH, MAX_CARD_LENGTH),
        };
        let min = default_length(draft.min_length, min_default);
        let max = default_length(draft.max_length, max_default);
        let range = i64::from(MIN_CARD_LENGTH)..=i64::from(MAX_CARD_LENGTH);
        if !range.contains(&min) {
            v.add(
                f("min_length"),
                format!("must be {MIN_CARD_LENGTH}..{MAX_CARD_LENGTH} (0 = {min_default})"),
            );
        }
        if !range.contains(&max) {
            v.add(
                f("max_length"),
                format!("must be {MIN_CARD_LENGTH}..{MAX_CARD_LENGTH} (0 = {max_default})"),
            );
        } else if max < min {
            v.add(f("max_length"), "must not be less than min_length");
        }
        match checksum {
            Checksum::None => {}
            Checksum::Ean13 => {
                if !draft.digits_only {
                    v.add(f("digits_only"), "must be true for EAN-13 card numbers");
                }
                if min != 13 || max != 13 {
                    v.add(
                        f("max_length"),
                        "EAN-13 card numbers are 13 digits: min_length and max_length must be 13",
                    );
                }
            }
            Checksum::Luhn => {
                if !draft.digits_only {
                    v.add(f("digits_only"), "must be true for Luhn card numbers");
                }
            }
        }
        if draft.prefixes.len() > MAX_PREFIXES {
            v.add(f("prefixes"), format!("at most {MAX_PREFIXES} prefixes"));
        }
        let mut prefixes: Vec<String> = Vec::new();
        for (i, raw) in draft.prefixes.iter().enumerate() {
            let p = compact(raw);
            let field = format!("{prefix}.prefixes[{i}]");
            if p.is_empty() {
                v.add(field, "must not be empty");
            } else if draft.digits_only && !p.chars().all(|c| c.is_ascii_digit()) {
                v.add(field, "must be digits only, as the card numbers");
            } else if !p.chars().all(|c| c.is_ascii_alphanumeric()) {
                v.add(field, "must be letters and digits only");
            } else if p.len() as i64 > max {
                v.add(field, "must not be longer than max_length");
            } else if !prefixes.contains(&p) {
                prefixes.push(p);
            }
        }
        v.finish(|| CardNumberFormat {
            digits_only: draft.digits_only,
            // In range: checked above.
            min_length: u32::try_from(min).unwrap_or(MIN_CARD_LENGTH),
            max_length: u32::try_from(max).unwrap_or(MAX_CARD_LENGTH),
            prefixes,
            checksum,
            updated_at,
        })
    }

    pub fn digits_only(&self) -> bool {
        self.digits_only
    }

    pub fn min_length(&self) -> u32 {
        self.min_length
    }

    pub fn max_length(&self) -> u32 {
        self.max_length
    }

    pub fn prefixes(&self) -> &[String] {
        &self.prefixes
    }

    pub fn checksum(&self) -> Checksum {
        self.checksum
    }

    pub fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }

    /// Checks a card number against the format; returns it normalised (spaces and dashes
    /// removed, letters upper-cased) or what is wrong with it.
    pub fn check(&self, raw: &str) -> Result<String, &'static str> {
        self.verify(raw).map_err(CardNumberError::as_str)
    }

    /// Like [`check`](Self::check), with the error as a value to explain.
    pub fn verify(&self, raw: &str) -> Result<String, CardNumberError> {
        let number = compact(raw);
        if number.is_empty() {
            return Err(CardNumberError::Empty);
        }
        if self.digits_only {
            if !number.chars().all(|c| c.is_ascii_digit()) {
                return Err(CardNumberError::NotDigits);
            }
        } else if !number.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(CardNumberError::NotAlphanumeric);
        }
        let len = number.len() as u32;
        if len < self.min_length {
            return Err(CardNumberError::TooShort);
        }
        if len > self.max_length {
            return Err(CardNumberError::TooLong);
        }
        if !self.prefixes.is_empty() && !self.prefixes.iter().any(|p| number.starts_with(p)) {
            return Err(CardNumberError::Prefix);
        }
        if !check_digit_ok(self.checksum, &number) {
            return Err(CardNumberError::CheckDigit);
        }
        Ok(number)
    }

    /// What is wrong, with this format's figures, for an INVALID_ARGUMENT description.
    pub fn explain(&self, error: CardNumberError, raw: &str) -> String {
        let len = compact(raw).len();
        let (min, max) = (self.min_length, self.max_length);
        let length = if min == max {
            format!("{min}")
        } else {
            format!("{min}..{max}")
        };
        match error {
            CardNumberError::TooShort | CardNumberError::TooLong => {
                format!("must be {length} characters long, not {len}")
            }
            CardNumberError::Prefix => {
                format!("must start with one of {}", self.prefixes.join(", "))
            }
            CardNumberError::CheckDigit => {
                format!("has a wrong {} check digit", self.checksum.name())
            }
            e => e.as_str().to_owned(),
        }
    }

    /// Applies the format to an identifier: a CARD is checked and normalised, other kinds
    /// pass unchanged. The error is the description for the `value` field.
    pub fn apply(&self, value: IdentifierValue) -> Result<IdentifierValue, String> {
        if value.kind != IdentifierKind::Card {
            return Ok(value);
        }
        match self.verify(&value.value) {
            Ok(number) => Ok(IdentifierValue {
                kind: IdentifierKind::Card,
                value: number,
            }),
            Err(e) => Err(self.explain(e, &value.value)),
        }
    }
}

/// Applies a partner's format, if it has one, to an identifier (see
/// [`CardNumberFormat::apply`]); without a format identifiers are taken as parsed.
pub fn apply_card_format(
    format: Option<&CardNumberFormat>,
    value: IdentifierValue,
) -> Result<IdentifierValue, String> {
    match format {
        Some(f) => f.apply(value),
        None => Ok(value),
    }
}

/// What becomes of a replaced card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OldCardState {
    Lost,
    Replaced,
}

/// The outcome of replacing a card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardReplacement {
    pub old_card: Identifier,
    pub new_card: Identifier,
}

impl Identifier {
    /// The card in its state after being replaced, or why it cannot be replaced (an
    /// `ErrorInfo` reason).
    pub fn retire(
        &self,
        to: OldCardState,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Identifier, &'static str> {
        if self.value.kind != IdentifierKind::Card {
            return Err("IDENTIFIER_NOT_A_CARD");
        }
        match self.state {
            IdentifierState::Removed => return Err("IDENTIFIER_REMOVED"),
            IdentifierState::Lost => return Err("IDENTIFIER_LOST"),
            IdentifierState::Replaced => return Err("IDENTIFIER_REPLACED"),
            IdentifierState::Active | IdentifierState::Blocked => {}
        }
        let mut next = self.clone();
        next.state = match to {
            OldCardState::Lost => IdentifierState::Lost,
            OldCardState::Replaced => IdentifierState::Replaced,
        };
        next.block_reason = reason.trim().to_owned();
        next.updated_at = Some(now);
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;
    use crate::domain::{IdentifierChange, Resolution};

    fn format(draft: CardNumberFormatDraft) -> CardNumberFormat {
        CardNumberFormat::parse(draft, Utc::now(), "card_number_format").expect("valid format")
    }

    fn ean13() -> CardNumberFormat {
        format(CardNumberFormatDraft {
            digits_only: true,
            checksum: Some(Checksum::Ean13),
            ..Default::default()
        })
    }

    fn luhn() -> CardNumberFormat {
        format(CardNumberFormatDraft {
            digits_only: true,
            min_length: 8,
            max_length: 19,
            checksum: Some(Checksum::Luhn),
            ..Default::default()
        })
    }

    fn problems(draft: CardNumberFormatDraft) -> String {
        CardNumberFormat::parse(draft, Utc::now(), "card_number_format")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn real_ean13_numbers_pass_and_a_changed_digit_fails() {
        let f = ean13();
        for good in ["4006381333931", "5901234123457", "4 006381-333931"] {
            assert_eq!(
                f.check(good).map(|n| n.len()),
                Ok(13),
                "{good} is a valid EAN-13"
            );
        }
        assert_eq!(f.check("4006381333932"), Err("has a wrong check digit"));
        assert_eq!(
            f.check("400638133393"),
            Err("is too short for the card number format")
        );
        assert_eq!(f.check("40063813339A1"), Err("must be digits only"));
        assert_eq!(gtin_check_digit("400638133393"), Some(1));
    }

    #[test]
    fn real_luhn_numbers_pass_and_a_changed_digit_fails() {
        let f = luhn();
        for good in ["79927398713", "4111 1111 1111 1111", "4012888888881881"] {
            assert!(f.check(good).is_ok(), "{good} is a valid Luhn number");
        }
        assert_eq!(f.check("79927398710"), Err("has a wrong check digit"));
        assert_eq!(luhn_check_digit("7992739871"), Some(3));
    }

    #[test]
    fn numbers_are_normalised_and_checked_for_characters_length_and_prefix() {
        let f = format(CardNumberFormatDraft {
            digits_only: false,
            min_length: 6,
            max_length: 10,
            prefixes: vec!["ab".into(), "12-3".into()],
            checksum: None,
        });
        assert_eq!(f.prefixes(), ["AB", "123"]);
        assert_eq!(f.check(" ab 12-34 "), Ok("AB1234".to_owned()));
        assert_eq!(f.check("123456"), Ok("123456".to_owned()));
        assert_eq!(
            f.verify("XY12345"),
            Err(CardNumberError::Prefix),
            "no allowed prefix"
        );
        assert_eq!(f.verify("AB12"), Err(CardNumberError::TooShort));
        assert_eq!(f.verify("AB123456789"), Err(CardNumberError::TooLong));
        assert_eq!(f.verify("AB12.34"), Err(CardNumberError::NotAlphanumeric));
        assert_eq!(f.verify(" - "), Err(CardNumberError::Empty));
        assert_eq!(
            f.explain(CardNumberError::TooShort, "AB12"),
            "must be 6..10 characters long, not 4"
        );
        assert_eq!(
            f.explain(CardNumberError::Prefix, "XY"),
            "must start with one of AB, 123"
        );
        assert_eq!(
            ean13().explain(CardNumberError::CheckDigit, "4006381333932"),
            "has a wrong EAN-13 check digit"
        );
    }

    #[test]
    fn the_format_applies_to_cards_only() {
        let f = ean13();
        let email = IdentifierValue::parse(IdentifierKind::Email, "a@b.cz").unwrap();
        assert_eq!(f.apply(email.clone()), Ok(email.clone()));
        let card = IdentifierValue::parse(IdentifierKind::Card, "4006381-333931").unwrap();
        assert_eq!(f.apply(card).unwrap().value, "4006381333931");
        let wrong = IdentifierValue::parse(IdentifierKind::Card, "4006381333932").unwrap();
        assert_eq!(
            f.apply(wrong.clone()),
            Err("has a wrong EAN-13 check digit".into())
        );
        assert_eq!(
            apply_card_format(None, wrong.clone()),
            Ok(wrong),
            "no format, no check"
        );
    }

    #[test]
    fn inconsistent_formats_are_refused_naming_the_field() {
        let text = problems(CardNumberFormatDraft {
            digits_only: false,
            checksum: Some(Checksum::Ean13),
            min_length: 12,
            ..Default::default()
        });
        assert!(text.contains("card_number_format.digits_only"), "{text}");
        assert!(text.contains("card_number_format.max_length"), "{text}");
        let text = problems(CardNumberFormatDraft {
            min_length: 3,
            max_length: 65,
            ..Default::default()
        });
        assert!(text.contains("card_number_format.min_length"), "{text}");
        assert!(text.contains("card_number_format.max_length"), "{text}");
        let text = problems(CardNumberFormatDraft {
            min_length: 10,
            max_length: 8,
            ..Default::default()
        });
        assert!(text.contains("must not be less than min_length"), "{text}");
        let text = problems(CardNumberFormatDraft {
            digits_only: true,
            prefixes: vec!["20".into(), "A1".into(), "".into()],
            ..Default::default()
        });
        assert!(text.contains("card_number_format.prefixes[1]"), "{text}");
        assert!(text.contains("card_number_format.prefixes[2]"), "{text}");
        let text = problems(CardNumberFormatDraft {
            prefixes: vec!["1".into(); MAX_PREFIXES + 1],
            ..Default::default()
        });
        assert!(text.contains("card_number_format.prefixes"), "{text}");
        let text = problems(CardNumberFormatDraft {
            checksum: Some(Checksum::Luhn),
            ..Default::default()
        });
        assert!(text.contains("card_number_format.digits_only"), "{text}");
    }

    #[test]
    fn default_lengths_are_4_to_64_and_13_for_ean13() {
        let any = format(CardNumberFormatDraft::default());
        assert_eq!((any.min_length(), any.max_length()), (4, 64));
        assert_eq!(any.checksum(), Checksum::None);
        let e = ean13();
        assert_eq!((e.min_length(), e.max_length()), (13, 13));
    }

    fn card(state: IdentifierState, kind: IdentifierKind) -> Identifier {
        Identifier {
            id: Uuid::now_v7(),
            customer_id: Uuid::now_v7(),
            value: IdentifierValue {
                kind,
                value: if kind == IdentifierKind::Email {
                    "jana@example.cz".into()
                } else {
                    "12345678".into()
                },
            },
            state,
            block_reason: String::new(),
            created_at: Utc::now(),
            updated_at: None,
        }
    }

    #[test]
    fn a_replaced_card_never_resolves_or_changes_again() {
        let now = Utc::now();
        let active = card(IdentifierState::Active, IdentifierKind::Card);
        let lost = active.retire(OldCardState::Lost, " stolen ", now).unwrap();
        assert_eq!(lost.state, IdentifierState::Lost);
        assert_eq!(lost.block_reason, "stolen");
        let r = Resolution::from(&lost);
        assert_eq!(r.blocked, None);
        assert_eq!(
            r.retired.map(|r| (r.lost, r.reason)),
            Some((true, "stolen".to_owned()))
        );
        assert_eq!(
            lost.retire(OldCardState::Replaced, "", now),
            Err("IDENTIFIER_LOST")
        );
        for change in [
            IdentifierChange::Block,
            IdentifierChange::Unblock,
            IdentifierChange::Remove,
        ] {
            assert_eq!(lost.change(change, "", now), Err("IDENTIFIER_LOST"));
        }
        let blocked = active.change(IdentifierChange::Block, "", now).unwrap();
        let replaced = blocked
            .retire(OldCardState::Replaced, "damaged", now)
            .unwrap();
        assert_eq!(replaced.state, IdentifierState::Replaced);
        assert_eq!(
            Resolution::from(&replaced).retired.map(|r| r.lost),
            Some(false)
        );
        assert_eq!(
            replaced.change(IdentifierChange::Unblock, "", now),
            Err("IDENTIFIER_REPLACED")
        );
        let removed = card(IdentifierState::Removed, IdentifierKind::Card);
        assert_eq!(
            removed.retire(OldCardState::Lost, "", now),
            Err("IDENTIFIER_REMOVED")
        );
        let email = card(IdentifierState::Active, IdentifierKind::Email);
        assert_eq!(
            email.retire(OldCardState::Lost, "", now),
            Err("IDENTIFIER_NOT_A_CARD")
        );
    }

    fn with_check_digit(payload: &str, scheme: Checksum) -> String {
        let d = match scheme {
            Checksum::Ean13 => gtin_check_digit(payload),
            Checksum::Luhn => luhn_check_digit(payload),
            Checksum::None => Some(0),
        };
        format!("{payload}{}", d.expect("digits"))
    }

    /// `number` with the digit at `pos` changed by `delta` (1..9, mod 10).
    fn change_digit(number: &str, pos: usize, delta: u32) -> String {
        number
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i == pos {
                    char::from_digit((c.to_digit(10).unwrap_or(0) + delta) % 10, 10).unwrap_or(c)
                } else {
                    c
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn a_computed_ean13_check_digit_passes_and_any_single_digit_change_fails(
            payload in "[0-9]{12}", pos in 0usize..13, delta in 1u32..10,
        ) {
            let f = ean13();
            let number = with_check_digit(&payload, Checksum::Ean13);
            prop_assert_eq!(f.check(&number), Ok(number.clone()));
            let changed = change_digit(&number, pos, delta);
            prop_assert_eq!(f.check(&changed), Err("has a wrong check digit"));
        }

        #[test]
        fn a_computed_luhn_check_digit_passes_and_any_single_digit_change_fails(
            payload in "[0-9]{7,18}", pos in 0usize..19, delta in 1u32..10,
        ) {
            let f = luhn();
            let number = with_check_digit(&payload, Checksum::Luhn);
            prop_assert_eq!(f.check(&number), Ok(number.clone()));
            let pos = pos % number.len();
            let changed = change_digit(&number, pos, delta);
            prop_assert_eq!(f.check(&changed), Err("has a wrong check digit"));
        }

        #[test]
        fn checking_never_panics_and_accepted_numbers_fit_the_format(raw in "\\PC{0,80}") {
            for f in [ean13(), luhn(), format(CardNumberFormatDraft::default())] {
                if let Ok(n) = f.check(&raw) {
                    prop_assert!(n.len() as u32 >= f.min_length());
                    prop_assert!(n.len() as u32 <= f.max_length());
                    prop_assert_eq!(f.check(&n), Ok(n.clone()), "normalising is stable");
                }
            }
        }
    }
}

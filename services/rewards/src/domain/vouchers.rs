//! Vouchers: instances of a reward with a unique code. The rules deciding whether a voucher
//! may be used (state, validity, owner, place, reservation), the validity of a new voucher,
//! the voucher settings of a reward, and bulk code generation. No I/O.
use chrono::{DateTime, Duration, Utc};
use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Validity;

pub mod batch;
pub mod codes;

/// Reasons (ErrorInfo) of a refused voucher use.
pub mod reason {
    pub const ALREADY_REDEEMED: &str = "VOUCHER_ALREADY_REDEEMED";
    pub const EXPIRED: &str = "VOUCHER_EXPIRED";
    pub const NOT_YET_VALID: &str = "VOUCHER_NOT_YET_VALID";
    pub const CANCELLED: &str = "VOUCHER_CANCELLED";
    pub const OTHER_CUSTOMER: &str = "VOUCHER_OTHER_CUSTOMER";
    pub const NOT_VALID_HERE: &str = "VOUCHER_NOT_VALID_HERE";
    pub const RESERVED: &str = "VOUCHER_RESERVED";
    pub const NOT_RESERVED: &str = "VOUCHER_NOT_RESERVED";
    pub const NOT_REDEEMED: &str = "VOUCHER_NOT_REDEEMED";
    pub const TRANSACTION_MISMATCH: &str = "TRANSACTION_MISMATCH";
    pub const REWARD_NOT_ACTIVE: &str = "REWARD_NOT_ACTIVE";
    /// IssueVouchers of a reward that is not a CAMPAIGN reward.
    pub const REWARD_NOT_CAMPAIGN: &str = "REWARD_NOT_CAMPAIGN";
    pub const LIMIT_REACHED: &str = "VOUCHER_LIMIT_REACHED";
    pub const CODE_SPACE_EXHAUSTED: &str = "CODE_SPACE_EXHAUSTED";
    pub const POINTS_PAYMENT_UNAVAILABLE: &str = "POINTS_PAYMENT_UNAVAILABLE";
}

/// Stored state. EXPIRED is not stored: it is an ACTIVE or RESERVED voucher past its validity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VoucherState {
    Active,
    Reserved,
    Redeemed,
    Cancelled,
}

impl VoucherState {
    pub fn as_str(self) -> &'static str {
        match self {
            VoucherState::Active => "active",
            VoucherState::Reserved => "reserved",
            VoucherState::Redeemed => "redeemed",
            VoucherState::Cancelled => "cancelled",
        }
    }

    pub fn parse_str(s: &str) -> Option<Self> {
        Some(match s {
            "active" => VoucherState::Active,
            "reserved" => VoucherState::Reserved,
            "redeemed" => VoucherState::Redeemed,
            "cancelled" => VoucherState::Cancelled,
            _ => return None,
        })
    }
}

/// The state a client sees at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShownState {
    Active,
    Reserved,
    Redeemed,
    Cancelled,
    Expired,
}

/// What issued a voucher (the proto's VoucherSource, stored by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VoucherSource {
    CashDesk,
    Campaign,
    Workflow,
    Catalogue,
    Gift,
    Manual,
    /// Won as the award of a reward offer (`source_id` = the offer award's UUID).
    Offer,
}

impl VoucherSource {
    pub fn as_str(self) -> &'static str {
        match self {
            VoucherSource::CashDesk => "cash_desk",
            VoucherSource::Campaign => "campaign",
            VoucherSource::Workflow => "workflow",
            VoucherSource::Catalogue => "catalogue",
            VoucherSource::Gift => "gift",
            VoucherSource::Manual => "manual",
            VoucherSource::Offer => "offer",
        }
    }

    pub fn parse_str(s: &str) -> Option<Self> {
        Some(match s {
            "cash_desk" => VoucherSource::CashDesk,
            "campaign" => VoucherSource::Campaign,
            "workflow" => VoucherSource::Workflow,
            "catalogue" => VoucherSource::Catalogue,
            "gift" => VoucherSource::Gift,
            "manual" => VoucherSource::Manual,
            "offer" => VoucherSource::Offer,
            _ => return None,
        })
    }
}

/// The voucher settings of a reward: price, validity of issued vouchers, limits, code prefix,
/// and where its vouchers may be used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoucherRules {
    /// Points price; 0 = free.
    pub points_price: i64,
    /// Days an issued voucher stays valid; 0 = until the reward's end.
    pub validity_days: i32,
    /// Vouchers per customer; 0 = unlimited.
    pub max_per_customer: i32,
    /// Vouchers in total; 0 = unlimited.
    pub max_total: i64,
    /// Prefix of generated codes, 0..8 characters [A-Z0-9].
    pub code_prefix: String,
    /// Business units where vouchers may be used; empty = all.
    pub business_unit_ids: Vec<Uuid>,
    /// Sales channels (proto numbers) where vouchers may be used; empty = all.
    pub channels: Vec<i32>,
}

impl VoucherRules {
    /// Checks the settings; fields are named `reward.<field>`.
    pub fn validate(&self, v: &mut Violations) {
        if self.points_price < 0 {
            v.add("reward.points_price", "must not be negative");
        }
        if !(0..=3650).contains(&self.validity_days) {
            v.add("reward.voucher_validity_days", "must be 0 or 1..3650");
        }
        if self.max_per_customer < 0 {
            v.add("reward.max_vouchers_per_customer", "must not be negative");
        }
        if self.max_total < 0 {
            v.add("reward.max_vouchers_total", "must not be negative");
        }
        if self.code_prefix.len() > 8
            || !self
                .code_prefix
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            v.add(
                "reward.voucher_code_prefix",
                "must be 0..8 characters A-Z or 0-9",
            );
        }
        if self.business_unit_ids.len() > 1000 {
            v.add("reward.business_unit_ids", "at most 1000 business units");
        }
    }

    /// Whether a voucher may be used at this business unit and channel. A restricted reward
    /// needs the place to be named.
    pub fn allows(&self, business_unit: Option<Uuid>, channel: Option<i32>) -> bool {
        let unit_ok = self.business_unit_ids.is_empty()
            || business_unit.is_some_and(|b| self.business_unit_ids.contains(&b));
        let channel_ok =
            self.channels.is_empty() || channel.is_some_and(|c| self.channels.contains(&c));
        unit_ok && channel_ok
    }
}

/// A voucher as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voucher {
    pub id: Uuid,
    pub code: String,
    pub reward_id: Uuid,
    pub customer_id: Option<Uuid>,
    pub state: VoucherState,
    pub source: VoucherSource,
    pub source_id: String,
    pub validity: Validity,
    pub points_paid: i64,
    pub gift_recipient_email: String,
    pub gift_recipient_name: String,
    pub issued_at: DateTime<Utc>,
    pub reserve_transaction_id: Option<String>,
    pub reserve_until: Option<DateTime<Utc>>,
    pub redeemed_at: Option<DateTime<Utc>>,
    pub redeem_transaction_id: Option<String>,
    pub redeem_business_unit_id: Option<Uuid>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
    /// The wallet hold that paid `points_paid` (captured once the voucher change committed).
    #[serde(default)]
    pub points_reservation_id: Option<Uuid>,
    /// The value chosen for a gift voucher (one of its reward's allowed values); redeeming it
    /// takes this value off the cart instead of the reward's smallest allowed value.
    #[serde(default)]
    pub value: Option<super::rewards::Amount>,
}

/// Who wants to use a voucher, where and when.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    pub customer_id: Option<Uuid>,
    pub business_unit_id: Option<Uuid>,
    pub channel: Option<i32>,
    /// The checkout transaction; a reservation it holds does not block it.
    pub transaction_id: Option<String>,
}

impl Voucher {
    /// A voucher as issued: ACTIVE, no customer, never reserved, redeemed, cancelled or paid
    /// for; callers set what else they know with struct update syntax.
    pub fn issued(
        id: Uuid,
        code: String,
        reward_id: Uuid,
        source: VoucherSource,
        validity: Validity,
        issued_at: DateTime<Utc>,
    ) -> Voucher {
        Voucher {
            id,
            code,
            reward_id,
            customer_id: None,
            state: VoucherState::Active,
            source,
            source_id: String::new(),
            validity,
            points_paid: 0,
            gift_recipient_email: String::new(),
            gift_recipient_name: String::new(),
            issued_at,
            reserve_transaction_id: None,
            reserve_until: None,
            redeemed_at: None,
            redeem_transaction_id: None,
            redeem_business_unit_id: None,
            cancelled_at: None,
            cancel_reason: None,
            points_reservation_id: None,
            value: None,
        }
    }

    /// Whether a reservation is in force at `at`.
    pub fn reserved_at(&self, at: DateTime<Utc>) -> bool {
        self.state == VoucherState::Reserved && self.reserve_until.is_some_and(|u| at < u)
    }

    /// The state a client sees at `at`: lapsed reservations are ACTIVE again, an unused
    /// voucher past its validity is EXPIRED.
    pub fn shown_state(&self, at: DateTime<Utc>) -> ShownState {
        match self.state {
            VoucherState::Redeemed => ShownState::Redeemed,
            VoucherState::Cancelled => ShownState::Cancelled,
            VoucherState::Active | VoucherState::Reserved => {
                if self.validity.until.is_some_and(|u| at >= u) {
                    ShownState::Expired
                } else if self.reserved_at(at) {
                    ShownState::Reserved
                } else {
                    ShownState::Active
                }
            }
        }
    }

    /// Whether the voucher may be redeemed (or reserved) now by this usage; the reason if not.
    pub fn check_usable(
        &self,
        rules: &VoucherRules,
        usage: &Usage,
        at: DateTime<Utc>,
    ) -> Result<(), &'static str> {
        match self.state {
            VoucherState::Redeemed => return Err(reason::ALREADY_REDEEMED),
            VoucherState::Cancelled => return Err(reason::CANCELLED),
            VoucherState::Active | VoucherState::Reserved => {}
        }
        if self.validity.until.is_some_and(|u| at >= u) {
            return Err(reason::EXPIRED);
        }
        if self.validity.from.is_some_and(|f| at < f) {
            return Err(reason::NOT_YET_VALID);
        }
        if let Some(owner) = self.customer_id
            && usage.customer_id != Some(owner)
        {
            return Err(reason::OTHER_CUSTOMER);
        }
        if !rules.allows(usage.business_unit_id, usage.channel) {
            return Err(reason::NOT_VALID_HERE);
        }
        if self.reserved_at(at) && self.reserve_transaction_id != usage.transaction_id {
            return Err(reason::RESERVED);
        }
        Ok(())
    }

    /// Holds the voucher for a transaction until `at + hold`.
    pub fn reserve(&mut self, transaction_id: &str, at: DateTime<Utc>, hold: Duration) {
        self.state = VoucherState::Reserved;
        self.reserve_transaction_id = Some(transaction_id.to_owned());
        self.reserve_until = Some(at + hold);
    }

    /// Gives up the reservation of `transaction_id` (also one that lapsed).
    pub fn release(&mut self, transaction_id: &str) -> Result<(), &'static str> {
        if self.state != VoucherState::Reserved {
            return Err(reason::NOT_RESERVED);
        }
        if self.reserve_transaction_id.as_deref() != Some(transaction_id) {
            return Err(reason::TRANSACTION_MISMATCH);
        }
        self.state = VoucherState::Active;
        self.reserve_transaction_id = None;
        self.reserve_until = None;
        Ok(())
    }

    /// Marks it redeemed (after `check_usable`).
    pub fn redeem(&mut self, transaction_id: &str, business_unit: Option<Uuid>, at: DateTime<Utc>) {
        self.state = VoucherState::Redeemed;
        self.reserve_transaction_id = None;
        self.reserve_until = None;
        self.redeemed_at = Some(at);
        self.redeem_transaction_id = Some(transaction_id.to_owned());
        self.redeem_business_unit_id = business_unit;
    }

    /// Cancels an unredeemed voucher.
    pub fn cancel(&mut self, why: &str, at: DateTime<Utc>) -> Result<(), &'static str> {
        match self.state {
            VoucherState::Redeemed => return Err(reason::ALREADY_REDEEMED),
            // Cancelling twice keeps the first cancellation.
            VoucherState::Cancelled => return Ok(()),
            VoucherState::Active | VoucherState::Reserved => {}
        }
        self.state = VoucherState::Cancelled;
        self.reserve_transaction_id = None;
        self.reserve_until = None;
        self.cancelled_at = Some(at);
        self.cancel_reason = Some(why.to_owned());
        Ok(())
    }

    /// Undoes the redemption made in `transaction_id`.
    pub fn reinstate(&mut self, transaction_id: &str) -> Result<(), &'static str> {
        if self.state != VoucherState::Redeemed {
            return Err(reason::NOT_REDEEMED);
        }
        if self.redeem_transaction_id.as_deref() != Some(transaction_id) {
            return Err(reason::TRANSACTION_MISMATCH);
        }
        self.state = VoucherState::Active;
        self.redeemed_at = None;
        self.redeem_transaction_id = None;
        self.redeem_business_unit_id = None;
        Ok(())
    }
}

/// Validity of a voucher issued at `now`: from the later of now and the reward's start, until
/// the earliest of the reward's end, `validity_days` after issue and the requested end.
pub fn voucher_validity(
    reward: &Validity,
    rules: &VoucherRules,
    requested_until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Validity {
    let from = reward.from.map_or(now, |f| f.max(now));
    let by_days =
        (rules.validity_days > 0).then(|| now + Duration::days(rules.validity_days.into()));
    let until = [reward.until, by_days, requested_until]
        .into_iter()
        .flatten()
        .min();
    Validity {
        from: Some(from),
        until,
    }
}

/// The value of a new voucher of a reward with `benefit`: a gift-value reward needs one of its
/// allowed values (same currency and amount); other rewards take none. The refusal is the
/// description of the `value` field's violation.
pub fn chosen_value(
    benefit: &super::Benefit,
    value: Option<&super::rewards::Amount>,
) -> Result<Option<super::rewards::Amount>, String> {
    match (benefit, value) {
        (super::Benefit::GiftValue { allowed_values }, Some(v)) => {
            if allowed_values.contains(v) {
                Ok(Some(v.clone()))
            } else {
                let allowed: Vec<String> = allowed_values
                    .iter()
                    .map(|a| format!("{} {}", a.minor, a.currency))
                    .collect();
                Err(format!(
                    "must be one of the reward's allowed values (minor units): {}",
                    allowed.join(", ")
                ))
            }
        }
        (super::Benefit::GiftValue { .. }, None) => {
            Err("is required for a gift value reward: one of its allowed values".to_owned())
        }
        (_, Some(_)) => Err("is only for rewards whose benefit is a gift value".to_owned()),
        (_, None) => Ok(None),
    }
}

/// Normalises a code as typed (case-insensitive, surrounding blanks ignored).
pub fn normalise_code(code: &str) -> String {
    code.trim().to_ascii_uppercase()
}

/// Whether a code has the stored shape: 8..32 characters [A-Z0-9-].
pub fn valid_code(code: &str) -> bool {
    (8..=32).contains(&code.len())
        && code
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-')
}

/// The default alphabet of generated codes: no 0/O and 1/I.
pub const UNAMBIGUOUS: &str = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// One position of a code pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Literal(u8),
    /// A digit of the charset (all digits if the charset has none).
    Digit,
    /// A letter of the charset (all letters if the charset has none).
    Letter,
    /// Any character of the charset.
    Any,
}

/// How to draw codes: the prefix, then the slots.
#[derive(Debug, Clone)]
pub struct CodeSpec {
    prefix: Vec<u8>,
    slots: Vec<Slot>,
    digits: Vec<u8>,
    letters: Vec<u8>,
    any: Vec<u8>,
}

/// The request's code settings before checking.
#[derive(Debug, Clone, Default)]
pub struct CodeRequest {
    pub prefix: String,
    pub pattern: String,
    pub charset: String,
    pub length: i32,
}

impl CodeSpec {
    /// Checks and compiles code settings, naming the request's fields.
    pub fn parse(out: &mut Violations, r: &CodeRequest) -> Option<CodeSpec> {
        let mut v = Violations::new();
        let prefix = r.prefix.trim().to_ascii_uppercase();
        if prefix.len() > 8
            || !prefix
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            v.add("prefix", "must be 0..8 characters A-Z or 0-9");
        }
        let charset = if r.charset.is_empty() {
            UNAMBIGUOUS.to_owned()
        } else {
            r.charset.to_ascii_uppercase()
        };
        let mut any: Vec<u8> = charset.bytes().collect();
        any.sort_unstable();
        any.dedup();
        if any.len() != charset.len()
            || !(2..=64).contains(&any.len())
            || !any
                .iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            v.add("charset", "must be 2..64 distinct characters A-Z or 0-9");
        }
        let mut digits: Vec<u8> = any.iter().copied().filter(u8::is_ascii_digit).collect();
        if digits.is_empty() {
            digits = (b'0'..=b'9').collect();
        }
        let mut letters: Vec<u8> = any.iter().copied().filter(u8::is_ascii_uppercase).collect();
        if letters.is_empty() {
            letters = (b'A'..=b'Z').collect();
        }
        let slots: Vec<Slot> = if r.pattern.is_empty() {
            let length = if r.length == 0 { 10 } else { r.length };
            if !(6..=24).contains(&length) {
                v.add("length", "must be 0 (10) or 6..24");
            }
            vec![Slot::Any; usize::try_from(length.clamp(6, 24)).unwrap_or(10)]
        } else {
            let pattern = r.pattern.to_ascii_uppercase();
            if pattern.len() > 32 {
                v.add("pattern", "must be at most 32 characters");
            }
            let mut slots = Vec::new();
            for c in pattern.bytes() {
                slots.push(match c {
                    b'#' => Slot::Digit,
                    b'?' => Slot::Letter,
                    b'*' => Slot::Any,
                    c if c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'-' => {
                        Slot::Literal(c)
                    }
                    _ => {
                        v.add(
                            "pattern",
                            "may hold only #, ?, * and the characters A-Z, 0-9 and -",
                        );
                        break;
                    }
                });
            }
            if !slots.iter().any(|s| !matches!(s, Slot::Literal(_))) {
                v.add(
                    "pattern",
                    "must have at least one random position (#, ? or *)",
                );
            }
            slots
        };
        let spec = CodeSpec {
            prefix: if prefix.is_empty() {
                Vec::new()
            } else {
                format!("{prefix}-").into_bytes()
            },
            slots,
            digits,
            letters,
            any,
        };
        let len = spec.prefix.len() + spec.slots.len();
        if !(8..=32).contains(&len) {
            v.add(
                if r.pattern.is_empty() {
                    "length"
                } else {
                    "pattern"
                },
                format!("codes must be 8..32 characters long with the prefix; these are {len}"),
            );
        }
        let ok = v.is_empty();
        for f in v.into_vec() {
            out.add(f.field, f.description);
        }
        ok.then_some(spec)
    }

    /// How many different codes the spec can draw (saturating).
    pub fn combinations(&self) -> u128 {
        self.slots.iter().fold(1u128, |n, s| {
            n.saturating_mul(match s {
                Slot::Literal(_) => 1,
                Slot::Digit => self.digits.len() as u128,
                Slot::Letter => self.letters.len() as u128,
                Slot::Any => self.any.len() as u128,
            })
        })
    }

    /// Length of every code.
    pub fn code_len(&self) -> usize {
        self.prefix.len() + self.slots.len()
    }

    /// Appends one random code to `out`.
    pub fn draw(&self, rng: &mut FastRng, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.prefix);
        for s in &self.slots {
            out.push(match s {
                Slot::Literal(c) => *c,
                Slot::Digit => self.digits[rng.below(self.digits.len())],
                Slot::Letter => self.letters[rng.below(self.letters.len())],
                Slot::Any => self.any[rng.below(self.any.len())],
            });
        }
    }
}

/// wyrand: a small, fast generator for code characters, seeded from the OS (UUID v4). Codes
/// are not secrets guarding money by themselves (redemption checks owner, state and place),
/// but they should not be guessable in sequence; a 64-bit random seed per call gives that.
#[derive(Debug, Clone)]
pub struct FastRng(u64);

impl FastRng {
    pub fn from_os() -> Self {
        let bytes = Uuid::new_v4().into_bytes();
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&bytes[..8]);
        FastRng(u64::from_le_bytes(seed))
    }

    pub fn seeded(seed: u64) -> Self {
        FastRng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) ^ t) as u64
    }

    /// A number in `0..n` (Lemire's multiply-shift; the bias is below 2^-56 for n ≤ 64).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn voucher(now: DateTime<Utc>) -> Voucher {
        Voucher {
            customer_id: Some(Uuid::from_u128(7)),
            ..Voucher::issued(
                Uuid::now_v7(),
                "GOLD-1234-ABCD".into(),
                Uuid::now_v7(),
                VoucherSource::Campaign,
                Validity {
                    from: Some(now - Duration::days(1)),
                    until: Some(now + Duration::days(1)),
                },
                now,
            )
        }
    }

    fn owner() -> Usage {
        Usage {
            customer_id: Some(Uuid::from_u128(7)),
            ..Default::default()
        }
    }

    #[test]
    fn a_gift_value_must_be_one_of_the_allowed_values_and_only_for_gift_rewards() {
        use crate::domain::{Benefit, rewards::Amount};
        let eur = |minor| Amount {
            currency: "EUR".into(),
            minor,
        };
        let gift = Benefit::GiftValue {
            allowed_values: vec![eur(2500), eur(5000)],
        };
        assert_eq!(chosen_value(&gift, Some(&eur(5000))), Ok(Some(eur(5000))));
        assert!(chosen_value(&gift, Some(&eur(4000))).is_err());
        let usd = Amount {
            currency: "USD".into(),
            minor: 5000,
        };
        assert!(chosen_value(&gift, Some(&usd)).is_err());
        assert!(chosen_value(&gift, None).is_err());
        let fixed = Benefit::CartFixedDiscount { amount: eur(500) };
        assert!(chosen_value(&fixed, Some(&eur(500))).is_err());
        assert_eq!(chosen_value(&fixed, None), Ok(None));
    }

    #[test]
    fn each_refusal_has_its_reason() {
        let now = Utc::now();
        let rules = VoucherRules::default();
        let v = voucher(now);
        assert_eq!(v.check_usable(&rules, &owner(), now), Ok(()));
        assert_eq!(
            v.check_usable(&rules, &Usage::default(), now),
            Err(reason::OTHER_CUSTOMER)
        );
        assert_eq!(
            v.check_usable(&rules, &owner(), now + Duration::days(1)),
            Err(reason::EXPIRED)
        );
        assert_eq!(
            v.check_usable(&rules, &owner(), now - Duration::days(2)),
            Err(reason::NOT_YET_VALID)
        );
        let bu = Uuid::from_u128(99);
        let here = VoucherRules {
            business_unit_ids: vec![bu],
            channels: vec![1],
            ..Default::default()
        };
        assert_eq!(
            v.check_usable(&here, &owner(), now),
            Err(reason::NOT_VALID_HERE)
        );
        let at_shop = Usage {
            business_unit_id: Some(bu),
            channel: Some(1),
            ..owner()
        };
        assert_eq!(v.check_usable(&here, &at_shop, now), Ok(()));
        let mut redeemed = v.clone();
        redeemed.redeem("T1", None, now);
        assert_eq!(
            redeemed.check_usable(&rules, &owner(), now),
            Err(reason::ALREADY_REDEEMED)
        );
        let mut cancelled = v.clone();
        cancelled.cancel("x", now).unwrap();
        assert_eq!(
            cancelled.check_usable(&rules, &owner(), now),
            Err(reason::CANCELLED)
        );
        assert_eq!(
            redeemed.clone().cancel("x", now),
            Err(reason::ALREADY_REDEEMED)
        );
    }

    #[test]
    fn a_reservation_blocks_other_transactions_until_it_lapses() {
        let now = Utc::now();
        let rules = VoucherRules::default();
        let mut v = voucher(now);
        v.reserve("T1", now, Duration::minutes(15));
        let t1 = Usage {
            transaction_id: Some("T1".into()),
            ..owner()
        };
        let t2 = Usage {
            transaction_id: Some("T2".into()),
            ..owner()
        };
        assert_eq!(v.check_usable(&rules, &t1, now), Ok(()));
        assert_eq!(v.check_usable(&rules, &t2, now), Err(reason::RESERVED));
        assert_eq!(v.shown_state(now), ShownState::Reserved);
        let later = now + Duration::minutes(15);
        assert_eq!(v.check_usable(&rules, &t2, later), Ok(()));
        assert_eq!(v.shown_state(later), ShownState::Active);
        assert_eq!(v.clone().release("T2"), Err(reason::TRANSACTION_MISMATCH));
        v.release("T1").unwrap();
        assert_eq!(v.release("T1"), Err(reason::NOT_RESERVED));
    }

    #[test]
    fn reinstating_needs_the_redeeming_transaction() {
        let now = Utc::now();
        let mut v = voucher(now);
        assert_eq!(v.reinstate("T1"), Err(reason::NOT_REDEEMED));
        v.redeem("T1", None, now);
        assert_eq!(v.reinstate("T2"), Err(reason::TRANSACTION_MISMATCH));
        v.reinstate("T1").unwrap();
        assert_eq!(v.shown_state(now), ShownState::Active);
        assert_eq!(v.shown_state(now + Duration::days(2)), ShownState::Expired);
    }

    #[test]
    fn validity_is_the_narrowest_of_reward_days_and_request() {
        let now = Utc::now();
        let rules = VoucherRules {
            validity_days: 30,
            ..Default::default()
        };
        let reward = Validity {
            from: None,
            until: Some(now + Duration::days(10)),
        };
        let w = voucher_validity(&reward, &rules, None, now);
        assert_eq!(w.from, Some(now));
        assert_eq!(w.until, reward.until);
        let w = voucher_validity(&Validity::default(), &rules, None, now);
        assert_eq!(w.until, Some(now + Duration::days(30)));
        let asked = now + Duration::days(3);
        let w = voucher_validity(&reward, &rules, Some(asked), now);
        assert_eq!(w.until, Some(asked));
    }

    #[test]
    fn patterns_draw_the_declared_shape() {
        let mut v = Violations::new();
        let spec = CodeSpec::parse(
            &mut v,
            &CodeRequest {
                prefix: "gold".into(),
                pattern: "####-????".into(),
                ..Default::default()
            },
        )
        .expect("valid");
        assert_eq!(spec.code_len(), 14);
        // The default charset has the digits 2..9 and 24 letters (no 0/O, 1/I).
        assert_eq!(spec.combinations(), 8u128.pow(4) * 24u128.pow(4));
        let mut rng = FastRng::seeded(1);
        let mut out = Vec::new();
        for _ in 0..1000 {
            out.clear();
            spec.draw(&mut rng, &mut out);
            let code = std::str::from_utf8(&out).unwrap();
            assert!(valid_code(code), "{code}");
            let b = code.as_bytes();
            assert!(code.starts_with("GOLD-"));
            assert!(b[5..9].iter().all(u8::is_ascii_digit), "{code}");
            assert_eq!(b[9], b'-');
            assert!(b[10..].iter().all(u8::is_ascii_uppercase), "{code}");
            assert!(!code[10..].contains(['I', 'O']), "{code}");
        }
    }

    #[test]
    fn bad_code_settings_name_their_field() {
        for (r, field) in [
            (
                CodeRequest {
                    prefix: "TOO-LONG-X".into(),
                    ..Default::default()
                },
                "prefix",
            ),
            (
                CodeRequest {
                    charset: "AAB".into(),
                    ..Default::default()
                },
                "charset",
            ),
            (
                CodeRequest {
                    pattern: "ABCDEFGH".into(),
                    ..Default::default()
                },
                "pattern",
            ),
            (
                CodeRequest {
                    pattern: "##".into(),
                    ..Default::default()
                },
                "pattern",
            ),
            (
                CodeRequest {
                    length: 3,
                    ..Default::default()
                },
                "length",
            ),
        ] {
            let mut v = Violations::new();
            assert!(CodeSpec::parse(&mut v, &r).is_none(), "{r:?}");
            let text = v.into_result().unwrap_err().to_string();
            assert!(text.contains(field), "{r:?}: {text}");
        }
    }

    #[test]
    fn default_codes_are_ten_unambiguous_characters_and_rarely_collide() {
        let spec = CodeSpec::parse(&mut Violations::new(), &CodeRequest::default()).unwrap();
        let mut rng = FastRng::from_os();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for _ in 0..100_000 {
            out.clear();
            spec.draw(&mut rng, &mut out);
            assert_eq!(out.len(), 10);
            seen.insert(out.clone());
        }
        // 32^10 ≈ 1.1e15 codes: 100,000 draws collide with probability ~5e-6.
        assert!(seen.len() >= 99_999);
    }
}

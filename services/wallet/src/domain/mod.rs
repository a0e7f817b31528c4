//! Wallet rules without storage or transport: the kinds of accounts and postings, points type
//! rules (expiry, pending, rounding), how debits take from lots, and request validation.
pub mod catalog;
pub mod lots;
pub mod rules;

use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};

/// Largest amount one call may move.
pub const MAX_AMOUNT: i64 = 1_000_000_000;
/// Text written over reasons and references of an erased customer's postings.
pub const ERASED_REASON: &str = "(erased)";

macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $($(#[$vm])* $v),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v),+];

            /// The name stored in the database.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }

            pub fn parse_str(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$v),)+ _ => None }
            }
        }
    };
}

str_enum!(
    /// Whose account and what for.
    AccountKind {
        Wallet = "wallet",
        Commerce = "commerce",
        Reserved = "reserved",
        Issuance = "issuance",
        Redemption = "redemption",
        Expired = "expired",
        Payout = "payout",
        Adjustment = "adjustment",
    }
);

impl AccountKind {
    /// Customer accounts keep a stored balance; system accounts are derived only.
    pub fn is_customer(self) -> bool {
        matches!(
            self,
            AccountKind::Wallet | AccountKind::Commerce | AccountKind::Reserved
        )
    }
    pub const SYSTEM: &'static [AccountKind] = &[
        AccountKind::Issuance,
        AccountKind::Redemption,
        AccountKind::Expired,
        AccountKind::Payout,
        AccountKind::Adjustment,
    ];
}

str_enum!(
    /// The operation that made a posting.
    PostingKind {
        Award = "award",
        Spend = "spend",
        Reserve = "reserve",
        Capture = "capture",
        Release = "release",
        Reversal = "reversal",
        Adjustment = "adjustment",
        Transfer = "transfer",
        Redeem = "redeem",
        Payout = "payout",
        Expiry = "expiry",
        Merge = "merge",
    }
);

str_enum!(
    /// Why a posting happened, as the caller stated it.
    Cause {
        Purchase = "purchase",
        Return = "return",
        Reward = "reward",
        Adjustment = "adjustment",
        Campaign = "campaign",
        Transfer = "transfer",
        Expiry = "expiry",
        Payout = "payout",
        Merge = "merge",
        Other = "other",
    }
);

str_enum!(
    /// What a points type counts.
    Unit {
        Points = "points",
        Credit = "credit",
    }
);

str_enum!(
    /// State of a reservation.
    ReservationState {
        Held = "held",
        Captured = "captured",
        Released = "released",
        Expired = "expired",
    }
);

/// Checks an amount moved by one call (1..=MAX_AMOUNT).
pub fn check_amount(v: &mut Violations, field: &str, amount: i64) {
    if !(1..=MAX_AMOUNT).contains(&amount) {
        v.add(field, format!("must be 1..{MAX_AMOUNT}"));
    }
}

/// Checks free text: `min..=max` characters after trimming.
pub fn check_text(v: &mut Violations, field: &str, text: &str, min: usize, max: usize) {
    let n = text.trim().chars().count();
    if n < min || text.chars().count() > max {
        if min == 0 {
            v.add(field, format!("must be at most {max} characters"));
        } else {
            v.add(field, format!("must be {min}..{max} characters"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_stored_name() {
        for k in AccountKind::ALL {
            assert_eq!(AccountKind::parse_str(k.as_str()), Some(*k));
        }
        for k in PostingKind::ALL {
            assert_eq!(PostingKind::parse_str(k.as_str()), Some(*k));
        }
        for k in Cause::ALL {
            assert_eq!(Cause::parse_str(k.as_str()), Some(*k));
        }
        assert_eq!(AccountKind::parse_str("nope"), None);
    }

    #[test]
    fn amounts_and_texts_are_checked() {
        let mut v = Violations::new();
        check_amount(&mut v, "points", 0);
        check_amount(&mut v, "points", MAX_AMOUNT + 1);
        check_amount(&mut v, "points", 1);
        check_text(&mut v, "reason", "  ", 1, 200);
        check_text(&mut v, "reference", &"x".repeat(201), 0, 200);
        check_text(&mut v, "reason", "ok", 1, 200);
        let fields: Vec<_> = v.into_vec().into_iter().map(|f| f.field).collect();
        assert_eq!(fields, ["points", "points", "reason", "reference"]);
    }
}

//! Paying with open balance (CRM.COM credit, store credit): money a CREDIT points type holds
//! in the wallet, spent one minor unit for one minor unit of the cart's currency after the
//! points payment.
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A customer's CREDIT wallet as the wallet service reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditWallet {
    pub points_type_id: Uuid,
    pub points_type_code: String,
    pub currency_code: String,
    /// The open balance: spendable now, minor units.
    pub available: i64,
    pub blocked_from_spending: bool,
}

/// Open balance paying part of the cart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditPayment {
    pub points_type_id: Uuid,
    pub amount_minor: i64,
}

/// Why open balance cannot pay as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditRefusal {
    /// The customer is blocked from spending the wallet.
    Blocked,
    /// More than the cart and the balance allow (`spendable` is the most).
    NotSpendable { spendable: i64 },
}

/// The wallet to spend: the one named (by UUID or code) when `named` is set, otherwise the
/// wallet in the cart's currency with the largest open balance (ties: the lowest code, so
/// Evaluate and Commit choose the same).
pub fn choose<'a>(
    wallets: &'a [CreditWallet],
    currency_code: &str,
    named: &str,
) -> Option<&'a CreditWallet> {
    let named = named.trim();
    let mut fitting = wallets.iter().filter(|w| w.currency_code == currency_code);
    if !named.is_empty() {
        return fitting.find(|w| {
            w.points_type_code == named || w.points_type_id.to_string().eq_ignore_ascii_case(named)
        });
    }
    fitting.min_by(|a, b| {
        b.available
            .cmp(&a.available)
            .then_with(|| a.points_type_code.cmp(&b.points_type_code))
    })
}

/// The most open balance that can pay `due` (what is left after discounts and points).
pub fn spendable(wallet: Option<&CreditWallet>, due: i64) -> i64 {
    match wallet {
        Some(w) if !w.blocked_from_spending => w.available.min(due).max(0),
        _ => 0,
    }
}

/// The credit payment for `requested` minor units. Evaluate passes `strict = false` and gets
/// what can be accepted; Commit passes `strict = true` and is refused anything above it.
pub fn pay(
    wallet: Option<&CreditWallet>,
    due: i64,
    requested: i64,
    strict: bool,
) -> Result<Option<CreditPayment>, CreditRefusal> {
    if requested <= 0 {
        return Ok(None);
    }
    if wallet.is_some_and(|w| w.blocked_from_spending) {
        return Err(CreditRefusal::Blocked);
    }
    let most = spendable(wallet, due);
    if strict && requested > most {
        return Err(CreditRefusal::NotSpendable { spendable: most });
    }
    let amount = requested.min(most);
    Ok(wallet.filter(|_| amount > 0).map(|w| CreditPayment {
        points_type_id: w.points_type_id,
        amount_minor: amount,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wallet(code: &str, currency: &str, available: i64) -> CreditWallet {
        CreditWallet {
            points_type_id: Uuid::now_v7(),
            points_type_code: code.into(),
            currency_code: currency.into(),
            available,
            blocked_from_spending: false,
        }
    }

    #[test]
    fn the_wallet_in_the_carts_currency_with_most_balance_is_chosen_unless_one_is_named() {
        let wallets = [
            wallet("gift", "EUR", 500),
            wallet("refund", "EUR", 900),
            wallet("usd", "USD", 5_000),
            wallet("zero", "EUR", 900),
        ];
        assert_eq!(
            choose(&wallets, "EUR", "").unwrap().points_type_code,
            "refund"
        );
        assert_eq!(choose(&wallets, "EUR", "gift").unwrap().available, 500);
        let by_id = wallets[0].points_type_id.to_string().to_uppercase();
        assert_eq!(
            choose(&wallets, "EUR", &by_id).unwrap().points_type_code,
            "gift"
        );
        // A wallet in another currency never pays.
        assert!(choose(&wallets, "EUR", "usd").is_none());
        assert!(choose(&wallets, "CZK", "").is_none());
    }

    #[test]
    fn evaluate_accepts_what_it_can_and_commit_refuses_more() {
        let w = wallet("gift", "EUR", 1_000);
        assert_eq!(spendable(Some(&w), 400), 400);
        assert_eq!(spendable(Some(&w), 4_000), 1_000);
        assert_eq!(spendable(None, 4_000), 0);
        let cut = pay(Some(&w), 700, 5_000, false).unwrap().unwrap();
        assert_eq!(cut.amount_minor, 700);
        assert_eq!(
            pay(Some(&w), 700, 701, true),
            Err(CreditRefusal::NotSpendable { spendable: 700 })
        );
        assert_eq!(pay(Some(&w), 700, 0, true), Ok(None));
        assert_eq!(
            pay(None, 700, 1, true),
            Err(CreditRefusal::NotSpendable { spendable: 0 })
        );
        assert_eq!(pay(None, 700, 1, false), Ok(None));
        let blocked = CreditWallet {
            blocked_from_spending: true,
            ..w
        };
        assert_eq!(spendable(Some(&blocked), 700), 0);
        assert_eq!(
            pay(Some(&blocked), 700, 1, false),
            Err(CreditRefusal::Blocked)
        );
    }

    #[test]
    fn a_negative_balance_pays_nothing() {
        let w = wallet("gift", "EUR", -50);
        assert_eq!(spendable(Some(&w), 700), 0);
        assert_eq!(pay(Some(&w), 700, 100, false), Ok(None));
    }
}

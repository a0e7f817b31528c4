//! Campaign products: the discount catalogue (CareCloud) giving selected products a campaign
//! price in chosen business units and channels for a period, applied at checkout without a
//! voucher.
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    Validity,
    catalogue::{check_currency, check_name, check_url},
    purchase_bonuses::{Channel, ProductScope},
};

/// The campaign price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Discount {
    /// Basis points off the unit price, 1..=10000.
    Percentage { basis_points: i32 },
    /// An amount off each unit.
    AmountOffPerUnit { amount_minor: i64, currency: String },
    /// A unit price; applies only where lower than the cart's price.
    FixedUnitPrice { amount_minor: i64, currency: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignProduct {
    pub id: Uuid,
    pub display_name: String,
    pub description: String,
    pub products: ProductScope,
    pub discount: Option<Discount>,
    pub validity: Validity,
    pub business_unit_ids: Vec<Uuid>,
    pub channels: Vec<Channel>,
    pub segment_ids: Vec<Uuid>,
    pub image_url: String,
    /// 0 = unlimited.
    pub max_quantity_per_purchase: i64,
    pub active: bool,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const P: &str = "campaign_product";

impl CampaignProduct {
    /// Checks its own fields; whether the codes exist is `check_catalogue`'s.
    pub fn validate(&self, v: &mut Violations) {
        check_name(v, &format!("{P}.display_name"), &self.display_name);
        if self.description.chars().count() > 2000 {
            v.add(
                format!("{P}.description"),
                "must be at most 2000 characters",
            );
        }
        if self.products.product_codes.is_empty()
            && self.products.group_codes.is_empty()
            && self.products.brand_codes.is_empty()
        {
            v.add(
                format!("{P}.products"),
                "is required: name the products, product groups or brands discounted",
            );
        }
        self.products.validate(v, &format!("{P}.products"));
        match &self.discount {
            None => v.add(
                format!("{P}.discount"),
                "is required: percentage_basis_points, amount_off_per_unit or fixed_unit_price",
            ),
            Some(Discount::Percentage { basis_points }) => {
                if !(1..=10_000).contains(basis_points) {
                    v.add(format!("{P}.percentage_basis_points"), "must be 1..10000");
                }
            }
            Some(Discount::AmountOffPerUnit {
                amount_minor,
                currency,
            }) => {
                if *amount_minor < 1 {
                    v.add(
                        format!("{P}.amount_off_per_unit.amount_minor"),
                        "must be at least 1",
                    );
                }
                check_currency(
                    v,
                    &format!("{P}.amount_off_per_unit.currency_code"),
                    currency,
                );
            }
            Some(Discount::FixedUnitPrice {
                amount_minor,
                currency,
            }) => {
                if *amount_minor < 0 {
                    v.add(
                        format!("{P}.fixed_unit_price.amount_minor"),
                        "must not be negative",
                    );
                }
                check_currency(v, &format!("{P}.fixed_unit_price.currency_code"), currency);
            }
        }
        if self.validity.from.is_none() {
            v.add(format!("{P}.valid_from_time"), "is required");
        }
        self.validity.validate(v, P);
        check_url(v, &format!("{P}.image_url"), &self.image_url);
        if !(0..=1_000_000).contains(&self.max_quantity_per_purchase) {
            v.add(
                format!("{P}.max_quantity_per_purchase"),
                "must be 0 (unlimited)..1000000",
            );
        }
    }

    /// Checks the codes against the partner's catalogue, and a fixed price against the list
    /// prices it knows (same currency): the campaign price must be below them.
    pub fn check_catalogue(
        &self,
        v: &mut Violations,
        list_prices: &HashMap<String, Option<(i64, String)>>,
        groups: &HashSet<String>,
        brands: &HashSet<String>,
    ) {
        self.products.check_known(
            v,
            &format!("{P}.products"),
            |c| list_prices.contains_key(c),
            groups,
            brands,
        );
        if let Some(Discount::FixedUnitPrice {
            amount_minor,
            currency,
        }) = &self.discount
        {
            for code in &self.products.product_codes {
                if let Some(Some((list, list_currency))) = list_prices.get(code)
                    && list_currency == currency
                    && amount_minor >= list
                {
                    v.add(
                        format!("{P}.fixed_unit_price.amount_minor"),
                        format!("must be below the list price of {code} ({list})"),
                    );
                }
            }
        }
    }

    /// Whether it applies at `at` (active and within its validity).
    pub fn active_at(&self, at: DateTime<Utc>) -> bool {
        self.active && self.validity.contains(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn espresso_at_199() -> CampaignProduct {
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        CampaignProduct {
            id: Uuid::from_u128(7),
            display_name: "Espresso for 1.99".into(),
            description: String::new(),
            products: ProductScope {
                product_codes: vec!["ESP".into()],
                ..Default::default()
            },
            discount: Some(Discount::FixedUnitPrice {
                amount_minor: 199,
                currency: "EUR".into(),
            }),
            validity: Validity {
                from: Some(at),
                until: Some(at + Duration::days(31)),
            },
            business_unit_ids: vec![],
            channels: vec![],
            segment_ids: vec![],
            image_url: String::new(),
            max_quantity_per_purchase: 0,
            active: true,
            revision: 1,
            created_at: at,
            updated_at: at,
        }
    }

    fn fields(v: Violations) -> Vec<String> {
        v.into_vec().into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn a_valid_entry_passes_and_bad_fields_are_named() {
        let mut v = Violations::new();
        espresso_at_199().validate(&mut v);
        assert!(v.is_empty(), "{:?}", fields(v));

        let mut bad = espresso_at_199();
        bad.display_name = " ".into();
        bad.products = ProductScope::default();
        bad.discount = Some(Discount::Percentage { basis_points: 0 });
        bad.validity = Validity {
            from: bad.validity.until,
            until: bad.validity.from,
        };
        bad.image_url = "http://x".into();
        bad.max_quantity_per_purchase = -1;
        let mut v = Violations::new();
        bad.validate(&mut v);
        let f = fields(v);
        for want in [
            "campaign_product.display_name",
            "campaign_product.products",
            "campaign_product.percentage_basis_points",
            "campaign_product.valid_until_time",
            "campaign_product.image_url",
            "campaign_product.max_quantity_per_purchase",
        ] {
            assert!(f.iter().any(|x| x == want), "{want} in {f:?}");
        }

        let mut none = espresso_at_199();
        none.discount = None;
        none.validity.from = None;
        let mut v = Violations::new();
        none.validate(&mut v);
        let f = fields(v);
        assert!(f.contains(&"campaign_product.discount".to_owned()), "{f:?}");
        assert!(
            f.contains(&"campaign_product.valid_from_time".to_owned()),
            "{f:?}"
        );
    }

    #[test]
    fn unknown_codes_and_a_price_not_below_the_list_price_are_refused() {
        let cp = espresso_at_199();
        let groups = HashSet::new();
        let brands = HashSet::new();
        let mut prices = HashMap::new();
        prices.insert("ESP".to_owned(), Some((250, "EUR".to_owned())));
        let mut v = Violations::new();
        cp.check_catalogue(&mut v, &prices, &groups, &brands);
        assert!(v.is_empty());

        prices.insert("ESP".to_owned(), Some((199, "EUR".to_owned())));
        let mut v = Violations::new();
        cp.check_catalogue(&mut v, &prices, &groups, &brands);
        assert_eq!(
            fields(v),
            vec!["campaign_product.fixed_unit_price.amount_minor"]
        );

        // Another currency's list price says nothing about this one.
        prices.insert("ESP".to_owned(), Some((100, "CZK".to_owned())));
        let mut v = Violations::new();
        cp.check_catalogue(&mut v, &prices, &groups, &brands);
        assert!(v.is_empty());

        let mut v = Violations::new();
        cp.check_catalogue(&mut v, &HashMap::new(), &groups, &brands);
        assert_eq!(
            fields(v),
            vec!["campaign_product.products.product_codes[0]"]
        );
    }

    #[test]
    fn a_campaign_price_reaches_the_cart_through_the_engine() {
        use crate::domain::engine::{
            CartLine, CustomerContext, EarnRate, RuleSet, SkipReason, evaluate,
            from_campaign_product, validate_rule,
        };
        let mut cp = espresso_at_199();
        cp.channels = vec![Channel::Pos];
        let rule = from_campaign_product(&cp);
        let mut v = Violations::new();
        validate_rule(&mut v, "campaign_product", &rule);
        assert!(v.is_empty(), "{:?}", v.into_vec());
        let line = |sku: &str, qty: u32, price: i64| CartLine {
            product_id: sku.into(),
            group: None,
            brand: None,
            quantity: qty,
            unit_price_minor: price,
            no_reward_application: false,
            pay_only_with_points: false,
        };
        let mut ctx = CustomerContext {
            customer_id: None,
            segment_ids: vec![],
            level_id: None,
            vouchers: vec![],
            at: cp.validity.from.unwrap() + Duration::days(1),
            utc_offset_minutes: 0,
            business_unit: None,
            channel: Some("pos".into()),
            earn_rate: EarnRate::default(),
            usage: Default::default(),
        };
        let set = RuleSet {
            rules: vec![rule],
            ..Default::default()
        };
        let cart = [line("ESP", 3, 250), line("TEA", 1, 300)];
        // 3 espressos at 1.99 instead of 2.50: 1.53 off; the tea is untouched.
        let e = evaluate(&cart, &ctx, &set);
        assert_eq!(e.discount_minor, 153);
        assert_eq!(e.total_minor, 597 + 300);
        assert_eq!(e.lines[0].discounts[0].reason, "FIXED_PRICE");
        ctx.channel = Some("eshop".into());
        let e = evaluate(&cart, &ctx, &set);
        assert_eq!(e.discount_minor, 0);
        assert_eq!(e.not_applied[0].reason, SkipReason::ChannelNotIncluded);
        ctx.channel = Some("pos".into());
        ctx.at = cp.validity.until.unwrap();
        let e = evaluate(&cart, &ctx, &set);
        assert_eq!(e.not_applied[0].reason, SkipReason::OutsideValidity);

        // A percentage campaign takes its share of each targeted unit.
        cp.discount = Some(Discount::Percentage { basis_points: 2000 });
        let set = RuleSet {
            rules: vec![from_campaign_product(&cp)],
            ..Default::default()
        };
        ctx.at = cp.validity.from.unwrap();
        assert_eq!(evaluate(&cart, &ctx, &set).discount_minor, 150);
    }

    #[test]
    fn an_amount_off_per_unit_and_a_unit_cap_reach_the_cart_through_the_engine() {
        use crate::domain::engine::{
            CartLine, CustomerContext, EarnRate, RuleSet, evaluate, from_campaign_product,
            validate_rule,
        };
        let mut cp = espresso_at_199();
        cp.discount = Some(Discount::AmountOffPerUnit {
            amount_minor: 50,
            currency: "EUR".into(),
        });
        cp.max_quantity_per_purchase = 2;
        let mut v = Violations::new();
        cp.validate(&mut v);
        assert!(v.is_empty(), "{:?}", fields(v));
        let rule = from_campaign_product(&cp);
        let mut v = Violations::new();
        validate_rule(&mut v, "campaign_product", &rule);
        assert!(v.is_empty(), "{:?}", v.into_vec());
        let esp = |qty: u32, price: i64| CartLine {
            product_id: "ESP".into(),
            group: None,
            brand: None,
            quantity: qty,
            unit_price_minor: price,
            no_reward_application: false,
            pay_only_with_points: false,
        };
        let ctx = CustomerContext {
            customer_id: None,
            segment_ids: vec![],
            level_id: None,
            vouchers: vec![],
            at: cp.validity.from.unwrap(),
            utc_offset_minutes: 0,
            business_unit: None,
            channel: None,
            earn_rate: EarnRate::default(),
            usage: Default::default(),
        };
        let set = RuleSet {
            rules: vec![rule],
            ..Default::default()
        };
        // 0.50 off each of at most 2 units: 3 espressos at 2.50 → 1.00 off.
        let e = evaluate(&[esp(3, 250)], &ctx, &set);
        assert_eq!(e.discount_minor, 100);
        assert_eq!(e.lines[0].discounts[0].reason, "UNIT_AMOUNT_DISCOUNT");
        // The cap applies to a fixed price too: 2 of 3 at 1.99.
        cp.discount = Some(Discount::FixedUnitPrice {
            amount_minor: 199,
            currency: "EUR".into(),
        });
        let set = RuleSet {
            rules: vec![from_campaign_product(&cp)],
            ..Default::default()
        };
        assert_eq!(evaluate(&[esp(3, 250)], &ctx, &set).discount_minor, 102);

        let mut bad = espresso_at_199();
        bad.discount = Some(Discount::AmountOffPerUnit {
            amount_minor: 0,
            currency: "eur".into(),
        });
        bad.max_quantity_per_purchase = 1_000_001;
        let mut v = Violations::new();
        bad.validate(&mut v);
        let f = fields(v);
        for want in [
            "campaign_product.amount_off_per_unit.amount_minor",
            "campaign_product.amount_off_per_unit.currency_code",
            "campaign_product.max_quantity_per_purchase",
        ] {
            assert!(f.iter().any(|x| x == want), "{want} in {f:?}");
        }
    }

    #[test]
    fn an_entry_applies_only_when_active_and_valid() {
        let mut cp = espresso_at_199();
        let from = cp.validity.from.unwrap();
        assert!(cp.active_at(from));
        assert!(!cp.active_at(from - Duration::seconds(1)));
        cp.active = false;
        assert!(!cp.active_at(from));
    }
}

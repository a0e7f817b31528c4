//! The product catalogue: products, product groups (a tree) and brands, identified in the
//! partner by their codes (the codes carts carry).
use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use loyalty_platform::Violations;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const MAX_GROUPS_PER_PRODUCT: usize = 50;
pub const MAX_BARCODES: usize = 20;
pub const MAX_PROPERTIES: usize = 100;

/// A product as the partner describes it (everything but the server-assigned fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductSpec {
    pub code: String,
    pub display_name: String,
    pub product_group_codes: Vec<String>,
    /// Empty = none.
    pub brand_code: String,
    /// List price in minor units with its currency; `None` = no list price.
    pub list_price: Option<(i64, String)>,
    pub barcodes: Vec<String>,
    pub image_url: String,
    pub properties: BTreeMap<String, String>,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub id: Uuid,
    pub spec: ProductSpec,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductGroup {
    pub id: Uuid,
    pub code: String,
    pub display_name: String,
    /// Empty = a root group.
    pub parent_group_code: String,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Brand {
    pub id: Uuid,
    pub code: String,
    pub display_name: String,
    pub logo_url: String,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The concurrency token of a catalogue item: its revision.
pub use loyalty_platform::error::revision_etag as etag;

/// A code: 1..64 characters, no whitespace or control characters.
pub fn check_code(v: &mut Violations, field: &str, code: &str) {
    if code.is_empty() {
        v.add(field, "is required");
    } else if code.chars().count() > 64 {
        v.add(field, "must be at most 64 characters");
    } else if code.chars().any(|c| c.is_whitespace() || c.is_control()) {
        v.add(field, "must not contain spaces or control characters");
    }
}

/// A display name: 1..200 characters after trimming.
pub fn check_name(v: &mut Violations, field: &str, name: &str) {
    if name.trim().is_empty() {
        v.add(field, "is required");
    } else if name.chars().count() > 200 {
        v.add(field, "must be at most 200 characters");
    }
}

/// An optional https URL of at most 2048 characters.
pub fn check_url(v: &mut Violations, field: &str, url: &str) {
    if url.is_empty() {
        return;
    }
    if url.chars().count() > 2048 {
        v.add(field, "must be at most 2048 characters");
    } else if !url.starts_with("https://") || url.len() <= "https://".len() {
        v.add(field, "must be an https URL");
    }
}

/// ISO 4217 style: three upper-case letters.
pub fn check_currency(v: &mut Violations, field: &str, currency: &str) {
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
        v.add(field, "must be an ISO 4217 code such as \"EUR\"");
    }
}

impl ProductSpec {
    /// Checks the product's own fields, naming them under `prefix` (e.g. `product` or
    /// `products[3]`). Whether its group and brand exist is the store's to check.
    pub fn validate(&self, v: &mut Violations, prefix: &str) {
        check_code(v, &format!("{prefix}.code"), &self.code);
        check_name(v, &format!("{prefix}.display_name"), &self.display_name);
        if self.product_group_codes.len() > MAX_GROUPS_PER_PRODUCT {
            v.add(
                format!("{prefix}.product_group_codes"),
                format!("at most {MAX_GROUPS_PER_PRODUCT} groups"),
            );
        }
        let mut seen = HashSet::new();
        for (i, g) in self.product_group_codes.iter().enumerate() {
            let field = format!("{prefix}.product_group_codes[{i}]");
            check_code(v, &field, g);
            if !seen.insert(g) {
                v.add(field, "is listed twice");
            }
        }
        if !self.brand_code.is_empty() {
            check_code(v, &format!("{prefix}.brand_code"), &self.brand_code);
        }
        if let Some((amount, currency)) = &self.list_price {
            if *amount < 0 {
                v.add(
                    format!("{prefix}.list_price.amount_minor"),
                    "must not be negative",
                );
            }
            check_currency(v, &format!("{prefix}.list_price.currency_code"), currency);
        }
        if self.barcodes.len() > MAX_BARCODES {
            v.add(
                format!("{prefix}.barcodes"),
                format!("at most {MAX_BARCODES} barcodes"),
            );
        }
        for (i, b) in self.barcodes.iter().enumerate() {
            if !(8..=14).contains(&b.len()) || !b.chars().all(|c| c.is_ascii_digit()) {
                v.add(format!("{prefix}.barcodes[{i}]"), "must be 8..14 digits");
            }
        }
        check_url(v, &format!("{prefix}.image_url"), &self.image_url);
        if self.properties.len() > MAX_PROPERTIES {
            v.add(
                format!("{prefix}.properties"),
                format!("at most {MAX_PROPERTIES} entries"),
            );
        }
        for (key, value) in &self.properties {
            let field = format!("{prefix}.properties[{key}]");
            let key_ok = (1..=64).contains(&key.len())
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !key_ok {
                v.add(field.clone(), "key must be 1..64 characters of [a-z0-9_]");
            }
            if value.chars().count() > 1024 {
                v.add(field, "value must be at most 1024 characters");
            }
        }
    }
}

/// A product's group and brand codes must name the partner's groups and brands.
pub fn check_references(
    v: &mut Violations,
    prefix: &str,
    spec: &ProductSpec,
    groups: &HashSet<String>,
    brands: &HashSet<String>,
) {
    for (i, g) in spec.product_group_codes.iter().enumerate() {
        if !g.is_empty() && !groups.contains(g) {
            v.add(
                format!("{prefix}.product_group_codes[{i}]"),
                format!("no product group has the code {g:?}"),
            );
        }
    }
    if !spec.brand_code.is_empty() && !brands.contains(&spec.brand_code) {
        v.add(
            format!("{prefix}.brand_code"),
            format!("no brand has the code {:?}", spec.brand_code),
        );
    }
}

/// The group codes of `root` and all its descendants, given each group's parent code.
pub fn subtree(parents: &HashMap<String, String>, root: &str) -> Vec<String> {
    let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
    for (code, parent) in parents {
        if !parent.is_empty() {
            children.entry(parent.as_str()).or_default().push(code);
        }
    }
    let mut out = vec![root.to_owned()];
    let mut seen: HashSet<String> = out.iter().cloned().collect();
    let mut i = 0;
    while i < out.len() {
        if let Some(kids) = children.get(out[i].as_str()) {
            for k in kids {
                if seen.insert((*k).to_owned()) {
                    out.push((*k).to_owned());
                }
            }
        }
        i += 1;
    }
    out
}

/// Whether making `parent` the parent of `code` would close a cycle: `parent` is `code`
/// itself or one of its descendants.
pub fn would_cycle(parents: &HashMap<String, String>, code: &str, parent: &str) -> bool {
    !parent.is_empty() && subtree(parents, code).iter().any(|c| c == parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ProductSpec {
        ProductSpec {
            code: "SKU-1".into(),
            display_name: "Espresso".into(),
            active: true,
            ..Default::default()
        }
    }

    fn fields(v: Violations) -> Vec<String> {
        v.into_vec().into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn a_plain_product_is_valid() {
        let mut v = Violations::new();
        spec().validate(&mut v, "product");
        assert!(v.is_empty());
    }

    #[test]
    fn bad_fields_are_named_under_the_prefix() {
        let mut v = Violations::new();
        ProductSpec {
            code: "has space".into(),
            display_name: " ".into(),
            product_group_codes: vec!["A".into(), "A".into()],
            list_price: Some((-1, "eur".into())),
            barcodes: vec!["12".into()],
            image_url: "http://x".into(),
            properties: [("Bad-Key".to_owned(), "v".to_owned())].into(),
            ..spec()
        }
        .validate(&mut v, "products[2]");
        assert_eq!(
            fields(v),
            [
                "products[2].code",
                "products[2].display_name",
                "products[2].product_group_codes[1]",
                "products[2].list_price.amount_minor",
                "products[2].list_price.currency_code",
                "products[2].barcodes[0]",
                "products[2].image_url",
                "products[2].properties[Bad-Key]",
            ]
        );
    }

    #[test]
    fn subtree_and_cycles() {
        let parents: HashMap<String, String> = [
            ("food", ""),
            ("drinks", "food"),
            ("coffee", "drinks"),
            ("toys", ""),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
        let mut sub = subtree(&parents, "food");
        sub.sort();
        assert_eq!(sub, ["coffee", "drinks", "food"]);
        assert!(would_cycle(&parents, "food", "coffee"));
        assert!(would_cycle(&parents, "food", "food"));
        assert!(!would_cycle(&parents, "coffee", "toys"));
        assert!(!would_cycle(&parents, "coffee", ""));
    }
}

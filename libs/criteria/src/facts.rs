//! What is known about a customer (and their cart) when a criterion is evaluated.
use std::collections::HashMap;

use crate::Field;

/// A fact about a customer or a cart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    String(String),
    Int(i64),
    Bool(bool),
    List(Vec<String>),
}

/// The facts of one customer, keyed by canonical field path (see [`Field::path`]), e.g.
/// `customer.city`, `customer.properties.vip`, `features.purchase_count`, `cart.total_minor`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts(HashMap<String, Fact>);

impl Facts {
    /// Adds (or replaces) a fact; for building.
    #[must_use]
    pub fn with(mut self, path: impl Into<String>, fact: Fact) -> Self {
        self.insert(path, fact);
        self
    }

    /// Adds (or replaces) a fact.
    pub fn insert(&mut self, path: impl Into<String>, fact: Fact) {
        self.0.insert(path.into(), fact);
    }

    /// Removes a fact.
    pub fn remove(&mut self, path: &str) -> Option<Fact> {
        self.0.remove(path)
    }

    /// The fact of a field.
    pub fn get(&self, field: &Field) -> Option<&Fact> {
        self.0.get(&field.path())
    }

    /// The fact stored under a path.
    pub fn get_path(&self, path: &str) -> Option<&Fact> {
        self.0.get(path)
    }

    /// Every fact, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Fact)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of facts.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<String>> FromIterator<(K, Fact)> for Facts {
    fn from_iter<I: IntoIterator<Item = (K, Fact)>>(iter: I) -> Self {
        Facts(iter.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl<K: Into<String>> Extend<(K, Fact)> for Facts {
    fn extend<I: IntoIterator<Item = (K, Fact)>>(&mut self, iter: I) {
        self.0.extend(iter.into_iter().map(|(k, v)| (k.into(), v)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_found_by_the_canonical_path_of_a_field() {
        let f = Facts::default().with("customer.properties.vip", Fact::Bool(true));
        assert_eq!(
            f.get(&Field::Property("vip".into())),
            Some(&Fact::Bool(true))
        );
        assert_eq!(f.get(&Field::Customer("vip".into())), None);
    }

    #[test]
    fn a_later_fact_replaces_an_earlier_one() {
        let mut f: Facts = [("cart.line_count", Fact::Int(1))].into_iter().collect();
        f.extend([("cart.line_count", Fact::Int(2))]);
        assert_eq!(f.get_path("cart.line_count"), Some(&Fact::Int(2)));
        assert_eq!(f.len(), 1);
        assert_eq!(f.remove("cart.line_count"), Some(Fact::Int(2)));
        assert!(f.is_empty());
    }
}

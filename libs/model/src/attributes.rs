//! A context's attributes, laid out for the evaluation hot path.

use std::collections::HashMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Up to this many attributes, lookups scan; beyond it they go through a hash index.
const SCAN_LIMIT: usize = 16;

/// A context's top-level attributes, in insertion order.
///
/// Evaluation looks attributes up on every clause of every flag, so this is tuned for that: a
/// typical context has a handful of attributes, and scanning them comparing lengths first costs a
/// fraction of hashing the name. A context with many attributes (clients are untrusted) gets a hash
/// index, seeded per process so names cannot be chosen to collide.
#[derive(Clone, Default)]
pub struct Attributes {
    entries: Vec<(String, Value)>,
    index: Option<HashMap<String, usize, foldhash::fast::RandomState>>,
}

impl Attributes {
    /// No attributes.
    pub fn new() -> Attributes {
        Attributes::default()
    }

    /// The attribute called `name`.
    #[inline]
    pub fn get(&self, name: &str) -> Option<&Value> {
        match &self.index {
            None => self
                .entries
                .iter()
                .find(|(key, _)| key.len() == name.len() && key == name)
                .map(|(_, value)| value),
            Some(index) => index.get(name).map(|&i| &self.entries[i].1),
        }
    }

    /// Sets an attribute, replacing any value it had.
    pub fn insert(&mut self, name: String, value: Value) {
        if let Some(i) = self.position(&name) {
            self.entries[i].1 = value;
            return;
        }
        if let Some(index) = &mut self.index {
            index.insert(name.clone(), self.entries.len());
        }
        self.entries.push((name, value));
        if self.index.is_none() && self.entries.len() > SCAN_LIMIT {
            self.index = Some(self.entries.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect());
        }
    }

    /// Removes an attribute, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let i = self.position(name)?;
        let (_, value) = self.entries.remove(i);
        if self.index.is_some() {
            self.index = (self.entries.len() > SCAN_LIMIT)
                .then(|| self.entries.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect());
        }
        Some(value)
    }

    fn position(&self, name: &str) -> Option<usize> {
        match &self.index {
            None => self.entries.iter().position(|(key, _)| key == name),
            Some(index) => index.get(name).copied(),
        }
    }

    /// How many attributes there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The attributes in insertion order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl PartialEq for Attributes {
    /// Equal when they hold the same names with the same values, in any order.
    fn eq(&self, other: &Attributes) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Attributes {
        let mut attributes = Attributes::new();
        for (k, v) in iter {
            attributes.insert(k.into(), v.into());
        }
        attributes
    }
}

impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Attributes, D::Error> {
        struct AttributesVisitor;
        impl<'de> Visitor<'de> for AttributesVisitor {
            type Value = Attributes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of attributes")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Attributes, A::Error> {
                let mut attributes = Attributes::new();
                while let Some((k, v)) = access.next_entry::<String, Value>()? {
                    // A repeated name keeps its last value, as JSON parsers commonly do.
                    attributes.insert(k, v);
                }
                Ok(attributes)
            }
        }
        deserializer.deserialize_map(AttributesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    proptest! {
        #[test]
        fn it_behaves_like_a_map_small_or_large(ops in prop::collection::vec(("[a-e]{1,2}", any::<i32>(), any::<bool>()), 0..80)) {
            let mut ours = Attributes::new();
            let mut reference = std::collections::BTreeMap::new();
            for (name, value, remove) in ops {
                if remove {
                    prop_assert_eq!(ours.remove(&name), reference.remove(&name).map(Value::from));
                } else {
                    ours.insert(name.clone(), value.into());
                    reference.insert(name, value);
                }
                prop_assert_eq!(ours.len(), reference.len());
                for (k, v) in &reference {
                    prop_assert_eq!(ours.get(k), Some(&Value::from(*v)));
                }
            }
        }
    }

    #[test]
    fn a_repeated_name_keeps_its_last_value() {
        let attributes: Attributes = serde_json::from_str(r#"{"a": 1, "b": 2, "a": 3}"#).unwrap();
        assert_eq!(attributes.get("a"), Some(&json!(3)));
        assert_eq!(attributes.len(), 2);
    }

    #[test]
    fn a_large_context_is_indexed() {
        let attributes: Attributes = (0..100).map(|i| (format!("attr-{i}"), i)).collect();
        assert!(attributes.index.is_some());
        assert_eq!(attributes.get("attr-77"), Some(&json!(77)));
        assert_eq!(serde_json::to_value(&attributes).unwrap()["attr-3"], json!(3));
    }
}

//! The evaluation context: who or what a flag is evaluated for.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::attributes::Attributes;

/// An OpenFeature-compatible evaluation context: an optional `targetingKey` plus any JSON attributes.
///
/// In JSON it is one flat object: `{"targetingKey": "user-1", "country": "DE", "app": {"version": "2.1"}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// The key that identifies the subject; used by targets, segments and (by default) rollouts.
    #[serde(rename = "targetingKey", default, skip_serializing_if = "Option::is_none")]
    pub targeting_key: Option<String>,
    /// Every other attribute.
    #[serde(flatten)]
    pub attributes: Attributes,
}

impl Context {
    /// A context with a targeting key and no attributes.
    pub fn new(targeting_key: impl Into<String>) -> Context {
        Context { targeting_key: Some(targeting_key.into()), attributes: Attributes::new() }
    }

    /// A context with no targeting key, for evaluations that need none.
    pub fn anonymous() -> Context {
        Context::default()
    }

    /// Adds an attribute (builder style).
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Context {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// The targeting key, when there is a non-empty one.
    pub fn targeting_key(&self) -> Option<&str> {
        self.targeting_key.as_deref().filter(|key| !key.is_empty())
    }

    /// Looks up an attribute by its path segments, walking nested objects. `null` counts as missing.
    pub fn attribute<I, S>(&self, segments: I) -> Option<&Value>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut segments = segments.into_iter();
        let mut current = self.attributes.get(segments.next()?.as_ref())?;
        for segment in segments {
            current = current.as_object()?.get(segment.as_ref())?;
        }
        (!current.is_null()).then_some(current)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_context_reads_from_flat_openfeature_json() {
        let ctx: Context = serde_json::from_value(json!({
            "targetingKey": "user-1", "country": "DE", "app": {"version": "2.1"}
        }))
        .unwrap();
        assert_eq!(ctx.targeting_key(), Some("user-1"));
        assert_eq!(ctx.attribute(["app", "version"]), Some(&json!("2.1")));
        assert_eq!(ctx.attribute(["country"]), Some(&json!("DE")));
        assert_eq!(ctx.attribute(["app", "missing"]), None);
        assert_eq!(ctx.attribute(["country", "deeper"]), None);
    }

    #[test]
    fn an_empty_context_is_accepted_and_has_no_key() {
        let ctx: Context = serde_json::from_value(json!({})).unwrap();
        assert_eq!(ctx.targeting_key(), None);
        let ctx: Context = serde_json::from_value(json!({"targetingKey": ""})).unwrap();
        assert_eq!(ctx.targeting_key(), None);
    }

    #[test]
    fn a_non_string_targeting_key_is_rejected() {
        assert!(serde_json::from_value::<Context>(json!({"targetingKey": 5})).is_err());
    }

    #[test]
    fn null_attributes_count_as_missing() {
        let ctx = Context::new("u").with("plan", Value::Null);
        assert_eq!(ctx.attribute(["plan"]), None);
    }

    #[test]
    fn a_context_serialises_back_to_the_same_shape() {
        let ctx = Context::new("u").with("beta", true);
        assert_eq!(serde_json::to_value(&ctx).unwrap(), json!({"targetingKey": "u", "beta": true}));
    }
}

//! Segments: reusable groups of contexts.

use std::collections::HashSet;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

use crate::config::{Clause, MAX_RULES, MAX_VALUES, check_clauses};
use crate::keys::{RuleId, SegmentKey};
use crate::validation::{ValidationErrors, field, index};

/// A segment rule: its clauses (ANDed) put a context in the segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SegmentRule {
    /// Unique within the segment.
    pub id: RuleId,
    /// Conditions, ANDed. `segment_match` is not allowed here, so segments cannot form cycles.
    pub clauses: Vec<Clause>,
}

/// A segment as written, not yet checked. See [`Segment`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SegmentSpec {
    /// Unique within the environment.
    pub key: SegmentKey,
    /// Display name; defaults to the key when empty.
    #[serde(default)]
    pub name: String,
    /// Free text for people.
    #[serde(default)]
    pub description: String,
    /// Targeting keys always in the segment (unless also excluded).
    #[serde(default)]
    pub included: Vec<String>,
    /// Targeting keys never in the segment; exclusion wins over inclusion and rules.
    #[serde(default)]
    pub excluded: Vec<String>,
    /// Any matching rule puts a context in the segment.
    #[serde(default)]
    pub rules: Vec<SegmentRule>,
    /// Bumped by the control plane on every change.
    #[serde(default)]
    pub version: u64,
}

/// A valid segment: built only by [`Segment::parse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SegmentSpec", into = "SegmentSpec")]
pub struct Segment(SegmentSpec);

impl Segment {
    /// Checks a segment: unique rule ids, readable clause values, no `segment_match` in its rules,
    /// list sizes within limits. Fills an empty name with the key.
    pub fn parse(mut spec: SegmentSpec) -> Result<Segment, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if spec.name.is_empty() {
            spec.name = spec.key.to_string();
        }
        for (name, keys) in [("included", &spec.included), ("excluded", &spec.excluded)] {
            if keys.len() > MAX_VALUES {
                errors.push(name, format!("at most {MAX_VALUES} keys"));
            }
            if let Some(i) = keys.iter().position(String::is_empty) {
                errors.push(index(name, i), "must not be empty");
            }
        }
        if spec.rules.len() > MAX_RULES {
            errors.push("rules", format!("at most {MAX_RULES} rules"));
        }
        let mut ids = HashSet::new();
        for (i, rule) in spec.rules.iter().enumerate() {
            let at = index("rules", i);
            if !ids.insert(&rule.id) {
                errors.push(field(&at, "id"), format!("duplicate rule id {:?}", rule.id.as_str()));
            }
            check_clauses(&mut errors, &at, &rule.clauses, false);
        }
        errors.into_result().map(|()| Segment(spec))
    }

    /// The validated spec.
    pub fn spec(&self) -> &SegmentSpec {
        &self.0
    }

    /// Gives the spec back.
    pub fn into_spec(self) -> SegmentSpec {
        self.0
    }
}

impl Deref for Segment {
    type Target = SegmentSpec;
    fn deref(&self) -> &SegmentSpec {
        &self.0
    }
}

impl TryFrom<SegmentSpec> for Segment {
    type Error = ValidationErrors;
    fn try_from(spec: SegmentSpec) -> Result<Segment, ValidationErrors> {
        Segment::parse(spec)
    }
}

impl From<Segment> for SegmentSpec {
    fn from(segment: Segment) -> SegmentSpec {
        segment.0
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_segment_cannot_reference_another_segment() {
        let spec: SegmentSpec = serde_json::from_value(json!({"key": "beta", "rules": [
            {"id": "r", "clauses": [{"attribute": "targetingKey", "op": "segment_match", "values": ["other"]}]}
        ]}))
        .unwrap();
        let err = Segment::parse(spec).unwrap_err();
        assert!(err.has_field("rules[0].clauses[0].op"), "{err}");
    }

    #[test]
    fn a_valid_segment_parses_and_names_itself() {
        let spec: SegmentSpec = serde_json::from_value(json!({"key": "beta-testers",
            "included": ["u1"], "excluded": ["u2"],
            "rules": [{"id": "staff", "clauses": [{"attribute": "email", "op": "ends_with", "values": ["@vexil.dev"]}]}]}))
        .unwrap();
        let segment = Segment::parse(spec).unwrap();
        assert_eq!(segment.name, "beta-testers");
    }

    #[test]
    fn an_empty_included_key_is_named() {
        let spec: SegmentSpec = serde_json::from_value(json!({"key": "s", "included": ["a", ""]})).unwrap();
        assert!(Segment::parse(spec).unwrap_err().has_field("included[1]"));
    }
}

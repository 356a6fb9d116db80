//! Flags and their variations.

use std::collections::HashSet;
use std::ops::Deref;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::keys::FlagKey;
use crate::validation::{ValidationErrors, field, index};

/// Most variations a flag may have.
pub const MAX_VARIATIONS: usize = 100;
/// Longest name, tag or variation name, in characters.
pub const MAX_NAME_LEN: usize = 256;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 10_000;
/// Most tags on one flag.
pub const MAX_TAGS: usize = 50;

/// The type of a flag's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum FlagKind {
    /// `true` or `false`.
    Boolean,
    /// Any string.
    String,
    /// Any JSON number, integer or floating point.
    Number,
    /// Any JSON value.
    Json,
}

impl FlagKind {
    /// Whether `value` is a value of this kind.
    pub fn admits(self, value: &Value) -> bool {
        match self {
            FlagKind::Boolean => value.is_boolean(),
            FlagKind::String => value.is_string(),
            FlagKind::Number => value.is_number(),
            FlagKind::Json => true,
        }
    }

    /// The kind's name as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FlagKind::Boolean => "boolean",
            FlagKind::String => "string",
            FlagKind::Number => "number",
            FlagKind::Json => "json",
        }
    }
}

/// One of the values a flag can serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Variation {
    /// The value served.
    pub value: Value,
    /// A human name, also reported as the OpenFeature `variant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A flag as written by a person or pipeline, not yet checked. See [`Flag`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlagSpec {
    /// Unique key within the project.
    pub key: FlagKey,
    /// Display name; defaults to the key when empty.
    #[serde(default)]
    pub name: String,
    /// Free text for people.
    #[serde(default)]
    pub description: String,
    /// Labels for finding flags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The type of the flag's values.
    pub kind: FlagKind,
    /// The values the flag can serve, referenced by index everywhere else.
    pub variations: Vec<Variation>,
    /// Whether client (browser, mobile) keys may see this flag.
    #[serde(default)]
    pub client_side: bool,
    /// Whether the flag is meant to be removed once rolled out.
    #[serde(default)]
    pub temporary: bool,
    /// Archived flags are hidden from listings and evaluate as not found.
    #[serde(default)]
    pub archived: bool,
}

/// A flag whose every field is valid: built only by [`Flag::parse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "FlagSpec", into = "FlagSpec")]
pub struct Flag(FlagSpec);

impl Flag {
    /// Checks a spec: variation values match the kind, 1 to 100 variations, variation names unique,
    /// lengths of names, tags and description within limits. Fills an empty name with the key.
    pub fn parse(mut spec: FlagSpec) -> Result<Flag, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if spec.name.is_empty() {
            spec.name = spec.key.to_string();
        }
        check_len(&mut errors, "name", &spec.name, MAX_NAME_LEN);
        check_len(&mut errors, "description", &spec.description, MAX_DESCRIPTION_LEN);
        if spec.tags.len() > MAX_TAGS {
            errors.push("tags", format!("at most {MAX_TAGS} tags"));
        }
        for (i, tag) in spec.tags.iter().enumerate() {
            if tag.trim().is_empty() {
                errors.push(index("tags", i), "must not be blank");
            }
            check_len(&mut errors, &index("tags", i), tag, MAX_NAME_LEN);
        }
        if spec.variations.is_empty() || spec.variations.len() > MAX_VARIATIONS {
            errors.push("variations", format!("a flag needs 1 to {MAX_VARIATIONS} variations"));
        }
        let mut names = HashSet::new();
        for (i, variation) in spec.variations.iter().enumerate() {
            let at = index("variations", i);
            if !spec.kind.admits(&variation.value) {
                errors.push(
                    field(&at, "value"),
                    format!("must be a {} value, like the flag's kind", spec.kind.as_str()),
                );
            }
            if let Some(name) = &variation.name {
                if name.is_empty() {
                    errors.push(field(&at, "name"), "must not be empty when given");
                } else if !names.insert(name.as_str()) {
                    errors.push(field(&at, "name"), format!("duplicate variation name {name:?}"));
                }
                check_len(&mut errors, &field(&at, "name"), name, MAX_NAME_LEN);
            }
        }
        errors.into_result().map(|()| Flag(spec))
    }

    /// The validated spec.
    pub fn spec(&self) -> &FlagSpec {
        &self.0
    }

    /// Gives the spec back, e.g. to change it and parse it again.
    pub fn into_spec(self) -> FlagSpec {
        self.0
    }

    /// The name reported as the OpenFeature `variant` of a variation: its name, else its index.
    pub fn variant_name(&self, variation: usize) -> std::borrow::Cow<'_, str> {
        match self.0.variations.get(variation).and_then(|v| v.name.as_deref()) {
            Some(name) => std::borrow::Cow::Borrowed(name),
            None => std::borrow::Cow::Owned(variation.to_string()),
        }
    }
}

fn check_len(errors: &mut ValidationErrors, at: &str, text: &str, max: usize) {
    let len = text.chars().count();
    if len > max {
        errors.push(at, format!("must be at most {max} characters, got {len}"));
    }
}

impl Deref for Flag {
    type Target = FlagSpec;
    fn deref(&self) -> &FlagSpec {
        &self.0
    }
}

impl TryFrom<FlagSpec> for Flag {
    type Error = ValidationErrors;
    fn try_from(spec: FlagSpec) -> Result<Flag, ValidationErrors> {
        Flag::parse(spec)
    }
}

impl From<Flag> for FlagSpec {
    fn from(flag: Flag) -> FlagSpec {
        flag.0
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(value: Value) -> FlagSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_design_example_parses() {
        let flag = Flag::parse(spec(json!({
            "key": "new-checkout", "name": "New checkout", "kind": "boolean",
            "variations": [{"value": true, "name": "on"}, {"value": false, "name": "off"}],
            "tags": ["checkout"], "client_side": true, "temporary": true
        })))
        .unwrap();
        assert_eq!(flag.key.as_str(), "new-checkout");
        assert!(flag.client_side);
        assert_eq!(flag.variant_name(1), "off");
    }

    #[test]
    fn a_variation_of_the_wrong_kind_is_named_by_path() {
        let err = Flag::parse(spec(json!({
            "key": "f", "kind": "number", "variations": [{"value": 1}, {"value": "two"}]
        })))
        .unwrap_err();
        assert!(err.has_field("variations[1].value"), "{err}");
        assert_eq!(err.errors().len(), 1);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = Flag::parse(spec(json!({
            "key": "f", "kind": "boolean", "tags": [" "],
            "variations": [{"value": true, "name": "x"}, {"value": false, "name": "x"}]
        })))
        .unwrap_err();
        assert!(err.has_field("tags[0]"), "{err}");
        assert!(err.has_field("variations[1].name"), "{err}");
    }

    #[test]
    fn a_flag_without_variations_is_rejected() {
        let err = Flag::parse(spec(json!({"key": "f", "kind": "json", "variations": []}))).unwrap_err();
        assert!(err.has_field("variations"));
    }

    #[test]
    fn an_empty_name_defaults_to_the_key_and_an_unnamed_variant_to_its_index() {
        let flag =
            Flag::parse(spec(json!({"key": "f", "kind": "string", "variations": [{"value": "a"}]}))).unwrap();
        assert_eq!(flag.name, "f");
        assert_eq!(flag.variant_name(0), "0");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_value::<FlagSpec>(
            json!({"key": "f", "kind": "json", "variations": [], "colour": "red"}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("colour"));
    }

    #[test]
    fn an_invalid_flag_cannot_be_deserialised() {
        let result = serde_json::from_value::<Flag>(
            json!({"key": "f", "kind": "boolean", "variations": [{"value": 1}]}),
        );
        assert!(result.unwrap_err().to_string().contains("variations[0].value"));
    }
}

//! Identifier newtypes. Each can only hold a value that passed its `parse`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest key or identifier accepted, in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// Why a key or attribute path was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The value was empty.
    #[error("must not be empty")]
    Empty,
    /// The value was longer than [`MAX_KEY_LEN`].
    #[error("must be at most {MAX_KEY_LEN} bytes long, got {0}")]
    TooLong(usize),
    /// The value contained a character outside `[A-Za-z0-9._-]`.
    #[error("may contain only letters, digits, '.', '_' and '-'; found {0:?}")]
    InvalidChar(char),
    /// An attribute path had an empty segment (leading, trailing or doubled dot).
    #[error("must be dot-separated names with no empty part (like \"address.country\")")]
    EmptySegment,
    /// An attribute path contained whitespace or a control character.
    #[error("must not contain whitespace or control characters; found {0:?}")]
    InvalidPathChar(char),
}

fn check_key(value: &str) -> Result<(), KeyError> {
    if value.is_empty() {
        return Err(KeyError::Empty);
    }
    if value.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong(value.len()));
    }
    // Keys travel unescaped in URL paths (several OFREP clients do this), hence the narrow alphabet.
    match value.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        Some(c) => Err(KeyError::InvalidChar(c)),
        None => Ok(()),
    }
}

macro_rules! key_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses a key: 1 to 256 bytes of `[A-Za-z0-9._-]`.
            pub fn parse(value: impl Into<String>) -> Result<Self, KeyError> {
                let value = value.into();
                check_key(&value)?;
                Ok(Self(value))
            }

            /// The key as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = KeyError;
            fn try_from(value: String) -> Result<Self, KeyError> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(key: $name) -> String {
                key.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
    };
}

key_type!(
    /// A flag's key, unique within a project.
    FlagKey
);
key_type!(
    /// A segment's key, unique within an environment.
    SegmentKey
);
key_type!(
    /// A project's key.
    ProjectKey
);
key_type!(
    /// An environment's key, unique within a project (e.g. `production`).
    EnvironmentKey
);
key_type!(
    /// A rule's id, unique within one flag configuration or segment; reported in `RULE_MATCH` reasons.
    RuleId
);
key_type!(
    /// The key of an experiment a rollout is linked to.
    ExperimentKey
);

/// A dotted path into a [`Context`](crate::Context), such as `address.country`.
///
/// `targetingKey` names the context's targeting key; any other path walks nested JSON objects one
/// segment at a time. Attribute names that themselves contain a dot cannot be addressed.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AttributePath(String);

impl AttributePath {
    /// The path of the context's targeting key.
    pub const TARGETING_KEY: &'static str = "targetingKey";

    /// Parses a path: dot-separated non-empty names, no whitespace or control characters.
    pub fn parse(value: impl Into<String>) -> Result<Self, KeyError> {
        let value = value.into();
        if value.is_empty() {
            return Err(KeyError::Empty);
        }
        if value.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong(value.len()));
        }
        if let Some(c) = value.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(KeyError::InvalidPathChar(c));
        }
        if value.split('.').any(str::is_empty) {
            return Err(KeyError::EmptySegment);
        }
        Ok(Self(value))
    }

    /// The path of the targeting key.
    pub fn targeting_key() -> Self {
        Self(Self::TARGETING_KEY.to_owned())
    }

    /// Whether this path names the targeting key.
    pub fn is_targeting_key(&self) -> bool {
        self.0 == Self::TARGETING_KEY
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path's segments, outermost first.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }
}

impl Default for AttributePath {
    fn default() -> Self {
        Self::targeting_key()
    }
}

impl TryFrom<String> for AttributePath {
    type Error = KeyError;
    fn try_from(value: String) -> Result<Self, KeyError> {
        Self::parse(value)
    }
}

impl From<AttributePath> for String {
    fn from(path: AttributePath) -> String {
        path.0
    }
}

impl fmt::Display for AttributePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AttributePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use test_case::test_case;

    use super::*;

    #[test_case("new-checkout"; "dashes")]
    #[test_case("beta.search_v2"; "dots and underscores")]
    #[test_case("A"; "one letter")]
    fn a_well_formed_key_parses(key: &str) {
        assert_eq!(FlagKey::parse(key).unwrap().as_str(), key);
    }

    #[test_case("", KeyError::Empty; "empty")]
    #[test_case("new checkout", KeyError::InvalidChar(' '); "space")]
    #[test_case("a/b", KeyError::InvalidChar('/'); "slash")]
    #[test_case("über", KeyError::InvalidChar('ü'); "non ascii")]
    fn a_malformed_key_is_rejected(key: &str, expected: KeyError) {
        assert_eq!(FlagKey::parse(key).unwrap_err(), expected);
    }

    #[test]
    fn a_key_longer_than_the_limit_is_rejected() {
        let key = "k".repeat(MAX_KEY_LEN + 1);
        assert_eq!(FlagKey::parse(key).unwrap_err(), KeyError::TooLong(MAX_KEY_LEN + 1));
    }

    #[test]
    fn a_key_cannot_be_deserialised_from_a_bad_string() {
        let err = serde_json::from_str::<FlagKey>("\"no spaces\"").unwrap_err();
        assert!(err.to_string().contains("may contain only"), "{err}");
    }

    #[test_case("address.country", &["address", "country"]; "nested")]
    #[test_case("targetingKey", &["targetingKey"]; "targeting key")]
    #[test_case("user-agent", &["user-agent"]; "dash")]
    fn an_attribute_path_splits_on_dots(path: &str, segments: &[&str]) {
        let parsed = AttributePath::parse(path).unwrap();
        assert_eq!(parsed.segments().collect::<Vec<_>>(), segments);
    }

    #[test_case(".a"; "leading dot")]
    #[test_case("a..b"; "double dot")]
    #[test_case("a."; "trailing dot")]
    #[test_case("a b"; "space")]
    #[test_case(""; "empty")]
    fn a_malformed_attribute_path_is_rejected(path: &str) {
        assert!(AttributePath::parse(path).is_err());
    }
}

/// OpenAPI schemas for the identifier types: strings with their pattern.
#[cfg(feature = "openapi")]
mod openapi {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

    fn string(pattern: &str, description: &str) -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(pattern))
            .min_length(Some(1))
            .max_length(Some(super::MAX_KEY_LEN))
            .description(Some(description))
            .into()
    }

    macro_rules! key_schema {
        ($($name:ident: $description:literal),* $(,)?) => {$(
            impl utoipa::PartialSchema for super::$name {
                fn schema() -> RefOr<Schema> {
                    string("^[A-Za-z0-9._-]+$", $description)
                }
            }
            impl utoipa::ToSchema for super::$name {}
        )*};
    }

    key_schema!(
        FlagKey: "A flag key: letters, digits, '.', '_' and '-'.",
        SegmentKey: "A segment key: letters, digits, '.', '_' and '-'.",
        ProjectKey: "A project key: letters, digits, '.', '_' and '-'.",
        EnvironmentKey: "An environment key: letters, digits, '.', '_' and '-'.",
        RuleId: "A rule id, unique within its configuration.",
        ExperimentKey: "An experiment key.",
    );

    impl utoipa::PartialSchema for super::AttributePath {
        fn schema() -> RefOr<Schema> {
            string(
                "^[^.\\s]+(\\.[^.\\s]+)*$",
                "A dotted path into the context, e.g. `address.country`; `targetingKey` is the targeting key.",
            )
        }
    }
    impl utoipa::ToSchema for super::AttributePath {}
}

//! JSON request bodies parsed into typed requests, naming the offending field by path.

use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};

/// Why a body is not the JSON a route expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON at all (a syntax error, or cut short).
    Syntax(String),
    /// JSON of the wrong shape; `field` is the path of the offending value (`.` for the whole body).
    Shape {
        /// Path of the offending value, e.g. `rules[0].clauses[1].op` or `context.targetingKey`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Parses JSON into `T`. On failure, names the field by its path; a missing field is named itself
/// (serde reports it at the object that lacks it).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let message = inner.to_string();
        // serde_json appends " at line L column C"; the field path says more.
        let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
        if inner.is_syntax() || inner.is_eof() {
            return JsonError::Syntax(message);
        }
        match message.strip_prefix("missing field `").and_then(|rest| rest.strip_suffix('`')) {
            Some(missing) if path == "." => JsonError::Shape { field: missing.to_owned(), message },
            Some(missing) => JsonError::Shape { field: format!("{path}.{missing}"), message },
            None => JsonError::Shape { field: path, message },
        }
    })?;
    deserializer
        .end()
        .map_err(|error| JsonError::Syntax(format!("unexpected data after the JSON value: {error}")))?;
    Ok(value)
}

impl From<JsonError> for ApiError {
    fn from(error: JsonError) -> ApiError {
        match error {
            JsonError::Syntax(message) => {
                ApiError::new(ErrorCode::InvalidBody, format!("the body is not valid JSON: {message}"))
            }
            JsonError::Shape { field, message } if field == "." => ApiError::new(
                ErrorCode::InvalidBody,
                format!("the body does not have the expected shape: {message}"),
            ),
            JsonError::Shape { field, message } => ApiError::field(ErrorCode::InvalidBody, field, message),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        on: bool,
        name: String,
    }

    #[test]
    fn a_failure_names_the_field_by_path() {
        let wrong = parse::<Outer>(br#"{"inner": {"on": "yes", "name": "x"}}"#).unwrap_err();
        assert!(matches!(wrong, JsonError::Shape { ref field, .. } if field == "inner.on"), "{wrong:?}");
        let missing = parse::<Outer>(br#"{"inner": {"on": true}}"#).unwrap_err();
        assert!(
            matches!(missing, JsonError::Shape { ref field, .. } if field == "inner.name"),
            "{missing:?}"
        );
        let unknown = parse::<Outer>(br#"{"inner": {"on": true, "name": "x"}, "colour": 1}"#).unwrap_err();
        assert!(matches!(unknown, JsonError::Shape { ref field, .. } if field == "colour"), "{unknown:?}");
        assert!(matches!(parse::<Outer>(b"{"), Err(JsonError::Syntax(_))));
        assert!(matches!(
            parse::<Outer>(br#"{"inner": {"on": true, "name": "x"}} x"#),
            Err(JsonError::Syntax(_))
        ));
    }
}

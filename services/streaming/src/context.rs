//! The evaluation context of a client stream, which travels in the URL (EventSource sends no body and
//! no headers): `?context=<base64url of the context JSON>`.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use vexil_model::Context;

/// Why a `context` parameter was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ContextError {
    /// Not base64url (RFC 4648 §5, with or without `=` padding).
    NotBase64,
    /// Not a JSON object of the OpenFeature context shape (e.g. a non-string `targetingKey`).
    NotAContext(String),
}

impl std::fmt::Display for ContextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContextError::NotBase64 => {
                f.write_str("the context must be base64url (RFC 4648 §5) of a JSON object")
            }
            ContextError::NotAContext(error) => {
                write!(f, "the context is not a valid evaluation context: {error}")
            }
        }
    }
}

/// Decodes `?context=`: base64url (padded or not; the standard alphabet's `+` and `/` are accepted
/// too) of a JSON object such as `{"targetingKey": "user-1", "country": "DE"}`.
pub fn parse(encoded: &str) -> Result<Context, ContextError> {
    let json = decode_base64url(encoded).ok_or(ContextError::NotBase64)?;
    let value: serde_json::Value =
        serde_json::from_slice(&json).map_err(|error| ContextError::NotAContext(error.to_string()))?;
    if !value.is_object() {
        return Err(ContextError::NotAContext("it must be a JSON object".into()));
    }
    serde_json::from_value(value).map_err(|error| ContextError::NotAContext(error.to_string()))
}

/// Base64url, padded or not; the standard alphabet's `+` and `/` are accepted too (a context encoded
/// with the wrong alphabet is still unambiguous).
fn decode_base64url(encoded: &str) -> Option<Vec<u8>> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let url_safe: String = encoded
        .trim()
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    LENIENT.decode(url_safe).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn base64url_decodes_with_and_without_padding() {
        assert_eq!(decode_base64url("").unwrap(), b"");
        assert_eq!(decode_base64url("Zg").unwrap(), b"f");
        assert_eq!(decode_base64url("Zg==").unwrap(), b"f");
        assert_eq!(decode_base64url("Zm8").unwrap(), b"fo");
        assert_eq!(decode_base64url("Zm9v").unwrap(), b"foo");
        assert_eq!(decode_base64url("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(decode_base64url("-_-_").unwrap(), decode_base64url("+/+/").unwrap());
        assert_eq!(decode_base64url("-_-_").unwrap(), [0xfb, 0xff, 0xbf]);
        assert_eq!(decode_base64url("Zm9v=").unwrap(), b"foo", "any padding is ignored");
        assert_eq!(decode_base64url("Zg===").unwrap(), b"f");
        assert_eq!(decode_base64url("Zm9v=").unwrap(), b"foo", "any padding is ignored");
        assert_eq!(decode_base64url("Zg===").unwrap(), b"f");
        assert!(decode_base64url("Z").is_none());
        assert!(decode_base64url("Zm9v!").is_none());
    }

    #[test]
    fn a_context_is_base64url_of_a_json_object() {
        // {"targetingKey":"user-1","country":"DE"}
        let context = parse("eyJ0YXJnZXRpbmdLZXkiOiJ1c2VyLTEiLCJjb3VudHJ5IjoiREUifQ").unwrap();
        assert_eq!(context.targeting_key(), Some("user-1"));
        assert_eq!(context.attribute(["country"]), Some(&json!("DE")));
    }

    #[test]
    fn anything_else_is_refused() {
        assert_eq!(parse("not base64!"), Err(ContextError::NotBase64));
        // "[1]"
        assert!(matches!(parse("WzFd"), Err(ContextError::NotAContext(_))));
        // {"targetingKey":5}
        assert!(matches!(parse("eyJ0YXJnZXRpbmdLZXkiOjV9"), Err(ContextError::NotAContext(_))));
    }
}

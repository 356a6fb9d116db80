//! Request bodies: read with a size limit, parsed into typed requests with the offending field named.

use actix_web::http::header;
use actix_web::{HttpRequest, web};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use vexil_http::error::{ApiError, ErrorCode};
use vexil_http::json::JsonError;

/// Why a body could not be read or parsed, before it is shaped into a problem or an OFREP error.
#[derive(Debug)]
pub enum BodyError {
    /// Larger than the limit.
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The connection failed while the body was read.
    Unreadable(String),
    /// Not JSON at all (a syntax error, or cut short).
    Syntax(String),
    /// JSON of the wrong shape; `field` is the path of the offending value (`.` for the whole body).
    Shape {
        /// Path of the offending value, e.g. `flags[2]` or `context.targetingKey`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

impl From<BodyError> for ApiError {
    fn from(error: BodyError) -> ApiError {
        match error {
            BodyError::TooLarge { limit } => {
                ApiError::new(ErrorCode::PayloadTooLarge, format!("the body must be at most {limit} bytes"))
            }
            BodyError::Unreadable(message) => {
                ApiError::new(ErrorCode::InvalidBody, format!("could not read the body: {message}"))
            }
            BodyError::Syntax(message) => JsonError::Syntax(message).into(),
            BodyError::Shape { field, message } => JsonError::Shape { field, message }.into(),
        }
    }
}

/// Reads the whole body, refusing more than `limit` bytes (announced by `Content-Length` or not).
pub async fn read_limited(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, BodyError> {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if announced.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| BodyError::Unreadable(error.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Parses JSON into `T`, naming the offending field by its path on failure. An empty body reads as `{}`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { bytes };
    vexil_http::json::parse(bytes).map_err(|error| match error {
        JsonError::Syntax(message) => BodyError::Syntax(message),
        JsonError::Shape { field, message } => BodyError::Shape { field, message },
    })
}

/// Refuses (415) a body declared as something other than JSON. No `Content-Type` at all is let through:
/// some HTTP clients send none for a JSON string body.
pub fn check_json_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else { return Ok(()) };
    let essence = value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json")) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the body as JSON with Content-Type: application/json",
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Request {
        #[serde(default)]
        flags: Vec<String>,
        #[serde(default)]
        name: Option<String>,
    }

    #[test]
    fn an_empty_body_reads_as_an_empty_object() {
        assert!(parse_json::<Request>(b"").is_ok());
        assert!(parse_json::<Request>(b"  \n").is_ok());
    }

    #[test]
    fn a_wrong_value_is_named_by_its_path() {
        match parse_json::<Request>(br#"{"flags": ["a", 5]}"#) {
            Err(BodyError::Shape { field, .. }) => assert_eq!(field, "flags[1]"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn broken_json_is_a_syntax_error() {
        assert!(matches!(parse_json::<Request>(br#"{"flags": ["#), Err(BodyError::Syntax(_))));
        assert!(matches!(parse_json::<Request>(br#"{} {}"#), Err(BodyError::Syntax(_))));
    }
}

//! What every stream route reads from its request, and who may open a stream.

use actix_web::web;
use serde::de::DeserializeOwned;
use vexil_dataplane::Cache;
use vexil_http::error::{ApiError, ErrorCode};
use vexil_keys::KeyKind;

use crate::state::StreamingState;

/// What a stream route reads from its request, whichever server parsed it: the raw query string and
/// three header values. A header value is `None` when absent; a value that is not visible ASCII is
/// `None` for the key headers and `"\u{fffd}"` for `Last-Event-ID` (as `HeaderValue::to_str` would
/// have it, see [`header_text`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StreamRequest<'a> {
    pub(crate) query: &'a str,
    pub(crate) authorization: Option<&'a str>,
    pub(crate) api_key: Option<&'a str>,
    pub(crate) last_event_id: Option<&'a str>,
}

/// A header value as text when it is visible ASCII (or tabs), as `http::HeaderValue::to_str` decides.
pub(crate) fn header_text(value: &[u8]) -> Option<&str> {
    let visible = value.iter().all(|&b| (b' '..0x7f).contains(&b) || b == b'\t');
    // Visible ASCII is UTF-8.
    visible.then(|| std::str::from_utf8(value).ok()).flatten()
}

/// Who may open a stream: an SDK key the replica knows (from `Authorization: Bearer`, `X-API-Key` or
/// `?key=`, see `vexil_dataplane_http::presented_key`) — or nobody yet.
///
/// A replica that has no data yet, or is shutting down, lets the client in only to tell it to come
/// back ([`Admission::RetryLater`]): a browser's EventSource gives up for good on a 503, while a 200
/// stream that ends at once makes it reconnect after the `retry:` hint, to whichever replica is
/// ready. An unknown key is still a 401 (and that one *should* stop the client).
pub(crate) enum Admission {
    /// A valid key.
    Key(StreamKey),
    /// Come back after `retry_ms`.
    RetryLater,
}

/// A key that may open a stream.
pub(crate) struct StreamKey {
    /// The key's environment.
    pub(crate) environment_id: i64,
    /// Server or client.
    pub(crate) kind: KeyKind,
    /// The key as presented, to check it again while the stream is open (rotation, expiry).
    pub(crate) presented: String,
}

/// Decides who may open a stream (see [`Admission`]).
pub(crate) fn admit(
    req: &StreamRequest<'_>,
    cache: &Cache,
    streaming: &StreamingState,
) -> Result<Admission, ApiError> {
    if streaming.is_shutting_down() || !cache.ready() {
        return Ok(Admission::RetryLater);
    }
    let presented = vexil_dataplane_http::presented_key_in(req.authorization, req.api_key, req.query)
        .ok_or_else(|| {
            ApiError::new(ErrorCode::Unauthorized, "send an SDK key: Authorization: Bearer <key>, or ?key=")
        })?;
    let found = cache
        .authenticate(&presented)
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "the SDK key is not valid"))?;
    Ok(Admission::Key(StreamKey { environment_id: found.environment.id(), kind: found.kind, presented }))
}

/// Parses the query string; a malformed one is a 400 problem.
pub(crate) fn query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    web::Query::<T>::from_query(query)
        .map(web::Query::into_inner)
        .map_err(|error| ApiError::new(ErrorCode::InvalidParameter, format!("invalid query: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_text_accepts_what_header_value_to_str_accepts() {
        for value in [&b"Bearer vxs_1"[..], b"a\tb", b"", b"caf\xc3\xa9", b"a\x7fb", b"\x01", b"~ !"] {
            let expected = http::HeaderValue::from_bytes(value)
                .ok()
                .and_then(|value| value.to_str().ok().map(str::to_owned));
            assert_eq!(header_text(value).map(str::to_owned), expected, "{value:?}");
        }
    }
}

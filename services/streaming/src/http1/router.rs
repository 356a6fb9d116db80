//! What a request is answered with: one of the three streams (the same route functions as on the actix
//! path, so the same bytes), a CORS preflight (as `vexil_dataplane_http::cors` answers it), a probe, or
//! a problem+json `404` / `405`.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use vexil_dataplane::Cache;
use vexil_http::error::{ApiError, ErrorCode, PROBLEM_CONTENT_TYPE};

use super::response::{ResponseHead, stream_head};
use crate::fanout::Fanout;
use crate::routes::health::{self, Reply};
use crate::routes::{StreamRequest, StreamRoute, header_text};
use crate::state::StreamingState;
use crate::stream::Body;

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) cache: Cache,
    pub(crate) streaming: Arc<StreamingState>,
    pub(crate) fanout: Fanout,
    pub(crate) head_timeout: Duration,
}

/// What to do with a request.
pub(super) enum Action {
    /// Write this whole answer; then read the next request, or close.
    Reply { response: Vec<u8>, keep_alive: bool },
    /// Write this head, then the stream's frames; the connection ends with the stream.
    Stream { head: Vec<u8>, body: Body, chunked: bool },
}

/// The first value of header `name`.
fn header<'h>(headers: &[httparse::Header<'h>], name: &str) -> Option<&'h [u8]> {
    headers.iter().find(|header| header.name.eq_ignore_ascii_case(name)).map(|header| header.value)
}

/// Routes a complete request head.
pub(super) fn respond(request: &httparse::Request<'_, '_>, shared: &Shared) -> Action {
    let headers = &*request.headers;
    let method = request.method.unwrap_or_default();
    let http11 = request.version == Some(1);
    // A body this server does not read would be taken for the next request: answer, then close.
    let has_body = header(headers, "transfer-encoding").is_some()
        || header(headers, "content-length").is_some_and(|length| length.trim_ascii() != b"0");
    let close = !http11
        || has_body
        || header(headers, "connection").is_some_and(|value| has_token(value, "close"))
        || shared.streaming.is_shutting_down();
    let (path, query) = split_target(request.path.unwrap_or_default());

    if let Some(route) = StreamRoute::of_path(path) {
        // As `vexil_dataplane_http::cors` wraps these routes on the actix path.
        let origin = header(headers, "origin").and_then(|origin| HeaderValue::from_bytes(origin).ok());
        let cors = origin.clone().map(vexil_dataplane_http::cors_response_headers);
        let cors = cors.as_ref().map_or(&[][..], |headers| &headers[..]);
        return match method {
            "GET" => {
                let req = StreamRequest {
                    query,
                    authorization: header(headers, "authorization").and_then(header_text),
                    api_key: header(headers, "x-api-key").and_then(header_text),
                    last_event_id: header(headers, "last-event-id")
                        .map(|value| header_text(value).unwrap_or("\u{fffd}")),
                };
                match route.open(&req, &shared.cache, &shared.streaming) {
                    Ok(body) => Action::Stream { head: stream_head(http11, cors), body, chunked: http11 },
                    Err(error) => problem(&error, cors, close),
                }
            }
            "OPTIONS" if header(headers, "access-control-request-method").is_some() => {
                let mut head = ResponseHead::new(StatusCode::NO_CONTENT);
                for (name, value) in vexil_dataplane_http::cors_preflight_headers(origin) {
                    head.header(name.as_str(), value.as_bytes());
                }
                Action::Reply { response: head.finish(None, close), keep_alive: !close }
            }
            _ => {
                let error = ApiError::new(ErrorCode::MethodNotAllowed, format!("{path} answers GET"));
                let mut headers = cors.to_vec();
                headers.push((HeaderName::from_static("allow"), HeaderValue::from_static("GET, OPTIONS")));
                problem(&error, &headers, close)
            }
        };
    }
    let probe: fn(&Shared) -> Reply = match path {
        "/healthz" => |_| health::health(),
        "/readyz" => |shared| health::readiness(&shared.cache, &shared.streaming),
        "/metrics" => |shared| health::metrics_text(&shared.streaming),
        _ => return problem(&ApiError::new(ErrorCode::NotFound, "no such route"), &[], close),
    };
    if method != "GET" {
        let error = ApiError::new(ErrorCode::MethodNotAllowed, format!("{path} answers GET"));
        let allow = [(HeaderName::from_static("allow"), HeaderValue::from_static("GET"))];
        return problem(&error, &allow, close);
    }
    let Reply { status, content_type, body } = probe(shared);
    let mut head = ResponseHead::new(status);
    head.header("content-type", content_type.as_bytes());
    Action::Reply { response: head.finish(Some(&body), close), keep_alive: !close }
}

/// A problem+json answer for `error`, with `headers` besides its own.
pub(super) fn problem(error: &ApiError, headers: &[(HeaderName, HeaderValue)], close: bool) -> Action {
    let mut head = ResponseHead::new(error.code().status());
    for (name, value) in error.problem_headers() {
        head.header(name, value.as_bytes());
    }
    head.header("content-type", PROBLEM_CONTENT_TYPE.as_bytes());
    for (name, value) in headers {
        head.header(name.as_str(), value.as_bytes());
    }
    // Serialising a problem document into memory cannot fail.
    let body = serde_json::to_vec(&error.problem()).unwrap_or_default();
    Action::Reply { response: head.finish(Some(&body), close), keep_alive: !close }
}

/// Whether a comma-separated header value has `token` (case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    value.split(|&b| b == b',').any(|part| part.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The path and the query of a request target: an absolute-form target (`http://host/path`) loses its
/// scheme and authority, and repeated leading slashes count as one.
fn split_target(target: &str) -> (&str, &str) {
    let target = match target.split_once("://") {
        Some((scheme, rest)) if !scheme.contains(['/', '?']) => rest.find('/').map_or("/", |at| &rest[at..]),
        _ => target,
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let trimmed = path.trim_start_matches('/');
    let path = if trimmed.len() + 1 < path.len() { &path[path.len() - trimmed.len() - 1..] } else { path };
    (path, query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_into_path_and_query() {
        assert_eq!(split_target("/v1/stream?key=a&b=c"), ("/v1/stream", "key=a&b=c"));
        assert_eq!(split_target("/healthz"), ("/healthz", ""));
        assert_eq!(split_target("//ofrep/v1/stream?key=k"), ("/ofrep/v1/stream", "key=k"));
        assert_eq!(split_target("///x"), ("/x", ""));
        assert_eq!(split_target("/"), ("/", ""));
        assert_eq!(split_target("http://example.com/v1/stream?key=k"), ("/v1/stream", "key=k"));
        assert_eq!(split_target("http://example.com"), ("/", ""));
        assert_eq!(split_target("/a?next=http://b/c"), ("/a", "next=http://b/c"));
        assert_eq!(split_target("*"), ("*", ""));
    }

    #[test]
    fn connection_tokens_are_case_insensitive_and_comma_separated() {
        assert!(has_token(b"close", "close"));
        assert!(has_token(b"Keep-Alive, Close", "close"));
        assert!(!has_token(b"keep-alive", "close"));
        assert!(!has_token(b"closed", "close"));
    }
}

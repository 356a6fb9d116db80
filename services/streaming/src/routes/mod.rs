//! The streaming routes: `/v1/stream` ([`server`]), `/v1/client/stream` ([`client`]),
//! `/ofrep/v1/stream` ([`ofrep`]), and the probes ([`health`]). What they share — who may open a
//! stream, and where it resumes from — is here.

pub mod client;
pub mod health;
pub mod ofrep;
pub mod server;

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use serde::de::DeserializeOwned;
use vexil_dataplane::Cache;
use vexil_http::KeyKind;
use vexil_http::error::{ApiError, ErrorCode};

use crate::state::StreamingState;

/// Who may open a stream: an SDK key the replica knows (from `Authorization: Bearer`, `X-API-Key` or
/// `?key=`, see [`vexil_http::SdkKey`]) — or nobody yet.
///
/// A replica that has no data yet, or is shutting down, lets the client in only to tell it to come
/// back ([`Admission::RetryLater`]): a browser's EventSource gives up for good on a 503, while a 200
/// stream that ends at once makes it reconnect after the `retry:` hint, to whichever replica is
/// ready. An unknown key is still a 401 (and that one *should* stop the client).
pub enum Admission {
    /// A valid key.
    Key(StreamKey),
    /// Come back after `retry_ms`.
    RetryLater,
}

/// A key that may open a stream.
pub struct StreamKey {
    /// The key's environment.
    pub environment_id: i64,
    /// Server or client.
    pub kind: KeyKind,
    /// The key as presented, to check it again while the stream is open (rotation, expiry).
    pub presented: String,
}

impl FromRequest for Admission {
    type Error = ApiError;
    type Future = Ready<Result<Admission, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(admit(req))
    }
}

fn admit(req: &HttpRequest) -> Result<Admission, ApiError> {
    let missing = |what: &str| ApiError::Unexpected(anyhow::anyhow!("{what} is not registered as app data"));
    let cache = req.app_data::<web::Data<Cache>>().ok_or_else(|| missing("the data-plane cache"))?;
    let streaming =
        req.app_data::<web::Data<StreamingState>>().ok_or_else(|| missing("the streaming state"))?;
    if streaming.is_shutting_down() || !cache.ready() {
        return Ok(Admission::RetryLater);
    }
    let presented = vexil_http::presented_key(req).ok_or_else(|| {
        ApiError::new(ErrorCode::Unauthorized, "send an SDK key: Authorization: Bearer <key>, or ?key=")
    })?;
    let found = cache
        .authenticate(&presented)
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "the SDK key is not valid"))?;
    Ok(Admission::Key(StreamKey { environment_id: found.environment.id(), kind: found.kind, presented }))
}

/// Where a reconnecting client says it stopped: the `Last-Event-ID` header, or the `lastEventId`
/// query parameter for clients that can only set the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastEventId {
    /// A first connection.
    Absent,
    /// The revision of the last event the client received.
    Revision(u64),
    /// Something that is not a revision; the client is sent a fresh start.
    Invalid,
}

impl LastEventId {
    /// Reads it from the header, else from `query` (the `lastEventId` parameter).
    pub fn of(req: &HttpRequest, query: Option<&str>) -> LastEventId {
        let header = req.headers().get("last-event-id").map(|value| value.to_str().unwrap_or("\u{fffd}"));
        // An empty header is what a client sends before it has seen an id.
        match header.or(query).map(str::trim).filter(|id| !id.is_empty()) {
            None => LastEventId::Absent,
            Some(id) => id.parse().map_or(LastEventId::Invalid, LastEventId::Revision),
        }
    }
}

/// Parses the query string; a malformed one is a 400 problem.
fn query<T: DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|error| ApiError::new(ErrorCode::InvalidParameter, format!("invalid query: {error}")))
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn the_last_event_id_header_wins_over_the_query_and_garbage_is_invalid() {
        let req = TestRequest::default().insert_header(("Last-Event-ID", "42")).to_http_request();
        assert_eq!(LastEventId::of(&req, Some("7")), LastEventId::Revision(42));
        let req = TestRequest::default().to_http_request();
        assert_eq!(LastEventId::of(&req, Some("7")), LastEventId::Revision(7));
        assert_eq!(LastEventId::of(&req, None), LastEventId::Absent);
        assert_eq!(LastEventId::of(&req, Some(" ")), LastEventId::Absent);
        assert_eq!(LastEventId::of(&req, Some("-1")), LastEventId::Invalid);
        let req = TestRequest::default().insert_header(("Last-Event-ID", "abc")).to_http_request();
        assert_eq!(LastEventId::of(&req, None), LastEventId::Invalid);
    }
}

//! The data plane's HTTP edge, shared by the streaming and evaluation services (and standalone): which
//! SDK key a request presents and whether the replica knows it ([`authenticate`], [`KnownKey`]), and
//! CORS for browser SDKs ([`cors`]). Errors are `vexil-http`'s problem+json.
#![deny(missing_docs)]

use std::future::{Ready, ready};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use vexil_dataplane::{Authenticated, Cache};
use vexil_http::error::{ApiError, ErrorCode};

/// An SDK key the replica knows (server or client), with the environment it opens: the extractor of
/// [`authenticate`].
#[derive(Debug, Clone)]
pub struct KnownKey(pub Authenticated);

impl FromRequest for KnownKey {
    type Error = ApiError;
    type Future = Ready<Result<KnownKey, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).map(KnownKey))
    }
}

/// The SDK key a request presents — from `Authorization: Bearer <key>` (or a bare `Authorization:
/// <key>`), `X-API-Key: <key>`, or the `key` query parameter, the last because browsers' EventSource
/// cannot send headers — checked against the replica's cache. `503` while the replica has no data yet,
/// `401` for a missing, unknown or expired key.
pub fn authenticate(req: &HttpRequest) -> Result<Authenticated, ApiError> {
    let cache = req
        .app_data::<web::Data<Cache>>()
        .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("the data-plane cache is not registered")))?;
    if !cache.ready() {
        return Err(ApiError::new(
            ErrorCode::ServiceUnavailable,
            "this replica has not loaded its flags yet",
        ));
    }
    let presented = presented_key(req).ok_or_else(|| {
        ApiError::new(ErrorCode::Unauthorized, "send an SDK key: Authorization: Bearer <key>")
    })?;
    cache
        .authenticate(&presented)
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "the SDK key is not valid"))
}

/// The key a request presents, from the first place that has one.
pub fn presented_key(req: &HttpRequest) -> Option<String> {
    let headers = req.headers();
    presented_key_in(
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()),
        headers.get("x-api-key").and_then(|v| v.to_str().ok()),
        req.query_string(),
    )
}

/// [`presented_key`] for a server that is not actix: the `Authorization` and `X-API-Key` header values
/// (`None` when absent or not visible ASCII, as `HeaderValue::to_str` has it) and the raw query
/// string.
pub fn presented_key_in(authorization: Option<&str>, api_key: Option<&str>, query: &str) -> Option<String> {
    let from_authorization = authorization.map(|v| {
        let v = v.trim();
        v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).unwrap_or(v).trim().to_owned()
    });
    let from_api_key = || api_key.map(|v| v.trim().to_owned());
    let from_query = || {
        web::Query::<std::collections::HashMap<String, String>>::from_query(query)
            .ok()
            .and_then(|q| q.get("key").cloned())
    };
    from_authorization
        .filter(|k| !k.is_empty())
        .or_else(from_api_key)
        .or_else(from_query)
        .filter(|k| !k.is_empty())
}

/// The headers a browser may send to the data plane.
const ALLOWED_HEADERS: &str = "Content-Type, Authorization, X-API-Key, If-None-Match, Last-Event-ID";
/// The response headers a browser script may read: without this it never sees the ETag.
const EXPOSED_HEADERS: &str = "ETag, Retry-After";

/// The headers of a CORS preflight answer (`204`), for the request's `Origin` (`*` without one).
pub fn cors_preflight_headers(origin: Option<HeaderValue>) -> [(HeaderName, HeaderValue); 5] {
    [
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.unwrap_or(HeaderValue::from_static("*"))),
        (header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS")),
        (header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOWED_HEADERS)),
        (header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400")),
        (header::VARY, HeaderValue::from_static("Origin")),
    ]
}

/// The headers added to any other answer to a request with an `Origin`. The last, `Vary: Origin`, is
/// appended to the answer's own `Vary` (when it has one); the others replace theirs.
pub fn cors_response_headers(origin: HeaderValue) -> [(HeaderName, HeaderValue); 3] {
    [
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin),
        (header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED_HEADERS)),
        (header::VARY, HeaderValue::from_static("Origin")),
    ]
}

/// CORS for browser SDKs (`middleware::from_fn(cors)`): answers preflights and lets any origin read
/// data-plane responses. Client keys are public and every answer is scoped to its key, so there is
/// nothing an origin check would protect here; per-key origin allow-lists are future work.
pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let preflight =
        req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let mut response = HttpResponse::build(StatusCode::NO_CONTENT);
        for header in cors_preflight_headers(origin) {
            response.insert_header(header);
        }
        return Ok(req.into_response(response.finish()));
    }
    let mut response = next.call(req).await?.map_into_boxed_body();
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        let [allow_origin, expose, vary] = cors_response_headers(origin);
        headers.insert(allow_origin.0, allow_origin.1);
        headers.insert(expose.0, expose.1);
        headers.append(vary.0, vary.1);
    }
    Ok(response)
}

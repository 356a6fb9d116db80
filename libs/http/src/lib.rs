//! HTTP plumbing shared by Vexil's services: the problem+json error table ([`error`]), JSON bodies
//! that name the offending field ([`json`]), SDK-key
//! authentication for the data plane ([`SdkKey`]) and CORS for browser clients ([`cors`]).
#![deny(missing_docs)]

pub mod error;
pub mod json;

use std::future::{Ready, ready};
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use vexil_dataplane::{Cache, EnvironmentState};
pub use vexil_store::KeyKind;

use crate::error::{ApiError, ErrorCode};

/// An SDK key the replica knows, with the environment it opens.
///
/// Read from `Authorization: Bearer <key>` (or a bare `Authorization: <key>`), `X-API-Key: <key>`, or
/// the `key` query parameter — the last because browsers' EventSource cannot send headers. Answers
/// 503 while the replica has no data yet, and 401 for a missing, unknown or expired key.
pub struct SdkKey {
    /// The environment the key belongs to, as the replica has it now.
    pub environment: Arc<EnvironmentState>,
    /// Server (full configurations) or client (evaluated client-side flags only).
    pub kind: KeyKind,
    /// The key's public id (for per-key rate limits, logs and metrics; never the secret).
    pub key_id: String,
}

impl FromRequest for SdkKey {
    type Error = ApiError;
    type Future = Ready<Result<SdkKey, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

fn authenticate(req: &HttpRequest) -> Result<SdkKey, ApiError> {
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
    let found = cache
        .authenticate(&presented)
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "the SDK key is not valid"))?;
    Ok(SdkKey { environment: found.environment, kind: found.kind, key_id: found.key_id })
}

/// The key a request presents, from the first place that has one.
pub fn presented_key(req: &HttpRequest) -> Option<String> {
    let headers = req.headers();
    let from_authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(|v| {
        let v = v.trim();
        v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).unwrap_or(v).trim().to_owned()
    });
    let from_api_key = || headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(|v| v.trim().to_owned());
    let from_query = || {
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
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
        let response = HttpResponse::build(StatusCode::NO_CONTENT)
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                origin.unwrap_or(HeaderValue::from_static("*")),
            ))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"))
            .insert_header((header::VARY, "Origin"))
            .finish();
        return Ok(req.into_response(response));
    }
    let mut response = next.call(req).await?.map_into_boxed_body();
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED_HEADERS));
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    Ok(response)
}

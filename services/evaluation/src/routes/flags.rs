//! `GET /v1/flags`: the polling fallback of server SDKs.

use std::convert::Infallible;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;
use vexil_http::error::{ApiError, ErrorCode, Problem};

use crate::etag::if_none_match;
use crate::extract::ServerKey;
use crate::state::EvaluationState;

/// `GET /v1/flags` parameters. (`key` may carry the SDK key too, for clients that cannot send headers.)
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct FlagsQuery {
    /// Only flags whose key starts with this (segments are all kept: the flags may reference any).
    pub prefix: Option<String>,
}

/// Every flag (with its configuration) and segment of the key's environment: the same snapshot as the
/// stream's `hydrate`, for server SDKs that poll. `?prefix=` narrows it to the flags whose key starts
/// with the prefix, plus the prerequisites they reach (an SDK needs those to evaluate them). `ETag` is the revision (with a hash of the prefix when
/// one is given); send it back in `If-None-Match` to get `304 Not Modified` while nothing has changed.
/// Server keys only: a client key is refused with 403.
#[utoipa::path(get, path = "/v1/flags", tag = "polling", params(FlagsQuery),
    security(("sdk_key" = [])),
    responses(
        (status = 200, description = "The snapshot: `{\"revision\": 7, \"flags\": [{\"flag\": {...}, \"config\": {...}}], \"segments\": [...]}`",
         body = Object, headers(("ETag" = String, description = "The revision, narrowed by the prefix"))),
        (status = 304, description = "`If-None-Match` names the current tag"),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem)))]
#[tracing::instrument(skip_all, fields(environment = key.0.environment.id()))]
pub async fn get_flags(
    req: HttpRequest,
    key: ServerKey,
    state: web::Data<EvaluationState>,
) -> Result<HttpResponse, ApiError> {
    let query = web::Query::<FlagsQuery>::from_query(req.query_string())
        .map_err(|error| ApiError::new(ErrorCode::InvalidParameter, format!("invalid query: {error}")))?;
    let prefix = query.prefix.as_deref().unwrap_or("");
    let environment = &key.0.environment;
    let etag = vexil_protocol::etag::snapshot(environment.revision(), prefix);
    if if_none_match(&req, &etag) {
        state.metrics.not_modified.inc();
        return Ok(not_modified(etag));
    }

    let prefix = (!prefix.is_empty()).then_some(prefix);
    let render = || Ok::<_, Infallible>(environment.view(prefix).to_json().into());
    let body = match prefix {
        None => state.snapshot_bodies.get_or_build(environment.id(), environment.revision(), render),
        Some(_) => render(),
    };
    let Ok(body) = body;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "private, no-cache"))
        .content_type("application/json")
        .body(body))
}

/// `304 Not Modified`: no body, the tag repeated.
pub fn not_modified(etag: String) -> HttpResponse {
    HttpResponse::NotModified()
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "private, no-cache"))
        .finish()
}

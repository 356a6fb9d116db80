//! OFREP, the OpenFeature Remote Evaluation Protocol (PROTOCOLS.md): `POST /ofrep/v1/evaluate/flags/{key}`
//! and the bulk `POST /ofrep/v1/evaluate/flags`, for the OpenFeature providers.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use vexil_eval::{evaluate_all, evaluate_flag};
use vexil_http::error::ApiError;
use vexil_keys::KeyKind;

use crate::body::{BodyError, parse_json, read_limited};
use crate::etag::if_none_match;
use crate::extract::EvaluationKey;
use crate::routes::flags::not_modified;
use crate::state::EvaluationState;
use crate::views::{EventStream, OfrepBulk, OfrepRequest, OfrepRequestError, OfrepResult, ofrep_not_found};

/// How long a hidden page keeps its change stream open before closing it (the web provider refetches
/// when it becomes visible again).
const INACTIVITY_DELAY_SECONDS: u64 = 120;

/// Evaluates one flag. Answers `{key, reason, variant, value}` (200), or `{key, errorCode, errorDetails}`:
/// 404 `FLAG_NOT_FOUND` (also for a flag a client key may not see), 400 `TARGETING_KEY_MISSING` (a split
/// with nothing to bucket by), `PARSE_ERROR` (a body that is not JSON) or `INVALID_CONTEXT`.
#[tracing::instrument(skip_all, fields(environment = key.0.environment.id(), flag = %path))]
pub async fn evaluate_flag_ofrep(
    req: HttpRequest,
    key: EvaluationKey,
    state: web::Data<EvaluationState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let flag_key = path.into_inner();
    let request = match read_request(&req, payload, &state).await {
        Ok(request) => request,
        Err(error) => return Ok(request_error(error, Some(flag_key))),
    };
    let EvaluationKey(key) = key;
    let compiled = key.environment.compiled();
    let result = match compiled.flag(&flag_key) {
        Some(flag) if key.kind == KeyKind::Server || flag.client_side() => {
            state.metrics.evaluations.inc();
            OfrepResult::new(flag, evaluate_flag(compiled, flag, &request.context))
        }
        _ => ofrep_not_found(&flag_key),
    };
    Ok(match &result {
        OfrepResult::Success(_) => HttpResponse::Ok().json(&result),
        OfrepResult::Failure(status, failure) => HttpResponse::build(*status).json(failure),
    })
}

/// Evaluates every flag the key may see for the context: `{flags: [...]}`, each item a success or an
/// error as on the single-flag route. `ETag` depends on the configuration, the key and the context;
/// `If-None-Match` with it answers `304` while none of them changed. With
/// `dataplane.ofrep_stream_url` set, the answer advertises that change stream (`eventStreams`).
#[tracing::instrument(skip_all, fields(environment = key.0.environment.id()))]
pub async fn evaluate_flags_ofrep(
    req: HttpRequest,
    key: EvaluationKey,
    state: web::Data<EvaluationState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let request = match read_request(&req, payload, &state).await {
        Ok(request) => request,
        Err(error) => return Ok(request_error(error, None)),
    };
    let EvaluationKey(key) = key;
    let environment = &key.environment;
    let stream_url = state.settings.dataplane.ofrep_stream_url.trim();
    let etag = vexil_protocol::etag::bulk(
        environment.id(),
        environment.revision(),
        &key.key_id,
        stream_url,
        &request.context,
    );
    if if_none_match(&req, &etag) {
        state.metrics.not_modified.inc();
        return Ok(not_modified(etag));
    }

    let compiled = environment.compiled();
    let flags: Vec<_> =
        evaluate_all(compiled, &request.context, |flag| key.kind == KeyKind::Server || flag.client_side())
            .map(|(flag, detail)| OfrepResult::new(flag, detail))
            .collect();
    state.metrics.evaluations.add(flags.len() as u64);
    let event_streams = match (stream_url.is_empty(), vexil_dataplane_http::presented_key(&req)) {
        (false, Some(presented)) => vec![EventStream {
            kind: "sse",
            url: with_key(stream_url, &presented),
            inactivity_delay_sec: INACTIVITY_DELAY_SECONDS,
        }],
        _ => Vec::new(),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "private, no-cache"))
        .json(OfrepBulk { flags, event_streams }))
}

async fn read_request(
    req: &HttpRequest,
    payload: web::Payload,
    state: &EvaluationState,
) -> Result<OfrepRequest, BodyError> {
    // No Content-Type check: every provider sends JSON, and refusing a body for its label would only
    // turn a working evaluation into an error.
    let body = read_limited(req, payload, state.settings.dataplane.max_body_bytes).await?;
    parse_json(&body)
}

/// A request OFREP could not evaluate at all, as `{key?, errorCode, errorDetails}`.
fn request_error(error: BodyError, key: Option<String>) -> HttpResponse {
    let (status, code, details) = match error {
        BodyError::TooLarge { limit } => {
            (StatusCode::PAYLOAD_TOO_LARGE, "GENERAL", format!("the body must be at most {limit} bytes"))
        }
        BodyError::Unreadable(message) => {
            (StatusCode::BAD_REQUEST, "GENERAL", format!("could not read the body: {message}"))
        }
        BodyError::Syntax(message) => {
            (StatusCode::BAD_REQUEST, "PARSE_ERROR", format!("the body is not valid JSON: {message}"))
        }
        BodyError::Shape { field, message } if field == "context" || field.starts_with("context.") => (
            StatusCode::BAD_REQUEST,
            "INVALID_CONTEXT",
            format!("{field}: {message} (the context is a JSON object; targetingKey, if any, a string)"),
        ),
        BodyError::Shape { message, .. } => (
            StatusCode::BAD_REQUEST,
            "PARSE_ERROR",
            format!("the body must be a JSON object like {{\"context\": {{...}}}}: {message}"),
        ),
    };
    HttpResponse::build(status).json(OfrepRequestError { key, error_code: code, error_details: details })
}

/// `url` with `key=<key>` added to its query.
fn with_key(url: &str, key: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    let mut out = format!("{url}{separator}key=");
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_added_to_the_stream_url_encoded() {
        assert_eq!(with_key("https://s/ofrep/v1/stream", "vxc_a_b"), "https://s/ofrep/v1/stream?key=vxc_a_b");
        assert_eq!(with_key("https://s/x?a=1", "k+/="), "https://s/x?a=1&key=k%2B%2F%3D");
    }
}

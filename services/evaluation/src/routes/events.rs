//! `POST /v1/events`: batched exposures and custom events.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use vexil_dataplane_http::KnownKey;
use vexil_http::error::{ApiError, ErrorCode, Problem};

use crate::body::{check_json_content_type, parse_json, read_limited};
use crate::events::{EventBatch, encode};
use crate::state::EvaluationState;

/// Record a batch of events (server or client key): exposures (`kind: exposure`, `key` = the flag) and
/// custom events (`kind: custom`, `key` = the event's name, `value` = a number to aggregate), at most
/// 1000 per batch. They are appended, in order, to the environment's events stream (capped at
/// `dataplane.events_stream_max_len`), which the control plane consumes for experiments and flag
/// usage; `202` once they are stored. Flags are not checked against the snapshot: an exposure may
/// arrive after its flag was deleted.
#[utoipa::path(post, path = "/v1/events", tag = "events", request_body = EventBatch,
    security(("sdk_key" = [])),
    responses(
        (status = 202, description = "Stored: `{\"accepted\": n}`", body = Object),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
#[tracing::instrument(skip_all, fields(environment = key.0.environment.id()))]
pub async fn post_events(
    req: HttpRequest,
    key: KnownKey,
    state: web::Data<EvaluationState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let KnownKey(key) = key;
    check_json_content_type(&req)?;
    let body = read_limited(&req, payload, state.settings.dataplane.max_body_bytes).await?;
    let batch: EventBatch = parse_json(&body)?;
    batch.validate().map_err(|errors| ApiError::Client {
        code: ErrorCode::ValidationFailed,
        detail: errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "),
        errors,
    })?;
    let encoded = encode(&batch, &key.environment, &key.key_id, key.kind)
        .map_err(|error| ApiError::Unexpected(anyhow::Error::new(error).context("encode events")))?;
    if let Err(error) = state.events.append(key.environment.id(), &encoded).await {
        state.metrics.events_failed.inc();
        tracing::warn!(error = %anyhow::Error::new(error), "could not store events");
        return Err(ApiError::new(
            ErrorCode::ServiceUnavailable,
            "the events could not be stored now; send the batch again later",
        ));
    }
    state.metrics.events_accepted.add(encoded.len() as u64);
    Ok(HttpResponse::Accepted().json(json!({"accepted": encoded.len()})))
}

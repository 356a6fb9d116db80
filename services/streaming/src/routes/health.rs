//! `/healthz`, `/readyz`, `/metrics`: each a server-agnostic `Reply` and a thin actix handler.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;
use vexil_dataplane::Cache;

use crate::state::StreamingState;

/// A complete, small answer: what a probe says.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) content_type: &'static str,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    fn json(status: StatusCode, value: &serde_json::Value) -> Reply {
        // What actix's `HttpResponse::json` writes.
        Reply { status, content_type: "application/json", body: value.to_string().into_bytes() }
    }

    fn into_response(self) -> HttpResponse {
        HttpResponse::build(self.status).content_type(self.content_type).body(self.body)
    }
}

/// The process is up.
pub async fn healthz() -> HttpResponse {
    health().into_response()
}

/// The replica can serve: its cache has completed its first sync, and it is not shutting down.
pub async fn readyz(cache: web::Data<Cache>, streaming: web::Data<StreamingState>) -> HttpResponse {
    readiness(&cache, &streaming).into_response()
}

/// Prometheus metrics.
pub async fn metrics(streaming: web::Data<StreamingState>) -> HttpResponse {
    metrics_text(&streaming).into_response()
}

/// [`healthz`], whichever server asks.
pub(crate) fn health() -> Reply {
    Reply::json(StatusCode::OK, &json!({"status": "ok"}))
}

/// [`readyz`], whichever server asks.
pub(crate) fn readiness(cache: &Cache, streaming: &StreamingState) -> Reply {
    if streaming.is_shutting_down() {
        return Reply::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "unavailable", "reason": "shutting down"}),
        );
    }
    if !cache.ready() {
        return Reply::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "unavailable", "reason": "flags not loaded yet"}),
        );
    }
    Reply::json(StatusCode::OK, &json!({"status": "ready"}))
}

/// [`metrics`], whichever server asks.
pub(crate) fn metrics_text(streaming: &StreamingState) -> Reply {
    Reply {
        status: StatusCode::OK,
        content_type: "text/plain; version=0.0.4",
        body: streaming.metrics().render().into_bytes(),
    }
}

//! `/healthz`, `/readyz`, `/metrics`.

use actix_web::{HttpResponse, web};
use serde_json::json;
use vexil_dataplane::Cache;

use crate::state::StreamingState;

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The replica can serve: its cache has completed its first sync, and it is not shutting down.
pub async fn readyz(cache: web::Data<Cache>, streaming: web::Data<StreamingState>) -> HttpResponse {
    if streaming.is_shutting_down() {
        return HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "reason": "shutting down"}));
    }
    if !cache.ready() {
        return HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "reason": "flags not loaded yet"}));
    }
    HttpResponse::Ok().json(json!({"status": "ready"}))
}

/// Prometheus metrics.
pub async fn metrics(streaming: web::Data<StreamingState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(streaming.metrics().render())
}

//! `/healthz`, `/readyz`, `/metrics`: outside the API's version and authentication.

use actix_web::{HttpResponse, web};
use serde_json::json;
use vexil_dataplane::Cache;

use crate::state::EvaluationState;

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The replica can serve: its cache has completed its first sync. Until then every SDK route answers
/// 503 too, so a load balancer keeps traffic away.
pub async fn readyz(cache: web::Data<Cache>) -> HttpResponse {
    if cache.ready() {
        HttpResponse::Ok().json(json!({"status": "ready", "environments": cache.environments().len()}))
    } else {
        HttpResponse::ServiceUnavailable().json(
            json!({"status": "unavailable", "reason": "the flag cache has not completed its first sync"}),
        )
    }
}

/// Prometheus metrics.
pub async fn metrics(cache: web::Data<Cache>, state: web::Data<EvaluationState>) -> HttpResponse {
    state.metrics.ready.set(i64::from(cache.ready()));
    state.metrics.environments.set(i64::try_from(cache.environments().len()).unwrap_or(i64::MAX));
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.registry.render())
}

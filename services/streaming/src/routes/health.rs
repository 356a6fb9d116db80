//! `/healthz`, `/readyz`, `/metrics`: what each answers, whichever server asks.

use http::StatusCode;
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
}

/// `/healthz`: the process is up.
pub(crate) fn health() -> Reply {
    Reply::json(StatusCode::OK, &json!({"status": "ok"}))
}

/// `/readyz`: the replica can serve — its cache has completed its first sync, and it is not shutting
/// down.
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

/// `/metrics`: Prometheus metrics.
pub(crate) fn metrics_text(streaming: &StreamingState) -> Reply {
    Reply {
        status: StatusCode::OK,
        content_type: "text/plain; version=0.0.4",
        body: streaming.metrics().render().into_bytes(),
    }
}

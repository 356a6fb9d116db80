//! What every handler can reach.

use std::sync::Arc;

use vexil_config::Settings;
use vexil_store::Store;
use vexil_telemetry::{Registry, ResponseCounters};

/// Shared by every handler and background task of one process.
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The effective settings.
    pub settings: Arc<Settings>,
    /// Metrics, rendered at `/metrics`.
    pub metrics: Arc<Metrics>,
}

/// The control plane's metrics.
pub struct Metrics {
    /// The registry they render from.
    pub registry: Registry,
    /// Responses by status class.
    pub responses: ResponseCounters,
    /// The change relay's.
    pub relay: vexil_outbox::Metrics,
}

impl Metrics {
    /// Registers the control plane's metrics.
    pub fn new() -> Metrics {
        let registry = Registry::default();
        let responses = registry.responses("vexil_http_responses_total", "HTTP responses by status class.");
        let relay = vexil_outbox::Metrics::register(&registry);
        Metrics { registry, responses, relay }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

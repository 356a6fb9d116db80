//! What every handler can reach.

use std::sync::Arc;

use vexil_config::Settings;
use vexil_store::Store;
use vexil_telemetry::{Counter, Gauge, Registry, ResponseCounters};

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
    /// Change events published to the bus.
    pub relay_published: Arc<Counter>,
    /// Failed publish attempts (bus down).
    pub relay_failures: Arc<Counter>,
    /// Change events waiting for the bus.
    pub relay_unsent: Arc<Gauge>,
}

impl Metrics {
    /// Registers the control plane's metrics.
    pub fn new() -> Metrics {
        let registry = Registry::default();
        let responses = registry.responses("vexil_http_responses_total", "HTTP responses by status class.");
        Metrics {
            responses,
            relay_published: registry
                .counter("vexil_relay_published_events_total", "Change events published to the bus."),
            relay_failures: registry
                .counter("vexil_relay_publish_failures_total", "Failed attempts to publish to the bus."),
            relay_unsent: registry
                .gauge("vexil_relay_unsent_events", "Change events waiting in the database for the bus."),
            registry,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

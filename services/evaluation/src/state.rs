//! What every handler of the evaluation service can reach, besides the [`Cache`](vexil_dataplane::Cache).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use actix_web::web;
use vexil_bus::Bus;
use vexil_config::Settings;
use vexil_telemetry::{Counter, Gauge, Registry, ResponseCounters};

use crate::events::EventSink;
use crate::rate_limit::RateLimiter;
use crate::render::RenderedFlags;

/// The evaluation service's own state: settings, the per-key rate limiter, the events sink and the
/// metrics. Register it as `web::Data<EvaluationState>` beside `web::Data<Cache>`.
pub struct EvaluationState {
    /// The effective settings (`dataplane` is the section read here).
    pub settings: Arc<Settings>,
    /// Token buckets per SDK key for the evaluation routes.
    pub limiter: RateLimiter,
    /// Where `POST /v1/events` appends.
    pub events: EventSink,
    /// Rendered at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The last serialised full snapshot per environment, for polling clients that all ask for the same
    /// revision.
    pub(crate) snapshot_bodies: PerRevision<web::Bytes>,
    /// `/v1/evaluate`'s JSON fragments per environment (see [`RenderedFlags`]).
    pub(crate) rendered_flags: PerRevision<Arc<RenderedFlags>>,
}

impl EvaluationState {
    /// The state for these settings, appending events to `bus`.
    pub fn new(settings: Arc<Settings>, bus: Bus) -> EvaluationState {
        let dataplane = &settings.dataplane;
        EvaluationState {
            limiter: RateLimiter::new(dataplane.rate_limit_per_second),
            events: EventSink::new(bus, dataplane.events_stream_max_len),
            metrics: Arc::new(Metrics::new()),
            snapshot_bodies: PerRevision::default(),
            rendered_flags: PerRevision::default(),
            settings,
        }
    }
}

impl std::fmt::Debug for EvaluationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvaluationState").field("limiter", &self.limiter).finish_non_exhaustive()
    }
}

/// The evaluation service's metrics.
pub struct Metrics {
    /// The registry they render from.
    pub registry: Registry,
    /// Responses by status class.
    pub responses: ResponseCounters,
    /// Flags evaluated (every flag of a bulk request counts).
    pub evaluations: Arc<Counter>,
    /// Requests refused by the per-key rate limit.
    pub rate_limited: Arc<Counter>,
    /// Answers `304 Not Modified` (polling and OFREP bulk).
    pub not_modified: Arc<Counter>,
    /// Events appended to the events stream.
    pub events_accepted: Arc<Counter>,
    /// Event batches the sink could not store (bus unreachable).
    pub events_failed: Arc<Counter>,
    /// 1 once the cache has completed its first sync.
    pub ready: Arc<Gauge>,
    /// Environments in the cache.
    pub environments: Arc<Gauge>,
}

impl Metrics {
    /// Registers the evaluation service's metrics.
    pub fn new() -> Metrics {
        let registry = Registry::default();
        let responses = registry.responses(
            "vexil_evaluation_http_responses_total",
            "HTTP responses of the evaluation service by status class.",
        );
        Metrics {
            responses,
            evaluations: registry.counter("vexil_evaluation_flags_evaluated_total", "Flags evaluated."),
            rate_limited: registry.counter(
                "vexil_evaluation_rate_limited_total",
                "Requests refused by the per-key rate limit.",
            ),
            not_modified: registry
                .counter("vexil_evaluation_not_modified_total", "Answers 304 Not Modified."),
            events_accepted: registry
                .counter("vexil_evaluation_events_accepted_total", "Events appended to the events stream."),
            events_failed: registry.counter(
                "vexil_evaluation_event_batches_failed_total",
                "Event batches the sink could not store.",
            ),
            ready: registry
                .gauge("vexil_evaluation_ready", "1 once the flag cache has completed its first sync."),
            environments: registry.gauge("vexil_evaluation_environments", "Environments in the flag cache."),
            registry,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// One value per environment, for its latest revision only: what every request for that revision shares
/// (a serialised snapshot, prepared JSON fragments) and is built again when the revision moves on.
pub(crate) struct PerRevision<T>(Mutex<HashMap<i64, (u64, T)>>);

impl<T> Default for PerRevision<T> {
    fn default() -> Self {
        PerRevision(Mutex::new(HashMap::new()))
    }
}

impl<T: Clone> PerRevision<T> {
    /// The value for this environment at this revision, built by `build` only if it is not cached.
    pub(crate) fn get_or_build<E>(
        &self,
        environment_id: i64,
        revision: u64,
        build: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        if let Some((cached, value)) = self.lock().get(&environment_id)
            && *cached == revision
        {
            return Ok(value.clone());
        }
        // Built outside the lock: two requests may both build a new revision, which is harmless.
        let value = build()?;
        let mut values = self.lock();
        let newer_cached = values.get(&environment_id).is_some_and(|(cached, _)| *cached > revision);
        if !newer_cached {
            values.insert(environment_id, (revision, value.clone()));
        }
        Ok(value)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (u64, T)>> {
        // Entries are replaced whole: a poisoned lock still holds consistent data.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

//! Logs and metrics for every Vexil process.
//!
//! Logs: `tracing` events as one JSON object per line (or human-readable), filtered by `RUST_LOG` or
//! the configured level ([`init_logging`], feature `subscriber`, on by default); an error is logged
//! with its causes as one field ([`ErrorChain`]). Metrics: a small registry of counters and gauges
//! rendered in the Prometheus text format at `/metrics`; lock-free atomics, no dependency.
#![deny(missing_docs)]

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Installs the global tracing subscriber. Safe to call more than once (later calls do nothing), so
/// tests can call it freely.
#[cfg(feature = "subscriber")]
pub fn init_logging(format: &str, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ =
        if format == "pretty" { builder.try_init() } else { builder.json().flatten_event(true).try_init() };
}

/// An error and its causes, `: `-separated, for one log field: `error = %ErrorChain(&error)`.
/// (`Display` of most errors says only the outermost layer: "error sending request", not why.)
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'a));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }
    /// Adds `delta` (may be negative).
    pub fn add(&self, delta: i64) {
        self.0.fetch_add(delta, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Responses counted by status class (`2xx` … `5xx`), one labelled counter each.
#[derive(Debug, Clone)]
pub struct ResponseCounters([Arc<Counter>; 4]);

impl ResponseCounters {
    /// Counts one response with this HTTP status.
    pub fn count(&self, status: u16) {
        let class = match status {
            200..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        self.0[class].inc();
    }
}

enum Metric {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
}

/// Named metrics, rendered together.
#[derive(Default)]
pub struct Registry {
    metrics: std::sync::Mutex<Vec<(String, String, Metric)>>,
}

impl Registry {
    /// Registers and returns a counter. `name` may carry labels: `http_requests_total{status="200"}`.
    pub fn counter(&self, name: &str, help: &str) -> Arc<Counter> {
        let counter = Arc::new(Counter::default());
        self.push(name, help, Metric::Counter(counter.clone()));
        counter
    }

    /// Registers and returns a gauge.
    pub fn gauge(&self, name: &str, help: &str) -> Arc<Gauge> {
        let gauge = Arc::new(Gauge::default());
        self.push(name, help, Metric::Gauge(gauge.clone()));
        gauge
    }

    /// Registers `name{class="2xx"}` … `name{class="5xx"}` for counting responses by status class.
    pub fn responses(&self, name: &str, help: &str) -> ResponseCounters {
        ResponseCounters(
            ["2xx", "3xx", "4xx", "5xx"]
                .map(|class| self.counter(&format!("{name}{{class=\"{class}\"}}"), help)),
        )
    }

    fn push(&self, name: &str, help: &str, metric: Metric) {
        if let Ok(mut metrics) = self.metrics.lock() {
            metrics.push((name.to_owned(), help.to_owned(), metric));
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(metrics) = self.metrics.lock() else { return out };
        let mut described = std::collections::HashSet::new();
        for (name, help, metric) in metrics.iter() {
            let family = name.split('{').next().unwrap_or(name);
            if described.insert(family.to_owned()) {
                let kind = match metric {
                    Metric::Counter(_) => "counter",
                    Metric::Gauge(_) => "gauge",
                };
                let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} {kind}");
            }
            let value = match metric {
                Metric::Counter(c) => c.get().to_string(),
                Metric::Gauge(g) => g.get().to_string(),
            };
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_chain_names_every_cause() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("cannot reach the upstream")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let error = Outer(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"));
        assert_eq!(ErrorChain(&error).to_string(), "cannot reach the upstream: connection refused");
    }

    #[test]
    fn metrics_render_in_the_prometheus_text_format() {
        let registry = Registry::default();
        let responses = registry.responses("http_requests_total", "Requests answered.");
        let pending = registry.gauge("relay_unsent_changes", "Changes waiting for the bus.");
        for status in [200, 204, 201, 404] {
            responses.count(status);
        }
        pending.set(7);
        let text = registry.render();
        assert_eq!(text.matches("# TYPE http_requests_total counter").count(), 1, "{text}");
        assert!(text.contains("http_requests_total{class=\"2xx\"} 3\n"), "{text}");
        assert!(text.contains("http_requests_total{class=\"4xx\"} 1\n"), "{text}");
        assert!(text.contains("# TYPE relay_unsent_changes gauge\nrelay_unsent_changes 7\n"), "{text}");
    }
}

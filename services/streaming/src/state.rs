//! What every stream shares: the settings, the metrics, the heartbeat and shutdown signal, and the
//! rendered `hydrate` and `patch`/`delete` frames.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use vexil_config::DataPlaneSettings;
use vexil_telemetry::{Counter, Gauge, Registry};

/// Shared by every stream of one process. On actix, register it as `web::Data<StreamingState>` beside
/// `web::Data<vexil_dataplane::Cache>` (see [`configure`](crate::configure)).
///
/// Holds one clock for every stream: a single task ticks every `heartbeat_seconds` and each stream
/// writes its `: ping` on the tick, so an idle stream owns no timer. The same channel carries the
/// shutdown: [`shutdown`](Self::shutdown) ends every stream.
pub struct StreamingState {
    settings: DataPlaneSettings,
    /// The stream signal (heartbeat ticks and shutdown). The ticker task holds only a `Weak`, so it ends
    /// with the state.
    signal: Arc<watch::Sender<Signal>>,
    retry_frame: Bytes,
    metrics: Arc<Metrics>,
    hydrates: FrameCache<Bytes>,
    changes: FrameCache<Option<(&'static str, Bytes)>>,
}

/// What the shared signal says: how many heartbeats have ticked, and whether the process is stopping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Signal {
    pub(crate) ticks: u64,
    pub(crate) shutdown: bool,
}

impl StreamingState {
    /// The state for these settings, with its heartbeat ticker running. Call it inside a Tokio runtime
    /// (it spawns the ticker, which ends when the state is dropped or shut down).
    pub fn new(settings: &DataPlaneSettings) -> StreamingState {
        let (signal, _) = watch::channel(Signal::default());
        let signal = Arc::new(signal);
        // A zero interval would spin; one second is the shortest heartbeat that makes sense.
        let every = Duration::from_secs(settings.heartbeat_seconds.max(1));
        tokio::spawn(tick(Arc::downgrade(&signal), every));
        StreamingState {
            settings: settings.clone(),
            signal,
            retry_frame: Bytes::from(vexil_protocol::sse::retry(settings.retry_ms)),
            metrics: Arc::new(Metrics::new()),
            hydrates: FrameCache::default(),
            changes: FrameCache::default(),
        }
    }

    /// The data-plane settings the streams use (`heartbeat_seconds`, `retry_ms`).
    pub fn settings(&self) -> &DataPlaneSettings {
        &self.settings
    }

    /// The streaming metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Ends every open stream (each writes nothing more and finishes its response cleanly, so clients
    /// reconnect — to another replica — with `Last-Event-ID`), and makes new stream requests answer
    /// with a `retry:` hint only. Call it on SIGTERM *before* draining the HTTP server: an open stream
    /// would otherwise hold the drain until its timeout. Idempotent.
    pub fn shutdown(&self) {
        self.signal.send_modify(|signal| signal.shutdown = true);
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.signal.borrow().shutdown
    }

    /// Resolves once [`shutdown`](Self::shutdown) is called.
    pub async fn stopped(&self) {
        let mut signal = self.signal.subscribe();
        // `wait_for` only fails when the sender is gone, which cannot happen while `self` lives.
        let _ = signal.wait_for(|signal| signal.shutdown).await;
    }

    pub(crate) fn subscribe_signal(&self) -> watch::Receiver<Signal> {
        let mut receiver = self.signal.subscribe();
        // Only ticks from now on count.
        receiver.mark_unchanged();
        receiver
    }

    /// `retry: <retry_ms>`, the first bytes of every stream.
    pub(crate) fn retry_frame(&self) -> Bytes {
        self.retry_frame.clone()
    }

    /// The last unfiltered `hydrate` frame of each environment.
    pub(crate) fn hydrates(&self) -> &FrameCache<Bytes> {
        &self.hydrates
    }

    /// What unfiltered server streams send for the last change event of each environment (see
    /// `frames::change`): rendered once, not once per stream.
    pub(crate) fn changes(&self) -> &FrameCache<Option<(&'static str, Bytes)>> {
        &self.changes
    }

    /// Forgets a deleted environment's frames.
    pub(crate) fn forget(&self, environment_id: i64) {
        self.hydrates.forget(environment_id);
        self.changes.forget(environment_id);
    }
}

impl std::fmt::Debug for StreamingState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingState")
            .field("heartbeat_seconds", &self.settings.heartbeat_seconds)
            .field("retry_ms", &self.settings.retry_ms)
            .field("signal", &*self.signal.borrow())
            .finish_non_exhaustive()
    }
}

async fn tick(signal: Weak<watch::Sender<Signal>>, every: Duration) {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    // After a stall, one ping is enough; a burst of them says nothing more.
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(signal) = signal.upgrade() else { return };
        if signal.borrow().shutdown {
            return;
        }
        signal.send_modify(|signal| signal.ticks += 1);
    }
}

/// The last rendered frame (of one kind) of each environment, by revision: ten thousand clients
/// reconnecting at once (a replica restarted) cost one `hydrate` serialisation, not ten thousand, and
/// a change sent to ten thousand streams is rendered once.
pub(crate) struct FrameCache<T> {
    frames: Mutex<HashMap<i64, (u64, T)>>,
}

impl<T> Default for FrameCache<T> {
    fn default() -> FrameCache<T> {
        FrameCache { frames: Mutex::default() }
    }
}

impl<T: Clone> FrameCache<T> {
    /// The frame of environment `id` at `revision`, rendering it with `render` when it is not cached.
    pub(crate) fn get_or_render(&self, id: i64, revision: u64, render: impl FnOnce() -> T) -> T {
        if let Some((cached, frame)) = self.lock().get(&id)
            && *cached == revision
        {
            return frame.clone();
        }
        // Rendered outside the lock: a large environment takes a while, and other environments'
        // clients should not wait for it.
        let frame = render();
        let mut frames = self.lock();
        let entry = frames.entry(id).or_insert_with(|| (revision, frame.clone()));
        if entry.0 <= revision {
            *entry = (revision, frame.clone());
        }
        frame
    }

    /// Forgets a deleted environment.
    pub(crate) fn forget(&self, id: i64) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (u64, T)>> {
        // Entries are replaced whole, so a poisoned map is still consistent.
        self.frames.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Which endpoint a stream was opened on (a label of the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    /// `/v1/stream`.
    Server = 0,
    /// `/v1/client/stream`.
    Client = 1,
    /// `/ofrep/v1/stream`.
    Ofrep = 2,
}

/// The SSE events a stream can send (a label of the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    Hydrate = 0,
    Patch = 1,
    Delete = 2,
    Values = 3,
    Message = 4,
}

/// The streaming service's metrics, rendered at `/metrics`.
pub struct Metrics {
    registry: Registry,
    connections: [Arc<Gauge>; 3],
    events: [Arc<Counter>; 5],
    heartbeats: Arc<Counter>,
    handovers: Arc<Counter>,
    lag: LagHistogram,
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::default();
        let connections = ["server", "client", "ofrep"].map(|stream| {
            registry.gauge(
                &format!("vexil_streaming_connections{{stream=\"{stream}\"}}"),
                "Open SSE streams, by endpoint.",
            )
        });
        let events = ["hydrate", "patch", "delete", "values", "message"].map(|event| {
            registry.counter(
                &format!("vexil_streaming_events_sent_total{{event=\"{event}\"}}"),
                "SSE events written to streams, by event type (a replay counts each event).",
            )
        });
        let heartbeats =
            registry.counter("vexil_streaming_heartbeats_total", "Heartbeat comments written to streams.");
        let handovers = registry.counter(
            "vexil_streaming_fanout_handovers_total",
            "Patches and deletes the fan-out could not write whole to a parked stream and left (or left \
             the rest) to the stream's own task: a full socket buffer (a slow client), or a stream not \
             ready for that change.",
        );
        Metrics { registry, connections, events, heartbeats, handovers, lag: LagHistogram::default() }
    }

    /// Open streams on every endpoint together.
    pub fn connections(&self) -> i64 {
        self.connections.iter().map(|gauge| gauge.get()).sum()
    }

    /// The Prometheus text exposition of every streaming metric.
    pub fn render(&self) -> String {
        let mut out = self.registry.render();
        self.lag.render(&mut out);
        out
    }

    pub(crate) fn connected(self: &Arc<Self>, kind: StreamKind) -> Connected {
        let gauge = Arc::clone(&self.connections[kind as usize]);
        gauge.add(1);
        Connected(gauge)
    }

    pub(crate) fn sent(&self, event: EventKind) {
        self.sent_many(event, 1);
    }

    /// Counts `n` events of one kind (the fan-out counts a change's writes at once).
    pub(crate) fn sent_many(&self, event: EventKind, n: u64) {
        self.events[event as usize].add(n);
    }

    /// Counts changes the fan-out handed over to streams' own tasks.
    pub(crate) fn handed_over(&self, n: u64) {
        self.handovers.add(n);
    }

    pub(crate) fn heartbeat(&self) {
        self.heartbeats.inc();
    }

    /// Records the lag of one live delivery: from the change's commit (`committed_at_ms`, the control
    /// plane's clock) to now (this host's clock).
    pub(crate) fn delivered(&self, committed_at_ms: i64) {
        self.delivered_many(committed_at_ms, 1);
    }

    /// Records `n` live deliveries of one change made just now, with one lag.
    pub(crate) fn delivered_many(&self, committed_at_ms: i64, n: u64) {
        if committed_at_ms > 0 && n > 0 {
            self.lag.observe(unix_millis().saturating_sub(committed_at_ms), n);
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("connections", &self.connections()).finish_non_exhaustive()
    }
}

/// Counts an open stream on its gauge until dropped (when the stream ends or its client goes away).
pub(crate) struct Connected(Arc<Gauge>);

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.add(-1);
    }
}

/// Upper bounds of the propagation-lag buckets, in milliseconds.
const LAG_BUCKETS_MS: [i64; 11] = [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000];

/// A Prometheus histogram of propagation lag (`vexil_streaming_propagation_lag_seconds`): from a
/// change's commit in the control plane to its event being handed to a stream's connection, one
/// observation per live delivery (replays and hydrates are not observed). The two clocks are different
/// hosts' clocks: skew shows up here, and a negative lag counts as zero.
#[derive(Default)]
struct LagHistogram {
    /// Per bucket (not cumulative), then one for `+Inf`.
    buckets: [AtomicU64; LAG_BUCKETS_MS.len() + 1],
    sum_ms: AtomicU64,
    count: AtomicU64,
}

impl LagHistogram {
    /// Observes `n` deliveries of `lag_ms` each.
    fn observe(&self, lag_ms: i64, n: u64) {
        let lag_ms = lag_ms.max(0);
        let bucket = LAG_BUCKETS_MS.iter().position(|&bound| lag_ms <= bound).unwrap_or(LAG_BUCKETS_MS.len());
        self.buckets[bucket].fetch_add(n, Ordering::Relaxed);
        self.sum_ms.fetch_add(lag_ms.unsigned_abs() * n, Ordering::Relaxed);
        self.count.fetch_add(n, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String) {
        const NAME: &str = "vexil_streaming_propagation_lag_seconds";
        let _ = writeln!(
            out,
            "# HELP {NAME} From a change's commit in the control plane to its event written to a stream, per live delivery.\n# TYPE {NAME} histogram"
        );
        let mut cumulative = 0;
        for (bound, bucket) in LAG_BUCKETS_MS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{NAME}_bucket{{le=\"{}\"}} {cumulative}", *bound as f64 / 1000.0);
        }
        cumulative += self.buckets[LAG_BUCKETS_MS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{NAME}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{NAME}_sum {}", self.sum_ms.load(Ordering::Relaxed) as f64 / 1000.0);
        let _ = writeln!(out, "{NAME}_count {}", self.count.load(Ordering::Relaxed));
    }
}

pub(crate) fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_histogram_renders_cumulative_buckets_in_seconds() {
        let histogram = LagHistogram::default();
        histogram.observe(3, 1);
        histogram.observe(40, 1);
        histogram.observe(-7, 1);
        histogram.observe(60_000, 1);
        histogram.observe(20, 3);
        let mut out = String::new();
        histogram.render(&mut out);
        assert!(out.contains("# TYPE vexil_streaming_propagation_lag_seconds histogram\n"), "{out}");
        assert!(out.contains("vexil_streaming_propagation_lag_seconds_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("vexil_streaming_propagation_lag_seconds_bucket{le=\"0.05\"} 6\n"), "{out}");
        assert!(out.contains("vexil_streaming_propagation_lag_seconds_bucket{le=\"10\"} 6\n"), "{out}");
        assert!(out.contains("vexil_streaming_propagation_lag_seconds_bucket{le=\"+Inf\"} 7\n"), "{out}");
        assert!(out.contains("vexil_streaming_propagation_lag_seconds_sum 60.103\n"), "{out}");
        assert!(out.contains("vexil_streaming_propagation_lag_seconds_count 7\n"), "{out}");
    }

    #[test]
    fn a_cached_hydrate_is_reused_only_for_its_revision() {
        let cache = FrameCache::default();
        let first = cache.get_or_render(1, 5, || Bytes::from_static(b"five"));
        let again = cache.get_or_render(1, 5, || unreachable!("cached"));
        let newer = cache.get_or_render(1, 6, || Bytes::from_static(b"six"));
        assert_eq!(
            (first, again, newer),
            (Bytes::from_static(b"five"), Bytes::from_static(b"five"), Bytes::from_static(b"six"))
        );
        // A slow renderer of an older revision does not replace a newer frame.
        let older = cache.get_or_render(1, 5, || Bytes::from_static(b"five again"));
        assert_eq!(older, Bytes::from_static(b"five again"));
        assert_eq!(cache.get_or_render(1, 6, || unreachable!("still cached")), Bytes::from_static(b"six"));
    }
}

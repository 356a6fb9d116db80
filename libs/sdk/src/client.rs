//! [`Client`]: evaluation on the local snapshot, state, listeners, events.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vexil_model::{Context, ErrorKind, Flag, FlagKey, Reason};

use crate::events::{Event, EventKind, EventQueue, now_ms};
use crate::health::State;
use crate::shared::{FlagChange, Shared};
use crate::sync::SyncEvent;

/// The result of an evaluation: the value (the flag's, or the caller's default), the variation served,
/// its OpenFeature variant, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationDetail<T> {
    /// The flag's value, or the caller's default.
    pub value: T,
    /// The index of the variation served, when the flag's value was used.
    pub variation: Option<usize>,
    /// The variation's name (or its index as text), when the flag's value was used.
    pub variant: Option<String>,
    /// Why: `OFF`, `TARGET_MATCH`, `RULE_MATCH`, `FALLTHROUGH`, `PREREQUISITE_FAILED`, or `ERROR` with its
    /// kind (`NOT_READY` before any data, `FLAG_NOT_FOUND`, `WRONG_TYPE`, ...).
    pub reason: Reason<'static>,
    /// Whether a percentage rollout picked the variation (of the matching rule, or of the
    /// fallthrough): OpenFeature's `SPLIT`. `false` when the caller's default is served.
    pub in_rollout: bool,
}

/// A Vexil server SDK client: one environment's flags, kept in sync in the background and evaluated
/// locally. Cheap to clone (clones share everything); `Send + Sync`.
///
/// Evaluations never block and never panic: before the first data they serve the caller's default with
/// `ERROR NOT_READY`, and they go on serving the last data when every sync source is gone. Dropping the
/// last clone stops the background tasks without sending queued events; call [`close`](Self::close)
/// first to send them.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    shared: Arc<Shared>,
    events: EventQueue,
    exposures: bool,
    dropped: Arc<AtomicU64>,
    shutdown: CancellationToken,
    tasks: tokio::sync::Mutex<Vec<JoinHandle<()>>>,
    close_timeout: Duration,
}

impl Inner {
    pub(crate) fn new(
        shared: Arc<Shared>,
        events: EventQueue,
        exposures: bool,
        dropped: Arc<AtomicU64>,
        shutdown: CancellationToken,
        tasks: Vec<JoinHandle<()>>,
        close_timeout: Duration,
    ) -> Inner {
        Inner {
            shared,
            events,
            exposures,
            dropped,
            shutdown,
            tasks: tokio::sync::Mutex::new(tasks),
            close_timeout,
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.state())
            .field("revision", &self.revision())
            .finish_non_exhaustive()
    }
}

impl Client {
    pub(crate) fn new(inner: Inner) -> Client {
        Client { inner: Arc::new(inner) }
    }

    /// The client's state now.
    pub fn state(&self) -> State {
        *self.inner.shared.state.borrow()
    }

    /// The environment revision of the data served, if any.
    pub fn revision(&self) -> Option<u64> {
        self.inner.shared.store.revision()
    }

    /// How long ago the data served was last confirmed current (`None` without data).
    pub fn data_age(&self) -> Option<Duration> {
        self.inner.shared.health().data_age(Instant::now())
    }

    /// The state, observable: `changed().await` wakes on every transition. Copy the state out of a
    /// `borrow()` (or `wait_for`) at once: a `Ref` kept alive holds a read lock that stalls the sync.
    pub fn watch_state(&self) -> watch::Receiver<State> {
        self.inner.shared.state.subscribe()
    }

    /// Flag changes from now on (a bounded channel: a receiver that falls behind by more than 256
    /// changes gets `RecvError::Lagged` and should re-read what it needs).
    pub fn subscribe_changes(&self) -> broadcast::Receiver<FlagChange> {
        self.inner.shared.changes.subscribe()
    }

    /// What the background sync does from now on (polls, stream connections, events).
    pub fn subscribe_sync_events(&self) -> broadcast::Receiver<SyncEvent> {
        self.inner.shared.sync_events.subscribe()
    }

    /// The value of boolean flag `key` for `context`, or `default` (not found, not ready, not boolean,
    /// off without an off variation, ...). Allocation-free unless exposures are enabled.
    pub fn bool_value(&self, key: &str, context: &Context, default: bool) -> bool {
        self.inner.shared.store.read(|data| {
            let Some(data) = data else { return default };
            let detail = data.evaluate(key, context);
            let flag = detail.flag;
            let typed = detail.into_bool(default);
            self.expose(key, context, flag, typed.variation, || Value::Bool(typed.value));
            typed.value
        })
    }

    /// The value of string flag `key` for `context`, or `default`.
    pub fn string_value(&self, key: &str, context: &Context, default: &str) -> String {
        self.string_detail(key, context, default).value
    }

    /// The value of number flag `key` for `context`, or `default`.
    pub fn number_value(&self, key: &str, context: &Context, default: f64) -> f64 {
        self.inner.shared.store.read(|data| {
            let Some(data) = data else { return default };
            let detail = data.evaluate(key, context);
            let flag = detail.flag;
            let typed = detail.into_number(default);
            self.expose(key, context, flag, typed.variation, || number(typed.value));
            typed.value
        })
    }

    /// The value of JSON flag `key` for `context`, or `default`.
    pub fn json_value(&self, key: &str, context: &Context, default: Value) -> Value {
        self.json_detail(key, context, default).value
    }

    /// [`bool_value`](Self::bool_value) with the variation, variant and reason.
    pub fn bool_detail(&self, key: &str, context: &Context, default: bool) -> EvaluationDetail<bool> {
        self.inner.shared.store.read(|data| {
            let Some(data) = data else { return not_ready(default) };
            let detail = data.evaluate(key, context);
            let flag = detail.flag;
            let typed = detail.into_bool(default);
            self.expose(key, context, flag, typed.variation, || Value::Bool(typed.value));
            evaluation_detail(typed.value, typed.variation, typed.in_rollout, flag, typed.reason)
        })
    }

    /// [`string_value`](Self::string_value) with the variation, variant and reason.
    pub fn string_detail(&self, key: &str, context: &Context, default: &str) -> EvaluationDetail<String> {
        self.inner.shared.store.read(|data| {
            let Some(data) = data else { return not_ready(default.to_owned()) };
            let detail = data.evaluate(key, context);
            let flag = detail.flag;
            let typed = detail.into_str(default);
            self.expose(key, context, flag, typed.variation, || Value::String(typed.value.to_owned()));
            evaluation_detail(typed.value.to_owned(), typed.variation, typed.in_rollout, flag, typed.reason)
        })
    }

    /// [`number_value`](Self::number_value) with the variation, variant and reason.
    pub fn number_detail(&self, key: &str, context: &Context, default: f64) -> EvaluationDetail<f64> {
        self.inner.shared.store.read(|data| {
            let Some(data) = data else { return not_ready(default) };
            let detail = data.evaluate(key, context);
            let flag = detail.flag;
            let typed = detail.into_number(default);
            self.expose(key, context, flag, typed.variation, || number(typed.value));
            evaluation_detail(typed.value, typed.variation, typed.in_rollout, flag, typed.reason)
        })
    }

    /// [`json_value`](Self::json_value) with the variation, variant and reason.
    pub fn json_detail(&self, key: &str, context: &Context, default: Value) -> EvaluationDetail<Value> {
        // `read` calls its closure once; `take` moves the default out of the `FnMut` it must be.
        let mut default = default;
        self.inner.shared.store.read(|data| {
            let default = std::mem::take(&mut default);
            let Some(data) = data else { return not_ready(default) };
            let detail = data.evaluate(key, context);
            let flag = detail.flag;
            let typed = detail.into_json(&default);
            self.expose(key, context, flag, typed.variation, || typed.value.clone());
            let served = typed.variation.map(|_| typed.value.clone());
            let (variation, in_rollout, reason) =
                (typed.variation, typed.in_rollout, typed.reason.into_owned());
            evaluation_detail(served.unwrap_or(default), variation, in_rollout, flag, reason)
        })
    }

    /// Runs `read` on the compiled snapshot the client serves (`None` before any data): for what the
    /// typed methods do not cover, such as `vexil_eval::evaluate_all` over every flag. Keep `read`
    /// short: the snapshot it sees is not replaced by a newer one for it, but it is held meanwhile.
    pub fn with_snapshot<R>(&self, read: impl FnOnce(Option<&vexil_eval::CompiledSnapshot>) -> R) -> R {
        let data = self.inner.shared.store.data.load();
        read(data.as_deref().map(|data| &data.compiled))
    }

    /// The keys of the flags the client has (archived flags excluded; those it cannot evaluate last).
    pub fn flag_keys(&self) -> Vec<String> {
        self.inner.shared.store.data.load().as_deref().map(|data| data.keys()).unwrap_or_default()
    }

    /// Records a custom event (a conversion, a metric's `value`) for `context`: queued and sent in the
    /// background, never waiting. Dropped and counted ([`dropped_events`](Self::dropped_events)) when
    /// the queue is full, in offline mode, after [`close`](Self::close), or when `event_key` is not a
    /// valid key (`[A-Za-z0-9._-]`, 1 to 256 bytes). A value that is not finite is left out.
    pub fn track(&self, event_key: &str, context: &Context, value: Option<f64>) {
        if FlagKey::parse(event_key).is_err() {
            tracing::warn!(
                event_key,
                "an event key must be 1 to 256 characters of [A-Za-z0-9._-]; event dropped"
            );
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.inner.events.push(Event {
            kind: EventKind::Custom,
            key: event_key.to_owned(),
            context: context.clone(),
            variation: None,
            variant: None,
            value: value.and_then(serde_json::Number::from_f64).map(Value::Number),
            timestamp: now_ms(),
        });
    }

    /// Events that never reached the data plane: the queue was full, the client offline or closed, the
    /// key invalid, or a batch refused or undeliverable after retries.
    pub fn dropped_events(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Sends the events queued so far now; resolves once they are sent (or given up).
    pub async fn flush(&self) {
        self.inner.events.flush().await;
    }

    /// Sends the queued events and stops the background tasks (bounded by the builder's
    /// `close_timeout`, 10 s). The client keeps serving its last data; `track` drops from now on.
    /// Idempotent: later calls return at once.
    pub async fn close(&self) {
        let mut tasks = self.inner.tasks.lock().await;
        if tasks.is_empty() {
            return;
        }
        self.inner.shutdown.cancel();
        let deadline = tokio::time::Instant::now() + self.inner.close_timeout;
        for mut task in tasks.drain(..) {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::warn!("a background task did not stop in time; aborting it");
                task.abort();
            }
        }
        self.inner.shared.closed();
    }

    /// Queues an exposure when enabled and the flag's variation was served.
    #[inline]
    fn expose(
        &self,
        key: &str,
        context: &Context,
        flag: Option<&Flag>,
        variation: Option<usize>,
        value: impl FnOnce() -> Value,
    ) {
        if !self.inner.exposures {
            return;
        }
        let Some(variation) = variation else { return };
        self.inner.events.push(Event {
            kind: EventKind::Exposure,
            key: key.to_owned(),
            context: context.clone(),
            variation: Some(variation),
            variant: flag.map(|flag| flag.variant_name(variation).into_owned()),
            value: Some(value()),
            timestamp: now_ms(),
        });
    }
}

fn number(value: f64) -> Value {
    serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
}

fn not_ready<T>(default: T) -> EvaluationDetail<T> {
    EvaluationDetail {
        value: default,
        variation: None,
        variant: None,
        reason: Reason::Error { error_kind: ErrorKind::NotReady },
        in_rollout: false,
    }
}

fn evaluation_detail<T>(
    value: T,
    variation: Option<usize>,
    in_rollout: bool,
    flag: Option<&Flag>,
    reason: Reason<'_>,
) -> EvaluationDetail<T> {
    EvaluationDetail {
        value,
        variant: variation.zip(flag).map(|(variation, flag)| flag.variant_name(variation).into_owned()),
        variation,
        reason: reason.into_owned(),
        in_rollout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<Client>();
    }

    #[test]
    fn starting_outside_a_tokio_runtime_is_an_error_not_a_panic() {
        use std::future::Future as _;
        let start = Client::builder("k").offline(true).start();
        let polled = std::pin::pin!(start);
        let waker = std::task::Waker::noop();
        let outcome = polled.poll(&mut std::task::Context::from_waker(waker));
        assert!(matches!(outcome, std::task::Poll::Ready(Err(crate::Error::NoRuntime))));
    }
}

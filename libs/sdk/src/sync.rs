//! The background sync: the server stream with reconnects, the polling fallback, the safety-net
//! refresh, and the state monitor.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, watch};
use tokio::time::Instant;
use vexil_sse::{SseEvent, SseParser};

use crate::backoff::Backoff;
use crate::builder::Config;
use crate::health::Health;
use crate::store::{Origin, Outcome, Source, Store, parse_change};
use crate::{FlagChange, State, SyncEvent, chain};

/// Capacity of the change and sync-event channels.
const CHANNEL_CAPACITY: usize = 256;

/// What the client and its background tasks share.
pub(crate) struct Shared {
    pub(crate) store: Store,
    health: Mutex<Health>,
    health_changed: Notify,
    pub(crate) state: watch::Sender<State>,
    pub(crate) changes: broadcast::Sender<FlagChange>,
    pub(crate) sync_events: broadcast::Sender<SyncEvent>,
    stale_after: Duration,
}

impl Shared {
    pub(crate) fn new(stale_after: Duration, offline: bool) -> Shared {
        let health = Health { offline, ..Health::default() };
        let state = health.state(std::time::Instant::now(), stale_after);
        Shared {
            store: Store::default(),
            health: Mutex::new(health),
            health_changed: Notify::new(),
            state: watch::channel(state).0,
            changes: broadcast::channel(CHANNEL_CAPACITY).0,
            sync_events: broadcast::channel(CHANNEL_CAPACITY).0,
            stale_after,
        }
    }

    pub(crate) fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the health and publishes the state it implies. (The state is sent after the health lock
    /// is released; should two updates race, the monitor, woken by each, publishes the latest.)
    pub(crate) fn update_health(&self, change: impl FnOnce(&mut Health)) {
        let state = {
            let mut health = self.health();
            change(&mut health);
            health.state(std::time::Instant::now(), self.stale_after)
        };
        self.publish_state(state);
        self.health_changed.notify_one();
    }

    /// Publishes the state now; when it will change by itself if nothing happens.
    fn refresh_state(&self) -> Option<std::time::Instant> {
        let now = std::time::Instant::now();
        let (state, next) = {
            let health = self.health();
            (health.state(now, self.stale_after), health.next_change(now, self.stale_after))
        };
        self.publish_state(state);
        next
    }

    fn publish_state(&self, state: State) {
        self.state.send_if_modified(|current| {
            let changed = *current != state;
            if changed {
                tracing::info!(from = ?*current, to = ?state, "state changed");
                *current = state;
            }
            changed
        });
    }

    /// After an install or a change from a sync: tells the change listeners, then confirms the data (in
    /// this order, so that whoever waited for the state — `start` — subscribes after the first change).
    fn synced(&self, outcome: &Outcome) {
        if let Outcome::Installed { revision, changed } = outcome
            && !changed.is_empty()
        {
            let _ = self.changes.send(FlagChange { revision: *revision, keys: changed.clone() });
        }
        if self.store.synced() {
            self.update_health(|health| health.confirm(std::time::Instant::now()));
        }
    }

    fn emit(&self, event: SyncEvent) {
        let _ = self.sync_events.send(event);
    }

    /// The background tasks stopped: no stream any more.
    pub(crate) fn closed(&self) {
        self.update_health(|health| health.connected = false);
    }
}

/// Keeps the state current when time alone changes it (`Ready` → `Stale` after the grace period).
pub(crate) async fn monitor(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let next = shared.refresh_state();
        let wake = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = stopped(&mut shutdown) => return,
            () = shared.health_changed.notified() => {}
            () = wake => {}
        }
    }
}

/// Resolves once `shutdown` is raised or its sender is gone.
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// How one stream connection went.
#[derive(Debug, Default)]
struct StreamOutcome {
    /// It answered 200.
    connected: bool,
    /// It delivered at least one usable event.
    progress: bool,
    /// The next connection must start from a fresh `hydrate` (no `Last-Event-ID`).
    resync: bool,
}

/// What became of one stream event.
enum Handled {
    Used,
    Ignored,
    Resync(String),
}

/// The sync task.
pub(crate) struct Sync {
    shared: Arc<Shared>,
    config: Arc<Config>,
    http: reqwest::Client,
    /// The `ETag` of the last `200` of `GET /v1/flags`.
    etag: Option<String>,
    /// When to poll next while the stream is down.
    next_poll: Instant,
    /// The stream's `retry:` hint.
    retry_hint: Option<Duration>,
    /// Whether the next connection may send `Last-Event-ID`.
    resume: bool,
}

impl Sync {
    pub(crate) fn new(shared: Arc<Shared>, config: Arc<Config>, http: reqwest::Client) -> Sync {
        Sync { shared, config, http, etag: None, next_poll: Instant::now(), retry_hint: None, resume: true }
    }

    /// Syncs until `shutdown` is raised (or the client is gone).
    pub(crate) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let work = async {
            if self.config.streaming {
                self.stream_forever().await;
            } else {
                self.poll_forever().await;
            }
        };
        tokio::select! {
            biased;
            () = stopped(&mut shutdown) => {}
            () = work => {}
        }
        tracing::debug!("sync stopped");
    }

    async fn poll_forever(&mut self) {
        loop {
            self.poll().await;
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    async fn stream_forever(&mut self) {
        let mut backoff = Backoff::new(self.config.min_backoff, self.config.max_backoff);
        loop {
            let outcome = self.stream_once().await;
            if outcome.progress {
                backoff.reset();
            }
            if outcome.resync {
                self.resume = false;
            }
            if outcome.connected {
                // A live stream was lost: check at once for what may have changed meanwhile.
                self.next_poll = Instant::now();
            }
            let mut delay = backoff.next_delay();
            if let Some(hint) = self.retry_hint {
                delay = delay.max(hint.min(backoff.max()));
            }
            tracing::debug!(delay_ms = delay.as_millis() as u64, "reconnecting the stream");
            self.poll_until(Instant::now() + delay).await;
        }
    }

    /// Polls (at once if due, then every poll interval) until `reconnect_at`.
    async fn poll_until(&mut self, reconnect_at: Instant) {
        loop {
            let now = Instant::now();
            if now >= reconnect_at {
                return;
            }
            if now >= self.next_poll {
                self.poll().await;
                self.next_poll = Instant::now() + self.config.poll_interval;
                continue;
            }
            tokio::time::sleep_until(self.next_poll.min(reconnect_at)).await;
        }
    }

    /// One stream connection, until it ends, fails, goes silent, or carries something unusable.
    async fn stream_once(&mut self) -> StreamOutcome {
        let mut outcome = StreamOutcome::default();
        let mut request = self
            .http
            .get(&self.config.stream_url)
            .bearer_auth(&self.config.server_key)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(prefix) = &self.config.prefix {
            request = request.query(&[("prefix", prefix)]);
        }
        if self.resume
            && let Some(revision) = self.shared.store.synced_revision()
        {
            request = request.header("Last-Event-ID", revision.to_string());
        }
        self.resume = true;
        let mut response = match tokio::time::timeout(self.config.request_timeout, request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                let reason = format!("cannot connect: {}", chain(&error));
                tracing::debug!(url = %self.config.stream_url, %reason, "no stream");
                self.shared.emit(SyncEvent::StreamConnectFailed { reason });
                return outcome;
            }
            Err(_) => {
                let reason = format!("no response in {:?}", self.config.request_timeout);
                self.shared.emit(SyncEvent::StreamConnectFailed { reason });
                return outcome;
            }
        };
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
                tracing::error!(%status, url = %self.config.stream_url, "the stream refused the server key");
            } else {
                tracing::warn!(%status, url = %self.config.stream_url, "the stream refused the connection");
            }
            self.shared
                .emit(SyncEvent::StreamConnectFailed { reason: format!("status {}", status.as_u16()) });
            return outcome;
        }
        outcome.connected = true;
        tracing::info!(url = %self.config.stream_url, "stream connected");
        self.shared.update_health(|health| {
            health.connected = true;
            health.alive(std::time::Instant::now());
        });
        self.shared.emit(SyncEvent::StreamConnected);

        let mut parser = SseParser::default();
        let mut dead_at = Instant::now() + self.config.dead_stream_after;
        let mut refresh_at = Instant::now() + self.config.refresh_interval;
        let reason = 'connection: loop {
            tokio::select! {
                chunk = response.chunk() => match chunk {
                    Ok(Some(bytes)) => {
                        dead_at = Instant::now() + self.config.dead_stream_after;
                        self.shared.update_health(|health| health.alive(std::time::Instant::now()));
                        for event in parser.feed(&bytes) {
                            match self.handle(&event) {
                                Handled::Used => outcome.progress = true,
                                Handled::Ignored => {}
                                Handled::Resync(reason) => {
                                    outcome.resync = true;
                                    break 'connection reason;
                                }
                            }
                        }
                        if let Some(millis) = parser.retry() {
                            self.retry_hint = Some(Duration::from_millis(millis));
                        }
                    }
                    Ok(None) => break 'connection "the stream ended".to_owned(),
                    Err(error) => break 'connection format!("the stream failed: {}", chain(&error)),
                },
                () = tokio::time::sleep_until(dead_at) => {
                    break 'connection format!("no event or heartbeat for {:?}", self.config.dead_stream_after);
                }
                () = tokio::time::sleep_until(refresh_at) => {
                    self.poll().await;
                    refresh_at = Instant::now() + self.config.refresh_interval;
                }
            }
        };
        tracing::info!(%reason, "stream disconnected");
        self.shared.update_health(|health| health.connected = false);
        self.shared.emit(SyncEvent::StreamDisconnected { reason });
        outcome
    }

    /// Applies one stream event.
    fn handle(&mut self, event: &SseEvent) -> Handled {
        let name = event.event.as_str();
        let outcome = match name {
            "hydrate" => {
                let source = match Source::parse(event.data.as_bytes()) {
                    Ok(source) => source,
                    Err(error) => {
                        tracing::warn!(error = %error, "cannot read a hydrate");
                        return Handled::Resync(format!("unreadable hydrate: {error}"));
                    }
                };
                self.shared.store.install(source, Origin::Hydrate)
            }
            "patch" | "delete" => {
                let Ok(revision) = event.id.parse::<u64>() else {
                    return Handled::Resync(format!("{name} with id {:?}", event.id));
                };
                match parse_change(name, &event.data) {
                    Ok(change) => self.shared.store.apply(change, revision),
                    Err(error) => {
                        tracing::warn!(error = %error, revision, "cannot read a {name}");
                        return Handled::Resync(format!("unreadable {name} {revision}: {error}"));
                    }
                }
            }
            _ => return Handled::Ignored,
        };
        match outcome {
            Ok(outcome) => {
                let revision = match &outcome {
                    Outcome::Installed { revision, .. } => *revision,
                    Outcome::Skipped { .. } => event.id.parse().unwrap_or_default(),
                };
                if let Outcome::Installed { changed, .. } = &outcome {
                    tracing::debug!(event = name, revision, changed = changed.len(), "applied");
                }
                self.shared.synced(&outcome);
                self.shared.emit(SyncEvent::StreamEvent { event: name.to_owned(), revision });
                Handled::Used
            }
            Err(error) => {
                tracing::error!(error = %error, event = name, "cannot compile the flags; keeping the data it has");
                Handled::Resync(format!("uncompilable {name}: {error}"))
            }
        }
    }

    /// One `GET /v1/flags`, with `If-None-Match` when the client has synced data.
    async fn poll(&mut self) {
        let mut request = self
            .http
            .get(&self.config.flags_url)
            .bearer_auth(&self.config.server_key)
            .timeout(self.config.request_timeout);
        if let Some(prefix) = &self.config.prefix {
            request = request.query(&[("prefix", prefix)]);
        }
        if let Some(etag) = &self.etag
            && self.shared.store.synced()
        {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let reason = chain(&error);
                tracing::warn!(url = %self.config.flags_url, %reason, "cannot poll");
                self.shared.emit(SyncEvent::PollFailed { reason });
                return;
            }
        };
        let status = response.status();
        match status.as_u16() {
            304 => {
                self.shared.update_health(|health| health.alive(std::time::Instant::now()));
                self.shared.emit(SyncEvent::Polled { status: 304, revision: self.shared.store.revision() });
            }
            200 => {
                let etag = response
                    .headers()
                    .get(reqwest::header::ETAG)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                let revision = match response.bytes().await {
                    Ok(body) => self.install_polled(&body, etag),
                    Err(error) => {
                        let reason = chain(&error);
                        tracing::warn!(%reason, "a poll's body was cut short");
                        self.shared.emit(SyncEvent::PollFailed { reason });
                        return;
                    }
                };
                self.shared.emit(SyncEvent::Polled { status: 200, revision });
            }
            code => {
                if code == 401 || code == 403 {
                    tracing::error!(%status, url = %self.config.flags_url, "polling refused the server key");
                } else {
                    tracing::warn!(%status, url = %self.config.flags_url, "polling failed");
                }
                self.shared.emit(SyncEvent::Polled { status: code, revision: None });
            }
        }
    }

    /// Installs a polled snapshot if newer; its revision, when it could be read.
    fn install_polled(&mut self, body: &[u8], etag: Option<String>) -> Option<u64> {
        let source = match Source::parse(body) {
            Ok(source) => source,
            Err(error) => {
                tracing::warn!(error = %error, "cannot read a polled snapshot");
                return None;
            }
        };
        let revision = source.revision;
        match self.shared.store.install(source, Origin::Poll) {
            Ok(outcome) => {
                self.etag = etag;
                self.shared.synced(&outcome);
                Some(revision)
            }
            Err(error) => {
                tracing::error!(error = %error, revision, "cannot compile a polled snapshot");
                None
            }
        }
    }
}

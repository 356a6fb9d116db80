//! The sync: follows a Vexil data plane's server stream (`GET /v1/stream`) with reconnects and
//! `Last-Event-ID`, polls `GET /v1/flags` with `If-None-Match` while the stream is down (and now and then
//! while it is up, as a safety net), and hands what it receives to a [`Target`].
//!
//! The SDK's [`Client`](crate::Client) is one target (its store). Relay mode in `vexil-dataplane` is
//! another: a data-plane cache that serves other SDKs, so that a relay follows its upstream exactly as
//! an SDK does. [`run`] is the loop; [`SyncConfig`] says where and how.
//!
//! * **Stream**: `hydrate` is installed ([`Origin::Hydrate`]), `patch` and `delete` applied; an event
//!   the target cannot take makes the next connection start afresh (no `Last-Event-ID`). A stream that
//!   ends, fails, or is silent for [`dead_stream_after`](SyncConfig::dead_stream_after) is reconnected
//!   after a jittered exponential backoff (reset by a connection that delivered an event), and the
//!   stream's `retry:` hint raises that delay (up to the backoff's maximum).
//! * **Polling**: at once when a live stream is lost, then every
//!   [`poll_interval`](SyncConfig::poll_interval) until it is back; every
//!   [`refresh_interval`](SyncConfig::refresh_interval) while it is up. With
//!   [`streaming(false)`](SyncConfig::streaming), polling is all it does.

mod config;
mod target;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vexil_protocol::server::{ReceivedSnapshot, ServerEvent};
use vexil_protocol::sse::{SseEvent, SseParser};
use vexil_telemetry::ErrorChain;

pub(crate) use config::base_url;
pub use config::{
    DEFAULT_DEAD_STREAM_AFTER, DEFAULT_MAX_BACKOFF, DEFAULT_MIN_BACKOFF, DEFAULT_POLL_INTERVAL,
    DEFAULT_REFRESH_INTERVAL, DEFAULT_REQUEST_TIMEOUT, SyncConfig,
};
pub use target::{Origin, Outcome, SyncEvent, Target, TargetError};

use crate::backoff::Backoff;

/// Syncs `target` as `config` says until `shutdown` is cancelled. `http` is the client it requests with
/// ([`SyncConfig::http_client`] makes a suitable one).
pub async fn run<T: Target>(
    target: Arc<T>,
    config: SyncConfig,
    http: reqwest::Client,
    shutdown: CancellationToken,
) {
    let mut sync =
        Sync { target, config, http, etag: None, next_poll: Instant::now(), retry_hint: None, resume: true };
    let work = async {
        if sync.config.streaming {
            sync.stream_forever().await;
        } else {
            sync.poll_forever().await;
        }
    };
    tokio::select! {
        biased;
        () = shutdown.cancelled() => {}
        () = work => {}
    }
    tracing::debug!("sync stopped");
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

/// The sync task's state.
struct Sync<T> {
    target: Arc<T>,
    config: SyncConfig,
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

impl<T: Target> Sync<T> {
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
            && let Some(revision) = self.target.synced_revision()
        {
            request = request.header("Last-Event-ID", revision.to_string());
        }
        self.resume = true;
        let mut response = match tokio::time::timeout(self.config.request_timeout, request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                let reason = format!("cannot connect: {}", ErrorChain(&error));
                tracing::debug!(url = %self.config.stream_url, %reason, "no stream");
                self.target.observe(SyncEvent::StreamConnectFailed { reason });
                return outcome;
            }
            Err(_) => {
                let reason = format!("no response in {:?}", self.config.request_timeout);
                self.target.observe(SyncEvent::StreamConnectFailed { reason });
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
            self.target
                .observe(SyncEvent::StreamConnectFailed { reason: format!("status {}", status.as_u16()) });
            return outcome;
        }
        outcome.connected = true;
        tracing::info!(url = %self.config.stream_url, "stream connected");
        self.target.observe(SyncEvent::StreamConnected);

        let mut parser = SseParser::default();
        let mut dead_at = Instant::now() + self.config.dead_stream_after;
        let mut refresh_at = Instant::now() + self.config.refresh_interval;
        let reason = 'connection: loop {
            tokio::select! {
                chunk = response.chunk() => match chunk {
                    Ok(Some(bytes)) => {
                        dead_at = Instant::now() + self.config.dead_stream_after;
                        self.target.alive();
                        for event in parser.feed(&bytes) {
                            match self.handle(&event).await {
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
                    Err(error) => break 'connection format!("the stream failed: {}", ErrorChain(&error)),
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
        self.target.observe(SyncEvent::StreamDisconnected { reason });
        outcome
    }

    /// Hands one stream event to the target.
    async fn handle(&mut self, event: &SseEvent) -> Handled {
        let name = event.event.as_str();
        let delivered = match ServerEvent::read(event) {
            Ok(ServerEvent::Hydrate(snapshot)) => self.target.install(snapshot, Origin::Hydrate).await,
            Ok(ServerEvent::Change { revision, change }) => self.target.apply(change, revision).await,
            Ok(ServerEvent::Other) => return Handled::Ignored,
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "cannot read a stream event");
                return Handled::Resync(ErrorChain(&error).to_string());
            }
        };
        match delivered {
            Ok(outcome) => {
                let revision = match outcome {
                    Outcome::Installed { revision } => {
                        tracing::debug!(event = name, revision, "applied");
                        revision
                    }
                    Outcome::Skipped { .. } => event.id.parse().unwrap_or_default(),
                };
                self.target.observe(SyncEvent::StreamEvent { event: name.to_owned(), revision });
                Handled::Used
            }
            Err(error) => {
                tracing::error!(error = %ErrorChain(&*error), event = name, "cannot take a stream event; keeping the data held");
                Handled::Resync(format!("unusable {name}: {}", ErrorChain(&*error)))
            }
        }
    }

    /// One `GET /v1/flags`, with `If-None-Match` when the target has synced data.
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
            && self.target.synced_revision().is_some()
        {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let reason = ErrorChain(&error).to_string();
                tracing::warn!(url = %self.config.flags_url, %reason, "cannot poll");
                self.target.observe(SyncEvent::PollFailed { reason });
                return;
            }
        };
        let status = response.status();
        match status.as_u16() {
            304 => {
                self.target.alive();
                let revision = self.target.synced_revision();
                self.target.observe(SyncEvent::Polled { status: 304, revision });
            }
            200 => {
                let etag = response
                    .headers()
                    .get(reqwest::header::ETAG)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                let revision = match response.bytes().await {
                    Ok(body) => self.install_polled(&body, etag).await,
                    Err(error) => {
                        let reason = ErrorChain(&error).to_string();
                        tracing::warn!(%reason, "a poll's body was cut short");
                        self.target.observe(SyncEvent::PollFailed { reason });
                        return;
                    }
                };
                self.target.observe(SyncEvent::Polled { status: 200, revision });
            }
            code => {
                if code == 401 || code == 403 {
                    tracing::error!(%status, url = %self.config.flags_url, "polling refused the server key");
                } else {
                    tracing::warn!(%status, url = %self.config.flags_url, "polling failed");
                }
                self.target.observe(SyncEvent::Polled { status: code, revision: None });
            }
        }
    }

    /// Hands a polled snapshot to the target (which installs it if newer); its revision, when it could
    /// be read.
    async fn install_polled(&mut self, body: &[u8], etag: Option<String>) -> Option<u64> {
        let snapshot = match ReceivedSnapshot::read(body) {
            Ok(snapshot) => snapshot,
            Err(error) => {
                tracing::warn!(%error, "cannot read a polled snapshot");
                return None;
            }
        };
        let revision = snapshot.snapshot.revision;
        match self.target.install(snapshot, Origin::Poll).await {
            Ok(_) => {
                self.etag = etag;
                Some(revision)
            }
            Err(error) => {
                tracing::error!(error = %ErrorChain(&*error), revision, "cannot take a polled snapshot");
                None
            }
        }
    }
}

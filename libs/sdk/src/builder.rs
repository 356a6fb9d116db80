//! [`ClientBuilder`]: configuration, checked by [`ClientBuilder::start`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;
use vexil_model::Snapshot;
use vexil_protocol::server::ReceivedSnapshot;

use crate::client::{Client, Inner};
use crate::error::{Error, Result, SnapshotError};
use crate::events::{EventQueue, EventSender};
use crate::health::State;
use crate::shared::{Shared, monitor};
use crate::store::{self, Origin};
use crate::sync::{self, SyncConfig};

impl Client {
    /// A builder for a client of the environment `server_key` belongs to (a server SDK key,
    /// `vxs_...`).
    pub fn builder(server_key: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(server_key.into())
    }
}

/// Where standalone Vexil listens by default (`make run`).
pub(crate) const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Configures and starts a [`Client`]; from [`Client::builder`]. Every setting has a default; only the
/// server key is required.
#[derive(Clone)]
pub struct ClientBuilder {
    server_key: String,
    stream_url: String,
    polling_url: String,
    events_url: String,
    prefix: String,
    streaming: bool,
    poll_interval: Duration,
    refresh_interval: Duration,
    start_timeout: Duration,
    dead_stream_after: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
    stale_after: Duration,
    request_timeout: Duration,
    bootstrap_file: Option<PathBuf>,
    bootstrap: Option<Snapshot>,
    offline: bool,
    exposures: bool,
    event_capacity: usize,
    flush_interval: Duration,
    close_timeout: Duration,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("server_key", &"<redacted>")
            .field("stream_url", &self.stream_url)
            .field("polling_url", &self.polling_url)
            .field("events_url", &self.events_url)
            .field("prefix", &self.prefix)
            .field("streaming", &self.streaming)
            .field("offline", &self.offline)
            .field("bootstrap_file", &self.bootstrap_file)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    pub(crate) fn new(server_key: String) -> ClientBuilder {
        ClientBuilder {
            server_key,
            stream_url: DEFAULT_URL.into(),
            polling_url: DEFAULT_URL.into(),
            events_url: DEFAULT_URL.into(),
            prefix: String::new(),
            streaming: true,
            poll_interval: sync::DEFAULT_POLL_INTERVAL,
            refresh_interval: sync::DEFAULT_REFRESH_INTERVAL,
            start_timeout: Duration::from_secs(5),
            dead_stream_after: sync::DEFAULT_DEAD_STREAM_AFTER,
            min_backoff: sync::DEFAULT_MIN_BACKOFF,
            max_backoff: sync::DEFAULT_MAX_BACKOFF,
            stale_after: Duration::from_secs(60),
            request_timeout: sync::DEFAULT_REQUEST_TIMEOUT,
            bootstrap_file: None,
            bootstrap: None,
            offline: false,
            exposures: false,
            event_capacity: 10_000,
            flush_interval: Duration::from_secs(5),
            close_timeout: Duration::from_secs(10),
        }
    }

    /// One base URL for everything (`/v1/stream`, `/v1/flags`, `/v1/events` below it): standalone
    /// Vexil, or a load balancer routing those paths. Default `http://127.0.0.1:8080`.
    pub fn url(self, base: &str) -> Self {
        self.stream_url(base).polling_url(base).events_url(base)
    }

    /// The base URL of the streaming service (`{base}/v1/stream`).
    pub fn stream_url(mut self, base: &str) -> Self {
        self.stream_url = base.to_owned();
        self
    }

    /// The base URL of the evaluation service for polling (`{base}/v1/flags`).
    pub fn polling_url(mut self, base: &str) -> Self {
        self.polling_url = base.to_owned();
        self
    }

    /// The base URL events are sent to (`{base}/v1/events`, the evaluation service).
    pub fn events_url(mut self, base: &str) -> Self {
        self.events_url = base.to_owned();
        self
    }

    /// Only flags whose key starts with `prefix` (`?prefix=` on the stream and on polling). Segments are
    /// always received; a flag whose prerequisite is outside the prefix evaluates as `MALFORMED_FLAG`.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// `false`: never open the stream, only poll (every [`poll_interval`](Self::poll_interval)).
    /// Default `true`.
    pub fn streaming(mut self, on: bool) -> Self {
        self.streaming = on;
        self
    }

    /// How often to poll `GET /v1/flags` when polling only, or while the stream is down. Default 30 s.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// How often to check `GET /v1/flags` (an ETag request: a `304` when nothing changed) while the
    /// stream is up, as a safety net. Default 5 min.
    pub fn refresh_interval(mut self, every: Duration) -> Self {
        self.refresh_interval = every;
        self
    }

    /// How long [`start`](Self::start) waits for the first data. Default 5 s.
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// How long the stream may be silent (not even a heartbeat) before it is taken as dead and
    /// reconnected. Default 45 s: three of the streaming service's 15 s heartbeats.
    pub fn dead_stream_after(mut self, silence: Duration) -> Self {
        self.dead_stream_after = silence;
        self
    }

    /// The stream's reconnect delay: the first and the longest (doubling in between, with jitter).
    /// Default 0.5 s and 30 s. The stream's `retry:` hint raises the delay, up to `max`.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max;
        self
    }

    /// The grace period: how long the data may go unconfirmed (stream down and polling failing) before
    /// the state turns [`Stale`](crate::State::Stale). Keep it above the poll interval. Default 60 s.
    pub fn stale_after(mut self, grace: Duration) -> Self {
        self.stale_after = grace;
        self
    }

    /// Timeout of each poll and each events request, and of opening the stream. Default 10 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// A snapshot file to serve at once, before (or without) any sync: the JSON of `GET /v1/flags`, of
    /// a `hydrate`, or a relay's state file. [`start`](Self::start) then returns at once; the first
    /// sync replaces it. An unreadable or malformed file fails `start`.
    pub fn bootstrap_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.bootstrap_file = Some(path.into());
        self
    }

    /// Like [`bootstrap_file`](Self::bootstrap_file), from a snapshot in memory (tests, embedded
    /// defaults). A file, when also given, wins.
    pub fn bootstrap_snapshot(mut self, snapshot: Snapshot) -> Self {
        self.bootstrap = Some(snapshot);
        self
    }

    /// `true`: never touch the network. Serves the bootstrap (or the caller's defaults), state
    /// [`Offline`](crate::State::Offline), events dropped. The key is not checked. Default `false`.
    pub fn offline(mut self, on: bool) -> Self {
        self.offline = on;
        self
    }

    /// `true`: record an exposure event for every evaluation that serves a flag's variation (for
    /// experiments). Off by default, because it allocates on the evaluation path; see the crate docs.
    pub fn exposures(mut self, on: bool) -> Self {
        self.exposures = on;
        self
    }

    /// Most events queued and not yet taken by the sender; more are dropped and counted
    /// ([`Client::dropped_events`]). Default 10 000.
    pub fn event_capacity(mut self, events: usize) -> Self {
        self.event_capacity = events.max(1);
        self
    }

    /// How often queued events are sent. Default 5 s.
    pub fn flush_interval(mut self, every: Duration) -> Self {
        self.flush_interval = every.max(Duration::from_millis(10));
        self
    }

    /// How long [`Client::close`] may take to send the last events. Default 10 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Checks the configuration, loads the bootstrap, starts the background sync and waits until the
    /// client has data or [`start_timeout`](Self::start_timeout) passes (not at all with a bootstrap
    /// or offline). `Err` only for bad configuration: a key that is not a server key, a URL that is not
    /// `http://`, an unreadable or malformed bootstrap file, or no Tokio runtime to run on.
    pub async fn start(self) -> Result<Client> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::NoRuntime);
        }
        let config = if self.offline { None } else { Some(self.check()?) };
        let bootstrap = self.load_bootstrap().await?;

        let dropped = Arc::new(AtomicU64::new(0));
        let shutdown = CancellationToken::new();
        let shared = Arc::new(Shared::new(self.stale_after, self.offline));
        let has_bootstrap = bootstrap.is_some();
        if let Some((source, written)) = bootstrap {
            let revision = source.snapshot.revision;
            shared.store.install(source, Origin::Bootstrap).map_err(|error| Error::MalformedBootstrap {
                path: self.bootstrap_file.clone().unwrap_or_default(),
                source: SnapshotError::Compile(error),
            })?;
            shared.update_health(|health| {
                health.has_data = true;
                health.data_as_of = Some(written);
            });
            tracing::info!(revision, "serving the bootstrap snapshot");
        }

        let Some((config, events_base)) = config else {
            let events = EventQueue::disabled(dropped.clone());
            return Ok(Client::new(Inner::new(
                shared,
                events,
                self.exposures,
                dropped,
                shutdown,
                Vec::new(),
                self.close_timeout,
            )));
        };

        let http = config.http_client()?;
        let (events, receiver) = EventQueue::new(self.event_capacity, dropped.clone());
        let sender = EventSender {
            http: http.clone(),
            url: format!("{events_base}/v1/events"),
            server_key: self.server_key.clone(),
            flush_interval: self.flush_interval,
            dropped: dropped.clone(),
        };
        let mut state = shared.state.subscribe();
        let tasks = vec![
            tokio::spawn(sync::run(shared.clone(), config, http, shutdown.clone())),
            tokio::spawn(monitor(shared.clone(), shutdown.clone())),
            tokio::spawn(sender.run(receiver, shutdown.clone())),
        ];
        let client = Client::new(Inner::new(
            shared,
            events,
            self.exposures,
            dropped,
            shutdown,
            tasks,
            self.close_timeout,
        ));
        if !has_bootstrap {
            let waited =
                tokio::time::timeout(self.start_timeout, state.wait_for(|s| *s != State::Initializing));
            // `is_err` at once: the `Ref` of a successful `wait_for` holds the state's read lock.
            if waited.await.is_err() {
                tracing::warn!(
                    timeout_ms = self.start_timeout.as_millis() as u64,
                    "no flag data yet; serving defaults while the sync keeps trying"
                );
            }
        }
        Ok(client)
    }

    /// The network configuration, checked: the sync's, and the events' base URL.
    fn check(&self) -> Result<(SyncConfig, String)> {
        let config = SyncConfig::new(&self.server_key, &self.stream_url, &self.polling_url)?
            .prefix(&self.prefix)
            .streaming(self.streaming)
            .poll_interval(self.poll_interval)
            .refresh_interval(self.refresh_interval)
            .dead_stream_after(self.dead_stream_after)
            .reconnect_backoff(self.min_backoff, self.max_backoff)
            .request_timeout(self.request_timeout);
        Ok((config, sync::base_url("events", &self.events_url)?))
    }

    /// The bootstrap snapshot and when its data was current (the file's modification time).
    async fn load_bootstrap(&self) -> Result<Option<(ReceivedSnapshot, Instant)>> {
        let Some(path) = self.bootstrap_file.clone() else {
            return Ok(self.bootstrap.clone().map(|snapshot| {
                (ReceivedSnapshot { snapshot, ..ReceivedSnapshot::default() }, Instant::now())
            }));
        };
        let read_path = path.clone();
        let read = tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(&read_path)?;
            let modified = std::fs::metadata(&read_path).and_then(|m| m.modified()).ok();
            Ok::<_, std::io::Error>((bytes, modified))
        })
        .await
        .unwrap_or_else(|join| Err(std::io::Error::other(join)));
        let (bytes, modified) = read.map_err(|source| Error::BootstrapFile { path: path.clone(), source })?;
        let source = store::read_snapshot_file(&bytes).map_err(|error| Error::MalformedBootstrap {
            path: path.clone(),
            source: SnapshotError::Json(error),
        })?;
        let age = modified.and_then(|at| SystemTime::now().duration_since(at).ok()).unwrap_or_default();
        let now = Instant::now();
        Ok(Some((source, now.checked_sub(age).unwrap_or(now))))
    }
}

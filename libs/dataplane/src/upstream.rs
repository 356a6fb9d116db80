//! Relay mode (DESIGN.md §5): a data-plane replica that takes one environment from an upstream Vexil's
//! `GET /v1/stream` instead of from the bus, and persists it so that a restart survives an upstream
//! outage.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use vexil_keys::SecretKind;
use vexil_proto::{ChangeEvent, ChangeKind, EnvironmentSnapshot, ItemKind, SdkKey};

use vexil_sse::{SseEvent, SseParser};

use crate::cache::{ApplyOutcome, Cache, LoadOutcome};
use crate::error::chain;

/// The environment id a relay keeps its one environment under in its [`Cache`].
pub const RELAY_ENVIRONMENT_ID: i64 = 1;
/// How long a stream may stay silent (not even a heartbeat) before it is taken as dead: 3× the
/// upstream's default 15 s heartbeat.
pub const DEFAULT_DEAD_AFTER: Duration = Duration::from_secs(45);
/// The first reconnect delay (before jitter).
pub const DEFAULT_MIN_BACKOFF: Duration = Duration::from_millis(500);
/// The longest reconnect delay (before jitter).
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why a relay cannot start, or cannot read or write its state file.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The server key does not have a server key's shape (`vxs_<id>_<secret>`).
    #[error("the upstream server key is not a server key (vxs_...)")]
    InvalidServerKey,
    /// The state file cannot be read or written.
    #[error("state file {path}")]
    StateFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The state file is not a relay state file.
    #[error("state file {path} is not a relay snapshot")]
    MalformedStateFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it, when JSON says.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// A snapshot (from the state file or the upstream) could not be installed.
    #[error(transparent)]
    Snapshot(#[from] crate::Error),
}

/// Keeps one environment of a [`Cache`] current from an upstream Vexil's server stream (relay mode).
///
/// * [`run`](Self::run) first loads the state file (if any) into the cache and marks it ready, so a
///   restart while the upstream is down serves the last snapshot; without one the cache stays not
///   ready (the services answer 503 / a `retry:` hint) until the first `hydrate`.
/// * It then connects to `{upstream}/v1/stream` with `Authorization: Bearer <server key>` and, once it
///   has a revision, `Last-Event-ID`. A `hydrate` is loaded as the environment's snapshot; a `patch` or
///   `delete` whose id is the next revision is applied as a change event (so streams served from this
///   cache get a `patch` and it can replay it), a later one (ids skip SDK-key changes) is applied to the
///   current snapshot and loaded whole (streams get a fresh `hydrate`).
/// * After every change the environment's snapshot is written to the state file (a temporary file,
///   synced, then renamed over it: a crash leaves the old or the new file, never a torn one).
/// * A stream that ends, fails, or is silent for [`dead_after`](Self::dead_after) (default 45 s)
///   is reconnected after an exponential backoff with jitter (0.5 s doubling to 30 s; reset once a
///   connection delivers an event).
///
/// The cache holds the environment under [`RELAY_ENVIRONMENT_ID`] with the one SDK key the relay
/// knows: the server key it was given (so the same key authenticates locally). Client keys and other
/// server keys of the upstream environment are not known to a relay (the stream never carries keys).
pub struct UpstreamSync {
    cache: Cache,
    url: String,
    server_key: String,
    key: SdkKey,
    state_file: PathBuf,
    project: String,
    environment: String,
    dead_after: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
}

impl std::fmt::Debug for UpstreamSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSync")
            .field("url", &self.url)
            .field("key_id", &self.key.id)
            .field("state_file", &self.state_file)
            .finish_non_exhaustive()
    }
}

impl UpstreamSync {
    /// A relay of the environment `server_key` belongs to at `upstream` (a base URL such as
    /// `http://vexil.example:8080`), into `cache`, persisted at `state_file`.
    pub fn new(
        cache: Cache,
        upstream: &str,
        server_key: &str,
        state_file: impl Into<PathBuf>,
    ) -> Result<UpstreamSync, UpstreamError> {
        let id = vexil_keys::id_of(SecretKind::Server, server_key).ok_or(UpstreamError::InvalidServerKey)?;
        let key = SdkKey {
            id: id.to_owned(),
            kind: "server".into(),
            secret_sha256: vexil_keys::sha256(server_key).to_vec(),
            expires_at_ms: 0,
        };
        Ok(UpstreamSync {
            cache,
            url: format!("{}/v1/stream", upstream.trim_end_matches('/')),
            server_key: server_key.to_owned(),
            key,
            state_file: state_file.into(),
            project: "relay".into(),
            environment: "upstream".into(),
            dead_after: DEFAULT_DEAD_AFTER,
            min_backoff: DEFAULT_MIN_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        })
    }

    /// How long the stream may be silent before it is reconnected (default [`DEFAULT_DEAD_AFTER`]).
    pub fn dead_after(mut self, silence: Duration) -> UpstreamSync {
        self.dead_after = silence.max(Duration::from_millis(1));
        self
    }

    /// The reconnect backoff's first and longest delay (defaults 0.5 s and 30 s).
    pub fn backoff(mut self, min: Duration, max: Duration) -> UpstreamSync {
        self.min_backoff = min.max(Duration::from_millis(1));
        self.max_backoff = max.max(self.min_backoff);
        self
    }

    /// The project and environment names the cache reports (the stream does not carry them; default
    /// `relay` / `upstream`).
    pub fn names(mut self, project: &str, environment: &str) -> UpstreamSync {
        self.project = project.to_owned();
        self.environment = environment.to_owned();
        self
    }

    /// Loads the state file into the cache and marks it ready; the revision loaded, or `None` when
    /// there is no state file. [`run`](Self::run) does this first.
    pub async fn load_state(&self) -> Result<Option<u64>, UpstreamError> {
        let path = self.state_file.clone();
        let read = tokio::task::spawn_blocking(move || std::fs::read(&path)).await;
        let bytes = match read {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Ok(Err(source)) => {
                return Err(UpstreamError::StateFile { path: self.state_file.clone(), source });
            }
            Err(join) => {
                return Err(UpstreamError::StateFile {
                    path: self.state_file.clone(),
                    source: std::io::Error::other(join),
                });
            }
        };
        let malformed = |source| UpstreamError::MalformedStateFile { path: self.state_file.clone(), source };
        let state: Value = serde_json::from_slice(&bytes).map_err(|e| malformed(Some(e)))?;
        let revision = state.get("revision").and_then(Value::as_u64).ok_or_else(|| malformed(None))?;
        let snapshot = state.get("snapshot").ok_or_else(|| malformed(None))?;
        let snapshot_json = serde_json::to_vec(snapshot).map_err(|e| malformed(Some(e)))?;
        self.cache.load(&self.envelope(revision, snapshot_json))?;
        self.cache.mark_ready();
        Ok(Some(revision))
    }

    /// Follows the upstream until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        match self.load_state().await {
            Ok(Some(revision)) => {
                tracing::info!(revision, path = %self.state_file.display(), "serving the persisted snapshot")
            }
            Ok(None) => tracing::info!(
                path = %self.state_file.display(),
                "no persisted snapshot; not ready until the upstream's first hydrate"
            ),
            Err(error) => tracing::warn!(error = %chain(&error), "cannot load the persisted snapshot"),
        }
        let client = match reqwest::Client::builder().connect_timeout(self.dead_after).build() {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(error = %chain(&error), "cannot build an HTTP client; relay stopped");
                return;
            }
        };
        let mut backoff = self.min_backoff;
        let mut resume = true;
        loop {
            let outcome = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                outcome = self.follow(&client, resume) => outcome,
            };
            resume = !outcome.resync;
            if outcome.progress {
                backoff = self.min_backoff;
            }
            let delay = jitter(backoff);
            backoff = (backoff * 2).min(self.max_backoff);
            tracing::info!(
                reason = outcome.reason,
                delay_ms = delay.as_millis() as u64,
                "reconnecting to the upstream"
            );
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        tracing::info!("upstream sync stopped");
    }

    /// One connection: until the stream ends, fails, goes silent, or carries something unusable.
    async fn follow(&self, client: &reqwest::Client, resume: bool) -> Outcome {
        let mut outcome = Outcome { progress: false, resync: false, reason: "" };
        let mut request = client
            .get(&self.url)
            .bearer_auth(&self.server_key)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if resume && let Some(state) = self.cache.environment(RELAY_ENVIRONMENT_ID) {
            request = request.header("Last-Event-ID", state.revision().to_string());
        }
        let mut response = match tokio::time::timeout(self.dead_after, request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                tracing::warn!(error = %chain(&error), url = %self.url, "cannot reach the upstream");
                outcome.reason = "connect failed";
                return outcome;
            }
            Err(_) => {
                outcome.reason = "no response";
                return outcome;
            }
        };
        if response.status() != reqwest::StatusCode::OK {
            tracing::warn!(status = %response.status(), url = %self.url, "the upstream refused the stream");
            outcome.reason = "refused";
            return outcome;
        }
        tracing::info!(url = %self.url, "connected to the upstream");
        let mut parser = SseParser::default();
        loop {
            let chunk = match tokio::time::timeout(self.dead_after, response.chunk()).await {
                Ok(Ok(Some(chunk))) => chunk,
                Ok(Ok(None)) => {
                    outcome.reason = "stream ended";
                    return outcome;
                }
                Ok(Err(error)) => {
                    tracing::warn!(error = %chain(&error), "the upstream stream failed");
                    outcome.reason = "stream failed";
                    return outcome;
                }
                Err(_) => {
                    tracing::warn!(
                        silence_ms = self.dead_after.as_millis() as u64,
                        "the upstream stream went silent"
                    );
                    outcome.reason = "stream silent";
                    return outcome;
                }
            };
            for event in parser.feed(&chunk) {
                match self.handle(&event).await {
                    Ok(()) => outcome.progress = true,
                    Err(error) => {
                        tracing::warn!(event = %event.event, id = %event.id, error = %error, "cannot apply an upstream event; re-syncing");
                        outcome.resync = true;
                        outcome.reason = "unusable event";
                        return outcome;
                    }
                }
            }
        }
    }

    /// Applies one SSE event to the cache, and persists the result if it changed anything.
    async fn handle(&self, event: &SseEvent) -> Result<(), String> {
        let changed = match event.event.as_str() {
            "hydrate" => {
                let revision: u64 =
                    event.id.parse().map_err(|_| format!("id {:?} is not a revision", event.id))?;
                let outcome = self
                    .cache
                    .load(&self.envelope(revision, event.data.clone().into_bytes()))
                    .map_err(|e| chain(&e))?;
                self.cache.mark_ready();
                match outcome {
                    LoadOutcome::Installed { previous, revision } => {
                        tracing::info!(?previous, revision, "loaded the upstream's snapshot");
                        true
                    }
                    LoadOutcome::Ignored { have, offered } => {
                        if offered < have {
                            // An upstream replica behind this one; it will catch up, and its patches
                            // at or below `have` are ignored meanwhile.
                            tracing::info!(
                                have,
                                offered,
                                "the upstream is behind this relay; keeping the newer snapshot"
                            );
                        }
                        false
                    }
                }
            }
            "patch" | "delete" => self.change(event)?,
            _ => false,
        };
        if changed && let Err(error) = self.persist().await {
            tracing::warn!(error = %chain(&error), "cannot persist the snapshot");
        }
        Ok(())
    }

    /// A `patch` or `delete`: whether it changed the cache.
    fn change(&self, event: &SseEvent) -> Result<bool, String> {
        let revision: u64 = event.id.parse().map_err(|_| format!("id {:?} is not a revision", event.id))?;
        let data: Value = serde_json::from_str(&event.data).map_err(|e| e.to_string())?;
        let key = data.get("key").and_then(Value::as_str).ok_or("no key")?.to_owned();
        let item = match data.get("kind").and_then(Value::as_str) {
            Some("flag") => ItemKind::Flag,
            Some("segment") => ItemKind::Segment,
            _ => return Ok(false),
        };
        let (kind, payload) = match (event.event.as_str(), item) {
            ("delete", _) => (ChangeKind::Delete, Ok(Vec::new())),
            (_, ItemKind::Flag) => (
                ChangeKind::Upsert,
                serde_json::to_vec(&json!({"flag": data["flag"], "config": data["config"]})),
            ),
            _ => (ChangeKind::Upsert, serde_json::to_vec(&data["segment"])),
        };
        let payload = payload.map_err(|e| e.to_string())?;
        let Some(state) = self.cache.environment(RELAY_ENVIRONMENT_ID) else {
            return Err("a change before any hydrate".into());
        };
        if revision <= state.revision() {
            return Ok(false);
        }
        let change = ChangeEvent {
            environment_id: RELAY_ENVIRONMENT_ID,
            project: self.project.clone(),
            environment: self.environment.clone(),
            revision,
            kind: kind.into(),
            item: item.into(),
            key,
            payload,
            committed_at_ms: 0,
        };
        if revision == state.revision() + 1 {
            return match self.cache.apply(&change).map_err(|e| chain(&e))? {
                ApplyOutcome::Applied { .. } => Ok(true),
                ApplyOutcome::Ignored { .. } => Ok(false),
                other => Err(format!("unexpected outcome {other:?}")),
            };
        }
        // Ids skip revisions this stream does not carry (SDK-key changes): build the next snapshot here.
        let next = crate::apply::apply(state.snapshot(), state.keys(), &change).map_err(|e| chain(&e))?;
        let json = serde_json::to_vec(&next.snapshot).map_err(|e| e.to_string())?;
        match self.cache.load(&self.envelope(revision, json)).map_err(|e| chain(&e))? {
            LoadOutcome::Installed { .. } => Ok(true),
            LoadOutcome::Ignored { .. } => Ok(false),
        }
    }

    /// The envelope of the relay's environment at `revision`.
    fn envelope(&self, revision: u64, snapshot_json: Vec<u8>) -> EnvironmentSnapshot {
        EnvironmentSnapshot {
            environment_id: RELAY_ENVIRONMENT_ID,
            project: self.project.clone(),
            environment: self.environment.clone(),
            revision,
            snapshot_json,
            keys: vec![self.key.clone()],
            committed_at_ms: 0,
        }
    }

    /// Writes the cache's snapshot to the state file, atomically.
    async fn persist(&self) -> Result<(), UpstreamError> {
        let Some(state) = self.cache.environment(RELAY_ENVIRONMENT_ID) else { return Ok(()) };
        let bytes = serde_json::to_vec(&json!({"revision": state.revision(), "snapshot": state.snapshot()}))
            .map_err(|e| UpstreamError::MalformedStateFile {
                path: self.state_file.clone(),
                source: Some(e),
            })?;
        let path = self.state_file.clone();
        let result = tokio::task::spawn_blocking(move || write_atomically(&path, &bytes)).await;
        let source = match result {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => error,
            Err(join) => std::io::Error::other(join),
        };
        Err(UpstreamError::StateFile { path: self.state_file.clone(), source })
    }
}

/// Writes `bytes` to a temporary file next to `path`, syncs it, and renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let temporary = dir.join(name);
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    // Make the rename itself durable (best effort: not every platform can open a directory).
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// How one connection ended.
struct Outcome {
    /// Whether it delivered at least one event.
    progress: bool,
    /// Whether the next connection must start from a fresh hydrate (no `Last-Event-ID`).
    resync: bool,
    reason: &'static str,
}

/// A delay between `base / 2` and `base`.
fn jitter(base: Duration) -> Duration {
    let millis = base.as_millis().max(2) as u64;
    Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("vexil-relay-unit-{}", std::process::id()));
        let path = dir.join("state.json");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!dir.join("state.json.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

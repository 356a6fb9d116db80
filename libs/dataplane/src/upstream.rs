//! Relay mode (DESIGN.md §5): a data-plane replica that takes one environment from an upstream Vexil
//! instead of from the bus, and persists it so that a restart survives an upstream outage.
//!
//! The relay follows its upstream exactly as a server SDK does: it runs the SDK's sync
//! ([`vexil_sdk::sync`]: the stream with reconnects and `Last-Event-ID`, polling while the stream is
//! down, the same defaults), with this replica's [`Cache`] as the sync's target ([`CacheTarget`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use vexil_keys::SecretKind;
use vexil_model::Snapshot;
use vexil_proto::SdkKey;
use vexil_protocol::server::{ReceivedChange, ReceivedSnapshot};
use vexil_sdk::sync::{self, Origin, Outcome, SyncConfig, SyncEvent, Target, TargetError};
use vexil_telemetry::ErrorChain;

use crate::cache::{ApplyOutcome, Cache, EnvironmentContent, LoadOutcome};

/// The environment id a relay keeps its one environment under in its [`Cache`].
pub const RELAY_ENVIRONMENT_ID: i64 = 1;

/// Why a relay cannot start, or cannot read or write its state file.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The server key or the upstream URL is not usable (see the SDK's [`vexil_sdk::Error`]).
    #[error("relay mode cannot follow this upstream")]
    Config(#[from] vexil_sdk::Error),
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
    /// A snapshot (from the state file) could not be installed.
    #[error(transparent)]
    Snapshot(#[from] crate::Error),
}

/// Keeps one environment of a [`Cache`] current from an upstream Vexil (relay mode).
///
/// * [`run`](Self::run) first loads the state file (if any) into the cache and marks it ready, so a
///   restart while the upstream is down serves the last snapshot; without one the cache stays not
///   ready (the services answer 503 / a `retry:` hint) until the first snapshot arrives.
/// * It then syncs as the SDK does, from `{upstream}/v1/stream` (and `{upstream}/v1/flags` while the
///   stream is down), with `Last-Event-ID` = the cache's revision. A `hydrate` or a newer poll is
///   installed as the environment's snapshot (an older one is ignored: an upstream replica behind this
///   relay catches up by itself). A change at the next revision is applied as a change event, so
///   streams served from this cache get a `patch` and it can replay it; a later one (ids skip SDK-key
///   changes) is applied to the current snapshot, which is installed whole (streams get a `hydrate`).
/// * A flag or segment the relay cannot read (a newer upstream's) is refused: the relay keeps serving
///   its last complete snapshot and the sync retries (a relay must not serve a partial environment: its
///   SDKs would take a flag left out as deleted). Upgrade relays before their upstream.
/// * After every change the environment's snapshot is written to the state file (a temporary file,
///   synced, then renamed over it: a crash leaves the old or the new file, never a torn one).
///
/// The cache holds the environment under [`RELAY_ENVIRONMENT_ID`] with the one SDK key the relay
/// knows: the server key it was given (so the same key authenticates locally). Client keys and other
/// server keys of the upstream environment are not known to a relay (the stream never carries keys).
pub struct UpstreamSync {
    target: CacheTarget,
    config: SyncConfig,
}

impl std::fmt::Debug for UpstreamSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSync")
            .field("config", &self.config)
            .field("key_id", &self.target.key.id)
            .field("state_file", &self.target.state_file)
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
        let id =
            vexil_keys::id_of(SecretKind::Server, server_key).ok_or(vexil_sdk::Error::InvalidServerKey)?;
        let config = SyncConfig::new(server_key, upstream, upstream)?;
        let key = SdkKey {
            id: id.to_owned(),
            kind: "server".into(),
            secret_sha256: vexil_keys::sha256(server_key).to_vec(),
            expires_at_ms: 0,
        };
        let target = CacheTarget {
            cache,
            key,
            state_file: state_file.into(),
            project: "relay".into(),
            environment: "upstream".into(),
        };
        Ok(UpstreamSync { target, config })
    }

    /// How long the stream may be silent before it is reconnected (default 45 s, as the SDK's).
    pub fn dead_after(mut self, silence: Duration) -> UpstreamSync {
        self.config = self.config.dead_stream_after(silence);
        self
    }

    /// The reconnect backoff's first and longest delay (default 0.5 s and 30 s, as the SDK's).
    pub fn backoff(mut self, min: Duration, max: Duration) -> UpstreamSync {
        self.config = self.config.reconnect_backoff(min, max);
        self
    }

    /// How often to poll `{upstream}/v1/flags` while the stream is down (default 30 s, as the SDK's).
    pub fn poll_interval(mut self, every: Duration) -> UpstreamSync {
        self.config = self.config.poll_interval(every);
        self
    }

    /// The project and environment names the cache reports (the stream does not carry them; default
    /// `relay` / `upstream`).
    pub fn names(mut self, project: &str, environment: &str) -> UpstreamSync {
        self.target.project = project.to_owned();
        self.target.environment = environment.to_owned();
        self
    }

    /// Loads the state file into the cache and marks it ready; the revision loaded, or `None` when
    /// there is no state file. [`run`](Self::run) does this first.
    pub async fn load_state(&self) -> Result<Option<u64>, UpstreamError> {
        self.target.load_state().await
    }

    /// Follows the upstream until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let path = self.target.state_file.display().to_string();
        match self.load_state().await {
            Ok(Some(revision)) => tracing::info!(revision, path, "serving the persisted snapshot"),
            Ok(None) => {
                tracing::info!(path, "no persisted snapshot; not ready until the upstream's first snapshot")
            }
            Err(error) => tracing::warn!(error = %ErrorChain(&error), "cannot load the persisted snapshot"),
        }
        let http = match self.config.http_client() {
            Ok(http) => http,
            Err(error) => {
                tracing::error!(error = %ErrorChain(&error), "cannot build an HTTP client; relay stopped");
                return;
            }
        };
        sync::run(Arc::new(self.target), self.config, http, shutdown).await;
        tracing::info!("upstream sync stopped");
    }
}

/// A relay's [`Cache`] as the target of the SDK's sync.
struct CacheTarget {
    cache: Cache,
    key: SdkKey,
    state_file: PathBuf,
    project: String,
    environment: String,
}

impl Target for CacheTarget {
    async fn install(&self, received: ReceivedSnapshot, origin: Origin) -> Result<Outcome, TargetError> {
        let revision = received.snapshot.revision;
        if !received.unreadable.is_empty() {
            return Err(unreadable(received.unreadable.iter()));
        }
        let outcome = self.cache.install(self.content(received.snapshot))?;
        self.cache.mark_ready();
        match outcome {
            LoadOutcome::Installed { previous, revision } => {
                tracing::info!(?previous, revision, ?origin, "installed the upstream's snapshot");
                self.persist().await;
                Ok(Outcome::Installed { revision })
            }
            LoadOutcome::Ignored { have, offered } => {
                if offered < have && origin == Origin::Hydrate {
                    // An upstream replica behind this one; it will catch up, and its patches at or
                    // below `have` are skipped meanwhile.
                    tracing::info!(
                        have,
                        offered = revision,
                        "the upstream is behind this relay; keeping the newer snapshot"
                    );
                }
                Ok(Outcome::Skipped { have: Some(have) })
            }
        }
    }

    async fn apply(&self, change: ReceivedChange, revision: u64) -> Result<Outcome, TargetError> {
        let Some(state) = self.cache.environment(RELAY_ENVIRONMENT_ID) else {
            return Err("a change before any snapshot".into());
        };
        let have = state.revision();
        let change = match change {
            _ if revision <= have => return Ok(Outcome::Skipped { have: Some(have) }),
            ReceivedChange::Apply(change) => Some(change),
            ReceivedChange::UnreadableFlag(key) | ReceivedChange::UnreadableSegment(key) => {
                return Err(unreadable([&key]));
            }
            // A change of a kind this relay cannot forward: its revision moves all the same (below, as a
            // snapshot its streams get whole).
            ReceivedChange::Other => None,
        };
        if let Some(change) = change.as_ref().filter(|_| revision == have + 1) {
            let event = crate::apply::event_of(RELAY_ENVIRONMENT_ID, revision, change, 0);
            match self.cache.apply(&event)? {
                ApplyOutcome::Applied { .. } => {}
                ApplyOutcome::Ignored { have, .. } => return Ok(Outcome::Skipped { have: Some(have) }),
                other => return Err(format!("unexpected outcome {other:?}").into()),
            }
        } else {
            // Ids skip revisions this stream does not carry (SDK-key changes), or the change cannot be
            // forwarded: the next snapshot is built here, and installed whole.
            let mut next = state.snapshot().clone();
            if let Some(change) = change {
                change.apply(&mut next);
            }
            next.revision = revision;
            if let LoadOutcome::Ignored { have, .. } = self.cache.install(self.content(next))? {
                return Ok(Outcome::Skipped { have: Some(have) });
            }
        }
        self.persist().await;
        Ok(Outcome::Installed { revision })
    }

    fn synced_revision(&self) -> Option<u64> {
        self.cache.environment(RELAY_ENVIRONMENT_ID).map(|state| state.revision())
    }

    fn observe(&self, event: SyncEvent) {
        // The SDK's sync logs a failed connection quietly (an application's logs are not the place for
        // it); for a relay it is the news.
        if let SyncEvent::StreamConnectFailed { reason } = event {
            tracing::warn!(%reason, "cannot reach the upstream's stream");
        }
    }
}

/// Why a relay refuses what it cannot read. A relay serves other SDKs, and what it serves must be the
/// upstream's environment whole — an SDK would evaluate a flag left out as `FLAG_NOT_FOUND`, not
/// `MALFORMED_FLAG` — so it keeps serving its last complete snapshot, and the sync retries with a fresh
/// `hydrate` (after its backoff) until the relay is upgraded to read what the upstream sends.
fn unreadable<'a>(keys: impl IntoIterator<Item = &'a String>) -> TargetError {
    let keys: Vec<&str> = keys.into_iter().map(String::as_str).collect();
    format!("this relay cannot read {keys:?} (a newer upstream?); serving its last complete snapshot").into()
}

impl CacheTarget {
    /// The relay's environment with `snapshot` as its content.
    fn content(&self, snapshot: Snapshot) -> EnvironmentContent {
        EnvironmentContent {
            id: RELAY_ENVIRONMENT_ID,
            project: self.project.clone(),
            environment: self.environment.clone(),
            snapshot,
            keys: vec![self.key.clone()],
            committed_at_ms: 0,
        }
    }

    async fn load_state(&self) -> Result<Option<u64>, UpstreamError> {
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
        #[derive(serde::Deserialize)]
        struct StateFile {
            revision: u64,
            snapshot: Snapshot,
        }
        let state: StateFile = serde_json::from_slice(&bytes).map_err(|e| malformed(Some(e)))?;
        if state.snapshot.revision != state.revision {
            return Err(malformed(None));
        }
        self.cache.install(self.content(state.snapshot))?;
        self.cache.mark_ready();
        Ok(Some(state.revision))
    }

    /// Writes the cache's snapshot to the state file, atomically; a failure is logged (the relay keeps
    /// serving, and the next change tries again).
    async fn persist(&self) {
        let Some(state) = self.cache.environment(RELAY_ENVIRONMENT_ID) else { return };
        // Serialising model types into memory cannot fail.
        let bytes = serde_json::to_vec(&json!({"revision": state.revision(), "snapshot": state.snapshot()}))
            .unwrap_or_default();
        let path = self.state_file.clone();
        let written = tokio::task::spawn_blocking(move || write_atomically(&path, &bytes)).await;
        let error = match written {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error,
            Err(join) => std::io::Error::other(join),
        };
        let error = UpstreamError::StateFile { path: self.state_file.clone(), source: error };
        tracing::warn!(error = %ErrorChain(&error), "cannot persist the snapshot");
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use vexil_model::ConfiguredFlag;
    use vexil_protocol::Change;

    use super::*;

    fn flag(key: &str, on: bool) -> ConfiguredFlag {
        serde_json::from_value(json!({
            "flag": {"key": key, "kind": "boolean", "variations": [{"value": true}, {"value": false}]},
            "config": {"on": on, "off_variation": 1, "fallthrough": {"variation": 0}}
        }))
        .unwrap()
    }

    fn snapshot(revision: u64, flags: Vec<ConfiguredFlag>) -> ReceivedSnapshot {
        ReceivedSnapshot {
            snapshot: Snapshot { revision, flags, segments: vec![] },
            ..ReceivedSnapshot::default()
        }
    }

    /// A relay target over a fresh cache, persisting into a fresh directory.
    fn target(name: &str) -> (CacheTarget, PathBuf) {
        let dir = std::env::temp_dir().join(format!("vexil-relay-target-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let key = SdkKey { id: "relaykey0000".into(), kind: "server".into(), ..SdkKey::default() };
        let target = CacheTarget {
            cache: Cache::new(),
            key,
            state_file: dir.join("state.json"),
            project: "relay".into(),
            environment: "upstream".into(),
        };
        (target, dir)
    }

    fn on(target: &CacheTarget, key: &str) -> Option<bool> {
        let state = target.cache.environment(RELAY_ENVIRONMENT_ID)?;
        let detail = vexil_eval::evaluate(state.compiled(), key, &vexil_model::Context::new("u"));
        detail.value.and_then(Value::as_bool)
    }

    fn persisted_revision(dir: &Path) -> u64 {
        let state: Value = serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
        state["revision"].as_u64().unwrap()
    }

    #[tokio::test]
    async fn the_next_revision_is_a_change_event_and_a_later_one_a_whole_snapshot() {
        let (target, dir) = target("next");
        let mut feed = target.cache.subscribe();
        target.install(snapshot(4, vec![flag("a", false)]), Origin::Hydrate).await.unwrap();
        assert!(target.cache.ready());

        let applied =
            target.apply(ReceivedChange::Apply(Change::UpsertFlag(flag("a", true))), 5).await.unwrap();
        assert_eq!(applied, Outcome::Installed { revision: 5 });
        assert_eq!(on(&target, "a"), Some(true));
        // Streams served from this cache replay it as a patch.
        assert_eq!(target.cache.events_since(RELAY_ENVIRONMENT_ID, 4).unwrap().len(), 1);

        // 6 was an SDK-key change the stream never carries.
        let applied = target.apply(ReceivedChange::Apply(Change::DeleteFlag("a".into())), 7).await.unwrap();
        assert_eq!(applied, Outcome::Installed { revision: 7 });
        assert_eq!(on(&target, "a"), None);
        assert!(target.cache.events_since(RELAY_ENVIRONMENT_ID, 5).is_none(), "a gap: streams get a hydrate");
        assert_eq!(persisted_revision(&dir), 7);

        let kinds: Vec<&str> = std::iter::from_fn(|| feed.try_recv().ok())
            .map(|change| match change {
                crate::Change::Applied { .. } => "applied",
                crate::Change::Resynced { .. } => "resynced",
                crate::Change::Removed { .. } => "removed",
            })
            .collect();
        assert_eq!(kinds, ["resynced", "applied", "resynced"]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn what_is_not_newer_is_skipped_and_an_older_hydrate_does_not_replace_newer_data() {
        let (target, dir) = target("stale");
        target.install(snapshot(9, vec![flag("a", true)]), Origin::Hydrate).await.unwrap();
        let change = ReceivedChange::Apply(Change::UpsertFlag(flag("a", false)));
        assert_eq!(target.apply(change, 9).await.unwrap(), Outcome::Skipped { have: Some(9) });
        let stale = target.install(snapshot(8, vec![flag("a", false)]), Origin::Hydrate).await.unwrap();
        assert_eq!(stale, Outcome::Skipped { have: Some(9) });
        let same = target.install(snapshot(9, vec![]), Origin::Poll).await.unwrap();
        assert_eq!(same, Outcome::Skipped { have: Some(9) });
        assert_eq!(on(&target, "a"), Some(true));
        assert_eq!(target.synced_revision(), Some(9));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn what_the_relay_cannot_read_is_refused_and_the_last_complete_snapshot_kept() {
        let (target, dir) = target("unreadable");
        assert!(target.apply(ReceivedChange::Other, 1).await.is_err(), "a change before any snapshot");
        target.install(snapshot(3, vec![flag("a", true)]), Origin::Hydrate).await.unwrap();

        assert!(target.apply(ReceivedChange::UnreadableFlag("a".into()), 4).await.is_err());
        assert!(target.apply(ReceivedChange::UnreadableSegment("s".into()), 4).await.is_err());
        let mut partial = snapshot(5, vec![]);
        partial.unreadable.insert("a".into());
        let error = target.install(partial, Origin::Hydrate).await.unwrap_err();
        assert!(error.to_string().contains("\"a\""), "{error}");
        assert_eq!((target.synced_revision(), on(&target, "a")), (Some(3), Some(true)));

        // A change of a kind it does not know moves the revision (its streams get the snapshot whole).
        assert_eq!(target.apply(ReceivedChange::Other, 4).await.unwrap(), Outcome::Installed { revision: 4 });
        assert_eq!((target.synced_revision(), on(&target, "a")), (Some(4), Some(true)));
        let _ = std::fs::remove_dir_all(dir);
    }

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

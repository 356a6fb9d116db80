//! The cache of every environment's state; readers never block, one writer at a time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::sync::broadcast;
use vexil_eval::CompiledSnapshot;
use vexil_keys::KeyKind;
use vexil_model::Snapshot;
use vexil_proto::{ChangeEvent, ChangeKind, EnvironmentSnapshot, ItemKind, SdkKey};
use vexil_protocol::server::SnapshotView;

use crate::error::{Error, Result};
use crate::ring::Ring;

/// How many applied events each environment keeps for replays, unless told otherwise.
pub const DEFAULT_RING_CAPACITY: usize = 1024;
/// How many changes the change feed buffers for a slow receiver, unless told otherwise.
pub const DEFAULT_FEED_CAPACITY: usize = 4096;

/// Sizes of a [`Cache`]'s buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOptions {
    /// How many applied events each environment keeps for [`Cache::events_since`]
    /// (default [`DEFAULT_RING_CAPACITY`]).
    pub ring_capacity: usize,
    /// How many [`Change`]s the feed of [`Cache::subscribe`] holds for a receiver that has not read
    /// them yet (default [`DEFAULT_FEED_CAPACITY`]); a receiver that falls further behind gets
    /// `RecvError::Lagged` and must start over from the current state.
    pub feed_capacity: usize,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions { ring_capacity: DEFAULT_RING_CAPACITY, feed_capacity: DEFAULT_FEED_CAPACITY }
    }
}

/// One environment as the data plane serves it, at one revision. Immutable: a change builds a new
/// one and swaps it in, so a reader holding an `Arc<EnvironmentState>` has a consistent view for as
/// long as it likes.
pub struct EnvironmentState {
    id: i64,
    project: String,
    environment: String,
    revision: u64,
    snapshot: Snapshot,
    compiled: CompiledSnapshot,
    keys: Vec<SdkKey>,
    committed_at_ms: i64,
    updated_at: SystemTime,
}

impl EnvironmentState {
    /// The environment's id.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Its project's key.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// Its key within the project (`production`, ...).
    pub fn environment(&self) -> &str {
        &self.environment
    }

    /// The environment's revision this state reflects.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Every flag and segment as written (what a server SDK's `hydrate` carries).
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The snapshot as a `hydrate` carries it and `GET /v1/flags` answers it: with a `prefix`, only
    /// the flags whose key starts with it and the prerequisites those reach (without which they could
    /// not be evaluated); segments are all kept (the flags may use any).
    pub fn view(&self, prefix: Option<&str>) -> SnapshotView<'_> {
        let flags = match prefix {
            None => self.snapshot.flags.iter().collect(),
            Some(prefix) => self
                .compiled
                .selected_with_prerequisites(|flag| flag.key().as_str().starts_with(prefix))
                .into_iter()
                .map(|flag| flag.source())
                .collect(),
        };
        SnapshotView { revision: self.revision, flags, segments: &self.snapshot.segments }
    }

    /// The same, compiled for [`vexil_eval::evaluate`].
    pub fn compiled(&self) -> &CompiledSnapshot {
        &self.compiled
    }

    /// The environment's SDK keys (hashes only), sorted by id; expired ones included until the control
    /// plane removes them.
    pub fn keys(&self) -> &[SdkKey] {
        &self.keys
    }

    /// The SDK key with this id.
    pub fn key(&self, id: &str) -> Option<&SdkKey> {
        self.keys.iter().find(|key| key.id == id)
    }

    /// When the change behind this revision was committed in the control plane's database, Unix
    /// milliseconds (0 when unknown): with [`updated_at`](Self::updated_at), the propagation lag.
    pub fn committed_at_ms(&self) -> i64 {
        self.committed_at_ms
    }

    /// When this replica installed this state.
    pub fn updated_at(&self) -> SystemTime {
        self.updated_at
    }
}

impl std::fmt::Debug for EnvironmentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvironmentState")
            .field("id", &self.id)
            .field("project", &self.project)
            .field("environment", &self.environment)
            .field("revision", &self.revision)
            .field("flags", &self.snapshot.flags.len())
            .field("segments", &self.snapshot.segments.len())
            .field("keys", &self.keys.iter().map(|key| key.id.as_str()).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// An environment's whole content, parsed, with its names and keys: what [`Cache::install`] takes.
#[derive(Debug, Clone)]
pub struct EnvironmentContent {
    /// The environment's id.
    pub id: i64,
    /// Its project's key.
    pub project: String,
    /// Its key within the project.
    pub environment: String,
    /// Its flags and segments, at the revision installed.
    pub snapshot: Snapshot,
    /// Its SDK keys (hashes only).
    pub keys: Vec<SdkKey>,
    /// When the change behind this revision was committed, Unix milliseconds (0 when unknown).
    pub committed_at_ms: i64,
}

/// What [`Cache::load`] and [`Cache::install`] did with a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadOutcome {
    /// The snapshot replaced the environment's state (or added the environment).
    Installed {
        /// The revision the cache had before, if it knew the environment.
        previous: Option<u64>,
        /// The snapshot's revision, now the cache's.
        revision: u64,
    },
    /// The cache already had this revision or a newer one (or the environment was deleted at or after
    /// it); nothing changed.
    Ignored {
        /// The cache's revision (for a deleted environment, the revision of its deletion).
        have: u64,
        /// The snapshot's revision.
        offered: u64,
    },
}

/// What [`Cache::apply`] did with a change event (DESIGN.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The event was the next revision and is applied.
    Applied {
        /// The environment's new revision.
        revision: u64,
    },
    /// The event deleted the environment, which is gone from the cache.
    Removed {
        /// The revision of the deletion.
        revision: u64,
    },
    /// The cache already has this revision (a redelivery), or the environment was deleted; nothing
    /// changed.
    Ignored {
        /// The cache's revision.
        have: u64,
        /// The event's revision.
        got: u64,
    },
    /// The event is further ahead than the next revision (or for an environment the cache does not
    /// know, `have` 0): something was missed, and the caller must re-sync the environment.
    Gap {
        /// The cache's revision.
        have: u64,
        /// The event's revision.
        got: u64,
    },
}

/// One movement of one environment, on the feed of [`Cache::subscribe`]. Every change is sent after it
/// is visible through [`Cache::environment`] and [`Cache::events_since`], and in revision order.
///
/// Changes carry no [`EnvironmentState`]: the feed keeps its last [`CacheOptions::feed_capacity`]
/// messages alive, and that many copies of a large environment would be a lot of memory. Read the
/// current state with [`Cache::environment`] (it may already be further along than the change).
#[derive(Debug, Clone)]
pub enum Change {
    /// One event was applied; the environment is now at its revision.
    Applied {
        /// The environment.
        environment_id: i64,
        /// The event (the same `Arc` the replay ring holds).
        event: Arc<ChangeEvent>,
    },
    /// A full snapshot replaced the environment's state (warm start, re-sync): the events in between are
    /// unknown, so a stream sends a fresh `hydrate`. Its SDK keys may have changed too.
    Resynced {
        /// The environment.
        environment_id: i64,
        /// Its revision now.
        revision: u64,
        /// The revision before, if the environment was known.
        previous: Option<u64>,
    },
    /// The environment was deleted; its keys no longer authenticate, and its streams should end.
    Removed {
        /// The environment.
        environment_id: i64,
        /// The revision of the deletion.
        revision: u64,
    },
}

impl Change {
    /// The environment that moved.
    pub fn environment_id(&self) -> i64 {
        match self {
            Change::Applied { environment_id, .. }
            | Change::Resynced { environment_id, .. }
            | Change::Removed { environment_id, .. } => *environment_id,
        }
    }

    /// Its revision after the change.
    pub fn revision(&self) -> u64 {
        match self {
            Change::Applied { event, .. } => event.revision,
            Change::Resynced { revision, .. } | Change::Removed { revision, .. } => *revision,
        }
    }
}

/// A presented SDK key that [`Cache::authenticate`] accepted.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The key's environment, as it is now.
    pub environment: Arc<EnvironmentState>,
    /// What the key grants.
    pub kind: KeyKind,
    /// The key's public id (for logs and metrics; never the secret).
    pub key_id: String,
}

/// Where the cache stands on one environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    /// Served, at this revision.
    Live(u64),
    /// Deleted at this revision; snapshots and events up to it are ignored.
    Deleted(u64),
    /// Never seen.
    Unknown,
}

/// Every environment's state, in memory: what a data-plane replica serves from.
///
/// Reads ([`environment`](Self::environment), [`authenticate`](Self::authenticate)) take no lock: each
/// environment's current `Arc<EnvironmentState>` sits behind an atomic pointer ([`ArcSwap`]) and is
/// swapped whole by the writers ([`load`](Self::load), [`apply`](Self::apply)), which take turns.
/// Cheap to clone; clones share the same cache.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    /// Environment id → slot. Copied on write, which only happens when an environment appears or goes.
    slots: ArcSwap<HashMap<i64, Arc<Slot>>>,
    /// SDK key id → environment id, for [`Cache::authenticate`]. Copied on write (keys change rarely).
    key_index: ArcSwap<HashMap<Box<str>, i64>>,
    /// Serialises writers; holds what only writers read.
    writer: Mutex<Writer>,
    changes: broadcast::Sender<Change>,
    ready: AtomicBool,
    ring_capacity: usize,
}

/// One environment: its current state, swapped on every change, and its recent events.
struct Slot {
    state: ArcSwap<EnvironmentState>,
    ring: Mutex<Ring>,
}

#[derive(Default)]
struct Writer {
    /// Deleted environments and the revision of their deletion, so that a late snapshot (the relay
    /// caches an empty one at that revision) or a redelivered event cannot bring them back. Ids are
    /// never reused, so an entry never needs to go.
    deleted: HashMap<i64, u64>,
}

impl Default for Cache {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("environments", &self.inner.slots.load().len())
            .field("ready", &self.ready())
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// An empty cache with the default buffer sizes ([`CacheOptions::default`]).
    pub fn new() -> Cache {
        Cache::with_options(CacheOptions::default())
    }

    /// An empty cache with these buffer sizes.
    pub fn with_options(options: CacheOptions) -> Cache {
        let (changes, _) = broadcast::channel(options.feed_capacity.max(1));
        Cache {
            inner: Arc::new(Inner {
                slots: ArcSwap::from_pointee(HashMap::new()),
                key_index: ArcSwap::from_pointee(HashMap::new()),
                writer: Mutex::new(Writer::default()),
                changes,
                ready: AtomicBool::new(false),
                ring_capacity: options.ring_capacity,
            }),
        }
    }

    /// One environment's current state.
    pub fn environment(&self, id: i64) -> Option<Arc<EnvironmentState>> {
        self.inner.slots.load().get(&id).map(|slot| slot.state.load_full())
    }

    /// Every environment's current state, by ascending id.
    pub fn environments(&self) -> Vec<Arc<EnvironmentState>> {
        let mut states: Vec<_> =
            self.inner.slots.load().values().map(|slot| slot.state.load_full()).collect();
        states.sort_unstable_by_key(|state| state.id);
        states
    }

    /// Whether the first full sync has completed (for readiness probes).
    pub fn ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// Records that the first full sync has completed. Called by the sync task ([`BusSync`](crate::BusSync))
    /// or by whatever else fills the cache.
    pub fn mark_ready(&self) {
        self.inner.ready.store(true, Ordering::Release);
    }

    /// The feed of every change from now on. A receiver that falls more than
    /// [`CacheOptions::feed_capacity`] changes behind gets `RecvError::Lagged` and should start over
    /// from [`environment`](Self::environment) (a stream: send a fresh `hydrate`).
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.changes.subscribe()
    }

    /// The events applied to an environment after `revision`, oldest first, to bring a reconnecting
    /// client up to date. `None` when the cache no longer holds all of them (the ring overflowed, or
    /// the environment was re-synced or is unknown): the client needs a fresh `hydrate` instead.
    ///
    /// A `revision` at or past the cache's gives an empty list: a client served by a replica further
    /// along has nothing to replay here, and must skip the feed's events up to its revision.
    pub fn events_since(&self, environment_id: i64, revision: u64) -> Option<Vec<Arc<ChangeEvent>>> {
        let slots = self.inner.slots.load();
        let slot = slots.get(&environment_id)?;
        lock(&slot.ring).since(revision)
    }

    /// Checks a presented SDK key: its id (from its `vxs_`/`vxc_` shape) finds the environment in O(1),
    /// then the SHA-256 of the whole secret is compared in constant time, and the key must not have
    /// expired (`expires_at_ms`, 0 = never). `None` for anything else, without saying why.
    pub fn authenticate(&self, presented: &str) -> Option<Authenticated> {
        self.authenticate_at(presented, unix_millis(SystemTime::now()))
    }

    fn authenticate_at(&self, presented: &str, now_ms: i64) -> Option<Authenticated> {
        let (kind, id) = vexil_keys::sdk_key_id(presented)?;
        let environment_id = *self.inner.key_index.load().get(id)?;
        let environment = self.environment(environment_id)?;
        let key = environment.key(id)?;
        // The hash is compared whatever the kind and expiry, so timing says nothing about either.
        let matches = vexil_keys::matches(presented, &key.secret_sha256);
        let live = key.expires_at_ms == 0 || now_ms < key.expires_at_ms;
        if !(matches && live && key.kind == kind.as_str()) {
            return None;
        }
        let key_id = key.id.clone();
        Some(Authenticated { environment, kind, key_id })
    }

    /// Installs a full snapshot from the bus or the database (warm start, re-sync): its JSON parsed,
    /// then [`install`](Self::install)ed. A snapshot that cannot be read, whose content and envelope
    /// disagree about the revision, or that does not compile is an error, and the cache is unchanged.
    pub fn load(&self, snapshot: &EnvironmentSnapshot) -> Result<LoadOutcome> {
        let id = snapshot.environment_id;
        let offered = snapshot.revision;
        // Not parsed at all when it would be ignored (`install` checks again, under the writer lock).
        if let Position::Live(have) | Position::Deleted(have) = self.position(id)
            && offered <= have
        {
            return Ok(LoadOutcome::Ignored { have, offered });
        }
        let source: Snapshot = serde_json::from_slice(&snapshot.snapshot_json)
            .map_err(|source| Error::MalformedSnapshot { environment_id: id, revision: offered, source })?;
        if source.revision != offered {
            return Err(Error::RevisionMismatch {
                environment_id: id,
                envelope: offered,
                content: source.revision,
            });
        }
        self.install(EnvironmentContent {
            id,
            project: snapshot.project.clone(),
            environment: snapshot.environment.clone(),
            snapshot: source,
            keys: snapshot.keys.clone(),
            committed_at_ms: snapshot.committed_at_ms,
        })
    }

    /// Installs an environment's whole content if its revision is newer than the cache's, or the
    /// environment is unknown; otherwise ignores it. The environment's replay ring starts over and the
    /// feed gets a [`Change::Resynced`]. Content that does not compile is an error, and the cache is
    /// unchanged.
    pub fn install(&self, content: EnvironmentContent) -> Result<LoadOutcome> {
        let EnvironmentContent { id, project, environment, snapshot: source, mut keys, committed_at_ms } =
            content;
        let offered = source.revision;
        let mut writer = self.writer();
        let previous = match self.position_locked(&writer, id) {
            Position::Live(have) | Position::Deleted(have) if offered <= have => {
                return Ok(LoadOutcome::Ignored { have, offered });
            }
            Position::Live(have) => Some(have),
            Position::Deleted(_) | Position::Unknown => None,
        };
        let compiled = vexil_eval::compile(source.clone()).map_err(|source| Error::Compile {
            environment_id: id,
            revision: offered,
            source,
        })?;
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        let state = Arc::new(EnvironmentState {
            id,
            project,
            environment,
            revision: offered,
            snapshot: source,
            compiled,
            keys,
            committed_at_ms,
            updated_at: SystemTime::now(),
        });

        writer.deleted.remove(&id);
        let slots = self.inner.slots.load_full();
        match slots.get(&id) {
            Some(slot) => {
                lock(&slot.ring).reset(offered);
                let before = slot.state.swap(Arc::clone(&state));
                self.reindex_keys(id, &before.keys, &state.keys);
            }
            None => {
                let slot = Arc::new(Slot {
                    state: ArcSwap::new(Arc::clone(&state)),
                    ring: Mutex::new(Ring::new(self.inner.ring_capacity, offered)),
                });
                let mut next = HashMap::clone(&slots);
                next.insert(id, slot);
                self.inner.slots.store(Arc::new(next));
                self.reindex_keys(id, &[], &state.keys);
            }
        }
        // Sent under the writer lock, so that the feed is in revision order. An error only means that
        // nobody listens.
        let _ = self.inner.changes.send(Change::Resynced { environment_id: id, revision: offered, previous });
        drop(writer);
        tracing::debug!(environment_id = id, ?previous, revision = offered, "installed a snapshot");
        Ok(LoadOutcome::Installed { previous, revision: offered })
    }

    /// Applies one change event under the revision discipline of DESIGN.md §4: only the next revision
    /// (`have + 1`) is applied; older ones are [`Ignored`](ApplyOutcome::Ignored); a newer one, or one
    /// for an environment the cache does not know, is a [`Gap`](ApplyOutcome::Gap) the caller must
    /// re-sync. Applying builds the environment's new source snapshot (the flag, segment or SDK key
    /// replaced or removed, the revision moved on), compiles it and swaps it in; an environment delete
    /// removes the environment.
    ///
    /// An event that cannot be applied (an unreadable payload, a result that does not compile) is an
    /// error, and the cache is unchanged: the caller re-syncs.
    pub fn apply(&self, event: &ChangeEvent) -> Result<ApplyOutcome> {
        let id = event.environment_id;
        let got = event.revision;
        let mut writer = self.writer();
        let Some(slot) = self.inner.slots.load().get(&id).cloned() else {
            return Ok(match writer.deleted.get(&id) {
                Some(&have) => ApplyOutcome::Ignored { have, got },
                None => ApplyOutcome::Gap { have: 0, got },
            });
        };
        let current = slot.state.load_full();
        let have = current.revision;
        if got <= have {
            return Ok(ApplyOutcome::Ignored { have, got });
        }
        if got - have > 1 {
            return Ok(ApplyOutcome::Gap { have, got });
        }

        if (event.kind(), event.item()) == (ChangeKind::Delete, ItemKind::Environment) {
            self.remove_locked(&mut writer, id, got);
            return Ok(ApplyOutcome::Removed { revision: got });
        }

        let applied = crate::apply::apply(&current.snapshot, &current.keys, event)?;
        let compiled = vexil_eval::compile(applied.snapshot.clone()).map_err(|source| Error::Compile {
            environment_id: id,
            revision: got,
            source,
        })?;
        let keys_changed = applied.keys.is_some();
        let keys = applied.keys.unwrap_or_else(|| current.keys.clone());
        let state = Arc::new(EnvironmentState {
            id,
            project: current.project.clone(),
            environment: current.environment.clone(),
            revision: got,
            snapshot: applied.snapshot,
            compiled,
            keys,
            committed_at_ms: event.committed_at_ms,
            updated_at: SystemTime::now(),
        });
        let event = Arc::new(event.clone());
        // Ring first, then state, then feed (under the writer lock, so the feed is in revision order): a
        // stream that subscribes to the feed and then reads the ring sees every event in one or the other.
        lock(&slot.ring).push(Arc::clone(&event));
        slot.state.store(Arc::clone(&state));
        if keys_changed {
            self.reindex_keys(id, &current.keys, &state.keys);
        }
        let _ = self.inner.changes.send(Change::Applied { environment_id: id, event });
        drop(writer);
        Ok(ApplyOutcome::Applied { revision: got })
    }

    /// Removes an environment known to be gone (the database no longer has it) as of `revision`.
    pub(crate) fn remove(&self, id: i64, revision: u64) {
        let mut writer = self.writer();
        self.remove_locked(&mut writer, id, revision);
    }

    pub(crate) fn position(&self, id: i64) -> Position {
        let writer = self.writer();
        self.position_locked(&writer, id)
    }

    fn position_locked(&self, writer: &Writer, id: i64) -> Position {
        if let Some(state) = self.environment(id) {
            Position::Live(state.revision)
        } else if let Some(&revision) = writer.deleted.get(&id) {
            Position::Deleted(revision)
        } else {
            Position::Unknown
        }
    }

    fn remove_locked(&self, writer: &mut Writer, id: i64, revision: u64) {
        let deleted = writer.deleted.entry(id).or_insert(revision);
        *deleted = (*deleted).max(revision);
        let slots = self.inner.slots.load_full();
        if let Some(slot) = slots.get(&id) {
            self.reindex_keys(id, &slot.state.load().keys, &[]);
            let mut next = HashMap::clone(&slots);
            next.remove(&id);
            self.inner.slots.store(Arc::new(next));
            tracing::info!(environment_id = id, revision, "environment deleted");
            let _ = self.inner.changes.send(Change::Removed { environment_id: id, revision });
        }
    }

    /// Points the key index at `id` for `new` keys instead of `old` ones. Only under the writer lock, and
    /// after the new state is in place: [`authenticate`](Self::authenticate) checks the key against the
    /// state, so in the moment between the two a removed key is already refused and an added one not
    /// yet accepted, never the other way round.
    fn reindex_keys(&self, id: i64, old: &[SdkKey], new: &[SdkKey]) {
        if old.len() == new.len() && old.iter().zip(new).all(|(a, b)| a.id == b.id) {
            return;
        }
        let mut index = HashMap::clone(&self.inner.key_index.load());
        for key in old {
            if index.get(key.id.as_str()) == Some(&id) {
                index.remove(key.id.as_str());
            }
        }
        for key in new {
            index.insert(key.id.as_str().into(), id);
        }
        self.inner.key_index.store(Arc::new(index));
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        lock(&self.inner.writer)
    }
}

/// Writers build everything first and swap it in at the end, and the ring's updates are single pushes,
/// so data behind a poisoned lock is still consistent and safe to use.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use vexil_keys::SecretKind;

    use super::*;

    fn environment(id: i64, revision: u64, keys: Vec<SdkKey>) -> EnvironmentSnapshot {
        EnvironmentSnapshot {
            environment_id: id,
            project: "shop".into(),
            environment: "production".into(),
            revision,
            snapshot_json: format!(r#"{{"revision": {revision}}}"#).into_bytes(),
            keys,
            committed_at_ms: 0,
        }
    }

    #[test]
    fn a_key_is_refused_from_its_expiry_instant_on() {
        let secret = vexil_keys::generate(SecretKind::Server);
        let key = SdkKey {
            id: secret.id.clone(),
            kind: "server".into(),
            secret_sha256: secret.sha256.to_vec(),
            expires_at_ms: 1_000,
        };
        let cache = Cache::new();
        cache.load(&environment(1, 1, vec![key])).unwrap();

        assert!(cache.authenticate_at(&secret.secret, 999).is_some());
        assert!(cache.authenticate_at(&secret.secret, 1_000).is_none());
    }

    #[test]
    fn a_deleted_environment_is_not_brought_back_by_its_last_snapshot() {
        let cache = Cache::new();
        cache.load(&environment(1, 3, vec![])).unwrap();
        cache.remove(1, 4);

        let outcome = cache.load(&environment(1, 4, vec![])).unwrap();

        assert_eq!(outcome, LoadOutcome::Ignored { have: 4, offered: 4 });
        assert!(cache.environment(1).is_none());
        assert_eq!(cache.position(1), Position::Deleted(4));
    }
}

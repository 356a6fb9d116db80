//! What a client and its background tasks share: the store, the health the state is derived from, and
//! the channels listeners subscribe to. It is the sync's [`Target`]: the sync writes here, evaluations
//! read the store.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, broadcast, watch};
use tokio_util::sync::CancellationToken;
use vexil_protocol::server::{ReceivedChange, ReceivedSnapshot};

use crate::health::{Health, State};
use crate::store::{self, Store};
use crate::sync::{self, SyncEvent, Target, TargetError};

/// Capacity of the change and sync-event channels.
const CHANNEL_CAPACITY: usize = 256;

/// Flags changed: the revision the client is now at, and the keys whose evaluation may differ —
/// flags added, changed or removed, flags using a segment that changed, and flags whose prerequisites
/// are among those. A `hydrate` that replaced the data reports only the flags that differ (all of them
/// on the first one); a change that affects no flag is not reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagChange {
    /// The environment's revision after the change.
    pub revision: u64,
    /// The flags whose configuration changed, sorted.
    pub keys: Vec<String>,
}

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
        let state = health.state(Instant::now(), stale_after);
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
            health.state(Instant::now(), self.stale_after)
        };
        self.publish_state(state);
        self.health_changed.notify_one();
    }

    /// Publishes the state now; when it will change by itself if nothing happens.
    fn refresh_state(&self) -> Option<Instant> {
        let now = Instant::now();
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
    fn synced(&self, outcome: store::Outcome) -> sync::Outcome {
        let outcome = match outcome {
            store::Outcome::Installed { revision, changed } => {
                if !changed.is_empty() {
                    tracing::debug!(revision, changed = changed.len(), "flags changed");
                    let _ = self.changes.send(FlagChange { revision, keys: changed });
                }
                sync::Outcome::Installed { revision }
            }
            store::Outcome::Skipped { have } => sync::Outcome::Skipped { have },
        };
        if self.store.synced() {
            self.update_health(|health| health.confirm(Instant::now()));
        }
        outcome
    }

    /// The background tasks stopped: no stream any more.
    pub(crate) fn closed(&self) {
        self.update_health(|health| health.connected = false);
    }
}

impl Target for Shared {
    async fn install(
        &self,
        snapshot: ReceivedSnapshot,
        origin: sync::Origin,
    ) -> Result<sync::Outcome, TargetError> {
        let origin = match origin {
            sync::Origin::Hydrate => store::Origin::Hydrate,
            sync::Origin::Poll => store::Origin::Poll,
        };
        Ok(self.synced(self.store.install(snapshot, origin)?))
    }

    async fn apply(&self, change: ReceivedChange, revision: u64) -> Result<sync::Outcome, TargetError> {
        Ok(self.synced(self.store.apply(change, revision)?))
    }

    fn synced_revision(&self) -> Option<u64> {
        self.store.synced_revision()
    }

    fn alive(&self) {
        self.update_health(|health| health.alive(Instant::now()));
    }

    fn observe(&self, event: SyncEvent) {
        match &event {
            SyncEvent::StreamConnected => self.update_health(|health| {
                health.connected = true;
                health.alive(Instant::now());
            }),
            SyncEvent::StreamDisconnected { .. } => self.update_health(|health| health.connected = false),
            _ => {}
        }
        let _ = self.sync_events.send(event);
    }
}

/// Keeps the state current when time alone changes it (`Ready` → `Stale` after the grace period).
pub(crate) async fn monitor(shared: std::sync::Arc<Shared>, shutdown: CancellationToken) {
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
            () = shutdown.cancelled() => return,
            () = shared.health_changed.notified() => {}
            () = wake => {}
        }
    }
}

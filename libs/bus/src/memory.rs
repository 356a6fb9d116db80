//! The in-process bus for standalone mode: a tokio broadcast channel and a map of snapshots.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;
use vexil_proto::{ChangeEvent, EnvironmentSnapshot};

/// How many events a slow subscriber may fall behind before it starts missing some. A subscriber that
/// misses events sees a revision gap and re-syncs, exactly as after a Redis outage.
const CHANNEL_CAPACITY: usize = 4096;

/// A bus that lives in this process's memory. Clones share the same bus; subscriptions end when every
/// clone has been dropped.
#[derive(Clone, Debug)]
pub struct InProcessBus {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    events: broadcast::Sender<Arc<ChangeEvent>>,
    snapshots: Mutex<BTreeMap<i64, EnvironmentSnapshot>>,
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new()
    }
}

impl InProcessBus {
    /// A new, empty bus.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(CHANNEL_CAPACITY);
        Self { shared: Arc::new(Shared { events, snapshots: Mutex::new(BTreeMap::new()) }) }
    }

    fn snapshots(&self) -> MutexGuard<'_, BTreeMap<i64, EnvironmentSnapshot>> {
        // A panic while holding the lock cannot leave the map half-updated (every update is one insert),
        // so a poisoned lock is still safe to use.
        self.shared.snapshots.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn publish(&self, events: &[ChangeEvent], snapshot: &EnvironmentSnapshot) {
        // The lock is held while sending so that two concurrent publishes cannot interleave their
        // events or leave the older snapshot cached.
        let mut snapshots = self.snapshots();
        for event in events {
            // An error only means that nobody is subscribed right now.
            let _ = self.shared.events.send(Arc::new(event.clone()));
        }
        match snapshots.get(&snapshot.environment_id) {
            Some(cached) if cached.revision >= snapshot.revision => {
                tracing::debug!(
                    environment_id = snapshot.environment_id,
                    cached = cached.revision,
                    offered = snapshot.revision,
                    "kept the newer cached snapshot"
                );
            }
            _ => {
                snapshots.insert(snapshot.environment_id, snapshot.clone());
            }
        }
    }

    pub(crate) fn snapshot(&self, environment_id: i64) -> Option<EnvironmentSnapshot> {
        self.snapshots().get(&environment_id).cloned()
    }

    pub(crate) fn environments(&self) -> Vec<(i64, u64)> {
        self.snapshots().iter().map(|(id, snapshot)| (*id, snapshot.revision)).collect()
    }

    pub(crate) fn subscribe(&self, environment_ids: &[i64]) -> InProcessSubscription {
        InProcessSubscription {
            events: self.shared.events.subscribe(),
            environments: environment_ids.iter().copied().collect(),
        }
    }
}

/// A subscription to an [`InProcessBus`].
#[derive(Debug)]
pub(crate) struct InProcessSubscription {
    events: broadcast::Receiver<Arc<ChangeEvent>>,
    environments: HashSet<i64>,
}

impl InProcessSubscription {
    pub(crate) async fn next(&mut self) -> Option<ChangeEvent> {
        loop {
            match self.events.recv().await {
                Ok(event) if self.environments.contains(&event.environment_id) => {
                    return Some(Arc::unwrap_or_clone(event));
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "subscriber fell behind the in-process bus; it will see a revision gap"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    pub(crate) fn add(&mut self, environment_ids: &[i64]) {
        self.environments.extend(environment_ids.iter().copied());
    }
}

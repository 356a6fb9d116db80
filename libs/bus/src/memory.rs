//! The in-process bus for standalone mode: a tokio broadcast channel and a map of snapshots.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;
use vexil_proto::{ChangeEvent, EnvironmentSnapshot};

/// How many events a slow subscriber may fall behind before it starts missing some. A subscriber that
/// misses events sees a revision gap and re-syncs, exactly as after a Redis outage.
const CHANNEL_CAPACITY: usize = 4096;

/// Most events the in-process bus keeps per environment, whatever `max_len` a caller asks for: standalone
/// mode has nobody consuming them, and they must not fill the process's memory.
pub const IN_PROCESS_EVENTS_CAP: u64 = 100_000;

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
    /// Each environment's newest data-plane events, oldest first.
    events_by_environment: Mutex<HashMap<i64, VecDeque<Vec<u8>>>>,
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
        Self {
            shared: Arc::new(Shared {
                events,
                snapshots: Mutex::new(BTreeMap::new()),
                events_by_environment: Mutex::new(HashMap::new()),
            }),
        }
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

    fn event_rings(&self) -> MutexGuard<'_, HashMap<i64, VecDeque<Vec<u8>>>> {
        // Every update leaves the rings consistent (pushes and pops of whole events).
        self.shared.events_by_environment.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn append_events(&self, environment_id: i64, events: &[Vec<u8>], max_len: u64) {
        let cap = usize::try_from(max_len.min(IN_PROCESS_EVENTS_CAP)).unwrap_or(usize::MAX);
        let mut rings = self.event_rings();
        let ring = rings.entry(environment_id).or_default();
        // Only the newest `cap` of this batch can survive, so older ones are not even copied.
        for event in &events[events.len().saturating_sub(cap)..] {
            ring.push_back(event.clone());
        }
        while ring.len() > cap {
            ring.pop_front();
        }
    }

    /// The newest `limit` events of an environment, oldest first.
    pub fn recent_events(&self, environment_id: i64, limit: usize) -> Vec<Vec<u8>> {
        let rings = self.event_rings();
        let Some(ring) = rings.get(&environment_id) else { return Vec::new() };
        ring.iter().skip(ring.len().saturating_sub(limit)).cloned().collect()
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

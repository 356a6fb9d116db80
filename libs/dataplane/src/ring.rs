//! The per-environment ring buffer of applied events, for `Last-Event-ID` replays.

use std::collections::VecDeque;
use std::sync::Arc;

use vexil_proto::ChangeEvent;

/// The last `capacity` events applied to one environment. They are contiguous: they cover the
/// revisions `(base, base + len]`, so a client at any revision from `base` on can be brought up to date.
#[derive(Debug)]
pub(crate) struct Ring {
    events: VecDeque<Arc<ChangeEvent>>,
    base: u64,
    capacity: usize,
}

impl Ring {
    /// An empty ring for an environment installed whole at `revision`: nothing before it can be replayed.
    pub(crate) fn new(capacity: usize, revision: u64) -> Ring {
        Ring { events: VecDeque::with_capacity(capacity.min(64)), base: revision, capacity }
    }

    /// Forgets every event: the environment was replaced whole at `revision` (a re-sync), so what led
    /// up to it is unknown.
    pub(crate) fn reset(&mut self, revision: u64) {
        self.events.clear();
        self.base = revision;
    }

    /// Records the event that moved the environment to `base + len + 1`.
    pub(crate) fn push(&mut self, event: Arc<ChangeEvent>) {
        debug_assert_eq!(event.revision, self.head() + 1, "events are pushed in revision order");
        if self.capacity == 0 {
            self.base = event.revision;
            return;
        }
        if self.events.len() == self.capacity {
            self.events.pop_front();
            self.base += 1;
        }
        self.events.push_back(event);
    }

    /// The revision of the newest event (or the base when there is none).
    fn head(&self) -> u64 {
        self.base + self.events.len() as u64
    }

    /// The events after `revision`, oldest first; `None` when some of them are no longer held.
    pub(crate) fn since(&self, revision: u64) -> Option<Vec<Arc<ChangeEvent>>> {
        if revision < self.base {
            return None;
        }
        // A client ahead of this replica (it was served by a replica that is further along) has nothing
        // to replay; it will get the next events as they are applied here.
        let skip = usize::try_from(revision - self.base).unwrap_or(usize::MAX);
        Some(self.events.iter().skip(skip).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(revision: u64) -> Arc<ChangeEvent> {
        Arc::new(ChangeEvent { revision, ..Default::default() })
    }

    fn revisions(events: Option<Vec<Arc<ChangeEvent>>>) -> Option<Vec<u64>> {
        events.map(|events| events.iter().map(|e| e.revision).collect())
    }

    #[test]
    fn a_ring_replays_what_it_holds_and_refuses_what_it_dropped() {
        let mut ring = Ring::new(3, 10);
        for revision in 11..=15 {
            ring.push(event(revision));
        }
        assert_eq!(revisions(ring.since(12)), Some(vec![13, 14, 15]));
        assert_eq!(revisions(ring.since(14)), Some(vec![15]));
        assert_eq!(revisions(ring.since(15)), Some(vec![]));
        assert_eq!(revisions(ring.since(99)), Some(vec![]));
        assert_eq!(revisions(ring.since(11)), None);
    }

    #[test]
    fn a_reset_ring_replays_nothing_from_before_it() {
        let mut ring = Ring::new(8, 1);
        ring.push(event(2));
        ring.reset(5);
        assert_eq!(revisions(ring.since(1)), None);
        assert_eq!(revisions(ring.since(5)), Some(vec![]));
        ring.push(event(6));
        assert_eq!(revisions(ring.since(5)), Some(vec![6]));
    }

    #[test]
    fn a_ring_of_capacity_zero_only_knows_the_head() {
        let mut ring = Ring::new(0, 1);
        ring.push(event(2));
        assert_eq!(revisions(ring.since(1)), None);
        assert_eq!(revisions(ring.since(2)), Some(vec![]));
    }
}

//! Vexil's change-event bus (DESIGN.md §1, §4).
//!
//! The control plane's relay [`publish`](Bus::publish)es each environment's [`ChangeEvent`]s, in
//! revision order, followed by the environment's new [`EnvironmentSnapshot`]. Data-plane replicas
//! [`subscribe`](Bus::subscribe) to the environments they serve, warm-start from the cached
//! [`snapshot`](Bus::snapshot)s and discover environments through the [`environments`](Bus::environments)
//! registry. The bus gives no delivery guarantee beyond "in publish order, per environment, while
//! connected": a replica detects anything it missed (a Redis restart, a slow consumer) as a revision gap
//! and re-syncs from the snapshot cache; the relay keeps events in the database until `publish` succeeds.
//!
//! Two implementations behind one enum, [`Bus`]:
//!
//! * **Redis** ([`RedisBus`], `redis://host:port` or `redis-cluster://host:port`): a single server and a
//!   Redis Cluster run the same code; only the URL differs.
//! * **In-process** ([`InProcessBus`], `memory://`): for the single-process standalone mode.
//!
//! # Redis layout
//!
//! Every per-environment name carries the hash tag `{env:<id>}`, so an environment's channel and keys
//! live in one cluster slot (one node), while different environments spread over the cluster:
//!
//! | name | type | content |
//! | --- | --- | --- |
//! | `vexil:{env:<id>}:changes` | sharded pub/sub channel (`SPUBLISH`/`SSUBSCRIBE`) | prost-encoded [`ChangeEvent`], one per message |
//! | `vexil:{env:<id>}:snapshot` | string | prost-encoded [`EnvironmentSnapshot`] |
//! | `vexil:{env:<id>}:revision` | string | the cached snapshot's revision, decimal |
//! | `vexil:{env:<id>}:events` | stream | data-plane events (exposures, custom events), one JSON document per entry in field `event`, capped with `MAXLEN ~` |
//! | `vexil:environments` | hash | field: environment id, value: latest published revision (decimal) |
//!
//! The snapshot and its revision are written by one Lua script that compares revisions first, so an
//! older snapshot (a retry, a slow relay) never overwrites a newer one; the registry is updated the same
//! way. Sharded pub/sub sends each channel's traffic only to the node that owns its slot, so a cluster
//! spreads the load instead of broadcasting every event to every node.
//!
//! # Connections and failures
//!
//! Commands time out after 2 s (connection attempts too), so `publish`, `snapshot` and `ping` fail fast
//! while Redis is down. Connections reconnect with exponential backoff (100 ms doubling to 5 s) for
//! ever. Each [`Subscription`] owns a subscriber connection and re-subscribes its channels after every
//! reconnect; events published while it was disconnected are lost to it (pub/sub keeps nothing). A
//! subscriber notices them as a revision gap at the next event, and
//! [`Subscription::next_delivery`] tells it the moment the subscription is back
//! ([`Delivery::Resubscribed`]) so that it can compare its revisions with the registry at once instead
//! of waiting for the next event or its periodic check.

#![deny(missing_docs)]

mod delivery;
mod error;
mod keys;
mod memory;
mod redis;

pub use delivery::Delivery;
pub use error::{BusError, Result};
pub use memory::{IN_PROCESS_EVENTS_CAP, InProcessBus};
pub use redis::RedisBus;
pub use vexil_proto::{ChangeEvent, EnvironmentSnapshot};

use memory::InProcessSubscription;
use redis::RedisSubscription;

/// The change-event bus: Redis or in-process. Cheap to clone; clones share connections.
#[derive(Clone, Debug)]
pub enum Bus {
    /// Over Redis or a Redis Cluster.
    Redis(RedisBus),
    /// In this process's memory.
    InProcess(InProcessBus),
}

impl Bus {
    /// Connects by URL: `redis://...` or `redis-cluster://...` → Redis; `memory://` → a new in-process
    /// bus. Fails if Redis cannot be reached now (after that, reconnection is automatic).
    pub async fn connect(url: &str) -> Result<Bus> {
        let scheme = url.split_once("://").map_or(url, |(scheme, _)| scheme);
        match scheme {
            "redis" | "redis-cluster" => Ok(Bus::Redis(RedisBus::connect(url).await?)),
            "memory" => Ok(Bus::in_process()),
            other => Err(BusError::UnsupportedScheme { scheme: other.to_owned() }),
        }
    }

    /// A new in-process bus.
    pub fn in_process() -> Bus {
        Bus::InProcess(InProcessBus::new())
    }

    /// Publishes `events` (all of `snapshot.environment_id`, in ascending revision order, the last at
    /// `snapshot.revision`; may be empty) and then caches `snapshot` as the environment's snapshot unless
    /// the cached one is at least as new, and records the environment's revision in the registry.
    ///
    /// Fails within a few seconds if Redis is unreachable; publishing the same batch again is harmless
    /// (subscribers ignore revisions they already have). Fails without publishing anything if the
    /// events do not lead up to the snapshot.
    pub async fn publish(&self, events: &[ChangeEvent], snapshot: &EnvironmentSnapshot) -> Result<()> {
        check_batch(events, snapshot)?;
        match self {
            Bus::Redis(bus) => bus.publish(events, snapshot).await,
            Bus::InProcess(bus) => {
                bus.publish(events, snapshot);
                Ok(())
            }
        }
    }

    /// The cached snapshot of one environment, if any.
    pub async fn snapshot(&self, environment_id: i64) -> Result<Option<EnvironmentSnapshot>> {
        match self {
            Bus::Redis(bus) => bus.snapshot(environment_id).await,
            Bus::InProcess(bus) => Ok(bus.snapshot(environment_id)),
        }
    }

    /// Every environment in the registry with its latest published revision, by ascending id.
    pub async fn environments(&self) -> Result<Vec<(i64, u64)>> {
        match self {
            Bus::Redis(bus) => bus.environments().await,
            Bus::InProcess(bus) => Ok(bus.environments()),
        }
    }

    /// Subscribes to the change events of these environments (more can be [`add`](Subscription::add)ed
    /// later). Events published after this returns arrive in publish order per environment. The
    /// subscription re-subscribes by itself after a Redis disconnect.
    pub async fn subscribe(&self, environment_ids: &[i64]) -> Result<Subscription> {
        let inner = match self {
            Bus::Redis(bus) => SubscriptionInner::Redis(bus.subscribe(environment_ids).await?),
            Bus::InProcess(bus) => SubscriptionInner::InProcess(bus.subscribe(environment_ids)),
        };
        Ok(Subscription { inner })
    }

    /// Appends data-plane events (each an encoded document, JSON by convention) to the environment's
    /// events stream, in order, keeping about the newest `max_len` of them.
    ///
    /// Redis: one `XADD vexil:{env:<id>}:events MAXLEN ~ <max_len> * event <bytes>` per event, sent
    /// together on one connection (`~` lets Redis trim whole stream nodes, so the stream may briefly
    /// hold up to one node — 100 entries by default — more than `max_len`). Fails within a few seconds
    /// if Redis is unreachable; events of a failed call may have been partly appended, so a caller that
    /// retries delivers at least once. In process: a ring per environment holding the newest
    /// `max_len` events (at most [`IN_PROCESS_EVENTS_CAP`], so standalone mode's memory stays bounded).
    pub async fn append_events(&self, environment_id: i64, events: &[Vec<u8>], max_len: u64) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        match self {
            Bus::Redis(bus) => bus.append_events(environment_id, events, max_len).await,
            Bus::InProcess(bus) => {
                bus.append_events(environment_id, events, max_len);
                Ok(())
            }
        }
    }

    /// The newest `limit` events of an environment's events stream, oldest first (for tests and
    /// diagnostics; consumers read the stream with their own consumer groups).
    pub async fn recent_events(&self, environment_id: i64, limit: usize) -> Result<Vec<Vec<u8>>> {
        if limit == 0 {
            // Redis reads `COUNT 0` as "no limit".
            return Ok(Vec::new());
        }
        match self {
            Bus::Redis(bus) => bus.recent_events(environment_id, limit).await,
            Bus::InProcess(bus) => Ok(bus.recent_events(environment_id, limit)),
        }
    }

    /// Whether the bus is reachable now (for readiness checks).
    pub async fn ping(&self) -> Result<()> {
        match self {
            Bus::Redis(bus) => bus.ping().await,
            Bus::InProcess(_) => Ok(()),
        }
    }
}

/// A stream of change events for a set of environments, from [`Bus::subscribe`]. Dropping it
/// unsubscribes (and closes its Redis connection).
#[derive(Debug)]
pub struct Subscription {
    inner: SubscriptionInner,
}

#[derive(Debug)]
enum SubscriptionInner {
    Redis(RedisSubscription),
    InProcess(InProcessSubscription),
}

impl Subscription {
    /// The next change event, skipping [`Delivery::Resubscribed`] notices. Waits across Redis outages;
    /// `None` only once the bus is shut down (every in-process [`Bus`] dropped, or the Redis client
    /// closed).
    ///
    /// Cancel-safe: dropping the future loses no event.
    pub async fn next(&mut self) -> Option<ChangeEvent> {
        loop {
            match self.next_delivery().await? {
                Delivery::Change(event) => return Some(event),
                Delivery::Resubscribed => {}
            }
        }
    }

    /// The next change event or re-subscription notice; `None` as for [`next`](Self::next).
    ///
    /// Cancel-safe: dropping the future loses nothing.
    pub async fn next_delivery(&mut self) -> Option<Delivery> {
        match &mut self.inner {
            SubscriptionInner::Redis(subscription) => subscription.next().await,
            SubscriptionInner::InProcess(subscription) => subscription.next().await.map(Delivery::Change),
        }
    }

    /// Subscribes to more environments; events published after this returns are delivered.
    pub async fn add(&mut self, environment_ids: &[i64]) -> Result<()> {
        match &mut self.inner {
            SubscriptionInner::Redis(subscription) => subscription.add(environment_ids).await,
            SubscriptionInner::InProcess(subscription) => {
                subscription.add(environment_ids);
                Ok(())
            }
        }
    }
}

/// The events must be the snapshot environment's, strictly ascending, and end at its revision.
fn check_batch(events: &[ChangeEvent], snapshot: &EnvironmentSnapshot) -> Result<()> {
    let environment_id = snapshot.environment_id;
    let problem = |problem: String| Err(BusError::InconsistentBatch { environment_id, problem });
    if let Some(event) = events.iter().find(|event| event.environment_id != environment_id) {
        return problem(format!(
            "event at revision {} belongs to environment {}",
            event.revision, event.environment_id
        ));
    }
    if let Some(pair) = events.windows(2).find(|pair| pair[0].revision >= pair[1].revision) {
        return problem(format!("revision {} follows revision {}", pair[1].revision, pair[0].revision));
    }
    if let Some(last) = events.last()
        && last.revision != snapshot.revision
    {
        return problem(format!(
            "the last event is at revision {} but the snapshot at {}",
            last.revision, snapshot.revision
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(environment_id: i64, revision: u64) -> ChangeEvent {
        ChangeEvent { environment_id, revision, ..Default::default() }
    }

    fn snapshot(environment_id: i64, revision: u64) -> EnvironmentSnapshot {
        EnvironmentSnapshot { environment_id, revision, ..Default::default() }
    }

    #[test]
    fn a_batch_leading_up_to_the_snapshot_is_accepted() {
        assert!(check_batch(&[event(1, 3), event(1, 4), event(1, 6)], &snapshot(1, 6)).is_ok());
        assert!(check_batch(&[], &snapshot(1, 6)).is_ok());
    }

    #[test]
    fn a_batch_with_another_environments_event_is_rejected() {
        let error = check_batch(&[event(1, 3), event(2, 4)], &snapshot(1, 4)).unwrap_err();
        assert!(matches!(error, BusError::InconsistentBatch { environment_id: 1, .. }), "{error}");
    }

    #[test]
    fn a_batch_out_of_order_is_rejected() {
        assert!(check_batch(&[event(1, 4), event(1, 3)], &snapshot(1, 4)).is_err());
        assert!(check_batch(&[event(1, 4), event(1, 4)], &snapshot(1, 4)).is_err());
    }

    #[test]
    fn a_batch_not_ending_at_the_snapshot_revision_is_rejected() {
        assert!(check_batch(&[event(1, 3)], &snapshot(1, 4)).is_err());
    }

    #[tokio::test]
    async fn an_unknown_scheme_is_refused_by_name() {
        let error = Bus::connect("nats://localhost:4222").await.unwrap_err();
        assert!(matches!(&error, BusError::UnsupportedScheme { scheme } if scheme == "nats"), "{error}");
    }
}

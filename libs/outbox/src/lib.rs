//! The change relay: moves unsent change-log rows (the store's transactional outbox) to the bus, in
//! revision order per environment, and marks them sent. One relay is active across control-plane
//! replicas (a PostgreSQL advisory lock); the others wait to take over. It wakes on LISTEN/NOTIFY and
//! polls as a fallback. When the bus is down, rows stay unsent and are retried with backoff: a bus
//! outage delays delivery, never loses it. Delivered rows are deleted after a week (hourly, by the
//! active relay).
//!
//! It runs beside the management API ([`run`], in `vexil control-api` and in standalone mode); tests
//! that want one pass and no timing call [`relay_once`].
#![deny(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vexil_bus::{Bus, BusError};
use vexil_store::{Store, StoreError};
use vexil_telemetry::{Counter, ErrorChain, Gauge, Registry};

/// How often to look for work when no notification arrives.
const POLL: Duration = Duration::from_secs(1);
/// Retry delays after a failure, doubling up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Environments handled per pass.
const BATCH: i64 = 64;
/// Delivered change-log rows are kept this long (for looking into what was sent), then deleted.
const SENT_RETENTION: time::Duration = time::Duration::days(7);
/// How often the active relay prunes delivered rows.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How often the active relay checks that it still holds the lease (a round trip on the lease's
/// connection). Should it have lost it, another replica may relay too until the next check: harmless,
/// as replicas ignore a revision they have already applied.
const LEASE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Why a pass of the relay stopped short. Nothing is lost either way: the rows it did not mark sent are
/// published again by the next pass.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The change log could not be read or marked sent.
    #[error("reading or marking the change log")]
    Store(#[from] StoreError),
    /// The bus refused the change events.
    #[error("publishing change events")]
    Publish(#[from] BusError),
}

/// The relay's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Change events published to the bus.
    pub published: Arc<Counter>,
    /// Failed publish attempts (bus down).
    pub failures: Arc<Counter>,
    /// Change events waiting in the database for the bus (-1 when the count could not be read).
    pub unsent: Arc<Gauge>,
}

impl Metrics {
    /// Registers the relay's metrics in `registry`.
    pub fn register(registry: &Registry) -> Metrics {
        Metrics {
            published: registry
                .counter("vexil_relay_published_events_total", "Change events published to the bus."),
            failures: registry
                .counter("vexil_relay_publish_failures_total", "Failed attempts to publish to the bus."),
            unsent: registry
                .gauge("vexil_relay_unsent_events", "Change events waiting in the database for the bus."),
        }
    }
}

/// Relays until `shutdown` is cancelled.
pub async fn run(store: Store, bus: Bus, metrics: Metrics, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        let lease = match store.try_relay_lease().await {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                // Another replica relays; check again later in case it goes away.
                wait(&shutdown, Duration::from_secs(2)).await;
                continue;
            }
            Err(error) => {
                tracing::warn!(error = %error, "relay cannot reach the database");
                wait(&shutdown, backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        tracing::info!("this replica is the active change relay");
        relay_while_held(&store, &bus, &metrics, lease, &shutdown).await;
    }
}

async fn relay_while_held(
    store: &Store,
    bus: &Bus,
    metrics: &Metrics,
    mut lease: vexil_store::RelayLease,
    shutdown: &CancellationToken,
) {
    let mut waker = store.change_waker().await;
    let mut backoff = Duration::from_millis(100);
    let mut next_prune = tokio::time::Instant::now();
    let mut next_lease_check = tokio::time::Instant::now();
    while !shutdown.is_cancelled() {
        if tokio::time::Instant::now() >= next_lease_check {
            if !lease.is_held().await {
                tracing::warn!("relay lease lost; stepping down");
                return;
            }
            next_lease_check = tokio::time::Instant::now() + LEASE_CHECK_EVERY;
        }
        if tokio::time::Instant::now() >= next_prune {
            next_prune += PRUNE_EVERY;
            match store.prune_sent_changes(time::OffsetDateTime::now_utc() - SENT_RETENTION).await {
                Ok(deleted) => tracing::debug!(deleted, "pruned delivered change-log rows"),
                Err(error) => tracing::warn!(error = %error, "cannot prune delivered change-log rows"),
            }
        }
        match relay_once(store, bus, metrics).await {
            Ok(0) => {
                backoff = Duration::from_millis(100);
                tokio::select! {
                    () = waker.wait(POLL) => {}
                    () = shutdown.cancelled() => {}
                }
            }
            Ok(_) => backoff = Duration::from_millis(100),
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), retry_in_ms = backoff.as_millis() as u64, "relay could not deliver; will retry");
                wait(shutdown, backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One pass: publishes every pending environment's events and marks them sent. Returns how many
/// events were delivered.
pub async fn relay_once(store: &Store, bus: &Bus, metrics: &Metrics) -> Result<usize, OutboxError> {
    let pending = store.pending_changes(BATCH).await?;
    let mut delivered = 0;
    for batch in &pending {
        let Some(last) = batch.events.last() else { continue };
        if let Err(error) = bus.publish(&batch.events, &batch.snapshot).await {
            metrics.failures.inc();
            metrics.unsent.set(store.unsent_count().await.map_or(-1, |n| n as i64));
            return Err(error.into());
        }
        store.mark_sent(batch.environment_id, last.revision).await?;
        delivered += batch.events.len();
        metrics.published.add(batch.events.len() as u64);
    }
    if pending.len() as i64 == BATCH {
        // More environments may be waiting than one pass takes.
        metrics.unsent.set(store.unsent_count().await.map_or(-1, |n| n as i64));
    } else if !pending.is_empty() {
        // Everything that was waiting has been delivered (what committed since is the next pass's).
        metrics.unsent.set(0);
    }
    Ok(delivered)
}

/// Sleeps for `delay`, or less when the relay is told to stop.
async fn wait(shutdown: &CancellationToken, delay: Duration) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = shutdown.cancelled() => {}
    }
}

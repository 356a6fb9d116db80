//! The change relay: moves unsent change-log rows to the bus, in revision order per environment, and
//! marks them sent. One relay is active across control-plane replicas (a PostgreSQL advisory lock);
//! the others wait to take over. It wakes on LISTEN/NOTIFY and polls as a fallback. When the bus is
//! down, rows stay unsent and are retried with backoff: a bus outage delays delivery, never loses it.
//! Delivered rows are deleted after a week (hourly, by the active relay).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use vexil_bus::Bus;
use vexil_store::Store;

use crate::state::Metrics;

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

/// Runs until `shutdown` turns true.
pub async fn run(store: Store, bus: Bus, metrics: Arc<Metrics>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
    while !*shutdown.borrow() {
        let lease = match store.try_relay_lease().await {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                // Another replica relays; check again later in case it goes away.
                wait(&mut shutdown, Duration::from_secs(2)).await;
                continue;
            }
            Err(error) => {
                tracing::warn!(error = %error, "relay cannot reach the database");
                wait(&mut shutdown, backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        tracing::info!("this replica is the active change relay");
        relay_while_held(&store, &bus, &metrics, lease, &mut shutdown).await;
    }
}

async fn relay_while_held(
    store: &Store,
    bus: &Bus,
    metrics: &Metrics,
    mut lease: vexil_store::RelayLease,
    shutdown: &mut watch::Receiver<bool>,
) {
    let mut waker = store.change_waker().await;
    let mut backoff = Duration::from_millis(100);
    let mut next_prune = tokio::time::Instant::now();
    let mut next_lease_check = tokio::time::Instant::now();
    while !*shutdown.borrow() {
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
                    _ = shutdown.changed() => {}
                }
            }
            Ok(_) => backoff = Duration::from_millis(100),
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), retry_in_ms = backoff.as_millis() as u64, "relay could not deliver; will retry");
                wait(shutdown, backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One pass: publishes every pending environment's events and marks them sent. Returns how many
/// events were delivered.
pub async fn relay_once(store: &Store, bus: &Bus, metrics: &Metrics) -> anyhow::Result<usize> {
    let pending = store.pending_changes(BATCH).await?;
    let mut delivered = 0;
    for batch in &pending {
        let Some(last) = batch.events.last() else { continue };
        if let Err(error) = bus.publish(&batch.events, &batch.snapshot).await {
            metrics.relay_failures.inc();
            metrics.relay_unsent.set(store.unsent_count().await.map_or(-1, |n| n as i64));
            return Err(anyhow::Error::from(error).context("publishing change events"));
        }
        store.mark_sent(batch.environment_id, last.revision).await?;
        delivered += batch.events.len();
        metrics.relay_published.add(batch.events.len() as u64);
    }
    if pending.len() as i64 == BATCH {
        // More environments may be waiting than one pass takes.
        metrics.relay_unsent.set(store.unsent_count().await.map_or(-1, |n| n as i64));
    } else if !pending.is_empty() {
        // Everything that was waiting has been delivered (what committed since is the next pass's).
        metrics.relay_unsent.set(0);
    }
    Ok(delivered)
}

async fn wait(shutdown: &mut watch::Receiver<bool>, delay: Duration) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        _ = shutdown.changed() => {}
    }
}

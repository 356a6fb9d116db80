//! Keeps a [`Cache`] current from the change-event bus, with the database as a fallback.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vexil_bus::{Bus, Delivery, Subscription};
use vexil_proto::{ChangeEvent, EnvironmentSnapshot};

use crate::cache::{ApplyOutcome, Cache, LoadOutcome, Position};
use crate::fallback::SnapshotSource;
use vexil_telemetry::ErrorChain;

/// How often [`BusSync`] compares the cache with the bus's environment registry, unless told otherwise.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// First retry delay after something failed (the bus or the database unreachable, a snapshot that
/// would not load); it doubles up to [`MAX_RETRY`], and never exceeds the refresh interval.
const MIN_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// The task that fills a [`Cache`] from the bus and keeps it current (DESIGN.md §1, §4):
///
/// 1. **Warm start.** Subscribes first (so nothing published from then on is missed), then loads every
///    environment in the bus's registry from its cached snapshot — and, with a [database](Self::with_database),
///    every environment in the database too. A snapshot that is missing, older than the registry says
///    or unreadable is loaded from the database instead. The cache is then
///    [marked ready](Cache::mark_ready) (once the environment list could be read from the bus or the
///    database, even if some environments failed to load: those are retried).
/// 2. **Events.** Each event is [applied](Cache::apply). A [gap](ApplyOutcome::Gap) or an event that
///    cannot be applied re-syncs that environment (bus snapshot, then database) and carries on.
/// 3. **Periodic check** ([`refresh_every`](Self::refresh_every), default
///    [`DEFAULT_REFRESH_INTERVAL`]): re-reads the registry, subscribes to environments that appeared,
///    and re-syncs any whose registry revision is ahead of the cache — a silent gap. While the bus is
///    unreachable it lists the database's environments instead, so new ones still appear. Failures are
///    retried sooner, with backoff.
/// 4. **Re-subscription.** When the subscription comes back after a lost connection (Redis restarted),
///    the same check runs at once ([`Delivery::Resubscribed`]): events published while it was down are
///    lost to it, and waiting for the periodic check would leave the replica behind until then.
///
/// It never panics on bad data and never stops before `shutdown`: the cache keeps serving what it has
/// while the bus or the database is down.
pub struct BusSync {
    cache: Cache,
    bus: Bus,
    database: Option<Box<dyn SnapshotSource>>,
    refresh_interval: Duration,
}

impl std::fmt::Debug for BusSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusSync")
            .field("cache", &self.cache)
            .field("bus", &self.bus)
            .field("database", &self.database.is_some())
            .field("refresh_interval", &self.refresh_interval)
            .finish()
    }
}

impl BusSync {
    /// A sync of `cache` from `bus`, without a database fallback.
    pub fn new(cache: Cache, bus: Bus) -> BusSync {
        BusSync { cache, bus, database: None, refresh_interval: DEFAULT_REFRESH_INTERVAL }
    }

    /// Falls back to this database when the bus's snapshot of an environment is missing or stale, and
    /// lists its environments at start-up (and while the bus is down).
    pub fn with_database(mut self, database: impl SnapshotSource) -> BusSync {
        self.database = Some(Box::new(database));
        self
    }

    /// How often to compare the cache with the bus's registry (clamped to at least 10 ms).
    pub fn refresh_every(mut self, interval: Duration) -> BusSync {
        self.refresh_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let refresh_interval = self.refresh_interval;
        let mut runner = Runner {
            cache: self.cache,
            bus: self.bus,
            database: self.database,
            subscription: None,
            subscribed: BTreeSet::new(),
            subscribe_failed: false,
            stale: BTreeMap::new(),
        };
        let mut backoff = MIN_RETRY.min(refresh_interval);
        'running: loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break 'running,
                () = runner.refresh() => {}
            }
            let mut wake_at = Instant::now() + runner.next_delay(refresh_interval, &mut backoff);
            loop {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break 'running,
                    delivery = next_delivery(runner.subscription.as_mut()) => match delivery {
                        Some(Delivery::Change(event)) => runner.handle(event).await,
                        // Whatever was published while the subscription was down is lost to it:
                        // compare with the registry now rather than at the next periodic check.
                        Some(Delivery::Resubscribed) => {
                            tracing::info!("change-event subscription is back; checking for missed changes");
                            runner.refresh().await;
                        }
                        None => {
                            tracing::warn!("the change-event subscription ended; subscribing again");
                            runner.subscription = None;
                        }
                    },
                    () = tokio::time::sleep_until(wake_at) => break,
                }
                if !runner.healthy() {
                    wake_at = wake_at.min(Instant::now() + backoff);
                }
            }
        }
        tracing::info!("bus sync stopped");
    }
}

/// The next delivery, or never when there is no subscription (the periodic refresh makes one).
async fn next_delivery(subscription: Option<&mut Subscription>) -> Option<Delivery> {
    match subscription {
        Some(subscription) => subscription.next_delivery().await,
        None => std::future::pending().await,
    }
}

struct Runner {
    cache: Cache,
    bus: Bus,
    database: Option<Box<dyn SnapshotSource>>,
    subscription: Option<Subscription>,
    /// Environments the subscription has been asked for.
    subscribed: BTreeSet<i64>,
    /// Whether asking the subscription for more environments failed last time.
    subscribe_failed: bool,
    /// Environments that could not be brought up to the wanted revision yet, with that revision.
    stale: BTreeMap<i64, u64>,
}

impl Runner {
    /// Whether nothing is waiting to be retried.
    fn healthy(&self) -> bool {
        self.cache.ready() && self.subscription.is_some() && !self.subscribe_failed && self.stale.is_empty()
    }

    /// The wait until the next refresh: the interval when all is well, else the backoff, which doubles.
    fn next_delay(&self, refresh_interval: Duration, backoff: &mut Duration) -> Duration {
        if self.healthy() {
            *backoff = MIN_RETRY.min(refresh_interval);
            refresh_interval
        } else {
            let delay = *backoff;
            *backoff = (*backoff * 2).min(MAX_RETRY).min(refresh_interval);
            delay
        }
    }

    /// Warm start and periodic check: (re)subscribes, lists the environments, subscribes to new ones and
    /// re-syncs every environment behind its listed revision, and every stale one.
    async fn refresh(&mut self) {
        let initial = !self.cache.ready();
        if self.subscription.is_none() {
            let mut ids = self.subscribed.clone();
            ids.extend(self.cache.environments().iter().map(|state| state.id()));
            let ids: Vec<i64> = ids.into_iter().collect();
            match self.bus.subscribe(&ids).await {
                Ok(subscription) => {
                    // Events published while there was no subscription are lost to it; the registry
                    // check below finds the environments they moved on.
                    self.subscription = Some(subscription);
                    self.subscribed = ids.into_iter().collect();
                    self.subscribe_failed = false;
                }
                Err(error) => {
                    tracing::warn!(error = %ErrorChain(&error), "cannot subscribe to change events")
                }
            }
        }

        let mut wanted: BTreeMap<i64, u64> = BTreeMap::new();
        let listed_by_bus = match self.bus.environments().await {
            Ok(environments) => {
                wanted.extend(environments);
                true
            }
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "cannot read the environment registry from the bus");
                false
            }
        };
        let mut listed_by_store = false;
        if let Some(database) = &self.database
            && (initial || !listed_by_bus)
        {
            match database.environment_ids().await {
                Ok(ids) => {
                    for id in ids {
                        wanted.entry(id).or_insert(0);
                    }
                    listed_by_store = true;
                }
                Err(error) => {
                    tracing::warn!(error = %ErrorChain(&*error), "cannot list environments in the database")
                }
            }
        }
        for (&id, &revision) in &self.stale {
            let want = wanted.entry(id).or_insert(revision);
            *want = (*want).max(revision);
        }

        // Subscribe before reading snapshots, so that no event after a snapshot can be missed.
        let mut ids: Vec<i64> = wanted.keys().copied().collect();
        ids.extend(self.cache.environments().iter().map(|state| state.id()));
        self.subscribe_to(ids).await;

        for (id, want) in wanted {
            if self.behind(id, want) {
                self.resync(id, want).await;
            }
        }

        if initial && (listed_by_bus || listed_by_store) {
            self.cache.mark_ready();
            tracing::info!(
                environments = self.cache.environments().len(),
                stale = self.stale.len(),
                "initial sync complete; the cache is ready"
            );
        }
    }

    /// Asks the subscription for the environments it does not have yet.
    async fn subscribe_to(&mut self, ids: Vec<i64>) {
        let Some(subscription) = self.subscription.as_mut() else { return };
        let new: Vec<i64> =
            ids.into_iter().collect::<BTreeSet<_>>().difference(&self.subscribed).copied().collect();
        if new.is_empty() {
            self.subscribe_failed = false;
            return;
        }
        match subscription.add(&new).await {
            Ok(()) => {
                tracing::debug!(environments = ?new, "subscribed to more environments");
                self.subscribed.extend(new);
                self.subscribe_failed = false;
            }
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "cannot subscribe to new environments' change events");
                self.subscribe_failed = true;
            }
        }
    }

    /// Whether the cache is behind `want` for this environment (deleted ones never are).
    fn behind(&self, id: i64, want: u64) -> bool {
        match self.cache.position(id) {
            Position::Live(have) => have < want,
            Position::Deleted(_) => false,
            Position::Unknown => true,
        }
    }

    async fn handle(&mut self, event: ChangeEvent) {
        let id = event.environment_id;
        match self.cache.apply(&event) {
            Ok(ApplyOutcome::Applied { revision }) => {
                tracing::trace!(environment_id = id, revision, "applied a change event");
            }
            Ok(ApplyOutcome::Removed { .. }) => {
                self.stale.remove(&id);
            }
            Ok(ApplyOutcome::Ignored { have, got }) => {
                tracing::debug!(
                    environment_id = id,
                    have,
                    got,
                    "ignored a change event the cache already has"
                );
            }
            Ok(ApplyOutcome::Gap { have, got }) => {
                tracing::info!(
                    environment_id = id,
                    have,
                    got,
                    "missed change events; re-syncing the environment"
                );
                self.resync(id, got).await;
                // The relay caches the snapshot after publishing, so the one just loaded may stop just
                // short of this event.
                if got
                    .checked_sub(1)
                    .is_some_and(|previous| self.cache.position(id) == Position::Live(previous))
                {
                    if let Err(error) = self.cache.apply(&event) {
                        tracing::warn!(environment_id = id, revision = got, error = %ErrorChain(&error), "cannot apply a change event; will re-sync");
                    }
                    if !self.behind(id, got) {
                        self.stale.remove(&id);
                    }
                }
            }
            Err(error) => {
                tracing::warn!(environment_id = id, revision = event.revision, error = %ErrorChain(&error), "cannot apply a change event; re-syncing the environment");
                self.resync(id, event.revision).await;
            }
        }
    }

    /// Brings one environment to at least `want`: the bus's snapshot if it is that new, else the
    /// database's, else whatever newer the bus has. What falls short is retried later.
    async fn resync(&mut self, id: i64, want: u64) {
        let from_bus = match self.bus.snapshot(id).await {
            Ok(snapshot) => snapshot,
            Err(error) => {
                tracing::warn!(environment_id = id, error = %ErrorChain(&error), "cannot read the environment's snapshot from the bus");
                None
            }
        };
        let mut done = from_bus
            .as_ref()
            .is_some_and(|snapshot| snapshot.revision >= want && self.install(snapshot, "bus"));
        if !done && let Some(database) = &self.database {
            match database.environment_snapshot(id).await {
                Ok(Some(snapshot)) => done = self.install(&snapshot, "database"),
                Ok(None) => {
                    let have = match self.cache.position(id) {
                        Position::Live(revision) | Position::Deleted(revision) => revision,
                        Position::Unknown => 0,
                    };
                    let revision =
                        want.max(have).max(from_bus.as_ref().map_or(0, |snapshot| snapshot.revision));
                    tracing::info!(
                        environment_id = id,
                        revision,
                        "the environment no longer exists in the database"
                    );
                    self.cache.remove(id, revision);
                    done = true;
                }
                Err(error) => {
                    tracing::warn!(environment_id = id, error = %ErrorChain(&*error), "cannot read the environment's snapshot from the database");
                }
            }
        }
        if !done && let Some(snapshot) = &from_bus {
            // Older than wanted, but perhaps newer than what the cache has: better than nothing.
            self.install(snapshot, "bus");
        }
        if self.behind(id, want) {
            let stale = self.stale.entry(id).or_insert(want);
            *stale = (*stale).max(want);
        } else {
            self.stale.remove(&id);
        }
    }

    /// Loads a snapshot into the cache; whether the cache is now at least as new as it.
    fn install(&self, snapshot: &EnvironmentSnapshot, source: &'static str) -> bool {
        let id = snapshot.environment_id;
        match self.cache.load(snapshot) {
            Ok(LoadOutcome::Installed { previous, revision }) => {
                tracing::info!(
                    environment_id = id,
                    ?previous,
                    revision,
                    source,
                    "loaded the environment's snapshot"
                );
                true
            }
            Ok(LoadOutcome::Ignored { .. }) => true,
            Err(error) => {
                tracing::warn!(environment_id = id, revision = snapshot.revision, source, error = %ErrorChain(&error), "cannot load the environment's snapshot");
                false
            }
        }
    }
}

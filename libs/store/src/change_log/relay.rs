//! The change log as the relay sees it: pending events with the snapshot to cache, marking them sent,
//! pruning delivered rows, wake-ups, and the lease that keeps one relay active across control-plane
//! replicas.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnection, PgListener};
use sqlx::{Connection, FromRow};
use time::OffsetDateTime;
use vexil_proto::{ChangeEvent, EnvironmentSnapshot};

use crate::Store;
use crate::db::{Pool, now, on, to_u64};
use crate::error::{Result, StoreError};
use crate::snapshot::{environment_snapshot_json, unix_millis};

/// An arbitrary constant naming the relay's advisory lock (`pg_try_advisory_lock` takes a bigint).
const RELAY_LOCK: i64 = 0x5645_5849_4c52_4c59; // "VEXILRLY"
const CHANNEL: &str = "vexil_change_log";

/// The unsent events of one environment, in revision order, and the snapshot to cache with them.
#[derive(Debug, Clone)]
pub struct PendingChanges {
    /// The environment.
    pub environment_id: i64,
    /// Its unsent events, ascending revision.
    pub events: Vec<ChangeEvent>,
    /// The environment now (revision ≥ the last event's). For a deleted environment: empty, at the
    /// revision of its final event.
    pub snapshot: EnvironmentSnapshot,
}

#[derive(FromRow)]
struct ChangeRow {
    environment_id: i64,
    project: String,
    environment: String,
    revision: i64,
    kind: i32,
    item: i32,
    key: String,
    payload: Vec<u8>,
    committed_at: OffsetDateTime,
}

impl ChangeRow {
    fn event(self) -> ChangeEvent {
        ChangeEvent {
            environment_id: self.environment_id,
            project: self.project,
            environment: self.environment,
            revision: to_u64(self.revision),
            kind: self.kind,
            item: self.item,
            key: self.key,
            payload: self.payload,
            committed_at_ms: unix_millis(self.committed_at),
        }
    }
}

impl Store {
    /// Unsent change-log rows of up to `max_environments` environments, read in one consistent view
    /// together with each environment's current snapshot.
    pub async fn pending_changes(&self, max_environments: i64) -> Result<Vec<PendingChanges>> {
        const ENVIRONMENTS: &str = "select distinct environment_id from change_log where sent_at is null \
                                    order by environment_id limit $1";
        const EVENTS: &str = "select environment_id, project, environment, revision, kind, item, key, payload, committed_at \
                              from change_log where environment_id = $1 and sent_at is null order by revision";
        let mut tx = self.begin().await?;
        on!(&mut tx, |c, d| if d == crate::db::Dialect::Postgres {
            // The events and the snapshot must describe the same moment.
            sqlx::query("set transaction isolation level repeatable read").execute(c).await?;
        });
        let environment_ids: Vec<i64> =
            on!(&mut tx, |c, d| sqlx::query_scalar(ENVIRONMENTS).bind(max_environments).fetch_all(c).await?);
        let mut pending = Vec::with_capacity(environment_ids.len());
        for environment_id in environment_ids {
            let rows: Vec<ChangeRow> =
                on!(&mut tx, |c, d| sqlx::query_as(EVENTS).bind(environment_id).fetch_all(c).await?);
            let events: Vec<ChangeEvent> = rows.into_iter().map(ChangeRow::event).collect();
            let Some(last) = events.last() else { continue };
            let mut snapshot = EnvironmentSnapshot {
                environment_id,
                project: last.project.clone(),
                environment: last.environment.clone(),
                revision: last.revision,
                committed_at_ms: last.committed_at_ms,
                ..EnvironmentSnapshot::default()
            };
            match environment_snapshot_json(&mut tx, environment_id).await {
                Ok((revision, json, keys)) => {
                    snapshot.revision = revision;
                    snapshot.snapshot_json = json;
                    snapshot.keys = keys;
                }
                Err(StoreError::NotFound { .. }) => {
                    // Deleted: an empty environment at its final revision.
                    let empty = vexil_model::Snapshot { revision: last.revision, ..Default::default() };
                    snapshot.snapshot_json = serde_json::to_vec(&empty).unwrap_or_default();
                }
                Err(error) => return Err(error),
            }
            pending.push(PendingChanges { environment_id, events, snapshot });
        }
        Ok(pending)
    }

    /// Marks an environment's events up to `revision` as delivered.
    pub async fn mark_sent(&self, environment_id: i64, revision: u64) -> Result<()> {
        const SQL: &str = "update change_log set sent_at = $3 where environment_id = $1 and revision <= $2 and sent_at is null";
        let mut tx = self.begin().await?;
        on!(&mut tx, |c, d| sqlx::query(SQL)
            .bind(environment_id)
            .bind(revision as i64)
            .bind(now())
            .execute(c)
            .await
            .map(drop)?);
        tx.commit().await?;
        Ok(())
    }

    /// Deletes delivered change-log rows sent before `before`; returns how many. Nothing reads a
    /// delivered row again (replicas re-sync from snapshots, never from the log), so without pruning the
    /// table would only grow. Unsent rows are never deleted, however old.
    pub async fn prune_sent_changes(&self, before: OffsetDateTime) -> Result<u64> {
        const SQL: &str = "delete from change_log where sent_at is not null and sent_at < $1";
        let mut tx = self.begin().await?;
        let deleted = on!(&mut tx, |c, d| sqlx::query(SQL).bind(before).execute(c).await?.rows_affected());
        tx.commit().await?;
        Ok(deleted)
    }

    /// Unsent events, in total (for metrics and tests).
    pub async fn unsent_count(&self) -> Result<u64> {
        const SQL: &str = "select count(*) from change_log where sent_at is null";
        let mut tx = self.begin().await?;
        let count: i64 = on!(&mut tx, |c, d| sqlx::query_scalar(SQL).fetch_one(c).await?);
        Ok(to_u64(count))
    }

    /// Tries to become the active relay. PostgreSQL: a session advisory lock on a dedicated connection,
    /// held as long as the lease lives (and released by the server if the process dies). SQLite: always
    /// granted (one process).
    pub async fn try_relay_lease(&self) -> Result<Option<RelayLease>> {
        match &self.pool {
            Pool::Sqlite(_) => Ok(Some(RelayLease { connection: None })),
            Pool::Postgres(pool) => {
                let mut connection = PgConnection::connect_with(&pool.connect_options()).await?;
                let granted: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
                    .bind(RELAY_LOCK)
                    .fetch_one(&mut connection)
                    .await?;
                if granted {
                    Ok(Some(RelayLease { connection: Some(connection) }))
                } else {
                    let _ = connection.close().await;
                    Ok(None)
                }
            }
        }
    }

    /// A waker for the relay: wakes when changes commit (PostgreSQL NOTIFY, or in-process for SQLite).
    pub async fn change_waker(&self) -> ChangeWaker {
        match &self.pool {
            Pool::Sqlite(_) => ChangeWaker::Local(self.local_wake.clone()),
            Pool::Postgres(pool) => {
                let listener = match PgListener::connect_with(pool).await {
                    Ok(mut listener) => match listener.listen(CHANNEL).await {
                        Ok(()) => Some(listener),
                        Err(error) => {
                            tracing::warn!(%error, "cannot LISTEN for changes; polling only");
                            None
                        }
                    },
                    Err(error) => {
                        tracing::warn!(%error, "cannot LISTEN for changes; polling only");
                        None
                    }
                };
                ChangeWaker::Postgres(listener)
            }
        }
    }
}

/// Proof of being the one active relay; dropping it gives the role up.
pub struct RelayLease {
    connection: Option<PgConnection>,
}

impl RelayLease {
    /// Whether the lease still holds (its connection is alive).
    pub async fn is_held(&mut self) -> bool {
        match &mut self.connection {
            None => true,
            Some(connection) => connection.ping().await.is_ok(),
        }
    }
}

/// Waits for committed changes, with a timeout as the polling fallback.
pub enum ChangeWaker {
    /// PostgreSQL LISTEN (none if listening failed: polling only).
    Postgres(Option<PgListener>),
    /// In-process notification.
    Local(Arc<tokio::sync::Notify>),
}

impl ChangeWaker {
    /// Returns when a change may have committed, or after `timeout`.
    pub async fn wait(&mut self, timeout: Duration) {
        match self {
            ChangeWaker::Local(notify) => {
                let _ = tokio::time::timeout(timeout, notify.notified()).await;
            }
            ChangeWaker::Postgres(Some(listener)) => {
                match tokio::time::timeout(timeout, listener.recv()).await {
                    Ok(Ok(_)) => {
                        // Every commit notifies; one pass picks up all of them, so the ones already
                        // received must not wake the relay for empty passes.
                        while listener.next_buffered().is_some() {}
                    }
                    Err(_) => {}
                    // The listener reconnects on the next recv; meanwhile, poll.
                    Ok(Err(_)) => tokio::time::sleep(timeout.min(Duration::from_millis(500))).await,
                }
            }
            ChangeWaker::Postgres(None) => tokio::time::sleep(timeout).await,
        }
    }
}

//! Vexil's control-plane storage: PostgreSQL (production) and SQLite (standalone) behind one
//! [`Store`].
//!
//! Every write is one transaction that changes the item, bumps each affected environment's revision
//! with a change-log row (the event the data plane will receive), appends a hash-chained audit record,
//! and checks that the environment still compiles. If any part fails, nothing is written.
//! Configuration changes that arrive together share a transaction (group commit), each still decided
//! and answered on its own.
//!
//! The change log is an outbox: [`Store::pending_changes`] hands unsent rows to the relay, which
//! publishes them and calls [`Store::mark_sent`]. A bus outage only delays delivery.
//!
//! # Layout
//!
//! One module per item holds the public operations on it: `projects`, `environments` (with their SDK
//! keys), `flags`, `flag_configs` (configuration changes, decided one by one and written in batches),
//! `segments`, `tokens` and `sessions` (the dashboard's, each acting as a token); `records` holds the types they return. Every write is assembled from the
//! same pieces, one module per idea:
//!
//! | module | holds |
//! | --- | --- |
//! | `parents` | the project and environment rows an item hangs from, found by key |
//! | `change_log` | the outbox: `append` (the revision bump and the rows), `relay` (draining them) |
//! | `audit` | the hash chain: `append` inside a write, `read` to list and verify, `hash` shared by both |
//! | `checks` | compiling what a write leaves, before it commits |
//! | `snapshot` | the environment as the data plane receives it, put together by the database |
//! | `group_commit` | the queue and committer thread that commit configuration changes in groups |
//! | `db` | the two backends, the `on!` macro, and how values cross into both |
//! | `error` | [`StoreError`] |
//!
//! Imports go one way: item modules use the pieces; no piece uses an item module.
#![deny(missing_docs)]

mod audit;
mod change_log;
mod checks;
mod db;
mod environments;
mod error;
mod flag_configs;
mod flags;
mod group_commit;
mod parents;
mod projects;
mod records;
mod segments;
mod sessions;
mod snapshot;
mod tokens;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

pub use change_log::{ChangeWaker, PendingChanges, RelayLease};
pub use error::{Result, StoreError};
pub use flags::FlagFilter;
pub use records::{
    Actor, AuditQuery, AuditRecord, AuditVerification, EnvironmentRecord, FlagConfigRecord, FlagRecord,
    NewSdkKeys, ProjectRecord, Role, SdkKeyRecord, SegmentRecord, TokenRecord,
};
pub use sessions::{NewSession, SessionRecord};
pub use tokens::{NewToken, VERIFIED_TOKEN_TTL};

use crate::db::Pool;
use crate::flag_configs::ConfigWrite;
use crate::group_commit::GroupCommit;

/// The environments every new project gets.
pub const DEFAULT_ENVIRONMENTS: [&str; 2] = ["development", "production"];

/// The control plane's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    /// Wakes the relay after a commit when the database cannot (SQLite has no LISTEN/NOTIFY).
    local_wake: Arc<tokio::sync::Notify>,
    /// Configuration changes waiting to be committed together.
    config_writes: Arc<GroupCommit<ConfigWrite>>,
    /// Management tokens verified recently.
    verified_tokens: Arc<tokens::VerifiedTokens>,
}

impl Store {
    /// Connects to `postgres://...` or `sqlite://path` (the file is created if missing).
    pub async fn connect(url: &str) -> Result<Store> {
        Self::connect_with(url, 16).await
    }

    /// Connects with at most `max_connections` PostgreSQL connections.
    pub async fn connect_with(url: &str, max_connections: u32) -> Result<Store> {
        let pool = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            // One connection: SQLite allows one writer, and a deferred transaction that must upgrade
            // to a write lock fails instead of waiting. Standalone mode serves reads from memory.
            Pool::Sqlite(SqlitePoolOptions::new().max_connections(1).connect_with(options).await?)
        } else {
            Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(max_connections)
                    // No ping before every use (sqlx's default): it doubles the round trips of a
                    // one-statement read. A connection that died is found by the statement itself,
                    // which fails as `Unavailable` (nothing written), and is then replaced.
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect(url)
                    .await?,
            )
        };
        Ok(Store {
            pool,
            local_wake: Arc::new(tokio::sync::Notify::new()),
            config_writes: Arc::default(),
            verified_tokens: Arc::default(),
        })
    }

    /// Applies the migrations for this backend (`migrations/postgres` or `migrations/sqlite`).
    pub async fn migrate(&self) -> Result<()> {
        match &self.pool {
            Pool::Postgres(pool) => sqlx::migrate!("../../migrations/postgres").run(pool).await?,
            Pool::Sqlite(pool) => sqlx::migrate!("../../migrations/sqlite").run(pool).await?,
        }
        self.ensure_audit_partitions().await
    }

    /// Creates the audit log's monthly partitions for the next three months (PostgreSQL; a no-op on
    /// SQLite). Run at start-up and daily.
    pub async fn ensure_audit_partitions(&self) -> Result<()> {
        if let Pool::Postgres(pool) = &self.pool {
            sqlx::query("select audit.create_partitions(3)").execute(pool).await?;
        }
        Ok(())
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        db::on_pool!(&self.pool, |pool, d| sqlx::query("select 1").execute(pool).await.map(drop)?);
        Ok(())
    }

    /// Whether this store is PostgreSQL (as opposed to SQLite).
    pub fn is_postgres(&self) -> bool {
        matches!(self.pool, Pool::Postgres(_))
    }

    /// Another handle on the same database and relay wake-up, with its own (idle) commit queue and
    /// token cache: the one a committer thread holds, since a clone would keep the queue it serves open.
    pub(crate) fn detached(&self) -> Store {
        Store {
            pool: self.pool.clone(),
            local_wake: self.local_wake.clone(),
            config_writes: Arc::default(),
            verified_tokens: Arc::default(),
        }
    }

    pub(crate) async fn begin(&self) -> Result<db::Tx> {
        Ok(self.pool.begin().await?)
    }

    /// Commits and, for SQLite, wakes the local relay (PostgreSQL notifies through LISTEN).
    pub(crate) async fn commit(&self, tx: db::Tx) -> Result<()> {
        tx.commit().await?;
        self.local_wake.notify_one();
        Ok(())
    }
}

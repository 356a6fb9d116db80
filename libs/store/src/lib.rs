//! Vexil's control-plane storage: PostgreSQL (production) and SQLite (standalone) behind one
//! [`Store`].
//!
//! Every write is one transaction that changes the item, bumps each affected environment's revision
//! with a change-log row (the event the data plane will receive), appends a hash-chained audit record,
//! and checks that the environment still compiles. If any part fails, nothing is written.
//! Configuration changes that arrive together share a transaction (group commit, see
//! `flag_configs.rs`), each still decided and answered on its own.
//!
//! The change log is an outbox: [`Store::pending_changes`] hands unsent rows to the relay, which
//! publishes them and calls [`Store::mark_sent`]. A bus outage only delays delivery.
#![deny(missing_docs)]

mod audit;
mod changes;
mod db;
mod environments;
mod error;
mod flag_configs;
mod flags;
mod projects;
mod records;
mod segments;
mod tokens;
mod write;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

pub use changes::{ChangeWaker, PendingChanges, RelayLease};
pub use error::{Result, StoreError};
pub use flags::FlagFilter;
pub use records::{
    Actor, AuditQuery, AuditRecord, AuditVerification, EnvironmentRecord, FlagConfigRecord, FlagRecord,
    NewSdkKeys, ProjectRecord, Role, SdkKeyRecord, SegmentRecord, TokenRecord,
};
pub use tokens::{NewToken, VERIFIED_TOKEN_TTL};

use crate::db::Pool;

/// The environments every new project gets.
pub const DEFAULT_ENVIRONMENTS: [&str; 2] = ["development", "production"];

/// The control plane's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    /// Wakes the relay after a commit when the database cannot (SQLite has no LISTEN/NOTIFY).
    local_wake: Arc<tokio::sync::Notify>,
    /// Configuration changes waiting to be committed together.
    config_writes: Arc<flag_configs::GroupCommit>,
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

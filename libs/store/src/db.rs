//! The two backends, the one way to run a statement on either, and how values cross into both.
//!
//! Statements are written once, in the SQL both PostgreSQL and SQLite understand (`$1` placeholders,
//! `RETURNING`, `ON CONFLICT`); where the dialects differ, [`Dialect`] picks the text. The `on!` macro
//! expands one body for each backend, so each statement is type-checked against both drivers.
//!
//! Set-based statements take their rows as one JSON array (`jsonb_to_recordset` in PostgreSQL,
//! `json_each` in SQLite). JSON has no bytes, so the rows' byte strings travel beside the array in one
//! [`Blob`] parameter instead of being spelled out in hex for the database to decode again.

use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};
use time::OffsetDateTime;

/// Which SQL dialect a statement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// Picks the statement text for this dialect.
    pub(crate) fn pick(self, postgres: &'static str, sqlite: &'static str) -> &'static str {
        match self {
            Dialect::Postgres => postgres,
            Dialect::Sqlite => sqlite,
        }
    }
}

/// A connection pool on either backend.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// An open transaction on either backend.
pub(crate) enum Tx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl Pool {
    pub(crate) async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Pool::Postgres(pool) => Tx::Postgres(pool.begin().await?),
            Pool::Sqlite(pool) => Tx::Sqlite(pool.begin().await?),
        })
    }
}

impl Tx {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(tx) => tx.commit().await,
            Tx::Sqlite(tx) => tx.commit().await,
        }
    }
}

/// Runs `$body` with `$conn` bound to the transaction's connection and `$dialect` to its dialect, once
/// per backend.
macro_rules! on {
    ($tx:expr, |$conn:ident, $dialect:ident| $body:expr) => {
        match $tx {
            $crate::db::Tx::Postgres(tx) => {
                let $conn = &mut **tx;
                #[allow(unused_variables)]
                let $dialect = $crate::db::Dialect::Postgres;
                $body
            }
            $crate::db::Tx::Sqlite(tx) => {
                let $conn = &mut **tx;
                #[allow(unused_variables)]
                let $dialect = $crate::db::Dialect::Sqlite;
                $body
            }
        }
    };
}
pub(crate) use on;

/// Like [`on!`] for a pool (a single statement outside a transaction).
macro_rules! on_pool {
    ($pool:expr, |$conn:ident, $dialect:ident| $body:expr) => {
        match $pool {
            $crate::db::Pool::Postgres(pool) => {
                let $conn = pool;
                #[allow(unused_variables)]
                let $dialect = $crate::db::Dialect::Postgres;
                $body
            }
            $crate::db::Pool::Sqlite(pool) => {
                let $conn = pool;
                #[allow(unused_variables)]
                let $dialect = $crate::db::Dialect::Sqlite;
                $body
            }
        }
    };
}
pub(crate) use on_pool;

/// Now, truncated to microseconds: what PostgreSQL keeps, so a timestamp reads back exactly as it was
/// hashed into the audit chain.
pub(crate) fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000).unwrap_or(now)
}

/// A revision, version or sequence number as Rust counts it, from the signed `bigint` (`integer`) it
/// is stored as; none is ever negative.
pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// The byte strings of a set of rows, concatenated into one `bytea` (`blob`) parameter. Each row
/// carries the [`Slice`] where its bytes lie, and the statement takes them out with
/// `substr($n, at, len)`, which both dialects read the same way on bytes.
#[derive(Debug, Default)]
pub(crate) struct Blob {
    bytes: Vec<u8>,
}

/// Where one byte string lies in a [`Blob`]: `at` counts from 1, as `substr` does.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slice {
    pub(crate) at: usize,
    pub(crate) len: usize,
}

impl Blob {
    /// Appends `bytes`; returns where they lie.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Slice {
        let slice = Slice { at: self.bytes.len() + 1, len: bytes.len() };
        self.bytes.extend_from_slice(bytes);
        slice
    }

    /// The parameter to bind.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

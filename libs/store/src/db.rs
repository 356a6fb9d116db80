//! The two backends, the one way to run a statement on either, and how values cross into both.
//!
//! Statements are written once, in the SQL both PostgreSQL and SQLite understand (`$1` placeholders,
//! `RETURNING`, `ON CONFLICT`); where the dialects differ, [`Dialect`] picks the text. The `on!` macro
//! expands one body for each backend, so each statement is type-checked against both drivers.
//!
//! Set-based statements take their rows as one JSON array (`jsonb_to_recordset` in PostgreSQL,
//! `json_each` in SQLite). JSON has no bytes, so the rows' byte strings are spelled out in [`hex`].

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

/// Lower-case hexadecimal, as `decode(.., 'hex')` (PostgreSQL) and `unhex` (SQLite) read it.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    text
}

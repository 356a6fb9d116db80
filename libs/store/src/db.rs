//! The two backends and the one way to run a statement on either.
//!
//! Statements are written once, in the SQL both PostgreSQL and SQLite understand (`$1` placeholders,
//! `RETURNING`, `ON CONFLICT`); where the dialects differ, [`Dialect`] picks the text. The `on!` macro
//! expands one body for each backend, so each statement is type-checked against both drivers.

use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

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

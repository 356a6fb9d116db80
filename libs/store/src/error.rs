//! The store's errors.

use vexil_model::ValidationErrors;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The addressed item does not exist.
    #[error("{resource} {key:?} does not exist")]
    NotFound {
        /// What kind of item (`project`, `flag`, ...).
        resource: &'static str,
        /// Its key or id.
        key: String,
    },
    /// An item with that key exists already.
    #[error("{resource} {key:?} already exists")]
    AlreadyExists {
        /// What kind of item.
        resource: &'static str,
        /// Its key.
        key: String,
    },
    /// An optimistic-concurrency precondition failed: the caller's version is not the current one.
    #[error("version {expected} is not current; the current version is {current}")]
    VersionMismatch {
        /// The version the caller based the change on.
        expected: u64,
        /// The version in the database.
        current: u64,
    },
    /// The change is invalid; every problem is named by field.
    #[error("invalid: {0}")]
    Invalid(#[from] ValidationErrors),
    /// The change conflicts with other items (e.g. deleting a flag other flags depend on).
    #[error("{0}")]
    Conflict(String),
    /// The database cannot be reached; nothing was written.
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Any other database failure; nothing was written.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// Data in the database that cannot be read as what it should be.
    #[error("stored {what} cannot be read")]
    Corrupt {
        /// What could not be read.
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The write was taken by a batch that ended without answering for it (a bug: a panic); whether
    /// it committed is unknown.
    #[error("the write was abandoned before it was answered")]
    Abandoned,
    /// Applying the migrations failed.
    #[error("migrating the database failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether the database refused or failed the statement, as opposed to the store deciding the
    /// change is wrong; after such an error PostgreSQL ends the transaction.
    pub(crate) fn is_database(&self) -> bool {
        matches!(self, StoreError::Database(_) | StoreError::Unavailable(_))
    }
}

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> StoreError {
        match &error {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error),
            sqlx::Error::Database(db) if is_unavailable_code(db.code().as_deref()) => {
                StoreError::Unavailable(error)
            }
            _ => StoreError::Database(error),
        }
    }
}

/// PostgreSQL classes 08 (connection exception) and 57P (operator intervention: shutting down).
fn is_unavailable_code(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.starts_with("08") || c.starts_with("57P"))
}

/// Stored data that cannot be read as what it should be.
pub(crate) fn corrupt(
    what: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    StoreError::Corrupt { what: what.into(), source: Box::new(source) }
}

/// Whether the error is a unique-constraint violation (PostgreSQL 23505, SQLite 2067/1555).
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db.is_unique_violation(),
        _ => false,
    }
}

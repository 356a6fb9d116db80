/// Everything that can go wrong on the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The URL's scheme names no bus this crate knows.
    #[error("unsupported bus URL scheme {scheme:?}: expected redis://, redis-cluster:// or memory://")]
    UnsupportedScheme {
        /// The scheme as given (the URL itself is not kept: it may hold a password).
        scheme: String,
    },
    /// fred could not parse a `redis://` or `redis-cluster://` URL.
    #[error("invalid Redis URL")]
    InvalidUrl(#[source] fred::error::Error),
    /// A Redis command failed: Redis is unreachable, timed out or answered with an error.
    #[error("Redis command failed: {operation}")]
    Redis {
        /// What the bus was doing, e.g. `"publish change events"`.
        operation: &'static str,
        /// fred's error.
        #[source]
        source: fred::error::Error,
    },
    /// Bytes read from the bus are not the protobuf message they should be.
    #[error("could not decode {what} read from the bus")]
    Decode {
        /// The message or key that was being decoded.
        what: &'static str,
        /// prost's error.
        #[source]
        source: prost::DecodeError,
    },
    /// A field of the environment registry is not `environment id → revision`.
    #[error("malformed environment registry entry {field:?} = {value:?}")]
    MalformedRegistry {
        /// The hash field (environment id).
        field: String,
        /// The hash value (revision).
        value: String,
        /// Why it did not parse.
        #[source]
        source: std::num::ParseIntError,
    },
    /// `publish` was called with events that do not lead up to the snapshot (another environment, out
    /// of order, or not ending at the snapshot's revision). Nothing was published.
    #[error("inconsistent publish batch for environment {environment_id}: {problem}")]
    InconsistentBatch {
        /// The snapshot's environment.
        environment_id: i64,
        /// What is wrong with the batch.
        problem: String,
    },
}

/// `Result` with [`BusError`] as the default error.
pub type Result<T, E = BusError> = std::result::Result<T, E>;

impl BusError {
    pub(crate) fn redis(operation: &'static str) -> impl FnOnce(fred::error::Error) -> BusError {
        move |source| BusError::Redis { operation, source }
    }
}

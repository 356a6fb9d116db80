//! Why a snapshot or a change event could not be installed.

use vexil_proto::{ChangeKind, ItemKind};

/// Why [`Cache::load`](crate::Cache::load) or [`Cache::apply`](crate::Cache::apply) refused its input.
/// The cache is unchanged after any of these; the caller re-syncs the environment from another source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An [`EnvironmentSnapshot`](vexil_proto::EnvironmentSnapshot)'s `snapshot_json` is not a model
    /// snapshot.
    #[error("environment {environment_id}: the snapshot at revision {revision} cannot be read")]
    MalformedSnapshot {
        /// The environment.
        environment_id: i64,
        /// The revision the envelope claims.
        revision: u64,
        /// Why it cannot be read.
        #[source]
        source: serde_json::Error,
    },
    /// A snapshot's envelope and content disagree about its revision.
    #[error(
        "environment {environment_id}: the snapshot envelope says revision {envelope}, its content {content}"
    )]
    RevisionMismatch {
        /// The environment.
        environment_id: i64,
        /// `EnvironmentSnapshot::revision`.
        envelope: u64,
        /// The revision inside `snapshot_json`.
        content: u64,
    },
    /// The environment would not compile (a prerequisite cycle, a missing segment, ...).
    #[error("environment {environment_id}: revision {revision} does not compile")]
    Compile {
        /// The environment.
        environment_id: i64,
        /// The revision that does not compile.
        revision: u64,
        /// What the compiler found.
        #[source]
        source: vexil_eval::CompileError,
    },
    /// A change event's payload cannot be read as its item.
    #[error("environment {environment_id}: the {item} payload of revision {revision} cannot be read")]
    MalformedPayload {
        /// The environment.
        environment_id: i64,
        /// The event's revision.
        revision: u64,
        /// What the payload should be (`flag`, `segment`, `sdk key`).
        item: &'static str,
        /// Why it cannot be read.
        #[source]
        source: PayloadError,
    },
    /// A change event's payload is about another item than the event's `key` names.
    #[error(
        "environment {environment_id}: revision {revision} names {item} {event_key:?} but carries {payload_key:?}"
    )]
    KeyMismatch {
        /// The environment.
        environment_id: i64,
        /// The event's revision.
        revision: u64,
        /// What kind of item.
        item: &'static str,
        /// `ChangeEvent::key`.
        event_key: String,
        /// The key inside the payload.
        payload_key: String,
    },
    /// A change this version does not know how to apply (an unspecified kind or item, an environment
    /// upsert).
    #[error(
        "environment {environment_id}: revision {revision} is an unsupported change ({kind:?} of {item:?})"
    )]
    UnsupportedChange {
        /// The environment.
        environment_id: i64,
        /// The event's revision.
        revision: u64,
        /// What the change did.
        kind: ChangeKind,
        /// To what.
        item: ItemKind,
    },
}

/// Why a change event's payload cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// A JSON payload (flags, segments).
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A protobuf payload (SDK keys).
    #[error(transparent)]
    Protobuf(#[from] prost::DecodeError),
}

/// The data plane's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

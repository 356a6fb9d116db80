//! What the sync delivers to.

use std::future::Future;

use vexil_protocol::server::{ReceivedChange, ReceivedSnapshot};

/// Why a target could not take what the sync received (a snapshot that does not compile, say). The sync
/// then reconnects for a fresh `hydrate`.
pub type TargetError = Box<dyn std::error::Error + Send + Sync>;

/// Where a whole snapshot comes from; the target decides whether it replaces what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A stream `hydrate`. A replica behind the one the target last heard from may send an older one:
    /// its later patches bring it level, so an older `hydrate` should not replace newer data.
    Hydrate,
    /// A `GET /v1/flags` body: replaces the data only when newer.
    Poll,
}

/// What the target did with a snapshot or a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The target is now at `revision`.
    Installed {
        /// Its revision.
        revision: u64,
    },
    /// Nothing done: the target has `have`, at least as new.
    Skipped {
        /// What it has.
        have: Option<u64>,
    },
}

/// Where the sync puts what it receives: the SDK client's store, or (relay mode, in
/// `vexil-dataplane`) a data-plane cache that serves other SDKs. The sync is the only writer.
pub trait Target: Send + Sync + 'static {
    /// Installs a whole snapshot, if `origin` says it should replace what the target holds.
    fn install(
        &self,
        snapshot: ReceivedSnapshot,
        origin: Origin,
    ) -> impl Future<Output = Result<Outcome, TargetError>> + Send;

    /// Applies one `patch` or `delete` at `revision` (the environment's revision after it; ids are
    /// increasing, not contiguous). A change at or below the target's revision is skipped.
    fn apply(
        &self,
        change: ReceivedChange,
        revision: u64,
    ) -> impl Future<Output = Result<Outcome, TargetError>> + Send;

    /// The revision of the data a sync installed: sent as `Last-Event-ID` when the stream reconnects,
    /// and, when there is one, a poll asks `If-None-Match`. `None` before the first sync.
    fn synced_revision(&self) -> Option<u64>;

    /// The source showed it is alive (any stream chunk, heartbeats included, or a `304`): the data held
    /// is still current. Default: nothing.
    fn alive(&self) {}

    /// What the sync did, for monitoring. Default: nothing (the sync logs by itself).
    fn observe(&self, event: SyncEvent) {
        let _ = event;
    }
}

/// What the background sync did, for monitoring and tests ([`Client::subscribe_sync_events`](crate::Client::subscribe_sync_events)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncEvent {
    /// `GET /v1/flags` answered: `200` (with the revision of the body), `304` (with the revision the
    /// client has), or an error status (no revision).
    Polled {
        /// The HTTP status.
        status: u16,
        /// The revision, as above.
        revision: Option<u64>,
    },
    /// `GET /v1/flags` got no answer (connection refused, timeout, ...).
    PollFailed {
        /// Why.
        reason: String,
    },
    /// The stream is open (`200`).
    StreamConnected,
    /// The stream could not be opened (no connection, or a status other than `200`).
    StreamConnectFailed {
        /// Why.
        reason: String,
    },
    /// A `hydrate`, `patch` or `delete` arrived and was applied or skipped (not above the revision).
    StreamEvent {
        /// `hydrate`, `patch` or `delete`.
        event: String,
        /// Its id: the environment's revision after it.
        revision: u64,
    },
    /// An open stream ended, failed, went silent, or carried something unusable.
    StreamDisconnected {
        /// Why.
        reason: String,
    },
}

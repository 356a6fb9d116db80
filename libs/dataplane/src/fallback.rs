//! Where a replica reads an environment when the bus cannot help: the control plane's database.
//!
//! The data plane does not link a database driver. The process that runs a replica wires its database
//! in through [`SnapshotSource`] (the `vexil` binary adapts `vexil_store::Store`), so the streaming and
//! evaluation services depend on no SQL crate.

use std::future::Future;
use std::pin::Pin;

use vexil_proto::EnvironmentSnapshot;

/// A boxed future, as a dyn-compatible trait's async methods return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a [`SnapshotSource`] could not answer (the database is down, say); logged with its causes, then
/// retried.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// A second source of environment snapshots besides the bus's cache: [`BusSync`](crate::BusSync) lists
/// its environments at start-up (and while the bus is down), and re-syncs from it an environment whose
/// cached snapshot is missing or older than wanted.
pub trait SnapshotSource: Send + Sync + 'static {
    /// Every environment's id.
    fn environment_ids(&self) -> BoxFuture<'_, Result<Vec<i64>, SourceError>>;

    /// One environment as it is now: `Ok(None)` when it no longer exists (the replica then forgets it).
    fn environment_snapshot(
        &self,
        id: i64,
    ) -> BoxFuture<'_, Result<Option<EnvironmentSnapshot>, SourceError>>;
}

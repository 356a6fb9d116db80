//! The control plane's database as the data plane's second source of snapshots.

use vexil_dataplane::{BoxFuture, SnapshotSource, SourceError};
use vexil_proto::EnvironmentSnapshot;
use vexil_store::{Store, StoreError};

/// A [`Store`] as a [`SnapshotSource`]: what `BusSync` falls back to when the bus's snapshot cache is
/// missing an environment or behind. The data plane links no database driver; this adapter, here in
/// the binary, is the one place that knows both.
#[derive(Debug, Clone)]
pub struct DatabaseSnapshots(Store);

impl DatabaseSnapshots {
    /// The snapshots of this store.
    pub fn new(store: Store) -> DatabaseSnapshots {
        DatabaseSnapshots(store)
    }
}

impl SnapshotSource for DatabaseSnapshots {
    fn environment_ids(&self) -> BoxFuture<'_, Result<Vec<i64>, SourceError>> {
        Box::pin(async move { Ok(self.0.environment_ids().await?) })
    }

    fn environment_snapshot(
        &self,
        id: i64,
    ) -> BoxFuture<'_, Result<Option<EnvironmentSnapshot>, SourceError>> {
        Box::pin(async move {
            match self.0.environment_snapshot(id).await {
                Ok(snapshot) => Ok(Some(snapshot)),
                Err(StoreError::NotFound { .. }) => Ok(None),
                Err(error) => Err(error.into()),
            }
        })
    }
}

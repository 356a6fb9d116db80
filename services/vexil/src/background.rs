//! The tasks a process runs beside its server, owned: told to stop and waited for on shutdown.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long the background tasks, together, may take to stop once the server has.
pub const GRACE: Duration = Duration::from_secs(5);

/// Background tasks (the change relay, the data plane's sync, the audit-partition renewal), each given
/// the same [`CancellationToken`] to stop on. [`stop`](Self::stop) cancels it and waits for every task
/// to end, so that none is cut off halfway through a write when the process exits.
#[derive(Debug, Default)]
pub struct Background {
    shutdown: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Background {
    /// No tasks yet.
    pub fn new() -> Background {
        Background::default()
    }

    /// The token the tasks stop on (cancelled by [`stop`](Self::stop)).
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Spawns `task`, which must end once [`shutdown`](Self::shutdown) is cancelled.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push((name, tokio::spawn(task)));
    }

    /// Tells every task to stop and waits for them, all together at most [`GRACE`]; a task still running
    /// then is left to the runtime's end (and logged).
    pub async fn stop(self) {
        self.shutdown.cancel();
        let deadline = tokio::time::Instant::now() + GRACE;
        for (name, task) in self.tasks {
            match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok(())) => tracing::debug!(task = name, "background task stopped"),
                Ok(Err(error)) => tracing::error!(task = name, %error, "background task failed"),
                Err(_) => tracing::warn!(task = name, grace = ?GRACE, "background task did not stop in time"),
            }
        }
    }
}

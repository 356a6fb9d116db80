//! Group commit: changes that arrive while a transaction is committing wait for it, then commit
//! together in the next one.
//!
//! Every write bumps its environment's revision and extends the audit chain, and PostgreSQL holds both
//! row locks until the commit is flushed to disk, so with one transaction per change the control plane
//! commits one change per disk flush, however many writers wait. A [`GroupCommit`] queues changes for a
//! committer thread that takes every change queued while it was committing the previous batch (at most
//! [`MAX_BATCH`]) and hands them to [`Batch::apply`] as one transaction. Should the transaction itself
//! fail (a lost connection, a deadlock), every change of the batch is retried alone, so one change can
//! never make another fail.
//!
//! This module is only that machinery; what a batch does, and how each change in it is decided, is
//! the [`Batch`] implementation's (configuration changes: `flag_configs.rs`).

use std::fmt;
use std::sync::OnceLock;

use tokio::sync::{mpsc, oneshot};

use crate::Store;
use crate::error::{Result, StoreError};

/// The most changes one transaction takes.
const MAX_BATCH: usize = 512;

/// A change that can be committed in a group with others of its kind.
pub(crate) trait Batch: Sized + Send + 'static {
    /// What the change's caller gets back.
    type Outcome: Send + 'static;

    /// The committer thread's name.
    const THREAD_NAME: &'static str;

    /// Applies `changes` in order in one transaction. The outer error means the transaction failed and
    /// nothing was written; otherwise each change's own outcome, in order.
    async fn apply(store: &Store, changes: &[&Self]) -> Result<Vec<Result<Self::Outcome>>>;
}

struct Queued<C: Batch> {
    change: C,
    reply: oneshot::Sender<Result<C::Outcome>>,
}

/// The queue of changes of one kind, and its committer: a thread of its own, started by the first
/// change, that commits them in groups.
///
/// A thread with its own runtime rather than a task: a batch is on the critical path of every waiting
/// change, so its statements must not wait behind HTTP work on a busy server thread, and it must not
/// depend on the runtime of whichever caller happened to come first. A caller that hangs up cannot
/// abandon the others' changes halfway either. The thread ends when the last [`Store`] clone is dropped
/// (the queue closes).
pub(crate) struct GroupCommit<C: Batch> {
    queue: OnceLock<mpsc::UnboundedSender<Queued<C>>>,
}

impl<C: Batch> Default for GroupCommit<C> {
    fn default() -> Self {
        GroupCommit { queue: OnceLock::new() }
    }
}

impl<C: Batch> fmt::Debug for GroupCommit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupCommit").field("started", &self.queue.get().is_some()).finish()
    }
}

impl<C: Batch> GroupCommit<C> {
    /// Queues `change` for the committer and waits for its outcome.
    pub(crate) async fn submit(&self, store: &Store, change: C) -> Result<C::Outcome> {
        let (reply, answer) = oneshot::channel();
        self.queue(store).send(Queued { change, reply }).map_err(|_| StoreError::Abandoned)?;
        answer.await.unwrap_or(Err(StoreError::Abandoned))
    }

    fn queue(&self, store: &Store) -> &mpsc::UnboundedSender<Queued<C>> {
        self.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            // A clone of `store` would keep this queue open, and the thread alive, forever.
            let committer = store.detached();
            let started = std::thread::Builder::new()
                .name(C::THREAD_NAME.into())
                .spawn(move || run(committer, receiver));
            if let Err(error) = started {
                // The queue's receiver is gone with the closure: every change gets `Abandoned`.
                tracing::error!(%error, thread = C::THREAD_NAME, "cannot start a committer thread");
            }
            sender
        })
    }
}

/// The committer thread's loop: wait for a change, take it and every other change queued by then,
/// commit them, answer each; until the queue closes.
fn run<C: Batch>(store: Store, mut queue: mpsc::UnboundedReceiver<Queued<C>>) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, thread = C::THREAD_NAME, "cannot start a committer's runtime");
            return;
        }
    };
    runtime.block_on(async move {
        while let Some(first) = queue.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH
                && let Ok(next) = queue.try_recv()
            {
                batch.push(next);
            }
            commit(&store, batch).await;
        }
    });
}

/// Commits one batch and answers each change; if the transaction fails, retries each change alone.
async fn commit<C: Batch>(store: &Store, batch: Vec<Queued<C>>) {
    let changes: Vec<&C> = batch.iter().map(|queued| &queued.change).collect();
    match C::apply(store, &changes).await {
        Ok(outcomes) => {
            drop(changes);
            for (queued, outcome) in batch.into_iter().zip(outcomes) {
                let _ = queued.reply.send(outcome);
            }
        }
        Err(error) if batch.len() > 1 => {
            tracing::warn!(
                error = %error,
                changes = batch.len(),
                thread = C::THREAD_NAME,
                "a batch of changes failed; retrying each alone"
            );
            drop(changes);
            for queued in batch {
                let outcome = match C::apply(store, &[&queued.change]).await {
                    Ok(mut outcomes) => outcomes.pop().unwrap_or(Err(StoreError::Abandoned)),
                    Err(error) => Err(error),
                };
                let _ = queued.reply.send(outcome);
            }
        }
        Err(error) => {
            drop(changes);
            if let Some(queued) = batch.into_iter().next() {
                let _ = queued.reply.send(Err(error));
            }
        }
    }
}

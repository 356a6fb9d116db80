//! The change log: the outbox every write appends to inside its own transaction, and the relay drains.
//!
//! A row is one [`ChangeEvent`](vexil_proto::ChangeEvent) waiting to be published: the environment's
//! revision after the change, what was done to what (`kind` and `item`, stored as the numbers of
//! `vexil.v1.ChangeKind` and `ItemKind`, so that a row is an event field for field), the item's key and
//! its payload, the bytes the event carries. Committing the row with the change is what makes delivery
//! reliable: a change is in the log exactly when it is in the database.
//!
//! - [`append`]: bumping each affected environment's revision and appending the rows that carry the
//!   new revisions (every write).
//! - [`relay`]: what the relay needs to drain the log: the unsent rows with each environment's
//!   snapshot, marking them sent, pruning delivered rows, wake-ups and the lease that keeps one relay
//!   active.

mod append;
mod relay;

pub(crate) use append::{Change, LoggedChange, record_change, record_changes};
pub use relay::{ChangeWaker, PendingChanges, RelayLease};

//! The audit log: an append-only, hash-chained record of every write, with who made it and the item
//! before and after.
//!
//! Record `n` carries `seq = n` (no gaps) and `hash = sha256(hash of record n - 1 ‖ its fields)`
//! ([`hash`]); the chain head (one row: the last `seq` and hash) anchors the end, so that removing the
//! newest records shows too. The database refuses to update or delete records (triggers); the chain is
//! what catches someone who disables them. `before` and `after` are stored as the exact JSON text that
//! was hashed.
//!
//! - [`hash`]: the one definition of a record's hash, shared by the writer and the verifier.
//! - [`append`]: extending the chain inside a write's transaction.
//! - [`read`]: listing records and verifying the whole chain.

mod append;
mod hash;
mod read;

pub(crate) use append::{AuditEntry, append_audit, append_audits};

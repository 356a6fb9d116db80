//! What an audit record's hash covers, and how: the chain's definition, which the writer and the
//! verifier must agree on byte for byte.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The fields of an audit record that its hash covers, in a fixed order.
pub(super) struct AuditFields<'a> {
    pub(super) seq: u64,
    pub(super) at: OffsetDateTime,
    pub(super) texts: [Option<&'a str>; 11],
}

/// `sha256(prev_hash ‖ seq ‖ at (µs) ‖ each text field, length-prefixed, with a presence byte)`.
/// Length prefixes make the encoding unambiguous: no two different records hash the same bytes.
pub(super) fn audit_hash(prev_hash: &[u8], fields: &AuditFields<'_>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(fields.seq.to_be_bytes());
    hasher.update(((fields.at.unix_timestamp_nanos() / 1_000) as i64).to_be_bytes());
    for text in fields.texts {
        match text {
            None => hasher.update([0u8]),
            Some(text) => {
                hasher.update([1u8]);
                hasher.update((text.len() as u64).to_be_bytes());
                hasher.update(text.as_bytes());
            }
        }
    }
    hasher.finalize().into()
}

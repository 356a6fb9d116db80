//! The OFREP change stream (`GET /ofrep/v1/stream`): notifications that tell an OpenFeature web
//! provider to evaluate again (PROTOCOLS.md item 10). It carries no values.
//!
//! ```text
//! event: message
//! id: 42
//! data: {"type":"refetchEvaluation","etag":"\"42\"","lastModified":1767225600}
//! ```

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::sse;

/// The event name: EventSource's default, which is what the OpenFeature web provider listens for.
pub const MESSAGE: &str = "message";

/// A `refetchEvaluation` notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Refetch<'a> {
    /// Always `refetchEvaluation`.
    #[serde(rename = "type")]
    pub kind: Cow<'a, str>,
    /// The environment's configuration tag at the change ([`crate::etag::snapshot`] without a prefix).
    #[serde(borrow)]
    pub etag: Cow<'a, str>,
    /// When the change was committed, Unix seconds.
    pub last_modified: i64,
}

impl Refetch<'static> {
    /// The notification of the change that made `revision`, committed at `committed_at_ms` (Unix
    /// milliseconds).
    pub fn new(revision: u64, committed_at_ms: i64) -> Refetch<'static> {
        Refetch {
            kind: Cow::Borrowed("refetchEvaluation"),
            etag: Cow::Owned(crate::etag::snapshot(revision, "")),
            last_modified: committed_at_ms.div_euclid(1000),
        }
    }
}

impl Refetch<'_> {
    /// The `message` event at `revision`.
    pub fn frame(&self, revision: u64) -> Vec<u8> {
        // Serialising strings and numbers into memory cannot fail.
        sse::frame(MESSAGE, revision, &serde_json::to_vec(self).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refetch_carries_the_revision_etag_and_unix_seconds() {
        let frame = Refetch::new(12, 1_700_000_000_999).frame(12);
        let expected = r#"{"type":"refetchEvaluation","etag":"\"12\"","lastModified":1700000000}"#;
        assert_eq!(
            String::from_utf8(frame).unwrap(),
            format!("event: message\nid: 12\ndata: {expected}\n\n")
        );
        let read: Refetch<'_> = serde_json::from_str(expected).unwrap();
        assert_eq!(read, Refetch::new(12, 1_700_000_000_000));
    }
}

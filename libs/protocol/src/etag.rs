//! Entity tags: of an environment's snapshot as polled (`GET /v1/flags`) and announced by the OFREP
//! stream, and of an OFREP bulk evaluation; and `If-None-Match`.
//!
//! Every replica must compute the same tag for the same inputs, so that a client can poll any of them:
//! the tags are pure functions of what they stand for.

use sha2::{Digest, Sha256};
use vexil_model::Context;

/// Bumped when the body a bulk tag stands for changes shape for the same inputs, so clients refetch.
const BULK_FORMAT: &str = "ofrep-bulk-1";

/// The tag of an environment's snapshot at `revision`: the revision itself (the same number the stream
/// uses as its event id), narrowed by a hash of the prefix when there is one (`"7"`, `"7-<hash>"`).
pub fn snapshot(revision: u64, prefix: &str) -> String {
    if prefix.is_empty() {
        format!("\"{revision}\"")
    } else {
        format!("\"{revision}-{}\"", short_hash(&[prefix.as_bytes()]))
    }
}

/// The tag of an OFREP bulk evaluation: it changes with the configuration (environment and revision),
/// the key (its id: what it may see, and the stream URL that carries it), the advertised stream, and
/// the context — the web provider keeps its old `If-None-Match` after a context change.
///
/// The context is hashed in a canonical form (attributes sorted by name), so that the same context sent
/// with its attributes in another order still matches.
pub fn bulk(environment_id: i64, revision: u64, key_id: &str, stream_url: &str, context: &Context) -> String {
    let mut attributes: Vec<(&str, &serde_json::Value)> = context.attributes.iter().collect();
    attributes.sort_unstable_by_key(|(name, _)| *name);
    // Serialising a map of strings to JSON values cannot fail.
    let context_json =
        serde_json::to_vec(&(context.targeting_key.as_deref(), attributes)).unwrap_or_default();
    let environment = environment_id.to_string();
    let revision = revision.to_string();
    let parts: [&[u8]; 6] = [
        BULK_FORMAT.as_bytes(),
        environment.as_bytes(),
        revision.as_bytes(),
        key_id.as_bytes(),
        stream_url.as_bytes(),
        &context_json,
    ];
    format!("\"{}\"", short_hash(&parts))
}

/// The first 128 bits of the SHA-256 of the length-prefixed parts, in hex.
fn short_hash(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize()[..16].iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Whether the `If-None-Match` header values name `etag` (weak or strong, alone or in a list). `*` is
/// not honoured: these are requests for data the client wants whenever it has none.
pub fn if_none_match<'a>(values: impl IntoIterator<Item = &'a str>, etag: &str) -> bool {
    let wanted = etag.trim_start_matches("W/");
    values
        .into_iter()
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == wanted)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn context(value: serde_json::Value) -> Context {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_snapshot_tag_is_the_revision_narrowed_by_the_prefix() {
        assert_eq!(snapshot(7, ""), "\"7\"");
        assert_ne!(snapshot(7, "a"), snapshot(7, "b"));
        assert!(snapshot(7, "a\"b").matches('"').count() == 2, "the prefix never leaks into the tag");
    }

    #[test]
    fn a_bulk_tag_changes_with_each_input_but_not_with_attribute_order() {
        let base = context(json!({"targetingKey": "u1", "a": 1, "b": {"c": 2}}));
        let tag = bulk(1, 5, "key", "", &base);
        assert_eq!(
            tag,
            bulk(1, 5, "key", "", &context(json!({"b": {"c": 2}, "a": 1, "targetingKey": "u1"})))
        );
        assert_ne!(tag, bulk(2, 5, "key", "", &base));
        assert_ne!(tag, bulk(1, 6, "key", "", &base));
        assert_ne!(tag, bulk(1, 5, "other", "", &base));
        assert_ne!(tag, bulk(1, 5, "key", "https://stream", &base));
        assert_ne!(
            tag,
            bulk(1, 5, "key", "", &context(json!({"targetingKey": "u2", "a": 1, "b": {"c": 2}})))
        );
        assert_ne!(
            tag,
            bulk(1, 5, "key", "", &context(json!({"targetingKey": "u1", "a": 2, "b": {"c": 2}})))
        );
    }

    #[test]
    fn if_none_match_accepts_lists_and_weak_tags() {
        assert!(if_none_match(["\"1\", W/\"7\""], "\"7\""));
        assert!(if_none_match(["\"1\", W/\"7\""], "\"1\""));
        assert!(if_none_match(["\"9\"", "\"7\""], "\"7\""), "several headers");
        assert!(!if_none_match(["\"1\", W/\"7\""], "\"8\""));
        assert!(!if_none_match(["*"], "\"7\""));
        assert!(!if_none_match([], "\"7\""));
    }
}

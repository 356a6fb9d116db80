//! One change to an environment's flags and segments, and the one way every copy of an environment
//! applies it: the data plane's cache (from the bus), relay mode and the SDK (from a stream's `patch`
//! and `delete`).

use vexil_model::{ConfiguredFlag, Segment, Snapshot};

/// A change to one flag or segment: what a `patch` or `delete` event carries, and what a change event
/// between the planes carries for a flag or segment.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A flag created or changed: the flag and its configuration in the environment.
    UpsertFlag(ConfiguredFlag),
    /// A flag deleted.
    DeleteFlag(String),
    /// A segment created or changed.
    UpsertSegment(Segment),
    /// A segment deleted.
    DeleteSegment(String),
}

impl Change {
    /// The key of the flag or segment changed.
    pub fn key(&self) -> &str {
        match self {
            Change::UpsertFlag(flag) => flag.flag().key.as_str(),
            Change::UpsertSegment(segment) => segment.key.as_str(),
            Change::DeleteFlag(key) | Change::DeleteSegment(key) => key,
        }
    }

    /// Applies the change to `snapshot`'s flags or segments. The item with the same key is replaced in
    /// place; a new one is inserted where it keeps the list sorted by key (the control plane sends
    /// flags and segments sorted, so a snapshot built from changes lists them exactly as a fresh
    /// snapshot of the same revision does). Deleting what is not there changes nothing. The revision
    /// is the caller's to move: it is the event's, not the change's.
    pub fn apply(self, snapshot: &mut Snapshot) {
        match self {
            Change::UpsertFlag(flag) => upsert(&mut snapshot.flags, flag, |f| f.flag().key.as_str()),
            Change::DeleteFlag(key) => snapshot.flags.retain(|f| f.flag().key.as_str() != key),
            Change::UpsertSegment(segment) => upsert(&mut snapshot.segments, segment, |s| s.key.as_str()),
            Change::DeleteSegment(key) => snapshot.segments.retain(|s| s.key.as_str() != key),
        }
    }
}

/// Replaces the item with the same key, or inserts it where it keeps a sorted list sorted.
pub fn upsert<T>(items: &mut Vec<T>, item: T, key: impl Fn(&T) -> &str) {
    let new_key = key(&item);
    if let Some(existing) = items.iter_mut().find(|existing| key(existing) == new_key) {
        *existing = item;
    } else {
        let at = items.partition_point(|existing| key(existing) < new_key);
        items.insert(at, item);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn flag(key: &str, on: bool) -> ConfiguredFlag {
        serde_json::from_value(json!({
            "flag": {"key": key, "kind": "boolean", "variations": [{"value": true}, {"value": false}]},
            "config": {"on": on, "off_variation": 1, "fallthrough": {"variation": 0}}
        }))
        .unwrap()
    }

    fn keys(snapshot: &Snapshot) -> Vec<(&str, bool)> {
        snapshot.flags.iter().map(|f| (f.flag().key.as_str(), f.config().on)).collect()
    }

    #[test]
    fn an_upsert_keeps_a_sorted_list_sorted_and_replaces_in_place() {
        let mut items = vec!["a".to_owned(), "c".to_owned()];
        upsert(&mut items, "b".to_owned(), String::as_str);
        upsert(&mut items, "d".to_owned(), String::as_str);
        upsert(&mut items, "c".to_owned(), String::as_str);
        assert_eq!(items, ["a", "b", "c", "d"]);
    }

    #[test]
    fn changes_replace_insert_in_order_and_delete_by_key() {
        let mut snapshot =
            Snapshot { revision: 4, flags: vec![flag("a", false), flag("c", false)], segments: vec![] };
        Change::UpsertFlag(flag("b", true)).apply(&mut snapshot);
        Change::UpsertFlag(flag("c", true)).apply(&mut snapshot);
        assert_eq!(keys(&snapshot), [("a", false), ("b", true), ("c", true)]);
        Change::DeleteFlag("a".into()).apply(&mut snapshot);
        Change::DeleteFlag("nothing".into()).apply(&mut snapshot);
        assert_eq!(keys(&snapshot), [("b", true), ("c", true)]);
        let segment: Segment = serde_json::from_value(json!({"key": "beta", "included": ["u"]})).unwrap();
        Change::UpsertSegment(segment.clone()).apply(&mut snapshot);
        assert_eq!(snapshot.segments, [segment]);
        Change::DeleteSegment("beta".into()).apply(&mut snapshot);
        assert!(snapshot.segments.is_empty());
        assert_eq!(snapshot.revision, 4, "the revision is the caller's");
    }
}

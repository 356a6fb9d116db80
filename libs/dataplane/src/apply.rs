//! What one change event does to an environment's source snapshot and keys (pure, no I/O).

use prost::Message;
use vexil_model::{ConfiguredFlag, Segment, Snapshot};
use vexil_proto::{ChangeEvent, ChangeKind, ItemKind, SdkKey};

use crate::error::{Error, PayloadError, Result};

/// An environment's content after one change: the new source snapshot and, when the change was to a
/// key, the new key list.
pub(crate) struct Applied {
    pub(crate) snapshot: Snapshot,
    pub(crate) keys: Option<Vec<SdkKey>>,
}

/// Applies a flag, segment or SDK-key change to `snapshot` and `keys` and moves the revision to the
/// event's. Environment deletes are the cache's business, not this function's.
pub(crate) fn apply(snapshot: &Snapshot, keys: &[SdkKey], event: &ChangeEvent) -> Result<Applied> {
    let malformed = |item: &'static str| {
        move |source: PayloadError| Error::MalformedPayload {
            environment_id: event.environment_id,
            revision: event.revision,
            item,
            source,
        }
    };
    let mismatch = |item: &'static str, payload_key: &str| Error::KeyMismatch {
        environment_id: event.environment_id,
        revision: event.revision,
        item,
        event_key: event.key.clone(),
        payload_key: payload_key.to_owned(),
    };

    let unsupported = |kind, item| Error::UnsupportedChange {
        environment_id: event.environment_id,
        revision: event.revision,
        kind,
        item,
    };

    let mut keys_changed = None;
    let mut next = match (event.kind(), event.item()) {
        (ChangeKind::Upsert | ChangeKind::Delete, ItemKind::Flag | ItemKind::Segment) => snapshot.clone(),
        (ChangeKind::Upsert | ChangeKind::Delete, ItemKind::SdkKey) => {
            keys_changed = Some(keys.to_vec());
            snapshot.clone()
        }
        (kind, item) => return Err(unsupported(kind, item)),
    };
    next.revision = event.revision;
    match (event.kind(), event.item(), keys_changed.as_mut()) {
        (ChangeKind::Upsert, ItemKind::Flag, _) => {
            let flag: ConfiguredFlag =
                serde_json::from_slice(&event.payload).map_err(|e| malformed("flag")(e.into()))?;
            if flag.flag().key.as_str() != event.key {
                return Err(mismatch("flag", flag.flag().key.as_str()));
            }
            upsert(&mut next.flags, flag, |f| f.flag().key.as_str());
        }
        (ChangeKind::Delete, ItemKind::Flag, _) => next.flags.retain(|f| f.flag().key.as_str() != event.key),
        (ChangeKind::Upsert, ItemKind::Segment, _) => {
            let segment: Segment =
                serde_json::from_slice(&event.payload).map_err(|e| malformed("segment")(e.into()))?;
            if segment.key.as_str() != event.key {
                return Err(mismatch("segment", segment.key.as_str()));
            }
            upsert(&mut next.segments, segment, |s| s.key.as_str());
        }
        (ChangeKind::Delete, ItemKind::Segment, _) => next.segments.retain(|s| s.key.as_str() != event.key),
        (ChangeKind::Upsert, ItemKind::SdkKey, Some(keys)) => {
            let key = SdkKey::decode(event.payload.as_slice()).map_err(|e| malformed("sdk key")(e.into()))?;
            if key.id != event.key {
                return Err(mismatch("sdk key", &key.id));
            }
            upsert(keys, key, |k| k.id.as_str());
        }
        (ChangeKind::Delete, ItemKind::SdkKey, Some(keys)) => keys.retain(|k| k.id != event.key),
        (kind, item, _) => return Err(unsupported(kind, item)),
    }
    // Deleting what is not there is not an error: the revision moves on all the same.
    Ok(Applied { snapshot: next, keys: keys_changed })
}

/// Replaces the item with the same key, or inserts it where it keeps a sorted list sorted (the control
/// plane sends flags, segments and keys sorted by key, so a re-synced and an event-built snapshot list
/// items in the same order).
fn upsert<T>(items: &mut Vec<T>, item: T, key: impl Fn(&T) -> &str) {
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
    use super::*;

    #[test]
    fn an_upsert_keeps_a_sorted_list_sorted_and_replaces_in_place() {
        let mut items = vec!["a".to_owned(), "c".to_owned()];
        upsert(&mut items, "b".to_owned(), String::as_str);
        upsert(&mut items, "d".to_owned(), String::as_str);
        upsert(&mut items, "c".to_owned(), String::as_str);
        assert_eq!(items, ["a", "b", "c", "d"]);
    }

    #[test]
    fn an_unspecified_change_is_refused_by_name() {
        let event = ChangeEvent { environment_id: 7, revision: 3, ..Default::default() };
        let error = apply(&Snapshot::default(), &[], &event).err().expect("refused");
        assert!(matches!(error, Error::UnsupportedChange { environment_id: 7, revision: 3, .. }), "{error}");
    }
}

//! What one change event from the bus does to an environment's source snapshot and keys (pure, no
//! I/O). Flags and segments change as `vexil_protocol::Change` says, the one applier every copy of an
//! environment shares; SDK keys are the data plane's alone.

use prost::Message;
use vexil_model::{ConfiguredFlag, Segment, Snapshot};
use vexil_proto::{ChangeEvent, ChangeKind, ItemKind, SdkKey};
use vexil_protocol::Change;
use vexil_protocol::change::upsert;

use crate::error::{Error, PayloadError, Result};

/// An environment's content after one change: the new source snapshot and, when the change was to a
/// key, the new key list.
pub(crate) struct Applied {
    pub(crate) snapshot: Snapshot,
    pub(crate) keys: Option<Vec<SdkKey>>,
}

/// What a change event changes.
#[expect(clippy::large_enum_variant, reason = "lives for one call; a box would only add an allocation")]
enum Subject {
    /// A flag or segment.
    Item(Change),
    /// An SDK key added or replaced.
    UpsertKey(SdkKey),
    /// An SDK key removed.
    DeleteKey(String),
}

/// Applies a flag, segment or SDK-key change to `snapshot` and `keys` and moves the revision to the
/// event's. Environment deletes are the cache's business, not this function's.
pub(crate) fn apply(snapshot: &Snapshot, keys: &[SdkKey], event: &ChangeEvent) -> Result<Applied> {
    let target = read(event)?;
    let mut next = snapshot.clone();
    next.revision = event.revision;
    let keys = match target {
        Subject::Item(change) => {
            // Deleting what is not there is not an error: the revision moves on all the same.
            change.apply(&mut next);
            None
        }
        Subject::UpsertKey(key) => {
            let mut keys = keys.to_vec();
            upsert(&mut keys, key, |k| k.id.as_str());
            Some(keys)
        }
        Subject::DeleteKey(id) => Some(keys.iter().filter(|k| k.id != id).cloned().collect()),
    };
    Ok(Applied { snapshot: next, keys })
}

/// Reads what a change event changes: its payload parsed (flags and segments: their JSON; SDK keys:
/// protobuf), and checked to be about the item its `key` names.
fn read(event: &ChangeEvent) -> Result<Subject> {
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
    Ok(match (event.kind(), event.item()) {
        (ChangeKind::Upsert, ItemKind::Flag) => {
            let flag: ConfiguredFlag =
                serde_json::from_slice(&event.payload).map_err(|e| malformed("flag")(e.into()))?;
            if flag.flag().key.as_str() != event.key {
                return Err(mismatch("flag", flag.flag().key.as_str()));
            }
            Subject::Item(Change::UpsertFlag(flag))
        }
        (ChangeKind::Delete, ItemKind::Flag) => Subject::Item(Change::DeleteFlag(event.key.clone())),
        (ChangeKind::Upsert, ItemKind::Segment) => {
            let segment: Segment =
                serde_json::from_slice(&event.payload).map_err(|e| malformed("segment")(e.into()))?;
            if segment.key.as_str() != event.key {
                return Err(mismatch("segment", segment.key.as_str()));
            }
            Subject::Item(Change::UpsertSegment(segment))
        }
        (ChangeKind::Delete, ItemKind::Segment) => Subject::Item(Change::DeleteSegment(event.key.clone())),
        (ChangeKind::Upsert, ItemKind::SdkKey) => {
            let key = SdkKey::decode(event.payload.as_slice()).map_err(|e| malformed("sdk key")(e.into()))?;
            if key.id != event.key {
                return Err(mismatch("sdk key", &key.id));
            }
            Subject::UpsertKey(key)
        }
        (ChangeKind::Delete, ItemKind::SdkKey) => Subject::DeleteKey(event.key.clone()),
        (kind, item) => {
            return Err(Error::UnsupportedChange {
                environment_id: event.environment_id,
                revision: event.revision,
                kind,
                item,
            });
        }
    })
}

/// The change event that carries `change` at `revision` for environment `environment_id`: the inverse of
/// reading one (relay mode receives changes from a stream and hands them to its cache as the bus would).
pub(crate) fn event_of(
    environment_id: i64,
    revision: u64,
    change: &Change,
    committed_at_ms: i64,
) -> ChangeEvent {
    // Serialising model types into memory cannot fail.
    let (kind, item, payload) = match change {
        Change::UpsertFlag(flag) => {
            (ChangeKind::Upsert, ItemKind::Flag, serde_json::to_vec(flag).unwrap_or_default())
        }
        Change::DeleteFlag(_) => (ChangeKind::Delete, ItemKind::Flag, Vec::new()),
        Change::UpsertSegment(segment) => {
            (ChangeKind::Upsert, ItemKind::Segment, serde_json::to_vec(segment).unwrap_or_default())
        }
        Change::DeleteSegment(_) => (ChangeKind::Delete, ItemKind::Segment, Vec::new()),
    };
    ChangeEvent {
        environment_id,
        revision,
        kind: kind.into(),
        item: item.into(),
        key: change.key().to_owned(),
        payload,
        committed_at_ms,
        ..ChangeEvent::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_made_of_a_change_reads_back_as_that_change() {
        let flag: ConfiguredFlag = serde_json::from_value(serde_json::json!({
            "flag": {"key": "a", "kind": "boolean", "variations": [{"value": true}, {"value": false}]},
            "config": {"on": true, "off_variation": 1, "fallthrough": {"variation": 0}}
        }))
        .unwrap();
        for change in
            [Change::UpsertFlag(flag), Change::DeleteFlag("a".into()), Change::DeleteSegment("s".into())]
        {
            let event = event_of(3, 9, &change, 0);
            assert!(matches!(read(&event), Ok(Subject::Item(read)) if read == change), "{change:?}");
        }
    }

    #[test]
    fn an_unspecified_change_is_refused_by_name() {
        let event = ChangeEvent { environment_id: 7, revision: 3, ..Default::default() };
        let error = apply(&Snapshot::default(), &[], &event).err().expect("refused");
        assert!(matches!(error, Error::UnsupportedChange { environment_id: 7, revision: 3, .. }), "{error}");
    }

    #[test]
    fn a_key_change_moves_the_revision_and_changes_only_the_keys() {
        let key = |id: &str| SdkKey { id: id.into(), kind: "server".into(), ..Default::default() };
        let mut event = ChangeEvent {
            revision: 5,
            key: "b".into(),
            payload: key("b").encode_to_vec(),
            ..Default::default()
        };
        event.set_kind(ChangeKind::Upsert);
        event.set_item(ItemKind::SdkKey);
        let applied =
            apply(&Snapshot { revision: 4, ..Default::default() }, &[key("a"), key("c")], &event).unwrap();
        let ids: Vec<String> = applied.keys.unwrap().into_iter().map(|k| k.id).collect();
        assert_eq!((applied.snapshot.revision, ids), (5, vec!["a".into(), "b".into(), "c".into()]));
        event.set_kind(ChangeKind::Delete);
        let applied = apply(&applied.snapshot, &[key("a"), key("b")], &event).unwrap();
        assert_eq!(applied.keys.unwrap(), [key("a")]);
    }
}

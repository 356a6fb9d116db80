//! The frames the streams send, rendered from the contract (`vexil_protocol`): a `hydrate` of the
//! environment (or of a prefix), the `patch`/`delete` of a change, a client stream's `values` and
//! `delete`, and an OFREP `message`.
//!
//! One of them is not rendered through the typed events: the `patch` of a change, which every
//! unfiltered stream of the environment sends, is spliced together from the change event's payload —
//! the configured flag's JSON as the control plane serialised it, already parsed once by the cache —
//! instead of being parsed and serialised again. `tests` (and `tests/api/server.rs` end to end, with
//! the real control plane's payloads) check that the result is byte for byte the typed event's.

use std::io::Write as _;

use bytes::Bytes;
use vexil_dataplane::EnvironmentState;
use vexil_eval::Detail;
use vexil_proto::{ChangeEvent, ChangeKind, ItemKind};
use vexil_protocol::client::{ClientDelete, ClientReason, ClientValue, Values};
use vexil_protocol::ofrep::Refetch;
use vexil_protocol::server::{DELETE, PATCH};
use vexil_protocol::sse;

/// The heartbeat comment.
pub(crate) const PING: Bytes = Bytes::from_static(sse::PING);

/// The `hydrate` event of a server stream: the environment's snapshot, its flags narrowed to `prefix`
/// and the prerequisites those reach.
pub(crate) fn hydrate(state: &EnvironmentState, prefix: Option<&str>) -> Bytes {
    Bytes::from(state.view(prefix).frame())
}

/// What a server stream sends for one change event: `patch` or `delete` for flags and segments, nothing
/// for anything else (SDK keys are never sent to clients). A prefix stream decides for itself which
/// flags' events it sends (`routes::server`).
pub(crate) fn change(event: &ChangeEvent) -> Option<(&'static str, Bytes)> {
    let item = match event.item() {
        ItemKind::Flag => "flag",
        ItemKind::Segment => "segment",
        _ => return None,
    };
    // `{"kind":"<item>","key":<key>` and then, for a patch, the item's JSON: exactly the members of
    // `vexil_protocol::Change`'s serialisation, in its order.
    let key = serde_json::to_string(&event.key).unwrap_or_default();
    let mut data = Vec::with_capacity(event.payload.len() + key.len() + 40);
    let _ = write!(data, r#"{{"kind":"{item}","key":{key}"#);
    let name = match event.kind() {
        ChangeKind::Upsert if item == "flag" => {
            // The payload is the flag's `{"flag": ..., "config": ...}` object (the cache parsed it before
            // announcing the event): its members are spliced in.
            let inner = object_members(&event.payload)?;
            if !inner.is_empty() {
                data.push(b',');
                data.extend_from_slice(inner);
            }
            PATCH
        }
        ChangeKind::Upsert => {
            object_members(&event.payload)?;
            data.extend_from_slice(br#","segment":"#);
            data.extend_from_slice(event.payload.trim_ascii());
            PATCH
        }
        ChangeKind::Delete => DELETE,
        ChangeKind::Unspecified => return None,
    };
    data.push(b'}');
    Some((name, Bytes::from(sse::frame(name, event.revision, &data))))
}

/// The text between the braces of a JSON object, trimmed; `None` when `json` is not an object.
fn object_members(json: &[u8]) -> Option<&[u8]> {
    json.trim_ascii().strip_prefix(b"{")?.strip_suffix(b"}").map(<[u8]>::trim_ascii)
}

/// The `values` event of a client stream, for these evaluated flags (in this order).
pub(crate) fn values<'a>(revision: u64, full: bool, flags: &[(&'a str, Detail<'a>)]) -> Bytes {
    let flags = flags
        .iter()
        .map(|(key, detail)| {
            let value = ClientValue {
                value: detail.value.map(std::borrow::Cow::Borrowed),
                variation: detail.variation,
                variant: detail.variant(),
                reason: ClientReason::of(&detail.reason),
                error_kind: detail.reason.error_kind(),
            };
            ((*key).into(), value)
        })
        .collect();
    Bytes::from(Values { revision, full, flags }.frame())
}

/// A client stream's `delete` of a flag it may no longer see.
pub(crate) fn client_delete(revision: u64, key: &str) -> Bytes {
    Bytes::from(ClientDelete::flag(key).frame(revision))
}

/// The OFREP change notification for the change that made `revision` (its commit time, or now when
/// unknown).
pub(crate) fn refetch(revision: u64, committed_at_ms: i64) -> Bytes {
    let committed_at_ms = if committed_at_ms > 0 { committed_at_ms } else { crate::state::unix_millis() };
    Bytes::from(Refetch::new(revision, committed_at_ms).frame(revision))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use vexil_model::{ConfiguredFlag, ConfiguredFlagSpec, Segment, SegmentSpec};
    use vexil_protocol::Change;

    use super::*;

    fn event(kind: ChangeKind, item: ItemKind, key: &str, payload: Vec<u8>) -> ChangeEvent {
        let mut event = ChangeEvent { revision: 9, key: key.into(), payload, ..Default::default() };
        event.set_kind(kind);
        event.set_item(item);
        event
    }

    fn flag() -> ConfiguredFlag {
        serde_json::from_value(json!({
            "flag": {"key": "a.b", "kind": "string", "name": "A \"quoted\" name",
                     "variations": [{"value": "x", "name": "first"}, {"value": "y"}], "tags": ["t"]},
            "config": {"on": true, "off_variation": 1, "targets": [{"variation": 0, "values": ["u1"]}],
                       "rules": [{"id": "r", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}],
                                  "serve": {"variation": 0}}],
                       "fallthrough": {"rollout": {"weights": [{"variation": 0, "weight": 50000},
                                                               {"variation": 1, "weight": 50000}]}}}
        }))
        .unwrap()
    }

    /// Every kind of change, as its change event (with the payload the control plane writes: the typed
    /// item's JSON) and as the typed change.
    fn every_kind() -> Vec<(ChangeEvent, Change)> {
        let flag = flag();
        let payload = serde_json::to_vec(&ConfiguredFlagSpec::from(flag.clone())).unwrap();
        let segment: Segment =
            serde_json::from_value(json!({"key": "beta", "included": ["u"], "excluded": ["v"],
            "rules": [{"id": "pro", "clauses": [{"attribute": "plan", "op": "in", "values": ["pro"]}]}]}))
            .unwrap();
        let segment_payload = serde_json::to_vec(&SegmentSpec::from(segment.clone())).unwrap();
        vec![
            (event(ChangeKind::Upsert, ItemKind::Flag, "a.b", payload), Change::UpsertFlag(flag)),
            (event(ChangeKind::Delete, ItemKind::Flag, "a.b", Vec::new()), Change::DeleteFlag("a.b".into())),
            (
                event(ChangeKind::Upsert, ItemKind::Segment, "beta", segment_payload),
                Change::UpsertSegment(segment),
            ),
            (
                event(ChangeKind::Delete, ItemKind::Segment, "beta", Vec::new()),
                Change::DeleteSegment("beta".into()),
            ),
        ]
    }

    #[test]
    fn a_spliced_change_is_byte_for_byte_the_typed_event() {
        for (event, typed) in every_kind() {
            let (name, frame) = change(&event).unwrap();
            assert_eq!(name, typed.event_name());
            assert_eq!(
                String::from_utf8(frame.to_vec()).unwrap(),
                String::from_utf8(typed.frame(event.revision)).unwrap(),
                "{typed:?}"
            );
        }
    }

    #[test]
    fn keys_are_never_sent() {
        assert!(change(&event(ChangeKind::Upsert, ItemKind::SdkKey, "vxs_1", Vec::new())).is_none());
        assert!(
            change(&event(ChangeKind::Upsert, ItemKind::Flag, "x", b"[1]".to_vec())).is_none(),
            "not an object"
        );
    }
}

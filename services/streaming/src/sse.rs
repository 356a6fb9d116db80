//! The Server-Sent Events wire format: frames, the data of each event, and the streaming response.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::pin::Pin;

use actix_web::HttpResponse;
use actix_web::web::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde::Serialize;
use serde::ser::SerializeMap;
use vexil_dataplane::EnvironmentState;
use vexil_eval::Detail;
use vexil_model::{ConfiguredFlag, Reason, Segment};
use vexil_proto::{ChangeEvent, ChangeKind, ItemKind};

use crate::stream::Body;

/// The heartbeat comment.
pub(crate) const PING: Bytes = Bytes::from_static(b": ping\n\n");

/// The body of a stream, whichever server writes it: whole frames (a `hydrate` may be large), in
/// order; the end of the stream is a clean end of the response.
pub(crate) type SseBody = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

/// The headers every stream is answered with (besides the framing and `Date`, which are the
/// server's): `200`, and
///
/// * nginx and ingress controllers buffer responses unless told not to (`X-Accel-Buffering`);
/// * actix's `Compress` middleware, wherever it is wrapped, leaves a response that names its encoding
///   alone; a compressed stream would sit in the encoder's buffer.
pub(crate) const HEADERS: [(&str, &str); 4] = [
    ("content-type", "text/event-stream"),
    ("cache-control", "no-cache"),
    ("x-accel-buffering", "no"),
    ("content-encoding", "identity"),
];

/// The largest piece of a frame handed to actix at once. actix copies each piece into the
/// connection's write buffer, which keeps (up to 128 KiB of) whatever capacity it grew to for as long
/// as the connection lives: a 100 kB hydrate written whole would cost every idle stream 100 kB.
/// Pieces this size, with the server's `h1_write_buffer_size` at the same figure, keep that buffer at
/// its initial 8 KiB. (The streaming deployment's own server writes frames straight to the socket,
/// whole.)
pub(crate) const MAX_CHUNK: usize = 4096;

/// One event: `event: <name>`, `id: <id>`, and `data` as one `data:` line per line of it.
pub(crate) fn frame(name: &str, id: u64, data: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(data.len() + name.len() + 40);
    let _ = write!(buf, "event: {name}\nid: {id}\n");
    // serde_json never writes a raw line break, but a payload from elsewhere might: SSE joins `data:`
    // lines with "\n", which JSON reads as whitespace, so splitting keeps any JSON intact.
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        buf.extend_from_slice(b"data: ");
        buf.extend_from_slice(line);
        buf.extend_from_slice(b"\n");
    }
    buf.extend_from_slice(b"\n");
    buf.freeze()
}

/// A stream as an actix response: [`HEADERS`], and the body in pieces of at most [`MAX_CHUNK`].
pub(crate) fn response(body: Body) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    for header in HEADERS {
        response.insert_header(header);
    }
    let pieces = body.into_sse().flat_map(|frame| futures::stream::iter(Pieces(frame)));
    response.streaming(pieces.map(Ok::<_, Infallible>))
}

/// A frame in pieces of at most [`MAX_CHUNK`] bytes; zero-copy (each piece is a view of the same,
/// possibly shared, frame).
struct Pieces(Bytes);

impl Iterator for Pieces {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        (!self.0.is_empty()).then(|| self.0.split_to(self.0.len().min(MAX_CHUNK)))
    }
}

/// The `hydrate` event of a server stream: the environment's snapshot (`{"revision", "flags",
/// "segments"}`), its flags narrowed to `prefix` and the prerequisites those reach.
pub(crate) fn hydrate(state: &EnvironmentState, prefix: Option<&str>) -> Bytes {
    #[derive(Serialize)]
    struct Hydrate<'a> {
        revision: u64,
        flags: Vec<&'a ConfiguredFlag>,
        segments: &'a [Segment],
    }
    let snapshot = state.snapshot();
    let flags = match prefix {
        None => snapshot.flags.iter().collect(),
        // The prefix's flags and the prerequisites they reach, without which they cannot be evaluated.
        Some(prefix) => state
            .compiled()
            .selected_with_prerequisites(|flag| flag.key().as_str().starts_with(prefix))
            .into_iter()
            .map(|flag| flag.source())
            .collect(),
    };
    let data = Hydrate { revision: state.revision(), flags, segments: &snapshot.segments };
    // Serialising model types into memory cannot fail.
    let json = serde_json::to_vec(&data).unwrap_or_default();
    frame("hydrate", state.revision(), &json)
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
    let key = serde_json::to_string(&event.key).unwrap_or_default();
    let mut data = Vec::with_capacity(event.payload.len() + key.len() + 40);
    let _ = write!(Utf8(&mut data), r#"{{"kind":"{item}","key":{key}"#);
    let name = match event.kind() {
        ChangeKind::Upsert if item == "flag" => {
            // The payload is the flag's `{"flag": ..., "config": ...}` object (the cache parsed it before
            // announcing the event): its members are spliced in rather than parsed and re-serialised
            // once per connection.
            let inner = object_members(&event.payload)?;
            if !inner.is_empty() {
                data.push(b',');
                data.extend_from_slice(inner);
            }
            "patch"
        }
        ChangeKind::Upsert => {
            object_members(&event.payload)?;
            data.extend_from_slice(br#","segment":"#);
            data.extend_from_slice(event.payload.trim_ascii());
            "patch"
        }
        ChangeKind::Delete => "delete",
        ChangeKind::Unspecified => return None,
    };
    data.push(b'}');
    Some((name, frame(name, event.revision, &data)))
}

/// The text between the braces of a JSON object, trimmed; `None` when `json` is not an object.
fn object_members(json: &[u8]) -> Option<&[u8]> {
    json.trim_ascii().strip_prefix(b"{")?.strip_suffix(b"}").map(<[u8]>::trim_ascii)
}

/// `write!` into a byte vector.
struct Utf8<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Utf8<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The `values` event of a client stream: `{"revision", "full", "flags": {"<key>": {...}}}`.
pub(crate) fn values<'a>(revision: u64, full: bool, flags: &[(&'a str, Detail<'a>)]) -> Bytes {
    #[derive(Serialize)]
    struct Values<'v, 'a> {
        revision: u64,
        full: bool,
        flags: FlagValues<'v, 'a>,
    }
    let json = serde_json::to_vec(&Values { revision, full, flags: FlagValues(flags) }).unwrap_or_default();
    frame("values", revision, &json)
}

/// A client stream's `delete` event for a flag it may no longer see.
pub(crate) fn client_delete(revision: u64, key: &str) -> Bytes {
    let json = serde_json::to_vec(&serde_json::json!({"kind": "flag", "key": key})).unwrap_or_default();
    frame("delete", revision, &json)
}

struct FlagValues<'v, 'a>(&'v [(&'a str, Detail<'a>)]);

impl Serialize for FlagValues<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, detail) in self.0 {
            map.serialize_entry(key, &ClientValue(detail))?;
        }
        map.end()
    }
}

/// One evaluated value as a client may see it: no rule ids, no prerequisite keys (they would name
/// rules and other flags, DESIGN.md §6).
struct ClientValue<'d, 'a>(&'d Detail<'a>);

impl Serialize for ClientValue<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let detail = self.0;
        let mut map = serializer.serialize_map(None)?;
        if let Some(value) = detail.value {
            map.serialize_entry("value", value)?;
        }
        if let Some(variation) = detail.variation {
            map.serialize_entry("variation", &variation)?;
        }
        if let Some(variant) = detail.variant() {
            map.serialize_entry("variant", &variant)?;
        }
        let reason = match &detail.reason {
            Reason::Off => "OFF",
            Reason::TargetMatch => "TARGET_MATCH",
            Reason::RuleMatch { .. } => "RULE_MATCH",
            Reason::Fallthrough => "FALLTHROUGH",
            Reason::PrerequisiteFailed { .. } => "PREREQUISITE_FAILED",
            Reason::Error { .. } => "ERROR",
        };
        map.serialize_entry("reason", reason)?;
        if let Reason::Error { error_kind } = &detail.reason {
            map.serialize_entry("error_kind", error_kind)?;
        }
        map.end()
    }
}

/// The OFREP change notification: `event: message` with `{"type":"refetchEvaluation","etag",
/// "lastModified"}` (PROTOCOLS.md item 10).
pub(crate) fn refetch(revision: u64, committed_at_ms: i64) -> Bytes {
    let committed_at_ms = if committed_at_ms > 0 { committed_at_ms } else { crate::state::unix_millis() };
    let json = serde_json::json!({
        "type": "refetchEvaluation",
        "etag": etag(revision),
        "lastModified": committed_at_ms.div_euclid(1000),
    });
    frame("message", revision, &serde_json::to_vec(&json).unwrap_or_default())
}

/// The configuration ETag of an environment at a revision: the revision as a strong entity-tag.
pub(crate) fn etag(revision: u64) -> String {
    format!("\"{revision}\"")
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn data_of(frame: &Bytes) -> Value {
        let text = std::str::from_utf8(frame).unwrap();
        let data: Vec<&str> = text.lines().filter_map(|line| line.strip_prefix("data: ")).collect();
        serde_json::from_str(&data.join("\n")).unwrap()
    }

    fn event(kind: ChangeKind, item: ItemKind, key: &str, payload: Value) -> ChangeEvent {
        let mut event = ChangeEvent {
            revision: 9,
            key: key.into(),
            payload: if payload.is_null() {
                Vec::new()
            } else {
                serde_json::to_vec_pretty(&payload).unwrap()
            },
            ..Default::default()
        };
        event.set_kind(kind);
        event.set_item(item);
        event
    }

    #[test]
    fn a_large_frame_is_handed_to_actix_in_pieces_of_at_most_max_chunk() {
        let large = Bytes::from(vec![b'x'; 2 * MAX_CHUNK + 10]);
        let pieces: Vec<Bytes> = Pieces(large.clone()).collect();
        assert_eq!(pieces.iter().map(Bytes::len).collect::<Vec<_>>(), [MAX_CHUNK, MAX_CHUNK, 10]);
        assert_eq!(pieces.concat(), large);
        assert_eq!(Pieces(Bytes::from_static(b"small")).collect::<Vec<_>>(), [Bytes::from_static(b"small")]);
        assert_eq!(Pieces(Bytes::new()).count(), 0);
    }

    #[test]
    fn a_frame_has_a_name_an_id_and_one_data_line_per_line() {
        let frame = frame("patch", 42, b"{\"a\":\r\n1}");
        assert_eq!(&frame[..], b"event: patch\nid: 42\ndata: {\"a\":\ndata: 1}\n\n");
    }

    #[test]
    fn a_flag_upsert_is_a_patch_with_the_flag_and_its_config() {
        let payload = json!({"flag": {"key": "a.b", "kind": "boolean"}, "config": {"on": true}});
        let (name, frame) =
            change(&event(ChangeKind::Upsert, ItemKind::Flag, "a.b", payload.clone())).unwrap();
        assert_eq!(name, "patch");
        assert!(frame.starts_with(b"event: patch\nid: 9\n"));
        assert_eq!(
            data_of(&frame),
            json!({"kind": "flag", "key": "a.b", "flag": payload["flag"], "config": payload["config"]})
        );
    }

    #[test]
    fn a_segment_upsert_is_a_patch_with_the_segment() {
        let payload = json!({"key": "beta", "included": ["u"]});
        let (_, frame) =
            change(&event(ChangeKind::Upsert, ItemKind::Segment, "beta", payload.clone())).unwrap();
        assert_eq!(data_of(&frame), json!({"kind": "segment", "key": "beta", "segment": payload}));
    }

    #[test]
    fn deletes_name_the_item_and_keys_are_never_sent() {
        let (name, frame) = change(&event(ChangeKind::Delete, ItemKind::Flag, "x", Value::Null)).unwrap();
        assert_eq!((name, data_of(&frame)), ("delete", json!({"kind": "flag", "key": "x"})));
        assert!(change(&event(ChangeKind::Upsert, ItemKind::SdkKey, "vxs_1", Value::Null)).is_none());
    }

    #[test]
    fn a_refetch_carries_the_revision_etag_and_unix_seconds() {
        let frame = refetch(12, 1_700_000_000_999);
        assert!(frame.starts_with(b"event: message\nid: 12\n"));
        assert_eq!(
            data_of(&frame),
            json!({"type": "refetchEvaluation", "etag": "\"12\"", "lastModified": 1_700_000_000})
        );
    }
}

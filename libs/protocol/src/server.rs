//! The server stream (`GET /v1/stream`, server keys): `hydrate`, then `patch` and `delete` per change.
//! Also the body of `GET /v1/flags`, which is a `hydrate`'s data.
//!
//! ```text
//! event: hydrate
//! id: 41
//! data: {"revision":41,"flags":[{"flag":{..},"config":{..}}],"segments":[{..}]}
//!
//! event: patch
//! id: 42
//! data: {"kind":"flag","key":"new-checkout","flag":{..},"config":{..}}
//!
//! event: patch
//! id: 43
//! data: {"kind":"segment","key":"beta-testers","segment":{..}}
//!
//! event: delete
//! id: 45
//! data: {"kind":"flag","key":"old-banner"}
//! ```
//!
//! Writing: [`SnapshotView`] (a `hydrate`'s data, and the polled body) and [`Change::frame`]. Reading:
//! [`ServerEvent::read`], which is lenient where a client must be: a flag or segment this version
//! cannot read is reported on its own ([`ReceivedSnapshot::unreadable`], [`ReceivedChange`]) instead of
//! failing the whole event, and an item kind it does not know is skipped.

use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use vexil_model::{ConfiguredFlag, ConfiguredFlagSpec, Flag, FlagConfig, Segment, Snapshot};

use crate::change::Change;
use crate::sse::{self, SseEvent};

/// The event that replaces everything a client holds.
pub const HYDRATE: &str = "hydrate";
/// The event of a flag or segment created or changed.
pub const PATCH: &str = "patch";
/// The event of a flag or segment deleted.
pub const DELETE: &str = "delete";

/// An environment's flags and segments at a revision, as a `hydrate` carries them and `GET /v1/flags`
/// answers: exactly a `vexil_model::Snapshot`'s JSON, with the flags possibly narrowed (`?prefix=`).
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotView<'a> {
    /// The environment's revision.
    pub revision: u64,
    /// The flags sent, each with its configuration.
    pub flags: Vec<&'a ConfiguredFlag>,
    /// Every segment (the flags may use any).
    pub segments: &'a [Segment],
}

impl<'a> SnapshotView<'a> {
    /// The whole of `snapshot`.
    pub fn of(snapshot: &'a Snapshot) -> SnapshotView<'a> {
        SnapshotView {
            revision: snapshot.revision,
            flags: snapshot.flags.iter().collect(),
            segments: &snapshot.segments,
        }
    }

    /// The JSON (the polled body, and a `hydrate`'s data).
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising model types into memory cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The `hydrate` event.
    pub fn frame(&self) -> Vec<u8> {
        sse::frame(HYDRATE, self.revision, &self.to_json())
    }
}

/// A `patch` or `delete` event's data as written.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum ChangeData<'a> {
    Flag {
        key: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        flag: Option<&'a Flag>,
        #[serde(skip_serializing_if = "Option::is_none")]
        config: Option<&'a FlagConfig>,
    },
    Segment {
        key: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        segment: Option<&'a Segment>,
    },
}

impl Change {
    /// The name of the event that carries this change: `patch` or `delete`.
    pub fn event_name(&self) -> &'static str {
        match self {
            Change::UpsertFlag(_) | Change::UpsertSegment(_) => PATCH,
            Change::DeleteFlag(_) | Change::DeleteSegment(_) => DELETE,
        }
    }

    /// The event's data: `{"kind":"flag","key",…,"flag","config"}` for a flag patch,
    /// `{"kind":"segment","key",…,"segment"}` for a segment patch, `{"kind","key"}` for a delete.
    pub fn to_json(&self) -> Vec<u8> {
        let data = match self {
            Change::UpsertFlag(flag) => ChangeData::Flag {
                key: flag.flag().key.as_str(),
                flag: Some(flag.flag()),
                config: Some(flag.config()),
            },
            Change::DeleteFlag(key) => ChangeData::Flag { key, flag: None, config: None },
            Change::UpsertSegment(segment) => {
                ChangeData::Segment { key: segment.key.as_str(), segment: Some(segment) }
            }
            Change::DeleteSegment(key) => ChangeData::Segment { key, segment: None },
        };
        // Serialising model types into memory cannot fail.
        serde_json::to_vec(&data).unwrap_or_default()
    }

    /// The whole event, with `id` = the environment's revision after the change.
    pub fn frame(&self, revision: u64) -> Vec<u8> {
        sse::frame(self.event_name(), revision, &self.to_json())
    }
}

/// Why an event of a stream could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The event's `id` is not a revision.
    #[error("{event} with id {id:?}, which is not a revision")]
    Id {
        /// The event.
        event: String,
        /// Its id.
        id: String,
    },
    /// The event's data is not the JSON it should be.
    #[error("unreadable {event}")]
    Data {
        /// The event.
        event: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// A server-stream event, as a client reads it.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "moved once from the parser to its target; a box would only add an allocation"
)]
pub enum ServerEvent {
    /// `hydrate`: replaces everything the client holds.
    Hydrate(ReceivedSnapshot),
    /// `patch` or `delete`: one change; `revision` is the environment's after it.
    Change {
        /// The event's id.
        revision: u64,
        /// What changed.
        change: ReceivedChange,
    },
    /// An event this version does not know (a newer server's): ignored.
    Other,
}

impl ServerEvent {
    /// Reads one event of a server stream.
    pub fn read(event: &SseEvent) -> Result<ServerEvent, ReadError> {
        let data_error = |source| ReadError::Data { event: event.event.clone(), source };
        match event.event.as_str() {
            HYDRATE => {
                ReceivedSnapshot::read(event.data.as_bytes()).map(ServerEvent::Hydrate).map_err(data_error)
            }
            name @ (PATCH | DELETE) => {
                let revision = event
                    .id
                    .parse()
                    .map_err(|_| ReadError::Id { event: event.event.clone(), id: event.id.clone() })?;
                let change = ReceivedChange::read(name, &event.data).map_err(data_error)?;
                Ok(ServerEvent::Change { revision, change })
            }
            _ => Ok(ServerEvent::Other),
        }
    }
}

/// A snapshot as a client receives it (a `hydrate`'s data, a `GET /v1/flags` body): the flags and
/// segments it could read, and the keys of the flags it could not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceivedSnapshot {
    /// The flags and segments read, at the snapshot's revision.
    pub snapshot: Snapshot,
    /// Flags that are in the snapshot but that this client cannot read (a newer server's operator,
    /// say). A client leaves them out and treats them as unservable; the others are unaffected.
    pub unreadable: BTreeSet<String>,
}

#[derive(Deserialize)]
struct RawSnapshot<'a> {
    revision: u64,
    #[serde(default, borrow)]
    flags: Vec<&'a RawValue>,
    #[serde(default, borrow)]
    segments: Vec<&'a RawValue>,
}

/// Just the key of a flag that cannot be read whole.
#[derive(Deserialize)]
struct FlagKeyOf {
    flag: KeyOf,
}

#[derive(Deserialize)]
struct KeyOf {
    key: String,
}

impl ReceivedSnapshot {
    /// Reads a snapshot's JSON, item by item: a flag or segment that does not parse is left out (the
    /// flag's key remembered as unreadable) instead of failing the whole snapshot. A flag listed twice
    /// is kept once (the first). Fields this version does not know are ignored.
    pub fn read(json: &[u8]) -> Result<ReceivedSnapshot, serde_json::Error> {
        let raw: RawSnapshot<'_> = serde_json::from_slice(json)?;
        let mut received = ReceivedSnapshot::default();
        received.snapshot.revision = raw.revision;
        let mut seen = HashSet::new();
        for flag in raw.flags {
            match serde_json::from_str::<ConfiguredFlag>(flag.get()) {
                Ok(flag) if seen.insert(flag.flag().key.to_string()) => received.snapshot.flags.push(flag),
                Ok(flag) => {
                    tracing::warn!(flag = %flag.flag().key, "a snapshot lists a flag twice; keeping the first")
                }
                Err(error) => {
                    let key = serde_json::from_str::<FlagKeyOf>(flag.get()).ok().map(|of| of.flag.key);
                    tracing::warn!(flag = ?key, %error, "cannot read a flag; it cannot be evaluated here");
                    received.unreadable.extend(key);
                }
            }
        }
        received.unreadable.retain(|key| !seen.contains(key));
        let mut seen = HashSet::new();
        for segment in raw.segments {
            match serde_json::from_str::<Segment>(segment.get()) {
                Ok(segment) if seen.insert(segment.key.to_string()) => {
                    received.snapshot.segments.push(segment)
                }
                Ok(_) => {}
                // The flags that use it cannot be compiled, and become unservable.
                Err(error) => tracing::warn!(%error, "cannot read a segment; leaving it out"),
            }
        }
        Ok(received)
    }
}

impl ReceivedSnapshot {
    /// Applies a received change, and moves the revision to `revision`: a change as
    /// [`Change::apply`] does it; an unreadable flag is left out and remembered as unreadable (a
    /// readable patch or a delete of it forgets that again); an unreadable segment is left out.
    pub fn apply(&mut self, change: ReceivedChange, revision: u64) {
        match change {
            ReceivedChange::Apply(change) => {
                if let Change::UpsertFlag(_) | Change::DeleteFlag(_) = &change {
                    self.unreadable.remove(change.key());
                }
                change.apply(&mut self.snapshot);
            }
            ReceivedChange::UnreadableFlag(key) => {
                Change::DeleteFlag(key.clone()).apply(&mut self.snapshot);
                self.unreadable.insert(key);
            }
            ReceivedChange::UnreadableSegment(key) => Change::DeleteSegment(key).apply(&mut self.snapshot),
            ReceivedChange::Other => {}
        }
        self.snapshot.revision = revision;
    }
}

/// A `patch` or `delete` as a client receives it.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "moved once from the parser to its target; a box would only add an allocation"
)]
pub enum ReceivedChange {
    /// A change this client can apply.
    Apply(Change),
    /// A flag patch this client cannot read: the flag cannot be evaluated here from now on.
    UnreadableFlag(String),
    /// A segment patch this client cannot read: the segment is left out (and the flags using it
    /// become unservable).
    UnreadableSegment(String),
    /// A change to an item kind this version does not know (a newer server's): only the revision moves.
    Other,
}

#[derive(Deserialize)]
struct RawChange<'a> {
    kind: &'a str,
    key: String,
    #[serde(default, borrow)]
    flag: Option<&'a RawValue>,
    #[serde(default, borrow)]
    config: Option<&'a RawValue>,
    #[serde(default, borrow)]
    segment: Option<&'a RawValue>,
}

impl ReceivedChange {
    /// Reads the data of event `name` (`patch` or `delete`).
    pub fn read(name: &str, data: &str) -> Result<ReceivedChange, serde_json::Error> {
        let raw: RawChange<'_> = serde_json::from_str(data)?;
        Ok(match (name, raw.kind) {
            (DELETE, "flag") => ReceivedChange::Apply(Change::DeleteFlag(raw.key)),
            (DELETE, "segment") => ReceivedChange::Apply(Change::DeleteSegment(raw.key)),
            (PATCH, "flag") => match read_flag(raw.flag, raw.config) {
                Ok(flag) if flag.flag().key.as_str() == raw.key => {
                    ReceivedChange::Apply(Change::UpsertFlag(flag))
                }
                Ok(flag) => {
                    tracing::warn!(key = %raw.key, flag = %flag.flag().key, "a flag patch names another flag than it carries");
                    ReceivedChange::UnreadableFlag(raw.key)
                }
                Err(error) => {
                    tracing::warn!(flag = %raw.key, %error, "cannot read a flag patch; it cannot be evaluated here");
                    ReceivedChange::UnreadableFlag(raw.key)
                }
            },
            (PATCH, "segment") => {
                match raw.segment.map(|segment| serde_json::from_str::<Segment>(segment.get())) {
                    Some(Ok(segment)) if segment.key.as_str() == raw.key => {
                        ReceivedChange::Apply(Change::UpsertSegment(segment))
                    }
                    _ => {
                        tracing::warn!(segment = %raw.key, "cannot read a segment patch; leaving the segment out");
                        ReceivedChange::UnreadableSegment(raw.key)
                    }
                }
            }
            _ => ReceivedChange::Other,
        })
    }
}

/// A flag patch's `flag` and `config`, read as the configured flag they are.
fn read_flag(
    flag: Option<&RawValue>,
    config: Option<&RawValue>,
) -> Result<ConfiguredFlag, serde_json::Error> {
    use serde::de::Error as _;
    let (Some(flag), Some(config)) = (flag, config) else {
        return Err(serde_json::Error::custom("a flag patch carries `flag` and `config`"));
    };
    let spec = ConfiguredFlagSpec {
        flag: serde_json::from_str(flag.get())?,
        config: serde_json::from_str(config.get())?,
    };
    ConfiguredFlag::parse(spec).map_err(serde_json::Error::custom)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn flag_json(key: &str, on: bool) -> Value {
        json!({"flag": {"key": key, "kind": "boolean", "variations": [{"value": true}, {"value": false}]},
               "config": {"on": on, "off_variation": 1, "fallthrough": {"variation": 0}}})
    }

    fn flag(key: &str, on: bool) -> ConfiguredFlag {
        serde_json::from_value(flag_json(key, on)).unwrap()
    }

    fn segment(key: &str) -> Segment {
        serde_json::from_value(json!({"key": key, "included": ["user-1"]})).unwrap()
    }

    fn event(name: &str, id: &str, data: &[u8]) -> SseEvent {
        SseEvent { event: name.into(), id: id.into(), data: String::from_utf8(data.to_vec()).unwrap() }
    }

    #[test]
    fn every_change_is_read_back_as_written() {
        for change in [
            Change::UpsertFlag(flag("a.b", true)),
            Change::DeleteFlag("a.b".into()),
            Change::UpsertSegment(segment("beta")),
            Change::DeleteSegment("beta".into()),
        ] {
            let read = ServerEvent::read(&event(change.event_name(), "9", &change.to_json())).unwrap();
            assert_eq!(read, ServerEvent::Change { revision: 9, change: ReceivedChange::Apply(change) });
        }
    }

    #[test]
    fn a_change_is_written_as_the_wire_format_says() {
        let data: Value = serde_json::from_slice(&Change::UpsertFlag(flag("a", true)).to_json()).unwrap();
        let mut expected = serde_json::to_value(flag("a", true)).unwrap();
        expected["kind"] = json!("flag");
        expected["key"] = json!("a");
        assert_eq!(data, expected);
        assert_eq!(Change::DeleteSegment("s".into()).to_json(), br#"{"kind":"segment","key":"s"}"#);
        assert!(
            Change::DeleteFlag("x".into())
                .frame(45)
                .starts_with(b"event: delete\nid: 45\ndata: {\"kind\":\"flag\"")
        );
    }

    #[test]
    fn a_snapshot_is_read_back_as_written() {
        let snapshot = Snapshot {
            revision: 7,
            flags: vec![flag("a", true), flag("b", false)],
            segments: vec![segment("s")],
        };
        let read = ServerEvent::read(&event(HYDRATE, "7", &SnapshotView::of(&snapshot).to_json())).unwrap();
        assert_eq!(read, ServerEvent::Hydrate(ReceivedSnapshot { snapshot, unreadable: BTreeSet::new() }));
    }

    #[test]
    fn a_received_snapshot_tracks_unreadable_flags_through_changes() {
        let mut received = ReceivedSnapshot {
            snapshot: Snapshot { revision: 1, flags: vec![flag("b", true)], segments: vec![segment("s")] },
            unreadable: BTreeSet::from(["x".to_owned()]),
        };
        received.apply(ReceivedChange::UnreadableFlag("b".into()), 2);
        received.apply(ReceivedChange::Apply(Change::UpsertFlag(flag("x", true))), 3);
        received.apply(ReceivedChange::Apply(Change::UpsertFlag(flag("a", false))), 4);
        received.apply(ReceivedChange::UnreadableSegment("s".into()), 5);
        received.apply(ReceivedChange::Other, 6);
        assert_eq!(received.snapshot.flags, [flag("a", false), flag("x", true)]);
        assert_eq!(received.unreadable, BTreeSet::from(["b".to_owned()]));
        assert!(received.snapshot.segments.is_empty());
        assert_eq!(received.snapshot.revision, 6);
        received.apply(ReceivedChange::Apply(Change::DeleteFlag("b".into())), 7);
        assert!(received.unreadable.is_empty());
    }

    #[test]
    fn an_unreadable_flag_or_segment_is_reported_alone_and_unknown_things_are_skipped() {
        let mut newer = flag_json("from-the-future", true);
        newer["config"]["rules"] = json!([{"id": "r", "clauses": [{"attribute": "a", "op": "telepathy", "values": []}],
                                           "serve": {"variation": 0}}]);
        let json = json!({"revision": 3, "flags": [flag_json("a", true), newer.clone(), flag_json("a", false)],
                          "segments": [{"key": "s", "telepathy": true}], "environment": "from a newer server"});
        let read = ReceivedSnapshot::read(json.to_string().as_bytes()).unwrap();
        assert_eq!(read.snapshot.flags, [flag("a", true)], "the first of a flag listed twice");
        assert_eq!(read.unreadable, BTreeSet::from(["from-the-future".to_owned()]));
        assert!(read.snapshot.segments.is_empty());
        assert!(ReceivedSnapshot::read(b"[1, 2]").is_err());
        assert!(ReceivedSnapshot::read(b"{\"flags\": []}").is_err(), "a snapshot has a revision");

        let mut patch = newer;
        patch["kind"] = json!("flag");
        patch["key"] = json!("from-the-future");
        assert_eq!(
            ReceivedChange::read(PATCH, &patch.to_string()).unwrap(),
            ReceivedChange::UnreadableFlag("from-the-future".into())
        );
        assert_eq!(
            ReceivedChange::read(PATCH, r#"{"kind":"flag","key":"a","flag":{"key":"a"}}"#).unwrap(),
            ReceivedChange::UnreadableFlag("a".into()),
            "no config"
        );
        let mut other = flag_json("b", true);
        other["kind"] = json!("flag");
        other["key"] = json!("a");
        assert_eq!(
            ReceivedChange::read(PATCH, &other.to_string()).unwrap(),
            ReceivedChange::UnreadableFlag("a".into()),
            "a patch of `a` carrying `b`"
        );
        assert_eq!(
            ReceivedChange::read(PATCH, r#"{"kind":"segment","key":"s","segment":{"key":"t"}}"#).unwrap(),
            ReceivedChange::UnreadableSegment("s".into())
        );
        assert_eq!(
            ReceivedChange::read(PATCH, r#"{"kind":"experiment","key":"x","experiment":{}}"#).unwrap(),
            ReceivedChange::Other
        );
        assert!(ReceivedChange::read(PATCH, "not json").is_err());
        assert_eq!(ServerEvent::read(&event("ping-pong", "", b"{}")).unwrap(), ServerEvent::Other);
        assert!(matches!(ServerEvent::read(&event(DELETE, "x", b"{}")), Err(ReadError::Id { .. })));
    }
}

//! The client stream (`GET /v1/client/stream`, client keys): values evaluated by the data plane for one
//! context, never rules.
//!
//! ```text
//! event: values
//! id: 41
//! data: {"revision":41,"full":true,"flags":{"new-checkout":{"value":true,"variation":0,"variant":"on","reason":"RULE_MATCH"},"banner":{"reason":"ERROR","error_kind":"TARGETING_KEY_MISSING"}}}
//!
//! event: delete
//! id: 45
//! data: {"kind":"flag","key":"banner"}
//! ```

use std::borrow::Cow;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use vexil_model::{ErrorKind, Reason};

use crate::server::DELETE;
use crate::sse;

/// The event of evaluated values.
pub const VALUES: &str = "values";

/// A `values` event's data: the revision evaluated, whether the set is complete (replacing everything
/// the client had: flags absent from it are gone) or only what changed for this context, and the
/// values by flag key, in the environment's flag order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Values<'a> {
    /// The environment's revision evaluated.
    pub revision: u64,
    /// `true`: the complete set. `false`: only the flags whose value or variation changed.
    pub full: bool,
    /// Flag key → its value for the context.
    #[serde(serialize_with = "as_map", deserialize_with = "from_map", borrow)]
    pub flags: Vec<(Cow<'a, str>, ClientValue<'a>)>,
}

fn as_map<S: Serializer>(
    flags: &[(Cow<'_, str>, ClientValue<'_>)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(flags.len()))?;
    for (key, value) in flags {
        map.serialize_entry(key, value)?;
    }
    map.end()
}

fn from_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<(Cow<'de, str>, ClientValue<'de>)>, D::Error> {
    struct InOrder;
    impl<'de> Visitor<'de> for InOrder {
        type Value = Vec<(Cow<'de, str>, ClientValue<'de>)>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of flag keys to values")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut flags = Vec::with_capacity(map.size_hint().unwrap_or(0));
            while let Some(entry) = map.next_entry()? {
                flags.push(entry);
            }
            Ok(flags)
        }
    }
    deserializer.deserialize_map(InOrder)
}

impl Values<'_> {
    /// The `values` event.
    pub fn frame(&self) -> Vec<u8> {
        // Serialising JSON values into memory cannot fail.
        sse::frame(VALUES, self.revision, &serde_json::to_vec(self).unwrap_or_default())
    }
}

/// One evaluated value as a client may see it: no rule ids and no prerequisite keys, which would name
/// rules and other flags (DESIGN.md §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientValue<'a> {
    /// The value served; absent when the caller's default applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Cow<'a, Value>>,
    /// The index of the variation served; absent with `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variation: Option<usize>,
    /// The variation's name (or its index as text); absent with `value`.
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub variant: Option<Cow<'a, str>>,
    /// Why, without details.
    pub reason: ClientReason,
    /// For `ERROR`: what went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ErrorKind>,
}

/// Why a value was served, as a client may see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClientReason {
    /// The flag is off.
    Off,
    /// The context's key is in one of the flag's target lists.
    TargetMatch,
    /// A rule matched (which one is not said).
    RuleMatch,
    /// No target or rule matched.
    Fallthrough,
    /// A prerequisite was not met (which one is not said).
    PrerequisiteFailed,
    /// The caller's default applies; `error_kind` says why.
    Error,
}

impl ClientReason {
    /// The reason without its details.
    pub fn of(reason: &Reason<'_>) -> ClientReason {
        match reason {
            Reason::Off => ClientReason::Off,
            Reason::TargetMatch => ClientReason::TargetMatch,
            Reason::RuleMatch { .. } => ClientReason::RuleMatch,
            Reason::Fallthrough => ClientReason::Fallthrough,
            Reason::PrerequisiteFailed { .. } => ClientReason::PrerequisiteFailed,
            Reason::Error { .. } => ClientReason::Error,
        }
    }
}

/// A client stream's `delete`: a flag the client may no longer see (deleted, archived, or no longer
/// client-side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientDelete<'a> {
    /// Always `flag`.
    pub kind: Cow<'a, str>,
    /// The flag's key.
    #[serde(borrow)]
    pub key: Cow<'a, str>,
}

impl<'a> ClientDelete<'a> {
    /// The `delete` of flag `key`.
    pub fn flag(key: &'a str) -> ClientDelete<'a> {
        ClientDelete { kind: Cow::Borrowed("flag"), key: Cow::Borrowed(key) }
    }

    /// The `delete` event at `revision`.
    pub fn frame(&self, revision: u64) -> Vec<u8> {
        // Serialising strings into memory cannot fail.
        sse::frame(DELETE, revision, &serde_json::to_vec(self).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_are_a_map_in_the_order_given_and_are_read_back() {
        let on = json!(true);
        let values = Values {
            revision: 41,
            full: true,
            flags: vec![
                (
                    "z-first".into(),
                    ClientValue {
                        value: Some(Cow::Borrowed(&on)),
                        variation: Some(0),
                        variant: Some("on".into()),
                        reason: ClientReason::RuleMatch,
                        error_kind: None,
                    },
                ),
                (
                    "banner".into(),
                    ClientValue {
                        value: None,
                        variation: None,
                        variant: None,
                        reason: ClientReason::Error,
                        error_kind: Some(ErrorKind::TargetingKeyMissing),
                    },
                ),
            ],
        };
        let frame = values.frame();
        let expected = r#"{"revision":41,"full":true,"flags":{"z-first":{"value":true,"variation":0,"variant":"on","reason":"RULE_MATCH"},"banner":{"reason":"ERROR","error_kind":"TARGETING_KEY_MISSING"}}}"#;
        assert_eq!(String::from_utf8(frame).unwrap(), format!("event: values\nid: 41\ndata: {expected}\n\n"));
        let read: Values<'_> = serde_json::from_str(expected).unwrap();
        assert_eq!(read.revision, 41);
        assert_eq!(read.flags.len(), 2);
        assert_eq!(read.flags[1].1.error_kind, Some(ErrorKind::TargetingKeyMissing));
    }

    #[test]
    fn a_client_delete_names_the_flag() {
        assert_eq!(
            ClientDelete::flag("banner").frame(45),
            b"event: delete\nid: 45\ndata: {\"kind\":\"flag\",\"key\":\"banner\"}\n\n"
        );
    }
}

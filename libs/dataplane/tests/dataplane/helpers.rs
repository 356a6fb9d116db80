//! Building snapshots, events and keys by hand.

use prost::Message;
use serde_json::{Value, json};
use vexil_dataplane::Cache;
use vexil_keys::SecretKind;
use vexil_proto::{ChangeEvent, ChangeKind, EnvironmentSnapshot, ItemKind, SdkKey};

/// A boolean flag `key` ([true, false]) that serves `true` when on and `false` when off.
pub fn flag(key: &str, on: bool) -> Value {
    json!({
        "flag": {"key": key, "kind": "boolean", "variations": [{"value": true}, {"value": false}]},
        "config": {"on": on, "off_variation": 1, "fallthrough": {"variation": 0}}
    })
}

/// A boolean flag that is on and serves `true` to members of `segment` only.
pub fn flag_for_segment(key: &str, segment: &str) -> Value {
    json!({
        "flag": {"key": key, "kind": "boolean", "variations": [{"value": true}, {"value": false}]},
        "config": {"on": true, "off_variation": 1, "fallthrough": {"variation": 1},
                   "rules": [{"id": "members", "clauses": [{"attribute": "targetingKey", "op": "segment_match", "values": [segment]}],
                              "serve": {"variation": 0}}]}
    })
}

/// A segment including exactly `members`.
pub fn segment(key: &str, members: &[&str]) -> Value {
    json!({"key": key, "included": members})
}

/// Environment `id` of project `shop` at `revision` with these flags, segments and keys.
pub fn snapshot(
    id: i64,
    revision: u64,
    flags: Vec<Value>,
    segments: Vec<Value>,
    keys: Vec<SdkKey>,
) -> EnvironmentSnapshot {
    let json = json!({"revision": revision, "flags": flags, "segments": segments});
    EnvironmentSnapshot {
        environment_id: id,
        project: "shop".into(),
        environment: "production".into(),
        revision,
        snapshot_json: serde_json::to_vec(&json).unwrap(),
        keys,
        committed_at_ms: 1_700_000_000_000,
    }
}

pub fn event(
    id: i64,
    revision: u64,
    kind: ChangeKind,
    item: ItemKind,
    key: &str,
    payload: Vec<u8>,
) -> ChangeEvent {
    ChangeEvent {
        environment_id: id,
        project: "shop".into(),
        environment: "production".into(),
        revision,
        kind: kind.into(),
        item: item.into(),
        key: key.into(),
        payload,
        committed_at_ms: 1_700_000_000_000 + revision as i64,
    }
}

/// An upsert of `flag(key, on)`.
pub fn flag_event(id: i64, revision: u64, key: &str, on: bool) -> ChangeEvent {
    event(id, revision, ChangeKind::Upsert, ItemKind::Flag, key, serde_json::to_vec(&flag(key, on)).unwrap())
}

pub fn key_event(id: i64, revision: u64, key: &SdkKey) -> ChangeEvent {
    event(id, revision, ChangeKind::Upsert, ItemKind::SdkKey, &key.id, key.encode_to_vec())
}

/// A fresh SDK key: the secret to present and the key as the data plane gets it.
pub struct TestKey {
    pub secret: String,
    pub key: SdkKey,
}

pub fn new_key(kind: SecretKind, expires_at_ms: i64) -> TestKey {
    let new = vexil_keys::generate(kind);
    let kind = match kind {
        SecretKind::Client => "client",
        _ => "server",
    };
    TestKey {
        key: SdkKey {
            id: new.id.clone(),
            kind: kind.into(),
            secret_sha256: new.sha256.to_vec(),
            expires_at_ms,
        },
        secret: new.secret,
    }
}

/// What `flag` evaluates to for a context in environment `id`, if the cache has the environment and the
/// flag is a boolean it serves.
pub fn bool_value(cache: &Cache, id: i64, flag: &str, user: &str) -> Option<bool> {
    let state = cache.environment(id)?;
    let detail = vexil_eval::evaluate(state.compiled(), flag, &vexil_model::Context::new(user));
    detail.value.and_then(Value::as_bool)
}

pub fn revision(cache: &Cache, id: i64) -> Option<u64> {
    cache.environment(id).map(|state| state.revision())
}

//! Building snapshots, events and keys by hand; a control plane (store + relay) for the sync tests.

use std::sync::LazyLock;
use std::time::Duration;

use prost::Message;
use serde_json::{Value, json};
use tokio::sync::watch;
use vexil_bus::Bus;
use vexil_control_api::relay::relay_once;
use vexil_control_api::state::Metrics;
use vexil_dataplane::{BusSync, Cache};
use vexil_model::{EnvironmentKey, Flag, FlagKey, ProjectKey};
use vexil_proto::{ChangeEvent, ChangeKind, EnvironmentSnapshot, ItemKind, SdkKey};
use vexil_store::secrets::{self, SecretKind};
use vexil_store::{Actor, NewSdkKeys, Store};
use vexil_testkit::eventually;

/// How long a replica may take to catch up. Generous: a 2-core machine may be compiling meanwhile.
pub const DEADLINE: Duration = Duration::from_secs(20);

static LOGGING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        vexil_telemetry::init_logging("pretty", "info,vexil_dataplane=debug");
    }
});

pub fn init_logging() {
    LazyLock::force(&LOGGING);
}

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
    let new = secrets::generate(kind);
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

/// A control plane: a store on a fresh PostgreSQL database and the relay function.
pub struct ControlPlane {
    pub store: Store,
    metrics: Metrics,
}

impl ControlPlane {
    pub async fn start() -> ControlPlane {
        init_logging();
        let database = vexil_testkit::TestDatabase::create().await;
        let store = Store::connect(database.url()).await.expect("connect to the test database");
        store.migrate().await.expect("migrate");
        ControlPlane { store, metrics: Metrics::new() }
    }

    /// Creates project `shop` (development, production) and the boolean flag `checkout` (off).
    pub async fn with_project(&self) -> Vec<NewSdkKeys> {
        let (_, keys) =
            self.store.create_project(&actor(), &project(), "Shop", "").await.expect("create project");
        self.store.create_flag(&actor(), &project(), boolean_flag("checkout")).await.expect("create flag");
        keys
    }

    pub async fn toggle(&self, environment: &str, on: bool) {
        self.store
            .toggle_flag(&actor(), &project(), &flag_key("checkout"), &env(environment), on)
            .await
            .expect("toggle the flag");
    }

    /// One relay pass; how many events it delivered.
    pub async fn relay(&self, bus: &Bus) -> anyhow::Result<usize> {
        relay_once(&self.store, bus, &self.metrics).await
    }

    /// The id and current revision of an environment of `shop`.
    pub async fn environment(&self, key: &str) -> (i64, u64) {
        let record = self.store.get_environment(&project(), &env(key)).await.expect("the environment");
        (record.id, record.revision)
    }
}

pub fn actor() -> Actor {
    Actor::system("test")
}

pub fn project() -> ProjectKey {
    ProjectKey::parse("shop").unwrap()
}

pub fn env(key: &str) -> EnvironmentKey {
    EnvironmentKey::parse(key).unwrap()
}

pub fn flag_key(key: &str) -> FlagKey {
    FlagKey::parse(key).unwrap()
}

pub fn boolean_flag(key: &str) -> Flag {
    let spec = json!({"key": key, "kind": "boolean", "variations": [{"value": true}, {"value": false}]});
    Flag::parse(serde_json::from_value(spec).unwrap()).unwrap()
}

/// A running `BusSync`; stops it when dropped.
pub struct Replica {
    pub cache: Cache,
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Replica {
    pub fn start(bus: Bus, store: Option<Store>, refresh_every: Duration) -> Replica {
        init_logging();
        let cache = Cache::new();
        let (shutdown, stop) = watch::channel(false);
        let mut sync = BusSync::new(cache.clone(), bus).refresh_every(refresh_every);
        if let Some(store) = store {
            sync = sync.with_store(store);
        }
        let task = tokio::spawn(sync.run(stop));
        Replica { cache, shutdown, task: Some(task) }
    }

    /// Waits until the cache is ready and environment `id` is at `revision`.
    pub async fn reaches(&self, id: i64, revision: u64) -> bool {
        eventually(DEADLINE, || async {
            self.cache.ready() && self::revision(&self.cache, id) == Some(revision)
        })
        .await
    }

    /// Stops the sync task and waits for it to end.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("the sync stops on shutdown")
                .expect("no panic");
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

//! A control plane (a store on a fresh PostgreSQL database, and one pass of the change relay at a time)
//! and replicas (`BusSync` over a bus) for the data-plane sync tests.

use std::sync::LazyLock;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use vexil::DatabaseSnapshots;
use vexil_bus::Bus;
use vexil_dataplane::{BusSync, Cache};
use vexil_model::{EnvironmentKey, Flag, FlagKey, ProjectKey};
use vexil_outbox::relay_once;
use vexil_store::{Actor, NewSdkKeys, Store};
use vexil_telemetry::Registry;
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
    metrics: vexil_outbox::Metrics,
}

impl ControlPlane {
    pub async fn start() -> ControlPlane {
        init_logging();
        let database = vexil_testkit::TestDatabase::create().await;
        let store = Store::connect(database.url()).await.expect("connect to the test database");
        store.migrate().await.expect("migrate");
        ControlPlane { store, metrics: vexil_outbox::Metrics::register(&Registry::default()) }
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
        Ok(relay_once(&self.store, bus, &self.metrics).await?)
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
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Replica {
    pub fn start(bus: Bus, store: Option<Store>, refresh_every: Duration) -> Replica {
        init_logging();
        let cache = Cache::new();
        let shutdown = CancellationToken::new();
        let mut sync = BusSync::new(cache.clone(), bus).refresh_every(refresh_every);
        if let Some(store) = store {
            sync = sync.with_database(DatabaseSnapshots::new(store));
        }
        let task = tokio::spawn(sync.run(shutdown.clone()));
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
        self.shutdown.cancel();
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
        self.shutdown.cancel();
    }
}

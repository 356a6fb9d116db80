//! `spawn_app()`: the evaluation service on a free port, serving a real control plane's data.
//!
//! The control plane is a `vexil_store::Store` on a fresh PostgreSQL database: changes go through the
//! store (as the management API makes them), and the cache is loaded straight from the store's
//! environment snapshots (`cache.load(&store.environment_snapshot(id))`) — the same bytes the relay
//! publishes, without the relay and the bus in between (those are `vexil-dataplane`'s tests).

use std::sync::{Arc, LazyLock};

use reqwest::{Method, Response};
use serde_json::{Value, json};
use vexil_bus::Bus;
use vexil_config::Settings;
use vexil_dataplane::Cache;
use vexil_evaluation::{Application, EvaluationState};
use vexil_model::{EnvironmentKey, Flag, FlagConfigSpec, FlagKey, ProjectKey, Segment};
use vexil_store::{Actor, Store};

static LOGGING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        vexil_telemetry::init_logging("pretty", "info,vexil_evaluation=debug");
    }
});

/// A running evaluation service over project `shop`, and what a test needs to drive it.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub address: String,
    pub client: reqwest::Client,
    pub store: Store,
    pub cache: Cache,
    pub bus: Bus,
    /// `production`'s id and keys.
    pub environment_id: i64,
    pub server_key: String,
    pub client_key: String,
    /// `development`'s server key (another environment of the same project).
    pub development_server_key: String,
}

/// How to vary the service's settings.
#[derive(Clone, Default)]
pub struct Options {
    /// `dataplane.rate_limit_per_second` (0 = unlimited, the default here).
    pub rate_limit_per_second: u32,
    /// `dataplane.ofrep_stream_url`.
    pub ofrep_stream_url: String,
    /// `dataplane.max_body_bytes`, when not the default.
    pub max_body_bytes: Option<usize>,
    /// Leave the cache not ready (as before the first sync).
    pub not_ready: bool,
}

/// The service with the fixture flags and no rate limit.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    LazyLock::force(&LOGGING);
    let database = vexil_testkit::TestDatabase::create().await;
    let store = Store::connect(database.url()).await.expect("connect");
    store.migrate().await.expect("migrate");
    let (_, keys) = store.create_project(&actor(), &project(), "Shop", "").await.expect("create project");
    let keys_of =
        |env: &str| keys.iter().find(|k| k.environment.as_str() == env).expect("keys of the environment");
    let (server_key, client_key) =
        (keys_of("production").server.clone(), keys_of("production").client.clone());
    let development_server_key = keys_of("development").server.clone();
    create_fixtures(&store).await;

    let mut settings = Settings::default();
    settings.server.port = 0;
    settings.database.url = database.url().to_owned().into();
    settings.dataplane.rate_limit_per_second = options.rate_limit_per_second;
    settings.dataplane.ofrep_stream_url = options.ofrep_stream_url.clone();
    if let Some(max) = options.max_body_bytes {
        settings.dataplane.max_body_bytes = max;
    }
    let settings = Arc::new(settings);
    let bus = Bus::in_process();
    let cache = Cache::new();
    let environment_id = store.get_environment(&project(), &env("production")).await.expect("production").id;

    let app_settings = Settings::clone(&settings);
    let state = EvaluationState::new(settings, bus.clone());
    let application = Application::build(app_settings, cache.clone(), state).await.expect("build");
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());

    let app = TestApp {
        address,
        client: reqwest::Client::new(),
        store,
        cache,
        bus,
        environment_id,
        server_key,
        client_key,
        development_server_key,
    };
    if !options.not_ready {
        app.load_snapshots().await;
        app.cache.mark_ready();
    }
    app
}

impl TestApp {
    /// Loads every environment's current snapshot from the store into the cache (what a replica's sync
    /// does after each change).
    pub async fn load_snapshots(&self) {
        for id in self.store.environment_ids().await.expect("environment ids") {
            let snapshot = self.store.environment_snapshot(id).await.expect("snapshot");
            self.cache.load(&snapshot).expect("the snapshot loads");
        }
    }

    /// Changes a flag's production configuration through the store, and lets the cache catch up.
    pub async fn configure(&self, flag: &str, config: Value) {
        put_config(&self.store, flag, "production", config).await;
        self.load_snapshots().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// `method path` with `key` as a Bearer token and an optional JSON body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request")
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> Response {
        self.send(Method::POST, path, Some(key), Some(body)).await
    }

    pub async fn get(&self, path: &str, key: &str) -> Response {
        self.send(Method::GET, path, Some(key), None).await
    }

    /// `POST /ofrep/v1/evaluate/flags/{flag}` with this context.
    pub async fn ofrep(&self, flag: &str, key: &str, context: Value) -> Response {
        self.post(&format!("/ofrep/v1/evaluate/flags/{flag}"), key, &json!({"context": context})).await
    }
}

/// The body of a problem+json response, checking its content type.
pub async fn problem(response: Response) -> Value {
    assert_eq!(
        content_type(&response).as_deref(),
        Some("application/problem+json"),
        "status {}",
        response.status()
    );
    response.json().await.expect("a problem document")
}

/// The body of an application/json response, checking its content type.
pub async fn json_body(response: Response) -> Value {
    assert_eq!(content_type(&response).as_deref(), Some("application/json"), "status {}", response.status());
    response.json().await.expect("a JSON body")
}

pub fn content_type(response: &Response) -> Option<String> {
    response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned())
}

pub fn header(response: &Response, name: &str) -> Option<String> {
    response.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
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

/// The fixture flags, by what they exercise. Every flag is `client_side` except `server-only`.
pub mod flags {
    /// boolean, on, no targets or rules: `true` ("on"), STATIC.
    pub const BOOLEAN: &str = "bool-flag";
    /// string, on, static: `"green"`.
    pub const STRING: &str = "string-flag";
    /// number, on, static: `42`.
    pub const INTEGER: &str = "int-flag";
    /// number, on, static: `3.0`, which must stay a float.
    pub const FLOAT: &str = "float-flag";
    /// json, on, static: `{"color": "red", "size": 3}`.
    pub const OBJECT: &str = "object-flag";
    /// boolean, off, off variation `false` ("off"): DISABLED.
    pub const DISABLED: &str = "disabled-flag";
    /// boolean, off, no off variation: the caller's default.
    pub const OFF_NO_VARIATION: &str = "off-no-variation";
    /// string: `"beta"` for target `vip-user` and for rule `germany` (country DE), else `"stable"`.
    pub const TARGETED: &str = "targeted-flag";
    /// boolean, fallthrough rollout 50/50 by targetingKey: SPLIT, or TARGETING_KEY_MISSING without a key.
    pub const ROLLOUT: &str = "rollout-flag";
    /// boolean, not client-side, with rule `secret-rule` (email ends with @example.com): `true`.
    pub const SERVER_ONLY: &str = "server-only";
    /// boolean, prerequisite `disabled-flag` serving variation 0 (it never does): off variation `false`.
    pub const PREREQUISITE: &str = "prereq-flag";
    /// string, in segment `beta-testers` by rule: `"in"` for segment members, `"out"` otherwise.
    pub const SEGMENTED: &str = "segment-flag";
}

async fn create_fixtures(store: &Store) {
    let boolean = json!([{"value": true, "name": "on"}, {"value": false, "name": "off"}]);
    let segment = serde_json::from_value(json!({"key": "beta-testers", "included": ["tester-1"]})).unwrap();
    store
        .create_segment(&actor(), &project(), &env("production"), Segment::parse(segment).unwrap())
        .await
        .expect("create segment");
    let fixtures = [
        (
            flags::BOOLEAN,
            "boolean",
            boolean.clone(),
            true,
            json!({"on": true, "off_variation": 1, "fallthrough": {"variation": 0}}),
        ),
        (
            flags::STRING,
            "string",
            json!([{"value": "blue", "name": "blue"}, {"value": "green", "name": "green"}]),
            true,
            json!({"on": true, "fallthrough": {"variation": 1}}),
        ),
        (
            flags::INTEGER,
            "number",
            json!([{"value": 42}, {"value": 7}]),
            true,
            json!({"on": true, "fallthrough": {"variation": 0}}),
        ),
        (
            flags::FLOAT,
            "number",
            json!([{"value": 3.0, "name": "three"}, {"value": 2.5}]),
            true,
            json!({"on": true, "fallthrough": {"variation": 0}}),
        ),
        (
            flags::OBJECT,
            "json",
            json!([{"value": {"color": "red", "size": 3}, "name": "red"}, {"value": {}}]),
            true,
            json!({"on": true, "fallthrough": {"variation": 0}}),
        ),
        (
            flags::DISABLED,
            "boolean",
            boolean.clone(),
            true,
            json!({"on": false, "off_variation": 1, "fallthrough": {"variation": 0}}),
        ),
        (
            flags::OFF_NO_VARIATION,
            "boolean",
            boolean.clone(),
            true,
            json!({"on": false, "fallthrough": {"variation": 0}}),
        ),
        (
            flags::TARGETED,
            "string",
            json!([{"value": "beta", "name": "beta"}, {"value": "stable", "name": "stable"}]),
            true,
            json!({"on": true, "targets": [{"variation": 0, "values": ["vip-user"]}],
                "rules": [{"id": "germany", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}], "serve": {"variation": 0}}],
                "fallthrough": {"variation": 1}}),
        ),
        (
            flags::ROLLOUT,
            "boolean",
            boolean.clone(),
            true,
            json!({"on": true, "fallthrough": {"rollout": {"weights": [{"variation": 0, "weight": 50000}, {"variation": 1, "weight": 50000}]}}}),
        ),
        (
            flags::SERVER_ONLY,
            "boolean",
            boolean.clone(),
            false,
            json!({"on": true, "rules": [{"id": "secret-rule", "clauses": [{"attribute": "email", "op": "ends_with", "values": ["@example.com"]}],
                "serve": {"variation": 0}}], "fallthrough": {"variation": 0}}),
        ),
        (
            flags::PREREQUISITE,
            "boolean",
            boolean.clone(),
            true,
            json!({"on": true, "off_variation": 1, "prerequisites": [{"key": flags::DISABLED, "variation": 0}], "fallthrough": {"variation": 0}}),
        ),
        (
            flags::SEGMENTED,
            "string",
            json!([{"value": "in"}, {"value": "out"}]),
            true,
            json!({"on": true, "rules": [{"id": "members", "clauses": [{"attribute": "targetingKey", "op": "segment_match", "values": ["beta-testers"]}],
                "serve": {"variation": 0}}], "fallthrough": {"variation": 1}}),
        ),
    ];
    for (key, kind, variations, client_side, config) in fixtures {
        let spec = json!({"key": key, "kind": kind, "variations": variations, "client_side": client_side});
        let flag = Flag::parse(serde_json::from_value(spec).unwrap()).unwrap();
        store.create_flag(&actor(), &project(), flag).await.expect("create flag");
        put_config(store, key, "production", config).await;
    }
}

async fn put_config(store: &Store, flag: &str, environment: &str, config: Value) {
    let spec: FlagConfigSpec = serde_json::from_value(config).expect("a configuration");
    store
        .put_flag_config(&actor(), &project(), &FlagKey::parse(flag).unwrap(), &env(environment), spec, None)
        .await
        .expect("configure the flag");
}

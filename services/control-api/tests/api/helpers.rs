//! `spawn_app()`: the whole control plane on a free port, over a fresh database.

use std::sync::LazyLock;

use reqwest::{Method, Response};
use serde_json::Value;
use vexil_bus::Bus;
use vexil_config::Settings;
use vexil_control_api::Application;
use vexil_store::Store;

static LOGGING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        vexil_telemetry::init_logging("pretty", "info");
    }
});

/// A running control plane and a client for it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// An unscoped admin token.
    pub admin: String,
    pub store: Store,
    pub database_url: String,
}

/// The control plane on a fresh PostgreSQL database with an in-process bus.
pub async fn spawn_app() -> TestApp {
    spawn_app_with_bus(Bus::in_process()).await
}

/// The same, with the given bus.
pub async fn spawn_app_with_bus(bus: Bus) -> TestApp {
    LazyLock::force(&LOGGING);
    let database = vexil_testkit::TestDatabase::create().await;
    let store = Store::connect(database.url()).await.expect("connect");
    store.migrate().await.expect("migrate");
    let admin = format!("test-admin-{}", uuid::Uuid::new_v4().simple());
    store.ensure_bootstrap_token(&admin).await.expect("bootstrap token");
    let mut settings = Settings::default();
    settings.server.port = 0;
    settings.database.url = database.url().to_owned().into();
    let application = Application::build(settings, store.clone(), bus).await.expect("build");
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    TestApp { address, client: reqwest::Client::new(), admin, store, database_url: database.url().to_owned() }
}

impl TestApp {
    /// Sends `method path` with an optional JSON body and token.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self.client.request(method, format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path, Some(&self.admin), None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path, Some(&self.admin), Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Response {
        self.request(Method::PUT, path, Some(&self.admin), Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Response {
        self.request(Method::PATCH, path, Some(&self.admin), Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path, Some(&self.admin), None).await
    }

    /// Creates project `shop` and a boolean flag `checkout`; returns the production keys' JSON.
    pub async fn with_flag(&self) -> Value {
        let created =
            self.post("/api/v1/projects", &serde_json::json!({"key": "shop", "name": "Shop"})).await;
        assert_eq!(created.status(), 201);
        let body: Value = created.json().await.unwrap();
        let flag = self
            .post(
                "/api/v1/projects/shop/flags",
                &serde_json::json!({"key": "checkout", "kind": "boolean",
                "variations": [{"value": true, "name": "on"}, {"value": false, "name": "off"}]}),
            )
            .await;
        assert_eq!(flag.status(), 201);
        body
    }
}

/// The body of a problem+json response, checking its content type.
pub async fn problem(response: Response) -> Value {
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(content_type.as_deref(), Some("application/problem+json"), "status {}", response.status());
    response.json().await.unwrap()
}

/// A second control plane (HTTP server and change relay) on `app`'s database, with its own bus, as
/// another replica of the deployment would be; returns its address.
pub async fn spawn_replica(app: &TestApp, bus: Bus) -> String {
    let store = Store::connect(&app.database_url).await.expect("connect");
    let mut settings = Settings::default();
    settings.server.port = 0;
    settings.database.url = app.database_url.clone().into();
    let application = Application::build(settings, store, bus).await.expect("build");
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    address
}

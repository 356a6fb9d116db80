//! `vexil standalone` as a child process: the real binary on a fresh data directory and a free
//! loopback port, with a known admin token (`VEXIL_BOOTSTRAP_TOKEN`) so that a test can create what it
//! needs through `/api/v1` at once.
//!
//! The child is a [`cluster::Process`](super::cluster::Process): killed (and reaped) on drop, also when
//! a test fails, its output in a log file in the data directory. The directory is removed after a
//! passing test and kept (and named on stderr) after a failing one, or when `VEXIL_TEST_KEEP_LOGS` is
//! set.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::cluster::{ADMIN, Process, free_port};

/// The admin token every standalone started here accepts.
pub const ADMIN_TOKEN: &str = ADMIN;

/// A running (or stopped, to be started again) `vexil standalone`.
pub struct Standalone {
    process: Process,
    dir: PathBuf,
    http: reqwest::Client,
}

/// An environment's SDK keys.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The server key (full configurations).
    pub server: String,
    /// The client key (evaluated client-side flags).
    pub client: String,
}

impl Standalone {
    /// Starts a fresh instance and waits until it is ready.
    pub async fn start() -> Standalone {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "vexil-standalone-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        // A directory left by an earlier run with the same process id would hold its database.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the test directory");
        let data = dir.join("data");
        let port = free_port();
        let args =
            ["--data-dir", data.to_str().expect("a UTF-8 temporary directory"), "--port", &port.to_string()];
        let mut process = Process::spawn_on(port, "standalone", &args, &[], &dir);
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        process.wait_ready(&http).await;
        Standalone { process, dir, http }
    }

    /// Base URL (`http://127.0.0.1:<port>`): the management API under `/api/v1`, the data plane at
    /// the root.
    pub fn url(&self) -> String {
        self.process.url()
    }

    /// Kills the process; the data stays for [`start_again`](Self::start_again).
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Starts the process again on the same data and port, and waits until it is ready.
    pub async fn start_again(&mut self) {
        self.process.restart(&self.http).await;
    }

    /// A management API request (`path` relative to `/api/v1`) with the admin token.
    pub async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut request =
            self.http.request(method, format!("{}/api/v1{path}", self.url())).bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap_or_else(|error| panic!("{path}: {error}"))
    }

    /// Like [`api`](Self::api), asserting a 2xx answer; returns its JSON body (`null` if none).
    pub async fn api_ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let response = self.api(method.clone(), path, body).await;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Creates a project and returns its `production` environment's keys.
    pub async fn create_project(&self, key: &str) -> Keys {
        let project = self.api_ok(reqwest::Method::POST, "/projects", Some(json!({"key": key}))).await;
        let production = project["environments"]
            .as_array()
            .and_then(|environments| environments.iter().find(|e| e["environment"] == "production"))
            .unwrap_or_else(|| panic!("no production environment in {project}"));
        let key = |name: &str| {
            production[name].as_str().unwrap_or_else(|| panic!("no {name} in {production}")).to_owned()
        };
        Keys { server: key("server_key"), client: key("client_key") }
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        self.process.kill();
        if std::thread::panicking() || std::env::var_os("VEXIL_TEST_KEEP_LOGS").is_some() {
            eprintln!("vexil standalone data and log kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

//! The planes as separate processes of the real `vexil` binary: one `control-api --migrate`, N
//! `streaming`, M `evaluation`, over a fresh PostgreSQL database and a private Redis.
//!
//! Every child is killed by [`Process`]'s `Drop`, also when a test fails; its output goes to a log file
//! that is named on stderr when the test panics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use vexil_testkit::{RedisServer, TestDatabase};

/// How long a process may take to answer `/readyz` (a 2-core machine may be busy compiling).
pub const READY_DEADLINE: Duration = Duration::from_secs(30);
/// How long a change may take to reach a replica, or the replicas to converge after an outage.
pub const CONVERGE_DEADLINE: Duration = Duration::from_secs(30);
/// How long to wait for the next SSE event.
pub const EVENT_DEADLINE: Duration = Duration::from_secs(15);
/// The admin token every control API of these tests accepts at once.
pub const ADMIN: &str = "multi-process-admin-token";
/// The project each test creates.
pub const PROJECT: &str = "mp";

/// A child process of the `vexil` binary on a fixed port, killed (and reaped) on drop. It can be killed
/// and started again on the same port ([`kill`](Self::kill), [`restart`](Self::restart)); its log file
/// keeps every run's output.
pub struct Process {
    pub role: &'static str,
    pub port: u16,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    dir: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    /// Where the current launch's output starts in the log.
    log_from: u64,
    /// Whether a port taken by someone else may move the process to another free port: until it has
    /// been ready once (a restart keeps its port).
    movable: bool,
}

impl Process {
    /// Starts `vexil <role> <extra>` on a free port, with only the settings in `env`.
    pub fn spawn(role: &'static str, extra: &[&str], env: &[(&str, String)], dir: &Path) -> Process {
        let mut process = Process::spawn_on(free_port(), role, extra, env, dir);
        process.movable = true;
        process
    }

    /// Starts `vexil <role> <extra>` on `port`.
    pub fn spawn_on(
        port: u16,
        role: &'static str,
        extra: &[&str],
        env: &[(&str, String)],
        dir: &Path,
    ) -> Process {
        let mut process = Process {
            role,
            port,
            extra: extra.iter().map(|arg| (*arg).to_owned()).collect(),
            env: env.iter().map(|(name, value)| ((*name).to_owned(), value.clone())).collect(),
            dir: dir.to_owned(),
            child: None,
            log: dir.join(format!("{role}-{port}.log")),
            log_from: 0,
            movable: false,
        };
        process.launch();
        process
    }

    fn launch(&mut self) {
        self.log_from = std::fs::metadata(&self.log).map_or(0, |metadata| metadata.len());
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("opening the log file");
        let err = out.try_clone().expect("cloning the log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_vexil"));
        command.arg(self.role).args(&self.extra);
        // Only the settings given here: nothing inherited, no config files.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("VEXIL") {
                command.env_remove(name);
            }
        }
        command
            .env("VEXIL_CONFIG_DIR", self.dir.join("no-config"))
            .env("VEXIL__SERVER__HOST", "127.0.0.1")
            .env("VEXIL__SERVER__PORT", self.port.to_string())
            .env("VEXIL__LOG__FORMAT", "json")
            .env("VEXIL__LOG__LEVEL", "info")
            .env("VEXIL_BOOTSTRAP_TOKEN", ADMIN);
        for (name, value) in &self.env {
            command.env(name, value);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|error| panic!("spawning vexil {}: {error}", self.role));
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Polls `/readyz` until 200, failing early (with the log) if the process exits.
    ///
    /// Only once this launch has logged that it is listening: until then, whatever answers on the port
    /// is another process (one of a test running in parallel that took the same free port first). A
    /// process that finds its free port taken moves to another one (until it has been ready once).
    pub async fn wait_ready(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            let child = self.child.as_mut().unwrap_or_else(|| panic!("vexil {} was killed", self.role));
            if let Some(status) = child.try_wait().expect("polling the child") {
                if self.movable && self.this_launch_log().contains("Address already in use") {
                    self.port = free_port();
                    self.log = self.dir.join(format!("{}-{}.log", self.role, self.port));
                    self.launch();
                    continue;
                }
                panic!("vexil {} exited with {status}:\n{}", self.role, self.log_text());
            }
            // `"message":"listening…"` in the JSON log: the server has bound its port.
            if self.this_launch_log().contains("\"listening")
                && let Ok(response) = http.get(format!("{}/readyz", self.url())).send().await
                && response.status() == 200
            {
                self.movable = false;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "vexil {} not ready in {READY_DEADLINE:?}:\n{}",
                self.role,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process (SIGKILL) and reaps it; nothing happens if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same port (killing it first if it runs) and waits until ready.
    pub async fn restart(&mut self, http: &reqwest::Client) {
        self.kill();
        self.launch();
        self.wait_ready(http).await;
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What the current launch has logged so far.
    fn this_launch_log(&self) -> String {
        let log = std::fs::read(&self.log).unwrap_or_default();
        let from = usize::try_from(self.log_from).unwrap_or(usize::MAX).min(log.len());
        String::from_utf8_lossy(&log[from..]).into_owned()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("vexil {} (port {}) log: {}", self.role, self.port, self.log.display());
        }
    }
}

/// A free loopback port. Another process may take it before the child binds it: the readiness wait
/// then moves the child to another port (see [`Process::wait_ready`]).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("binding a probe port").local_addr().unwrap().port()
}

/// The whole deployment: database, Redis, control API, streaming and evaluation replicas.
pub struct Cluster {
    pub http: reqwest::Client,
    /// Server key of the project's production environment.
    pub key: String,
    pub control: Process,
    pub streaming: Vec<Process>,
    pub evaluation: Vec<Process>,
    pub redis: RedisServer,
    database: Option<TestDatabase>,
    /// The children's logs: removed by [`Cluster::stop`] (unless `VEXIL_TEST_KEEP_LOGS` is set), kept
    /// (and named on stderr) when a test fails.
    dir: PathBuf,
}

impl Cluster {
    /// Two streaming and two evaluation replicas, default settings.
    pub async fn start() -> Cluster {
        Cluster::start_with(2, 2, &[]).await
    }

    /// `streaming` and `evaluation` replicas; `settings` (e.g. `VEXIL__DATAPLANE__HEARTBEAT_SECONDS`) go
    /// to every process.
    pub async fn start_with(streaming: usize, evaluation: usize, settings: &[(&str, String)]) -> Cluster {
        let started = Instant::now();
        let database = TestDatabase::create().await;
        let redis = RedisServer::start();
        let dir = std::env::temp_dir().join(format!(
            "vexil-multi-process-{}-{}",
            std::process::id(),
            database.name()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut env =
            vec![("VEXIL__DATABASE__URL", database.url().to_owned()), ("VEXIL__BUS__URL", redis.url())];
        env.extend(settings.iter().cloned());
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();

        let mut control = Process::spawn("control-api", &["--migrate"], &env, &dir);
        control.wait_ready(&http).await;
        let project = http
            .post(format!("{}/api/v1/projects", control.url()))
            .bearer_auth(ADMIN)
            .json(&json!({"key": PROJECT}))
            .send()
            .await
            .unwrap();
        assert_eq!(project.status(), 201, "creating the project");
        let project: Value = project.json().await.unwrap();
        let key = project["environments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["environment"] == "production")
            .and_then(|e| e["server_key"].as_str())
            .unwrap_or_else(|| panic!("no production server key in {project}"))
            .to_owned();

        let mut streaming: Vec<Process> =
            (0..streaming).map(|_| Process::spawn("streaming", &[], &env, &dir)).collect();
        let mut evaluation: Vec<Process> =
            (0..evaluation).map(|_| Process::spawn("evaluation", &[], &env, &dir)).collect();
        for process in streaming.iter_mut().chain(evaluation.iter_mut()) {
            process.wait_ready(&http).await;
        }
        eprintln!("cluster ready in {:?}", started.elapsed());
        Cluster { http, key, control, streaming, evaluation, redis, database: Some(database), dir }
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self
            .http
            .request(method, format!("{}/api/v1/projects/{PROJECT}{path}", self.control.url()))
            .bearer_auth(ADMIN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap_or_else(|error| panic!("{path}: {error}"))
    }

    /// Creates a boolean flag (`on`/`off` variations; off in every environment).
    pub async fn create_flag(&self, key: &str) {
        let response = self
            .admin(
                reqwest::Method::POST,
                "/flags",
                Some(json!({"key": key, "name": key, "kind": "boolean",
                    "variations": [{"value": true, "name": "on"}, {"value": false, "name": "off"}]})),
            )
            .await;
        assert_eq!(
            response.status(),
            201,
            "creating flag {key}: {}",
            response.text().await.unwrap_or_default()
        );
    }

    /// Turns a flag on or off in production.
    pub async fn toggle(&self, flag: &str, on: bool) -> reqwest::StatusCode {
        self.admin(
            reqwest::Method::POST,
            &format!("/flags/{flag}/environments/production/toggle"),
            Some(json!({"on": on})),
        )
        .await
        .status()
    }

    /// The production environment's revision, as the control API has it.
    pub async fn revision(&self) -> u64 {
        let environment: Value =
            self.admin(reqwest::Method::GET, "/environments/production", None).await.json().await.unwrap();
        environment["revision"].as_u64().unwrap_or_else(|| panic!("no revision in {environment}"))
    }

    /// The control API's `vexil_relay_publish_failures_total`.
    pub async fn relay_failures(&self) -> u64 {
        let metrics = self
            .http
            .get(format!("{}/metrics", self.control.url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("vexil_relay_publish_failures_total "))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .map_or(0, |value| value as u64)
    }

    /// `GET /v1/flags` on an evaluation replica: (status, ETag, body).
    pub async fn flags(&self, replica: usize, if_none_match: Option<&str>) -> (u16, String, Value) {
        let mut request =
            self.http.get(format!("{}/v1/flags", self.evaluation[replica].url())).bearer_auth(&self.key);
        if let Some(tag) = if_none_match {
            request = request.header("If-None-Match", tag);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let etag = response.headers().get("etag").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let body = if status == 200 { response.json().await.unwrap() } else { Value::Null };
        (status, etag, body)
    }

    /// `POST /v1/evaluate` of one flag for one user on an evaluation replica: (revision, value).
    pub async fn evaluate(&self, replica: usize, flag: &str) -> (u64, Value) {
        let body: Value = self
            .http
            .post(format!("{}/v1/evaluate", self.evaluation[replica].url()))
            .bearer_auth(&self.key)
            .json(&json!({"context": {"targetingKey": "user-1"}, "flags": [flag]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (body["revision"].as_u64().unwrap_or(0), body["flags"][flag]["value"].clone())
    }

    /// A `GET /v1/stream` client of streaming replica `replica`.
    pub async fn stream(&self, replica: usize, last_event_id: Option<u64>) -> Sse {
        Sse::connect(&self.streaming[replica].url(), &self.key, last_event_id).await
    }

    /// Kills every process: control API, streaming and evaluation replicas.
    pub fn kill_services(&mut self) {
        self.control.kill();
        for process in self.streaming.iter_mut().chain(self.evaluation.iter_mut()) {
            process.kill();
        }
    }

    pub async fn stop(mut self) {
        let database = self.database.take();
        let Cluster { control, streaming, evaluation, dir, .. } = self;
        // Kill the children before dropping the database they are connected to.
        drop((control, streaming, evaluation));
        if let Some(database) = database {
            database.drop_database().await;
        }
        if std::env::var_os("VEXIL_TEST_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(dir);
        } else {
            eprintln!("logs kept in {}", dir.display());
        }
    }
}

/// One SSE event.
#[derive(Debug, Clone)]
pub struct Event {
    pub event: String,
    pub id: u64,
    pub data: Value,
}

/// A `GET /v1/stream` read with reqwest's streaming body.
pub struct Sse {
    body: BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buffer: String,
}

impl Sse {
    pub async fn connect(base: &str, key: &str, last_event_id: Option<u64>) -> Sse {
        // No overall timeout on a stream: reads are bounded by `next` instead.
        let client = reqwest::Client::new();
        let mut request = client.get(format!("{base}/v1/stream")).bearer_auth(key);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.expect("opening the stream");
        assert_eq!(response.status(), 200, "GET /v1/stream");
        Sse {
            body: response.bytes_stream().map(|chunk| chunk.map(|bytes| bytes.to_vec())).boxed(),
            buffer: String::new(),
        }
    }

    /// The next event, or `None` when the stream ended (or broke). Panics after [`EVENT_DEADLINE`].
    pub async fn next(&mut self) -> Option<Event> {
        tokio::time::timeout(EVENT_DEADLINE, self.next_inner())
            .await
            .expect("no SSE event within the deadline")
    }

    async fn next_inner(&mut self) -> Option<Event> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (None, None, String::new());
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        event = Some(value.trim().to_owned());
                    } else if let Some(value) = line.strip_prefix("id:") {
                        id = value.trim().parse::<u64>().ok();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.strip_prefix(' ').unwrap_or(value));
                    }
                }
                if let (Some(event), Some(id)) = (event, id) {
                    let data = serde_json::from_str(&data)
                        .unwrap_or_else(|e| panic!("event {event} {id}: {e}: {data}"));
                    return Some(Event { event, id, data });
                }
            }
            match self.body.next().await {
                Some(Ok(chunk)) => {
                    self.buffer.push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"))
                }
                Some(Err(_)) | None => return None,
            }
        }
    }
}

//! Issue 4: the planes as separate processes of the real `vexil` binary (one `control-api --migrate`,
//! two `streaming`, two `evaluation`) over a fresh PostgreSQL database and a private Redis, checking
//! DESIGN.md §7: changes reach every replica, a killed streaming replica's client resumes on the other
//! with `Last-Event-ID` without a missed change, and a Redis restart mid-burst loses nothing.
//!
//! Every child is killed by [`Process`]'s `Drop`, also when a test fails; its output goes to a log file
//! that is named on stderr when the test panics.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use vexil_testkit::{RedisServer, TestDatabase, eventually};

/// How long a process may take to answer `/readyz` (a 2-core machine may be busy compiling).
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// How long a change may take to reach a replica, or the replicas to converge after an outage.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(30);
/// How long to wait for the next SSE event.
const EVENT_DEADLINE: Duration = Duration::from_secs(15);
/// The admin token every control API of these tests accepts at once.
const ADMIN: &str = "multi-process-admin-token";
/// The project each test creates.
const PROJECT: &str = "mp";

/// A child process of the `vexil` binary, killed (and reaped) on drop.
struct Process {
    role: &'static str,
    port: u16,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(role: &'static str, extra: &[&str], env: &[(&str, String)], dir: &std::path::Path) -> Process {
        let port = free_port();
        let log = dir.join(format!("{role}-{port}.log"));
        let out = std::fs::File::create(&log).expect("creating the log file");
        let err = out.try_clone().expect("cloning the log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_vexil"));
        command.arg(role).args(extra);
        // Only the settings given here: nothing inherited, no config files.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("VEXIL") {
                command.env_remove(name);
            }
        }
        command
            .env("VEXIL_CONFIG_DIR", dir.join("no-config"))
            .env("VEXIL__SERVER__HOST", "127.0.0.1")
            .env("VEXIL__SERVER__PORT", port.to_string())
            .env("VEXIL__LOG__FORMAT", "json")
            .env("VEXIL__LOG__LEVEL", "info")
            .env("VEXIL_BOOTSTRAP_TOKEN", ADMIN);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|error| panic!("spawning vexil {role}: {error}"));
        Process { role, port, child, log }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Polls `/readyz` until 200, failing early (with the log) if the process exits.
    async fn wait_ready(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("polling the child") {
                panic!("vexil {} exited with {status}:\n{}", self.role, self.log_text());
            }
            if let Ok(response) = http.get(format!("{}/readyz", self.url())).send().await
                && response.status() == 200
            {
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

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("vexil {} (port {}) log: {}", self.role, self.port, self.log.display());
        }
    }
}

/// A free loopback port (another process may take it before the child binds it; the readiness wait
/// then fails with the child's log, which names the bind error).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("binding a probe port").local_addr().unwrap().port()
}

/// The whole deployment: database, Redis, control API, two streaming and two evaluation replicas.
struct Cluster {
    http: reqwest::Client,
    /// Server key of the project's production environment.
    key: String,
    control: Process,
    streaming: Vec<Option<Process>>,
    evaluation: Vec<Process>,
    redis: RedisServer,
    database: Option<TestDatabase>,
    /// The children's logs: removed by [`Cluster::stop`] (unless `VEXIL_TEST_KEEP_LOGS` is set), kept
    /// (and named on stderr) when a test fails.
    dir: PathBuf,
}

impl Cluster {
    async fn start() -> Cluster {
        let started = Instant::now();
        let database = TestDatabase::create().await;
        let redis = RedisServer::start();
        let dir = std::env::temp_dir().join(format!(
            "vexil-multi-process-{}-{}",
            std::process::id(),
            database.name()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let env = [("VEXIL__DATABASE__URL", database.url().to_owned()), ("VEXIL__BUS__URL", redis.url())];
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
            (0..2).map(|_| Process::spawn("streaming", &[], &env, &dir)).collect();
        let mut evaluation: Vec<Process> =
            (0..2).map(|_| Process::spawn("evaluation", &[], &env, &dir)).collect();
        for process in streaming.iter_mut().chain(evaluation.iter_mut()) {
            process.wait_ready(&http).await;
        }
        eprintln!("cluster ready in {:?}", started.elapsed());
        Cluster {
            http,
            key,
            control,
            streaming: streaming.into_iter().map(Some).collect(),
            evaluation,
            redis,
            database: Some(database),
            dir,
        }
    }

    fn streaming(&self, i: usize) -> &Process {
        self.streaming[i].as_ref().expect("that streaming replica was killed")
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self
            .http
            .request(method, format!("{}/api/v1/projects/{PROJECT}{path}", self.control.url()))
            .bearer_auth(ADMIN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap_or_else(|error| panic!("{path}: {error}"))
    }

    async fn create_flag(&self, key: &str) {
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

    async fn toggle(&self, flag: &str, on: bool) -> reqwest::StatusCode {
        self.admin(
            reqwest::Method::POST,
            &format!("/flags/{flag}/environments/production/toggle"),
            Some(json!({"on": on})),
        )
        .await
        .status()
    }

    /// The production environment's revision, as the control API has it.
    async fn revision(&self) -> u64 {
        let environment: Value =
            self.admin(reqwest::Method::GET, "/environments/production", None).await.json().await.unwrap();
        environment["revision"].as_u64().unwrap_or_else(|| panic!("no revision in {environment}"))
    }

    /// The control API's `vexil_relay_publish_failures_total`.
    async fn relay_failures(&self) -> u64 {
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
    async fn flags(&self, replica: usize, if_none_match: Option<&str>) -> (u16, String, Value) {
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
    async fn evaluate(&self, replica: usize, flag: &str) -> (u64, Value) {
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

    async fn stream(&self, replica: usize, last_event_id: Option<u64>) -> Sse {
        Sse::connect(&self.streaming(replica).url(), &self.key, last_event_id).await
    }

    async fn stop(mut self) {
        drop(std::mem::take(&mut self.streaming));
        let database = self.database.take();
        let Cluster { control, evaluation, dir, .. } = self;
        // Kill the children before dropping the database they are connected to.
        drop((control, evaluation));
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
struct Event {
    event: String,
    id: u64,
    data: Value,
}

/// A `GET /v1/stream` read with reqwest's streaming body.
struct Sse {
    body: BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buffer: String,
}

impl Sse {
    async fn connect(base: &str, key: &str, last_event_id: Option<u64>) -> Sse {
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
    async fn next(&mut self) -> Option<Event> {
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

fn flag_on(event: &Event) -> Option<bool> {
    event.data["config"]["on"].as_bool()
}

/// Test 1: a flag created and toggled through the control API reaches SSE clients on both streaming
/// replicas as patches with the environment's revisions, and both evaluation replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_reaches_every_replica_as_a_patch_with_the_revision() {
    let started = Instant::now();
    let cluster = Cluster::start().await;
    let revision0 = cluster.revision().await;

    let mut streams = [cluster.stream(0, None).await, cluster.stream(1, None).await];
    for (i, stream) in streams.iter_mut().enumerate() {
        let hydrate = stream.next().await.expect("a hydrate");
        assert_eq!(
            (hydrate.event.as_str(), hydrate.id),
            ("hydrate", revision0),
            "streaming {i}'s first event"
        );
    }
    let mut etags = Vec::new();
    for i in 0..2 {
        let (status, etag, body) = cluster.flags(i, None).await;
        assert_eq!((status, body["revision"].as_u64()), (200, Some(revision0)), "evaluation {i}");
        assert_eq!(etag, format!("\"{revision0}\""));
        etags.push(etag);
    }

    cluster.create_flag("checkout").await;
    let created = cluster.revision().await;
    assert_eq!(cluster.toggle("checkout", true).await, 200);
    let toggled = cluster.revision().await;
    assert_eq!((created, toggled), (revision0 + 1, revision0 + 2), "one revision per change");

    for (i, stream) in streams.iter_mut().enumerate() {
        let create = stream.next().await.expect("the create's patch");
        assert_eq!(
            (create.event.as_str(), create.id, create.data["key"].as_str()),
            ("patch", created, Some("checkout")),
            "streaming {i}"
        );
        assert_eq!(flag_on(&create), Some(false), "a new flag is off: {create:?}");
        let toggle = stream.next().await.expect("the toggle's patch");
        assert_eq!(
            (toggle.event.as_str(), toggle.id, toggle.data["key"].as_str()),
            ("patch", toggled, Some("checkout")),
            "streaming {i}"
        );
        assert_eq!(flag_on(&toggle), Some(true), "streaming {i}: {toggle:?}");
    }

    for (i, old) in etags.iter().enumerate() {
        let converged = eventually(CONVERGE_DEADLINE, || async {
            cluster.evaluate(i, "checkout").await == (toggled, json!(true))
        })
        .await;
        assert!(
            converged,
            "evaluation {i} serves {:?}, wanted ({toggled}, true)",
            cluster.evaluate(i, "checkout").await
        );
        let (status, etag, body) = cluster.flags(i, None).await;
        assert_eq!((status, body["revision"].as_u64()), (200, Some(toggled)), "evaluation {i}");
        assert_ne!(etag, *old, "evaluation {i}'s ETag moved");
        assert_eq!(etag, format!("\"{toggled}\""));
        assert_eq!(cluster.flags(i, Some(old)).await.0, 200, "the old tag is stale on evaluation {i}");
        assert_eq!(cluster.flags(i, Some(&etag)).await.0, 304, "the new tag is current on evaluation {i}");
    }
    cluster.stop().await;
    eprintln!("test 1 took {:?}", started.elapsed());
}

/// Test 2: a client on a streaming replica that is killed resumes on the other one with
/// `Last-Event-ID`, gets the changes made while it was away as patches (no hydrate), none missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_a_killed_replica_resumes_on_the_other_without_a_missed_change() {
    let started = Instant::now();
    let mut cluster = Cluster::start().await;
    for flag in ["a", "b"] {
        cluster.create_flag(flag).await;
    }
    let before = cluster.revision().await;

    // The client on replica 0; an observer on replica 1 says how far replica 1 has got.
    let mut client = cluster.stream(0, None).await;
    let mut observer = cluster.stream(1, None).await;
    let mut last = client.next().await.expect("a hydrate").id;
    let mut observed = observer.next().await.expect("a hydrate").id;
    while last < before {
        last = client.next().await.expect("a patch").id;
    }
    while observed < before {
        observed = observer.next().await.expect("a patch").id;
    }
    assert_eq!(cluster.toggle("a", true).await, 200);
    let event = client.next().await.expect("the live toggle");
    assert_eq!((event.event.as_str(), event.id, flag_on(&event)), ("patch", before + 1, Some(true)));
    last = event.id;

    // Kill the client's replica: its stream ends.
    drop(cluster.streaming[0].take());
    assert!(client.next().await.is_none(), "the stream of a killed replica ends");

    // Changes while the client is disconnected.
    let changes = [("b", true), ("a", false), ("b", false), ("a", true)];
    for (flag, on) in changes {
        assert_eq!(cluster.toggle(flag, on).await, 200);
    }
    let last_change = cluster.revision().await;
    assert_eq!(last_change, last + changes.len() as u64);
    // Resume once replica 1 holds them (it applies changes as they come; it has them when its
    // observer has seen them), as a reconnecting SDK would after its `retry` pause.
    while observed < last_change {
        observed = observer.next().await.expect("replica 1 gets the changes").id;
    }

    let mut resumed = cluster.stream(1, Some(last)).await;
    for (n, (flag, on)) in changes.iter().enumerate() {
        let event = resumed.next().await.expect("a replayed change");
        assert_eq!(event.event, "patch", "a resume sends no hydrate: {event:?}");
        assert_eq!(
            (event.id, event.data["key"].as_str(), flag_on(&event)),
            (last + 1 + n as u64, Some(*flag), Some(*on)),
            "change {n}"
        );
    }
    // And it is live afterwards.
    assert_eq!(cluster.toggle("b", true).await, 200);
    let event = resumed.next().await.expect("a live change after the resume");
    assert_eq!(
        (event.event.as_str(), event.id, event.data["key"].as_str()),
        ("patch", last_change + 1, Some("b"))
    );
    cluster.stop().await;
    eprintln!("test 2 took {:?}", started.elapsed());
}

/// Test 3: Redis stopped and restarted in the middle of a burst of toggles: every change is accepted,
/// and every replica converges on the environment's final revision and state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_converges_after_redis_restarts_in_a_burst() {
    let started = Instant::now();
    let mut cluster = Cluster::start().await;
    cluster.create_flag("burst").await;

    let mut on = false;
    let started_burst = Instant::now();
    let mut before_outage = 0;
    for n in 1..=30 {
        if n == 11 {
            before_outage = cluster.revision().await;
            cluster.redis.stop();
        }
        if n == 21 {
            // Keep Redis down until the relay has really failed to publish (the changes wait in the
            // database), and check that the data plane meanwhile serves what it has.
            let failed = eventually(CONVERGE_DEADLINE, || async { cluster.relay_failures().await > 0 }).await;
            assert!(failed, "the relay never reported a failed publish while Redis was down");
            for i in 0..2 {
                let (status, _, body) = cluster.flags(i, None).await;
                assert_eq!(status, 200, "evaluation {i} serves while Redis is down");
                let served = body["revision"].as_u64().unwrap();
                assert!(
                    served <= before_outage,
                    "evaluation {i} at {served}: nothing is delivered without Redis"
                );
            }
            eprintln!("Redis down for {:?}", started_burst.elapsed());
            cluster.redis.start_again();
        }
        on = !on;
        assert_eq!(cluster.toggle("burst", on).await, 200, "toggle {n}");
    }
    let last = cluster.revision().await;
    let burst_done = Instant::now();
    eprintln!("burst of 30 toggles took {:?}; final revision {last}", started_burst.elapsed());

    for i in 0..2 {
        let converged = eventually(CONVERGE_DEADLINE, || async {
            let (_, _, body) = cluster.flags(i, None).await;
            body["revision"].as_u64() == Some(last)
        })
        .await;
        assert!(converged, "evaluation {i} is at {}, not {last}", cluster.flags(i, None).await.2["revision"]);
        eprintln!("evaluation {i} at revision {last} {:?} after the burst", burst_done.elapsed());
        let (revision, value) = cluster.evaluate(i, "burst").await;
        assert_eq!((revision, value), (last, json!(on)), "evaluation {i}");
    }
    for i in 0..2 {
        let seen = std::sync::Mutex::new(None);
        let converged = eventually(CONVERGE_DEADLINE, || async {
            let event = cluster.stream(i, None).await.next().await;
            let at = event.as_ref().is_some_and(|e| e.event == "hydrate" && e.id == last);
            *seen.lock().unwrap() = event;
            at
        })
        .await;
        let hydrate = seen.into_inner().unwrap();
        assert!(converged, "streaming {i}'s hydrate is {hydrate:?}, not at {last}");
        eprintln!("streaming {i} at revision {last} {:?} after the burst", burst_done.elapsed());
        let hydrate = hydrate.unwrap();
        let flag =
            hydrate.data["flags"].as_array().unwrap().iter().find(|f| f["flag"]["key"] == "burst").cloned();
        assert_eq!(flag.map(|f| f["config"]["on"].clone()), Some(json!(on)), "streaming {i}'s state");
    }
    eprintln!("converged {:?} after the burst", burst_done.elapsed());
    cluster.stop().await;
    eprintln!("test 3 took {:?}", started.elapsed());
}

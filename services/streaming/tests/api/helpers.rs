//! `spawn_app()`: the streaming service on a free port, over a cache filled from a real control-plane
//! store (PostgreSQL) — on its own server (`Application`) or, with [`Serving::Actix`], as the actix
//! routes standalone mode embeds (`configure`); an SSE reader over reqwest; a raw TCP client; the npm
//! `eventsource` client.

use std::collections::VecDeque;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use futures::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;
use vexil_config::Settings;
use vexil_dataplane::{ApplyOutcome, Cache, CacheOptions};
use vexil_http::error::{ApiError, ErrorCode};
use vexil_model::{EnvironmentKey, Flag, FlagConfigSpec, FlagKey, ProjectKey, Segment};
use vexil_store::{Actor, NewSdkKeys, Store};
use vexil_streaming::{Application, StreamingState};

/// How long anything may take. Generous: a 2-core machine may be compiling meanwhile.
pub const DEADLINE: Duration = Duration::from_secs(20);

static LOGGING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        vexil_telemetry::init_logging("pretty", "info,vexil_streaming=debug");
    }
});

/// Which server serves the routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Serving {
    /// `Application`: the streaming deployment's own HTTP/1.1 server.
    #[default]
    Lean,
    /// The actix routes of `configure` and `configure_probes` (what standalone mode embeds), on an
    /// actix `HttpServer` set up as standalone sets it up.
    Actix,
}

/// Runs each test against both serving paths, as `<test>::lean` and `<test>::actix`: the same
/// routes, so the same behaviour, whichever server carries them.
macro_rules! both_paths {
    ($($(#[$meta:meta])* async fn $name:ident($serving:ident: Serving) $body:block)*) => {$(
        $(#[$meta])*
        mod $name {
            use super::*;

            #[tokio::test]
            async fn lean() {
                run(Serving::Lean).await
            }

            #[tokio::test]
            async fn actix() {
                run(Serving::Actix).await
            }

            async fn run($serving: Serving) $body
        }
    )*};
}
pub(crate) use both_paths;

/// How to build the app.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub heartbeat_seconds: u64,
    pub retry_ms: u64,
    pub ring_capacity: usize,
    pub serving: Serving,
    /// The lean server's head timeout (`Application::with_head_timeout`); `None`: its default.
    pub head_timeout: Option<Duration>,
}

impl Default for Options {
    fn default() -> Options {
        // A heartbeat slow enough not to clutter the tests that do not look for it.
        Options {
            heartbeat_seconds: 60,
            retry_ms: 200,
            ring_capacity: 1024,
            serving: Serving::Lean,
            head_timeout: None,
        }
    }
}

/// A control plane's store, a replica's cache fed from it, and the streaming service over the cache.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub store: Store,
    pub cache: Cache,
    pub options: Options,
    /// Keys of `shop`'s environments (development, production).
    pub development: NewSdkKeys,
    pub production: NewSdkKeys,
    pub streaming: Arc<StreamingState>,
    pub server: Option<JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

/// [`spawn_app`] on one of the serving paths.
pub async fn spawn_app_on(serving: Serving) -> TestApp {
    spawn_app_with(Options { serving, ..Options::default() }).await
}

/// Project `shop` with flag `checkout` (boolean, client-side, off in every environment), loaded
/// into a ready cache, served on a free port.
pub async fn spawn_app_with(options: Options) -> TestApp {
    LazyLock::force(&LOGGING);
    let database = vexil_testkit::TestDatabase::create().await;
    let store = Store::connect(database.url()).await.expect("connect to the test database");
    store.migrate().await.expect("migrate");
    let (_, keys) = store.create_project(&actor(), &project(), "Shop", "").await.expect("create project");
    let mut keys = keys.into_iter();
    let (development, production) = (keys.next().unwrap(), keys.next().unwrap());
    assert_eq!(
        (development.environment.as_str(), production.environment.as_str()),
        ("development", "production")
    );
    store.create_flag(&actor(), &project(), boolean_flag("checkout", true)).await.expect("create flag");

    let cache =
        Cache::with_options(CacheOptions { ring_capacity: options.ring_capacity, ..Default::default() });
    for id in store.environment_ids().await.expect("environment ids") {
        cache.load(&store.environment_snapshot(id).await.expect("snapshot")).expect("load");
    }
    cache.mark_ready();
    let (port, streaming, server) = launch(&cache, options, 0).await;
    let app = TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client: reqwest::Client::new(),
        store,
        cache,
        options,
        development,
        production,
        streaming,
        server: Some(server),
    };
    app.sync().await;
    app
}

/// Builds the service on `port` (0: a free one) over `cache`, and runs it.
async fn launch(
    cache: &Cache,
    options: Options,
    port: u16,
) -> (u16, Arc<StreamingState>, JoinHandle<anyhow::Result<()>>) {
    let mut settings = Settings::default();
    settings.server.port = port;
    settings.dataplane.heartbeat_seconds = options.heartbeat_seconds;
    settings.dataplane.retry_ms = options.retry_ms;
    if options.serving == Serving::Actix {
        return launch_actix(cache, settings);
    }
    let mut application = Application::build(settings, cache.clone()).await.expect("build");
    if let Some(timeout) = options.head_timeout {
        application = application.with_head_timeout(timeout);
    }
    let port = application.port();
    let streaming = application.state();
    (port, streaming, tokio::spawn(application.run_until_stopped()))
}

/// The routes on actix, as standalone mode serves them (`vexil/src/standalone.rs`): shared `Data`,
/// 4 KiB write buffers, and streams ended before the server drains.
fn launch_actix(
    cache: &Cache,
    settings: Settings,
) -> (u16, Arc<StreamingState>, JoinHandle<anyhow::Result<()>>) {
    let listener =
        std::net::TcpListener::bind((settings.server.host.as_str(), settings.server.port)).expect("bind");
    let port = listener.local_addr().unwrap().port();
    let streaming = Arc::new(StreamingState::new(&settings.dataplane));
    let cache = web::Data::new(cache.clone());
    let app_streaming = web::Data::from(streaming.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(cache.clone())
            .app_data(app_streaming.clone())
            .configure(vexil_streaming::configure_probes)
            .configure(vexil_streaming::configure)
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(ApiError::new(ErrorCode::NotFound, "no such route"))
            }))
    })
    .workers(1)
    .h1_write_buffer_size(4096)
    .listen(listener)
    .expect("listen")
    .disable_signals()
    .shutdown_timeout(settings.server.shutdown_grace_seconds)
    .run();
    let handle = server.handle();
    let state = streaming.clone();
    let task = tokio::spawn(async move {
        let mut server = std::pin::pin!(server);
        tokio::select! {
            result = &mut server => return Ok(result?),
            () = state.stopped() => {}
        }
        drop(handle.stop(true));
        Ok(server.await?)
    });
    (port, streaming, task)
}

impl TestApp {
    /// Runs the service again, on the same port, over the same cache (after [`stop`](Self::stop)).
    pub async fn restart(&mut self) {
        assert!(self.server.is_none(), "stop it first");
        let (_, streaming, server) = launch(&self.cache, self.options, self.port).await;
        self.streaming = streaming;
        self.server = Some(server);
    }

    /// A second server over the same cache, on a free port: its port, its state, and its task.
    pub async fn serve_also(
        &self,
        serving: Serving,
    ) -> (u16, Arc<StreamingState>, JoinHandle<anyhow::Result<()>>) {
        launch(&self.cache, Options { serving, ..self.options }, 0).await
    }

    /// Shuts the service down the way SIGTERM does and waits for `run_until_stopped` to return.
    pub async fn stop(&mut self) {
        self.streaming.shutdown();
        let server = self.server.take().expect("running");
        tokio::time::timeout(DEADLINE, server)
            .await
            .expect("run_until_stopped returns after a shutdown")
            .expect("no panic")
            .expect("a clean stop");
    }

    /// Does what the relay and `BusSync` do: hands the store's unsent changes to the cache.
    pub async fn sync(&self) {
        loop {
            let pending = self.store.pending_changes(100).await.expect("pending changes");
            if pending.is_empty() {
                return;
            }
            for environment in pending {
                for event in &environment.events {
                    if let ApplyOutcome::Gap { .. } = self.cache.apply(event).expect("apply") {
                        self.cache.load(&environment.snapshot).expect("re-sync");
                    }
                }
                let last = environment.events.last().map_or(0, |event| event.revision);
                self.store.mark_sent(environment.environment_id, last).await.expect("mark sent");
            }
        }
    }

    /// The id and revision of an environment of `shop`.
    pub async fn environment(&self, key: &str) -> (i64, u64) {
        let record = self.store.get_environment(&project(), &env(key)).await.expect("environment");
        (record.id, record.revision)
    }

    pub async fn revision(&self, environment: &str) -> u64 {
        self.environment(environment).await.1
    }

    /// Turns flag `key` on or off in production, and syncs.
    pub async fn toggle(&self, key: &str, on: bool) -> u64 {
        self.store
            .toggle_flag(&actor(), &project(), &flag_key(key), &env("production"), on)
            .await
            .expect("toggle");
        self.sync().await;
        self.revision("production").await
    }

    pub async fn create_flag(&self, key: &str, client_side: bool) -> u64 {
        self.store
            .create_flag(&actor(), &project(), boolean_flag(key, client_side))
            .await
            .expect("create flag");
        self.sync().await;
        self.revision("production").await
    }

    /// Replaces flag `key`'s production configuration (its `version` is filled in).
    pub async fn configure(&self, key: &str, config: Value) -> u64 {
        let spec: FlagConfigSpec = serde_json::from_value(config).expect("a configuration");
        self.store
            .put_flag_config(&actor(), &project(), &flag_key(key), &env("production"), spec, None)
            .await
            .expect("configure");
        self.sync().await;
        self.revision("production").await
    }

    pub async fn create_segment(&self, spec: Value) -> u64 {
        let segment = Segment::parse(serde_json::from_value(spec).expect("a segment")).expect("valid");
        self.store.create_segment(&actor(), &project(), &env("production"), segment).await.expect("segment");
        self.sync().await;
        self.revision("production").await
    }

    pub async fn delete_segment(&self, key: &str) -> u64 {
        let key = vexil_model::SegmentKey::parse(key).expect("a segment key");
        self.store
            .delete_segment(&actor(), &project(), &env("production"), &key)
            .await
            .expect("delete segment");
        self.sync().await;
        self.revision("production").await
    }

    pub async fn delete_flag(&self, key: &str) -> u64 {
        self.store.delete_flag(&actor(), &project(), &flag_key(key)).await.expect("delete flag");
        self.sync().await;
        self.revision("production").await
    }

    /// Rotates production's keys; the old ones keep working for `overlap_seconds` (0: they stop now).
    pub async fn rotate_keys(&self, overlap_seconds: i64) -> u64 {
        self.store
            .rotate_keys(&actor(), &project(), &env("production"), time::Duration::seconds(overlap_seconds))
            .await
            .expect("rotate keys");
        self.sync().await;
        self.revision("production").await
    }

    /// `GET path` with optional headers.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.client.get(format!("{}{path}", self.address));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("request")
    }

    /// Opens a stream that must be a 200 `text/event-stream`.
    pub async fn open(&self, path: &str, headers: &[(&str, &str)]) -> SseReader {
        let response = self.get(path, headers).await;
        assert_eq!(response.status(), 200, "{path}: {:?}", response.text().await);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        SseReader::new(response)
    }

    /// Opens `/v1/stream` with the production server key in the query.
    pub async fn open_flags(&self, query: &str, headers: &[(&str, &str)]) -> SseReader {
        self.open(&format!("/v1/stream?key={}{query}", self.production.server), headers).await
    }

    /// The service's `/metrics`.
    pub async fn metrics(&self) -> String {
        self.get("/metrics", &[]).await.text().await.expect("metrics")
    }

    /// The value of one sample of `/metrics` (`name` with its labels, as rendered).
    pub async fn metric(&self, name: &str) -> u64 {
        let metrics = self.metrics().await;
        let value = metrics.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' '));
        value.and_then(|value| value.parse().ok()).unwrap_or_else(|| panic!("{name} in {metrics}"))
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

/// A boolean flag: variations `[true "on", false "off"]`.
pub fn boolean_flag(key: &str, client_side: bool) -> Flag {
    let spec = json!({"key": key, "kind": "boolean", "client_side": client_side,
                      "variations": [{"value": true, "name": "on"}, {"value": false, "name": "off"}]});
    Flag::parse(serde_json::from_value(spec).unwrap()).unwrap()
}

/// Base64url without padding, for `?context=`.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut bits = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            bits |= u32::from(b) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(bits >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// One thing read from a stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Sse {
    Retry(u64),
    Comment(String),
    Event(Event),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub id: Option<u64>,
    pub data: Value,
    /// `data` as it was sent.
    pub text: String,
}

/// Reads an SSE body as it arrives.
pub struct SseReader {
    pub headers: reqwest::header::HeaderMap,
    body: Pin<Box<dyn Stream<Item = reqwest::Result<web::Bytes>> + Send>>,
    buffer: String,
    parsed: VecDeque<Sse>,
    ended: bool,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> SseReader {
        SseReader {
            headers: response.headers().clone(),
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
            parsed: VecDeque::new(),
            ended: false,
        }
    }

    /// The next item; `None` when the stream ended. Panics after `DEADLINE`.
    pub async fn next(&mut self) -> Option<Sse> {
        tokio::time::timeout(DEADLINE, self.next_item()).await.expect("the next SSE item within the deadline")
    }

    async fn next_item(&mut self) -> Option<Sse> {
        loop {
            if let Some(item) = self.parsed.pop_front() {
                return Some(item);
            }
            if self.ended {
                return None;
            }
            match self.body.next().await {
                Some(chunk) => {
                    self.buffer.push_str(std::str::from_utf8(&chunk.expect("a chunk")).expect("UTF-8"));
                    while let Some(end) = self.buffer.find("\n\n") {
                        let block: String = self.buffer.drain(..end + 2).collect();
                        self.parsed.extend(parse_block(&block));
                    }
                }
                None => self.ended = true,
            }
        }
    }

    /// The next event, skipping `retry:` and comments.
    pub async fn event(&mut self) -> Event {
        loop {
            match self.next().await.expect("an event, not the end of the stream") {
                Sse::Event(event) => return event,
                Sse::Retry(_) | Sse::Comment(_) => {}
            }
        }
    }

    /// Whether nothing but comments arrives within `quiet` (no event, no end).
    pub async fn stays_quiet(&mut self, quiet: Duration) -> bool {
        let wait = async {
            loop {
                match self.next_item().await {
                    Some(Sse::Comment(_) | Sse::Retry(_)) => {}
                    other => return other,
                }
            }
        };
        match tokio::time::timeout(quiet, wait).await {
            Err(_) => true,
            Ok(other) => {
                eprintln!("expected quiet, got {other:?}");
                false
            }
        }
    }

    /// Reads until the stream ends; the events on the way.
    pub async fn until_end(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(item) = self.next().await {
            if let Sse::Event(event) = item {
                events.push(event);
            }
        }
        events
    }
}

fn parse_block(block: &str) -> Vec<Sse> {
    let mut items = Vec::new();
    let (mut name, mut id, mut data) = (None, None, Vec::new());
    for line in block.lines() {
        if let Some(comment) = line.strip_prefix(':') {
            items.push(Sse::Comment(comment.trim().to_owned()));
        } else if let Some(retry) = line.strip_prefix("retry: ") {
            items.push(Sse::Retry(retry.parse().expect("a retry in ms")));
        } else if let Some(value) = line.strip_prefix("event: ") {
            name = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("id: ") {
            id = Some(value.parse().expect("a numeric id"));
        } else if let Some(value) = line.strip_prefix("data: ") {
            data.push(value);
        } else if !line.is_empty() {
            panic!("unexpected SSE line {line:?}");
        }
    }
    if let Some(name) = name {
        let text = data.join("\n");
        let data = serde_json::from_str(&text).expect("JSON data");
        items.push(Sse::Event(Event { name, id, data, text }));
    } else {
        assert!(data.is_empty(), "data without an event name in {block:?}");
    }
    items
}

/// A bare TCP connection to the service, for what an HTTP client library hides: framing, keep-alive,
/// malformed requests, disconnects.
pub struct RawClient {
    pub stream: TcpStream,
    /// Everything read so far.
    pub received: Vec<u8>,
}

impl RawClient {
    pub async fn connect(port: u16) -> RawClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        RawClient { stream, received: Vec::new() }
    }

    /// A client whose socket receive buffer is `bytes` (set before connecting, so that the kernel
    /// does not grow it): a client that stops reading stalls the server's writes soon.
    pub async fn connect_with_receive_buffer(port: u16, bytes: u32) -> RawClient {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        let stream = socket.connect(([127, 0, 0, 1], port).into()).await.expect("connect");
        RawClient { stream, received: Vec::new() }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// Reads until `done(received)` holds; `false` if the connection ended first. Panics after
    /// `DEADLINE`.
    pub async fn read_until(&mut self, done: impl Fn(&[u8]) -> bool) -> bool {
        let read = async {
            let mut buf = [0u8; 4096];
            while !done(&self.received) {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => self.received.extend_from_slice(&buf[..n]),
                }
            }
            true
        };
        tokio::time::timeout(DEADLINE, read).await.expect("read within the deadline")
    }

    /// Reads until the server closes the connection; panics after `DEADLINE`.
    pub async fn read_to_end(&mut self) {
        self.read_until(|_| false).await;
    }

    /// Whether `received` holds `needle`.
    pub fn has(&self, needle: &str) -> bool {
        contains(&self.received, needle.as_bytes())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// The answers in `bytes`, one after the other: each head's lines, and its `Content-Length` body.
pub fn responses(mut bytes: &[u8]) -> Vec<(Vec<String>, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        let head: Vec<String> =
            std::str::from_utf8(&bytes[..end]).unwrap().split("\r\n").map(str::to_owned).collect();
        let length = head
            .iter()
            .find_map(|line| line.strip_prefix("content-length: "))
            .map_or(0, |length| length.parse().unwrap());
        out.push((head, bytes[end + 4..end + 4 + length].to_vec()));
        bytes = &bytes[end + 4 + length..];
    }
    out
}

/// The npm `eventsource` client (tests/clients/sse_client.mjs) as a child process.
pub struct NodeClient {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl NodeClient {
    /// Starts `node sse_client.mjs <url> <args>`. Fails the test when the clients are not installed:
    /// `source scripts/sse-clients.sh` first.
    pub fn start(url: &str, args: &[&str]) -> NodeClient {
        let dir = std::env::var("VEXIL_TEST_SSE_CLIENTS").unwrap_or_else(|_| {
            panic!("VEXIL_TEST_SSE_CLIENTS is not set: `source scripts/sse-clients.sh` installs the SSE test clients")
        });
        let dir = std::path::Path::new(&dir);
        assert!(
            dir.join("node_modules/eventsource").is_dir(),
            "{} has no node_modules/eventsource: `source scripts/sse-clients.sh`",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg(dir.join("sse_client.mjs"))
            .arg(url)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start node");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        NodeClient { child, lines }
    }

    /// The next line the client printed, parsed.
    pub async fn line(&mut self) -> Value {
        let line = tokio::time::timeout(DEADLINE, self.lines.next_line())
            .await
            .expect("a line from the SSE client within the deadline")
            .expect("read stdout")
            .expect("the SSE client exited early");
        serde_json::from_str(&line).expect("a JSON line")
    }

    /// The next line of this `type` (skipping others), e.g. `open` or `hydrate`.
    pub async fn line_of(&mut self, kind: &str) -> Value {
        loop {
            let line = self.line().await;
            if line["type"] == kind {
                return line;
            }
        }
    }

    /// The next event line (not `open` or `error`).
    pub async fn event(&mut self) -> Value {
        loop {
            let line = self.line().await;
            if line["type"] != "open" && line["type"] != "error" {
                return line;
            }
        }
    }

    /// Waits for the client to exit; its exit code.
    pub async fn exit_code(mut self) -> Option<i32> {
        let status =
            tokio::time::timeout(DEADLINE, self.child.wait()).await.expect("the client exits").expect("wait");
        status.code()
    }
}

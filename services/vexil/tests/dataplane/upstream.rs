//! Relay mode end to end: a real upstream (the streaming service over a cache filled from a real
//! store) and an `UpstreamSync` following its `/v1/stream` over HTTP, with the upstream going away and
//! the relay restarting.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vexil_config::Settings;
use vexil_dataplane::{ApplyOutcome, Cache, RELAY_ENVIRONMENT_ID, UpstreamSync};
use vexil_store::Store;
use vexil_testkit::eventually;

use crate::helpers::*;

/// The upstream: the streaming service over a cache the test keeps current from the store (what
/// `BusSync` would do), on a port that stays the same across restarts.
struct Upstream {
    cache: Cache,
    store: Store,
    environment_id: i64,
    port: u16,
    server: Option<(std::sync::Arc<vexil_streaming::StreamingState>, JoinHandle<anyhow::Result<()>>)>,
}

impl Upstream {
    async fn start(store: Store, environment_id: i64) -> Upstream {
        let cache = Cache::new();
        cache.load(&store.environment_snapshot(environment_id).await.unwrap()).unwrap();
        cache.mark_ready();
        let mut upstream = Upstream { cache, store, environment_id, port: 0, server: None };
        upstream.sync().await;
        upstream.run().await;
        upstream
    }

    /// Runs the service (again, on the same port once it has one).
    async fn run(&mut self) {
        assert!(self.server.is_none());
        let mut settings = Settings::default();
        settings.server.host = "127.0.0.1".into();
        settings.server.port = self.port;
        settings.dataplane.heartbeat_seconds = 1;
        settings.dataplane.retry_ms = 100;
        let application = vexil_streaming::Application::build(settings, self.cache.clone()).await.unwrap();
        self.port = application.port();
        let state = application.state();
        self.server = Some((state, tokio::spawn(application.run_until_stopped())));
    }

    /// Shuts the service down as SIGTERM would, and waits until it has stopped.
    async fn stop(&mut self) {
        let (state, server) = self.server.take().expect("running");
        state.shutdown();
        tokio::time::timeout(DEADLINE, server).await.expect("stops").expect("no panic").expect("clean stop");
    }

    /// Applies the store's unsent changes of the environment to the upstream's cache, as events.
    async fn sync(&self) {
        loop {
            let pending = self.store.pending_changes(100).await.unwrap();
            if pending.is_empty() {
                return;
            }
            for batch in pending {
                if batch.environment_id == self.environment_id {
                    for event in &batch.events {
                        if let ApplyOutcome::Gap { .. } = self.cache.apply(event).unwrap() {
                            self.cache.load(&batch.snapshot).unwrap();
                        }
                    }
                }
                let last = batch.events.last().map_or(0, |event| event.revision);
                self.store.mark_sent(batch.environment_id, last).await.unwrap();
            }
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn revision(&self) -> u64 {
        revision(&self.cache, self.environment_id).unwrap()
    }
}

/// A running relay; stops it when dropped.
struct Relay {
    cache: Cache,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Relay {
    fn start(url: &str, server_key: &str, state_file: &PathBuf) -> Relay {
        init_logging();
        let cache = Cache::new();
        let sync = UpstreamSync::new(cache.clone(), url, server_key, state_file)
            .unwrap()
            .backoff(Duration::from_millis(20), Duration::from_millis(300))
            .dead_after(Duration::from_secs(3));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(sync.run(shutdown.clone()));
        Relay { cache, shutdown, task: Some(task) }
    }

    async fn reaches(&self, revision: u64) -> bool {
        eventually(DEADLINE, || async {
            self.cache.ready() && self::revision(&self.cache, RELAY_ENVIRONMENT_ID) == Some(revision)
        })
        .await
    }

    fn value(&self) -> Option<bool> {
        bool_value(&self.cache, RELAY_ENVIRONMENT_ID, "checkout", "user-1")
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        let task = self.task.take().unwrap();
        tokio::time::timeout(DEADLINE, task).await.expect("the relay stops on shutdown").expect("no panic");
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn state_file(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vexil-relay-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("relay-snapshot.json")
}

fn persisted_revision(path: &PathBuf) -> Option<u64> {
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    state["revision"].as_u64()
}

#[tokio::test]
async fn a_relay_follows_the_upstream_and_survives_its_outage_and_its_own_restart() {
    let control_plane = ControlPlane::start().await;
    let keys = control_plane.with_project().await;
    let server_key = keys.iter().find(|k| k.environment.as_str() == "production").unwrap().server.clone();
    let client_key = keys.iter().find(|k| k.environment.as_str() == "production").unwrap().client.clone();
    let (production, _) = control_plane.environment("production").await;
    let mut upstream = Upstream::start(control_plane.store.clone(), production).await;
    let path = state_file("follow");

    // (1) The relay hydrates from the upstream and serves the same thing, to the same server key.
    let relay = Relay::start(&upstream.url(), &server_key, &path);
    let first = upstream.revision();
    assert!(relay.reaches(first).await, "the relay hydrated");
    assert_eq!(relay.value(), Some(false));
    assert_eq!(relay.value(), bool_value(&upstream.cache, production, "checkout", "user-1"));
    let authenticated = relay.cache.authenticate(&server_key).expect("the server key works on the relay");
    assert_eq!(authenticated.environment.id(), RELAY_ENVIRONMENT_ID);
    assert!(relay.cache.authenticate(&client_key).is_none(), "client keys are unknown to a relay");
    assert!(eventually(DEADLINE, || async { persisted_revision(&path) == Some(first) }).await);

    // A toggle upstream arrives as a patch: applied as one event, so the relay can replay it.
    control_plane.toggle("production", true).await;
    upstream.sync().await;
    let toggled = upstream.revision();
    assert_eq!(toggled, first + 1);
    assert!(relay.reaches(toggled).await, "the toggle reached the relay");
    assert_eq!(relay.value(), Some(true));
    let replay = relay.cache.events_since(RELAY_ENVIRONMENT_ID, first).expect("a patch, not a hydrate");
    assert_eq!(replay.iter().map(|event| event.revision).collect::<Vec<_>>(), [toggled]);
    assert!(eventually(DEADLINE, || async { persisted_revision(&path) == Some(toggled) }).await);

    // (2) The upstream goes away: the relay keeps serving what it has.
    upstream.stop().await;
    control_plane.toggle("production", false).await;
    upstream.sync().await;
    let while_down = upstream.revision();
    // Over the time it takes the relay to see the stream end and fail a few reconnects, it stays ready.
    assert!(!eventually(Duration::from_millis(500), || async { !relay.cache.ready() }).await, "still ready");
    assert_eq!(revision(&relay.cache, RELAY_ENVIRONMENT_ID), Some(toggled));
    assert_eq!(relay.value(), Some(true));
    relay.stop().await;

    // (3) The relay restarts while the upstream is down: it serves the persisted snapshot.
    let relay = Relay::start(&upstream.url(), &server_key, &path);
    assert!(relay.reaches(toggled).await, "loaded from the state file");
    assert_eq!(relay.value(), Some(true));
    assert!(relay.cache.authenticate(&server_key).is_some());

    // (4) The upstream comes back: the relay resumes from its revision (Last-Event-ID) and gets only the
    // missed change, as a patch.
    upstream.run().await;
    assert!(relay.reaches(while_down).await, "caught up");
    assert_eq!(relay.value(), Some(false));
    let replay = relay.cache.events_since(RELAY_ENVIRONMENT_ID, toggled).expect("resumed, not re-hydrated");
    assert_eq!(replay.iter().map(|event| event.revision).collect::<Vec<_>>(), [while_down]);
    assert!(eventually(DEADLINE, || async { persisted_revision(&path) == Some(while_down) }).await);

    relay.stop().await;
    upstream.stop().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test]
async fn a_relay_without_a_state_file_is_not_ready_until_the_upstream_hydrates_it() {
    let control_plane = ControlPlane::start().await;
    let keys = control_plane.with_project().await;
    let server_key = keys.iter().find(|k| k.environment.as_str() == "production").unwrap().server.clone();
    let (production, _) = control_plane.environment("production").await;
    let mut upstream = Upstream::start(control_plane.store.clone(), production).await;
    upstream.stop().await;
    let path = state_file("cold");

    let relay = Relay::start(&upstream.url(), &server_key, &path);
    assert!(
        !eventually(Duration::from_millis(500), || async { relay.cache.ready() }).await,
        "not ready without a snapshot"
    );
    assert!(relay.cache.environment(RELAY_ENVIRONMENT_ID).is_none());

    upstream.run().await;
    assert!(relay.reaches(upstream.revision()).await, "hydrated once the upstream is up");
    relay.stop().await;
    upstream.stop().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test]
async fn a_silent_upstream_is_dropped_and_reconnected() {
    // A TCP server that accepts, answers the headers of an event stream with a hydrate, then says
    // nothing: the relay must give up on it after `dead_after` and connect again.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (connections, mut counted) = watch::channel(0usize);
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let body = "event: hydrate\nid: 3\ndata: {\"revision\":3,\"flags\":[],\"segments\":[]}\n\n";
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            held.push(socket);
            connections.send_modify(|n| *n += 1);
        }
    });
    init_logging();
    let cache = Cache::new();
    let key = vexil_keys::generate(vexil_keys::SecretKind::Server).secret;
    let path = state_file("silent");
    let sync = UpstreamSync::new(cache.clone(), &url, &key, &path)
        .unwrap()
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .dead_after(Duration::from_millis(300));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(sync.run(shutdown.clone()));

    let reconnected = tokio::time::timeout(DEADLINE, counted.wait_for(|n| *n >= 2)).await;
    assert!(reconnected.is_ok(), "the relay reconnected after the silence");
    assert_eq!(revision(&cache, RELAY_ENVIRONMENT_ID), Some(3));
    assert!(cache.ready());
    shutdown.cancel();
    task.await.unwrap();
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

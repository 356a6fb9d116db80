//! The Rust SDK (`vexil-sdk`) against the real planes: the `vexil` binary's control-api, streaming and
//! evaluation processes over a fresh PostgreSQL database and a private Redis (`support::cluster`), and
//! against nothing at all. DESIGN.md §7 as the SDK sees it: changes propagate, streaming down falls back
//! to polling and comes back, everything down keeps the last snapshot (stale), never initialised serves
//! defaults with `NOT_READY`; plus bootstrap and offline modes, the prefix filter, and events.

mod support;

use std::io::ErrorKind as IoErrorKind;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::cluster::{Cluster, EVENT_DEADLINE, free_port};
use tokio::sync::broadcast;
use vexil_sdk::{
    Client, ClientBuilder, Context, Error, ErrorKind, EvaluationDetail, FlagChange, Reason, State, SyncEvent,
};
use vexil_testkit::eventually;

/// A key of the right shape for tests that never reach a server.
const SOME_KEY: &str = "vxs_000000000000_notarealsecretnotarealsecret00";

/// Short heartbeats and reconnect hints, so that the tests see outages in well under a second.
fn settings() -> Vec<(&'static str, String)> {
    vec![("VEXIL__DATAPLANE__HEARTBEAT_SECONDS", "1".into()), ("VEXIL__DATAPLANE__RETRY_MS", "200".into())]
}

/// An SDK on streaming replica 0 and evaluation replica 0, with test-sized timings.
fn sdk(cluster: &Cluster) -> ClientBuilder {
    Client::builder(cluster.key.as_str())
        .stream_url(&cluster.streaming[0].url())
        .polling_url(&cluster.evaluation[0].url())
        .events_url(&cluster.evaluation[0].url())
        .start_timeout(Duration::from_secs(15))
        .poll_interval(Duration::from_millis(200))
        .reconnect_backoff(Duration::from_millis(100), Duration::from_millis(400))
        .dead_stream_after(Duration::from_secs(3))
        .stale_after(Duration::from_secs(1))
}

fn user() -> Context {
    Context::new("user-1").with("plan", "pro")
}

/// The next item of `receiver` that `wanted` accepts (skipping others), or a panic naming `what`.
async fn next_matching<T: Clone + std::fmt::Debug>(
    receiver: &mut broadcast::Receiver<T>,
    what: &str,
    mut wanted: impl FnMut(&T) -> bool,
) -> T {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(EVENT_DEADLINE, async {
        loop {
            match receiver.recv().await {
                Ok(item) if wanted(&item) => return item,
                Ok(item) => seen.push(item),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("the channel closed waiting for {what}"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no {what} within {EVENT_DEADLINE:?}; saw {seen:?}"))
}

/// The changes received so far whose revision is above `revision` (one the test waited for: the
/// change that brought it may reach listeners just after it is served).
fn changes_after(changes: &mut broadcast::Receiver<FlagChange>, revision: u64) -> Vec<FlagChange> {
    std::iter::from_fn(|| changes.try_recv().ok()).filter(|change| change.revision > revision).collect()
}

/// Waits until the client serves `revision`.
async fn wait_revision(client: &Client, revision: u64) {
    let reached = eventually(EVENT_DEADLINE, || async { client.revision() == Some(revision) }).await;
    assert!(reached, "the SDK is at {:?}, not {revision}", client.revision());
}

fn snapshot_file(name: &str, snapshot: &Value) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vexil-sdk-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("snapshot.json");
    std::fs::write(&path, serde_json::to_vec(snapshot).unwrap()).unwrap();
    path
}

fn on_flag(key: &str) -> Value {
    json!({"flag": {"key": key, "kind": "boolean", "variations": [{"value": true, "name": "on"}, {"value": false, "name": "off"}]},
           "config": {"on": true, "off_variation": 1, "fallthrough": {"variation": 0}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_reaches_the_sdk_and_its_listener_with_the_key_and_revision() {
    let cluster = Cluster::start_with(1, 1, &settings()).await;
    cluster.create_flag("checkout").await;
    let created = cluster.revision().await;

    let client = sdk(&cluster).start().await.unwrap();
    assert_eq!(client.state(), State::Ready);
    wait_revision(&client, created).await;
    assert!(!client.bool_value("checkout", &user(), true), "a new flag is off");
    assert!(client.data_age().is_some_and(|age| age < Duration::from_secs(5)));

    let mut changes = client.subscribe_changes();
    let mut sync = client.subscribe_sync_events();
    assert_eq!(cluster.toggle("checkout", true).await, 200);
    let toggled = cluster.revision().await;
    // (The change that brought `created` may still be on its way to listeners: skip it.)
    let change = next_matching(&mut changes, "a flag change", |c| c.revision > created).await;
    assert_eq!(change, FlagChange { revision: toggled, keys: vec!["checkout".into()] });
    next_matching(&mut sync, "the patch", |event| {
        *event == SyncEvent::StreamEvent { event: "patch".into(), revision: toggled }
    })
    .await;
    assert_eq!(
        client.bool_detail("checkout", &user(), false),
        EvaluationDetail {
            value: true,
            variation: Some(0),
            variant: Some("on".into()),
            reason: Reason::Fallthrough,
            in_rollout: false,
        }
    );
    assert_eq!(client.revision(), Some(toggled));
    assert_eq!(client.flag_keys(), ["checkout"]);
    assert_eq!(
        client.string_detail("checkout", &user(), "x").reason,
        Reason::Error { error_kind: ErrorKind::WrongType }
    );

    client.close().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_down_falls_back_to_polling_and_back_to_the_stream_without_a_missed_change() {
    let mut cluster = Cluster::start_with(1, 1, &settings()).await;
    cluster.create_flag("a").await;
    let client = sdk(&cluster).start().await.unwrap();
    let before = cluster.revision().await;
    wait_revision(&client, before).await;
    let mut changes = client.subscribe_changes();
    let mut sync = client.subscribe_sync_events();

    // The streaming process dies: the SDK notices at once and polls.
    cluster.streaming[0].kill();
    next_matching(&mut sync, "the disconnection", |e| matches!(e, SyncEvent::StreamDisconnected { .. }))
        .await;
    next_matching(&mut sync, "a poll", |e| matches!(e, SyncEvent::Polled { status: 200 | 304, .. })).await;

    // A change while streaming is down arrives through polling.
    assert_eq!(cluster.toggle("a", true).await, 200);
    let during = cluster.revision().await;
    next_matching(&mut sync, "the poll that brings the change", |e| {
        *e == SyncEvent::Polled { status: 200, revision: Some(during) }
    })
    .await;
    assert_eq!(
        changes_after(&mut changes, before),
        [FlagChange { revision: during, keys: vec!["a".into()] }]
    );
    assert!(client.bool_value("a", &user(), false));
    assert_eq!(client.state(), State::Ready, "polling keeps the data current");

    // Streaming comes back on the same port: the SDK reconnects (resuming from its revision), and the
    // next change comes through the stream.
    cluster.streaming[0].restart(&cluster.http).await;
    next_matching(&mut sync, "the reconnection", |e| *e == SyncEvent::StreamConnected).await;
    assert_eq!(cluster.toggle("a", false).await, 200);
    let after = cluster.revision().await;
    next_matching(
        &mut sync,
        "the change on the stream",
        |e| matches!(e, SyncEvent::StreamEvent { revision, .. } if *revision == after),
    )
    .await;
    assert_eq!(
        changes_after(&mut changes, during),
        [FlagChange { revision: after, keys: vec!["a".into()] }],
        "one change each, none missed and none repeated"
    );
    assert!(!client.bool_value("a", &user(), true));
    assert_eq!(client.state(), State::Ready);

    client.close().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_service_stopped_the_sdk_serves_its_last_snapshot_and_reports_stale() {
    let mut cluster = Cluster::start_with(1, 1, &settings()).await;
    cluster.create_flag("a").await;
    assert_eq!(cluster.toggle("a", true).await, 200);
    let revision = cluster.revision().await;
    let client = sdk(&cluster).start().await.unwrap();
    wait_revision(&client, revision).await;
    let mut state = client.watch_state();
    let mut sync = client.subscribe_sync_events();

    cluster.kill_services();
    next_matching(&mut sync, "a failed poll", |e| matches!(e, SyncEvent::PollFailed { .. })).await;
    // (The `Ref` that `wait_for` returns is a read lock on the state: never keep it.)
    let stale = tokio::time::timeout(EVENT_DEADLINE, state.wait_for(|s| *s == State::Stale)).await.is_ok();
    assert!(stale, "the SDK is {:?}, not stale", client.state());
    assert_eq!(
        client.bool_detail("a", &user(), false).reason,
        Reason::Fallthrough,
        "the last snapshot serves"
    );
    assert!(client.bool_value("a", &user(), false));
    assert_eq!(client.revision(), Some(revision));
    assert!(client.data_age().is_some_and(|age| age >= Duration::from_secs(1)));

    client.close().await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_client_that_never_initialised_serves_defaults_with_not_ready() {
    let nothing = format!("http://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let client = Client::builder(SOME_KEY)
        .url(&nothing)
        .start_timeout(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300), "start waits for data up to its timeout");
    assert_eq!((client.state(), client.revision(), client.data_age()), (State::Initializing, None, None));
    let not_ready = Reason::Error { error_kind: ErrorKind::NotReady };
    assert_eq!(
        client.bool_detail("checkout", &user(), true),
        EvaluationDetail {
            value: true,
            variation: None,
            variant: None,
            reason: not_ready.clone(),
            in_rollout: false
        }
    );
    assert_eq!(client.string_detail("banner", &user(), "hello").value, "hello");
    assert_eq!(client.number_value("limit", &user(), 7.5), 7.5);
    assert_eq!(client.json_detail("config", &user(), json!({"a": 1})).reason, not_ready);
    assert!(client.flag_keys().is_empty());
    client.close().await;
    client.close().await;
}

#[tokio::test]
async fn only_bad_configuration_fails_a_start() {
    let refused = |result: Result<Client, Error>| result.map(|_| ()).unwrap_err();
    assert!(matches!(
        refused(Client::builder("vxc_000000000000_client").start().await),
        Error::InvalidServerKey
    ));
    let https = Client::builder(SOME_KEY).url("https://flags.example").start().await;
    assert!(matches!(refused(https), Error::InvalidUrl { which: "stream", .. }));
    let missing =
        Client::builder(SOME_KEY).offline(true).bootstrap_file("/nonexistent/snapshot.json").start().await;
    assert!(matches!(refused(missing), Error::BootstrapFile { .. }));
    let garbage = snapshot_file("garbage", &json!({"not": "a snapshot"}));
    let malformed = Client::builder(SOME_KEY).offline(true).bootstrap_file(&garbage).start().await;
    assert!(matches!(refused(malformed), Error::MalformedBootstrap { .. }));
}

#[tokio::test]
async fn offline_mode_serves_the_bootstrap_and_never_touches_the_network() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let file = snapshot_file("offline", &json!({"revision": 3, "flags": [on_flag("a")], "segments": []}));

    let client = Client::builder("anything: the key is not checked offline")
        .url(&url)
        .offline(true)
        .bootstrap_file(&file)
        .start()
        .await
        .unwrap();
    assert_eq!((client.state(), client.revision()), (State::Offline, Some(3)));
    assert!(client.bool_value("a", &user(), false));
    client.track("clicked", &user(), None);
    client.flush().await;
    client.close().await;
    assert_eq!(client.dropped_events(), 1, "offline events are dropped and counted");
    assert_eq!(client.state(), State::Offline);
    assert!(
        matches!(listener.accept(), Err(error) if error.kind() == IoErrorKind::WouldBlock),
        "offline mode connected to the server"
    );

    let defaults = Client::builder("k").offline(true).start().await.unwrap();
    assert_eq!(defaults.state(), State::Offline);
    assert_eq!(
        defaults.bool_detail("a", &user(), true).reason,
        Reason::Error { error_kind: ErrorKind::NotReady }
    );
}

#[tokio::test]
async fn a_bootstrap_is_served_at_once_and_stale_while_no_sync_confirms_it() {
    let nothing = format!("http://127.0.0.1:{}", free_port());
    let file = snapshot_file("stale", &json!({"revision": 3, "flags": [on_flag("a")], "segments": []}));
    let started = Instant::now();
    let client = Client::builder(SOME_KEY)
        .url(&nothing)
        .bootstrap_file(&file)
        .start_timeout(Duration::from_secs(30))
        .start()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "a bootstrapped start does not wait");
    assert_eq!((client.state(), client.revision()), (State::Stale, Some(3)));
    assert!(client.bool_value("a", &user(), false));
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_sync_replaces_a_bootstrap_whatever_its_revision() {
    let cluster = Cluster::start_with(1, 1, &settings()).await;
    cluster.create_flag("a").await;
    let revision = cluster.revision().await;
    // The bootstrap says `a` is on, at a revision far ahead of the server's (another environment's file,
    // a restored backup): the server's data still replaces it.
    let file = snapshot_file(
        "replaced",
        &json!({"revision": revision + 1000, "flags": [on_flag("a"), on_flag("b")]}),
    );
    let client = sdk(&cluster).bootstrap_file(&file).start().await.unwrap();
    let mut state = client.watch_state();
    let ready = tokio::time::timeout(EVENT_DEADLINE, state.wait_for(|s| *s == State::Ready)).await.is_ok();
    assert!(ready, "the SDK is {:?}", client.state());
    wait_revision(&client, revision).await;
    assert!(!client.bool_value("a", &user(), true), "the server's `a` is off");
    assert_eq!(
        client.bool_detail("b", &user(), true).reason,
        Reason::Error { error_kind: ErrorKind::FlagNotFound }
    );
    client.close().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_narrows_the_flags_streamed_and_polled() {
    let cluster = Cluster::start_with(1, 1, &settings()).await;
    for flag in ["web.a", "web.b", "api.c"] {
        cluster.create_flag(flag).await;
    }
    let streamed = sdk(&cluster).prefix("web.").start().await.unwrap();
    let polled = sdk(&cluster).prefix("web.").streaming(false).start().await.unwrap();
    for client in [&streamed, &polled] {
        let narrowed =
            eventually(EVENT_DEADLINE, || async { client.flag_keys() == ["web.a", "web.b"] }).await;
        assert!(narrowed, "the SDK has {:?}", client.flag_keys());
    }
    let mut changes = [streamed.subscribe_changes(), polled.subscribe_changes()];
    let created = cluster.revision().await;

    assert_eq!(cluster.toggle("api.c", true).await, 200);
    assert_eq!(cluster.toggle("web.a", true).await, 200);
    let revision = cluster.revision().await;
    for (client, changes) in [&streamed, &polled].into_iter().zip(&mut changes) {
        let change = next_matching(changes, "a flag change", |c| c.revision > created).await;
        assert_eq!(change, FlagChange { revision, keys: vec!["web.a".into()] }, "api.c is not reported");
        assert!(client.bool_value("web.a", &user(), false));
        assert_eq!(
            client.bool_detail("api.c", &user(), false).reason,
            Reason::Error { error_kind: ErrorKind::FlagNotFound }
        );
    }
    streamed.close().await;
    polled.close().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracked_events_and_exposures_reach_the_environments_events_stream() {
    let cluster = Cluster::start_with(1, 1, &settings()).await;
    cluster.create_flag("checkout").await;
    assert_eq!(cluster.toggle("checkout", true).await, 200);
    let client = sdk(&cluster).exposures(true).start().await.unwrap();
    wait_revision(&client, cluster.revision().await).await;

    assert!(client.bool_value("checkout", &user(), false));
    client.track("checkout-completed", &user(), Some(42.5));
    client.track("not a valid key", &user(), None);
    client.close().await;
    assert_eq!(client.dropped_events(), 1, "only the invalid key is dropped");

    let bus = vexil_bus::Bus::connect(&cluster.redis.url()).await.unwrap();
    let mut stored = Vec::new();
    for (environment, _) in bus.environments().await.unwrap() {
        for event in bus.recent_events(environment, 100).await.unwrap() {
            stored.push(serde_json::from_slice::<Value>(&event).unwrap());
        }
    }
    let production: Vec<&Value> = stored.iter().filter(|e| e["environment"] == "production").collect();
    assert_eq!(production.len(), 2, "{stored:?}");
    let exposure = production.iter().find(|e| e["kind"] == "exposure").expect("an exposure");
    assert_eq!(
        (&exposure["key"], &exposure["variation"], &exposure["variant"], &exposure["value"]),
        (&json!("checkout"), &json!(0), &json!("on"), &json!(true))
    );
    assert_eq!(exposure["context"], json!({"targetingKey": "user-1", "plan": "pro"}));
    let custom = production.iter().find(|e| e["kind"] == "custom").expect("a custom event");
    assert_eq!((&custom["key"], &custom["value"]), (&json!("checkout-completed"), &json!(42.5)));
    assert_eq!(custom["sdk_key_kind"], "server");
    cluster.stop().await;
}

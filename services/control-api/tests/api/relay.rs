//! The change relay over a real Redis (DESIGN.md §1, §4): a write made through the API reaches the
//! data plane's subscription and snapshot cache, in revision order, exactly once, across a Redis
//! outage, with two control planes on one database, and over a Redis Cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::task::JoinHandle;
use vexil_bus::{Bus, ChangeEvent, Subscription};
use vexil_model::{Context, EnvironmentKey, ProjectKey, Snapshot};
use vexil_proto::{ChangeKind, ItemKind};
use vexil_testkit::{RedisCluster, RedisServer, eventually};

use crate::helpers::*;

/// Delivery on a healthy bus takes milliseconds; the margin is for a busy 2-core machine.
const DELIVERY: Duration = Duration::from_secs(20);
/// After Redis comes back, the relay's retry backoff and the clients' reconnect backoff (each up to
/// 5 s) come on top.
const RECOVERY: Duration = Duration::from_secs(40);

#[tokio::test]
async fn a_change_made_through_the_api_reaches_a_redis_subscriber_and_the_snapshot_cache() {
    // Arrange
    let redis = RedisServer::start();
    let app = spawn_app_with_bus(Bus::connect(&redis.url()).await.expect("connect the relay's bus")).await;
    app.with_flag().await;
    let env = environment_id(&app, "shop", "production").await;
    let before = api_revision(&app, "shop", "production").await;
    // A data-plane replica has its own connection; it subscribes once the set-up has been delivered.
    let replica = Bus::connect(&redis.url()).await.expect("connect the replica's bus");
    wait_until_cached(&replica, env, before, DELIVERY).await;
    let mut subscription = replica.subscribe(&[env]).await.expect("subscribe");

    // Act
    let put = app
        .put(
            "/api/v1/projects/shop/flags/checkout/environments/production",
            &json!({"on": true, "off_variation": 1,
                "rules": [{"id": "germany", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}],
                           "serve": {"variation": 0}}],
                "fallthrough": {"variation": 1}}),
        )
        .await;
    assert_eq!(put.status(), 200);

    // Assert: the event
    let event = next_event(&mut subscription).await;
    assert_eq!(event.environment_id, env);
    assert_eq!(event.revision, before + 1);
    assert_eq!((event.project.as_str(), event.environment.as_str()), ("shop", "production"));
    assert_eq!(event.kind(), ChangeKind::Upsert);
    assert_eq!(event.item(), ItemKind::Flag);
    assert_eq!(event.key, "checkout");
    assert!(event.committed_at_ms > 0);
    let payload: Value = serde_json::from_slice(&event.payload).expect("the payload is JSON");
    assert_eq!(payload["flag"]["key"], "checkout");
    assert_eq!(payload["flag"]["kind"], "boolean");
    assert_eq!(payload["config"]["on"], true);
    assert_eq!(payload["config"]["rules"][0]["id"], "germany");
    assert_eq!(payload["config"]["version"], 2);

    // Assert: the snapshot cache holds the environment at that revision, and it compiles and serves.
    wait_until_cached(&replica, env, before + 1, DELIVERY).await;
    let cached = replica.snapshot(env).await.expect("read the cache").expect("a cached snapshot");
    assert_eq!((cached.environment_id, cached.revision), (env, before + 1));
    assert_eq!((cached.project.as_str(), cached.environment.as_str()), ("shop", "production"));
    let kinds: BTreeSet<&str> = cached.keys.iter().map(|key| key.kind.as_str()).collect();
    assert!(kinds.contains("server") && kinds.contains("client"), "keys: {:?}", cached.keys);
    let snapshot: Snapshot =
        serde_json::from_slice(&cached.snapshot_json).expect("the snapshot is model JSON");
    assert_eq!(snapshot.revision, before + 1);
    let flag =
        snapshot.flags.iter().find(|flag| flag.flag().key.as_str() == "checkout").expect("checkout cached");
    assert!(flag.config().spec().on);
    let compiled = vexil_eval::compile(snapshot).expect("the cached snapshot compiles");
    assert_eq!(compiled.revision(), before + 1);
    let german = vexil_eval::evaluate(&compiled, "checkout", &Context::new("user-1").with("country", "DE"));
    let french = vexil_eval::evaluate(&compiled, "checkout", &Context::new("user-2").with("country", "FR"));
    assert_eq!((german.value, french.value), (Some(&json!(true)), Some(&json!(false))));
}

#[tokio::test]
async fn a_burst_of_toggles_arrives_in_revision_order_without_a_gap() {
    // Arrange
    let redis = RedisServer::start();
    let app = spawn_app_with_bus(Bus::connect(&redis.url()).await.expect("connect")).await;
    app.with_flag().await;
    let env = environment_id(&app, "shop", "production").await;
    let before = api_revision(&app, "shop", "production").await;
    let replica = Bus::connect(&redis.url()).await.expect("connect");
    wait_until_cached(&replica, env, before, DELIVERY).await;
    let events = Collector::start(replica.subscribe(&[env]).await.expect("subscribe"));

    // Act: 50 toggles back to back, without waiting for any delivery.
    let toggles: Vec<bool> = (0..50).map(|i| i % 3 != 1).collect();
    for &on in &toggles {
        let toggled = app
            .post("/api/v1/projects/shop/flags/checkout/environments/production/toggle", &json!({"on": on}))
            .await;
        assert_eq!(toggled.status(), 200);
    }

    // Assert: every revision once, each increasing by one, and each payload the toggle made then.
    let received = events.wait_for(env, before + 50, DELIVERY).await;
    let revisions: Vec<u64> = received.iter().map(|event| event.revision).collect();
    assert_eq!(revisions, (before + 1..=before + 50).collect::<Vec<_>>());
    let served: Vec<bool> = received.iter().map(|event| config_of(event)["on"].as_bool().unwrap()).collect();
    assert_eq!(served, toggles);
    assert_eq!(served.last(), toggles.last());
    wait_until_cached(&replica, env, before + 50, DELIVERY).await;
    wait_until_all_sent(&app, DELIVERY).await;
}

#[tokio::test]
async fn concurrent_changes_to_several_flags_get_consecutive_revisions_and_arrive_in_order() {
    // Arrange: ten flags in one environment.
    let redis = RedisServer::start();
    let app = spawn_app_with_bus(Bus::connect(&redis.url()).await.expect("connect")).await;
    app.with_flag().await;
    let flags: Vec<String> = (0..10).map(|i| format!("flag-{i}")).collect();
    for flag in &flags {
        let created = app
            .post(
                "/api/v1/projects/shop/flags",
                &json!({"key": flag, "kind": "boolean",
                "variations": [{"value": true}, {"value": false}]}),
            )
            .await;
        assert_eq!(created.status(), 201);
    }
    let env = environment_id(&app, "shop", "production").await;
    let before = api_revision(&app, "shop", "production").await;
    let replica = Bus::connect(&redis.url()).await.expect("connect");
    wait_until_cached(&replica, env, before, DELIVERY).await;
    let events = Collector::start(replica.subscribe(&[env]).await.expect("subscribe"));

    // Act: five rounds, each toggling the ten flags at once.
    for round in 0..5 {
        let toggles = flags.iter().map(|flag| {
            let path = format!("/api/v1/projects/shop/flags/{flag}/environments/production/toggle");
            let app = &app;
            async move { app.post(&path, &json!({"on": round % 2 == 0})).await.status() }
        });
        let statuses = futures::future::join_all(toggles).await;
        assert!(statuses.iter().all(|status| *status == 200), "round {round}: {statuses:?}");
    }

    // Assert
    let received = events.wait_for(env, before + 50, DELIVERY).await;
    let revisions: Vec<u64> = received.iter().map(|event| event.revision).collect();
    assert_eq!(revisions, (before + 1..=before + 50).collect::<Vec<_>>());
    let mut per_flag: BTreeMap<&str, usize> = BTreeMap::new();
    for event in &received {
        *per_flag.entry(event.key.as_str()).or_default() += 1;
    }
    assert!(per_flag.values().all(|count| *count == 5), "{per_flag:?}");
    for flag in &flags {
        let last = received.iter().rev().find(|event| &event.key == flag).expect("an event per flag");
        assert_eq!(config_of(last)["on"], true, "{flag}: the last round turned it on");
    }
}

#[tokio::test]
async fn concurrent_writes_to_one_flag_without_if_match_all_apply_and_the_last_event_is_what_is_stored() {
    // Arrange
    let redis = RedisServer::start();
    let app = spawn_app_with_bus(Bus::connect(&redis.url()).await.expect("connect")).await;
    app.with_flag().await;
    let env = environment_id(&app, "shop", "production").await;
    let before = api_revision(&app, "shop", "production").await;
    let replica = Bus::connect(&redis.url()).await.expect("connect");
    wait_until_cached(&replica, env, before, DELIVERY).await;
    let events = Collector::start(replica.subscribe(&[env]).await.expect("subscribe"));
    let path = "/api/v1/projects/shop/flags/checkout/environments/production";
    let version: u64 = app.get(path).await.json::<Value>().await.unwrap()["version"].as_u64().unwrap();

    // Act: twenty writers replace the same configuration at once, none asking for a version.
    let bodies: Vec<Value> = (0..20)
        .map(|i| {
            json!({"on": i % 2 == 0, "targets": [{"variation": 0, "values": [format!("writer-{i}")]}],
                        "fallthrough": {"variation": 1}})
        })
        .collect();
    let responses = futures::future::join_all(bodies.iter().map(|body| app.put(path, body))).await;

    // Assert: every write applied, one after the other, and the events follow the same order.
    let mut versions = Vec::new();
    for response in responses {
        assert_eq!(response.status(), 200, "an unconditional write must not fail on a race");
        versions.push(response.json::<Value>().await.unwrap()["version"].as_u64().unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (version + 1..=version + 20).collect::<Vec<_>>());
    let received = events.wait_for(env, before + 20, DELIVERY).await;
    let revisions: Vec<u64> = received.iter().map(|event| event.revision).collect();
    assert_eq!(revisions, (before + 1..=before + 20).collect::<Vec<_>>());
    let event_versions: Vec<u64> =
        received.iter().map(|event| config_of(event)["version"].as_u64().unwrap()).collect();
    assert_eq!(event_versions, (version + 1..=version + 20).collect::<Vec<_>>());
    let stored: Value = app.get(path).await.json().await.unwrap();
    let last = config_of(received.last().unwrap());
    assert_eq!((&last["targets"], &last["on"]), (&stored["targets"], &stored["on"]));
}

#[tokio::test]
async fn changes_made_while_redis_is_down_are_delivered_in_order_once_it_is_back() {
    // Arrange: a subscriber that lives through the outage.
    let mut redis = RedisServer::start();
    let app = spawn_app_with_bus(Bus::connect(&redis.url()).await.expect("connect")).await;
    app.with_flag().await;
    let env = environment_id(&app, "shop", "production").await;
    let before = api_revision(&app, "shop", "production").await;
    let early_bus = Bus::connect(&redis.url()).await.expect("connect");
    wait_until_cached(&early_bus, env, before, DELIVERY).await;
    wait_until_all_sent(&app, DELIVERY).await;
    let early = Collector::start(early_bus.subscribe(&[env]).await.expect("subscribe"));

    // Act: Redis goes away; writes go on.
    redis.stop();
    let toggles: Vec<bool> = (0..20).map(|i| i % 2 == 0).collect();
    for (i, &on) in toggles.iter().enumerate() {
        let toggled = app
            .post("/api/v1/projects/shop/flags/checkout/environments/production/toggle", &json!({"on": on}))
            .await;
        assert_eq!(toggled.status(), 200, "change {i} while Redis is down");
    }
    assert_eq!(app.store.unsent_count().await.expect("count"), 20, "the changes wait in the database");
    assert_eq!(api_revision(&app, "shop", "production").await, before + 20);

    // Hold the change log so that the relay cannot publish before the subscribers are in place: then
    // what they receive proves delivery and order, not the luck of a race.
    let mut holder = PgConnection::connect(&app.database_url).await.expect("connect");
    let mut hold = holder.begin().await.expect("begin");
    sqlx::query("lock table change_log in access exclusive mode").execute(&mut *hold).await.expect("lock");
    let probe = PgPool::connect(&app.database_url).await.expect("connect");
    let probe = &probe;
    let relay_waits = eventually(RECOVERY, || async move {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_locks where relation = 'change_log'::regclass and not granted",
        )
        .fetch_one(probe)
        .await
        .expect("read pg_locks");
        waiting > 0
    })
    .await;
    assert!(relay_waits, "the relay never came back to the change log");

    redis.start_again();
    let late_bus = Bus::connect(&redis.url()).await.expect("connect after the restart");
    let late = Collector::start(late_bus.subscribe(&[env]).await.expect("subscribe after the restart"));
    let port = redis.port();
    let both_subscribed = eventually(RECOVERY, || async move { shard_subscribers(port, env) == 2 }).await;
    assert!(both_subscribed, "the subscriber from before the outage did not re-subscribe");
    hold.rollback().await.expect("release the change log");

    // Assert: the late subscriber gets every change, in order; the cache and the database agree.
    let received = late.wait_for(env, before + 20, RECOVERY).await;
    let revisions: Vec<u64> = received.iter().map(|event| event.revision).collect();
    assert_eq!(revisions, (before + 1..=before + 20).collect::<Vec<_>>());
    let served: Vec<bool> = received.iter().map(|event| config_of(event)["on"].as_bool().unwrap()).collect();
    assert_eq!(served, toggles);
    wait_until_cached(&late_bus, env, before + 20, RECOVERY).await;
    assert_eq!(cached_revision(&late_bus, env).await, Some(api_revision(&app, "shop", "production").await));
    wait_until_all_sent(&app, RECOVERY).await;

    // Assert: the subscriber from before the outage ends at the environment's revision and keeps
    // receiving new changes in order.
    let early_revisions: Vec<u64> =
        early.wait_for(env, before + 20, RECOVERY).await.iter().map(|event| event.revision).collect();
    assert_eq!(early_revisions, (before + 1..=before + 20).collect::<Vec<_>>());
    assert_eq!(cached_revision(&early_bus, env).await, Some(before + 20));
    for on in [true, false, true] {
        let toggled = app
            .post("/api/v1/projects/shop/flags/checkout/environments/production/toggle", &json!({"on": on}))
            .await;
        assert_eq!(toggled.status(), 200);
    }
    let early_revisions: Vec<u64> =
        early.wait_for(env, before + 23, DELIVERY).await.iter().map(|event| event.revision).collect();
    assert_eq!(early_revisions, (before + 1..=before + 23).collect::<Vec<_>>());
    wait_until_all_sent(&app, DELIVERY).await;
}

#[tokio::test]
async fn two_control_planes_on_one_database_publish_each_change_exactly_once() {
    // Arrange: two replicas of the control plane, each with its relay and its own Redis connection.
    let redis = RedisServer::start();
    let app = spawn_app_with_bus(Bus::connect(&redis.url()).await.expect("connect")).await;
    let second = spawn_replica(&app, Bus::connect(&redis.url()).await.expect("connect")).await;
    app.with_flag().await;
    let env = environment_id(&app, "shop", "production").await;
    let before = api_revision(&app, "shop", "production").await;
    let replica = Bus::connect(&redis.url()).await.expect("connect");
    wait_until_cached(&replica, env, before, DELIVERY).await;
    let events = Collector::start(replica.subscribe(&[env]).await.expect("subscribe"));
    let probe = PgPool::connect(&app.database_url).await.expect("connect");
    let probe = &probe;
    assert_eq!(relay_leases(probe).await.len(), 1, "exactly one relay holds the lease");

    // Act: 30 changes, alternating between the two control planes.
    for i in 0..30 {
        let address = if i % 2 == 0 { &app.address } else { &second };
        let toggled = app
            .client
            .post(format!("{address}/api/v1/projects/shop/flags/checkout/environments/production/toggle"))
            .bearer_auth(&app.admin)
            .json(&json!({"on": i % 2 == 0}))
            .send()
            .await
            .expect("toggle");
        assert_eq!(toggled.status(), 200);
    }

    // Assert: every revision exactly once, and only one relay published anything.
    let received = events.wait_for(env, before + 30, DELIVERY).await;
    let revisions: Vec<u64> = received.iter().map(|event| event.revision).collect();
    assert_eq!(revisions, (before + 1..=before + 30).collect::<Vec<_>>(), "no duplicate, no gap");
    let published = [published_events(&app, &app.address).await, published_events(&app, &second).await];
    assert!(published.contains(&0), "both relays published: {published:?}");
    assert!(published.iter().sum::<u64>() >= 30, "{published:?}");

    // Act: the active relay's lease connection dies (as when its process is killed).
    wait_until_all_sent(&app, DELIVERY).await;
    let [holder] = relay_leases(probe).await[..] else { panic!("one lease expected") };
    let terminated: bool = sqlx::query_scalar("select pg_terminate_backend($1)")
        .bind(holder)
        .fetch_one(probe)
        .await
        .expect("terminate");
    assert!(terminated);
    let taken_over =
        eventually(
            RECOVERY,
            || async move { matches!(relay_leases(probe).await[..], [pid] if pid != holder) },
        )
        .await;
    assert!(taken_over, "no relay took the lease over");
    for i in 0..10 {
        let address = if i % 2 == 0 { &second } else { &app.address };
        let toggled = app
            .client
            .post(format!("{address}/api/v1/projects/shop/flags/checkout/environments/production/toggle"))
            .bearer_auth(&app.admin)
            .json(&json!({"on": i % 2 == 1}))
            .send()
            .await
            .expect("toggle");
        assert_eq!(toggled.status(), 200);
    }

    // Assert: delivery goes on, in order, with still one lease.
    let received = events.wait_for(env, before + 40, DELIVERY).await;
    let revisions: Vec<u64> = received.iter().map(|event| event.revision).collect();
    assert_eq!(revisions, (before + 1..=before + 40).collect::<Vec<_>>());
    assert_eq!(relay_leases(probe).await.len(), 1);
    wait_until_all_sent(&app, DELIVERY).await;
}

#[tokio::test]
async fn changes_in_several_environments_travel_through_a_redis_cluster() {
    // Arrange: four projects, eight environments, spread over the cluster's slots.
    let cluster = RedisCluster::start(3);
    let app = spawn_app_with_bus(Bus::connect(&cluster.url()).await.expect("connect to the cluster")).await;
    let projects = ["shop", "search", "billing", "support"];
    let mut environments = Vec::new();
    for project in projects {
        let created = app.post("/api/v1/projects", &json!({"key": project})).await;
        assert_eq!(created.status(), 201);
        let flag = app
            .post(
                &format!("/api/v1/projects/{project}/flags"),
                &json!({"key": "checkout", "kind": "boolean",
                "variations": [{"value": true}, {"value": false}]}),
            )
            .await;
        assert_eq!(flag.status(), 201);
        for environment in ["development", "production"] {
            let id = environment_id(&app, project, environment).await;
            environments.push((project, environment, id, api_revision(&app, project, environment).await));
        }
    }
    let replica = Bus::connect(&cluster.url()).await.expect("connect to the cluster");
    for &(_, _, id, revision) in &environments {
        wait_until_cached(&replica, id, revision, DELIVERY).await;
    }
    let ids: Vec<i64> = environments.iter().map(|&(_, _, id, _)| id).collect();
    let events = Collector::start(replica.subscribe(&ids).await.expect("subscribe"));

    // Act
    for &(project, environment, _, _) in &environments {
        let toggled = app
            .post(
                &format!("/api/v1/projects/{project}/flags/checkout/environments/{environment}/toggle"),
                &json!({"on": true}),
            )
            .await;
        assert_eq!(toggled.status(), 200);
    }

    // Assert: each environment's event, and its snapshot in the cache, compiled with the flag on.
    for &(project, environment, id, revision) in &environments {
        let received = events.wait_for(id, revision + 1, DELIVERY).await;
        let revisions: Vec<u64> = received.iter().map(|event| event.revision).collect();
        assert_eq!(revisions, [revision + 1], "{project}/{environment}");
        assert_eq!((received[0].project.as_str(), received[0].environment.as_str()), (project, environment));
        assert_eq!(config_of(&received[0])["on"], true);
        wait_until_cached(&replica, id, revision + 1, DELIVERY).await;
        let cached = replica.snapshot(id).await.expect("read").expect("cached");
        let snapshot: Snapshot = serde_json::from_slice(&cached.snapshot_json).expect("model JSON");
        let compiled = vexil_eval::compile(snapshot).expect("compiles");
        let detail = vexil_eval::evaluate(&compiled, "checkout", &Context::new("user-1"));
        assert_eq!(detail.value, Some(&json!(true)), "{project}/{environment}");
    }
    // The environments really live on different nodes, not all in one slot.
    let owners: BTreeSet<u16> = ids
        .iter()
        .map(|id| {
            let key = format!("vexil:{{env:{id}}}:snapshot");
            let owners: Vec<u16> = cluster
                .ports()
                .iter()
                .copied()
                .filter(|&port| redis_cli(port, &["EXISTS", &key]) == "1")
                .collect();
            assert_eq!(owners.len(), 1, "{key} on {owners:?}");
            owners[0]
        })
        .collect();
    assert!(owners.len() >= 2, "every environment on one node: {owners:?}");
}

// --- helpers ---------------------------------------------------------------------------------------

async fn environment_id(app: &TestApp, project: &str, environment: &str) -> i64 {
    let project = ProjectKey::parse(project).expect("project key");
    let environment = EnvironmentKey::parse(environment).expect("environment key");
    app.store.get_environment(&project, &environment).await.expect("the environment exists").id
}

/// The environment's revision as the API reports it.
async fn api_revision(app: &TestApp, project: &str, environment: &str) -> u64 {
    let response = app.get(&format!("/api/v1/projects/{project}/environments/{environment}")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    body["revision"].as_u64().expect("a revision")
}

async fn wait_until_all_sent(app: &TestApp, deadline: Duration) {
    let store = &app.store;
    let sent = eventually(deadline, || async move { store.unsent_count().await.ok() == Some(0) }).await;
    assert!(sent, "{:?} change-log rows still unsent", store.unsent_count().await);
}

async fn cached_revision(bus: &Bus, environment_id: i64) -> Option<u64> {
    bus.snapshot(environment_id).await.ok().flatten().map(|snapshot| snapshot.revision)
}

async fn wait_until_cached(bus: &Bus, environment_id: i64, revision: u64, deadline: Duration) {
    let cached =
        eventually(deadline, || async move { cached_revision(bus, environment_id).await == Some(revision) })
            .await;
    assert!(
        cached,
        "environment {environment_id}: the cache is at {:?}, not {revision}",
        cached_revision(bus, environment_id).await
    );
}

async fn next_event(subscription: &mut Subscription) -> ChangeEvent {
    tokio::time::timeout(DELIVERY, subscription.next())
        .await
        .expect("no change event within the deadline")
        .expect("the subscription ended")
}

/// The configuration in a flag upsert's JSON payload.
fn config_of(event: &ChangeEvent) -> Value {
    let payload: Value = serde_json::from_slice(&event.payload).expect("the payload is JSON");
    payload["config"].clone()
}

/// `(pid)` of every session holding an advisory lock in this database: the relay lease.
async fn relay_leases(probe: &PgPool) -> Vec<i32> {
    sqlx::query_scalar(
        "select l.pid from pg_locks l join pg_database d on d.oid = l.database \
         where l.locktype = 'advisory' and l.granted and d.datname = current_database()",
    )
    .fetch_all(probe)
    .await
    .expect("read pg_locks")
}

/// `vexil_relay_published_events_total` from a control plane's `/metrics`.
async fn published_events(app: &TestApp, address: &str) -> u64 {
    let metrics = app
        .client
        .get(format!("{address}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("vexil_relay_published_events_total "))
        .map_or(0, |value| value.trim().parse::<f64>().expect("a number") as u64)
}

/// Subscribers to an environment's change channel on one Redis (`PUBSUB SHARDNUMSUB`).
fn shard_subscribers(port: u16, environment_id: i64) -> u64 {
    let output =
        redis_cli(port, &["PUBSUB", "SHARDNUMSUB", &format!("vexil:{{env:{environment_id}}}:changes")]);
    output.lines().last().and_then(|count| count.trim().parse().ok()).unwrap_or(0)
}

/// One `redis-cli` command's raw output, trimmed.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The events a subscription delivers, gathered in the background as a replica would receive them.
struct Collector {
    events: Arc<Mutex<Vec<ChangeEvent>>>,
    task: JoinHandle<()>,
}

impl Collector {
    fn start(mut subscription: Subscription) -> Collector {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let task = tokio::spawn(async move {
            while let Some(event) = subscription.next().await {
                sink.lock().unwrap_or_else(PoisonError::into_inner).push(event);
            }
        });
        Collector { events, task }
    }

    /// One environment's events so far, in arrival order.
    fn of(&self, environment_id: i64) -> Vec<ChangeEvent> {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        events.iter().filter(|event| event.environment_id == environment_id).cloned().collect()
    }

    /// Waits until an event of the environment at `revision` or later has arrived; returns all of its
    /// events, in arrival order.
    async fn wait_for(&self, environment_id: i64, revision: u64, deadline: Duration) -> Vec<ChangeEvent> {
        let arrived = eventually(deadline, || async move {
            self.of(environment_id).iter().any(|event| event.revision >= revision)
        })
        .await;
        let events = self.of(environment_id);
        assert!(
            arrived,
            "environment {environment_id}: revision {revision} never arrived; got {:?}",
            events.iter().map(|event| event.revision).collect::<Vec<_>>()
        );
        events
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

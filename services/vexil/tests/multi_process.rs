//! Issue 4: the planes as separate processes of the real `vexil` binary (one `control-api --migrate`,
//! two `streaming`, two `evaluation`) over a fresh PostgreSQL database and a private Redis, checking
//! DESIGN.md §7: changes reach every replica, a killed streaming replica's client resumes on the other
//! with `Last-Event-ID` without a missed change, and a Redis restart mid-burst loses nothing.
//!
//! The processes are `support::cluster`'s: every child is killed on drop, also when a test fails, and
//! its log file is named on stderr when the test panics.

mod support;

use std::time::Instant;

use serde_json::json;
use support::cluster::{CONVERGE_DEADLINE, Cluster, Event};
use vexil_testkit::eventually;

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
    cluster.streaming[0].kill();
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

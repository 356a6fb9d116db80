//! `BusSync` over a real Redis that goes down while the control plane keeps changing things.

use std::time::Duration;

use vexil_bus::Bus;
use vexil_testkit::{RedisServer, eventually};

use crate::helpers::*;

#[tokio::test]
async fn a_replica_that_missed_events_while_redis_was_down_ends_at_the_final_revision() {
    let mut server = RedisServer::start();
    let control_plane = ControlPlane::start().await;
    control_plane.with_project().await;
    let relay_bus = Bus::connect(&server.url()).await.unwrap();
    control_plane.relay(&relay_bus).await.unwrap();
    let (production, revision) = control_plane.environment("production").await;
    let replica_bus = Bus::connect(&server.url()).await.unwrap();
    let replica = Replica::start(replica_bus, None, Duration::from_millis(200));
    assert!(replica.reaches(production, revision).await);

    server.stop();
    for on in [true, false, true] {
        control_plane.toggle("production", on).await;
    }
    assert!(
        control_plane.relay(&relay_bus).await.is_err(),
        "Redis is down: the changes wait in the database"
    );
    assert_eq!(super::helpers::revision(&replica.cache, production), Some(revision), "still serving");
    assert_eq!(bool_value(&replica.cache, production, "checkout", "user-1"), Some(false));

    // The restarted Redis is empty; the relay delivers once it answers, whether or not the replica's
    // subscription is back yet.
    server.start_again();
    let delivered = eventually(DEADLINE, || async { control_plane.relay(&relay_bus).await.is_ok() }).await;
    assert!(delivered, "the relay never reached the restarted Redis");
    let (_, final_revision) = control_plane.environment("production").await;

    assert_eq!(final_revision, revision + 3);
    assert!(replica.reaches(production, final_revision).await, "the replica did not catch up");
    assert_eq!(bool_value(&replica.cache, production, "checkout", "user-1"), Some(true));
    replica.stop().await;
}

#[tokio::test]
async fn a_replica_starts_from_the_database_while_redis_is_down_and_follows_the_bus_once_it_is_back() {
    let mut server = RedisServer::start();
    let control_plane = ControlPlane::start().await;
    control_plane.with_project().await;
    control_plane.toggle("production", true).await;
    let (production, revision) = control_plane.environment("production").await;
    let relay_bus = Bus::connect(&server.url()).await.unwrap();
    let replica_bus = Bus::connect(&server.url()).await.unwrap();
    server.stop();

    let replica = Replica::start(replica_bus, Some(control_plane.store.clone()), Duration::from_millis(200));

    assert!(replica.reaches(production, revision).await, "warm-started from the database");
    assert_eq!(bool_value(&replica.cache, production, "checkout", "user-1"), Some(true));

    server.start_again();
    control_plane.toggle("production", false).await;
    let delivered = eventually(DEADLINE, || async { control_plane.relay(&relay_bus).await.is_ok() }).await;
    assert!(delivered, "the relay never reached the restarted Redis");

    assert!(replica.reaches(production, revision + 1).await, "followed the bus once Redis was back");
    assert_eq!(bool_value(&replica.cache, production, "checkout", "user-1"), Some(false));
    server.stop();
    replica.stop().await;
}

#[tokio::test]
async fn a_replica_catches_up_as_soon_as_its_subscription_is_back_not_at_the_next_periodic_check() {
    let mut server = RedisServer::start();
    let control_plane = ControlPlane::start().await;
    control_plane.with_project().await;
    let relay_bus = Bus::connect(&server.url()).await.unwrap();
    control_plane.relay(&relay_bus).await.unwrap();
    let (production, revision) = control_plane.environment("production").await;
    // A periodic check far beyond the test's deadline: only the re-subscription can bring it up to date.
    let replica = Replica::start(Bus::connect(&server.url()).await.unwrap(), None, Duration::from_secs(3600));
    assert!(replica.reaches(production, revision).await);

    server.stop();
    control_plane.toggle("production", true).await;
    control_plane.toggle("production", false).await;
    server.start_again();
    // A fresh connection publishes at once, most likely before the replica's subscriber has reconnected
    // (its backoff has grown while Redis was down): those events never reach the replica's channel.
    let fresh_relay_bus = Bus::connect(&server.url()).await.unwrap();
    control_plane.relay(&fresh_relay_bus).await.unwrap();

    assert!(replica.reaches(production, revision + 2).await, "the replica did not catch up");
    assert_eq!(bool_value(&replica.cache, production, "checkout", "user-1"), Some(false));
    replica.stop().await;
}

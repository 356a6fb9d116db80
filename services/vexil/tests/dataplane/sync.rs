//! `BusSync` end to end over the in-process bus: changes made through the control plane's store, moved
//! to the bus by its relay, reach a replica's cache.

use std::time::Duration;

use vexil_bus::Bus;
use vexil_dataplane::LoadOutcome;
use vexil_keys::KeyKind;
use vexil_testkit::eventually;

use crate::helpers::*;

/// Long enough that a test passing with it did not rely on the periodic check.
const NEVER: Duration = Duration::from_secs(3600);
const OFTEN: Duration = Duration::from_millis(50);

#[tokio::test]
async fn a_replica_follows_the_control_plane_through_the_bus() {
    let control_plane = ControlPlane::start().await;
    let keys = control_plane.with_project().await;
    let bus = Bus::in_process();
    control_plane.relay(&bus).await.unwrap();
    let (production, revision) = control_plane.environment("production").await;
    let (development, development_revision) = control_plane.environment("development").await;

    let replica = Replica::start(bus.clone(), None, NEVER);

    assert!(replica.reaches(production, revision).await, "warm start from the bus's snapshot");
    assert_eq!(super::helpers::revision(&replica.cache, development), Some(development_revision));
    assert_eq!(bool_value(&replica.cache, production, "checkout", "user-1"), Some(false));
    let production_keys = keys.iter().find(|k| k.environment.as_str() == "production").unwrap();
    let server = replica.cache.authenticate(&production_keys.server).expect("the production server key");
    let client = replica.cache.authenticate(&production_keys.client).expect("the production client key");
    assert_eq!((server.environment.id(), server.kind), (production, KeyKind::Server));
    assert_eq!((client.environment.id(), client.kind), (production, KeyKind::Client));

    control_plane.toggle("production", true).await;
    control_plane.relay(&bus).await.unwrap();
    let (_, toggled) = control_plane.environment("production").await;

    assert!(replica.reaches(production, toggled).await, "the toggle reached the replica");
    assert_eq!(toggled, revision + 1);
    assert_eq!(bool_value(&replica.cache, production, "checkout", "user-1"), Some(true));
    let replay =
        replica.cache.events_since(production, revision).expect("applied as an event, not a re-sync");
    assert_eq!(replay.iter().map(|e| e.revision).collect::<Vec<_>>(), [toggled]);
    assert_eq!(bool_value(&replica.cache, development, "checkout", "user-1"), Some(false), "only production");
    replica.stop().await;
}

#[tokio::test]
async fn a_replica_warm_starts_from_the_database_when_the_bus_has_nothing() {
    let control_plane = ControlPlane::start().await;
    control_plane.with_project().await;
    control_plane.toggle("production", true).await;
    let (production, revision) = control_plane.environment("production").await;
    let bus = Bus::in_process();

    let replica = Replica::start(bus.clone(), Some(control_plane.store.clone()), NEVER);

    assert!(replica.reaches(production, revision).await, "loaded from the database");
    assert_eq!(bool_value(&replica.cache, production, "checkout", "user-1"), Some(true));
    assert_eq!(replica.cache.environments().len(), 2);

    // The relay now publishes everything up to `revision` (ignored: the replica has it) and the next change.
    control_plane.toggle("production", false).await;
    control_plane.relay(&bus).await.unwrap();

    assert!(replica.reaches(production, revision + 1).await);
    assert_eq!(bool_value(&replica.cache, production, "checkout", "user-1"), Some(false));
    replica.stop().await;
}

#[tokio::test]
async fn a_missed_event_is_a_gap_that_resyncs_the_environment() {
    let control_plane = ControlPlane::start().await;
    control_plane.with_project().await;
    let bus = Bus::in_process();
    control_plane.relay(&bus).await.unwrap();
    let (production, revision) = control_plane.environment("production").await;
    let replica = Replica::start(bus.clone(), None, NEVER);
    assert!(replica.reaches(production, revision).await);

    for on in [true, false, true] {
        control_plane.toggle("production", on).await;
    }
    // Deliver only the last of the three events (and the snapshot): the replica sees a gap.
    let pending = control_plane.store.pending_changes(100).await.unwrap();
    let batch = pending.iter().find(|batch| batch.environment_id == production).unwrap();
    bus.publish(&batch.events[2..], &batch.snapshot).await.unwrap();

    assert!(replica.reaches(production, revision + 3).await, "re-synced on the gap");
    assert_eq!(bool_value(&replica.cache, production, "checkout", "user-1"), Some(true));
    assert!(
        replica.cache.events_since(production, revision).is_none(),
        "a re-sync cannot replay what it skipped"
    );
    replica.stop().await;
}

#[tokio::test]
async fn a_silent_gap_is_caught_by_the_periodic_check() {
    let control_plane = ControlPlane::start().await;
    control_plane.with_project().await;
    let bus = Bus::in_process();
    control_plane.relay(&bus).await.unwrap();
    let (production, revision) = control_plane.environment("production").await;
    let replica = Replica::start(bus.clone(), None, OFTEN);
    assert!(replica.reaches(production, revision).await);

    control_plane.toggle("production", true).await;
    // The snapshot and the registry move on, but no event is ever published.
    let snapshot = control_plane.store.environment_snapshot(production).await.unwrap();
    bus.publish(&[], &snapshot).await.unwrap();

    assert!(replica.reaches(production, revision + 1).await, "the registry check found the replica behind");
    assert_eq!(bool_value(&replica.cache, production, "checkout", "user-1"), Some(true));
    replica.stop().await;
}

#[tokio::test]
async fn environments_created_and_deleted_later_appear_and_disappear() {
    let control_plane = ControlPlane::start().await;
    let keys = control_plane.with_project().await;
    let bus = Bus::in_process();
    control_plane.relay(&bus).await.unwrap();
    let (development, _) = control_plane.environment("development").await;
    let replica = Replica::start(bus.clone(), None, OFTEN);
    assert!(eventually(DEADLINE, || async { replica.cache.ready() }).await);
    let development_keys = keys.iter().find(|k| k.environment.as_str() == "development").unwrap();
    assert!(replica.cache.authenticate(&development_keys.server).is_some());

    let (_, staging_keys) = control_plane
        .store
        .create_environment(&actor(), &project(), &env("staging"), "Staging")
        .await
        .unwrap();
    control_plane.store.delete_environment(&actor(), &project(), &env("development")).await.unwrap();
    control_plane.relay(&bus).await.unwrap();
    let (staging, staging_revision) = control_plane.environment("staging").await;

    assert!(replica.reaches(staging, staging_revision).await, "discovered by the periodic check");
    assert!(replica.cache.authenticate(&staging_keys.server).is_some());
    assert!(
        eventually(DEADLINE, || async { replica.cache.environment(development).is_none() }).await,
        "the deletion reached the replica"
    );
    assert!(replica.cache.authenticate(&development_keys.server).is_none());
    assert!(replica.cache.authenticate(&development_keys.client).is_none());

    // The bus still lists the deleted environment, with an empty snapshot; a later periodic check (one
    // had to run to find this second environment) must not bring it back.
    let (_, more_keys) =
        control_plane.store.create_environment(&actor(), &project(), &env("qa"), "QA").await.unwrap();
    control_plane.relay(&bus).await.unwrap();
    assert!(eventually(DEADLINE, || async { replica.cache.authenticate(&more_keys.server).is_some() }).await);
    assert!(replica.cache.environment(development).is_none());
    let leftover = bus.snapshot(development).await.unwrap().expect("the relay's last snapshot");
    assert!(matches!(replica.cache.load(&leftover), Ok(LoadOutcome::Ignored { .. })));
    replica.stop().await;
}

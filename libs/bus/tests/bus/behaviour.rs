//! What every bus implementation must do, written once and run against each (see `main.rs`).

use std::time::Duration;

use vexil_bus::{Bus, ChangeEvent, EnvironmentSnapshot, Subscription};
use vexil_proto::{ChangeKind, ItemKind};

/// How long an event may take to arrive. Generous: the machine may be busy compiling.
pub const DELIVERY_DEADLINE: Duration = Duration::from_secs(10);

pub fn event(environment_id: i64, revision: u64) -> ChangeEvent {
    ChangeEvent {
        environment_id,
        project: "default".into(),
        environment: "production".into(),
        revision,
        kind: ChangeKind::Upsert.into(),
        item: ItemKind::Flag.into(),
        key: format!("flag-{revision}"),
        payload: format!(r#"{{"revision":{revision}}}"#).into_bytes(),
        committed_at_ms: 1_700_000_000_000 + revision as i64,
    }
}

pub fn snapshot(environment_id: i64, revision: u64) -> EnvironmentSnapshot {
    EnvironmentSnapshot {
        environment_id,
        project: "default".into(),
        environment: "production".into(),
        revision,
        snapshot_json: format!(r#"{{"revision":{revision},"flags":[],"segments":[]}}"#).into_bytes(),
        keys: Vec::new(),
        committed_at_ms: 1_700_000_000_000 + revision as i64,
    }
}

/// Events `from..=to` of one environment and the snapshot at `to`.
pub fn batch(environment_id: i64, from: u64, to: u64) -> (Vec<ChangeEvent>, EnvironmentSnapshot) {
    ((from..=to).map(|revision| event(environment_id, revision)).collect(), snapshot(environment_id, to))
}

pub async fn publish_batch(bus: &Bus, environment_id: i64, from: u64, to: u64) {
    let (events, snapshot) = batch(environment_id, from, to);
    bus.publish(&events, &snapshot).await.expect("publish");
}

/// The next event, failing the test if none arrives before the deadline.
pub async fn next_event(subscription: &mut Subscription) -> ChangeEvent {
    tokio::time::timeout(DELIVERY_DEADLINE, subscription.next())
        .await
        .expect("an event arrives before the deadline")
        .expect("the subscription is still open")
}

pub async fn subscribers_receive_published_events_in_order(bus: &Bus) {
    let mut subscription = bus.subscribe(&[7]).await.unwrap();

    publish_batch(bus, 7, 1, 5).await;
    publish_batch(bus, 7, 6, 7).await;

    for revision in 1..=7 {
        assert_eq!(next_event(&mut subscription).await, event(7, revision));
    }
}

pub async fn every_subscriber_receives_every_event(bus: &Bus) {
    let mut first = bus.subscribe(&[7]).await.unwrap();
    let mut second = bus.subscribe(&[7]).await.unwrap();

    publish_batch(bus, 7, 1, 2).await;

    for subscription in [&mut first, &mut second] {
        assert_eq!(next_event(subscription).await.revision, 1);
        assert_eq!(next_event(subscription).await.revision, 2);
    }
}

pub async fn a_subscriber_receives_only_its_environments_and_those_it_adds(bus: &Bus) {
    let mut subscription = bus.subscribe(&[1]).await.unwrap();

    publish_batch(bus, 2, 1, 1).await;
    publish_batch(bus, 1, 1, 1).await;
    assert_eq!(next_event(&mut subscription).await, event(1, 1), "environment 2 is not subscribed");

    subscription.add(&[2, 3]).await.unwrap();
    publish_batch(bus, 2, 2, 2).await;
    publish_batch(bus, 3, 1, 1).await;
    assert_eq!(next_event(&mut subscription).await, event(2, 2));
    assert_eq!(next_event(&mut subscription).await, event(3, 1));
}

pub async fn events_of_several_environments_keep_their_order_per_environment(
    bus: &Bus,
    environments: &[i64],
) {
    let mut subscription = bus.subscribe(environments).await.unwrap();

    for revision in 1..=5 {
        for &environment_id in environments {
            publish_batch(bus, environment_id, revision, revision).await;
        }
    }

    let mut last_seen = std::collections::HashMap::new();
    for _ in 0..5 * environments.len() {
        let event = next_event(&mut subscription).await;
        let last = last_seen.insert(event.environment_id, event.revision).unwrap_or(0);
        assert_eq!(event.revision, last + 1, "environment {} out of order", event.environment_id);
    }
    for &environment_id in environments {
        assert_eq!(last_seen.get(&environment_id), Some(&5));
        assert_eq!(bus.snapshot(environment_id).await.unwrap(), Some(snapshot(environment_id, 5)));
    }
}

pub async fn the_published_snapshot_is_cached(bus: &Bus) {
    assert_eq!(bus.snapshot(11).await.unwrap(), None);

    publish_batch(bus, 11, 1, 3).await;
    assert_eq!(bus.snapshot(11).await.unwrap(), Some(snapshot(11, 3)));

    // A snapshot with no events (e.g. a re-sync) is cached too.
    bus.publish(&[], &snapshot(11, 4)).await.unwrap();
    assert_eq!(bus.snapshot(11).await.unwrap(), Some(snapshot(11, 4)));
    assert_eq!(bus.snapshot(12).await.unwrap(), None);
}

pub async fn an_older_snapshot_never_overwrites_a_newer_one(bus: &Bus) {
    publish_batch(bus, 5, 1, 9).await;

    // A retry of an older batch, and the same revision with other content: neither replaces it.
    publish_batch(bus, 5, 3, 4).await;
    let mut same_revision = snapshot(5, 9);
    same_revision.project = "other".into();
    bus.publish(&[], &same_revision).await.unwrap();

    assert_eq!(bus.snapshot(5).await.unwrap(), Some(snapshot(5, 9)));
    assert_eq!(bus.environments().await.unwrap(), vec![(5, 9)]);
}

pub async fn revisions_compare_exactly_beyond_the_precision_of_a_double(bus: &Bus) {
    // 2^53 and 2^53 + 1 are the same f64; a numeric comparison in Lua would refuse the newer one.
    let two_pow_53 = 1_u64 << 53;
    bus.publish(&[], &snapshot(6, two_pow_53)).await.unwrap();
    bus.publish(&[], &snapshot(6, two_pow_53 + 1)).await.unwrap();
    assert_eq!(bus.snapshot(6).await.unwrap().map(|cached| cached.revision), Some(two_pow_53 + 1));

    bus.publish(&[], &snapshot(6, u64::MAX)).await.unwrap();
    bus.publish(&[], &snapshot(6, u64::MAX - 1)).await.unwrap();
    bus.publish(&[], &snapshot(6, 99)).await.unwrap();
    assert_eq!(bus.snapshot(6).await.unwrap().map(|cached| cached.revision), Some(u64::MAX));
    assert_eq!(bus.environments().await.unwrap(), vec![(6, u64::MAX)]);
}

pub async fn the_registry_lists_every_environment_with_its_latest_revision(bus: &Bus) {
    assert_eq!(bus.environments().await.unwrap(), vec![]);

    publish_batch(bus, 30, 1, 4).await;
    publish_batch(bus, -2, 1, 1).await;
    publish_batch(bus, 10, 1, 2).await;
    publish_batch(bus, 30, 5, 6).await;
    publish_batch(bus, 10, 1, 1).await; // an older retry

    assert_eq!(bus.environments().await.unwrap(), vec![(-2, 1), (10, 2), (30, 6)]);
}

pub async fn an_inconsistent_batch_is_refused_and_nothing_is_published(bus: &Bus) {
    let mut subscription = bus.subscribe(&[8]).await.unwrap();

    let refused = bus.publish(&[event(8, 2), event(8, 1)], &snapshot(8, 2)).await;
    assert!(
        matches!(refused, Err(vexil_bus::BusError::InconsistentBatch { environment_id: 8, .. })),
        "{refused:?}"
    );
    assert_eq!(bus.snapshot(8).await.unwrap(), None);

    publish_batch(bus, 8, 1, 1).await;
    assert_eq!(next_event(&mut subscription).await, event(8, 1), "the refused events were never sent");
}

pub async fn the_bus_answers_a_ping(bus: &Bus) {
    bus.ping().await.unwrap();
}

fn events_json(from: usize, to: usize) -> Vec<Vec<u8>> {
    (from..=to).map(|i| format!(r#"{{"kind":"custom","key":"event-{i}"}}"#).into_bytes()).collect()
}

pub async fn appended_events_are_read_back_in_order_per_environment(bus: &Bus) {
    assert_eq!(bus.recent_events(40, 10).await.unwrap(), Vec::<Vec<u8>>::new());

    bus.append_events(40, &events_json(1, 3), 1_000).await.unwrap();
    bus.append_events(41, &events_json(7, 7), 1_000).await.unwrap();
    bus.append_events(40, &events_json(4, 5), 1_000).await.unwrap();
    bus.append_events(40, &[], 1_000).await.unwrap();

    assert_eq!(bus.recent_events(40, 100).await.unwrap(), events_json(1, 5));
    assert_eq!(bus.recent_events(40, 2).await.unwrap(), events_json(4, 5), "the newest two");
    assert_eq!(bus.recent_events(41, 100).await.unwrap(), events_json(7, 7));
    assert_eq!(bus.recent_events(40, 0).await.unwrap(), Vec::<Vec<u8>>::new());
}

/// The stream is capped near `max_len`. Redis trims with `~` (whole nodes of 100 entries), so only an
/// upper bound of `max_len` plus one node is promised there; the in-process ring is exact.
pub async fn the_events_stream_is_capped_near_its_max_len(bus: &Bus, exact: bool) {
    for batch in 0..10 {
        bus.append_events(42, &events_json(batch * 100 + 1, batch * 100 + 100), 150).await.unwrap();
    }

    let kept = bus.recent_events(42, 10_000).await.unwrap();
    assert!(kept.len() >= 150 && kept.len() <= 250, "kept {} events", kept.len());
    if exact {
        assert_eq!(kept.len(), 150);
    }
    assert_eq!(kept.last(), events_json(1_000, 1_000).last(), "the newest is kept");
    assert_eq!(kept, events_json(1_001 - kept.len(), 1_000), "the newest are kept, in order");
}

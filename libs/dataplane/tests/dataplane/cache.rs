//! The cache on its own: revision discipline, snapshots, keys, the replay ring and the change feed.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::broadcast::error::TryRecvError;
use vexil_dataplane::{ApplyOutcome, Cache, CacheOptions, Change, Error, LoadOutcome};
use vexil_keys::KeyKind;
use vexil_keys::SecretKind;
use vexil_proto::{ChangeEvent, ChangeKind, ItemKind};

use crate::helpers::*;

const ENV: i64 = 7;

/// A cache with environment 7 at revision 1: flag `checkout` off, no segments, no keys.
fn cache_at_revision_1() -> Cache {
    let cache = Cache::new();
    cache.load(&snapshot(ENV, 1, vec![flag("checkout", false)], vec![], vec![])).unwrap();
    cache
}

fn revisions(events: Option<Vec<Arc<ChangeEvent>>>) -> Option<Vec<u64>> {
    events.map(|events| events.iter().map(|event| event.revision).collect())
}

#[test]
fn events_in_revision_order_are_applied_one_after_the_other() {
    let cache = cache_at_revision_1();
    let add_segment = event(
        ENV,
        3,
        ChangeKind::Upsert,
        ItemKind::Segment,
        "beta",
        serde_json::to_vec(&segment("beta", &["user-1"])).unwrap(),
    );
    let add_beta_flag = event(
        ENV,
        4,
        ChangeKind::Upsert,
        ItemKind::Flag,
        "beta-only",
        serde_json::to_vec(&flag_for_segment("beta-only", "beta")).unwrap(),
    );

    assert_eq!(
        cache.apply(&flag_event(ENV, 2, "checkout", true)).unwrap(),
        ApplyOutcome::Applied { revision: 2 }
    );
    assert_eq!(bool_value(&cache, ENV, "checkout", "user-1"), Some(true));
    assert_eq!(cache.apply(&add_segment).unwrap(), ApplyOutcome::Applied { revision: 3 });
    assert_eq!(cache.apply(&add_beta_flag).unwrap(), ApplyOutcome::Applied { revision: 4 });

    let state = cache.environment(ENV).unwrap();
    assert_eq!(state.revision(), 4);
    assert_eq!(state.snapshot().revision, 4);
    assert_eq!(state.compiled().revision(), 4);
    assert_eq!(state.committed_at_ms(), 1_700_000_000_004);
    let flags: Vec<&str> = state.snapshot().flags.iter().map(|f| f.flag().key.as_str()).collect();
    assert_eq!(flags, ["beta-only", "checkout"], "kept sorted by key, as the control plane sends them");
    assert_eq!(bool_value(&cache, ENV, "beta-only", "user-1"), Some(true));
    assert_eq!(bool_value(&cache, ENV, "beta-only", "user-2"), Some(false));
}

#[test]
fn deletes_remove_flags_and_segments() {
    let cache = Cache::new();
    cache
        .load(&snapshot(
            ENV,
            1,
            vec![flag("checkout", true), flag("search", true)],
            vec![segment("beta", &["user-1"])],
            vec![],
        ))
        .unwrap();

    cache.apply(&event(ENV, 2, ChangeKind::Delete, ItemKind::Flag, "search", vec![])).unwrap();
    cache.apply(&event(ENV, 3, ChangeKind::Delete, ItemKind::Segment, "beta", vec![])).unwrap();

    let state = cache.environment(ENV).unwrap();
    assert_eq!(state.revision(), 3);
    assert_eq!(state.snapshot().flags.len(), 1);
    assert!(state.snapshot().segments.is_empty());
    assert!(state.compiled().flag("search").is_none());
    assert_eq!(bool_value(&cache, ENV, "search", "user-1"), None);
    assert_eq!(bool_value(&cache, ENV, "checkout", "user-1"), Some(true));
}

#[test]
fn an_event_the_cache_already_has_is_ignored() {
    let cache = cache_at_revision_1();
    cache.apply(&flag_event(ENV, 2, "checkout", true)).unwrap();

    let redelivered = cache.apply(&flag_event(ENV, 2, "checkout", false)).unwrap();
    let older = cache.apply(&flag_event(ENV, 1, "checkout", false)).unwrap();

    assert_eq!(redelivered, ApplyOutcome::Ignored { have: 2, got: 2 });
    assert_eq!(older, ApplyOutcome::Ignored { have: 2, got: 1 });
    assert_eq!(bool_value(&cache, ENV, "checkout", "user-1"), Some(true));
}

#[test]
fn an_event_beyond_the_next_revision_is_a_gap_and_changes_nothing() {
    let cache = cache_at_revision_1();

    let outcome = cache.apply(&flag_event(ENV, 3, "checkout", true)).unwrap();

    assert_eq!(outcome, ApplyOutcome::Gap { have: 1, got: 3 });
    assert_eq!(revision(&cache, ENV), Some(1));
    assert_eq!(bool_value(&cache, ENV, "checkout", "user-1"), Some(false));
}

#[test]
fn an_event_for_an_unknown_environment_is_a_gap_from_zero() {
    let cache = Cache::new();

    let outcome = cache.apply(&flag_event(99, 5, "checkout", true)).unwrap();

    assert_eq!(outcome, ApplyOutcome::Gap { have: 0, got: 5 });
    assert!(cache.environment(99).is_none());
}

#[test]
fn an_environment_delete_removes_the_environment_for_good() {
    let server = new_key(SecretKind::Server, 0);
    let cache = Cache::new();
    cache.load(&snapshot(ENV, 1, vec![flag("checkout", true)], vec![], vec![server.key.clone()])).unwrap();
    cache.load(&snapshot(8, 1, vec![], vec![], vec![])).unwrap();
    assert!(cache.authenticate(&server.secret).is_some());
    let mut feed = cache.subscribe();

    let outcome =
        cache.apply(&event(ENV, 2, ChangeKind::Delete, ItemKind::Environment, "production", vec![]));

    assert_eq!(outcome.unwrap(), ApplyOutcome::Removed { revision: 2 });
    assert!(cache.environment(ENV).is_none());
    assert_eq!(cache.environments().iter().map(|s| s.id()).collect::<Vec<_>>(), [8]);
    assert!(cache.authenticate(&server.secret).is_none(), "its keys no longer authenticate");
    assert!(cache.events_since(ENV, 1).is_none());
    assert!(matches!(feed.try_recv(), Ok(Change::Removed { environment_id: ENV, revision: 2 })));
    // The relay caches an empty snapshot at the deletion's revision, and may redeliver events: neither
    // brings the environment back.
    let late = cache.load(&snapshot(ENV, 2, vec![], vec![], vec![])).unwrap();
    assert_eq!(late, LoadOutcome::Ignored { have: 2, offered: 2 });
    assert_eq!(
        cache.apply(&flag_event(ENV, 2, "checkout", true)).unwrap(),
        ApplyOutcome::Ignored { have: 2, got: 2 }
    );
    assert!(cache.environment(ENV).is_none());
}

#[test]
fn a_snapshot_no_newer_than_the_cache_is_ignored() {
    let cache = cache_at_revision_1();
    cache.apply(&flag_event(ENV, 2, "checkout", true)).unwrap();
    cache.apply(&flag_event(ENV, 3, "checkout", true)).unwrap();

    let older = cache.load(&snapshot(ENV, 2, vec![flag("checkout", false)], vec![], vec![])).unwrap();
    let same = cache.load(&snapshot(ENV, 3, vec![flag("checkout", false)], vec![], vec![])).unwrap();

    assert_eq!(older, LoadOutcome::Ignored { have: 3, offered: 2 });
    assert_eq!(same, LoadOutcome::Ignored { have: 3, offered: 3 });
    assert_eq!(bool_value(&cache, ENV, "checkout", "user-1"), Some(true));
    assert_eq!(revisions(cache.events_since(ENV, 1)), Some(vec![2, 3]), "the ring is untouched");
}

#[test]
fn a_newer_snapshot_replaces_the_state() {
    let cache = cache_at_revision_1();
    let mut feed = cache.subscribe();

    let outcome = cache.load(&snapshot(ENV, 9, vec![flag("checkout", true)], vec![], vec![])).unwrap();

    assert_eq!(outcome, LoadOutcome::Installed { previous: Some(1), revision: 9 });
    assert_eq!(bool_value(&cache, ENV, "checkout", "user-1"), Some(true));
    match feed.try_recv() {
        Ok(Change::Resynced { environment_id, revision, previous }) => {
            assert_eq!((environment_id, revision, previous), (ENV, 9, Some(1)));
        }
        other => panic!("expected a resync on the feed, got {other:?}"),
    }
    assert_eq!(
        cache.apply(&flag_event(ENV, 10, "checkout", false)).unwrap(),
        ApplyOutcome::Applied { revision: 10 }
    );
}

#[test]
fn a_snapshot_that_does_not_compile_is_refused_and_changes_nothing() {
    let cache = cache_at_revision_1();
    let mut broken = flag("broken", true);
    broken["config"]["prerequisites"] = json!([{"key": "missing", "variation": 0}]);

    let error = cache.load(&snapshot(ENV, 2, vec![broken], vec![], vec![])).unwrap_err();
    let unreadable = cache.load(&vexil_proto::EnvironmentSnapshot {
        snapshot_json: b"{not json".to_vec(),
        ..snapshot(ENV, 3, vec![], vec![], vec![])
    });

    assert!(matches!(error, Error::Compile { environment_id: ENV, revision: 2, .. }), "{error}");
    assert!(matches!(unreadable, Err(Error::MalformedSnapshot { revision: 3, .. })), "{unreadable:?}");
    assert_eq!(revision(&cache, ENV), Some(1));
}

#[test]
fn an_event_that_cannot_be_applied_is_refused_and_changes_nothing() {
    let cache = cache_at_revision_1();
    let garbage = event(ENV, 2, ChangeKind::Upsert, ItemKind::Flag, "checkout", b"{\"flag\":".to_vec());
    let wrong_key = event(
        ENV,
        2,
        ChangeKind::Upsert,
        ItemKind::Flag,
        "other",
        serde_json::to_vec(&flag("checkout", true)).unwrap(),
    );
    let mut dangling = flag("dangling", true);
    dangling["config"]["prerequisites"] = json!([{"key": "missing", "variation": 0}]);
    let does_not_compile =
        event(ENV, 2, ChangeKind::Upsert, ItemKind::Flag, "dangling", serde_json::to_vec(&dangling).unwrap());
    let unspecified = event(ENV, 2, ChangeKind::Unspecified, ItemKind::Flag, "checkout", vec![]);

    assert!(matches!(cache.apply(&garbage), Err(Error::MalformedPayload { item: "flag", .. })));
    assert!(matches!(cache.apply(&wrong_key), Err(Error::KeyMismatch { .. })));
    assert!(matches!(cache.apply(&does_not_compile), Err(Error::Compile { revision: 2, .. })));
    assert!(matches!(cache.apply(&unspecified), Err(Error::UnsupportedChange { .. })));
    assert_eq!(revision(&cache, ENV), Some(1));
    assert_eq!(
        cache.apply(&flag_event(ENV, 2, "checkout", true)).unwrap(),
        ApplyOutcome::Applied { revision: 2 }
    );
}

#[test]
fn authenticate_accepts_each_key_with_its_kind_and_environment() {
    let server = new_key(SecretKind::Server, 0);
    let client = new_key(SecretKind::Client, 0);
    let other = new_key(SecretKind::Server, 0);
    let cache = Cache::new();
    cache.load(&snapshot(ENV, 1, vec![], vec![], vec![server.key.clone(), client.key.clone()])).unwrap();
    cache.load(&snapshot(8, 1, vec![], vec![], vec![other.key.clone()])).unwrap();

    let as_server = cache.authenticate(&server.secret).expect("the server key");
    let as_client = cache.authenticate(&client.secret).expect("the client key");
    let in_other = cache.authenticate(&other.secret).expect("the other environment's key");

    assert_eq!((as_server.environment.id(), as_server.kind), (ENV, KeyKind::Server));
    assert_eq!(as_server.key_id, server.key.id);
    assert_eq!((as_client.environment.id(), as_client.kind), (ENV, KeyKind::Client));
    assert_eq!((in_other.environment.id(), in_other.kind), (8, KeyKind::Server));
}

#[test]
fn authenticate_refuses_a_wrong_secret_a_wrong_kind_and_garbage() {
    let server = new_key(SecretKind::Server, 0);
    let mut mislabelled = new_key(SecretKind::Server, 0);
    mislabelled.key.kind = "client".into();
    let cache = Cache::new();
    cache.load(&snapshot(ENV, 1, vec![], vec![], vec![server.key.clone(), mislabelled.key.clone()])).unwrap();
    let mut wrong_secret = server.secret.clone();
    let last = wrong_secret.pop().unwrap();
    wrong_secret.push(if last == 'a' { 'b' } else { 'a' });
    let unknown = new_key(SecretKind::Server, 0);

    assert!(cache.authenticate(&wrong_secret).is_none(), "a wrong secret with a known id");
    assert!(cache.authenticate(&mislabelled.secret).is_none(), "a server-shaped secret of a client key");
    assert!(
        cache.authenticate(&server.secret.replacen("vxs_", "vxc_", 1)).is_none(),
        "the kind is part of the secret"
    );
    assert!(cache.authenticate(&unknown.secret).is_none(), "an id the cache does not know");
    assert!(cache.authenticate("").is_none());
    assert!(cache.authenticate("Bearer nonsense").is_none());
    assert!(cache.authenticate(&server.secret).is_some());
}

#[test]
fn an_expired_key_is_refused_and_one_within_its_overlap_window_accepted() {
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let expired = new_key(SecretKind::Server, now_ms - 1_000);
    let overlapping = new_key(SecretKind::Server, now_ms + 3_600_000);
    let cache = Cache::new();
    cache
        .load(&snapshot(ENV, 1, vec![], vec![], vec![expired.key.clone(), overlapping.key.clone()]))
        .unwrap();

    assert!(cache.authenticate(&expired.secret).is_none());
    assert!(cache.authenticate(&overlapping.secret).is_some());
}

#[test]
fn key_events_add_expire_and_remove_keys() {
    let cache = cache_at_revision_1();
    let mut rotated = new_key(SecretKind::Server, 0);
    assert!(cache.authenticate(&rotated.secret).is_none());

    cache.apply(&key_event(ENV, 2, &rotated.key)).unwrap();
    assert_eq!(cache.authenticate(&rotated.secret).map(|a| a.environment.id()), Some(ENV));

    rotated.key.expires_at_ms = 1;
    cache.apply(&key_event(ENV, 3, &rotated.key)).unwrap();
    assert!(cache.authenticate(&rotated.secret).is_none(), "expired by rotation");

    rotated.key.expires_at_ms = 0;
    cache.apply(&key_event(ENV, 4, &rotated.key)).unwrap();
    cache.apply(&event(ENV, 5, ChangeKind::Delete, ItemKind::SdkKey, &rotated.key.id, vec![])).unwrap();
    assert!(cache.authenticate(&rotated.secret).is_none(), "deleted");
    assert!(cache.environment(ENV).unwrap().keys().is_empty());
    assert_eq!(revision(&cache, ENV), Some(5));
}

#[test]
fn the_ring_replays_what_a_reconnecting_client_missed() {
    let cache = cache_at_revision_1();
    for revision in 2..=5 {
        cache.apply(&flag_event(ENV, revision, "checkout", revision % 2 == 0)).unwrap();
    }

    assert_eq!(revisions(cache.events_since(ENV, 1)), Some(vec![2, 3, 4, 5]));
    assert_eq!(revisions(cache.events_since(ENV, 3)), Some(vec![4, 5]));
    assert_eq!(revisions(cache.events_since(ENV, 5)), Some(vec![]));
    assert_eq!(revisions(cache.events_since(ENV, 0)), None, "from before the cache's first snapshot");
    assert_eq!(revisions(cache.events_since(99, 0)), None, "an unknown environment");
}

#[test]
fn a_client_further_back_than_the_ring_gets_none() {
    let cache = Cache::with_options(CacheOptions { ring_capacity: 3, ..CacheOptions::default() });
    cache.load(&snapshot(ENV, 1, vec![flag("checkout", false)], vec![], vec![])).unwrap();
    for revision in 2..=6 {
        cache.apply(&flag_event(ENV, revision, "checkout", true)).unwrap();
    }

    assert_eq!(revisions(cache.events_since(ENV, 3)), Some(vec![4, 5, 6]));
    assert_eq!(revisions(cache.events_since(ENV, 2)), None, "revision 3 has left the ring");
}

#[test]
fn a_resync_empties_the_ring() {
    let cache = cache_at_revision_1();
    cache.apply(&flag_event(ENV, 2, "checkout", true)).unwrap();

    cache.load(&snapshot(ENV, 5, vec![flag("checkout", true)], vec![], vec![])).unwrap();

    assert_eq!(revisions(cache.events_since(ENV, 2)), None, "revisions 3 to 5 were never seen as events");
    assert_eq!(revisions(cache.events_since(ENV, 5)), Some(vec![]));
}

#[test]
fn the_feed_carries_each_applied_event_once_it_is_visible() {
    let cache = cache_at_revision_1();
    let mut feed = cache.subscribe();

    cache.apply(&flag_event(ENV, 2, "checkout", true)).unwrap();
    cache.apply(&flag_event(ENV, 2, "checkout", true)).unwrap();

    match feed.try_recv() {
        Ok(change @ Change::Applied { .. }) => {
            assert_eq!((change.environment_id(), change.revision()), (ENV, 2));
            let Change::Applied { event, .. } = change else { unreachable!() };
            assert_eq!(event.key, "checkout");
            assert_eq!(revision(&cache, ENV), Some(2));
            assert_eq!(revisions(cache.events_since(ENV, 1)), Some(vec![2]));
        }
        other => panic!("expected an applied event, got {other:?}"),
    }
    assert!(matches!(feed.try_recv(), Err(TryRecvError::Empty)), "an ignored event is not on the feed");
}

#[test]
fn concurrent_writers_keep_the_feed_in_revision_order() {
    let cache = cache_at_revision_1();
    let mut feed = cache.subscribe();

    // Every writer offers every event; each is applied exactly once, by whichever writer is first.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for revision in 2..=200 {
                    cache.apply(&flag_event(ENV, revision, "checkout", revision % 2 == 0)).unwrap();
                }
            });
        }
    });

    let mut seen = Vec::new();
    while let Ok(change) = feed.try_recv() {
        seen.push(change.revision());
    }
    assert_eq!(seen, (2..=200).collect::<Vec<_>>());
    assert_eq!(revision(&cache, ENV), Some(200));
}

#[test]
fn environments_lists_every_environment_by_id() {
    let cache = Cache::new();
    for id in [5, 3, 9] {
        cache.load(&snapshot(id, 1, vec![], vec![], vec![])).unwrap();
    }

    let ids: Vec<i64> = cache.environments().iter().map(|state| state.id()).collect();

    assert_eq!(ids, [3, 5, 9]);
    assert!(!cache.ready(), "only the sync task decides the cache is ready");
}

//! `/v1/stream`: hydrate, patches, deletes, ids, prefixes, resuming, and who may open it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

fn flag_keys(hydrate: &Event) -> Vec<&str> {
    hydrate.data["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|flag| flag["flag"]["key"].as_str().unwrap())
        .collect()
}

both_paths! {
    async fn a_stream_starts_with_a_retry_hint_then_a_hydrate_of_the_environment(serving: Serving) {
        let app = spawn_app_on(serving).await;
        let revision = app.revision("production").await;

        let mut stream = app.open_flags("", &[("Accept-Encoding", "gzip")]).await;

        assert_eq!(stream.headers["cache-control"], "no-cache");
        assert_eq!(stream.headers["x-accel-buffering"], "no");
        assert_ne!(stream.headers.get("content-encoding").map(|v| v.to_str().unwrap()), Some("gzip"));
        assert_eq!(stream.next().await, Some(Sse::Retry(app.options.retry_ms)));
        let hydrate = stream.event().await;
        assert_eq!(hydrate.name, "hydrate");
        assert_eq!(hydrate.id, Some(revision));
        assert_eq!(hydrate.data["revision"], json!(revision));
        assert_eq!(flag_keys(&hydrate), ["checkout"]);
        assert_eq!(hydrate.data["flags"][0]["config"]["on"], json!(false));
        assert_eq!(hydrate.data["flags"][0]["flag"]["variations"][0]["name"], json!("on"));
        assert_eq!(hydrate.data["segments"], json!([]));
    }
}

both_paths! {
    async fn a_large_hydrate_arrives_whole(serving: Serving) {
        let app = spawn_app_on(serving).await;
        let keys: Vec<String> = (0..60).map(|i| format!("flag-{i:02}")).collect();
        for key in &keys {
            app.store.create_flag(&actor(), &project(), boolean_flag(key, false)).await.expect("create flag");
        }
        app.sync().await;

        let mut stream = app.open_flags("", &[]).await;

        let hydrate = stream.event().await;
        assert!(hydrate.data.to_string().len() > 3 * 4096, "large enough to be sent in pieces");
        assert_eq!(flag_keys(&hydrate).len(), 61);
        assert_eq!(flag_keys(&hydrate)[..2], ["checkout", "flag-00"]);
    }
}

both_paths! {
    async fn a_toggle_is_a_patch_whose_id_is_the_new_revision(serving: Serving) {
        let app = spawn_app_on(serving).await;
        let mut stream = app.open_flags("", &[]).await;
        let hydrate = stream.event().await;

        let revision = app.toggle("checkout", true).await;

        let patch = stream.event().await;
        assert_eq!(patch.name, "patch");
        assert_eq!(patch.id, Some(revision));
        assert_eq!(revision, hydrate.id.unwrap() + 1);
        assert_eq!(patch.data["kind"], "flag");
        assert_eq!(patch.data["key"], "checkout");
        assert_eq!(patch.data["flag"], hydrate.data["flags"][0]["flag"]);
        assert_eq!(patch.data["config"]["on"], json!(true));
        assert_eq!(patch.data.as_object().unwrap().len(), 4, "kind, key, flag, config: {}", patch.data);
    }
}

both_paths! {
    async fn every_change_is_sent_byte_for_byte_as_the_contract_serialises_it(serving: Serving) {
        // The `patch` of a change is spliced from the control plane's payload rather than serialised
        // again (the fast path); what arrives must be exactly the typed event's JSON all the same.
        let app = spawn_app_on(serving).await;
        let mut stream = app.open_flags("", &[]).await;
        stream.event().await;

        app.toggle("checkout", true).await;
        app.create_segment(json!({"key": "beta", "name": "Beta \"testers\"", "included": ["user-1"]})).await;
        app.delete_segment("beta").await;
        app.delete_flag("checkout").await;

        for expected in ["patch", "patch", "delete", "delete"] {
            let event = stream.event().await;
            assert_eq!(event.name, expected);
            let change = match vexil_protocol::server::ReceivedChange::read(&event.name, &event.text).unwrap() {
                vexil_protocol::server::ReceivedChange::Apply(change) => change,
                other => panic!("{other:?} from {}", event.text),
            };
            assert_eq!(event.text, String::from_utf8(change.to_json()).unwrap(), "{change:?}");
        }
    }
}

#[tokio::test]
async fn segments_are_patched_and_deleted_flags_are_deletes() {
    let app = spawn_app().await;
    let mut stream = app.open_flags("", &[]).await;
    stream.event().await;

    let segment_revision = app.create_segment(json!({"key": "beta", "included": ["user-1"]})).await;
    let delete_revision = app.delete_flag("checkout").await;

    let segment = stream.event().await;
    assert_eq!((segment.name.as_str(), segment.id), ("patch", Some(segment_revision)));
    assert_eq!(segment.data["kind"], "segment");
    assert_eq!(segment.data["key"], "beta");
    assert_eq!(segment.data["segment"]["included"], json!(["user-1"]));
    let delete = stream.event().await;
    assert_eq!((delete.name.as_str(), delete.id), ("delete", Some(delete_revision)));
    assert_eq!(delete.data, json!({"kind": "flag", "key": "checkout"}));
}

#[tokio::test]
async fn a_prefix_narrows_the_hydrate_and_the_changes_and_ids_jump_over_what_is_left_out() {
    let app = spawn_app().await;
    app.create_flag("search.new", false).await;
    app.create_flag("search.old", false).await;
    app.create_segment(json!({"key": "beta", "included": ["user-1"]})).await;

    let mut stream = app.open_flags("&prefix=search.", &[]).await;
    let hydrate = stream.event().await;
    let skipped = app.toggle("checkout", true).await;
    let revision = app.toggle("search.new", true).await;

    assert_eq!(flag_keys(&hydrate), ["search.new", "search.old"]);
    assert_eq!(hydrate.data["segments"][0]["key"], "beta", "segments are not narrowed");
    let patch = stream.event().await;
    assert_eq!((patch.data["key"].as_str(), patch.id), (Some("search.new"), Some(revision)));
    assert_eq!(revision, skipped + 1);
    assert_eq!(hydrate.id, Some(skipped - 1));
}

#[tokio::test]
async fn a_prefix_brings_its_prerequisites_and_starts_over_when_it_needs_a_new_one() {
    let app = spawn_app().await;
    app.create_flag("gate", false).await;
    app.create_flag("other", false).await;
    app.create_flag("search.new", false).await;
    app.create_flag("search.old", false).await;
    let requires = |key: &str| {
        json!({"on": true, "off_variation": 1, "fallthrough": {"variation": 0},
               "prerequisites": [{"key": key, "variation": 0}]})
    };
    app.configure("search.new", requires("gate")).await;

    let mut stream = app.open_flags("&prefix=search.", &[]).await;
    let hydrate = stream.event().await;
    assert_eq!(flag_keys(&hydrate), ["gate", "search.new", "search.old"], "the prerequisite comes along");

    // A change to the prerequisite is the client's business too; one to an unrelated flag is not.
    app.toggle("other", true).await;
    let gate = app.toggle("gate", true).await;
    let patch = stream.event().await;
    assert_eq!(
        (patch.name.as_str(), patch.data["key"].as_str(), patch.id),
        ("patch", Some("gate"), Some(gate))
    );

    // `search.old` now needs `other`, which the client never got: a patch would leave it unable to
    // evaluate `search.old`, so the stream starts over.
    let revision = app.configure("search.old", requires("other")).await;
    let again = stream.event().await;
    assert_eq!((again.name.as_str(), again.id), ("hydrate", Some(revision)));
    assert_eq!(flag_keys(&again), ["gate", "other", "search.new", "search.old"]);
}

#[tokio::test]
async fn a_prefix_with_characters_no_flag_key_has_is_a_400_problem() {
    let app = spawn_app().await;

    let response = app.get(&format!("/v1/stream?key={}&prefix=a%20b", app.production.server), &[]).await;

    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(
        (problem["code"].as_str(), problem["field"].as_str()),
        (Some("invalid_parameter"), Some("prefix"))
    );
}

both_paths! {
    async fn a_reconnect_with_last_event_id_gets_only_the_missed_events(serving: Serving) {
        let app = spawn_app_on(serving).await;
        let mut first = app.open_flags("", &[]).await;
        let seen = first.event().await.id.unwrap();
        drop(first);
        let missed = [app.toggle("checkout", true).await, app.toggle("checkout", false).await];

        let mut resumed = app.open_flags("", &[("Last-Event-ID", &seen.to_string())]).await;
        let mut from_query = app.open_flags(&format!("&lastEventId={}", missed[0]), &[]).await;

        let replayed = [resumed.event().await, resumed.event().await];
        assert_eq!(
            replayed.each_ref().map(|e| (e.name.as_str(), e.id)),
            [("patch", Some(missed[0])), ("patch", Some(missed[1]))]
        );
        assert_eq!(replayed[0].data["config"]["on"], json!(true));
        assert_eq!(replayed[1].data["config"]["on"], json!(false));
        let replayed = from_query.event().await;
        assert_eq!((replayed.name.as_str(), replayed.id), ("patch", Some(missed[1])));
        assert!(resumed.stays_quiet(Duration::from_millis(300)).await, "no hydrate after the replay");

        let live = app.toggle("checkout", true).await;
        assert_eq!(resumed.event().await.id, Some(live));
        assert_eq!(from_query.event().await.id, Some(live));
    }
}

#[tokio::test]
async fn a_client_that_is_up_to_date_gets_nothing_until_the_next_change() {
    let app = spawn_app().await;
    let current = app.revision("production").await;

    let mut stream = app.open_flags("", &[("Last-Event-ID", &current.to_string())]).await;

    assert_eq!(stream.next().await, Some(Sse::Retry(app.options.retry_ms)));
    assert!(stream.stays_quiet(Duration::from_millis(300)).await);
    let revision = app.toggle("checkout", true).await;
    let patch = stream.event().await;
    assert_eq!((patch.name.as_str(), patch.id), ("patch", Some(revision)));
}

#[tokio::test]
async fn a_last_event_id_older_than_the_replay_ring_gets_a_fresh_hydrate() {
    let app = spawn_app_with(Options { ring_capacity: 2, ..Options::default() }).await;
    let old = app.revision("production").await;
    for on in [true, false, true] {
        app.toggle("checkout", on).await;
    }
    let current = app.revision("production").await;

    let mut stream = app.open_flags("", &[("Last-Event-ID", &old.to_string())]).await;

    let hydrate = stream.event().await;
    assert_eq!((hydrate.name.as_str(), hydrate.id), ("hydrate", Some(current)));
    assert_eq!(hydrate.data["flags"][0]["config"]["on"], json!(true));
}

#[tokio::test]
async fn a_last_event_id_from_the_future_or_not_a_number_gets_a_fresh_hydrate() {
    let app = spawn_app().await;
    let current = app.revision("production").await;

    for id in [(current + 1000).to_string(), "not-a-revision".into(), "-3".into()] {
        let mut stream = app.open_flags("", &[("Last-Event-ID", &id)]).await;
        let hydrate = stream.event().await;
        assert_eq!((hydrate.name.as_str(), hydrate.id), ("hydrate", Some(current)), "Last-Event-ID {id}");
    }
}

#[tokio::test]
async fn sdk_key_changes_are_never_sent_but_move_the_id_on() {
    let app = spawn_app().await;
    let mut stream = app.open_flags("", &[]).await;
    let before = stream.event().await.id.unwrap();

    let rotated = app.rotate_keys(3600).await;
    let revision = app.toggle("checkout", true).await;

    assert!(rotated > before, "rotating keys made change events");
    let patch = stream.event().await;
    assert_eq!((patch.name.as_str(), patch.id), ("patch", Some(revision)), "the key events were skipped");
    assert_eq!(revision, rotated + 1);
}

#[tokio::test]
async fn a_resync_of_the_replica_sends_a_fresh_hydrate() {
    let app = spawn_app().await;
    let (id, _) = app.environment("production").await;
    let mut stream = app.open_flags("", &[]).await;
    stream.event().await;

    // The replica misses the event and re-syncs from a snapshot instead.
    app.store
        .toggle_flag(&actor(), &project(), &flag_key("checkout"), &env("production"), true)
        .await
        .unwrap();
    let snapshot = app.store.environment_snapshot(id).await.unwrap();
    app.cache.load(&snapshot).unwrap();

    let hydrate = stream.event().await;
    assert_eq!((hydrate.name.as_str(), hydrate.id), ("hydrate", Some(snapshot.revision)));
    assert_eq!(hydrate.data["flags"][0]["config"]["on"], json!(true));
    app.sync().await;
    assert!(
        stream.stays_quiet(Duration::from_millis(300)).await,
        "the events already in the hydrate are not sent"
    );
}

#[tokio::test]
async fn the_key_may_come_in_a_header() {
    let app = spawn_app().await;
    let bearer = format!("Bearer {}", app.production.server);

    for header in [("Authorization", bearer.as_str()), ("X-API-Key", app.production.server.as_str())] {
        let mut stream = app.open("/v1/stream", &[header]).await;
        assert_eq!(stream.event().await.name, "hydrate", "{}", header.0);
    }
}

#[tokio::test]
async fn a_client_key_may_not_open_the_flag_stream() {
    let app = spawn_app().await;

    let response = app.get(&format!("/v1/stream?key={}", app.production.client), &[]).await;

    assert_eq!(response.status(), 403);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "forbidden");
}

both_paths! {
    async fn a_missing_or_unknown_key_is_a_401_problem_and_not_a_stream(serving: Serving) {
        let app = spawn_app_on(serving).await;
        let unknown = app.production.server.replace(|c: char| c.is_ascii_digit(), "7");

        for path in
            ["/v1/stream".to_owned(), format!("/v1/stream?key={unknown}"), "/v1/stream?key=vxs_nope".into()]
        {
            let response = app.get(&path, &[]).await;
            assert_eq!(response.status(), 401, "{path}");
            assert_eq!(response.headers()["content-type"], "application/problem+json", "{path}");
            let problem: Value = response.json().await.unwrap();
            assert_eq!(problem["code"], "unauthorized", "{path}");
        }
    }
}

#[tokio::test]
async fn streams_are_scoped_to_their_keys_environment() {
    let app = spawn_app().await;
    let mut development = app.open(&format!("/v1/stream?key={}", app.development.server), &[]).await;
    development.event().await;

    app.toggle("checkout", true).await;

    assert!(
        development.stays_quiet(Duration::from_millis(300)).await,
        "a production change is not development's"
    );
}

#[tokio::test]
async fn a_rotated_out_key_ends_its_streams() {
    let app = spawn_app().await;
    let mut stream = app.open_flags("", &[]).await;
    stream.event().await;

    app.rotate_keys(0).await;

    assert_eq!(stream.until_end().await, vec![]);
    let response = app.get(&format!("/v1/stream?key={}", app.production.server), &[]).await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn a_deleted_environment_ends_its_streams() {
    let app = spawn_app().await;
    let mut stream = app.open_flags("", &[]).await;
    stream.event().await;

    app.store.delete_environment(&actor(), &project(), &env("production")).await.expect("delete");
    app.sync().await;

    assert_eq!(stream.until_end().await, vec![]);
}

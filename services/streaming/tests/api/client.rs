//! `/v1/client/stream`: evaluated values for one context, and only what changes for it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

fn path(key: &str, context: &Value) -> String {
    format!("/v1/client/stream?key={key}&context={}", base64url(&serde_json::to_vec(context).unwrap()))
}

/// On for contexts in Germany, off (variation 1) for everyone else.
fn germany_only() -> Value {
    json!({"on": true, "off_variation": 1, "fallthrough": {"variation": 1},
           "rules": [{"id": "germany", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}],
                      "serve": {"variation": 0}}]})
}

#[tokio::test]
async fn values_of_client_side_flags_are_sent_without_rules() {
    let app = spawn_app().await;
    app.create_flag("internal", false).await;
    app.configure("checkout", germany_only()).await;
    let revision = app.revision("production").await;
    let context = json!({"targetingKey": "user-1", "country": "DE"});

    let response = app.get(&path(&app.production.client, &context), &[]).await;
    assert_eq!(response.status(), 200);
    let mut stream = SseReader::new(response);

    let values = stream.event().await;
    assert_eq!((values.name.as_str(), values.id), ("values", Some(revision)));
    assert_eq!(
        values.data,
        json!({"revision": revision, "full": true,
               "flags": {"checkout": {"value": true, "variation": 0, "variant": "on", "reason": "RULE_MATCH"}}})
    );
    let text = values.data.to_string();
    assert!(!text.contains("germany") && !text.contains("internal"), "no rules, no other flags: {text}");
}

both_paths! {
    async fn after_a_change_only_the_values_that_changed_for_the_context_are_sent(serving: Serving) {
        let app = spawn_app_on(serving).await;
        app.create_flag("banner", true).await;
        let context = json!({"targetingKey": "user-1"});
        let mut stream = app.open(&path(&app.production.client, &context), &[]).await;
        let full = stream.event().await;
        assert_eq!(full.data["flags"].as_object().unwrap().len(), 2);

        let toggled = app.toggle("checkout", true).await;
        // On, but serving user-1 (no country) the same `false` as before: nothing to send.
        let unchanged = app.configure("banner", germany_only()).await;
        let toggled_again = app.toggle("checkout", false).await;

        let first = stream.event().await;
        assert_eq!(first.id, Some(toggled));
        assert_eq!(
            first.data,
            json!({"revision": toggled, "full": false, "flags": {"checkout":
                   {"value": true, "variation": 0, "variant": "on", "reason": "FALLTHROUGH"}}})
        );
        let second = stream.event().await;
        assert_eq!(second.id, Some(toggled_again), "nothing was sent for revision {unchanged}");
        assert_eq!(
            second.data["flags"],
            json!({"checkout": {"value": false, "variation": 1, "variant": "off", "reason": "OFF"}})
        );
    }
}

#[tokio::test]
async fn a_flag_deleted_or_no_longer_client_side_is_a_delete() {
    let app = spawn_app().await;
    app.create_flag("banner", true).await;
    let mut stream = app.open(&path(&app.production.client, &json!({"targetingKey": "u"})), &[]).await;
    stream.event().await;

    app.store
        .update_flag(&actor(), &project(), &flag_key("banner"), boolean_flag("banner", false), None)
        .await
        .unwrap();
    app.sync().await;
    let hidden = app.revision("production").await;
    let deleted = app.delete_flag("checkout").await;

    let first = stream.event().await;
    assert_eq!((first.name.as_str(), first.id), ("delete", Some(hidden)));
    assert_eq!(first.data, json!({"kind": "flag", "key": "banner"}));
    let second = stream.event().await;
    assert_eq!((second.name.as_str(), second.id), ("delete", Some(deleted)));
    assert_eq!(second.data, json!({"kind": "flag", "key": "checkout"}));
}

#[tokio::test]
async fn a_flag_that_needs_a_targeting_key_says_so_for_an_empty_context() {
    let app = spawn_app().await;
    app.configure(
        "checkout",
        json!({"on": true, "fallthrough": {"rollout": {"weights": [{"variation": 0, "weight": 50000}, {"variation": 1, "weight": 50000}]}}}),
    )
    .await;

    let mut stream = app.open(&format!("/v1/client/stream?key={}", app.production.client), &[]).await;

    let values = stream.event().await;
    assert_eq!(
        values.data["flags"]["checkout"],
        json!({"reason": "ERROR", "error_kind": "TARGETING_KEY_MISSING"})
    );
}

#[tokio::test]
async fn server_keys_may_open_the_client_stream_and_still_see_client_side_flags_only() {
    let app = spawn_app().await;
    app.create_flag("internal", false).await;

    let mut stream = app.open(&path(&app.production.server, &json!({"targetingKey": "u"})), &[]).await;

    let values = stream.event().await;
    assert_eq!(values.data["flags"].as_object().unwrap().keys().collect::<Vec<_>>(), ["checkout"]);
}

#[tokio::test]
async fn a_malformed_context_is_a_400_problem_and_not_a_stream() {
    let app = spawn_app().await;
    let not_an_object = base64url(b"[1]");
    let bad_targeting_key = base64url(br#"{"targetingKey": 5}"#);

    for context in ["%21%21%21", not_an_object.as_str(), bad_targeting_key.as_str()] {
        let response =
            app.get(&format!("/v1/client/stream?key={}&context={context}", app.production.client), &[]).await;
        assert_eq!(response.status(), 400, "{context}");
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(
            (problem["code"].as_str(), problem["field"].as_str()),
            (Some("invalid_parameter"), Some("context"))
        );
    }
}

#[tokio::test]
async fn sdk_key_changes_send_nothing_to_client_streams() {
    let app = spawn_app().await;
    let mut stream = app.open(&path(&app.production.client, &json!({"targetingKey": "u"})), &[]).await;
    stream.event().await;

    app.rotate_keys(3600).await;

    assert!(stream.stays_quiet(Duration::from_millis(300)).await);
}

//! `POST /v1/events`: batches validated and appended to the environment's events stream.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{flags, json_body, problem, spawn_app};

#[tokio::test]
async fn a_batch_is_appended_in_order_with_where_and_when_it_was_received() {
    let app = spawn_app().await;
    let batch = json!({"events": [
        {"kind": "exposure", "key": flags::TARGETED, "context": {"targetingKey": "u1", "country": "DE"},
         "variation": 0, "variant": "beta", "value": "beta", "timestamp": 1_700_000_000_000_u64},
        {"kind": "custom", "key": "checkout-completed", "context": {"targetingKey": "u1"}, "value": 42.5},
    ]});

    let response = app.post("/v1/events", &app.client_key, &batch).await;

    assert_eq!(response.status(), 202);
    assert_eq!(json_body(response).await, json!({"accepted": 2}));
    let stored: Vec<Value> = app
        .bus
        .recent_events(app.environment_id, 10)
        .await
        .unwrap()
        .iter()
        .map(|bytes| serde_json::from_slice(bytes).unwrap())
        .collect();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0]["kind"], "exposure");
    assert_eq!(stored[0]["key"], flags::TARGETED);
    assert_eq!(stored[0]["context"], json!({"targetingKey": "u1", "country": "DE"}));
    assert_eq!(stored[0]["variation"], 0);
    assert_eq!(stored[0]["timestamp"], 1_700_000_000_000_u64);
    assert_eq!(stored[0]["environment_id"], app.environment_id);
    assert_eq!(stored[0]["project"], "shop");
    assert_eq!(stored[0]["environment"], "production");
    assert_eq!(stored[0]["sdk_key_kind"], "client");
    assert_eq!(stored[1]["kind"], "custom");
    assert_eq!(stored[1]["value"], 42.5);
    let received = stored[1]["received_at"].as_u64().unwrap();
    assert_eq!(stored[1]["timestamp"].as_u64(), Some(received), "the receiving time when none is given");
}

#[tokio::test]
async fn each_environment_has_its_own_stream() {
    let app = spawn_app().await;
    let event = json!({"events": [{"kind": "custom", "key": "signup", "context": {}}]});

    assert_eq!(app.post("/v1/events", &app.development_server_key, &event).await.status(), 202);

    assert!(app.bus.recent_events(app.environment_id, 10).await.unwrap().is_empty());
    let development = app
        .store
        .get_environment(&crate::helpers::project(), &crate::helpers::env("development"))
        .await
        .unwrap()
        .id;
    assert_eq!(app.bus.recent_events(development, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_invalid_event_refuses_the_batch_naming_every_problem() {
    let app = spawn_app().await;
    let batch = json!({"events": [
        {"kind": "custom", "key": "fine", "context": {}},
        {"kind": "custom", "key": "not a key", "context": {}, "value": "ten", "variation": 1},
    ]});

    let response = app.post("/v1/events", &app.server_key, &batch).await;

    assert_eq!(response.status(), 422);
    let body = problem(response).await;
    assert_eq!(body["code"], "validation_failed");
    let fields: Vec<&str> =
        body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["events[1].key", "events[1].variation", "events[1].value"]);
    assert!(app.bus.recent_events(app.environment_id, 10).await.unwrap().is_empty(), "nothing was stored");
}

#[tokio::test]
async fn malformed_batches_are_400s_naming_the_field() {
    let app = spawn_app().await;

    let unknown_kind = app
        .post(
            "/v1/events",
            &app.server_key,
            &json!({"events": [{"kind": "click", "key": "k", "context": {}}]}),
        )
        .await;
    assert_eq!(unknown_kind.status(), 400);
    assert_eq!(problem(unknown_kind).await["field"], "events[0].kind");

    let no_context =
        app.post("/v1/events", &app.server_key, &json!({"events": [{"kind": "custom", "key": "k"}]})).await;
    assert_eq!(problem(no_context).await["field"], "events[0].context");

    let no_events = app.post("/v1/events", &app.server_key, &json!({})).await;
    assert_eq!(problem(no_events).await["field"], "events");
}

#[tokio::test]
async fn a_batch_over_the_limit_is_refused() {
    let app = spawn_app().await;
    let events: Vec<Value> =
        (0..1_001).map(|_| json!({"kind": "custom", "key": "k", "context": {}})).collect();

    // Over 64 KiB as well: raise nothing, the body limit answers first.
    let response = app.post("/v1/events", &app.server_key, &json!({ "events": events })).await;

    assert!(matches!(response.status().as_u16(), 413 | 422), "{}", response.status());
}

#[tokio::test]
async fn events_need_a_key() {
    let app = spawn_app().await;

    let response = app.send(Method::POST, "/v1/events", None, Some(&json!({"events": []}))).await;

    assert_eq!(response.status(), 401);
}

//! A flag's configuration is checked against what it reaches in its environment (prerequisites,
//! transitively, and the segments they use) before the write commits.

use serde_json::{Value, json};

use crate::helpers::*;

fn config_path(flag: &str) -> String {
    format!("/api/v1/projects/shop/flags/{flag}/environments/production")
}

async fn create_flag(app: &TestApp, key: &str) {
    let created = app
        .post(
            "/api/v1/projects/shop/flags",
            &json!({"key": key, "kind": "boolean",
            "variations": [{"value": true}, {"value": false}]}),
        )
        .await;
    assert_eq!(created.status(), 201);
}

fn requires(flag: &str) -> Value {
    json!({"on": true, "fallthrough": {"variation": 0}, "prerequisites": [{"key": flag, "variation": 0}]})
}

async fn revision(app: &TestApp) -> u64 {
    let environment: Value =
        app.get("/api/v1/projects/shop/environments/production").await.json().await.unwrap();
    environment["revision"].as_u64().unwrap()
}

#[tokio::test]
async fn a_change_that_closes_a_prerequisite_cycle_through_other_flags_is_refused() {
    // Arrange: a -> b -> c.
    let app = spawn_app().await;
    app.with_flag().await;
    for flag in ["a", "b", "c"] {
        create_flag(&app, flag).await;
    }
    assert_eq!(app.put(&config_path("a"), &requires("b")).await.status(), 200);
    assert_eq!(app.put(&config_path("b"), &requires("c")).await.status(), 200);
    let before = revision(&app).await;

    // Act: c -> a would close the cycle.
    let refused = app.put(&config_path("c"), &requires("a")).await;

    // Assert
    assert_eq!(refused.status(), 409);
    let problem = problem(refused).await;
    assert!(problem["detail"].as_str().unwrap().contains("cycle"), "{problem}");
    assert_eq!(revision(&app).await, before, "nothing was written");
    let c: Value = app.get(&config_path("c")).await.json().await.unwrap();
    assert_eq!(c["prerequisites"], json!([]));
}

#[tokio::test]
async fn a_prerequisite_is_checked_with_the_segments_it_uses_and_must_be_live() {
    // Arrange: b serves by a segment; `old` is archived.
    let app = spawn_app().await;
    app.with_flag().await;
    for flag in ["a", "b", "old"] {
        create_flag(&app, flag).await;
    }
    let segment = app
        .post(
            "/api/v1/projects/shop/environments/production/segments",
            &json!({"key": "beta", "included": ["user-1"]}),
        )
        .await;
    assert_eq!(segment.status(), 201);
    let by_segment = json!({"on": true, "fallthrough": {"variation": 1}, "rules": [{"id": "beta",
        "clauses": [{"attribute": "targetingKey", "op": "segment_match", "values": ["beta"]}], "serve": {"variation": 0}}]});
    assert_eq!(app.put(&config_path("b"), &by_segment).await.status(), 200);
    let archived = app.patch("/api/v1/projects/shop/flags/old", &json!({"archived": true})).await;
    assert_eq!(archived.status(), 200);

    // Act
    let on_b = app.put(&config_path("a"), &requires("b")).await;
    let on_old = app.put(&config_path("a"), &requires("old")).await;
    let on_ghost = app.put(&config_path("a"), &requires("ghost")).await;

    // Assert: b and its segment are found; an archived or missing flag names the field.
    assert_eq!(on_b.status(), 200);
    for refused in [on_old, on_ghost] {
        assert_eq!(refused.status(), 422);
        let problem = problem(refused).await;
        assert_eq!(problem["field"], "prerequisites[0].key", "{problem}");
    }
    let a: Value = app.get(&config_path("a")).await.json().await.unwrap();
    assert_eq!(a["prerequisites"][0]["key"], "b");
}

//! `GET /v1/flags`: the polling fallback (server keys), with ETag/304 and `?prefix=`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{flags, header, json_body, problem, spawn_app};

fn keys(snapshot: &Value) -> Vec<&str> {
    snapshot["flags"].as_array().unwrap().iter().map(|f| f["flag"]["key"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_server_key_gets_the_whole_snapshot_with_its_revision_as_etag() {
    let app = spawn_app().await;

    let response = app.get("/v1/flags", &app.server_key).await;

    assert_eq!(response.status(), 200);
    let revision = app.cache.environment(app.environment_id).unwrap().revision();
    assert_eq!(header(&response, "etag"), Some(format!("\"{revision}\"")));
    let snapshot = json_body(response).await;
    assert_eq!(snapshot["revision"], revision);
    assert_eq!(keys(&snapshot).len(), 12, "{snapshot}");
    assert!(keys(&snapshot).contains(&flags::SERVER_ONLY));
    assert_eq!(snapshot["segments"][0]["key"], "beta-testers");
    let targeted =
        snapshot["flags"].as_array().unwrap().iter().find(|f| f["flag"]["key"] == flags::TARGETED).unwrap();
    assert_eq!(targeted["config"]["rules"][0]["id"], "germany", "server keys see full configurations");
}

#[tokio::test]
async fn if_none_match_with_the_current_etag_is_a_304_without_a_body() {
    let app = spawn_app().await;
    let etag = header(&app.get("/v1/flags", &app.server_key).await, "etag").unwrap();

    let response = app
        .client
        .get(app.url("/v1/flags"))
        .bearer_auth(&app.server_key)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 304);
    assert_eq!(header(&response, "etag"), Some(etag));
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_change_moves_the_etag_and_the_old_one_gets_the_new_snapshot() {
    let app = spawn_app().await;
    let before = header(&app.get("/v1/flags", &app.server_key).await, "etag").unwrap();

    app.configure(flags::BOOLEAN, json!({"on": false, "off_variation": 1, "fallthrough": {"variation": 0}}))
        .await;
    let response = app
        .client
        .get(app.url("/v1/flags"))
        .bearer_auth(&app.server_key)
        .header("If-None-Match", &before)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_ne!(header(&response, "etag"), Some(before));
    let snapshot = json_body(response).await;
    let flag =
        snapshot["flags"].as_array().unwrap().iter().find(|f| f["flag"]["key"] == flags::BOOLEAN).unwrap();
    assert_eq!(flag["config"]["on"], false);
}

#[tokio::test]
async fn a_prefix_narrows_the_flags_keeps_the_segments_and_has_its_own_etag() {
    let app = spawn_app().await;
    let whole = header(&app.get("/v1/flags", &app.server_key).await, "etag").unwrap();

    let response = app.get("/v1/flags?prefix=targeted", &app.server_key).await;

    assert_eq!(response.status(), 200);
    let etag = header(&response, "etag").unwrap();
    assert_ne!(etag, whole);
    let snapshot = json_body(response).await;
    assert_eq!(keys(&snapshot), [flags::TARGETED]);
    assert_eq!(snapshot["segments"].as_array().unwrap().len(), 1);

    let again = app
        .client
        .get(app.url("/v1/flags?prefix=targeted"))
        .bearer_auth(&app.server_key)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let other_prefix = app
        .client
        .get(app.url("/v1/flags?prefix=bool"))
        .bearer_auth(&app.server_key)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(other_prefix.status(), 200);
}

#[tokio::test]
async fn a_prefix_brings_the_prerequisites_of_its_flags_along() {
    let app = spawn_app().await;

    let response = app.get("/v1/flags?prefix=prereq", &app.server_key).await;

    assert_eq!(response.status(), 200);
    let snapshot = json_body(response).await;
    // `prereq-flag` requires `disabled-flag`: without it the SDK could not evaluate (or even compile) it.
    assert_eq!(keys(&snapshot), [flags::DISABLED, flags::PREREQUISITE]);
}

#[tokio::test]
async fn each_key_sees_its_own_environment() {
    let app = spawn_app().await;

    let development = json_body(app.get("/v1/flags", &app.development_server_key).await).await;

    let flag =
        development["flags"].as_array().unwrap().iter().find(|f| f["flag"]["key"] == flags::BOOLEAN).unwrap();
    assert_eq!(flag["config"]["on"], false, "development keeps the initial configuration");
    assert!(development["segments"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_client_key_is_forbidden() {
    let app = spawn_app().await;

    let response = app.get("/v1/flags", &app.client_key).await;

    assert_eq!(response.status(), 403);
    assert_eq!(problem(response).await["code"], "forbidden");
}

#[tokio::test]
async fn no_key_or_an_unknown_key_is_unauthorised() {
    let app = spawn_app().await;

    let none = app.send(Method::GET, "/v1/flags", None, None).await;
    assert_eq!(none.status(), 401);
    assert_eq!(header(&none, "www-authenticate").as_deref(), Some("Bearer"));
    assert_eq!(problem(none).await["code"], "unauthorized");

    let forged = format!("{}x", app.server_key);
    assert_eq!(app.get("/v1/flags", &forged).await.status(), 401);
    assert_eq!(app.get("/v1/flags", "vxs_nope_nope").await.status(), 401);
}

#[tokio::test]
async fn the_key_may_come_in_x_api_key_or_the_query() {
    let app = spawn_app().await;

    let header_key =
        app.client.get(app.url("/v1/flags")).header("X-API-Key", &app.server_key).send().await.unwrap();
    let query_key = app
        .client
        .get(app.url(&format!("/v1/flags?key={}&prefix=bool", app.server_key)))
        .send()
        .await
        .unwrap();

    assert_eq!(header_key.status(), 200);
    assert_eq!(query_key.status(), 200);
    assert_eq!(keys(&json_body(query_key).await), [flags::BOOLEAN]);
}

//! The README's quick start, as a test: create, configure, toggle, audit.

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn a_flag_is_created_configured_toggled_and_audited() {
    let app = spawn_app().await;
    let created: Value = app.post("/api/v1/projects", &json!({"key": "shop"})).await.json().await.unwrap();
    assert_eq!(created["environments"].as_array().unwrap().len(), 2);
    assert!(created["environments"][0]["server_key"].as_str().unwrap().starts_with("vxs_"));

    let flag = app
        .post("/api/v1/projects/shop/flags", &json!({"key": "new-checkout", "name": "New checkout", "kind": "boolean",
            "variations": [{"value": true, "name": "on"}, {"value": false, "name": "off"}], "tags": ["checkout"]}))
        .await;
    assert_eq!(flag.status(), 201);

    let config = app.get("/api/v1/projects/shop/flags/new-checkout/environments/production").await;
    assert_eq!(config.status(), 200);
    let etag = config.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, "\"1\"");

    let put = app
        .client
        .put(format!("{}/api/v1/projects/shop/flags/new-checkout/environments/production", app.address))
        .bearer_auth(&app.admin)
        .header("If-Match", &etag)
        .json(&json!({"on": false, "off_variation": 1,
            "rules": [{"id": "germany", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}], "serve": {"variation": 0}}],
            "fallthrough": {"rollout": {"weights": [{"variation": 0, "weight": 25000}, {"variation": 1, "weight": 75000}]}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    assert_eq!(put.headers()["etag"], "\"2\"");

    let toggled: Value = app
        .post("/api/v1/projects/shop/flags/new-checkout/environments/production/toggle", &json!({"on": true}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!((toggled["on"].as_bool(), toggled["version"].as_u64()), (Some(true), Some(3)));
    assert_eq!(toggled["rules"][0]["id"], "germany");

    let audit: Value = app.get("/api/v1/audit?flag=new-checkout").await.json().await.unwrap();
    let actions: Vec<&str> =
        audit["items"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["flag.toggle", "flag.configure", "flag.create"]);
    let verify: Value = app.get("/api/v1/audit/verify").await.json().await.unwrap();
    assert_eq!(verify["ok"], true);
}

#[tokio::test]
async fn the_openapi_document_and_its_ui_are_served_offline() {
    let app = spawn_app().await;
    let doc = app.client.get(format!("{}/api/v1/openapi.json", app.address)).send().await.unwrap();
    assert_eq!(doc.status(), 200);
    let doc: Value = doc.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/api/v1/projects",
        "/api/v1/projects/{project}/flags/{flag}/environments/{environment}",
        "/api/v1/audit/verify",
        "/api/v1/tokens",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from the document");
    }
    assert!(doc["components"]["schemas"].get("FlagConfigSpec").is_some());
    let ui = app.client.get(format!("{}/api/docs/", app.address)).send().await.unwrap();
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().contains("swagger"), "the docs UI is served from the binary");
    let health = app.client.get(format!("{}/healthz", app.address)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.client.get(format!("{}/readyz", app.address)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let metrics =
        app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("vexil_http_responses_total"), "{metrics}");
}

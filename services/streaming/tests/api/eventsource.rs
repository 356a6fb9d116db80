//! The npm `eventsource` package (WHATWG EventSource) against the service: what a Node application
//! and, for the URL-only cases, a browser does.

use serde_json::json;

use crate::helpers::*;

both_paths! {
    async fn eventsource_reads_the_hydrate_and_the_patches(serving: Serving) {
        let app = spawn_app_on(serving).await;
        let url = format!("{}/v1/stream?key={}", app.address, app.production.server);
        let mut client = NodeClient::start(&url, &["--count", "3"]);

        client.line_of("open").await;
        let hydrate = client.event().await;
        let first = app.toggle("checkout", true).await;
        let second = app.toggle("checkout", false).await;

        assert_eq!(hydrate["type"], "hydrate");
        assert_eq!(hydrate["id"], json!((first - 1).to_string()));
        assert_eq!(hydrate["data"]["flags"][0]["flag"]["key"], "checkout");
        let patches = [client.event().await, client.event().await];
        assert_eq!(patches.each_ref().map(|p| p["type"].clone()), [json!("patch"), json!("patch")]);
        assert_eq!(
            patches.each_ref().map(|p| p["id"].clone()),
            [json!(first.to_string()), json!(second.to_string())]
        );
        assert_eq!(patches[0]["data"]["config"]["on"], json!(true));
        assert_eq!(patches[1]["data"]["config"]["on"], json!(false));
        assert_eq!(client.exit_code().await, Some(0));
    }
}

#[tokio::test]
async fn eventsource_can_send_the_key_in_a_header() {
    let app = spawn_app().await;
    let header = format!("Authorization: Bearer {}", app.production.server);
    let mut client =
        NodeClient::start(&format!("{}/v1/stream", app.address), &["--count", "1", "--header", &header]);

    let hydrate = client.event().await;

    assert_eq!(hydrate["type"], "hydrate");
    assert_eq!(client.exit_code().await, Some(0));
}

both_paths! {
    async fn eventsource_resumes_with_last_event_id_and_receives_only_the_missed_events(serving: Serving) {
        let mut app = spawn_app_on(serving).await;
        let url = format!("{}/v1/stream?key={}", app.address, app.production.server);
        let mut client = NodeClient::start(&url, &["--count", "3"]);
        let hydrate = client.event().await;
        assert_eq!(hydrate["type"], "hydrate");

        // The replica goes away; changes happen meanwhile; a replica with the same data comes back at the
        // same address (what a client sees when it is sent to another replica).
        app.stop().await;
        let dropped = client.line_of("error").await;
        assert_eq!(dropped["readyState"], 0, "the client is reconnecting, not closed");
        let missed = [app.toggle("checkout", true).await, app.toggle("checkout", false).await];
        app.restart().await;

        client.line_of("open").await;
        let replayed = [client.event().await, client.event().await];
        assert_eq!(
            replayed.each_ref().map(|e| (e["type"].clone(), e["id"].clone())),
            missed.map(|revision| (json!("patch"), json!(revision.to_string()))),
            "only the missed events, no second hydrate"
        );
        assert_eq!(client.exit_code().await, Some(0));
    }
}

#[tokio::test]
async fn eventsource_reads_client_values_with_the_context_in_the_url() {
    let app = spawn_app().await;
    let context = base64url(br#"{"targetingKey":"user-1"}"#);
    let url = format!("{}/v1/client/stream?key={}&context={context}", app.address, app.production.client);
    let mut client = NodeClient::start(&url, &["--count", "2", "--events", "values,delete"]);

    let full = client.event().await;
    let revision = app.toggle("checkout", true).await;
    let changed = client.event().await;

    assert_eq!(full["data"]["full"], json!(true));
    assert_eq!(full["data"]["flags"]["checkout"]["value"], json!(false));
    assert_eq!(changed["id"], json!(revision.to_string()));
    assert_eq!(changed["data"]["flags"]["checkout"]["value"], json!(true));
    assert_eq!(client.exit_code().await, Some(0));
}

#[tokio::test]
async fn eventsource_delivers_ofrep_notifications_as_message_events() {
    let app = spawn_app().await;
    let url = format!("{}/ofrep/v1/stream?key={}", app.address, app.production.client);
    // Only `message`, as @openfeature/ofrep-web-provider listens.
    let mut client = NodeClient::start(&url, &["--count", "1", "--events", "message"]);
    client.line_of("open").await;

    let revision = app.toggle("checkout", true).await;

    let message = client.event().await;
    assert_eq!(message["type"], "message");
    assert_eq!(message["id"], json!(revision.to_string()));
    assert_eq!(message["data"]["type"], "refetchEvaluation");
    assert_eq!(message["data"]["etag"], json!(format!("\"{revision}\"")));
    assert_eq!(client.exit_code().await, Some(0));
}

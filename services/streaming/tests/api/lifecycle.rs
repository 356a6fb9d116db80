//! Heartbeats, shutdown, readiness, metrics and CORS.

use std::time::{Duration, Instant};

use serde_json::json;
use vexil_config::Settings;
use vexil_dataplane::Cache;
use vexil_streaming::Application;
use vexil_testkit::eventually;

use crate::helpers::*;

#[tokio::test]
async fn a_heartbeat_comment_arrives_every_heartbeat_seconds() {
    let app = spawn_app_with(Options { heartbeat_seconds: 1, ..Options::default() }).await;
    let mut stream = app.open_flags("", &[]).await;
    stream.event().await;

    let started = Instant::now();
    let mut pings = 0;
    while pings < 2 {
        match stream.next().await.expect("the stream stays open") {
            Sse::Comment(comment) => {
                assert_eq!(comment, "ping");
                pings += 1;
            }
            other => panic!("only heartbeats on an idle stream, got {other:?}"),
        }
    }

    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "two pings in {elapsed:?}"
    );
}

both_paths! {
    async fn a_shutdown_ends_every_stream_and_run_until_stopped_returns(serving: Serving) {
        let mut app = spawn_app_on(serving).await;
        let mut server = app.open_flags("", &[]).await;
        server.event().await;
        let mut client = app.open(&format!("/v1/client/stream?key={}", app.production.client), &[]).await;
        client.event().await;
        let mut ofrep = app.open(&format!("/ofrep/v1/stream?key={}", app.production.client), &[]).await;
        assert_eq!(ofrep.next().await, Some(Sse::Retry(app.options.retry_ms)));

        app.stop().await;

        assert_eq!(server.until_end().await, vec![]);
        assert_eq!(client.until_end().await, vec![]);
        assert_eq!(ofrep.until_end().await, vec![]);
        let probe = app.client.get(format!("{}/healthz", app.address)).send().await;
        assert!(probe.is_err(), "no longer listening");
    }
}

#[tokio::test]
async fn a_replica_without_data_sends_only_a_retry_hint_and_is_not_ready() {
    let cache = Cache::new();
    let mut settings = Settings::default();
    settings.server.port = 0;
    settings.dataplane.retry_ms = 1234;
    let application = Application::build(settings, cache.clone()).await.expect("build");
    let address = format!("http://127.0.0.1:{}", application.port());
    let state = application.state();
    let server = tokio::spawn(application.run_until_stopped());
    let client = reqwest::Client::new();

    let response = client.get(format!("{address}/v1/stream?key=vxs_anything")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "retry: 1234\n\n", "then the stream ends");
    assert_eq!(client.get(format!("{address}/readyz")).send().await.unwrap().status(), 503);
    assert_eq!(client.get(format!("{address}/healthz")).send().await.unwrap().status(), 200);

    cache.mark_ready();
    assert_eq!(client.get(format!("{address}/readyz")).send().await.unwrap().status(), 200);
    let response = client.get(format!("{address}/v1/stream?key=vxs_anything")).send().await.unwrap();
    assert_eq!(response.status(), 401, "once ready, keys are checked");

    state.shutdown();
    server.await.unwrap().unwrap();
}

both_paths! {
    async fn metrics_count_streams_events_and_propagation_lag(serving: Serving) {
        let app = spawn_app_with(Options { heartbeat_seconds: 1, serving, ..Options::default() }).await;
        let mut stream = app.open_flags("", &[]).await;
        stream.event().await;
        app.toggle("checkout", true).await;
        stream.event().await;

        let metrics = app.metrics().await;
        assert!(metrics.contains("vexil_streaming_connections{stream=\"server\"} 1\n"), "{metrics}");
        assert!(metrics.contains("vexil_streaming_events_sent_total{event=\"hydrate\"} 1\n"), "{metrics}");
        assert!(metrics.contains("vexil_streaming_events_sent_total{event=\"patch\"} 1\n"), "{metrics}");
        assert!(metrics.contains("# TYPE vexil_streaming_propagation_lag_seconds histogram\n"), "{metrics}");
        assert!(metrics.contains("vexil_streaming_propagation_lag_seconds_count 1\n"), "{metrics}");

        drop(stream);
        // The server notices a client gone at the latest when the next heartbeat cannot be written.
        let closed = eventually(DEADLINE, || async {
            app.metrics().await.contains("vexil_streaming_connections{stream=\"server\"} 0\n")
        })
        .await;
        assert!(closed, "the gauge goes back to 0: {}", app.metrics().await);
    }
}

both_paths! {
    async fn browsers_get_cors_headers_and_preflight_answers(serving: Serving) {
        let app = spawn_app_on(serving).await;
        let origin = "https://shop.example";

        let preflight = app
            .client
            .request(reqwest::Method::OPTIONS, format!("{}/v1/client/stream", app.address))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "last-event-id")
            .send()
            .await
            .unwrap();
        let path = format!("/v1/client/stream?key={}", app.production.client);
        let stream = app.open(&path, &[("Origin", origin)]).await;

        assert_eq!(preflight.status(), 204);
        assert_eq!(preflight.headers()["access-control-allow-origin"], origin);
        assert_eq!(stream.headers["access-control-allow-origin"], origin);
    }
}

both_paths! {
    async fn the_probes_answer_json(serving: Serving) {
        let app = spawn_app_on(serving).await;

        let health: serde_json::Value = app.get("/healthz", &[]).await.json().await.unwrap();
        let ready: serde_json::Value = app.get("/readyz", &[]).await.json().await.unwrap();
        let missing = app.get("/nowhere", &[]).await;

        assert_eq!(health, json!({"status": "ok"}));
        assert_eq!(ready, json!({"status": "ready"}));
        assert_eq!(missing.status(), 404);
        assert_eq!(missing.headers()["content-type"], "application/problem+json");
    }
}

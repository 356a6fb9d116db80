//! `/ofrep/v1/stream`: OFREP `refetchEvaluation` notifications.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

fn now_seconds() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

both_paths! {
    async fn a_change_sends_a_refetch_message_and_a_connect_sends_nothing(serving: Serving) {
        let app = spawn_app_on(serving).await;
        let mut stream = app.open(&format!("/ofrep/v1/stream?key={}", app.production.client), &[]).await;
        assert!(stream.stays_quiet(Duration::from_millis(300)).await);

        let revision = app.toggle("checkout", true).await;

        let message = stream.event().await;
        assert_eq!((message.name.as_str(), message.id), ("message", Some(revision)));
        assert_eq!(message.data["type"], "refetchEvaluation");
        assert_eq!(message.data["etag"], json!(format!("\"{revision}\"")));
        let last_modified = message.data["lastModified"].as_i64().expect("unix seconds");
        assert!((now_seconds() - last_modified).abs() < 60, "{last_modified} is about now");
    }
}

#[tokio::test]
async fn a_reconnect_that_missed_a_change_gets_one_refetch_at_once() {
    let app = spawn_app().await;
    let seen = app.revision("production").await;
    app.toggle("checkout", true).await;
    let current = app.toggle("checkout", false).await;

    let mut behind = app
        .open(
            &format!("/ofrep/v1/stream?key={}", app.production.server),
            &[("Last-Event-ID", &seen.to_string())],
        )
        .await;
    let mut current_id =
        app.open(&format!("/ofrep/v1/stream?key={}&lastEventId={current}", app.production.server), &[]).await;

    let message = behind.event().await;
    assert_eq!((message.name.as_str(), message.id), ("message", Some(current)));
    assert!(behind.stays_quiet(Duration::from_millis(300)).await, "one refetch covers everything missed");
    assert!(current_id.stays_quiet(Duration::from_millis(300)).await, "nothing was missed");
}

#[tokio::test]
async fn sdk_key_changes_send_no_refetch() {
    let app = spawn_app().await;
    let mut stream = app.open(&format!("/ofrep/v1/stream?key={}", app.production.client), &[]).await;

    app.rotate_keys(3600).await;
    let revision = app.toggle("checkout", true).await;

    assert_eq!(stream.event().await.id, Some(revision));
}

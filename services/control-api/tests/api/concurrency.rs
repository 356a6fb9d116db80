//! Optimistic concurrency: writers holding the same `If-Match` race, exactly one wins, the others get
//! 412 and change nothing.

use futures::future::join_all;
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::*;

const CONFIG: &str = "/api/v1/projects/shop/flags/checkout/environments/production";
const FLAG: &str = "/api/v1/projects/shop/flags/checkout";
const WRITERS: usize = 20;

async fn send_if_match(app: &TestApp, method: Method, path: &str, tag: &str, body: &Value) -> Response {
    app.client
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(&app.admin)
        .header("If-Match", tag)
        .json(body)
        .send()
        .await
        .expect("request")
}

/// The audit records of `action` on flag `checkout`.
async fn audit_actions(app: &TestApp, action: &str) -> Vec<Value> {
    let page: Value = app.get("/api/v1/audit?flag=checkout&limit=1000").await.json().await.unwrap();
    page["items"].as_array().unwrap().iter().filter(|r| r["action"] == action).cloned().collect()
}

/// Splits responses into the winners' bodies and the losers' problems, checking every loser's answer.
async fn winners_and_losers(responses: Vec<Response>) -> (Vec<Value>, usize) {
    let (mut winners, mut losers) = (Vec::new(), 0);
    for response in responses {
        match response.status().as_u16() {
            200 => winners.push(response.json::<Value>().await.unwrap()),
            412 => {
                let problem = problem(response).await;
                assert_eq!(problem["code"], "precondition_failed", "{problem}");
                losers += 1;
            }
            other => panic!("a racing writer got {other}: {}", response.text().await.unwrap()),
        }
    }
    (winners, losers)
}

#[tokio::test]
async fn of_twenty_writers_with_the_same_if_match_exactly_one_wins() {
    let app = spawn_app().await;
    app.with_flag().await;
    let current = app.get(CONFIG).await;
    let tag = current.headers()["etag"].to_str().unwrap().to_owned();
    let version = current.json::<Value>().await.unwrap()["version"].as_u64().unwrap();
    assert_eq!(audit_actions(&app, "flag.configure").await.len(), 0);

    // Each writer targets a different user, so the winner can be recognised in the result.
    let bodies: Vec<Value> = (0..WRITERS)
        .map(|i| {
            json!({"on": true, "targets": [{"variation": 0, "values": [format!("writer-{i}")]}],
                        "fallthrough": {"variation": 1}})
        })
        .collect();
    let responses =
        join_all(bodies.iter().map(|body| send_if_match(&app, Method::PUT, CONFIG, &tag, body))).await;

    let (winners, losers) = winners_and_losers(responses).await;
    assert_eq!((winners.len(), losers), (1, WRITERS - 1));
    let after = app.get(CONFIG).await;
    assert_eq!(after.headers()["etag"].to_str().unwrap(), format!("\"{}\"", version + 1));
    let after: Value = after.json().await.unwrap();
    assert_eq!(after["version"].as_u64(), Some(version + 1));
    assert_eq!(after["targets"], winners[0]["targets"], "the stored configuration is the winner's");
    let configured = audit_actions(&app, "flag.configure").await;
    assert_eq!(configured.len(), 1, "{configured:?}");
    assert_eq!(configured[0]["after"]["targets"], winners[0]["targets"]);
    let verify: Value = app.get("/api/v1/audit/verify").await.json().await.unwrap();
    assert_eq!(verify["ok"], true, "{verify}");
}

#[tokio::test]
async fn a_patch_with_a_stale_if_match_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    app.with_flag().await;
    let tag = app.get(FLAG).await.headers()["etag"].to_str().unwrap().to_owned();
    let first = send_if_match(&app, Method::PATCH, FLAG, &tag, &json!({"name": "First"})).await;
    assert_eq!(first.status(), 200);
    assert_ne!(first.headers()["etag"].to_str().unwrap(), tag);

    let stale = send_if_match(&app, Method::PATCH, FLAG, &tag, &json!({"name": "Second"})).await;

    assert_eq!(stale.status(), 412);
    assert_eq!(problem(stale).await["code"], "precondition_failed");
    let flag: Value = app.get(FLAG).await.json().await.unwrap();
    assert_eq!((flag["name"].as_str(), flag["version"].as_u64()), (Some("First"), Some(2)));
    assert_eq!(audit_actions(&app, "flag.update").await.len(), 1);
}

#[tokio::test]
async fn of_twenty_patches_with_the_same_if_match_exactly_one_wins() {
    let app = spawn_app().await;
    app.with_flag().await;
    let tag = app.get(FLAG).await.headers()["etag"].to_str().unwrap().to_owned();

    let bodies: Vec<Value> = (0..WRITERS).map(|i| json!({"name": format!("writer {i}")})).collect();
    let responses =
        join_all(bodies.iter().map(|body| send_if_match(&app, Method::PATCH, FLAG, &tag, body))).await;

    let (winners, losers) = winners_and_losers(responses).await;
    assert_eq!((winners.len(), losers), (1, WRITERS - 1));
    let flag: Value = app.get(FLAG).await.json().await.unwrap();
    assert_eq!(flag["version"].as_u64(), Some(2));
    assert_eq!(flag["name"], winners[0]["name"]);
    assert_eq!(audit_actions(&app, "flag.update").await.len(), 1);
}

#[tokio::test]
async fn of_twenty_segment_writers_with_the_same_if_match_exactly_one_wins() {
    let app = spawn_app().await;
    app.with_flag().await;
    let segments = "/api/v1/projects/shop/environments/production/segments";
    let created = app.post(segments, &json!({"key": "beta"})).await;
    assert_eq!(created.status(), 201);
    let tag = created.headers()["etag"].to_str().unwrap().to_owned();

    let bodies: Vec<Value> =
        (0..WRITERS).map(|i| json!({"key": "beta", "included": [format!("user-{i}")]})).collect();
    let path = format!("{segments}/beta");
    let responses =
        join_all(bodies.iter().map(|body| send_if_match(&app, Method::PUT, &path, &tag, body))).await;

    let (winners, losers) = winners_and_losers(responses).await;
    assert_eq!((winners.len(), losers), (1, WRITERS - 1));
    let segment: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(segment["version"].as_u64(), Some(2));
    assert_eq!(segment["included"], winners[0]["included"]);
}

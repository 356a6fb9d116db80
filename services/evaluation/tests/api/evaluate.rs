//! `POST /v1/evaluate`: values, variations, variants and reasons; what client keys may see; bad input.

use serde_json::{Value, json};

use crate::helpers::{Options, flags, header, json_body, problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_server_key_gets_every_flag_evaluated() {
    let app = spawn_app().await;

    let response =
        app.post("/v1/evaluate", &app.server_key, &json!({"context": {"targetingKey": "vip-user"}})).await;

    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
    assert_eq!(body["revision"], app.cache.environment(app.environment_id).unwrap().revision());
    let results = body["flags"].as_object().unwrap();
    assert_eq!(results.len(), 12);
    assert_eq!(
        results[flags::BOOLEAN],
        json!({"value": true, "variation": 0, "variant": "on", "reason": {"kind": "FALLTHROUGH"}})
    );
    assert_eq!(
        results[flags::INTEGER],
        json!({"value": 42, "variation": 0, "variant": "0", "reason": {"kind": "FALLTHROUGH"}})
    );
    assert_eq!(
        results[flags::TARGETED],
        json!({"value": "beta", "variation": 0, "variant": "beta", "reason": {"kind": "TARGET_MATCH"}})
    );
    assert_eq!(
        results[flags::DISABLED],
        json!({"value": false, "variation": 1, "variant": "off", "reason": {"kind": "OFF"}})
    );
    assert_eq!(
        results[flags::OFF_NO_VARIATION],
        json!({"reason": {"kind": "OFF"}}),
        "the caller's default applies"
    );
    assert_eq!(
        results[flags::PREREQUISITE],
        json!({"value": false, "variation": 1, "variant": "off", "reason": {"kind": "PREREQUISITE_FAILED", "prerequisite_key": flags::DISABLED}})
    );
}

#[tokio::test]
async fn server_keys_see_which_rule_matched() {
    let app = spawn_app().await;

    let body = json_body(
        app.post(
            "/v1/evaluate",
            &app.server_key,
            &json!({"context": {"targetingKey": "u", "country": "DE"}, "flags": [flags::TARGETED]}),
        )
        .await,
    )
    .await;

    assert_eq!(
        body["flags"][flags::TARGETED]["reason"],
        json!({"kind": "RULE_MATCH", "rule_id": "germany", "rule_index": 0})
    );
}

#[tokio::test]
async fn listed_flags_are_evaluated_in_order_and_unknown_ones_are_not_found() {
    let app = spawn_app().await;

    let response = app
        .post(
            "/v1/evaluate",
            &app.server_key,
            &json!({"context": {"targetingKey": "u"}, "flags": [flags::STRING, "no-such-flag", flags::STRING, flags::FLOAT]}),
        )
        .await;

    let text = response.text().await.unwrap();
    let at = |key: &str| text.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("{key} in {text}"));
    assert!(
        at(flags::STRING) < at("no-such-flag") && at("no-such-flag") < at(flags::FLOAT),
        "in the order listed: {text}"
    );
    assert_eq!(text.matches(flags::STRING).count(), 1, "listed twice, answered once: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let results = body["flags"].as_object().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results["no-such-flag"], json!({"reason": {"kind": "ERROR", "error_kind": "FLAG_NOT_FOUND"}}));
    assert_eq!(results[flags::STRING]["value"], "green");
}

#[tokio::test]
async fn floats_keep_their_fraction() {
    let app = spawn_app().await;

    let response = app
        .post(
            "/v1/evaluate",
            &app.server_key,
            &json!({"context": {}, "flags": [flags::FLOAT, flags::INTEGER]}),
        )
        .await;

    let text = response.text().await.unwrap();
    assert!(text.contains(r#""value":3.0"#), "{text}");
    assert!(text.contains(r#""value":42,"#), "{text}");
}

#[tokio::test]
async fn a_client_key_sees_only_client_side_flags_and_no_rules() {
    let app = spawn_app().await;

    let all = json_body(
        app.post(
            "/v1/evaluate",
            &app.client_key,
            &json!({"context": {"targetingKey": "u", "country": "DE"}}),
        )
        .await,
    )
    .await;
    let listed = json_body(
        app.post(
            "/v1/evaluate",
            &app.client_key,
            &json!({"context": {"targetingKey": "u", "email": "a@example.com"}, "flags": [flags::SERVER_ONLY, "no-such-flag", flags::PREREQUISITE]}),
        )
        .await,
    )
    .await;

    let results = all["flags"].as_object().unwrap();
    assert_eq!(results.len(), 11);
    assert!(!results.contains_key(flags::SERVER_ONLY));
    assert_eq!(results[flags::TARGETED]["reason"], json!({"kind": "RULE_MATCH"}), "no rule id or index");
    let hidden = &listed["flags"][flags::SERVER_ONLY];
    assert_eq!(hidden, &listed["flags"]["no-such-flag"], "a hidden flag looks exactly like a missing one");
    assert_eq!(hidden, &json!({"reason": {"kind": "ERROR", "error_kind": "FLAG_NOT_FOUND"}}));
    assert_eq!(listed["flags"][flags::PREREQUISITE]["reason"], json!({"kind": "PREREQUISITE_FAILED"}));
    for text in [all.to_string(), listed.to_string()] {
        for secret in ["germany", "secret-rule", "example.com\"]", "rule_id", "prerequisite_key"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
}

#[tokio::test]
async fn a_rollout_without_a_targeting_key_is_an_error_result_not_a_failed_request() {
    let app = spawn_app().await;

    let body = json_body(
        app.post("/v1/evaluate", &app.server_key, &json!({"flags": [flags::ROLLOUT, flags::BOOLEAN]})).await,
    )
    .await;

    assert_eq!(
        body["flags"][flags::ROLLOUT],
        json!({"reason": {"kind": "ERROR", "error_kind": "TARGETING_KEY_MISSING"}})
    );
    assert_eq!(body["flags"][flags::BOOLEAN]["value"], true);
}

#[tokio::test]
async fn malformed_bodies_are_clear_400s() {
    let app = spawn_app().await;
    let send = |body: &'static str| {
        app.client
            .post(app.url("/v1/evaluate"))
            .bearer_auth(&app.server_key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let broken = problem(send(r#"{"context": "#).await.expect("request")).await;
    assert_eq!(broken["code"], "invalid_body");

    let bad_key = send(r#"{"context": {"targetingKey": 5}}"#).await.unwrap();
    assert_eq!(bad_key.status(), 400);
    assert_eq!(problem(bad_key).await["field"], "context.targetingKey");

    let bad_flags = send(r#"{"flags": "bool-flag"}"#).await.unwrap();
    assert_eq!(problem(bad_flags).await["field"], "flags");

    let unknown_field = send(r#"{"context": {}, "flag": []}"#).await.unwrap();
    assert_eq!(unknown_field.status(), 400);
    assert_eq!(problem(unknown_field).await["code"], "invalid_body");

    let not_an_object = send(r#"[1, 2]"#).await.unwrap();
    assert_eq!(not_an_object.status(), 400);
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_and_a_non_json_body_a_415() {
    let app = spawn_app_with(Options { max_body_bytes: Some(1024), ..Options::default() }).await;
    let big = json!({"context": {"targetingKey": "u", "blob": "x".repeat(2048)}});

    let too_large = app.post("/v1/evaluate", &app.server_key, &big).await;
    assert_eq!(too_large.status(), 413);
    assert_eq!(problem(too_large).await["code"], "payload_too_large");

    let chunked = raw_chunked_post(&app, "/v1/evaluate", &app.server_key, big.to_string().as_bytes()).await;
    assert!(chunked.starts_with("HTTP/1.1 413"), "without Content-Length too: {chunked}");

    let form = app
        .client
        .post(app.url("/v1/evaluate"))
        .bearer_auth(&app.server_key)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
}

/// Sends `body` with `Transfer-Encoding: chunked` (so without Content-Length) over a plain TCP
/// connection, and returns the raw response.
pub async fn raw_chunked_post(app: &crate::helpers::TestApp, path: &str, key: &str, body: &[u8]) -> String {
    use std::io::{Read, Write};
    let address = app.address.trim_start_matches("http://").to_owned();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let body = body.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        for chunk in body.chunks(256) {
            // The server may answer and close before the whole body is sent.
            let sent = stream
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .and_then(|()| stream.write_all(chunk))
                .and_then(|()| stream.write_all(b"\r\n"));
            if sent.is_err() {
                break;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n");
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        String::from_utf8_lossy(&response).into_owned()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_key_over_its_rate_is_told_when_to_retry_in_whole_seconds() {
    let app = spawn_app_with(Options { rate_limit_per_second: 1, ..Options::default() }).await;
    let body = json!({"context": {}});

    // A rate of 1 a second allows a burst of 2.
    assert_eq!(app.post("/v1/evaluate", &app.server_key, &body).await.status(), 200);
    assert_eq!(app.post("/v1/evaluate", &app.server_key, &body).await.status(), 200);
    let limited = app.post("/v1/evaluate", &app.server_key, &body).await;

    assert_eq!(limited.status(), 429);
    let retry_after = header(&limited, "retry-after").expect("Retry-After");
    assert!(retry_after.parse::<u64>().is_ok_and(|seconds| (1..=2).contains(&seconds)), "{retry_after}");
    assert_eq!(problem(limited).await["code"], "rate_limited");
    let other_key = app.post("/v1/evaluate", &app.client_key, &body).await;
    assert_eq!(other_key.status(), 200, "each key has its own bucket");
    let value: Value = other_key.json().await.unwrap();
    assert!(value["flags"].is_object());
}

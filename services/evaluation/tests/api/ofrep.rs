//! OFREP over HTTP, checked against PROTOCOLS.md: shapes, reasons, errors, bulk ETag/304, the doubled
//! leading slash, event streams, rate limits.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, content_type, flags, header, json_body, spawn_app, spawn_app_with};

/// The answer's status and JSON body, checking that it is `application/json`.
async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, json_body(response).await)
}

async fn evaluate(app: &TestApp, flag: &str, context: Value) -> (u16, Value) {
    answer(app.ofrep(flag, &app.server_key, context).await).await
}

#[tokio::test]
async fn each_kind_of_flag_answers_key_reason_variant_and_value() {
    let app = spawn_app().await;
    let user = json!({"targetingKey": "user-1"});

    assert_eq!(
        evaluate(&app, flags::BOOLEAN, user.clone()).await,
        (200, json!({"key": flags::BOOLEAN, "reason": "STATIC", "variant": "on", "value": true}))
    );
    assert_eq!(
        evaluate(&app, flags::STRING, user.clone()).await,
        (200, json!({"key": flags::STRING, "reason": "STATIC", "variant": "green", "value": "green"}))
    );
    assert_eq!(
        evaluate(&app, flags::INTEGER, user.clone()).await,
        (200, json!({"key": flags::INTEGER, "reason": "STATIC", "variant": "0", "value": 42}))
    );
    assert_eq!(
        evaluate(&app, flags::OBJECT, user.clone()).await,
        (
            200,
            json!({"key": flags::OBJECT, "reason": "STATIC", "variant": "red", "value": {"color": "red", "size": 3}})
        )
    );
    let float = app.ofrep(flags::FLOAT, &app.server_key, user).await;
    assert_eq!(content_type(&float).as_deref(), Some("application/json"));
    let text = float.text().await.unwrap();
    assert!(text.contains(r#""value":3.0"#), "a float keeps its fraction: {text}");
}

#[tokio::test]
async fn reasons_follow_the_evaluation() {
    let app = spawn_app().await;
    let reason = |body: &Value| body["reason"].as_str().unwrap().to_owned();

    let (_, targeted) = evaluate(&app, flags::TARGETED, json!({"targetingKey": "vip-user"})).await;
    assert_eq!((reason(&targeted), targeted["value"].clone()), ("TARGETING_MATCH".into(), json!("beta")));
    let (_, by_rule) = evaluate(&app, flags::TARGETED, json!({"targetingKey": "u", "country": "DE"})).await;
    assert_eq!((reason(&by_rule), by_rule["variant"].clone()), ("TARGETING_MATCH".into(), json!("beta")));
    let (_, fallthrough) = evaluate(&app, flags::TARGETED, json!({"targetingKey": "u"})).await;
    assert_eq!((reason(&fallthrough), fallthrough["value"].clone()), ("DEFAULT".into(), json!("stable")));
    let (_, split) = evaluate(&app, flags::ROLLOUT, json!({"targetingKey": "u"})).await;
    assert_eq!(reason(&split), "SPLIT");
    assert!(split["value"].is_boolean());
    let (_, prerequisite) = evaluate(&app, flags::PREREQUISITE, json!({})).await;
    assert_eq!((reason(&prerequisite), prerequisite["value"].clone()), ("DEFAULT".into(), json!(false)));
    let (_, segment) = evaluate(&app, flags::SEGMENTED, json!({"targetingKey": "tester-1"})).await;
    assert_eq!((reason(&segment), segment["value"].clone()), ("TARGETING_MATCH".into(), json!("in")));
}

#[tokio::test]
async fn a_disabled_flag_serves_its_off_variation_as_disabled() {
    let app = spawn_app().await;

    let (status, body) = evaluate(&app, flags::DISABLED, json!({"targetingKey": "u"})).await;

    assert_eq!(
        (status, body),
        (200, json!({"key": flags::DISABLED, "reason": "DISABLED", "variant": "off", "value": false}))
    );
}

#[tokio::test]
async fn an_off_flag_without_off_variation_defers_to_the_code_default() {
    let app = spawn_app().await;

    let (status, body) = evaluate(&app, flags::OFF_NO_VARIATION, json!({})).await;

    assert_eq!(
        (status, body),
        (200, json!({"key": flags::OFF_NO_VARIATION, "reason": "DISABLED", "variant": null}))
    );
}

#[tokio::test]
async fn an_empty_context_is_never_refused_and_only_a_split_needs_a_key() {
    let app = spawn_app().await;

    assert_eq!(evaluate(&app, flags::BOOLEAN, json!({})).await.0, 200);
    assert_eq!(
        evaluate(&app, flags::TARGETED, json!({})).await.0,
        200,
        "a target list needs no key to fall through"
    );
    for body in ["{}", "", r#"{"context": null}"#, r#"{"context": {}, "later": "fields are ignored"}"#] {
        let response = app
            .client
            .post(app.url(&format!("/ofrep/v1/evaluate/flags/{}", flags::BOOLEAN)))
            .bearer_auth(&app.server_key)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "body {body:?}");
    }

    let (status, body) = evaluate(&app, flags::ROLLOUT, json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(body["key"], flags::ROLLOUT);
    assert_eq!(body["errorCode"], "TARGETING_KEY_MISSING");
    assert!(body["errorDetails"].as_str().is_some_and(|details| !details.is_empty()));
}

#[tokio::test]
async fn a_missing_flag_is_a_404_with_key_error_code_and_details() {
    let app = spawn_app().await;

    let (status, body) = evaluate(&app, "no-such-flag", json!({"targetingKey": "u"})).await;

    assert_eq!(status, 404);
    assert_eq!(body["key"], "no-such-flag");
    assert_eq!(body["errorCode"], "FLAG_NOT_FOUND");
    assert!(body["errorDetails"].is_string());
}

#[tokio::test]
async fn a_client_key_cannot_tell_a_server_only_flag_from_a_missing_one() {
    let app = spawn_app().await;

    let (status, body) =
        answer(app.ofrep(flags::SERVER_ONLY, &app.client_key, json!({"targetingKey": "u"})).await).await;
    let (_, missing) =
        answer(app.ofrep("no-such-flag", &app.client_key, json!({"targetingKey": "u"})).await).await;

    assert_eq!(status, 404);
    assert_eq!(body["errorCode"], "FLAG_NOT_FOUND");
    assert_eq!(
        body["errorDetails"].as_str().unwrap().replace(flags::SERVER_ONLY, "K"),
        missing["errorDetails"].as_str().unwrap().replace("no-such-flag", "K")
    );
    let (status, _) = answer(app.ofrep(flags::BOOLEAN, &app.client_key, json!({})).await).await;
    assert_eq!(status, 200, "client-side flags evaluate");
}

#[tokio::test]
async fn bad_bodies_are_ofrep_errors_with_all_three_fields() {
    let app = spawn_app().await;
    let send = |body: &'static str| {
        app.client
            .post(app.url(&format!("/ofrep/v1/evaluate/flags/{}", flags::BOOLEAN)))
            .bearer_auth(&app.server_key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    for (body, code) in [
        (r#"{"context": "#, "PARSE_ERROR"),
        (r#"[1]"#, "PARSE_ERROR"),
        (r#"{"context": []}"#, "INVALID_CONTEXT"),
        (r#"{"context": {"targetingKey": 5}}"#, "INVALID_CONTEXT"),
    ] {
        let (status, error) = answer(send(body).await.unwrap()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(error["key"], flags::BOOLEAN, "{body}");
        assert_eq!(error["errorCode"], code, "{body}");
        assert!(error["errorDetails"].is_string(), "{body}");
    }

    let bulk = app
        .client
        .post(app.url("/ofrep/v1/evaluate/flags"))
        .bearer_auth(&app.server_key)
        .body("{")
        .send()
        .await
        .unwrap();
    let (status, error) = answer(bulk).await;
    assert_eq!((status, error["errorCode"].clone()), (400, json!("PARSE_ERROR")));
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_in_ofrep_shape() {
    let app = spawn_app_with(Options { max_body_bytes: Some(1024), ..Options::default() }).await;

    let (status, body) = evaluate(&app, flags::BOOLEAN, json!({"blob": "x".repeat(4096)})).await;

    assert_eq!(status, 413);
    assert_eq!(body["key"], flags::BOOLEAN);
    assert_eq!(body["errorCode"], "GENERAL");
}

#[tokio::test]
async fn a_doubled_leading_slash_reaches_the_same_routes() {
    let app = spawn_app().await;

    let single = app
        .post(
            &format!("//ofrep/v1/evaluate/flags/{}", flags::BOOLEAN),
            &app.server_key,
            &json!({"context": {}}),
        )
        .await;
    let bulk = app.post("//ofrep/v1/evaluate/flags", &app.server_key, &json!({"context": {}})).await;

    assert_eq!(
        answer(single).await,
        (200, json!({"key": flags::BOOLEAN, "reason": "STATIC", "variant": "on", "value": true}))
    );
    assert_eq!(bulk.status(), 200);
}

#[tokio::test]
async fn the_key_may_come_in_x_api_key() {
    let app = spawn_app().await;

    let response = app
        .client
        .post(app.url(&format!("/ofrep/v1/evaluate/flags/{}", flags::BOOLEAN)))
        .header("X-API-Key", &app.client_key)
        .json(&json!({"context": {}}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn no_key_or_a_bad_key_is_a_401() {
    let app = spawn_app().await;

    let none = app.send(Method::POST, "/ofrep/v1/evaluate/flags", None, Some(&json!({"context": {}}))).await;
    let bad = app.ofrep(flags::BOOLEAN, "vxc_bad_key", json!({})).await;

    assert_eq!(none.status(), 401);
    assert_eq!(bad.status(), 401);
}

#[tokio::test]
async fn bulk_lists_every_visible_flag_with_errors_in_place() {
    let app = spawn_app().await;

    let response = app.post("/ofrep/v1/evaluate/flags", &app.server_key, &json!({"context": {}})).await;

    assert_eq!(response.status(), 200);
    assert!(header(&response, "etag").is_some());
    let body = json_body(response).await;
    assert!(body.get("eventStreams").is_none(), "no stream is configured");
    let items = body["flags"].as_array().unwrap();
    assert_eq!(items.len(), 12);
    let item = |key: &str| items.iter().find(|item| item["key"] == key).unwrap().clone();
    assert_eq!(
        item(flags::BOOLEAN),
        json!({"key": flags::BOOLEAN, "reason": "STATIC", "variant": "on", "value": true})
    );
    assert_eq!(item(flags::ROLLOUT)["errorCode"], "TARGETING_KEY_MISSING");
    assert!(item(flags::ROLLOUT)["errorDetails"].is_string());
    assert_eq!(
        item(flags::OFF_NO_VARIATION),
        json!({"key": flags::OFF_NO_VARIATION, "reason": "DISABLED", "variant": null})
    );

    let client =
        json_body(app.post("/ofrep/v1/evaluate/flags", &app.client_key, &json!({"context": {}})).await).await;
    let keys: Vec<&str> =
        client["flags"].as_array().unwrap().iter().map(|item| item["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 11);
    assert!(!keys.contains(&flags::SERVER_ONLY));
}

#[tokio::test]
async fn the_bulk_etag_follows_context_configuration_and_key() {
    let app = spawn_app().await;
    let bulk = |key: &str, context: Value, etag: Option<&str>| {
        let mut request = app
            .client
            .post(app.url("/ofrep/v1/evaluate/flags"))
            .bearer_auth(key)
            .json(&json!({"context": context}));
        if let Some(etag) = etag {
            request = request.header("If-None-Match", etag);
        }
        request.send()
    };
    let user = json!({"targetingKey": "u1", "plan": "pro"});
    let first = bulk(&app.server_key, user.clone(), None).await.unwrap();
    let etag = header(&first, "etag").unwrap();

    let unchanged =
        bulk(&app.server_key, json!({"plan": "pro", "targetingKey": "u1"}), Some(&etag)).await.unwrap();
    assert_eq!(unchanged.status(), 304);
    assert_eq!(header(&unchanged, "etag").as_deref(), Some(etag.as_str()));
    assert!(unchanged.bytes().await.unwrap().is_empty());

    let other_context =
        bulk(&app.server_key, json!({"targetingKey": "u2", "plan": "pro"}), Some(&etag)).await.unwrap();
    assert_eq!(other_context.status(), 200, "the web provider keeps its If-None-Match across contexts");
    let other_key = bulk(&app.client_key, user.clone(), Some(&etag)).await.unwrap();
    assert_eq!(other_key.status(), 200);

    app.configure(flags::STRING, json!({"on": true, "fallthrough": {"variation": 0}})).await;
    let changed = bulk(&app.server_key, user, Some(&etag)).await.unwrap();
    assert_eq!(changed.status(), 200, "a new revision");
    assert_ne!(header(&changed, "etag"), Some(etag));
    let body = json_body(changed).await;
    let string =
        body["flags"].as_array().unwrap().iter().find(|item| item["key"] == flags::STRING).unwrap().clone();
    assert_eq!(string["value"], "blue");
}

#[tokio::test]
async fn a_configured_stream_is_advertised_with_the_key_in_its_url() {
    let app = spawn_app_with(Options {
        ofrep_stream_url: "https://stream.example/ofrep/v1/stream".into(),
        ..Options::default()
    })
    .await;

    let body =
        json_body(app.post("/ofrep/v1/evaluate/flags", &app.client_key, &json!({"context": {}})).await).await;

    assert_eq!(
        body["eventStreams"],
        json!([{"type": "sse", "url": format!("https://stream.example/ofrep/v1/stream?key={}", app.client_key), "inactivityDelaySec": 120}])
    );
}

#[tokio::test]
async fn evaluations_over_the_rate_are_429_with_integer_retry_after() {
    let app = spawn_app_with(Options { rate_limit_per_second: 1, ..Options::default() }).await;

    let statuses = [
        app.ofrep(flags::BOOLEAN, &app.server_key, json!({})).await.status(),
        app.post("/ofrep/v1/evaluate/flags", &app.server_key, &json!({})).await.status(),
    ];
    let limited = app.ofrep(flags::BOOLEAN, &app.server_key, json!({})).await;

    assert_eq!(statuses, [200, 200]);
    assert_eq!(limited.status(), 429);
    let retry_after = header(&limited, "retry-after").unwrap();
    assert!(retry_after.chars().all(|c| c.is_ascii_digit()) && retry_after != "0", "{retry_after}");
}

//! CORS for browser SDKs: preflights, and headers a page's script may read.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{flags, header, spawn_app};

#[tokio::test]
async fn a_preflight_allows_the_headers_sdks_send() {
    let app = spawn_app().await;

    for path in
        ["/ofrep/v1/evaluate/flags", "//ofrep/v1/evaluate/flags/bool-flag", "/v1/evaluate", "/v1/flags"]
    {
        let response = app
            .client
            .request(Method::OPTIONS, app.url(path))
            .header("Origin", "https://shop.example")
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type, authorization, if-none-match, x-api-key")
            .send()
            .await
            .unwrap();

        assert_eq!(response.status(), 204, "{path}");
        assert_eq!(header(&response, "access-control-allow-origin").as_deref(), Some("https://shop.example"));
        let allowed = header(&response, "access-control-allow-headers").unwrap().to_ascii_lowercase();
        for wanted in ["content-type", "authorization", "x-api-key", "if-none-match"] {
            assert!(allowed.contains(wanted), "{wanted} in {allowed}");
        }
        assert!(header(&response, "access-control-allow-methods").unwrap().contains("POST"));
    }
}

#[tokio::test]
async fn answers_expose_etag_and_retry_after_to_scripts() {
    let app = spawn_app().await;

    let response = app
        .client
        .post(app.url("/ofrep/v1/evaluate/flags"))
        .header("Origin", "https://shop.example")
        .bearer_auth(&app.client_key)
        .json(&json!({"context": {"targetingKey": "u"}}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin").as_deref(), Some("https://shop.example"));
    let exposed = header(&response, "access-control-expose-headers").unwrap();
    assert!(exposed.contains("ETag") && exposed.contains("Retry-After"), "{exposed}");

    let refused = app
        .client
        .post(app.url(&format!("/ofrep/v1/evaluate/flags/{}", flags::BOOLEAN)))
        .header("Origin", "https://shop.example")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert!(header(&refused, "access-control-allow-origin").is_some(), "errors are readable too");
}

//! `/healthz`, `/readyz`, `/metrics`, unknown routes, and what every SDK route does before the first sync.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Options, flags, json_body, problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn healthz_answers_while_the_process_is_up() {
    let app = spawn_app_with(Options { not_ready: true, ..Options::default() }).await;

    let response = app.send(Method::GET, "/healthz", None, None).await;

    assert_eq!(response.status(), 200);
    assert_eq!(json_body(response).await["status"], "ok");
}

#[tokio::test]
async fn the_replica_is_unready_and_refuses_sdks_until_its_first_sync() {
    let app = spawn_app_with(Options { not_ready: true, ..Options::default() }).await;

    let ready = app.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status(), 503);
    let evaluation = app.ofrep(flags::BOOLEAN, &app.server_key, json!({})).await;
    assert_eq!(evaluation.status(), 503);
    assert_eq!(problem(evaluation).await["code"], "service_unavailable");

    app.load_snapshots().await;
    app.cache.mark_ready();

    assert_eq!(app.send(Method::GET, "/readyz", None, None).await.status(), 200);
    assert_eq!(app.ofrep(flags::BOOLEAN, &app.server_key, json!({})).await.status(), 200);
}

#[tokio::test]
async fn metrics_count_evaluations_and_responses() {
    let app = spawn_app().await;
    app.ofrep(flags::BOOLEAN, &app.server_key, json!({})).await;
    app.post("/ofrep/v1/evaluate/flags", &app.server_key, &json!({"context": {"targetingKey": "u"}})).await;

    let response = app.send(Method::GET, "/metrics", None, None).await;

    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let value = |name: &str| -> u64 {
        let line =
            text.lines().find(|line| line.starts_with(name)).unwrap_or_else(|| panic!("{name} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(value("vexil_evaluation_flags_evaluated_total") >= 2, "{text}");
    assert_eq!(value("vexil_evaluation_http_responses_total{class=\"2xx\"}"), 2, "{text}");
    assert_eq!(value("vexil_evaluation_ready"), 1);
    assert_eq!(value("vexil_evaluation_environments"), 2);
}

#[tokio::test]
async fn an_unknown_route_is_a_problem_404_and_a_wrong_method_a_405() {
    let app = spawn_app().await;

    let unknown = app.send(Method::GET, "/v1/nothing-here", Some(&app.server_key), None).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(problem(unknown).await["code"], "not_found");

    let wrong_method = app.send(Method::DELETE, "/v1/evaluate", Some(&app.server_key), None).await;
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(problem(wrong_method).await["code"], "method_not_allowed");
}

#[tokio::test]
async fn the_openapi_document_describes_the_v1_routes() {
    let app = spawn_app().await;

    let document = json_body(app.send(Method::GET, "/v1/openapi.json", None, None).await).await;

    for path in ["/v1/flags", "/v1/evaluate", "/v1/events"] {
        assert!(document["paths"][path].is_object(), "{path} is documented");
    }
}

//! `/api/v1/session`: a management token exchanged for an httpOnly session cookie, writes made with it
//! guarded by a CSRF token, and the session ending with logout, expiry or its token.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// A signed-in dashboard: the cookie's secret and the CSRF token.
struct Session {
    secret: String,
    csrf: String,
    body: Value,
    set_cookie: String,
}

async fn sign_in(app: &TestApp, token: &str) -> Session {
    let response = app.request(Method::POST, "/api/v1/session", None, Some(&json!({"token": token}))).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    let secret = set_cookie
        .strip_prefix("vexil_session=")
        .and_then(|rest| rest.split(';').next())
        .expect("the session cookie")
        .to_owned();
    let body: Value = response.json().await.unwrap();
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    Session { secret, csrf, body, set_cookie }
}

/// `method path` with the session's cookie only, and `csrf` as `X-CSRF-Token` when given.
async fn with_cookie(
    app: &TestApp,
    method: Method,
    path: &str,
    secret: &str,
    csrf: Option<&str>,
    body: Option<Value>,
) -> Response {
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.address))
        .header("Cookie", format!("theme=dark; vexil_session={secret}"));
    if let Some(csrf) = csrf {
        request = request.header("X-CSRF-Token", csrf);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn signing_in_sets_an_http_only_strict_cookie_and_the_session_acts_as_its_token() {
    let app = spawn_app().await;
    let session = sign_in(&app, &app.admin).await;

    let attributes: Vec<&str> = session.set_cookie.split("; ").skip(1).collect();
    assert_eq!(
        attributes,
        ["HttpOnly", "SameSite=Strict", "Path=/api", "Max-Age=43200"],
        "{}",
        session.set_cookie
    );
    assert!(session.secret.starts_with("vxw_"), "a session secret, not the token");
    assert_ne!(session.secret, app.admin);
    assert_eq!(session.body["token"]["role"], "admin");
    assert!(session.body["expires_at"].is_string());
    assert!(session.csrf.len() >= 32);

    let projects = with_cookie(&app, Method::GET, "/api/v1/projects", &session.secret, None, None).await;
    assert_eq!(projects.status(), StatusCode::OK, "a read needs no CSRF token");
    let current = with_cookie(&app, Method::GET, "/api/v1/session", &session.secret, None, None).await;
    assert_eq!(current.status(), StatusCode::OK);
    assert_eq!(current.headers()["cache-control"], "no-store");
    let current: Value = current.json().await.unwrap();
    assert_eq!(
        current["csrf_token"], session.body["csrf_token"],
        "a reloaded page gets its CSRF token again"
    );
    assert_eq!(current["token"]["id"], session.body["token"]["id"]);
}

#[tokio::test]
async fn a_write_made_with_the_cookie_needs_the_sessions_csrf_token() {
    let app = spawn_app().await;
    let session = sign_in(&app, &app.admin).await;
    let project = |key: &str| Some(json!({"key": key, "name": key}));

    for csrf in [None, Some("not-the-token"), Some("")] {
        let refused =
            with_cookie(&app, Method::POST, "/api/v1/projects", &session.secret, csrf, project("shop")).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{csrf:?}");
        assert_eq!(problem(refused).await["code"], "csrf_failed");
    }
    assert_eq!(app.get("/api/v1/projects/shop").await.status(), StatusCode::NOT_FOUND, "nothing was written");

    let made = with_cookie(
        &app,
        Method::POST,
        "/api/v1/projects",
        &session.secret,
        Some(&session.csrf),
        project("shop"),
    )
    .await;
    assert_eq!(made.status(), StatusCode::CREATED);
    // The audit log names the token the session acts as.
    let audit: Value = app.get("/api/v1/audit?project=shop").await.json().await.unwrap();
    let records = audit["items"].as_array().unwrap();
    let record = records.iter().find(|record| record["action"] == "project.create").expect("{audit}");
    assert_eq!(record["actor_token_id"], session.body["token"]["id"], "{record}");
}

#[tokio::test]
async fn a_bad_token_is_refused_and_a_stale_cookie_never_blocks_signing_in_again() {
    let app = spawn_app().await;
    let refused =
        app.request(Method::POST, "/api/v1/session", None, Some(&json!({"token": "vxm_nope"}))).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().get("set-cookie").is_none());
    assert_eq!(problem(refused).await["field"], "token");

    let stale = "vxw_AAAAAAAAAAAA_notasessionnotasessionnotasession";
    let signed_in =
        with_cookie(&app, Method::POST, "/api/v1/session", stale, None, Some(json!({"token": app.admin})))
            .await;
    assert_eq!(signed_in.status(), StatusCode::CREATED, "a stale cookie counts as none");
    let anonymous = with_cookie(&app, Method::GET, "/api/v1/projects", stale, None, None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn signing_out_ends_the_session_and_clears_the_cookie() {
    let app = spawn_app().await;
    let session = sign_in(&app, &app.admin).await;

    let without_csrf =
        with_cookie(&app, Method::DELETE, "/api/v1/session", &session.secret, None, None).await;
    assert_eq!(without_csrf.status(), StatusCode::FORBIDDEN, "signing out is a write too");
    let signed_out =
        with_cookie(&app, Method::DELETE, "/api/v1/session", &session.secret, Some(&session.csrf), None)
            .await;
    assert_eq!(signed_out.status(), StatusCode::NO_CONTENT);
    let cleared = signed_out.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.starts_with("vexil_session=;") && cleared.contains("Max-Age=0"), "{cleared}");

    let after = with_cookie(&app, Method::GET, "/api/v1/projects", &session.secret, None, None).await;
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    let again = with_cookie(&app, Method::GET, "/api/v1/session", &session.secret, None, None).await;
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_session_has_its_tokens_role_and_ends_with_its_token() {
    let app = spawn_app().await;
    let created: Value =
        app.post("/api/v1/tokens", &json!({"name": "support", "role": "viewer"})).await.json().await.unwrap();
    let viewer = sign_in(&app, created["secret"].as_str().unwrap()).await;

    let read = with_cookie(&app, Method::GET, "/api/v1/projects", &viewer.secret, None, None).await;
    assert_eq!(read.status(), StatusCode::OK);
    let write = with_cookie(
        &app,
        Method::POST,
        "/api/v1/projects",
        &viewer.secret,
        Some(&viewer.csrf),
        Some(json!({"key": "shop", "name": "Shop"})),
    )
    .await;
    assert_eq!(write.status(), StatusCode::FORBIDDEN);
    assert_eq!(problem(write).await["code"], "forbidden", "the role, not the CSRF check");

    let revoked = app.delete(&format!("/api/v1/tokens/{}", created["token"]["id"].as_str().unwrap())).await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let after = with_cookie(&app, Method::GET, "/api/v1/projects", &viewer.secret, None, None).await;
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED, "revoking a token ends its sessions");
}

#[tokio::test]
async fn an_expired_session_opens_nothing() {
    let app = spawn_app().await;
    let token = app.store.authenticate(&app.admin).await.unwrap().unwrap();
    let expired = app.store.create_session(&token, time::Duration::ZERO).await.unwrap();
    let response = with_cookie(&app, Method::GET, "/api/v1/projects", &expired.secret, None, None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(app.store.session(&expired.secret).await.unwrap().is_none());
}

#[tokio::test]
async fn the_cookie_is_secure_behind_tls_and_a_bearer_token_wins_over_it() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(format!("{}/api/v1/session", app.address))
        .header("X-Forwarded-Proto", "https")
        .json(&json!({"token": app.admin}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(response.headers()["set-cookie"].to_str().unwrap().ends_with("; Secure"));

    // A bearer token is used whatever the cookie, and needs no CSRF token; it has no session.
    let session = sign_in(&app, &app.admin).await;
    let made = app
        .client
        .post(format!("{}/api/v1/projects", app.address))
        .bearer_auth(&app.admin)
        .header("Cookie", format!("vexil_session={}", session.secret))
        .json(&json!({"key": "shop", "name": "Shop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), StatusCode::CREATED);
    let no_session = app.get("/api/v1/session").await;
    assert_eq!(no_session.status(), StatusCode::NOT_FOUND);
}

//! The auth matrix: every route of the API × every kind of caller, each cell answered as the rules of
//! DESIGN §6 say. 401 without a valid token; 403 when the role or the project scope falls short
//! (a denied write changes nothing); anything else gets through.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// What a route requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Need {
    /// No token at all (health, metrics, the API document).
    Public,
    Viewer,
    Editor,
    Admin,
    /// An admin token not limited to projects.
    GlobalAdmin,
    /// The dashboard's session routes: signing in takes a token in the body, the others answer for the
    /// session cookie, which no caller here holds. `session.rs` tests them with cookies.
    Session,
}

/// One route: method, path template, requirement, body. In paths, `{project}`, `{environment}`,
/// `{flag}`, `{segment}` and `{id}` are filled from a fresh fixture per cell; in bodies, `{n}` is the
/// cell's number, for keys that must be new.
struct Route {
    method: &'static str,
    path: &'static str,
    need: Need,
    body: Option<&'static str>,
}

const fn route(method: &'static str, path: &'static str, need: Need, body: Option<&'static str>) -> Route {
    Route { method, path, need, body }
}

/// Every route of the server.
#[rustfmt::skip]
static ROUTES: &[Route] = &[
    route("POST",   "/api/v1/projects", Need::GlobalAdmin, Some(r#"{"key": "new-{n}"}"#)),
    route("GET",    "/api/v1/projects", Need::Viewer, None),
    route("GET",    "/api/v1/projects/{project}", Need::Viewer, None),
    route("PATCH",  "/api/v1/projects/{project}", Need::Admin, Some(r#"{"name": "Renamed"}"#)),
    route("DELETE", "/api/v1/projects/{project}", Need::Admin, None),
    route("POST",   "/api/v1/projects/{project}/environments", Need::Admin, Some(r#"{"key": "staging"}"#)),
    route("GET",    "/api/v1/projects/{project}/environments", Need::Viewer, None),
    route("GET",    "/api/v1/projects/{project}/environments/{environment}", Need::Viewer, None),
    route("PATCH",  "/api/v1/projects/{project}/environments/{environment}", Need::Admin, Some(r#"{"name": "Dev"}"#)),
    route("DELETE", "/api/v1/projects/{project}/environments/{environment}", Need::Admin, None),
    route("GET",    "/api/v1/projects/{project}/environments/{environment}/keys", Need::Viewer, None),
    route("POST",   "/api/v1/projects/{project}/environments/{environment}/keys/rotate", Need::Admin, Some(r#"{"overlap_seconds": 60}"#)),
    route("POST",   "/api/v1/projects/{project}/flags", Need::Editor,
          Some(r#"{"key": "new-flag", "kind": "boolean", "variations": [{"value": true}, {"value": false}]}"#)),
    route("GET",    "/api/v1/projects/{project}/flags", Need::Viewer, None),
    route("GET",    "/api/v1/projects/{project}/flags/{flag}", Need::Viewer, None),
    route("PATCH",  "/api/v1/projects/{project}/flags/{flag}", Need::Editor, Some(r#"{"name": "Renamed"}"#)),
    route("DELETE", "/api/v1/projects/{project}/flags/{flag}", Need::Editor, None),
    route("GET",    "/api/v1/projects/{project}/flags/{flag}/environments/{environment}", Need::Viewer, None),
    route("PUT",    "/api/v1/projects/{project}/flags/{flag}/environments/{environment}", Need::Editor,
          Some(r#"{"on": true, "fallthrough": {"variation": 0}}"#)),
    route("POST",   "/api/v1/projects/{project}/flags/{flag}/environments/{environment}/toggle", Need::Editor, Some(r#"{"on": true}"#)),
    route("POST",   "/api/v1/projects/{project}/environments/{environment}/segments", Need::Editor, Some(r#"{"key": "new-segment"}"#)),
    route("GET",    "/api/v1/projects/{project}/environments/{environment}/segments", Need::Viewer, None),
    route("GET",    "/api/v1/projects/{project}/environments/{environment}/segments/{segment}", Need::Viewer, None),
    route("PUT",    "/api/v1/projects/{project}/environments/{environment}/segments/{segment}", Need::Editor,
          Some(r#"{"key": "beta", "included": ["user-1"]}"#)),
    route("DELETE", "/api/v1/projects/{project}/environments/{environment}/segments/{segment}", Need::Editor, None),
    route("GET",    "/api/v1/audit", Need::Viewer, None),
    route("GET",    "/api/v1/audit/verify", Need::GlobalAdmin, None),
    route("POST",   "/api/v1/tokens", Need::GlobalAdmin, Some(r#"{"name": "ci-{n}", "role": "viewer"}"#)),
    route("GET",    "/api/v1/tokens", Need::GlobalAdmin, None),
    route("GET",    "/api/v1/tokens/{id}", Need::GlobalAdmin, None),
    route("DELETE", "/api/v1/tokens/{id}", Need::GlobalAdmin, None),
    route("POST",   "/api/v1/session", Need::Session, None),
    route("GET",    "/api/v1/session", Need::Session, None),
    route("DELETE", "/api/v1/session", Need::Session, None),
    route("GET",    "/healthz", Need::Public, None),
    route("GET",    "/readyz", Need::Public, None),
    route("GET",    "/metrics", Need::Public, None),
    route("GET",    "/api/v1/openapi.json", Need::Public, None),
    route("GET",    "/api/docs/", Need::Public, None),
];

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    NoToken,
    UnknownToken,
    /// A viewer token limited to the cell's project.
    Viewer,
    /// An editor token limited to the cell's project.
    Editor,
    /// An admin token limited to the cell's project.
    ScopedAdmin,
    /// An admin token limited to another project.
    OtherProjectAdmin,
    /// The unscoped admin token.
    Admin,
}

const CALLERS: [Caller; 7] = [
    Caller::NoToken,
    Caller::UnknownToken,
    Caller::Viewer,
    Caller::Editor,
    Caller::ScopedAdmin,
    Caller::OtherProjectAdmin,
    Caller::Admin,
];

impl Caller {
    /// The token's role and projects, for callers that have a real token.
    fn token(self) -> Option<(Need, Scope)> {
        match self {
            Caller::NoToken | Caller::UnknownToken => None,
            Caller::Viewer => Some((Need::Viewer, Scope::ThisProject)),
            Caller::Editor => Some((Need::Editor, Scope::ThisProject)),
            Caller::ScopedAdmin => Some((Need::Admin, Scope::ThisProject)),
            Caller::OtherProjectAdmin => Some((Need::Admin, Scope::OtherProject)),
            Caller::Admin => Some((Need::Admin, Scope::Everything)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    ThisProject,
    OtherProject,
    Everything,
}

/// The answer the rules give a caller on a route: `None` lets it through, else 401 or 403.
fn expected(route: &Route, caller: Caller) -> Option<StatusCode> {
    if route.need == Need::Public {
        return None;
    }
    let Some((role, scope)) = caller.token() else { return Some(StatusCode::UNAUTHORIZED) };
    let needed_role = if route.need == Need::GlobalAdmin { Need::Admin } else { route.need };
    let denied = role < needed_role
        || (route.need == Need::GlobalAdmin && scope != Scope::Everything)
        || (route.path.contains("{project}") && scope == Scope::OtherProject);
    denied.then_some(StatusCode::FORBIDDEN)
}

/// The audit log's length: its newest record's `seq` (the chain has no gaps).
pub async fn audit_length(app: &TestApp) -> u64 {
    let page: Value = app.get("/api/v1/audit?limit=1").await.json().await.unwrap();
    page["items"][0]["seq"].as_u64().expect("the audit log has records")
}

/// Creates a management token with the unscoped admin, creating the projects it is scoped to if they do
/// not exist yet (a scope must name existing projects); returns its secret and id.
pub async fn create_token(app: &TestApp, role: &str, projects: Option<&[&str]>) -> (String, String) {
    let mut body = json!({"name": format!("{role} token"), "role": role});
    if let Some(projects) = projects {
        for project in projects {
            if app.get(&format!("/api/v1/projects/{project}")).await.status() == 404 {
                assert_eq!(app.post("/api/v1/projects", &json!({"key": project})).await.status(), 201);
            }
        }
        body["projects"] = json!(projects);
    }
    let response = app.post("/api/v1/tokens", &body).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    (created["secret"].as_str().unwrap().to_owned(), created["token"]["id"].as_str().unwrap().to_owned())
}

/// A fresh world for one cell: project `project` with flag `checkout`, segment `beta` in `development`,
/// and a spare token to read or revoke.
async fn fixture(app: &TestApp, project: &str) -> String {
    let created = app.post("/api/v1/projects", &json!({"key": project})).await;
    assert_eq!(created.status(), 201);
    let flag = app
        .post(
            &format!("/api/v1/projects/{project}/flags"),
            &json!({"key": "checkout", "kind": "boolean", "variations": [{"value": true}, {"value": false}]}),
        )
        .await;
    assert_eq!(flag.status(), 201);
    let segment = app
        .post(
            &format!("/api/v1/projects/{project}/environments/development/segments"),
            &json!({"key": "beta"}),
        )
        .await;
    assert_eq!(segment.status(), 201);
    create_token(app, "viewer", None).await.1
}

#[tokio::test]
async fn every_route_answers_every_caller_as_the_rules_say() {
    let app = spawn_app().await;
    let other = app.post("/api/v1/projects", &json!({"key": "other"})).await;
    assert_eq!(other.status(), 201);

    let mut cell = 0;
    for route in ROUTES.iter().filter(|route| route.need != Need::Session) {
        for caller in CALLERS {
            cell += 1;
            let project = format!("p{cell}");
            let spare_token =
                if route.need == Need::Public { String::new() } else { fixture(&app, &project).await };
            let token = match caller.token() {
                None if caller == Caller::UnknownToken => {
                    Some("vxm_unknown00000_notarealtokenatall".to_owned())
                }
                None => None,
                Some((_, Scope::Everything)) => Some(app.admin.clone()),
                Some((role, scope)) => {
                    let role = format!("{role:?}").to_lowercase();
                    let projects = if scope == Scope::ThisProject { project.as_str() } else { "other" };
                    Some(create_token(&app, &role, Some(&[projects])).await.0)
                }
            };
            let path = route
                .path
                .replace("{project}", &project)
                .replace("{environment}", "development")
                .replace("{flag}", "checkout")
                .replace("{segment}", "beta")
                .replace("{id}", &spare_token);
            let body = route
                .body
                .map(|b| serde_json::from_str::<Value>(&b.replace("{n}", &cell.to_string())).unwrap());
            let method = Method::from_bytes(route.method.as_bytes()).unwrap();
            let what = format!("{} {} as {caller:?}", route.method, route.path);
            let length = if route.need == Need::Public { 0 } else { audit_length(&app).await };

            let response = app.request(method.clone(), &path, token.as_deref(), body.as_ref()).await;

            let status = response.status();
            match expected(route, caller) {
                Some(denied) => {
                    assert_eq!(status, denied, "{what}");
                    if denied == StatusCode::UNAUTHORIZED {
                        assert_eq!(response.headers()["www-authenticate"], "Bearer", "{what}");
                    }
                    let problem = problem(response).await;
                    let code = if denied == StatusCode::UNAUTHORIZED { "unauthorized" } else { "forbidden" };
                    assert_eq!(problem["code"], code, "{what}: {problem}");
                    assert_eq!(problem["status"], denied.as_u16(), "{what}");
                    assert_eq!(
                        audit_length(&app).await,
                        length,
                        "{what}: a denied request changed something"
                    );
                }
                None => {
                    assert!(status.is_success(), "{what}: {status} {}", response.text().await.unwrap());
                    if route.need != Need::Public {
                        let after = audit_length(&app).await;
                        if method == Method::GET {
                            assert_eq!(after, length, "{what}: a read wrote to the audit log");
                        } else {
                            assert!(after > length, "{what}: a write left no audit record");
                        }
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn the_matrix_covers_every_route_in_the_api_document() {
    let app = spawn_app().await;
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, methods)| {
            methods.as_object().unwrap().keys().map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let tabled: BTreeSet<(String, String)> = ROUTES
        .iter()
        .filter(|r| r.need != Need::Public)
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert!(documented.len() > 25, "{documented:?}");
    assert_eq!(tabled, documented, "the auth matrix and the API document disagree on the routes");
    // Query parameters are documented although they are read by the API's own extractor.
    for (path, expected) in [
        ("/api/v1/audit", ["limit", "since", "cursor"]),
        ("/api/v1/projects/{project}/flags", ["archived", "prefix", "tag"]),
    ] {
        let names: BTreeSet<&str> = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{path} documents no parameters"))
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(expected.iter().all(|name| names.contains(name)), "{path}: {names:?}");
    }
}

#[tokio::test]
async fn list_endpoints_show_a_scoped_token_only_its_projects() {
    let app = spawn_app().await;
    for project in ["shop", "other", "third"] {
        assert_eq!(app.post("/api/v1/projects", &json!({"key": project})).await.status(), 201);
        let flag = json!({"key": "f", "kind": "boolean", "variations": [{"value": true}, {"value": false}]});
        assert_eq!(app.post(&format!("/api/v1/projects/{project}/flags"), &flag).await.status(), 201);
    }
    let (viewer, _) = create_token(&app, "viewer", Some(&["shop"])).await;
    let (two, _) = create_token(&app, "admin", Some(&["shop", "third"])).await;

    let keys = |projects: &Value| -> Vec<String> {
        projects.as_array().unwrap().iter().map(|p| p["key"].as_str().unwrap().to_owned()).collect()
    };
    let list = |token: String| {
        let app = &app;
        async move {
            let response = app.request(Method::GET, "/api/v1/projects", Some(&token), None).await;
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(keys(&list(viewer.clone()).await), ["shop"]);
    assert_eq!(keys(&list(two).await), ["shop", "third"]);
    assert_eq!(keys(&list(app.admin.clone()).await), ["other", "shop", "third"]);

    let audit = |query: &'static str| {
        let (app, viewer) = (&app, viewer.clone());
        async move {
            let response =
                app.request(Method::GET, &format!("/api/v1/audit{query}"), Some(&viewer), None).await;
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()["items"].as_array().unwrap().clone()
        }
    };
    let seen = audit("").await;
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|r| r["project"] == "shop"), "a scoped token saw other records: {seen:?}");
    assert!(seen.iter().any(|r| r["action"] == "flag.create"));
    assert!(audit("?project=other").await.is_empty(), "a filter must not widen the scope");
    // The unscoped admin sees all three projects' records and the token records (no project).
    let all: Value = app.get("/api/v1/audit").await.json().await.unwrap();
    let projects: BTreeSet<&str> =
        all["items"].as_array().unwrap().iter().filter_map(|r| r["project"].as_str()).collect();
    assert_eq!(projects, BTreeSet::from(["other", "shop", "third"]));
    assert!(all["items"].as_array().unwrap().iter().any(|r| r["action"] == "token.create"));
}

//! The validation table: malformed requests of every kind, each answered with the exact status, a
//! stable `code` and the offending `field`, never a 500, and without writing anything.

use reqwest::Method;
use serde_json::{Value, json};

use crate::auth::audit_length;
use crate::helpers::*;

const FLAGS: &str = "/api/v1/projects/shop/flags";
const FLAG: &str = "/api/v1/projects/shop/flags/checkout";
const CONFIG: &str = "/api/v1/projects/shop/flags/checkout/environments/production";
const SEGMENTS: &str = "/api/v1/projects/shop/environments/production/segments";
const JSON: &str = "application/json";

/// One malformed request and the answer it must get.
struct Case {
    name: &'static str,
    method: Method,
    path: String,
    /// `None` sends no `Content-Type`.
    content_type: Option<&'static str>,
    if_match: Option<&'static str>,
    /// Sent as is: it need not be JSON.
    body: String,
    status: u16,
    code: &'static str,
    /// The `field` of the problem; `None` when the problem must name none.
    field: Option<&'static str>,
}

fn case(name: &'static str, method: Method, path: &str, body: impl Into<String>) -> Case {
    Case {
        name,
        method,
        path: path.to_owned(),
        content_type: Some(JSON),
        if_match: None,
        body: body.into(),
        status: 0,
        code: "",
        field: None,
    }
}

impl Case {
    fn answers(mut self, status: u16, code: &'static str, field: Option<&'static str>) -> Case {
        (self.status, self.code, self.field) = (status, code, field);
        self
    }

    fn content_type(mut self, content_type: Option<&'static str>) -> Case {
        self.content_type = content_type;
        self
    }

    fn if_match(mut self, value: &'static str) -> Case {
        self.if_match = Some(value);
        self
    }
}

fn flag_with_key(key: &str) -> String {
    json!({"key": key, "kind": "boolean", "variations": [{"value": true}, {"value": false}]}).to_string()
}

fn config_with_rule(clause: Value) -> String {
    json!({"on": true, "fallthrough": {"variation": 0},
           "rules": [{"id": "r0", "clauses": [clause], "serve": {"variation": 0}}]})
    .to_string()
}

fn cases(max_body_bytes: usize) -> Vec<Case> {
    use Method as M;
    let (invalid_body, invalid_parameter, validation) =
        ("invalid_body", "invalid_parameter", "validation_failed");
    let long_key = "k".repeat(300);
    vec![
        // Keys in bodies: the body cannot even be read into a request type.
        case("flag key with a space", M::POST, FLAGS, flag_with_key("new checkout")).answers(
            400,
            invalid_body,
            Some("key"),
        ),
        case("flag key with a slash", M::POST, FLAGS, flag_with_key("a/b")).answers(
            400,
            invalid_body,
            Some("key"),
        ),
        case("flag key with unicode", M::POST, FLAGS, flag_with_key("über")).answers(
            400,
            invalid_body,
            Some("key"),
        ),
        case("empty flag key", M::POST, FLAGS, flag_with_key("")).answers(400, invalid_body, Some("key")),
        case("300-character flag key", M::POST, FLAGS, flag_with_key(&long_key)).answers(
            400,
            invalid_body,
            Some("key"),
        ),
        case(
            "unknown flag kind",
            M::POST,
            FLAGS,
            r#"{"key": "k", "kind": "integer", "variations": [{"value": 1}]}"#,
        )
        .answers(400, invalid_body, Some("kind")),
        case("missing flag kind", M::POST, FLAGS, r#"{"key": "k", "variations": [{"value": true}]}"#)
            .answers(400, invalid_body, Some("kind")),
        case(
            "unknown field in a flag",
            M::POST,
            FLAGS,
            r#"{"key": "k", "kind": "boolean", "variations": [{"value": true}], "colour": "red"}"#,
        )
        .answers(400, invalid_body, Some("colour")),
        case(
            "unknown field in a variation",
            M::POST,
            FLAGS,
            r#"{"key": "k", "kind": "boolean", "variations": [{"value": true, "weight": 3}]}"#,
        )
        .answers(400, invalid_body, Some("variations[0].weight")),
        case(
            "variation of the wrong kind",
            M::POST,
            FLAGS,
            r#"{"key": "k", "kind": "boolean", "variations": [{"value": true}, {"value": "no"}]}"#,
        )
        .answers(422, validation, Some("variations[1].value")),
        case(
            "flag without variations",
            M::POST,
            FLAGS,
            r#"{"key": "k", "kind": "boolean", "variations": []}"#,
        )
        .answers(422, validation, Some("variations")),
        case("existing flag key", M::POST, FLAGS, flag_with_key("checkout")).answers(
            409,
            "already_exists",
            None,
        ),
        // Flag configurations.
        case(
            "weights not summing to 100000",
            M::PUT,
            CONFIG,
            json!({"fallthrough": {"rollout": {"weights": [
            {"variation": 0, "weight": 50000}, {"variation": 1, "weight": 49999}]}}})
            .to_string(),
        )
        .answers(422, validation, Some("fallthrough.rollout.weights")),
        case(
            "negative weight",
            M::PUT,
            CONFIG,
            json!({"fallthrough": {"rollout": {"weights": [
            {"variation": 0, "weight": -1}, {"variation": 1, "weight": 100001}]}}})
            .to_string(),
        )
        .answers(400, invalid_body, Some("fallthrough.rollout.weights[0].weight")),
        case(
            "unknown operator",
            M::PUT,
            CONFIG,
            config_with_rule(json!({"attribute": "country", "op": "approximately", "values": ["DE"]})),
        )
        .answers(400, invalid_body, Some("rules[0].clauses[0].op")),
        case(
            "bad regex",
            M::PUT,
            CONFIG,
            config_with_rule(json!({"attribute": "email", "op": "matches", "values": ["(unclosed"]})),
        )
        .answers(422, validation, Some("rules[0].clauses[0].values[0]")),
        case(
            "bad semver",
            M::PUT,
            CONFIG,
            config_with_rule(json!({"attribute": "version", "op": "semver_gt", "values": ["two"]})),
        )
        .answers(422, validation, Some("rules[0].clauses[0].values[0]")),
        case(
            "bad attribute path",
            M::PUT,
            CONFIG,
            config_with_rule(json!({"attribute": "a..b", "op": "in", "values": ["x"]})),
        )
        .answers(400, invalid_body, Some("rules[0].clauses[0].attribute")),
        case(
            "clause without values",
            M::PUT,
            CONFIG,
            config_with_rule(json!({"attribute": "country", "op": "in", "values": []})),
        )
        .answers(422, validation, Some("rules[0].clauses[0].values")),
        case(
            "rule serving a variation out of range",
            M::PUT,
            CONFIG,
            json!({"fallthrough": {"variation": 0},
            "rules": [{"id": "r0", "clauses": [], "serve": {"variation": 2}}]})
            .to_string(),
        )
        .answers(422, validation, Some("rules[0].serve.variation")),
        case(
            "off variation out of range",
            M::PUT,
            CONFIG,
            r#"{"off_variation": 7, "fallthrough": {"variation": 0}}"#,
        )
        .answers(422, validation, Some("off_variation")),
        case(
            "duplicate rule id",
            M::PUT,
            CONFIG,
            json!({"fallthrough": {"variation": 0}, "rules": [
            {"id": "same", "clauses": [], "serve": {"variation": 0}},
            {"id": "same", "clauses": [], "serve": {"variation": 1}}]})
            .to_string(),
        )
        .answers(422, validation, Some("rules[1].id")),
        case(
            "the flag as its own prerequisite",
            M::PUT,
            CONFIG,
            r#"{"fallthrough": {"variation": 0}, "prerequisites": [{"key": "checkout", "variation": 0}]}"#,
        )
        .answers(422, validation, Some("prerequisites[0].key")),
        case(
            "prerequisite on a missing flag",
            M::PUT,
            CONFIG,
            r#"{"fallthrough": {"variation": 0}, "prerequisites": [{"key": "missing", "variation": 0}]}"#,
        )
        .answers(422, validation, Some("prerequisites[0].key")),
        case(
            "rule on a missing segment",
            M::PUT,
            CONFIG,
            config_with_rule(
                json!({"attribute": "targetingKey", "op": "segment_match", "values": ["missing"]}),
            ),
        )
        .answers(422, validation, Some("rules[0].clauses[0].values[0]")),
        case(
            "unknown field in a configuration",
            M::PUT,
            CONFIG,
            r#"{"fallthrough": {"variation": 0}, "colour": "red"}"#,
        )
        .answers(400, invalid_body, Some("colour")),
        case("missing fallthrough", M::PUT, CONFIG, r#"{"on": true}"#).answers(
            400,
            invalid_body,
            Some("fallthrough"),
        ),
        case("string for on", M::PUT, CONFIG, r#"{"on": "true", "fallthrough": {"variation": 0}}"#).answers(
            400,
            invalid_body,
            Some("on"),
        ),
        case("string for on in a toggle", M::POST, &format!("{CONFIG}/toggle"), r#"{"on": "yes"}"#).answers(
            400,
            invalid_body,
            Some("on"),
        ),
        case("empty toggle", M::POST, &format!("{CONFIG}/toggle"), "{}").answers(
            400,
            invalid_body,
            Some("on"),
        ),
        case("malformed JSON", M::PUT, CONFIG, r#"{"on": true,"#).answers(400, invalid_body, None),
        case("trailing garbage after the JSON", M::PUT, CONFIG, r#"{"fallthrough": {"variation": 0}} x"#)
            .answers(400, invalid_body, None),
        case("an array instead of an object", M::PUT, CONFIG, "[]").answers(400, invalid_body, None),
        case("empty body", M::PUT, CONFIG, "").answers(400, invalid_body, None),
        case("text/plain body", M::PUT, CONFIG, r#"{"fallthrough": {"variation": 0}}"#)
            .content_type(Some("text/plain"))
            .answers(415, "unsupported_media_type", None),
        case("no content type", M::PUT, CONFIG, r#"{"fallthrough": {"variation": 0}}"#)
            .content_type(None)
            .answers(415, "unsupported_media_type", None),
        case(
            "body over the limit",
            M::PUT,
            CONFIG,
            json!({"fallthrough": {"variation": 0},
            "targets": [{"variation": 0, "values": ["x".repeat(max_body_bytes)]}]})
            .to_string(),
        )
        .answers(413, "payload_too_large", None),
        case("If-Match that is not an ETag", M::PUT, CONFIG, r#"{"fallthrough": {"variation": 0}}"#)
            .if_match("yesterday")
            .answers(400, invalid_parameter, Some("If-Match")),
        case("stale If-Match", M::PUT, CONFIG, r#"{"fallthrough": {"variation": 0}}"#)
            .if_match("\"7\"")
            .answers(412, "precondition_failed", None),
        case(
            "configuration in a missing environment",
            M::PUT,
            &format!("{FLAG}/environments/staging"),
            r#"{"fallthrough": {"variation": 0}}"#,
        )
        .answers(404, "not_found", None),
        // Flag merge patches.
        case("patch changing the key", M::PATCH, FLAG, r#"{"key": "renamed"}"#).answers(
            422,
            validation,
            Some("key"),
        ),
        case("patch with a number for the name", M::PATCH, FLAG, r#"{"name": 5}"#).answers(
            400,
            invalid_body,
            Some("name"),
        ),
        case("patch with an unknown field", M::PATCH, FLAG, r#"{"colour": "red"}"#).answers(
            400,
            invalid_body,
            Some("colour"),
        ),
        case("patch that is not an object", M::PATCH, FLAG, r#"["name"]"#).answers(400, invalid_body, None),
        case("patch changing the kind", M::PATCH, FLAG, r#"{"kind": "string"}"#).answers(
            422,
            validation,
            Some("variations[0].value"),
        ),
        case("patch removing a variation in use", M::PATCH, FLAG, r#"{"variations": [{"value": true}]}"#)
            .answers(422, validation, Some("environments.development.off_variation")),
        case("patch with a bad If-Match", M::PATCH, FLAG, r#"{"name": "x"}"#).if_match("W/\"one\"").answers(
            400,
            invalid_parameter,
            Some("If-Match"),
        ),
        // Projects, environments, keys.
        case("project key with a space", M::POST, "/api/v1/projects", r#"{"key": "my shop"}"#).answers(
            400,
            invalid_body,
            Some("key"),
        ),
        case("existing project", M::POST, "/api/v1/projects", r#"{"key": "shop"}"#).answers(
            409,
            "already_exists",
            None,
        ),
        case("project rename with a number", M::PATCH, "/api/v1/projects/shop", r#"{"name": 5}"#).answers(
            400,
            invalid_body,
            Some("name"),
        ),
        case(
            "environment key with a slash",
            M::POST,
            "/api/v1/projects/shop/environments",
            r#"{"key": "a/b"}"#,
        )
        .answers(400, invalid_body, Some("key")),
        case(
            "negative key overlap",
            M::POST,
            "/api/v1/projects/shop/environments/production/keys/rotate",
            r#"{"overlap_seconds": -1}"#,
        )
        .answers(400, invalid_body, Some("overlap_seconds")),
        case(
            "rotation body over the limit",
            M::POST,
            "/api/v1/projects/shop/environments/production/keys/rotate",
            json!({"overlap_seconds": 1, "x": "x".repeat(max_body_bytes)}).to_string(),
        )
        .answers(413, "payload_too_large", None),
        case(
            "rotation body that is not JSON",
            M::POST,
            "/api/v1/projects/shop/environments/production/keys/rotate",
            "soon",
        )
        .answers(400, invalid_body, None),
        case(
            "rotation body that is not JSON by its type",
            M::POST,
            "/api/v1/projects/shop/environments/production/keys/rotate",
            r#"{"overlap_seconds": 1}"#,
        )
        .content_type(Some("text/plain"))
        .answers(415, "unsupported_media_type", None),
        // Segments.
        case(
            "segment referring to a segment",
            M::POST,
            SEGMENTS,
            json!({"key": "s", "rules": [{"id": "r",
            "clauses": [{"attribute": "targetingKey", "op": "segment_match", "values": ["beta"]}]}]})
            .to_string(),
        )
        .answers(422, validation, Some("rules[0].clauses[0].op")),
        case(
            "segment with an empty included key",
            M::POST,
            SEGMENTS,
            r#"{"key": "s", "included": ["a", ""]}"#,
        )
        .answers(422, validation, Some("included[1]")),
        case("segment put changing the key", M::PUT, &format!("{SEGMENTS}/beta"), r#"{"key": "gamma"}"#)
            .answers(422, validation, Some("key")),
        case("segment put with a bad If-Match", M::PUT, &format!("{SEGMENTS}/beta"), r#"{"key": "beta"}"#)
            .if_match("\"-1\"")
            .answers(400, invalid_parameter, Some("If-Match")),
        // Tokens.
        case("token with an unknown role", M::POST, "/api/v1/tokens", r#"{"name": "ci", "role": "owner"}"#)
            .answers(400, invalid_body, Some("role")),
        case("token with a blank name", M::POST, "/api/v1/tokens", r#"{"name": "  ", "role": "viewer"}"#)
            .answers(422, validation, Some("name")),
        case(
            "token scoped to a bad project key",
            M::POST,
            "/api/v1/tokens",
            r#"{"name": "ci", "role": "viewer", "projects": ["a b"]}"#,
        )
        .answers(400, invalid_body, Some("projects[0]")),
        case(
            "token scoped to a project that does not exist",
            M::POST,
            "/api/v1/tokens",
            r#"{"name": "ci", "role": "viewer", "projects": ["shop", "nowhere"]}"#,
        )
        .answers(422, validation, Some("projects[1]")),
        // Query parameters.
        case("archived=maybe", M::GET, &format!("{FLAGS}?archived=maybe"), "").answers(
            400,
            invalid_parameter,
            Some("archived"),
        ),
        case("unknown flag filter", M::GET, &format!("{FLAGS}?colour=red"), "").answers(
            400,
            invalid_parameter,
            Some("colour"),
        ),
        case("limit=0", M::GET, "/api/v1/audit?limit=0", "").answers(400, invalid_parameter, Some("limit")),
        case("limit=1001", M::GET, "/api/v1/audit?limit=1001", "").answers(
            400,
            invalid_parameter,
            Some("limit"),
        ),
        case("limit=ten", M::GET, "/api/v1/audit?limit=ten", "").answers(
            400,
            invalid_parameter,
            Some("limit"),
        ),
        case("limit=-1", M::GET, "/api/v1/audit?limit=-1", "").answers(400, invalid_parameter, Some("limit")),
        case("since=yesterday", M::GET, "/api/v1/audit?since=yesterday", "").answers(
            400,
            invalid_parameter,
            Some("since"),
        ),
        case("until without a zone", M::GET, "/api/v1/audit?until=2026-01-01T00:00:00", "").answers(
            400,
            invalid_parameter,
            Some("until"),
        ),
        case("cursor=next", M::GET, "/api/v1/audit?cursor=next", "").answers(
            400,
            invalid_parameter,
            Some("cursor"),
        ),
        // Path parameters and routes.
        case("flag key with a space in the path", M::GET, &format!("{FLAGS}/new%20checkout"), "").answers(
            400,
            invalid_parameter,
            Some("flag"),
        ),
        case("flag key with unicode in the path", M::GET, &format!("{FLAGS}/%C3%BCber"), "").answers(
            400,
            invalid_parameter,
            Some("flag"),
        ),
        case("300-character flag key in the path", M::GET, &format!("{FLAGS}/{long_key}"), "").answers(
            400,
            invalid_parameter,
            Some("flag"),
        ),
        case("project key with a space in the path", M::GET, "/api/v1/projects/my%20shop/flags", "").answers(
            400,
            invalid_parameter,
            Some("project"),
        ),
        case(
            "environment key with a slash in the path",
            M::GET,
            "/api/v1/projects/shop/environments/a%2Fb",
            "",
        )
        .answers(400, invalid_parameter, Some("environment")),
        case("segment key with a space in the path", M::DELETE, &format!("{SEGMENTS}/my%20segment"), "")
            .answers(400, invalid_parameter, Some("segment")),
        case("missing flag", M::GET, &format!("{FLAGS}/missing"), "").answers(404, "not_found", None),
        case("unknown route", M::GET, "/api/v1/nothing-here", "").answers(404, "not_found", None),
        case("unknown route under a flag", M::GET, &format!("{FLAG}/history"), "").answers(
            404,
            "not_found",
            None,
        ),
        case("unknown route outside the API", M::GET, "/nothing-here", "").answers(404, "not_found", None),
    ]
    .into_iter()
    .inspect(|c| assert_ne!(c.status, 0, "{} has no expected answer", c.name))
    .collect()
}

/// Sends a case's request, with `token` if any.
async fn send(app: &TestApp, token: Option<&str>, case: &Case) -> reqwest::Response {
    let mut request = app.client.request(case.method.clone(), format!("{}{}", app.address, case.path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = case.content_type {
        request = request.header("Content-Type", content_type);
    }
    if let Some(tag) = case.if_match {
        request = request.header("If-Match", tag);
    }
    if case.method != Method::GET {
        request = request.body(case.body.clone());
    }
    request.send().await.unwrap_or_else(|e| panic!("{}: {e}", case.name))
}

/// Everything a malformed request could have changed.
async fn state(app: &TestApp) -> (u64, Value, Value, Value, Value) {
    let json = |path: &'static str| async move {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        response.json::<Value>().await.unwrap()
    };
    (
        audit_length(app).await,
        json("/api/v1/projects").await,
        json("/api/v1/projects/shop/flags?archived=all").await,
        json("/api/v1/projects/shop/flags/checkout/environments/production").await,
        json("/api/v1/projects/shop/environments/production/segments").await,
    )
}

#[tokio::test]
async fn every_malformed_request_names_its_problem_and_writes_nothing() {
    let app = spawn_app().await;
    app.with_flag().await;
    let segment = app.post(SEGMENTS, &json!({"key": "beta"})).await;
    assert_eq!(segment.status(), 201);
    let before = state(&app).await;
    assert_eq!(before.3["version"], 1);

    let mut failures = Vec::new();
    for case in cases(vexil_config::Settings::default().api.max_body_bytes) {
        let response = send(&app, Some(&app.admin), &case).await;
        let status = response.status().as_u16();
        let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let answer = (status, body["code"].as_str(), body["field"].as_str());
        if answer != (case.status, Some(case.code), case.field)
            || content_type.as_deref() != Some("application/problem+json")
        {
            failures.push(format!(
                "{}: expected {} {} {:?}, got {status} {content_type:?} {body}",
                case.name, case.status, case.code, case.field
            ));
            continue;
        }
        if let Some(field) = case.field {
            let named =
                body["errors"].as_array().is_some_and(|errors| errors.iter().any(|e| e["field"] == field));
            if !named {
                failures.push(format!("{}: `errors` does not name {field}: {body}", case.name));
            }
        }
        if state(&app).await != before {
            failures.push(format!("{}: the request changed something", case.name));
        }
    }
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
    let flags = app.get("/api/v1/projects/shop/flags?archived=all").await.json::<Value>().await.unwrap();
    assert_eq!(flags.as_array().unwrap().len(), 1, "only the fixture's flag exists: {flags}");
}

/// actix extracts a handler's arguments together; a body or query error must still wait for the
/// verdict on the token, or a caller without access learns about the request's shape.
#[tokio::test]
async fn a_caller_without_access_is_refused_before_its_request_is_judged() {
    use Method as M;
    let app = spawn_app().await;
    app.with_flag().await;
    let (viewer, _) = crate::auth::create_token(&app, "viewer", Some(&["shop"])).await;
    let (outsider, _) = crate::auth::create_token(&app, "admin", Some(&["elsewhere"])).await;
    let toggle = format!("{CONFIG}/toggle");
    let cases: Vec<(Option<&str>, Case)> = vec![
        (
            Some("vxm_nobody000000_notatoken"),
            case("unknown token, bad body", M::PUT, CONFIG, r#"{"on": "x"}"#),
        ),
        (None, case("no token, malformed JSON", M::POST, &toggle, "{")),
        (None, case("no token, not JSON", M::POST, &toggle, "on").content_type(Some("text/plain"))),
        (None, case("no token, bad query", M::GET, "/api/v1/audit?limit=ten", "")),
        (Some(&viewer), case("viewer, bad body on an editor route", M::POST, &toggle, r#"{"on": 1}"#)),
        (Some(&outsider), case("other project, bad query", M::GET, &format!("{FLAGS}?archived=maybe"), "")),
    ];
    // The race this guards against is lost about half the time; a few rounds make it show.
    for _ in 0..5 {
        for (token, case) in &cases {
            let response = send(&app, *token, case).await;
            let known = token.is_some_and(|t| t == viewer || t == outsider);
            let (status, code) = if known { (403, "forbidden") } else { (401, "unauthorized") };
            assert_eq!(response.status(), status, "{}", case.name);
            assert_eq!(problem(response).await["code"], code, "{}", case.name);
        }
    }
}

//! The published OpenFeature OFREP providers against the service: PyPI `openfeature-provider-ofrep`,
//! npm `@openfeature/ofrep-provider` (Node) and `@openfeature/ofrep-web-provider` (browser build, run
//! under Node 20), each driven by a small script in `tests/clients/` that prints what the provider
//! resolved.
//!
//! `scripts/clients.sh` installs them and exports `VEXIL_TEST_PYTHON` and `VEXIL_TEST_NODE_CLIENTS`;
//! without those these tests fail (they do not skip): `source scripts/clients.sh` first.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, flags, spawn_app, spawn_app_with};

/// A provider's script may take this long (a cold Node start on a busy 2-core machine is seconds).
const CLIENT_DEADLINE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    Python,
    Node,
    Web,
}

fn required_env(name: &str) -> String {
    std::env::var(name).ok().filter(|value| !value.trim().is_empty()).unwrap_or_else(|| {
        panic!("{name} is not set: `source scripts/clients.sh` installs the OFREP test clients and sets it")
    })
}

/// Runs a provider's script with `spec` and returns what it printed.
async fn run(provider: Provider, spec: Value) -> Value {
    let mut command = match provider {
        Provider::Python => {
            let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/ofrep_client.py");
            let mut command = tokio::process::Command::new(required_env("VEXIL_TEST_PYTHON"));
            command.arg(script);
            command
        }
        Provider::Node | Provider::Web => {
            let script = if provider == Provider::Node { "ofrep_node.mjs" } else { "ofrep_web.mjs" };
            let mut command = tokio::process::Command::new("node");
            command.arg(PathBuf::from(required_env("VEXIL_TEST_NODE_CLIENTS")).join(script));
            command
        }
    };
    command.arg(spec.to_string()).kill_on_drop(true).stdin(std::process::Stdio::null());
    let output = tokio::time::timeout(CLIENT_DEADLINE, command.output())
        .await
        .unwrap_or_else(|_| panic!("{provider:?} client did not finish within {CLIENT_DEADLINE:?}"))
        .unwrap_or_else(|error| panic!("{provider:?} client could not start: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{provider:?} client failed ({}):\n{stdout}\n{stderr}", output.status);
    // Shown with the test's output when it fails (or with --nocapture).
    eprintln!("{provider:?} client printed: {stdout}");
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|error| panic!("{provider:?} client printed no JSON ({error}):\n{stdout}\n{stderr}"))
}

/// The spec for one provider: the service's address with a trailing slash (the JS providers then ask
/// for `//ofrep/...`, as they do in the field), the key, and the steps.
fn spec(app: &TestApp, key: &str, provider: Provider, steps: Value) -> Value {
    let auth = if provider == Provider::Web { "x-api-key" } else { "bearer" };
    json!({"baseUrl": format!("{}/", app.address), "key": key, "auth": auth, "steps": steps})
}

fn flag(key: &str, kind: &str, default: Value) -> Value {
    json!({"key": key, "type": kind, "default": default})
}

/// The results of a step, by flag key.
fn by_key(step: &Value) -> std::collections::HashMap<String, Value> {
    step.as_array()
        .unwrap()
        .iter()
        .map(|result| (result["key"].as_str().unwrap().to_owned(), result.clone()))
        .collect()
}

/// value, variant, reason, errorCode of one result.
fn summary(result: &Value) -> (Value, Value, Value, Value) {
    (
        result["value"].clone(),
        result["variant"].clone(),
        result["reason"].clone(),
        result["errorCode"].clone(),
    )
}

async fn every_kind_of_flag(provider: Provider) {
    let app = spawn_app().await;
    let user_flags = json!([
        flag(flags::BOOLEAN, "boolean", json!(false)),
        flag(flags::STRING, "string", json!("default")),
        flag(flags::INTEGER, "integer", json!(0)),
        flag(flags::FLOAT, "float", json!(0.5)),
        flag(flags::OBJECT, "object", json!({})),
        flag("no-such-flag", "string", json!("fallback")),
        flag(flags::DISABLED, "boolean", json!(true)),
        flag(flags::OFF_NO_VARIATION, "boolean", json!(true)),
        flag(flags::TARGETED, "string", json!("default")),
        flag(flags::ROLLOUT, "boolean", json!(false)),
    ]);
    let anonymous_flags = json!([
        flag(flags::TARGETED, "string", json!("default")),
        flag(flags::ROLLOUT, "boolean", json!(true))
    ]);
    let steps = json!([
        {"context": {"targetingKey": "vip-user", "plan": "pro"}, "flags": user_flags},
        {"context": {}, "flags": anonymous_flags},
    ]);

    let output = run(provider, spec(&app, &app.client_key, provider, steps)).await;

    let user = by_key(&output["steps"][0]);
    let null = Value::Null;
    assert_eq!(
        summary(&user[flags::BOOLEAN]),
        (json!(true), json!("on"), json!("STATIC"), null.clone()),
        "{provider:?}"
    );
    assert_eq!(
        summary(&user[flags::STRING]),
        (json!("green"), json!("green"), json!("STATIC"), null.clone())
    );
    assert_eq!(summary(&user[flags::INTEGER]), (json!(42), json!("0"), json!("STATIC"), null.clone()));
    assert_eq!(user[flags::FLOAT]["value"].as_f64(), Some(3.0));
    assert_eq!(user[flags::FLOAT]["errorCode"], null, "{:?}", user[flags::FLOAT]);
    if provider == Provider::Python {
        assert!(
            user[flags::FLOAT]["value"].is_f64(),
            "Python resolved 3.0 as a float: {}",
            user[flags::FLOAT]
        );
    }
    assert_eq!(
        summary(&user[flags::OBJECT]),
        (json!({"color": "red", "size": 3}), json!("red"), json!("STATIC"), null.clone())
    );
    let missing = &user["no-such-flag"];
    assert_eq!(
        (missing["value"].clone(), missing["errorCode"].clone()),
        (json!("fallback"), json!("FLAG_NOT_FOUND")),
        "{missing}"
    );
    assert_eq!(
        summary(&user[flags::DISABLED]),
        (json!(false), json!("off"), json!("DISABLED"), null.clone())
    );
    assert_eq!(
        summary(&user[flags::TARGETED]),
        (json!("beta"), json!("beta"), json!("TARGETING_MATCH"), null.clone())
    );
    assert_eq!(user[flags::ROLLOUT]["reason"], "SPLIT");
    assert!(user[flags::ROLLOUT]["value"].is_boolean());

    // Off without an off variation: OFREP's "code default". The caller's default either way; the
    // Python and web providers take it as a plain DISABLED result, the Node provider 0.1.x (older
    // than that part of the protocol) as a GENERAL error.
    let off = &user[flags::OFF_NO_VARIATION];
    assert_eq!(off["value"], true, "the caller's default: {off}");
    match provider {
        Provider::Python | Provider::Web => {
            assert_eq!(
                (off["reason"].clone(), off["errorCode"].clone()),
                (json!("DISABLED"), null.clone()),
                "{off}"
            );
        }
        Provider::Node => assert_eq!(off["errorCode"], "GENERAL", "{off}"),
    }

    let anonymous = by_key(&output["steps"][1]);
    assert_eq!(
        summary(&anonymous[flags::TARGETED]),
        (json!("stable"), json!("stable"), json!("DEFAULT"), null.clone())
    );
    let rollout = &anonymous[flags::ROLLOUT];
    assert_eq!(
        (rollout["value"].clone(), rollout["errorCode"].clone()),
        (json!(true), json!("TARGETING_KEY_MISSING")),
        "{rollout}"
    );
}

async fn a_bad_key(provider: Provider) {
    let app = spawn_app().await;
    let steps =
        json!([{"context": {"targetingKey": "u"}, "flags": [flag(flags::BOOLEAN, "boolean", json!(false))]}]);

    let output = run(provider, spec(&app, "vxc_unknown_key", provider, steps)).await;

    let result = &output["steps"][0][0];
    assert_eq!(result["value"], false, "the caller's default: {output}");
    assert_eq!(result["reason"], "ERROR", "{output}");
    let expected = match provider {
        Provider::Python | Provider::Node => "GENERAL",
        // 401 at initialisation is fatal for the web provider.
        Provider::Web => "PROVIDER_FATAL",
    };
    assert_eq!(result["errorCode"], expected, "{output}");
}

async fn rate_limited(provider: Provider) {
    // 1 request a second, burst 2: the third request in a row is refused with Retry-After.
    let app = spawn_app_with(Options { rate_limit_per_second: 1, ..Options::default() }).await;
    let targeted = json!([flag(flags::TARGETED, "string", json!("default"))]);
    let steps = match provider {
        // One request per evaluation.
        Provider::Python | Provider::Node => json!([{"context": {"targetingKey": "vip-user"}, "flags": [
            flag(flags::BOOLEAN, "boolean", json!(false)),
            flag(flags::STRING, "string", json!("default")),
            flag(flags::TARGETED, "string", json!("default")),
            flag(flags::INTEGER, "integer", json!(-1)),
        ]}]),
        // One bulk request per context.
        Provider::Web => json!([
            {"context": {"targetingKey": "vip-user"}, "flags": targeted},
            {"context": {"targetingKey": "someone"}, "flags": targeted},
            {"context": {"targetingKey": "vip-user", "plan": "pro"}, "flags": targeted},
        ]),
    };

    let output = run(provider, spec(&app, &app.server_key, provider, steps)).await;

    match provider {
        Provider::Python | Provider::Node => {
            let results = output["steps"][0].as_array().unwrap();
            assert_eq!(results[0]["value"], true, "{output}");
            assert_eq!(results[1]["value"], "green", "{output}");
            for refused in &results[2..] {
                assert_eq!(refused["errorCode"], "GENERAL", "{output}");
                assert_eq!(refused["reason"], "ERROR", "{output}");
            }
            assert_eq!(results[2]["value"], "default");
            assert_eq!(results[3]["value"], -1);
            let message = results[2]["errorMessage"].as_str().unwrap_or_default().to_ascii_lowercase();
            assert!(
                message.contains("rate") || message.contains("too many"),
                "the provider says why: {message}"
            );
        }
        Provider::Web => {
            let values: Vec<&Value> =
                output["steps"].as_array().unwrap().iter().map(|step| &step[0]["value"]).collect();
            assert_eq!(
                values,
                [&json!("beta"), &json!("stable"), &json!("stable")],
                "the refused refetch keeps the last values: {output}"
            );
            let events: Vec<&str> =
                output["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
            assert!(events.contains(&"PROVIDER_STALE"), "the provider reports stale data: {output}");
        }
    }
}

#[tokio::test]
async fn python_provider_resolves_every_kind_of_flag() {
    every_kind_of_flag(Provider::Python).await;
}

#[tokio::test]
async fn node_provider_resolves_every_kind_of_flag() {
    every_kind_of_flag(Provider::Node).await;
}

#[tokio::test]
async fn web_provider_resolves_every_kind_of_flag() {
    every_kind_of_flag(Provider::Web).await;
}

#[tokio::test]
async fn python_provider_serves_the_default_with_an_error_for_a_bad_key() {
    a_bad_key(Provider::Python).await;
}

#[tokio::test]
async fn node_provider_serves_the_default_with_an_error_for_a_bad_key() {
    a_bad_key(Provider::Node).await;
}

#[tokio::test]
async fn web_provider_serves_the_default_with_an_error_for_a_bad_key() {
    a_bad_key(Provider::Web).await;
}

#[tokio::test]
async fn python_provider_backs_off_when_rate_limited() {
    rate_limited(Provider::Python).await;
}

#[tokio::test]
async fn node_provider_backs_off_when_rate_limited() {
    rate_limited(Provider::Node).await;
}

#[tokio::test]
async fn web_provider_keeps_its_values_when_rate_limited() {
    rate_limited(Provider::Web).await;
}

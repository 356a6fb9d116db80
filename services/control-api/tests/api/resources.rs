//! Each resource's life over HTTP: environments and their keys, segments, flags, tokens, projects,
//! audit paging and request ids.

use std::collections::BTreeSet;

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::*;

const SHOP: &str = "/api/v1/projects/shop";

async fn json_of(response: Response, status: u16) -> Value {
    let actual = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(actual.as_u16(), status, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn etag(response: &Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}

/// Sends `body` with `If-Match` (and the merge-patch content type for PATCH).
async fn send_if_match(
    app: &TestApp,
    method: Method,
    path: &str,
    tag: Option<&str>,
    body: &Value,
) -> Response {
    let content_type =
        if method == Method::PATCH { "application/merge-patch+json" } else { "application/json" };
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(&app.admin)
        .header("Content-Type", content_type)
        .body(body.to_string());
    if let Some(tag) = tag {
        request = request.header("If-Match", tag);
    }
    request.send().await.unwrap()
}

/// The environment's keys, checking the listing shows none of `secrets`.
async fn keys_without(app: &TestApp, environment: &str, secrets: &[&str]) -> Vec<Value> {
    let response = app.get(&format!("{SHOP}/environments/{environment}/keys")).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    for secret in secrets {
        assert!(!text.contains(secret), "the key listing shows a secret: {text}");
    }
    serde_json::from_str::<Value>(&text).unwrap().as_array().unwrap().clone()
}

#[tokio::test]
async fn an_environment_is_created_with_keys_shown_once_renamed_rotated_and_deleted() {
    let app = spawn_app().await;
    app.with_flag().await;

    let created =
        json_of(app.post(&format!("{SHOP}/environments"), &json!({"key": "staging"})).await, 201).await;

    assert_eq!(created["environment"]["key"], "staging");
    assert_eq!(created["environment"]["name"], "staging", "the name defaults to the key");
    let server = created["keys"]["server_key"].as_str().unwrap().to_owned();
    let client = created["keys"]["client_key"].as_str().unwrap().to_owned();
    assert!(server.starts_with("vxs_") && client.starts_with("vxc_"), "{created}");
    let again = app.post(&format!("{SHOP}/environments"), &json!({"key": "staging"})).await;
    assert_eq!(again.status(), 409);
    assert_eq!(problem(again).await["code"], "already_exists");
    let listed = json_of(app.get(&format!("{SHOP}/environments")).await, 200).await;
    let keys: BTreeSet<&str> =
        listed.as_array().unwrap().iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert_eq!(keys, BTreeSet::from(["development", "production", "staging"]));
    let config = json_of(app.get(&format!("{SHOP}/flags/checkout/environments/staging")).await, 200).await;
    assert_eq!(
        (config["on"].as_bool(), config["version"].as_u64()),
        (Some(false), Some(1)),
        "existing flags get a configuration"
    );

    // Keys: ids and prefixes, never the secrets.
    let keys = keys_without(&app, "staging", &[&server, &client]).await;
    assert_eq!(keys.len(), 2);
    for key in &keys {
        let secret = if key["kind"] == "server" { &server } else { &client };
        let prefix = key["prefix"].as_str().unwrap();
        assert!(secret.starts_with(prefix) && prefix.len() < secret.len() / 2, "{prefix} of {secret}");
        assert!(key["expires_at"].is_null());
        assert!(key.get("secret").is_none() && key.get("server_key").is_none(), "{key}");
    }

    let renamed =
        json_of(app.patch(&format!("{SHOP}/environments/staging"), &json!({"name": "Staging"})).await, 200)
            .await;
    assert_eq!(renamed["name"], "Staging");
    assert_eq!(json_of(app.get(&format!("{SHOP}/environments/staging")).await, 200).await["name"], "Staging");

    // Rotation: new secrets once; the old keys get an expiry, the new ones none.
    let rotate = format!("{SHOP}/environments/staging/keys/rotate");
    let rotated = json_of(app.post(&rotate, &json!({"overlap_seconds": 600})).await, 200).await;
    let (new_server, new_client) =
        (rotated["server_key"].as_str().unwrap(), rotated["client_key"].as_str().unwrap());
    assert!(new_server.starts_with("vxs_") && new_client.starts_with("vxc_"));
    assert_ne!((new_server, new_client), (server.as_str(), client.as_str()));
    let keys = keys_without(&app, "staging", &[&server, &client, new_server, new_client]).await;
    assert_eq!(keys.len(), 4);
    let expiring: BTreeSet<&str> =
        keys.iter().filter(|k| !k["expires_at"].is_null()).map(|k| k["prefix"].as_str().unwrap()).collect();
    let old_prefixes: BTreeSet<&str> = keys_prefixes(&keys, &[&server, &client]);
    assert_eq!(expiring, old_prefixes, "exactly the old keys expire: {keys:?}");
    let new_prefixes = keys_prefixes(&keys, &[new_server, new_client]);
    assert_eq!(new_prefixes.len(), 2);
    // An empty POST rotates too, with the default overlap.
    let empty =
        app.client.post(format!("{}{rotate}", app.address)).bearer_auth(&app.admin).send().await.unwrap();
    assert_eq!(empty.status(), 200);

    assert_eq!(app.delete(&format!("{SHOP}/environments/staging")).await.status(), 204);
    let gone = app.get(&format!("{SHOP}/environments/staging")).await;
    assert_eq!(gone.status(), 404);
    assert_eq!(problem(gone).await["code"], "not_found");
    assert_eq!(app.get(&format!("{SHOP}/environments/staging/keys")).await.status(), 404);
    assert_eq!(app.get(&format!("{SHOP}/flags/checkout/environments/staging")).await.status(), 404);
}

/// The prefixes of the listed keys that begin `secrets`.
fn keys_prefixes<'a>(keys: &'a [Value], secrets: &[&str]) -> BTreeSet<&'a str> {
    keys.iter()
        .map(|k| k["prefix"].as_str().unwrap())
        .filter(|prefix| secrets.iter().any(|s| s.starts_with(prefix)))
        .collect()
}

#[tokio::test]
async fn a_segment_is_created_replaced_with_if_match_and_deleted_once_no_flag_uses_it() {
    let app = spawn_app().await;
    app.with_flag().await;
    let segments = format!("{SHOP}/environments/production/segments");
    let segment = format!("{segments}/beta");

    let created = app.post(&segments, &json!({"key": "beta", "included": ["user-1"]})).await;
    assert_eq!(etag(&created), "\"1\"");
    let created = json_of(created, 201).await;
    assert_eq!((created["name"].as_str(), created["version"].as_u64()), (Some("beta"), Some(1)));
    let got = app.get(&segment).await;
    assert_eq!(etag(&got), "\"1\"");
    assert_eq!(json_of(got, 200).await["included"], json!(["user-1"]));
    assert_eq!(
        json_of(app.get(&format!("{SHOP}/environments/development/segments")).await, 200).await,
        json!([])
    );

    let body = json!({"key": "beta", "included": ["user-1", "user-2"]});
    let replaced = send_if_match(&app, Method::PUT, &segment, Some("\"1\""), &body).await;
    assert_eq!(etag(&replaced), "\"2\"");
    assert_eq!(json_of(replaced, 200).await["included"], json!(["user-1", "user-2"]));
    let stale = send_if_match(&app, Method::PUT, &segment, Some("\"1\""), &json!({"key": "beta"})).await;
    assert_eq!(stale.status(), 412);
    assert_eq!(problem(stale).await["code"], "precondition_failed");
    let listed = json_of(app.get(&segments).await, 200).await;
    assert_eq!(
        (listed[0]["version"].as_u64(), &listed[0]["included"]),
        (Some(2), &json!(["user-1", "user-2"]))
    );

    // A flag's rule uses the segment: it cannot go.
    let config = format!("{SHOP}/flags/checkout/environments/production");
    let with_rule = json!({"on": true, "fallthrough": {"variation": 1}, "rules": [{"id": "beta", "serve": {"variation": 0},
        "clauses": [{"attribute": "targetingKey", "op": "segment_match", "values": ["beta"]}]}]});
    assert_eq!(app.put(&config, &with_rule).await.status(), 200);
    let refused = app.delete(&segment).await;
    assert_eq!(refused.status(), 409);
    assert_eq!(problem(refused).await["code"], "conflict");
    assert_eq!(app.get(&segment).await.status(), 200);

    assert_eq!(app.put(&config, &json!({"on": true, "fallthrough": {"variation": 1}})).await.status(), 200);
    assert_eq!(app.delete(&segment).await.status(), 204);
    assert_eq!(app.get(&segment).await.status(), 404);
    let again = app.delete(&segment).await;
    assert_eq!(again.status(), 404);
    assert_eq!(problem(again).await["code"], "not_found");
    let audit = json_of(app.get("/api/v1/audit?environment=production&limit=1000").await, 200).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .filter(|a| a.starts_with("segment."))
        .collect();
    assert_eq!(actions, ["segment.delete", "segment.update", "segment.create"]);
}

#[tokio::test]
async fn a_flag_is_changed_by_merge_patch_and_archived_out_of_the_default_list() {
    let app = spawn_app().await;
    app.with_flag().await;
    let flag = format!("{SHOP}/flags/checkout");
    let patch = |body: Value| {
        let (app, flag) = (&app, flag.clone());
        async move { send_if_match(app, Method::PATCH, &flag, None, &body).await }
    };
    let keys = |list: Value| -> Vec<String> {
        list.as_array().unwrap().iter().map(|f| f["key"].as_str().unwrap().to_owned()).collect()
    };

    let renamed = patch(json!({"name": "New checkout", "description": "the new flow"})).await;
    assert_eq!(etag(&renamed), "\"2\"");
    let renamed = json_of(renamed, 200).await;
    assert_eq!((renamed["name"].as_str(), renamed["version"].as_u64()), (Some("New checkout"), Some(2)));
    let tagged = json_of(patch(json!({"tags": ["checkout", "q3"]})).await, 200).await;
    assert_eq!(tagged["tags"], json!(["checkout", "q3"]));
    assert_eq!(tagged["name"], "New checkout", "fields left out stay as they are");
    assert_eq!(tagged["variations"].as_array().unwrap().len(), 2);
    let cleared = json_of(patch(json!({"description": null})).await, 200).await;
    assert_eq!(cleared["description"], "", "null removes a field");
    assert_eq!(keys(json_of(app.get(&format!("{SHOP}/flags?tag=q3")).await, 200).await), ["checkout"]);

    let archived = json_of(patch(json!({"archived": true})).await, 200).await;
    assert_eq!((archived["archived"].as_bool(), archived["version"].as_u64()), (Some(true), Some(5)));
    assert!(keys(json_of(app.get(&format!("{SHOP}/flags")).await, 200).await).is_empty());
    assert_eq!(keys(json_of(app.get(&format!("{SHOP}/flags?archived=true")).await, 200).await), ["checkout"]);
    assert_eq!(keys(json_of(app.get(&format!("{SHOP}/flags?archived=all")).await, 200).await), ["checkout"]);
    assert_eq!(
        json_of(app.get(&flag).await, 200).await["archived"],
        true,
        "an archived flag can still be read"
    );

    json_of(patch(json!({"archived": false})).await, 200).await;
    assert_eq!(keys(json_of(app.get(&format!("{SHOP}/flags")).await, 200).await), ["checkout"]);
    assert!(keys(json_of(app.get(&format!("{SHOP}/flags?archived=true")).await, 200).await).is_empty());
    let audit = json_of(app.get("/api/v1/audit?flag=checkout").await, 200).await;
    let updates = audit["items"].as_array().unwrap().iter().filter(|r| r["action"] == "flag.update").count();
    assert_eq!(updates, 5);
}

#[tokio::test]
async fn a_token_secret_is_shown_once_and_a_revoked_token_is_refused() {
    let app = spawn_app().await;
    app.with_flag().await;
    let created = json_of(
        app.post("/api/v1/tokens", &json!({"name": "ci", "role": "editor", "projects": ["shop"]})).await,
        201,
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["token"]["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("vxm_"), "{secret}");
    assert_eq!(created["token"]["role"], "editor");
    assert_eq!(created["token"]["projects"], json!(["shop"]));

    let one = app.get(&format!("/api/v1/tokens/{id}")).await;
    assert_eq!(one.status(), 200);
    let one = one.text().await.unwrap();
    assert!(!one.contains(&secret) && !one.contains("secret"), "{one}");
    let all = app.get("/api/v1/tokens").await.text().await.unwrap();
    assert!(all.contains(&id) && !all.contains(&secret), "{all}");
    let as_token = |method: Method, path: &'static str| {
        let (app, secret) = (&app, secret.clone());
        async move { app.request(method, path, Some(&secret), None).await }
    };
    assert_eq!(as_token(Method::GET, "/api/v1/projects/shop/flags").await.status(), 200);

    assert_eq!(app.delete(&format!("/api/v1/tokens/{id}")).await.status(), 204);

    let refused = as_token(Method::GET, "/api/v1/projects/shop/flags").await;
    assert_eq!(refused.status(), 401);
    assert_eq!(problem(refused).await["code"], "unauthorized");
    assert_eq!(app.get(&format!("/api/v1/tokens/{id}")).await.status(), 404);
    assert_eq!(app.delete(&format!("/api/v1/tokens/{id}")).await.status(), 404);
    assert!(!app.get("/api/v1/tokens").await.text().await.unwrap().contains(&id));
}

#[tokio::test]
async fn a_project_is_renamed_and_deleted_with_everything_in_it() {
    let app = spawn_app().await;
    app.with_flag().await;

    let renamed = json_of(app.patch(SHOP, &json!({"name": "Store"})).await, 200).await;
    assert_eq!(renamed["name"], "Store");
    let described = json_of(app.patch(SHOP, &json!({"description": "the web shop"})).await, 200).await;
    assert_eq!(
        (described["name"].as_str(), described["description"].as_str()),
        (Some("Store"), Some("the web shop"))
    );
    assert_eq!(json_of(app.get(SHOP).await, 200).await["name"], "Store");

    assert_eq!(app.delete(SHOP).await.status(), 204);

    let gone = app.get(SHOP).await;
    assert_eq!(gone.status(), 404);
    assert_eq!(problem(gone).await["code"], "not_found");
    assert_eq!(app.get(&format!("{SHOP}/flags/checkout")).await.status(), 404);
    assert_eq!(app.delete(SHOP).await.status(), 404);
    assert_eq!(json_of(app.get("/api/v1/projects").await, 200).await, json!([]));
}

#[tokio::test]
async fn the_audit_log_pages_with_cursors_newest_first() {
    let app = spawn_app().await;
    app.with_flag().await;
    let toggle = format!("{SHOP}/flags/checkout/environments/production/toggle");
    for i in 0..7 {
        assert_eq!(app.post(&toggle, &json!({"on": i % 2 == 0})).await.status(), 200);
    }
    let everything = json_of(app.get("/api/v1/audit?limit=1000").await, 200).await;
    assert!(everything["next_cursor"].is_null());
    let seqs = |only_the_flag: bool| -> Vec<u64> {
        let items = everything["items"].as_array().unwrap().iter();
        items
            .filter(|r| !only_the_flag || r["flag"] == "checkout")
            .map(|r| r["seq"].as_u64().unwrap())
            .collect()
    };
    assert!(seqs(false).len() > 10, "{everything}");
    assert_eq!(seqs(true).len(), 8, "one flag.create and seven toggles");

    for (filter, expected) in [("", seqs(false)), ("&flag=checkout", seqs(true))] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let query = cursor.as_ref().map_or(String::new(), |c| format!("&cursor={c}"));
            let page = json_of(app.get(&format!("/api/v1/audit?limit=3{filter}{query}")).await, 200).await;
            let items = page["items"].as_array().unwrap();
            assert!(items.len() <= 3);
            seen.extend(items.iter().map(|r| r["seq"].as_u64().unwrap()));
            if filter.contains("flag") {
                assert!(items.iter().all(|r| r["flag"] == "checkout"), "{page}");
            }
            pages += 1;
            assert!(pages < 100, "paging does not end");
            match page["next_cursor"].as_str() {
                Some(next) => {
                    assert_eq!(items.len(), 3, "only a full page has a next page");
                    cursor = Some(next.to_owned());
                }
                None => break,
            }
        }
        assert!(seen.windows(2).all(|w| w[0] > w[1]), "newest first, no repeats: {seen:?}");
        assert_eq!(seen, expected, "the pages together are the whole log{filter}");
    }
}

#[tokio::test]
async fn the_request_id_is_echoed_and_recorded_in_the_audit_log() {
    let app = spawn_app().await;
    app.with_flag().await;
    let toggle = format!("{SHOP}/flags/checkout/environments/production/toggle");
    let newest = || async {
        let page = json_of(app.get("/api/v1/audit?limit=1").await, 200).await;
        page["items"][0].clone()
    };

    let chosen = app
        .client
        .post(format!("{}{toggle}", app.address))
        .bearer_auth(&app.admin)
        .header("X-Request-Id", "deploy-4711")
        .json(&json!({"on": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(chosen.status(), 200);
    assert_eq!(chosen.headers()["x-request-id"], "deploy-4711");
    let record = newest().await;
    assert_eq!(
        (record["action"].as_str(), record["request_id"].as_str()),
        (Some("flag.toggle"), Some("deploy-4711"))
    );

    // Without one, the server makes one up, answers with it and records it.
    let made_up = app.post(&toggle, &json!({"on": false})).await;
    assert_eq!(made_up.status(), 200);
    let id = made_up.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(newest().await["request_id"], id.as_str());

    // Errors carry it too; one that is unusable as a header value or too long is replaced.
    let missing = app
        .client
        .get(format!("{}{SHOP}/flags/missing", app.address))
        .bearer_auth(&app.admin)
        .header("X-Request-Id", "trace-1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (missing.status().as_u16(), &missing.headers()["x-request-id"]),
        (404, &"trace-1".parse().unwrap())
    );
    let long = "x".repeat(200);
    let replaced = app
        .client
        .get(format!("{}{SHOP}", app.address))
        .bearer_auth(&app.admin)
        .header("X-Request-Id", &long)
        .send()
        .await
        .unwrap();
    let echoed = replaced.headers()["x-request-id"].to_str().unwrap();
    assert!(echoed != long && echoed.len() == 36, "{echoed}");
}

#[tokio::test]
async fn a_method_a_route_does_not_take_is_405_with_the_methods_it_does() {
    let app = spawn_app().await;

    let response = app.put("/api/v1/projects", &json!({})).await;

    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, POST");
    let body = problem(response).await;
    assert_eq!(body["code"], "method_not_allowed");
    assert_eq!(app.post("/api/v1/audit/verify", &json!({})).await.status(), 405);
    let unknown = app.get("/api/v1/projects/shop/nothing-here").await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(problem(unknown).await["code"], "not_found");
}

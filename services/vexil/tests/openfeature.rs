//! The OpenFeature provider (libs/openfeature) through the `open-feature` crate's client API, backed by
//! a `vexil_sdk::Client` connected to the real `vexil` binary in standalone mode. Flags are created
//! through `/api/v1` as a user would; nothing is mocked.

mod support;

use std::time::Duration;

use open_feature::provider::{FeatureProvider, ProviderStatus};
use open_feature::{
    Client as FeatureClient, EvaluationContext, EvaluationContextFieldValue, EvaluationErrorCode,
    EvaluationReason, FlagMetadataValue, OpenFeature, StructValue, Value as FeatureValue,
};
use reqwest::Method;
use serde_json::{Value, json};
use support::standalone::Standalone;
use vexil_openfeature::{CODE_DEFAULT, VexilProvider};
use vexil_testkit::eventually;

const PROJECT: &str = "openfeature";
/// How long a change may take to reach the SDK, or the SDK to connect after Vexil comes up.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(30);

/// A standalone Vexil with a project, an SDK client on its production environment, and an OpenFeature
/// client whose provider is that SDK client.
struct Fixture {
    vexil: Standalone,
    sdk: vexil_sdk::Client,
    provider: VexilProvider,
    flags: FeatureClient,
    /// Keeps the (non-global) OpenFeature API, and so the provider registration, alive.
    _api: OpenFeature,
}

impl Fixture {
    /// Starts Vexil, creates `flags` (each `(definition, production configuration)`), then connects.
    async fn start(flags: &[(Value, Value)]) -> Fixture {
        let vexil = Standalone::start().await;
        let keys = vexil.create_project(PROJECT).await;
        for (flag, config) in flags {
            create_flag(&vexil, flag.clone(), config.clone()).await;
        }
        let sdk = vexil_sdk::Client::builder(keys.server.as_str())
            .url(&vexil.url())
            .start_timeout(CONVERGE_DEADLINE)
            .start()
            .await
            .expect("starting the SDK client");
        assert_eq!(sdk.state(), vexil_sdk::State::Ready, "the SDK client did not get its data");
        let provider = VexilProvider::new(sdk.clone());
        // A private API instance instead of the global singleton: tests run in parallel.
        let mut api = OpenFeature::default();
        api.set_provider(provider.clone()).await;
        let flags = api.create_client();
        Fixture { vexil, sdk, provider, flags, _api: api }
    }

    async fn close(self) {
        self.sdk.close().await;
    }
}

async fn create_flag(vexil: &Standalone, flag: Value, config: Value) {
    let key = flag["key"].as_str().expect("the flag has a key").to_owned();
    vexil.api_ok(Method::POST, &format!("/projects/{PROJECT}/flags"), Some(flag)).await;
    vexil
        .api_ok(
            Method::PUT,
            &format!("/projects/{PROJECT}/flags/{key}/environments/production"),
            Some(config),
        )
        .await;
}

fn user(key: &str) -> EvaluationContext {
    EvaluationContext::default().with_targeting_key(key)
}

#[tokio::test]
async fn flags_of_every_kind_resolve_with_their_variant_and_reason() {
    let fixture = Fixture::start(&[
        (
            json!({"key": "new-checkout", "kind": "boolean",
                   "variations": [{"value": true, "name": "on"}, {"value": false, "name": "off"}]}),
            json!({"on": true, "off_variation": 1, "fallthrough": {"variation": 0}}),
        ),
        (
            json!({"key": "banner-text", "kind": "string",
                   "variations": [{"value": "Hello", "name": "hello"}, {"value": "Bye"}]}),
            json!({"on": true, "fallthrough": {"variation": 0}}),
        ),
        (
            json!({"key": "max-items", "kind": "number", "variations": [{"value": 42}, {"value": 7}]}),
            json!({"on": true, "fallthrough": {"variation": 0}}),
        ),
        (
            json!({"key": "discount", "kind": "number", "variations": [{"value": 0.15, "name": "fifteen"}]}),
            json!({"on": true, "fallthrough": {"variation": 0}}),
        ),
        (
            json!({"key": "theme", "kind": "json", "variations": [
                {"value": {"color": "teal", "sizes": [1, 2.5], "nested": {"dark": true}, "gone": null},
                 "name": "teal"},
                {"value": [1, 2], "name": "a-list"}]}),
            json!({"on": true, "fallthrough": {"variation": 0},
                   "targets": [{"variation": 1, "values": ["list-user"]}]}),
        ),
    ])
    .await;
    let flags = &fixture.flags;
    let anyone = user("user-1");

    let checkout = flags.get_bool_details("new-checkout", Some(&anyone), None).await.unwrap();
    assert!(checkout.value);
    assert_eq!(checkout.variant.as_deref(), Some("on"));
    assert_eq!(checkout.reason, Some(EvaluationReason::Default));
    assert_eq!(checkout.flag_metadata.values["vexilReason"], FlagMetadataValue::String("FALLTHROUGH".into()));
    assert_eq!(checkout.flag_metadata.values["variation"], FlagMetadataValue::Int(0));

    let banner = flags.get_string_details("banner-text", Some(&anyone), None).await.unwrap();
    assert_eq!(banner.value, "Hello");
    assert_eq!(banner.variant.as_deref(), Some("hello"));

    assert_eq!(flags.get_int_value("max-items", Some(&anyone), None).await, Ok(42));
    assert_eq!(flags.get_float_value("max-items", Some(&anyone), None).await, Ok(42.0));
    let discount = flags.get_float_details("discount", Some(&anyone), None).await.unwrap();
    assert_eq!(discount.value, 0.15);
    assert_eq!(discount.variant.as_deref(), Some("fifteen"));
    let not_an_int = flags.get_int_details("discount", Some(&anyone), None).await.unwrap_err();
    assert_eq!(not_an_int.code, EvaluationErrorCode::TypeMismatch, "{not_an_int:?}");

    let theme = flags.get_struct_details::<StructValue>("theme", Some(&anyone), None).await.unwrap();
    let expected = StructValue::default()
        .with_field("color", "teal")
        .with_field("sizes", FeatureValue::Array(vec![1.into(), 2.5.into()]))
        .with_field("nested", StructValue::default().with_field("dark", true));
    assert_eq!(theme.value, expected, "null members are left out");
    assert_eq!(theme.variant.as_deref(), Some("teal"));
    let list = flags.get_struct_details::<StructValue>("theme", Some(&user("list-user")), None).await;
    assert_eq!(list.unwrap_err().code, EvaluationErrorCode::TypeMismatch, "a JSON array is no structure");

    assert_eq!(fixture.provider.status(), ProviderStatus::Ready);
    assert_eq!(fixture.provider.metadata().name, "Vexil");
    fixture.close().await;
}

#[tokio::test]
async fn a_missing_flag_or_a_type_mismatch_is_an_error_and_the_callers_default_is_served() {
    let fixture = Fixture::start(&[(
        json!({"key": "new-checkout", "kind": "boolean", "variations": [{"value": true}, {"value": false}]}),
        json!({"on": true, "fallthrough": {"variation": 0}}),
    )])
    .await;
    let flags = &fixture.flags;
    let anyone = user("user-1");

    let missing = flags.get_bool_details("no-such-flag", Some(&anyone), None).await.unwrap_err();
    assert_eq!(missing.code, EvaluationErrorCode::FlagNotFound);
    assert!(flags.get_bool_value("no-such-flag", Some(&anyone), None).await.unwrap_or(true));

    let mismatch = flags.get_string_details("new-checkout", Some(&anyone), None).await.unwrap_err();
    assert_eq!(mismatch.code, EvaluationErrorCode::TypeMismatch);
    assert_eq!(flags.get_int_value("new-checkout", Some(&anyone), None).await.unwrap_or(5), 5);
    assert_eq!(
        flags
            .get_string_value("new-checkout", Some(&anyone), None)
            .await
            .unwrap_or_else(|_| "default".into()),
        "default"
    );
    fixture.close().await;
}

#[tokio::test]
async fn a_disabled_flag_serves_its_off_variation_and_a_toggle_reaches_the_provider() {
    let fixture = Fixture::start(&[
        (
            json!({"key": "new-checkout", "kind": "boolean",
                   "variations": [{"value": true, "name": "on"}, {"value": false, "name": "off"}]}),
            json!({"on": false, "off_variation": 1, "fallthrough": {"variation": 0}}),
        ),
        (
            json!({"key": "no-off-variation", "kind": "string", "variations": [{"value": "a"}, {"value": "b"}]}),
            json!({"on": false, "fallthrough": {"variation": 0}}),
        ),
    ])
    .await;
    let flags = &fixture.flags;
    let anyone = user("user-1");

    let off = flags.get_bool_details("new-checkout", Some(&anyone), None).await.unwrap();
    assert!(!off.value);
    assert_eq!(off.reason, Some(EvaluationReason::Disabled));
    assert_eq!(off.variant.as_deref(), Some("off"));

    let code_default = flags.get_string_details("no-off-variation", Some(&anyone), None).await.unwrap_err();
    assert_eq!(code_default.code, EvaluationErrorCode::General(CODE_DEFAULT.into()), "{code_default:?}");
    assert_eq!(
        flags
            .get_string_value("no-off-variation", Some(&anyone), None)
            .await
            .unwrap_or_else(|_| "mine".into()),
        "mine"
    );

    fixture
        .vexil
        .api_ok(
            Method::POST,
            &format!("/projects/{PROJECT}/flags/new-checkout/environments/production/toggle"),
            Some(json!({"on": true})),
        )
        .await;
    let anyone = &anyone;
    let turned_on = eventually(CONVERGE_DEADLINE, || async move {
        flags.get_bool_details("new-checkout", Some(anyone), None).await.is_ok_and(|d| d.value)
    })
    .await;
    assert!(turned_on, "the toggle did not reach the provider in {CONVERGE_DEADLINE:?}");
    let on = flags.get_bool_details("new-checkout", Some(anyone), None).await.unwrap();
    assert_eq!(on.reason, Some(EvaluationReason::Default));
    assert_eq!(on.variant.as_deref(), Some("on"));
    fixture.close().await;
}

#[tokio::test]
async fn targets_and_rules_on_custom_and_nested_fields_are_targeting_matches() {
    let fixture = Fixture::start(&[(
        json!({"key": "new-checkout", "kind": "string", "variations": [
            {"value": "new", "name": "new-flow"}, {"value": "old", "name": "old-flow"},
            {"value": "beta", "name": "beta-flow"}]}),
        json!({"on": true, "off_variation": 1,
               "targets": [{"variation": 0, "values": ["vip"]}],
               "rules": [
                   {"id": "germany", "serve": {"variation": 0},
                    "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}]},
                   {"id": "new-app", "serve": {"variation": 2},
                    "clauses": [{"attribute": "app.version", "op": "semver_gt", "values": ["2.0.0"]},
                                {"attribute": "employee", "op": "in", "values": [true]}]}],
               "fallthrough": {"variation": 1}}),
    )])
    .await;
    let flags = &fixture.flags;

    let vip = flags.get_string_details("new-checkout", Some(&user("vip")), None).await.unwrap();
    assert_eq!((vip.value.as_str(), vip.variant.as_deref()), ("new", Some("new-flow")));
    assert_eq!(vip.reason, Some(EvaluationReason::TargetingMatch));
    assert_eq!(vip.flag_metadata.values["vexilReason"], FlagMetadataValue::String("TARGET_MATCH".into()));

    let german = user("user-1").with_custom_field("country", "DE");
    let by_country = flags.get_string_details("new-checkout", Some(&german), None).await.unwrap();
    assert_eq!(by_country.value, "new");
    assert_eq!(by_country.reason, Some(EvaluationReason::TargetingMatch));
    assert_eq!(by_country.flag_metadata.values["ruleId"], FlagMetadataValue::String("germany".into()));

    let app = StructValue::default().with_field("version", "2.1.0");
    let employee = user("user-2")
        .with_custom_field("app", EvaluationContextFieldValue::new_struct(app))
        .with_custom_field("employee", true);
    let by_app = flags.get_string_details("new-checkout", Some(&employee), None).await.unwrap();
    assert_eq!((by_app.value.as_str(), by_app.variant.as_deref()), ("beta", Some("beta-flow")));
    assert_eq!(by_app.flag_metadata.values["ruleId"], FlagMetadataValue::String("new-app".into()));

    let nobody = flags.get_string_details("new-checkout", Some(&user("user-3")), None).await.unwrap();
    assert_eq!((nobody.value.as_str(), nobody.reason), ("old", Some(EvaluationReason::Default)));
    fixture.close().await;
}

#[tokio::test]
async fn a_value_a_rollout_picked_is_a_split_whether_a_rule_or_the_fallthrough_served_it() {
    let fixture = Fixture::start(&[(
        json!({"key": "new-checkout", "kind": "string", "variations": [
            {"value": "new", "name": "new-flow"}, {"value": "old", "name": "old-flow"},
            {"value": "beta", "name": "beta-flow"}]}),
        json!({"on": true, "off_variation": 1,
               "rules": [
                   {"id": "dutch", "serve": {"rollout": {"weights": [{"variation": 2, "weight": 100000}]}},
                    "clauses": [{"attribute": "country", "op": "in", "values": ["NL"]}]},
                   {"id": "german", "serve": {"variation": 0},
                    "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}]}],
               "fallthrough": {"rollout": {"weights": [
                   {"variation": 0, "weight": 50000}, {"variation": 1, "weight": 50000}]}}}),
    )])
    .await;
    let flags = &fixture.flags;

    let dutch = user("user-1").with_custom_field("country", "NL");
    let by_rule = flags.get_string_details("new-checkout", Some(&dutch), None).await.unwrap();
    assert_eq!((by_rule.value.as_str(), by_rule.reason), ("beta", Some(EvaluationReason::Split)));
    assert_eq!(by_rule.flag_metadata.values["ruleId"], FlagMetadataValue::String("dutch".into()));

    let german = user("user-1").with_custom_field("country", "DE");
    let by_variation = flags.get_string_details("new-checkout", Some(&german), None).await.unwrap();
    assert_eq!(
        (by_variation.value.as_str(), by_variation.reason),
        ("new", Some(EvaluationReason::TargetingMatch))
    );

    let anyone = flags.get_string_details("new-checkout", Some(&user("user-2")), None).await.unwrap();
    assert!(["new", "old"].contains(&anyone.value.as_str()), "{anyone:?}");
    assert_eq!(anyone.reason, Some(EvaluationReason::Split));
    assert_eq!(anyone.flag_metadata.values["vexilReason"], FlagMetadataValue::String("FALLTHROUGH".into()));
    fixture.close().await;
}

#[tokio::test]
async fn a_provider_before_readiness_is_not_ready_and_serves_defaults_until_vexil_is_up() {
    // Vexil with a flag, then stopped: the SDK starts against a port nobody answers on.
    let mut vexil = Standalone::start().await;
    let keys = vexil.create_project(PROJECT).await;
    create_flag(
        &vexil,
        json!({"key": "new-checkout", "kind": "boolean", "variations": [{"value": true}, {"value": false}]}),
        json!({"on": true, "fallthrough": {"variation": 0}}),
    )
    .await;
    vexil.stop();
    let sdk = vexil_sdk::Client::builder(keys.server.as_str())
        .url(&vexil.url())
        .start_timeout(Duration::from_millis(100))
        .start()
        .await
        .expect("a client that cannot connect still starts");
    let provider = VexilProvider::new(sdk.clone()).wait_for_ready(Duration::from_millis(100));
    let mut api = OpenFeature::default();
    api.set_provider(provider.clone()).await;
    let flags = api.create_client();
    let anyone = user("user-1");

    assert_eq!(provider.status(), ProviderStatus::NotReady);
    let not_ready = flags.get_bool_details("new-checkout", Some(&anyone), None).await.unwrap_err();
    assert_eq!(not_ready.code, EvaluationErrorCode::ProviderNotReady);
    assert!(!flags.get_bool_value("new-checkout", Some(&anyone), None).await.unwrap_or(false));

    vexil.start_again().await;
    let watched = &provider;
    let ready =
        eventually(CONVERGE_DEADLINE, || async move { watched.status() == ProviderStatus::Ready }).await;
    assert!(ready, "the provider did not become ready in {CONVERGE_DEADLINE:?} after Vexil came up");
    assert_eq!(flags.get_bool_value("new-checkout", Some(&anyone), None).await, Ok(true));
    sdk.close().await;
}

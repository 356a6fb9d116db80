//! Properties of evaluation over random, valid configurations and contexts.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::{Value, json};
use vexil_eval::{bucket, compile, evaluate, evaluate_all};
use vexil_model::{Context, Reason, Snapshot};

const ATTRIBUTES: [&str; 5] = ["country", "age", "version", "signup", "tags"];

/// A JSON value of any shape a context might carry.
fn any_attribute() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[A-Z]{2}".prop_map(Value::from),
        (-100i64..100).prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        "(0|[1-9])\\.(0|[1-9])(\\.[0-9])?(-rc\\.[0-9])?".prop_map(Value::from),
        (0i64..4_000_000_000_000).prop_map(Value::from),
        Just(json!("2026-03-01T00:00:00Z")),
        Just(Value::Null),
        prop::collection::vec("[A-Z]{2}", 0..3).prop_map(Value::from),
        Just(json!({"nested": {"x": 1}})),
    ]
}

/// A clause whose values its operator can read, so the configuration is valid.
fn any_clause() -> impl Strategy<Value = Value> {
    let attribute = prop::sample::select(ATTRIBUTES.to_vec());
    let op_values = prop_oneof![
        prop::collection::vec(
            prop_oneof!["[A-Z]{2}".prop_map(Value::from), (0i64..100).prop_map(Value::from)],
            1..4
        )
        .prop_map(|v| ("in", Value::from(v))),
        prop::collection::vec("[A-Z]{1,2}", 1..3).prop_map(|v| ("starts_with", Value::from(v))),
        prop::collection::vec("[A-Z]{1,2}", 1..3).prop_map(|v| ("ends_with", Value::from(v))),
        prop::collection::vec("[A-Z]{1,2}", 1..3).prop_map(|v| ("contains", Value::from(v))),
        Just(("matches", json!(["^[A-M]"]))),
        prop::collection::vec(-100i64..100, 1..3).prop_map(|v| ("lt", Value::from(v))),
        prop::collection::vec(-100i64..100, 1..3).prop_map(|v| ("gte", Value::from(v))),
        Just(("before", json!(["2026-01-01T00:00:00Z"]))),
        Just(("after", json!([1_700_000_000_000_i64]))),
        Just(("semver_lt", json!(["2.0.0"]))),
        Just(("semver_eq", json!(["1.2"]))),
        Just(("semver_gt", json!(["0.9.0-beta"]))),
        Just(("segment_match", json!(["seg"]))),
    ];
    (attribute, op_values, any::<bool>())
        .prop_map(|(attribute, (op, values), negate)| json!({"attribute": attribute, "op": op, "values": values, "negate": negate}))
}

fn any_serve(variations: usize) -> impl Strategy<Value = Value> {
    prop_oneof![
        (0..variations).prop_map(|v| json!({"variation": v})),
        (
            prop::collection::vec(0u32..=100_000, variations),
            prop::sample::select(vec!["targetingKey", "country", "age"])
        )
            .prop_map(move |(raw, bucket_by)| {
                // Scale arbitrary weights to sum to exactly 100 000; the last takes the remainder.
                let total: u64 = raw.iter().map(|&w| u64::from(w)).sum::<u64>().max(1);
                let mut weights: Vec<u64> = raw.iter().map(|&w| u64::from(w) * 100_000 / total).collect();
                let assigned: u64 = weights[..variations - 1].iter().sum();
                weights[variations - 1] = 100_000 - assigned;
                let weights: Vec<Value> =
                    weights.iter().enumerate().map(|(v, w)| json!({"variation": v, "weight": w})).collect();
                json!({"rollout": {"bucket_by": bucket_by, "weights": weights}})
            }),
    ]
}

fn any_flag(index: usize) -> impl Strategy<Value = Value> {
    (1usize..4).prop_flat_map(move |variations| {
        let rules = prop::collection::vec((prop::collection::vec(any_clause(), 0..4), any_serve(variations)), 0..5);
        (any::<bool>(), rules, any_serve(variations), prop::option::of(0..variations), any::<bool>()).prop_map(
            move |(on, rules, fallthrough, off_variation, with_prerequisite)| {
                let rules: Vec<Value> = rules
                    .into_iter()
                    .enumerate()
                    .map(|(i, (clauses, serve))| json!({"id": format!("r{i}"), "clauses": clauses, "serve": serve}))
                    .collect();
                // Prerequisites point only to earlier flags, so there is no cycle.
                let prerequisites =
                    if with_prerequisite && index > 0 { json!([{"key": format!("f{}", index - 1), "variation": 0}]) } else { json!([]) };
                json!({"flag": {"key": format!("f{index}"), "kind": "number",
                                "variations": (0..variations).map(|v| json!({"value": v})).collect::<Vec<_>>()},
                       "config": {"on": on, "off_variation": off_variation, "rules": rules, "fallthrough": fallthrough,
                                  "prerequisites": prerequisites, "targets": [{"variation": 0, "values": ["vip"]}]}})
            },
        )
    })
}

fn any_snapshot() -> impl Strategy<Value = Value> {
    (any_flag(0), any_flag(1), any_flag(2), any_flag(3), prop::collection::vec(any_clause(), 0..3)).prop_map(
        |(a, b, c, d, segment_clauses)| {
            let segment_clauses: Vec<Value> =
                segment_clauses.into_iter().filter(|c| c["op"] != "segment_match").collect();
            json!({"revision": 1, "flags": [a, b, c, d], "segments": [{"key": "seg", "included": ["vip"],
                   "rules": [{"id": "s", "clauses": segment_clauses}]}]})
        },
    )
}

fn any_context() -> impl Strategy<Value = Value> {
    (
        prop::option::of(prop_oneof![Just("vip".to_owned()), "[a-z0-9-]{0,12}"]),
        prop::collection::vec((prop::sample::select(ATTRIBUTES.to_vec()), any_attribute()), 0..5),
    )
        .prop_map(|(key, attributes)| {
            let mut ctx = serde_json::Map::new();
            if let Some(key) = key {
                ctx.insert("targetingKey".into(), key.into());
            }
            for (name, value) in attributes {
                ctx.insert(name.into(), value);
            }
            Value::Object(ctx)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_valid_configuration_evaluates_without_panic(snapshot in any_snapshot(), ctx in any_context()) {
        let snapshot: Snapshot = serde_json::from_value(snapshot).expect("the generator makes valid configurations");
        let compiled = compile(snapshot).expect("and valid environments");
        let ctx: Context = serde_json::from_value(ctx).unwrap();
        for (flag, detail) in evaluate_all(&compiled, &ctx, |_| true) {
            match (&detail.reason, detail.variation) {
                (Reason::Error { .. }, variation) => prop_assert_eq!(variation, None),
                (_, Some(v)) => prop_assert!(v < flag.source().flag().variations.len()),
                (reason, None) => {
                    let expected = matches!(reason, Reason::Off | Reason::PrerequisiteFailed { .. });
                    prop_assert!(expected, "no variation with reason {:?}", reason);
                }
            }
            prop_assert_eq!(detail.clone(), evaluate(&compiled, flag.key().as_str(), &ctx), "evaluation is deterministic");
        }
    }

    #[test]
    fn the_same_key_always_lands_in_the_same_bucket(salt in ".{0,20}", key in ".{0,40}") {
        let b = bucket(&salt, &key);
        prop_assert!(b < 100_000);
        prop_assert_eq!(b, bucket(&salt, &key));
    }
}

fn split(salt: &str) -> Snapshot {
    serde_json::from_value(json!({"revision": 1, "flags": [{
        "flag": {"key": "split", "kind": "boolean", "variations": [{"value": true}, {"value": false}]},
        "config": {"on": true, "salt": salt, "fallthrough": {"rollout": {"weights": [
            {"variation": 0, "weight": 25000}, {"variation": 1, "weight": 75000}]}}}}]}))
    .unwrap()
}

fn random_keys(count: usize) -> Vec<String> {
    // A fixed-seed generator keeps the test reproducible; the keys are still arbitrary strings.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = "[a-zA-Z0-9@._-]{1,36}";
    (0..count).map(|_| strategy.new_tree(&mut runner).unwrap().current()).collect()
}

#[test]
fn a_25_75_rollout_over_100_000_keys_lands_within_one_percent() {
    let compiled = compile(split("rollout-salt")).unwrap();
    let keys = random_keys(100_000);
    let first = keys
        .iter()
        .filter(|k| evaluate(&compiled, "split", &Context::new(k.as_str())).variation == Some(0))
        .count();
    let share = first as f64 / keys.len() as f64;
    assert!((0.24..=0.26).contains(&share), "25 % arm got {:.3} %", share * 100.0);
}

#[test]
fn changing_the_salt_reshuffles_the_buckets() {
    let a = compile(split("salt-a")).unwrap();
    let b = compile(split("salt-b")).unwrap();
    let keys = random_keys(10_000);
    let moved = keys
        .iter()
        .filter(|k| {
            let ctx = Context::new(k.as_str());
            evaluate(&a, "split", &ctx).variation != evaluate(&b, "split", &ctx).variation
        })
        .count();
    // Independent 25/75 assignments disagree with probability 2 * 0.25 * 0.75 = 37.5 %.
    let share = moved as f64 / keys.len() as f64;
    assert!((0.34..=0.41).contains(&share), "{:.3} % moved", share * 100.0);
}

//! Evaluation cost. Run with `make bench`; results are recorded in BENCHMARKS.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use vexil_eval::{compile, evaluate, evaluate_all};
use vexil_model::{Context, Snapshot};

/// A flag with five rules (in-list, starts_with, semver, number, segment) and a 25/75 rollout as its
/// fallthrough: the shape a real targeted rollout has.
fn five_rule_flag(key: &str) -> Value {
    json!({"flag": {"key": key, "kind": "boolean", "variations": [{"value": true}, {"value": false}]},
           "config": {"on": true, "off_variation": 1,
             "rules": [
               {"id": "countries", "clauses": [{"attribute": "country", "op": "in", "values": ["DE", "FR", "NL", "BE", "AT", "CH"]}], "serve": {"variation": 0}},
               {"id": "staff", "clauses": [{"attribute": "email", "op": "starts_with", "values": ["admin@", "ops@"]}], "serve": {"variation": 0}},
               {"id": "new-app", "clauses": [{"attribute": "app.version", "op": "semver_gt", "values": ["3.0.0"]}], "serve": {"variation": 0}},
               {"id": "minors", "clauses": [{"attribute": "age", "op": "lt", "values": [18]}], "serve": {"variation": 1}},
               {"id": "beta", "clauses": [{"attribute": "targetingKey", "op": "segment_match", "values": ["beta"]}], "serve": {"variation": 0}}
             ],
             "fallthrough": {"rollout": {"weights": [{"variation": 0, "weight": 25000}, {"variation": 1, "weight": 75000}]}}}})
}

fn snapshot(flags: Vec<Value>) -> Snapshot {
    serde_json::from_value(json!({"revision": 1, "flags": flags,
        "segments": [{"key": "beta", "included": (0..1000).map(|i| format!("beta-{i}")).collect::<Vec<_>>()}]}))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let simple = json!({"flag": {"key": "simple", "kind": "boolean", "variations": [{"value": true}, {"value": false}]},
                        "config": {"on": true, "off_variation": 1, "fallthrough": {"variation": 0}}});
    let one = compile(snapshot(vec![simple, five_rule_flag("five-rules")])).unwrap();
    let two_hundred =
        compile(snapshot((0..200).map(|i| five_rule_flag(&format!("flag-{i}"))).collect())).unwrap();
    // Misses every rule, so every clause runs and the rollout hashes: the most expensive path.
    let ctx: Context =
        serde_json::from_value(json!({"targetingKey": "user-8a6f2c1e-0b9d-4e57-9c3a-5d2f1b7e4a90",
        "country": "US", "email": "someone@example.com", "app": {"version": "2.4.1"}, "age": 42}))
        .unwrap();
    assert!(evaluate(&one, "five-rules", &ctx).in_rollout);

    c.bench_function("evaluate/no_rules", |b| {
        b.iter(|| black_box(evaluate(&one, black_box("simple"), &ctx)))
    });
    c.bench_function("evaluate/five_rules_and_rollout", |b| {
        b.iter(|| black_box(evaluate(&one, black_box("five-rules"), &ctx)))
    });
    c.bench_function("evaluate_all/200_five_rule_flags", |b| {
        b.iter(|| {
            let mut served = 0usize;
            for (_, detail) in evaluate_all(&two_hundred, black_box(&ctx), |_| true) {
                served += detail.variation.unwrap_or(0);
            }
            black_box(served)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! What the SDK adds to an evaluation: `Client::bool_value` against `vexil_eval::evaluate` on the same
//! snapshot (a five-rule flag with a rollout, the shape of a real targeted rollout). Run with
//! `cargo bench -p vexil-sdk`; results are recorded in BENCHMARKS.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use vexil_eval::evaluate;
use vexil_model::{Context, Snapshot};
use vexil_sdk::Client;

/// The same flag as `libs/eval/benches/evaluate.rs`: five rules (in-list, starts_with, semver, number,
/// segment) and a 25/75 rollout as its fallthrough.
fn snapshot() -> Snapshot {
    let flag = json!({"flag": {"key": "five-rules", "kind": "boolean", "variations": [{"value": true}, {"value": false}]},
        "config": {"on": true, "off_variation": 1,
          "rules": [
            {"id": "countries", "clauses": [{"attribute": "country", "op": "in", "values": ["DE", "FR", "NL", "BE", "AT", "CH"]}], "serve": {"variation": 0}},
            {"id": "staff", "clauses": [{"attribute": "email", "op": "starts_with", "values": ["admin@", "ops@"]}], "serve": {"variation": 0}},
            {"id": "new-app", "clauses": [{"attribute": "app.version", "op": "semver_gt", "values": ["3.0.0"]}], "serve": {"variation": 0}},
            {"id": "minors", "clauses": [{"attribute": "age", "op": "lt", "values": [18]}], "serve": {"variation": 1}},
            {"id": "beta", "clauses": [{"attribute": "targetingKey", "op": "segment_match", "values": ["beta"]}], "serve": {"variation": 0}}
          ],
          "fallthrough": {"rollout": {"weights": [{"variation": 0, "weight": 25000}, {"variation": 1, "weight": 75000}]}}}});
    let snapshot: Value = json!({"revision": 1, "flags": [flag],
        "segments": [{"key": "beta", "included": (0..1000).map(|i| format!("beta-{i}")).collect::<Vec<_>>()}]});
    serde_json::from_value(snapshot).expect("a valid snapshot")
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let client = runtime
        .block_on(Client::builder("offline").offline(true).bootstrap_snapshot(snapshot()).start())
        .expect("an offline client");
    // Misses every rule, so every clause runs and the rollout hashes: the most expensive path.
    let ctx: Context =
        serde_json::from_value(json!({"targetingKey": "user-8a6f2c1e-0b9d-4e57-9c3a-5d2f1b7e4a90",
        "country": "US", "email": "someone@example.com", "app": {"version": "2.4.1"}, "age": 42}))
        .expect("a context");

    // The engine evaluates the very snapshot the client serves (the same memory: two compiled copies
    // of the same data differ by ±20 ns here, from where their tables and strings happen to lie).
    client.with_snapshot(|compiled| {
        let compiled = compiled.expect("the bootstrap is served");
        assert!(evaluate(compiled, "five-rules", &ctx).in_rollout);
        assert_eq!(
            client.bool_value("five-rules", &ctx, true),
            evaluate(compiled, "five-rules", &ctx).into_bool(true).value
        );
        let engine = || black_box(evaluate(compiled, black_box("five-rules"), &ctx).into_bool(false).value);
        let sdk = || black_box(client.bool_value(black_box("five-rules"), &ctx, false));

        let mut group = c.benchmark_group("five_rules_and_rollout");
        group.bench_function("engine/evaluate", |b| b.iter(engine));

        group.bench_function("sdk/bool_value", |b| b.iter(sdk));
        // The two above run one after the other, so load from other processes on a shared machine (or a
        // hypervisor's steal time) lands on one and not the other. These two alternate blocks of 1 000
        // evaluations of each — in both orders, as the first block after a switch runs slower — and
        // each reports its own blocks: the same conditions for both, whatever the machine does.
        for (name, measured) in [("interleaved/engine", 0), ("interleaved/sdk", 1)] {
            group.bench_function(name, |b| {
                b.iter_custom(|iterations| {
                    const BLOCK: u64 = 1_000;
                    let time = |f: &dyn Fn() -> bool| {
                        let started = Instant::now();
                        for _ in 0..BLOCK {
                            f();
                        }
                        started.elapsed()
                    };
                    let mut times = [Duration::ZERO; 2];
                    let pairs = iterations.div_ceil(2 * BLOCK);
                    for pair in 0..pairs {
                        let order = if pair % 2 == 0 { [0, 1] } else { [1, 0] };
                        for which in order {
                            times[which] += if which == 0 { time(&engine) } else { time(&sdk) };
                        }
                    }
                    // Per `iterations` evaluations, as criterion expects (blocks round the count up).
                    times[measured].mul_f64(iterations as f64 / (pairs * BLOCK) as f64)
                })
            });
        }
        group.finish();
    });
    c.bench_function("sdk/bool_value/flag_not_found", |b| {
        b.iter(|| black_box(client.bool_value(black_box("missing"), &ctx, false)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Evaluating a compiled flag with rules and a rollout allocates nothing.
//!
//! A counting global allocator sees every allocation of this test binary; the test is alone in its
//! binary and counts only its own thread, so nothing else can disturb the count.
#![allow(unsafe_code)] // implementing GlobalAlloc requires it

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use serde_json::json;
use vexil_eval::{compile, evaluate, evaluate_all};
use vexil_model::{Context, Snapshot};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a const-initialised
// thread-local Cell, which neither allocates nor re-enters the allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn evaluating_a_flag_with_rules_and_a_rollout_allocates_nothing() {
    let snapshot: Snapshot = serde_json::from_value(json!({"revision": 1,
        "segments": [{"key": "beta", "included": ["someone-else"],
                      "rules": [{"id": "staff", "clauses": [{"attribute": "email", "op": "ends_with", "values": ["@vexil.dev"]}]}]}],
        "flags": [{"flag": {"key": "checkout", "kind": "string",
                            "variations": [{"value": "a"}, {"value": "b"}, {"value": "c"}]},
                   "config": {"on": true, "off_variation": 0,
                     "targets": [{"variation": 2, "values": ["vip-1", "vip-2"]}],
                     "rules": [
                       {"id": "countries", "clauses": [{"attribute": "country", "op": "in", "values": ["DE", "FR", "NL"]}], "serve": {"variation": 1}},
                       {"id": "employees", "clauses": [{"attribute": "email", "op": "starts_with", "values": ["admin@"]}], "serve": {"variation": 1}},
                       {"id": "new-app", "clauses": [{"attribute": "app.version", "op": "semver_gt", "values": ["3.0.0"]}], "serve": {"variation": 1}},
                       {"id": "adults", "clauses": [{"attribute": "age", "op": "lt", "values": [18]}], "serve": {"variation": 1}},
                       {"id": "beta", "clauses": [{"attribute": "targetingKey", "op": "segment_match", "values": ["beta"]}], "serve": {"variation": 1}},
                       {"id": "regex", "clauses": [{"attribute": "email", "op": "matches", "values": ["^root@"]}], "serve": {"variation": 1}}
                     ],
                     "fallthrough": {"rollout": {"weights": [{"variation": 0, "weight": 50000}, {"variation": 1, "weight": 50000}]}}}}]}))
    .unwrap();
    let compiled = compile(snapshot).unwrap();
    let ctx: Context = serde_json::from_value(json!({"targetingKey": "user-123", "country": "US",
        "email": "someone@example.com", "app": {"version": "2.4.1"}, "age": 42}))
    .unwrap();

    // The regex engine fills a per-thread cache on first use; that one-off cost is not per evaluation.
    let warm = evaluate(&compiled, "checkout", &ctx);
    assert!(warm.in_rollout, "the context should fall through every rule to the rollout: {warm:?}");

    let count = allocations_during(|| {
        for _ in 0..1_000 {
            let detail = evaluate(&compiled, "checkout", &ctx);
            std::hint::black_box(&detail);
        }
        for (_, detail) in evaluate_all(&compiled, &ctx, |_| true) {
            std::hint::black_box(&detail);
        }
    });
    assert_eq!(count, 0, "evaluation allocated {count} times");
    // The counter works: a deliberate allocation is seen.
    assert_eq!(allocations_during(|| drop(std::hint::black_box(vec![1u8; 16]))), 1);
}

//! `Client::bool_value` allocates nothing (exposures off, the default): the SDK adds an atomic load of
//! the snapshot pointer to the engine's allocation-free evaluation, and nothing else.
//!
//! A counting global allocator sees every allocation of this test binary; the test is alone in its
//! binary and counts only its own thread, so nothing else (the runtime's threads) disturbs the count.
#![allow(unsafe_code)] // implementing GlobalAlloc requires it

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use serde_json::json;
use vexil_model::{Context, Snapshot};
use vexil_sdk::{Client, ErrorKind, Reason};

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
fn bool_value_allocates_nothing() {
    let snapshot: Snapshot = serde_json::from_value(json!({"revision": 1,
        "segments": [{"key": "beta", "included": ["someone-else"]}],
        "flags": [{"flag": {"key": "checkout", "kind": "boolean", "variations": [{"value": true}, {"value": false}]},
                   "config": {"on": true, "off_variation": 1,
                     "targets": [{"variation": 0, "values": ["vip-1"]}],
                     "rules": [
                       {"id": "countries", "clauses": [{"attribute": "country", "op": "in", "values": ["DE", "FR"]}], "serve": {"variation": 0}},
                       {"id": "staff", "clauses": [{"attribute": "email", "op": "starts_with", "values": ["admin@"]}], "serve": {"variation": 0}},
                       {"id": "new-app", "clauses": [{"attribute": "app.version", "op": "semver_gt", "values": ["3.0.0"]}], "serve": {"variation": 0}},
                       {"id": "minors", "clauses": [{"attribute": "age", "op": "lt", "values": [18]}], "serve": {"variation": 1}},
                       {"id": "beta", "clauses": [{"attribute": "targetingKey", "op": "segment_match", "values": ["beta"]}], "serve": {"variation": 0}},
                       {"id": "regex", "clauses": [{"attribute": "email", "op": "matches", "values": ["^root@"]}], "serve": {"variation": 0}}
                     ],
                     "fallthrough": {"rollout": {"weights": [{"variation": 0, "weight": 50000}, {"variation": 1, "weight": 50000}]}}}}]}))
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = runtime
        .block_on(Client::builder("offline").offline(true).bootstrap_snapshot(snapshot).start())
        .unwrap();
    let ctx: Context = serde_json::from_value(json!({"targetingKey": "user-123", "country": "US",
        "email": "someone@example.com", "app": {"version": "2.4.1"}, "age": 42}))
    .unwrap();

    // Warm-up: the regex engine fills a per-thread cache, and arc-swap takes a per-thread slot, on first
    // use; neither is a per-evaluation cost.
    let served = client.bool_detail("checkout", &ctx, false);
    assert_eq!(served.reason, Reason::Fallthrough, "the context should reach the rollout: {served:?}");
    client.bool_value("missing", &ctx, false);

    let count = allocations_during(|| {
        for _ in 0..1_000 {
            std::hint::black_box(client.bool_value(std::hint::black_box("checkout"), &ctx, false));
            std::hint::black_box(client.bool_value(std::hint::black_box("missing"), &ctx, true));
            std::hint::black_box(client.number_value(std::hint::black_box("checkout"), &ctx, 1.0));
        }
    });
    assert_eq!(count, 0, "bool_value allocated {count} times");
    assert_eq!(
        client.bool_detail("missing", &ctx, true).reason,
        Reason::Error { error_kind: ErrorKind::FlagNotFound }
    );
    // The counter works: a deliberate allocation is seen.
    assert_eq!(allocations_during(|| drop(std::hint::black_box(vec![1u8; 16]))), 1);
}

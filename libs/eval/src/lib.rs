//! Vexil's evaluation engine.
//!
//! [`compile`] turns an environment's [`Snapshot`](vexil_model::Snapshot) into a
//! [`CompiledSnapshot`]: regexes built, `in` lists hashed, semvers and dates parsed, prerequisites and
//! segments resolved to indexes, prerequisite cycles rejected. [`evaluate`] and [`evaluate_all`] then
//! read it without parsing and without allocating.
//!
//! Evaluation is pure and synchronous, never panics and never fails: a missing flag, a wrong type or
//! a rollout without a targeting key are reasons on the [`Detail`].
//!
//! ```
//! use serde_json::json;
//! use vexil_eval::{compile, evaluate};
//! use vexil_model::{Context, Reason, Snapshot};
//!
//! let snapshot: Snapshot = serde_json::from_value(json!({"revision": 1, "flags": [{
//!     "flag": {"key": "new-checkout", "kind": "boolean",
//!              "variations": [{"value": true}, {"value": false}]},
//!     "config": {"on": true, "fallthrough": {"variation": 1}, "rules": [
//!         {"id": "germany", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}],
//!          "serve": {"variation": 0}}]}
//! }]})).unwrap();
//! let compiled = compile(snapshot).unwrap();
//!
//! let detail = evaluate(&compiled, "new-checkout", &Context::new("user-1").with("country", "DE"));
//! assert_eq!(detail.value, Some(&json!(true)));
//! assert!(matches!(detail.reason, Reason::RuleMatch { rule_index: 0, .. }));
//! assert!(!evaluate(&compiled, "new-checkout", &Context::new("user-2")).into_bool(true).value);
//! ```
#![deny(missing_docs)]

mod bucket;
mod clause;
mod compile;
mod detail;
mod evaluate;
mod murmur3;

pub use bucket::{BUCKETS, bucket};
pub use compile::{CompileError, CompiledFlag, CompiledSnapshot, compile};
pub use detail::{Detail, TypedDetail};
pub use evaluate::{evaluate, evaluate_all, evaluate_flag};
pub use murmur3::murmur3_x86_32;

#[cfg(test)]
mod tests;

//! Vexil's evaluation service (DESIGN.md §5): the data plane's request/response side.
//!
//! | route | key | what |
//! | --- | --- | --- |
//! | `GET /v1/flags[?prefix=]` | server | the environment's snapshot, `ETag` = revision (+ prefix), `If-None-Match` → 304 |
//! | `POST /v1/evaluate` | server, client | `{"context", "flags"?}` → `{"revision", "flags": {key: {value, variation, variant, reason}}}` |
//! | `POST /ofrep/v1/evaluate/flags/{key}` | server, client | OFREP single-flag evaluation |
//! | `POST /ofrep/v1/evaluate/flags` | server, client | OFREP bulk evaluation, `ETag` over configuration, key and context |
//! | `POST /v1/events` | server, client | a batch of exposures and custom events → the environment's events stream, 202 |
//! | `GET /healthz`, `/readyz`, `/metrics` | — | up; 503 until the cache's first sync; Prometheus text |
//!
//! Client keys see only flags marked `client_side`, never rules, never whether another flag exists. The
//! evaluation routes are rate-limited per key (a token bucket of `dataplane.rate_limit_per_second`,
//! burst two seconds' worth, 0 = off; 429 with `Retry-After` in whole seconds).
//!
//! # OFREP reasons
//!
//! | evaluation | OFREP |
//! | --- | --- |
//! | off | `DISABLED` |
//! | individual target | `TARGETING_MATCH` |
//! | rule | `TARGETING_MATCH`, or `SPLIT` when the rule serves a rollout |
//! | fallthrough | `SPLIT` for a rollout; `STATIC` when the flag has no targets, rules or prerequisites; else `DEFAULT` |
//! | prerequisite failed | `DEFAULT` (the off variation) |
//! | flag missing, archived, or hidden from a client key | 404 `FLAG_NOT_FOUND` |
//! | rollout with nothing to bucket by | 400 `TARGETING_KEY_MISSING` |
//!
//! A flag that is off (or fails a prerequisite) **without an off variation** answers 200 with the reason
//! and `"variant": null` but **no `value`**: OFREP's "code default" result (a success without a value;
//! the provider serves the caller's default). Tried against the published providers (the test clients
//! in `tests/clients/`, also against a stub answering each alternative):
//!
//! | answer | Python 0.3.0 | web 0.4.3 | Node 0.1.3 |
//! | --- | --- | --- | --- |
//! | **no `value`, `variant: null`** (chosen) | default, `DISABLED` | default, `DISABLED` | default, `GENERAL` error |
//! | no `value`, no `variant` | default, `GENERAL` (`KeyError`) | default, `DISABLED` | default, `GENERAL` |
//! | `value: null` | `TYPE_MISMATCH` | `TYPE_MISMATCH`; `null` for object flags | `TYPE_MISMATCH`; `null` for object flags |
//! | 400 `GENERAL` | default, `GENERAL` | default, `GENERAL` | default, `GENERAL` |
//!
//! Every client serves the caller's default with the chosen answer, and two of three report it as the
//! plain `DISABLED` result it is; the Node provider predates code-default results and calls any success
//! without `value` malformed. `/v1/evaluate` says the same with `value`, `variation` and `variant` left
//! out and reason `OFF`.
//!
//! # Embedding
//!
//! [`Application::build`] runs the service on its own port. Another binary (standalone mode) registers
//! `web::Data<Cache>` and `web::Data<EvaluationState>` and calls [`configure`] (or [`configure_routes`]
//! without health and metrics), and wraps its app in `from_fn(normalize_path)` and
//! `from_fn(vexil_dataplane_http::cors)`.

pub mod body;
pub mod etag;
pub mod events;
pub mod extract;
pub mod rate_limit;
pub mod render;
pub mod routes;
pub mod startup;
pub mod state;
pub mod views;

pub use startup::{Application, configure, configure_routes, normalize_path, not_found, observe, openapi};
pub use state::{EvaluationState, Metrics};

//! Vexil's streaming service (DESIGN.md §5): Server-Sent Events from a data-plane replica's in-memory
//! [`Cache`](vexil_dataplane::Cache) to SDKs.
//!
//! Two ways to serve the same routes:
//!
//! * [`Application`] (the `vexil streaming` deployment): [`Application::build`] binds a small HTTP/1.1
//!   server of this crate's own, on Tokio, and `run_until_stopped` serves it until SIGTERM. It exists
//!   for memory (see "Memory" below): it serves the streams, their CORS preflights, `/healthz`,
//!   `/readyz`, `/metrics`, and a problem+json `404`/`405`/`400`/`431` for anything else.
//! * [`configure`] and [`configure_probes`] add the routes to any actix app: standalone mode, which
//!   serves every role on one port.
//!
//! Each route is one server-agnostic function (the request's query and headers in; a stream of SSE
//! frames or an error out, see [`routes`]) under two thin adapters, so both paths send the same
//! bytes (`tests/api/paths.rs` checks it, and the tests in `both_paths!` run on each). Something else
//! fills the cache (`vexil_dataplane::BusSync`, or relay mode); this crate only reads it.
//!
//! # Wire format
//!
//! Every stream is `200`, `Content-Type: text/event-stream`, `Cache-Control: no-cache`,
//! `X-Accel-Buffering: no`, never compressed (`Content-Encoding: identity`, so that an actix
//! `Compress` middleware leaves it alone). It starts with `retry: <retry_ms>` (settings:
//! `dataplane.retry_ms`) and carries a comment `: ping` every `dataplane.heartbeat_seconds`.
//! Every event has `event:`, `id:` and one or more `data:` lines (data is JSON; today always on one
//! line). The key comes from `Authorization: Bearer <key>`, `X-API-Key: <key>` or `?key=<key>`
//! (EventSource cannot send headers).
//!
//! Errors are `application/problem+json` (`vexil_http::error`), never a stream: no or an unknown key →
//! `401`; a client key on `/v1/stream` → `403`; a malformed parameter → `400`. A replica that has no
//! data yet or is shutting down answers `200` with only the `retry:` line and ends the stream, so that
//! clients (browsers' EventSource gives up for good on any non-200) come back after `retry_ms`.
//!
//! ## `GET /v1/stream` (server keys): flag configurations
//!
//! ```text
//! retry: 2000
//!
//! event: hydrate
//! id: 41
//! data: {"revision":41,"flags":[{"flag":{..FlagSpec..},"config":{..FlagConfigSpec..}}],"segments":[{..Segment..}]}
//!
//! event: patch
//! id: 42
//! data: {"kind":"flag","key":"new-checkout","flag":{..FlagSpec..},"config":{..FlagConfigSpec..}}
//!
//! event: patch
//! id: 43
//! data: {"kind":"segment","key":"beta-testers","segment":{..Segment..}}
//!
//! event: delete
//! id: 45
//! data: {"kind":"flag","key":"old-banner"}
//!
//! : ping
//! ```
//!
//! * `id` is always the environment's revision after the event. `hydrate`'s data is exactly a
//!   `vexil_model::Snapshot` (the flags' JSON is the management API's). `patch` and `delete` carry
//!   `"kind": "flag" | "segment"` and the item's `key`; a flag patch carries the whole flag and its
//!   configuration in this environment, a segment patch the whole segment.
//! * **Ids are increasing but not contiguous.** Changes a stream does not send still take a revision:
//!   SDK-key changes (never sent to anyone) and, with `?prefix=`, changes to flags outside the prefix.
//!   Above, 44 was such a change. A client's state after event `n` is the environment at revision `n`
//!   as far as the client can see, so resuming from `n` is exact.
//! * **A `hydrate` replaces everything** the client holds, whatever its id — it may come at any time
//!   (after a re-sync of the replica, or when the client read too slowly and the replica dropped its
//!   backlog), and its id may even be *lower* than the last one the client saw (it resumed on a
//!   replica that is slightly behind). Patches and deletes apply in order; an SDK may ignore an event
//!   whose id is not above its current revision.
//! * **Resuming**: send the last id as `Last-Event-ID` (EventSource does it by itself; `?lastEventId=`
//!   is accepted too, the header wins). When this replica still holds every event after it (a ring
//!   of the last 1024 per environment), it sends only those (possibly none) and no `hydrate`;
//!   otherwise — too old, beyond this replica's revision, or not a number — it sends a `hydrate`.
//! * `?prefix=<p>` keeps only flags whose key starts with `p`, and the prerequisites they reach (an SDK
//!   could not evaluate them without), in the `hydrate` and in the changes; segments are always sent.
//!   When a change makes the prefix's flags reach a prerequisite the client does not have yet, the
//!   stream sends a fresh `hydrate` instead of the `patch`.
//! * The stream ends (cleanly) when the replica shuts down (reconnect, with `Last-Event-ID`), when the
//!   environment is deleted, or when the key stops being valid (rotated out or expired; the reconnect
//!   then gets `401`). After a clean end, reconnect after `retry` ms.
//!
//! ## `GET /v1/client/stream?key=<key>&context=<base64url JSON>`: evaluated values
//!
//! For client keys (server keys are accepted too); only flags marked `client_side`, never rules.
//! `context` is base64url (RFC 4648 §5, padding optional) of the OpenFeature context JSON
//! (`{"targetingKey":"user-1","country":"DE"}`); absent means an empty context; malformed is `400`.
//!
//! ```text
//! retry: 2000
//!
//! event: values
//! id: 41
//! data: {"revision":41,"full":true,"flags":{"new-checkout":{"value":true,"variation":0,"variant":"on","reason":"RULE_MATCH"},"banner":{"reason":"ERROR","error_kind":"TARGETING_KEY_MISSING"}}}
//!
//! event: values
//! id: 42
//! data: {"revision":42,"full":false,"flags":{"new-checkout":{"value":false,"variation":1,"variant":"off","reason":"OFF"}}}
//!
//! event: delete
//! id: 45
//! data: {"kind":"flag","key":"banner"}
//! ```
//!
//! * The first `values` of every connection has `"full": true`: the complete set, replacing what the
//!   client had (flags absent from it are gone). Later ones have `"full": false` and only the flags
//!   whose `value` or `variation` changed *for this context* (a change of reason alone is not sent).
//!   `delete` names a flag the client may no longer see (deleted, archived, or no longer client-side).
//! * Per flag: `value` and `variation` (absent when the caller's default applies), `variant` (the
//!   variation's name, or its index as a string), `reason` (`OFF`, `TARGET_MATCH`, `RULE_MATCH`,
//!   `FALLTHROUGH`, `PREREQUISITE_FAILED`, `ERROR`) and, for `ERROR`, `error_kind`. No rule ids and no
//!   prerequisite keys.
//! * `Last-Event-ID` is not needed: every connection starts with a full `values`.
//!
//! ## `GET /ofrep/v1/stream?key=<key>`: OFREP change notifications
//!
//! ```text
//! retry: 2000
//!
//! event: message
//! id: 42
//! data: {"type":"refetchEvaluation","etag":"\"42\"","lastModified":1767225600}
//! ```
//!
//! One `message` per change to a flag or segment of the key's environment (client or server keys):
//! `etag` is the environment's revision as an entity-tag, `lastModified` the change's commit time in
//! Unix seconds. Nothing is sent at connect (`@openfeature/ofrep-web-provider` has just evaluated, and
//! only listens for `message`); on a reconnect whose `Last-Event-ID` is not the current revision, one
//! `message` is sent at once for what was missed.
//!
//! # Shutdown
//!
//! [`StreamingState::shutdown`] (SIGTERM, in [`Application::run_until_stopped`]) ends every stream
//! cleanly and makes new stream requests answer with the `retry:` hint only. A process embedding
//! [`configure`] must call it before draining its HTTP server.
//!
//! # Memory
//!
//! Target: an idle stream in at most 4 kB of resident memory, at ten thousand streams per replica.
//!
//! A stream has no task and no timer of its own beyond its connection's: its body is a
//! `futures::stream::unfold` over a small state (the broadcast receiver of the cache's change feed,
//! a receiver of the shared heartbeat and shutdown signal, the key, and the stream's position; under
//! 400 bytes). A hydrate is serialised once per environment revision, and a change once per event for
//! every unfiltered flag stream, and shared by every stream that sends it. A client stream holds one
//! pointer to the environment state it last evaluated (the cache's current one, until the next
//! change).
//!
//! The connection around it is what used to cost: actix-http's HTTP/1 dispatcher gives every
//! connection an 8 KiB read buffer and an 8 KiB write buffer for its whole life, and neither size can
//! be configured away. [`Application`] therefore serves on its own server (`http1.rs`): one task per
//! connection; the request head is read into a 1 KiB buffer (growing to at most 16 KiB) that is dropped
//! once the stream starts; frames go from their shared `Bytes` straight to the socket (a vectored
//! write, no per-connection write buffer); the head timer, the read buffer and any timer for a write
//! that has to wait live in boxed futures that exist only while needed; and while the stream is idle
//! an 8-byte read inside the connection's future notices the client going away (so a disconnected
//! client's stream ends at once, not at the next heartbeat). On actix ([`configure`]) the body is
//! handed over in 4 KiB pieces and the server should use `h1_write_buffer_size(4096)`, so that at
//! least a large hydrate does not grow the write buffer for the life of the connection.
//!
//! `examples/idle_streams.rs` measures it (server process only, 10,000 idle `/v1/stream`s with a 50-flag
//! hydrate; BENCHMARKS.md "Streaming: memory per idle stream"): **1.8 KiB** per stream on
//! [`Application`], 14.5 KiB on actix; an idle keep-alive connection costs 3.0 KiB on [`Application`]
//! (its read buffer is kept between requests) and 7–10 KiB on actix.

mod actix;
pub mod context;
mod fanout;
mod frames;
mod http1;
mod routes;
mod startup;
mod state;
mod stream;

pub use actix::{configure, configure_probes};
pub use startup::Application;
pub use state::{Metrics, StreamingState};

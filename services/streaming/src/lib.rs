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
//! frames or an error out: `routes/`) under two thin adapters (`actix.rs`, `http1/`), so both paths send
//! the same bytes (`tests/api/paths.rs` checks it, and the tests in `both_paths!` run on each). Something else
//! fills the cache (`vexil_dataplane::BusSync`, or relay mode); this crate only reads it.
//!
//! # Wire format
//!
//! The three streams are specified, event by event, in `docs/protocol.md`, and their events are
//! `vexil_protocol`'s types: `GET /v1/stream` (server keys: `hydrate`, then `patch` / `delete` per change,
//! `id` = the environment's revision, `Last-Event-ID` replay, `?prefix=`), `GET /v1/client/stream`
//! (values evaluated for one context: `values`, `delete`) and `GET /ofrep/v1/stream` (OFREP
//! `refetchEvaluation` notifications). Every stream starts with `retry: <retry_ms>` and carries a
//! `: ping` every `dataplane.heartbeat_seconds`; errors are problem+json, never a stream; a replica
//! that has no data yet, or is shutting down, answers `200` with only the `retry:` line. What this crate
//! adds to the contract is *how* the frames are made (`frames.rs`): a `hydrate` is serialised once per
//! environment revision and a change's `patch` once per event, shared by every unfiltered stream, and
//! the `patch` is spliced from the change event's payload, proven byte-equal to the typed event.
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
//! be configured away. [`Application`] therefore serves on its own server (`http1/`): one task per
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

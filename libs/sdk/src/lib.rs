//! Vexil's Rust server SDK: keeps one environment's flags in memory, in sync with the data plane, and
//! evaluates them locally — an evaluation never waits on the network and never fails.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use vexil_sdk::{Client, Context, State};
//!
//! # async fn run() -> Result<(), vexil_sdk::Error> {
//! // A server key of the environment (never ship it to browsers or apps).
//! let client = Client::builder(std::env::var("VEXIL_SERVER_KEY").unwrap_or_default())
//!     .url("http://127.0.0.1:8080") // standalone; in production stream_url / polling_url / events_url
//!     .start_timeout(Duration::from_secs(5))
//!     .start()
//!     .await?; // Err only for bad configuration: a start without the network still returns a client
//! if client.state() != State::Ready {
//!     eprintln!("serving defaults (or a bootstrap) for now: {:?}", client.state());
//! }
//!
//! let user = Context::new("user-42").with("country", "DE").with("plan", "pro");
//! if client.bool_value("new-checkout", &user, false) {
//!     // the new checkout
//! }
//! let detail = client.string_detail("banner-text", &user, "Welcome");
//! println!("{} (variation {:?}, because {:?})", detail.value, detail.variation, detail.reason);
//!
//! // Know when flags change (e.g. to re-render), and what the sync is doing.
//! let mut changes = client.subscribe_changes();
//! tokio::spawn(async move {
//!     while let Ok(change) = changes.recv().await {
//!         println!("revision {}: {:?} changed", change.revision, change.keys);
//!     }
//! });
//!
//! client.track("checkout-completed", &user, Some(99.90));
//! client.close().await; // sends the queued events, stops the background tasks
//! # Ok(())
//! # }
//! ```
//!
//! # How it stays in sync
//!
//! [`ClientBuilder::start`] opens the server stream (`GET /v1/stream`, DESIGN.md §5) and waits for its
//! `hydrate`, at most [`start_timeout`](ClientBuilder::start_timeout) (5 s). If the stream cannot be had
//! it fetches `GET /v1/flags` instead. It returns `Err` only for bad configuration; on a timeout it
//! returns a client that keeps trying in the background.
//!
//! In the background:
//!
//! * **Streaming**: `patch` and `delete` events are applied as they come (an event whose id is not above
//!   the current revision is skipped), a `hydrate` replaces everything. A stream that ends, fails or is
//!   silent for [`dead_stream_after`](ClientBuilder::dead_stream_after) (45 s: three of the service's
//!   15 s heartbeats) is reconnected after an exponential backoff with jitter (0.5 s doubling to 30 s,
//!   each delay drawn from the upper half; reset by a connection that delivered an event), with
//!   `Last-Event-ID` so that the replica replays exactly what was missed.
//! * **Polling fallback**: while the stream is down, `GET /v1/flags` with `If-None-Match` — at once when
//!   a live stream is lost, then every [`poll_interval`](ClientBuilder::poll_interval) (30 s) — until the
//!   stream is back. With [`streaming(false)`](ClientBuilder::streaming) polling is all it does.
//! * **Safety net**: while streaming, an ETag poll every [`refresh_interval`](ClientBuilder::refresh_interval)
//!   (5 min) catches anything a stream could have missed silently (it costs a `304`).
//! * A snapshot is compiled once when it arrives and swapped in atomically (`arc-swap`). Evaluations
//!   read it without locks, through a small per-thread cache checked against a generation number (one
//!   plain atomic load while nothing changes, where an `arc-swap` load costs two atomic
//!   read-modify-writes, ~20 ns on a small VM); the price is that a thread holds on to the last
//!   snapshot it evaluated until its next evaluation. Flags that cannot be evaluated here — a prerequisite outside
//!   the [`prefix`](ClientBuilder::prefix), or a flag this SDK version cannot read — evaluate as
//!   `ERROR MALFORMED_FLAG`; the others are unaffected.
//!
//! # State and age of the data
//!
//! [`Client::state`] (and [`Client::watch_state`] to be told of changes):
//!
//! | state | when |
//! | --- | --- |
//! | [`Initializing`](State::Initializing) | no data yet: every evaluation serves the caller's default with `ERROR NOT_READY` |
//! | [`Ready`](State::Ready) | the stream is connected, or a sync confirmed the data within [`stale_after`](ClientBuilder::stale_after) (60 s) |
//! | [`Stale`](State::Stale) | serving data no sync has confirmed for longer than that (stream down and polling failing), or only a bootstrap so far |
//! | [`Offline`](State::Offline) | [`offline`](ClientBuilder::offline) mode |
//!
//! [`Client::data_age`] is the time since the data was last confirmed current (a stream event or
//! heartbeat, a `200` or `304` poll; for a bootstrap file, its modification time).
//!
//! # Bootstrap and offline mode
//!
//! [`bootstrap_file`](ClientBuilder::bootstrap_file) takes a snapshot — the JSON of `GET /v1/flags`, of a
//! `hydrate`, or a relay's state file — and serves it at once: `start` then returns without waiting,
//! `Stale` until the first sync replaces it. [`offline(true)`](ClientBuilder::offline) never touches the
//! network: it serves the bootstrap (or, without one, the caller's defaults with `ERROR NOT_READY`),
//! and drops events.
//!
//! # Events
//!
//! [`Client::track`] queues a custom event (a conversion, a metric) and returns at once: the queue is
//! bounded ([`event_capacity`](ClientBuilder::event_capacity), 10 000), an event that finds it full is
//! dropped and counted ([`Client::dropped_events`]). A background task sends batches to
//! `POST /v1/events` every [`flush_interval`](ClientBuilder::flush_interval) (5 s), retrying server
//! errors; [`Client::close`] sends what is left.
//!
//! **Exposures are opt-in** ([`exposures(true)`](ClientBuilder::exposures)). An exposure event records
//! which variation a context was served, for experiments; recording one means copying the context and
//! the key into an event, which allocates — and evaluation is otherwise allocation-free
//! ([`Client::bool_value`] costs the engine's evaluation plus a few nanoseconds, `BENCHMARKS.md`).
//! So evaluations record nothing unless asked to; with exposures on, every `*_value` and `*_detail` call
//! that serves a flag's variation queues one (through the same bounded, never-blocking queue).
//!
//! # The sync, for other targets
//!
//! [`sync`] is the client side of the data-plane protocol (`docs/protocol.md`) on its own: [`sync::run`]
//! follows a data plane as described above and hands every snapshot and change to a [`sync::Target`].
//! The [`Client`] is one target; relay mode (`vexil-dataplane`'s `UpstreamSync`) is another, so a relay
//! follows its upstream with exactly this code.
//!
//! # Transport
//!
//! Plain `http://` only in this build (like relay mode): the SDK has no TLS stack, to stay lean. Reach
//! an `https://` data plane through a local TLS-terminating proxy or sidecar.
#![deny(missing_docs)]

mod backoff;
mod builder;
mod client;
mod error;
mod events;
mod health;
mod shared;
mod store;
pub mod sync;

pub use builder::ClientBuilder;
pub use client::{Client, EvaluationDetail};
pub use error::{Error, Result, SnapshotError};
pub use health::State;
pub use shared::FlagChange;
pub use sync::SyncEvent;
pub use vexil_model::{Context, ErrorKind, Reason};

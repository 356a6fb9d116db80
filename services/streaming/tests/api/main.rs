//! vexil-streaming over HTTP: a real control-plane store (PostgreSQL) feeds a replica's cache, the
//! service streams it, and real clients read it — reqwest here, the npm `eventsource` package in
//! `eventsource.rs` (`source scripts/sse-clients.sh` first). Set `TEST_LOG=1` to see the logs.
//!
//! The service is `Application` (the streaming deployment's own HTTP/1.1 server) unless a test says
//! otherwise; tests in `both_paths!` also run on the actix routes standalone mode embeds, `paths.rs`
//! checks that both send the same bytes, and `http1.rs` covers what only the own server does.

mod client;
mod eventsource;
mod helpers;
mod http1;
mod lifecycle;
mod ofrep;
mod paths;
mod server;

//! vexil-streaming over HTTP: a real control-plane store (PostgreSQL) feeds a replica's cache, the
//! service streams it, and real clients read it — reqwest here, the npm `eventsource` package in
//! `eventsource.rs` (`source scripts/sse-clients.sh` first). Set `TEST_LOG=1` to see the logs.

mod client;
mod eventsource;
mod helpers;
mod lifecycle;
mod ofrep;
mod server;

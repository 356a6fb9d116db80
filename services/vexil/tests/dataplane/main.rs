//! The data plane kept in sync with real parts: `BusSync` from a real control-plane store and change
//! relay, over the in-process bus (`sync.rs`) and a real Redis that goes down (`redis.rs`); relay mode
//! following a real streaming service over HTTP (`upstream.rs`). Set `TEST_LOG=1` to see the logs.

mod helpers;
mod redis;
mod sync;
mod upstream;

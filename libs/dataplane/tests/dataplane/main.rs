//! vexil-dataplane: the cache on its own (`cache.rs`), and kept in sync by `BusSync` from a real
//! control-plane store and relay, over the in-process bus (`sync.rs`) and a real Redis that goes down
//! (`redis.rs`). Set `TEST_LOG=1` to see the sync's logs.

mod cache;
mod helpers;
mod redis;
mod sync;
mod upstream;

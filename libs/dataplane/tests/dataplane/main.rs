//! vexil-dataplane: the cache on its own — revision discipline, snapshots, keys, the replay ring and
//! the change feed. `BusSync` and relay mode, which need a control plane, a bus and a server, are tested
//! with the real ones in `services/vexil/tests/dataplane`.

mod cache;
mod helpers;

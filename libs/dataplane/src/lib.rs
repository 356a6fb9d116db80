//! The in-memory state every data-plane replica (streaming, evaluation) serves from (DESIGN.md §1, §4).
//!
//! * [`Cache`] holds every environment's [`EnvironmentState`] — its revision, the source
//!   [`Snapshot`](vexil_model::Snapshot), the [`CompiledSnapshot`](vexil_eval::CompiledSnapshot) to
//!   evaluate against, and its SDK keys. Each environment's state sits behind an atomic pointer and is
//!   replaced whole on every change, so readers never block and an `Arc<EnvironmentState>` is a
//!   consistent view for as long as it is held.
//! * [`Cache::load`] installs a full snapshot (warm start, re-sync) when it is newer than what the cache
//!   has; [`Cache::apply`] applies one change event under the revision discipline: only `have + 1` is
//!   applied, older revisions are ignored, and a newer one is a [`Gap`](ApplyOutcome::Gap) the caller
//!   re-syncs.
//! * [`Cache::authenticate`] checks an SDK key in O(1) (its id finds the environment) and in constant
//!   time (SHA-256 of the secret), honouring rotation expiry.
//! * [`Cache::events_since`] replays an environment's recent events from a ring buffer (for
//!   `Last-Event-ID`), and [`Cache::subscribe`] is the feed of [`Change`]s that streams follow.
//! * [`BusSync`] fills the cache from the bus and keeps it current, falling back to the database.
//! * [`UpstreamSync`] (relay mode) instead keeps one environment current from an upstream Vexil, as a
//!   server SDK does (it runs the SDK's sync with this cache as the target), persisting it to a state
//!   file so that a restart survives an upstream outage.
//! * [`SnapshotSource`] is how a replica reaches the control plane's database without linking a
//!   database driver: the binary that runs it supplies one.
//!
//! # Serving a stream without missing a change
//!
//! Subscribe to the feed *first*, then read the state (or the ring), then follow the feed, skipping
//! revisions already sent. A change is visible through [`Cache::environment`] and
//! [`Cache::events_since`] before it is sent on the feed, so every change is seen in one or the other:
//!
//! 1. `let mut feed = cache.subscribe();`
//! 2. Reconnect with `Last-Event-ID: r`: `cache.events_since(env, r)` — `Some(events)`: send them;
//!    `None`: send a fresh `hydrate` of `cache.environment(env)`. New connection: the `hydrate`.
//! 3. For each change of this environment on the feed: [`Change::Applied`] with a revision above the last
//!    sent → send the event; [`Change::Resynced`] → a fresh `hydrate`; [`Change::Removed`] → end the
//!    stream. `RecvError::Lagged` → a fresh `hydrate` too. After a resync or an SDK-key event, check the
//!    stream's key again ([`Cache::authenticate`]): it may have expired or gone.
//!
//! A client stream (evaluated values) can simply re-evaluate against [`Cache::environment`] on every
//! change of its environment and send what differs.
//!
//! ```
//! use serde_json::json;
//! use vexil_dataplane::{ApplyOutcome, Cache, LoadOutcome};
//! use vexil_model::Context;
//! use vexil_proto::{ChangeEvent, ChangeKind, EnvironmentSnapshot, ItemKind};
//!
//! let flag = |on: bool| json!({
//!     "flag": {"key": "new-checkout", "kind": "boolean", "variations": [{"value": true}, {"value": false}]},
//!     "config": {"on": on, "off_variation": 1, "fallthrough": {"variation": 0}}
//! });
//! let cache = Cache::new();
//! let snapshot = EnvironmentSnapshot {
//!     environment_id: 7,
//!     project: "shop".into(),
//!     environment: "production".into(),
//!     revision: 4,
//!     snapshot_json: serde_json::to_vec(&json!({"revision": 4, "flags": [flag(false)]})).unwrap(),
//!     ..Default::default()
//! };
//! assert_eq!(cache.load(&snapshot).unwrap(), LoadOutcome::Installed { previous: None, revision: 4 });
//!
//! let toggle = ChangeEvent {
//!     environment_id: 7,
//!     revision: 5,
//!     kind: ChangeKind::Upsert.into(),
//!     item: ItemKind::Flag.into(),
//!     key: "new-checkout".into(),
//!     payload: serde_json::to_vec(&flag(true)).unwrap(),
//!     ..Default::default()
//! };
//! assert_eq!(cache.apply(&toggle).unwrap(), ApplyOutcome::Applied { revision: 5 });
//! assert_eq!(cache.apply(&toggle).unwrap(), ApplyOutcome::Ignored { have: 5, got: 5 });
//! let later = ChangeEvent { revision: 9, ..toggle };
//! assert_eq!(cache.apply(&later).unwrap(), ApplyOutcome::Gap { have: 5, got: 9 });
//!
//! let state = cache.environment(7).unwrap();
//! let detail = vexil_eval::evaluate(state.compiled(), "new-checkout", &Context::new("user-1"));
//! assert_eq!(detail.value, Some(&json!(true)));
//! ```

#![deny(missing_docs)]

mod apply;
mod cache;
mod error;
mod fallback;
mod ring;
mod sync;
mod upstream;

pub use cache::{
    ApplyOutcome, Authenticated, Cache, CacheOptions, Change, DEFAULT_FEED_CAPACITY, DEFAULT_RING_CAPACITY,
    EnvironmentContent, EnvironmentState, LoadOutcome,
};
pub use error::{Error, PayloadError, Result};
pub use fallback::{BoxFuture, SnapshotSource, SourceError};
pub use sync::{BusSync, DEFAULT_REFRESH_INTERVAL};
pub use upstream::{RELAY_ENVIRONMENT_ID, UpstreamError, UpstreamSync};

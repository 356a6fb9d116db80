//! The flags a client serves: the sync's source snapshot (written by one task at a time) and the
//! compiled snapshot evaluations read (behind an atomic pointer: readers never wait).
//!
//! * [`compile`]: the source compiled, one unservable flag never costing the others;
//! * [`diff`]: which flags a change may change the evaluation of;
//! * here: the [`Store`] and its per-thread read cache, and the rules for what replaces what.

mod compile;
mod diff;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwapOption;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use vexil_eval::CompileError;
use vexil_protocol::server::{ReceivedChange, ReceivedSnapshot};

pub(crate) use compile::Data;
use compile::build;
use diff::changed_keys;

/// Reads a snapshot file: a `GET /v1/flags` body, a `hydrate`'s data, or a relay's state file
/// (`{"revision", "snapshot"}`).
pub(crate) fn read_snapshot_file(bytes: &[u8]) -> Result<ReceivedSnapshot, serde_json::Error> {
    #[derive(Deserialize)]
    struct StateFile<'a> {
        #[serde(default, borrow)]
        snapshot: Option<&'a RawValue>,
        #[serde(default)]
        flags: Option<IgnoredAny>,
    }
    match serde_json::from_slice::<StateFile<'_>>(bytes)? {
        StateFile { snapshot: Some(inner), flags: None } => ReceivedSnapshot::read(inner.get().as_bytes()),
        _ => ReceivedSnapshot::read(bytes),
    }
}

/// Where a snapshot comes from; decides whether it replaces what the client has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A bootstrap file or snapshot: installed before any sync, replaced by the first sync.
    Bootstrap,
    /// A stream `hydrate`: replaces synced data at the same or a higher revision, not at a lower one (a
    /// replica that is behind: its later patches bring it level).
    Hydrate,
    /// A `GET /v1/flags` body: replaces synced data only when newer.
    Poll,
}

/// What an install or a change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The data is now at `revision`; `changed` are the flags whose evaluation may differ.
    Installed { revision: u64, changed: Vec<String> },
    /// Nothing done: the client has `have`, at least as new.
    Skipped { have: Option<u64> },
}

#[derive(Debug, Default)]
struct Writer {
    source: Option<ReceivedSnapshot>,
    /// Whether the source came from a sync (not only a bootstrap).
    synced: bool,
}

/// The source (for the sync, one writer at a time) and the compiled data (for evaluations, lock-free).
///
/// Evaluations read the data through [`read`](Self::read): a per-thread cache of the last snapshot the
/// thread used, checked against the store's generation number. While nothing changes an evaluation
/// costs one plain atomic load and a comparison; an `arc-swap` load (what [`data`](Self::data) offers)
/// costs two atomic read-modify-writes, about 20 ns on the 2-vCPU machine of `BENCHMARKS.md` — more than
/// 10 % of evaluating a five-rule flag. The price: a thread keeps the last snapshot it evaluated alive
/// until its next evaluation (or its exit), one per store and thread.
#[derive(Debug)]
pub(crate) struct Store {
    /// Tells this store's entries in the per-thread caches apart from other clients'.
    id: u64,
    /// Bumped after every change of `data`.
    generation: AtomicU64,
    writer: Mutex<Writer>,
    pub(crate) data: ArcSwapOption<Data>,
}

impl Default for Store {
    fn default() -> Store {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Store {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
            writer: Mutex::default(),
            data: ArcSwapOption::empty(),
        }
    }
}

/// How many stores (clients) a thread caches at once; more share slots, and reload when they alternate.
const CACHE_SLOTS: usize = 4;

struct Cached {
    store: u64,
    generation: u64,
    data: Option<Arc<Data>>,
}

thread_local! {
    static SNAPSHOTS: RefCell<[Option<Cached>; CACHE_SLOTS]> = const { RefCell::new([None, None, None, None]) };
}

impl Store {
    /// Runs `read` on the current data (`None` before any), from this thread's cache when it is
    /// current. Called exactly once.
    #[inline]
    pub(crate) fn read<R>(&self, mut read: impl FnMut(Option<&Data>) -> R) -> R {
        let generation = self.generation.load(Ordering::Acquire);
        let cached = SNAPSHOTS.try_with(|slots| {
            // Re-entered (cannot happen today: nothing inside an evaluation calls back in): no cache.
            let Ok(mut slots) = slots.try_borrow_mut() else {
                return read(self.data.load().as_deref());
            };
            let slot = &mut slots[(self.id % CACHE_SLOTS as u64) as usize];
            let current = matches!(slot, Some(c) if c.store == self.id && c.generation == generation);
            if !current {
                // Loaded after reading the generation: at least as new as the data of `generation`.
                *slot = Some(Cached { store: self.id, generation, data: self.data.load_full() });
            }
            read(slot.as_ref().and_then(|cached| cached.data.as_deref()))
        });
        match cached {
            Ok(result) => result,
            // The thread's locals are being destroyed: read without the cache.
            Err(_) => read(self.data.load().as_deref()),
        }
    }

    fn publish(&self, data: Data) {
        self.data.store(Some(Arc::new(data)));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Installs a whole snapshot, if `origin` says it should replace what the client has.
    pub(crate) fn install(&self, source: ReceivedSnapshot, origin: Origin) -> Result<Outcome, CompileError> {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let have = writer.source.as_ref().map(|s| s.snapshot.revision);
        let replace = match (origin, writer.synced, have) {
            (Origin::Bootstrap, _, _) | (_, false, _) | (_, _, None) => true,
            (Origin::Hydrate, true, Some(have)) => source.snapshot.revision >= have,
            (Origin::Poll, true, Some(have)) => source.snapshot.revision > have,
        };
        if !replace {
            return Ok(Outcome::Skipped { have });
        }
        let data = build(&source)?;
        let changed = changed_keys(writer.source.as_ref(), &source);
        let revision = source.snapshot.revision;
        self.publish(data);
        writer.source = Some(source);
        writer.synced |= origin != Origin::Bootstrap;
        Ok(Outcome::Installed { revision, changed })
    }

    /// Applies a stream change at `revision`: skipped when it is not above the synced revision (or there
    /// is no synced data: a change only makes sense on top of a `hydrate`).
    pub(crate) fn apply(&self, change: ReceivedChange, revision: u64) -> Result<Outcome, CompileError> {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let have = writer.source.as_ref().map(|s| s.snapshot.revision);
        let current = match &writer.source {
            Some(source) if writer.synced && source.snapshot.revision < revision => source,
            _ => return Ok(Outcome::Skipped { have }),
        };
        let mut next = current.clone();
        next.apply(change, revision);
        let data = build(&next)?;
        let changed = changed_keys(Some(current), &next);
        self.publish(data);
        writer.source = Some(next);
        Ok(Outcome::Installed { revision, changed })
    }

    /// The revision of the synced data, for `Last-Event-ID` (none when there is only a bootstrap).
    pub(crate) fn synced_revision(&self) -> Option<u64> {
        let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        writer.source.as_ref().filter(|_| writer.synced).map(|s| s.snapshot.revision)
    }

    /// Whether a sync has installed data (not only a bootstrap).
    pub(crate) fn synced(&self) -> bool {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner).synced
    }

    /// The revision served.
    pub(crate) fn revision(&self) -> Option<u64> {
        self.data.load().as_ref().map(|data| data.compiled.revision())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::{Value, json};
    use vexil_model::{Context, ErrorKind};

    use super::*;

    fn flag(key: &str, on: bool) -> Value {
        json!({"flag": {"key": key, "kind": "boolean", "variations": [{"value": true}, {"value": false}]},
               "config": {"on": on, "off_variation": 1, "fallthrough": {"variation": 0}}})
    }

    fn flag_with(key: &str, config: Value) -> Value {
        json!({"flag": {"key": key, "kind": "boolean", "variations": [{"value": true}, {"value": false}]},
               "config": config})
    }

    fn source(value: Value) -> ReceivedSnapshot {
        read_snapshot_file(value.to_string().as_bytes()).unwrap()
    }

    fn patch(key: &str, on: bool) -> ReceivedChange {
        let mut data = flag(key, on);
        data["kind"] = json!("flag");
        data["key"] = json!(key);
        ReceivedChange::read("patch", &data.to_string()).unwrap()
    }

    fn value(store: &Store, key: &str) -> Option<Value> {
        store.read(|data| data?.evaluate(key, &Context::new("user-1")).value.cloned())
    }

    fn error_of(store: &Store, key: &str) -> Option<ErrorKind> {
        store.read(|data| data?.evaluate(key, &Context::new("user-1")).reason.error_kind())
    }

    #[test]
    fn a_polled_body_a_hydrate_and_a_relay_state_file_are_all_read() {
        let snapshot = json!({"revision": 7, "flags": [flag("a", true)], "segments": []});
        let read = source(snapshot.clone());
        assert_eq!((read.snapshot.revision, read.snapshot.flags.len()), (7, 1));
        assert_eq!(source(json!({"revision": 7, "snapshot": snapshot})), read);
        assert!(read_snapshot_file(b"[1, 2]").is_err());
        assert!(read_snapshot_file(b"{\"flags\": []}").is_err(), "a snapshot has a revision");
    }

    #[test]
    fn an_unreadable_flag_is_left_out_and_evaluates_as_malformed_while_the_others_serve() {
        let mut newer = flag("from-the-future", true);
        newer["config"]["rules"] = json!([{"id": "r", "clauses": [{"attribute": "a", "op": "telepathy", "values": []}],
                                           "serve": {"variation": 0}}]);
        let store = Store::default();
        let read = source(json!({"revision": 3, "flags": [flag("a", true), newer]}));
        assert_eq!(read.unreadable, BTreeSet::from(["from-the-future".to_owned()]));
        store.install(read, Origin::Hydrate).unwrap();
        assert_eq!(value(&store, "a"), Some(json!(true)));
        assert_eq!(error_of(&store, "from-the-future"), Some(ErrorKind::MalformedFlag));
        assert_eq!(error_of(&store, "nothing"), Some(ErrorKind::FlagNotFound));
    }

    #[test]
    fn a_flag_whose_prerequisite_is_outside_the_prefix_is_malformed_and_so_are_its_dependents() {
        let needs = |key: &str, on: &str| {
            flag_with(
                key,
                json!({"on": true, "fallthrough": {"variation": 0}, "off_variation": 1,
                                  "prerequisites": [{"key": on, "variation": 0}]}),
            )
        };
        let store = Store::default();
        let read = source(
            json!({"revision": 1, "flags": [needs("web.a", "api.x"), needs("web.b", "web.a"), flag("web.c", true)]}),
        );
        store.install(read, Origin::Hydrate).unwrap();
        assert_eq!(error_of(&store, "web.a"), Some(ErrorKind::MalformedFlag));
        assert_eq!(error_of(&store, "web.b"), Some(ErrorKind::MalformedFlag));
        assert_eq!(value(&store, "web.c"), Some(json!(true)));
        let keys = store.data.load().as_ref().unwrap().keys();
        assert_eq!(keys, ["web.c", "web.a", "web.b"]);
    }

    #[test]
    fn a_patch_applies_above_the_revision_and_reports_the_changed_key() {
        let store = Store::default();
        let installed = store.install(
            source(json!({"revision": 4, "flags": [flag("a", false), flag("b", false)]})),
            Origin::Hydrate,
        );
        assert_eq!(
            installed.unwrap(),
            Outcome::Installed { revision: 4, changed: vec!["a".into(), "b".into()] },
            "a first hydrate changes every key"
        );
        // Ids are not contiguous: 5 was an SDK-key change this stream never sees.
        assert_eq!(
            store.apply(patch("a", true), 6).unwrap(),
            Outcome::Installed { revision: 6, changed: vec!["a".into()] }
        );
        assert_eq!(value(&store, "a"), Some(json!(true)));
        assert_eq!(store.apply(patch("a", false), 6).unwrap(), Outcome::Skipped { have: Some(6) });
        assert_eq!(store.apply(patch("a", false), 2).unwrap(), Outcome::Skipped { have: Some(6) });
        assert_eq!(value(&store, "a"), Some(json!(true)), "an old change is ignored");
        let delete = ReceivedChange::read("delete", r#"{"kind":"flag","key":"b"}"#).unwrap();
        assert_eq!(
            store.apply(delete, 7).unwrap(),
            Outcome::Installed { revision: 7, changed: vec!["b".into()] }
        );
        assert_eq!(error_of(&store, "b"), Some(ErrorKind::FlagNotFound));
        assert_eq!(store.revision(), Some(7));
    }

    #[test]
    fn a_segment_change_reports_the_flags_that_use_it_and_their_dependents() {
        let uses_beta = flag_with(
            "uses-beta",
            json!({"on": true, "off_variation": 1, "fallthrough": {"variation": 1},
            "rules": [{"id": "beta", "clauses": [{"attribute": "targetingKey", "op": "segment_match", "values": ["beta"]}],
                       "serve": {"variation": 0}}]}),
        );
        let after = flag_with(
            "after-beta",
            json!({"on": true, "off_variation": 1, "fallthrough": {"variation": 0},
            "prerequisites": [{"key": "uses-beta", "variation": 0}]}),
        );
        let store = Store::default();
        store
            .install(
                source(json!({"revision": 1, "flags": [uses_beta, after, flag("other", true)],
                              "segments": [{"key": "beta", "included": []}]})),
                Origin::Hydrate,
            )
            .unwrap();
        assert_eq!(value(&store, "after-beta"), Some(json!(false)));
        let change = ReceivedChange::read(
            "patch",
            &json!({"kind": "segment", "key": "beta", "segment": {"key": "beta", "included": ["user-1"]}})
                .to_string(),
        )
        .unwrap();
        assert_eq!(
            store.apply(change, 2).unwrap(),
            Outcome::Installed { revision: 2, changed: vec!["after-beta".into(), "uses-beta".into()] }
        );
        assert_eq!(value(&store, "after-beta"), Some(json!(true)));
    }

    #[test]
    fn a_hydrate_replaces_data_except_newer_synced_data_and_reports_only_what_differs() {
        let store = Store::default();
        store
            .install(
                source(json!({"revision": 5, "flags": [flag("a", true), flag("b", true)]})),
                Origin::Hydrate,
            )
            .unwrap();
        let same_but_b =
            source(json!({"revision": 9, "flags": [flag("a", true), flag("b", false), flag("c", true)]}));
        assert_eq!(
            store.install(same_but_b, Origin::Hydrate).unwrap(),
            Outcome::Installed { revision: 9, changed: vec!["b".into(), "c".into()] }
        );
        let older = source(json!({"revision": 8, "flags": []}));
        assert_eq!(
            store.install(older.clone(), Origin::Hydrate).unwrap(),
            Outcome::Skipped { have: Some(9) }
        );
        assert_eq!(store.install(older, Origin::Poll).unwrap(), Outcome::Skipped { have: Some(9) });
        let again =
            source(json!({"revision": 9, "flags": [flag("a", true), flag("b", false), flag("c", true)]}));
        assert_eq!(store.install(again.clone(), Origin::Poll).unwrap(), Outcome::Skipped { have: Some(9) });
        assert_eq!(
            store.install(again, Origin::Hydrate).unwrap(),
            Outcome::Installed { revision: 9, changed: vec![] },
            "a hydrate at the same revision is installed, and changes nothing"
        );
    }

    #[test]
    fn a_bootstrap_is_replaced_by_the_first_sync_whatever_its_revision() {
        let store = Store::default();
        store
            .install(source(json!({"revision": 100, "flags": [flag("a", true)]})), Origin::Bootstrap)
            .unwrap();
        assert_eq!((store.revision(), store.synced_revision(), store.synced()), (Some(100), None, false));
        assert_eq!(store.apply(patch("a", false), 101).unwrap(), Outcome::Skipped { have: Some(100) });
        let synced = source(json!({"revision": 3, "flags": [flag("a", false)]}));
        assert_eq!(
            store.install(synced, Origin::Poll).unwrap(),
            Outcome::Installed { revision: 3, changed: vec!["a".into()] }
        );
        assert_eq!((store.revision(), store.synced_revision()), (Some(3), Some(3)));
        assert_eq!(value(&store, "a"), Some(json!(false)));
    }

    #[test]
    fn evaluations_see_every_change_through_the_per_thread_cache_of_each_store() {
        // More stores than cache slots, so that some share a slot and evict each other.
        let stores: Vec<Store> = (0..CACHE_SLOTS + 3).map(|_| Store::default()).collect();
        for (i, store) in stores.iter().enumerate() {
            assert_eq!(value(store, "a"), None, "store {i} has no data yet");
            store
                .install(source(json!({"revision": 1, "flags": [flag("a", i % 2 == 0)]})), Origin::Hydrate)
                .unwrap();
        }
        for round in 0..3u64 {
            for (i, store) in stores.iter().enumerate() {
                let on = (i as u64 + round).is_multiple_of(2);
                assert_eq!(value(store, "a"), Some(json!(on)), "store {i}, round {round}");
                store.apply(patch("a", !on), round + 2).unwrap();
                assert_eq!(value(store, "a"), Some(json!(!on)), "store {i} after its change, round {round}");
            }
        }
        let store = &stores[0];
        let elsewhere = std::thread::scope(|scope| scope.spawn(|| value(store, "a")).join().unwrap());
        assert_eq!(elsewhere, value(store, "a"), "another thread reads the same data");
    }

    #[test]
    fn unknown_changes_move_the_revision_only() {
        let store = Store::default();
        store.install(source(json!({"revision": 1, "flags": [flag("a", true)]})), Origin::Hydrate).unwrap();
        let other =
            ReceivedChange::read("patch", r#"{"kind":"experiment","key":"x","experiment":{}}"#).unwrap();
        assert_eq!(other, ReceivedChange::Other);
        assert_eq!(store.apply(other, 2).unwrap(), Outcome::Installed { revision: 2, changed: vec![] });
        assert!(ReceivedChange::read("patch", "not json").is_err());
        let unreadable =
            ReceivedChange::read("patch", r#"{"kind":"flag","key":"a","flag":{"key":"a"},"config":{}}"#)
                .unwrap();
        assert_eq!(unreadable, ReceivedChange::UnreadableFlag("a".into()));
        assert_eq!(
            store.apply(unreadable, 3).unwrap(),
            Outcome::Installed { revision: 3, changed: vec!["a".into()] }
        );
        assert_eq!(error_of(&store, "a"), Some(ErrorKind::MalformedFlag));
    }
}

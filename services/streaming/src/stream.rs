//! One open stream: a small state folded over the cache's change feed, the shared heartbeat and the
//! shutdown signal. No task and no buffer per connection: the server polls the stream when the socket
//! can take more, and between events an idle stream is this struct and two parked wakers.
//!
//! A stream that sends exactly the shared frames of its environment (an unfiltered server stream) can
//! also be *parked* by the streaming deployment's server: the fan-out (`crate::fanout`) then writes the
//! changes to its socket directly, and the stream [resumes](Open::resume) from the revision the fan-out
//! reached when it has to act itself (a heartbeat, a full socket, anything but a plain change).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;
use vexil_dataplane::{Cache, Change, EnvironmentState};
use vexil_proto::{ChangeEvent, ItemKind};

use crate::frames;
use crate::state::{Connected, EventKind, Signal, StreamKind, StreamingState};

/// The headers every stream is answered with (besides the framing and `Date`, which are the
/// server's): `200`, and
///
/// * nginx and ingress controllers buffer responses unless told not to (`X-Accel-Buffering`);
/// * actix's `Compress` middleware, wherever it is wrapped, leaves a response that names its encoding
///   alone; a compressed stream would sit in the encoder's buffer.
pub(crate) const HEADERS: [(&str, &str); 4] = [
    ("content-type", "text/event-stream"),
    ("cache-control", "no-cache"),
    ("x-accel-buffering", "no"),
    ("content-encoding", "identity"),
];

/// What a stream does with the changes of its environment. The driver ([`Open`]) handles the rest:
/// heartbeats, shutdown, environment removal, key re-checks, and lag.
pub(crate) trait Follower: Send + 'static {
    /// One event applied to the environment (the driver has already checked that it is this
    /// environment's). Push what to send onto `out`.
    fn applied(&mut self, event: &ChangeEvent, ctx: &Ctx<'_>, out: &mut Frames);

    /// The environment moved in a way the events do not describe (a re-sync, or this stream's feed
    /// lagged): start over from `state`, the environment as it is now.
    fn restart(&mut self, state: &EnvironmentState, ctx: &Ctx<'_>, out: &mut Frames);

    /// The revision this stream's client has, when everything this stream sends from here on is the
    /// shared frame of each change (what every unfiltered server stream of the environment sends): such
    /// a stream may be parked and written to by the fan-out. `None` (the default) for streams that
    /// send frames of their own.
    fn shared_position(&self) -> Option<u64> {
        None
    }

    /// Carries on after a park: the client has every event up to `revision` (the fan-out wrote them);
    /// queue what it has not, from `state`, the environment as it is now. Only called on followers
    /// whose [`shared_position`](Self::shared_position) was `Some`; the default starts over.
    fn resume(&mut self, revision: u64, state: &EnvironmentState, ctx: &Ctx<'_>, out: &mut Frames) {
        let _ = revision;
        self.restart(state, ctx, out);
    }
}

/// What a follower can reach.
pub(crate) struct Ctx<'a> {
    pub(crate) cache: &'a Cache,
    pub(crate) streaming: &'a StreamingState,
    /// The stream's environment.
    pub(crate) environment_id: i64,
    /// Whether this change is live (just applied), as opposed to replayed: only live deliveries are
    /// observed in the propagation-lag histogram.
    pub(crate) live: bool,
}

/// Frames to send, in order.
#[derive(Default)]
pub(crate) struct Frames(VecDeque<Bytes>);

impl Frames {
    /// Queues one event frame and counts it.
    pub(crate) fn event(&mut self, ctx: &Ctx<'_>, kind: EventKind, frame: Bytes) {
        ctx.streaming.metrics().sent(kind);
        self.0.push_back(frame);
    }

    /// Queues one event frame caused by a change committed at `committed_at_ms`, and observes its lag
    /// when the change is live.
    pub(crate) fn delivery(&mut self, ctx: &Ctx<'_>, kind: EventKind, frame: Bytes, committed_at_ms: i64) {
        if ctx.live {
            ctx.streaming.metrics().delivered(committed_at_ms);
        }
        self.event(ctx, kind, frame);
    }

    fn push_raw(&mut self, frame: Bytes) {
        self.0.push_back(frame);
    }
}

/// What a stream route answers with, for either server.
pub(crate) enum Body {
    /// An open stream.
    Open(Box<Open>),
    /// Only a `retry:` hint, then the end: for a replica that has no data yet or is shutting down. A
    /// browser's EventSource gives up for good on any status but 200, so this is a 200 that ends at
    /// once, and the client reconnects after `retry` milliseconds (to any replica).
    RetryLater(Bytes),
}

/// The state of one open stream.
pub(crate) struct Open {
    environment_id: i64,
    /// The presented key, checked again on every heartbeat and whenever the environment's keys may
    /// have changed: a rotated-out or expired key ends its streams.
    key: Box<str>,
    /// `None` while parked: the fan-out follows the changes then, and a receiver left far behind would
    /// cost a walk over the feed's buffer when dropped.
    feed: Option<broadcast::Receiver<Change>>,
    signal: watch::Receiver<Signal>,
    queued: Frames,
    cache: Cache,
    streaming: Arc<StreamingState>,
    follower: Box<dyn Follower>,
    _connected: Connected,
}

/// Where a new stream starts: the feed, subscribed to *before* the environment is read (so that no
/// change falls between the two), and the environment as read after it.
pub(crate) struct Start {
    pub(crate) feed: broadcast::Receiver<Change>,
    pub(crate) state: Arc<EnvironmentState>,
}

/// Subscribes to the change feed, then reads environment `id` (DESIGN.md's safe order, see the
/// `vexil_dataplane` crate docs). `None` when the environment is gone.
pub(crate) fn start(cache: &Cache, environment_id: i64) -> Option<Start> {
    let feed = cache.subscribe();
    let state = cache.environment(environment_id)?;
    Some(Start { feed, state })
}

/// Everything needed to open a stream.
pub(crate) struct Params<F> {
    pub(crate) kind: StreamKind,
    pub(crate) environment_id: i64,
    pub(crate) key: String,
    pub(crate) feed: broadcast::Receiver<Change>,
    pub(crate) cache: Cache,
    pub(crate) streaming: Arc<StreamingState>,
    pub(crate) follower: F,
}

impl Open {
    /// A stream that sends `retry:`, then `first` (what the follower queued for the start), then
    /// follows the feed.
    pub(crate) fn new<F: Follower>(params: Params<F>, first: Frames) -> Open {
        let Params { kind, environment_id, key, feed, cache, streaming, follower } = params;
        let mut queued = Frames::default();
        queued.push_raw(streaming.retry_frame());
        queued.0.extend(first.0);
        Open {
            environment_id,
            key: key.into_boxed_str(),
            feed: Some(feed),
            signal: streaming.subscribe_signal(),
            _connected: streaming.metrics().connected(kind),
            queued,
            cache,
            streaming,
            follower: Box::new(follower),
        }
    }

    /// The stream's environment.
    pub(crate) fn environment_id(&self) -> i64 {
        self.environment_id
    }

    /// The next frame to write (whole); `None` ends the stream.
    pub(crate) async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.queued.0.pop_front() {
                if self.queued.0.is_empty() && self.queued.0.capacity() > 8 {
                    // A long replay must not leave its queue's allocation to every idle stream.
                    self.queued = Frames::default();
                }
                return Some(chunk);
            }
            tokio::select! {
                // Shutdown and heartbeats first, so a busy feed can neither hold a stream past
                // shutdown nor starve its heartbeats.
                biased;
                changed = self.signal.changed() => return self.on_signal(changed),
                received = recv(self.feed.as_mut()) => {
                    if !self.follow(received)? {
                        continue;
                    }
                }
            }
        }
    }

    /// Waits for the shared signal: the heartbeat to write, or `None` when the stream ends (shutdown, or
    /// its key is no longer valid).
    pub(crate) async fn signalled(&mut self) -> Option<Bytes> {
        let changed = self.signal.changed().await;
        self.on_signal(changed)
    }

    fn on_signal(&mut self, changed: Result<(), watch::error::RecvError>) -> Option<Bytes> {
        let signal = *self.signal.borrow_and_update();
        if changed.is_err() || signal.shutdown || !self.key_is_valid() {
            return None;
        }
        self.streaming.metrics().heartbeat();
        Some(frames::PING)
    }

    /// Whether this stream sends only the shared frames of its environment once it has caught up (see
    /// [`Follower::shared_position`]): then it may be parked.
    pub(crate) fn shares_frames(&self) -> bool {
        self.follower.shared_position().is_some()
    }

    /// The environment's revision on this replica now; `None` when it is gone.
    pub(crate) fn current_revision(&self) -> Option<u64> {
        self.cache.environment(self.environment_id).map(|state| state.revision())
    }

    /// Parks the stream when nothing is queued and it sends only shared frames from here on (see the
    /// module docs): the revision its client has. It lets go of its feed until [`resume`](Self::resume).
    pub(crate) fn park(&mut self) -> Option<u64> {
        let revision = if self.queued.0.is_empty() { self.follower.shared_position() } else { None };
        if revision.is_some() {
            self.feed = None;
        }
        revision
    }

    /// Queues a frame to be written next (a heartbeat taken while parked).
    pub(crate) fn queue(&mut self, frame: Bytes) {
        self.queued.push_raw(frame);
    }

    /// Carries on after a park, the client having every event up to `revision`: queues what it
    /// missed since, from this replica's ring of recent events (or a fresh `hydrate`). `false` when
    /// the stream ends instead (its key is no longer valid, or its environment is gone).
    pub(crate) fn resume(&mut self, revision: u64) -> bool {
        if !self.key_is_valid() {
            return false;
        }
        let Some(Start { feed, state }) = start(&self.cache, self.environment_id) else {
            self.streaming.forget(self.environment_id);
            return false;
        };
        self.feed = Some(feed);
        let ctx = Ctx {
            cache: &self.cache,
            streaming: &self.streaming,
            environment_id: self.environment_id,
            live: true,
        };
        self.follower.resume(revision, &state, &ctx, &mut self.queued);
        true
    }

    /// Handles one message of the feed; `Some(true)` when it queued something, `None` to end.
    fn follow(&mut self, received: Result<Change, RecvError>) -> Option<bool> {
        let ctx = Ctx {
            cache: &self.cache,
            streaming: &self.streaming,
            environment_id: self.environment_id,
            live: true,
        };
        match received {
            Ok(change) if change.environment_id() != self.environment_id => {}
            Ok(Change::Applied { event, .. }) => {
                if event.item() == ItemKind::SdkKey && !self.key_is_valid() {
                    return None;
                }
                self.follower.applied(&event, &ctx, &mut self.queued);
            }
            Ok(Change::Resynced { .. }) => {
                // A re-sync may have brought a new key list.
                if !self.key_is_valid() {
                    return None;
                }
                let state = self.cache.environment(self.environment_id)?;
                self.follower.restart(&state, &ctx, &mut self.queued);
            }
            Ok(Change::Removed { .. }) => {
                self.streaming.forget(self.environment_id);
                return None;
            }
            Err(RecvError::Lagged(missed)) => {
                // The feed moved on without this stream (its client reads too slowly): the events it
                // missed are gone from the feed, so it starts over from the current state. Nothing
                // upstream ever waits for a stream.
                tracing::debug!(environment_id = self.environment_id, missed, "stream lagged; starting over");
                let state = self.cache.environment(self.environment_id)?;
                self.follower.restart(&state, &ctx, &mut self.queued);
            }
            Err(RecvError::Closed) => return None,
        }
        Some(!self.queued.0.is_empty())
    }

    fn key_is_valid(&self) -> bool {
        self.cache.authenticate(&self.key).is_some_and(|found| found.environment.id() == self.environment_id)
    }
}

/// The next message of a feed; never, without one (a parked stream is not polled for changes).
async fn recv(feed: Option<&mut broadcast::Receiver<Change>>) -> Result<Change, RecvError> {
    match feed {
        Some(feed) => feed.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use vexil_dataplane::CacheOptions;
    use vexil_proto::{ChangeKind, EnvironmentSnapshot};

    use super::*;

    /// Counts what it is told, and sends one frame per call.
    struct Recorder;

    impl Follower for Recorder {
        fn applied(&mut self, event: &ChangeEvent, ctx: &Ctx<'_>, out: &mut Frames) {
            out.event(ctx, EventKind::Patch, Bytes::from(format!("applied {}\n", event.revision)));
        }

        fn restart(&mut self, state: &EnvironmentState, ctx: &Ctx<'_>, out: &mut Frames) {
            out.event(ctx, EventKind::Hydrate, Bytes::from(format!("restart {}\n", state.revision())));
        }
    }

    /// Only SDK-key events, re-syncs and heartbeats check the key, and this test has none of them.
    const KEY: &str = "vxs_unused";

    fn flag_event(revision: u64, on: bool) -> ChangeEvent {
        let payload = json!({
            "flag": {"key": "f", "kind": "boolean", "variations": [{"value": true}, {"value": false}]},
            "config": {"on": on, "off_variation": 1, "fallthrough": {"variation": 0}}
        });
        let mut event = ChangeEvent {
            environment_id: 1,
            revision,
            key: "f".into(),
            payload: serde_json::to_vec(&payload).unwrap(),
            ..Default::default()
        };
        event.set_kind(ChangeKind::Upsert);
        event.set_item(ItemKind::Flag);
        event
    }

    fn cache(feed_capacity: usize) -> Cache {
        let cache = Cache::with_options(CacheOptions { feed_capacity, ..CacheOptions::default() });
        cache
            .load(&EnvironmentSnapshot {
                environment_id: 1,
                revision: 1,
                snapshot_json: br#"{"revision": 1}"#.to_vec(),
                ..Default::default()
            })
            .unwrap();
        cache
    }

    #[tokio::test]
    async fn a_stream_whose_feed_lagged_starts_over_from_the_current_state() {
        let cache = cache(2);
        let streaming = Arc::new(StreamingState::new(&Default::default()));
        let feed = cache.subscribe();
        let mut open = Open::new(
            Params {
                kind: StreamKind::Server,
                environment_id: 1,
                key: KEY.into(),
                feed,
                cache: cache.clone(),
                streaming: streaming.clone(),
                follower: Recorder,
            },
            Frames::default(),
        );
        for revision in 2..=6 {
            cache.apply(&flag_event(revision, revision % 2 == 0)).unwrap();
        }

        assert_eq!(open.next_chunk().await.unwrap(), streaming.retry_frame());
        assert_eq!(open.next_chunk().await.unwrap(), Bytes::from("restart 6\n"));
    }

    #[tokio::test]
    async fn queued_frames_are_handed_over_whole_and_in_order() {
        let cache = cache(16);
        let streaming = Arc::new(StreamingState::new(&Default::default()));
        let large = Bytes::from(vec![b'x'; 100_000]);
        let mut first = Frames::default();
        first.push_raw(large.clone());
        first.push_raw(Bytes::from_static(b"small"));
        let mut open = Open::new(
            Params {
                kind: StreamKind::Server,
                environment_id: 1,
                key: KEY.into(),
                feed: cache.subscribe(),
                cache: cache.clone(),
                streaming: streaming.clone(),
                follower: Recorder,
            },
            first,
        );

        assert_eq!(open.next_chunk().await.unwrap(), streaming.retry_frame());
        assert_eq!(open.next_chunk().await.unwrap(), large);
        assert_eq!(open.next_chunk().await.unwrap(), Bytes::from_static(b"small"));
    }
}

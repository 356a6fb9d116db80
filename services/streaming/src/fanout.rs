//! The fan-out: a change written straight to the sockets of the streams waiting for it, by one task per
//! worker thread, instead of by one woken task per stream. Used by the streaming deployment's own
//! server (`crate::http1`).
//!
//! Why: a change to an environment with 10,000 open streams would otherwise wake 10,000 tasks, each of
//! which polls its futures, re-registers its wakers with the change feed and the heartbeat signal,
//! looks the shared frame up and writes it — ~17 % of the replica's CPU per delivery in `perf`
//! (the rest is the kernel's TCP send), and wake-ups that bounce between the worker threads. Here each
//! *shard* (a task) holds a share of the streams and, per change, writes the one shared frame to each
//! of its streams' sockets in a loop: no wake-up, one frame look-up, one metrics update per batch.
//!
//! Only streams that send exactly the shared frames take part (unfiltered server streams with a chunked
//! body, see `Follower::shared_position`), and only while they are *parked*: caught up, nothing
//! queued, their task waiting on the heartbeat, the socket and their [`Slot`]. A parked slot holds the
//! socket and the revision its client has. A shard writes change `r` only to a slot at `r - 1`, and only
//! as one non-blocking write. Anything else — a full socket buffer, a partial write, a gap, an SDK-key
//! change, a re-sync, a removed environment, a shard whose feed lagged — wakes the stream's task, which
//! takes its socket back, writes the rest of a partial frame, and resumes from the slot's revision as a
//! client reconnecting with `Last-Event-ID` would (the replay ring, or a fresh `hydrate`). So the fast
//! path can skip work, never an event; and a socket is written either by a shard, under its slot's
//! lock while it is parked there, or by its stream's task once taken back — never by both, and whole
//! frames in revision order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinHandle;
use vexil_dataplane::{Cache, Change};
use vexil_proto::ChangeEvent;

use crate::frames;
use crate::state::{EventKind, StreamingState};

/// How many sockets a shard writes to before it lets the other tasks of its thread run (new
/// connections, probes): ~5 ms of writes.
const WRITES_PER_TURN: usize = 512;

/// The shards of one server. Dropping it ends their tasks.
pub(crate) struct Fanout {
    shards: Box<[Arc<Shard>]>,
    tasks: Vec<JoinHandle<()>>,
    next: AtomicUsize,
}

impl Fanout {
    /// Starts `shards` shard tasks (one per worker thread lets them write in parallel) on `cache`'s
    /// change feed, framing each shared frame with `framed` (as one HTTP chunk). Call inside a Tokio
    /// runtime.
    pub(crate) fn start(
        cache: &Cache,
        streaming: &Arc<StreamingState>,
        shards: usize,
        framed: fn(&[u8]) -> Bytes,
    ) -> Fanout {
        let shards: Box<[Arc<Shard>]> = (0..shards.max(1)).map(|_| Arc::new(Shard::default())).collect();
        let tasks = shards
            .iter()
            .map(|shard| tokio::spawn(Arc::clone(shard).run(cache.subscribe(), streaming.clone(), framed)))
            .collect();
        Fanout { shards, tasks, next: AtomicUsize::new(0) }
    }

    /// A slot for a new stream of environment `environment_id` (not parked yet), in the next shard.
    pub(crate) fn slot(&self, environment_id: i64) -> SlotHandle {
        let shard = &self.shards[self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len()];
        let slot = Arc::new(Slot::default());
        shard.add(environment_id, Arc::clone(&slot));
        SlotHandle(slot)
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// A share of the streams, and the task that writes changes to them.
#[derive(Default)]
struct Shard {
    /// The slots of this shard's streams, by environment. A slot whose stream has ended is held only
    /// here (its [`SlotHandle`] is gone) and is dropped on the next pass over its environment.
    slots: Mutex<HashMap<i64, Vec<Arc<Slot>>>>,
}

impl Shard {
    fn add(&self, environment_id: i64, slot: Arc<Slot>) {
        let mut slots = lock(&self.slots);
        let list = slots.entry(environment_id).or_default();
        if list.len() == list.capacity() {
            // Before the list grows, drop the ended streams' slots: an environment whose streams come
            // and go without changes keeps at most twice its open streams here.
            list.retain(is_open);
        }
        list.push(slot);
    }

    /// The slots of `environment_id`'s open streams: a copy, so that the lock is not held while
    /// writing.
    fn of(&self, environment_id: i64) -> Vec<Arc<Slot>> {
        let mut slots = lock(&self.slots);
        let Some(list) = slots.get_mut(&environment_id) else { return Vec::new() };
        list.retain(is_open);
        if list.is_empty() {
            slots.remove(&environment_id);
            return Vec::new();
        }
        list.clone()
    }

    async fn run(
        self: Arc<Self>,
        mut feed: broadcast::Receiver<Change>,
        streaming: Arc<StreamingState>,
        framed: fn(&[u8]) -> Bytes,
    ) {
        loop {
            match feed.recv().await {
                Ok(Change::Applied { environment_id, event }) => {
                    self.deliver(environment_id, &event, &streaming, framed).await;
                }
                // A re-sync or a removal: each stream decides for itself (a `hydrate`, or the end).
                Ok(change) => self.of(change.environment_id()).iter().for_each(|slot| slot.wake()),
                // Changes went by unseen: every stream catches up by itself.
                Err(RecvError::Lagged(_)) => {
                    let every: Vec<Arc<Slot>> = lock(&self.slots).values().flatten().cloned().collect();
                    every.iter().for_each(|slot| slot.wake());
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    async fn deliver(
        &self,
        environment_id: i64,
        event: &ChangeEvent,
        streaming: &StreamingState,
        framed: fn(&[u8]) -> Bytes,
    ) {
        let slots = self.of(environment_id);
        if slots.is_empty() {
            return;
        }
        // What every unfiltered stream sends for this change, rendered once (and shared with the
        // streams that are not parked). Nothing for an SDK-key change: each stream checks its key.
        let rendered =
            streaming.changes().get_or_render(environment_id, event.revision, || frames::change(event));
        let Some((name, frame)) = rendered else {
            slots.iter().for_each(|slot| slot.wake());
            return;
        };
        let kind = if name == "delete" { EventKind::Delete } else { EventKind::Patch };
        let chunk = framed(&frame);
        for (turn, batch) in slots.chunks(WRITES_PER_TURN).enumerate() {
            if turn > 0 {
                tokio::task::yield_now().await;
            }
            let (mut written, mut handed_over) = (0, 0);
            for slot in batch {
                match slot.write(event.revision, &chunk) {
                    Write::Whole => written += 1,
                    // Sent, as far as the client can tell: the stream's task writes the rest.
                    Write::Partly => {
                        written += 1;
                        handed_over += 1;
                    }
                    Write::HandedOver => handed_over += 1,
                    Write::NotParked => {}
                }
            }
            let metrics = streaming.metrics();
            metrics.sent_many(kind, written);
            metrics.delivered_many(event.committed_at_ms, written);
            metrics.handed_over(handed_over);
        }
    }
}

/// Whether a slot's stream is still open (its handle holds the other reference).
fn is_open(slot: &Arc<Slot>) -> bool {
    Arc::strong_count(slot) > 1
}

/// One stream's place in its shard, for the stream's whole life.
#[derive(Default)]
pub(crate) struct Slot {
    parked: Mutex<Parked>,
    /// Wakes the stream's task when a shard cannot write a change for it.
    woken: Notify,
}

/// What a shard may do with a stream.
#[derive(Default)]
struct Parked {
    /// The stream's socket while it is parked; `None` while its task writes.
    socket: Option<Arc<TcpStream>>,
    /// The revision of the last event the client has (written, or skipped as a server stream skips).
    revision: u64,
    /// What a partial write left of the last frame: to be written before anything else.
    rest: Option<Bytes>,
}

/// What became of one change for one slot.
enum Write {
    /// Written whole.
    Whole,
    /// Written as far as the socket took it; the rest is left to the stream's task, which was woken.
    Partly,
    /// Left to the stream's task, which was woken.
    HandedOver,
    /// The stream is not parked (its task follows the changes itself), or was parked after this change.
    NotParked,
}

impl Slot {
    /// Writes change `revision` (`chunk`: its frame, framed) when the stream is parked at the revision
    /// before it and the socket takes something at once; hands anything else over to the stream's
    /// task.
    fn write(&self, revision: u64, chunk: &Bytes) -> Write {
        let mut parked = lock(&self.parked);
        if parked.socket.is_none() || revision <= parked.revision {
            return Write::NotParked;
        }
        let wrote = if revision == parked.revision + 1 && parked.rest.is_none() {
            parked.socket.as_ref().map(|socket| socket.try_write(chunk))
        } else {
            // A gap, or a frame still waiting to be finished.
            None
        };
        let written = match wrote {
            Some(Ok(n)) if n == chunk.len() => {
                parked.revision = revision;
                return Write::Whole;
            }
            Some(Ok(n)) => {
                parked.rest = Some(chunk.slice(n..));
                parked.revision = revision;
                Write::Partly
            }
            // A full buffer (the client reads slowly: its task waits for room), a failed socket (its
            // task finds out), or a gap.
            _ => Write::HandedOver,
        };
        drop(parked);
        self.wake();
        written
    }

    fn wake(&self) {
        self.woken.notify_one();
    }
}

/// A stream's hold on its slot. Dropping it ends the slot (and takes the socket back from it).
pub(crate) struct SlotHandle(Arc<Slot>);

impl SlotHandle {
    /// Parks the stream: from now on the fan-out may write the changes after `revision` to `socket`.
    /// The caller checks afterwards whether the environment has already moved past `revision` (a
    /// change a shard passed by before the slot was parked) and [wakes](Self::wake) it if so.
    pub(crate) fn park(&self, socket: &Arc<TcpStream>, revision: u64) {
        *lock(&self.0.parked) = Parked { socket: Some(Arc::clone(socket)), revision, rest: None };
    }

    /// Resolves when a shard could not write a change for this stream (or was told to let it be).
    pub(crate) async fn woken(&self) {
        self.0.woken.notified().await;
    }

    /// Wakes the stream's own [`woken`](Self::woken).
    pub(crate) fn wake(&self) {
        self.0.wake();
    }

    /// Takes the socket back: the revision the client has, and the rest of a frame to write first.
    pub(crate) fn unpark(&self) -> (u64, Option<Bytes>) {
        let mut parked = lock(&self.0.parked);
        parked.socket = None;
        (parked.revision, parked.rest.take())
    }
}

impl Drop for SlotHandle {
    fn drop(&mut self) {
        lock(&self.0.parked).socket = None;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data whole, so a poisoned lock's data is still right.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    /// A connected pair of loopback sockets: the server's side (shared, as a stream's is) and the
    /// client's.
    async fn pair() -> (Arc<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Arc::new(server), client)
    }

    fn new_slot() -> SlotHandle {
        SlotHandle(Arc::new(Slot::default()))
    }

    async fn woken(slot: &SlotHandle) {
        tokio::time::timeout(Duration::from_secs(5), slot.woken()).await.expect("the stream's task is woken");
    }

    #[tokio::test]
    async fn a_parked_slot_takes_exactly_the_next_change_and_hands_anything_else_over() {
        let (socket, mut client) = pair().await;
        let slot = new_slot();
        let chunk = Bytes::from_static;

        assert!(matches!(slot.0.write(6, &chunk(b"six")), Write::NotParked), "not parked yet");
        slot.park(&socket, 5);
        assert!(matches!(slot.0.write(5, &chunk(b"five")), Write::NotParked), "a change it has");
        assert!(matches!(slot.0.write(6, &chunk(b"six,")), Write::Whole));
        assert!(matches!(slot.0.write(8, &chunk(b"eight")), Write::HandedOver), "a gap");
        woken(&slot).await;
        assert_eq!(slot.unpark(), (6, None));
        assert!(matches!(slot.0.write(7, &chunk(b"seven")), Write::NotParked), "its task has the socket");

        slot.park(&socket, 6);
        assert!(matches!(slot.0.write(7, &chunk(b"seven")), Write::Whole));
        drop(slot);
        let mut received = [0u8; 9];
        client.read_exact(&mut received).await.unwrap();
        assert_eq!(&received, b"six,seven");
        assert_eq!(Arc::strong_count(&socket), 1, "a dropped handle lets go of the socket");
    }

    #[tokio::test]
    async fn a_frame_the_socket_cannot_take_whole_leaves_its_rest_to_the_stream() {
        let (socket, _client) = pair().await;
        let slot = new_slot();
        slot.park(&socket, 1);
        // More than any socket buffer holds: a partial write.
        let large = Bytes::from(vec![b'x'; 64 << 20]);

        assert!(matches!(slot.0.write(2, &large), Write::Partly));
        assert!(
            matches!(slot.0.write(3, &Bytes::from_static(b"next")), Write::HandedOver),
            "nothing may follow an unfinished frame"
        );
        woken(&slot).await;
        let (revision, rest) = slot.unpark();
        let rest = rest.expect("the rest of the frame");
        assert_eq!(revision, 2, "the frame is the client's once its rest is written");
        assert!(!rest.is_empty() && rest.len() < large.len(), "{} of {}", rest.len(), large.len());
    }

    #[test]
    fn a_shard_forgets_the_slots_of_ended_streams() {
        let shard = Shard::default();
        let kept = SlotHandle(Arc::new(Slot::default()));
        shard.add(1, Arc::clone(&kept.0));
        let ended = SlotHandle(Arc::new(Slot::default()));
        shard.add(1, Arc::clone(&ended.0));
        assert_eq!(shard.of(1).len(), 2);

        drop(ended);
        let slots = shard.of(1);
        assert_eq!(slots.len(), 1);
        assert!(Arc::ptr_eq(&slots[0], &kept.0));
        drop((slots, kept));
        assert!(shard.of(1).is_empty());
        assert!(lock(&shard.slots).is_empty(), "an environment without streams is dropped");
    }
}

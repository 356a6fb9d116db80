//! Writing a stream: its head with the first frame, then each frame as the stream yields it, straight
//! from the frame's (shared) bytes; parked with the fan-out while it has caught up; ended at once when
//! the client goes away.

use std::io;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use tokio::net::TcpStream;

use super::head::MAX_HEAD;
use super::response::chunk_size;
use super::socket::{close, write_all};
use crate::fanout::{Fanout, SlotHandle};
use crate::stream::Open;

/// What a stream's client may send after its request (nothing, normally) before it is disconnected.
const MAX_DISCARD: usize = MAX_HEAD;

/// The writing side of a stream's connection: the response head until the first frame goes out with
/// it, then frames as chunks (or as they are, for HTTP/1.0).
pub(super) struct Writer {
    /// Shared with the fan-out while the stream is parked.
    pub(super) socket: Arc<TcpStream>,
    pub(super) head: Vec<u8>,
    pub(super) chunked: bool,
}

impl Writer {
    /// Writes one frame (whole, straight from its bytes: no copy into a buffer), or with `None` the end
    /// of the body.
    pub(super) async fn frame(&mut self, frame: Option<Bytes>) -> io::Result<()> {
        let head = self.head.as_slice();
        let written = match frame {
            Some(frame) if self.chunked => {
                let (size, len) = chunk_size(frame.len());
                write_all(&self.socket, Buf::chain(head, &size[..len]).chain(frame).chain(&b"\r\n"[..])).await
            }
            Some(frame) => write_all(&self.socket, Buf::chain(head, frame)).await,
            None if self.chunked => write_all(&self.socket, Buf::chain(head, &b"0\r\n\r\n"[..])).await,
            None => write_all(&self.socket, head).await,
        };
        // Written with the first frame; its allocation goes now.
        self.head = Vec::new();
        written
    }

    /// Ends the body and then the connection.
    pub(super) async fn end(mut self) {
        if self.frame(None).await.is_err() {
            return;
        }
        // Unparked streams only end: the fan-out holds no clone of the socket any more.
        if let Ok(socket) = Arc::try_unwrap(self.socket) {
            Box::pin(close(socket)).await;
        }
    }
}

/// Writes a stream: its head with the first frame, then each frame as the stream yields it. While the
/// stream has nothing to send, a read of a few bytes waits on the socket, so a client that goes away
/// ends the stream at once (not at the next heartbeat). A stream that sends only shared frames is
/// parked with the fan-out whenever it has caught up (see [`crate::fanout`]).
pub(super) async fn stream(mut out: Writer, mut open: Box<Open>, fanout: &Fanout) {
    let slot = (out.chunked && open.shares_frames()).then(|| fanout.slot(open.environment_id()));
    let mut probe = [0u8; 8];
    let mut discarded = 0;
    loop {
        if let Some(slot) = &slot
            && let Some(revision) = open.park()
        {
            match parked(&mut out, &mut open, slot, revision, &mut probe, &mut discarded).await {
                Parked::Resumed => continue,
                Parked::End => break,
                Parked::Gone => return,
            }
        }
        let frame = tokio::select! {
            biased;
            frame = open.next_chunk() => frame,
            read = read_some(&out.socket, &mut probe) => match read {
                // An SSE client sends nothing after its request; whatever it sends is dropped, up to
                // a point.
                Ok(n) if n > 0 && discarded + n <= MAX_DISCARD => {
                    discarded += n;
                    continue;
                }
                // The client went away.
                _ => return,
            },
        };
        let Some(frame) = frame else { break };
        if out.frame(Some(frame)).await.is_err() {
            return;
        }
    }
    drop((slot, open));
    out.end().await;
}

/// How a park ended.
enum Parked {
    /// The stream has its socket back and has queued what its client misses.
    Resumed,
    /// The stream ends (shutdown, its key is no longer valid, its environment is gone).
    End,
    /// The client went away.
    Gone,
}

/// Parks the stream until a heartbeat, the client, or the fan-out needs its task; then takes the socket
/// back, writes what a partial write left, and resumes the stream from the revision the fan-out reached.
async fn parked(
    out: &mut Writer,
    open: &mut Open,
    slot: &SlotHandle,
    revision: u64,
    probe: &mut [u8],
    discarded: &mut usize,
) -> Parked {
    slot.park(&out.socket, revision);
    if open.current_revision() != Some(revision) {
        // A change went by before the slot was parked (or the environment went away).
        slot.wake();
    }
    enum Woke {
        Signal(Option<Bytes>),
        Fanout,
        Read(io::Result<usize>),
    }
    let woke = tokio::select! {
        biased;
        heartbeat = open.signalled() => Woke::Signal(heartbeat),
        () = slot.woken() => Woke::Fanout,
        read = read_some(&out.socket, probe) => Woke::Read(read),
    };
    let (revision, rest) = slot.unpark();
    if let Some(rest) = rest
        && write_all(&out.socket, rest).await.is_err()
    {
        return Parked::Gone;
    }
    match woke {
        Woke::Signal(None) => return Parked::End,
        Woke::Signal(Some(heartbeat)) => open.queue(heartbeat),
        Woke::Read(Ok(n)) if n > 0 && *discarded + n <= MAX_DISCARD => *discarded += n,
        Woke::Read(_) => return Parked::Gone,
        Woke::Fanout => {}
    }
    if open.resume(revision) { Parked::Resumed } else { Parked::End }
}

/// Reads what the client sends (an SSE client sends nothing: this waits for it to go away).
async fn read_some(socket: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        socket.readable().await?;
        match socket.try_read(buf) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            read => return read,
        }
    }
}

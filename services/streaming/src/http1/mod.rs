//! The streaming deployment's own HTTP/1.1 server: what [`Application`](crate::Application) serves.
//!
//! Why not actix, as everywhere else: actix-http's HTTP/1 dispatcher gives every connection an 8 KiB
//! read buffer and an 8 KiB write buffer for its whole life (neither is configurable), ten times what
//! an idle stream needs. Here a connection reads its request head into a small buffer, answers, and
//! for a stream drops that buffer and keeps only the stream's own state; frames are written straight
//! from the (shared) `Bytes` to the socket, and while a stream is idle a read of a few bytes, inside
//! the connection's future, notices the client going away. What each route answers is the same code
//! as on the actix path ([`crate::routes`]), so the two paths send the same bytes.
//!
//! * One task per connection (no task per stream beyond it). `TCP_NODELAY`, so a small patch is not
//!   held back behind the previous one's acknowledgement.
//! * Unfiltered server streams are *parked* while they are caught up: the fan-out
//!   ([`crate::fanout`]) writes each change to their sockets without waking their tasks.
//! * Request heads: at most `MAX_HEAD` bytes (`431` beyond, `400` when malformed, both
//!   problem+json, then the connection is closed); a head must arrive within the head timeout
//!   (default [`HEAD_TIMEOUT`]), else the connection is closed without an answer. Requests are not
//!   expected to have bodies: one that announces a body is answered, and its connection then closed.
//! * Routes: the three streams (`GET`, and CORS preflights as `vexil_dataplane_http::cors` answers them), the
//!   probes (`GET`), and a problem+json `404` / `405` for anything else. A doubled leading slash is
//!   accepted (PROTOCOLS.md item 7), as is an absolute-form target.
//! * Keep-alive: probe and error answers keep an HTTP/1.1 connection open for the next request
//!   (`Connection: close` ends it; HTTP/1.0 connections always end); the same head timeout bounds the
//!   wait for it. A stream's connection ends with the stream (`Connection: close`, chunked body, so a
//!   clean end is `0\r\n\r\n`; close-delimited for HTTP/1.0).
//! * A write that makes no progress for `WRITE_STALL` (a client that stopped reading) ends the
//!   connection.
//! * Shutdown: stop accepting, end every stream (the streams' shared signal does it), close idle
//!   keep-alive connections, and wait — at most the grace period — for the rest to finish.
//!
//! | module | what |
//! | --- | --- |
//! | here | accepting, each connection's life, and the drain on shutdown |
//! | `head` | reading and parsing a request head |
//! | `router` | what a request is answered with: a stream, a probe, a preflight, a problem |
//! | `response` | writing response heads and chunks |
//! | `stream` | writing a stream, parking it with the fan-out, noticing a client that goes away |
//! | `socket` | non-blocking socket writes with a stall timeout, and closing |

mod head;
mod response;
mod router;
mod socket;
mod stream;

use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;

pub(crate) use response::chunked;
pub(crate) use router::Shared;

use self::router::Action;
use self::socket::{close, write_all};
use self::stream::{Writer, stream};
use crate::stream::Body;

/// How long a request head may take to arrive, from the connection's start or the previous answer
/// (actix's `client_request_timeout` and keep-alive are both 5 s).
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The listen backlog: ten thousand clients reconnecting at once to a restarted replica should queue,
/// not be refused (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: u32 = 1024;

/// Binds `host:port` (the first address of `host` that binds), with `SO_REUSEADDR` so that a
/// restarted replica gets its port back at once.
pub(crate) fn bind(host: &str, port: u16) -> anyhow::Result<TcpListener> {
    let mut last_error = None;
    for address in (host, port).to_socket_addrs().with_context(|| format!("resolving {host}"))? {
        match listen(address) {
            Ok(listener) => return Ok(listener),
            Err(error) => last_error = Some(error),
        }
    }
    let error = last_error.unwrap_or_else(|| io::Error::other("no address"));
    Err(error).with_context(|| format!("binding {host}:{port}"))
}

fn listen(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(BACKLOG)
}

/// Serves `listener` until `stop` resolves; then stops accepting, ends every stream, and waits at most
/// `grace` for the open connections to finish.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: impl Future<Output = ()>,
    grace: Duration,
) {
    // Every connection holds a sender; `recv` answers `None` once they are all gone.
    let (tracker, mut drained) = mpsc::channel::<()>(1);
    tokio::select! {
        () = accept(&listener, &shared, &tracker) => {}
        () = stop => {}
    }
    drop(listener);
    tracing::info!(
        streams = shared.streaming.metrics().connections(),
        "shutting down: ending streams and draining"
    );
    shared.streaming.shutdown();
    drop(tracker);
    if tokio::time::timeout(grace, drained.recv()).await.is_err() {
        tracing::warn!(?grace, "connections still open after the shutdown grace period; leaving them");
    }
}

async fn accept(listener: &TcpListener, shared: &Arc<Shared>, tracker: &mpsc::Sender<()>) {
    loop {
        match listener.accept().await {
            Ok((socket, _)) => {
                tokio::spawn(connection(socket, Arc::clone(shared), tracker.clone()));
            }
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(error) => {
                // Out of file descriptors, mostly: wait for some to close rather than spin.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One connection, from accept to close. `_tracked` tells the drain when it is gone.
///
/// Its requests are handled in a future of their own, boxed, which ends (freeing the read buffer, the
/// head timer and everything else a request needs) when the connection closes or becomes a stream:
/// an idle stream's connection is this future holding only the stream's.
async fn connection(socket: TcpStream, shared: Arc<Shared>, _tracked: mpsc::Sender<()>) {
    // Best effort: without it small frames may wait for the previous segment's acknowledgement.
    let _ = socket.set_nodelay(true);
    if let Some((socket, head, body, chunked)) = Box::pin(requests(socket, &shared)).await {
        let mut out = Writer { socket: Arc::new(socket), head, chunked };
        match body {
            Body::Open(open) => stream(out, open, &shared.fanout).await,
            Body::RetryLater(frame) => {
                if out.frame(Some(frame)).await.is_ok() {
                    out.end().await;
                }
            }
        }
    }
}

/// Answers requests until the connection closes (`None`) or a request opens a stream: then the
/// socket, the stream's head and body, and whether it is chunked.
async fn requests(mut socket: TcpStream, shared: &Shared) -> Option<(TcpStream, Vec<u8>, Body, bool)> {
    let mut buf = Vec::new();
    loop {
        match head::read_request(&mut socket, &mut buf, shared).await? {
            Action::Reply { response, keep_alive } => {
                write_all(&socket, response.as_slice()).await.ok()?;
                if !keep_alive {
                    Box::pin(close(socket)).await;
                    return None;
                }
            }
            Action::Stream { head, body, chunked } => return Some((socket, head, body, chunked)),
        }
    }
}

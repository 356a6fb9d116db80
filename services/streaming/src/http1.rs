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
//! * Request heads: at most [`MAX_HEAD`] bytes (`431` beyond, `400` when malformed, both
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
//! * A write that makes no progress for [`WRITE_STALL`] (a client that stopped reading) ends the
//!   connection.
//! * Shutdown: stop accepting, end every stream (the streams' shared signal does it), close idle
//!   keep-alive connections, and wait — at most the grace period — for the rest to finish.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue, HttpDate};
use actix_web::web::{self, Buf, Bytes, BytesMut};
use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use vexil_dataplane::Cache;
use vexil_http::error::{ApiError, ErrorCode, PROBLEM_CONTENT_TYPE};

use crate::fanout::{Fanout, SlotHandle};
use crate::routes::health::{self, Reply};
use crate::routes::{StreamRequest, StreamRoute, header_text};
use crate::sse;
use crate::state::StreamingState;
use crate::stream::{Body, Open};

/// The largest request head (request line and headers) accepted. Stream URLs carry a key and, for
/// client streams, a base64url context; browsers add cookies. actix allows 32 KiB; an EventSource
/// request is well under 2 KiB.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// The most headers a request may have (each costs 32 bytes of stack while the head is parsed).
const MAX_HEADERS: usize = 64;
/// The read buffer's first size: enough for almost every request head in one read.
const FIRST_READ: usize = 1024;
/// How long a request head may take to arrive, from the connection's start or the previous answer
/// (actix's `client_request_timeout` and keep-alive are both 5 s).
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a write may make no progress before the connection is given up.
const WRITE_STALL: Duration = Duration::from_secs(30);
/// What a stream's client may send after its request (nothing, normally) before it is disconnected.
const MAX_DISCARD: usize = MAX_HEAD;
/// The listen backlog: ten thousand clients reconnecting at once to a restarted replica should queue,
/// not be refused (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: u32 = 1024;

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) cache: web::Data<Cache>,
    pub(crate) streaming: web::Data<StreamingState>,
    pub(crate) fanout: Fanout,
    pub(crate) head_timeout: Duration,
}

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

/// What to do with a request.
enum Action {
    /// Write this whole answer; then read the next request, or close.
    Reply { response: Vec<u8>, keep_alive: bool },
    /// Write this head, then the stream's frames; the connection ends with the stream.
    Stream { head: Vec<u8>, body: Body, chunked: bool },
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
        let mut out = Out { socket: Arc::new(socket), head, chunked };
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
        match read_request(&mut socket, &mut buf, shared).await? {
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

/// Reads the next request head into `buf` (which may already hold it: a pipelined request) and decides
/// what to do with it. `None`: close without an answer (the client went away, the head timed out, or
/// the server is shutting down).
async fn read_request(socket: &mut TcpStream, buf: &mut Vec<u8>, shared: &Shared) -> Option<Action> {
    let deadline = tokio::time::sleep(shared.head_timeout);
    let stopped = shared.streaming.stopped();
    tokio::pin!(deadline, stopped);
    loop {
        match parse(buf, shared) {
            Parsed::Partial => {}
            Parsed::Done { consumed, action } => {
                buf.drain(..consumed);
                return Some(action);
            }
        }
        if buf.len() >= MAX_HEAD {
            let error = ApiError::new(
                ErrorCode::HeadersTooLarge,
                format!("the request line and headers are larger than {MAX_HEAD} bytes"),
            );
            return Some(problem(&error, &[], true));
        }
        if buf.len() == buf.capacity() {
            buf.reserve_exact(buf.capacity().max(FIRST_READ).min(MAX_HEAD - buf.len()));
        }
        let read = tokio::select! {
            biased;
            () = &mut stopped => return None,
            () = &mut deadline => return None,
            read = socket.read_buf(buf) => read,
        };
        if !matches!(read, Ok(1..)) {
            return None;
        }
    }
}

enum Parsed {
    Partial,
    Done { consumed: usize, action: Action },
}

/// Parses a request head and answers it (without waiting: a stream answer is its head and its body to
/// be polled). The header array lives on the stack of this call only, never in a connection's future.
fn parse(buf: &[u8], shared: &Shared) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Ok(httparse::Status::Complete(consumed)) => {
            let mut action = respond(&request, shared);
            if let (Some("HEAD"), Action::Reply { response, .. }) = (request.method, &mut action) {
                // The answer to a HEAD request has no body (its `Content-Length` is the body a GET
                // would have had).
                if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
                    response.truncate(end + 4);
                }
            }
            Parsed::Done { consumed, action }
        }
        Err(httparse::Error::TooManyHeaders) => {
            let error = ApiError::new(
                ErrorCode::HeadersTooLarge,
                format!("a request may have at most {MAX_HEADERS} headers"),
            );
            Parsed::Done { consumed: buf.len(), action: problem(&error, &[], true) }
        }
        Err(error) => {
            let error =
                ApiError::new(ErrorCode::MalformedRequest, format!("not an HTTP/1.1 request head: {error}"));
            Parsed::Done { consumed: buf.len(), action: problem(&error, &[], true) }
        }
    }
}

/// The first value of header `name`.
fn header<'h>(headers: &[httparse::Header<'h>], name: &str) -> Option<&'h [u8]> {
    headers.iter().find(|header| header.name.eq_ignore_ascii_case(name)).map(|header| header.value)
}

/// Routes a complete request head.
fn respond(request: &httparse::Request<'_, '_>, shared: &Shared) -> Action {
    let headers = &*request.headers;
    let method = request.method.unwrap_or_default();
    let http11 = request.version == Some(1);
    // A body this server does not read would be taken for the next request: answer, then close.
    let has_body = header(headers, "transfer-encoding").is_some()
        || header(headers, "content-length").is_some_and(|length| length.trim_ascii() != b"0");
    let close = !http11
        || has_body
        || header(headers, "connection").is_some_and(|value| has_token(value, "close"))
        || shared.streaming.is_shutting_down();
    let (path, query) = split_target(request.path.unwrap_or_default());

    if let Some(route) = StreamRoute::of_path(path) {
        // As `vexil_dataplane_http::cors` wraps these routes on the actix path.
        let origin = header(headers, "origin").and_then(|origin| HeaderValue::from_bytes(origin).ok());
        let cors = origin.clone().map(vexil_dataplane_http::cors_response_headers);
        let cors = cors.as_ref().map_or(&[][..], |headers| &headers[..]);
        return match method {
            "GET" => {
                let req = StreamRequest {
                    query,
                    authorization: header(headers, "authorization").and_then(header_text),
                    api_key: header(headers, "x-api-key").and_then(header_text),
                    last_event_id: header(headers, "last-event-id")
                        .map(|value| header_text(value).unwrap_or("\u{fffd}")),
                };
                match route.open(&req, &shared.cache, &shared.streaming) {
                    Ok(body) => Action::Stream { head: stream_head(http11, cors), body, chunked: http11 },
                    Err(error) => problem(&error, cors, close),
                }
            }
            "OPTIONS" if header(headers, "access-control-request-method").is_some() => {
                let mut head = ResponseHead::new(StatusCode::NO_CONTENT);
                for (name, value) in vexil_dataplane_http::cors_preflight_headers(origin) {
                    head.header(name.as_str(), value.as_bytes());
                }
                Action::Reply { response: head.finish(None, close), keep_alive: !close }
            }
            _ => {
                let error = ApiError::new(ErrorCode::MethodNotAllowed, format!("{path} answers GET"));
                let mut headers = cors.to_vec();
                headers.push((HeaderName::from_static("allow"), HeaderValue::from_static("GET, OPTIONS")));
                problem(&error, &headers, close)
            }
        };
    }
    let probe: fn(&Shared) -> Reply = match path {
        "/healthz" => |_| health::health(),
        "/readyz" => |shared| health::readiness(&shared.cache, &shared.streaming),
        "/metrics" => |shared| health::metrics_text(&shared.streaming),
        _ => return problem(&ApiError::new(ErrorCode::NotFound, "no such route"), &[], close),
    };
    if method != "GET" {
        let error = ApiError::new(ErrorCode::MethodNotAllowed, format!("{path} answers GET"));
        let allow = [(HeaderName::from_static("allow"), HeaderValue::from_static("GET"))];
        return problem(&error, &allow, close);
    }
    let Reply { status, content_type, body } = probe(shared);
    let mut head = ResponseHead::new(status);
    head.header("content-type", content_type.as_bytes());
    Action::Reply { response: head.finish(Some(&body), close), keep_alive: !close }
}

/// A problem+json answer for `error`, with `headers` besides its own.
fn problem(error: &ApiError, headers: &[(HeaderName, HeaderValue)], close: bool) -> Action {
    let mut head = ResponseHead::new(error.code().status());
    for (name, value) in error.problem_headers() {
        head.header(name, value.as_bytes());
    }
    head.header("content-type", PROBLEM_CONTENT_TYPE.as_bytes());
    for (name, value) in headers {
        head.header(name.as_str(), value.as_bytes());
    }
    // Serialising a problem document into memory cannot fail.
    let body = serde_json::to_vec(&error.problem()).unwrap_or_default();
    Action::Reply { response: head.finish(Some(&body), close), keep_alive: !close }
}

/// The head of a stream answer: `200` and [`sse::HEADERS`], chunked (HTTP/1.1) or close-delimited.
fn stream_head(http11: bool, cors: &[(HeaderName, HeaderValue)]) -> Vec<u8> {
    let mut head = ResponseHead::new(StatusCode::OK);
    for (name, value) in sse::HEADERS {
        head.header(name, value.as_bytes());
    }
    for (name, value) in cors {
        head.header(name.as_str(), value.as_bytes());
    }
    if http11 {
        head.header("transfer-encoding", b"chunked");
    }
    head.finish(None, true)
}

/// An answer's status line and headers (names written in lower case, as actix writes them).
struct ResponseHead(Vec<u8>);

impl ResponseHead {
    fn new(status: StatusCode) -> ResponseHead {
        let mut head = Vec::with_capacity(256);
        head.extend_from_slice(b"HTTP/1.1 ");
        head.extend_from_slice(status.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        head.extend_from_slice(b"\r\n");
        ResponseHead(head)
    }

    fn header(&mut self, name: &str, value: &[u8]) {
        self.0.extend(name.bytes().map(|b| b.to_ascii_lowercase()));
        self.0.extend_from_slice(b": ");
        self.0.extend_from_slice(value);
        self.0.extend_from_slice(b"\r\n");
    }

    /// The head, with `Content-Length` when there is a `body` (which follows it), `Connection: close`
    /// when the connection ends after this answer, and `Date`.
    fn finish(mut self, body: Option<&[u8]>, close: bool) -> Vec<u8> {
        if let Some(body) = body {
            self.header("content-length", body.len().to_string().as_bytes());
        }
        if close {
            self.header("connection", b"close");
        }
        self.header("date", HttpDate::from(SystemTime::now()).to_string().as_bytes());
        self.0.extend_from_slice(b"\r\n");
        if let Some(body) = body {
            self.0.extend_from_slice(body);
        }
        self.0
    }
}

/// Whether a comma-separated header value has `token` (case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    value.split(|&b| b == b',').any(|part| part.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The path and the query of a request target: an absolute-form target (`http://host/path`) loses its
/// scheme and authority, and repeated leading slashes count as one.
fn split_target(target: &str) -> (&str, &str) {
    let target = match target.split_once("://") {
        Some((scheme, rest)) if !scheme.contains(['/', '?']) => rest.find('/').map_or("/", |at| &rest[at..]),
        _ => target,
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let trimmed = path.trim_start_matches('/');
    let path = if trimmed.len() + 1 < path.len() { &path[path.len() - trimmed.len() - 1..] } else { path };
    (path, query)
}

/// The writing side of a stream's connection: the response head until the first frame goes out with
/// it, then frames as chunks (or as they are, for HTTP/1.0).
struct Out {
    /// Shared with the fan-out while the stream is parked.
    socket: Arc<TcpStream>,
    head: Vec<u8>,
    chunked: bool,
}

impl Out {
    /// Writes one frame (whole, straight from its bytes: no copy into a buffer), or with `None` the end
    /// of the body.
    async fn frame(&mut self, frame: Option<Bytes>) -> io::Result<()> {
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
    async fn end(mut self) {
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
async fn stream(mut out: Out, mut open: Box<Open>, fanout: &Fanout) {
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
    out: &mut Out,
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

/// A frame as one HTTP chunk, for the fan-out to write whole.
pub(crate) fn chunked(frame: &[u8]) -> Bytes {
    let (size, len) = chunk_size(frame.len());
    let mut chunk = BytesMut::with_capacity(len + frame.len() + 2);
    chunk.extend_from_slice(&size[..len]);
    chunk.extend_from_slice(frame);
    chunk.extend_from_slice(b"\r\n");
    chunk.freeze()
}

/// A chunk's size line (`<hex>\r\n`).
fn chunk_size(len: usize) -> ([u8; 18], usize) {
    let mut line = [0u8; 18];
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, byte) in line[..digits].iter_mut().enumerate() {
        *byte = b"0123456789abcdef"[(len >> (4 * (digits - 1 - i))) & 0xf];
    }
    line[digits..digits + 2].copy_from_slice(b"\r\n");
    (line, digits + 2)
}

/// Writes all of `buf`, giving up when a write makes no progress for [`WRITE_STALL`].
///
/// Most writes go through at once (the socket's send buffer has room): those are tried without a
/// timer, so that the timer's state is not part of every stream's future; only a write that has to
/// wait boxes one.
async fn write_all(socket: &TcpStream, mut buf: impl Buf + Send) -> io::Result<()> {
    loop {
        if !buf.has_remaining() {
            return Ok(());
        }
        match try_write(socket, &mut buf) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
            written => written?,
        }
    }
    Box::pin(write_waiting(socket, buf)).await
}

/// One non-blocking write of as much of `buf` as the socket takes.
fn try_write(socket: &TcpStream, buf: &mut impl Buf) -> io::Result<()> {
    let mut slices = [io::IoSlice::new(&[]); 8];
    let count = buf.chunks_vectored(&mut slices);
    match socket.try_write_vectored(&slices[..count])? {
        0 => Err(io::ErrorKind::WriteZero.into()),
        n => {
            buf.advance(n);
            Ok(())
        }
    }
}

async fn write_waiting(socket: &TcpStream, mut buf: impl Buf) -> io::Result<()> {
    while buf.has_remaining() {
        match tokio::time::timeout(WRITE_STALL, socket.writable()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error),
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        }
        match try_write(socket, &mut buf) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            written => written?,
        }
    }
    Ok(())
}

/// Ends a connection after its last answer: a FIN, then whatever the client still sends is read and
/// dropped for a moment, so that closing with unread bytes (a request body, the rest of an oversized
/// head) does not reset the connection before the client has read the answer.
async fn close(mut socket: TcpStream) {
    let _ = socket.shutdown().await;
    let drain = async {
        let mut sink = vec![0u8; 512];
        let mut left = 64 * 1024usize;
        while let Ok(n @ 1..) = socket.read(&mut sink).await {
            left = left.saturating_sub(n);
            if left == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(frame: &[u8]) -> Vec<u8> {
        let (size, len) = chunk_size(frame.len());
        [&size[..len], frame, b"\r\n"].concat()
    }

    #[test]
    fn chunk_sizes_are_lower_case_hex() {
        for (len, line) in [
            (0, "0\r\n"),
            (1, "1\r\n"),
            (15, "f\r\n"),
            (16, "10\r\n"),
            (4096, "1000\r\n"),
            (100_000, "186a0\r\n"),
        ] {
            let (size, n) = chunk_size(len);
            assert_eq!(std::str::from_utf8(&size[..n]).unwrap(), line, "{len}");
        }
        assert_eq!(chunk_size(usize::MAX).1, 18);
        assert_eq!(chunk(b"abc"), b"3\r\nabc\r\n");
    }

    #[test]
    fn targets_split_into_path_and_query() {
        assert_eq!(split_target("/v1/stream?key=a&b=c"), ("/v1/stream", "key=a&b=c"));
        assert_eq!(split_target("/healthz"), ("/healthz", ""));
        assert_eq!(split_target("//ofrep/v1/stream?key=k"), ("/ofrep/v1/stream", "key=k"));
        assert_eq!(split_target("///x"), ("/x", ""));
        assert_eq!(split_target("/"), ("/", ""));
        assert_eq!(split_target("http://example.com/v1/stream?key=k"), ("/v1/stream", "key=k"));
        assert_eq!(split_target("http://example.com"), ("/", ""));
        assert_eq!(split_target("/a?next=http://b/c"), ("/a", "next=http://b/c"));
        assert_eq!(split_target("*"), ("*", ""));
    }

    #[test]
    fn connection_tokens_are_case_insensitive_and_comma_separated() {
        assert!(has_token(b"close", "close"));
        assert!(has_token(b"Keep-Alive, Close", "close"));
        assert!(!has_token(b"keep-alive", "close"));
        assert!(!has_token(b"closed", "close"));
    }
}

//! Reading a request head: into a small buffer that grows only as needed, within the head timeout,
//! then parsed with `httparse` (the header array on the stack of one call, never in a connection's
//! future) and handed to the router.

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use vexil_http::error::{ApiError, ErrorCode};

use super::router::{Action, Shared, problem, respond};

/// The largest request head (request line and headers) accepted. Stream URLs carry a key and, for
/// client streams, a base64url context; browsers add cookies. actix allows 32 KiB; an EventSource
/// request is well under 2 KiB.
pub(super) const MAX_HEAD: usize = 16 * 1024;
/// The most headers a request may have (each costs 32 bytes of stack while the head is parsed).
const MAX_HEADERS: usize = 64;
/// The read buffer's first size: enough for almost every request head in one read.
const FIRST_READ: usize = 1024;

/// Reads the next request head into `buf` (which may already hold it: a pipelined request) and decides
/// what to do with it. `None`: close without an answer (the client went away, the head timed out, or
/// the server is shutting down).
pub(super) async fn read_request(
    socket: &mut TcpStream,
    buf: &mut Vec<u8>,
    shared: &Shared,
) -> Option<Action> {
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

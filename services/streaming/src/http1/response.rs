//! Response heads (status line and headers, names in lower case as actix writes them) and HTTP/1.1
//! chunks.

use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, StatusCode};

use crate::stream;

/// The head of a stream answer: `200` and [`stream::HEADERS`], chunked (HTTP/1.1) or close-delimited.
pub(super) fn stream_head(http11: bool, cors: &[(HeaderName, HeaderValue)]) -> Vec<u8> {
    let mut head = ResponseHead::new(StatusCode::OK);
    for (name, value) in stream::HEADERS {
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
pub(super) struct ResponseHead(Vec<u8>);

impl ResponseHead {
    pub(super) fn new(status: StatusCode) -> ResponseHead {
        let mut head = Vec::with_capacity(256);
        head.extend_from_slice(b"HTTP/1.1 ");
        head.extend_from_slice(status.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        head.extend_from_slice(b"\r\n");
        ResponseHead(head)
    }

    pub(super) fn header(&mut self, name: &str, value: &[u8]) {
        self.0.extend(name.bytes().map(|b| b.to_ascii_lowercase()));
        self.0.extend_from_slice(b": ");
        self.0.extend_from_slice(value);
        self.0.extend_from_slice(b"\r\n");
    }

    /// The head, with `Content-Length` when there is a `body` (which follows it), `Connection: close`
    /// when the connection ends after this answer, and `Date`.
    pub(super) fn finish(mut self, body: Option<&[u8]>, close: bool) -> Vec<u8> {
        if let Some(body) = body {
            self.header("content-length", body.len().to_string().as_bytes());
        }
        if close {
            self.header("connection", b"close");
        }
        self.header("date", httpdate::fmt_http_date(SystemTime::now()).as_bytes());
        self.0.extend_from_slice(b"\r\n");
        if let Some(body) = body {
            self.0.extend_from_slice(body);
        }
        self.0
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
pub(super) fn chunk_size(len: usize) -> ([u8; 18], usize) {
    let mut line = [0u8; 18];
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, byte) in line[..digits].iter_mut().enumerate() {
        *byte = b"0123456789abcdef"[(len >> (4 * (digits - 1 - i))) & 0xf];
    }
    line[digits..digits + 2].copy_from_slice(b"\r\n");
    (line, digits + 2)
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
        assert_eq!(&chunked(b"abc")[..], b"3\r\nabc\r\n");
    }
}

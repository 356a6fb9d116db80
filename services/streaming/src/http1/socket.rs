//! Socket writes that never hold a stream's future longer than needed, and a polite close.

use std::io;
use std::time::Duration;

use bytes::Buf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a write may make no progress before the connection is given up.
const WRITE_STALL: Duration = Duration::from_secs(30);

/// Writes all of `buf`, giving up when a write makes no progress for [`WRITE_STALL`].
///
/// Most writes go through at once (the socket's send buffer has room): those are tried without a
/// timer, so that the timer's state is not part of every stream's future; only a write that has to
/// wait boxes one.
pub(super) async fn write_all(socket: &TcpStream, mut buf: impl Buf + Send) -> io::Result<()> {
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
pub(super) async fn close(mut socket: TcpStream) {
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

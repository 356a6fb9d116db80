//! Just enough of the Redis protocol (RESP2) to check on a server without a client library.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Connect, read and write timeout of one command: loopback servers answer in microseconds, so
/// this only bounds a server that is hung or not Redis at all.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends one command to the Redis server on `127.0.0.1:port` and returns its reply as text.
///
/// Simple strings, integers and bulk strings are returned as text (a nil bulk string as ""); an
/// error reply is an [`io::Error`]. Arrays are not needed by the callers and are refused.
pub(crate) fn command(port: u16, args: &[&str]) -> io::Result<String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&address, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;

    let mut request = Vec::new();
    write!(request, "*{}\r\n", args.len())?;
    for arg in args {
        write!(request, "${}\r\n{arg}\r\n", arg.len())?;
    }
    (&stream).write_all(&request)?;

    read_reply(&mut BufReader::new(&stream))
}

/// The `process_id` the server on `port` reports, or `None` when nothing answers there.
pub(crate) fn server_pid(port: u16) -> Option<u32> {
    let info = command(port, &["INFO", "server"]).ok()?;
    info.lines().find_map(|line| line.strip_prefix("process_id:")).and_then(|pid| pid.trim().parse().ok())
}

fn read_reply(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection"));
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let Some(kind) = line.chars().next() else {
        return Err(invalid("an empty reply line"));
    };
    let rest = &line[1..];
    match kind {
        '+' | ':' => Ok(rest.to_owned()),
        '-' => Err(io::Error::other(format!("redis error: {rest}"))),
        '$' => {
            let length: i64 = rest.parse().map_err(|_| invalid(line))?;
            let Ok(length) = usize::try_from(length) else {
                return Ok(String::new());
            };
            let mut body = vec![0; length + 2];
            reader.read_exact(&mut body)?;
            body.truncate(length);
            String::from_utf8(body).map_err(|_| invalid("a bulk string that is not UTF-8"))
        }
        _ => Err(invalid(line)),
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("unexpected reply: {what}"))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::read_reply;

    #[test]
    fn simple_strings_integers_and_bulk_strings_are_read_as_text() {
        assert_eq!(read_reply(&mut Cursor::new("+PONG\r\n")).unwrap(), "PONG");
        assert_eq!(read_reply(&mut Cursor::new(":42\r\n")).unwrap(), "42");
        assert_eq!(read_reply(&mut Cursor::new("$10\r\na\r\nb:c\r\nde\r\n")).unwrap(), "a\r\nb:c\r\nde");
        assert_eq!(read_reply(&mut Cursor::new("$-1\r\n")).unwrap(), "");
    }

    #[test]
    fn an_error_reply_is_an_error() {
        let error = read_reply(&mut Cursor::new("-ERR unknown command\r\n")).unwrap_err();

        assert!(error.to_string().contains("ERR unknown command"), "{error}");
    }

    #[test]
    fn a_closed_connection_is_an_error() {
        assert!(read_reply(&mut Cursor::new("")).is_err());
    }
}

//! The Server-Sent Events framing (`text/event-stream`, WHATWG HTML §9.2): writing frames
//! ([`frame`], [`retry`], [`PING`]) and an incremental parser ([`SseParser`]) that clients feed the
//! bytes of a response body as they arrive, in whatever pieces the network delivers.
//!
//! ```
//! use vexil_protocol::sse::{SseEvent, SseParser};
//!
//! let mut parser = SseParser::default();
//! assert!(parser.feed(b"retry: 2000\n\nevent: hydrate\nid: 41\nda").is_empty());
//! let events = parser.feed(b"ta: {\"revision\":41}\n\n: ping\n\n");
//! assert_eq!(events, vec![SseEvent { event: "hydrate".into(), id: "41".into(), data: "{\"revision\":41}".into() }]);
//! assert_eq!(parser.retry(), Some(2000));
//! assert_eq!(vexil_protocol::sse::frame("patch", 42, b"{}"), b"event: patch\nid: 42\ndata: {}\n\n");
//! ```

/// The heartbeat: a comment, which every client ignores but which shows the connection is alive.
pub const PING: &[u8] = b": ping\n\n";

/// The `retry:` hint: how long a client waits before reconnecting, in milliseconds.
pub fn retry(millis: u64) -> Vec<u8> {
    format!("retry: {millis}\n\n").into_bytes()
}

/// One event: `event: <name>`, `id: <id>`, and `data` as one `data:` line per line of it.
pub fn frame(name: &str, id: u64, data: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(data.len() + name.len() + 40);
    frame.extend_from_slice(b"event: ");
    frame.extend_from_slice(name.as_bytes());
    frame.extend_from_slice(b"\nid: ");
    frame.extend_from_slice(id.to_string().as_bytes());
    frame.push(b'\n');
    // serde_json never writes a raw line break, but a payload from elsewhere might: SSE joins `data:`
    // lines with "\n", which JSON reads as whitespace, so splitting keeps any JSON intact.
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        frame.extend_from_slice(b"data: ");
        frame.extend_from_slice(line);
        frame.push(b'\n');
    }
    frame.push(b'\n');
    frame
}

/// One dispatched Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event type (`message` when the event named none).
    pub event: String,
    /// The last event id seen on the stream (the `id:` of this event, or of an earlier one).
    pub id: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// An incremental parser of the `text/event-stream` format (WHATWG HTML §9.2): lines end with CRLF, LF
/// or CR; `:` starts a comment; a field's value loses one leading space; `data` lines accumulate; a
/// blank line dispatches the event if it has data; `id` persists across events (unless it contains
/// NUL); `retry` takes digits only. A leading byte-order mark is skipped.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    started: bool,
    after_cr: bool,
    event: String,
    data: String,
    has_data: bool,
    last_id: String,
    retry: Option<u64>,
}

impl SseParser {
    /// Feeds the next bytes of the stream; the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(bytes);
        if !self.started {
            if self.buffer.len() < 3 && b"\xEF\xBB\xBF".starts_with(&self.buffer) {
                return Vec::new();
            }
            if self.buffer.starts_with(b"\xEF\xBB\xBF") {
                self.buffer.drain(..3);
            }
            self.started = true;
        }
        let mut events = Vec::new();
        let mut start = 0;
        if self.after_cr && !self.buffer.is_empty() {
            // The last chunk ended in CR: a LF starting this one belongs to that line end.
            if self.buffer[0] == b'\n' {
                start = 1;
            }
            self.after_cr = false;
        }
        while let Some(offset) = self.buffer[start..].iter().position(|&b| b == b'\n' || b == b'\r') {
            let end = start + offset;
            let next = match self.buffer[end] {
                b'\r' if end + 1 == self.buffer.len() => {
                    self.after_cr = true;
                    end + 1
                }
                b'\r' if self.buffer[end + 1] == b'\n' => end + 2,
                _ => end + 1,
            };
            let line = String::from_utf8_lossy(&self.buffer[start..end]).into_owned();
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
            start = next;
        }
        self.buffer.drain(..start);
        events
    }

    /// The last `retry:` value, in milliseconds.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// The last event id seen (`""` before any).
    pub fn last_event_id(&self) -> &str {
        &self.last_id
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        let data = std::mem::take(&mut self.data);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        let event = if event.is_empty() { "message".to_owned() } else { event };
        Some(SseEvent { event, id: self.last_id.clone(), data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_has_a_name_an_id_and_one_data_line_per_line() {
        assert_eq!(
            frame("patch", 42, b"{\"a\":\r\n1}"),
            b"event: patch\nid: 42\ndata: {\"a\":\ndata: 1}\n\n"
        );
    }

    #[test]
    fn what_is_written_is_read_back() {
        let mut written = retry(1500);
        written.extend_from_slice(&frame("hydrate", 7, b"{\"revision\":7,\n\"flags\":[]}"));
        written.extend_from_slice(PING);
        let mut parser = SseParser::default();
        let events = parser.feed(&written);
        assert_eq!(
            events,
            vec![SseEvent {
                event: "hydrate".into(),
                id: "7".into(),
                data: "{\"revision\":7,\n\"flags\":[]}".into()
            }]
        );
        assert_eq!(parser.retry(), Some(1500));
    }

    fn parse_in_pieces(text: &[u8], piece: usize) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        text.chunks(piece.max(1)).flat_map(|chunk| parser.feed(chunk)).collect()
    }

    fn event(event: &str, id: &str, data: &str) -> SseEvent {
        SseEvent { event: event.into(), id: id.into(), data: data.into() }
    }

    #[test]
    fn parses_events_comments_and_multiline_data_in_any_chunking() {
        let text =
            b"\xEF\xBB\xBFretry: 2000\n\n: ping\n\nevent: hydrate\nid: 41\ndata: {\"a\":\ndata: 1}\n\n\
                     event:patch\r\nid:42\r\ndata:x\r\n\r\ndata: no type\rid\r\r";
        let expected = vec![
            event("hydrate", "41", "{\"a\":\n1}"),
            event("patch", "42", "x"),
            event("message", "", "no type"),
        ];
        for piece in 1..text.len() {
            assert_eq!(parse_in_pieces(text, piece), expected, "in pieces of {piece}");
        }
        let mut parser = SseParser::default();
        parser.feed(b"retry: 1500\n\nretry: x\n");
        assert_eq!(parser.retry(), Some(1500));
    }

    #[test]
    fn an_event_without_data_is_not_dispatched_but_its_id_persists() {
        let events = parse_in_pieces(b"event: x\nid: 7\n\ndata: y\n\ndata\n\n", 64);
        assert_eq!(events, vec![event("message", "7", "y"), event("message", "7", "")]);
    }

    #[test]
    fn the_last_event_id_is_remembered_and_an_id_with_nul_is_ignored() {
        let mut parser = SseParser::default();
        assert_eq!(parser.last_event_id(), "");
        parser.feed(b"id: 9\ndata: a\n\nid: 1\x002\n\n");
        assert_eq!(parser.last_event_id(), "9");
    }
}

//! An incremental parser of the Server-Sent Events format (`text/event-stream`, WHATWG HTML §9.2), with
//! no dependencies beyond `std`.
//!
//! Vexil's streams (`GET /v1/stream`, see the `vexil-streaming` crate) are read by two clients: relay
//! mode (`vexil-dataplane`) and the Rust SDK (`vexil-sdk`). Both feed the bytes of the response body to
//! an [`SseParser`] as they arrive, in whatever pieces the network delivers, and act on the
//! [`SseEvent`]s it completes.
//!
//! ```
//! use vexil_sse::{SseEvent, SseParser};
//!
//! let mut parser = SseParser::default();
//! assert!(parser.feed(b"retry: 2000\n\nevent: hydrate\nid: 41\nda").is_empty());
//! let events = parser.feed(b"ta: {\"revision\":41}\n\n: ping\n\n");
//! assert_eq!(events, vec![SseEvent { event: "hydrate".into(), id: "41".into(), data: "{\"revision\":41}".into() }]);
//! assert_eq!(parser.retry(), Some(2000));
//! ```
#![deny(missing_docs)]

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

//! Where a reconnecting client says it stopped.

/// The `Last-Event-ID` of a stream request: the header, or the `lastEventId` query parameter for
/// clients that can only set the URL (the header wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastEventId {
    /// A first connection (no id, or an empty one: what a client sends before it has seen an id).
    Absent,
    /// The revision of the last event the client received.
    Revision(u64),
    /// Something that is not a revision; the client is sent a fresh start.
    Invalid,
}

impl LastEventId {
    /// Reads it from the header's value, else from the query parameter's.
    pub fn of(header: Option<&str>, query: Option<&str>) -> LastEventId {
        match header.or(query).map(str::trim).filter(|id| !id.is_empty()) {
            None => LastEventId::Absent,
            Some(id) => id.parse().map_or(LastEventId::Invalid, LastEventId::Revision),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_wins_over_the_query_and_garbage_is_invalid() {
        assert_eq!(LastEventId::of(Some("42"), Some("7")), LastEventId::Revision(42));
        assert_eq!(LastEventId::of(None, Some("7")), LastEventId::Revision(7));
        assert_eq!(LastEventId::of(None, None), LastEventId::Absent);
        assert_eq!(LastEventId::of(None, Some(" ")), LastEventId::Absent);
        assert_eq!(LastEventId::of(None, Some("-1")), LastEventId::Invalid);
        assert_eq!(LastEventId::of(Some("abc"), None), LastEventId::Invalid);
    }
}

//! `GET /v1/stream`: every flag configuration and segment of the key's environment, then every change,
//! for server SDKs that evaluate locally.

use std::sync::Arc;

use serde::Deserialize;
use vexil_dataplane::{Cache, EnvironmentState};
use vexil_http::error::{ApiError, ErrorCode};
use vexil_keys::KeyKind;
use vexil_proto::{ChangeEvent, ItemKind};
use vexil_protocol::resume::LastEventId;

use crate::frames;
use crate::routes::request::{Admission, StreamRequest, admit, query};
use crate::state::{EventKind, StreamKind, StreamingState};
use crate::stream::{self, Body, Ctx, Follower, Frames, Open, Params};

/// Longest accepted `prefix`.
const MAX_PREFIX_LEN: usize = 256;

#[derive(Deserialize)]
struct StreamQuery {
    prefix: Option<String>,
    #[serde(rename = "lastEventId")]
    last_event_id: Option<String>,
}

/// Opens a stream of the environment's flag configurations (server keys only): `hydrate`, then `patch`
/// and `delete` per change, each with `id` = the environment's revision. Resumes from `Last-Event-ID`
/// by replaying only the missed events when this replica still has them. `?prefix=` narrows the flags.
#[tracing::instrument(skip_all, fields(environment_id, prefix, last_event_id))]
pub(crate) fn open(
    req: &StreamRequest<'_>,
    cache: &Cache,
    streaming: &Arc<StreamingState>,
) -> Result<Body, ApiError> {
    let key = match admit(req, cache, streaming)? {
        Admission::Key(key) => key,
        Admission::RetryLater => return Ok(Body::RetryLater(streaming.retry_frame())),
    };
    if key.kind != KeyKind::Server {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "the flag stream needs a server key; client keys use /v1/client/stream",
        ));
    }
    let params: StreamQuery = query(req.query)?;
    let prefix = parse_prefix(params.prefix)?;
    let last_event_id = LastEventId::of(req.last_event_id, params.last_event_id.as_deref());
    let span = tracing::Span::current();
    span.record("environment_id", key.environment_id);
    span.record("prefix", prefix.as_deref());
    span.record("last_event_id", tracing::field::debug(last_event_id));

    let Some(start) = stream::start(cache, key.environment_id) else {
        // Deleted since the key was checked.
        return Err(ApiError::new(ErrorCode::Unauthorized, "the SDK key is not valid"));
    };
    let mut follower = FlagStream { prefix, selected: Vec::new(), last_sent: 0 };
    let mut first = Frames::default();
    let ctx = Ctx { cache, streaming, environment_id: key.environment_id, live: false };
    follower.begin(&start.state, last_event_id, &ctx, &mut first);
    tracing::debug!(revision = start.state.revision(), "flag stream opened");
    let open = Open::new(
        Params {
            kind: StreamKind::Server,
            environment_id: key.environment_id,
            key: key.presented,
            feed: start.feed,
            cache: cache.clone(),
            streaming: streaming.clone(),
            follower,
        },
        first,
    );
    Ok(Body::Open(Box::new(open)))
}

fn parse_prefix(prefix: Option<String>) -> Result<Option<Box<str>>, ApiError> {
    let Some(prefix) = prefix.filter(|prefix| !prefix.is_empty()) else { return Ok(None) };
    // Flag keys are `[A-Za-z0-9._-]`: any other prefix would match nothing, which is a mistake to report.
    let valid = prefix.len() <= MAX_PREFIX_LEN
        && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid {
        return Err(ApiError::field(
            ErrorCode::InvalidParameter,
            "prefix",
            format!(
                "a prefix is at most {MAX_PREFIX_LEN} of the characters flag keys use: A-Z a-z 0-9 . _ -"
            ),
        ));
    }
    Ok(Some(prefix.into_boxed_str()))
}

/// A server stream's position: the revision of the last event it sent *or skipped*. Ids are
/// revisions, so events that are not sent (SDK keys, flags outside the prefix) still move it on, and
/// the next event's id jumps over them.
struct FlagStream {
    prefix: Option<Box<str>>,
    /// With a prefix: the keys this stream's client holds, sorted — the prefix's flags and the
    /// prerequisites they reach (which may lie outside the prefix). Empty without a prefix.
    selected: Vec<Box<str>>,
    last_sent: u64,
}

impl FlagStream {
    /// The start of a stream: the missed events when the client resumes and this replica still holds
    /// them, a `hydrate` otherwise.
    fn begin(
        &mut self,
        state: &EnvironmentState,
        last_event_id: LastEventId,
        ctx: &Ctx<'_>,
        out: &mut Frames,
    ) {
        if let LastEventId::Revision(revision) = last_event_id
            // A revision beyond this replica's is one it cannot vouch for (another replica further
            // along, or garbage): a hydrate is always right.
            && revision <= state.revision()
            && let Some(events) = ctx.cache.events_since(state.id(), revision)
        {
            self.last_sent = revision;
            if let Some(prefix) = &self.prefix {
                // What the client holds is not known exactly; the current selection is the best guess,
                // and a replayed change that needs more starts over with a hydrate.
                self.selected = selection(state, prefix);
            }
            for event in &events {
                self.applied(event, ctx, out);
            }
            return;
        }
        self.hydrate(state, ctx, out);
    }

    fn hydrate(&mut self, state: &EnvironmentState, ctx: &Ctx<'_>, out: &mut Frames) {
        let frame = match &self.prefix {
            None => ctx
                .streaming
                .hydrates()
                .get_or_render(state.id(), state.revision(), || frames::hydrate(state, None)),
            Some(prefix) => {
                self.selected = selection(state, prefix);
                frames::hydrate(state, Some(prefix))
            }
        };
        self.last_sent = state.revision();
        out.event(ctx, EventKind::Hydrate, frame);
    }

    /// A flag event on a prefix stream: whether to send it, or to start over with a `hydrate` because
    /// the flags the client needs grew (a flag of the prefix gained a prerequisite it does not have).
    fn narrowed(&mut self, event: &ChangeEvent, prefix: &str, ctx: &Ctx<'_>) -> Narrowed {
        let Some(state) = ctx.cache.environment(ctx.environment_id) else { return Narrowed::Skip };
        let now = selection(&state, prefix);
        let held = |key: &str| self.selected.binary_search_by(|held| (**held).cmp(key)).is_ok();
        if now.iter().any(|key| !held(key)) {
            return Narrowed::Hydrate(state);
        }
        let send = held(&event.key) || now.binary_search_by(|key| (**key).cmp(&event.key)).is_ok();
        self.selected = now;
        if send { Narrowed::Send } else { Narrowed::Skip }
    }
}

/// What a prefix stream does with a flag event.
enum Narrowed {
    Send,
    Skip,
    Hydrate(std::sync::Arc<EnvironmentState>),
}

/// The sorted keys of the flags a `prefix` stream carries: the prefix's and their prerequisites.
fn selection(state: &EnvironmentState, prefix: &str) -> Vec<Box<str>> {
    let mut keys: Vec<Box<str>> = state
        .compiled()
        .selected_with_prerequisites(|flag| flag.key().as_str().starts_with(prefix))
        .into_iter()
        .map(|flag| flag.key().as_str().into())
        .collect();
    keys.sort_unstable();
    keys
}

impl Follower for FlagStream {
    fn applied(&mut self, event: &ChangeEvent, ctx: &Ctx<'_>, out: &mut Frames) {
        if event.revision <= self.last_sent {
            return;
        }
        self.last_sent = event.revision;
        let rendered = match self.prefix.clone() {
            // What every unfiltered stream of the environment sends: rendered once.
            None => ctx
                .streaming
                .changes()
                .get_or_render(ctx.environment_id, event.revision, || frames::change(event)),
            Some(prefix) if event.item() == ItemKind::Flag => match self.narrowed(event, &prefix, ctx) {
                Narrowed::Send => frames::change(event),
                Narrowed::Skip => None,
                Narrowed::Hydrate(state) => {
                    self.hydrate(&state, ctx, out);
                    return;
                }
            },
            Some(_) => frames::change(event),
        };
        if let Some((name, frame)) = rendered {
            let kind = if name == "delete" { EventKind::Delete } else { EventKind::Patch };
            out.delivery(ctx, kind, frame, event.committed_at_ms);
        }
    }

    fn restart(&mut self, state: &EnvironmentState, ctx: &Ctx<'_>, out: &mut Frames) {
        // Already sent up to here (the re-sync landed before this stream read the state).
        if state.revision() <= self.last_sent {
            return;
        }
        self.hydrate(state, ctx, out);
    }

    fn shared_position(&self) -> Option<u64> {
        self.prefix.is_none().then_some(self.last_sent)
    }

    fn resume(&mut self, revision: u64, state: &EnvironmentState, ctx: &Ctx<'_>, out: &mut Frames) {
        // The same as a client reconnecting with `Last-Event-ID: revision`, on the same connection.
        self.begin(state, LastEventId::Revision(revision), ctx, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_uses_the_characters_of_flag_keys_only() {
        assert_eq!(parse_prefix(None).unwrap(), None);
        assert_eq!(parse_prefix(Some(String::new())).unwrap(), None);
        assert_eq!(parse_prefix(Some("checkout.v2-_".into())).unwrap().as_deref(), Some("checkout.v2-_"));
        assert!(parse_prefix(Some("a b".into())).is_err());
        assert!(parse_prefix(Some("a/".into())).is_err());
        assert!(parse_prefix(Some("a".repeat(MAX_PREFIX_LEN + 1))).is_err());
    }
}

//! `GET /ofrep/v1/stream`: OFREP's optional change notifications (PROTOCOLS.md item 10). The stream
//! carries no values: it tells an OpenFeature web provider to re-run its bulk evaluation.

use std::sync::Arc;

use serde::Deserialize;
use vexil_dataplane::{Cache, EnvironmentState};
use vexil_http::error::{ApiError, ErrorCode};
use vexil_proto::{ChangeEvent, ItemKind};
use vexil_protocol::resume::LastEventId;

use crate::frames;
use crate::routes::request::{Admission, StreamRequest, admit, query};
use crate::state::{EventKind, StreamKind, StreamingState};
use crate::stream::{self, Body, Ctx, Follower, Frames, Open, Params};

#[derive(Deserialize)]
struct StreamQuery {
    #[serde(rename = "lastEventId")]
    last_event_id: Option<String>,
}

/// Opens a stream of `message` events `{"type":"refetchEvaluation","etag","lastModified"}`, one
/// whenever a flag or segment of the key's environment changes (client or server keys). Nothing is
/// sent at connect: the provider has just evaluated. A reconnecting client (`Last-Event-ID`) that
/// missed a change gets one `message` at once.
#[tracing::instrument(skip_all, fields(environment_id))]
pub(crate) fn open(
    req: &StreamRequest<'_>,
    cache: &Cache,
    streaming: &Arc<StreamingState>,
) -> Result<Body, ApiError> {
    let key = match admit(req, cache, streaming)? {
        Admission::Key(key) => key,
        Admission::RetryLater => return Ok(Body::RetryLater(streaming.retry_frame())),
    };
    let params: StreamQuery = query(req.query)?;
    let last_event_id = LastEventId::of(req.last_event_id, params.last_event_id.as_deref());
    tracing::Span::current().record("environment_id", key.environment_id);

    let Some(start) = stream::start(cache, key.environment_id) else {
        return Err(ApiError::new(ErrorCode::Unauthorized, "the SDK key is not valid"));
    };
    let mut first = Frames::default();
    let ctx = Ctx { cache, streaming, environment_id: key.environment_id, live: false };
    let revision = start.state.revision();
    if last_event_id != LastEventId::Absent && last_event_id != LastEventId::Revision(revision) {
        // Whatever the client missed while it was away (or an id this replica cannot place): one
        // refetch covers it.
        out_refetch(&mut first, &ctx, revision, start.state.committed_at_ms());
    }
    let open = Open::new(
        Params {
            kind: StreamKind::Ofrep,
            environment_id: key.environment_id,
            key: key.presented,
            feed: start.feed,
            cache: cache.clone(),
            streaming: streaming.clone(),
            follower: ChangeStream { last: revision },
        },
        first,
    );
    Ok(Body::Open(Box::new(open)))
}

fn out_refetch(out: &mut Frames, ctx: &Ctx<'_>, revision: u64, committed_at_ms: i64) {
    out.delivery(ctx, EventKind::Message, frames::refetch(revision, committed_at_ms), committed_at_ms);
}

/// The revision of the last change notified or skipped.
struct ChangeStream {
    last: u64,
}

impl Follower for ChangeStream {
    fn applied(&mut self, event: &ChangeEvent, ctx: &Ctx<'_>, out: &mut Frames) {
        if event.revision <= self.last {
            return;
        }
        self.last = event.revision;
        // An SDK key changes no evaluation.
        if matches!(event.item(), ItemKind::Flag | ItemKind::Segment) {
            out_refetch(out, ctx, event.revision, event.committed_at_ms);
        }
    }

    fn restart(&mut self, state: &EnvironmentState, ctx: &Ctx<'_>, out: &mut Frames) {
        if state.revision() <= self.last {
            return;
        }
        self.last = state.revision();
        out_refetch(out, ctx, state.revision(), state.committed_at_ms());
    }
}

//! `GET /v1/client/stream`: the values of the environment's client-side flags, evaluated by the
//! replica for one context, then only what changes for it. For browsers and mobile apps, which never
//! see a rule.

use std::sync::Arc;

use serde::Deserialize;
use vexil_dataplane::{Cache, EnvironmentState};
use vexil_eval::{Detail, evaluate_all, evaluate_flag};
use vexil_http::error::{ApiError, ErrorCode};
use vexil_model::Context;
use vexil_proto::ChangeEvent;

use crate::routes::request::{Admission, StreamRequest, admit, query};
use crate::state::{EventKind, StreamKind, StreamingState};
use crate::stream::{self, Body, Ctx, Follower, Frames, Open, Params};
use crate::{context, frames};

#[derive(Deserialize)]
struct StreamQuery {
    context: Option<String>,
}

/// Opens a stream of evaluated values for one context (client or server keys; either way only flags
/// marked `client_side`): `values` with every value, then `values` with only the flags whose value or
/// variation changed for this context, and `delete` for flags it may no longer see.
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
    let context = match params.context.as_deref() {
        // OpenFeature clients send an empty context when the app gave none; only flags that need a
        // targeting key will say so.
        None | Some("") => Context::anonymous(),
        Some(encoded) => context::parse(encoded)
            .map_err(|error| ApiError::field(ErrorCode::InvalidParameter, "context", error.to_string()))?,
    };
    tracing::Span::current().record("environment_id", key.environment_id);

    let Some(start) = stream::start(cache, key.environment_id) else {
        return Err(ApiError::new(ErrorCode::Unauthorized, "the SDK key is not valid"));
    };
    let mut first = Frames::default();
    let ctx = Ctx { cache, streaming, environment_id: key.environment_id, live: false };
    let follower = ValueStream::begin(context, Arc::clone(&start.state), &ctx, &mut first);
    let open = Open::new(
        Params {
            kind: StreamKind::Client,
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

/// A client stream: its context, and the environment as last evaluated for it. Holding that state is
/// one pointer (it is the cache's current state until the next change), and diffing against it
/// needs no copy of what was sent.
struct ValueStream {
    context: Context,
    last: Arc<EnvironmentState>,
}

impl ValueStream {
    fn begin(context: Context, state: Arc<EnvironmentState>, ctx: &Ctx<'_>, out: &mut Frames) -> ValueStream {
        let values: Vec<(&str, Detail<'_>)> =
            evaluate_all(state.compiled(), &context, |flag| flag.client_side())
                .map(|(flag, detail)| (flag.key().as_str(), detail))
                .collect();
        out.event(ctx, EventKind::Values, frames::values(state.revision(), true, &values));
        drop(values);
        ValueStream { context, last: state }
    }

    /// Sends what differs between the last state evaluated and the environment now.
    fn catch_up(&mut self, ctx: &Ctx<'_>, out: &mut Frames) {
        let Some(now) = ctx.cache.environment(ctx.environment_id) else { return };
        if now.revision() <= self.last.revision() {
            return;
        }
        let (before, after) = (self.last.compiled(), now.compiled());
        let changed: Vec<(&str, Detail<'_>)> = evaluate_all(after, &self.context, |flag| flag.client_side())
            .filter(|(flag, detail)| {
                let previous = before
                    .flag(flag.key().as_str())
                    .filter(|flag| flag.client_side())
                    .map(|flag| evaluate_flag(before, flag, &self.context));
                previous.is_none_or(|previous| {
                    previous.value != detail.value || previous.variation != detail.variation
                })
            })
            .map(|(flag, detail)| (flag.key().as_str(), detail))
            .collect();
        if !changed.is_empty() {
            out.delivery(
                ctx,
                EventKind::Values,
                frames::values(now.revision(), false, &changed),
                now.committed_at_ms(),
            );
        }
        for flag in before.flags().filter(|flag| flag.client_side()) {
            let key = flag.key().as_str();
            if after.flag(key).is_none_or(|flag| !flag.client_side()) {
                out.delivery(
                    ctx,
                    EventKind::Delete,
                    frames::client_delete(now.revision(), key),
                    now.committed_at_ms(),
                );
            }
        }
        drop(changed);
        self.last = now;
    }
}

impl Follower for ValueStream {
    fn applied(&mut self, _: &ChangeEvent, ctx: &Ctx<'_>, out: &mut Frames) {
        // The cache may already be further along than this event; evaluating against what it has now
        // covers this event and the next ones at once.
        self.catch_up(ctx, out);
    }

    fn restart(&mut self, _: &EnvironmentState, ctx: &Ctx<'_>, out: &mut Frames) {
        // Diffing against the last state evaluated is exact whatever happened in between.
        self.catch_up(ctx, out);
    }
}

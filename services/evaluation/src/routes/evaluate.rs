//! `POST /v1/evaluate`: server-side evaluation for a context.

use std::collections::HashSet;
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use vexil_eval::evaluate_flag;
use vexil_http::error::{ApiError, Problem};
use vexil_keys::KeyKind;

use crate::body::{check_json_content_type, parse_json, read_limited};
use crate::extract::EvaluationKey;
use crate::render::RenderedFlags;
use crate::state::EvaluationState;
use crate::views::{EvaluateRequest, EvaluateResponse, FlagResult, FlagResults};

/// Evaluate flags for a context: every flag the key may see, or the ones listed in `flags`. A client key
/// sees only flags marked `client_side`, and reasons without the rules behind them; a flag it may not
/// see is reported exactly like one that does not exist (`FLAG_NOT_FOUND`). Rate-limited per key
/// (429 with `Retry-After`).
#[utoipa::path(post, path = "/v1/evaluate", tag = "evaluation", request_body = EvaluateRequest,
    security(("sdk_key" = [])),
    responses(
        (status = 200, body = EvaluateResponse,
         example = json!({"revision": 7, "flags": {"new-checkout": {"value": true, "variation": 0, "variant": "on",
                          "reason": {"kind": "RULE_MATCH", "rule_id": "germany", "rule_index": 0}}}})),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 429, body = Problem), (status = 503, body = Problem)))]
#[tracing::instrument(skip_all, fields(environment = key.0.environment.id()))]
pub async fn evaluate(
    req: HttpRequest,
    key: EvaluationKey,
    state: web::Data<EvaluationState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    check_json_content_type(&req)?;
    let body = read_limited(&req, payload, state.settings.dataplane.max_body_bytes).await?;
    let request: EvaluateRequest = parse_json(&body)?;

    let EvaluationKey(key) = key;
    let compiled = key.environment.compiled();
    let visible = |client_side: bool| key.kind == KeyKind::Server || client_side;
    let Some(listed) = &request.flags else {
        // Every visible flag: the common case, written from the revision's prepared fragments.
        let environment = &key.environment;
        let rendered = state
            .rendered_flags
            .get_or_build(environment.id(), environment.revision(), || {
                Ok::<_, std::convert::Infallible>(Arc::new(RenderedFlags::new(compiled)))
            })
            .unwrap_or_else(|never| match never {});
        let (body, count) = rendered.evaluate_all(
            compiled,
            key.kind,
            |flag| visible(flag.client_side()),
            |flag| evaluate_flag(compiled, flag, &request.context),
        );
        state.metrics.evaluations.add(count);
        return Ok(HttpResponse::Ok().content_type("application/json").body(body));
    };
    let mut seen = HashSet::new();
    let results: Vec<_> = listed
        .iter()
        .filter(|listed| seen.insert(listed.as_str()))
        .map(|listed| match compiled.flag(listed) {
            Some(flag) if visible(flag.client_side()) => {
                let detail = evaluate_flag(compiled, flag, &request.context);
                (flag.key().as_str(), FlagResult::new(detail, key.kind))
            }
            _ => (listed.as_str(), FlagResult::not_found()),
        })
        .collect();
    state.metrics.evaluations.add(results.len() as u64);
    Ok(HttpResponse::Ok()
        .json(EvaluateResponse { revision: key.environment.revision(), flags: FlagResults(results) }))
}

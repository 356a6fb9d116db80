//! Typed extractors: which SDK keys a route admits, and the per-key rate limit.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use vexil_dataplane::Authenticated;
use vexil_dataplane_http::authenticate;
use vexil_http::error::{ApiError, ErrorCode};
use vexil_keys::KeyKind;

use crate::rate_limit::retry_after_seconds;
use crate::state::EvaluationState;

/// A server or client SDK key within its rate limit: for the evaluation routes. Answers 401 (no or a bad
/// key), 503 (no data yet) or 429 with `Retry-After` in whole seconds.
pub struct EvaluationKey(pub Authenticated);

impl FromRequest for EvaluationKey {
    type Error = ApiError;
    type Future = Ready<Result<EvaluationKey, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).and_then(|key| {
            let state = state(req)?;
            match state.limiter.check(&key.key_id) {
                Ok(()) => Ok(EvaluationKey(key)),
                Err(wait) => {
                    state.metrics.rate_limited.inc();
                    Err(ApiError::RateLimited { retry_after_seconds: retry_after_seconds(wait) })
                }
            }
        }))
    }
}

/// A server SDK key: full configurations. A client key is refused with 403.
pub struct ServerKey(pub Authenticated);

impl FromRequest for ServerKey {
    type Error = ApiError;
    type Future = Ready<Result<ServerKey, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).and_then(|key| match key.kind {
            KeyKind::Server => Ok(ServerKey(key)),
            KeyKind::Client => Err(ApiError::new(
                ErrorCode::Forbidden,
                "flag configurations need a server key; client keys evaluate",
            )),
        }))
    }
}

/// The service's state, which `configure`'s caller registers.
pub fn state(req: &HttpRequest) -> Result<&web::Data<EvaluationState>, ApiError> {
    req.app_data::<web::Data<EvaluationState>>()
        .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("the evaluation state is not registered")))
}

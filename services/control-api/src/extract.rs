//! Typed extractors: a JSON body that names the offending field, the request id, `If-Match`, and
//! authentication with the role a route needs.

use std::future::{Future, Ready, ready};
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use vexil_model::ProjectKey;
use vexil_store::{Actor, Role, SessionRecord, TokenRecord};

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// The request id: the caller's `X-Request-Id`, or one made up; echoed on the response and written to
/// the audit log.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A JSON body of type `T`. Rejects a wrong content type (415), a body over the limit (413), and JSON
/// that does not fit `T` (400, naming the field by path, e.g. `rules[0].clauses[1].op`).
pub struct Body<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Body<T>, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (content_type, read) = (content_type(req), read_body(req, payload));
        Box::pin(async move {
            check_json(content_type.as_deref())?;
            parse_json(&read.await?).map(Body)
        })
    }
}

/// A JSON body that may be left out: an empty body is `None`; anything else is read as by [`Body`].
pub struct OptionalBody<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<OptionalBody<T>, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (content_type, read) = (content_type(req), read_body(req, payload));
        Box::pin(async move {
            let body = read.await?;
            if body.is_empty() {
                return Ok(OptionalBody(None));
            }
            check_json(content_type.as_deref())?;
            parse_json(&body).map(|value| OptionalBody(Some(value)))
        })
    }
}

fn content_type(req: &HttpRequest) -> Option<String> {
    req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Rejects (415) a content type that is not JSON.
fn check_json(content_type: Option<&str>) -> Result<(), ApiError> {
    let essence = content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json" | "application/merge-patch+json") => Ok(()),
        Some(other) if other.starts_with("application/") && other.ends_with("+json") => Ok(()),
        _ => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the body as JSON with Content-Type: application/json",
        )),
    }
}

/// Reads the body, refusing (413) more than the configured limit.
fn read_body(
    req: &HttpRequest,
    payload: &mut Payload,
) -> impl Future<Output = Result<web::BytesMut, ApiError>> + 'static {
    let limit = req.app_data::<web::Data<AppState>>().map_or(256 * 1024, |s| s.settings.api.max_body_bytes);
    let mut payload = payload.take();
    async move {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::new(ErrorCode::InvalidBody, format!("could not read the body: {e}"))
            })?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("the body must be at most {limit} bytes"),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Parses JSON into `T`, naming the offending field by path on failure.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    Ok(vexil_http::json::parse(bytes)?)
}

/// A query string of type `T`. Rejects an unknown or malformed parameter (400), naming it.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = Ready<Result<Query<T>, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let query = req.query_string();
        let parsed = match web::Query::<T>::from_query(query) {
            Ok(value) => Ok(Query(value.into_inner())),
            Err(error) => {
                let detail = format!("invalid query: {error}");
                // The deserializer does not say which parameter it choked on: the one that fails on
                // its own is it.
                let culprit = query
                    .split('&')
                    .filter(|pair| !pair.is_empty() && web::Query::<T>::from_query(pair).is_err())
                    .find_map(|pair| web::Query::<Vec<(String, String)>>::from_query(pair).ok()?.0.pop());
                Err(match culprit {
                    Some((name, _)) => ApiError::field(ErrorCode::InvalidParameter, name, detail),
                    None => ApiError::new(ErrorCode::InvalidParameter, detail),
                })
            }
        };
        ready(parsed)
    }
}

/// The version named by `If-Match` (`"7"` or `W/"7"`); none when absent or `*`.
pub fn if_match(req: &HttpRequest) -> Result<Option<u64>, ApiError> {
    let Some(value) = req.headers().get(header::IF_MATCH) else { return Ok(None) };
    let text = value.to_str().unwrap_or("").trim();
    if text == "*" {
        return Ok(None);
    }
    let tag = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    tag.parse::<u64>().map(Some).map_err(|_| {
        ApiError::field(
            ErrorCode::InvalidParameter,
            "If-Match",
            "If-Match must be an ETag from a previous response, like \"7\"",
        )
    })
}

/// The strong ETag for a version.
pub fn etag(version: u64) -> (header::HeaderName, String) {
    (header::ETAG, format!("\"{version}\""))
}

/// What a route requires of its token.
pub trait Requirement {
    /// The least role.
    const ROLE: Role;
    /// Whether the token must be unscoped (cover every project), e.g. to manage tokens.
    const GLOBAL: bool = false;
}

/// Read access.
pub struct Viewer;
/// Change flags, configurations and segments.
pub struct Editor;
/// Manage projects, environments and keys.
pub struct Admin;
/// Admin over every project: create projects, manage tokens, verify the audit chain.
pub struct GlobalAdmin;

impl Requirement for Viewer {
    const ROLE: Role = Role::Viewer;
}
impl Requirement for Editor {
    const ROLE: Role = Role::Editor;
}
impl Requirement for Admin {
    const ROLE: Role = Role::Admin;
}
impl Requirement for GlobalAdmin {
    const ROLE: Role = Role::Admin;
    const GLOBAL: bool = true;
}

/// An authenticated management token that meets `R` and covers the `{project}` in the path, if any.
/// 401 without a valid token; 403 when the role or the project scope falls short.
pub struct Auth<R> {
    /// The token.
    pub token: TokenRecord,
    /// The actor to record in the audit log.
    pub actor: Actor,
    requirement: PhantomData<R>,
}

/// What the [`authenticate`] middleware found: a management token (`Authorization: Bearer`), or a
/// dashboard session (its cookie), which acts as the token it was opened with.
#[derive(Clone)]
enum Presented {
    Valid(TokenRecord),
    Session(SessionRecord),
    Invalid,
}

/// The cookie that carries a dashboard session's secret (`POST /api/v1/session`).
pub const SESSION_COOKIE: &str = "vexil_session";
/// The header a write made with the session cookie must carry: the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Middleware (`middleware::from_fn(authenticate)`): looks up the management token — or, without one,
/// the dashboard session — of every API request before any extractor runs, so that [`Auth`] decides
/// synchronously. actix polls a handler's extractors together and answers with the first error;
/// because `Auth` is ready at once and comes first in every handler, a caller that is not allowed in
/// always gets 401/403, never a 400/413/415 about a body or query it had no right to send.
///
/// A write (any method but `GET`, `HEAD`, `OPTIONS`) made with a session's cookie must carry the
/// session's CSRF token in `X-CSRF-Token`, or it is refused (403 `csrf_failed`) before it runs: a
/// cookie is sent by the browser whoever made the page, a header only by the dashboard's own script.
/// (The cookie is also `SameSite=Strict`; the token makes the defence hold without it.) A cookie that
/// opens no live session counts as no credential at all, so that signing in again is never blocked by
/// a stale one.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    let cookie = cookie(req.headers(), SESSION_COOKIE);
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    if !req.path().starts_with("/api/") {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let presented = match (bearer, cookie) {
        (Some(bearer), _) => state
            .store
            .authenticate(&bearer)
            .await
            .map(|token| Some(token.map_or(Presented::Invalid, Presented::Valid))),
        (None, Some(cookie)) => {
            state.store.session(&cookie).await.map(|session| session.map(Presented::Session))
        }
        (None, None) => Ok(None),
    };
    let presented = match presented {
        Ok(presented) => presented,
        Err(error) => {
            let response = actix_web::ResponseError::error_response(&crate::error::from_store(error));
            return Ok(req.into_response(response));
        }
    };
    if let Some(Presented::Session(session)) = &presented
        && !csrf_ok(&req, session)
    {
        let error = ApiError::new(
            ErrorCode::CsrfFailed,
            "a write made with the session cookie needs X-CSRF-Token: the session's csrf_token \
             (from POST or GET /api/v1/session)",
        );
        return Ok(req.into_response(actix_web::ResponseError::error_response(&error)));
    }
    if let Some(presented) = presented {
        req.extensions_mut().insert(presented);
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// The value of cookie `name` in the request's `Cookie` headers, if it has a non-empty one.
fn cookie(headers: &header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

/// Whether a request made with `session`'s cookie may run: a read, signing in (it authenticates by the
/// token in its body, not the cookie), or a write carrying the session's CSRF token.
fn csrf_ok(req: &ServiceRequest, session: &SessionRecord) -> bool {
    let method = req.method();
    if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
        return true;
    }
    if method == Method::POST && req.path() == "/api/v1/session" {
        return true;
    }
    let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    // Constant time: the token is a secret of the session's.
    vexil_keys::matches(sent, &vexil_keys::sha256(&session.csrf_token))
}

/// The dashboard session the request was authenticated with, if it was.
pub fn session_of(req: &HttpRequest) -> Option<SessionRecord> {
    match req.extensions().get::<Presented>() {
        Some(Presented::Session(session)) => Some(session.clone()),
        _ => None,
    }
}

impl<R: Requirement> FromRequest for Auth<R> {
    type Error = ApiError;
    type Future = Ready<Result<Auth<R>, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authorize(req))
    }
}

fn authorize<R: Requirement>(req: &HttpRequest) -> Result<Auth<R>, ApiError> {
    let token = match req.extensions().get::<Presented>() {
        None => {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "send a management token: Authorization: Bearer <token>",
            ));
        }
        Some(Presented::Invalid) => {
            return Err(ApiError::new(ErrorCode::Unauthorized, "the token is not valid"));
        }
        Some(Presented::Valid(token)) => token.clone(),
        Some(Presented::Session(session)) => session.token.clone(),
    };
    if token.role < R::ROLE {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this needs the {} role; the token is {}", R::ROLE.as_str(), token.role.as_str()),
        ));
    }
    if R::GLOBAL && token.projects.is_some() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this needs a token that is not limited to projects",
        ));
    }
    if let Some(project) = req.match_info().get("project")
        && let Ok(project) = ProjectKey::parse(project)
        && !token.covers(&project)
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("the token does not cover project {project}"),
        ));
    }
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    let actor = Actor { token_id: Some(token.id.clone()), name: token.name.clone(), request_id };
    Ok(Auth { token, actor, requirement: PhantomData })
}

/// Parses a key from the path, naming the parameter when it is malformed.
pub fn path_key<K, E: std::fmt::Display>(
    name: &str,
    value: String,
    parse: impl FnOnce(String) -> Result<K, E>,
) -> Result<K, ApiError> {
    parse(value).map_err(|e| ApiError::field(ErrorCode::InvalidParameter, name, format!("{name} {e}")))
}

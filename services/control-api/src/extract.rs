//! Typed extractors: a JSON body that names the offending field, the request id, `If-Match`, and
//! authentication with the role a route needs.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use vexil_model::ProjectKey;
use vexil_store::{Actor, Role, TokenRecord};

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
        let limit = req.app_data::<web::Data<AppState>>().map_or(256 * 1024, |s| s.settings.api.max_body_bytes);
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut payload = payload.take();
        Box::pin(async move {
            let essence = content_type.as_deref().map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
            match essence.as_deref() {
                Some("application/json" | "application/merge-patch+json") => {}
                Some(other) if other.starts_with("application/") && other.ends_with("+json") => {}
                _ => {
                    return Err(ApiError::new(
                        ErrorCode::UnsupportedMediaType,
                        "send the body as JSON with Content-Type: application/json",
                    ));
                }
            }
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| ApiError::new(ErrorCode::InvalidBody, format!("could not read the body: {e}")))?;
                if body.len() + chunk.len() > limit {
                    return Err(ApiError::new(ErrorCode::PayloadTooLarge, format!("the body must be at most {limit} bytes")));
                }
                body.extend_from_slice(&chunk);
            }
            parse_json(&body).map(Body)
        })
    }
}

/// Parses JSON into `T`, naming the offending field by path on failure.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let message = inner.to_string();
        // serde_json appends " at line L column C"; the field path says more.
        let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
        if path == "." || inner.is_syntax() || inner.is_eof() {
            ApiError::new(ErrorCode::InvalidBody, format!("the body is not valid JSON: {message}"))
        } else {
            ApiError::field(ErrorCode::InvalidBody, path, message)
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::new(ErrorCode::InvalidBody, format!("unexpected data after the JSON value: {e}")))?;
    Ok(value)
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
        ApiError::field(ErrorCode::InvalidParameter, "If-Match", "If-Match must be an ETag from a previous response, like \"7\"")
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

impl<R: Requirement> FromRequest for Auth<R> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Auth<R>, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(|v| v.trim().to_owned());
        let project = req.match_info().get("project").map(str::to_owned);
        let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("application state missing")))?;
            let presented = presented
                .filter(|p| !p.is_empty())
                .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "send a management token: Authorization: Bearer <token>"))?;
            let token = state
                .store
                .authenticate(&presented)
                .await?
                .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "the token is not valid"))?;
            if token.role < R::ROLE {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    format!("this needs the {} role; the token is {}", R::ROLE.as_str(), token.role.as_str()),
                ));
            }
            if R::GLOBAL && token.projects.is_some() {
                return Err(ApiError::new(ErrorCode::Forbidden, "this needs a token that is not limited to projects"));
            }
            if let Some(project) = project
                && let Ok(project) = ProjectKey::parse(project)
                && !token.covers(&project)
            {
                return Err(ApiError::new(ErrorCode::Forbidden, format!("the token does not cover project {project}")));
            }
            let actor = Actor { token_id: Some(token.id.clone()), name: token.name.clone(), request_id };
            Ok(Auth { token, actor, requirement: PhantomData })
        })
    }
}

/// Parses a key from the path, naming the parameter when it is malformed.
pub fn path_key<K, E: std::fmt::Display>(name: &str, value: String, parse: impl FnOnce(String) -> Result<K, E>) -> Result<K, ApiError> {
    parse(value).map_err(|e| ApiError::field(ErrorCode::InvalidParameter, name, format!("{name} {e}")))
}

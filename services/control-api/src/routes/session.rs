//! `/api/v1/session`: a management token exchanged for a dashboard session, held in an httpOnly cookie
//! (the token never sits where a page's scripts can read it), and ended by logging out.
//!
//! The cookie is `vexil_session`: `HttpOnly; SameSite=Strict; Path=/api`, `Secure` when the request
//! came over HTTPS (directly or, behind a proxy, as `X-Forwarded-Proto`/`Forwarded` say), expiring
//! with the session (`api.session_seconds`, 12 h). With it, a request acts as the token — the same
//! roles and project scopes, read again on every request, so revoking the token ends its sessions — and
//! a write must also send the session's `csrf_token` in `X-CSRF-Token` (the `authenticate` middleware
//! refuses it otherwise). `Authorization: Bearer` wins over the cookie when a request has both.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use vexil_store::SessionRecord;

use crate::error::{ApiError, ErrorCode, HandlerError, Problem};
use crate::extract::{Body, SESSION_COOKIE, session_of};
use crate::state::AppState;
use crate::views::TokenView;

/// Registers the routes.
pub fn configure(config: &mut utoipa_actix_web::service_config::ServiceConfig) {
    config.service(create_session).service(get_session).service(delete_session);
}

/// Signing in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// A management token (`vxm_...`, or the bootstrap token).
    pub token: String,
}

/// A dashboard session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// The token the session acts as.
    pub token: TokenView,
    /// Send it as `X-CSRF-Token` with every write made with the session's cookie. Keep it in memory
    /// only; `GET /api/v1/session` gives it again after a reload.
    pub csrf_token: String,
    /// When the session ends (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl From<SessionRecord> for SessionView {
    fn from(session: SessionRecord) -> SessionView {
        SessionView {
            token: session.token.into(),
            csrf_token: session.csrf_token,
            expires_at: session.expires_at,
        }
    }
}

/// Sign in: exchange a management token for a session cookie (`Set-Cookie: vexil_session=…; HttpOnly;
/// SameSite=Strict; Path=/api`, `Secure` over HTTPS). The session may do what the token may do, until
/// it expires or `DELETE /api/v1/session`. Any token may sign in, whatever its role.
#[utoipa::path(tag = "session", request_body = CreateSession, security(()),
    responses(
        (status = 201, body = SessionView, headers(("Set-Cookie" = String, description = "The session cookie"))),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 415, body = Problem),
        (status = 503, body = Problem)))]
#[post("/session")]
#[tracing::instrument(skip_all, fields(token))]
async fn create_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    Body(body): Body<CreateSession>,
) -> Result<HttpResponse, HandlerError> {
    let Some(token) = state.store.authenticate(body.token.trim()).await? else {
        return Err(ApiError::field(ErrorCode::Unauthorized, "token", "the token is not valid").into());
    };
    tracing::Span::current().record("token", token.id.as_str());
    let lifetime =
        time::Duration::seconds(i64::try_from(state.settings.api.session_seconds).unwrap_or(i64::MAX));
    let created = state.store.create_session(&token, lifetime).await?;
    let cookie = session_cookie(&req, &created.secret, lifetime.whole_seconds());
    Ok(HttpResponse::Created()
        .insert_header((header::SET_COOKIE, cookie))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(SessionView::from(created.session)))
}

/// The session the cookie opens: its token, its CSRF token, its expiry. `404` for a request made with
/// a bearer token (it has no session).
#[utoipa::path(tag = "session", security(("session" = [])),
    responses((status = 200, body = SessionView), (status = 401, body = Problem), (status = 404, body = Problem)))]
#[get("/session")]
#[tracing::instrument(skip_all)]
async fn get_session(req: HttpRequest) -> Result<HttpResponse, HandlerError> {
    let session = current(&req)?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(SessionView::from(session)))
}

/// Sign out: the session ends now, and the cookie is cleared. Needs `X-CSRF-Token`, as every write
/// made with the cookie.
#[utoipa::path(tag = "session", security(("session" = [])),
    responses(
        (status = 204, description = "Signed out", headers(("Set-Cookie" = String, description = "Clears the cookie"))),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
#[delete("/session")]
#[tracing::instrument(skip_all)]
async fn delete_session(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, HandlerError> {
    let session = current(&req)?;
    state.store.delete_session(&session.id).await?;
    Ok(HttpResponse::NoContent().insert_header((header::SET_COOKIE, session_cookie(&req, "", 0))).finish())
}

/// The request's session: `401` without any credential, `404` with a bearer token.
fn current(req: &HttpRequest) -> Result<SessionRecord, ApiError> {
    if let Some(session) = session_of(req) {
        return Ok(session);
    }
    if req.headers().contains_key(header::AUTHORIZATION) {
        return Err(ApiError::new(ErrorCode::NotFound, "a request made with a bearer token has no session"));
    }
    Err(ApiError::new(ErrorCode::Unauthorized, "no session: sign in with POST /api/v1/session"))
}

/// The `Set-Cookie` value for the session cookie (`max_age` 0 clears it).
fn session_cookie(req: &HttpRequest, secret: &str, max_age: i64) -> String {
    let secure = if req.connection_info().scheme() == "https" { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={secret}; HttpOnly; SameSite=Strict; Path=/api; Max-Age={max_age}{secure}")
}

//! `/api/v1/tokens`: management tokens.

use actix_web::{HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use vexil_model::ProjectKey;
use vexil_store::{NewToken, Role};

use crate::error::{HandlerError, Problem};
use crate::extract::{Auth, Body, GlobalAdmin};
use crate::state::AppState;
use crate::views::TokenView;

/// Registers the routes.
pub fn configure(config: &mut utoipa_actix_web::service_config::ServiceConfig) {
    config.service(create_token).service(list_tokens).service(get_token).service(delete_token);
}

/// A token to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What it is for (shown in the audit log).
    pub name: String,
    /// `viewer`, `editor` or `admin`.
    pub role: Role,
    /// The projects it may touch; omit for every project.
    pub projects: Option<Vec<ProjectKey>>,
}

/// A new token and its secret, shown only here.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenCreated {
    /// The token.
    pub token: TokenView,
    /// The secret to send as `Authorization: Bearer <secret>`.
    pub secret: String,
}

/// Create a management token; its secret is in this response only.
#[utoipa::path(tag = "tokens", request_body = CreateToken, responses((status = 201, body = TokenCreated), (status = 422, body = Problem)))]
#[post("/tokens")]
#[tracing::instrument(skip_all, fields(by = %auth.token.id))]
async fn create_token(
    state: web::Data<AppState>,
    auth: Auth<GlobalAdmin>,
    Body(body): Body<CreateToken>,
) -> Result<HttpResponse, HandlerError> {
    if body.name.trim().is_empty() {
        return Err(vexil_model::ValidationErrors::single("name", "a token needs a name").into());
    }
    let (token, secret) = state
        .store
        .create_token(&auth.actor, NewToken { name: body.name, role: body.role, projects: body.projects })
        .await?;
    Ok(HttpResponse::Created().json(TokenCreated { token: token.into(), secret }))
}

/// List tokens (never their secrets).
#[utoipa::path(tag = "tokens", responses((status = 200, body = Vec<TokenView>)))]
#[get("/tokens")]
#[tracing::instrument(skip_all, fields(by = %auth.token.id))]
async fn list_tokens(
    state: web::Data<AppState>,
    auth: Auth<GlobalAdmin>,
) -> Result<HttpResponse, HandlerError> {
    let tokens = state.store.list_tokens().await?;
    Ok(HttpResponse::Ok().json(tokens.into_iter().map(TokenView::from).collect::<Vec<_>>()))
}

/// Get a token (never its secret).
#[utoipa::path(tag = "tokens", responses((status = 200, body = TokenView), (status = 404, body = Problem)))]
#[get("/tokens/{id}")]
#[tracing::instrument(skip_all, fields(token = %path))]
async fn get_token(
    state: web::Data<AppState>,
    _auth: Auth<GlobalAdmin>,
    path: web::Path<String>,
) -> Result<HttpResponse, HandlerError> {
    Ok(HttpResponse::Ok().json(TokenView::from(state.store.get_token(&path.into_inner()).await?)))
}

/// Revoke a token.
#[utoipa::path(tag = "tokens", responses((status = 204), (status = 404, body = Problem)))]
#[delete("/tokens/{id}")]
#[tracing::instrument(skip_all, fields(token = %path, by = %auth.token.id))]
async fn delete_token(
    state: web::Data<AppState>,
    auth: Auth<GlobalAdmin>,
    path: web::Path<String>,
) -> Result<HttpResponse, HandlerError> {
    state.store.delete_token(&auth.actor, &path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

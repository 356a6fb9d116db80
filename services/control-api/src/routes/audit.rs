//! `/api/v1/audit`: the append-only audit log and its hash-chain check.

use actix_web::{HttpResponse, get, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};
use vexil_store::{AuditQuery, AuditRecord, AuditVerification};

use crate::error::{ApiError, ErrorCode, HandlerError, Problem};
use crate::extract::{Auth, GlobalAdmin, Query, Viewer};
use crate::state::AppState;

/// Registers the routes.
pub fn configure(config: &mut utoipa_actix_web::service_config::ServiceConfig) {
    config.service(list_audit).service(verify_audit);
}

/// Filters and paging for the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Only this project.
    pub project: Option<String>,
    /// Only this environment.
    pub environment: Option<String>,
    /// Only this flag.
    pub flag: Option<String>,
    /// Only changes by this token id.
    pub actor: Option<String>,
    /// At or after this instant (RFC 3339).
    pub since: Option<String>,
    /// Before this instant (RFC 3339).
    pub until: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

/// One page of the audit log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// The records.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<AuditRecord>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn instant(name: &str, value: Option<String>) -> Result<Option<OffsetDateTime>, ApiError> {
    value
        .map(|text| {
            OffsetDateTime::parse(&text, &Rfc3339).map_err(|_| {
                ApiError::field(
                    ErrorCode::InvalidParameter,
                    name,
                    format!("{name} must be an RFC 3339 instant like 2026-11-21T10:00:00Z"),
                )
            })
        })
        .transpose()
}

/// Read the audit log, newest first, with filters and cursor paging. A token limited to projects sees
/// only their records.
#[utoipa::path(tag = "audit", params(AuditParams), responses((status = 200, body = AuditPage), (status = 400, body = Problem)))]
#[get("/audit")]
#[tracing::instrument(skip_all, fields(project = ?params.project, environment = ?params.environment, flag = ?params.flag))]
async fn list_audit(
    state: web::Data<AppState>,
    auth: Auth<Viewer>,
    Query(params): Query<AuditParams>,
) -> Result<HttpResponse, HandlerError> {
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field(
            ErrorCode::InvalidParameter,
            "limit",
            "limit must be between 1 and 1000",
        )
        .into());
    }
    let before_seq = params
        .cursor
        .map(|c| {
            c.parse::<u64>().map_err(|_| {
                ApiError::field(ErrorCode::InvalidParameter, "cursor", "cursor must be a next_cursor value")
            })
        })
        .transpose()?;
    let query = AuditQuery {
        project: params.project,
        environment: params.environment,
        flag: params.flag,
        actor: params.actor,
        since: instant("since", params.since)?,
        until: instant("until", params.until)?,
        before_seq,
        projects: auth.token.projects.as_ref().map(|p| p.iter().map(|k| k.to_string()).collect()),
        limit,
    };
    let items = state.store.list_audit(&query).await?;
    let next_cursor =
        (items.len() == limit as usize).then(|| items.last().map(|r| r.seq.to_string())).flatten();
    Ok(HttpResponse::Ok().json(AuditPage { items, next_cursor }))
}

/// Recompute the audit log's hash chain: reports the first altered, missing or removed record.
#[utoipa::path(tag = "audit", responses((status = 200, body = Object)))]
#[get("/audit/verify")]
#[tracing::instrument(skip_all, fields(by = %auth.token.id))]
async fn verify_audit(
    state: web::Data<AppState>,
    auth: Auth<GlobalAdmin>,
) -> Result<HttpResponse, HandlerError> {
    let verification: AuditVerification = state.store.verify_audit().await?;
    Ok(HttpResponse::Ok().json(verification))
}

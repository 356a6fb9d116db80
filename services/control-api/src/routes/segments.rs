//! `/api/v1/projects/{project}/environments/{environment}/segments`.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use vexil_model::{EnvironmentKey, ProjectKey, Segment, SegmentKey, SegmentSpec};

use crate::error::{ApiError, HandlerError, Problem};
use crate::extract::{Auth, Body, Editor, Viewer, etag, if_match, path_key};
use crate::state::AppState;
use crate::views::SegmentView;

/// Registers the routes.
pub fn configure(config: &mut utoipa_actix_web::service_config::ServiceConfig) {
    config
        .service(create_segment)
        .service(list_segments)
        .service(get_segment)
        .service(update_segment)
        .service(delete_segment);
}

fn keys(project: String, environment: String) -> Result<(ProjectKey, EnvironmentKey), ApiError> {
    Ok((
        path_key("project", project, ProjectKey::parse)?,
        path_key("environment", environment, EnvironmentKey::parse)?,
    ))
}

/// Create a segment in an environment.
#[utoipa::path(tag = "segments", request_body = SegmentSpec,
    responses((status = 201, body = SegmentView), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[post("/projects/{project}/environments/{environment}/segments")]
#[tracing::instrument(skip_all, fields(project = %path.0, environment = %path.1))]
async fn create_segment(
    state: web::Data<AppState>,
    auth: Auth<Editor>,
    path: web::Path<(String, String)>,
    Body(spec): Body<SegmentSpec>,
) -> Result<HttpResponse, HandlerError> {
    let (project, environment) = path.into_inner();
    let (project, environment) = keys(project, environment)?;
    let record =
        state.store.create_segment(&auth.actor, &project, &environment, Segment::parse(spec)?).await?;
    Ok(HttpResponse::Created().insert_header(etag(record.version)).json(SegmentView::from(record)))
}

/// List an environment's segments.
#[utoipa::path(tag = "segments", responses((status = 200, body = Vec<SegmentView>)))]
#[get("/projects/{project}/environments/{environment}/segments")]
#[tracing::instrument(skip_all, fields(project = %path.0, environment = %path.1))]
async fn list_segments(
    state: web::Data<AppState>,
    _auth: Auth<Viewer>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, HandlerError> {
    let (project, environment) = path.into_inner();
    let (project, environment) = keys(project, environment)?;
    let segments = state.store.list_segments(&project, &environment).await?;
    Ok(HttpResponse::Ok().json(segments.into_iter().map(SegmentView::from).collect::<Vec<_>>()))
}

/// Get a segment. Its `ETag` is its version.
#[utoipa::path(tag = "segments", responses((status = 200, body = SegmentView), (status = 404, body = Problem)))]
#[get("/projects/{project}/environments/{environment}/segments/{segment}")]
#[tracing::instrument(skip_all, fields(project = %path.0, environment = %path.1, segment = %path.2))]
async fn get_segment(
    state: web::Data<AppState>,
    _auth: Auth<Viewer>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, HandlerError> {
    let (project, environment, segment) = path.into_inner();
    let (project, environment) = keys(project, environment)?;
    let segment = path_key("segment", segment, SegmentKey::parse)?;
    let record = state.store.get_segment(&project, &environment, &segment).await?;
    Ok(HttpResponse::Ok().insert_header(etag(record.version)).json(SegmentView::from(record)))
}

/// Replace a segment; `If-Match` makes it conditional on the version.
#[utoipa::path(tag = "segments", request_body = SegmentSpec,
    responses((status = 200, body = SegmentView), (status = 412, body = Problem), (status = 422, body = Problem)))]
#[put("/projects/{project}/environments/{environment}/segments/{segment}")]
#[tracing::instrument(skip_all, fields(project = %path.0, environment = %path.1, segment = %path.2))]
async fn update_segment(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Auth<Editor>,
    path: web::Path<(String, String, String)>,
    Body(spec): Body<SegmentSpec>,
) -> Result<HttpResponse, HandlerError> {
    let (project, environment, segment) = path.into_inner();
    let (project, environment) = keys(project, environment)?;
    let segment = path_key("segment", segment, SegmentKey::parse)?;
    let expected = if_match(&req)?;
    let record = state
        .store
        .update_segment(&auth.actor, &project, &environment, &segment, Segment::parse(spec)?, expected)
        .await?;
    Ok(HttpResponse::Ok().insert_header(etag(record.version)).json(SegmentView::from(record)))
}

/// Delete a segment; refused while a flag's rule uses it.
#[utoipa::path(tag = "segments", responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
#[delete("/projects/{project}/environments/{environment}/segments/{segment}")]
#[tracing::instrument(skip_all, fields(project = %path.0, environment = %path.1, segment = %path.2))]
async fn delete_segment(
    state: web::Data<AppState>,
    auth: Auth<Editor>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, HandlerError> {
    let (project, environment, segment) = path.into_inner();
    let (project, environment) = keys(project, environment)?;
    let segment = path_key("segment", segment, SegmentKey::parse)?;
    state.store.delete_segment(&auth.actor, &project, &environment, &segment).await?;
    Ok(HttpResponse::NoContent().finish())
}

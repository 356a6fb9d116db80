//! `/api/v1/projects`: projects, and their environments and SDK keys.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::Deserialize;
use utoipa::ToSchema;
use vexil_model::{EnvironmentKey, ProjectKey};

use crate::error::{ApiError, HandlerError, Problem};
use crate::extract::{Admin, Auth, Body, GlobalAdmin, OptionalBody, Viewer, path_key};
use crate::state::AppState;
use crate::views::{EnvironmentView, KeyView, NewKeysView, ProjectView};

/// Registers the routes.
pub fn configure(config: &mut utoipa_actix_web::service_config::ServiceConfig) {
    config
        .service(create_project)
        .service(list_projects)
        .service(get_project)
        .service(update_project)
        .service(delete_project)
        .service(create_environment)
        .service(list_environments)
        .service(get_environment)
        .service(update_environment)
        .service(delete_environment)
        .service(list_keys)
        .service(rotate_keys);
}

fn project_key(value: String) -> Result<ProjectKey, ApiError> {
    path_key("project", value, ProjectKey::parse)
}

fn environment_key(value: String) -> Result<EnvironmentKey, ApiError> {
    path_key("environment", value, EnvironmentKey::parse)
}

/// A project to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// Unique key: letters, digits, `.`, `_`, `-`.
    pub key: ProjectKey,
    /// Display name (defaults to the key).
    #[serde(default)]
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

/// A new project, with the keys of its environments (shown only here).
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ProjectCreated {
    /// The project.
    pub project: ProjectView,
    /// The SDK keys of its `development` and `production` environments.
    pub environments: Vec<NewKeysView>,
}

/// Create a project, with `development` and `production` environments and their SDK keys.
#[utoipa::path(tag = "projects", request_body = CreateProject,
    responses((status = 201, body = ProjectCreated), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[post("/projects")]
#[tracing::instrument(skip_all, fields(project))]
async fn create_project(
    state: web::Data<AppState>,
    auth: Auth<GlobalAdmin>,
    Body(body): Body<CreateProject>,
) -> Result<HttpResponse, HandlerError> {
    tracing::Span::current().record("project", body.key.as_str());
    let (project, keys) =
        state.store.create_project(&auth.actor, &body.key, &body.name, &body.description).await?;
    Ok(HttpResponse::Created().json(ProjectCreated {
        project: project.into(),
        environments: keys.into_iter().map(NewKeysView::from).collect(),
    }))
}

/// List the projects the token covers.
#[utoipa::path(tag = "projects", responses((status = 200, body = Vec<ProjectView>)))]
#[get("/projects")]
#[tracing::instrument(skip_all, fields(by = %auth.token.id))]
async fn list_projects(state: web::Data<AppState>, auth: Auth<Viewer>) -> Result<HttpResponse, HandlerError> {
    let projects = state.store.list_projects().await?;
    let visible: Vec<ProjectView> =
        projects.into_iter().filter(|p| auth.token.covers(&p.key)).map(ProjectView::from).collect();
    Ok(HttpResponse::Ok().json(visible))
}

/// Get a project.
#[utoipa::path(tag = "projects", responses((status = 200, body = ProjectView), (status = 404, body = Problem)))]
#[get("/projects/{project}")]
#[tracing::instrument(skip_all, fields(project = %path))]
async fn get_project(
    state: web::Data<AppState>,
    _auth: Auth<Viewer>,
    path: web::Path<String>,
) -> Result<HttpResponse, HandlerError> {
    let project = project_key(path.into_inner())?;
    Ok(HttpResponse::Ok().json(ProjectView::from(state.store.get_project(&project).await?)))
}

/// Changes to a project; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    /// New display name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
}

/// Rename or describe a project.
#[utoipa::path(tag = "projects", request_body = UpdateProject, responses((status = 200, body = ProjectView), (status = 404, body = Problem)))]
#[patch("/projects/{project}")]
#[tracing::instrument(skip_all, fields(project = %path))]
async fn update_project(
    state: web::Data<AppState>,
    auth: Auth<Admin>,
    path: web::Path<String>,
    Body(body): Body<UpdateProject>,
) -> Result<HttpResponse, HandlerError> {
    let project = project_key(path.into_inner())?;
    let record = state
        .store
        .update_project(&auth.actor, &project, body.name.as_deref(), body.description.as_deref())
        .await?;
    Ok(HttpResponse::Ok().json(ProjectView::from(record)))
}

/// Delete a project and everything in it.
#[utoipa::path(tag = "projects", responses((status = 204), (status = 404, body = Problem)))]
#[delete("/projects/{project}")]
#[tracing::instrument(skip_all, fields(project = %path))]
async fn delete_project(
    state: web::Data<AppState>,
    auth: Auth<Admin>,
    path: web::Path<String>,
) -> Result<HttpResponse, HandlerError> {
    let project = project_key(path.into_inner())?;
    state.store.delete_project(&auth.actor, &project).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// An environment to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnvironment {
    /// Unique key within the project.
    pub key: EnvironmentKey,
    /// Display name (defaults to the key).
    #[serde(default)]
    pub name: String,
}

/// A new environment with its SDK keys (shown only here).
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct EnvironmentCreated {
    /// The environment.
    pub environment: EnvironmentView,
    /// Its keys.
    pub keys: NewKeysView,
}

/// Create an environment; every flag gets its initial (off) configuration there.
#[utoipa::path(tag = "environments", request_body = CreateEnvironment,
    responses((status = 201, body = EnvironmentCreated), (status = 409, body = Problem)))]
#[post("/projects/{project}/environments")]
#[tracing::instrument(skip_all, fields(project = %path))]
async fn create_environment(
    state: web::Data<AppState>,
    auth: Auth<Admin>,
    path: web::Path<String>,
    Body(body): Body<CreateEnvironment>,
) -> Result<HttpResponse, HandlerError> {
    let project = project_key(path.into_inner())?;
    let (environment, keys) =
        state.store.create_environment(&auth.actor, &project, &body.key, &body.name).await?;
    Ok(HttpResponse::Created()
        .json(EnvironmentCreated { environment: environment.into(), keys: keys.into() }))
}

/// List a project's environments.
#[utoipa::path(tag = "environments", responses((status = 200, body = Vec<EnvironmentView>)))]
#[get("/projects/{project}/environments")]
#[tracing::instrument(skip_all, fields(project = %path))]
async fn list_environments(
    state: web::Data<AppState>,
    _auth: Auth<Viewer>,
    path: web::Path<String>,
) -> Result<HttpResponse, HandlerError> {
    let project = project_key(path.into_inner())?;
    let environments = state.store.list_environments(&project).await?;
    Ok(HttpResponse::Ok().json(environments.into_iter().map(EnvironmentView::from).collect::<Vec<_>>()))
}

/// Get an environment, with its current revision.
#[utoipa::path(tag = "environments", responses((status = 200, body = EnvironmentView), (status = 404, body = Problem)))]
#[get("/projects/{project}/environments/{environment}")]
#[tracing::instrument(skip_all, fields(project = %path.0, environment = %path.1))]
async fn get_environment(
    state: web::Data<AppState>,
    _auth: Auth<Viewer>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, HandlerError> {
    let (project, environment) = path.into_inner();
    let record = state.store.get_environment(&project_key(project)?, &environment_key(environment)?).await?;
    Ok(HttpResponse::Ok().json(EnvironmentView::from(record)))
}

/// Changes to an environment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEnvironment {
    /// New display name.
    pub name: String,
}

/// Rename an environment.
#[utoipa::path(tag = "environments", request_body = UpdateEnvironment, responses((status = 200, body = EnvironmentView)))]
#[patch("/projects/{project}/environments/{environment}")]
#[tracing::instrument(skip_all, fields(project = %path.0, environment = %path.1))]
async fn update_environment(
    state: web::Data<AppState>,
    auth: Auth<Admin>,
    path: web::Path<(String, String)>,
    Body(body): Body<UpdateEnvironment>,
) -> Result<HttpResponse, HandlerError> {
    let (project, environment) = path.into_inner();
    let record = state
        .store
        .update_environment(&auth.actor, &project_key(project)?, &environment_key(environment)?, &body.name)
        .await?;
    Ok(HttpResponse::Ok().json(EnvironmentView::from(record)))
}

/// Delete an environment and everything in it.
#[utoipa::path(tag = "environments", responses((status = 204), (status = 404, body = Problem)))]
#[delete("/projects/{project}/environments/{environment}")]
#[tracing::instrument(skip_all, fields(project = %path.0, environment = %path.1))]
async fn delete_environment(
    state: web::Data<AppState>,
    auth: Auth<Admin>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, HandlerError> {
    let (project, environment) = path.into_inner();
    state
        .store
        .delete_environment(&auth.actor, &project_key(project)?, &environment_key(environment)?)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// List an environment's SDK keys: ids and prefixes, never secrets.
#[utoipa::path(tag = "environments", responses((status = 200, body = Vec<KeyView>)))]
#[get("/projects/{project}/environments/{environment}/keys")]
#[tracing::instrument(skip_all, fields(project = %path.0, environment = %path.1))]
async fn list_keys(
    state: web::Data<AppState>,
    _auth: Auth<Viewer>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, HandlerError> {
    let (project, environment) = path.into_inner();
    let keys = state.store.list_keys(&project_key(project)?, &environment_key(environment)?).await?;
    Ok(HttpResponse::Ok().json(keys.into_iter().map(KeyView::from).collect::<Vec<_>>()))
}

/// Options of a key rotation.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKeys {
    /// Seconds the current keys keep working (default from settings, 3600); 0 revokes them now.
    pub overlap_seconds: Option<u64>,
}

/// Issue new server and client keys; the current ones keep working for the overlap window.
#[utoipa::path(tag = "environments", request_body(content = Option<RotateKeys>), responses((status = 200, body = NewKeysView)))]
#[post("/projects/{project}/environments/{environment}/keys/rotate")]
#[tracing::instrument(skip_all, fields(project = %path.0, environment = %path.1))]
async fn rotate_keys(
    state: web::Data<AppState>,
    auth: Auth<Admin>,
    path: web::Path<(String, String)>,
    OptionalBody(options): OptionalBody<RotateKeys>,
) -> Result<HttpResponse, HandlerError> {
    let (project, environment) = path.into_inner();
    // The body is optional: an empty POST rotates with the default overlap.
    let options = options.unwrap_or_default();
    let seconds = options.overlap_seconds.unwrap_or(state.settings.api.key_rotation_overlap_seconds);
    let overlap = time::Duration::seconds(i64::try_from(seconds.min(365 * 86_400)).unwrap_or(0));
    let keys = state
        .store
        .rotate_keys(&auth.actor, &project_key(project)?, &environment_key(environment)?, overlap)
        .await?;
    Ok(HttpResponse::Ok().json(NewKeysView::from(keys)))
}

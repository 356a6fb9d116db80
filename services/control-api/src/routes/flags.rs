//! `/api/v1/projects/{project}/flags`: flags, and their configuration per environment.

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, put, web};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use vexil_model::{EnvironmentKey, Flag, FlagConfigSpec, FlagKey, FlagSpec, ProjectKey};
use vexil_store::FlagFilter;

use crate::error::{ApiError, ErrorCode, HandlerError, Problem};
use crate::extract::{Auth, Body, Editor, Query, Viewer, etag, if_match, parse_json, path_key};
use crate::state::AppState;
use crate::views::{FlagConfigView, FlagView};

/// Registers the routes.
pub fn configure(config: &mut utoipa_actix_web::service_config::ServiceConfig) {
    // Configuration changes first: they are most of the API's traffic (see `api_scope`).
    config
        .service(put_flag_config)
        .service(toggle_flag)
        .service(get_flag_config)
        .service(create_flag)
        .service(list_flags)
        .service(get_flag)
        .service(update_flag)
        .service(delete_flag);
}

fn keys(project: String, flag: String) -> Result<(ProjectKey, FlagKey), ApiError> {
    Ok((path_key("project", project, ProjectKey::parse)?, path_key("flag", flag, FlagKey::parse)?))
}

/// Create a flag. Every environment gets the initial configuration: off, serving the last variation.
#[utoipa::path(tag = "flags", request_body = FlagSpec,
    responses((status = 201, body = FlagView), (status = 400, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[post("/projects/{project}/flags")]
#[tracing::instrument(skip_all, fields(project = %path))]
async fn create_flag(
    state: web::Data<AppState>,
    auth: Auth<Editor>,
    path: web::Path<String>,
    Body(spec): Body<FlagSpec>,
) -> Result<HttpResponse, HandlerError> {
    let project = path_key("project", path.into_inner(), ProjectKey::parse)?;
    let flag = Flag::parse(spec)?;
    let record = state.store.create_flag(&auth.actor, &project, flag).await?;
    let (name, value) = etag(record.version);
    Ok(HttpResponse::Created().insert_header((name, value)).json(FlagView::from(record)))
}

/// Filters for listing flags.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FlagQuery {
    /// Keys starting with this.
    pub prefix: Option<String>,
    /// Flags with this tag.
    pub tag: Option<String>,
    /// Case-insensitive text in the key, name or description.
    pub q: Option<String>,
    /// `true` for archived flags only, `false` (default) for live ones, `all` for both.
    pub archived: Option<String>,
}

/// List a project's flags.
#[utoipa::path(tag = "flags", params(FlagQuery), responses((status = 200, body = Vec<FlagView>)))]
#[get("/projects/{project}/flags")]
#[tracing::instrument(skip_all, fields(project = %path))]
async fn list_flags(
    state: web::Data<AppState>,
    _auth: Auth<Viewer>,
    path: web::Path<String>,
    Query(query): Query<FlagQuery>,
) -> Result<HttpResponse, HandlerError> {
    let project = path_key("project", path.into_inner(), ProjectKey::parse)?;
    let archived = match query.archived.as_deref() {
        None | Some("false") => Some(false),
        Some("true") => Some(true),
        Some("all") => None,
        Some(_) => {
            return Err(ApiError::field(
                ErrorCode::InvalidParameter,
                "archived",
                "archived must be true, false or all",
            )
            .into());
        }
    };
    let filter = FlagFilter { prefix: query.prefix, tag: query.tag, query: query.q, archived };
    let flags = state.store.list_flags(&project, &filter).await?;
    Ok(HttpResponse::Ok().json(flags.into_iter().map(FlagView::from).collect::<Vec<_>>()))
}

/// Get a flag. Its `ETag` is its version, for `If-Match` on `PATCH`.
#[utoipa::path(tag = "flags", responses((status = 200, body = FlagView), (status = 404, body = Problem)))]
#[get("/projects/{project}/flags/{flag}")]
#[tracing::instrument(skip_all, fields(project = %path.0, flag = %path.1))]
async fn get_flag(
    state: web::Data<AppState>,
    _auth: Auth<Viewer>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, HandlerError> {
    let (project, flag) = path.into_inner();
    let (project, flag) = keys(project, flag)?;
    let record = state.store.get_flag(&project, &flag).await?;
    Ok(HttpResponse::Ok().insert_header(etag(record.version)).json(FlagView::from(record)))
}

/// Change a flag with a JSON merge patch (RFC 7396): send only the fields to change, `null` to clear
/// one. `archived: true` archives it. Every environment's configuration must stay valid. `If-Match`
/// (optional) makes the change conditional on the flag's version.
#[utoipa::path(tag = "flags", request_body(content = Object, content_type = "application/merge-patch+json"),
    responses((status = 200, body = FlagView), (status = 412, body = Problem), (status = 422, body = Problem)))]
#[patch("/projects/{project}/flags/{flag}")]
#[tracing::instrument(skip_all, fields(project = %path.0, flag = %path.1))]
async fn update_flag(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Auth<Editor>,
    path: web::Path<(String, String)>,
    Body(patch): Body<Value>,
) -> Result<HttpResponse, HandlerError> {
    let (project, flag) = path.into_inner();
    let (project, key) = keys(project, flag)?;
    let expected = if_match(&req)?;
    if !patch.is_object() {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            "a merge patch is a JSON object of the fields to change",
        )
        .into());
    }
    let current = state.store.get_flag(&project, &key).await?;
    let mut document = serde_json::to_value(current.flag.spec()).map_err(anyhow::Error::from)?;
    merge_patch(&mut document, &patch);
    let spec: FlagSpec = parse_json(&serde_json::to_vec(&document).map_err(anyhow::Error::from)?)?;
    let flag = Flag::parse(spec)?;
    let record = state
        .store
        .update_flag(&auth.actor, &project, &key, flag, expected.or(Some(current.version)))
        .await?;
    Ok(HttpResponse::Ok().insert_header(etag(record.version)).json(FlagView::from(record)))
}

/// RFC 7396: objects merge recursively, `null` removes, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// Delete a flag from every environment. Refused while another flag names it as a prerequisite.
#[utoipa::path(tag = "flags", responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
#[delete("/projects/{project}/flags/{flag}")]
#[tracing::instrument(skip_all, fields(project = %path.0, flag = %path.1))]
async fn delete_flag(
    state: web::Data<AppState>,
    auth: Auth<Editor>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, HandlerError> {
    let (project, flag) = path.into_inner();
    let (project, flag) = keys(project, flag)?;
    state.store.delete_flag(&auth.actor, &project, &flag).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Get a flag's configuration in an environment. Its `ETag` is its version, for `If-Match` on `PUT`.
#[utoipa::path(tag = "flags", responses((status = 200, body = FlagConfigView), (status = 404, body = Problem)))]
#[get("/projects/{project}/flags/{flag}/environments/{environment}")]
#[tracing::instrument(skip_all, fields(project = %path.0, flag = %path.1, environment = %path.2))]
async fn get_flag_config(
    state: web::Data<AppState>,
    _auth: Auth<Viewer>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, HandlerError> {
    let (project, flag, environment) = path.into_inner();
    let (project, flag) = keys(project, flag)?;
    let environment = path_key("environment", environment, EnvironmentKey::parse)?;
    let record = state.store.get_flag_config(&project, &flag, &environment).await?;
    Ok(HttpResponse::Ok().insert_header(etag(record.version)).json(FlagConfigView::from(record)))
}

/// Replace a flag's configuration in an environment. With `If-Match`, a stale version gets 412 and
/// changes nothing. The `version` field of the body is ignored.
#[utoipa::path(tag = "flags", request_body = FlagConfigSpec,
    responses((status = 200, body = FlagConfigView), (status = 412, body = Problem), (status = 422, body = Problem)))]
#[put("/projects/{project}/flags/{flag}/environments/{environment}")]
#[tracing::instrument(skip_all, fields(project = %path.0, flag = %path.1, environment = %path.2))]
async fn put_flag_config(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Auth<Editor>,
    path: web::Path<(String, String, String)>,
    Body(spec): Body<FlagConfigSpec>,
) -> Result<HttpResponse, HandlerError> {
    let (project, flag, environment) = path.into_inner();
    let (project, flag) = keys(project, flag)?;
    let environment = path_key("environment", environment, EnvironmentKey::parse)?;
    let expected = if_match(&req)?;
    let record =
        state.store.put_flag_config(&auth.actor, &project, &flag, &environment, spec, expected).await?;
    Ok(HttpResponse::Ok().insert_header(etag(record.version)).json(FlagConfigView::from(record)))
}

/// Turn a flag on or off.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Toggle {
    /// On (`true`) or off.
    pub on: bool,
}

/// Turn a flag on or off in an environment, leaving the rest of its configuration alone: the kill switch.
#[utoipa::path(tag = "flags", request_body = Toggle, responses((status = 200, body = FlagConfigView), (status = 404, body = Problem)))]
#[post("/projects/{project}/flags/{flag}/environments/{environment}/toggle")]
#[tracing::instrument(skip_all, fields(project = %path.0, flag = %path.1, environment = %path.2))]
async fn toggle_flag(
    state: web::Data<AppState>,
    auth: Auth<Editor>,
    path: web::Path<(String, String, String)>,
    Body(toggle): Body<Toggle>,
) -> Result<HttpResponse, HandlerError> {
    let (project, flag, environment) = path.into_inner();
    let (project, flag) = keys(project, flag)?;
    let environment = path_key("environment", environment, EnvironmentKey::parse)?;
    let record = state.store.toggle_flag(&auth.actor, &project, &flag, &environment, toggle.on).await?;
    Ok(HttpResponse::Ok().insert_header(etag(record.version)).json(FlagConfigView::from(record)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::merge_patch;

    #[test]
    fn a_merge_patch_follows_rfc_7396() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "tags": ["x"]});
        merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}, "tags": ["y"]}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}, "tags": ["y"]}));
    }
}

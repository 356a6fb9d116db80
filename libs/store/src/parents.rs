//! The parents every item hangs from: a project by key, and its environments.
//!
//! Every operation on a flag, segment, key or environment starts by finding its project (and usually
//! the environment) by key inside its own transaction, so a missing parent is a `NotFound` before
//! anything is read or written. The rows carry the ids the rest of the work joins on; the environment's
//! `revision` is what the change log continues from.

use sqlx::FromRow;
use time::OffsetDateTime;
use vexil_model::{EnvironmentKey, ProjectKey};

use crate::db::{Tx, on};
use crate::error::{Result, StoreError};

#[derive(Debug, Clone, FromRow)]
pub(crate) struct ProjectRow {
    pub(crate) id: i64,
    pub(crate) key: String,
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) created_at: OffsetDateTime,
    pub(crate) updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, FromRow)]
pub(crate) struct EnvRow {
    pub(crate) id: i64,
    pub(crate) key: String,
    pub(crate) name: String,
    pub(crate) revision: i64,
    pub(crate) created_at: OffsetDateTime,
    pub(crate) updated_at: OffsetDateTime,
}

pub(crate) async fn project(tx: &mut Tx, key: &ProjectKey) -> Result<ProjectRow> {
    const SQL: &str =
        "select id, key, name, description, created_at, updated_at from projects where key = $1";
    let row: Option<ProjectRow> =
        on!(tx, |c, d| sqlx::query_as(SQL).bind(key.as_str()).fetch_optional(c).await?);
    row.ok_or_else(|| StoreError::NotFound { resource: "project", key: key.to_string() })
}

pub(crate) async fn environment(tx: &mut Tx, project: &ProjectRow, key: &EnvironmentKey) -> Result<EnvRow> {
    const SQL: &str = "select id, key, name, revision, created_at, updated_at from environments \
                       where project_id = $1 and key = $2";
    let row: Option<EnvRow> =
        on!(tx, |c, d| sqlx::query_as(SQL).bind(project.id).bind(key.as_str()).fetch_optional(c).await?);
    row.ok_or_else(|| StoreError::NotFound { resource: "environment", key: format!("{}/{key}", project.key) })
}

/// Every environment of the project, in id order (the order writers lock environments in).
pub(crate) async fn environments(tx: &mut Tx, project_id: i64) -> Result<Vec<EnvRow>> {
    const SQL: &str = "select id, key, name, revision, created_at, updated_at from environments \
                       where project_id = $1 order by id";
    Ok(on!(tx, |c, d| sqlx::query_as(SQL).bind(project_id).fetch_all(c).await?))
}

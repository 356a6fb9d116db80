//! Projects. A new project gets the default environments, each with a server and a client key.

use serde_json::json;
use vexil_model::{EnvironmentKey, ProjectKey};

use crate::audit::{self, AuditEntry};
use crate::db::{now, on};
use crate::error::{Result, StoreError, corrupt, is_unique_violation};
use crate::parents::{self, ProjectRow};
use crate::records::{Actor, NewSdkKeys, ProjectRecord};
use crate::{DEFAULT_ENVIRONMENTS, Store};

impl TryFrom<ProjectRow> for ProjectRecord {
    type Error = StoreError;
    fn try_from(row: ProjectRow) -> Result<ProjectRecord> {
        Ok(ProjectRecord {
            key: ProjectKey::parse(row.key).map_err(|e| corrupt("project key", e))?,
            name: row.name,
            description: row.description,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

fn project_json(record: &ProjectRecord) -> serde_json::Value {
    json!({"key": record.key, "name": record.name, "description": record.description})
}

impl Store {
    /// Creates a project with the default environments and their keys (returned once, here).
    pub async fn create_project(
        &self,
        actor: &Actor,
        key: &ProjectKey,
        name: &str,
        description: &str,
    ) -> Result<(ProjectRecord, Vec<NewSdkKeys>)> {
        const SQL: &str = "insert into projects (key, name, description, created_at, updated_at) \
                           values ($1, $2, $3, $4, $4) returning id, key, name, description, created_at, updated_at";
        let at = now();
        let mut tx = self.begin().await?;
        let inserted: std::result::Result<ProjectRow, sqlx::Error> = on!(&mut tx, |c, d| sqlx::query_as(SQL)
            .bind(key.as_str())
            .bind(if name.is_empty() { key.as_str() } else { name })
            .bind(description)
            .bind(at)
            .fetch_one(c)
            .await);
        let row = inserted.map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::AlreadyExists { resource: "project", key: key.to_string() }
            } else {
                e.into()
            }
        })?;
        let record = ProjectRecord::try_from(row.clone())?;
        audit::append_audit(
            &mut tx,
            AuditEntry {
                actor,
                action: "project.create",
                resource: format!("projects/{key}"),
                project: Some(key.as_str()),
                environment: None,
                flag: None,
                before: None,
                after: Some(project_json(&record)),
            },
            at,
        )
        .await?;
        let mut keys = Vec::new();
        for env in DEFAULT_ENVIRONMENTS {
            let env = EnvironmentKey::parse(env).expect("default environment keys are valid");
            let (_, new_keys) = self.insert_environment(&mut tx, actor, &row, &env, "", at).await?;
            keys.push(new_keys);
        }
        self.commit(tx).await?;
        Ok((record, keys))
    }

    /// Every project, by key.
    pub async fn list_projects(&self) -> Result<Vec<ProjectRecord>> {
        const SQL: &str =
            "select id, key, name, description, created_at, updated_at from projects order by key";
        let mut tx = self.begin().await?;
        let rows: Vec<ProjectRow> = on!(&mut tx, |c, d| sqlx::query_as(SQL).fetch_all(c).await?);
        rows.into_iter().map(ProjectRecord::try_from).collect()
    }

    /// One project.
    pub async fn get_project(&self, key: &ProjectKey) -> Result<ProjectRecord> {
        let mut tx = self.begin().await?;
        parents::project(&mut tx, key).await?.try_into()
    }

    /// Changes a project's name and/or description.
    pub async fn update_project(
        &self,
        actor: &Actor,
        key: &ProjectKey,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<ProjectRecord> {
        const SQL: &str = "update projects set name = $2, description = $3, updated_at = $4 where id = $1 \
                           returning id, key, name, description, created_at, updated_at";
        let at = now();
        let mut tx = self.begin().await?;
        let row = parents::project(&mut tx, key).await?;
        let id = row.id;
        let before = ProjectRecord::try_from(row)?;
        let row: ProjectRow = on!(&mut tx, |c, d| sqlx::query_as(SQL)
            .bind(id)
            .bind(name.filter(|n| !n.is_empty()).unwrap_or(&before.name))
            .bind(description.unwrap_or(&before.description))
            .bind(at)
            .fetch_one(c)
            .await?);
        let after = ProjectRecord::try_from(row)?;
        audit::append_audit(
            &mut tx,
            AuditEntry {
                actor,
                action: "project.update",
                resource: format!("projects/{key}"),
                project: Some(key.as_str()),
                environment: None,
                flag: None,
                before: Some(project_json(&before)),
                after: Some(project_json(&after)),
            },
            at,
        )
        .await?;
        self.commit(tx).await?;
        Ok(after)
    }

    /// Deletes a project with everything in it. Each of its environments gets a final `delete` event
    /// so data-plane replicas drop it.
    pub async fn delete_project(&self, actor: &Actor, key: &ProjectKey) -> Result<()> {
        const SQL: &str = "delete from projects where id = $1";
        let at = now();
        let mut tx = self.begin().await?;
        let project = parents::project(&mut tx, key).await?;
        for env in parents::environments(&mut tx, project.id).await? {
            self.record_environment_deleted(&mut tx, &project, &env, at).await?;
        }
        on!(&mut tx, |c, d| sqlx::query(SQL).bind(project.id).execute(c).await.map(drop)?);
        let before = project_json(&ProjectRecord::try_from(project)?);
        audit::append_audit(
            &mut tx,
            AuditEntry {
                actor,
                action: "project.delete",
                resource: format!("projects/{key}"),
                project: Some(key.as_str()),
                environment: None,
                flag: None,
                before: Some(before),
                after: None,
            },
            at,
        )
        .await?;
        self.commit(tx).await
    }
}

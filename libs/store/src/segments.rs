//! Segments (per environment).

use serde_json::json;
use sqlx::FromRow;
use sqlx::types::Json;
use time::OffsetDateTime;
use vexil_model::{EnvironmentKey, ProjectKey, Segment, SegmentKey, SegmentSpec, ValidationErrors};
use vexil_proto::ItemKind;

use crate::Store;
use crate::audit::{self, AuditEntry};
use crate::change_log::{self, Change};
use crate::checks;
use crate::db::{Tx, now, on, to_u64};
use crate::error::{Result, StoreError, corrupt, is_unique_violation};
use crate::parents::{self, EnvRow};
use crate::records::{Actor, SegmentRecord};

#[derive(FromRow)]
struct SegmentRow {
    id: i64,
    spec: Json<SegmentSpec>,
    version: i64,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl SegmentRow {
    fn record(self) -> Result<SegmentRecord> {
        let mut spec = self.spec.0;
        spec.version = to_u64(self.version);
        Ok(SegmentRecord {
            segment: Segment::parse(spec).map_err(|e| corrupt("segment", e))?,
            version: to_u64(self.version),
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

async fn segment_row(tx: &mut Tx, env: &EnvRow, key: &SegmentKey) -> Result<SegmentRow> {
    const SQL: &str = "select id, spec, version, created_at, updated_at from segments where environment_id = $1 and key = $2";
    let row: Option<SegmentRow> =
        on!(tx, |c, d| sqlx::query_as(SQL).bind(env.id).bind(key.as_str()).fetch_optional(c).await?);
    row.ok_or_else(|| StoreError::NotFound { resource: "segment", key: format!("{}/{key}", env.key) })
}

fn resource(project: &ProjectKey, env: &EnvironmentKey, key: &SegmentKey) -> String {
    format!("projects/{project}/environments/{env}/segments/{key}")
}

impl Store {
    /// Creates a segment in an environment.
    pub async fn create_segment(
        &self,
        actor: &Actor,
        project: &ProjectKey,
        environment: &EnvironmentKey,
        segment: Segment,
    ) -> Result<SegmentRecord> {
        const SQL: &str = "insert into segments (environment_id, key, spec, version, created_at, updated_at) \
                           values ($1, $2, $3, 1, $4, $4) returning id, spec, version, created_at, updated_at";
        let at = now();
        let mut tx = self.begin().await?;
        let project_row = parents::project(&mut tx, project).await?;
        let env = parents::environment(&mut tx, &project_row, environment).await?;
        let mut spec = segment.into_spec();
        spec.version = 1;
        let inserted: std::result::Result<SegmentRow, sqlx::Error> = on!(&mut tx, |c, d| sqlx::query_as(SQL)
            .bind(env.id)
            .bind(spec.key.as_str())
            .bind(Json(&spec))
            .bind(at)
            .fetch_one(c)
            .await);
        let row = inserted.map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::AlreadyExists { resource: "segment", key: format!("{environment}/{}", spec.key) }
            } else {
                e.into()
            }
        })?;
        change_log::record_change(
            &mut tx,
            project.as_str(),
            &env,
            Change::upsert_json(ItemKind::Segment, spec.key.as_str(), &spec),
            at,
        )
        .await?;
        audit::append_audit(
            &mut tx,
            AuditEntry {
                actor,
                action: "segment.create",
                resource: resource(project, environment, &spec.key),
                project: Some(project.as_str()),
                environment: Some(environment.as_str()),
                flag: None,
                before: None,
                after: Some(json!(spec)),
            },
            at,
        )
        .await?;
        let record = row.record()?;
        self.commit(tx).await?;
        Ok(record)
    }

    /// The environment's segments, by key.
    pub async fn list_segments(
        &self,
        project: &ProjectKey,
        environment: &EnvironmentKey,
    ) -> Result<Vec<SegmentRecord>> {
        const SQL: &str = "select id, spec, version, created_at, updated_at from segments where environment_id = $1 order by key";
        let mut tx = self.begin().await?;
        let project_row = parents::project(&mut tx, project).await?;
        let env = parents::environment(&mut tx, &project_row, environment).await?;
        let rows: Vec<SegmentRow> =
            on!(&mut tx, |c, d| sqlx::query_as(SQL).bind(env.id).fetch_all(c).await?);
        rows.into_iter().map(SegmentRow::record).collect()
    }

    /// One segment.
    pub async fn get_segment(
        &self,
        project: &ProjectKey,
        environment: &EnvironmentKey,
        key: &SegmentKey,
    ) -> Result<SegmentRecord> {
        let mut tx = self.begin().await?;
        let project_row = parents::project(&mut tx, project).await?;
        let env = parents::environment(&mut tx, &project_row, environment).await?;
        segment_row(&mut tx, &env, key).await?.record()
    }

    /// Replaces a segment (its key cannot change), optionally only if `if_version` is current.
    pub async fn update_segment(
        &self,
        actor: &Actor,
        project: &ProjectKey,
        environment: &EnvironmentKey,
        key: &SegmentKey,
        segment: Segment,
        if_version: Option<u64>,
    ) -> Result<SegmentRecord> {
        // Compare-and-set: the version read above must still be current when the row is written.
        const SQL: &str = "update segments set spec = $2, version = version + 1, updated_at = $3 \
                           where id = $1 and version = $4 returning id, spec, version, created_at, updated_at";
        if segment.key != *key {
            return Err(ValidationErrors::single("key", "a segment's key cannot be changed").into());
        }
        let at = now();
        let mut tx = self.begin().await?;
        let project_row = parents::project(&mut tx, project).await?;
        let env = parents::environment(&mut tx, &project_row, environment).await?;
        let before = segment_row(&mut tx, &env, key).await?;
        let current = to_u64(before.version);
        if let Some(expected) = if_version
            && expected != current
        {
            return Err(StoreError::VersionMismatch { expected, current });
        }
        let mut spec = segment.into_spec();
        spec.version = current + 1;
        let before_spec = before.spec.0.clone();
        let row: Option<SegmentRow> = on!(&mut tx, |c, d| sqlx::query_as(SQL)
            .bind(before.id)
            .bind(Json(&spec))
            .bind(at)
            .bind(before.version)
            .fetch_optional(c)
            .await?);
        let Some(row) = row else {
            let now_current = to_u64(segment_row(&mut tx, &env, key).await?.version);
            return Err(StoreError::VersionMismatch {
                expected: if_version.unwrap_or(current),
                current: now_current,
            });
        };
        change_log::record_change(
            &mut tx,
            project.as_str(),
            &env,
            Change::upsert_json(ItemKind::Segment, key.as_str(), &spec),
            at,
        )
        .await?;
        audit::append_audit(
            &mut tx,
            AuditEntry {
                actor,
                action: "segment.update",
                resource: resource(project, environment, key),
                project: Some(project.as_str()),
                environment: Some(environment.as_str()),
                flag: None,
                before: Some(json!(before_spec)),
                after: Some(json!(spec)),
            },
            at,
        )
        .await?;
        let record = row.record()?;
        self.commit(tx).await?;
        Ok(record)
    }

    /// Deletes a segment; refused (conflict) while a flag's rule references it.
    pub async fn delete_segment(
        &self,
        actor: &Actor,
        project: &ProjectKey,
        environment: &EnvironmentKey,
        key: &SegmentKey,
    ) -> Result<()> {
        const SQL: &str = "delete from segments where id = $1";
        let at = now();
        let mut tx = self.begin().await?;
        let project_row = parents::project(&mut tx, project).await?;
        let env = parents::environment(&mut tx, &project_row, environment).await?;
        let before = segment_row(&mut tx, &env, key).await?;
        on!(&mut tx, |c, d| sqlx::query(SQL).bind(before.id).execute(c).await.map(drop)?);
        change_log::record_change(
            &mut tx,
            project.as_str(),
            &env,
            Change::delete(ItemKind::Segment, key.as_str()),
            at,
        )
        .await?;
        checks::check_environment(&mut tx, &env, None).await?;
        audit::append_audit(
            &mut tx,
            AuditEntry {
                actor,
                action: "segment.delete",
                resource: resource(project, environment, key),
                project: Some(project.as_str()),
                environment: Some(environment.as_str()),
                flag: None,
                before: Some(json!(before.spec.0)),
                after: None,
            },
            at,
        )
        .await?;
        self.commit(tx).await
    }
}

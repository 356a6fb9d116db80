//! Flags (per project) and their configurations (per environment).

use serde_json::json;
use sqlx::FromRow;
use sqlx::types::Json;
use time::OffsetDateTime;
use vexil_model::{
    ConfiguredFlagSpec, EnvironmentKey, Flag, FlagConfig, FlagConfigSpec, FlagKey, FlagSpec, ProjectKey,
    ValidationErrors,
};
use vexil_proto::ItemKind;

use crate::Store;
use crate::audit::{self, AuditEntry};
use crate::change_log::{self, Change};
use crate::checks;
use crate::db::{Tx, now, on, to_u64};
use crate::error::{Result, StoreError, corrupt, is_unique_violation};
use crate::parents::{self, EnvRow, ProjectRow};
use crate::records::{Actor, FlagConfigRecord, FlagRecord};

/// Which flags to list; all conditions ANDed.
#[derive(Debug, Clone, Default)]
pub struct FlagFilter {
    /// Keys starting with this.
    pub prefix: Option<String>,
    /// Flags carrying this tag.
    pub tag: Option<String>,
    /// Case-insensitive text in the key, name or description.
    pub query: Option<String>,
    /// Archived flags (true), live flags (false), or both (none). Live only by default in the API.
    pub archived: Option<bool>,
}

impl FlagFilter {
    fn accepts(&self, flag: &Flag) -> bool {
        let query = self.query.as_deref().map(str::to_lowercase);
        self.prefix.as_deref().is_none_or(|p| flag.key.as_str().starts_with(p))
            && self.tag.as_deref().is_none_or(|t| flag.tags.iter().any(|tag| tag == t))
            && self.archived.is_none_or(|a| flag.archived == a)
            && query.is_none_or(|q| {
                [flag.key.as_str(), &flag.name, &flag.description]
                    .iter()
                    .any(|text| text.to_lowercase().contains(&q))
            })
    }
}

#[derive(FromRow)]
pub(crate) struct FlagRow {
    pub(crate) id: i64,
    spec: Json<FlagSpec>,
    version: i64,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl FlagRow {
    pub(crate) fn record(self) -> Result<FlagRecord> {
        Ok(FlagRecord {
            flag: Flag::parse(self.spec.0).map_err(|e| corrupt("flag", e))?,
            version: to_u64(self.version),
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(FromRow)]
struct ConfigRow {
    config: Json<FlagConfigSpec>,
    version: i64,
    updated_at: OffsetDateTime,
}

async fn flag_row(tx: &mut Tx, project: &ProjectRow, key: &FlagKey) -> Result<FlagRow> {
    const SQL: &str =
        "select id, spec, version, created_at, updated_at from flags where project_id = $1 and key = $2";
    let row: Option<FlagRow> =
        on!(tx, |c, d| sqlx::query_as(SQL).bind(project.id).bind(key.as_str()).fetch_optional(c).await?);
    row.ok_or_else(|| StoreError::NotFound { resource: "flag", key: format!("{}/{key}", project.key) })
}

async fn config_row(tx: &mut Tx, flag_id: i64, env: &EnvRow, flag: &FlagKey) -> Result<ConfigRow> {
    const SQL: &str =
        "select config, version, updated_at from flag_configs where flag_id = $1 and environment_id = $2";
    let row: Option<ConfigRow> =
        on!(tx, |c, d| sqlx::query_as(SQL).bind(flag_id).bind(env.id).fetch_optional(c).await?);
    row.ok_or_else(|| StoreError::NotFound {
        resource: "flag configuration",
        key: format!("{flag}/{}", env.key),
    })
}

/// A flag and one environment's configuration as a change event carries them: typed, so that the
/// payload's JSON is exactly the serialisation the data plane's clients get (the streaming service
/// splices it into `patch` frames as it is).
pub(crate) fn configured(flag: &Flag, config: &FlagConfigSpec) -> ConfiguredFlagSpec {
    ConfiguredFlagSpec { flag: flag.spec().clone(), config: config.clone() }
}

fn flag_resource(project: &ProjectKey, flag: &FlagKey) -> String {
    format!("projects/{project}/flags/{flag}")
}

impl Store {
    /// Creates a flag; every environment of the project gets the initial configuration (off).
    pub async fn create_flag(&self, actor: &Actor, project: &ProjectKey, flag: Flag) -> Result<FlagRecord> {
        const INSERT: &str = "insert into flags (project_id, key, spec, archived, version, created_at, updated_at) \
                      values ($1, $2, $3, $4, 1, $5, $5) returning id, spec, version, created_at, updated_at";
        const CONFIG: &str = "insert into flag_configs (flag_id, environment_id, config, version, updated_at) \
                              values ($1, $2, $3, 1, $4)";
        let at = now();
        let mut tx = self.begin().await?;
        let project_row = parents::project(&mut tx, project).await?;
        let inserted: std::result::Result<FlagRow, sqlx::Error> = on!(&mut tx, |c, d| sqlx::query_as(INSERT)
            .bind(project_row.id)
            .bind(flag.key.as_str())
            .bind(Json(flag.spec()))
            .bind(flag.archived)
            .bind(at)
            .fetch_one(c)
            .await);
        let row = inserted.map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::AlreadyExists { resource: "flag", key: format!("{project}/{}", flag.key) }
            } else {
                e.into()
            }
        })?;
        let mut config = FlagConfigSpec::initial(&flag);
        config.version = 1;
        for env in parents::environments(&mut tx, project_row.id).await? {
            on!(&mut tx, |c, d| sqlx::query(CONFIG)
                .bind(row.id)
                .bind(env.id)
                .bind(Json(&config))
                .bind(at)
                .execute(c)
                .await
                .map(drop)?);
            if !flag.archived {
                let payload = configured(&flag, &config);
                change_log::record_change(
                    &mut tx,
                    project.as_str(),
                    &env,
                    Change::upsert_json(ItemKind::Flag, flag.key.as_str(), &payload),
                    at,
                )
                .await?;
            }
        }
        audit::append_audit(
            &mut tx,
            AuditEntry {
                actor,
                action: "flag.create",
                resource: flag_resource(project, &flag.key),
                project: Some(project.as_str()),
                environment: None,
                flag: Some(flag.key.as_str()),
                before: None,
                after: Some(json!(flag.spec())),
            },
            at,
        )
        .await?;
        let record = row.record()?;
        self.commit(tx).await?;
        Ok(record)
    }

    /// The project's flags that pass `filter`, by key.
    pub async fn list_flags(&self, project: &ProjectKey, filter: &FlagFilter) -> Result<Vec<FlagRecord>> {
        const SQL: &str =
            "select id, spec, version, created_at, updated_at from flags where project_id = $1 order by key";
        let mut tx = self.begin().await?;
        let project_row = parents::project(&mut tx, project).await?;
        let rows: Vec<FlagRow> =
            on!(&mut tx, |c, d| sqlx::query_as(SQL).bind(project_row.id).fetch_all(c).await?);
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            let record = row.record()?;
            if filter.accepts(&record.flag) {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// One flag.
    pub async fn get_flag(&self, project: &ProjectKey, key: &FlagKey) -> Result<FlagRecord> {
        let mut tx = self.begin().await?;
        let project_row = parents::project(&mut tx, project).await?;
        flag_row(&mut tx, &project_row, key).await?.record()
    }

    /// Replaces a flag's definition (its key cannot change). Every environment's configuration must
    /// stay valid for the new definition (e.g. removing a variation a rule serves is refused, naming
    /// the environment and field); each environment gets a change event.
    pub async fn update_flag(
        &self,
        actor: &Actor,
        project: &ProjectKey,
        key: &FlagKey,
        flag: Flag,
        if_version: Option<u64>,
    ) -> Result<FlagRecord> {
        // Compare-and-set: the version read above must still be current when the row is written.
        const UPDATE: &str = "update flags set spec = $2, archived = $3, version = version + 1, updated_at = $4 \
                              where id = $1 and version = $5 returning id, spec, version, created_at, updated_at";
        // Locked (PostgreSQL): configuration changes read the flag's definition once they hold their
        // configuration's lock (`flag_configs.rs`), so they wait for this change and then see it.
        const CONFIGS: (&str, &str) = (
            "select e.id, e.key, e.name, e.revision, e.created_at, e.updated_at, c.config \
             from flag_configs c join environments e on e.id = c.environment_id \
             where c.flag_id = $1 order by e.id for update of c",
            "select e.id, e.key, e.name, e.revision, e.created_at, e.updated_at, c.config \
             from flag_configs c join environments e on e.id = c.environment_id \
             where c.flag_id = $1 order by e.id",
        );
        if flag.key != *key {
            return Err(ValidationErrors::single("key", "a flag's key cannot be changed").into());
        }
        let at = now();
        let mut tx = self.begin().await?;
        let project_row = parents::project(&mut tx, project).await?;
        let before = flag_row(&mut tx, &project_row, key).await?;
        if let Some(expected) = if_version
            && expected != to_u64(before.version)
        {
            return Err(StoreError::VersionMismatch { expected, current: to_u64(before.version) });
        }
        let flag_id = before.id;
        let read_version = before.version;
        let before = before.record()?;
        let row: Option<FlagRow> = on!(&mut tx, |c, d| sqlx::query_as(UPDATE)
            .bind(flag_id)
            .bind(Json(flag.spec()))
            .bind(flag.archived)
            .bind(at)
            .bind(read_version)
            .fetch_optional(c)
            .await?);
        let Some(row) = row else {
            let current = to_u64(flag_row(&mut tx, &project_row, key).await?.version);
            return Err(StoreError::VersionMismatch {
                expected: if_version.unwrap_or(to_u64(read_version)),
                current,
            });
        };
        #[derive(FromRow)]
        struct EnvConfig {
            #[sqlx(flatten)]
            env: EnvRow,
            config: Json<FlagConfigSpec>,
        }
        let configs: Vec<EnvConfig> = on!(&mut tx, |c, d| sqlx::query_as(d.pick(CONFIGS.0, CONFIGS.1))
            .bind(flag_id)
            .fetch_all(c)
            .await?);
        for EnvConfig { env, config } in configs {
            FlagConfig::parse(config.0.clone(), &flag)
                .map_err(|e| StoreError::Invalid(e.prefixed(&format!("environments.{}", env.key))))?;
            let change = match (before.flag.archived, flag.archived) {
                (_, true) => Change::delete(ItemKind::Flag, key.as_str()),
                (_, false) => {
                    Change::upsert_json(ItemKind::Flag, key.as_str(), &configured(&flag, &config.0))
                }
            };
            if before.flag.archived && flag.archived {
                continue; // still archived: the data plane has nothing to learn
            }
            change_log::record_change(&mut tx, project.as_str(), &env, change, at).await?;
            checks::check_environment(&mut tx, &env, Some(key.as_str())).await?;
        }
        audit::append_audit(
            &mut tx,
            AuditEntry {
                actor,
                action: "flag.update",
                resource: flag_resource(project, key),
                project: Some(project.as_str()),
                environment: None,
                flag: Some(key.as_str()),
                before: Some(json!(before.flag.spec())),
                after: Some(json!(flag.spec())),
            },
            at,
        )
        .await?;
        let record = row.record()?;
        self.commit(tx).await?;
        Ok(record)
    }

    /// Deletes a flag from every environment. Refused (conflict) while another flag names it as a
    /// prerequisite.
    pub async fn delete_flag(&self, actor: &Actor, project: &ProjectKey, key: &FlagKey) -> Result<()> {
        const DELETE: &str = "delete from flags where id = $1";
        let at = now();
        let mut tx = self.begin().await?;
        let project_row = parents::project(&mut tx, project).await?;
        let row = flag_row(&mut tx, &project_row, key).await?;
        let flag_id = row.id;
        let before = row.record()?;
        on!(&mut tx, |c, d| sqlx::query(DELETE).bind(flag_id).execute(c).await.map(drop)?);
        for env in parents::environments(&mut tx, project_row.id).await? {
            if !before.flag.archived {
                change_log::record_change(
                    &mut tx,
                    project.as_str(),
                    &env,
                    Change::delete(ItemKind::Flag, key.as_str()),
                    at,
                )
                .await?;
            }
            checks::check_environment(&mut tx, &env, None).await?;
        }
        audit::append_audit(
            &mut tx,
            AuditEntry {
                actor,
                action: "flag.delete",
                resource: flag_resource(project, key),
                project: Some(project.as_str()),
                environment: None,
                flag: Some(key.as_str()),
                before: Some(json!(before.flag.spec())),
                after: None,
            },
            at,
        )
        .await?;
        self.commit(tx).await
    }

    /// A flag's configuration in one environment.
    pub async fn get_flag_config(
        &self,
        project: &ProjectKey,
        flag: &FlagKey,
        environment: &EnvironmentKey,
    ) -> Result<FlagConfigRecord> {
        let mut tx = self.begin().await?;
        let project_row = parents::project(&mut tx, project).await?;
        let env = parents::environment(&mut tx, &project_row, environment).await?;
        let flag_row = flag_row(&mut tx, &project_row, flag).await?;
        let config = config_row(&mut tx, flag_row.id, &env, flag).await?;
        let flag_record = flag_row.record()?;
        config_record(&flag_record.flag, environment, config)
    }
}

fn config_record(flag: &Flag, environment: &EnvironmentKey, row: ConfigRow) -> Result<FlagConfigRecord> {
    let mut spec = row.config.0;
    spec.version = to_u64(row.version);
    Ok(FlagConfigRecord {
        flag: flag.key.clone(),
        environment: environment.clone(),
        config: FlagConfig::parse(spec, flag).map_err(|e| corrupt("flag configuration", e))?,
        version: to_u64(row.version),
        updated_at: row.updated_at,
    })
}

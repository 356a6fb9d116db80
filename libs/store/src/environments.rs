//! Environments and their SDK keys.

use serde_json::json;
use time::{Duration, OffsetDateTime};
use vexil_keys::{KeyKind, SecretKind};
use vexil_model::{EnvironmentKey, FlagConfigSpec, FlagSpec, ProjectKey};
use vexil_proto::{ItemKind, SdkKey};

use crate::Store;
use crate::audit::{self, AuditEntry};
use crate::change_log::{self, Change};
use crate::db::{Tx, now, on, to_u64};
use crate::error::{Result, StoreError, corrupt, is_unique_violation};
use crate::flags::configured;
use crate::parents::{self, EnvRow, ProjectRow};
use crate::records::{Actor, EnvironmentRecord, NewSdkKeys, SdkKeyRecord};
use crate::snapshot::unix_millis;

fn record(project: &ProjectRow, row: EnvRow) -> Result<EnvironmentRecord> {
    Ok(EnvironmentRecord {
        id: row.id,
        project: ProjectKey::parse(project.key.clone()).map_err(|e| corrupt("project key", e))?,
        key: EnvironmentKey::parse(row.key).map_err(|e| corrupt("environment key", e))?,
        name: row.name,
        revision: to_u64(row.revision),
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    kind: String,
    prefix: String,
    created_at: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
}

impl Store {
    /// Creates an environment in a project: every existing flag gets the initial (off) configuration,
    /// and the environment gets a server and a client key, returned once, here.
    pub async fn create_environment(
        &self,
        actor: &Actor,
        project: &ProjectKey,
        key: &EnvironmentKey,
        name: &str,
    ) -> Result<(EnvironmentRecord, NewSdkKeys)> {
        let at = now();
        let mut tx = self.begin().await?;
        let project_row = parents::project(&mut tx, project).await?;
        let (_, keys) = self.insert_environment(&mut tx, actor, &project_row, key, name, at).await?;
        // Read back: creating keys and configurations has moved the revision on.
        let env = parents::environment(&mut tx, &project_row, key).await?;
        let record = record(&project_row, env)?;
        self.commit(tx).await?;
        Ok((record, keys))
    }

    pub(crate) async fn insert_environment(
        &self,
        tx: &mut Tx,
        actor: &Actor,
        project: &ProjectRow,
        key: &EnvironmentKey,
        name: &str,
        at: OffsetDateTime,
    ) -> Result<(EnvRow, NewSdkKeys)> {
        const INSERT: &str = "insert into environments (project_id, key, name, revision, created_at, updated_at) \
                              values ($1, $2, $3, 0, $4, $4) returning id, key, name, revision, created_at, updated_at";
        const FLAGS: &str = "select id, spec from flags where project_id = $1 order by key";
        const CONFIG: &str = "insert into flag_configs (flag_id, environment_id, config, version, updated_at) \
                              values ($1, $2, $3, 1, $4)";
        let name = if name.is_empty() { key.as_str() } else { name };
        let inserted: std::result::Result<EnvRow, sqlx::Error> = on!(tx, |c, d| sqlx::query_as(INSERT)
            .bind(project.id)
            .bind(key.as_str())
            .bind(name)
            .bind(at)
            .fetch_one(c)
            .await);
        let env = inserted.map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::AlreadyExists { resource: "environment", key: format!("{}/{key}", project.key) }
            } else {
                e.into()
            }
        })?;
        let flags: Vec<(i64, sqlx::types::Json<FlagSpec>)> =
            on!(tx, |c, d| sqlx::query_as(FLAGS).bind(project.id).fetch_all(c).await?);
        for (flag_id, spec) in flags {
            let flag = vexil_model::Flag::parse(spec.0).map_err(|e| corrupt("flag", e))?;
            let mut config = FlagConfigSpec::initial(&flag);
            config.version = 1;
            on!(tx, |c, d| sqlx::query(CONFIG)
                .bind(flag_id)
                .bind(env.id)
                .bind(sqlx::types::Json(&config))
                .bind(at)
                .execute(c)
                .await
                .map(drop)?);
            if !flag.archived {
                let payload = configured(&flag, &config);
                change_log::record_change(
                    tx,
                    &project.key,
                    &env,
                    Change::upsert_json(ItemKind::Flag, flag.key.as_str(), &payload),
                    at,
                )
                .await?;
            }
        }
        let keys = self.insert_keys(tx, project, &env, at).await?;
        audit::append_audit(
            tx,
            AuditEntry {
                actor,
                action: "environment.create",
                resource: format!("projects/{}/environments/{key}", project.key),
                project: Some(&project.key),
                environment: Some(key.as_str()),
                flag: None,
                before: None,
                after: Some(json!({"key": key, "name": name})),
            },
            at,
        )
        .await?;
        Ok((env, keys))
    }

    /// Creates a server and a client key for the environment, each announced by a change event.
    async fn insert_keys(
        &self,
        tx: &mut Tx,
        project: &ProjectRow,
        env: &EnvRow,
        at: OffsetDateTime,
    ) -> Result<NewSdkKeys> {
        const SQL: &str = "insert into sdk_keys (id, environment_id, kind, prefix, secret_sha256, created_at) \
                           values ($1, $2, $3, $4, $5, $6)";
        let server = vexil_keys::generate(SecretKind::Server);
        let client = vexil_keys::generate(SecretKind::Client);
        for (secret, kind) in [(&server, KeyKind::Server), (&client, KeyKind::Client)] {
            on!(tx, |c, d| sqlx::query(SQL)
                .bind(&secret.id)
                .bind(env.id)
                .bind(kind.as_str())
                .bind(vexil_keys::prefix_of(&secret.secret))
                .bind(secret.sha256.as_slice())
                .bind(at)
                .execute(c)
                .await
                .map(drop)?);
            let key = SdkKey {
                id: secret.id.clone(),
                kind: kind.as_str().to_owned(),
                secret_sha256: secret.sha256.to_vec(),
                expires_at_ms: 0,
            };
            change_log::record_change(tx, &project.key, env, Change::upsert_key(&key), at).await?;
        }
        Ok(NewSdkKeys {
            environment: EnvironmentKey::parse(env.key.clone()).map_err(|e| corrupt("environment key", e))?,
            server: server.secret,
            client: client.secret,
        })
    }

    /// The environments of a project.
    pub async fn list_environments(&self, project: &ProjectKey) -> Result<Vec<EnvironmentRecord>> {
        let mut tx = self.begin().await?;
        let project_row = parents::project(&mut tx, project).await?;
        parents::environments(&mut tx, project_row.id)
            .await?
            .into_iter()
            .map(|row| record(&project_row, row))
            .collect()
    }

    /// One environment.
    pub async fn get_environment(
        &self,
        project: &ProjectKey,
        key: &EnvironmentKey,
    ) -> Result<EnvironmentRecord> {
        let mut tx = self.begin().await?;
        let project_row = parents::project(&mut tx, project).await?;
        let env = parents::environment(&mut tx, &project_row, key).await?;
        record(&project_row, env)
    }

    /// Renames an environment.
    pub async fn update_environment(
        &self,
        actor: &Actor,
        project: &ProjectKey,
        key: &EnvironmentKey,
        name: &str,
    ) -> Result<EnvironmentRecord> {
        const SQL: &str = "update environments set name = $2, updated_at = $3 where id = $1 \
                           returning id, key, name, revision, created_at, updated_at";
        let at = now();
        let mut tx = self.begin().await?;
        let project_row = parents::project(&mut tx, project).await?;
        let before = parents::environment(&mut tx, &project_row, key).await?;
        let row: EnvRow =
            on!(&mut tx, |c, d| sqlx::query_as(SQL).bind(before.id).bind(name).bind(at).fetch_one(c).await?);
        audit::append_audit(
            &mut tx,
            AuditEntry {
                actor,
                action: "environment.update",
                resource: format!("projects/{project}/environments/{key}"),
                project: Some(project.as_str()),
                environment: Some(key.as_str()),
                flag: None,
                before: Some(json!({"key": key, "name": before.name})),
                after: Some(json!({"key": key, "name": row.name})),
            },
            at,
        )
        .await?;
        let record = record(&project_row, row)?;
        self.commit(tx).await?;
        Ok(record)
    }

    /// Deletes an environment and everything in it; a final `delete` event tells replicas to drop it.
    pub async fn delete_environment(
        &self,
        actor: &Actor,
        project: &ProjectKey,
        key: &EnvironmentKey,
    ) -> Result<()> {
        const SQL: &str = "delete from environments where id = $1";
        let at = now();
        let mut tx = self.begin().await?;
        let project_row = parents::project(&mut tx, project).await?;
        let env = parents::environment(&mut tx, &project_row, key).await?;
        self.record_environment_deleted(&mut tx, &project_row, &env, at).await?;
        on!(&mut tx, |c, d| sqlx::query(SQL).bind(env.id).execute(c).await.map(drop)?);
        audit::append_audit(
            &mut tx,
            AuditEntry {
                actor,
                action: "environment.delete",
                resource: format!("projects/{project}/environments/{key}"),
                project: Some(project.as_str()),
                environment: Some(key.as_str()),
                flag: None,
                before: Some(json!({"key": key, "name": env.name})),
                after: None,
            },
            at,
        )
        .await?;
        self.commit(tx).await
    }

    pub(crate) async fn record_environment_deleted(
        &self,
        tx: &mut Tx,
        project: &ProjectRow,
        env: &EnvRow,
        at: OffsetDateTime,
    ) -> Result<()> {
        change_log::record_change(tx, &project.key, env, Change::delete(ItemKind::Environment, &env.key), at)
            .await?;
        Ok(())
    }

    /// The environment's SDK keys: ids and prefixes, never secrets.
    pub async fn list_keys(&self, project: &ProjectKey, key: &EnvironmentKey) -> Result<Vec<SdkKeyRecord>> {
        const SQL: &str = "select id, kind, prefix, created_at, expires_at from sdk_keys \
                           where environment_id = $1 order by created_at, kind";
        let mut tx = self.begin().await?;
        let project_row = parents::project(&mut tx, project).await?;
        let env = parents::environment(&mut tx, &project_row, key).await?;
        let rows: Vec<KeyRow> = on!(&mut tx, |c, d| sqlx::query_as(SQL).bind(env.id).fetch_all(c).await?);
        rows.into_iter()
            .map(|row| {
                Ok(SdkKeyRecord {
                    kind: KeyKind::parse(&row.kind)
                        .ok_or_else(|| corrupt("key kind", std::io::Error::other(row.kind.clone())))?,
                    id: row.id,
                    prefix: row.prefix,
                    created_at: row.created_at,
                    expires_at: row.expires_at,
                })
            })
            .collect()
    }

    /// Issues new server and client keys. The current keys keep working for `overlap` (so deployed
    /// applications can be updated), then expire; keys already expired are removed.
    pub async fn rotate_keys(
        &self,
        actor: &Actor,
        project: &ProjectKey,
        key: &EnvironmentKey,
        overlap: Duration,
    ) -> Result<NewSdkKeys> {
        const EXPIRE: &str = "update sdk_keys set expires_at = $2 \
                              where environment_id = $1 and (expires_at is null or expires_at > $2) \
                              returning id, kind, secret_sha256";
        const PURGE: &str = "delete from sdk_keys where environment_id = $1 and expires_at is not null \
                             and expires_at <= $2 returning id";
        let at = now();
        let expires = at + overlap.max(Duration::ZERO);
        let mut tx = self.begin().await?;
        let project_row = parents::project(&mut tx, project).await?;
        let env = parents::environment(&mut tx, &project_row, key).await?;
        let purged: Vec<String> =
            on!(&mut tx, |c, d| sqlx::query_scalar(PURGE).bind(env.id).bind(at).fetch_all(c).await?);
        // Replicas hold keys too: tell them the expired ones are gone.
        for id in &purged {
            change_log::record_change(
                &mut tx,
                &project_row.key,
                &env,
                Change::delete(ItemKind::SdkKey, id),
                at,
            )
            .await?;
        }
        let expiring: Vec<(String, String, Vec<u8>)> =
            on!(&mut tx, |c, d| sqlx::query_as(EXPIRE).bind(env.id).bind(expires).fetch_all(c).await?);
        for (id, kind, secret_sha256) in expiring {
            let key = SdkKey { id, kind, secret_sha256, expires_at_ms: unix_millis(expires) };
            change_log::record_change(&mut tx, &project_row.key, &env, Change::upsert_key(&key), at).await?;
        }
        let keys = self.insert_keys(&mut tx, &project_row, &env, at).await?;
        audit::append_audit(
            &mut tx,
            AuditEntry {
                actor,
                action: "environment.rotate_keys",
                resource: format!("projects/{project}/environments/{key}/keys"),
                project: Some(project.as_str()),
                environment: Some(key.as_str()),
                flag: None,
                before: None,
                after: Some(json!({"old_keys_expire_at": expires.unix_timestamp()})),
            },
            at,
        )
        .await?;
        self.commit(tx).await?;
        Ok(keys)
    }
}

//! An environment as the data plane receives it: the snapshot JSON of everything it serves, with its
//! SDK keys.
//!
//! The relay sends one after every batch of changes it publishes, and replicas read one when their
//! cache is missing or behind, so this is on the write path's critical resources. The database puts
//! the JSON together from the stored JSON (what was validated when it was written) rather than the
//! store parsing every flag and serialising it again.

use sqlx::FromRow;
use time::OffsetDateTime;
use vexil_proto::{EnvironmentSnapshot, SdkKey};

use crate::Store;
use crate::db::{Tx, now, on, to_u64};
use crate::error::{Result, StoreError};

/// Unix milliseconds, as the protobuf messages carry instants.
pub(crate) fn unix_millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

#[derive(FromRow)]
struct KeyRow {
    id: String,
    kind: String,
    secret_sha256: Vec<u8>,
    expires_at: Option<OffsetDateTime>,
}

/// The environment's revision, its flags (not archived, with their configurations) and segments as
/// model `Snapshot` JSON, and its SDK keys (hashes only).
pub(crate) async fn environment_snapshot_json(
    tx: &mut Tx,
    env_id: i64,
) -> Result<(u64, Vec<u8>, Vec<SdkKey>)> {
    const STATE: (&str, &str) = (
        "select e.revision, json_build_object('revision', e.revision, \
           'flags', coalesce((select json_agg(json_build_object('flag', f.spec, 'config', c.config) order by f.key) \
              from flags f join flag_configs c on c.flag_id = f.id \
              where c.environment_id = e.id and not f.archived), '[]'::json), \
           'segments', coalesce((select json_agg(s.spec order by s.key) from segments s \
              where s.environment_id = e.id), '[]'::json))::text \
         from environments e where e.id = $1",
        // SQLite keeps JSON as text: `json(..)` marks it as JSON so that it is embedded, not quoted.
        "select e.revision, json_object('revision', e.revision, \
           'flags', json((select json_group_array(json_object('flag', json(spec), 'config', json(config))) \
              from (select f.spec, c.config from flags f join flag_configs c on c.flag_id = f.id \
                    where c.environment_id = e.id and not f.archived order by f.key))), \
           'segments', json((select json_group_array(json(spec)) \
              from (select spec from segments where environment_id = e.id order by key)))) \
         from environments e where e.id = $1",
    );
    const KEYS: &str =
        "select id, kind, secret_sha256, expires_at from sdk_keys where environment_id = $1 order by id";
    let state: Option<(i64, String)> =
        on!(tx, |c, d| sqlx::query_as(d.pick(STATE.0, STATE.1)).bind(env_id).fetch_optional(c).await?);
    let (revision, json) =
        state.ok_or_else(|| StoreError::NotFound { resource: "environment", key: env_id.to_string() })?;
    let key_rows: Vec<KeyRow> = on!(tx, |c, d| sqlx::query_as(KEYS).bind(env_id).fetch_all(c).await?);
    let keys = key_rows
        .into_iter()
        .map(|row| SdkKey {
            id: row.id,
            kind: row.kind,
            secret_sha256: row.secret_sha256,
            expires_at_ms: row.expires_at.map_or(0, unix_millis),
        })
        .collect();
    Ok((to_u64(revision), json.into_bytes(), keys))
}

impl Store {
    /// The environment's current snapshot, read from the database (the data plane's fallback when the
    /// cache is missing or older).
    pub async fn environment_snapshot(&self, environment_id: i64) -> Result<EnvironmentSnapshot> {
        const NAMES: &str =
            "select p.key, e.key from environments e join projects p on p.id = e.project_id where e.id = $1";
        let mut tx = self.begin().await?;
        let names: Option<(String, String)> =
            on!(&mut tx, |c, d| sqlx::query_as(NAMES).bind(environment_id).fetch_optional(c).await?);
        let (project, environment) = names.ok_or_else(|| StoreError::NotFound {
            resource: "environment",
            key: environment_id.to_string(),
        })?;
        let (revision, snapshot_json, keys) = environment_snapshot_json(&mut tx, environment_id).await?;
        Ok(EnvironmentSnapshot {
            environment_id,
            project,
            environment,
            revision,
            snapshot_json,
            keys,
            committed_at_ms: unix_millis(now()),
        })
    }

    /// Every environment id, for replicas that load everything at start-up.
    pub async fn environment_ids(&self) -> Result<Vec<i64>> {
        const SQL: &str = "select id from environments order by id";
        let mut tx = self.begin().await?;
        Ok(on!(&mut tx, |c, d| sqlx::query_scalar(SQL).fetch_all(c).await?))
    }
}

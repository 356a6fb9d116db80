//! The pieces every write is made of, all inside the caller's transaction: look up the parents, bump
//! the environment's revision with a change-log row, append a hash-chained audit record, and check that
//! the environment still compiles. If any piece fails, the transaction is dropped and nothing is written.

use std::collections::{BTreeSet, HashSet};

use prost::Message;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::FromRow;
use sqlx::types::Json;
use time::OffsetDateTime;
use vexil_model::{
    ConfiguredFlag, ConfiguredFlagSpec, EnvironmentKey, Operator, ProjectKey, Segment, SegmentSpec, Snapshot,
    ValidationErrors,
};
use vexil_proto::{ChangeKind, ItemKind, SdkKey};

use crate::db::{Tx, on};
use crate::error::{Result, StoreError};
use crate::records::Actor;

/// Now, truncated to microseconds: what PostgreSQL keeps, so a timestamp reads back exactly as it was
/// hashed into the audit chain.
pub(crate) fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000).unwrap_or(now)
}

pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

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

pub(crate) fn corrupt(
    what: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    StoreError::Corrupt { what: what.into(), source: Box::new(source) }
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

pub(crate) async fn environments(tx: &mut Tx, project_id: i64) -> Result<Vec<EnvRow>> {
    const SQL: &str = "select id, key, name, revision, created_at, updated_at from environments \
                       where project_id = $1 order by id";
    Ok(on!(tx, |c, d| sqlx::query_as(SQL).bind(project_id).fetch_all(c).await?))
}

/// One change to one item in one environment, as it goes into the change log.
pub(crate) struct Change<'a> {
    pub(crate) kind: ChangeKind,
    pub(crate) item: ItemKind,
    pub(crate) key: &'a str,
    pub(crate) payload: Vec<u8>,
}

impl<'a> Change<'a> {
    pub(crate) fn upsert_json(item: ItemKind, key: &'a str, value: &impl Serialize) -> Change<'a> {
        // Serialising model types cannot fail (no maps with non-string keys).
        Change { kind: ChangeKind::Upsert, item, key, payload: serde_json::to_vec(value).unwrap_or_default() }
    }

    pub(crate) fn delete(item: ItemKind, key: &'a str) -> Change<'a> {
        Change { kind: ChangeKind::Delete, item, key, payload: Vec::new() }
    }

    pub(crate) fn upsert_key(key: &'a SdkKey) -> Change<'a> {
        Change {
            kind: ChangeKind::Upsert,
            item: ItemKind::SdkKey,
            key: &key.id,
            payload: key.encode_to_vec(),
        }
    }
}

fn kind_name(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Delete => "delete",
        _ => "upsert",
    }
}

fn item_name(item: ItemKind) -> &'static str {
    match item {
        ItemKind::Flag => "flag",
        ItemKind::Segment => "segment",
        ItemKind::SdkKey => "sdk_key",
        ItemKind::Environment => "environment",
        ItemKind::Unspecified => "unspecified",
    }
}

pub(crate) fn parse_kind(text: &str) -> ChangeKind {
    if text == "delete" { ChangeKind::Delete } else { ChangeKind::Upsert }
}

pub(crate) fn parse_item(text: &str) -> ItemKind {
    match text {
        "flag" => ItemKind::Flag,
        "segment" => ItemKind::Segment,
        "sdk_key" => ItemKind::SdkKey,
        "environment" => ItemKind::Environment,
        _ => ItemKind::Unspecified,
    }
}

/// Bumps the environment's revision and appends the change-log row that carries it. The `update ...
/// returning` takes the environment row's lock, so concurrent writers to one environment get
/// consecutive revisions in commit order.
pub(crate) async fn record_change(
    tx: &mut Tx,
    project: &str,
    env: &EnvRow,
    change: Change<'_>,
    at: OffsetDateTime,
) -> Result<u64> {
    const BUMP: &str = "update environments set revision = revision + 1 where id = $1 returning revision";
    const LOG: &str = "insert into change_log \
        (environment_id, project, environment, revision, kind, item, key, payload, committed_at) \
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    let revision: i64 = on!(tx, |c, d| sqlx::query_scalar(BUMP).bind(env.id).fetch_one(&mut *c).await?);
    on!(tx, |c, d| sqlx::query(LOG)
        .bind(env.id)
        .bind(project)
        .bind(&env.key)
        .bind(revision)
        .bind(kind_name(change.kind))
        .bind(item_name(change.item))
        .bind(change.key)
        .bind(&change.payload)
        .bind(at)
        .execute(c)
        .await
        .map(drop)?);
    Ok(to_u64(revision))
}

/// What an audit record says, before it is chained.
pub(crate) struct AuditEntry<'a> {
    pub(crate) actor: &'a Actor,
    pub(crate) action: &'static str,
    pub(crate) resource: String,
    pub(crate) project: Option<&'a str>,
    pub(crate) environment: Option<&'a str>,
    pub(crate) flag: Option<&'a str>,
    pub(crate) before: Option<serde_json::Value>,
    pub(crate) after: Option<serde_json::Value>,
}

/// The fields of an audit record that its hash covers, in a fixed order.
pub(crate) struct AuditFields<'a> {
    pub(crate) seq: u64,
    pub(crate) at: OffsetDateTime,
    pub(crate) texts: [Option<&'a str>; 11],
}

/// `sha256(prev_hash ‖ seq ‖ at (µs) ‖ each text field, length-prefixed, with a presence byte)`.
/// Length prefixes make the encoding unambiguous: no two different records hash the same bytes.
pub(crate) fn audit_hash(prev_hash: &[u8], fields: &AuditFields<'_>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(fields.seq.to_be_bytes());
    hasher.update(((fields.at.unix_timestamp_nanos() / 1_000) as i64).to_be_bytes());
    for text in fields.texts {
        match text {
            None => hasher.update([0u8]),
            Some(text) => {
                hasher.update([1u8]);
                hasher.update((text.len() as u64).to_be_bytes());
                hasher.update(text.as_bytes());
            }
        }
    }
    hasher.finalize().into()
}

/// Appends an audit record at the end of the chain. Locking the chain head serialises appends, so
/// every record's `seq` is the previous one plus one and its hash covers the previous hash.
pub(crate) async fn append_audit(tx: &mut Tx, entry: AuditEntry<'_>, at: OffsetDateTime) -> Result<()> {
    let head: (i64, Vec<u8>) = on!(tx, |c, d| sqlx::query_as(d.pick(
        "select seq, hash from audit.chain_head where singleton for update",
        "select seq, hash from audit_chain_head where singleton = 1",
    ))
    .fetch_one(&mut *c)
    .await?);
    let seq = to_u64(head.0) + 1;
    let before = entry.before.as_ref().map(serde_json::Value::to_string);
    let after = entry.after.as_ref().map(serde_json::Value::to_string);
    let fields = AuditFields {
        seq,
        at,
        texts: [
            entry.actor.token_id.as_deref(),
            Some(&entry.actor.name),
            Some(entry.action),
            Some(&entry.resource),
            entry.project,
            entry.environment,
            entry.flag,
            before.as_deref(),
            after.as_deref(),
            entry.actor.request_id.as_deref(),
            None,
        ],
    };
    let hash = audit_hash(&head.1, &fields);
    on!(tx, |c, d| {
        sqlx::query(d.pick(
            "insert into audit.records (seq, at, actor_token_id, actor_name, action, resource, project, \
             environment, flag, before, after, request_id, prev_hash, hash) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            "insert into audit_records (seq, at, actor_token_id, actor_name, action, resource, project, \
             environment, flag, before, after, request_id, prev_hash, hash) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        ))
        .bind(seq as i64)
        .bind(at)
        .bind(entry.actor.token_id.as_deref())
        .bind(&entry.actor.name)
        .bind(entry.action)
        .bind(&entry.resource)
        .bind(entry.project)
        .bind(entry.environment)
        .bind(entry.flag)
        .bind(before.as_deref())
        .bind(after.as_deref())
        .bind(entry.actor.request_id.as_deref())
        .bind(&head.1)
        .bind(hash.as_slice())
        .execute(&mut *c)
        .await?;
        sqlx::query(d.pick(
            "update audit.chain_head set seq = $1, hash = $2 where singleton",
            "update audit_chain_head set seq = $1, hash = $2 where singleton = 1",
        ))
        .bind(seq as i64)
        .bind(hash.as_slice())
        .execute(c)
        .await?;
    });
    Ok(())
}

#[derive(FromRow)]
struct ConfiguredRow {
    spec: Json<serde_json::Value>,
    config: Json<serde_json::Value>,
}

#[derive(FromRow)]
struct SpecRow {
    spec: Json<SegmentSpec>,
}

impl ConfiguredRow {
    fn parse(self) -> Result<ConfiguredFlag> {
        let spec: ConfiguredFlagSpec =
            serde_json::from_value(serde_json::json!({"flag": self.spec.0, "config": self.config.0}))
                .map_err(|e| corrupt("flag configuration", e))?;
        ConfiguredFlag::parse(spec).map_err(|e| corrupt("flag configuration", e))
    }
}

impl SpecRow {
    fn parse(self) -> Result<Segment> {
        Segment::parse(self.spec.0).map_err(|e| corrupt("segment", e))
    }
}

#[derive(FromRow)]
struct KeyRow {
    id: String,
    kind: String,
    secret_sha256: Vec<u8>,
    expires_at: Option<OffsetDateTime>,
}

/// Everything the environment serves now: its flags (not archived) with their configurations, its
/// segments, and its SDK keys (hashes only).
pub(crate) async fn environment_state(tx: &mut Tx, env_id: i64) -> Result<(Snapshot, Vec<SdkKey>)> {
    const REVISION: &str = "select revision from environments where id = $1";
    const FLAGS: &str = "select f.spec, c.config from flags f join flag_configs c on c.flag_id = f.id \
                         where c.environment_id = $1 and not f.archived order by f.key";
    const SEGMENTS: &str = "select spec from segments where environment_id = $1 order by key";
    const KEYS: &str =
        "select id, kind, secret_sha256, expires_at from sdk_keys where environment_id = $1 order by id";
    let revision: Option<i64> =
        on!(tx, |c, d| sqlx::query_scalar(REVISION).bind(env_id).fetch_optional(c).await?);
    let revision =
        revision.ok_or_else(|| StoreError::NotFound { resource: "environment", key: env_id.to_string() })?;
    let flag_rows: Vec<ConfiguredRow> =
        on!(tx, |c, d| sqlx::query_as(FLAGS).bind(env_id).fetch_all(c).await?);
    let segment_rows: Vec<SpecRow> =
        on!(tx, |c, d| sqlx::query_as(SEGMENTS).bind(env_id).fetch_all(c).await?);
    let key_rows: Vec<KeyRow> = on!(tx, |c, d| sqlx::query_as(KEYS).bind(env_id).fetch_all(c).await?);

    let flags = flag_rows.into_iter().map(ConfiguredRow::parse).collect::<Result<Vec<_>>>()?;
    let segments = segment_rows.into_iter().map(SpecRow::parse).collect::<Result<Vec<_>>>()?;
    let keys = key_rows
        .into_iter()
        .map(|row| SdkKey {
            id: row.id,
            kind: row.kind,
            secret_sha256: row.secret_sha256,
            expires_at_ms: row.expires_at.map_or(0, |t| (t.unix_timestamp_nanos() / 1_000_000) as i64),
        })
        .collect();
    Ok((Snapshot { revision: to_u64(revision), flags, segments }, keys))
}

/// Compiles the environment as it stands inside the transaction, so a change that would leave it
/// unservable (a prerequisite cycle, a reference to a deleted segment) is refused before commit.
/// Problems in `edited_flag` are reported by field path; problems elsewhere are conflicts.
pub(crate) async fn check_environment(tx: &mut Tx, env: &EnvRow, edited_flag: Option<&str>) -> Result<()> {
    let (snapshot, _) = environment_state(tx, env.id).await?;
    compiles(snapshot, env, edited_flag)
}

/// Checks a change to one flag's configuration as [`check_environment`] would, compiling only what the
/// flag reaches: itself, its prerequisites (transitively) and the segments any of them names. Usually
/// that is the flag alone, where the whole environment means loading and compiling every flag inside
/// the environment's row lock, which every writer to the environment queues for.
///
/// The verdict is the same: other flags depend on a flag only through its key and variations, which a
/// configuration does not change, so anything a configuration can break (an unknown prerequisite or
/// segment, a required variation out of range, a prerequisite cycle, which must pass through the edited
/// flag) lies inside that closure. Called after the revision bump, like `check_environment`: its row
/// lock makes concurrent writers to the environment check one after the other, each seeing the others'
/// committed changes.
pub(crate) async fn check_flag_config(tx: &mut Tx, env: &EnvRow, edited: ConfiguredFlag) -> Result<()> {
    const FLAGS: (&str, &str) = (
        "select f.spec, c.config from flags f join flag_configs c on c.flag_id = f.id \
         where c.environment_id = $1 and not f.archived and f.key in (select jsonb_array_elements_text($2))",
        "select f.spec, c.config from flags f join flag_configs c on c.flag_id = f.id \
         where c.environment_id = $1 and not f.archived and f.key in (select value from json_each($2))",
    );
    const SEGMENTS: (&str, &str) = (
        "select spec from segments where environment_id = $1 and key in (select jsonb_array_elements_text($2))",
        "select spec from segments where environment_id = $1 and key in (select value from json_each($2))",
    );
    if edited.flag().archived {
        return Ok(()); // not served, so not compiled: the environment check skips it too
    }
    let edited_key = edited.flag().key.to_string();
    let mut seen: HashSet<String> = HashSet::from([edited_key.clone()]);
    let mut flags = vec![edited];
    let mut reached = 0;
    // Breadth first: one query per level of prerequisites.
    loop {
        let wanted: Vec<String> = flags[reached..]
            .iter()
            .flat_map(|flag| &flag.config().spec().prerequisites)
            .map(|prerequisite| prerequisite.key.to_string())
            .filter(|key| seen.insert(key.clone()))
            .collect();
        reached = flags.len();
        if wanted.is_empty() {
            break;
        }
        let rows: Vec<ConfiguredRow> = on!(tx, |c, d| {
            let (postgres, sqlite) = FLAGS;
            sqlx::query_as(d.pick(postgres, sqlite)).bind(env.id).bind(Json(&wanted)).fetch_all(c).await?
        });
        for row in rows {
            flags.push(row.parse()?);
        }
    }
    let segment_keys: BTreeSet<&str> = flags
        .iter()
        .flat_map(|flag| &flag.config().spec().rules)
        .flat_map(|rule| &rule.clauses)
        .filter(|clause| clause.op == Operator::SegmentMatch)
        .flat_map(|clause| clause.values.iter().filter_map(serde_json::Value::as_str))
        .collect();
    let segments = if segment_keys.is_empty() {
        Vec::new()
    } else {
        let rows: Vec<SpecRow> = on!(tx, |c, d| {
            let (postgres, sqlite) = SEGMENTS;
            sqlx::query_as(d.pick(postgres, sqlite))
                .bind(env.id)
                .bind(Json(&segment_keys))
                .fetch_all(c)
                .await?
        });
        rows.into_iter().map(SpecRow::parse).collect::<Result<Vec<_>>>()?
    };
    compiles(Snapshot { revision: to_u64(env.revision), flags, segments }, env, Some(&edited_key))
}

/// Compiles `snapshot`; problems in `edited_flag` are reported by field path, problems elsewhere are
/// conflicts.
fn compiles(snapshot: Snapshot, env: &EnvRow, edited_flag: Option<&str>) -> Result<()> {
    match vexil_eval::compile(snapshot) {
        Ok(_) => Ok(()),
        Err(error) => Err(match error.location() {
            Some((flag, field)) if Some(flag) == edited_flag => {
                StoreError::Invalid(ValidationErrors::single(field, error.to_string()))
            }
            _ => StoreError::Conflict(format!("in environment {}: {error}", env.key)),
        }),
    }
}

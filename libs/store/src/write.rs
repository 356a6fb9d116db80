//! The pieces every write is made of, all inside the caller's transaction: look up the parents, bump
//! the environment's revision with a change-log row, append a hash-chained audit record, and check that
//! the environment still compiles. If any piece fails, the transaction is dropped and nothing is written.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

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

/// Bumps the environment's revision and appends the change-log row that carries it.
pub(crate) async fn record_change(
    tx: &mut Tx,
    project: &str,
    env: &EnvRow,
    change: Change<'_>,
    at: OffsetDateTime,
) -> Result<u64> {
    let revisions = record_changes(tx, vec![LoggedChange { project, env, change }], at).await?;
    Ok(revisions[0])
}

/// A change with the environment whose change log it goes into.
pub(crate) struct LoggedChange<'a> {
    pub(crate) project: &'a str,
    pub(crate) env: &'a EnvRow,
    pub(crate) change: Change<'a>,
}

/// Bumps each environment's revision once per change and appends the change-log rows carrying them,
/// in the order given: two statements per environment touched, whatever the number of changes. The
/// `update ... returning` takes the environment row's lock, so concurrent writers to one environment
/// get consecutive revisions in commit order. Environments are locked in id order, the order every
/// writer uses, so two writers never wait for each other in a circle. Returns each change's revision.
pub(crate) async fn record_changes(
    tx: &mut Tx,
    changes: Vec<LoggedChange<'_>>,
    at: OffsetDateTime,
) -> Result<Vec<u64>> {
    const BUMP: &str = "update environments set revision = revision + $2 where id = $1 returning revision";
    const LOG: (&str, &str) = (
        "insert into change_log \
         (environment_id, project, environment, revision, kind, item, key, payload, committed_at) \
         select environment_id, project, environment, revision, kind, item, key, decode(payload, 'hex'), $2 \
         from jsonb_to_recordset($1) as x(environment_id bigint, project text, environment text, \
         revision bigint, kind text, item text, key text, payload text)",
        "insert into change_log \
         (environment_id, project, environment, revision, kind, item, key, payload, committed_at) \
         select value ->> 'environment_id', value ->> 'project', value ->> 'environment', \
         value ->> 'revision', value ->> 'kind', value ->> 'item', value ->> 'key', \
         unhex(value ->> 'payload'), $2 from json_each($1)",
    );
    #[derive(Serialize)]
    struct Row<'a> {
        environment_id: i64,
        project: &'a str,
        environment: &'a str,
        revision: i64,
        kind: &'static str,
        item: &'static str,
        key: &'a str,
        payload: String,
    }
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let mut counts: BTreeMap<i64, i64> = BTreeMap::new();
    for logged in &changes {
        *counts.entry(logged.env.id).or_default() += 1;
    }
    // The first revision each environment's changes take, in id order.
    let mut next: BTreeMap<i64, i64> = BTreeMap::new();
    for (env_id, count) in counts {
        let last: i64 =
            on!(&mut *tx, |c, d| sqlx::query_scalar(BUMP).bind(env_id).bind(count).fetch_one(c).await?);
        next.insert(env_id, last - count + 1);
    }
    let mut revisions = Vec::with_capacity(changes.len());
    let rows: Vec<Row<'_>> = changes
        .iter()
        .map(|logged| {
            let slot = next.get_mut(&logged.env.id).expect("counted above");
            let revision = *slot;
            *slot += 1;
            revisions.push(to_u64(revision));
            Row {
                environment_id: logged.env.id,
                project: logged.project,
                environment: &logged.env.key,
                revision,
                kind: kind_name(logged.change.kind),
                item: item_name(logged.change.item),
                key: logged.change.key,
                payload: hex(&logged.change.payload),
            }
        })
        .collect();
    on!(&mut *tx, |c, d| sqlx::query(d.pick(LOG.0, LOG.1))
        .bind(Json(&rows))
        .bind(at)
        .execute(c)
        .await
        .map(drop)?);
    Ok(revisions)
}

/// Lower-case hexadecimal, as `decode(.., 'hex')` (PostgreSQL) and `unhex` (SQLite) read it.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    text
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

/// Appends an audit record at the end of the chain.
pub(crate) async fn append_audit(tx: &mut Tx, entry: AuditEntry<'_>, at: OffsetDateTime) -> Result<()> {
    append_audits(tx, vec![entry], at).await
}

/// Appends audit records at the end of the chain, in order: three statements, whatever their number.
/// Locking the chain head serialises appends, so every record's `seq` is the previous one plus one and
/// its hash covers the previous hash.
pub(crate) async fn append_audits(
    tx: &mut Tx,
    entries: Vec<AuditEntry<'_>>,
    at: OffsetDateTime,
) -> Result<()> {
    const INSERT: (&str, &str) = (
        "insert into audit.records (seq, at, actor_token_id, actor_name, action, resource, project, \
         environment, flag, before, after, request_id, prev_hash, hash) \
         select seq, $2, actor_token_id, actor_name, action, resource, project, environment, flag, \
         before, after, request_id, decode(prev_hash, 'hex'), decode(hash, 'hex') \
         from jsonb_to_recordset($1) as x(seq bigint, actor_token_id text, actor_name text, action text, \
         resource text, project text, environment text, flag text, before text, after text, \
         request_id text, prev_hash text, hash text)",
        "insert into audit_records (seq, at, actor_token_id, actor_name, action, resource, project, \
         environment, flag, before, after, request_id, prev_hash, hash) \
         select value ->> 'seq', $2, value ->> 'actor_token_id', value ->> 'actor_name', \
         value ->> 'action', value ->> 'resource', value ->> 'project', value ->> 'environment', \
         value ->> 'flag', value ->> 'before', value ->> 'after', value ->> 'request_id', \
         unhex(value ->> 'prev_hash'), unhex(value ->> 'hash') from json_each($1)",
    );
    #[derive(Serialize)]
    struct Row<'a> {
        seq: i64,
        actor_token_id: Option<&'a str>,
        actor_name: &'a str,
        action: &'static str,
        resource: &'a str,
        project: Option<&'a str>,
        environment: Option<&'a str>,
        flag: Option<&'a str>,
        before: Option<String>,
        after: Option<String>,
        request_id: Option<&'a str>,
        prev_hash: String,
        hash: String,
    }
    if entries.is_empty() {
        return Ok(());
    }
    let head: (i64, Vec<u8>) = on!(&mut *tx, |c, d| sqlx::query_as(d.pick(
        "select seq, hash from audit.chain_head where singleton for update",
        "select seq, hash from audit_chain_head where singleton = 1",
    ))
    .fetch_one(c)
    .await?);
    let mut seq = to_u64(head.0);
    let mut previous = head.1;
    let mut rows = Vec::with_capacity(entries.len());
    for entry in &entries {
        seq += 1;
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
        let hash = audit_hash(&previous, &fields);
        rows.push(Row {
            seq: seq as i64,
            actor_token_id: entry.actor.token_id.as_deref(),
            actor_name: &entry.actor.name,
            action: entry.action,
            resource: &entry.resource,
            project: entry.project,
            environment: entry.environment,
            flag: entry.flag,
            before,
            after,
            request_id: entry.actor.request_id.as_deref(),
            prev_hash: hex(&previous),
            hash: hex(&hash),
        });
        previous = hash.to_vec();
    }
    on!(&mut *tx, |c, d| {
        sqlx::query(d.pick(INSERT.0, INSERT.1)).bind(Json(&rows)).bind(at).execute(&mut *c).await?;
        sqlx::query(d.pick(
            "update audit.chain_head set seq = $1, hash = $2 where singleton",
            "update audit_chain_head set seq = $1, hash = $2 where singleton = 1",
        ))
        .bind(seq as i64)
        .bind(previous.as_slice())
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

/// Everything the environment serves now: its flags (not archived) with their configurations and its
/// segments, parsed (to compile them).
pub(crate) async fn environment_state(tx: &mut Tx, env_id: i64) -> Result<Snapshot> {
    const REVISION: &str = "select revision from environments where id = $1";
    const FLAGS: &str = "select f.spec, c.config from flags f join flag_configs c on c.flag_id = f.id \
                         where c.environment_id = $1 and not f.archived order by f.key";
    const SEGMENTS: &str = "select spec from segments where environment_id = $1 order by key";
    let revision: Option<i64> =
        on!(tx, |c, d| sqlx::query_scalar(REVISION).bind(env_id).fetch_optional(c).await?);
    let revision =
        revision.ok_or_else(|| StoreError::NotFound { resource: "environment", key: env_id.to_string() })?;
    let flag_rows: Vec<ConfiguredRow> =
        on!(tx, |c, d| sqlx::query_as(FLAGS).bind(env_id).fetch_all(c).await?);
    let segment_rows: Vec<SpecRow> =
        on!(tx, |c, d| sqlx::query_as(SEGMENTS).bind(env_id).fetch_all(c).await?);
    let flags = flag_rows.into_iter().map(ConfiguredRow::parse).collect::<Result<Vec<_>>>()?;
    let segments = segment_rows.into_iter().map(SpecRow::parse).collect::<Result<Vec<_>>>()?;
    Ok(Snapshot { revision: to_u64(revision), flags, segments })
}

/// The environment as the data plane receives it: [`environment_state`] as snapshot JSON, put
/// together by the database from the stored JSON (what was validated when it was written) rather than
/// parsed and serialised again, and its SDK keys (hashes only). The relay sends one after every batch
/// of changes, so this is on the write path's critical resources.
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
            expires_at_ms: row.expires_at.map_or(0, |t| (t.unix_timestamp_nanos() / 1_000_000) as i64),
        })
        .collect();
    Ok((to_u64(revision), json.into_bytes(), keys))
}

/// Compiles the environment as it stands inside the transaction, so a change that would leave it
/// unservable (a prerequisite cycle, a reference to a deleted segment) is refused before commit.
/// Problems in `edited_flag` are reported by field path; problems elsewhere are conflicts.
pub(crate) async fn check_environment(tx: &mut Tx, env: &EnvRow, edited_flag: Option<&str>) -> Result<()> {
    let snapshot = environment_state(tx, env.id).await?;
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
/// flag) lies inside that closure. Called with the environment's row locked (`for update`, or by the
/// revision bump), like `check_environment`: that lock makes concurrent writers to the environment
/// check one after the other, each seeing the others' committed changes.
///
/// `pending` holds flags of this environment changed earlier in the same transaction but not written
/// yet (a batch of configuration writes, [`crate::flag_configs`]): where the closure reaches one of them,
/// the check sees the pending version, as it would had the earlier change been written first.
pub(crate) async fn check_flag_config(
    tx: &mut Tx,
    env: &EnvRow,
    edited: ConfiguredFlag,
    pending: &HashMap<String, ConfiguredFlag>,
) -> Result<()> {
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
            let flag = row.parse()?;
            flags.push(pending.get(flag.flag().key.as_str()).cloned().unwrap_or(flag));
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

//! Compile checks: a change is refused before commit if it would leave an environment unservable.
//!
//! The data plane compiles what it receives and cannot serve an environment that does not compile (a
//! prerequisite cycle, a rule naming a deleted segment, a configuration serving a variation its flag no
//! longer has). So every write compiles what it changed inside its own transaction, after writing it
//! and with the environment's row locked, and fails there instead: problems in the item being edited
//! are reported by field path, problems it causes elsewhere as conflicts.

use std::collections::{BTreeSet, HashMap, HashSet};

use sqlx::FromRow;
use sqlx::types::Json;
use vexil_model::{
    ConfiguredFlag, ConfiguredFlagSpec, Operator, Segment, SegmentSpec, Snapshot, ValidationErrors,
};

use crate::db::{Tx, on, to_u64};
use crate::error::{Result, StoreError, corrupt};
use crate::parents::EnvRow;

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

/// Everything the environment serves now: its flags (not archived) with their configurations and its
/// segments, parsed (to compile them).
async fn environment_state(tx: &mut Tx, env_id: i64) -> Result<Snapshot> {
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

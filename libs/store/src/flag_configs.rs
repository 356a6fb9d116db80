//! Changing flag configurations: deciding each change and the set-based statements that write a batch.
//!
//! A configuration change (`PUT …/environments/{env}`, `POST …/toggle`) is the write people and
//! pipelines make most, so changes are committed in groups ([`crate::group_commit`]): the ones that
//! arrive while a commit is under way are applied together, in arrival order, in one transaction with
//! set-based statements and one flush. Each change is still decided on its own — `If-Match`,
//! validation, the compile check — against the state the changes before it in the batch left, exactly
//! as if they had committed one after the other; one that fails is left out and answered with its error
//! without touching the others. The rest commit together, each with its revision, change-log row and
//! audit record.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use serde_json::json;
use sqlx::FromRow;
use sqlx::types::Json;
use time::OffsetDateTime;
use vexil_model::{ConfiguredFlag, EnvironmentKey, Flag, FlagConfig, FlagConfigSpec, FlagKey, ProjectKey};
use vexil_proto::ItemKind;

use crate::Store;
use crate::audit::{self, AuditEntry};
use crate::change_log::{self, Change, LoggedChange};
use crate::checks;
use crate::db::{Tx, now, on, to_u64};
use crate::error::{Result, StoreError};
use crate::flags::{FlagRow, configured};
use crate::group_commit::Batch;
use crate::parents::EnvRow;
use crate::records::{Actor, FlagConfigRecord};

/// What a configuration change does to the current configuration.
enum ConfigChange {
    /// `PUT`: replaces it.
    Replace(Box<FlagConfigSpec>),
    /// `POST …/toggle`: sets `on`, keeping the rest.
    Toggle(bool),
}

impl ConfigChange {
    fn action(&self) -> &'static str {
        match self {
            ConfigChange::Replace(_) => "flag.configure",
            ConfigChange::Toggle(_) => "flag.toggle",
        }
    }

    fn apply(&self, current: FlagConfigSpec) -> FlagConfigSpec {
        match self {
            ConfigChange::Replace(spec) => FlagConfigSpec::clone(spec),
            ConfigChange::Toggle(on) => FlagConfigSpec { on: *on, ..current },
        }
    }
}

/// One requested change to one flag's configuration in one environment.
pub(crate) struct ConfigWrite {
    actor: Actor,
    project: ProjectKey,
    flag: FlagKey,
    environment: EnvironmentKey,
    /// Refuse unless this is the current version (`If-Match`).
    if_version: Option<u64>,
    change: ConfigChange,
}

impl Batch for ConfigWrite {
    type Outcome = FlagConfigRecord;

    const THREAD_NAME: &'static str = "vexil-config-commit";

    async fn apply(store: &Store, writes: &[&ConfigWrite]) -> Result<Vec<Result<FlagConfigRecord>>> {
        store.apply_config_writes(writes).await
    }
}

/// Where a change's configuration lives, as found before locking.
struct Target {
    env_id: i64,
    flag_id: i64,
}

/// A change that passed its checks, waiting to be written with the rest of its batch.
struct Accepted {
    index: usize,
    flag_id: i64,
    env_id: i64,
    flag: Flag,
    config: FlagConfig,
    before: FlagConfigSpec,
}

impl Store {
    /// Replaces a flag's configuration in one environment. With `if_version`, refuses
    /// ([`StoreError::VersionMismatch`]) unless that is the current version: optimistic concurrency.
    pub async fn put_flag_config(
        &self,
        actor: &Actor,
        project: &ProjectKey,
        flag: &FlagKey,
        environment: &EnvironmentKey,
        spec: FlagConfigSpec,
        if_version: Option<u64>,
    ) -> Result<FlagConfigRecord> {
        let write = ConfigWrite {
            actor: actor.clone(),
            project: project.clone(),
            flag: flag.clone(),
            environment: environment.clone(),
            if_version,
            change: ConfigChange::Replace(Box::new(spec)),
        };
        self.config_writes.submit(self, write).await
    }

    /// Turns a flag on or off in one environment, leaving the rest of its configuration as it is.
    pub async fn toggle_flag(
        &self,
        actor: &Actor,
        project: &ProjectKey,
        flag: &FlagKey,
        environment: &EnvironmentKey,
        on: bool,
    ) -> Result<FlagConfigRecord> {
        let write = ConfigWrite {
            actor: actor.clone(),
            project: project.clone(),
            flag: flag.clone(),
            environment: environment.clone(),
            if_version: None,
            change: ConfigChange::Toggle(on),
        };
        self.config_writes.submit(self, write).await
    }

    /// Applies `writes` in order in one transaction. The outer error means the transaction failed and
    /// nothing was written; otherwise each write's own outcome, the failed ones left out.
    async fn apply_config_writes(&self, writes: &[&ConfigWrite]) -> Result<Vec<Result<FlagConfigRecord>>> {
        let at = now();
        let mut tx = self.begin().await?;
        let mut outcomes: Vec<Result<FlagConfigRecord>> = Vec::with_capacity(writes.len());
        let targets = resolve(&mut tx, writes).await?;
        // Locks in the order every writer takes them: configurations, environments, then (when
        // writing) the audit chain head. The flags' definitions are read once the configurations are
        // locked: a definition change (`update_flag`) locks every configuration of its flag too, so the
        // definitions read here stay current until this transaction ends.
        let keys: BTreeSet<(i64, i64)> = targets.iter().flatten().map(|t| (t.flag_id, t.env_id)).collect();
        let mut current = lock_configs(&mut tx, &keys).await?;
        let flag_ids: BTreeSet<i64> = targets.iter().flatten().map(|t| t.flag_id).collect();
        let flags = read_flags(&mut tx, &flag_ids).await?;
        let env_ids: BTreeSet<i64> = targets.iter().flatten().map(|t| t.env_id).collect();
        let envs = lock_environments(&mut tx, &env_ids).await?;

        // Decide each change against the state the ones before it leave.
        let mut pending: HashMap<i64, HashMap<String, ConfiguredFlag>> = HashMap::new();
        let mut accepted: Vec<Accepted> = Vec::new();
        for (index, (write, target)) in writes.iter().zip(targets).enumerate() {
            let decided = match target {
                Err(error) => Err(error),
                Ok(target) => decide(&mut tx, write, &target, &flags, &mut current, &envs, &mut pending)
                    .await
                    .map(|(flag, config, before)| Accepted {
                        index,
                        flag_id: target.flag_id,
                        env_id: target.env_id,
                        flag,
                        config,
                        before,
                    }),
            };
            match decided {
                Ok(change) => {
                    outcomes.push(Err(StoreError::Abandoned)); // replaced once written
                    accepted.push(change);
                }
                // The transaction cannot go on after a database error: the whole batch fails.
                Err(error) if error.is_database() => return Err(error),
                Err(error) => outcomes.push(Err(error)),
            }
        }
        if accepted.is_empty() {
            return Ok(outcomes);
        }

        let changed: BTreeSet<(i64, i64)> =
            accepted.iter().map(|change| (change.flag_id, change.env_id)).collect();
        write_configs(&mut tx, changed.iter().map(|key| (*key, &current[key])), at).await?;
        let changes: Vec<LoggedChange<'_>> = accepted
            .iter()
            .filter(|change| !change.flag.archived)
            .map(|change| LoggedChange {
                project: writes[change.index].project.as_str(),
                env: &envs[&change.env_id],
                change: Change::upsert_json(
                    ItemKind::Flag,
                    change.flag.key.as_str(),
                    &configured(&change.flag, change.config.spec()),
                ),
            })
            .collect();
        change_log::record_changes(&mut tx, changes, at).await?;
        let entries: Vec<AuditEntry<'_>> = accepted
            .iter()
            .map(|change| {
                let write = writes[change.index];
                AuditEntry {
                    actor: &write.actor,
                    action: write.change.action(),
                    resource: format!(
                        "projects/{}/flags/{}/environments/{}",
                        write.project, write.flag, write.environment
                    ),
                    project: Some(write.project.as_str()),
                    environment: Some(write.environment.as_str()),
                    flag: Some(write.flag.as_str()),
                    before: Some(json!(change.before)),
                    after: Some(json!(change.config.spec())),
                }
            })
            .collect();
        audit::append_audits(&mut tx, entries, at).await?;
        self.commit(tx).await?;
        for change in accepted {
            let write = writes[change.index];
            let version = change.config.spec().version;
            outcomes[change.index] = Ok(FlagConfigRecord {
                flag: write.flag.clone(),
                environment: write.environment.clone(),
                config: change.config,
                version,
                updated_at: at,
            });
        }
        Ok(outcomes)
    }
}

/// Checks one change and, if it passes, applies it to `current` and `pending` (what later changes in
/// the batch see). Returns the flag, the new configuration and the one it replaces.
async fn decide(
    tx: &mut Tx,
    write: &ConfigWrite,
    target: &Target,
    flags: &HashMap<i64, Flag>,
    current: &mut HashMap<(i64, i64), FlagConfigSpec>,
    envs: &HashMap<i64, EnvRow>,
    pending: &mut HashMap<i64, HashMap<String, ConfiguredFlag>>,
) -> Result<(Flag, FlagConfig, FlagConfigSpec)> {
    let not_found = |resource: &'static str, key: String| StoreError::NotFound { resource, key };
    // Gone between the look-up and the lock (deleted by a concurrent write).
    let flag = flags
        .get(&target.flag_id)
        .ok_or_else(|| not_found("flag", format!("{}/{}", write.project, write.flag)))?;
    let env = envs
        .get(&target.env_id)
        .ok_or_else(|| not_found("environment", format!("{}/{}", write.project, write.environment)))?;
    let config_not_found =
        || not_found("flag configuration", format!("{}/{}", write.flag, write.environment));
    let before = current.get(&(target.flag_id, target.env_id)).ok_or_else(config_not_found)?.clone();
    if let Some(expected) = write.if_version
        && expected != before.version
    {
        return Err(StoreError::VersionMismatch { expected, current: before.version });
    }
    let mut spec = write.change.apply(before.clone());
    spec.version = before.version + 1;
    let config = FlagConfig::parse(spec, flag)?;
    let env_pending = pending.entry(target.env_id).or_default();
    let edited = ConfiguredFlag::new(flag.clone(), config.clone());
    checks::check_flag_config(tx, env, edited.clone(), env_pending).await?;
    env_pending.insert(flag.key.to_string(), edited);
    current.insert((target.flag_id, target.env_id), config.spec().clone());
    Ok((flag.clone(), config, before))
}

/// Finds each write's environment and flag by key, without locking; a missing project, environment or
/// flag is that write's error.
async fn resolve(tx: &mut Tx, writes: &[&ConfigWrite]) -> Result<Vec<Result<Target>>> {
    const SQL: (&str, &str) = (
        "select w.i, p.id as project_id, e.id as env_id, f.id as flag_id \
         from jsonb_to_recordset($1) as w(i bigint, project text, environment text, flag text) \
         left join projects p on p.key = w.project \
         left join environments e on e.project_id = p.id and e.key = w.environment \
         left join flags f on f.project_id = p.id and f.key = w.flag order by w.i",
        "select w.i, p.id as project_id, e.id as env_id, f.id as flag_id \
         from (select value ->> 'i' as i, value ->> 'project' as project, \
               value ->> 'environment' as environment, value ->> 'flag' as flag from json_each($1)) as w \
         left join projects p on p.key = w.project \
         left join environments e on e.project_id = p.id and e.key = w.environment \
         left join flags f on f.project_id = p.id and f.key = w.flag order by w.i",
    );
    #[derive(Serialize)]
    struct Wanted<'a> {
        i: i64,
        project: &'a str,
        environment: &'a str,
        flag: &'a str,
    }
    #[derive(FromRow)]
    struct Found {
        project_id: Option<i64>,
        env_id: Option<i64>,
        flag_id: Option<i64>,
    }
    let wanted: Vec<Wanted<'_>> = writes
        .iter()
        .enumerate()
        .map(|(i, w)| Wanted {
            i: i as i64,
            project: w.project.as_str(),
            environment: w.environment.as_str(),
            flag: w.flag.as_str(),
        })
        .collect();
    let found: Vec<Found> =
        on!(&mut *tx, |c, d| sqlx::query_as(d.pick(SQL.0, SQL.1)).bind(Json(&wanted)).fetch_all(c).await?);
    Ok(writes
        .iter()
        .zip(found)
        .map(|(write, found)| match found {
            Found { project_id: None, .. } => {
                Err(StoreError::NotFound { resource: "project", key: write.project.to_string() })
            }
            Found { env_id: None, .. } => Err(StoreError::NotFound {
                resource: "environment",
                key: format!("{}/{}", write.project, write.environment),
            }),
            Found { flag_id: None, .. } => Err(StoreError::NotFound {
                resource: "flag",
                key: format!("{}/{}", write.project, write.flag),
            }),
            Found { env_id: Some(env_id), flag_id: Some(flag_id), .. } => Ok(Target { env_id, flag_id }),
        })
        .collect())
}

/// The flags' definitions (the configurations are validated against them).
async fn read_flags(tx: &mut Tx, ids: &BTreeSet<i64>) -> Result<HashMap<i64, Flag>> {
    const SQL: (&str, &str) = (
        "select id, spec, version, created_at, updated_at from flags \
         where id in (select jsonb_array_elements_text($1)::bigint)",
        "select id, spec, version, created_at, updated_at from flags \
         where id in (select value from json_each($1))",
    );
    let rows: Vec<FlagRow> =
        on!(&mut *tx, |c, d| sqlx::query_as(d.pick(SQL.0, SQL.1)).bind(Json(ids)).fetch_all(c).await?);
    rows.into_iter().map(|row| Ok((row.id, row.record()?.flag))).collect()
}

/// The configurations, locked until the transaction ends: a change without `If-Match` applies to
/// whatever is current when its turn comes instead of failing on a version nobody asked to check.
async fn lock_configs(
    tx: &mut Tx,
    keys: &BTreeSet<(i64, i64)>,
) -> Result<HashMap<(i64, i64), FlagConfigSpec>> {
    const SQL: (&str, &str) = (
        "select flag_id, environment_id, config, version from flag_configs \
         where (flag_id, environment_id) in \
         (select (k ->> 0)::bigint, (k ->> 1)::bigint from jsonb_array_elements($1) as k) \
         order by flag_id, environment_id for update",
        "select flag_id, environment_id, config, version from flag_configs \
         where (flag_id, environment_id) in \
         (select value ->> 0, value ->> 1 from json_each($1)) order by flag_id, environment_id",
    );
    #[derive(FromRow)]
    struct Row {
        flag_id: i64,
        environment_id: i64,
        config: Json<FlagConfigSpec>,
        version: i64,
    }
    let rows: Vec<Row> =
        on!(&mut *tx, |c, d| sqlx::query_as(d.pick(SQL.0, SQL.1)).bind(Json(keys)).fetch_all(c).await?);
    Ok(rows
        .into_iter()
        .map(|row| {
            let mut spec = row.config.0;
            spec.version = to_u64(row.version);
            ((row.flag_id, row.environment_id), spec)
        })
        .collect())
}

/// The environments, locked until the transaction ends (PostgreSQL): writers to an environment check
/// their changes one after the other, each seeing what the others committed.
async fn lock_environments(tx: &mut Tx, ids: &BTreeSet<i64>) -> Result<HashMap<i64, EnvRow>> {
    const SQL: (&str, &str) = (
        "select id, key, name, revision, created_at, updated_at from environments \
         where id in (select jsonb_array_elements_text($1)::bigint) order by id for update",
        "select id, key, name, revision, created_at, updated_at from environments \
         where id in (select value from json_each($1)) order by id",
    );
    let rows: Vec<EnvRow> =
        on!(&mut *tx, |c, d| sqlx::query_as(d.pick(SQL.0, SQL.1)).bind(Json(ids)).fetch_all(c).await?);
    Ok(rows.into_iter().map(|row| (row.id, row)).collect())
}

/// Writes the final state of each changed configuration (one changed twice in a batch is written
/// once).
async fn write_configs<'a>(
    tx: &mut Tx,
    configs: impl Iterator<Item = ((i64, i64), &'a FlagConfigSpec)>,
    at: OffsetDateTime,
) -> Result<()> {
    const SQL: (&str, &str) = (
        "update flag_configs c set config = x.config, version = x.version, updated_at = $2 \
         from jsonb_to_recordset($1) as x(flag_id bigint, environment_id bigint, version bigint, config jsonb) \
         where c.flag_id = x.flag_id and c.environment_id = x.environment_id",
        "update flag_configs set config = x.config, version = x.version, updated_at = $2 \
         from (select value ->> 'flag_id' as flag_id, value ->> 'environment_id' as environment_id, \
               value ->> 'version' as version, value -> 'config' as config from json_each($1)) as x \
         where flag_configs.flag_id = x.flag_id and flag_configs.environment_id = x.environment_id",
    );
    #[derive(Serialize)]
    struct Row<'a> {
        flag_id: i64,
        environment_id: i64,
        version: i64,
        config: &'a FlagConfigSpec,
    }
    let rows: Vec<Row<'_>> = configs
        .map(|((flag_id, environment_id), config)| Row {
            flag_id,
            environment_id,
            version: config.version as i64,
            config,
        })
        .collect();
    on!(&mut *tx, |c, d| sqlx::query(d.pick(SQL.0, SQL.1))
        .bind(Json(&rows))
        .bind(at)
        .execute(c)
        .await
        .map(drop)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Batches formed on purpose, to see how the changes of one transaction affect each other. (That
    //! concurrent changes do get batched, and none is lost, is the conformance suite's concurrency
    //! test and the update benchmark's check.)

    use serde_json::{Value, json};
    use vexil_model::{Flag, FlagConfigSpec};

    use super::*;

    fn actor() -> Actor {
        Actor { token_id: Some("tok1".into()), name: "tester".into(), request_id: None }
    }

    fn key(text: &str) -> FlagKey {
        FlagKey::parse(text).unwrap()
    }

    fn project() -> ProjectKey {
        ProjectKey::parse("shop").unwrap()
    }

    fn production() -> EnvironmentKey {
        EnvironmentKey::parse("production").unwrap()
    }

    fn config(value: Value) -> FlagConfigSpec {
        serde_json::from_value(value).unwrap()
    }

    fn needs(other: &str) -> FlagConfigSpec {
        config(json!({"fallthrough": {"variation": 0}, "prerequisites": [{"key": other, "variation": 0}]}))
    }

    async fn postgres() -> (Store, vexil_testkit::TestDatabase) {
        let db = vexil_testkit::TestDatabase::create().await;
        let store = Store::connect(db.url()).await.unwrap();
        store.migrate().await.unwrap();
        (store, db)
    }

    async fn sqlite() -> Store {
        let dir = std::env::temp_dir().join(format!("vexil-batch-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::connect(&format!("sqlite://{}/vexil.db", dir.display())).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    async fn with_flags(store: &Store, keys: &[&str]) {
        store.create_project(&actor(), &project(), "Shop", "").await.unwrap();
        for key in keys {
            let flag: Flag = Flag::parse(
                serde_json::from_value(json!({"key": key, "kind": "boolean",
                    "variations": [{"value": true}, {"value": false}]}))
                .unwrap(),
            )
            .unwrap();
            store.create_flag(&actor(), &project(), flag).await.unwrap();
        }
    }

    /// Applies `writes` as one batch, as the committer does with changes that queued together.
    async fn one_batch(store: &Store, writes: Vec<ConfigWrite>) -> Vec<Result<FlagConfigRecord>> {
        let writes: Vec<&ConfigWrite> = writes.iter().collect();
        store.apply_config_writes(&writes).await.expect("the transaction commits")
    }

    fn put(flag: &str, spec: FlagConfigSpec, if_version: Option<u64>) -> ConfigWrite {
        ConfigWrite {
            actor: actor(),
            project: project(),
            flag: key(flag),
            environment: production(),
            if_version,
            change: ConfigChange::Replace(Box::new(spec)),
        }
    }

    fn toggle(flag: &str, on: bool) -> ConfigWrite {
        ConfigWrite {
            change: ConfigChange::Toggle(on),
            ..put(flag, config(json!({"fallthrough": {"variation": 0}})), None)
        }
    }

    async fn revision(store: &Store) -> u64 {
        store.get_environment(&project(), &production()).await.unwrap().revision
    }

    /// Each change in a batch is decided on its own, against what the changes before it left; the
    /// failed ones change nothing, the others commit with consecutive revisions and audit records.
    async fn each_change_in_a_batch_is_decided_on_its_own(store: Store) {
        with_flags(&store, &["a", "b", "c"]).await;
        let start = revision(&store).await;
        let audit_before = store.verify_audit().await.unwrap().records;
        let on = || config(json!({"on": true, "off_variation": 1, "fallthrough": {"variation": 0}}));
        let outcomes = one_batch(
            &store,
            vec![
                put("a", on(), Some(1)),
                put("b", on(), Some(7)), // stale If-Match
                put("c", config(json!({"fallthrough": {"variation": 5}})), None), // no variation 5
                toggle("ghost", true),   // no such flag
                put("a", on(), Some(2)), // sees the first change of this batch
                toggle("b", true),
            ],
        )
        .await;
        assert_eq!(outcomes[0].as_ref().unwrap().version, 2);
        assert!(
            matches!(outcomes[1], Err(StoreError::VersionMismatch { expected: 7, current: 1 })),
            "{:?}",
            outcomes[1]
        );
        let Err(StoreError::Invalid(errors)) = &outcomes[2] else { panic!("{:?}", outcomes[2]) };
        assert!(errors.has_field("fallthrough.variation"), "{errors}");
        assert!(
            matches!(&outcomes[3], Err(StoreError::NotFound { resource: "flag", .. })),
            "{:?}",
            outcomes[3]
        );
        assert_eq!(outcomes[4].as_ref().unwrap().version, 3);
        let b = outcomes[5].as_ref().unwrap();
        assert!(b.config.on);
        assert_eq!(b.version, 2);
        // One transaction: one commit time for all three.
        let times: BTreeSet<_> = outcomes.iter().flatten().map(|record| record.updated_at).collect();
        assert_eq!(times.len(), 1, "{times:?}");

        let stored = |flag: &'static str| {
            let store = store.clone();
            async move { store.get_flag_config(&project(), &key(flag), &production()).await.unwrap() }
        };
        assert_eq!(stored("a").await.version, 3);
        assert_eq!(stored("b").await.version, 2);
        assert_eq!(stored("c").await.version, 1);
        assert_eq!(revision(&store).await, start + 3);
        let pending = store.pending_changes(10).await.unwrap();
        let events: Vec<(u64, &str)> = pending
            .iter()
            .find(|p| p.snapshot.environment == "production")
            .unwrap()
            .events
            .iter()
            .filter(|e| e.revision > start)
            .map(|e| (e.revision, e.key.as_str()))
            .collect();
        assert_eq!(events, [(start + 1, "a"), (start + 2, "a"), (start + 3, "b")]);
        let verification = store.verify_audit().await.unwrap();
        assert!(verification.ok, "{verification:?}");
        assert_eq!(verification.records, audit_before + 3);
    }

    /// Two changes that each look fine alone but together make a prerequisite cycle: the second one
    /// sees the first and is refused.
    async fn a_cycle_made_within_one_batch_is_refused(store: Store) {
        with_flags(&store, &["a", "b"]).await;
        let outcomes = one_batch(&store, vec![put("a", needs("b"), None), put("b", needs("a"), None)]).await;
        assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
        let error = outcomes[1].as_ref().unwrap_err();
        assert!(error.to_string().contains("cycle"), "{error}");
        let b = store.get_flag_config(&project(), &key("b"), &production()).await.unwrap();
        assert!(b.config.prerequisites.is_empty());
    }

    /// Runs each scenario on PostgreSQL and on SQLite, as `<scenario>::postgres` and `<scenario>::sqlite`.
    macro_rules! on_both_databases {
        ($($scenario:ident),* $(,)?) => {$(
            mod $scenario {
                #[tokio::test]
                async fn postgres() {
                    let (store, _db) = super::postgres().await;
                    super::$scenario(store).await;
                }

                #[tokio::test]
                async fn sqlite() {
                    super::$scenario(super::sqlite().await).await;
                }
            }
        )*};
    }

    on_both_databases!(
        each_change_in_a_batch_is_decided_on_its_own,
        a_cycle_made_within_one_batch_is_refused
    );
}

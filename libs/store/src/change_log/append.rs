//! Appending to the change log: each change takes the next revision of its environment and becomes one
//! row, inside the writer's transaction.

use std::collections::BTreeMap;

use prost::Message;
use serde::Serialize;
use sqlx::types::Json;
use time::OffsetDateTime;
use vexil_proto::{ChangeKind, ItemKind, SdkKey};

use crate::db::{Blob, Tx, on, to_u64};
use crate::error::Result;
use crate::parents::EnvRow;

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

/// A change with the environment whose change log it goes into.
pub(crate) struct LoggedChange<'a> {
    pub(crate) project: &'a str,
    pub(crate) env: &'a EnvRow,
    pub(crate) change: Change<'a>,
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
    // SQLite's `substr` of a zero-length blob is null, whatever it is asked for: when every payload of
    // the statement is empty (deletes only), `coalesce` turns each back into the empty payload it is.
    const LOG: (&str, &str) = (
        "insert into change_log \
         (environment_id, project, environment, revision, kind, item, key, payload, committed_at) \
         select environment_id, project, environment, revision, kind, item, key, \
         substr($3, payload_at, payload_len), $2 \
         from jsonb_to_recordset($1) as x(environment_id bigint, project text, environment text, \
         revision bigint, kind integer, item integer, key text, payload_at integer, payload_len integer)",
        "insert into change_log \
         (environment_id, project, environment, revision, kind, item, key, payload, committed_at) \
         select value ->> 'environment_id', value ->> 'project', value ->> 'environment', \
         value ->> 'revision', value ->> 'kind', value ->> 'item', value ->> 'key', \
         coalesce(substr($3, value ->> 'payload_at', value ->> 'payload_len'), x''), $2 from json_each($1)",
    );
    #[derive(Serialize)]
    struct Row<'a> {
        environment_id: i64,
        project: &'a str,
        environment: &'a str,
        revision: i64,
        kind: i32,
        item: i32,
        key: &'a str,
        payload_at: usize,
        payload_len: usize,
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
    let mut payloads = Blob::default();
    let rows: Vec<Row<'_>> = changes
        .iter()
        .map(|logged| {
            let slot = next.get_mut(&logged.env.id).expect("counted above");
            let revision = *slot;
            *slot += 1;
            revisions.push(to_u64(revision));
            let payload = payloads.push(&logged.change.payload);
            Row {
                environment_id: logged.env.id,
                project: logged.project,
                environment: &logged.env.key,
                revision,
                kind: logged.change.kind.into(),
                item: logged.change.item.into(),
                key: logged.change.key,
                payload_at: payload.at,
                payload_len: payload.len,
            }
        })
        .collect();
    on!(&mut *tx, |c, d| sqlx::query(d.pick(LOG.0, LOG.1))
        .bind(Json(&rows))
        .bind(at)
        .bind(payloads.as_bytes())
        .execute(c)
        .await
        .map(drop)?);
    Ok(revisions)
}

//! Extending the audit chain, inside the writer's transaction.

use serde::Serialize;
use sqlx::types::Json;
use time::OffsetDateTime;

use super::hash::{AuditFields, audit_hash};
use crate::db::{Blob, Tx, on, to_u64};
use crate::error::Result;
use crate::records::Actor;

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
         before, after, request_id, substr($3, prev_hash_at, prev_hash_len), substr($3, hash_at, hash_len) \
         from jsonb_to_recordset($1) as x(seq bigint, actor_token_id text, actor_name text, action text, \
         resource text, project text, environment text, flag text, before text, after text, \
         request_id text, prev_hash_at integer, prev_hash_len integer, hash_at integer, hash_len integer)",
        "insert into audit_records (seq, at, actor_token_id, actor_name, action, resource, project, \
         environment, flag, before, after, request_id, prev_hash, hash) \
         select value ->> 'seq', $2, value ->> 'actor_token_id', value ->> 'actor_name', \
         value ->> 'action', value ->> 'resource', value ->> 'project', value ->> 'environment', \
         value ->> 'flag', value ->> 'before', value ->> 'after', value ->> 'request_id', \
         substr($3, value ->> 'prev_hash_at', value ->> 'prev_hash_len'), \
         substr($3, value ->> 'hash_at', value ->> 'hash_len') from json_each($1)",
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
        prev_hash_at: usize,
        prev_hash_len: usize,
        hash_at: usize,
        hash_len: usize,
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
    // The head's hash, then each new record's: every record's `prev_hash` is the hash just before its
    // own.
    let mut hashes = Blob::default();
    let mut previous_slice = hashes.push(&previous);
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
        let hash_slice = hashes.push(&hash);
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
            prev_hash_at: previous_slice.at,
            prev_hash_len: previous_slice.len,
            hash_at: hash_slice.at,
            hash_len: hash_slice.len,
        });
        previous = hash.to_vec();
        previous_slice = hash_slice;
    }
    on!(&mut *tx, |c, d| {
        sqlx::query(d.pick(INSERT.0, INSERT.1))
            .bind(Json(&rows))
            .bind(at)
            .bind(hashes.as_bytes())
            .execute(&mut *c)
            .await?;
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

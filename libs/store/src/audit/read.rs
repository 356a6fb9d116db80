//! Reading the audit log back: listing records, and walking the whole chain to verify it.

use sqlx::FromRow;
use time::OffsetDateTime;

use super::hash::{AuditFields, audit_hash};
use crate::Store;
use crate::db::{on, to_u64};
use crate::error::Result;
use crate::records::{AuditQuery, AuditRecord, AuditVerification};

#[derive(FromRow)]
struct AuditRow {
    seq: i64,
    at: OffsetDateTime,
    actor_token_id: Option<String>,
    actor_name: String,
    action: String,
    resource: String,
    project: Option<String>,
    environment: Option<String>,
    flag: Option<String>,
    before: Option<String>,
    after: Option<String>,
    request_id: Option<String>,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

impl AuditRow {
    fn fields(&self) -> AuditFields<'_> {
        AuditFields {
            seq: to_u64(self.seq),
            at: self.at,
            texts: [
                self.actor_token_id.as_deref(),
                Some(&self.actor_name),
                Some(&self.action),
                Some(&self.resource),
                self.project.as_deref(),
                self.environment.as_deref(),
                self.flag.as_deref(),
                self.before.as_deref(),
                self.after.as_deref(),
                self.request_id.as_deref(),
                None,
            ],
        }
    }

    fn record(self) -> AuditRecord {
        let parse = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
        AuditRecord {
            seq: to_u64(self.seq),
            at: self.at,
            actor_token_id: self.actor_token_id,
            actor_name: self.actor_name,
            action: self.action,
            resource: self.resource,
            project: self.project,
            environment: self.environment,
            flag: self.flag,
            before: parse(self.before),
            after: parse(self.after),
            request_id: self.request_id,
            hash: self.hash.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

const VERIFY_BATCH: i64 = 1_000;

impl Store {
    /// Audit records matching `query`, newest first. The page's last `seq` is the cursor of the next.
    pub async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>> {
        // One statement with optional filters (`$n is null or ...`) rather than SQL built at runtime.
        const POSTGRES: &str = "select * from audit.records where \
            ($1::text is null or project = $1) and ($2::text is null or environment = $2) and \
            ($3::text is null or flag = $3) and ($4::text is null or actor_token_id = $4) and \
            ($5::timestamptz is null or at >= $5) and ($6::timestamptz is null or at < $6) and \
            ($7::bigint is null or seq < $7) and \
            ($8::jsonb is null or project in (select jsonb_array_elements_text($8))) \
            order by seq desc limit $9";
        const SQLITE: &str = "select * from audit_records where \
            ($1 is null or project = $1) and ($2 is null or environment = $2) and \
            ($3 is null or flag = $3) and ($4 is null or actor_token_id = $4) and \
            ($5 is null or at >= $5) and ($6 is null or at < $6) and \
            ($7 is null or seq < $7) and \
            ($8 is null or project in (select value from json_each($8))) \
            order by seq desc limit $9";
        let projects = query.projects.as_ref().map(sqlx::types::Json);
        let before_seq = query.before_seq.map(|s| s as i64);
        let mut tx = self.begin().await?;
        let rows: Vec<AuditRow> = on!(&mut tx, |c, d| sqlx::query_as(d.pick(POSTGRES, SQLITE))
            .bind(query.project.as_deref())
            .bind(query.environment.as_deref())
            .bind(query.flag.as_deref())
            .bind(query.actor.as_deref())
            .bind(query.since)
            .bind(query.until)
            .bind(before_seq)
            .bind(projects)
            .bind(i64::from(query.limit.clamp(1, 1_000)))
            .fetch_all(c)
            .await?);
        Ok(rows.into_iter().map(AuditRow::record).collect())
    }

    /// Walks the whole chain in order and recomputes every hash: detects an altered record (its hash
    /// no longer matches), a removed one (a gap in `seq`, or a broken `prev_hash` link), and removed
    /// newest records (the chain head no longer matches the last record).
    pub async fn verify_audit(&self) -> Result<AuditVerification> {
        let mut tx = self.begin().await?;
        let head: (i64, Vec<u8>) = on!(&mut tx, |c, d| sqlx::query_as(
            d.pick("select seq, hash from audit.chain_head", "select seq, hash from audit_chain_head")
        )
        .fetch_one(c)
        .await?);
        let mut previous = vec![0u8; 32];
        let mut expected_seq: u64 = 1;
        let mut checked: u64 = 0;
        let broken = |seq: u64, checked: u64, problem: String| AuditVerification {
            ok: false,
            records: checked,
            first_broken_seq: Some(seq),
            problem: Some(problem),
        };
        loop {
            let rows: Vec<AuditRow> = on!(&mut tx, |c, d| sqlx::query_as(d.pick(
                "select * from audit.records where seq >= $1 order by seq limit $2",
                "select * from audit_records where seq >= $1 order by seq limit $2"
            ))
            .bind(expected_seq as i64)
            .bind(VERIFY_BATCH)
            .fetch_all(c)
            .await?);
            let done = (rows.len() as i64) < VERIFY_BATCH;
            for row in rows {
                let seq = to_u64(row.seq);
                if seq != expected_seq {
                    return Ok(broken(expected_seq, checked, format!("record {expected_seq} is missing")));
                }
                if row.prev_hash != previous {
                    return Ok(broken(
                        seq,
                        checked,
                        format!("record {seq} does not link to record {}", seq - 1),
                    ));
                }
                let hash = audit_hash(&previous, &row.fields());
                if row.hash != hash {
                    return Ok(broken(seq, checked, format!("record {seq} has been altered")));
                }
                previous = row.hash;
                expected_seq += 1;
                checked += 1;
            }
            if done {
                break;
            }
        }
        let head_seq = to_u64(head.0);
        if head_seq != checked || (checked > 0 && head.1 != previous) {
            return Ok(broken(
                checked + 1,
                checked,
                format!(
                    "the chain head says {head_seq} records but {checked} were found: newest records removed"
                ),
            ));
        }
        Ok(AuditVerification { ok: true, records: checked, first_broken_seq: None, problem: None })
    }
}

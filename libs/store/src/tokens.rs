//! Management tokens. Only hashes are stored; a token's secret is shown once, at creation.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde_json::json;
use sqlx::FromRow;
use sqlx::types::Json;
use time::OffsetDateTime;
use tokio::time::Instant;
use vexil_keys::{NewSecret, SecretKind};
use vexil_model::{ProjectKey, ValidationErrors};

use crate::Store;
use crate::audit::{self, AuditEntry};
use crate::db::{now, on, on_pool};
use crate::error::{Result, StoreError, corrupt};
use crate::parents;
use crate::records::{Actor, Role, TokenRecord};

/// A token to create.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// What it is for.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The projects it may touch; none = every project.
    pub projects: Option<Vec<ProjectKey>>,
}

#[derive(FromRow)]
struct TokenRow {
    id: String,
    name: String,
    role: String,
    projects: Option<Json<Vec<ProjectKey>>>,
    secret_sha256: Vec<u8>,
    created_at: OffsetDateTime,
    created_by: Option<String>,
}

impl TokenRow {
    fn record(self) -> Result<TokenRecord> {
        Ok(TokenRecord {
            role: Role::parse(&self.role)
                .ok_or_else(|| corrupt("token role", std::io::Error::other(self.role.clone())))?,
            id: self.id,
            name: self.name,
            projects: self.projects.map(|p| p.0),
            created_at: self.created_at,
            created_by: self.created_by,
        })
    }
}

fn token_json(record: &TokenRecord) -> serde_json::Value {
    json!({"id": record.id, "name": record.name, "role": record.role, "projects": record.projects})
}

impl Store {
    /// Creates a token; returns its record and its secret (shown once).
    pub async fn create_token(&self, actor: &Actor, token: NewToken) -> Result<(TokenRecord, String)> {
        let secret = vexil_keys::generate(SecretKind::Management);
        let record = self.insert_token(actor, &token, &secret).await?;
        Ok((record, secret.secret))
    }

    /// Makes sure a token with exactly this secret exists as an unscoped admin (the bootstrap token:
    /// `VEXIL_BOOTSTRAP_TOKEN`, or the one printed on first start). Idempotent.
    pub async fn ensure_bootstrap_token(&self, secret: &str) -> Result<TokenRecord> {
        let chosen = vexil_keys::from_chosen(secret);
        if let Some(existing) = self.token_by_id(&chosen.id).await? {
            return Ok(existing);
        }
        let token = NewToken { name: "bootstrap".into(), role: Role::Admin, projects: None };
        self.insert_token(&Actor::system("bootstrap"), &token, &chosen).await
    }

    async fn insert_token(&self, actor: &Actor, token: &NewToken, secret: &NewSecret) -> Result<TokenRecord> {
        const SQL: &str = "insert into tokens (id, name, role, projects, secret_sha256, created_at, created_by) \
                           values ($1, $2, $3, $4, $5, $6, $7) \
                           returning id, name, role, projects, secret_sha256, created_at, created_by";
        let at = now();
        let mut tx = self.begin().await?;
        // A scope naming a project that does not exist is a typo that would leave the token useless.
        for (index, project) in token.projects.iter().flatten().enumerate() {
            match parents::project(&mut tx, project).await {
                Ok(_) => {}
                Err(StoreError::NotFound { .. }) => {
                    return Err(StoreError::Invalid(ValidationErrors::single(
                        format!("projects[{index}]"),
                        format!("no project with key {project}"),
                    )));
                }
                Err(error) => return Err(error),
            }
        }
        let row: TokenRow = on!(&mut tx, |c, d| sqlx::query_as(SQL)
            .bind(&secret.id)
            .bind(&token.name)
            .bind(token.role.as_str())
            .bind(token.projects.as_ref().map(Json))
            .bind(secret.sha256.as_slice())
            .bind(at)
            .bind(actor.token_id.as_deref())
            .fetch_one(c)
            .await?);
        let record = row.record()?;
        audit::append_audit(
            &mut tx,
            AuditEntry {
                actor,
                action: "token.create",
                resource: format!("tokens/{}", record.id),
                project: None,
                environment: None,
                flag: None,
                before: None,
                after: Some(token_json(&record)),
            },
            at,
        )
        .await?;
        self.commit(tx).await?;
        Ok(record)
    }

    pub(crate) async fn token_by_id(&self, id: &str) -> Result<Option<TokenRecord>> {
        let mut tx = self.begin().await?;
        let row: Option<TokenRow> =
            on!(&mut tx, |c, d| sqlx::query_as(SQL_BY_ID).bind(id).fetch_optional(c).await?);
        row.map(TokenRow::record).transpose()
    }

    /// The token a presented secret belongs to, if it is valid. Compares hashes in constant time.
    /// A valid token is remembered for [`VERIFIED_TOKEN_TTL`] (see [`VerifiedTokens`]).
    pub async fn authenticate(&self, presented: &str) -> Result<Option<TokenRecord>> {
        let digest = vexil_keys::sha256(presented);
        if let Some(token) = self.verified_tokens.get(&digest) {
            return Ok(Some(token));
        }
        let token = self.authenticate_in_database(presented).await?;
        if let Some(token) = &token {
            self.verified_tokens.insert(digest, token.clone());
        }
        Ok(token)
    }

    async fn authenticate_in_database(&self, presented: &str) -> Result<Option<TokenRecord>> {
        // Generated tokens carry their id; a chosen (bootstrap) token's id is derived from its hash.
        let id = match vexil_keys::id_of(SecretKind::Management, presented) {
            Some(id) => id.to_owned(),
            None => vexil_keys::from_chosen(presented).id,
        };
        // One statement, outside a transaction: every API request makes this look-up.
        let row: Option<TokenRow> =
            on_pool!(&self.pool, |pool, d| sqlx::query_as(SQL_BY_ID).bind(&id).fetch_optional(pool).await?);
        match row {
            Some(row) if vexil_keys::matches(presented, &row.secret_sha256) => Ok(Some(row.record()?)),
            _ => Ok(None),
        }
    }

    /// Every token, without secrets.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        const SQL: &str = "select id, name, role, projects, secret_sha256, created_at, created_by from tokens order by created_at, id";
        let mut tx = self.begin().await?;
        let rows: Vec<TokenRow> = on!(&mut tx, |c, d| sqlx::query_as(SQL).fetch_all(c).await?);
        rows.into_iter().map(TokenRow::record).collect()
    }

    /// One token, without its secret.
    pub async fn get_token(&self, id: &str) -> Result<TokenRecord> {
        self.token_by_id(id)
            .await?
            .ok_or_else(|| StoreError::NotFound { resource: "token", key: id.to_owned() })
    }

    /// Revokes a token.
    pub async fn delete_token(&self, actor: &Actor, id: &str) -> Result<()> {
        const SQL: &str = "delete from tokens where id = $1 \
                           returning id, name, role, projects, secret_sha256, created_at, created_by";
        let at = now();
        let mut tx = self.begin().await?;
        let row: Option<TokenRow> =
            on!(&mut tx, |c, d| sqlx::query_as(SQL).bind(id).fetch_optional(c).await?);
        let record =
            row.ok_or_else(|| StoreError::NotFound { resource: "token", key: id.to_owned() })?.record()?;
        audit::append_audit(
            &mut tx,
            AuditEntry {
                actor,
                action: "token.delete",
                resource: format!("tokens/{id}"),
                project: None,
                environment: None,
                flag: None,
                before: Some(token_json(&record)),
                after: None,
            },
            at,
        )
        .await?;
        self.commit(tx).await?;
        // After the commit: a look-up between an earlier emptying and the commit could still have
        // found the row and remembered the token.
        self.verified_tokens.clear();
        Ok(())
    }
}

/// How long a verified token is taken on trust without asking the database again.
pub const VERIFIED_TOKEN_TTL: Duration = Duration::from_secs(1);
/// More distinct valid tokens than this in one second empties the cache rather than growing it.
const VERIFIED_TOKEN_CAPACITY: usize = 1_024;

/// Tokens verified in the last [`VERIFIED_TOKEN_TTL`], by the SHA-256 of the presented secret.
///
/// Every API request authenticates, and a database round trip for each is a large share of a small
/// request's cost. A token revoked through this process is forgotten at once (the cache is emptied);
/// one revoked through another control-plane replica still works here for at most the TTL. Only valid
/// tokens are kept, so guessing cannot fill it.
///
/// Ages are on the runtime's clock ([`tokio::time::Instant`], the system's monotonic clock unless a
/// test pauses it), so a test can move time past the TTL instead of sleeping it out.
#[derive(Debug, Default)]
pub(crate) struct VerifiedTokens {
    entries: Mutex<HashMap<[u8; 32], (Instant, TokenRecord)>>,
}

impl VerifiedTokens {
    fn get(&self, digest: &[u8; 32]) -> Option<TokenRecord> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(digest)
            .filter(|(verified, _)| verified.elapsed() < VERIFIED_TOKEN_TTL)
            .map(|(_, token)| token.clone())
    }

    fn insert(&self, digest: [u8; 32], token: TokenRecord) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= VERIFIED_TOKEN_CAPACITY {
            entries.clear();
        }
        entries.insert(digest, (Instant::now(), token));
    }

    fn clear(&self) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

const SQL_BY_ID: &str =
    "select id, name, role, projects, secret_sha256, created_at, created_by from tokens where id = $1";

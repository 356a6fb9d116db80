//! Dashboard sessions: a management token exchanged for a session secret that lives in an httpOnly
//! cookie, so that the token itself never sits where a page's scripts can read it. A session may do
//! exactly what its token may do (the token is read again on every request, so a revoked token ends
//! its sessions at once), until it expires or is logged out. Only the secret's hash is stored.

use sqlx::FromRow;
use time::{Duration, OffsetDateTime};
use vexil_keys::SecretKind;

use crate::Store;
use crate::db::{now, on, on_pool};
use crate::error::Result;
use crate::records::TokenRecord;

/// How many random base62 characters a CSRF token has (~190 bits, as a secret's).
const CSRF_LEN: usize = 32;

/// A session just created: the only time its secret is visible.
#[derive(Clone)]
pub struct NewSession {
    /// The session, as [`Store::session`] will find it.
    pub session: SessionRecord,
    /// The secret for the cookie.
    pub secret: String,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession").field("session", &self.session).finish_non_exhaustive()
    }
}

/// A live session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// Its public id.
    pub id: String,
    /// The token it acts as, as the token is now.
    pub token: TokenRecord,
    /// What a write made with the session's cookie must send in `X-CSRF-Token`.
    pub csrf_token: String,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it stops working.
    pub expires_at: OffsetDateTime,
}

#[derive(FromRow)]
struct SessionRow {
    token_id: String,
    secret_sha256: Vec<u8>,
    csrf_token: String,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
}

impl Store {
    /// Opens a session acting as `token` for `lifetime`. Sessions that have expired are deleted on the
    /// way (nothing else needs to sweep them).
    pub async fn create_session(&self, token: &TokenRecord, lifetime: Duration) -> Result<NewSession> {
        const PRUNE: &str = "delete from sessions where expires_at < $1";
        const INSERT: &str = "insert into sessions (id, token_id, secret_sha256, csrf_token, created_at, expires_at) \
                              values ($1, $2, $3, $4, $5, $6)";
        let secret = vexil_keys::generate(SecretKind::Session);
        let csrf_token = vexil_keys::random_base62(CSRF_LEN);
        let created_at = now();
        let expires_at = created_at + lifetime;
        let mut tx = self.begin().await?;
        on!(&mut tx, |c, d| sqlx::query(PRUNE).bind(created_at).execute(c).await.map(drop)?);
        on!(&mut tx, |c, d| sqlx::query(INSERT)
            .bind(&secret.id)
            .bind(&token.id)
            .bind(secret.sha256.as_slice())
            .bind(&csrf_token)
            .bind(created_at)
            .bind(expires_at)
            .execute(c)
            .await
            .map(drop)?);
        self.commit(tx).await?;
        let session =
            SessionRecord { id: secret.id, token: token.clone(), csrf_token, created_at, expires_at };
        Ok(NewSession { session, secret: secret.secret })
    }

    /// The live session a presented cookie secret opens: its hash matches (compared in constant time),
    /// it has not expired, and its token still exists. `None` for anything else, without saying why.
    pub async fn session(&self, presented: &str) -> Result<Option<SessionRecord>> {
        const SQL: &str =
            "select token_id, secret_sha256, csrf_token, created_at, expires_at from sessions where id = $1";
        let Some(id) = vexil_keys::id_of(SecretKind::Session, presented) else { return Ok(None) };
        let row: Option<SessionRow> =
            on_pool!(&self.pool, |pool, d| sqlx::query_as(SQL).bind(id).fetch_optional(pool).await?);
        let Some(row) = row.filter(|row| vexil_keys::matches(presented, &row.secret_sha256)) else {
            return Ok(None);
        };
        if row.expires_at <= now() {
            return Ok(None);
        }
        // Read again on every request: a token revoked (or changed) ends or changes its sessions at once.
        let Some(token) = self.token_by_id(&row.token_id).await? else { return Ok(None) };
        Ok(Some(SessionRecord {
            id: id.to_owned(),
            token,
            csrf_token: row.csrf_token,
            created_at: row.created_at,
            expires_at: row.expires_at,
        }))
    }

    /// Ends a session (logout). Ending one that is already gone is not an error.
    pub async fn delete_session(&self, id: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        on!(&mut tx, |c, d| sqlx::query("delete from sessions where id = $1")
            .bind(id)
            .execute(c)
            .await
            .map(drop)?);
        self.commit(tx).await
    }
}

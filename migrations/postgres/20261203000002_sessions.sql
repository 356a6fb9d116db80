-- Dashboard sessions: a management token exchanged for an httpOnly cookie (POST /api/v1/session).
-- Only the secret's hash is kept. A session ends when it expires, when it is logged out (its row is
-- deleted), or with its token (the cascade).
create table sessions (
    id            text primary key,
    token_id      text not null references tokens (id) on delete cascade,
    secret_sha256 bytea not null,
    -- Sent back by the dashboard in X-CSRF-Token on every write made with the cookie.
    csrf_token    text not null,
    created_at    timestamptz not null,
    expires_at    timestamptz not null
);
create index sessions_expiry on sessions (expires_at);
create index sessions_token on sessions (token_id);

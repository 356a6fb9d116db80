-- Vexil control-plane schema (SQLite, for standalone mode). Same shape as migrations/postgres; JSON
-- and timestamps are TEXT, and the audit tables are prefixed instead of living in a schema.

create table projects (
    id          integer primary key autoincrement,
    key         text not null unique,
    name        text not null,
    description text not null default '',
    created_at  text not null,
    updated_at  text not null
);

create table environments (
    id         integer primary key autoincrement,
    project_id integer not null references projects (id) on delete cascade,
    key        text not null,
    name       text not null,
    revision   integer not null default 0,
    created_at text not null,
    updated_at text not null,
    unique (project_id, key)
);

create table flags (
    id         integer primary key autoincrement,
    project_id integer not null references projects (id) on delete cascade,
    key        text not null,
    spec       text not null,
    archived   boolean not null default false,
    version    integer not null,
    created_at text not null,
    updated_at text not null,
    unique (project_id, key)
);

create table flag_configs (
    flag_id        integer not null references flags (id) on delete cascade,
    environment_id integer not null references environments (id) on delete cascade,
    config         text not null,
    version        integer not null,
    updated_at     text not null,
    primary key (flag_id, environment_id)
);
create index flag_configs_environment on flag_configs (environment_id);

create table segments (
    id             integer primary key autoincrement,
    environment_id integer not null references environments (id) on delete cascade,
    key            text not null,
    spec           text not null,
    version        integer not null,
    created_at     text not null,
    updated_at     text not null,
    unique (environment_id, key)
);

create table sdk_keys (
    id             text primary key,
    environment_id integer not null references environments (id) on delete cascade,
    kind           text not null check (kind in ('server', 'client')),
    prefix         text not null,
    secret_sha256  blob not null,
    created_at     text not null,
    expires_at     text
);
create index sdk_keys_environment on sdk_keys (environment_id);

create table tokens (
    id            text primary key,
    name          text not null,
    role          text not null check (role in ('viewer', 'editor', 'admin')),
    projects      text,
    secret_sha256 blob not null,
    created_at    text not null,
    created_by    text
);

create table change_log (
    id             integer primary key autoincrement,
    environment_id integer not null,
    project        text not null,
    environment    text not null,
    revision       integer not null,
    kind           text not null,
    item           text not null,
    key            text not null,
    payload        blob not null,
    committed_at   text not null,
    sent_at        text,
    unique (environment_id, revision)
);
create index change_log_unsent on change_log (environment_id, revision) where sent_at is null;

create table audit_records (
    seq            integer primary key,
    at             text not null,
    actor_token_id text,
    actor_name     text not null,
    action         text not null,
    resource       text not null,
    project        text,
    environment    text,
    flag           text,
    before         text,
    after          text,
    request_id     text,
    prev_hash      blob not null,
    hash           blob not null
);
create index audit_records_project on audit_records (project, seq);
create index audit_records_flag on audit_records (project, flag, seq);

create table audit_chain_head (
    singleton integer primary key check (singleton = 1),
    seq       integer not null,
    hash      blob not null
);
insert into audit_chain_head (singleton, seq, hash) values (1, 0, zeroblob(32));

create trigger audit_records_no_update before update on audit_records
begin
    select raise(abort, 'audit records are append-only');
end;
create trigger audit_records_no_delete before delete on audit_records
begin
    select raise(abort, 'audit records are append-only');
end;

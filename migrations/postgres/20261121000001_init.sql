-- Vexil control-plane schema (PostgreSQL). Items are stored as their vexil-model JSON (jsonb); the
-- columns beside them are what queries filter and join on.

create table projects (
    id          bigserial primary key,
    key         text not null unique,
    name        text not null,
    description text not null default '',
    created_at  timestamptz not null,
    updated_at  timestamptz not null
);

create table environments (
    id         bigserial primary key,
    project_id bigint not null references projects (id) on delete cascade,
    key        text not null,
    name       text not null,
    -- Bumped by every change in the environment; the id of every change event about it.
    revision   bigint not null default 0,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    unique (project_id, key)
);

create table flags (
    id         bigserial primary key,
    project_id bigint not null references projects (id) on delete cascade,
    key        text not null,
    spec       jsonb not null,
    archived   boolean not null default false,
    version    bigint not null,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    unique (project_id, key)
);

create table flag_configs (
    flag_id        bigint not null references flags (id) on delete cascade,
    environment_id bigint not null references environments (id) on delete cascade,
    config         jsonb not null,
    version        bigint not null,
    updated_at     timestamptz not null,
    primary key (flag_id, environment_id)
);
create index flag_configs_environment on flag_configs (environment_id);

create table segments (
    id             bigserial primary key,
    environment_id bigint not null references environments (id) on delete cascade,
    key            text not null,
    spec           jsonb not null,
    version        bigint not null,
    created_at     timestamptz not null,
    updated_at     timestamptz not null,
    unique (environment_id, key)
);

create table sdk_keys (
    id             text primary key,
    environment_id bigint not null references environments (id) on delete cascade,
    kind           text not null check (kind in ('server', 'client')),
    -- The first characters of the key, to recognise it in listings; never the secret.
    prefix         text not null,
    secret_sha256  bytea not null,
    created_at     timestamptz not null,
    expires_at     timestamptz
);
create index sdk_keys_environment on sdk_keys (environment_id);

create table tokens (
    id            text primary key,
    name          text not null,
    role          text not null check (role in ('viewer', 'editor', 'admin')),
    -- null: every project; otherwise a JSON array of project keys.
    projects      jsonb,
    secret_sha256 bytea not null,
    created_at    timestamptz not null,
    created_by    text
);

-- The outbox: every change, in the same transaction as the change, waiting to be relayed to the bus.
-- No foreign key to environments: the deletion of an environment is itself an event to deliver.
create table change_log (
    id             bigserial primary key,
    environment_id bigint not null,
    project        text not null,
    environment    text not null,
    revision       bigint not null,
    kind           text not null,
    item           text not null,
    key            text not null,
    payload        bytea not null,
    committed_at   timestamptz not null,
    sent_at        timestamptz,
    unique (environment_id, revision)
);
create index change_log_unsent on change_log (environment_id, revision) where sent_at is null;

-- Wake the relay when changes commit (notifications are delivered at commit, never for a rollback).
create function notify_change_log() returns trigger language plpgsql as $$
begin
    perform pg_notify('vexil_change_log', '');
    return null;
end $$;
create trigger change_log_notify after insert on change_log
    for each statement execute function notify_change_log();

-- Audit log: append-only, hash-chained, partitioned by month.
create schema audit;

create table audit.records (
    seq            bigint not null,
    at             timestamptz not null,
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
    prev_hash      bytea not null,
    hash           bytea not null,
    primary key (seq, at)
) partition by range (at);
create index records_seq on audit.records (seq);
create index records_project on audit.records (project, seq);
create index records_flag on audit.records (project, flag, seq);
create index records_actor on audit.records (actor_token_id, seq);

-- Append-only, enforced by the database: no update, delete or truncate, whoever asks. (A superuser can
-- still disable triggers; the hash chain is what detects that.)
create function audit.reject_change() returns trigger language plpgsql as $$
begin
    raise exception 'audit records are append-only' using errcode = 'insufficient_privilege';
end $$;

-- Rows outside every monthly partition land here rather than failing the write; partitions are
-- created months ahead (audit.create_partitions, called at start-up and daily) so it stays empty.
create table audit.records_default partition of audit.records default;
-- TRUNCATE triggers do not propagate to partitions, so every partition gets its own.
create trigger no_truncate before truncate on audit.records_default
    for each statement execute function audit.reject_change();

-- The end of the chain: its row lock serialises audit appends, and it anchors the chain so that
-- removing the newest records is detected too.
create table audit.chain_head (
    singleton boolean primary key default true check (singleton),
    seq       bigint not null,
    hash      bytea not null
);
insert into audit.chain_head (singleton, seq, hash) values (true, 0, decode(repeat('00', 32), 'hex'));

create function audit.create_partitions(months_ahead integer) returns void language plpgsql as $$
declare
    month date := date_trunc('month', now() - interval '1 month')::date;
    last  date := (date_trunc('month', now()) + make_interval(months => months_ahead))::date;
    name  text;
begin
    while month <= last loop
        name := format('records_%s', to_char(month, 'YYYY_MM'));
        if to_regclass(format('audit.%I', name)) is null then
            execute format('create table audit.%I partition of audit.records for values from (%L) to (%L)',
                           name, month, (month + interval '1 month')::date);
            execute format('create trigger no_truncate before truncate on audit.%I '
                           'for each statement execute function audit.reject_change()', name);
        end if;
        month := (month + interval '1 month')::date;
    end loop;
end $$;
select audit.create_partitions(3);

create trigger records_append_only before update or delete on audit.records
    for each row execute function audit.reject_change();
create trigger records_no_truncate before truncate on audit.records
    for each statement execute function audit.reject_change();
revoke update, delete, truncate on audit.records from public;

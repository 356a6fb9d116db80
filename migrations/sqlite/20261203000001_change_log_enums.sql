-- The change log's `kind` and `item` become the numbers of the protobuf enums the relay publishes them
-- as (vexil.v1.ChangeKind: 1 upsert, 2 delete; vexil.v1.ItemKind: 1 flag, 2 segment, 3 SDK key,
-- 4 environment), so a row is an event field for field, without translating names.
--
-- SQLite cannot change a column's type in place: the table is rebuilt under the same name, with the
-- same unique constraint and index. Existing rows are converted as the relay used to read them: any
-- kind but 'delete' was an upsert, and an item name it did not know was ITEM_KIND_UNSPECIFIED.

create table change_log_new (
    id             integer primary key autoincrement,
    environment_id integer not null,
    project        text not null,
    environment    text not null,
    revision       integer not null,
    kind           integer not null,
    item           integer not null,
    key            text not null,
    payload        blob not null,
    committed_at   text not null,
    sent_at        text,
    unique (environment_id, revision)
);

insert into change_log_new
    (id, environment_id, project, environment, revision, kind, item, key, payload, committed_at, sent_at)
select id, environment_id, project, environment, revision,
       case kind when 'delete' then 2 else 1 end,
       case item when 'flag' then 1 when 'segment' then 2 when 'sdk_key' then 3 when 'environment' then 4
                 else 0 end,
       key, payload, committed_at, sent_at
from change_log;

-- Ids continue where the old table's left off, even past rows already pruned.
delete from sqlite_sequence where name = 'change_log_new';
insert into sqlite_sequence (name, seq) select 'change_log_new', seq from sqlite_sequence where name = 'change_log';

drop table change_log;
alter table change_log_new rename to change_log;
create index change_log_unsent on change_log (environment_id, revision) where sent_at is null;

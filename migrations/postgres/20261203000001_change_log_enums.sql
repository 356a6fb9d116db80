-- The change log's `kind` and `item` become the numbers of the protobuf enums the relay publishes them
-- as (vexil.v1.ChangeKind, vexil.v1.ItemKind in proto/vexil/v1/changes.proto), so a row is an event
-- field for field, without translating names.
--
-- Existing rows are converted as the relay used to read them: any kind but 'delete' was an upsert, and
-- an item name it did not know was ITEM_KIND_UNSPECIFIED. Altering the columns in place keeps the
-- unique constraint, the index of unsent rows and the NOTIFY trigger as they are.
alter table change_log
    alter column kind type integer using case kind when 'delete' then 2 else 1 end,
    alter column item type integer using case item
        when 'flag' then 1
        when 'segment' then 2
        when 'sdk_key' then 3
        when 'environment' then 4
        else 0
    end;

comment on column change_log.kind is 'vexil.v1.ChangeKind: 1 upsert, 2 delete';
comment on column change_log.item is 'vexil.v1.ItemKind: 1 flag, 2 segment, 3 SDK key, 4 environment';

-- The loader's statements, run in ONE transaction per group of landed batches, in this order, with the
-- same text on Redshift and PostgreSQL (only the COPY into the stage differs: redshift.sql / postgres.sql).
-- The rules they implement are docs/semantics.md; core/state.py is the same rules in Python.
--
-- Conventions: "-- name: x" starts statement x (WarehouseSql.x() renders it); ${schema} is the validated
-- warehouse schema; every value is bound (%s); temporary tables are stg_*; MERGE is written in the form
-- Redshift accepts (one WHEN MATCHED UPDATE, one WHEN NOT MATCHED INSERT, no extra predicates, no WITH, a
-- source with at most one row per target row), so "newer only" is decided while building the source.
-- Joins rather than correlated subqueries, for Redshift.

-- name: lock_loader
-- Serialises loaders (besides max_active_runs=1): a second load waits here, then sees what the first loaded.
lock table ${schema}.loaded_batches;

-- name: create_stage_changes
-- CHANGES_SCHEMA's columns in its order: Redshift COPY maps Parquet columns by position.
create temp table stg_changes (
    identity_pool_id varchar(64) not null,
    identity_id varchar(64) not null,
    dataset_name varchar(128) not null,
    record_key varchar(4096),
    op varchar(16) not null,
    record_value varchar(65535),
    value_bytes bigint,
    is_value_cut boolean not null,
    value_ref varchar(2048),
    sync_count bigint not null,
    last_modified_at timestamp not null,
    device_last_modified_at timestamp,
    event_sync_count bigint,
    event_last_modified_at timestamp,
    payload_type varchar(16) not null,
    stream_name varchar(128) not null,
    shard_id varchar(128) not null,
    sequence_number varchar(128) not null,
    sub_sequence_number bigint not null,
    record_index integer not null,
    arrived_at timestamp not null,
    landed_file varchar(2048) not null
) ${attributes_stg_changes};

-- name: create_stage_rejects
-- REJECTS_SCHEMA's columns in its order.
create temp table stg_rejects (
    stream_name varchar(128) not null,
    shard_id varchar(128) not null,
    sequence_number varchar(128) not null,
    sub_sequence_number bigint not null,
    arrived_at timestamp not null,
    reason varchar(64) not null,
    detail varchar(65535) not null,
    identity_pool_id varchar(64),
    identity_id varchar(64),
    dataset_name varchar(128),
    raw_bytes bigint not null,
    raw_ref varchar(2048) not null,
    landed_file varchar(2048) not null
) ${attributes_stg_rejects};

-- name: insert_stage_change
-- One staged row without a COPY (tests and small loads), in the column order of create_stage_changes.
insert into stg_changes (
    identity_pool_id, identity_id, dataset_name, record_key, op, record_value, value_bytes, is_value_cut,
    value_ref, sync_count, last_modified_at, device_last_modified_at, event_sync_count, event_last_modified_at,
    payload_type, stream_name, shard_id, sequence_number, sub_sequence_number, record_index, arrived_at,
    landed_file
) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s);

-- name: staged_changes_per_file
-- One pass over the stage for both checks: rows per file and per landing-contract problem (problem is null
-- for a good row). The problems are the rows core/landing_format.py forbids, the first that applies.
select landed_file, problem, count(*) as row_count
from (
    select
        landed_file,
        case
            when op not in ('replace', 'remove', 'dataset_remove') then 'unknown op'
            when op <> 'dataset_remove' and record_key is null then 'record change without record_key'
            when op = 'dataset_remove' and record_key is not null then 'dataset_remove with a record_key'
            when is_value_cut and value_ref is null then 'value cut without value_ref'
        end as problem
    from stg_changes
) as checked
group by landed_file, problem;

-- name: staged_rejects_per_file
select landed_file, cast(null as varchar(64)) as problem, count(*) as row_count
from stg_rejects
group by landed_file;

-- name: create_new_deletes
-- Step 1. Dataset deletes the warehouse does not know yet (one row per dataset and delete time).
create temp table stg_new_deletes ${attributes_stg_work} as
select
    d.identity_pool_id, d.identity_id, d.dataset_name, d.last_modified_at as deleted_at, d.sync_count,
    d.payload_type, d.stream_name, d.shard_id, d.sequence_number, d.sub_sequence_number, d.arrived_at,
    d.landed_file
from (
    select
        c.identity_pool_id, c.identity_id, c.dataset_name, c.last_modified_at, c.sync_count, c.payload_type,
        c.stream_name, c.shard_id, c.sequence_number, c.sub_sequence_number, c.arrived_at, c.landed_file,
        row_number() over (
            partition by c.identity_pool_id, c.identity_id, c.dataset_name, c.last_modified_at
            order by
                c.shard_id desc, lpad(c.sequence_number, 64, '0') desc, c.sub_sequence_number desc,
                c.record_index desc
        ) as copy_rank
    from stg_changes as c
    where c.op = 'dataset_remove'
) as d
left join ${schema}.dataset_deletes as known
    on known.identity_pool_id = d.identity_pool_id
    and known.identity_id = d.identity_id
    and known.dataset_name = d.dataset_name
    and known.deleted_at = d.last_modified_at
where d.copy_rank = 1 and known.identity_pool_id is null;

-- name: insert_dataset_deletes
insert into ${schema}.dataset_deletes (
    identity_pool_id, identity_id, dataset_name, deleted_at, sync_count, payload_type, stream_name, shard_id,
    sequence_number, sub_sequence_number, arrived_at, landed_file, loaded_at
)
select
    identity_pool_id, identity_id, dataset_name, deleted_at, sync_count, payload_type, stream_name, shard_id,
    sequence_number, sub_sequence_number, arrived_at, landed_file, cast(%s as timestamp)
from stg_new_deletes;

-- name: create_touched_datasets
-- Every touched dataset with what the batch says about it, from one pass over the stage: its latest change
-- or delete, and the largest sync count of its changes (the sync count of its current generation when it
-- has no delete; see create_dataset_updates).
create temp table stg_datasets ${attributes_stg_work} as
select
    identity_pool_id, identity_id, dataset_name,
    max(last_modified_at) as last_modified_at,
    max(case when op <> 'dataset_remove' then sync_count end) as max_sync_count
from stg_changes
group by identity_pool_id, identity_id, dataset_name;

-- name: count_latest_deletes
-- How many touched datasets have a delete: none (the usual case) lets the loader skip the statements that
-- only concern such datasets (candidates, generations, winners with deletes).
select count(*) from stg_latest_deletes;

-- name: create_latest_deletes
-- The latest delete of each touched dataset, this batch's included.
create temp table stg_latest_deletes ${attributes_stg_work} as
select identity_pool_id, identity_id, dataset_name, deleted_at, sync_count as delete_sync_count
from (
    select
        d.identity_pool_id, d.identity_id, d.dataset_name, d.deleted_at, d.sync_count,
        row_number() over (
            partition by d.identity_pool_id, d.identity_id, d.dataset_name
            order by d.deleted_at desc
        ) as delete_rank
    from ${schema}.dataset_deletes as d
    inner join stg_datasets as t
        on t.identity_pool_id = d.identity_pool_id
        and t.identity_id = d.identity_id
        and t.dataset_name = d.dataset_name
) as ranked
where delete_rank = 1;

-- name: create_reset_datasets
-- Datasets with a new delete. A delete can change which stored version wins (a change made after it
-- starts a newer generation) and which keys are deleted, so every key of these datasets is decided
-- again from its full history. Deletes are rare; every other key is decided from the stage and the
-- stored row alone.
create temp table stg_reset_datasets ${attributes_stg_work} as
select distinct identity_pool_id, identity_id, dataset_name
from stg_new_deletes;

-- name: create_versions
-- Step 2. One row per version (key, sync_count, last_modified_at): of its copies, the last in stream order.
-- One sort serves both: in each key's order by (sync_count, last_modified_at, position), all descending, a
-- row is its version's chosen copy when the row before it is of another version, and the first row
-- (key_rank = 1) is the batch's best version of the key.
-- Each version also carries the stored row of its key (one index probe, used twice below) and is_new: in
-- a dataset without deletes the stored row is the best version of the key's whole history, so a version
-- newer than it (or of a key never seen) is certainly not in record_changes yet.
-- Only what the sort and the later joins need goes through the sort and into this table: the value
-- (varchar(65535)) and the other payload columns stay in stg_changes, and the steps that write them
-- (history, winners, candidates) join them back by the copy's position (landed_file, shard, sequence numbers,
-- record_index: one row of the stage). Redshift sizes sort and hash buffers and temporary tables by declared
-- widths, so a 64 KB column carried through them costs memory for every row.
create temp table stg_versions ${attributes_stg_work} as
select
    v.identity_pool_id, v.identity_id, v.dataset_name, v.record_key, v.op, v.sync_count, v.last_modified_at,
    v.shard_id, v.sequence_number, v.sub_sequence_number, v.record_index, v.landed_file, v.key_rank,
    case when l.identity_pool_id is null then 0 else 1 end as has_deletes,
    case
        when l.identity_pool_id is null
            and (
                r.identity_pool_id is null
                or v.sync_count > r.sync_count
                or (v.sync_count = r.sync_count and v.last_modified_at > r.last_modified_at)
            )
            then 1
        else 0
    end as is_new,
    case when r.identity_pool_id is null then 0 else 1 end as was_stored,
    case when r.identity_pool_id is null or r.is_deleted then 0 else 1 end as was_live
from (
    select
        c.identity_pool_id, c.identity_id, c.dataset_name, c.record_key, c.op, c.sync_count, c.last_modified_at,
        c.shard_id, c.sequence_number, c.sub_sequence_number, c.record_index, c.landed_file,
        -- The same window three times (Redshift has no WINDOW clause); PostgreSQL sorts once for all three.
        row_number() over (
            partition by c.identity_id, c.dataset_name, c.record_key, c.identity_pool_id
            order by
                c.sync_count desc, c.last_modified_at desc, c.shard_id desc, lpad(c.sequence_number, 64, '0') desc,
                c.sub_sequence_number desc, c.record_index desc
        ) as key_rank,
        lag(c.sync_count) over (
            partition by c.identity_id, c.dataset_name, c.record_key, c.identity_pool_id
            order by
                c.sync_count desc, c.last_modified_at desc, c.shard_id desc, lpad(c.sequence_number, 64, '0') desc,
                c.sub_sequence_number desc, c.record_index desc
        ) as previous_sync_count,
        lag(c.last_modified_at) over (
            partition by c.identity_id, c.dataset_name, c.record_key, c.identity_pool_id
            order by
                c.sync_count desc, c.last_modified_at desc, c.shard_id desc, lpad(c.sequence_number, 64, '0') desc,
                c.sub_sequence_number desc, c.record_index desc
        ) as previous_last_modified_at
    from stg_changes as c
    where c.op in ('replace', 'remove')
) as v
left join stg_latest_deletes as l
    on l.identity_pool_id = v.identity_pool_id
    and l.identity_id = v.identity_id
    and l.dataset_name = v.dataset_name
left join ${schema}.records as r
    on r.identity_pool_id = v.identity_pool_id
    and r.identity_id = v.identity_id
    and r.dataset_name = v.dataset_name
    and r.record_key = v.record_key
where v.key_rank = 1 or v.previous_sync_count <> v.sync_count or v.previous_last_modified_at <> v.last_modified_at;

-- name: insert_record_changes
-- Step 3. History: the versions record_changes does not have yet, with their lineage and values (joined back
-- from the stage by the chosen copy's position). New versions (is_new) go in directly; the others
-- (duplicates, late older versions, datasets with deletes) only when an anti-join finds them missing.
insert into ${schema}.record_changes (
    identity_pool_id, identity_id, dataset_name, record_key, op, record_value, value_bytes, is_value_cut,
    value_ref, sync_count, last_modified_at, device_last_modified_at, event_sync_count, event_last_modified_at,
    payload_type, stream_name, shard_id, sequence_number, sub_sequence_number, record_index, arrived_at,
    landed_file, loaded_at
)
select
    c.identity_pool_id, c.identity_id, c.dataset_name, c.record_key, c.op, c.record_value, c.value_bytes,
    c.is_value_cut, c.value_ref, c.sync_count, c.last_modified_at, c.device_last_modified_at, c.event_sync_count,
    c.event_last_modified_at, c.payload_type, c.stream_name, c.shard_id, c.sequence_number,
    c.sub_sequence_number, c.record_index, c.arrived_at, c.landed_file, cast(%s as timestamp)
from (
    select
        v.identity_id, v.record_key, v.landed_file, v.shard_id, v.sequence_number, v.sub_sequence_number,
        v.record_index
    from stg_versions as v
    where v.is_new = 1
    union all
    select
        v.identity_id, v.record_key, v.landed_file, v.shard_id, v.sequence_number, v.sub_sequence_number,
        v.record_index
    from stg_versions as v
    left join ${schema}.record_changes as known
        on known.identity_pool_id = v.identity_pool_id
        and known.identity_id = v.identity_id
        and known.dataset_name = v.dataset_name
        and known.record_key = v.record_key
        and known.sync_count = v.sync_count
        and known.last_modified_at = v.last_modified_at
    where v.is_new = 0 and known.identity_pool_id is null
) as n
inner join stg_changes as c
    on c.identity_id = n.identity_id
    and c.record_key = n.record_key
    and c.landed_file = n.landed_file
    and c.shard_id = n.shard_id
    and c.sequence_number = n.sequence_number
    and c.sub_sequence_number = n.sub_sequence_number
    and c.record_index = n.record_index;

-- name: create_candidates
-- Step 4a. For datasets that have deletes (where generations matter), every version that may win for a
-- touched key: the staged versions, the stored current row (is_stored = 1: at an equal version the stored
-- copy stays, so duplicates never rewrite a row), and for reset datasets all their stored rows and history.
create temp table stg_candidates ${attributes_stg_work} as
select
    c.identity_pool_id, c.identity_id, c.dataset_name, c.record_key, c.op, c.record_value, c.value_bytes,
    c.is_value_cut, c.value_ref, c.sync_count, c.last_modified_at, c.device_last_modified_at,
    0 as is_stored, 0 as stored_live,
    c.shard_id, c.sequence_number, c.sub_sequence_number, c.record_index
from stg_versions as v
inner join stg_changes as c
    on c.identity_id = v.identity_id
    and c.record_key = v.record_key
    and c.landed_file = v.landed_file
    and c.shard_id = v.shard_id
    and c.sequence_number = v.sequence_number
    and c.sub_sequence_number = v.sub_sequence_number
    and c.record_index = v.record_index
where v.has_deletes = 1
union all
select
    r.identity_pool_id, r.identity_id, r.dataset_name, r.record_key, r.op, r.record_value, r.value_bytes,
    r.is_value_cut, r.value_ref, r.sync_count, r.last_modified_at, r.device_last_modified_at,
    1, case when r.is_deleted then 0 else 1 end,
    '', '', 0, 0
from ${schema}.records as r
inner join (
    select identity_pool_id, identity_id, dataset_name, record_key
    from stg_versions
    where has_deletes = 1 and key_rank = 1
) as k
    on k.identity_pool_id = r.identity_pool_id
    and k.identity_id = r.identity_id
    and k.dataset_name = r.dataset_name
    and k.record_key = r.record_key
union all
select
    r.identity_pool_id, r.identity_id, r.dataset_name, r.record_key, r.op, r.record_value, r.value_bytes,
    r.is_value_cut, r.value_ref, r.sync_count, r.last_modified_at, r.device_last_modified_at,
    1, case when r.is_deleted then 0 else 1 end,
    '', '', 0, 0
from ${schema}.records as r
inner join stg_reset_datasets as z
    on z.identity_pool_id = r.identity_pool_id
    and z.identity_id = r.identity_id
    and z.dataset_name = r.dataset_name
union all
select
    h.identity_pool_id, h.identity_id, h.dataset_name, h.record_key, h.op, h.record_value, h.value_bytes,
    h.is_value_cut, h.value_ref, h.sync_count, h.last_modified_at, h.device_last_modified_at,
    0, 0,
    h.shard_id, h.sequence_number, h.sub_sequence_number, h.record_index
from ${schema}.record_changes as h
inner join stg_reset_datasets as z
    on z.identity_pool_id = h.identity_pool_id
    and z.identity_id = h.identity_id
    and z.dataset_name = h.dataset_name;

-- name: create_generations
-- Step 4b. Generation of each candidate of a dataset that has deletes: the latest delete strictly before
-- the change (none: the first generation, coalesced to 1970-01-01 below).
create temp table stg_generations ${attributes_stg_work} as
select c.identity_pool_id, c.identity_id, c.dataset_name, c.last_modified_at, max(d.deleted_at) as generation
from (
    select distinct s.identity_pool_id, s.identity_id, s.dataset_name, s.last_modified_at
    from stg_candidates as s
    inner join stg_latest_deletes as l
        on l.identity_pool_id = s.identity_pool_id
        and l.identity_id = s.identity_id
        and l.dataset_name = s.dataset_name
) as c
left join ${schema}.dataset_deletes as d
    on d.identity_pool_id = c.identity_pool_id
    and d.identity_id = c.identity_id
    and d.dataset_name = c.dataset_name
    and d.deleted_at < c.last_modified_at
group by c.identity_pool_id, c.identity_id, c.dataset_name, c.last_modified_at;

-- name: create_winners
-- Step 4c. One winner per key, kept only when it changes the stored row (a new key, a newer version, or a
-- tombstone flag that flips); at most one row per key, as MERGE requires.
-- Datasets without any delete (nearly all): every version is of the first generation, so the batch's best
-- version (key_rank = 1) wins when it is newer than the stored row (is_new); an equal version is a
-- duplicate and changes nothing. (is_new is 0 in datasets with deletes: insert_winners_with_deletes.)
create temp table stg_winners ${attributes_stg_work} as
select
    c.identity_pool_id, c.identity_id, c.dataset_name, c.record_key, c.op, c.record_value, c.value_bytes,
    c.is_value_cut, c.value_ref, c.sync_count, c.last_modified_at, c.device_last_modified_at,
    case when c.op = 'remove' then true else false end as is_deleted,
    case when c.op = 'remove' then 0 else 1 end as is_live,
    v.was_stored,
    v.was_live
from stg_versions as v
inner join stg_changes as c
    on c.identity_id = v.identity_id
    and c.record_key = v.record_key
    and c.landed_file = v.landed_file
    and c.shard_id = v.shard_id
    and c.sequence_number = v.sequence_number
    and c.sub_sequence_number = v.sub_sequence_number
    and c.record_index = v.record_index
where v.key_rank = 1 and v.is_new = 1;

-- name: insert_winners_with_deletes
-- Step 4c for datasets with deletes: the winner among the candidates by (generation, sync_count,
-- last_modified_at, stored first, stream position); a key is deleted when its winner is a remove or is not
-- newer than the dataset's latest delete. Skipped when no touched dataset has a delete.
insert into stg_winners
select
    identity_pool_id, identity_id, dataset_name, record_key, op, record_value, value_bytes, is_value_cut,
    value_ref, sync_count, last_modified_at, device_last_modified_at, is_deleted, is_live, was_stored, was_live
from (
    select
        c.identity_pool_id, c.identity_id, c.dataset_name, c.record_key, c.op, c.record_value, c.value_bytes,
        c.is_value_cut, c.value_ref, c.sync_count, c.last_modified_at, c.device_last_modified_at,
        c.is_stored, c.stored_live,
        case when c.op = 'remove' or c.last_modified_at <= l.deleted_at then true else false end as is_deleted,
        case when c.op = 'remove' or c.last_modified_at <= l.deleted_at then 0 else 1 end as is_live,
        max(c.is_stored) over (
            partition by c.identity_pool_id, c.identity_id, c.dataset_name, c.record_key
        ) as was_stored,
        max(c.stored_live) over (
            partition by c.identity_pool_id, c.identity_id, c.dataset_name, c.record_key
        ) as was_live,
        row_number() over (
            partition by c.identity_pool_id, c.identity_id, c.dataset_name, c.record_key
            order by
                coalesce(g.generation, timestamp '1970-01-01 00:00:00') desc, c.sync_count desc,
                c.last_modified_at desc, c.is_stored desc, c.shard_id desc, lpad(c.sequence_number, 64, '0') desc,
                c.sub_sequence_number desc, c.record_index desc
        ) as winner_rank
    from stg_candidates as c
    inner join stg_latest_deletes as l
        on l.identity_pool_id = c.identity_pool_id
        and l.identity_id = c.identity_id
        and l.dataset_name = c.dataset_name
    left join stg_generations as g
        on g.identity_pool_id = c.identity_pool_id
        and g.identity_id = c.identity_id
        and g.dataset_name = c.dataset_name
        and g.last_modified_at = c.last_modified_at
) as ranked
where winner_rank = 1 and (is_stored = 0 or is_live <> stored_live);

-- name: merge_records
-- The time (at) is a literal (core/sql_text.timestamp_literal): Redshift binds parameters only in
-- SELECT, INSERT, UPDATE and DELETE (PREPARE), so a MERGE takes none.
-- Step 4d. Current state: at most one source row per key (stg_winners), newer-only already decided.
merge into ${schema}.records
using stg_winners as w
on records.identity_pool_id = w.identity_pool_id
    and records.identity_id = w.identity_id
    and records.dataset_name = w.dataset_name
    and records.record_key = w.record_key
when matched then update set
    op = w.op,
    record_value = w.record_value,
    value_bytes = w.value_bytes,
    is_value_cut = w.is_value_cut,
    value_ref = w.value_ref,
    sync_count = w.sync_count,
    last_modified_at = w.last_modified_at,
    device_last_modified_at = w.device_last_modified_at,
    is_deleted = w.is_deleted,
    updated_at = cast(${at} as timestamp)
when not matched then insert (
    identity_pool_id, identity_id, dataset_name, record_key, op, record_value, value_bytes, is_value_cut,
    value_ref, sync_count, last_modified_at, device_last_modified_at, is_deleted, updated_at
) values (
    w.identity_pool_id, w.identity_id, w.dataset_name, w.record_key, w.op, w.record_value, w.value_bytes,
    w.is_value_cut, w.value_ref, w.sync_count, w.last_modified_at, w.device_last_modified_at, w.is_deleted,
    cast(${at} as timestamp)
);

-- name: create_dataset_updates
-- Step 5a. What this batch says about every touched dataset; merge_datasets combines it with the stored
-- row (so the stored row is read once, by the MERGE). generation_sync_count is the batch's largest sync
-- count after the latest delete (copies do not change a maximum): stg_datasets has it for datasets without
-- deletes, the join with the stage computes it for the few with deletes; recomputed_sync_count is the same
-- over the whole history, for datasets whose latest delete may have moved; live_delta is how many keys
-- became live minus how many stopped being live.
create temp table stg_dataset_updates ${attributes_stg_work} as
select
    t.identity_pool_id, t.identity_id, t.dataset_name,
    t.last_modified_at,
    l.deleted_at,
    l.delete_sync_count,
    case when l.identity_pool_id is null then t.max_sync_count else g.generation_sync_count end
        as generation_sync_count,
    h.generation_sync_count as recomputed_sync_count,
    coalesce(w.live_delta, 0) as live_delta
from stg_datasets as t
left join stg_latest_deletes as l
    on l.identity_pool_id = t.identity_pool_id
    and l.identity_id = t.identity_id
    and l.dataset_name = t.dataset_name
left join (
    select c.identity_pool_id, c.identity_id, c.dataset_name, max(c.sync_count) as generation_sync_count
    from stg_changes as c
    inner join stg_latest_deletes as l2
        on l2.identity_pool_id = c.identity_pool_id
        and l2.identity_id = c.identity_id
        and l2.dataset_name = c.dataset_name
    where c.op <> 'dataset_remove' and c.last_modified_at > l2.deleted_at
    group by c.identity_pool_id, c.identity_id, c.dataset_name
) as g
    on g.identity_pool_id = t.identity_pool_id
    and g.identity_id = t.identity_id
    and g.dataset_name = t.dataset_name
left join (
    select identity_pool_id, identity_id, dataset_name, sum(is_live) - sum(was_live) as live_delta
    from stg_winners
    group by identity_pool_id, identity_id, dataset_name
) as w
    on w.identity_pool_id = t.identity_pool_id
    and w.identity_id = t.identity_id
    and w.dataset_name = t.dataset_name
left join (
    select hc.identity_pool_id, hc.identity_id, hc.dataset_name, max(hc.sync_count) as generation_sync_count
    from ${schema}.record_changes as hc
    inner join stg_reset_datasets as z
        on z.identity_pool_id = hc.identity_pool_id
        and z.identity_id = hc.identity_id
        and z.dataset_name = hc.dataset_name
    inner join stg_latest_deletes as l3
        on l3.identity_pool_id = hc.identity_pool_id
        and l3.identity_id = hc.identity_id
        and l3.dataset_name = hc.dataset_name
    where hc.last_modified_at > l3.deleted_at
    group by hc.identity_pool_id, hc.identity_id, hc.dataset_name
) as h
    on h.identity_pool_id = t.identity_pool_id
    and h.identity_id = t.identity_id
    and h.dataset_name = t.dataset_name;

-- name: merge_datasets
-- The time (at) is a literal (core/sql_text.timestamp_literal): Redshift binds parameters only in
-- SELECT, INSERT, UPDATE and DELETE (PREPARE), so a MERGE takes none.
-- Step 5b. New values from the stored row (target columns, read before the update) and the batch:
-- generation_sync_count moves incrementally, or is recomputed when the latest delete moved; the last sync
-- count falls back to the delete's; a dataset is deleted when nothing is newer than its latest delete.
merge into ${schema}.datasets
using stg_dataset_updates as u
on datasets.identity_pool_id = u.identity_pool_id
    and datasets.identity_id = u.identity_id
    and datasets.dataset_name = u.dataset_name
when matched then update set
    last_sync_count = coalesce(
        case
            when coalesce(datasets.deleted_at, timestamp '1970-01-01 00:00:00')
                <> coalesce(u.deleted_at, timestamp '1970-01-01 00:00:00')
                then u.recomputed_sync_count
            when datasets.generation_sync_count is null or u.generation_sync_count > datasets.generation_sync_count
                then u.generation_sync_count
            else datasets.generation_sync_count
        end,
        u.delete_sync_count
    ),
    last_modified_at = case
        when u.last_modified_at > datasets.last_modified_at then u.last_modified_at
        else datasets.last_modified_at
    end,
    is_deleted = case
        when u.deleted_at is not null
            and u.deleted_at >= u.last_modified_at
            and u.deleted_at >= datasets.last_modified_at
            then true
        else false
    end,
    deleted_at = u.deleted_at,
    delete_sync_count = u.delete_sync_count,
    generation_sync_count = case
        when coalesce(datasets.deleted_at, timestamp '1970-01-01 00:00:00')
            <> coalesce(u.deleted_at, timestamp '1970-01-01 00:00:00')
            then u.recomputed_sync_count
        when datasets.generation_sync_count is null or u.generation_sync_count > datasets.generation_sync_count
            then u.generation_sync_count
        else datasets.generation_sync_count
    end,
    live_record_count = datasets.live_record_count + u.live_delta,
    updated_at = cast(${at} as timestamp)
when not matched then insert (
    identity_pool_id, identity_id, dataset_name, last_sync_count, last_modified_at, is_deleted, deleted_at,
    delete_sync_count, generation_sync_count, live_record_count, updated_at
) values (
    u.identity_pool_id, u.identity_id, u.dataset_name, coalesce(u.generation_sync_count, u.delete_sync_count),
    u.last_modified_at,
    case when u.deleted_at is not null and u.last_modified_at <= u.deleted_at then true else false end,
    u.deleted_at, u.delete_sync_count, u.generation_sync_count, u.live_delta, cast(${at} as timestamp)
);

-- name: merge_counts
-- What this merge did, for the task log.
select v.versions_staged, d.deletes_new, w.keys_changed, w.keys_inserted, w.keys_deleted, u.datasets_touched
from (select count(*) as versions_staged from stg_versions) as v
cross join (select count(*) as deletes_new from stg_new_deletes) as d
cross join (
    select
        count(*) as keys_changed,
        coalesce(sum(case when was_stored = 0 then 1 else 0 end), 0) as keys_inserted,
        coalesce(sum(case when is_deleted then 1 else 0 end), 0) as keys_deleted
    from stg_winners
) as w
cross join (select count(*) as datasets_touched from stg_dataset_updates) as u;

-- name: insert_rejected_records
-- Step 6. Quarantined records, once each (a replay can quarantine the same record again).
insert into ${schema}.rejected_records (
    stream_name, shard_id, sequence_number, sub_sequence_number, arrived_at, reason, detail, identity_pool_id,
    identity_id, dataset_name, raw_bytes, raw_ref, landed_file, loaded_at
)
select
    r.stream_name, r.shard_id, r.sequence_number, r.sub_sequence_number, r.arrived_at, r.reason, r.detail,
    r.identity_pool_id, r.identity_id, r.dataset_name, r.raw_bytes, r.raw_ref, r.landed_file,
    cast(%s as timestamp)
from (
    select
        s.*,
        row_number() over (
            partition by s.stream_name, s.shard_id, s.sequence_number, s.sub_sequence_number
            order by s.landed_file desc
        ) as copy_rank
    from stg_rejects as s
) as r
left join ${schema}.rejected_records as known
    on known.stream_name = r.stream_name
    and known.shard_id = r.shard_id
    and known.sequence_number = r.sequence_number
    and known.sub_sequence_number = r.sub_sequence_number
where r.copy_rank = 1 and known.stream_name is null;

-- name: create_stage_files
create temp table stg_files (
    file_url varchar(2048) not null,
    descriptor_url varchar(2048) not null,
    file_kind varchar(16) not null,
    manifest_url varchar(2048) not null,
    rows_expected bigint not null,
    rows_staged bigint not null,
    file_bytes bigint not null
) ${attributes_stg_rejects};

-- name: insert_stage_file
insert into stg_files (
    file_url, descriptor_url, file_kind, manifest_url, rows_expected, rows_staged, file_bytes
) values (%s, %s, %s, %s, %s, %s, %s);

-- name: merge_loaded_files
-- The time (at) is a literal (core/sql_text.timestamp_literal): Redshift binds parameters only in
-- SELECT, INSERT, UPDATE and DELETE (PREPARE), so a MERGE takes none.
-- Step 7a. The batch's files; a forced reload refreshes their rows.
merge into ${schema}.loaded_files
using stg_files as f
on loaded_files.file_url = f.file_url
when matched then update set
    descriptor_url = f.descriptor_url,
    file_kind = f.file_kind,
    manifest_url = f.manifest_url,
    rows_expected = f.rows_expected,
    rows_staged = f.rows_staged,
    file_bytes = f.file_bytes,
    loaded_at = cast(${at} as timestamp)
when not matched then insert (
    file_url, descriptor_url, file_kind, manifest_url, rows_expected, rows_staged, file_bytes, loaded_at
) values (
    f.file_url, f.descriptor_url, f.file_kind, f.manifest_url, f.rows_expected, f.rows_staged, f.file_bytes,
    cast(${at} as timestamp)
);

-- name: create_stage_batches
create temp table stg_batches (
    descriptor_url varchar(2048) not null,
    batch_id varchar(512) not null,
    landing_day date not null,
    stream_name varchar(128) not null,
    shard_id varchar(128) not null,
    first_sequence_number varchar(128) not null,
    last_sequence_number varchar(128) not null,
    first_arrived_at timestamp not null,
    last_arrived_at timestamp not null,
    landed_at timestamp not null,
    kinesis_records_read bigint not null,
    kinesis_records_landed bigint not null,
    kinesis_records_rejected bigint not null,
    is_replay boolean not null
) ${attributes_stg_rejects};

-- name: insert_stage_batch
insert into stg_batches (
    descriptor_url, batch_id, landing_day, stream_name, shard_id, first_sequence_number, last_sequence_number,
    first_arrived_at, last_arrived_at, landed_at, kinesis_records_read, kinesis_records_landed,
    kinesis_records_rejected, is_replay
) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s);

-- name: merge_loaded_batches
-- The time (at) is a literal (core/sql_text.timestamp_literal): Redshift binds parameters only in
-- SELECT, INSERT, UPDATE and DELETE (PREPARE), so a MERGE takes none.
-- Step 7b. Recorded last, in the same transaction: a batch is "loaded" exactly when its data is.
merge into ${schema}.loaded_batches
using stg_batches as b
on loaded_batches.descriptor_url = b.descriptor_url
when matched then update set
    batch_id = b.batch_id,
    landing_day = b.landing_day,
    stream_name = b.stream_name,
    shard_id = b.shard_id,
    first_sequence_number = b.first_sequence_number,
    last_sequence_number = b.last_sequence_number,
    first_arrived_at = b.first_arrived_at,
    last_arrived_at = b.last_arrived_at,
    landed_at = b.landed_at,
    kinesis_records_read = b.kinesis_records_read,
    kinesis_records_landed = b.kinesis_records_landed,
    kinesis_records_rejected = b.kinesis_records_rejected,
    is_replay = b.is_replay,
    loaded_at = cast(${at} as timestamp)
when not matched then insert (
    descriptor_url, batch_id, landing_day, stream_name, shard_id, first_sequence_number, last_sequence_number,
    first_arrived_at, last_arrived_at, landed_at, kinesis_records_read, kinesis_records_landed,
    kinesis_records_rejected, is_replay, loaded_at
) values (
    b.descriptor_url, b.batch_id, b.landing_day, b.stream_name, b.shard_id, b.first_sequence_number,
    b.last_sequence_number, b.first_arrived_at, b.last_arrived_at, b.landed_at, b.kinesis_records_read,
    b.kinesis_records_landed, b.kinesis_records_rejected, b.is_replay, cast(${at} as timestamp)
);

-- name: resolve_failed_batches
-- Step 7c. A batch set aside earlier that loads now is resolved (its row stays, for the record).
update ${schema}.failed_batches
set resolved_at = cast(%s as timestamp), resolution = 'loaded'
from stg_batches as b
where failed_batches.descriptor_url = b.descriptor_url and failed_batches.resolved_at is null;

-- name: create_stage_failed
create temp table stg_failed (
    descriptor_url varchar(2048) not null,
    landing_day date not null,
    batch_id varchar(512),
    error_kind varchar(64) not null,
    error_message varchar(65535) not null
) ${attributes_stg_rejects};

-- name: insert_stage_failed
insert into stg_failed (descriptor_url, landing_day, batch_id, error_kind, error_message)
values (%s, %s, %s, %s, %s);

-- name: merge_failed_batches
-- The time (at) is a literal (core/sql_text.timestamp_literal): Redshift binds parameters only in
-- SELECT, INSERT, UPDATE and DELETE (PREPARE), so a MERGE takes none.
-- Batches set aside by this run (after the lock of lock_loader: the loader's tables have one writer at a time).
merge into ${schema}.failed_batches
using stg_failed as f
on failed_batches.descriptor_url = f.descriptor_url
when matched then update set
    landing_day = f.landing_day,
    batch_id = f.batch_id,
    error_kind = f.error_kind,
    error_message = f.error_message,
    last_failed_at = cast(${at} as timestamp),
    failures = failed_batches.failures + 1,
    resolved_at = cast(null as timestamp),
    resolution = cast(null as varchar(16))
when not matched then insert (
    descriptor_url, landing_day, batch_id, error_kind, error_message, first_failed_at, last_failed_at, failures,
    resolved_at, resolution
) values (
    f.descriptor_url, f.landing_day, f.batch_id, f.error_kind, f.error_message, cast(${at} as timestamp),
    cast(${at} as timestamp), 1, cast(null as timestamp), cast(null as varchar(16))
);

-- name: drop_stage_failed
drop table if exists stg_failed;

-- name: create_stage_settled
-- Batches set aside earlier that the landing zone no longer lists (landing_zone.load: superseded by a replay, or
-- their descriptor removed): they would never be tried again, so they are resolved with how.
create temp table stg_settled (
    descriptor_url varchar(2048) not null,
    resolution varchar(16) not null
) ${attributes_stg_rejects};

-- name: insert_stage_settled
insert into stg_settled (descriptor_url, resolution) values (%s, %s);

-- name: settle_failed_batches
-- After the lock of lock_loader, like every write of failed_batches.
update ${schema}.failed_batches
set resolved_at = cast(%s as timestamp), resolution = s.resolution
from stg_settled as s
where failed_batches.descriptor_url = s.descriptor_url and failed_batches.resolved_at is null;

-- name: drop_stage_settled
drop table if exists stg_settled;

-- name: unresolved_failed_batches
-- The batches set aside and not loaded since: the loader tries them after the others, in their own
-- transactions, so that they cannot hold the rest back.
select descriptor_url
from ${schema}.failed_batches
where resolved_at is null;

-- name: loaded_descriptors
-- Finding work: the descriptors already loaded among a range of landing days.
select descriptor_url
from ${schema}.loaded_batches
where landing_day >= cast(%s as date) and landing_day <= cast(%s as date);

-- name: drop_work_tables
drop table if exists
    stg_changes, stg_rejects, stg_versions, stg_new_deletes, stg_datasets, stg_latest_deletes,
    stg_reset_datasets, stg_candidates, stg_generations, stg_winners, stg_dataset_updates, stg_files,
    stg_batches;

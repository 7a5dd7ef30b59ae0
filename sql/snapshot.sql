-- The snapshot (cognito_snapshot; core/snapshot.py decides, snapshot/ reads and writes). Reads only: the
-- snapshot's rows reach the warehouse as landed batches, through the loader (sql/load.sql).
-- ${identity_list} is filled with one bound placeholder per identity by ReportingSql (at most 1000).

-- name: held_datasets_of_identities
-- What the warehouse holds of a chunk of identities of one pool, for the deletes a snapshot infers: every
-- datasets row and the oldest live key of each (docs/semantics.md, "Snapshots").
select
    d.identity_id,
    d.dataset_name,
    d.is_deleted,
    d.deleted_at,
    d.last_sync_count,
    d.last_modified_at,
    d.generation_sync_count,
    k.oldest_live_at
from ${schema}.datasets as d
left join (
    select identity_id, dataset_name, min(last_modified_at) as oldest_live_at
    from ${schema}.records
    where identity_pool_id = %s
        and identity_id in (${identity_list})
        and is_deleted = false
    group by identity_id, dataset_name
) as k
    on k.identity_id = d.identity_id
    and k.dataset_name = d.dataset_name
where d.identity_pool_id = %s
    and d.identity_id in (${identity_list})
order by d.identity_id, d.dataset_name;

-- name: export_rows_of_identities
-- The export: every live key of a chunk of identities of one pool, with its dataset's metadata. A cut
-- value's whole text is at value_ref (the export reads it from there).
select
    r.identity_id,
    r.dataset_name,
    r.record_key,
    r.record_value,
    r.value_bytes,
    r.is_value_cut,
    r.value_ref,
    r.sync_count,
    r.last_modified_at,
    r.device_last_modified_at,
    d.last_sync_count,
    d.last_modified_at as dataset_last_modified_at,
    d.live_record_count
from ${schema}.records as r
inner join ${schema}.datasets as d
    on d.identity_pool_id = r.identity_pool_id
    and d.identity_id = r.identity_id
    and d.dataset_name = r.dataset_name
where r.identity_pool_id = %s
    and r.identity_id in (${identity_list})
    and r.is_deleted = false
order by r.identity_id, r.dataset_name, r.record_key;

-- name: loaded_through
-- The export's watermark: every change loaded after this time is newer than the export (docs/migration.md).
select max(loaded_at) as loaded_through
from ${schema}.loaded_batches;

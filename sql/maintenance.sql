-- Rebuild of the current state from the history: records and datasets are emptied and every version in
-- record_changes (with every delete in dataset_deletes) is staged and merged again by load.sql, in one
-- transaction. DELETE, not TRUNCATE: TRUNCATE commits at once on Redshift, which would expose empty tables.

-- name: clear_records
delete from ${schema}.records;

-- name: clear_datasets
delete from ${schema}.datasets;

-- name: stage_history
insert into stg_changes (
    identity_pool_id, identity_id, dataset_name, record_key, op, record_value, value_bytes, is_value_cut,
    value_ref, sync_count, last_modified_at, device_last_modified_at, event_sync_count, event_last_modified_at,
    payload_type, stream_name, shard_id, sequence_number, sub_sequence_number, record_index, arrived_at,
    landed_file
)
select
    identity_pool_id, identity_id, dataset_name, record_key, op, record_value, value_bytes, is_value_cut,
    value_ref, sync_count, last_modified_at, device_last_modified_at, event_sync_count, event_last_modified_at,
    payload_type, stream_name, shard_id, sequence_number, sub_sequence_number, record_index, arrived_at,
    landed_file
from ${schema}.record_changes
union all
select
    identity_pool_id, identity_id, dataset_name, cast(null as varchar(4096)), 'dataset_remove',
    cast(null as varchar(65535)), cast(null as bigint), false, cast(null as varchar(2048)), sync_count,
    deleted_at, cast(null as timestamp), sync_count, deleted_at, payload_type, stream_name, shard_id,
    sequence_number, sub_sequence_number, 0, arrived_at, landed_file
from ${schema}.dataset_deletes;

-- Data-quality checks run after each load (Warehouse.quality_checks). Each returns one row:
-- (failing row count, an example or an empty string). 0 means the check holds.
--
-- Redshift accepts PRIMARY KEY and UNIQUE but does not enforce them: the grain of every table the docs
-- promise (docs/warehouse.md, "Tables") is checked here, the *_unique checks. The merge must never break it;
-- on PostgreSQL the primary keys would stop it first, so the tests also run the merge on a schema whose keys
-- and unique indexes were dropped, where only these checks can see a violation. Tables that grow with every
-- load (record_changes) are checked for the rows loaded since the given time: a duplicate always involves a
-- row a load wrote.

-- name: check_records_keys_unique
-- Redshift does not enforce primary keys: the merge must never leave two rows for one key.
select count(*) as failing, coalesce(max(identity_id), '') as example
from (
    select identity_pool_id, identity_id, dataset_name, record_key
    from ${schema}.records
    group by identity_pool_id, identity_id, dataset_name, record_key
    having count(*) > 1
) as duplicated;

-- name: check_records_keys_not_null
select count(*) as failing, coalesce(max(identity_id), '') as example
from ${schema}.records
where identity_pool_id is null or identity_id is null or dataset_name is null or record_key is null;

-- name: check_datasets_keys_unique
select count(*) as failing, coalesce(max(identity_id), '') as example
from (
    select identity_pool_id, identity_id, dataset_name
    from ${schema}.datasets
    group by identity_pool_id, identity_id, dataset_name
    having count(*) > 1
) as duplicated;

-- name: check_record_changes_versions_unique
-- One row per version: key, sync_count, last_modified_at (docs/semantics.md), among versions loaded since the
-- given time and the rows they could duplicate.
select count(*) as failing, coalesce(max(identity_id), '') as example
from (
    select h.identity_pool_id, h.identity_id, h.dataset_name, h.record_key, h.sync_count, h.last_modified_at
    from ${schema}.record_changes as h
    inner join (
        select distinct identity_pool_id, identity_id, dataset_name, record_key, sync_count, last_modified_at
        from ${schema}.record_changes
        where loaded_at >= cast(%s as timestamp)
    ) as recent
        on recent.identity_pool_id = h.identity_pool_id
        and recent.identity_id = h.identity_id
        and recent.dataset_name = h.dataset_name
        and recent.record_key = h.record_key
        and recent.sync_count = h.sync_count
        and recent.last_modified_at = h.last_modified_at
    group by h.identity_pool_id, h.identity_id, h.dataset_name, h.record_key, h.sync_count, h.last_modified_at
    having count(*) > 1
) as duplicated;

-- name: check_dataset_deletes_unique
-- One row per dataset delete: dataset and deleted_at.
select count(*) as failing, coalesce(max(identity_id), '') as example
from (
    select identity_pool_id, identity_id, dataset_name, deleted_at
    from ${schema}.dataset_deletes
    group by identity_pool_id, identity_id, dataset_name, deleted_at
    having count(*) > 1
) as duplicated;

-- name: check_rejected_records_unique
-- One row per quarantined Kinesis record: its coordinates.
select count(*) as failing, coalesce(max(sequence_number), '') as example
from (
    select stream_name, shard_id, sequence_number, sub_sequence_number
    from ${schema}.rejected_records
    group by stream_name, shard_id, sequence_number, sub_sequence_number
    having count(*) > 1
) as duplicated;

-- name: check_loaded_batches_unique
select count(*) as failing, coalesce(max(descriptor_url), '') as example
from (
    select descriptor_url from ${schema}.loaded_batches group by descriptor_url having count(*) > 1
) as duplicated;

-- name: check_loaded_files_unique
select count(*) as failing, coalesce(max(file_url), '') as example
from (
    select file_url from ${schema}.loaded_files group by file_url having count(*) > 1
) as duplicated;

-- name: check_failed_batches_unique
select count(*) as failing, coalesce(max(descriptor_url), '') as example
from (
    select descriptor_url from ${schema}.failed_batches group by descriptor_url having count(*) > 1
) as duplicated;

-- name: check_bulk_publish_runs_unique
select count(*) as failing, coalesce(max(attempt_id), '') as example
from (
    select attempt_id from ${schema}.bulk_publish_runs group by attempt_id having count(*) > 1
) as duplicated;

-- name: check_reconciliation_runs_unique
select count(*) as failing, coalesce(max(run_id), '') as example
from (
    select run_id from ${schema}.reconciliation_runs group by run_id having count(*) > 1
) as duplicated;

-- name: check_schema_migrations_unique
select count(*) as failing, coalesce(max(name), '') as example
from (
    select version, max(name) as name from ${schema}.schema_migrations group by version having count(*) > 1
) as duplicated;

-- name: check_staged_rows_match_manifests
-- Files loaded since the given time whose staged row count differs from the manifest's record_count.
select count(*) as failing, coalesce(max(file_url), '') as example
from ${schema}.loaded_files
where loaded_at >= cast(%s as timestamp) and rows_staged <> rows_expected;

-- name: check_live_record_counts
-- Datasets updated since the given time whose live_record_count disagrees with records.
select count(*) as failing, coalesce(max(identity_id), '') as example
from (
    select
        d.identity_pool_id, d.identity_id, d.dataset_name, d.live_record_count,
        sum(case when r.is_deleted = false then 1 else 0 end) as live_in_records
    from ${schema}.datasets as d
    left join ${schema}.records as r
        on r.identity_pool_id = d.identity_pool_id
        and r.identity_id = d.identity_id
        and r.dataset_name = d.dataset_name
    where d.updated_at >= cast(%s as timestamp)
    group by d.identity_pool_id, d.identity_id, d.dataset_name, d.live_record_count
) as counted
where live_record_count <> live_in_records;

-- Data-quality checks run after each load (Warehouse.quality_checks). Each returns one row:
-- (failing row count, an example or an empty string). 0 means the check holds.

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

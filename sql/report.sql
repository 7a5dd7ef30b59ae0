-- The pipeline-health report (core/report_html.py renders it; cognito_streams/report.py gathers it).

-- name: changes_per_hour
-- Versions loaded per hour since the bound time (the caller passes "48 hours ago").
select date_trunc('hour', loaded_at) as hour_at, count(*) as changes
from ${schema}.record_changes
where loaded_at >= %s
group by 1
order by 1;

-- name: rejects_by_reason
select reason, count(*) as records
from ${schema}.rejected_records
group by reason
order by 2 desc, 1;

-- name: bulk_publish_history
select identity_pool_id, requested_at, decision, status, started_at, completed_at, failure_message
from ${schema}.bulk_publish_runs
order by requested_at desc
limit 50;

-- name: last_load
select max(loaded_at) as last_loaded_at, count(*) as batches
from ${schema}.loaded_batches;

-- name: table_rows
select 'records' as table_name, count(*) as row_count from ${schema}.records
union all select 'live_records', count(*) from ${schema}.live_records
union all select 'record_changes', count(*) from ${schema}.record_changes
union all select 'datasets', count(*) from ${schema}.datasets
union all select 'dataset_deletes', count(*) from ${schema}.dataset_deletes
union all select 'loaded_batches', count(*) from ${schema}.loaded_batches
union all select 'rejected_records', count(*) from ${schema}.rejected_records
union all select 'bulk_publish_runs', count(*) from ${schema}.bulk_publish_runs;

-- name: latest_reconciliation_run
select run_id, checked_at, identities, keys_checked, in_flight, mismatches, missing, extra, stale_value,
    wrong_delete_state, unknown_identity, passed
from ${schema}.reconciliation_runs
order by checked_at desc
limit 1;

-- name: reconciliation_samples
select kind, identity_pool_id, identity_id, dataset_name, record_key, detail
from ${schema}.reconciliation_results
where run_id = %s
order by kind, identity_id, dataset_name, record_key
limit 50;

-- name: landing_since
-- Kinesis records read, landed, rejected, and batches, in batches loaded since the bound time.
select coalesce(sum(kinesis_records_read), 0), coalesce(sum(kinesis_records_landed), 0),
    coalesce(sum(kinesis_records_rejected), 0), count(*)
from ${schema}.loaded_batches
where loaded_at >= %s;

-- name: loading_since
-- Change rows staged, new versions and new dataset deletes, loaded since the bound time: staged minus new is what
-- the merge absorbed as duplicates.
select
    (select coalesce(sum(rows_staged), 0) from ${schema}.loaded_files where file_kind = 'changes' and loaded_at >= %s),
    (select count(*) from ${schema}.record_changes where loaded_at >= %s),
    (select count(*) from ${schema}.dataset_deletes where loaded_at >= %s);

-- The pipeline-health report (core/report/html.py renders it; report/html_report.py gathers it) and the live health
-- (monitoring/state.py, monitoring/samples.py, report/gather.py and report/check.py: the statements named health_*).

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

-- name: health_last_load
-- Pipeline health (cognito_streams/report: the UI page, /cognito-streams/api/health, the stall check); every
-- time bound is a bound value (naive UTC). The last load transaction: when, how many batches, their records.
select loaded_at, count(*) as batches, coalesce(sum(kinesis_records_read), 0) as records_read,
    coalesce(sum(kinesis_records_rejected), 0) as records_rejected, min(first_arrived_at) as first_arrived_at,
    max(last_arrived_at) as last_arrived_at
from ${schema}.loaded_batches
where loaded_at = (select max(loaded_at) from ${schema}.loaded_batches)
group by loaded_at;

-- name: health_freshness_per_load
-- Freshness of each load transaction since the bound time: seconds from the change (Cognito's lastModifiedDate)
-- to its load, p50 and p95 over the versions that load added to the history. Both percentiles sort by the same
-- expression (Redshift's rule for several sort-based aggregates in one query). The timestamps (UTC, no zone) are
-- made timestamptz first: Redshift's EXTRACT(epoch) of a TIMESTAMP is a whole number, of a TIMESTAMPTZ a double.
select loaded_at, count(*) as changes,
    percentile_cont(0.5) within group (
        order by extract(epoch from loaded_at at time zone 'UTC') - extract(epoch from last_modified_at at time zone 'UTC')) as p50_seconds,
    percentile_cont(0.95) within group (
        order by extract(epoch from loaded_at at time zone 'UTC') - extract(epoch from last_modified_at at time zone 'UTC')) as p95_seconds
from ${schema}.record_changes
where loaded_at >= %s
group by loaded_at
order by loaded_at;

-- name: health_freshness_of_load
-- The same for one load transaction (the loading task's metrics).
select count(*) as changes,
    percentile_cont(0.5) within group (
        order by extract(epoch from loaded_at at time zone 'UTC') - extract(epoch from last_modified_at at time zone 'UTC')) as p50_seconds,
    percentile_cont(0.95) within group (
        order by extract(epoch from loaded_at at time zone 'UTC') - extract(epoch from last_modified_at at time zone 'UTC')) as p95_seconds
from ${schema}.record_changes
where loaded_at >= %s;

-- name: health_throughput_per_minute
-- Kinesis records loaded per minute since the bound time (read = landed + rejected), and batches.
select date_trunc('minute', loaded_at) as minute_at, sum(kinesis_records_read) as records_read,
    sum(kinesis_records_landed) as records_landed, sum(kinesis_records_rejected) as records_rejected,
    count(*) as batches
from ${schema}.loaded_batches
where loaded_at >= %s
group by 1
order by 1;

-- name: health_rejects_per_hour
select date_trunc('hour', loaded_at) as hour_at, reason, count(*) as records
from ${schema}.rejected_records
where loaded_at >= %s
group by 1, 2
order by 1, 2;

-- name: health_samples_since
select sampled_at, metric, series, value
from ${schema}.health_samples
where sampled_at >= %s
order by sampled_at, metric, series;

-- name: lock_health_samples
-- The health check (which prunes) and the loader both write health_samples: one writer at a time, so that
-- Redshift's serializable isolation has no conflict to abort (error 1023).
lock table ${schema}.health_samples;

-- name: insert_health_sample
insert into ${schema}.health_samples (sampled_at, metric, series, value, source) values (%s, %s, %s, %s, %s);

-- name: prune_health_samples
delete from ${schema}.health_samples where sampled_at < %s;

-- name: health_loaded_descriptors
-- Batches loaded from the landing days at or after the bound day (the backlog is what is landed and not here).
select descriptor_url from ${schema}.loaded_batches where landing_day >= %s;

-- name: health_latest_reconciliation
select run_id, checked_at, identities, keys_checked, in_flight, mismatches, missing, extra, stale_value,
    wrong_delete_state, passed, verdict, watermark_at
from ${schema}.reconciliation_runs
order by checked_at desc
limit 1;

-- name: set_reconciliation_verdict
update ${schema}.reconciliation_runs set verdict = %s, watermark_at = %s where run_id = %s;

-- name: health_previous_sample
-- The value of a metric at the latest check before the bound time (none: no row).
select value
from ${schema}.health_samples
where metric = %s and sampled_at < %s
order by sampled_at desc
limit 1;

-- name: health_last_sample_at
select max(sampled_at) from ${schema}.health_samples where metric = %s;
